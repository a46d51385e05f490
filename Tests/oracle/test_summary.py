"""`zoo-tool summary` and `list` against PyTorch: parameter counts and every layer's output shape
(by module path, from forward hooks on the reference definition)."""
import json
import os
import sys

import pytest
import torch

from conftest import ROOT, run_zoo

sys.path.insert(0, os.path.join(ROOT, "scripts"))
import make_model_fixtures as mmf  # noqa: E402  (the reference definitions)


def torch_shapes(model, shape):
    shapes = {}
    hooks = []
    for name, m in model.named_modules():
        if name and not list(m.children()):
            hooks.append(m.register_forward_hook(lambda mod, i, o, name=name: shapes.__setitem__(name, list(o.shape))))
    model.eval()
    with torch.no_grad():
        y = model(torch.zeros(shape))
    for h in hooks:
        h.remove()
    return shapes, list(y.shape)


@pytest.mark.parametrize("name,shape", [
    ("lenet", (1, 1, 28, 28)), ("nin", (1, 1, 224, 224)), ("alexnet", (2, 3, 224, 224)),
    ("googlenet", (1, 3, 224, 224)), ("resnet18", (1, 3, 160, 128)), ("mobilenet_v2", (1, 3, 224, 224)),
])
def test_summary_shapes_and_counts_match_torch(name, shape, zoo_tool):
    torch.manual_seed(0)
    model, _ = mmf.build(name)
    expected, out_shape = torch_shapes(model, shape)
    p = run_zoo("summary", name, "--input", "x".join(map(str, shape)), "--json")
    assert p.returncode == 0, p.stderr
    s = json.loads(p.stdout)
    assert s["totalParameters"] == sum(t.numel() for t in model.parameters())
    assert s["trainableParameters"] == s["totalParameters"] and s["nonTrainableParameters"] == 0
    assert s["buffers"] == sum(t.numel() for k, t in model.state_dict().items() if not k.endswith("num_batches_tracked")) - s["totalParameters"]
    assert s["inputShape"] == list(shape) and s["outputShape"] == out_shape
    assert s["parameterBytes"] == 4 * s["totalParameters"]
    compared = 0
    for r in s["rows"]:
        if r["isGroup"]:
            continue
        if r["parameters"] > 0:
            assert r["path"] in expected, "layer %s has no module of that path in torch" % r["path"]
        if r["path"] in expected:
            assert r["outputShape"] == expected[r["path"]], r["path"]
            compared += 1
    assert compared >= len([r for r in s["rows"] if r["parameters"] > 0 and not r["isGroup"]])


def test_summary_text_table(zoo_tool):
    p = run_zoo("summary", "lenet")
    assert p.returncode == 0 and p.stderr == ""
    lines = p.stdout.splitlines()
    assert lines[3].split() == ["Layer", "Type", "Output", "Shape", "Param", "#", "Mult-Adds"]
    rows = [l.split() for l in lines[5:17]]
    # d2l LeNet: conv 1->6 5x5 pad 2 on 28x28: 6*25+6 params, 6*28*28*25 mult-adds.
    assert rows[0] == ["0", "Conv2d", "[1,", "6,", "28,", "28]", "156", "117,600"]
    assert rows[11] == ["11", "Linear", "[1,", "10]", "850", "840"]
    assert "Total params: 61,706" in lines
    assert "Trainable params: 61,706" in lines
    assert "Non-trainable params: 0" in lines


def test_summary_frozen_in_parentheses(zoo_tool):
    p = run_zoo("summary", "resnet18", "--frozen", "layer1,fc.bias")
    assert p.returncode == 0, p.stderr
    layer1 = sum(t.numel() for k, t in mmf.build("resnet18")[0].named_parameters() if k.startswith("layer1."))
    assert "Non-trainable params: %s" % format(layer1 + 1000, ",") in p.stdout
    assert "Trainable params: %s" % format(11689512 - layer1 - 1000, ",") in p.stdout
    fc = [l for l in p.stdout.splitlines() if l.startswith("fc ")][0]
    assert "512,000 (1,000)" in fc
    conv = [l for l in p.stdout.splitlines() if l.strip().startswith("conv1 ") and "Conv2d" in l and "[1, 64, 56, 56]" in l][0]
    assert "(36,864)" in conv
    p = run_zoo("summary", "resnet18", "--frozen", "layer9")
    assert p.returncode == 1
    assert p.stderr == "error: bad input: --frozen layer9: no parameter of resnet18 has this name or module path\n"


def test_list_counts_match_reference(zoo_tool):
    p = run_zoo("list")
    assert p.returncode == 0, p.stderr
    counts = {l.split()[0]: int(l.split()[3].replace(",", "")) for l in p.stdout.splitlines()[1:]}
    for name in ["lenet", "nin", "alexnet", "vgg11_bn", "googlenet", "resnet18", "mobilenet_v2"]:
        model, _ = mmf.build(name)
        assert counts[name] == sum(t.numel() for t in model.parameters()), name


def test_summary_errors(zoo_tool, tmp_path):
    p = run_zoo("summary", "resnet18", "--input", "1x3x224")
    assert p.returncode == 1
    assert p.stderr == "error: bad input: --input 1x3x224: the model takes a rank-4 input, batch first, like 1x3x224x224\n"
    bad = tmp_path / "arch.json"
    bad.write_text('{"name": "x", "input": "input", "inputShape": [3], "output": "y", "nodes": []}')
    p = run_zoo("summary", bad)
    assert p.returncode == 1
    assert p.stderr == "error: %s: invalid architecture: graph output 'y' is never produced\n" % bad
