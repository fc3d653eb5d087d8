"""Synthetic colour images shared by the tests (imported as ``from _scenes import ...``)."""

from __future__ import annotations

import numpy as np


def colour_scene(seed: int, size: int = 64) -> np.ndarray:
    """A colour scene in [0, 1]: smooth gradients (varying per seed) and one flat coloured square."""
    r = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    rgb = np.stack([0.2 + 0.6 * xx, 0.3 + 0.5 * yy * r.uniform(0.5, 1), 0.7 - 0.5 * xx * yy], axis=-1)
    rgb[size // 4: size // 2, size // 4: size // 2] = r.uniform(0, 1, 3)
    return np.clip(rgb, 0, 1)


def synthetic_image(seed: int, size: int = 96) -> np.ndarray:
    """A colour scene whose colour follows from its lightness: dark blue -> bright yellow
    gradient plus a red disc, so a colorizer can learn it in a few steps."""
    r = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    t = np.clip(0.6 * yy + 0.4 * xx * r.uniform(0.5, 1.0), 0, 1)
    rgb = np.stack([t, t, 1 - t], axis=-1) * 0.8 + 0.1
    cy, cx = r.uniform(0.3, 0.7, 2)
    disc = (yy - cy) ** 2 + (xx - cx) ** 2 < r.uniform(0.1, 0.2) ** 2
    rgb[disc] = (0.85, 0.15, 0.1)
    return np.clip(rgb, 0, 1)


def to_u8(rgb: np.ndarray) -> np.ndarray:
    """[0, 1] -> uint8, rounded."""
    return np.round(rgb * 255).astype(np.uint8)
