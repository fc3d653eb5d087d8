"""The lazy colorization graph: one model pass per tile, shared by the three outputs.

:func:`colorize_array` turns a gray array ``(..., Y, X)`` (numpy, dask or zarr) into
one dask array ``(..., Y, X, 5)`` holding RGB, chroma confidence and hue entropy.
Its graph has two kinds of tasks:

* *batch* tasks: a few tiles of equal shape are cut from the input (with their
  overlap), normalised with limits shared by the whole image, and run through
  :func:`napari_colorize.inference.predict` in one batch;
* *block* tasks: each output chunk blends the tiles that cover it with feathered
  weights (:mod:`.tiling`).

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
from .tiling import TilePlan, blend_into, check_tiling

__all__ = ["Cancelled", "ModelRef", "TileOptions", "Monitor", "colorize_array", "default_tiling", "global_limits",
           "predict_tiles", "CHANNELS", "DEFAULT_TILING"]

#: The channels of the stacked result: R, G, B, chroma confidence, hue entropy.
CHANNELS = ("red", "green", "blue", "chroma_confidence", "hue_entropy")

#: (tile size, overlap) in pixels per backbone; see docs/engine.md for the measurements.
#: Overlaps are wide because the receptive field is (context 7x7 at stride 32): with the
#: trained default model, 1024/256 tiles keep seams below the interior's own differences
#: (benchmarks/bench_engine.py seams), 1024/128 and 768/64 do not.
DEFAULT_TILING: dict[str, tuple[int, int]] = {"compact": (1280, 256), "vgg16": (1024, 256)}
#: Planes up to this side are coloured in one pass (one tile, no overlap) by default:
#: splitting them would recompute the overlaps for nothing (measured: a 1024 x 1024
#: plane is 1.8x faster as one compact tile than as 768/64 tiles on 2 CPU cores).
SINGLE_PASS_MAX: dict[str, int] = {"compact": 1536, "vgg16": 1024}
#: Tiles per model call by device type (halved automatically on out-of-memory).
DEFAULT_BATCH = {"cpu": 1, "cuda": 4, "mps": 2}
#: Above this many pixels, percentile limits are estimated from a regular subsample.
PERCENTILE_SAMPLE = 2**24


class Cancelled(Exception):
    """Raised by a computation whose ``cancel`` event was set (checked between tile batches)."""


def default_tiling(backbone: str, plane: tuple[int, int] | None = None) -> tuple[int, int]:
    """The default (tile size, overlap) for a backbone name and, optionally, a plane shape.

    A plane no larger than :data:`SINGLE_PASS_MAX` gets one tile covering it (its side
    rounded up to a multiple of 32) and no overlap.
    """
    if plane is not None and max(plane) <= SINGLE_PASS_MAX.get(backbone, 0):
        side = -(-max(plane) // 32) * 32
        return side, 0
    return DEFAULT_TILING.get(backbone, (1024, 128))


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
            tag = getattr(self.source, "_napari_colorize_uid", None)
            if tag is None:
                tag = uuid.uuid4().hex
                self.source._napari_colorize_uid = tag
            version = sum(int(p._version) for p in self.source.parameters())
            return ("object", tag, version, self.device)
        from ..model.factory import _resolve
        path = _resolve(self.source)
        st = os.stat(path)
        return ("file", str(path.resolve()), st.st_size, st.st_mtime_ns, self.device)


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


def predict_tiles(model, gray: np.ndarray, options: TileOptions, overlap: int = 64) -> np.ndarray:
    """Run the model on a batch of gray tiles, shrinking the work on out-of-memory.

    Parameters
    ----------
    model : HypercolumnColorizer
    gray : numpy.ndarray, shape (B, H, W), float32 in [0, 1]
    options : TileOptions
    overlap : int
        Overlap used if a single tile must itself be split.

    Returns
    -------
    numpy.ndarray, shape (B, 5, H, W), float32
        RGB, chroma confidence and hue entropy (see :data:`CHANNELS`), channels first
        so that blending works on contiguous planes.

    Notes
    -----
    A device out-of-memory error first halves the batch; a single tile that still
    does not fit is split into four overlapping tiles and blended, recursively, down
    to tiles of ``2 * options.min_size`` pixels.
    """
    device = next(model.parameters()).device
    try:
        with _model_lock(model):
            rgb, conf, ent = inference.predict(model, torch.from_numpy(gray).to(device), options.decode,
                                               options.precision)
            out = torch.cat((rgb.permute(0, 3, 1, 2), conf.unsqueeze(1), ent.unsqueeze(1)), dim=1).float()
            del rgb, conf, ent
        # Copied back outside the lock so the next batch's network pass overlaps it.
        return _to_host(out)
    except RuntimeError as err:
        if not _is_oom(err):
            raise
        _release_memory(device)
    b, h, w = gray.shape
    if b > 1:
        half = b // 2
        return np.concatenate([predict_tiles(model, gray[:half], options, overlap),
                               predict_tiles(model, gray[half:], options, overlap)])
    side = max(h, w)
    sub = -(-(side // 2 + overlap) // 32) * 32
    if sub >= side or sub < 2 * options.min_size:
        raise RuntimeError(f"the device ran out of memory even for one {h} x {w} tile; use a smaller --tile-size "
                           "or --device cpu")
    sub_overlap = min(overlap, sub // 4)
    plan = TilePlan.create((h, w), sub, sub_overlap)
    results = {}
    for jy in range(len(plan.ty.starts)):
        for jx in range(len(plan.tx.starts)):
            sy, sx = plan.tile_window(jy, jx)
            results[jy, jx] = predict_tiles(model, np.ascontiguousarray(gray[:, sy, sx]), options, sub_overlap)[0]
    entries = [(results[jy, jx], plan.weights(jy, jx), (plan.ty.starts[jy], plan.tx.starts[jx])) for jy, jx in results]
    return np.ascontiguousarray(blend_into((slice(0, h), slice(0, w)), entries).transpose(2, 0, 1))[None]


def _to_host(tensor: torch.Tensor) -> np.ndarray:
    """A device tensor as a numpy array; through pinned memory from a GPU (several times faster)."""
    if tensor.device.type != "cuda":
        return tensor.cpu().numpy()
    pinned = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    pinned.copy_(tensor)
    return pinned.numpy().copy()  # pageable copy: the pinned block returns to torch's cache


def _assemble(blocks: list[list[np.ndarray]], crop: list[int], lead: int) -> np.ndarray:
    """Concatenate source blocks (each ``(1,) * lead + (h, w)``) and cut a tile window."""
    plane = np.block([[np.asarray(b).reshape(np.shape(b)[lead:]) for b in row] for row in blocks])
    y0, y1, x0, x1 = crop
    return plane[y0:y1, x0:x1]


def _run_batch(key: str, model_ref: ModelRef, options: TileOptions, windows: list, tiles: tuple[int, ...],
               lead: int, overlap: int, monitor: Monitor | None) -> np.ndarray:
    """Batch task: cut, normalise and predict a batch of tiles (or take it from the cache)."""
    cached = tile_cache.get(key) if options.cache else None
    if cached is not None:
        if monitor is not None:
            monitor.advance(tiles)
        return cached
    if monitor is not None:
        monitor.check()
    gray = np.stack([to_unit_float(_assemble(blocks, crop, lead), options.normalize, options.limits)
                     for blocks, crop in windows])
    out = predict_tiles(model_ref.load(), gray, options, overlap)
    if options.cache:
        tile_cache.put(key, out)
    if monitor is not None:
        monitor.advance(tiles)
    return out


def _blend_block(plan: TilePlan, cy: int, cx: int, entries: list, lead: int) -> np.ndarray:
    """Block task: blend the tiles covering output chunk (cy, cx) of one plane."""
    tiles = [(batch[pos], plan.weights(jy, jx), (plan.ty.starts[jy], plan.tx.starts[jx]))
             for batch, pos, jy, jx in entries]
    region = (slice(*plan.ty.chunk_range(cy)), slice(*plan.tx.chunk_range(cx)))
    out = blend_into(region, tiles)
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
    plan = TilePlan.create(shape, tile_size, overlap)
    src = as_dask(image, plan.chunks)
    lead = len(plan.lead_shape)
    if monitor is None and (progress is not None or cancel is not None):
        monitor = Monitor(plan.n_tiles, progress, cancel)
    token = dask.base.tokenize(src.name, model_ref.token(), options, plan, batch_size)
    bname, oname = f"colorize-tiles-{token}", f"colorize-{token}"
    chunk = plan.ty.chunk, plan.tx.chunk
    layer: dict = {}
    where: dict[int, tuple[int, int]] = {}
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
            where[index] = (b, pos)
        layer[(bname, b)] = (_run_batch, f"{bname}:{b}", model_ref, options, windows, tiles, lead, overlap, monitor)
    for plane in plan.planes:
        for cy in range(plan.ty.n_chunks):
            for cx in range(plan.tx.n_chunks):
                entries = []
                for jy in plan.ty.tiles_for_chunk(cy):
                    for jx in plan.tx.tiles_for_chunk(cx):
                        b, pos = where[plan.tile_index(plane, jy, jx)]
                        entries.append([(bname, b), pos, jy, jx])
                layer[(oname, *plane, cy, cx, 0)] = (_blend_block, plan, cy, cx, entries, lead)
    graph = HighLevelGraph.from_collections(oname, layer, dependencies=[src])
    stacked = da.Array(graph, oname, chunks=plan.chunks + ((len(CHANNELS),),), dtype=np.float32)
    return stacked, plan
