"""Keras .h5 import and export against Keras itself (KERAS_BACKEND=jax), issue 3.

Small fixtures are committed under fixtures/keras (scripts/make_keras_fixtures.py); MobileNet
(weights=None, 96x96) is generated here into a temp dir.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, run_zoo

os.environ.setdefault("KERAS_BACKEND", "jax")
FIX = os.path.join(ROOT, "fixtures", "keras")
SCRIPT = os.path.join(ROOT, "scripts", "make_keras_fixtures.py")


def zoo_predict(model_file, x_nchw, tmp_path):
    xp, yp = tmp_path / "x.npy", tmp_path / "y.npy"
    np.save(xp, x_nchw.astype(np.float32))
    r = run_zoo("infer", model_file, "--input", xp, "--output", yp)
    assert r.returncode == 0, r.stderr
    return np.load(yp)


def check_import(h5, x, y, tmp_path):
    out = tmp_path / "conv.h5"
    r = run_zoo("convert", h5, out)
    assert r.returncode == 0, r.stderr
    assert "(HWIO→OIHW)" in r.stdout
    z = zoo_predict(out, x, tmp_path)
    assert z.shape == y.shape
    err = np.abs(z - y).max()
    assert err <= 1e-4 * max(1.0, np.abs(y).max()), err


@pytest.mark.parametrize("name", ["cnn_k3", "cnn_k2", "seq_k3"])
def test_import_small(name, tmp_path):
    x = np.load(os.path.join(FIX, f"{name}.x.npy"))
    y = np.load(os.path.join(FIX, f"{name}.y.npy"))
    check_import(os.path.join(FIX, f"{name}.h5"), x, y, tmp_path)


def test_import_report_names_transposes(tmp_path):
    r = run_zoo("convert", os.path.join(FIX, "cnn_k2.h5"), tmp_path / "o.h5")
    assert r.returncode == 0, r.stderr
    assert "conv_s2.weight ← conv_s2/kernel:0 (HWIO→OIHW)" in r.stdout
    assert "layer 'conv_s2': 'same' padding made explicit and asymmetric (top 0, bottom 1, left 0, right 1)" in r.stdout
    assert "fc1.weight ← fc1/kernel:0 (transposed; input rows permuted from NHWC to NCHW flatten order of [8, 2, 2])" in r.stdout


def test_import_mobilenet(tmp_path):
    d = tmp_path / "mn"
    subprocess.run([sys.executable, SCRIPT, str(d), "--mobilenet"], check=True, capture_output=True)
    x = np.load(d / "mobilenet.x.npy")
    y = np.load(d / "mobilenet.y.npy")
    check_import(d / "mobilenet.h5", x, y, tmp_path)


def test_unsupported_layer(tmp_path):
    src = os.path.join(FIX, "unsupported.h5")
    out = tmp_path / "o.h5"
    r = run_zoo("convert", src, out)
    assert r.returncode != 0
    assert f"error: {src}: layer 'ln' has class LayerNormalization, which the Keras importer does not support" in r.stderr
    assert not out.exists()


@pytest.mark.parametrize("arch", ["resnet18", "googlenet", "lenet", "cnn_k3"])
def test_export_loads_in_keras(arch, tmp_path):
    import keras
    src = os.path.join(FIX, "cnn_k3.h5") if arch == "cnn_k3" else arch
    zoo_h5 = tmp_path / "m.h5"
    r = run_zoo("convert", src, zoo_h5)
    assert r.returncode == 0, r.stderr
    kfile = tmp_path / "k.h5"
    r = run_zoo("convert", zoo_h5, kfile, "--to", "keras")
    assert r.returncode == 0, r.stderr
    m = keras.saving.load_model(str(kfile))
    shape = m.inputs[0].shape[1:]  # H, W, C
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, shape[2], shape[0], shape[1])).astype(np.float32)
    y_zoo = zoo_predict(zoo_h5, x, tmp_path)
    y_keras = np.asarray(m.predict(x.transpose(0, 2, 3, 1), verbose=0))
    assert y_keras.shape == y_zoo.shape
    err = np.abs(y_keras - y_zoo).max()
    assert err <= 1e-4 * max(1.0, np.abs(y_zoo).max()), err


def test_import_vars_layout(tmp_path):
    """Weights stored as `<layer>/vars/<i>` (the Keras 3 variable layout) load by position."""
    import shutil
    import h5py
    src = tmp_path / "vars.h5"
    shutil.copy(os.path.join(FIX, "cnn_k3.h5"), src)
    with h5py.File(src, "r+") as f:
        mw = f["model_weights"]
        for ln in mw.attrs["layer_names"]:
            g = mw[ln]
            names = list(g.attrs["weight_names"])
            if not names:
                continue
            new = []
            for i, n in enumerate(names):
                d = g[n][()]
                del g[n]
                g.create_dataset(f"{ln}/vars/{i}", data=d)
                new.append(f"{ln}/vars/{i}")
            g.attrs["weight_names"] = np.array(new, dtype=object)
    x = np.load(os.path.join(FIX, "cnn_k3.x.npy"))
    y = np.load(os.path.join(FIX, "cnn_k3.y.npy"))
    check_import(src, x, y, tmp_path)
