"""Oracle tests for `zoo-tool train`, `finetune` and `eval`: exact resume, NaN stop, logs, fine-tune freezing,
evaluation against PyTorch on the same weights, and bad-input messages."""
import json
import os
import pty
import subprocess
import xml.etree.ElementTree as ET

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from conftest import ROOT, run_zoo, zoo_tool_path

DATA = os.path.join(ROOT, "fixtures", "data")
D04 = os.path.join(DATA, "digits_0-4.npz")
D59 = os.path.join(DATA, "digits_5-9.npz")
BUNDLED = os.path.join(ROOT, "fixtures", "demo", "lenet_digits_0-4.h5")


def tensors(path):
    with h5py.File(path, "r") as f:
        return {k: v[()] for k, v in f["tensors"].items()}


def ok(r):
    assert r.returncode == 0, r.stderr + r.stdout
    return r.stdout


def test_resume_is_bit_exact(zoo_tool, tmp_path):
    common = ["--data", D04, "--optimizer", "adam", "--lr", "0.003", "--batch-size", "64", "--seed", "5",
              "--schedule", "step", "--step-size", "3", "--gamma", "0.5", "--crop-padding", "2", "--label-smoothing", "0.1"]
    ok(run_zoo("train", "lenet", *common, "--epochs", "4", "-o", tmp_path / "straight.h5"))
    ok(run_zoo("train", "lenet", *common, "--epochs", "2", "-o", tmp_path / "half.h5"))
    out = ok(run_zoo("train", "--resume", tmp_path / "half.h5", "--data", D04, "--epochs", "4", "-o", tmp_path / "resumed.h5"))
    assert "resuming" in out and "at epoch 2" in out
    a, b = tensors(tmp_path / "straight.h5"), tensors(tmp_path / "resumed.h5")
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    assert not np.array_equal(a["0.weight"], tensors(tmp_path / "half.h5")["0.weight"])
    with h5py.File(tmp_path / "straight.h5", "r") as f, h5py.File(tmp_path / "resumed.h5", "r") as g:
        assert f["training"].attrs["epoch"] == g["training"].attrs["epoch"] == 4
        assert f["training"].attrs["step"] == g["training"].attrs["step"] == 4 * 11
        for slot in ["exp_avg", "exp_avg_sq"]:
            for k in f["training"][slot]:
                assert np.array_equal(f["training"][slot][k][()], g["training"][slot][k][()]), (slot, k)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(zoo_tool, tmp_path):
    out = tmp_path / "m.h5"
    # epoch 1 trains normally; the step schedule makes the learning rate infinite in epoch 2
    r = run_zoo("train", "lenet", "--data", D04, "--epochs", "3", "--optimizer", "sgd", "--lr", "0.1",
                "--schedule", "step", "--step-size", "1", "--gamma", "1e40", "-o", out)
    assert r.returncode != 0
    assert r.stderr.strip() == ("error: training diverged: the loss is NaN at epoch 2, batch 2; stopping (lower the learning rate); "
                                "the last good checkpoint (epoch 1) is kept in %s" % out)
    with h5py.File(out, "r") as f:
        assert f["training"].attrs["epoch"] == 1
        assert all(np.isfinite(v[()]).all() for v in f["tensors"].values())
    r = run_zoo("train", "lenet", "--data", D04, "--epochs", "1", "--lr", "1e39", "-o", tmp_path / "none.h5")
    assert r.returncode != 0 and r.stderr.strip().endswith("no checkpoint was written")
    assert not os.path.exists(tmp_path / "none.h5")


def test_log_and_plot(zoo_tool, tmp_path):
    out = ok(run_zoo("train", "lenet", "--data", D04, "--epochs", "2", "--optimizer", "adam", "--lr", "0.003",
                     "--log", tmp_path / "m.jsonl", "--plot", tmp_path / "c.svg", "-o", tmp_path / "m.h5"))
    assert "\r" not in out  # not a terminal: plain lines
    lines = [l for l in out.splitlines() if l.startswith("epoch ")]
    assert len(lines) == 2 and lines[1].startswith("epoch 2/2  train loss ")
    rows = [json.loads(l) for l in open(tmp_path / "m.jsonl")]
    assert [r["epoch"] for r in rows] == [1, 2]
    for r in rows:
        assert set(r) == {"epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "images_per_second",
                          "seconds", "learning_rates"}
        assert 0 <= r["test_accuracy"] <= 1 and r["images_per_second"] > 0
        assert list(r["learning_rates"].values()) == [0.003]
    svg = ET.parse(tmp_path / "c.svg").getroot()
    assert svg.tag.endswith("svg")
    assert len([e for e in svg.iter() if e.tag.endswith("polyline")]) == 4


