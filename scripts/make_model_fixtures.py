#!/usr/bin/env python3
"""Oracle fixtures for `zoo-tool infer`: PyTorch weights, a seeded input and PyTorch's eval output.

For each model: random initialisation (the reference definition's own), then every BatchNorm's
weight, bias, running_mean and running_var randomised (so they are not 1/0/0/1), eval mode, a seeded
float32 input of batch 2, and
    <out>/<name>.safetensors    the state_dict (torch's keys; num_batches_tracked kept, as int64)
    <out>/<name>.input.npy      the input
    <out>/<name>.output.npy     torch's output for it

    .venv/bin/python scripts/make_model_fixtures.py --out fixtures/models lenet
    .venv/bin/python scripts/make_model_fixtures.py --out DIR alexnet vgg11_bn ...

lenet and nin are the d2l nn.Sequential definitions of seed 003 (scripts/d2l_models.py); the others come
from torchvision with default arguments (googlenet: aux_logits=False, init_weights=True).
"""
import argparse
import os
import sys
import types

for m in ["torchvision._meta_registrations", "torchvision._autograd_registrations"]:
    sys.modules.setdefault(m, types.ModuleType(m))

import numpy as np
import torch
from torch import nn
from safetensors.torch import save_file

MODELS = ["lenet", "alexnet", "vgg11_bn", "nin", "googlenet", "resnet18", "mobilenet_v2"]
SMALL = ["lenet"]  # committed under fixtures/models; the rest are made at test time


from d2l_models import d2l_lenet as lenet_d2l, d2l_nin as nin_d2l  # noqa: E402


def build(name):
    """(module, input shape without batch)"""
    if name == "lenet":
        return lenet_d2l(), (1, 28, 28)
    if name == "nin":
        return nin_d2l(), (1, 224, 224)
    import torchvision.models as tvm
    if name == "googlenet":
        return tvm.googlenet(weights=None, aux_logits=False, init_weights=True), (3, 224, 224)
    return getattr(tvm, name)(weights=None), (3, 224, 224)


def randomize_batchnorm(model, g):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.2)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.num_batches_tracked.fill_(int(torch.randint(1, 1000, (1,), generator=g)))


def make(name, out, seed=0, batch=2):
    torch.manual_seed(seed)
    model, shape = build(name)
    g = torch.Generator().manual_seed(seed + 1)
    randomize_batchnorm(model, g)
    model.eval()
    x = torch.rand((batch,) + shape, generator=g, dtype=torch.float32)
    with torch.no_grad():
        y = model(x)
    sd = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    os.makedirs(out, exist_ok=True)
    save_file(sd, os.path.join(out, name + ".safetensors"), metadata={"format": "pt", "zoo-fixture": name})
    np.save(os.path.join(out, name + ".input.npy"), x.numpy().astype("<f4"))
    np.save(os.path.join(out, name + ".output.npy"), y.numpy().astype("<f4"))
    return y


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("names", nargs="*", help="models (default: the small ones: %s)" % ", ".join(SMALL))
    a = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    for name in a.names or SMALL:
        if name not in MODELS:
            ap.error("unknown model %r (choose from %s)" % (name, ", ".join(MODELS)))
        y = make(name, a.out, seed=a.seed)
        print("%s: output %s, max|y| %.4g" % (name, tuple(y.shape), float(y.abs().max())))


if __name__ == "__main__":
    main()
