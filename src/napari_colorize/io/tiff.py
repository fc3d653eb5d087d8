"""Reading TIFF files: every series, the photometric interpretation, the pixel size.

A TIFF may hold several series (images).  Series of one shape are read as a stack
along a new leading axis; series of different shapes are refused, since colouring
only the first would silently drop the rest.  Reduced-resolution previews
(thumbnails, pyramid levels) are not series of their own data and are skipped.
Pixels come back as stored except where the file says they mean something else:
min-is-white is inverted, palette indices are looked up, CMYK becomes RGB.
"""

from __future__ import annotations

import collections
import math
import threading

from pathlib import Path

import numpy as np

from .image import Image, ImageReadError, lead_axis_names, warn_if_transparent

__all__ = ["LAZY_TIFF_BYTES", "read_tiff", "tiff_series", "tiff_pixel_size", "tiff_spacing", "is_tiff"]

#: TIFFs bigger than this are read lazily through tifffile's zarr interface.
LAZY_TIFF_BYTES = 256 * 2**20
_TIFF_MAGIC = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")
#: Photometric interpretations read (the others store pixels we cannot turn into gray).
_READABLE = {"MINISWHITE", "MINISBLACK", "RGB", "PALETTE", "SEPARATED", "YCBCR"}


def is_tiff(path: Path) -> bool:
    """True if the file starts like a TIFF or BigTIFF (whatever its name)."""
    with open(path, "rb") as fh:
        return fh.read(4) in _TIFF_MAGIC


def tiff_series(tif, path: Path) -> list:
    """The series holding the file's images, all of one shape and type.

    Raises
    ------
    ImageReadError
        If the file holds series of different shapes or types.
    """
    series = [s for s in tif.series if not s.keyframe.is_reduced] or list(tif.series[:1])
    if not series:
        raise ImageReadError(f"{path.name} holds no image")
    kinds = {(tuple(s.shape), np.dtype(s.dtype).str, s.axes) for s in series}
    if len(kinds) > 1:
        shapes = ", ".join(f"{tuple(s.shape)} {np.dtype(s.dtype)}" for s in series[:6])
        more = ", ..." if len(series) > 6 else ""
        raise ImageReadError(
            f"{path.name} holds {len(series)} images (TIFF series) of different shapes or types: {shapes}{more}. "
            "napari-colorize colours one image or one stack per file: split it into one file per series, e.g. "
            "[tifffile.imwrite(f'part{i}.tif', s.asarray()) for i, s in enumerate(tifffile.TiffFile(name).series)], "
            "and colour those")
    return series


def _series_data(series: list, lazy: bool, tif, path: Path):
    if not lazy:
        arrays = [s.asarray() for s in series]
        return arrays[0] if len(arrays) == 1 else np.stack(arrays)
    import dask.array as da
    arrays = [_lazy_series(path, tif.series.index(s), s) for s in series]
    return arrays[0] if len(arrays) == 1 else da.stack(arrays)


def _lazy_series(path: Path, index: int, series):
    """A dask array of one series, chunked as the file is, whose tasks hold only the path.

    An open file (and its lock) in the graph could not be sent to a dask.distributed
    worker; each process opens the file once instead (:func:`_acquire`).  The file's
    size and time are in the task names, so a rewritten file is a different input.
    """
    import dask.array as da
    import zarr

    store = zarr.open(series.aszarr(), mode="r")  # only for its shape, chunks and type
    st = path.stat()
    stamp = (st.st_size, st.st_mtime_ns)
    chunks = da.core.normalize_chunks(store.chunks, store.shape)
    return da.map_blocks(_read_block, str(path.resolve()), index, stamp, chunks=chunks, dtype=store.dtype,
                         meta=np.empty((0,) * store.ndim, store.dtype))


#: At most this many files are kept open by the lazy reader in one process.
MAX_OPEN_TIFFS = 16


class _OpenSeries:
    """One series of a file kept open for the lazy reader, closed once retired and unused."""

    def __init__(self, path: str, index: int) -> None:
        import tifffile
        import zarr

        self.file = tifffile.TiffFile(path)
        self.array = zarr.open(self.file.series[index].aszarr(), mode="r")
        self.users = 0
        self.retired = False


