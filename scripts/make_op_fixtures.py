#!/usr/bin/env python3
"""Makes fixtures/ops/op_cases.json: small random cases for every op of the zoo engine, with PyTorch's outputs.

Each case is a tiny zoo Graph (architecture JSON as Graph.fromJSON reads it), its parameters, an input batch and
torch's output. Float32 arrays are base64 of little-endian bytes. Run with the project venv:
    .venv/bin/python scripts/make_op_fixtures.py
The Swift tests (Tests/ZooTests/EngineOpTests.swift) run every case with the reference and the fast kernels.
Asymmetric paddings, which torch's layers lack, are produced with an explicit F.pad before the layer.
"""
import base64, json, os, sys
import numpy as np
import torch
import torch.nn.functional as F

torch.manual_seed(0)
rng = np.random.default_rng(0)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fixtures", "ops", "op_cases.json")


def b64(t):
    a = np.ascontiguousarray(t.detach().numpy() if isinstance(t, torch.Tensor) else t, dtype="<f4")
    return base64.b64encode(a.tobytes()).decode()


def arr(t):
    return {"shape": list(t.shape), "data": b64(t)}


def rand(*shape, scale=1.0):
    return torch.from_numpy(rng.standard_normal(shape).astype(np.float32) * scale)


def pad2d(t=0, l=0, b=0, r=0):
    return {"top": t, "left": l, "bottom": b, "right": r}


cases = []


def add_case(name, input_shape, nodes, output, params, x, y):
    graph = {"name": name, "input": "input", "inputShape": list(input_shape[1:]), "output": output, "nodes": nodes}
    cases.append({"name": name, "graph": graph, "params": {k: arr(v) for k, v in params.items()},
                  "input": arr(x), "expected": arr(y)})


def node(name, op, inputs, output=None):
    return {"name": name, "op": op, "inputs": inputs, "output": output or name}


def single(name, input_shape, op, fn, params=None, scale=1.0):
    x = rand(*input_shape, scale=scale)
    with torch.no_grad():
        y = fn(x)
    add_case(name, input_shape, [node("op", op, ["input"])], "op", {("op." + k): v for k, v in (params or {}).items()}, x, y)


