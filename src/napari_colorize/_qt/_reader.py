"""napari reader: a store written by napari-colorize opens as its output layers.

``napari-colorize colorize --format zarr`` and ``colorize_to_zarr`` write one OME-Zarr
store per input.  Dropped on the viewer or opened with File > Open, it becomes the
layers the widget would have made (hue entropy, chroma confidence, then the colour
image on top), each a lazy multiscale pyramid placed with the source's pixel size,
position (the store's NGFF translation), axis names and units.  Nothing is computed up
front: the contrast limits are given, so napari reads only the tiles it shows.  Any
other zarr store gets None, so that napari-ome-zarr or another reader takes it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..engine.zarr_io import read_job
from ..engine.zarr_read import open_zarr_levels, read_placement
from ._layers import Geometry, layer_data_tuples

__all__ = ["napari_get_reader", "read_stores", "source_name"]

LayerDataTuple = tuple[Any, dict[str, Any], str]
#: The CLI names a store after its input: ``photo.tif`` -> ``photo_colorized.zarr``.
STORE_SUFFIX = "_colorized"


def napari_get_reader(path: str | Sequence[str]) -> Callable[[Any], list[LayerDataTuple]] | None:
    """The reader for napari-colorize output stores, or None for anything else.

    Parameters
    ----------
    path : str or list of str
        What napari was asked to open (a ``*.zarr`` folder, or several).

    Returns
    -------
    callable or None
        :func:`read_stores` when every path is a store written by napari-colorize.
    """
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if not paths or any(read_job(p) is None for p in paths):
        return None
    return read_stores


def source_name(path: str | os.PathLike) -> str:
    """The name of the store's input: the folder name without ``.zarr`` and ``_colorized``."""
    stem = Path(os.fspath(path).rstrip("/\\")).stem
    return stem[:-len(STORE_SUFFIX)] if stem.endswith(STORE_SUFFIX) and stem != STORE_SUFFIX else stem


def read_stores(path: str | Sequence[str]) -> list[LayerDataTuple]:
    """Every output layer of one or more stores (see :func:`read_store`)."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    return [layer for p in paths for layer in read_store(p)]


def _geometry(path: str) -> Geometry:
    """The source's scale, translate, axis names and units (level 0), from the store's NGFF metadata."""
    axes, scale, translate = read_placement(path)
    units = tuple(a.get("unit") for a in axes)
    return Geometry(scale=tuple(scale), translate=tuple(translate), axis_labels=tuple(a["name"] for a in axes),
                    units=units if any(units) else None)


def read_store(path: str | os.PathLike) -> list[LayerDataTuple]:
    """The output layers of one finished store, lazy and multiscale.

    Parameters
    ----------
    path : path
        A store written by napari-colorize.

    Returns
    -------
    list of (data, kwargs, "image")
        The maps first and the colour image last (on top), named
        ``"<source> colorized"`` etc. like the widget's layers; ``data`` is the list of
        pyramid levels (finest first), or the one array of a store without levels.

    Raises
    ------
    ValueError
        For an unfinished store (its levels are not written yet).
    """
    path = os.fspath(path)
    levels = open_zarr_levels(path)
    # The job record goes under "job": its own "source" (the input's path) is not the layer source's name.
    # layer_data_tuples skips outputs the store does not hold, sets the contrast limits from
    # each level's dtype and marks a list of several levels multiscale.
    return layer_data_tuples(levels, source_name(path), _geometry(path), info={"store": path, "job": levels.info})
