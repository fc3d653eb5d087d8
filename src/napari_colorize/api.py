"""The Python API: ``colorize(image) -> ColorizeResult``."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .devices import resolve_device
from .inference import DecodeOptions
from .inputs import check_gray_shape
from .model import DEFAULT_MODEL, HypercolumnColorizer, load_model

__all__ = ["ColorizeResult", "colorize", "colorize_to_zarr", "colorize_stacked", "get_model", "decode_options_for"]


@dataclass
class ColorizeResult:
    """What :func:`colorize` returns.

    Attributes
    ----------
    rgb : array, shape (..., Y, X, 3), float32 in [0, 1]
        The colour image; ``rgb.mean(-1)`` equals the (normalised) input.
    chroma_confidence : array, shape (..., Y, X), float32 in [0, 1]
        ``1 - H(p_chroma) / log K``: 1 where the model is sure how colourful a pixel is.
    hue_entropy : array, shape (..., Y, X), float32 in [0, 1]
        ``H(p_hue) / log K``: 1 where any hue is equally likely.
    info : dict
        Model, method, device and timing details.
    """

    rgb: Any
    chroma_confidence: Any
    hue_entropy: Any
    info: dict = field(default_factory=dict)


#: Models loaded from files, most recently used last; at most _MODEL_CACHE_SIZE are kept.
_MODEL_CACHE: "OrderedDict[tuple, HypercolumnColorizer]" = OrderedDict()
_MODEL_CACHE_SIZE = 4
_MODEL_LOCK = threading.Lock()
#: Caller's model object -> (its device and weights version, the inference copy made from it).
_OBJECT_COPIES: "weakref.WeakKeyDictionary[torch.nn.Module, tuple[tuple, HypercolumnColorizer]]" = \
    weakref.WeakKeyDictionary()


def _for_inference(model: HypercolumnColorizer) -> HypercolumnColorizer:
    """Evaluation mode, weights channels-last: oneDNN's convolutions and pooling are about
    2x faster on that layout (measured on this project's 2-core CPU); values are unchanged."""
    return model.to(memory_format=torch.channels_last).eval()


def get_model(model: str | os.PathLike | HypercolumnColorizer = DEFAULT_MODEL,
              device: str | torch.device = "auto") -> HypercolumnColorizer:
    """A model on ``device`` in evaluation mode; files are loaded once per process.

    ``model`` is ``"default"``, a ``.safetensors`` path, or a model object.  An object
    in training mode or on another device is copied (and the copy reused until its
    weights change), so the caller's model is never moved or switched to evaluation
    mode; one already in evaluation mode on ``device`` is used itself.
    """
    dev = resolve_device(device)
    if isinstance(model, torch.nn.Module):
        return _inference_copy(model, dev)
    key_path = str(model) if str(model) == DEFAULT_MODEL else os.path.abspath(os.fspath(model))
    mtime = os.path.getmtime(key_path) if key_path != DEFAULT_MODEL and os.path.exists(key_path) else None
    key = (key_path, mtime, str(dev))
    with _MODEL_LOCK:
        if key not in _MODEL_CACHE:
            _MODEL_CACHE[key] = _for_inference(load_model(model, device=dev))
            while len(_MODEL_CACHE) > _MODEL_CACHE_SIZE:
                _MODEL_CACHE.popitem(last=False)
        _MODEL_CACHE.move_to_end(key)
        return _MODEL_CACHE[key]


def weights_version(model: torch.nn.Module) -> int:
    """A number that grows whenever a parameter or buffer of ``model`` is changed in place."""
    return sum(int(t._version) for t in itertools.chain(model.parameters(), model.buffers()))


def _inference_copy(model: torch.nn.Module, dev: torch.device) -> HypercolumnColorizer:
    """The caller's model, ready for inference on ``dev``, without changing what it computes or where.

    A model on another device or in training mode (it may be mid-training) is copied:
    moving it, or switching it to evaluation mode, would change the caller's training.
    The copy is kept while the object lives and made again only when its weights
    change.  A model already in evaluation mode on ``dev`` is used itself, its weights
    only re-laid out channels-last (no value changes; a copy would double the memory of
    a VGG-16).
    """
    params = next(model.parameters(), None)
    if not model.training and (params is None or params.device == dev):
        return _for_inference(model)
    state = (str(dev), weights_version(model))
    with _MODEL_LOCK:
        cached = _OBJECT_COPIES.get(model)
        if cached is None or cached[0] != state:
            cached = (state, _for_inference(copy.deepcopy(model).to(dev)))
            _OBJECT_COPIES[model] = cached
        return cached[1]


def decode_options_for(model: HypercolumnColorizer, method: str | None = None, saturation: float = 1.0,
                       calibrated: bool = True, **kwargs: Any) -> DecodeOptions:
    """Decoding options: the call's choices over the model's stored defaults.

    A trained model may carry calibrated decoding settings in its metadata
    (``config.decoding``, e.g. ``confidence_fading``); ``calibrated=False`` ignores them.
    """
    stored = dict(getattr(getattr(model, "config", None), "decoding", {}) or {}) if calibrated else {}
    if "confidence_fading" in stored and stored["confidence_fading"] is not None:
        stored["confidence_fading"] = tuple(stored["confidence_fading"])
    stored = {k: v for k, v in stored.items() if k in DecodeOptions.__dataclass_fields__}
    stored.update({k: v for k, v in kwargs.items() if v is not None})
    if method is not None:
        stored["method"] = method
    stored["saturation"] = saturation
    return DecodeOptions(**stored).validated()


def _model_meta(model, device: str, client) -> tuple[Any, Any, str]:
    """(object with ``.config``, model source for the tasks, device string for the tasks)."""
    if client is None:
        net = get_model(model, device)
        dev = str(next(net.parameters()).device)
        return net, (net if isinstance(model, torch.nn.Module) else model), dev
    if isinstance(model, torch.nn.Module):
        raise ValueError("with a dask.distributed client, pass the model as 'default' or a .safetensors path "
                         "(each worker loads it once); save an in-memory model first with save_model()")
    from types import SimpleNamespace

    from .model import read_config
    source = str(model) if str(model) == DEFAULT_MODEL else os.path.abspath(os.fspath(model))
    # Each worker resolves "auto" to its own GPU (dask-cuda gives each worker one).
    return SimpleNamespace(config=read_config(source)), source, device


def _check_values(image, normalize: str | None) -> None:
    """Cheap eager checks of in-memory input (lazy input is checked tile by tile)."""
    if isinstance(image, np.ndarray) and normalize in (None, "dtype") and np.issubdtype(image.dtype, np.floating):
        lo, hi = float(np.min(image)), float(np.max(image))
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise ValueError("the image contains NaN or infinite values; replace them (e.g. np.nan_to_num) before colorizing")
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f"float images must lie in [0, 1], this one spans [{lo:g}, {hi:g}]; "
                             "pass normalize='percentile' (microscopy) or 'minmax', or rescale it first")
    dtype = np.dtype(image.dtype)
    if not (np.issubdtype(dtype, np.number) or dtype == np.bool_) or np.issubdtype(dtype, np.complexfloating):
        raise ValueError(f"cannot colorize data of dtype {dtype}; pass a real-valued gray image")


