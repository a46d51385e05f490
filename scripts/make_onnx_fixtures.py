"""Makes the small ONNX fixtures in fixtures/onnx with the python onnx package (onnx==1.22.0).

tiny.onnx: Conv (raw_data weight, float_data bias) -> Relu -> MaxPool -> Flatten -> Gemm(transB=1) -> Softmax,
dynamic batch 'N', opset 17, ir 8, with metadata_props and doc strings, to check that zoo's generated
protobuf code reads ONNX's wire format and writes it back byte for byte. tiny.expected.json holds the facts
the Swift test compares against (read with onnx, independent of zoo).
Run: .venv/bin/python scripts/make_onnx_fixtures.py
"""
import json, os
import numpy as np
import onnx
from onnx import helper, numpy_helper, TensorProto

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "onnx")
os.makedirs(root, exist_ok=True)
rng = np.random.default_rng(7)

w = rng.standard_normal((4, 1, 3, 3)).astype(np.float32)
b = rng.standard_normal((4,)).astype(np.float32)
fw = rng.standard_normal((3, 4 * 3 * 3)).astype(np.float32)
fb = rng.standard_normal((3,)).astype(np.float32)

inits = [
    numpy_helper.from_array(w, "conv.weight"),                                   # raw_data
    helper.make_tensor("conv.bias", TensorProto.FLOAT, [4], b.tolist()),         # float_data
    numpy_helper.from_array(fw, "fc.weight"),
    numpy_helper.from_array(fb, "fc.bias"),
]
nodes = [
    helper.make_node("Conv", ["x", "conv.weight", "conv.bias"], ["c"], name="conv",
                     kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1]),
    helper.make_node("Relu", ["c"], ["r"], name="relu"),
    helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
    helper.make_node("Flatten", ["p"], ["f"], name="flatten", axis=1),
    helper.make_node("Gemm", ["f", "fc.weight", "fc.bias"], ["g"], name="fc", transB=1, alpha=1.0, beta=1.0),
    helper.make_node("Softmax", ["g"], ["y"], name="softmax", axis=1),
]
graph = helper.make_graph(
    nodes, "tiny",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 6, 6])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
    initializer=inits, doc_string="tiny test graph")
model = helper.make_model(graph, producer_name="zoo-fixture", producer_version="1",
                          opset_imports=[helper.make_opsetid("", 17)], doc_string="zoo ONNX fixture")
model.ir_version = 8
helper.set_model_props(model, {"author": "zoo", "purpose": "wire-compat"})
onnx.checker.check_model(model, full_check=True)
data = model.SerializeToString()
open(os.path.join(root, "tiny.onnx"), "wb").write(data)

x = rng.standard_normal((2, 1, 6, 6)).astype(np.float32)
import onnxruntime as ort
y = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
facts = {
    "bytes": len(data),
    "ir_version": model.ir_version,
    "opset": 17,
    "producer_name": "zoo-fixture",
    "node_ops": [n.op_type for n in nodes],
    "node_names": [n.name for n in nodes],
    "initializers": {t.name: list(t.dims) for t in inits},
    "conv_weight_first": float(w.flat[0]), "conv_bias": b.tolist(),
    "input_dims": ["N", 1, 6, 6],
    "metadata": {"author": "zoo", "purpose": "wire-compat"},
    "x": x.flatten().tolist(), "x_shape": list(x.shape),
    "y": y.flatten().tolist(), "y_shape": list(y.shape),
}
json.dump(facts, open(os.path.join(root, "tiny.expected.json"), "w"), indent=1)
print("wrote", os.path.join(root, "tiny.onnx"), len(data), "bytes")
