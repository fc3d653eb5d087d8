"""Reading a gray image or stack from any supported file: :func:`read_image`.

Files are decoded by their content (a PNG named ``.tif`` is still read), and every
failure is one :class:`ImageReadError` (a ``ValueError``) naming the file and saying
what to do.  Colour files are turned into gray ``(R + G + B) / 3`` with a warning (or
refused with ``strict=True``), the convention the model was trained with; a colour
file whose channels are all equal is gray already and is read as such.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from ..inputs import data_range_limits, dtype_range
from .files import is_zarr
from .image import ColourInputWarning, Image, ImageReadError, refuse_empty

__all__ = ["read_image", "unreadable_message"]


def read_image(path: str | os.PathLike, strict: bool = False) -> Image:
    """Read a gray image or stack from PNG, JPEG, BMP, WebP, GIF, PGM/PPM, JPEG 2000, TIFF (multi-page, multi-series,
    BigTIFF, 16-bit) or zarr.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ImageReadError (a ValueError)
        Empty, damaged or foreign files, TIFFs of several differently shaped series,
        colour files with ``strict=True``.
    """
    path = Path(path)
    image = _decode(path)
    data = image.data
    if any(s == 0 for s in data.shape) or data.ndim < 2:
        raise ImageReadError(f"{path.name} holds no pixels (shape {tuple(data.shape)}); export it again")
    image.bits = 8 * np.dtype(data.dtype).itemsize  # before a colour file's gray is made (float)
    colour = image.samples if image.samples is not None else data.shape[-1] in (3, 4) and data.shape[-2] > 4
    if data.ndim >= 3 and colour:
        if _channels_equal(data):
            image.data = data[..., 0]
        else:
            image.data, image.converted = _to_gray(data, path.name, strict, image.colour_model), True
        image.samples = False
    return image


def _decode(path: Path) -> Image:
    """The file's pixels as stored (gray, RGB or RGBA), or one clear error."""
    from .raster import read_raster
    from .stores import read_zarr
    from .tiff import is_tiff, read_tiff

    if not path.exists():
        if path.is_symlink():  # the link is there, its target is not (a git-annex file not fetched)
            from .files import broken_link_reason
            raise FileNotFoundError(f"{path} is {broken_link_reason(path)}")
        raise FileNotFoundError(f"{path} does not exist")
    if path.is_dir() and not is_zarr(path):
        raise ImageReadError(f"{path.name}/ is a folder, not an image file or zarr store; give the image files in it")
    if not path.is_dir() and not path.is_file():  # a pipe or device: reading could wait forever
        raise ImageReadError(f"{path.name} is not a regular file; copy the image into a file first")
    refuse_empty(path)
    try:
        if path.is_dir():
            return read_zarr(path)
        return read_tiff(path) if is_tiff(path) else read_raster(path)
    except (ImageReadError, MemoryError):
        raise
    except Exception as err:  # decoders raise many types for a damaged or foreign file
        raise ImageReadError(unreadable_message(path, err)) from err


def unreadable_message(path: Path, err: Exception) -> str:
    """One line saying why ``path`` cannot be read and what to do."""
    from PIL import Image as PILImage, UnidentifiedImageError

    first = (str(err).strip().splitlines() or [""])[0]
    if isinstance(err, PermissionError):
        return f"cannot read {path.name}: permission denied; make it readable (chmod) or copy it somewhere you may read"
    if isinstance(err, UnidentifiedImageError):
        return (f"cannot read {path.name}: not a PNG, JPEG, TIFF, BMP, WebP, GIF, PGM/PPM or JPEG 2000 image (or "
                "damaged beyond recognition); check the file, or convert it to PNG or TIFF")
    if isinstance(err, PILImage.DecompressionBombError):
        return (f"cannot read {path.name}: {first}; save such large images as TIFF, which is read in tiles at "
                "any size")
    return (f"cannot read {path.name}: {type(err).__name__}: {first}; the file is damaged, incomplete or of a "
            "variant not supported: open it in another program and save it again as PNG or TIFF")


def _channels_equal(data) -> bool:
    """True if an in-memory RGB(A) image has R = G = B everywhere (a gray picture saved as colour)."""
    if not isinstance(data, np.ndarray):
        return False  # lazy: reading it all to check would cost a pass over a large file
    return bool((data[..., 0] == data[..., 1]).all() and (data[..., 1] == data[..., 2]).all())


def _to_gray(data, name: str, strict: bool, model: str | None = None):
    kind = f"{model} colour" if model and model not in ("RGB", "palette") else "colour"
    if strict:
        raise ImageReadError(f"{name} is a {kind} image; napari-colorize colours gray images (without --strict it "
                             "would be converted to gray with a warning)")
    how = "to RGB, then to gray (R + G + B) / 3" if kind != "colour" else "to gray (R + G + B) / 3"
    warnings.warn(f"{name} is a {kind} image; converting it {how}", ColourInputWarning, stacklevel=3)
    rgb = data[..., :3]
    if not np.issubdtype(rgb.dtype, np.integer):
        return rgb.astype(np.float32).mean(axis=-1)
    # The same integer scaling as gray input (napari_colorize.inputs): type range or data range.
    lo, hi = data_range_limits(rgb) or dtype_range(rgb.dtype)
    gray = (rgb.astype(np.float32) - np.float32(lo)).mean(axis=-1)
    return (gray / np.float32(hi - lo) if hi > lo else gray * 0).astype(np.float32)
