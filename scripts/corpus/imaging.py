"""Image helpers shared by the collectors and the pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

MIN_SIDE = 128  # smaller crops are useless for training at 128-256 px patches


def open_image(path: Path) -> Image.Image:
    """Open an image as RGB or RGBA (keeping real transparency only)."""
    im = Image.open(path)
    im.load()
    has_alpha = im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)
    if has_alpha:
        im = im.convert("RGBA")
        if np.asarray(im)[..., 3].min() == 255:
            im = im.convert("RGB")
        return im
    return im.convert("RGB")


def resize_long_side(im: Image.Image, max_side: int) -> Image.Image:
    """Downscale (never upscale) so the long side is at most ``max_side``."""
    w, h = im.size
    scale = max_side / max(w, h)
    if scale >= 1.0:
        return im.copy()
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return im.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def opaque_band(alpha: np.ndarray, min_frac: float = 0.995) -> tuple[int, int] | None:
    """Longest run of rows whose pixels are (almost) all opaque."""
    good = (alpha >= 250).mean(axis=1) >= min_frac
    best: tuple[int, int] | None = None
    start = None
    for i, g in enumerate(list(good) + [False]):
        if g and start is None:
            start = i
        elif not g and start is not None:
            if best is None or i - start > best[1] - best[0]:
                best = (start, i)
            start = None
    return best


def opaque_crop(im: Image.Image) -> Image.Image | None:
    """Crop an RGBA image to its largest fully opaque axis-aligned band/box."""
    if im.mode != "RGBA":
        return im
    a = np.asarray(im)[..., 3]
    rows = opaque_band(a)
    if rows is None:
        return None
    cols = opaque_band(a[rows[0] : rows[1]].T)
    if cols is None:
        return None
    box = (cols[0], rows[0], cols[1], rows[1])
    if box[2] - box[0] < MIN_SIDE or box[3] - box[1] < MIN_SIDE // 2:
        return None
    return im.crop(box).convert("RGB")


def to_float(im: Image.Image) -> np.ndarray:
    """RGB image to float32 array in [0, 1]."""
    return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


def hue_saturation(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hue (degrees, 0..360), chroma (max-min) and value (max) of an RGB array."""
    mx = arr.max(axis=-1)
    mn = arr.min(axis=-1)
    c = mx - mn
    r, g, b = arr[..., 0], arr[..., 1], arr[..., 2]
    safe = np.where(c > 0, c, 1.0)
    h = np.where(
        mx == r,
        ((g - b) / safe) % 6.0,
        np.where(mx == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0),
    )
    return h * 60.0, c, mx


def mean_chroma(im: Image.Image) -> float:
    """Mean per-pixel (max - min) over RGB, in [0, 1]."""
    a = to_float(resize_long_side(im, 256))
    return float((a.max(-1) - a.min(-1)).mean())
