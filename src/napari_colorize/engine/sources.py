"""Where an input array is read from on disk, so that no output is written over its own input.

A zarr array (zarr 2 or 3, local store) or a numpy memmap, given directly or read by a
dask graph (``da.from_zarr``, inlined or not), is traced to its folder or file.  The
zarr writer refuses a destination that holds its input, or that lies inside the input's
store (:func:`check_source_outside`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import zarr

__all__ = ["source_paths", "source_stamp", "check_source_outside"]

#: How deep into a dask task's arguments arrays are looked for (a task, its argument
#: tuple, a data node, its value).
_DEPTH = 3


def _storage_paths(node: Any) -> tuple[str, str] | None:
    """(store root, array location) on disk of a zarr array or numpy memmap, else None.

    zarr 3 local stores name their folder ``root``, zarr 2 directory stores ``path``;
    stores in memory or inside another file (tifffile's) have neither and are skipped.
    """
    if isinstance(node, np.memmap):
        name = getattr(node, "filename", None)
        return (os.path.realpath(name),) * 2 if name else None
    if not isinstance(node, zarr.Array):
        return None
    store = node.store
    root = getattr(store, "root", None) or getattr(store, "path", None)
    if not isinstance(root, (str, os.PathLike)):
        return None
    root = os.path.realpath(os.fspath(root))
    return root, os.path.join(root, *str(getattr(node, "path", "") or "").split("/"))


def _hierarchy_root(folder: str) -> str:
    """The outermost zarr group holding ``folder``: an array opened by its own path
    (``zarr.open_array("in.zarr/img")``) has a store rooted at the array, but a store written
    beside it (``in.zarr/out.zarr``) would still become a member of the input's group."""
    while (parent := os.path.dirname(folder)) != folder and _is_zarr_group(parent):
        folder = parent
    return folder


def _is_zarr_group(folder: str) -> bool:
    if os.path.isfile(os.path.join(folder, ".zgroup")):  # zarr 2
        return True
    try:  # zarr 3
        with open(os.path.join(folder, "zarr.json"), encoding="utf-8") as fh:
            return json.load(fh).get("node_type") == "group"
    except (OSError, ValueError, AttributeError):
        return False


def _graph_nodes(value: Any, depth: int = 0) -> Iterator[Any]:
    """Arrays held by a dask graph value: itself, a task's arguments, a data node's value."""
    yield value
    if depth >= _DEPTH:
        return
    children: list = []
    if isinstance(value, (tuple, list)):
        children = list(value)
    elif hasattr(value, "args") and hasattr(value, "kwargs"):  # dask Task
        children = [*value.args, *dict(value.kwargs).values()]
    elif type(value).__name__ == "DataNode":
        children = [getattr(value, "value", None)]
    for child in children:
        yield from _graph_nodes(child, depth + 1)


def source_paths(image: Any) -> list[tuple[str, str]]:
    """Where on disk ``image`` is read from: (store root, array location) per zarr array or memmap.

    Looks at ``image`` itself and, for a dask array, at the arrays its graph reads.  The
    root is the outermost zarr group holding the array (:func:`_hierarchy_root`), looked up
    once per store, not once per chunk.
    """
    found = {paths for paths in [_storage_paths(image)] if paths is not None}
    if hasattr(image, "__dask_graph__"):
        graph = image.__dask_graph__()
        layers = getattr(graph, "layers", None)
        for name, layer in (layers.items() if isinstance(layers, Mapping) else [(None, graph)]):
            found.update(_layer_paths(name, layer))
    roots = {root: _hierarchy_root(root) for root in {root for root, _ in found}}
    return sorted({(roots[root], location) for root, location in found})


def _layer_paths(name: str | None, layer: Any) -> tuple[tuple[str, str], ...]:
    """The storage paths one layer of a dask graph reads, kept by its name (a dask name stands
    for one content): every slice of a store shares the store's layer, walked once."""
    if name is not None and name in _PATHS:
        return _PATHS[name]
    nodes = [node for value in dict(layer).values() for node in _graph_nodes(value)]
    found = tuple(sorted({paths for paths in map(_storage_paths, nodes) if paths is not None}))
    if name is not None:
        if len(_PATHS) >= _PATHS_KEPT:
            _PATHS.pop(next(iter(_PATHS)))
        _PATHS[name] = found
    return found


#: :func:`_layer_paths` of recent dask graph layers by name: walking the layer of a store of
#: 10,000 chunks takes ~0.1 s, and the widget asks again at every re-colour, of every plane.
_PATHS: dict[str, tuple[tuple[str, str], ...]] = {}
_PATHS_KEPT = 256


def source_stamp(image: Any) -> str | None:
    """What the files ``image`` is read from look like now: path, file count, bytes and newest
    time of each zarr array or memmap it reads (:func:`napari_colorize.io.source_fingerprint`);
    None for an input held in memory.

    dask names a zarr array after its path, not its pixels, so two calls on one store path
    share their dask keys (and this process's caches of tiles and histograms) even when the
    store was rewritten in between; the stamp tells them apart.  A location that cannot be
    read gives a stamp of its own every time (nothing is reused).
    """
    from ..io.files import source_fingerprint

    stamps = []
    for _, location in source_paths(image):
        try:
            stamps.append(source_fingerprint(location))
        except OSError:
            stamps.append(f"{location}|unreadable|{os.urandom(8).hex()}")
    return "\n".join(stamps) or None


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check_source_outside(image: Any, path: str | os.PathLike) -> None:
    """Refuse to write a store where ``image`` is read from.

    Writing (or replacing) a store while its own arrays are the input reads
    half-written or deleted chunks -- an all-black result marked complete, and the
    original lost -- and writing inside an input's store changes the input.

    Raises
    ------
    ValueError
        If an array ``image`` reads lies inside ``path``, or ``path`` lies inside the
        store of such an array.
    """
    dest = os.path.realpath(os.fspath(path))
    for root, location in source_paths(image):
        if _inside(location, dest) or _inside(root, dest):
            raise ValueError(f"the input is read from {location}, inside the destination {dest}: writing there "
                             "would destroy the input while it is read. Write to another path (the input is "
                             "left untouched)")
        if _inside(dest, root):
            raise ValueError(f"the destination {dest} lies inside the input's store {root}: writing there would "
                             "change the input. Write to a path outside it")
