"""The lazy colorization graph: one model pass per tile, shared by every output.

:func:`colorize_array` turns a gray array ``(..., Y, X)`` (numpy, dask or zarr) into
one dask array ``(..., Y, X, C)`` holding the outputs of
:data:`napari_colorize.outputs.OUTPUTS` (RGB, chroma confidence, hue entropy).
Its graph has two kinds of tasks:

* *batch* tasks: a few tiles of equal shape are cut from the input (with their
  overlap), normalised with limits shared by the whole image, and run through
  :func:`napari_colorize.inference.predict` in one batch;
* *piece* tasks: each selects one tile's weighted contribution to one output chunk
  (the batch task scales and cuts the tiles, :func:`.tiling.cut_pieces`), so a tile's
  memory goes away piece by piece as chunks are finished;
* *block* tasks: each output chunk is the sum of its pieces, a feathered blend of the
  tiles that cover it (:mod:`.tiling`).

The RGB, confidence and entropy layers are slices of that one array, so computing
them together runs the model once per tile; batch results are also kept in a
per-process LRU cache (:mod:`.cache`), so computing them one after the other (as
napari does) does too.  The tiling is written out as an explicit graph rather than
with ``dask.array.map_overlap``, whose trimming with a new channel axis has been
wrong (dask issues 11124, 11961) and which fails for chunks smaller than the overlap
(11580); the tests compare tiled against untiled output instead of trusting either.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import dask
import dask.array as da
import numpy as np
from dask.highlevelgraph import HighLevelGraph

from ..inputs import check_gray_shape, normalisation_limits, to_unit_float
from ..outputs import n_channels
from .cache import tile_cache
from .defaults import local_threads
from .device_batch import predict_tiles
from .jobs import ModelRef, Monitor, TileOptions
from .tiling import TilePlan, assemble_chunk, check_tiling, cut_pieces

__all__ = ["colorize_array", "global_limits", "as_dask", "BATCH_PREFIX", "PIECE_PREFIX", "PERCENTILE_SAMPLE"]

#: Graph key prefixes of the batch and piece tasks (the zarr writer plans its order by them).
BATCH_PREFIX, PIECE_PREFIX = "colorize-tiles-", "colorize-pieces-"
#: Above this many pixels, percentile limits are estimated from a regular subsample.
PERCENTILE_SAMPLE = 2**24


def _assemble(blocks: list[list[np.ndarray]], crop: list[int], lead: int) -> np.ndarray:
    """Cut a tile window ``crop = [y0, y1, x0, x1]`` out of a grid of source blocks.

    Each block is ``(1,) * lead + (h, w)``; only the parts inside the window are copied.
    """
    planes = [[np.asarray(b).reshape(np.shape(b)[lead:]) for b in row] for row in blocks]
    if len(planes) == 1 and len(planes[0]) == 1:
        y0, y1, x0, x1 = crop
        return planes[0][0][y0:y1, x0:x1]
    y0, y1, x0, x1 = crop
    out = np.empty((y1 - y0, x1 - x0), planes[0][0].dtype)
    top = 0
    for row in planes:
        bh = row[0].shape[0]
        a, b = max(y0 - top, 0), min(y1 - top, bh)
        left = 0
        for block in row:
            bw = block.shape[1]
            c, d = max(x0 - left, 0), min(x1 - left, bw)
            if a < b and c < d:
                out[top + a - y0:top + b - y0, left + c - x0:left + d - x0] = block[a:b, c:d]
            left += bw
        top += bh
    return out


def _run_batch(key: str, model_ref: ModelRef, options: TileOptions, plan: TilePlan, windows: list,
               tiles: tuple[int, ...], lead: int, overlap: int, monitor: Monitor | None,
               hist_key: str | None = None) -> list[dict]:
    """Batch task: cut, normalise and predict a batch of tiles (or take it from the cache).

    Returns, per tile, its weighted pieces by output chunk (:func:`.tiling.cut_pieces`).
    """
    cached = tile_cache.get(key) if options.cache else None
    if cached is not None:
        if monitor is not None:
            monitor.advance(tiles)
        return cached
    if monitor is not None:
        monitor.check()
    gray = np.stack([to_unit_float(_assemble(blocks, crop, lead), options.normalize, options.limits)
                     for blocks, crop in windows])
    model = model_ref.load()
    places = [plan.tile(index)[1:] for index in tiles]
    # On a GPU the blending weights are applied there; on a CPU only the ramps are scaled, here.
    on_gpu = next(model.parameters()).device.type == "cuda"
    weights = [plan.normalized_weights(jy, jx) for jy, jx in places] if on_gpu else None
    guides = None
    if options.guidance is not None:
        guides = [options.guidance.for_tile(plan.tile(index)[0], *_tile_box(plan, jy, jx)) for index, (jy, jx)
                  in zip(tiles, places)]
    origins = [plan.tile(index)[0] + _tile_box(plan, jy, jx)[:2] for index, (jy, jx) in zip(tiles, places)]
    out = predict_tiles(model, gray, options, overlap, weights, guides, hist_key if options.cache else None, origins,
                        check=None if monitor is None else monitor.check)
    del gray
    pieces = [cut_pieces(out[pos], plan, jy, jx, scaled=on_gpu) for pos, (jy, jx) in enumerate(places)]
    del out
    if options.cache:
        tile_cache.put(key, pieces)
    if monitor is not None:
        monitor.advance(tiles)
    return pieces


def _tile_box(plan: TilePlan, jy: int, jx: int) -> tuple[int, int, int, int]:
    """``(y0, x0, h, w)`` of a tile's pixels in its plane."""
    sy, sx = plan.tile_window(jy, jx)
    return sy.start, sx.start, sy.stop - sy.start, sx.stop - sx.start


