#!/usr/bin/env python3
"""PyTorch oracles for zoo's training code, saved as npz under fixtures/train/.

optimizers.npz: a 6x5 parameter, two gradients; the parameter after one and two steps of
  sgd (momentum 0.9, weight decay 1e-2), sgd_nesterov (momentum 0.9, nesterov, wd 1e-2), adam (lr 1e-2, wd 1e-2),
  adamw (lr 1e-2, wd 1e-2), rmsprop (lr 1e-2, momentum 0.9, centered, wd 1e-2).
lenet_grads.npz: d2l LeNet (seed 003) with torch's default init (seed 0), a batch of 4 inputs, labels,
  cross-entropy with label smoothing 0.1: the loss and every parameter's gradient.
block_grads.npz: a torchvision ResNet BasicBlock 8->16 stride 2 with downsample, BatchNorm in training mode
  (weights randomized), loss = mean((y - target)^2): the loss, every gradient, running stats after the pass.
"""
import os
import numpy as np
import torch
from torch import nn

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "train")
os.makedirs(root, exist_ok=True)
torch.manual_seed(0)

# --- optimizers
p0 = torch.randn(6, 5)
g1 = torch.randn(6, 5)
g2 = torch.randn(6, 5)
out = {"p0": p0.numpy(), "g1": g1.numpy(), "g2": g2.numpy()}
configs = {
    "sgd": lambda p: torch.optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=1e-2),
    "sgd_nesterov": lambda p: torch.optim.SGD([p], lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2),
    "adam": lambda p: torch.optim.Adam([p], lr=1e-2, weight_decay=1e-2),
    "adamw": lambda p: torch.optim.AdamW([p], lr=1e-2, weight_decay=1e-2),
    "rmsprop": lambda p: torch.optim.RMSprop([p], lr=1e-2, momentum=0.9, centered=True, weight_decay=1e-2),
}
for name, make in configs.items():
    p = p0.clone().requires_grad_(True)
    opt = make(p)
    for k, g in enumerate([g1, g2]):
        p.grad = g.clone()
        opt.step()
        out[f"{name}_step{k + 1}"] = p.detach().numpy().copy()
np.savez_compressed(os.path.join(root, "optimizers.npz"), **out)

# --- lenet (d2l, seed 003)
from d2l_models import d2l_lenet  # noqa: E402
torch.manual_seed(0)
lenet = d2l_lenet()
x = torch.randn(4, 1, 28, 28)
y = torch.tensor([3, 1, 4, 1])
loss = nn.CrossEntropyLoss(label_smoothing=0.1)(lenet(x), y)
loss.backward()
out = {"input": x.numpy(), "labels": y.numpy(), "loss": np.array([loss.item()], dtype=np.float32)}
for k, v in lenet.state_dict().items():
    out["param/" + k] = v.numpy()
for k, v in lenet.named_parameters():
    out["grad/" + k] = v.grad.numpy()
np.savez_compressed(os.path.join(root, "lenet_grads.npz"), **out)

# --- ResNet basic block (torchvision layout) in training mode
torch.manual_seed(1)
class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
    def forward(self, x):
        idt = self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + idt)
blk = BasicBlock(8, 16, 2)
with torch.no_grad():
    for m in blk.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.uniform_(0.5, 1.5); m.bias.uniform_(-0.5, 0.5)
            m.running_mean.uniform_(-0.5, 0.5); m.running_var.uniform_(0.5, 1.5)
state0 = {k: v.clone() for k, v in blk.state_dict().items()}
blk.train()
x = torch.randn(4, 8, 8, 8, requires_grad=True)
target = torch.randn(4, 16, 4, 4)
y = blk(x)
loss = ((y - target) ** 2).mean()
loss.backward()
out = {"input": x.detach().numpy(), "target": target.numpy(), "loss": np.array([loss.item()], dtype=np.float32),
       "output": y.detach().numpy(), "grad_input": x.grad.numpy()}
for k, v in state0.items():
    if not k.endswith("num_batches_tracked"):
        out["param/" + k] = v.numpy()
for k, v in blk.state_dict().items():
    if "running" in k:
        out["after/" + k] = v.numpy()
for k, v in blk.named_parameters():
    out["grad/" + k] = v.grad.numpy()
np.savez_compressed(os.path.join(root, "block_grads.npz"), **out)
for f in sorted(os.listdir(root)):
    print(f, os.path.getsize(os.path.join(root, f)), "bytes")
