"""The order in which one process writes a zarr output: chunk rows of vertical stripes.

Dask's own order holds many rows of tiles at once, and a row-by-row sweep of the whole
width would hold a row of tiles as wide as the image.  :func:`write_in_order` runs the
write tasks one chunk row of one stripe at a time and hands the tile pieces that later
rows need on, in memory within a stripe and through a spill folder to the next stripe,
so no tile is computed twice and memory depends neither on the width nor on the height.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import dask
import numpy as np
from dask.highlevelgraph import HighLevelGraph

from .graph import BATCH_PREFIX, PIECE_PREFIX

__all__ = ["STRIPE_CHUNKS", "write_in_order", "plan_groups", "culled"]

#: Chunk columns per stripe of a local zarr write (see write_in_order).
STRIPE_CHUNKS = 4


def write_in_order(dsk: dict, keys: list, num_workers: int | None, spill: str) -> None:
    """Run the write tasks ``keys`` one chunk row of one stripe at a time (on a CPU), each tile once.

    Parameters
    ----------
    dsk : dict
        The culled task graph of the write tasks.
    keys : list
        The write tasks, keyed ``(name, plane..., chunk row, chunk column)``.
    num_workers : int or None
        Threads of each ``dask.threaded.get`` call; 1 on a CPU (torch uses every core
        inside a tile), None for a GPU.
    spill : str
        An empty folder for the pieces handed from one stripe to the next.

    Notes
    -----
    The chunks are visited in vertical stripes of :data:`STRIPE_CHUNKS` chunk columns,
    and within a stripe plane by plane and row by row.  A tile feeds the chunks around
    it, so the pieces that later rows need from the tiles computed for this row are
    handed on: in memory within a stripe (about one row of tiles), through ``spill``
    (memory-mapped back) to the next stripe, since those accumulate over the whole
    image height.
    """
    def group(write_key) -> tuple:  # (stripe, plane..., chunk row), or (stripe,) when several workers
        if num_workers != 1:
            # Several threads (a GPU): each dask call must hold enough tiles to keep the device
            # busy while the host reads and writes, so only the stripes are kept apart.
            return (write_key[-1] // STRIPE_CHUNKS,)
        return (write_key[-1] // STRIPE_CHUNKS, *write_key[1:-1])

    order, groups, consumer, handed = plan_groups(dsk, keys, group)
    pool = ThreadPoolExecutor(num_workers or dask.system.CPU_COUNT)
    try:
        _run_groups(dsk, order, groups, consumer, handed, spill, pool)
    finally:
        _wait_for(pool)


def _run_groups(dsk: dict, order: list, groups: dict, consumer: dict, handed: dict, spill: str,
                pool: ThreadPoolExecutor) -> None:
    """:func:`write_in_order`'s loop: each group's tasks on ``pool``, pieces carried on as planned."""
    carried: dict = {}  # piece -> its value, or a task loading it from the spill folder
    for i, g in enumerate(order):
        keep = [p for p in handed.get(i, []) if order[consumer[p]][0] == g[0]]
        spills = {("colorize-spill", i, n): (_spill_piece, p, os.path.join(spill, f"{i}-{n}.npy"))
                  for n, p in enumerate(p for p in handed.get(i, []) if order[consumer[p]][0] != g[0])}
        wanted = groups[g] + keep + list(spills)
        values = dask.threaded.get(_cull({**dsk, **carried, **spills}, wanted), wanted, pool=pool)
        for piece in [p for p in carried if consumer[p] == i]:  # read by this group
            value = carried.pop(piece)
            if isinstance(value, tuple):
                os.remove(value[1])
        carried.update(zip(keep, values[len(groups[g]):len(groups[g]) + len(keep)]))
        carried.update({task[1]: (_load_piece, path)
                        for task, path in zip(spills.values(), values[len(groups[g]) + len(keep):])})


def _wait_for(pool: ThreadPoolExecutor) -> None:
    """Let the tasks still running finish before the caller goes on, even on a second Ctrl-C.

    dask returns the first error (a failed tile, a Ctrl-C in this thread) while other tasks
    still run; a write task then copying into a TIFF's memory map that the caller closes
    next crashed the process (SIGSEGV).  Queued tasks are dropped; a running one ends
    within a tile's time.
    """
    interrupted = False
    while True:
        try:
            pool.shutdown(wait=True, cancel_futures=True)
            break
        except KeyboardInterrupt:
            interrupted = True
    if interrupted:
        raise KeyboardInterrupt


def plan_groups(dsk: dict, keys: list, group: Callable) -> tuple[list, dict, dict, dict]:
    """Who computes and who reads each tile piece when ``keys`` run group by group.

    Returns
    -------
    order : list
        The groups, in the order they run.
    groups : dict
        Group -> its write keys.
    consumer : dict
        Piece -> the rank of the group that reads it.
    handed : dict
        Rank -> the pieces that its tiles give to later groups (a tile is computed by the
        first group that needs it).
    """
    from dask.core import get_dependencies

    groups: dict[tuple, list] = {}
    for k in keys:
        groups.setdefault(group(k), []).append(k)
    order = sorted(groups)
    rank = {g: i for i, g in enumerate(order)}
    consumer: dict = {}
    for k in keys:  # write -> block -> pieces
        for block in get_dependencies(dsk, k):
            for piece in get_dependencies(dsk, block):
                if _is_piece(piece):
                    consumer[piece] = rank[group(k)]
    batch_of = {p: next(d for d in get_dependencies(dsk, p) if _is_tile_batch(d)) for p in consumer}
    first: dict = {}
    for piece, r in consumer.items():
        first[batch_of[piece]] = min(r, first.get(batch_of[piece], r))
    handed: dict[int, list] = {}
    for piece, r in consumer.items():
        if first[batch_of[piece]] < r:
            handed.setdefault(first[batch_of[piece]], []).append(piece)
    return order, groups, consumer, handed


def culled(graph: HighLevelGraph, keys: list) -> dict:
    """The tasks of ``graph`` that ``keys`` need, as a plain dict."""
    return _cull(dict(graph), keys)


def _cull(dsk: dict, keys: list) -> dict:
    from dask.optimization import cull
    return cull(dsk, keys)[0]


def _spill_piece(piece: np.ndarray, path: str) -> str:
    np.save(path, piece)
    return path


def _load_piece(path: str) -> np.ndarray:
    return np.load(path, mmap_mode="r")


def _is_tile_batch(key) -> bool:
    return isinstance(key, tuple) and str(key[0]).startswith(BATCH_PREFIX)


def _is_piece(key) -> bool:
    return isinstance(key, tuple) and str(key[0]).startswith(PIECE_PREFIX)
