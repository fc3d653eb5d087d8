"""The names and zarr calls that every part of an output store shares.

An output store is a zarr format 2 group (OME-NGFF 0.4); :mod:`.zarr_io` writes it,
:mod:`.pyramid` adds its levels and :mod:`.zarr_read` opens it.  The calls here hide
the difference between zarr 2 and zarr 3.
"""

from __future__ import annotations

import os

import zarr

__all__ = ["MARKERS", "SPILL", "ATTR", "ZARR3", "open_group", "open_array", "create_array", "marker"]

#: Folder of the empty marker files of finished chunks (removed when the store is complete).
MARKERS = ".napari_colorize_done"
#: Folder in the store for tile pieces handed from one stripe to the next (removed at the end).
SPILL = ".napari_colorize_spill"
#: Root attribute holding the job record; a store without it is not ours.
ATTR = "napari_colorize"
ZARR3 = int(zarr.__version__.split(".")[0]) >= 3


def open_group(path: str, mode: str):
    """A zarr group of an output store (zarr format 2, with zarr 2 or 3)."""
    return zarr.open_group(path, mode=mode, zarr_format=2) if ZARR3 else zarr.open_group(path, mode=mode)


def create_array(group, name: str, shape, chunks, dtype):
    """An empty (zero-filled) array ``name`` in ``group``, replacing any there."""
    if ZARR3:
        return group.create_array(name, shape=shape, chunks=chunks, dtype=dtype, fill_value=0, overwrite=True)
    return group.create_dataset(name, shape=shape, chunks=chunks, dtype=dtype, fill_value=0, overwrite=True)


def open_array(path: str, mode: str = "r+"):
    """An array of an output store by its path."""
    return zarr.open_array(path, mode=mode, zarr_format=2) if ZARR3 else zarr.open_array(path, mode=mode)


def marker(path: str, block: tuple[int, ...]) -> str:
    """The marker file of level-0 chunk ``block`` (plane..., chunk row, chunk column) of store ``path``."""
    return os.path.join(path, MARKERS, ".".join(map(str, block)))
