#!/usr/bin/env python3
"""The README demo's recipe in PyTorch, for comparison with zoo (accuracy and step times).

1. d2l LeNet-5 (5 classes) trained on digits 0-4: Adam lr 0.003, batch 32, 30 epochs.
2. Fine-tune on digits 5-9: conv layers (0, 3) reused and frozen, layers 7, 9, 11 reinitialized (11 with 5 classes),
   Adam lr 0.003, batch 32, 10 epochs. Prints test accuracy and the mean step time, frozen backbone vs full training.
"""
import os, sys, time
import numpy as np
import torch
from torch import nn

torch.set_num_threads(int(os.environ.get("THREADS", "1")))
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "data")

def load(name):
    z = np.load(os.path.join(root, name))
    f = lambda k: torch.tensor(z[k].astype(np.float32) / 255.0).unsqueeze(1)
    return f("x_train"), torch.tensor(z["y_train"]), f("x_test"), torch.tensor(z["y_test"])

def lenet(classes):
    return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.Sigmoid(), nn.AvgPool2d(2, 2),
                         nn.Conv2d(6, 16, 5), nn.Sigmoid(), nn.AvgPool2d(2, 2), nn.Flatten(),
                         nn.Linear(400, 120), nn.Sigmoid(), nn.Linear(120, 84), nn.Sigmoid(), nn.Linear(84, classes))

def train(net, data, epochs, lr, seed):
    xtr, ytr, xte, yte = data
    g = torch.Generator().manual_seed(seed)
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    times = []
    for ep in range(epochs):
        net.train()
        perm = torch.randperm(len(ytr), generator=g)
        for i in range(0, len(ytr), 32):
            idx = perm[i:i + 32]
            t = time.perf_counter()
            opt.zero_grad()
            loss = loss_fn(net(xtr[idx]), ytr[idx])
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - t)
    net.eval()
    with torch.no_grad():
        acc = (net(xte).argmax(1) == yte).float().mean().item()
    return acc, float(np.median(times))

torch.manual_seed(1)
pre = lenet(5)
acc, _ = train(pre, load("digits_0-4.npz"), 30, 0.003, 1)
print(f"pretrain digits 0-4: test accuracy {acc * 100:.2f}%")
d59 = load("digits_5-9.npz")
accs = []
for seed in range(3):
    torch.manual_seed(100 + seed)
    net = lenet(5)
    sd = {k: v for k, v in pre.state_dict().items() if k.startswith(("0.", "3."))}
    net.load_state_dict(sd, strict=False)
    for k, p in net.named_parameters():
        p.requires_grad = not k.startswith(("0.", "3."))
    acc, step_frozen = train(net, d59, 10, 0.003, seed)
    accs.append(acc)
    print(f"fine-tune digits 5-9 (seed {seed}): test accuracy {acc * 100:.2f}%, median step {step_frozen * 1e3:.2f} ms (frozen convs)")
net = lenet(5)
_, step_full = train(net, d59, 3, 0.003, 0)
print(f"mean fine-tune accuracy {np.mean(accs) * 100:.2f}%; median step: frozen backbone {step_frozen * 1e3:.2f} ms, full training {step_full * 1e3:.2f} ms")
