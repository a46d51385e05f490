#!/usr/bin/env python3
"""Small data-loader fixtures under fixtures/data/ (made with numpy, gzip and Pillow as independent encoders).

tiny_stored.npz      np.savez (stored members): x_train float32 (6,3,4,5), y_train uint8, x_test (2,3,4,5), y_test int64
tiny_badlabels.npz   x_train uint8 (4,8,8), y_train int64 with a label 7 for a 3-class problem
idx/                 train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz (gzip), t10k-*-ubyte (raw); 5 images 6x7
pngs/train/{cat,dog}/*.png, pngs/test/{cat,dog}/*.png   8-bit RGB, RGBA, gray, PIL-written (with filters), 5x4
pngs_expected.npz    the pixels (N,3,4,5) float /255 and labels of pngs/train in loader order (class, then file name)
"""
import gzip, os, struct
import numpy as np
from PIL import Image

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "data")
rng = np.random.default_rng(0)
np.savez(os.path.join(root, "tiny_stored.npz"),
         x_train=rng.standard_normal((6, 3, 4, 5)).astype(np.float32), y_train=np.array([0, 1, 2, 0, 1, 2], np.uint8),
         x_test=rng.standard_normal((2, 3, 4, 5)).astype(np.float32), y_test=np.array([2, 0], np.int64))
np.savez_compressed(os.path.join(root, "tiny_badlabels.npz"),
                    x_train=rng.integers(0, 256, (4, 8, 8), dtype=np.uint8), y_train=np.array([0, 1, 7, 2], np.int64))

idx = os.path.join(root, "idx"); os.makedirs(idx, exist_ok=True)
def idx_bytes(a, code):
    return struct.pack(">BBBB", 0, 0, code, a.ndim) + b"".join(struct.pack(">I", d) for d in a.shape) + a.astype(">u1").tobytes()
tr = rng.integers(0, 256, (5, 6, 7), dtype=np.uint8); trl = np.array([1, 0, 2, 1, 0], np.uint8)
te = rng.integers(0, 256, (3, 6, 7), dtype=np.uint8); tel = np.array([2, 2, 0], np.uint8)
with gzip.open(os.path.join(idx, "train-images-idx3-ubyte.gz"), "wb") as f: f.write(idx_bytes(tr, 8))
with gzip.open(os.path.join(idx, "train-labels-idx1-ubyte.gz"), "wb") as f: f.write(idx_bytes(trl, 8))
open(os.path.join(idx, "t10k-images-idx3-ubyte"), "wb").write(idx_bytes(te, 8))
open(os.path.join(idx, "t10k-labels-idx1-ubyte"), "wb").write(idx_bytes(tel, 8))
np.savez(os.path.join(root, "idx_expected.npz"), x_train=tr, y_train=trl, x_test=te, y_test=tel)

pngs = os.path.join(root, "pngs")
imgs, labels = [], []
modes = ["RGB", "RGBA", "L"]
for split, n in [("train", 3), ("test", 1)]:
    for ci, cls in enumerate(["cat", "dog"]):
        d = os.path.join(pngs, split, cls); os.makedirs(d, exist_ok=True)
        for k in range(n):
            mode = modes[(k + ci) % 3]
            a = rng.integers(0, 256, (4, 5, 4), dtype=np.uint8)
            if mode == "L":
                a[..., 1] = a[..., 0]; a[..., 2] = a[..., 0]
            im = Image.fromarray(a if mode == "RGBA" else (a[..., :3] if mode == "RGB" else a[..., 0]), mode)
            im.save(os.path.join(d, f"{k}.png"), optimize=(k == 1))
            if split == "train":
                imgs.append(a[..., :3].transpose(2, 0, 1)); labels.append(ci)
# gray images decode to one channel; expected stores them as 3 equal channels and the test compares channel 0
np.savez(os.path.join(root, "pngs_expected.npz"), x=np.stack(imgs).astype(np.float32) / 255.0, y=np.array(labels))
