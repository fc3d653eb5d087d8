"""Tile plans and feathered blending: how a large plane is cut into model-sized tiles.

A plane of ``Y x X`` pixels is divided into a regular grid of *chunks* of
``tile_size - overlap`` pixels (the blocks of the lazy result and of a zarr output).
Each chunk has one *tile* centred on it that reaches ``overlap / 2`` pixels into its
neighbours; adjacent tiles therefore overlap by ``overlap`` pixels.  The tiles are
predicted independently and blended with linear (feathered) weights that fall to
zero towards a tile edge shared with a neighbour: at the edge a tile has the least
context, so it gets the least weight.  Weights are normalised by their sum, so the
blend is a convex combination: ``mean(rgb) == gray`` and the RGB gamut are kept.

Tile starts are multiples of ``align`` (the network's stride, 32) wherever the image
allows, so the pooling grid of every tile has the same phase as the untiled image's.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cached_property

import numpy as np

__all__ = ["AxisTiles", "TilePlan", "axis_tiles", "feather_weights", "check_tiling", "blend_into"]


def check_tiling(tile_size: int, overlap: int, min_size: int = 32) -> None:
    """Raise ``ValueError`` unless ``tile_size > 2 * overlap >= 0`` and the tile fits the model.

    Parameters
    ----------
    tile_size : int
        Side of a square tile in pixels.
    overlap : int
        Pixels shared by adjacent tiles.
    min_size : int
        The model's smallest input side.
    """
    if int(tile_size) != tile_size or int(overlap) != overlap:
        raise ValueError(f"tile size and overlap must be whole numbers of pixels, got {tile_size} and {overlap}")
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0 pixels, got {overlap}")
    if tile_size < min_size:
        raise ValueError(f"tile size {tile_size} is smaller than the model's minimum input of {min_size} pixels; "
                         f"use a tile size of at least {max(min_size, 2 * overlap + 1)}")
    if tile_size <= 2 * overlap:
        raise ValueError(f"tile size ({tile_size}) must be more than twice the overlap ({overlap}) so that each tile "
                         f"has a core of its own; use a tile size > {2 * overlap} or an overlap < {(tile_size + 1) // 2}")


@dataclass(frozen=True)
class AxisTiles:
    """Tiles and chunks along one axis.

    Attributes
    ----------
    length : int
        Axis length in pixels.
    chunk : int
        Chunk size (the last chunk may be shorter).
    starts, stops : tuple of int
        Pixel range ``[start, stop)`` of each tile, sorted, all of the same size except
        a last tile aligned down (up to ``align - 1`` pixels longer).
    overlap : int
        Length of the feathering ramp on a side shared with a neighbouring tile.
    """

    length: int
    chunk: int
    starts: tuple[int, ...]
    stops: tuple[int, ...]
    overlap: int

    @property
    def n_chunks(self) -> int:
        return -(-self.length // self.chunk)

    @property
    def chunks(self) -> tuple[int, ...]:
        """Dask-style chunk sizes."""
        return tuple(min(self.chunk, self.length - i * self.chunk) for i in range(self.n_chunks))

    def chunk_range(self, i: int) -> tuple[int, int]:
        return i * self.chunk, min((i + 1) * self.chunk, self.length)

    def tiles_for_chunk(self, i: int) -> tuple[int, ...]:
        """Indices of the tiles that overlap chunk ``i`` (all contribute to its blend)."""
        lo, hi = self.chunk_range(i)
        return tuple(j for j, (s, e) in enumerate(zip(self.starts, self.stops)) if s < hi and e > lo)

    def weights(self, j: int) -> np.ndarray:
        """Feathering weights of tile ``j`` along this axis, float32 in (0, 1]."""
        size = self.stops[j] - self.starts[j]
        ramp_lo = j > 0
        ramp_hi = j < len(self.starts) - 1
        return feather_weights(size, self.overlap, ramp_lo, ramp_hi)


def feather_weights(size: int, ramp: int, ramp_lo: bool = True, ramp_hi: bool = True) -> np.ndarray:
    """1D linear feathering weights ``min(1, (d + 0.5) / ramp)``, ``d`` = distance to a ramped edge.

    Two tiles overlapping by exactly ``ramp`` pixels get weights that sum to 1 in the
    overlap; elsewhere the caller normalises by the sum.  Edges on the image border
    are not ramped (``ramp_lo``/``ramp_hi`` False).  Every weight is > 0.
    """
    d = np.arange(size, dtype=np.float64)
    w = np.ones(size, np.float64)
    if ramp > 0:
        if ramp_lo:
            w = np.minimum(w, (d + 0.5) / ramp)
        if ramp_hi:
            w = np.minimum(w, (size - d - 0.5) / ramp)
    return w.astype(np.float32)


def axis_tiles(length: int, tile_size: int, overlap: int, align: int = 32) -> AxisTiles:
    """Plan the tiles along one axis of ``length`` pixels.

    Tile ``k`` starts at ``k * chunk - overlap // 2`` (``chunk = tile_size - overlap``),
    clamped inside the axis; a tile clamped at the far end is aligned down to a
    multiple of ``align`` and reaches the end.  An axis no longer than ``tile_size`` is
    one tile.  Duplicate tiles (possible when the last chunk is short) are dropped.
    """
    check_tiling(tile_size, overlap, 1)
    chunk = tile_size - overlap
    if length <= tile_size:
        return AxisTiles(length, chunk, (0,), (length,), overlap)
    n = -(-length // chunk)
    spans: list[tuple[int, int]] = []
    for k in range(n):
        start = k * chunk - overlap // 2
        if start + tile_size >= length:
            start = max(0, length - tile_size)
            start -= start % align if align > 1 else 0
            span = (start, length)
        else:
            start = max(0, start)
            span = (start, start + tile_size)
        if span not in spans:
            spans.append(span)
    # A tile inside another one (possible after aligning the last tile down) adds nothing.
    spans = sorted(a for a in spans if not any(b != a and b[0] <= a[0] and a[1] <= b[1] for b in spans))
    return AxisTiles(length, chunk, tuple(s for s, _ in spans), tuple(e for _, e in spans), overlap)


@dataclass(frozen=True)
class TilePlan:
    """Tiles of a stack of planes ``(..., Y, X)``.

    The lead axes (everything before Y, X) are iterated plane by plane; each plane is
    tiled by ``ty`` and ``tx``.  Tiles are numbered in C order over (plane, tile row,
    tile column), which is also the order they are batched in.
    """

    lead_shape: tuple[int, ...]
    ty: AxisTiles
    tx: AxisTiles

    @classmethod
    def create(cls, shape: tuple[int, ...], tile_size: int, overlap: int, align: int = 32) -> "TilePlan":
        return cls(tuple(shape[:-2]), axis_tiles(shape[-2], tile_size, overlap, align),
                   axis_tiles(shape[-1], tile_size, overlap, align))

    @property
    def shape(self) -> tuple[int, ...]:
        return self.lead_shape + (self.ty.length, self.tx.length)

    @property
    def chunks(self) -> tuple[tuple[int, ...], ...]:
        return tuple((1,) * n for n in self.lead_shape) + (self.ty.chunks, self.tx.chunks)

    @property
    def tiles_per_plane(self) -> int:
        return len(self.ty.starts) * len(self.tx.starts)

    @property
    def n_planes(self) -> int:
        return int(np.prod(self.lead_shape, dtype=np.int64)) if self.lead_shape else 1

    @property
    def n_tiles(self) -> int:
        return self.n_planes * self.tiles_per_plane

    @cached_property
    def planes(self) -> list[tuple[int, ...]]:
        return list(itertools.product(*(range(n) for n in self.lead_shape)))

    def tile_index(self, plane: tuple[int, ...], jy: int, jx: int) -> int:
        p = int(np.ravel_multi_index(plane, self.lead_shape)) if self.lead_shape else 0
        return (p * len(self.ty.starts) + jy) * len(self.tx.starts) + jx

    def tile(self, index: int) -> tuple[tuple[int, ...], int, int]:
        """(plane index, tile row, tile column) of tile number ``index``."""
        p, rest = divmod(index, self.tiles_per_plane)
        jy, jx = divmod(rest, len(self.tx.starts))
        plane = tuple(int(i) for i in np.unravel_index(p, self.lead_shape)) if self.lead_shape else ()
        return plane, jy, jx

    def tile_window(self, jy: int, jx: int) -> tuple[slice, slice]:
        return slice(self.ty.starts[jy], self.ty.stops[jy]), slice(self.tx.starts[jx], self.tx.stops[jx])

    def tile_shape(self, index: int) -> tuple[int, int]:
        _, jy, jx = self.tile(index)
        return self.ty.stops[jy] - self.ty.starts[jy], self.tx.stops[jx] - self.tx.starts[jx]

    def batches(self, batch_size: int) -> list[tuple[int, ...]]:
        """Consecutive tiles of equal shape, at most ``batch_size`` per batch."""
        out: list[tuple[int, ...]] = []
        current: list[int] = []
        for index in range(self.n_tiles):
            if current and (len(current) >= batch_size or self.tile_shape(index) != self.tile_shape(current[0])):
                out.append(tuple(current))
                current = []
            current.append(index)
        if current:
            out.append(tuple(current))
        return out

    def weights(self, jy: int, jx: int) -> tuple[np.ndarray, np.ndarray]:
        """Feathering weights of a tile along Y and X (the 2D weight is their outer product)."""
        return self.ty.weights(jy), self.tx.weights(jx)


def _runs(values: np.ndarray) -> list[tuple[int, int, bool]]:
    """Split a 1D weight profile into runs of exactly 1 (copy) and other values (multiply)."""
    ones = values == 1.0
    edges = np.flatnonzero(np.diff(ones.astype(np.int8))) + 1
    bounds = [0, *edges.tolist(), len(values)]
    return [(a, b, bool(ones[a])) for a, b in zip(bounds[:-1], bounds[1:])]


def blend_into(region: tuple[slice, slice],
               tiles: list[tuple[np.ndarray, tuple[np.ndarray, np.ndarray], tuple[int, int]]]) -> np.ndarray:
    """Blend tile results into one output region.

    Parameters
    ----------
    region : (slice, slice)
        The output's pixel range (Y, X) in plane coordinates.
    tiles : list of (result, (wy, wx), (y0, x0))
        Each tile's result ``(C, h, w)`` (channels first, so weights broadcast over
        contiguous planes), its 1D feathering weights along Y and X and
        its top-left corner.  The tiles must be the full product of their rows and
        columns (as a tile plan gives), so the weights normalise axis by axis.

    Returns
    -------
    numpy.ndarray, shape (region height, region width, C), float32 (channels last)
        ``sum(w * result) / sum(w)`` over the tiles covering each pixel, with
        ``w = wy (x) wx``.

    Notes
    -----
    Normalised weights are separable, ``w / sum(w) = (wy / Sy) (wx / Sx)``, because the
    tiles form a product grid.  Where a tile's normalised weight is exactly 1 (its
    core, which no other tile covers) its values are copied; only the overlap strips
    are multiplied and summed.  That keeps blending a small fraction of the model's
    cost.
    """
    ry, rx = region
    h, w = ry.stop - ry.start, rx.stop - rx.start
    rows = {(y0, r.shape[1]): wy for r, (wy, _), (y0, _x) in tiles}
    cols = {(x0, r.shape[2]): wx for r, (_, wx), (_y, x0) in tiles}
    if len(tiles) != len(rows) * len(cols):
        raise ValueError("blend_into needs every combination of tile rows and columns")
    sy, sx = np.zeros(h, np.float64), np.zeros(w, np.float64)
    for (y0, n), wy in rows.items():
        a, b = max(ry.start, y0), min(ry.stop, y0 + n)
        if a < b:
            sy[a - ry.start:b - ry.start] += wy[a - y0:b - y0]
    for (x0, n), wx in cols.items():
        a, b = max(rx.start, x0), min(rx.stop, x0 + n)
        if a < b:
            sx[a - rx.start:b - rx.start] += wx[a - x0:b - x0]
    if not ((sy > 0).all() and (sx > 0).all()):
        raise RuntimeError("internal error: a pixel is covered by no tile; please report this with the image shape")
    channels = tiles[0][0].shape[0]
    acc = np.zeros((channels, h, w), np.float32)
    for result, (wy, wx), (y0, x0) in tiles:
        ys0, ys1 = max(ry.start, y0), min(ry.stop, y0 + result.shape[1])
        xs0, xs1 = max(rx.start, x0), min(rx.stop, x0 + result.shape[2])
        if ys0 >= ys1 or xs0 >= xs1:
            continue
        ny = (wy[ys0 - y0:ys1 - y0] / sy[ys0 - ry.start:ys1 - ry.start]).astype(np.float32)
        nx = (wx[xs0 - x0:xs1 - x0] / sx[xs0 - rx.start:xs1 - rx.start]).astype(np.float32)
        for a, b, one_y in _runs(ny):
            for c, d, one_x in _runs(nx):
                src = result[:, ys0 - y0 + a:ys0 - y0 + b, xs0 - x0 + c:xs0 - x0 + d]
                dst = (slice(None), slice(ys0 - ry.start + a, ys0 - ry.start + b),
                       slice(xs0 - rx.start + c, xs0 - rx.start + d))
                if one_y and one_x:
                    acc[dst] = src  # no other tile covers these pixels
                else:
                    acc[dst] += (ny[a:b, None] * nx[None, c:d]) * src
    return np.ascontiguousarray(acc.transpose(1, 2, 0))
