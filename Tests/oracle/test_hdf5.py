"""The zoo checkpoint (.h5) read by h5py without zoo code, safetensors round trips for every catalog
model, `convert` / `verify` errors on bad input, and a writer killed mid-write (issue 3)."""
import hashlib
import json
import os
import signal
import subprocess
import time

import h5py
import numpy as np
import pytest
from safetensors.numpy import load_file

from conftest import run_zoo, zoo_tool_path


def catalog_names():
    r = run_zoo("list")
    assert r.returncode == 0, r.stderr
    names = [line.split()[0] for line in r.stdout.splitlines()[1:] if line.strip()]
    assert "resnet18" in names and "lenet" in names
    return names


def tensors_of(h5path):
    with h5py.File(h5path, "r") as f:
        return {k: v[()] for k, v in f["tensors"].items()}


def test_h5py_reads_checkpoint(tmp_path):
    h5 = tmp_path / "r18.h5"
    st = tmp_path / "r18.safetensors"
    r = run_zoo("convert", "resnet18", h5)
    assert r.returncode == 0, r.stderr
    r = run_zoo("convert", h5, st)
    assert r.returncode == 0, r.stderr
    ref = load_file(str(st))  # values as the independent safetensors library reads them
    with h5py.File(h5, "r") as f:
        assert f.attrs["zoo_format"] == "zoo-checkpoint"
        assert int(f.attrs["format_version"]) == 1
        assert f.attrs["source_format"] == "catalog"
        arch = json.loads(f["architecture"][()])
        assert arch["name"] == "resnet18"
        g = f["tensors"]
        assert set(g.keys()) == set(ref.keys())
        assert len(ref) == 102  # torchvision resnet18 state_dict (122) minus 20 num_batches_tracked
        assert g["conv1.weight"].shape == (64, 3, 7, 7)
        assert g["layer2.0.downsample.1.running_var"].shape == (128,)
        assert g["fc.weight"].dtype == np.float32 and g["fc.weight"].shape == (1000, 512)
        for k, v in g.items():
            a = v[()]
            assert np.array_equal(a, ref[k]), k
            assert v.attrs["sha256"] == hashlib.sha256(np.ascontiguousarray(a, "<f4").tobytes()).hexdigest(), k
        total = sum(v.size for k, v in g.items() if "running" not in k)
        assert total == 11_689_512


# The VGG family shares one builder; by default vgg11_bn stands for vgg11, vgg_d2l and the six larger
# variants (129-144M parameters each, ~30 s apiece on a loaded 2-core machine). ZOO_FULL_CATALOG=1
# (or the older ZOO_FULL_ROUNDTRIP=1) runs every catalog model.
SLOW = {"vgg11", "vgg_d2l", "vgg13", "vgg16", "vgg19", "vgg13_bn", "vgg16_bn", "vgg19_bn"}


def test_catalog_round_trip_bit_for_bit(tmp_path):
    """zoo .h5 → safetensors → zoo .h5 keeps every tensor bit for bit, for every catalog model."""
    names = catalog_names()
    if not (os.environ.get("ZOO_FULL_CATALOG") or os.environ.get("ZOO_FULL_ROUNDTRIP")):
        names = [n for n in names if n not in SLOW]
    for name in names:
        a, s, b = tmp_path / f"{name}.h5", tmp_path / f"{name}.safetensors", tmp_path / f"{name}.back.h5"
        for src, dst in ((name, a), (a, s), (s, b)):
            r = run_zoo("convert", src, dst)
            assert r.returncode == 0, (name, r.stderr)
        ta, tb = tensors_of(a), tensors_of(b)
        assert ta.keys() == tb.keys(), name
        for k in ta:
            assert ta[k].dtype == tb[k].dtype == np.float32
            assert np.array_equal(ta[k].view(np.uint32), tb[k].view(np.uint32)), (name, k)
        with h5py.File(b, "r") as f:
            assert f.attrs["source_format"] == "safetensors"
            assert f.attrs["source_file"] == f"{name}.safetensors"
        for p in (a, s, b):
            p.unlink()


