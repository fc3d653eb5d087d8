"""Near-duplicate detection with a difference hash (dHash) and union-find."""

from __future__ import annotations

import numpy as np
from PIL import Image

DHASH_SIZE = 16  # 16x16 difference hash = 256 bits
DHASH_MAX_DIST = 26  # ~10% of bits; catches rescaled/recompressed copies


def dhash(im: Image.Image, size: int = DHASH_SIZE) -> np.ndarray:
    """Difference hash: sign of horizontal gradients of a gray thumbnail."""
    g = im.convert("RGBA")
    bg = Image.new("RGBA", g.size, (128, 128, 128, 255))
    bg.alpha_composite(g)
    small = bg.convert("L").resize((size + 1, size), Image.Resampling.LANCZOS)
    a = np.asarray(small, dtype=np.int16)
    return (a[:, 1:] > a[:, :-1]).ravel()


def dedup_groups(hashes: list[np.ndarray], max_dist: int = DHASH_MAX_DIST) -> list[int]:
    """Union-find over pairs whose Hamming distance is at most ``max_dist``."""
    n = len(hashes)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    if n:
        mat = np.stack(hashes).astype(np.uint8)
        for i in range(n):
            dist = (mat[i + 1 :] != mat[i]).sum(axis=1)
            for j in np.nonzero(dist <= max_dist)[0]:
                a, b = find(i), find(i + 1 + int(j))
                if a != b:
                    parent[b] = a
    return [find(i) for i in range(n)]

