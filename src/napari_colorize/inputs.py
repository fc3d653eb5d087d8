"""Checking and normalising user images into gray float32 in [0, 1].

Every front end calls these first, so a user gets the same clear message whether the
image came from Python, the command line or a napari layer: :func:`check_gray_shape`
and :func:`check_gray_values` hold every check and its message.  Inputs are never
modified: every function returns a new array.

How integers become gray (``normalize=None``):

* ``uint8``, ``uint16`` and ``bool``: by their type's range (0-255, 0-65535, 0-1), the
  convention of image files.
* Every other integer type (``int8``, ``int16``, ``int32``, ``int64``, ``uint32``,
  ``uint64``; Python lists of ints become ``int64``): by their *data* range
  ``[min(0, data min), max(0, data max)]`` -- 0 stays black unless the data go below
  it, the brightest value becomes white -- with an :class:`InputScalingWarning`
  saying so.  Their type's range says nothing about the data (a 0-4080 ``int32``
  image would use 2e-6 of it), and a signed type would put 0 at mid-gray.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable

import numpy as np

__all__ = ["InputValuesError", "NORMALIZATIONS", "InputScalingWarning", "check_gray_shape", "check_gray_values", "to_unit_float",
           "percentile_limits", "scale_to_unit", "dtype_range", "needs_data_limits", "data_range_limits", "warn_if_dim",
           "usable_limits", "normalisation_limits", "zero_anchored", "check_limits", "tensor_as_array"]


class InputValuesError(ValueError):
    """The input's values cannot be coloured (NaN or infinite, floats outside [0, 1]).

    A lazy input shows them only as its tiles are read: a writer that made a store for it
    can tell this from its own failures and remove what it made for nothing.
    """


NORMALIZATIONS = (None, "dtype", "percentile", "minmax")
PERCENTILES = (0.1, 99.9)


class InputScalingWarning(UserWarning):
    """An integer image was scaled by its data range rather than its type's range."""


def tensor_as_array(image):
    """A torch tensor as a numpy array, anything else as it is.

    ``image.detach().cpu().numpy()``: a CPU tensor's memory is shared (only read, never
    written), another device's is copied; bfloat16, which numpy lacks, becomes float32.
    A tensor went on as an array-like and failed on its dtype ("Cannot interpret
    'torch.uint8' as a data type").  torch is imported only if the caller has.
    """
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(image, torch.Tensor):
        return image
    tensor = image.detach()
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.float()
    return tensor.cpu().numpy()


def check_gray_shape(shape: tuple[int, ...], min_size: int) -> None:
    """Raise ``ValueError`` unless ``shape`` is a gray image or stack ``(..., Y, X)``."""
    if any(s != s for s in shape):  # NaN: a dask array whose chunk sizes are unknown
        raise ValueError(f"the image's shape {shape} is unknown: its dask chunk sizes are unknown (after boolean "
                         "indexing such as d[d[:, 0] >= 0]); call image.compute_chunk_sizes() first")
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
    if len(shape) >= 3 and shape[-1] in (1, 2) and shape[-2] >= min_size:
        # (Y, X, 1) from a TIFF reader, (Y, X, 2) gray and alpha: no image is 1 or 2 pixels wide.
        what = "a single channel" if shape[-1] == 1 else "gray and alpha channels"
        raise ValueError(f"the image has shape {shape}: a trailing axis of {shape[-1]} looks like {what}, not "
                         "the image's width; pass image[..., 0]")
    if shape[-1] < min_size or shape[-2] < min_size:
        raise ValueError(f"the image is {shape[-2]} x {shape[-1]} pixels but the model needs at least "
                         f"{min_size} x {min_size}; upsample or pad it first")


def percentile_limits(values: np.ndarray, percentiles: tuple[float, float] = PERCENTILES) -> tuple[float, float]:
    """The 0.1 and 99.9 percentiles of the finite values (for microscopy data)."""
    if values.dtype == np.bool_:
        values = values.view(np.uint8)  # numpy's percentile cannot subtract booleans
    finite = values[np.isfinite(values)] if np.issubdtype(values.dtype, np.floating) else values
    lo, hi = np.percentile(finite, percentiles)
    return float(lo), float(hi)


