"""From the engine's result to arrays that napari shows without freezing the viewer.

Runs in the worker thread (no Qt, no napari).  Adding a layer costs the GUI thread the
layer's controls plus one texture upload of the displayed plane; measured on a
2-core machine with software OpenGL, a 4096 x 4096 float32 RGB plane is a 200 MB
upload.  Two things shrink that here, before the layers reach the GUI thread:

* the colour image is shown as **uint8** RGB (a quarter of the bytes; what a screen
  shows anyway, so each channel is within 0.5/255 of the float result, and its gray
  within 0.5/255 of the input).  The two maps stay float32: users read their values.
* a plane larger than :data:`PYRAMID_FROM` on a side is shown as a **pyramid** (2 x 2
  means, down to :data:`PYRAMID_TOP`): napari then uploads only the level and region
  that fit the canvas, whatever the image size.

Lazy (dask) results stay lazy: the colour conversion is added to the graph, and no
pyramid is built (it would compute every plane).  A zarr store brings its own levels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..outputs import OUTPUTS

__all__ = ["PYRAMID_FROM", "PYRAMID_TOP", "ROWS_PER_BLOCK", "rgb_to_uint8", "downsample", "pyramid",
           "display_levels", "display_range", "display_maps"]

#: Planes with a side above this many pixels are shown as a pyramid.
PYRAMID_FROM = 2048
#: The coarsest pyramid level has no side above this (about a canvas).
PYRAMID_TOP = 1024
#: Rows converted at a time, so that float temporaries stay small (a few MB).
ROWS_PER_BLOCK = 256


def _to_uint8_block(block: np.ndarray) -> np.ndarray:
    """Float [0, 1] -> uint8 0-255, rounded to nearest (values outside are clipped)."""
    scaled = np.multiply(block, 255.0, dtype=np.float32)
    np.clip(scaled, 0.0, 255.0, out=scaled)
    scaled += 0.5
    return scaled.astype(np.uint8)


def rgb_to_uint8(rgb: Any) -> Any:
    """A colour image ``(..., Y, X, 3)`` in [0, 1] as uint8 (uint8 input is returned as is).

    numpy is converted now, a block of :data:`ROWS_PER_BLOCK` rows at a time; dask
    lazily, chunk by chunk (napari computes the planes it shows).
    """
    if np.dtype(rgb.dtype) == np.uint8:
        return rgb
    if hasattr(rgb, "dask"):
        return rgb.map_blocks(_to_uint8_block, dtype=np.uint8)
    rgb = np.asarray(rgb)
    out = np.empty(rgb.shape, np.uint8)
    rows = rgb.reshape(-1, *rgb.shape[-2:])  # every (..., Y) row, each (X, 3)
    flat = out.reshape(rows.shape)
    for start in range(0, rows.shape[0], ROWS_PER_BLOCK):
        flat[start:start + ROWS_PER_BLOCK] = _to_uint8_block(rows[start:start + ROWS_PER_BLOCK])
    return out


def downsample(array: np.ndarray, rgb: bool) -> np.ndarray:
    """Halve the (Y, X) plane by 2 x 2 means (an odd edge is repeated), keeping the dtype.

    Means, not every other pixel: the gray of a level is then the mean of the gray it
    covers, and fine detail does not alias.
    """
    y_axis = array.ndim - (3 if rgb else 2)
    pad = [(0, 0)] * array.ndim
    pad[y_axis] = (0, array.shape[y_axis] % 2)
    pad[y_axis + 1] = (0, array.shape[y_axis + 1] % 2)
    if any(p[1] for p in pad):
        array = np.pad(array, pad, mode="edge")
    lead = (slice(None),) * y_axis
    total = np.zeros(array[lead + (slice(0, None, 2), slice(0, None, 2))].shape, np.float32)
    for dy in (0, 1):
        for dx in (0, 1):
            total += array[lead + (slice(dy, None, 2), slice(dx, None, 2))]
    total *= 0.25
    if np.issubdtype(array.dtype, np.integer):
        total += 0.5  # round to nearest, not down
    return total.astype(array.dtype)


def pyramid(array: np.ndarray, rgb: bool, top: int | None = None) -> list[np.ndarray]:
    """``array`` and its 2 x 2 means, finest first, until the plane's sides are at most ``top``
    (default :data:`PYRAMID_TOP`)."""
    top = PYRAMID_TOP if top is None else top
    y_axis = array.ndim - (3 if rgb else 2)
    levels = [array]
    while max(levels[-1].shape[y_axis:y_axis + 2]) > top:
        levels.append(downsample(levels[-1], rgb))
    return levels


def _plane_side(array: Any, rgb: bool) -> int:
    shape = array.shape[:-1] if rgb else array.shape
    return int(max(shape[-2:]))


def display_levels(data: Any, rgb: bool, pyramid_from: int | None = None) -> list[Any]:
    """One output as napari should show it: a list of levels, finest first.

    Parameters
    ----------
    data : array or list of arrays
        numpy, dask or zarr; a list is a pyramid already (a zarr store's levels).
    rgb : bool
        Whether this is the colour image ``(..., Y, X, 3)`` (shown as uint8).
    pyramid_from : int, optional
        In-memory planes with a side above this are shown as a pyramid (default
        :data:`PYRAMID_FROM`).

    Returns
    -------
    list
        One array (show as is) or several (a napari multiscale layer).
    """
    pyramid_from = PYRAMID_FROM if pyramid_from is None else pyramid_from
    levels = list(data) if isinstance(data, (list, tuple)) else [data]
    if rgb:
        levels = [rgb_to_uint8(level) for level in levels]
    if len(levels) == 1 and isinstance(levels[0], np.ndarray) and _plane_side(levels[0], rgb) > pyramid_from:
        levels = pyramid(levels[0], rgb)
    return levels


def display_range(dtype: Any) -> tuple[float, float]:
    """The contrast limits that show an output as computed: 0-255 for uint8, 0-1 otherwise.

    Given up front, so that napari never scans the data to find them.
    """
    return (0.0, 255.0) if np.dtype(dtype) == np.uint8 else (0.0, 1.0)


def display_maps(maps: dict[str, Any], pyramid_from: int | None = None) -> dict[str, list[Any]]:
    """:func:`display_levels` of every output of a result (``ColorizeResult.maps``); None stays None."""
    rgb = {o.name: o.is_rgb for o in OUTPUTS}
    return {name: None if data is None else display_levels(data, rgb.get(name, False), pyramid_from)
            for name, data in maps.items()}

