"""Tile plans and feathered blending: how a large plane is cut into model-sized tiles.

A plane of ``Y x X`` pixels is divided into a regular grid of *chunks* of
``tile_size - overlap`` pixels (the blocks of the lazy result and of a zarr output).
Each chunk has one *tile* centred on it that reaches ``overlap / 2`` pixels into its
neighbours; adjacent tiles therefore overlap by ``overlap`` pixels.  The tiles are
predicted independently and blended with linear (feathered) weights that fall to
zero towards a tile edge shared with a neighbour: at the edge a tile has the least
context, so it gets the least weight.  Weights are normalised by their sum, so the
blend is a convex combination: ``mean(rgb) == gray`` and the RGB gamut are kept.

Blending happens in two steps that suit a task graph: each tile's result is scaled by
its normalised weight and cut into *pieces*, one per chunk it overlaps
(:func:`cut_pieces`), and a chunk is the sum of its pieces (:func:`assemble_chunk`).
A tile's memory is then released piece by piece as the chunks it feeds are finished,
rather than only when the last of them is.

Tile starts are multiples of ``align`` (the network's stride, 32) wherever the tile size
and overlap allow (the defaults do), so the pooling grid of every tile has the same phase
as the untiled image's; they are always multiples of the decoded grid's stride (4).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..model.hypercolumn import GRID_STRIDE

__all__ = ["AxisTiles", "TilePlan", "axis_tiles", "feather_weights", "check_tiling", "cut_pieces", "assemble_chunk",
           "blend_tiles", "scale_in_place"]


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
        Pixel range ``[start, stop)`` of each tile, sorted, every start a multiple of the
        decoded grid's stride (4): all of the same size except at the image's edges (a
        last tile aligned down is up to ``align - 1`` pixels longer), and, for a tile size
        or overlap off that grid, up to 3 pixels longer.
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

    @cached_property
    def _coverage(self) -> np.ndarray:
        total = np.zeros(self.length, np.float64)
        for j, (s, e) in enumerate(zip(self.starts, self.stops)):
            total[s:e] += self.weights(j)
        if not (total > 0).all():
            raise RuntimeError("internal error: a pixel is covered by no tile; please report this with the image shape")
        return total

    def normalized_weights(self, j: int) -> np.ndarray:
        """Weights of tile ``j`` divided by the sum over all tiles: they add up to 1 at every pixel."""
        s, e = self.starts[j], self.stops[j]
        return (self.weights(j) / self._coverage[s:e]).astype(np.float32)

    def pieces(self, j: int) -> list[tuple[int, int, int]]:
        """``(chunk, a, b)``: the part ``[a, b)`` of tile ``j`` (tile coordinates) inside each chunk."""
        s, e = self.starts[j], self.stops[j]
        return [(i, max(lo, s) - s, min(hi, e) - s)
                for i in range(s // self.chunk, (e - 1) // self.chunk + 1)
                for lo, hi in [self.chunk_range(i)]]


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


def axis_tiles(length: int, tile_size: int, overlap: int, align: int = 32, min_width: int | None = None) -> AxisTiles:
    """Plan the tiles along one axis of ``length`` pixels.

    Tile ``k`` covers chunk ``k`` and ``overlap / 2`` pixels on either side: it starts at
    ``k * chunk - overlap // 2`` (``chunk = tile_size - overlap``) and is cut at the
    image's edges, so the first and last tiles are shorter than ``tile_size``: pixels
    beyond what the blend needs would only be computed for nothing.  But every tile
    keeps at least ``tile_size - overlap // 2`` pixels (and ``min_width``, the network's
    smallest input), as the first one has: a short last chunk would otherwise be
    predicted from a sliver with little context, so that tile reaches back, its start
    aligned down to a multiple of ``align``; the first tile, if shorter, reaches forward.  Every start is a multiple of
    :data:`~napari_colorize.model.hypercolumn.GRID_STRIDE` (aligned down, keeping its
    stop).  An axis no longer than ``tile_size`` is one tile.  A tile inside another one
    is dropped.
    """
    check_tiling(tile_size, overlap, 1)
    chunk = tile_size - overlap
    if length <= tile_size:
        return AxisTiles(length, chunk, (0,), (length,), overlap)
    min_width = min(length, max(tile_size - overlap // 2, align if min_width is None else min_width))
    spans: list[tuple[int, int]] = []
    for k in range(-(-length // chunk)):
        start = k * chunk - overlap // 2
        start, stop = max(0, start), min(length, start + tile_size)
        if stop - start < min_width and start == 0:
            # Cut by the image's first edge: lengthened inward, so it is never below the
            # network's minimum input (32 / 2 gave a 31-pixel first tile).
            stop = min(length, min_width)
        elif stop - start < min_width:
            start = max(0, stop - min_width)
            start -= start % align if align > 1 else 0
        # On the decoded grid whatever the tile size and overlap (guidance maps grid cells to
        # tiles); the stop stays, so such a tile is at most GRID_STRIDE - 1 pixels longer.
        start -= start % GRID_STRIDE
        if (start, stop) not in spans:
            spans.append((start, stop))
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
    def create(cls, shape: tuple[int, ...], tile_size: int, overlap: int, align: int = 32,
               min_width: int | None = None) -> TilePlan:
        return cls(tuple(shape[:-2]), axis_tiles(shape[-2], tile_size, overlap, align, min_width),
                   axis_tiles(shape[-1], tile_size, overlap, align, min_width))

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
        """Tiles of equal shape, at most ``batch_size`` per batch, in the order of their first tile.

        Edge tiles are shorter than interior ones, so tiles are grouped by shape first
        (consecutive tiles of one row alternate shapes) and then cut into batches.
        """
        by_shape: dict[tuple[int, int], list[int]] = {}
        for index in range(self.n_tiles):
            by_shape.setdefault(self.tile_shape(index), []).append(index)
        out = [tuple(group[i:i + batch_size]) for group in by_shape.values() for i in range(0, len(group), batch_size)]
        return sorted(out)

    def weights(self, jy: int, jx: int) -> tuple[np.ndarray, np.ndarray]:
        """Feathering weights of a tile along Y and X (the 2D weight is their outer product)."""
        return self.ty.weights(jy), self.tx.weights(jx)

    def normalized_weights(self, jy: int, jx: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-axis weights normalised over all tiles; their outer product is the tile's blend weight.

        The tiles form a product grid, so the 2D normalisation ``w / sum(w)`` separates
        into ``(wy / Sy) (wx / Sx)``.
        """
        return self.ty.normalized_weights(jy), self.tx.normalized_weights(jx)