def _piece(batch: list[dict], pos: int, chunk: tuple[int, int]) -> np.ndarray:
    """Piece task: one tile's contribution to one chunk (its own dask key, so it is freed on its own)."""
    return batch[pos][chunk]


def _blend_block(plan: TilePlan, cy: int, cx: int, tiles: list[tuple[int, int]], lead: int,
                 *pieces: np.ndarray) -> np.ndarray:
    """Block task: the sum of the pieces of output chunk (cy, cx) of one plane, within [0, 1]
    like every output (the float32 sum may pass 1 by 1e-7, which ``skimage.util.img_as_ubyte``
    and a float32 store's promise do not allow)."""
    out = assemble_chunk(plan, cy, cx, [(jy, jx, p) for (jy, jx), p in zip(tiles, pieces)])
    np.clip(out, 0.0, 1.0, out=out)
    return out.reshape((1,) * lead + out.shape)


def global_limits(src: da.Array, normalize: str | None) -> tuple[float, float] | None:
    """Normalisation limits for the whole image (all planes), computed once.

    "percentile" uses every pixel up to :data:`PERCENTILE_SAMPLE` pixels and a
    regular spatial subsample beyond (the 0.1/99.9 percentiles of a 16 M pixel sample
    are within a fraction of a grey level of the exact ones); "minmax" is exact.  Limits
    that collapse fall back (:func:`napari_colorize.inputs.usable_limits`): percentiles to
    the exact minimum and maximum (one more pass, only then; a sample could miss the
    sparse spots that made them collapse), a constant image to its type's range.
    """
    def data_range() -> tuple[float, float]:
        lo, hi = dask.compute(src.min(), src.max(), scheduler="threads", num_workers=local_threads())
        return float(lo), float(hi)

    def sample() -> np.ndarray:
        step = max(1, int(np.ceil(np.sqrt(src.size / PERCENTILE_SAMPLE))))
        return np.asarray(src[..., ::step, ::step].compute(scheduler="threads", num_workers=local_threads()))

    if normalize in ("percentile", "minmax"):
        return normalisation_limits(normalize, src.dtype, sample, data_range)
    return None


def as_dask(image, chunks: tuple[tuple[int, ...], ...], client=None) -> da.Array:
    """A dask view of a numpy, zarr or dask array with the plan's chunks (never a copy of the input).

    With a dask.distributed ``client``, a numpy array's blocks are scattered to the workers
    (:func:`.distributed.scatter_blocks`) instead of travelling inside the task graph.
    """
    if isinstance(image, da.Array):
        return image.rechunk(chunks) if image.chunks != chunks else image
    if not hasattr(image, "shape") or not hasattr(image, "dtype"):
        image = np.asarray(image)
    if client is not None and isinstance(image, np.ndarray):
        from .distributed import scatter_blocks

        return scatter_blocks(client, image, da.core.normalize_chunks(chunks, image.shape, dtype=image.dtype))
    return da.from_array(image, chunks=chunks, asarray=isinstance(image, np.ndarray) or None)


