"""`zoo-tool infer` against PyTorch (issue 2, "Done when"), and its errors on bad input.

Weights, inputs and torch's eval outputs come from scripts/make_model_fixtures.py: lenet is committed
under fixtures/models; the large models are generated here into fixtures/large/models (git-ignored)
and regenerated when the script changes.
"""
import hashlib
import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, run_zoo

SCRIPT = os.path.join(ROOT, "scripts", "make_model_fixtures.py")
SMALL_DIR = os.path.join(ROOT, "fixtures", "models")
LARGE_DIR = os.path.join(ROOT, "fixtures", "large", "models")
LARGE = ["alexnet", "vgg11_bn", "nin", "googlenet", "resnet18", "mobilenet_v2"]


def script_hash():
    with open(SCRIPT, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


@pytest.fixture(scope="session")
def large_fixtures():
    stamp = os.path.join(LARGE_DIR, ".made-by-" + script_hash())
    missing = [n for n in LARGE if not os.path.exists(os.path.join(LARGE_DIR, n + ".output.npy"))]
    if not os.path.exists(stamp):
        missing = LARGE
    if missing:
        os.makedirs(LARGE_DIR, exist_ok=True)
        for f in os.listdir(LARGE_DIR):
            if f.startswith(".made-by-"):
                os.remove(os.path.join(LARGE_DIR, f))
        subprocess.run([sys.executable, SCRIPT, "--out", LARGE_DIR] + missing, check=True)
        open(stamp, "w").close()
    return LARGE_DIR


def fixture_dir(name, request):
    return SMALL_DIR if name == "lenet" else request.getfixturevalue("large_fixtures")


@pytest.mark.parametrize("name", ["lenet"] + LARGE)
def test_infer_matches_pytorch(name, request, zoo_tool, tmp_path):
    d = fixture_dir(name, request)
    out = tmp_path / "y.npy"
    p = run_zoo("infer", name, "--weights", os.path.join(d, name + ".safetensors"),
                "--input", os.path.join(d, name + ".input.npy"), "--output", out)
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    y = np.load(out)
    ref = np.load(os.path.join(d, name + ".output.npy"))
    assert y.dtype == np.float32 and y.shape == ref.shape
    err = float(np.abs(y.astype(np.float64) - ref).max())
    tol = 1e-4 * max(1.0, float(np.abs(ref).max()))
    print("%s: max|d| %.3g (tolerance %.3g)" % (name, err, tol))
    assert err <= tol, "%s: max|d| %.3g > %.3g" % (name, err, tol)
    # Outputs of small magnitude (alexnet, googlenet) must also agree relative to their scale.
    assert err <= 1e-3 * float(np.abs(ref).max()), "%s: max|d| %.3g against max|y| %.3g" % (name, err, float(np.abs(ref).max()))
    assert (y.argmax(axis=1) == ref.argmax(axis=1)).all()


# ---------------------------------------------------------------- bad input

LENET_W = os.path.join(SMALL_DIR, "lenet.safetensors")
LENET_X = os.path.join(SMALL_DIR, "lenet.input.npy")


def lenet_state():
    from safetensors.numpy import load_file
    return load_file(LENET_W)


def save_state(path, sd):
    from safetensors.numpy import save_file
    save_file(sd, str(path))


def expect_error(args, message, out):
    p = run_zoo(*args)
    assert p.returncode != 0
    assert p.stderr == "error: " + message + "\n"
    assert p.stdout == ""
    assert not os.path.exists(out), "no output file on error"
    assert not any(f.name.startswith("." + os.path.basename(out)) for f in out.parent.iterdir()), "no temp file left"


def infer_args(weights, x, out, model="lenet"):
    return ["infer", model, "--weights", weights, "--input", x, "--output", out]


def read_header(raw):
    n = struct.unpack("<Q", raw[:8])[0]
    return n, json.loads(raw[8:8 + n])


def test_truncated_safetensors(zoo_tool, tmp_path):
    raw = open(LENET_W, "rb").read()
    cut = raw[:len(raw) // 2]
    w = tmp_path / "cut.safetensors"
    w.write_bytes(cut)
    n, header = read_header(raw)
    buffer = len(cut) - 8 - n
    entries = sorted((v["data_offsets"], k) for k, v in header.items() if k != "__metadata__")
    (b, e), first_beyond = next(((o, k) for o, k in entries if o[1] > buffer))
    expect_error(infer_args(w, LENET_X, tmp_path / "y.npy"),
                 "%s: truncated safetensors file: tensor '%s' ends at data offset %d, but the data buffer holds only %d bytes"
                 % (w, first_beyond, e, buffer), tmp_path / "y.npy")


def test_truncated_inside_header(zoo_tool, tmp_path):
    raw = open(LENET_W, "rb").read()
    n, _ = read_header(raw)
    w = tmp_path / "cut.safetensors"
    w.write_bytes(raw[:8 + n // 2])
    expect_error(infer_args(w, LENET_X, tmp_path / "y.npy"),
                 "%s: corrupt or truncated safetensors file: header length %d exceeds the %d bytes that follow it" % (w, n, n // 2),
                 tmp_path / "y.npy")


def test_corrupt_safetensors_header(zoo_tool, tmp_path):
    raw = bytearray(open(LENET_W, "rb").read())
    n, _ = read_header(raw)
    raw[8 + 20:8 + 28] = b"\x00" * 8  # garbage inside the JSON header
    w = tmp_path / "corrupt.safetensors"
    w.write_bytes(bytes(raw))
    text = raw[8:8 + n].decode("latin-1")
    assert text[19] not in "\\\"", "the garbage lands inside a string"
    expect_error(infer_args(w, LENET_X, tmp_path / "y.npy"),
                 "%s: safetensors header is not valid JSON: control character in string at header byte 20" % w,
                 tmp_path / "y.npy")


def test_wrong_shape_names_parameter_and_both_shapes(zoo_tool, tmp_path):
    sd = lenet_state()
    sd["3.weight"] = np.zeros((16, 6, 3, 3), np.float32)
    w = tmp_path / "w.safetensors"
    save_state(w, sd)
    expect_error(infer_args(w, LENET_X, tmp_path / "y.npy"),
                 "%s: shape mismatch for parameter '3.weight': architecture expects [16, 6, 5, 5], file has [16, 6, 3, 3]" % w,
                 tmp_path / "y.npy")


def test_missing_keys(zoo_tool, tmp_path):
    sd = lenet_state()
    del sd["11.bias"], sd["7.weight"]
    w = tmp_path / "w.safetensors"
    save_state(w, sd)
    expect_error(infer_args(w, LENET_X, tmp_path / "y.npy"),
                 "%s: missing parameters (2): 7.weight, 11.bias" % w, tmp_path / "y.npy")


def test_unexpected_keys(zoo_tool, tmp_path):
    sd = lenet_state()
    sd["12.weight"] = np.ones((3,), np.float32)
    sd["head.bias"] = np.ones((3,), np.float32)
    w = tmp_path / "w.safetensors"
    save_state(w, sd)
    expect_error(infer_args(w, LENET_X, tmp_path / "y.npy"),
                 "%s: unexpected parameters (2): 12.weight, head.bias" % w, tmp_path / "y.npy")


def test_npy_wrong_rank(zoo_tool, tmp_path):
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, 28, 28), np.float32))
    expect_error(infer_args(LENET_W, x, tmp_path / "y.npy"),
                 "%s: array has shape (1, 28, 28) (3-D), but lenet takes a 4-D input (N, 1, 28, 28)" % x, tmp_path / "y.npy")


def test_npy_wrong_dtype(zoo_tool, tmp_path):
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((2, 1, 28, 28), np.float64))
    expect_error(infer_args(LENET_W, x, tmp_path / "y.npy"),
                 "%s: unsupported dtype '<f8': zoo reads little-endian float32 arrays ('<f4') only; convert with x.astype('<f4')" % x,
                 tmp_path / "y.npy")


def test_npy_fortran_order(zoo_tool, tmp_path):
    x = tmp_path / "x.npy"
    np.save(x, np.asfortranarray(np.zeros((2, 1, 28, 28), np.float32)))
    expect_error(infer_args(LENET_W, x, tmp_path / "y.npy"),
                 "%s: Fortran-order array: zoo reads C-order arrays only; save np.ascontiguousarray(x)" % x, tmp_path / "y.npy")


def test_npy_wrong_channels(zoo_tool, tmp_path):
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((2, 3, 28, 28), np.float32))
    expect_error(infer_args(LENET_W, x, tmp_path / "y.npy"),
                 "%s: array has shape (2, 3, 28, 28), but lenet takes (N, 1, 28, 28): 1 channel(s), not 3" % x, tmp_path / "y.npy")


