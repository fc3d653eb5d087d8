"""The lazy colorization graph: one model pass per tile, shared by the three outputs.

:func:`colorize_array` turns a gray array ``(..., Y, X)`` (numpy, dask or zarr) into
one dask array ``(..., Y, X, 5)`` holding RGB, chroma confidence and hue entropy.
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

import os
import threading
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dask
import dask.array as da
import numpy as np
import torch
from dask.highlevelgraph import HighLevelGraph

from .. import inference
from ..inference import DecodeOptions
from ..inputs import check_gray_shape, percentile_limits, to_unit_float
from .cache import tile_cache
from .tiling import TilePlan, assemble_chunk, blend_tiles, check_tiling, cut_pieces, scale_in_place

__all__ = ["Cancelled", "ModelRef", "TileOptions", "Monitor", "colorize_array", "default_tiling", "default_batch",
           "global_limits", "predict_tiles", "reset_memory_limits", "CHANNELS", "DEFAULT_TILING", "GPU_TILING"]

#: The channels of the stacked result: R, G, B, chroma confidence, hue entropy.
CHANNELS = ("red", "green", "blue", "chroma_confidence", "hue_entropy")

#: (tile size, overlap) in pixels per backbone; see docs/engine.md for the measurements.
#: Overlaps are wide because the receptive field is (context 7x7 at stride 32): a chunk
#: border needs about 192 px of context on each side.  With the trained default model,
#: 1408/384 tiles keep chunk borders below the interior's own differences on 1536² and
#: 3072² (benchmarks/bench_engine.py seams); 1280/256 leaves faint seams between interior
#: tiles.  Chunks stay 1024 px.  (vgg16 takes the same overlap; no trained vgg16 to measure.)
DEFAULT_TILING: dict[str, tuple[int, int]] = {"compact": (1408, 384), "vgg16": (1024, 384)}
#: Planes up to this side are coloured in one pass (one tile, no overlap) by default:
#: splitting them would recompute the overlaps for nothing (measured: a 1024 x 1024
#: plane is 1.8x faster as one compact tile than as 768/64 tiles on 2 CPU cores).
SINGLE_PASS_MAX: dict[str, int] = {"compact": 1536, "vgg16": 1024}
#: On a GPU: larger tiles, since every overlap pixel is computed twice (1408/384 tiles
#: compute up to 1.89x the image's pixels, 4096/384 tiles 1.22x) and GPU memory is plentiful;
#: planes up to the tile size run in one pass.  Out-of-memory shrinks them (predict_tiles).
GPU_TILING: dict[str, tuple[int, int]] = {"compact": (4096, 384), "vgg16": (2048, 384)}
#: Tiles per model call by device type, except CUDA (see default_batch); halved
#: automatically on out-of-memory.
DEFAULT_BATCH = {"cpu": 1, "mps": 2}
#: On a GPU, batches hold about this many pixels (at least one tile).
GPU_BATCH_PIXELS = 2**24
#: Graph key prefixes of the batch and piece tasks (the zarr writer plans its order by them).
BATCH_PREFIX, PIECE_PREFIX = "colorize-tiles-", "colorize-pieces-"
#: Above this many pixels, percentile limits are estimated from a regular subsample.
PERCENTILE_SAMPLE = 2**24


class Cancelled(Exception):
    """Raised by a computation whose ``cancel`` event was set (checked between tile batches)."""


def default_tiling(backbone: str, plane: tuple[int, int] | None = None, device_type: str = "cpu") -> tuple[int, int]:
    """The default (tile size, overlap) for a backbone, a plane shape and a device type.

    A plane no larger than :data:`SINGLE_PASS_MAX` (on a GPU, the :data:`GPU_TILING`
    tile size) gets one tile covering it (its side rounded up to a multiple of 32) and
    no overlap.
    """
    if device_type == "cuda" and backbone in GPU_TILING:
        tiling, single = GPU_TILING[backbone], GPU_TILING[backbone][0]
    else:
        tiling, single = DEFAULT_TILING.get(backbone, (1024, 128)), SINGLE_PASS_MAX.get(backbone, 0)
    if plane is not None and max(plane) <= single:
        side = -(-max(plane) // 32) * 32
        return side, 0
    return tiling


def default_batch(device_type: str, tile_size: int) -> int:
    """Tiles per model call: one on a CPU, about :data:`GPU_BATCH_PIXELS` pixels on a GPU."""
    if device_type == "cuda":
        return max(1, GPU_BATCH_PIXELS // (tile_size * tile_size))
    return DEFAULT_BATCH.get(device_type, 1)


@dataclass(frozen=True)
class ModelRef:
    """How a task finds its model: a name or path loaded once per process, or an object.

    Tasks on a dask.distributed worker load the model there (by path, through
    :func:`napari_colorize.api.get_model`'s per-process cache) instead of receiving
    pickled weights with every task.
    """

    source: Any
    device: str = "auto"

    def load(self):
        from ..api import get_model
        return get_model(self.source, self.device)

    def token(self) -> tuple:
        """A value that changes whenever the model's weights may have changed."""
        if isinstance(self.source, torch.nn.Module):
            from ..api import weights_version
            with _LOCKS_LOCK:
                tag = _OBJECT_TAGS.setdefault(self.source, uuid.uuid4().hex)
            return ("object", tag, weights_version(self.source), self.device)
        from ..model.factory import _resolve
        path = _resolve(self.source)
        st = os.stat(path)
        return ("file", str(path.resolve()), st.st_size, st.st_mtime_ns, self.device)


#: A random tag per model object (kept outside the object, and only while it lives), so
#: two objects never share cache entries even if one reuses the other's id().
_OBJECT_TAGS: "weakref.WeakKeyDictionary[torch.nn.Module, str]" = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class TileOptions:
    """Everything a batch task needs besides the model and its pixels."""

    decode: DecodeOptions
    precision: str = "fp32"
    normalize: str | None = None
    limits: tuple[float, float] | None = None
    min_size: int = 32
    #: Keep finished batches in the per-process tile cache (for napari, which computes the
    #: three layers separately).  A zarr write turns it off: dask already holds each batch
    #: until every chunk that blends it is written, and a second copy only costs memory.
    cache: bool = True


@dataclass(eq=False)
class Monitor:
    """Progress reporting and cancellation for computations in this process.

    ``callback(done, total)`` is called after each batch with the number of distinct
    tiles finished so far (cache hits included) and the number of tiles in the whole
    result; computing only part of a result stops below ``total``.
    """

    total: int
    callback: Callable[[int, int], None] | None = None
    cancel: threading.Event | None = None
    _done: set = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("colorization was cancelled")

    def advance(self, tiles: tuple[int, ...]) -> None:
        # The callback runs under the lock so that reported counts never go backwards.
        with self._lock:
            self._done.update(tiles)
            if self.callback is not None:
                self.callback(len(self._done), self.total)


_MODEL_LOCKS: dict[int, threading.Lock] = {}
_LOCKS_LOCK = threading.Lock()


def _model_lock(model) -> threading.Lock:
    # One network call at a time per model: on a GPU concurrent calls only add memory,
    # on the CPU torch already uses every core; the other threads read, normalise,
    # blend and write meanwhile.
    with _LOCKS_LOCK:
        return _MODEL_LOCKS.setdefault(id(model), threading.Lock())


def _is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()


def _release_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


#: Per device, the smallest batch (in pixels) that ran out of memory in this process:
#: later batches that large are split before trying, instead of failing again first.
_OOM_PIXELS: dict[str, int] = {}


def reset_memory_limits() -> None:
    """Forget the out-of-memory sizes learnt so far (e.g. after freeing GPU memory)."""
    _OOM_PIXELS.clear()


def predict_tiles(model, gray: np.ndarray, options: TileOptions, overlap: int = 64,
                  weights: list[tuple[np.ndarray, np.ndarray]] | None = None) -> np.ndarray:
    """Run the model on a batch of gray tiles, shrinking the work on out-of-memory.

    Parameters
    ----------
    model : HypercolumnColorizer
    gray : numpy.ndarray, shape (B, H, W), float32 in [0, 1]
    options : TileOptions
    overlap : int
        Overlap used if a single tile must itself be split.
    weights : list of (wy, wx), optional
        Per tile, blending weights along Y and X to multiply the result by, on the
        model's device (free on a GPU, and the host then only copies).

    Returns
    -------
    numpy.ndarray, shape (B, H, W, 5), float32
        RGB, chroma confidence and hue entropy (see :data:`CHANNELS`), channels last
        like the result, so nothing downstream transposes.

    Notes
    -----
    A device out-of-memory error first halves the batch; a single tile that still
    does not fit is split into four overlapping tiles and blended, recursively, down
    to tiles of ``2 * options.min_size`` pixels.
    """
    device = next(model.parameters()).device
    if gray.size < _OOM_PIXELS.get(str(device), gray.size + 1):
        try:
            with _model_lock(model):
                rgb, conf, ent = inference.predict(model, torch.from_numpy(gray).to(device), options.decode,
                                                   options.precision)
                # Filled channel by channel: on a CPU 2x faster than torch.cat along the last axis.
                out = torch.empty((*rgb.shape[:3], len(CHANNELS)), dtype=torch.float32, device=rgb.device)
                out[..., :3], out[..., 3], out[..., 4] = rgb, conf, ent
                del rgb, conf, ent
                if weights is not None:
                    for i, (wy, wx) in enumerate(weights):
                        out[i] *= torch.from_numpy(wy).to(device)[:, None, None]
                        out[i] *= torch.from_numpy(wx).to(device)[None, :, None]
                ready = _mark_done(out)
            # Copied back outside the lock (on a GPU, on a copy stream) so that the next
            # batch's network pass overlaps the copy.
            return _to_host(out, ready)
        except RuntimeError as err:
            if not _is_oom(err):
                raise
            _release_memory(device)
            _OOM_PIXELS[str(device)] = gray.size  # only batches below the old limit get here
    b, h, w = gray.shape
    if b > 1:
        half = b // 2
        return np.concatenate([predict_tiles(model, gray[:half], options, overlap, weights and weights[:half]),
                               predict_tiles(model, gray[half:], options, overlap, weights and weights[half:])])
    side = max(h, w)
    sub = -(-(side // 2 + overlap) // 32) * 32
    if sub >= side or sub < 2 * options.min_size:
        raise RuntimeError(f"the device ran out of memory even for one {h} x {w} tile; use a smaller --tile-size "
                           "or --device cpu")
    sub_overlap = min(overlap, sub // 4)
    plan = TilePlan.create((h, w), sub, sub_overlap, min_width=options.min_size)
    results = {}
    for jy in range(len(plan.ty.starts)):
        for jx in range(len(plan.tx.starts)):
            sy, sx = plan.tile_window(jy, jx)
            results[jy, jx] = predict_tiles(model, np.ascontiguousarray(gray[:, sy, sx]), options, sub_overlap)[0]
    out = blend_tiles(plan, results)
    if weights is not None:
        scale_in_place(out, *weights[0])
    return out[None]


_COPY_STREAMS: dict[str, "torch.cuda.Stream"] = {}


def _mark_done(tensor: torch.Tensor):
    """On a GPU, an event recorded after the work queued so far that produces ``tensor``."""
    if tensor.device.type != "cuda":
        return None
    event = torch.cuda.Event()
    event.record(torch.cuda.current_stream(tensor.device))
    return event


def _to_host(tensor: torch.Tensor, ready=None) -> np.ndarray:
    """A device tensor as a numpy array.

    From a GPU the copy runs on a separate stream into pinned memory once ``ready`` (an
    event from :func:`_mark_done`) has fired, so it overlaps the next batch's network
    pass on the default stream; the array stays in pinned memory, which returns to
    torch's pinned-memory cache when the array is freed (tile results are cut into
    pieces at once).
    """
    if tensor.device.type != "cuda":
        return tensor.cpu().numpy()
    with _LOCKS_LOCK:
        if str(tensor.device) not in _COPY_STREAMS:
            _COPY_STREAMS[str(tensor.device)] = torch.cuda.Stream(tensor.device)
        stream = _COPY_STREAMS[str(tensor.device)]
    pinned = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    with torch.cuda.stream(stream):
        if ready is not None:
            stream.wait_event(ready)
        pinned.copy_(tensor, non_blocking=True)
        # The tensor is freed by the caller while the copy may still be running: tell the
        # caching allocator not to reuse its memory before the copy stream is done with it.
        tensor.record_stream(stream)
    stream.synchronize()
    return pinned.numpy()


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
               tiles: tuple[int, ...], lead: int, overlap: int, monitor: Monitor | None) -> list[dict]:
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
    out = predict_tiles(model, gray, options, overlap, weights)
    del gray
    pieces = [cut_pieces(out[pos], plan, jy, jx, scaled=on_gpu) for pos, (jy, jx) in enumerate(places)]
    del out
    if options.cache:
        tile_cache.put(key, pieces)
    if monitor is not None:
        monitor.advance(tiles)
    return pieces


def _piece(batch: list[dict], pos: int, chunk: tuple[int, int]) -> np.ndarray:
    """Piece task: one tile's contribution to one chunk (its own dask key, so it is freed on its own)."""
    return batch[pos][chunk]


def _blend_block(plan: TilePlan, cy: int, cx: int, tiles: list[tuple[int, int]], lead: int,
                 *pieces: np.ndarray) -> np.ndarray:
    """Block task: the sum of the pieces of output chunk (cy, cx) of one plane."""
    out = assemble_chunk(plan, cy, cx, [(jy, jx, p) for (jy, jx), p in zip(tiles, pieces)])
    return out.reshape((1,) * lead + out.shape)


def global_limits(src: da.Array, normalize: str | None) -> tuple[float, float] | None:
    """Normalisation limits for the whole image (all planes), computed once.

    "percentile" uses every pixel up to :data:`PERCENTILE_SAMPLE` pixels and a
    regular spatial subsample beyond (the 0.1/99.9 percentiles of a 16 M pixel sample
    are within a fraction of a grey level of the exact ones); "minmax" is exact.
    """
    if normalize == "percentile":
        step = max(1, int(np.ceil(np.sqrt(src.size / PERCENTILE_SAMPLE))))
        sample = np.asarray(src[..., ::step, ::step].compute(scheduler="threads"))
        return percentile_limits(sample)
    if normalize == "minmax":
        lo, hi = dask.compute(src.min(), src.max(), scheduler="threads")
        return float(lo), float(hi)
    return None


def as_dask(image, chunks: tuple[tuple[int, ...], ...]) -> da.Array:
    """A dask view of a numpy, zarr or dask array with the plan's chunks (never a copy of the input)."""
    if isinstance(image, da.Array):
        return image.rechunk(chunks) if image.chunks != chunks else image
    if not hasattr(image, "shape") or not hasattr(image, "dtype"):
        image = np.asarray(image)
    return da.from_array(image, chunks=chunks, asarray=isinstance(image, np.ndarray) or None)


def colorize_array(image, model_ref: ModelRef, options: TileOptions, tile_size: int, overlap: int,
                   batch_size: int = 1, monitor: Monitor | None = None,
                   progress: Callable[[int, int], None] | None = None,
                   cancel: threading.Event | None = None) -> tuple[da.Array, TilePlan]:
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

    Returns
    -------
    stacked : dask.array.Array, shape (..., Y, X, 5), float32
        Channels :data:`CHANNELS`; chunks are ``tile_size - overlap`` pixels.
    plan : TilePlan
    """
    check_tiling(tile_size, overlap, options.min_size)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    shape = tuple(image.shape)
    check_gray_shape(shape, options.min_size)
    plan = TilePlan.create(shape, tile_size, overlap, min_width=options.min_size)
    src = as_dask(image, plan.chunks)
    lead = len(plan.lead_shape)
    if monitor is None and (progress is not None or cancel is not None):
        monitor = Monitor(plan.n_tiles, progress, cancel)
    token = dask.base.tokenize(src.name, model_ref.token(), options, plan, batch_size)
    bname, pname, oname = f"{BATCH_PREFIX}{token}", f"{PIECE_PREFIX}{token}", f"colorize-{token}"
    chunk = plan.ty.chunk, plan.tx.chunk
    layer: dict = {}
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
        layer[(bname, b)] = (_run_batch, f"{bname}:{b}", model_ref, options, plan, windows, tiles, lead, overlap,
                             monitor)
    for plane in plan.planes:
        for cy in range(plan.ty.n_chunks):
            for cx in range(plan.tx.n_chunks):
                tiles = [(jy, jx) for jy in plan.ty.tiles_for_chunk(cy) for jx in plan.tx.tiles_for_chunk(cx)]
                pieces = [(pname, plan.tile_index(plane, jy, jx), cy, cx) for jy, jx in tiles]
                layer[(oname, *plane, cy, cx, 0)] = (_blend_block, plan, cy, cx, tiles, lead, *pieces)
    graph = HighLevelGraph.from_collections(oname, layer, dependencies=[src])
    stacked = da.Array(graph, oname, chunks=plan.chunks + ((len(CHANNELS),),), dtype=np.float32)
    return stacked, plan
