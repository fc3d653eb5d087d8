"""Reading zarr arrays and OME-Zarr stores (lazily, as dask arrays).

OME-NGFF's ``c`` axis holds channels (fluorescence, ...): each is coloured as a gray
plane of a stack, like an OME-TIFF's channels.  It is read as RGB(A) only when the
store says so: its ``omero`` channels are coloured red, green, blue (+ one more, alpha),
as bioformats2raw writes a converted colour image.  A bioformats2raw store (its images
in groups ``0``, ``1``, ...) is read through its first series.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

from .image import Image, ImageReadError, ReadWarning, lead_axis_names
from .tiff import _UNITS_UM

__all__ = ["read_zarr", "bioformats2raw_series", "series_output_path"]

#: The omero colours of an RGB image's channels (bioformats2raw, ome-zarr-py).
_RGB_COLOURS = ("FF0000", "00FF00", "0000FF")


def _ome(attrs: dict) -> dict:
    """The OME attributes of a group: at the top (NGFF 0.4) or under "ome" (0.5)."""
    return dict(attrs.get("ome") or attrs)


def bioformats2raw_series(path: Path) -> list[str] | None:
    """The series groups (``"0"``, ``"1"``, ...) of a bioformats2raw store, or None for any other path."""
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception:  # noqa: BLE001 -- not zarr: not such a store
        return None
    if hasattr(node, "shape") or "bioformats2raw.layout" not in _ome(dict(node.attrs)):
        return None
    return _series_groups(node)


def _series_groups(node) -> list[str]:
    """The numbered image groups of an open bioformats2raw store, in order."""
    return sorted((name for name, _ in node.groups() if name.isdigit()), key=int)


def series_output_path(source: Path, relative: Path) -> Path:
    """How an input is named in its outputs: a series of a bioformats2raw store
    (``sample.ome.zarr/1``) after its store and series, ``sample_1.zarr``; others as given."""
    from .files import image_stem

    if source.name.isdigit() and bioformats2raw_series(source.parent):
        return relative.parent / f"{image_stem(source.parent.name)}_{source.name}.zarr"
    return relative


def _is_rgb(ome: dict, channels: int) -> bool:
    """Whether the omero channel colours say the ``c`` axis is red, green, blue (+ alpha)."""
    listed = (ome.get("omero") or {}).get("channels") or []
    colours = tuple(str(ch.get("color", "")).upper()[:6] for ch in listed if isinstance(ch, dict))
    return channels in (3, 4) and len(colours) == channels and colours[:3] == _RGB_COLOURS


def _open_series(node, path: Path):
    """The image group of a bioformats2raw store (its first series, saying so when it has more)."""
    series = _series_groups(node)
    if not series:
        raise ImageReadError(f"{path.name} is a bioformats2raw store without image series (groups 0, 1, ...)")
    if len(series) > 1:
        warnings.warn(f"{path.name} holds {len(series)} image series; colouring the first ({path.name}/{series[0]}); "
                      f"give {path.name}/{series[1]} (and so on) for the others", ReadWarning, stacklevel=4)
    return node[series[0]]


def read_zarr(path: Path) -> Image:
    """A zarr array, the first array of a group, or level 0 of an OME-Zarr multiscale image."""
    import dask.array as da
    import zarr

    node = zarr.open(str(path), mode="r")
    if hasattr(node, "shape"):
        return Image(da.from_zarr(node))
    if "bioformats2raw.layout" in _ome(dict(node.attrs)):
        node = _open_series(node, path)
    ome = _ome(dict(node.attrs))
    ms = ome.get("multiscales")
    if not ms:
        arrays = sorted(name for name, _ in node.arrays())
        if not arrays:
            raise ImageReadError(f"{path.name} is a zarr group without arrays or OME multiscales metadata")
        return Image(da.from_zarr(node[arrays[0]]))
    dataset = ms[0]["datasets"][0]
    data = da.from_zarr(node[dataset["path"]])
    axes = [a["name"] if isinstance(a, dict) else a for a in ms[0].get("axes", [])]
    pixel_size = unit = z_step = origin = z_origin = None
    for tr in dataset.get("coordinateTransformations", []):
        values = tr.get(tr.get("type"))
        if tr.get("type") not in ("scale", "translation") or not isinstance(values, list) or len(values) < 2:
            continue
        z = axes.index("z") if "z" in axes and len(values) == len(axes) else None
        read = [values[-2], values[-1]] + ([] if z is None else [values[z]])
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in read):
            continue  # a broken size or position is no size or position (an output store could not record it)
        yx = (float(values[-2]), float(values[-1]))
        along_z = None if z is None else float(values[z])
        if tr["type"] == "scale":
            if min(read) <= 0:
                continue  # a size of 0 or below is no size: napari refuses a store that records it
            pixel_size, z_step = yx, along_z
        else:  # where pixel 0 lies: carried to the outputs like the pixel size
            origin, z_origin = yx, along_z
    space = [a for a in ms[0].get("axes", []) if isinstance(a, dict) and a.get("name") == "x"]
    if space and space[0].get("unit"):
        factor = _UNITS_UM.get(space[0]["unit"])
        unit = "micrometer" if factor else space[0]["unit"]
        if factor and pixel_size:
            pixel_size = (pixel_size[0] * factor, pixel_size[1] * factor)
            z_step = z_step * factor if z_step else None
        if factor and origin:
            origin = (origin[0] * factor, origin[1] * factor)
            z_origin = z_origin * factor if z_origin else None
    rgb = "c" in axes and _is_rgb(ome, data.shape[axes.index("c")])
    if rgb:
        data = da.moveaxis(data, axes.index("c"), -1)
        axes.remove("c")
    lead = axes[:-2] if len(axes) >= 2 else None
    return Image(data, pixel_size, unit, lead_axis_names(lead), samples=rgb, z_step=z_step if pixel_size else None,
                 origin=origin if any(origin or ()) or z_origin else None, z_origin=z_origin)