def test_progress_line_on_a_terminal(zoo_tool, tmp_path):
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(zoo_tool_path(), [zoo_tool_path(), "train", "lenet", "--data", D04, "--epochs", "1", "--batch-size", "16",
                                   "-o", str(tmp_path / "t.h5")])
    chunks = []
    while True:
        try:
            b = os.read(fd, 4096)
        except OSError:
            break
        if not b:
            break
        chunks.append(b)
    os.waitpid(pid, 0)
    text = b"".join(chunks).decode()
    assert "\rEpoch".lower() in text.lower() or "\repoch 1/1  batch" in text
    assert "batch 43/43" in text and "img/s" in text and "ETA" in text


def lenet(classes):
    return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.Sigmoid(), nn.AvgPool2d(2, 2),
                         nn.Conv2d(6, 16, 5), nn.Sigmoid(), nn.AvgPool2d(2, 2), nn.Flatten(),
                         nn.Linear(400, 120), nn.Sigmoid(), nn.Linear(120, 84), nn.Sigmoid(), nn.Linear(84, classes))


def torch_eval(h5, npz):
    net = lenet(tensors(h5)["11.bias"].shape[0])
    net.load_state_dict({k: torch.tensor(v) for k, v in tensors(h5).items()})
    z = np.load(npz)
    x = torch.tensor(z["x_test"].astype(np.float32) / 255).unsqueeze(1)
    y = torch.tensor(z["y_test"])
    with torch.no_grad():
        logits = net(x)
    loss = nn.functional.cross_entropy(logits, y).item()
    pred = logits.argmax(1).numpy()
    k = logits.shape[1]
    conf = np.zeros((k, k), int)
    for t, p in zip(y.numpy(), pred):
        conf[t, p] += 1
    return loss, conf


def test_eval_matches_pytorch_on_bundled_checkpoint(zoo_tool):
    out = ok(run_zoo("eval", BUNDLED, "--data", D04))
    loss, conf = torch_eval(BUNDLED, D04)
    lines = out.splitlines()
    zl = float(next(l for l in lines if l.startswith("loss")).split()[1])
    assert abs(zl - loss) < 1e-4
    acc = np.trace(conf) / conf.sum()
    assert "accuracy  %.2f%% (%d/%d)" % (acc * 100, np.trace(conf), conf.sum()) in out
    i = lines.index("confusion matrix (rows: true class, columns: predicted)")
    rows = [[int(v) for v in l.split()[1:]] for l in lines[i + 2:i + 2 + conf.shape[0]]]
    assert np.array_equal(np.array(rows), conf)
    assert acc >= 0.95


def test_finetune_freezes_reused_and_reaches_goal(zoo_tool, tmp_path):
    out = tmp_path / "ft.h5"
    text = ok(run_zoo("finetune", BUNDLED, "--data", D59, "--classes", "5", "--reinit", "7,9", "--freeze", "reused",
                      "--optimizer", "adam", "--lr", "0.003", "--batch-size", "32", "--epochs", "10", "--new-lr-scale", "1", "-o", out))
    assert "reused (2): 0, 3\n" in text
    assert "new    (3): 7, 9, 11\n" in text
    assert "frozen (2): 0, 3\n" in text
    assert "backward stops at layer 7" in text
    pre, ft = tensors(BUNDLED), tensors(out)
    for k in ["0.weight", "0.bias", "3.weight", "3.bias"]:
        assert np.array_equal(pre[k], ft[k]), k
    assert ft["11.weight"].shape == (5, 84)
    with h5py.File(out, "r") as f:
        assert set(f["training"].attrs["frozen"]) == {"0.weight", "0.bias", "3.weight", "3.bias"}
        assert set(f["training"]["exp_avg"]) == {"7.weight", "7.bias", "9.weight", "9.bias", "11.weight", "11.bias"}
    loss, conf = torch_eval(out, D59)
    assert np.trace(conf) / conf.sum() >= 0.95


