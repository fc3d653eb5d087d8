"""Reading gray images (PNG, JPEG, TIFF, zarr) and writing results without ever leaving a torn file.

Readers return :class:`Image`: the pixels (numpy, or a lazy dask array for large
TIFFs and zarr) and the pixel size when the file says it.  Colour files are turned
into gray ``(R + G + B) / 3`` with a warning (or refused with ``strict=True``), the
same convention the model was trained with.  Writers write to a temporary name in
the destination folder and ``os.replace`` it into place, so a killed run leaves
either the old file or the new one.
"""

from __future__ import annotations

import glob
import os
import warnings
from collections.abc import Iterable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._atomic import atomic_path

__all__ = ["Image", "ColourInputWarning", "read_image", "find_inputs", "atomic_path", "write_png", "tiff_memmaps",
           "IMAGE_SUFFIXES", "is_zarr"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
#: TIFFs bigger than this are read lazily through tifffile's zarr interface.
LAZY_TIFF_BYTES = 256 * 2**20


class ColourInputWarning(UserWarning):
    """A colour file was converted to gray."""


@dataclass
class Image:
    """A gray image read from disk.

    Attributes
    ----------
    data : numpy.ndarray or dask.array.Array, shape (..., Y, X)
    pixel_size : (float, float) or None
        (y, x) pixel size in ``unit``.
    unit : str or None
        "micrometer" when known.
    axes : list of str or None
        Names of the leading axes ("t", "z") when the file says them.
    converted : bool
        True if it was a colour file turned into gray.
    """

    data: Any
    pixel_size: tuple[float, float] | None = None
    unit: str | None = None
    axes: list[str] | None = None
    converted: bool = False


def is_zarr(path: Path) -> bool:
    """A zarr store (v2 or v3), judged by its metadata files or its ``.zarr`` suffix."""
    return path.is_dir() and (path.suffix.lower() == ".zarr" or any(
        (path / name).exists() for name in (".zarray", ".zgroup", "zarr.json")))


def find_inputs(patterns: Iterable[str]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Expand files, folders (recursively) and globs into input paths.

    Returns
    -------
    inputs : list of Path
        Unique, in the order given (folders sorted).
    missing : list of (pattern, reason)
        Patterns that matched nothing.
    """
    found: list[Path] = []
    missing: list[tuple[str, str]] = []
    for pattern in patterns:
        matches = [Path(p) for p in sorted(glob.glob(pattern, recursive=True))] if glob.has_magic(pattern) else [Path(pattern)]
        if not matches or not matches[0].exists():
            missing.append((pattern, "no such file or folder" if not glob.has_magic(pattern) else "the pattern matched nothing"))
            continue
        for path in matches:
            if path.is_dir() and not is_zarr(path):
                found += _walk(path)
            elif is_zarr(path) or path.suffix.lower() in IMAGE_SUFFIXES:
                found.append(path)
            elif path.is_file() and not glob.has_magic(pattern):
                found.append(path)  # named explicitly: try it, and report why it fails
    unique = list(dict.fromkeys(p.resolve() for p in found))
    return unique, missing


def _walk(folder: Path) -> list[Path]:
    out: list[Path] = []
    for root, dirs, files in os.walk(folder):
        rootp = Path(root)
        stores = [d for d in dirs if is_zarr(rootp / d)]
        out += [rootp / d for d in stores]
        dirs[:] = sorted(d for d in dirs if d not in stores and not d.startswith("."))
        out += [rootp / f for f in sorted(files) if Path(f).suffix.lower() in IMAGE_SUFFIXES and not f.startswith(".")]
    return out


def _to_gray(data, name: str, strict: bool):
    if strict:
        raise ValueError(f"{name} is a colour image; napari-colorize colours gray images (without --strict it would "
                         "be converted to gray with a warning)")
    warnings.warn(f"{name} is a colour image; converting it to gray (R + G + B) / 3", ColourInputWarning, stacklevel=3)
    rgb = data[..., :3]
    if np.issubdtype(rgb.dtype, np.integer):
        scale = float(np.iinfo(rgb.dtype).max)
        return (rgb.astype(np.float32) / scale).mean(axis=-1).astype(np.float32)
    return rgb.astype(np.float32).mean(axis=-1)


def read_image(path: str | os.PathLike, strict: bool = False) -> Image:
    """Read a gray image or stack from PNG, JPEG, TIFF (multi-page, BigTIFF, 16-bit) or zarr.

    Raises
    ------
    ValueError
        Unreadable or empty files, colour files with ``strict=True``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        if is_zarr(path):
            image = _read_zarr(path)
        elif path.suffix.lower() in (".tif", ".tiff"):
            image = _read_tiff(path)
        else:
            import imageio.v3 as iio
            image = Image(np.asarray(iio.imread(path)))
    except (ValueError, FileNotFoundError):
        raise
    except Exception as err:  # decoders raise many types for a damaged or foreign file
        first = (str(err).strip().splitlines() or [""])[0]
        raise ValueError(f"cannot read {path.name}: {type(err).__name__}: {first}") from err
    data = image.data
    if any(s == 0 for s in data.shape) or data.ndim < 2:
        raise ValueError(f"{path.name} is empty (shape {tuple(data.shape)})")
    if data.ndim >= 3 and data.shape[-1] in (3, 4) and data.shape[-2] > 4:
        image.data, image.converted = _to_gray(data, path.name, strict), True
    return image


def _read_tiff(path: Path) -> Image:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        axes = series.axes
        pixel_size, unit = _tiff_pixel_size(tif)
        nbytes = int(np.prod(series.shape, dtype=np.int64)) * np.dtype(series.dtype).itemsize
        if nbytes > LAZY_TIFF_BYTES:
            import dask.array as da
            import zarr
            data = da.from_zarr(zarr.open(series.aszarr(), mode="r"))
        else:
            data = series.asarray()
    # Samples or a 3-4 long channel axis last = colour; other axes are leading planes.
    if "S" in axes and axes.index("S") != len(axes) - 1:
        data = np.moveaxis(data, axes.index("S"), -1)
        axes = axes.replace("S", "") + "S"
    lead = [a.lower() for a in axes if a not in "YXS"]
    names = lead if all(a in "tz" for a in lead) and len(set(lead)) == len(lead) else None
    return Image(data, pixel_size, unit, names)


_UNITS_UM = {"micron": 1.0, "um": 1.0, "µm": 1.0, "\\u00B5m": 1.0, "micrometer": 1.0, "nm": 1e-3, "nanometer": 1e-3,
             "mm": 1e3, "millimeter": 1e3, "cm": 1e4, "centimeter": 1e4}


def _tiff_pixel_size(tif) -> tuple[tuple[float, float] | None, str | None]:
    """(y, x) pixel size in micrometers from OME, ImageJ or resolution tags, when present."""
    if tif.is_ome and tif.ome_metadata:
        import xml.etree.ElementTree as ET
        try:
            root = ET.fromstring(tif.ome_metadata)
            for el in root.iter():
                if el.tag.endswith("Pixels") and "PhysicalSizeX" in el.attrib:
                    x = float(el.attrib["PhysicalSizeX"])
                    y = float(el.attrib.get("PhysicalSizeY", x))
                    factor = _UNITS_UM.get(el.attrib.get("PhysicalSizeXUnit", "µm"), None)
                    if factor is not None:
                        return (y * factor, x * factor), "micrometer"
        except ET.ParseError:
            pass
    page = tif.pages[0]
    tags = page.tags
    if "XResolution" not in tags or "YResolution" not in tags:
        return None, None
    (xn, xd), (yn, yd) = tags["XResolution"].value, tags["YResolution"].value
    if not (xn and yn):
        return None, None
    x, y = xd / xn, yd / yn  # units per pixel
    if tif.is_imagej:
        unit = (tif.imagej_metadata or {}).get("unit")
        factor = _UNITS_UM.get(str(unit).lower()) if unit else None
        return ((y * factor, x * factor), "micrometer") if factor else (None, None)
    res_unit = int(tags["ResolutionUnit"].value) if "ResolutionUnit" in tags else 2
    factor = {2: 25400.0, 3: 1e4}.get(res_unit)  # inch, centimeter -> micrometer
    return ((y * factor, x * factor), "micrometer") if factor else (None, None)


def _read_zarr(path: Path) -> Image:
    import dask.array as da
    import zarr

    node = zarr.open(str(path), mode="r")
    if hasattr(node, "shape"):
        return Image(da.from_zarr(node))
    attrs = dict(node.attrs)
    ms = attrs.get("multiscales") or (attrs.get("ome") or {}).get("multiscales")
    if not ms:
        arrays = sorted(name for name, _ in node.arrays())
        if not arrays:
            raise ValueError(f"{path.name} is a zarr group without arrays or OME multiscales metadata")
        return Image(da.from_zarr(node[arrays[0]]))
    dataset = ms[0]["datasets"][0]
    data = da.from_zarr(node[dataset["path"]])
    axes = [a["name"] if isinstance(a, dict) else a for a in ms[0].get("axes", [])]
    pixel_size = unit = None
    for tr in dataset.get("coordinateTransformations", []):
        if tr.get("type") == "scale" and len(tr["scale"]) >= 2:
            pixel_size = (float(tr["scale"][-2]), float(tr["scale"][-1]))
    space = [a for a in ms[0].get("axes", []) if isinstance(a, dict) and a.get("name") == "x"]
    if space and space[0].get("unit"):
        factor = _UNITS_UM.get(space[0]["unit"])
        unit = "micrometer" if factor else space[0]["unit"]
        if factor and pixel_size:
            pixel_size = (pixel_size[0] * factor, pixel_size[1] * factor)
    if "c" in axes and data.shape[axes.index("c")] in (3, 4):
        data = da.moveaxis(data, axes.index("c"), -1)
        axes.remove("c")
    lead = axes[:-2] if len(axes) >= 2 else None
    return Image(data, pixel_size, unit, lead if lead and all(a in ("t", "z") for a in lead) else None)


def write_png(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write a uint8/uint16 image to PNG atomically."""
    import imageio.v3 as iio

    path = Path(path)
    with atomic_path(path) as tmp:
        iio.imwrite(tmp, np.asarray(array), extension=".png")
    return path


class tiff_memmaps:
    """Create TIFFs as memory maps, fill them band by band, then rename them into place.

    Bounded memory for any image size (pages stream to disk through the OS); BigTIFF
    is used above 2 GB.  Use as a context manager: on an exception the temporary
    files are deleted and nothing is renamed.

    Parameters
    ----------
    specs : dict of name -> (path, shape, dtype, photometric)
    pixel_size : (float, float), optional
        (y, x) in micrometers, stored as the resolution in pixels per centimeter.
    """

    def __init__(self, specs: dict[str, tuple[Path, tuple[int, ...], str, str]],
                 pixel_size: tuple[float, float] | None = None) -> None:
        self.specs = specs
        self.pixel_size = pixel_size
        self.maps: dict[str, np.memmap] = {}
        self._temps: ExitStack | None = None

    def __enter__(self) -> dict[str, np.memmap]:
        import tifffile

        self._temps = ExitStack()
        try:
            for name, (path, shape, dtype, photometric) in self.specs.items():
                nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
                kwargs: dict[str, Any] = {"photometric": photometric, "bigtiff": nbytes > 2**31 - 2**25}
                if self.pixel_size:
                    kwargs.update(resolution=(1e4 / self.pixel_size[1], 1e4 / self.pixel_size[0]),
                                  resolutionunit="CENTIMETER")
                tmp = self._temps.enter_context(atomic_path(path))
                self.maps[name] = tifffile.memmap(tmp, shape=shape, dtype=dtype, **kwargs)
        except BaseException as err:  # __exit__ is not called when __enter__ fails: delete what was made
            self.__exit__(type(err), err, err.__traceback__)
            raise
        return self.maps

    def __exit__(self, exc_type, exc, tb) -> None:
        temps, self._temps = self._temps, None
        try:
            for m in self.maps.values():
                m.flush()
                mmap = getattr(m, "_mmap", None)
                if mmap is not None:
                    mmap.close()
        except BaseException as err:  # a file that could not be flushed must not be renamed into place
            exc_type, exc, tb = type(err), err, err.__traceback__
            raise
        finally:
            self.maps.clear()
            if temps is not None:
                # Renames every temporary file into place, or deletes them all on an exception.
                temps.__exit__(exc_type, exc, tb)
