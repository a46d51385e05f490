#!/usr/bin/env python3
"""Writes fixtures/manifests/<arch>.json: the reference definition's state_dict keys and shapes
(in state_dict order, buffers included, num_batches_tracked skipped), its trainable parameter count,
the default input shape and the output shape for that input. The Swift catalog test compares every
catalog graph with these files.

References: torchvision's models (weights=None) and the d2l nn.Sequential definitions of seed 003,
transcribed below as they appear in the notes. mobilenet_v1 has no reference here (checked in the
Swift test against a hand-derived count).

Usage: .venv/bin/python scripts/make_manifests.py [out_dir]
"""
import json
import os
import sys
import types

for m in ['torchvision._meta_registrations', 'torchvision._autograd_registrations']:
    sys.modules[m] = types.ModuleType(m)

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402
import torchvision.models as tvm  # noqa: E402


from d2l_models import d2l_lenet, d2l_alexnet, vgg_block, d2l_vgg, nin_block, d2l_nin, Residual, resnet_block, d2l_resnet18  # noqa: E402,F401


# ---- the catalog -------------------------------------------------------------------------------

D2L_VGG_CONV_ARCH = ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512))

ARCHS = {
    'lenet': (d2l_lenet, [1, 28, 28]),
    'alexnet': (lambda: tvm.alexnet(weights=None), [3, 224, 224]),
    'alexnet_d2l': (d2l_alexnet, [1, 224, 224]),
    'vgg11': (lambda: tvm.vgg11(weights=None), [3, 224, 224]),
    'vgg13': (lambda: tvm.vgg13(weights=None), [3, 224, 224]),
    'vgg16': (lambda: tvm.vgg16(weights=None), [3, 224, 224]),
    'vgg19': (lambda: tvm.vgg19(weights=None), [3, 224, 224]),
    'vgg11_bn': (lambda: tvm.vgg11_bn(weights=None), [3, 224, 224]),
    'vgg13_bn': (lambda: tvm.vgg13_bn(weights=None), [3, 224, 224]),
    'vgg16_bn': (lambda: tvm.vgg16_bn(weights=None), [3, 224, 224]),
    'vgg19_bn': (lambda: tvm.vgg19_bn(weights=None), [3, 224, 224]),
    'vgg_d2l': (lambda: d2l_vgg(D2L_VGG_CONV_ARCH), [1, 224, 224]),
    'nin': (d2l_nin, [1, 224, 224]),
    'googlenet': (lambda: tvm.googlenet(weights=None, aux_logits=False, transform_input=False,
                                        init_weights=False), [3, 224, 224]),
    'resnet18': (lambda: tvm.resnet18(weights=None), [3, 224, 224]),
    'resnet34': (lambda: tvm.resnet34(weights=None), [3, 224, 224]),
    'resnet50': (lambda: tvm.resnet50(weights=None), [3, 224, 224]),
    'resnet18_d2l': (d2l_resnet18, [1, 224, 224]),
    'mobilenet_v2': (lambda: tvm.mobilenet_v2(weights=None), [3, 224, 224]),
}


def manifest(name):
    make, shape = ARCHS[name]
    torch.manual_seed(0)
    model = make().eval()
    keys = [[k, list(v.shape)] for k, v in model.state_dict().items() if not k.endswith('num_batches_tracked')]
    params = sum(p.numel() for p in model.parameters())
    # Output shape of every leaf module at its first call (for the graph's node of the same name).
    layers = {}

    def hook(mod_name):
        def f(_m, _i, out):
            layers.setdefault(mod_name, list(out.shape))
        return f
    handles = [mod.register_forward_hook(hook(n)) for n, mod in model.named_modules()
               if n and not list(mod.children())]
    with torch.no_grad():
        y = model(torch.zeros([1] + shape))
    for h in handles:
        h.remove()
    return {'name': name, 'input': [1] + shape, 'output': list(y.shape), 'parameters': params, 'keys': keys,
            'layers': layers}


# Non-default classes and input sizes: (arch, torchvision constructor kwargs, input [C, H, W]).
VARIANTS = [
    ('alexnet', dict(num_classes=10), [3, 100, 100]),
    ('vgg11_bn', dict(num_classes=5), [3, 64, 48]),
    ('googlenet', dict(num_classes=10, aux_logits=False, transform_input=False, init_weights=False), [3, 96, 96]),
    ('resnet18', dict(num_classes=7), [3, 97, 113]),
    ('resnet50', dict(num_classes=3), [3, 64, 64]),
    ('mobilenet_v2', dict(num_classes=7), [3, 97, 113]),
]


def variants():
    out = []
    for name, kw, shape in VARIANTS:
        model = getattr(tvm, name)(weights=None, **kw).eval()
        with torch.no_grad():
            y = model(torch.zeros([1] + shape))
        out.append({'name': name, 'classes': kw['num_classes'], 'input': [1] + shape, 'output': list(y.shape),
                    'parameters': sum(p.numel() for p in model.parameters())})
    return out


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, 'fixtures', 'manifests')
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(2)
    for name in ARCHS:
        m = manifest(name)
        # compact but diff-friendly: one key per line
        lines = ',\n    '.join(json.dumps(k) for k in m['keys'])
        layers = ',\n    '.join('%s: %s' % (json.dumps(k), json.dumps(v)) for k, v in m['layers'].items())
        text = ('{\n  "name": %s,\n  "input": %s,\n  "output": %s,\n  "parameters": %d,\n  "keys": [\n    %s\n  ],\n'
                '  "layers": {\n    %s\n  }\n}\n'
                % (json.dumps(m['name']), json.dumps(m['input']), json.dumps(m['output']), m['parameters'], lines, layers))
        path = os.path.join(out, name + '.json')
        tmp = path + '.tmp'
        with open(tmp, 'w') as f:
            f.write(text)
        os.replace(tmp, path)
        print(f"{name}: {len(m['keys'])} tensors, {m['parameters']:,} parameters, output {m['output']}")
    v = variants()
    path = os.path.join(out, 'variants.json')
    with open(path + '.tmp', 'w') as f:
        f.write('[\n  ' + ',\n  '.join(json.dumps(x) for x in v) + '\n]\n')
    os.replace(path + '.tmp', path)
    print(f"variants: {len(v)}")


if __name__ == '__main__':
    main()