def colorize_array(image, model_ref: ModelRef, options: TileOptions, tile_size: int, overlap: int,
                   batch_size: int = 1, monitor: Monitor | None = None,
                   progress: Callable[[int, int], None] | None = None,
                   cancel: threading.Event | None = None, client=None,
                   stamp: str | None = None) -> tuple[da.Array, TilePlan]:
    """Build the lazy ``(..., Y, X, 5)`` result for a gray array.

    Parameters
    ----------
    image : numpy.ndarray, dask.array.Array or zarr array, shape (..., Y, X)
        Gray values; read lazily, never modified.
    model_ref : ModelRef
    options : TileOptions
        Decoding, precision and the normalisation with its *global* limits.
    tile_size, overlap : int
        Tile side and overlap in pixels (``tile_size > 2 * overlap``).
    batch_size : int
        Tiles per model call.
    progress : callable(done, total), optional
        Called after each tile batch in this process (not on distributed workers).
    cancel : threading.Event, optional
        Set it to stop between batches; the computation raises :class:`Cancelled`.
    client : dask.distributed.Client, optional
        The cluster that will compute the result: a numpy input is scattered to its workers.
    stamp : str, optional
        The state of the files the input is read from (:func:`.sources.source_stamp`): part
        of every key, so a rewritten zarr store is not served its old tiles from the caches.

    Returns
    -------
    stacked : dask.array.Array, shape (..., Y, X, C), float32
        The outputs' channels (:func:`napari_colorize.outputs.channel_slices`); chunks are ``tile_size - overlap`` pixels.
    plan : TilePlan
    """
    check_tiling(tile_size, overlap, options.min_size)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    shape = tuple(image.shape)
    check_gray_shape(shape, options.min_size)
    plan = TilePlan.create(shape, tile_size, overlap, min_width=options.min_size)
    src = as_dask(image, plan.chunks, client)
    lead = len(plan.lead_shape)
    if monitor is None and (progress is not None or cancel is not None):
        monitor = Monitor(plan.n_tiles, progress, cancel)
    token = dask.base.tokenize(src.name, stamp, model_ref.token(), options, plan, batch_size)
    bname, pname, oname = f"{BATCH_PREFIX}{token}", f"{PIECE_PREFIX}{token}", f"colorize-{token}"
    # The network's part of a batch depends on neither decoding nor guidance: its own key.
    htoken = dask.base.tokenize(src.name, stamp, model_ref.token(), options.precision, options.normalize, options.limits,
                                options.context, plan, batch_size)
    chunk = plan.ty.chunk, plan.tx.chunk
    # The options (with the guidance: hint fields, a reference's prior) are one node of the
    # graph that every batch task depends on: a cluster ships them once to each worker, not
    # inside every task.
    okey = f"colorize-options-{token}"
    layer: dict = {okey: options}
    for b, tiles in enumerate(plan.batches(batch_size)):
        windows = []
        for pos, index in enumerate(tiles):
            plane, jy, jx = plan.tile(index)
            sy, sx = plan.tile_window(jy, jx)
            rows = range(sy.start // chunk[0], (sy.stop - 1) // chunk[0] + 1)
            cols = range(sx.start // chunk[1], (sx.stop - 1) // chunk[1] + 1)
            keys = [[(src.name, *plane, r, c) for c in cols] for r in rows]
            y0, x0 = rows[0] * chunk[0], cols[0] * chunk[1]
            windows.append([keys, [sy.start - y0, sy.stop - y0, sx.start - x0, sx.stop - x0]])
            for cy, _, _ in plan.ty.pieces(jy):
                for cx, _, _ in plan.tx.pieces(jx):
                    layer[(pname, index, cy, cx)] = (_piece, (bname, b), pos, (cy, cx))
        layer[(bname, b)] = (_run_batch, f"{bname}:{b}", model_ref, okey, plan, windows, tiles, lead, overlap,
                             monitor, f"histograms-{htoken}:{b}")
    for plane in plan.planes:
        for cy in range(plan.ty.n_chunks):
            for cx in range(plan.tx.n_chunks):
                tiles = [(jy, jx) for jy in plan.ty.tiles_for_chunk(cy) for jx in plan.tx.tiles_for_chunk(cx)]
                pieces = [(pname, plan.tile_index(plane, jy, jx), cy, cx) for jy, jx in tiles]
                layer[(oname, *plane, cy, cx, 0)] = (_blend_block, plan, cy, cx, tiles, lead, *pieces)
    graph = HighLevelGraph.from_collections(oname, layer, dependencies=[src])
    stacked = da.Array(graph, oname, chunks=plan.chunks + ((n_channels(),),), dtype=np.float32)
    return stacked, plan