def scale_to_unit(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Linearly map [lo, hi] to [0, 1] and clip, as float32 (a new array); ``lo < hi``.

    An empty range is refused rather than mapped to black: it silently blackened whole
    images (a sparse-bead percentile range, a constant image); :func:`usable_limits`
    turns such limits into a range that keeps the image's gray.
    """
    if not hi > lo:
        raise ValueError(f"cannot scale gray values by the empty range [{lo:g}, {hi:g}]; give limits with lo < hi")
    out = (values.astype(np.float32) - np.float32(lo)) / np.float32(hi - lo)
    return np.clip(out, 0.0, 1.0, out=out)


def dtype_range(dtype: np.dtype) -> tuple[float, float]:
    """The value range integers of ``dtype`` are scaled from (0-1 for ``bool``)."""
    if dtype == np.bool_:
        return 0.0, 1.0
    info = np.iinfo(dtype)
    return (0.0, float(info.max)) if info.min == 0 else (float(info.min), float(info.max))


def needs_data_limits(dtype) -> bool:
    """True for integer types scaled by their data range (all but ``uint8``, ``uint16``, ``bool``).

    A lazy (dask, zarr) or tiled input of such a type needs its limits computed once,
    with :func:`data_range_limits`, and passed to every :func:`to_unit_float` call, so
    that tiles and planes agree.
    """
    dtype = np.dtype(dtype)
    # By kind and size, so that big-endian uint16 (from some TIFFs) counts as uint16.
    return dtype.kind == "i" or (dtype.kind == "u" and dtype.itemsize > 2)


def zero_anchored(lo: float, hi: float) -> tuple[float, float]:
    """A wide integer type's range from its data's: ``(min(0, lo), max(0, hi))``, and
    ``(0, 1)`` for all zeros (any range starting at 0 keeps them black; this one is not empty)."""
    lo, hi = min(0.0, lo), max(0.0, hi)
    return (lo, hi) if hi > lo else (0.0, 1.0)


def data_range_limits(image, warn: bool = True) -> tuple[float, float] | None:
    """The ``(lo, hi)`` an integer image of a wide or signed type is scaled from, or None.

    ``lo = min(0, data min)``, ``hi = max(0, data max)``: 0 stays black unless the data
    go below it, and the brightest value becomes white.  None for types with a fixed
    range (``uint8``, ``uint16``, ``bool``) and for floats.

    Parameters
    ----------
    image : array_like, dask or zarr array
        Read once, chunk by chunk for lazy arrays (all planes).
    warn : bool
        Emit an :class:`InputScalingWarning` stating the range used.
    """
    if not hasattr(image, "dtype"):
        image = np.asarray(image)
    if not needs_data_limits(image.dtype):
        return None
    if isinstance(image, np.ndarray):
        lo, hi = image.min(), image.max()
    else:  # dask, or zarr/h5py arrays read through dask chunk by chunk
        import dask
        import dask.array as da
        lazy = image if isinstance(image, da.Array) else da.from_array(image, chunks="auto")
        lo, hi = dask.compute(lazy.min(), lazy.max(), scheduler="threads")
    lo, hi = zero_anchored(float(lo), float(hi))
    if warn:
        zero = ("0 stays black" if lo == 0.0 else f"the minimum {lo:g} becomes black, 0 a gray of {-lo / (hi - lo):.2f}")
        warnings.warn(f"{np.dtype(image.dtype)} image: scaling its data range [{lo:g}, {hi:g}] to [0, 1] ({zero}, "
                      "the maximum becomes white); pass normalize='percentile' or 'minmax' (--normalize), or "
                      "convert it to uint8/uint16, to choose otherwise", InputScalingWarning, stacklevel=2)
    return lo, hi


#: A uint16 image whose maximum is below this fraction of 65535 (12-bit cameras and
#: dimmer) is nearly black when scaled by its type's range.
DIM_FRACTION = 1 / 8


def warn_if_dim(image) -> None:
    """Warn (:class:`InputScalingWarning`) when an in-memory uint16 image uses only a
    small part of its type's range, as 12-bit microscope cameras' data do: scaled by
    65535 it is nearly black and gets little colour.  Lazy arrays are not read for this."""
    if not isinstance(image, np.ndarray) or image.size == 0:
        return
    dtype = np.dtype(image.dtype)
    if dtype.kind != "u" or dtype.itemsize != 2:
        return
    top = int(image.max())
    if top < DIM_FRACTION * 65535:
        warnings.warn(f"uint16 image with values up to {top} only ({100 * top / 65535:.1f}% of the uint16 range): "
                      "scaled by that range it is nearly black and gets little colour; pass normalize='percentile' "
                      "(--normalize percentile, microscopy) or 'minmax' to stretch it", InputScalingWarning,
                      stacklevel=3)


def check_gray_values(image, normalize: str | None = None, limits: tuple[float, float] | None = None) -> None:
    """Raise ``ValueError`` unless ``image``'s values can be turned into gray in [0, 1].

    The one check of values for every front end (with :func:`check_gray_shape` for
    the shape).  In-memory (numpy) data are checked in full: NaN/Inf anywhere, and
    floats outside [0, 1] without a normalisation.  Lazy data (dask, zarr) are checked
    here by type only, and in full tile by tile (:func:`to_unit_float`).

    Parameters
    ----------
    image : array_like, dask or zarr array
    normalize : {None, "dtype", "percentile", "minmax"}
    limits : (float, float), optional
        Caller-given normalisation limits: two finite numbers, ``lo < hi``.
    """
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"unknown normalize={normalize!r}; choose one of {NORMALIZATIONS}")
    if not hasattr(image, "dtype"):
        image = np.asarray(image)
    dtype = np.dtype(image.dtype)
    # By kind: timedelta64 counts as a signed integer to numpy and failed later, on its range.
    if dtype.kind not in "biuf":
        raise ValueError(f"cannot colorize data of dtype {dtype}; pass a real-valued gray image")
    if limits is not None:
        check_limits(limits)
    if not (isinstance(image, np.ndarray) and np.issubdtype(dtype, np.floating)) or image.size == 0:
        return
    lo, hi = float(np.min(image)), float(np.max(image))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise InputValuesError("the image contains NaN or infinite values; replace them (e.g. np.nan_to_num) "
                         "before colorizing")
    slack = float_slack(dtype)
    if normalize in (None, "dtype") and (lo < -slack or hi > 1.0 + slack):
        raise InputValuesError(f"float images must lie in [0, 1], this one spans [{lo:.9g}, {hi:.9g}]; "
                         "pass normalize='percentile' (--normalize percentile, microscopy) or 'minmax' (--normalize minmax), "
                         "or rescale it first")


def float_slack(dtype) -> float:
    """How far outside [0, 1] a float image may stray and still count as in it (then clipped):
    rounding noise, such as 1 + 1 ulp after a division or -1e-9 after a background
    subtraction, is no reason to refuse an image."""
    return max(1e-6, 4 * float(np.finfo(dtype).eps))


def check_limits(limits) -> None:
    """Raise ``ValueError`` unless caller-given ``limits`` are two finite numbers ``lo < hi``."""
    try:
        lo, hi = (float(v) for v in limits)
    except (TypeError, ValueError):
        raise ValueError(f"limits must be two numbers (lo, hi), got {limits!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        # lo == hi used to pass and turn the whole image black.
        raise ValueError(f"limits must be two finite numbers with lo < hi (the gray values that become black and "
                         f"white), got {limits!r}; widen the range, or pass normalize='minmax' without limits")


def usable_limits(lo: float, hi: float, normalize: str, dtype, data_range: Callable[[], tuple[float, float]]
                  ) -> tuple[float, float]:
    """Normalisation limits ``(lo, hi)`` computed from an image, made usable when empty.

    ``hi <= lo`` would map the whole image to black (bright beads included), so:
    percentile limits that collapse (at least 99.8 % of the pixels share one value:
    sparse spots on a dark background) fall back to the data's minimum and maximum;
    a constant image, which has no range to stretch, is scaled by its data type's range
    as with ``normalize="dtype"`` (floats as they are, clipped to [0, 1]).  Each fallback
    warns once (:class:`InputScalingWarning`).  ``data_range()`` gives the data's
    ``(min, max)``; it is called only when needed (a lazy image is read once more then).
    """
    if hi > lo:
        return lo, hi
    if normalize == "percentile":
        dmin, dmax = (float(v) for v in data_range())
        if dmax > dmin:
            warnings.warn(f"the 0.1 and 99.9 percentiles of the image are both {lo:g} (almost all its pixels "
                          f"share it: sparse spots on an even background?); scaling its minimum and maximum "
                          f"[{dmin:g}, {dmax:g}] to [0, 1] instead, as normalize='minmax' does; pass limits=(lo, hi) "
                          "to choose", InputScalingWarning, stacklevel=4)
            return dmin, dmax
        lo = dmin
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        limits = (0.0, 1.0)
    elif needs_data_limits(dtype):
        limits = zero_anchored(lo, lo)
    else:
        limits = dtype_range(dtype)
    gray = float(np.clip((lo - limits[0]) / (limits[1] - limits[0]), 0.0, 1.0))
    warnings.warn(f"the image is constant ({lo:g}): normalize={normalize!r} has no range to stretch; scaling it by its "
                  f"data type's range [{limits[0]:g}, {limits[1]:g}] as normalize='dtype' does (gray {gray:.3g})",
                  InputScalingWarning, stacklevel=4)
    return limits


def normalisation_limits(normalize: str, dtype, sample: Callable[[], np.ndarray],
                         data_range: Callable[[], tuple[float, float]]) -> tuple[float, float]:
    """The "percentile" limits of ``sample()`` or the "minmax" ``data_range()``, made usable
    (:func:`usable_limits`): the one rule for a whole in-memory image and a lazy one."""
    lo, hi = percentile_limits(sample()) if normalize == "percentile" else data_range()
    return usable_limits(lo, hi, normalize, dtype, data_range)


def _own_limits(arr: np.ndarray, normalize: str) -> tuple[float, float]:
    """The "percentile" or "minmax" limits of a whole in-memory image."""
    return normalisation_limits(normalize, arr.dtype, lambda: arr, lambda: (float(arr.min()), float(arr.max())))


def to_unit_float(image, normalize: str | None = None, limits: tuple[float, float] | None = None) -> np.ndarray:
    """Gray image -> float32 in [0, 1] (a copy; the input is untouched).

    Parameters
    ----------
    image : array_like
        ``uint8``/``uint16``/``bool`` (scaled by their type's range), other integers
        (scaled by their data range, see :func:`data_range_limits`) or floats
        (expected in [0, 1]).
    normalize : {None, "dtype", "percentile", "minmax"}
        None/"dtype": integers as above, floats as they are.
        "percentile": map the 0.1-99.9 percentiles to [0, 1] (microscopy data).
        "minmax": map the minimum and maximum to [0, 1].
        Limits that collapse fall back as :func:`usable_limits` says (with a warning).
    limits : (float, float), optional
        Precomputed (lo, hi) for "percentile"/"minmax", and for the data range of
        wide integers (so that tiles of one image share them).  Without them they
        are computed from ``image`` alone, which is right only for a whole image.

    Raises
    ------
    ValueError
        For NaN/Inf values, floats outside [0, 1] without a normalisation, complex or
        non-numeric data (see :func:`check_gray_values`).
    """
    arr = np.asarray(image)
    check_gray_values(arr, normalize)
    if normalize in ("percentile", "minmax"):
        return scale_to_unit(arr, *(_own_limits(arr, normalize) if limits is None else limits))
    if np.issubdtype(arr.dtype, np.floating):
        gray = arr.astype(np.float32, copy=True)
        return np.clip(gray, 0.0, 1.0, out=gray)  # rounding noise within float_slack
    if needs_data_limits(arr.dtype):
        return scale_to_unit(arr, *(limits if limits is not None else data_range_limits(arr)))
    return scale_to_unit(arr, *dtype_range(arr.dtype))
