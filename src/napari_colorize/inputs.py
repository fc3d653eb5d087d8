"""Checking and normalising user images into gray float32 in [0, 1].

Every front end calls these first, so a user gets the same clear message whether the
image came from Python, the command line or a napari layer.  Inputs are never
modified: every function returns a new array.
"""

from __future__ import annotations

import numpy as np

__all__ = ["NORMALIZATIONS", "check_gray_shape", "to_unit_float", "percentile_limits", "scale_to_unit"]

NORMALIZATIONS = (None, "dtype", "percentile", "minmax")
PERCENTILES = (0.1, 99.9)


def check_gray_shape(shape: tuple[int, ...], min_size: int) -> None:
    """Raise ``ValueError`` unless ``shape`` is a gray image or stack ``(..., Y, X)``."""
    if len(shape) < 2:
        raise ValueError(f"expected a gray image of shape (..., Y, X), got shape {shape}; "
                         "pass a 2D array (or a stack of them)")
    if any(s == 0 for s in shape):
        raise ValueError(f"the image is empty (shape {shape}); nothing to colorize")
    if len(shape) >= 3 and shape[-1] in (3, 4) and shape[-2] > 4:
        raise ValueError(
            f"the image has shape {shape}: a trailing axis of {shape[-1]} looks like RGB(A) colour channels. "
            "napari-colorize colours gray images; convert it first with napari_colorize.rgb_to_gray(image[..., :3]) "
            "or pass a single channel")
    if shape[-1] < min_size or shape[-2] < min_size:
        raise ValueError(f"the image is {shape[-2]} x {shape[-1]} pixels but the model needs at least "
                         f"{min_size} x {min_size}; upsample or pad it first")


def percentile_limits(values: np.ndarray, percentiles: tuple[float, float] = PERCENTILES) -> tuple[float, float]:
    """The 0.1 and 99.9 percentiles of the finite values (for microscopy data)."""
    finite = values[np.isfinite(values)] if np.issubdtype(values.dtype, np.floating) else values
    lo, hi = np.percentile(finite, percentiles)
    return float(lo), float(hi)


def scale_to_unit(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Linearly map [lo, hi] to [0, 1] and clip, as float32 (a new array)."""
    if not hi > lo:
        return np.zeros(values.shape, np.float32)
    out = (values.astype(np.float32) - np.float32(lo)) / np.float32(hi - lo)
    return np.clip(out, 0.0, 1.0, out=out)


def dtype_range(dtype: np.dtype) -> tuple[float, float]:
    """The value range integers of ``dtype`` are scaled from."""
    if dtype == np.bool_:
        return 0.0, 1.0
    info = np.iinfo(dtype)
    return (0.0, float(info.max)) if info.min == 0 else (float(info.min), float(info.max))


def to_unit_float(image, normalize: str | None = None, limits: tuple[float, float] | None = None) -> np.ndarray:
    """Gray image -> float32 in [0, 1] (a copy; the input is untouched).

    Parameters
    ----------
    image : array_like
        Integer (scaled by its dtype's range), boolean or float (expected in [0, 1]).
    normalize : {None, "dtype", "percentile", "minmax"}
        None/"dtype": integers by their dtype range, floats as they are.
        "percentile": map the 0.1-99.9 percentiles to [0, 1] (microscopy data).
        "minmax": map the minimum and maximum to [0, 1].
    limits : (float, float), optional
        Precomputed (lo, hi) for "percentile"/"minmax" (so that tiles of one image share
        them).

    Raises
    ------
    ValueError
        For NaN/Inf values, floats outside [0, 1] without a normalisation, complex or
        non-numeric data.
    """
    arr = np.asarray(image)
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"unknown normalize={normalize!r}; choose one of {NORMALIZATIONS}")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_) or np.iscomplexobj(arr):
        raise ValueError(f"cannot colorize data of dtype {arr.dtype}; pass a real-valued gray image")
    is_float = np.issubdtype(arr.dtype, np.floating)
    if is_float and not np.isfinite(arr).all():
        raise ValueError("the image contains NaN or infinite values; replace them (e.g. np.nan_to_num) before colorizing")
    if normalize in ("percentile", "minmax"):
        if limits is None:
            limits = percentile_limits(arr) if normalize == "percentile" else (float(arr.min()), float(arr.max()))
        return scale_to_unit(arr, *limits)
    if is_float:
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f"float images must lie in [0, 1], this one spans [{lo:g}, {hi:g}]; "
                             "pass normalize='percentile' (microscopy) or 'minmax', or rescale it first")
        return arr.astype(np.float32, copy=True)
    return scale_to_unit(arr, *dtype_range(arr.dtype))
