"""Downsampled pyramid levels of an output store, chunk by chunk and resumable.

After every chunk of level 0 is written, level ``n`` is made from level ``n - 1``: each
of its chunks is the mean of 2 x 2 pixel blocks of the (at most 2 x 2) level ``n - 1``
chunks under it, so memory is a few chunks whatever the image size.  Level ``n`` starts
only when level ``n - 1`` is finished, and an empty marker file is written per finished
level chunk (after all outputs of that chunk), so a killed run resumes level by level
and never reads an unfinished level.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from skimage.transform import downscale_local_mean

__all__ = ["MAX_PLANE", "MAX_WORKERS", "Pyramid", "level_shapes", "level_path", "downsample", "write_pyramid"]

#: Levels are added until the coarsest plane is at most this many pixels high and wide.
MAX_PLANE = 1024
#: Threads that write level chunks at once (reading, averaging and compressing release the GIL);
#: each holds about 2 x 2 chunks of the level above in float32.
MAX_WORKERS = 4


@dataclass(frozen=True)
class Pyramid:
    """The levels of one output.

    Attributes
    ----------
    arrays : sequence of zarr.Array
        Level 0 first; the last two axes are y, x.
    channel : int or None
        Position of the channel axis (the colour image), which is never downsampled.
    """

    arrays: Sequence[Any]
    channel: int | None = None

    def index(self, plane: tuple[int, ...], rows: slice, cols: slice) -> tuple:
        """The selection of one plane's ``rows`` x ``cols`` (all channels)."""
        idx: list = list(plane)
        if self.channel is not None:
            idx.insert(self.channel, slice(None))
        return (*idx, rows, cols)


def level_shapes(plane: tuple[int, int], max_plane: int | None = None) -> list[tuple[int, int]]:
    """The (y, x) shape of each level: halved (rounded up) until it fits ``max_plane``.

    Parameters
    ----------
    plane : (int, int)
        Level 0's (y, x) shape.
    max_plane : int, optional
        Largest height and width of the coarsest level (default :data:`MAX_PLANE`).

    Returns
    -------
    list of (int, int)
        Level 0 first; just level 0 when it already fits.
    """
    max_plane = MAX_PLANE if max_plane is None else max_plane
    shapes = [tuple(int(n) for n in plane)]
    while max(shapes[-1]) > max_plane:
        shapes.append(tuple(math.ceil(n / 2) for n in shapes[-1]))
    return shapes


def level_path(zarr_path: str, level: int) -> str:
    """The path of ``level`` of an output whose level 0 is at ``zarr_path`` ("confidence/0" -> "confidence/2")."""
    parent, _, _ = zarr_path.rpartition("/")
    return f"{parent}/{level}" if parent else str(level)


def downsample(block: np.ndarray) -> np.ndarray:
    """The mean of 2 x 2 pixel blocks in the last two axes, in ``block``'s dtype.

    An odd last row or column is repeated before averaging, so edge pixels are the mean
    of the pixels they cover (zero padding would darken the edges).  Integer images are
    rounded to the nearest value (the sum of 4 uint8 values is exact in float32).
    """
    pad = [(0, 0)] * (block.ndim - 2) + [(0, n % 2) for n in block.shape[-2:]]
    values = np.pad(block.astype(np.float32, copy=False), pad, mode="edge")
    mean = downscale_local_mean(values, (1,) * (block.ndim - 2) + (2, 2))
    if np.issubdtype(block.dtype, np.integer):
        info = np.iinfo(block.dtype)
        return np.clip(np.rint(mean), info.min, info.max).astype(block.dtype)
    return mean.astype(block.dtype, copy=False)


def _level_chunks(plane_shape: tuple[int, ...], shape: tuple[int, int], chunks: tuple[int, int]
                  ) -> Iterator[tuple[int, ...]]:
    """(plane..., chunk row, chunk column) of every chunk of a level of ``shape``."""
    grid = [math.ceil(n / c) for n, c in zip(shape, chunks)]
    for plane in np.ndindex(*plane_shape):
        for cy in range(grid[0]):
            for cx in range(grid[1]):
                yield (*plane, cy, cx)


def _write_chunk(pyramids: Sequence[Pyramid], level: int, block: tuple[int, ...], chunks: tuple[int, int],
                 marker: str, check: Callable[[], None] | None) -> None:
    """Write one chunk of ``level`` of every output from the level above, then its marker."""
    if check is not None:
        check()
    plane, (cy, cx) = block[:-2], block[-2:]
    (ch, cw) = chunks
    for pyramid in pyramids:
        src = pyramid.arrays[level - 1]
        above = pyramid.index(plane, slice(2 * cy * ch, 2 * (cy + 1) * ch), slice(2 * cx * cw, 2 * (cx + 1) * cw))
        down = downsample(np.asarray(src[above]))
        rows, cols = slice(cy * ch, cy * ch + down.shape[-2]), slice(cx * cw, cx * cw + down.shape[-1])
        pyramid.arrays[level][pyramid.index(plane, rows, cols)] = down
    with open(marker, "w"):
        pass


def write_pyramid(pyramids: Sequence[Pyramid], chunks: tuple[int, int], markers: str,
                  check: Callable[[], None] | None = None, workers: int | None = None) -> int:
    """Fill levels 1 and up of every output from level 0, skipping chunks finished earlier.

    Parameters
    ----------
    pyramids : sequence of Pyramid
        One per output, all with the same number of levels and the same leading
        (non-channel) axes; level 0 must be complete.
    chunks : (int, int)
        The (y, x) chunk of every level (each level's arrays are chunked like this,
        so threads never share a zarr chunk).
    markers : str
        Folder of the store's markers; level ``n`` keeps its own in ``level<n>/``.
    check : callable, optional
        Called before each chunk; raises to stop (cancel).  Finished chunks are kept.
    workers : int, optional
        Threads (default ``min(MAX_WORKERS, cpu count)``).

    Returns
    -------
    int
        Number of level chunks written (0 when the pyramid was already finished).
    """
    first = pyramids[0].arrays
    plane_shape = tuple(n for i, n in enumerate(first[0].shape[:-2]) if i != pyramids[0].channel)
    workers = workers or min(MAX_WORKERS, os.cpu_count() or 1)
    written = 0
    for level in range(1, len(first)):
        folder = os.path.join(markers, f"level{level}")
        os.makedirs(folder, exist_ok=True)
        todo = [(b, os.path.join(folder, ".".join(map(str, b))))
                for b in _level_chunks(plane_shape, first[level].shape[-2:], chunks)]
        todo = [(b, m) for b, m in todo if not os.path.exists(m)]
        with ThreadPoolExecutor(workers) as pool:
            futures = [pool.submit(_write_chunk, pyramids, level, b, chunks, m, check) for b, m in todo]
            try:
                for future in futures:
                    future.result()
            finally:  # a failure or cancel: do not start the rest
                for future in futures:
                    future.cancel()
        written += len(todo)
    return written
