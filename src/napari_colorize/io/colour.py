"""Reading colour images for training and evaluation: :func:`read_rgb`.

Images are decoded into uint8 RGB, reduced so their long side is at most
``max_side`` (the training and evaluation crops never need more).  TIFFs are read
like :func:`napari_colorize.io.read_image` reads them (CMYK, palette and min-is-white
interpreted, previews skipped) and a stack gives its first plane; an ImageJ
composite's channel axis of 3 (or 4) is its red, green and blue.

uint16 colour images from 10-, 12- and 14-bit cameras use the low bits only: scaled
by 65535 they would be nearly black (and quantised to gray in uint8), so they are
scaled by the range of the smallest camera depth that holds their maximum
(:func:`camera_bits`), with a note saying so.  Gray input to ``colorize`` is not
rescaled this way (it warns and offers ``--normalize``); a colour image's colour
balance needs one scale for all three channels, which a bit depth gives.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from ..inputs import InputScalingWarning, data_range_limits
from .image import ImageReadError
from .write import to_uint8

__all__ = ["CAMERA_BITS", "GRAY_CHROMA", "camera_bits", "is_gray", "read_rgb", "read_rgb_noted", "read_rgba",
           "rgb_to_unit"]

#: Bit depths a uint16 colour image may have been recorded at, smallest first: 8-bit
#: data widened to uint16 (ImageJ's "16-bit" conversion keeps the values) and the usual
#: 10-, 12- and 14-bit cameras.  Data above 14 bits use the whole uint16 range.
CAMERA_BITS = (8, 10, 12, 14)


def camera_bits(rgb: np.ndarray) -> int | None:
    """The bit depth a uint16 RGB image was recorded at: the smallest of :data:`CAMERA_BITS`
    whose range ``2**b - 1`` holds its maximum; None for other types and fuller data."""
    if rgb.dtype != np.uint16 or rgb.size == 0:
        return None
    top = int(rgb.max())
    return next((b for b in CAMERA_BITS if top <= 2**b - 1), None)


def _scale_rgb(rgb: np.ndarray, name: str) -> tuple[np.ndarray, str | None]:
    """RGB values -> ([0, 1] float32, a note naming the bit depth assumed, or None)."""
    bits = camera_bits(rgb)
    if bits is None:
        return _scale_to_unit(rgb), None
    note = (f"{name}: uint16 colour values up to {int(rgb.max())} only; read as {bits}-bit camera data "
            f"(scaled by {2**bits - 1}, not 65535)")
    return rgb.astype(np.float32) / np.float32(2**bits - 1), note


def _scale_to_unit(arr: np.ndarray) -> np.ndarray:
    """Pixel values of a file -> float32 in [0, 1].

    Integers by their type's range, except types wider than 16 bits or signed, which
    say nothing about their data: those by their data range (see
    :func:`napari_colorize.inputs.data_range_limits`).  Floats are usually in [0, 1];
    some tools write [0, 255], divided by 255 when the maximum is above 1.
    """
    if arr.dtype == np.bool_:
        return arr.astype(np.float32)
    if np.issubdtype(arr.dtype, np.integer):
        limits = data_range_limits(arr, warn=False)
        if limits is None:
            return arr.astype(np.float32) / float(np.iinfo(arr.dtype).max)
        lo, hi = limits
        if not hi > lo:
            return np.zeros(arr.shape, np.float32)
        return (arr.astype(np.float32) - np.float32(lo)) / np.float32(hi - lo)
    arr = arr.astype(np.float32)
    hi = float(np.nanmax(arr)) if arr.size else 1.0
    # Float files are usually in [0, 1]; some tools write [0, 255].
    return np.clip(arr / 255.0 if hi > 1.0 + 1e-3 else arr, 0.0, 1.0)


def _to_rgb(arr: np.ndarray) -> np.ndarray | None:
    """(H, W), (H, W, 1..4) or (3|4, H, W) -> (H, W, 3); None if not an image."""
    if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[-1] not in (3, 4):
        arr = np.moveaxis(arr, 0, -1)  # planar TIFF
    if arr.ndim == 2:
        return np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 3:
        return None
    if arr.shape[-1] == 1:
        return np.repeat(arr, 3, axis=-1)
    if arr.shape[-1] == 2:  # gray + alpha
        return np.repeat(arr[..., :1], 3, axis=-1)
    if arr.shape[-1] in (3, 4):
        return arr[..., :3]
    return None


def _resize_uint8(rgb: np.ndarray, max_side: int | None) -> np.ndarray:
    """[0, 1] float (H, W, 3) -> uint8, area-downscaled so the long side <= max_side."""
    h, w = rgb.shape[:2]
    if max_side and max(h, w) > max_side:
        import torch
        import torch.nn.functional as F

        scale = max_side / max(h, w)
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        t = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1)[None]
        rgb = F.interpolate(t, size=size, mode="bilinear", antialias=True, align_corners=False)
        rgb = rgb[0].permute(1, 2, 0).numpy()
    return to_uint8(rgb)


def _first_plane(image) -> np.ndarray:
    """A TIFF's first 2D plane, colour samples last: ``(Y, X)``, ``(Y, X, S)`` or ``(3|4, Y, X)``.

    The file says whether the last axis is colour, so a gray z-stack of 3 planes is not
    mistaken for one RGB image.  An ImageJ composite (Fiji's way to save RGB channels:
    axes ``CYX``, ``ZCYX`` ...) has no samples but a channel axis ``c`` of 3 (or 4):
    those channels are its colour, kept whole while the other axes give their first plane.
    """
    arr, lead = image.data, image.axes or []
    if not image.samples and len(lead) == arr.ndim - 2 and "c" in lead and arr.shape[lead.index("c")] in (3, 4):
        index = tuple(slice(None) if name == "c" else 0 for name in lead)
        return np.moveaxis(np.asarray(arr[index]), 0, -1)
    return np.asarray(arr[(0,) * (arr.ndim - (3 if image.samples else 2))])


def _read_tiff_rgb(path: Path, max_side: int | None) -> tuple[np.ndarray, str | None]:
    from .tiff import read_tiff

    plane = _first_plane(read_tiff(path))
    rgb = _to_rgb(plane)
    if rgb is None:
        raise ImageReadError(f"{path}: unsupported TIFF shape {plane.shape}")
    unit, note = _scale_rgb(rgb, str(path))
    return _resize_uint8(unit, max_side), note


def read_rgb(path: str | os.PathLike, max_side: int | None = None) -> np.ndarray:
    """Decode an image file into uint8 RGB ``(H, W, 3)``, long side <= ``max_side``.

    PNG/JPEG/BMP/WebP go through Pillow (JPEGs are decoded directly at a reduced
    scale when ``max_side`` allows: much faster for large wallpapers; CMYK and palette
    files converted to RGB by Pillow); TIFF through tifffile (16-bit and float data
    scaled to [0, 1] first, first plane of a stack, an ImageJ composite's 3 or 4
    channels as RGB).  uint16 data of a 8- to 14-bit camera are scaled by that depth's
    range (:func:`camera_bits`) with an :class:`~napari_colorize.inputs.InputScalingWarning`.

    Raises
    ------
    ValueError
        If the file is not a readable 2D image.
    """
    rgb, note = read_rgb_noted(path, max_side)
    if note:
        warnings.warn(note, InputScalingWarning, stacklevel=2)
    return rgb


def read_rgb_noted(path: str | os.PathLike, max_side: int | None = None) -> tuple[np.ndarray, str | None]:
    """:func:`read_rgb`, returning its note on the bit depth assumed (or None) instead of
    warning: threads that decode many files report it on one line each."""
    from .tiff import is_tiff

    path = Path(path)
    if is_tiff(path):
        return _read_tiff_rgb(path, max_side)
    from PIL import Image

    from .raster import wide_png

    with Image.open(path) as im:
        wide = wide_png(im, path)  # Pillow would keep only the high byte of each sample
        if wide is not None:
            unit, note = _scale_rgb(_to_rgb(wide), str(path))
            return _resize_uint8(unit, max_side), note
        if max_side and im.format == "JPEG":
            im.draft("RGB", (max_side, max_side))  # DCT-domain downscale, never below max_side
        if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            rgb = _to_rgb(np.asarray(im))
            rgb = rgb if rgb.dtype != np.int32 else rgb.astype(np.uint16)
            unit, note = _scale_rgb(rgb, str(path))
            return _resize_uint8(unit, max_side), note
        im = _within(im.convert("RGB"), max_side, Image.BOX)
        return np.asarray(im, dtype=np.uint8).copy(), None


def read_rgba(path: str | os.PathLike, max_side: int | None = None) -> np.ndarray | None:
    """An 8-bit image file with transparency as uint8 RGBA ``(H, W, 4)``, long side <=
    ``max_side``; None when it has no transparency, is 16-bit or a TIFF (read those with
    :func:`read_rgb`, without alpha).  Reduced by nearest neighbour, so that no transparent
    pixel's colour bleeds into an opaque one (a reference's transparent pixels give no colour)."""
    from PIL import Image

    from .raster import wide_png
    from .tiff import is_tiff

    path = Path(path)
    if is_tiff(path):
        return None
    with Image.open(path) as im:
        if im.mode in ("I;16", "I;16B", "I;16L", "I", "F") or not ("A" in im.getbands() or "transparency" in im.info):
            return None
        if wide_png(im, path) is not None:  # 16-bit: Pillow keeps the high byte; read_rgb scales it
            return None
        return np.asarray(_within(im.convert("RGBA"), max_side, Image.NEAREST), dtype=np.uint8).copy()


def _within(im, max_side: int | None, resample):
    """The Pillow image ``im`` reduced so that its long side is at most ``max_side``."""
    if max_side and max(im.size) > max_side:
        scale = max_side / max(im.size)
        im = im.resize((max(1, round(im.size[0] * scale)), max(1, round(im.size[1] * scale))), resample)
    return im


def rgb_to_unit(arr: np.ndarray, name: str, camera_depth: bool = True) -> np.ndarray:
    """An in-memory RGB image ``(Y, X, 3)`` -> float32 in [0, 1], by the same rules as files.

    ``camera_depth=False`` scales uint16 by 65535 whatever its maximum (an alpha channel).

    Raises
    ------
    ValueError
        Wrong shape, NaN/Inf, or floats outside [0, 1].
    """
    arr = np.asarray(arr)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"{name}: expected an RGB image of shape (Y, X, 3), got {arr.shape}")
    if np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_:
        if not camera_depth:
            return _scale_to_unit(arr)
        unit, note = _scale_rgb(arr, name)
        if note:
            warnings.warn(note, InputScalingWarning, stacklevel=2)
        return unit
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"{name}: cannot read RGB values of dtype {arr.dtype}; pass uint8, uint16 or floats in [0, 1]")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: the image contains NaN or infinite values; replace them (e.g. np.nan_to_num)")
    if arr.min() < 0 or arr.max() > 1:
        lo, hi = float(arr.min()), float(arr.max())
        # Up to 255 well beyond 1 looks like 8-bit colour stored as floats; just beyond [0, 1], like a
        # resampling overshoot, which dividing by 255 would turn black.
        hint = ("; values up to 255 look like 8-bit colour: divide by 255" if 2 < hi <= 255 and lo >= 0 else
                "; clip it to [0, 1] (np.clip) if it only overshoots" if hi <= 2 and lo >= -1 else "")
        raise ValueError(f"{name}: float RGB images must lie in [0, 1], this one spans [{lo:g}, {hi:g}]{hint}")
    return arr


#: An image whose 99th percentile of chroma (max - min of R, G, B, in [0, 1]) is below
#: this is treated as gray (about 4 levels of 255: JPEG noise on a gray picture).
GRAY_CHROMA = 4.0 / 255.0


def is_gray(rgb: np.ndarray, threshold: float = GRAY_CHROMA) -> bool:
    """True if an RGB image (uint8 or float in [0, 1]) carries (almost) no colour.

    The 99th percentile of the per-pixel chroma ``max - min`` must reach ``threshold``
    (in [0, 1]) for the image to count as colour.
    """
    arr = rgb.astype(np.float32) / 255.0 if rgb.dtype == np.uint8 else rgb.astype(np.float32)
    chroma = arr.max(axis=-1) - arr.min(axis=-1)
    return float(np.percentile(chroma, 99)) < threshold
