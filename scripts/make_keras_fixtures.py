#!/usr/bin/env python3
"""Keras .h5 fixtures for the Keras importer (KERAS_BACKEND=jax).

    make_keras_fixtures.py OUTDIR             small models (committed under fixtures/keras)
    make_keras_fixtures.py OUTDIR --mobilenet keras.applications.MobileNet(weights=None, 96x96), made at test time

For each model NAME it writes NAME.h5 (Keras full-model legacy HDF5), NAME.x.npy (NCHW float32
input) and NAME.y.npy (Keras' prediction on the same input in NHWC). Weights are seeded random,
BatchNorm statistics included, so every mapping error shows in the outputs.

`cnn_k2.h5` is the functional CNN rewritten in the Keras 2 layout (weight names `kernel:0`,
`inbound_nodes` as nested lists, `model_config` as fixed-length bytes), since only Keras 3 is
installed; the rewrite follows what Keras 2.x `model.save('x.h5')` writes.
"""
import json
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")
import h5py  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers as L  # noqa: E402


def randomize(model, seed):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        ws = layer.get_weights()
        if not ws:
            continue
        new = []
        for w, v in zip(layer.weights, ws):
            name = w.path.split("/")[-1]
            if "variance" in name:
                new.append(rng.uniform(0.5, 1.5, v.shape).astype(np.float32))
            elif "gamma" in name:
                new.append(rng.uniform(0.5, 1.5, v.shape).astype(np.float32))
            else:
                new.append((rng.standard_normal(v.shape) * 0.2).astype(np.float32))
        layer.set_weights(new)


def functional_cnn():
    i = keras.Input((16, 16, 3), name="image")
    x = L.Conv2D(8, 3, strides=2, padding="same", name="conv_s2")(i)  # pads 0 top, 1 bottom
    x = L.BatchNormalization(epsilon=1e-3, momentum=0.9, name="bn1")(x)
    x = L.ReLU(name="relu1")(x)
    y = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="dw")(x)
    y = L.ReLU(max_value=6.0, name="relu6")(y)
    y = L.SeparableConv2D(8, 3, padding="same", activation="relu", name="sep")(y)
    x = L.Add(name="add")([x, y])
    a = L.Conv2D(4, 1, name="branch_a", use_bias=False)(x)
    b = L.ZeroPadding2D(((0, 1), (1, 0)), name="zpad")(x)
    b = L.Conv2D(4, 2, name="branch_b", activation="tanh")(b)
    x = L.Concatenate(name="concat")([a, b])
    x = L.MaxPooling2D(2, name="maxpool")(x)
    x = L.AveragePooling2D(3, strides=2, padding="same", name="avgpool")(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dense(16, activation="sigmoid", name="fc1")(x)
    x = L.Dropout(0.3, name="drop")(x)
    x = L.Dense(5, name="fc2")(x)
    x = L.Softmax(name="softmax")(x)
    return keras.Model(i, x, name="small_cnn")


def sequential_cnn():
    return keras.Sequential([
        keras.Input((12, 12, 2)),
        L.Conv2D(6, 3, padding="valid", name="c1"),
        L.BatchNormalization(center=False, name="bn"),
        L.Activation("relu", name="act"),
        L.Conv2D(6, 3, strides=2, padding="same", name="c2", activation="relu6"),
        L.GlobalAveragePooling2D(name="gap"),
        L.Reshape((1, 1, 6), name="to_image"),
        L.Conv2D(3, 1, name="head"),
        L.Reshape((3,), name="to_vector"),
        L.Activation("softmax", name="probs"),
    ], name="small_seq")


def to_keras2(src, dst):
    """Rewrites a Keras 3 legacy .h5 into the Keras 2 layout."""
    with h5py.File(src, "r") as f, h5py.File(dst, "w") as g:
        cfg = json.loads(f.attrs["model_config"])
        for layer in cfg["config"]["layers"]:
            old = []
            for node in layer.get("inbound_nodes", []):
                refs = []

                def walk(x):
                    if isinstance(x, dict) and x.get("class_name") == "__keras_tensor__":
                        h = x["config"]["keras_history"]
                        refs.append([h[0], h[1], h[2], {}])
                    elif isinstance(x, list):
                        for e in x:
                            walk(e)
                walk(node["args"])
                old.append(refs)
            layer["inbound_nodes"] = old
            c = layer["config"]
            if layer["class_name"] == "InputLayer":
                c["batch_input_shape"] = c.pop("batch_shape")
            c["dtype"] = "float32"
        cfg["config"]["input_layers"] = [cfg["config"]["input_layers"]]
        cfg["config"]["output_layers"] = [cfg["config"]["output_layers"]]
        cfg["class_name"] = "Functional"
        g.attrs["model_config"] = np.bytes_(json.dumps(cfg).encode("utf8"))
        g.attrs["keras_version"] = np.bytes_(b"2.15.0")
        g.attrs["backend"] = np.bytes_(b"tensorflow")
        mw = f["model_weights"]
        gw = g.create_group("model_weights")
        gw.attrs["layer_names"] = np.array([n.encode() for n in mw.attrs["layer_names"]], dtype="S")
        for lname in mw.attrs["layer_names"]:
            lg = mw[lname]
            out = gw.create_group(lname)
            names = [n for n in lg.attrs["weight_names"]] if len(lg.attrs["weight_names"]) else []
            out.attrs["weight_names"] = np.array([(n + ":0").encode() for n in names], dtype="S")
            for n in names:
                out.create_dataset(n + ":0", data=lg[n][()])


def save(model, outdir, name, seed, batch=2):
    randomize(model, seed)
    path = os.path.join(outdir, name + ".h5")
    model.save(path)
    rng = np.random.default_rng(seed + 1000)
    shape = model.inputs[0].shape[1:]
    x = rng.standard_normal((batch,) + tuple(shape)).astype(np.float32)
    y = np.asarray(model.predict(x, verbose=0)).astype(np.float32)
    np.save(os.path.join(outdir, name + ".x.npy"), np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    np.save(os.path.join(outdir, name + ".y.npy"), y)
    return path


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    keras.utils.set_random_seed(0)
    if "--mobilenet" in sys.argv:
        m = keras.applications.MobileNet(weights=None, input_shape=(96, 96, 3))
        save(m, out, "mobilenet", seed=7)
        return
    p = save(functional_cnn(), out, "cnn_k3", seed=1)
    to_keras2(p, os.path.join(out, "cnn_k2.h5"))
    for s in ("x", "y"):
        a = np.load(os.path.join(out, f"cnn_k3.{s}.npy"))
        np.save(os.path.join(out, f"cnn_k2.{s}.npy"), a)
    save(sequential_cnn(), out, "seq_k3", seed=2)
    # A model with a layer the importer does not know (for the error message test).
    i = keras.Input((8, 8, 3), name="img")
    x = L.Conv2D(2, 3, name="c")(i)
    x = L.LayerNormalization(name="ln")(x)
    keras.Model(i, x).save(os.path.join(out, "unsupported.h5"))


if __name__ == "__main__":
    main()