def test_finetune_onnx_export_matches_pytorch(zoo_tool, tmp_path):
    import onnxruntime as ort
    out = tmp_path / "ft.h5"
    text = ok(run_zoo("finetune", BUNDLED, "--data", D59, "--classes", "5", "--epochs", "1", "--optimizer", "adam",
                      "--lr", "0.003", "-o", out, "--onnx", tmp_path / "ft.onnx", "--summary"))
    assert "exported %s (ONNX)" % (tmp_path / "ft.onnx") in text
    assert "Trainable params: 425" in text          # --freeze reused: only the new head trains
    net = lenet(5)
    net.load_state_dict({k: torch.tensor(v) for k, v in tensors(out).items()})
    x = np.load(D59)["x_test"][:16].astype(np.float32)[:, None] / 255
    with torch.no_grad():
        ref = net(torch.tensor(x)).numpy()
    sess = ort.InferenceSession(str(tmp_path / "ft.onnx"))
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    assert np.abs(got - ref).max() <= 1e-4 * max(1, np.abs(ref).max())


def test_finetune_lr_scales_and_pattern_freeze(zoo_tool, tmp_path):
    out = tmp_path / "ft.h5"
    text = ok(run_zoo("finetune", BUNDLED, "--data", D59, "--classes", "5", "--freeze", "0.*,3.*", "--reused-lr-scale", "0.1",
                      "--new-lr-scale", "10", "--optimizer", "sgd", "--lr", "0.05", "--epochs", "1", "-o", out))
    assert "frozen (2): 0, 3\n" in text
    with h5py.File(out, "r") as f:
        scales = json.loads(f["training"].attrs["lr_scales"])
    assert scales == {"7.weight": 0.1, "7.bias": 0.1, "9.weight": 0.1, "9.bias": 0.1, "11.weight": 10.0, "11.bias": 10.0}
    line = next(l for l in text.splitlines() if l.startswith("epoch 1/1"))
    assert "lr 0.005/0.5" in line


@pytest.mark.parametrize("args,message", [
    (["finetune", BUNDLED, "--data", D59, "--classes", "4"],
     "error: bad input: %s (train): label 4 of sample 6 is out of range for 4 classes (expected 0...3)" % D59),
    (["finetune", BUNDLED, "--data", D59, "--classes", "7"],
     "error: bad input: %s (train): --classes 7 disagrees with the data, which has 5 classes" % D59),
    (["finetune", BUNDLED, "--data", os.path.join(DATA, "tiny_stored.npz"), "--classes", "3"],
     "error: bad input: %s (train): images are 3x4x5 but the model expects 1x28x28" % os.path.join(DATA, "tiny_stored.npz")),
    (["eval", BUNDLED, "--data", os.path.join(DATA, "pngs")],
     "error: bad input: %s: images are 3x4x5 but the model expects 1x28x28" % os.path.join(DATA, "pngs", "test")),
    (["train", "lenet", "--data", "/nonexistent/d.npz"], "error: /nonexistent/d.npz: no such file or folder"),
])
def test_bad_input(zoo_tool, tmp_path, args, message):
    out = tmp_path / "x.h5"
    r = run_zoo(*args, "-o", out) if args[0] != "eval" else run_zoo(*args)
    assert r.returncode != 0
    assert r.stderr.strip() == message
    assert not os.path.exists(out)


def test_unreadable_npz(zoo_tool, tmp_path):
    b = bytearray(open(D04, "rb").read())
    b[2000] ^= 0xFF
    bad = tmp_path / "bad.npz"
    bad.write_bytes(bytes(b))
    r = run_zoo("train", "lenet", "--data", bad, "-o", tmp_path / "x.h5")
    assert r.returncode != 0
    assert r.stderr.startswith("error: %s: member x_train.npy: " % bad)