#: (path, series, stamp) -> open series, least recently used first.
_OPEN: collections.OrderedDict[tuple, _OpenSeries] = collections.OrderedDict()
_OPEN_LOCK = threading.Lock()


def _acquire(path: str, index: int, stamp: tuple[int, int]) -> _OpenSeries:
    """The open series for a read, opened once per process, not once per block.

    A file with another ``stamp`` (rewritten since) and the least recently read beyond
    :data:`MAX_OPEN_TIFFS` are retired: closed as soon as no read uses them, so neither
    a replaced nor a deleted file stays open (on Windows it could not be deleted).
    """
    key = (path, index, stamp)
    with _OPEN_LOCK:
        entry = _OPEN.get(key)
        if entry is None:
            stale = [k for k in _OPEN if k[0] == path and k[2] != stamp]  # rewritten; other series stay
            crowded = list(_OPEN)[:max(0, len(_OPEN) + 1 - MAX_OPEN_TIFFS)]
            for old in dict.fromkeys(stale + crowded):
                _retire(_OPEN.pop(old))
            entry = _OPEN[key] = _OpenSeries(path, index)
        _OPEN.move_to_end(key)
        entry.users += 1
        return entry


def _release(entry: _OpenSeries) -> None:
    with _OPEN_LOCK:
        entry.users -= 1
        if entry.retired and entry.users == 0:
            entry.file.close()


def _retire(entry: _OpenSeries) -> None:
    entry.retired = True
    if entry.users == 0:
        entry.file.close()


def close_lazy_tiffs() -> None:
    """Close every file the lazy reader holds open in this process (once their reads end)."""
    with _OPEN_LOCK:
        while _OPEN:
            _retire(_OPEN.popitem()[1])


def _read_block(path: str, index: int, stamp: tuple[int, int], block_info=None) -> np.ndarray:
    where = tuple(slice(a, b) for a, b in block_info[None]["array-location"])
    entry = _acquire(path, index, stamp)
    try:
        return np.asarray(entry.array[where])
    finally:
        _release(entry)


def read_tiff(path: Path) -> Image:
    """Read every series of a TIFF as one gray, RGB or RGBA array ``(..., Y, X[, S])``."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tiff_series(tif, path)
        page = series[0].keyframe
        axes = ("Q" if len(series) > 1 else "") + series[0].axes
        pixel_size, unit, z_step = tiff_spacing(tif)
        nbytes = len(series) * int(np.prod(series[0].shape, dtype=np.int64)) * np.dtype(series[0].dtype).itemsize
        data = _series_data(series, nbytes > LAZY_TIFF_BYTES, tif, path)
        photometric = page.photometric.name if page.photometric is not None else "MINISBLACK"
        colormap = page.colormap if photometric == "PALETTE" else None
        bits = int(page.bitspersample)
        inkset = int(page.tags["InkSet"].value) if "InkSet" in page.tags else 1
    # Samples last: the colour channels of RGB, CMYK and gray + alpha files.
    if "S" in axes and axes.index("S") != len(axes) - 1:
        data = np.moveaxis(data, axes.index("S"), -1)  # dask arrays too (NEP 18)
        axes = axes.replace("S", "") + "S"
    data, model = _interpret(data, "S" in axes, photometric, colormap, bits, inkset, path)
    if model in ("gray", "RGB") and photometric != "PALETTE":  # a palette's colours are looked up, not stored
        data = _full_byte_range(data, bits)
    if model == "gray" and "S" in axes:
        axes = axes.replace("S", "")
    lead = [a.lower() for a in axes if a not in "YXS"]
    return Image(data, pixel_size, unit, lead_axis_names(lead), z_step=z_step,
                 colour_model=model if model in ("CMYK", "palette") else None, samples=model != "gray")


def _interpret(data, samples: bool, photometric: str, colormap, bits: int, inkset: int, path: Path):
    """Stored values -> (gray or RGB(A) values, colour model) by the photometric interpretation."""
    if photometric not in _READABLE:
        raise ImageReadError(f"{path.name} stores its pixels as {photometric}, which napari-colorize cannot turn "
                             "into gray; save it as a gray or RGB TIFF first")
    if photometric in ("MINISBLACK", "MINISWHITE") and samples and data.shape[-1] == 2:
        warn_if_transparent(data[..., 1], path.name, _opaque(data.dtype, bits))
        data = data[..., 0]  # gray + alpha (or one extra sample): the first sample is the gray value
        samples = False
    if photometric in ("RGB", "YCBCR") and samples and data.shape[-1] > 3:
        warn_if_transparent(data[..., 3], path.name, _opaque(data.dtype, bits))
        data = data[..., :3]  # RGB + alpha (or extra samples)
    if photometric == "MINISWHITE":
        return _invert(data, bits, path), "gray"
    if photometric == "PALETTE":
        return _apply_palette(data, colormap)
    if photometric == "SEPARATED":
        if inkset != 1 or data.shape[-1] < 4:
            raise ImageReadError(f"{path.name} is a separated (ink) TIFF that is not CMYK; save it as RGB or "
                                 "gray first")
        return _cmyk_to_rgb(data[..., :4], _white(data.dtype, bits)), "CMYK"
    return data, ("RGB" if samples else "gray")


def _opaque(dtype, bits: int) -> float:
    """An alpha sample's fully opaque value: :func:`_white`, or the type's maximum for signed integers."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.signedinteger):
        return min(2 ** (bits - 1) - 1, np.iinfo(dtype).max)
    return _white(dtype, bits)