def test_unknown_architecture_and_missing_files(zoo_tool, tmp_path):
    out = tmp_path / "y.npy"
    expect_error(["infer", "lenet5", "--input", LENET_X, "--output", out],
                 "unknown architecture 'lenet5' (see `zoo-tool list`)", out)
    expect_error(infer_args(tmp_path / "none.safetensors", LENET_X, out),
                 "%s: cannot open: No such file or directory" % (tmp_path / "none.safetensors"), out)
    expect_error(infer_args(LENET_W, tmp_path / "none.npy", out),
                 "%s: cannot open: No such file or directory" % (tmp_path / "none.npy"), out)


def test_unwritable_output_leaves_nothing(zoo_tool, tmp_path):
    out = tmp_path / "missing-dir" / "y.npy"
    p = run_zoo(*infer_args(LENET_W, LENET_X, out))
    assert p.returncode == 1
    assert p.stderr == "error: %s: cannot create file: No such file or directory\n" % out


def test_infer_top_classes_match_torch_argmax(zoo_tool, tmp_path):
    out = tmp_path / "y.npy"
    p = run_zoo(*infer_args(LENET_W, LENET_X, out), "--top", "2")
    assert p.returncode == 0, p.stderr
    ref = np.load(os.path.join(SMALL_DIR, "lenet.output.npy"))
    lines = p.stdout.strip().split("\n")
    assert len(lines) == ref.shape[0]
    for i, line in enumerate(lines):
        order = np.argsort(-ref[i], kind="stable")[:2]
        assert line.startswith("sample %d: class %d (" % (i, order[0])), line
        assert ", class %d (" % order[1] in line, line


