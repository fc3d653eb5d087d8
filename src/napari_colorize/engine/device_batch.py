"""One batch of tiles through the network on its device: one call at a time per model,
out-of-memory recovery, and (on a GPU) copies back that overlap the next batch."""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import torch

from .. import inference
from ..outputs import channel_slices, n_channels
from .cache import histogram_cache
from .jobs import TileOptions
from .tiling import TilePlan, blend_tiles, scale_in_place

__all__ = ["predict_tiles", "reset_memory_limits"]

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
                  weights: list[tuple[np.ndarray, np.ndarray]] | None = None, guides: list | None = None,
                  hist_key=None, origins: list[tuple[int, ...]] | None = None,
                  check: Callable[[], None] | None = None) -> np.ndarray:
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
    guides : list of TileGuide or None, optional
        Per tile, its guidance (:meth:`napari_colorize.guidance.Guidance.for_tile`).
    hist_key : hashable, optional
        Key of this batch's network histograms in :data:`.cache.histogram_cache` (CPU
        only): a batch seen before is only decoded again.
    origins : list of tuple, optional
        Per tile, its place (plane indices, first row, first column): the ``sample``
        decoding draws each tile from a generator seeded by it.
    check : callable, optional
        Called once the model is free, before its pass (e.g. a job's cancel check, which
        raises): a batch that waited for another's pass must not then run a cancelled job.

    Returns
    -------
    numpy.ndarray, shape (B, H, W, C), float32
        Every output of :data:`napari_colorize.outputs.OUTPUTS` in its channels
        (:func:`~napari_colorize.outputs.channel_slices`), channels last like the
        result, so nothing downstream transposes.

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
                if check is not None:
                    check()
                maps = _maps(model, torch.from_numpy(gray).to(device), options, guides, hist_key, origins)
                out = _stack_outputs(maps)
                del maps
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
        return np.concatenate([predict_tiles(model, gray[:half], options, overlap, weights and weights[:half],
                                             guides and guides[:half], origins=origins and origins[:half], check=check),
                               predict_tiles(model, gray[half:], options, overlap, weights and weights[half:],
                                             guides and guides[half:], origins=origins and origins[half:], check=check)])
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
            sub_guides = None
            if guides and guides[0] is not None:
                sub_guides = [guides[0].crop(sy.start, sx.start, sy.stop - sy.start, sx.stop - sx.start)]
            sub_origins = None if origins is None else [(*origins[0][:-2], origins[0][-2] + sy.start,
                                                          origins[0][-1] + sx.start)]
            results[jy, jx] = predict_tiles(model, np.ascontiguousarray(gray[:, sy, sx]), options, sub_overlap,
                                            guides=sub_guides, origins=sub_origins, check=check)[0]
    out = blend_tiles(plan, results)
    if weights is not None:
        scale_in_place(out, *weights[0])
    return out[None]


def _maps(model, gray: torch.Tensor, options: TileOptions, guides: list | None, hist_key,
          origins: list[tuple[int, ...]] | None = None) -> dict[str, torch.Tensor]:
    """The batch's output maps; its histograms from the cache when ``hist_key`` has them."""
    cached = hist_key is not None and gray.device.type == "cpu"
    probs = histogram_cache.get(hist_key) if cached else None
    if probs is None:
        probs = inference.histograms(model, gray, options.precision, options.context)
        if cached:
            histogram_cache.put(hist_key, dict(probs))
    # A copy of the dict: decoding frees its entries as it goes, the cache keeps them.
    return inference.decode_histograms(model, dict(probs), gray, options.decode, free=True, guides=guides,
                                       origins=origins)


def _stack_outputs(maps: dict[str, torch.Tensor]) -> torch.Tensor:
    """The output maps in their channels of one ``(B, H, W, C)`` tensor.

    Filled channel by channel: on a CPU 2x faster than ``torch.cat`` along the last axis.
    """
    rgb = maps["rgb"]
    out = torch.empty((*rgb.shape[:3], n_channels()), dtype=torch.float32, device=rgb.device)
    for name, channels in channel_slices().items():
        out[..., channels] = maps[name]
    return out


_COPY_STREAMS: dict[str, torch.cuda.Stream] = {}


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