def _white(dtype, bits: int) -> float:
    """The largest stored value: 2**bits - 1 for integers (12-bit data in uint16), 1 for floats."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return 1
    if np.issubdtype(dtype, np.unsignedinteger):
        return min(2**bits - 1, np.iinfo(dtype).max)
    if np.issubdtype(dtype, np.floating):
        return 1.0
    raise ImageReadError(f"a min-is-white or CMYK TIFF of type {dtype} is not supported; save it as min-is-black")


def _invert(data, bits: int, path: Path):
    """Min-is-white (0 = white, common in bilevel document scans) -> min-is-black."""
    if np.dtype(data.dtype) == np.bool_:
        return ~data
    try:
        white = _white(data.dtype, bits)
    except ValueError:
        raise ImageReadError(f"{path.name} is a min-is-white TIFF of type {np.dtype(data.dtype)}; invert it and "
                             "save it as min-is-black first") from None
    return (data.dtype.type(white) - data).astype(data.dtype)


def _full_byte_range(data, bits: int):
    """2- and 4-bit samples (stored in uint8 as 0..3, 0..15) stretched to 0..255, as Pillow reads
    such PNGs: read as 8-bit values, a 4-bit scan came out nearly black, with no warning."""
    if not 1 < bits < 8 or np.dtype(data.dtype) != np.uint8:
        return data
    top = 2**bits - 1
    return ((data.astype(np.uint16) * 255 + top // 2) // top).astype(np.uint8)  # exact for 2 and 4 bits


def _apply_palette(data, colormap):
    """Palette indices -> RGB of the colour map, or gray when the map is gray.

    TIFF stores a colour map at 16 bits; one that holds 8-bit colours (each value v x 257, or
    v x 256 as Pillow writes them) is looked up as those 8-bit colours, as Pillow shows them:
    the file has 8 bits a colour, not "more than 8 bits per pixel" as the 16-bit table said."""
    colormap = np.asarray(colormap)
    for factor in (257, 256):
        if (colormap % factor == 0).all():
            colormap = (colormap // factor).astype(np.uint8)
            break
    gray = bool((colormap[0] == colormap[1]).all() and (colormap[1] == colormap[2]).all())
    table = colormap[0] if gray else colormap.T  # (N,) or (N, 3)
    if isinstance(data, np.ndarray):
        return table[data], ("gray" if gray else "palette")
    return data.map_blocks(lambda b: table[b], dtype=table.dtype,
                           **({} if gray else {"new_axis": data.ndim})), ("gray" if gray else "palette")


def _cmyk_to_rgb(cmyk, white: float):
    """CMYK -> RGB as Pillow converts it: ``R = (1 - C) (1 - K)`` on [0, 1] values, same type."""
    values = cmyk.astype(np.float32) / np.float32(white)
    rgb = (1.0 - values[..., :3]) * (1.0 - values[..., 3:4]) * np.float32(white)
    if np.issubdtype(np.dtype(cmyk.dtype), np.integer):
        rgb = rgb.round()
    return rgb.astype(cmyk.dtype)


_UNITS_UM = {"micron": 1.0, "um": 1.0, "µm": 1.0, "\\u00B5m": 1.0, "micrometer": 1.0, "nm": 1e-3, "nanometer": 1e-3,
             "mm": 1e3, "millimeter": 1e3, "cm": 1e4, "centimeter": 1e4}


def _ome_pixels(tif) -> list[dict[str, str]]:
    """The attributes of every OME ``Pixels`` element ([] for a file without OME metadata)."""
    if not (tif.is_ome and tif.ome_metadata):
        return []
    import xml.etree.ElementTree as ET
    try:
        root = ET.fromstring(tif.ome_metadata)
    except ET.ParseError:
        return []
    return [el.attrib for el in root.iter() if el.tag.endswith("Pixels")]


def tiff_spacing(tif) -> tuple[tuple[float, float] | None, str | None, float | None]:
    """``((y, x) pixel size, unit, z step)`` in micrometers, when the file says them.

    The OME metadata is parsed once for both; a z step is kept only beside a pixel size.
    """
    pixels = _ome_pixels(tif)
    pixel_size, unit = tiff_pixel_size(tif, pixels)
    z_step = _z_step_um(tif, pixels) if pixel_size is not None else None
    return pixel_size, unit, z_step if z_step and z_step > 0 else None


def _z_step_um(tif, pixels: list[dict[str, str]]) -> float | None:
    """The plane spacing in micrometers from OME (PhysicalSizeZ) or ImageJ (spacing) metadata."""
    for attrib in pixels:
        if "PhysicalSizeZ" in attrib:
            factor = _UNITS_UM.get(attrib.get("PhysicalSizeZUnit", "µm"))
            try:
                return float(attrib["PhysicalSizeZ"]) * factor if factor else None
            except ValueError:
                return None
    if tif.is_imagej:
        meta = tif.imagej_metadata or {}
        factor = _UNITS_UM.get(str(meta.get("unit", "")).lower())
        spacing = meta.get("spacing")
        return float(spacing) * factor if spacing and factor else None
    return None


def tiff_pixel_size(tif, pixels: list[dict[str, str]] | None = None) -> tuple[tuple[float, float] | None, str | None]:
    """(y, x) pixel size in micrometers from OME, ImageJ or resolution tags, when present.

    ``pixels``: the OME ``Pixels`` attributes when already parsed (:func:`_ome_pixels`).
    """
    for attrib in _ome_pixels(tif) if pixels is None else pixels:
        if "PhysicalSizeX" in attrib:
            x = float(attrib["PhysicalSizeX"])
            y = float(attrib.get("PhysicalSizeY", x))
            factor = _UNITS_UM.get(attrib.get("PhysicalSizeXUnit", "µm"))
            if factor is not None and _usable(y, x):
                return (y * factor, x * factor), "micrometer"
    page = tif.pages[0]
    tags = page.tags
    if "XResolution" not in tags or "YResolution" not in tags:
        return None, None
    (xn, xd), (yn, yd) = tags["XResolution"].value, tags["YResolution"].value
    if not (xn and yn):
        return None, None
    x, y = xd / xn, yd / yn  # units per pixel
    if not _usable(y, x):
        return None, None
    if tif.is_imagej:
        unit = (tif.imagej_metadata or {}).get("unit")
        factor = _UNITS_UM.get(str(unit).lower()) if unit else None
        return ((y * factor, x * factor), "micrometer") if factor else (None, None)
    res_unit = int(tags["ResolutionUnit"].value) if "ResolutionUnit" in tags else 2
    factor = {2: 25400.0, 3: 1e4}.get(res_unit)  # inch, centimeter -> micrometer
    return ((y * factor, x * factor), "micrometer") if factor else (None, None)


def _usable(*sizes: float) -> bool:
    """Pixel sizes an output can record: a size of 0 (an unset field) or below made stores
    that napari refuses to open."""
    return all(math.isfinite(v) and v > 0 for v in sizes)