def colorize_stacked(image, model: str | os.PathLike | HypercolumnColorizer = DEFAULT_MODEL, method: str | None = None,
                     device: str = "auto", saturation: float = 1.0, normalize: str | None = None,
                     precision: str = "fp32", calibrated: bool = True, seed: int = 0, *,
                     tile_size: int | None = None, overlap: int | None = None, batch_size: int | None = None,
                     client=None, progress=None, cancel=None, limits: tuple[float, float] | None = None,
                     cache: bool = True):
    """The lazy ``(..., Y, X, 5)`` result behind :func:`colorize` and :func:`colorize_to_zarr`.

    Returns ``(stacked dask array, TilePlan, info dict)``; parameters as :func:`colorize`.
    """
    from .engine.lazy import ModelRef, TileOptions, as_dask, colorize_array, default_batch, default_tiling, global_limits
    from .inputs import NORMALIZATIONS
    from .model import BACKBONES

    if normalize not in NORMALIZATIONS:
        raise ValueError(f"unknown normalize={normalize!r}; choose one of {NORMALIZATIONS}")
    if not hasattr(image, "shape") or not hasattr(image, "dtype"):
        image = np.asarray(image)
    meta, source, dev = _model_meta(model, device, client)
    backbone = meta.config.backbone
    min_size = int(getattr(BACKBONES.get(backbone), "min_size", 32))
    check_gray_shape(tuple(image.shape), min_size)
    _check_values(image, normalize)
    if client is None or dev != "auto":
        kind = torch.device(dev).type
    else:  # what "auto" means on the workers
        kind = next(iter(client.run(lambda: resolve_device("auto").type).values()), "cpu")
    default_tile, default_overlap = default_tiling(backbone, tuple(image.shape[-2:]) if tile_size is None else None,
                                                   kind)
    if overlap is None and tile_size is not None:
        # The caller's tile with the backbone's overlap, at most a quarter tile (so that small
        # tiles keep a core of their own), a multiple of 32 where possible.
        overlap = min(default_overlap, int(tile_size) // 4)
        overlap -= overlap % 32 if overlap >= 32 else 0
    tile_size = default_tile if tile_size is None else int(tile_size)
    overlap = int(default_overlap if overlap is None else overlap)
    if batch_size is None:
        batch_size = default_batch(kind, tile_size)
    options = decode_options_for(meta, method, saturation, calibrated, seed=seed)
    if normalize in ("percentile", "minmax") and limits is None:
        limits = global_limits(as_dask(image, "auto") if not hasattr(image, "dask") else image, normalize)
    tile_options = TileOptions(options, precision, normalize, None if limits is None else tuple(map(float, limits)),
                               min_size, cache)
    if client is None:
        from .devices import autocast
        with autocast(torch.device(dev), precision):  # checks precision against the device now, not in a task
            pass
    stacked, plan = colorize_array(image, ModelRef(source, dev), tile_options, tile_size, overlap, batch_size,
                                   progress=None if client is not None else progress,
                                   cancel=None if client is not None else cancel)
    info = {"model": getattr(meta, "source", str(source) if not isinstance(source, torch.nn.Module) else "in-memory"),
            "device": dev, "method": options.method, "space": meta.config.space, "backbone": backbone,
            "tile_size": tile_size, "overlap": overlap, "batch_size": batch_size, "n_tiles": plan.n_tiles,
            "limits": tile_options.limits, "normalize": normalize, "precision": precision,
            "decode": dataclasses.asdict(options),
            "input_token": next(iter(stacked.dask.dependencies[stacked.name]), stacked.name)}
    return stacked, plan, info


def colorize(image, model: str | os.PathLike | HypercolumnColorizer = DEFAULT_MODEL, method: str | None = None,
             device: str = "auto", saturation: float = 1.0, normalize: str | None = None,
             precision: str = "fp32", calibrated: bool = True, seed: int = 0, *,
             tile_size: int | None = None, overlap: int | None = None, batch_size: int | None = None,
             client=None, progress: Callable[[int, int], None] | None = None,
             cancel: threading.Event | None = None, limits: tuple[float, float] | None = None) -> ColorizeResult:
    """Colorize a gray image or stack, keeping its lightness, at any size.

    Parameters
    ----------
    image : array_like, dask or zarr array, shape (..., Y, X)
        Gray image or stack (any leading axes): integers (scaled by their dtype
        range) or floats in [0, 1].  Never modified.
    model : "default", path or HypercolumnColorizer
        The shipped default model, a ``.safetensors`` file from ``napari-colorize
        train``, or a model object.
    method : {None, "expectation", "median", "mode", "sample"}
        Histogram decoding (None: the paper's best for the model's colour space).
    device : str
        "auto" (CUDA, then MPS, then CPU), "cpu", "cuda", "cuda:1", "mps".
    saturation : float
        Chroma multiplier (kept inside the RGB gamut).
    normalize : {None, "percentile", "minmax"}
        "percentile" maps the 0.1-99.9 percentiles to [0, 1] (microscopy data).  The
        limits are computed once for the whole image or stack, so tiles and planes
        agree.
    precision : {"fp32", "bf16", "fp16"}
        Network precision on a GPU (autocast).
    calibrated : bool
        Use the model's calibrated decoding (fading where it is unsure) if it has one.
    seed : int
        Seed of ``method="sample"``.
    tile_size, overlap : int, optional
        Tile side and overlap between tiles in pixels (defaults per backbone and
        device, see :data:`napari_colorize.engine.DEFAULT_TILING` and
        :data:`~napari_colorize.engine.GPU_TILING`); ``tile_size > 2 * overlap``.
    batch_size : int, optional
        Tiles per model call (default 1 on the CPU, about 16 M pixels on a GPU;
        halved automatically when the device runs out of memory).
    client : dask.distributed.Client, optional
        Build the graph for this cluster: each worker loads the model once (``model``
        must then be a name or path).  The lazy result is computed by the client.
    progress : callable(done, total), optional
        Called after each batch of tiles with the distinct tiles finished and the
        total tiles of the result (in this process only).
    cancel : threading.Event, optional
        Set it to stop a running computation between batches; it then raises
        :class:`napari_colorize.engine.Cancelled`.
    limits : (float, float), optional
        Precomputed normalisation limits for "percentile"/"minmax".

    Returns
    -------
    ColorizeResult
        ``rgb`` ``(..., Y, X, 3)``, ``chroma_confidence`` and ``hue_entropy``
        ``(..., Y, X)``, float32.  Lazy dask arrays, slices of one shared graph, when
        the input is lazy (dask, zarr) or a plane needs more than one tile; numpy
        arrays otherwise.
    """
    stacked, plan, info = colorize_stacked(image, model, method, device, saturation, normalize, precision, calibrated,
                                           seed, tile_size=tile_size, overlap=overlap, batch_size=batch_size,
                                           client=client, progress=progress, cancel=cancel, limits=limits)
    lazy = not isinstance(image, np.ndarray) and hasattr(image, "shape") or plan.tiles_per_plane > 1
    if not lazy:
        stacked = client.compute(stacked).result() if client is not None else stacked.compute(scheduler="threads")
    info["lazy"] = bool(lazy)
    return ColorizeResult(rgb=stacked[..., :3], chroma_confidence=stacked[..., 3], hue_entropy=stacked[..., 4], info=info)


def colorize_to_zarr(image, path: str | os.PathLike, model: str | os.PathLike | HypercolumnColorizer = DEFAULT_MODEL,
                     **kwargs: Any):
    """Colorize into an OME-Zarr store, chunk by chunk, resumably.

    See :func:`napari_colorize.engine.zarr_io.colorize_to_zarr` for the parameters.
    """
    from .engine.zarr_io import colorize_to_zarr as _to_zarr
    return _to_zarr(image, path, model=model, **kwargs)