def test_weights_only_file_with_arch(zoo_tool, tmp_path):
    out = tmp_path / "y.npy"
    p = run_zoo("infer", LENET_W, "--arch", "lenet", "--input", LENET_X, "--output", out)
    assert p.returncode == 0, p.stderr
    np.testing.assert_allclose(np.load(out), np.load(os.path.join(SMALL_DIR, "lenet.output.npy")), atol=1e-5)
    expect_error(["infer", LENET_W, "--input", LENET_X, "--output", tmp_path / "z.npy"],
                 "%s: a safetensors file holds weights only; name its architecture (a catalog name or an architecture JSON file) with --arch" % LENET_W,
                 tmp_path / "z.npy")


def test_architecture_json_file(zoo_tool, tmp_path):
    """MODEL may be an architecture JSON file: a hand-written two-layer spec, checked against numpy."""
    spec = {
        "name": "tiny", "input": "input", "inputShape": [4], "output": "fc2",
        "nodes": [
            {"name": "fc1", "op": {"type": "Linear", "inFeatures": 4, "outFeatures": 3, "bias": True}, "inputs": ["input"], "output": "fc1"},
            {"name": "act", "op": {"type": "ReLU"}, "inputs": ["fc1"], "output": "act"},
            {"name": "fc2", "op": {"type": "Linear", "inFeatures": 3, "outFeatures": 2, "bias": True}, "inputs": ["act"], "output": "fc2"},
        ],
    }
    arch = tmp_path / "tiny.json"
    arch.write_text(json.dumps(spec))
    rng = np.random.default_rng(0)
    sd = {"fc1.weight": rng.standard_normal((3, 4)).astype(np.float32), "fc1.bias": rng.standard_normal(3).astype(np.float32),
          "fc2.weight": rng.standard_normal((2, 3)).astype(np.float32), "fc2.bias": rng.standard_normal(2).astype(np.float32)}
    w = tmp_path / "tiny.safetensors"
    save_state(w, sd)
    x = rng.standard_normal((5, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    p = run_zoo("infer", arch, "--weights", w, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy")
    assert p.returncode == 0, p.stderr
    h = np.maximum(x @ sd["fc1.weight"].T + sd["fc1.bias"], 0)
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), h @ sd["fc2.weight"].T + sd["fc2.bias"], rtol=1e-5, atol=1e-5)


def test_reference_kernels_match_pytorch(zoo_tool, tmp_path):
    out = tmp_path / "y.npy"
    p = run_zoo(*infer_args(LENET_W, LENET_X, out), "--reference")
    assert p.returncode == 0, p.stderr
    ref = np.load(os.path.join(SMALL_DIR, "lenet.output.npy"))
    assert float(np.abs(np.load(out) - ref).max()) <= 1e-5