# ---------------------------------------------------------------- Conv2d
def conv_case(name, n, c, h, w, oc, k, stride=(1, 1), pad=(0, 0, 0, 0), dil=(1, 1), groups=1, bias=True):
    kh, kw = k
    wt = rand(oc, c // groups, kh, kw, scale=0.5)
    params = {"weight": wt}
    bt = rand(oc) if bias else None
    if bias:
        params["bias"] = bt
    t, l, b, r = pad
    op = {"type": "Conv2d", "inChannels": c, "outChannels": oc, "kernel": [kh, kw], "stride": list(stride),
          "padding": pad2d(t, l, b, r), "dilation": list(dil), "groups": groups, "bias": bias}
    fn = lambda x: F.conv2d(F.pad(x, (l, r, t, b)), wt, bt, stride=stride, dilation=dil, groups=groups)
    single(name, (n, c, h, w), op, fn, params)


conv_case("conv_3x3_pad1", 2, 3, 7, 9, 4, (3, 3), pad=(1, 1, 1, 1))
conv_case("conv_5x5_stride2_nobias", 1, 3, 11, 10, 5, (5, 5), stride=(2, 2), pad=(1, 1, 1, 1), bias=False)
conv_case("conv_dilation2", 2, 4, 9, 8, 3, (3, 3), pad=(2, 2, 2, 2), dil=(2, 2))
conv_case("conv_dilation_rect", 1, 2, 10, 9, 3, (3, 2), stride=(1, 2), pad=(1, 0, 1, 0), dil=(2, 3))
conv_case("conv_groups2", 2, 4, 6, 7, 6, (3, 3), pad=(1, 1, 1, 1), groups=2)
conv_case("conv_groups3_stride2", 1, 6, 9, 9, 9, (3, 3), stride=(2, 2), groups=3, bias=False)
conv_case("conv_depthwise_s1", 2, 5, 8, 7, 5, (3, 3), pad=(1, 1, 1, 1), groups=5)
conv_case("conv_depthwise_s2", 1, 6, 9, 10, 6, (3, 3), stride=(2, 2), pad=(1, 1, 1, 1), groups=6, bias=False)
conv_case("conv_depthwise_mult2_dil", 1, 3, 9, 9, 6, (3, 3), pad=(2, 2, 2, 2), dil=(2, 2), groups=3)
conv_case("conv_depthwise_5x5_asym", 1, 4, 8, 8, 4, (5, 5), stride=(2, 2), pad=(1, 2, 2, 1), groups=4)
conv_case("conv_1x1", 2, 8, 6, 5, 5, (1, 1))
conv_case("conv_1x1_stride2", 1, 8, 7, 7, 4, (1, 1), stride=(2, 2), bias=False)
conv_case("conv_asym_pad", 2, 3, 8, 7, 4, (3, 3), stride=(2, 2), pad=(0, 1, 2, 0))
conv_case("conv_same_even_kernel", 1, 3, 6, 6, 2, (2, 2), pad=(0, 0, 1, 1))
conv_case("conv_7x7_stem", 1, 3, 20, 19, 8, (7, 7), stride=(2, 2), pad=(3, 3, 3, 3), bias=False)
conv_case("conv_rect_kernel", 1, 3, 7, 8, 4, (1, 3), stride=(2, 1), pad=(0, 1, 0, 1))
conv_case("conv_16_24", 2, 16, 14, 13, 24, (3, 3), pad=(1, 1, 1, 1))
conv_case("conv_kernel_larger_than_pad_input", 1, 2, 3, 3, 3, (5, 5), pad=(1, 1, 1, 1))
conv_case("conv_depthwise_wide", 2, 4, 5, 29, 4, (3, 3), pad=(1, 1, 1, 1), groups=4)
conv_case("conv_depthwise_wide_dil_mult2", 1, 2, 6, 27, 4, (3, 3), pad=(2, 1, 0, 2), dil=(2, 2), groups=2)
conv_case("conv_depthwise_wide_s2", 1, 3, 7, 40, 3, (3, 3), stride=(2, 2), pad=(1, 1, 1, 1), groups=3, bias=False)


# ---------------------------------------------------------------- ConvTranspose2d
def convt_case(name, n, c, h, w, oc, k, stride=(1, 1), pad=(0, 0), out_pad=(0, 0), dil=(1, 1), groups=1, bias=True):
    wt = rand(c, oc // groups, k[0], k[1], scale=0.5)
    bt = rand(oc) if bias else None
    params = {"weight": wt}
    if bias:
        params["bias"] = bt
    op = {"type": "ConvTranspose2d", "inChannels": c, "outChannels": oc, "kernel": list(k), "stride": list(stride),
          "padding": pad2d(pad[0], pad[1], pad[0], pad[1]), "outputPadding": list(out_pad), "dilation": list(dil),
          "groups": groups, "bias": bias}
    fn = lambda x: F.conv_transpose2d(x, wt, bt, stride=stride, padding=pad, output_padding=out_pad, groups=groups, dilation=dil)
    single(name, (n, c, h, w), op, fn, params)


convt_case("convt_3x3_s2_p1_op1", 2, 4, 5, 4, 3, (3, 3), stride=(2, 2), pad=(1, 1), out_pad=(1, 1))
convt_case("convt_4x4_s2_p1", 1, 3, 4, 5, 2, (4, 4), stride=(2, 2), pad=(1, 1))
convt_case("convt_groups_dil_nobias", 2, 4, 5, 5, 6, (3, 3), dil=(2, 2), groups=2, bias=False)
convt_case("convt_rect", 1, 2, 3, 6, 3, (2, 3), stride=(3, 1), pad=(0, 1))

# ---------------------------------------------------------------- Linear
for name, shape, inf, outf, bias in [("linear_bias", (3, 20), 20, 7, True), ("linear_nobias", (2, 9), 9, 4, False),
                                     ("linear_3d", (2, 3, 5), 5, 4, True)]:
    wt = rand(outf, inf, scale=0.3)
    bt = rand(outf) if bias else None
    p = {"weight": wt}
    if bias:
        p["bias"] = bt
    single(name, shape, {"type": "Linear", "inFeatures": inf, "outFeatures": outf, "bias": bias},
           lambda x: F.linear(x, wt, bt), p)

# ---------------------------------------------------------------- BatchNorm (inference, running statistics)
for name, shape, eps in [("bn_eps1e-5", (2, 5, 4, 3), 1e-5), ("bn_eps1e-3", (1, 3, 5, 5), 1e-3), ("bn_2d_input", (4, 6), 1e-5)]:
    c = shape[1]
    g, b = rand(c), rand(c)
    m, v = rand(c, scale=0.5), torch.rand(c) * 2 + 0.1
    single(name, shape, {"type": "BatchNorm2d", "features": c, "eps": eps, "momentum": 0.1},
           lambda x: F.batch_norm(x, m, v, g, b, training=False, eps=eps),
           {"weight": g, "bias": b, "running_mean": m, "running_var": v})

# ---------------------------------------------------------------- activations
single("relu", (2, 3, 5, 7), {"type": "ReLU"}, F.relu, scale=4)
single("relu6", (2, 3, 5, 7), {"type": "ReLU6"}, F.relu6, scale=5)
single("clip", (2, 3, 5, 7), {"type": "Clip", "min": -0.5, "max": 0.7}, lambda x: x.clamp(-0.5, 0.7))
single("sigmoid", (2, 3, 5, 7), {"type": "Sigmoid"}, torch.sigmoid, scale=4)
single("tanh", (2, 3, 5, 7), {"type": "Tanh"}, torch.tanh, scale=3)
single("relu_long", (1, 4, 33, 35), {"type": "ReLU"}, F.relu)
single("softmax_axis1", (2, 5, 3, 3), {"type": "Softmax", "axis": 1}, lambda x: F.softmax(x, 1), scale=3)
single("softmax_last", (3, 10), {"type": "Softmax", "axis": -1}, lambda x: F.softmax(x, -1), scale=5)
single("softmax_axis2", (2, 3, 4, 5), {"type": "Softmax", "axis": 2}, lambda x: F.softmax(x, 2))


# ---------------------------------------------------------------- pooling
def pool_op(kind, k, s, pad=(0, 0, 0, 0), dil=(1, 1), ceil=False, cip=True):
    return {"type": kind, "kernel": list(k), "stride": list(s), "padding": pad2d(*pad), "dilation": list(dil),
            "ceilMode": ceil, "countIncludePad": cip}


def maxpool_case(name, shape, k, s, p=0, dil=1, ceil=False):
    single(name, shape, pool_op("MaxPool2d", (k, k), (s, s), (p, p, p, p), (dil, dil), ceil),
           lambda x: F.max_pool2d(x, k, s, p, dil, ceil_mode=ceil))


maxpool_case("maxpool_3_s2_p1", (2, 3, 9, 8), 3, 2, 1)
maxpool_case("maxpool_2_s2_ceil_odd", (1, 2, 7, 7), 2, 2, 0, ceil=True)
maxpool_case("maxpool_3_s2_p1_ceil", (1, 2, 8, 8), 3, 2, 1, ceil=True)
maxpool_case("maxpool_3_s2_ceil_googlenet", (1, 3, 11, 11), 3, 2, 0, ceil=True)
maxpool_case("maxpool_dil2", (2, 2, 9, 9), 3, 1, 1, dil=2)
maxpool_case("maxpool_dil2_s2_ceil", (1, 2, 10, 10), 3, 2, 1, dil=2, ceil=True)
maxpool_case("maxpool_3_s1_p1", (1, 3, 6, 5), 3, 1, 1)
single("maxpool_rect", (1, 2, 9, 8), pool_op("MaxPool2d", (3, 2), (2, 1), (1, 0, 1, 0)),
       lambda x: F.max_pool2d(x, (3, 2), (2, 1), (1, 0)))
single("maxpool_asym_pad", (1, 2, 8, 7), pool_op("MaxPool2d", (3, 3), (2, 2), (0, 1, 1, 0)),
       lambda x: F.max_pool2d(F.pad(x, (1, 0, 0, 1), value=float("-inf")), 3, 2))


def avgpool_case(name, shape, k, s, p=0, ceil=False, cip=True):
    single(name, shape, pool_op("AvgPool2d", (k, k), (s, s), (p, p, p, p), (1, 1), ceil, cip),
           lambda x: F.avg_pool2d(x, k, s, p, ceil_mode=ceil, count_include_pad=cip))


for cip in (True, False):
    tag = "incl" if cip else "excl"
    avgpool_case(f"avgpool_3_s2_p1_{tag}", (2, 3, 9, 8), 3, 2, 1, cip=cip)
    avgpool_case(f"avgpool_3_s2_p1_ceil_{tag}", (1, 2, 8, 8), 3, 2, 1, ceil=True, cip=cip)
    avgpool_case(f"avgpool_3_s2_p1_ceil_odd_{tag}", (1, 2, 9, 9), 3, 2, 1, ceil=True, cip=cip)
    avgpool_case(f"avgpool_2_s2_ceil_odd_{tag}", (1, 2, 7, 7), 2, 2, 0, ceil=True, cip=cip)
    avgpool_case(f"avgpool_5_s3_p2_ceil_{tag}", (1, 2, 10, 11), 5, 3, 2, ceil=True, cip=cip)
    single(f"avgpool_rect_{tag}", (1, 2, 9, 8), pool_op("AvgPool2d", (3, 2), (2, 1), (1, 1, 1, 1), (1, 1), False, cip),
           lambda x, cip=cip: F.avg_pool2d(x, (3, 2), (2, 1), (1, 1), count_include_pad=cip))
    # asymmetric padding (ONNX/Keras 'same'): pad explicitly, divide by the matching count.
    def asym(x, cip=cip):
        xp = F.pad(x, (1, 0, 0, 1))
        s = F.avg_pool2d(xp, 3, 2) * 9
        ones = torch.ones_like(x) if not cip else torch.ones_like(x)
        cnt = F.avg_pool2d(F.pad(ones, (1, 0, 0, 1), value=0.0 if not cip else 1.0), 3, 2) * 9
        return s / cnt
    single(f"avgpool_asym_pad_{tag}", (1, 2, 8, 7), pool_op("AvgPool2d", (3, 3), (2, 2), (0, 1, 1, 0), (1, 1), False, cip), asym)
single("avgpool_2_s2_lenet", (2, 6, 28, 28), pool_op("AvgPool2d", (2, 2), (2, 2)), lambda x: F.avg_pool2d(x, 2, 2))

for name, shape, o in [("adaptive_7_to_3", (2, 3, 7, 7), (3, 3)), ("adaptive_10x7_to_4x5", (1, 2, 10, 7), (4, 5)),
                       ("adaptive_to_1", (2, 4, 5, 6), (1, 1)), ("adaptive_up_5_to_7", (1, 2, 5, 5), (7, 7)),
                       ("adaptive_6_to_6", (1, 2, 6, 6), (6, 6))]:
    single(name, shape, {"type": "AdaptiveAvgPool2d", "output": list(o)}, lambda x, o=o: F.adaptive_avg_pool2d(x, o))
single("global_max_pool", (2, 3, 5, 7), {"type": "GlobalMaxPool"}, lambda x: x.amax(dim=(2, 3), keepdim=True))

# ---------------------------------------------------------------- shape ops
single("flatten_1", (2, 3, 4, 5), {"type": "Flatten", "startDim": 1}, lambda x: torch.flatten(x, 1))
single("flatten_2", (2, 3, 4, 5), {"type": "Flatten", "startDim": 2}, lambda x: torch.flatten(x, 2))
single("reshape", (2, 12, 5), {"type": "Reshape", "shape": [3, -1]}, lambda x: x.reshape(2, 3, 20))
single("reshape_keep0", (2, 4, 6), {"type": "Reshape", "shape": [0, 3, 2]}, lambda x: x.reshape(2, 4, 3, 2))
single("dropout", (2, 3, 4), {"type": "Dropout", "p": 0.5}, lambda x: x)
single("identity", (2, 3, 4), {"type": "Identity"}, lambda x: x)

# ---------------------------------------------------------------- LRN
for name, shape, size, alpha, beta, k in [("lrn_5", (2, 7, 4, 3), 5, 1e-1, 0.75, 2.0), ("lrn_even_2", (1, 6, 3, 3), 2, 0.5, 0.5, 1.0),
                                          ("lrn_3_wide", (1, 4, 10, 30), 3, 1.0, 0.6, 1.0), ("lrn_size_gt_c", (1, 3, 2, 2), 7, 0.3, 0.75, 1.5)]:
    single(name, shape, {"type": "LocalResponseNorm", "size": size, "alpha": alpha, "beta": beta, "k": k},
           lambda x, a=(size, alpha, beta, k): F.local_response_norm(x, *a), scale=2)

# ---------------------------------------------------------------- Pad
for name, pads, value in [("pad_zero", (1, 2, 0, 3), 0.0), ("pad_value", (2, 0, 1, 1), -1.5), ("pad_negative", (-1, 1, 2, -2), 0.25)]:
    t, l, b, r = pads
    single(name, (2, 2, 5, 6), {"type": "Pad", **pad2d(t, l, b, r), "value": value},
           lambda x, p=(l, r, t, b), v=value: F.pad(x, p, value=v))


# ---------------------------------------------------------------- binary ops with broadcasting, concat
def binary_case(name, shape, cshape, kind, const_first=False):
    x = rand(*shape)
    cval = rand(*cshape)
    ins = ["c", "input"] if const_first else ["input", "c"]
    nodes = [node("c", {"type": "Constant", "shape": list(cshape)}, []), node("op", {"type": kind}, ins)]
    a, b = (cval, x) if const_first else (x, cval)
    y = a + b if kind == "Add" else a * b
    add_case(name, shape, nodes, "op", {"c.value": cval}, x, y)


binary_case("add_channel_bcast", (2, 3, 4, 5), (1, 3, 1, 1), "Add")
binary_case("add_chw_bcast", (2, 3, 4, 5), (3, 1, 1), "Add")
binary_case("add_last_dim", (2, 3, 4, 5), (5,), "Add", const_first=True)
binary_case("add_both_expand", (2, 3, 1, 5), (4, 1), "Add")
binary_case("mul_channel_bcast", (2, 3, 4, 5), (1, 3, 1, 1), "Mul", const_first=True)
binary_case("mul_scalar", (2, 3, 4), (1,), "Mul")
binary_case("mul_full", (2, 3, 4), (2, 3, 4), "Mul")
binary_case("add_middle", (2, 3, 4, 5), (3, 4, 1), "Add")

x = rand(2, 3, 4, 5)
add_case("add_same_shape", x.shape, [node("r", {"type": "Tanh"}, ["input"]), node("op", {"type": "Add"}, ["input", "r"])],
         "op", {}, x, x + torch.tanh(x))
add_case("mul_same_shape", x.shape, [node("r", {"type": "Sigmoid"}, ["input"]), node("op", {"type": "Mul"}, ["r", "input"])],
         "op", {}, x, x * torch.sigmoid(x))
add_case("concat_axis1_3way", x.shape, [node("a", {"type": "Sigmoid"}, ["input"]), node("b", {"type": "Tanh"}, ["input"]),
                                        node("op", {"type": "Concat", "axis": 1}, ["input", "a", "b"])],
         "op", {}, x, torch.cat([x, torch.sigmoid(x), torch.tanh(x)], 1))
add_case("concat_axis_last", x.shape, [node("a", {"type": "ReLU"}, ["input"]), node("op", {"type": "Concat", "axis": -1}, ["a", "input"])],
         "op", {}, x, torch.cat([F.relu(x), x], -1))
w1 = rand(4, 3, 1, 1)
add_case("concat_uneven", x.shape,
         [node("a", {"type": "Conv2d", "inChannels": 3, "outChannels": 4, "kernel": [1, 1], "stride": [1, 1], "padding": pad2d(),
                     "dilation": [1, 1], "groups": 1, "bias": False}, ["input"]),
          node("op", {"type": "Concat", "axis": 1}, ["a", "input"])],
         "op", {"a.weight": w1}, x, torch.cat([F.conv2d(x, w1), x], 1))


# ---------------------------------------------------------------- a small graph with branches (whole-graph test)
def conv_params(prefix, oc, ic, k, bias=True):
    p = {prefix + ".weight": rand(oc, ic, k, k, scale=0.4)}
    if bias:
        p[prefix + ".bias"] = rand(oc, scale=0.1)
    return p


def bn_params(prefix, c):
    return {prefix + ".weight": rand(c, scale=0.3) + 1, prefix + ".bias": rand(c, scale=0.2),
            prefix + ".running_mean": rand(c, scale=0.2), prefix + ".running_var": torch.rand(c) + 0.5}


def conv_op(ic, oc, k, s=1, p=0, bias=True, groups=1):
    return {"type": "Conv2d", "inChannels": ic, "outChannels": oc, "kernel": [k, k], "stride": [s, s], "padding": pad2d(p, p, p, p),
            "dilation": [1, 1], "groups": groups, "bias": bias}


def bn_op(c, eps=1e-5):
    return {"type": "BatchNorm2d", "features": c, "eps": eps, "momentum": 0.1}


P = {}
P.update(conv_params("stem.0", 8, 3, 3, bias=False)); P.update(bn_params("stem.1", 8))
P.update(conv_params("a.conv", 8, 8, 3, bias=False)); P.update(bn_params("a.bn", 8))
P.update(conv_params("b.conv", 8, 8, 1))
P.update(conv_params("d.conv", 4, 8, 1, bias=False)); P.update(bn_params("d.bn", 4))
P.update(conv_params("dw", 12, 1, 3))
P["fc.weight"] = rand(5, 12, scale=0.3); P["fc.bias"] = rand(5, scale=0.1)
nodes = [
    node("stem.0", conv_op(3, 8, 3, 2, 1, bias=False), ["input"]),
    node("stem.1", bn_op(8), ["stem.0"]),
    node("stem.2", {"type": "ReLU"}, ["stem.1"]),
    node("a.conv", conv_op(8, 8, 3, 1, 1, bias=False), ["stem.2"]),
    node("a.bn", bn_op(8, 1e-3), ["a.conv"]),
    node("b.conv", conv_op(8, 8, 1), ["stem.2"]),
    node("add", {"type": "Add"}, ["a.bn", "b.conv"]),
    node("relu", {"type": "ReLU6"}, ["add"]),
    node("c.pool", pool_op("MaxPool2d", (3, 3), (1, 1), (1, 1, 1, 1)), ["relu"]),
    node("d.conv", conv_op(8, 4, 1, bias=False), ["relu"]),
    node("d.bn", bn_op(4), ["d.conv"]),
    node("d.relu", {"type": "ReLU"}, ["d.bn"]),
    node("cat", {"type": "Concat", "axis": 1}, ["c.pool", "d.relu"]),
    node("lrn", {"type": "LocalResponseNorm", "size": 3, "alpha": 0.01, "beta": 0.75, "k": 1.0}, ["cat"]),
    node("dw", conv_op(12, 12, 3, 1, 1, groups=12), ["lrn"]),
    node("pool", pool_op("AvgPool2d", (2, 2), (2, 2), ceil=True, cip=False), ["dw"]),
    node("gap", {"type": "AdaptiveAvgPool2d", "output": [1, 1]}, ["pool"]),
    node("flat", {"type": "Flatten", "startDim": 1}, ["gap"]),
    node("drop", {"type": "Dropout", "p": 0.5}, ["flat"]),
    node("fc", {"type": "Linear", "inFeatures": 12, "outFeatures": 5, "bias": True}, ["drop"]),
    node("prob", {"type": "Softmax", "axis": 1}, ["fc"]),
]
P["dw.weight"] = rand(12, 1, 3, 3, scale=0.4)


def bn(t, p, eps=1e-5):
    return F.batch_norm(t, P[p + ".running_mean"], P[p + ".running_var"], P[p + ".weight"], P[p + ".bias"], False, 0.1, eps)


def branchy(x):
    s = F.relu(bn(F.conv2d(x, P["stem.0.weight"], stride=2, padding=1), "stem.1"))
    a = bn(F.conv2d(s, P["a.conv.weight"], padding=1), "a.bn", 1e-3)
    b = F.conv2d(s, P["b.conv.weight"], P["b.conv.bias"])
    r = F.relu6(a + b)
    c = F.max_pool2d(r, 3, 1, 1)
    d = F.relu(bn(F.conv2d(r, P["d.conv.weight"]), "d.bn"))
    t = F.local_response_norm(torch.cat([c, d], 1), 3, 0.01, 0.75, 1.0)
    t = F.conv2d(t, P["dw.weight"], P["dw.bias"], padding=1, groups=12)
    t = F.adaptive_avg_pool2d(F.avg_pool2d(t, 2, 2, ceil_mode=True, count_include_pad=False), 1).flatten(1)
    return F.softmax(F.linear(t, P["fc.weight"], P["fc.bias"]), 1)


x = rand(3, 3, 15, 13)
with torch.no_grad():
    y = branchy(x)
add_case("graph_branches", x.shape, nodes, "prob", P, x, y)

os.makedirs(os.path.dirname(OUT), exist_ok=True)
with open(OUT + ".tmp", "w") as f:
    json.dump({"generator": "scripts/make_op_fixtures.py", "torch": torch.__version__, "cases": cases}, f, separators=(",", ":"))
os.replace(OUT + ".tmp", OUT)
print(f"wrote {len(cases)} cases to {os.path.relpath(OUT, ROOT)} ({os.path.getsize(OUT)} bytes)")