def _runs(values: np.ndarray) -> list[tuple[int, int, bool]]:
    """Split a 1D weight profile into runs of exactly 1 and of other values."""
    ones = values == 1.0
    edges = np.flatnonzero(np.diff(ones.astype(np.int8))) + 1
    bounds = [0, *edges.tolist(), len(values)]
    return [(a, b, bool(ones[a])) for a, b in itertools.pairwise(bounds)]


def scale_in_place(values: np.ndarray, wy: np.ndarray, wx: np.ndarray) -> np.ndarray:
    """Multiply ``values`` ``(h, w, C)`` by the separable weight ``wy (x) wx``, in place.

    Only rows and columns whose weight differs from 1 (the feathering ramps) are
    touched, so a tile's core costs nothing.  ``values`` must be C-contiguous.
    """
    h, w, c = values.shape
    # Viewed as (h, w * C) so numpy's inner loops run along whole rows, not over C channels
    # (3x faster on the column strips).
    flat = values.reshape(h, w * c)
    for a, b, one in _runs(wy):
        if not one:
            flat[a:b] *= wy[a:b, None]
    for a, b, one in _runs(wx):
        if not one:
            flat[:, a * c:b * c] *= np.repeat(wx[a:b], c)[None, :]
    return values


def cut_pieces(result: np.ndarray, plan: TilePlan, jy: int, jx: int,
               scaled: bool = False) -> dict[tuple[int, int], np.ndarray]:
    """Split a tile's result into its weighted contributions to each chunk it covers.

    Parameters
    ----------
    result : numpy.ndarray, shape (h, w, C)
        The tile's prediction (channels last); it is scaled in place.
    plan : TilePlan
    jy, jx : int
        The tile's row and column in the plan.
    scaled : bool
        True when ``result`` already carries the weights (scaled on the GPU).

    Returns
    -------
    dict (cy, cx) -> numpy.ndarray
        One array per chunk the tile overlaps: the tile's values there times its
        normalised feathering weight.  Each piece owns its memory, so a finished chunk
        frees its pieces while the tile's other pieces wait for their chunks; summing
        the pieces of a chunk (:func:`assemble_chunk`) gives the blended output.
    """
    if not scaled:
        scale_in_place(result, *plan.normalized_weights(jy, jx))
    ys, xs = plan.ty.pieces(jy), plan.tx.pieces(jx)
    if len(ys) == 1 and len(xs) == 1:
        return {(ys[0][0], xs[0][0]): result}  # the tile is one chunk's only piece: no copy
    return {(cy, cx): result[a:b, c:d].copy() for cy, a, b in ys for cx, c, d in xs}


def assemble_chunk(plan: TilePlan, cy: int, cx: int, pieces: list[tuple[int, int, np.ndarray]]) -> np.ndarray:
    """Sum the pieces of chunk (cy, cx): ``[(jy, jx, piece), ...]`` from :func:`cut_pieces`.

    Returns a new ``(h, w, C)`` float32 array: the feathered blend of every tile that
    covers the chunk (the pieces carry normalised weights, so this is a plain sum).
    """
    (y0, y1), (x0, x1) = plan.ty.chunk_range(cy), plan.tx.chunk_range(cx)
    shape = (y1 - y0, x1 - x0, pieces[0][2].shape[-1])
    placed = [(max(plan.ty.starts[jy] - y0, 0), max(plan.tx.starts[jx] - x0, 0), piece) for jy, jx, piece in pieces]
    # Start from a piece covering the whole chunk (a tile's core) if there is one: a copy
    # is cheaper than zeros plus an addition.
    full = next((i for i, (oy, ox, p) in enumerate(placed) if (oy, ox) == (0, 0) and p.shape == shape), None)
    out = placed[full][2].copy() if full is not None else np.zeros(shape, np.float32)
    for i, (oy, ox, piece) in enumerate(placed):
        if i != full:
            out[oy:oy + piece.shape[0], ox:ox + piece.shape[1]] += piece
    return out


def blend_tiles(plan: TilePlan, results: dict[tuple[int, int], np.ndarray]) -> np.ndarray:
    """Blend the results ``(jy, jx) -> (h, w, C)`` of every tile of a one-plane plan.

    Returns the plane ``(Y, X, C)``.  The tile results are scaled in place.
    """
    pieces: dict[tuple[int, int], list] = {}
    for (jy, jx), result in results.items():
        for chunk, piece in cut_pieces(result, plan, jy, jx).items():
            pieces.setdefault(chunk, []).append((jy, jx, piece))
    return np.concatenate([np.concatenate([assemble_chunk(plan, cy, cx, pieces[cy, cx])
                                           for cx in range(plan.tx.n_chunks)], axis=1)
                           for cy in range(plan.ty.n_chunks)], axis=0)