def test_killed_writer_leaves_old_file(tmp_path):
    target = tmp_path / "model.h5"
    r = run_zoo("convert", "lenet", target)
    assert r.returncode == 0, r.stderr
    before = target.read_bytes()
    env = dict(os.environ, ZOO_TEST_WRITE_DELAY_MS="200")
    p = subprocess.Popen([zoo_tool_path(), "convert", "resnet18", str(target)], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tmp = tmp_path / f".model.h5.tmp-{p.pid}"
    deadline = time.time() + 60
    while not tmp.exists() and time.time() < deadline:
        time.sleep(0.02)
    assert tmp.exists(), "the writer never created its temporary file"
    time.sleep(0.5)  # some tensors written
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert p.returncode == -signal.SIGKILL
    assert target.read_bytes() == before
    with h5py.File(target, "r") as f:
        assert json.loads(f["architecture"][()])["name"] == "lenet"
    r = run_zoo("verify", target)
    assert r.returncode == 0, r.stderr


@pytest.fixture
def good_h5(tmp_path):
    p = tmp_path / "good.h5"
    r = run_zoo("convert", "lenet", p)
    assert r.returncode == 0, r.stderr
    return p


def check_fails(src, out, expected):
    r = run_zoo("convert", src, out)
    assert r.returncode != 0
    assert expected in r.stderr, r.stderr
    assert not os.path.exists(out)
    assert not [f for f in os.listdir(os.path.dirname(out)) if ".tmp-" in f]


def test_truncated(good_h5, tmp_path):
    data = good_h5.read_bytes()
    bad = tmp_path / "trunc.h5"
    bad.write_bytes(data[: len(data) // 2])
    check_fails(bad, tmp_path / "out.safetensors", f"error: {bad}: HDF5 file is truncated or damaged; it cannot be opened")


def test_not_hdf5(tmp_path):
    bad = tmp_path / "text.h5"
    bad.write_bytes(b"this is not a model at all\n" * 10)
    check_fails(bad, tmp_path / "out.h5", f"error: {bad}: not a zoo checkpoint, Keras .h5, safetensors or ONNX file")


def test_missing_dataset(good_h5, tmp_path):
    with h5py.File(good_h5, "r+") as f:
        del f["tensors/3.weight"]
    check_fails(good_h5, tmp_path / "out.safetensors",
                f"error: {good_h5}: dataset 'tensors/3.weight' missing (the architecture needs [16, 6, 5, 5])")


def test_wrong_dtype(good_h5, tmp_path):
    with h5py.File(good_h5, "r+") as f:
        v = f["tensors/0.bias"][()]
        del f["tensors/0.bias"]
        f["tensors"].create_dataset("0.bias", data=v.astype(np.float64))
    check_fails(good_h5, tmp_path / "out.safetensors",
                f"error: {good_h5}: tensor '0.bias' is stored as float64; the zoo checkpoint holds float32")


def test_wrong_shape(good_h5, tmp_path):
    with h5py.File(good_h5, "r+") as f:
        del f["tensors/0.bias"]
        f["tensors"].create_dataset("0.bias", data=np.zeros(7, np.float32))
    check_fails(good_h5, tmp_path / "out.safetensors",
                f"error: {good_h5}: shape mismatch for tensor '0.bias': architecture expects [6], file has [7]")


def test_flipped_bit(good_h5, tmp_path):
    with h5py.File(good_h5, "r") as f:
        off = f["tensors/7.weight"].id.get_offset()
    data = bytearray(good_h5.read_bytes())
    data[off + 101] ^= 0x10
    good_h5.write_bytes(bytes(data))
    check_fails(good_h5, tmp_path / "out.safetensors",
                f"error: {good_h5}: checksum mismatch for tensor '7.weight': stored sha256")
    r = run_zoo("verify", good_h5)
    assert r.returncode != 0 and "checksum mismatch for tensor '7.weight'" in r.stderr


def test_verify_against_tolerance(tmp_path):
    a, b = tmp_path / "a.h5", tmp_path / "b.safetensors"
    assert run_zoo("convert", "lenet", a).returncode == 0
    assert run_zoo("convert", a, b).returncode == 0
    r = run_zoo("verify", a, "--against", b)
    assert r.returncode == 0, r.stderr
    assert "max abs error: 0.0" in r.stdout
    # Perturb one weight in the safetensors copy through h5py → new zoo file.
    c = tmp_path / "c.h5"
    assert run_zoo("convert", b, c).returncode == 0
    with h5py.File(c, "r+") as f:
        w = f["tensors/9.weight"]
        v = w[()]
        v[0, 0] += 0.5
        w[...] = v
        w.attrs["sha256"] = hashlib.sha256(v.astype("<f4").tobytes()).hexdigest()
    r = run_zoo("verify", a, "--against", c, "--tolerance", "1e-6")
    assert r.returncode != 0
    assert "max abs error:" in r.stdout and "max relative error:" in r.stdout
    assert "error: bad input: outputs differ beyond tolerance: relative error" in r.stderr


def test_verify_reads_onnx(tmp_path):
    """verify takes .onnx directly, alone and against a zoo checkpoint (ONNX exported by zoo, run by zoo's importer)."""
    a, b = tmp_path / "a.h5", tmp_path / "a.onnx"
    assert run_zoo("convert", "lenet", a).returncode == 0
    r = run_zoo("convert", a, b)
    assert r.returncode == 0, r.stderr
    r = run_zoo("verify", b)
    assert r.returncode == 0, r.stderr
    assert "ONNX opset 17" in r.stdout
    r = run_zoo("verify", a, "--against", b, "--tolerance", "1e-4")
    assert r.returncode == 0, r.stderr
    assert "max abs error:" in r.stdout
