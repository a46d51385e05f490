#!/usr/bin/env python3
"""Turns scikit-learn's 8x8 handwritten digits (1,797 images) into small Keras-style npz files.

Each 8x8 image (values 0..16) is enlarged 3x by pixel repetition to 24x24 and zero-padded by 2 to 28x28
(LeNet's input), then scaled to uint8 0..255. Split: stratified, seeded (random_state=0), 25% test.
Keys are Keras' mnist.npz names: x_train (N,28,28) uint8, y_train (N,) int64, x_test, y_test.

  fixtures/data/digits.npz       all ten digits, labels 0..9
  fixtures/data/digits_0-4.npz   digits 0..4, labels 0..4
  fixtures/data/digits_5-9.npz   digits 5..9, labels 0..4 (digit - 5)
"""
import os
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "data")
os.makedirs(root, exist_ok=True)
d = load_digits()
img = d.images.astype(np.float64)                      # (1797, 8, 8), 0..16
big = np.kron(img, np.ones((3, 3)))                     # (1797, 24, 24)
big = np.pad(big, ((0, 0), (2, 2), (2, 2)))             # (1797, 28, 28)
x = np.round(big * 255.0 / 16.0).astype(np.uint8)
y = d.target.astype(np.int64)
xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)

def save(name, sel_tr, sel_te, offset):
    np.savez_compressed(os.path.join(root, name),
                        x_train=xtr[sel_tr], y_train=ytr[sel_tr] - offset,
                        x_test=xte[sel_te], y_test=yte[sel_te] - offset)

save("digits.npz", slice(None), slice(None), 0)
save("digits_0-4.npz", ytr < 5, yte < 5, 0)
save("digits_5-9.npz", ytr >= 5, yte >= 5, 5)
for n in ["digits.npz", "digits_0-4.npz", "digits_5-9.npz"]:
    z = np.load(os.path.join(root, n))
    print(n, {k: z[k].shape for k in z.files}, os.path.getsize(os.path.join(root, n)), "bytes")
