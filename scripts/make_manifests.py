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


# ---- seed 003 (d2l) definitions, transcribed ---------------------------------------------------

def d2l_lenet():
    return nn.Sequential(
        nn.Conv2d(1, 6, kernel_size=5, padding=2), nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Conv2d(6, 16, kernel_size=5), nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), nn.Sigmoid(),
        nn.Linear(120, 84), nn.Sigmoid(),
        nn.Linear(84, 10))


def d2l_alexnet():
    return nn.Sequential(
        nn.Conv2d(1, 96, kernel_size=11, stride=4, padding=1), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(96, 256, kernel_size=5, padding=2), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(256, 384, kernel_size=3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 384, kernel_size=3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Flatten(),
        nn.Linear(6400, 4096), nn.ReLU(),
        nn.Dropout(p=0.5),
        nn.Linear(4096, 4096), nn.ReLU(),
        nn.Dropout(p=0.5),
        nn.Linear(4096, 10))


def vgg_block(num_convs, in_channels, out_channels):
    layers = []
    for _ in range(num_convs):
        layers.append(nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1))
        layers.append(nn.ReLU())
        in_channels = out_channels
    layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*layers)


def d2l_vgg(conv_arch):
    conv_blks = []
    in_channels = 1
    for (num_convs, out_channels) in conv_arch:
        conv_blks.append(vgg_block(num_convs, in_channels, out_channels))
        in_channels = out_channels
    return nn.Sequential(
        *conv_blks,
        nn.Flatten(),
        nn.Linear(out_channels * 7 * 7, 4096), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(4096, 10))


def nin_block(in_channels, out_channels, kernel_size, stride, padding):
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding), nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, kernel_size=1), nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, kernel_size=1), nn.ReLU())


def d2l_nin():
    return nn.Sequential(
        nin_block(1, 96, kernel_size=11, stride=4, padding=0),
        nn.MaxPool2d(3, stride=2),
        nin_block(96, 256, kernel_size=5, stride=1, padding=2),
        nn.MaxPool2d(3, stride=2),
        nin_block(256, 384, kernel_size=3, stride=1, padding=1),
        nn.MaxPool2d(3, stride=2),
        nn.Dropout(0.5),
        nin_block(384, 10, kernel_size=3, stride=1, padding=1),
        nn.AdaptiveAvgPool2d((1, 1)),
        nn.Flatten())


class Residual(nn.Module):
    def __init__(self, input_channels, num_channels, use_1x1conv=False, strides=1):
        super().__init__()
        self.conv1 = nn.Conv2d(input_channels, num_channels, kernel_size=3, padding=1, stride=strides)
        self.conv2 = nn.Conv2d(num_channels, num_channels, kernel_size=3, padding=1)
        if use_1x1conv:
            self.conv3 = nn.Conv2d(input_channels, num_channels, kernel_size=1, stride=strides)
        else:
            self.conv3 = None
        self.bn1 = nn.BatchNorm2d(num_channels)
        self.bn2 = nn.BatchNorm2d(num_channels)

    def forward(self, X):
        Y = F.relu(self.bn1(self.conv1(X)))
        Y = self.bn2(self.conv2(Y))
        if self.conv3:
            X = self.conv3(X)
        Y += X
        return F.relu(Y)


def resnet_block(input_channels, num_channels, num_residuals, first_block=False):
    blk = []
    for i in range(num_residuals):
        if i == 0 and not first_block:
            blk.append(Residual(input_channels, num_channels, use_1x1conv=True, strides=2))
        else:
            blk.append(Residual(num_channels, num_channels))
    return blk


def d2l_resnet18():
    b1 = nn.Sequential(nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3),
                       nn.BatchNorm2d(64), nn.ReLU(),
                       nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    b2 = nn.Sequential(*resnet_block(64, 64, 2, first_block=True))
    b3 = nn.Sequential(*resnet_block(64, 128, 2))
    b4 = nn.Sequential(*resnet_block(128, 256, 2))
    b5 = nn.Sequential(*resnet_block(256, 512, 2))
    return nn.Sequential(b1, b2, b3, b4, b5,
                         nn.AdaptiveAvgPool2d((1, 1)),
                         nn.Flatten(), nn.Linear(512, 10))


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
