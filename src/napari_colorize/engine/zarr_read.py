"""Opening an output store written by :func:`.zarr_io.colorize_to_zarr`: level 0 or every level, lazily."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..outputs import ColorizeResult, get_output
from .ome import channel_index, input_geometry, read_multiscales
from .placement import image_group
from .store import ATTR, open_group

__all__ = ["open_zarr_levels", "open_zarr_result", "read_geometry", "read_placement"]


def _job_attrs(group, path: str, require_complete: bool) -> dict:
    """The job record of a store; ValueError when it is not ours or (unless allowed) unfinished."""
    attrs = dict(group.attrs).get(ATTR)
    if attrs is None:
        raise ValueError(f"{path} was not written by napari-colorize")
    if require_complete and not attrs.get("complete"):
        raise ValueError(f"{path} is unfinished (the run was interrupted); run the same command again to finish it")
    return attrs


def _input_order(level, layout: dict | None):
    """A stored level (channels last) in the input's axis order and shape: the store's
    reordering of the leading axes undone, and the size-1 axes it left out put back."""
    if not layout:
        return level
    stored = list(layout["stored"])
    missing = [i for i in range(len(layout["axes"])) if i not in stored]
    level = level[(None,) * len(missing)]  # now the input axes missing + stored, then the plane
    current = missing + stored
    rest = list(range(len(current), level.ndim))
    return level.transpose([current.index(i) for i in range(len(current))] + rest)


def open_zarr_levels(path: str | os.PathLike, require_complete: bool = True) -> ColorizeResult:
    """Open every pyramid level of a store written by :func:`.zarr_io.colorize_to_zarr`, lazily.

    Parameters
    ----------
    path : path
        The store.
    require_complete : bool
        Raise ``ValueError`` for an unfinished store (its coarser levels are still empty).

    Returns
    -------
    ColorizeResult
        Each output a list of dask arrays, finest first (napari's multiscale data): the
        colour image channels-last ``(..., Y, X, 3)`` in the stored dtype (uint8 0-255
        or float32 0-1), the maps ``(..., Y, X)`` float32; outputs not written are None.
        The leading axes are the input's, in its order, whatever order the store keeps.
        ``info`` is the job record.
    """
    import dask.array as da

    path = os.fspath(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path} is {'a file' if os.path.exists(path) else 'missing'}, not a store "
                                "written by napari-colorize (a folder such as out.zarr)")
    try:
        group = open_group(path, "r")
    except Exception:  # noqa: BLE001 -- zarr's errors differ by version: a lone array, a folder of anything
        raise ValueError(f"{path} was not written by napari-colorize (it is no zarr group); open it with zarr") from None
    attrs = _job_attrs(group, path, require_complete)
    out: dict[str, Any] = {}
    for key in attrs["outputs"]:
        output = get_output(key)
        image = image_group(group, output)
        paths, axes, _, _ = read_multiscales(image)
        levels = [da.from_zarr(image[p]) for p in paths]
        channel = channel_index(axes)
        levels = [da.moveaxis(lv, channel, -1) for lv in levels] if channel is not None else levels
        out[output.name] = [_input_order(lv, attrs.get("layout")) for lv in levels]
    return ColorizeResult(info=dict(attrs), **out)


def open_zarr_result(path: str | os.PathLike, require_complete: bool = True) -> ColorizeResult:
    """Open level 0 of a store written by :func:`.zarr_io.colorize_to_zarr` as a lazy ``ColorizeResult``.

    ``rgb`` is returned channels-last ``(..., Y, X, 3)`` float32 in [0, 1] (uint8
    stores are scaled); missing outputs are None.  Raises ``ValueError`` for an
    unfinished store unless ``require_complete=False``.  :func:`open_zarr_levels`
    gives every level.
    """
    levels = open_zarr_levels(path, require_complete)
    out = {name: None if lv is None else lv[0] for name, lv in levels.maps.items()}
    rgb = out.get("rgb")
    if rgb is not None and rgb.dtype == np.uint8:
        out["rgb"] = rgb.astype(np.float32) / 255.0
    return ColorizeResult(info=levels.info, **out)


def read_geometry(path: str | os.PathLike) -> tuple[list[dict], list[float]]:
    """Axes and level-0 pixel size of a store's images, without the colour channel axis,
    in the input's axis order (as :func:`open_zarr_levels` gives the arrays).

    Returns
    -------
    axes : list of dict
        NGFF axes (name, type, unit) of the maps: ``(..., y, x)``.
    scale : list of float
        Pixel size along each of those axes.
    """
    axes, scale, _ = read_placement(path)
    return axes, scale


def read_placement(path: str | os.PathLike) -> tuple[list[dict], list[float], list[float]]:
    """:func:`read_geometry` and where the store lies: what napari's ``scale`` and ``translate`` are.

    Returns
    -------
    axes, scale
        As :func:`read_geometry`.
    translate : list of float
        World position of level 0's pixel 0 along each axis (its NGFF translation; zeros
        for a store written without an origin), so that the store overlays its source.
    """
    path = os.fspath(path)
    group = open_group(path, "r")
    attrs = _job_attrs(group, path, require_complete=False)
    _, axes, scale, translate = read_multiscales(image_group(group, get_output(attrs["outputs"][0])))
    channel = channel_index(axes)
    keep = [i for i in range(len(axes)) if i != channel]
    axes, scale, translate = [axes[i] for i in keep], [scale[i] for i in keep], [translate[i] for i in keep]
    layout = attrs.get("layout")
    if not layout:
        return axes, scale, translate
    axes, scale, translate = input_geometry(axes, scale, translate, layout["axes"], layout["stored"])
    # A left-out size-1 axis keeps the pixel size and position recorded beside the layout.
    placement = attrs.get("placement") if isinstance(attrs.get("placement"), dict) else {}
    for i in set(range(len(layout["axes"]))) - set(layout["stored"]):
        scale[i] = _recorded(placement.get("scale"), i, scale[i])
        translate[i] = _recorded(placement.get("origin"), i, translate[i])
    return axes, scale, translate


def _recorded(values: Any, index: int, fill: float) -> float:
    """``values[index]`` as a float when the job record holds it, else ``fill``."""
    try:
        return float(values[index])
    except (TypeError, IndexError, KeyError, ValueError):
        return fill
