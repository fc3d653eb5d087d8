"""From a gray array and the caller's options to the lazy stacked result of every output.

:func:`colorize_stacked` is the one entry of the engine that the front ends (the Python
API, the zarr writer, the CLI, the napari widget) share: it resolves the model, the
decoding, the tiling, the batch size and the normalisation limits once, validates them,
and builds the graph (:func:`.graph.colorize_array`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import dask
import numpy as np
import torch

from ..devices import autocast
from ..decode import check_saturation
from ..inference import DecodeOptions
from ..inputs import (check_gray_shape, check_gray_values, check_limits, data_range_limits, tensor_as_array,
                      warn_if_dim)
from ..model import DEFAULT_MODEL, HypercolumnColorizer, get_backbone
from .defaults import default_batch, resolve_tiling
from .distributed import worker_device_kind, worker_model_path
from .context import image_context
from .graph import as_dask, colorize_array, global_limits
from .guided import build_guidance
from .jobs import ModelRef, TileOptions, check_callbacks
from .models import get_model
from .sources import source_stamp

__all__ = ["colorize_stacked", "decode_options_for", "FADE_WITH_REFERENCE"]

#: Keep the model's calibrated confidence fading when a reference guides the colour
#: (False: measured better, see :func:`colorize_stacked`).
FADE_WITH_REFERENCE = False


def decode_options_for(model: HypercolumnColorizer, method: str | None = None, saturation: float = 1.0,
                       calibrated: bool = True, **kwargs: Any) -> DecodeOptions:
    """Decoding options: the call's choices over the model's stored defaults.

    A trained model may carry calibrated decoding settings in its metadata
    (``config.decoding``, e.g. ``confidence_fading``); ``calibrated=False`` ignores them.
    A stored ``saturation`` is the model's own scale of its colour: the call's
    ``saturation`` multiplies it (1 keeps it), as a stored ``chroma_gain`` is kept.
    """
    stored = dict(getattr(getattr(model, "config", None), "decoding", {}) or {}) if calibrated else {}
    if "confidence_fading" in stored and stored["confidence_fading"] is not None:
        stored["confidence_fading"] = tuple(stored["confidence_fading"])
    stored = {k: v for k, v in stored.items() if k in DecodeOptions.__dataclass_fields__}
    stored.update({k: v for k, v in kwargs.items() if v is not None})
    if method is not None:
        stored["method"] = method
    # Multiplied, not replaced: the call's default of 1 used to override the stored value
    # silently, so a model's own saturation never took effect.
    stored["saturation"] = check_saturation(saturation) * float(stored.get("saturation", 1.0))
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

    from ..model import read_config
    source = worker_model_path(model)
    # Each worker resolves "auto" to its own GPU (dask-cuda gives each worker one).
    return SimpleNamespace(config=read_config(source)), source, device


def colorize_stacked(image, model: str | os.PathLike | HypercolumnColorizer = DEFAULT_MODEL, method: str | None = None,
                     device: str = "auto", saturation: float = 1.0, normalize: str | None = None,
                     precision: str = "fp32", calibrated: bool = True, seed: int = 0, *,
                     tile_size: int | None = None, overlap: int | None = None, batch_size: int | None = None,
                     client=None, progress=None, cancel=None, limits: tuple[float, float] | None = None,
                     cache: bool = True, reference=None, reference_strength: float | None = None, hints=None,
                     hint_range: float | None = None, hint_planes: str = "own", hint_stack=None,
                     source_id: str | None = None):
    """The lazy ``(..., Y, X, 5)`` result behind :func:`colorize` and :func:`colorize_to_zarr`.

    Returns ``(stacked dask array, TilePlan, info dict)``; parameters as :func:`napari_colorize.colorize`
    (``source_id``: :func:`colorize_to_zarr`'s).  ``info["unstamped_input_token"]`` is the
    token that versions before the files' stamp gave (to resume their unfinished stores).
    """
    _check_not_a_path_or_group(image)
    check_callbacks(progress, cancel)
    image = tensor_as_array(image)
    if not hasattr(image, "shape") or not hasattr(image, "dtype"):
        image = np.asarray(image)
    normalize = _normalization(normalize, limits)
    meta, source, dev = _model_meta(model, device, client)
    backbone = meta.config.backbone
    min_size = get_backbone(backbone).min_size
    check_gray_shape(tuple(image.shape), min_size)
    check_gray_values(image, normalize, limits)
    if client is None:
        kind = torch.device(dev).type
    else:  # what the device means on the workers, checked there with the precision and model file
        kind = worker_device_kind(client, dev, precision, None if source == DEFAULT_MODEL else str(source))
    tile_size, overlap = resolve_tiling(backbone, tuple(image.shape[-2:]), kind, tile_size, overlap, min_size)
    if batch_size is None:
        batch_size = default_batch(kind, tile_size)
    options = decode_options_for(meta, method, saturation, calibrated, seed=seed)
    if normalize in ("percentile", "minmax") and limits is None:
        limits = global_limits(as_dask(image, "auto") if not hasattr(image, "dask") else image, normalize)
    elif limits is None and normalize in (None, "dtype"):
        # Wide integers (int32, int64, ...) are scaled by their data range, found once for the
        # whole image so that every tile and plane is scaled alike; None for other dtypes.
        limits = data_range_limits(image)
        warn_if_dim(image)
    limits = None if limits is None else tuple(map(float, limits))
    # On a cluster the model is loaded here (on the CPU) only if the context or guidance needs it.
    local = isinstance(meta, torch.nn.Module)
    loader = meta if local else (lambda: get_model(source, "cpu"))  # get_model caches it
    # A context model's one vector for the whole job (every tile and plane), before the graph.
    context = (image_context(image, loader, normalize, limits, precision if local else "fp32")
               if getattr(meta.config, "context", 0) else None)
    # Checked whether or not guidance is given, so a typo in an option fails either way.
    guidance = build_guidance(image, loader, options, normalize,
                              limits, reference=reference, reference_strength=reference_strength, hints=hints,
                              hint_range=hint_range, hint_planes=hint_planes, hint_stack=hint_stack,
                              precision=precision if local else "fp32", context=context)
    if guidance is not None and guidance.log_prior is not None and not FADE_WITH_REFERENCE:
        # The stored fading is calibrated for unguided colour (fade where the network is
        # unsure); with a reference the prior says how colourful the image is, and fading
        # on top of it lost 1.5 AuC points and 0.9 dB on the validation sources (docs/guidance.md).
        # The stored chroma gain was fitted with that fading, so it goes too.
        options = dataclasses.replace(options, confidence_fading=None, chroma_gain=1.0)
    tile_options = TileOptions(options, precision, normalize, limits, min_size, cache, guidance, context)
    if client is None:
        with autocast(torch.device(dev), precision):  # checks precision against the device now, not in a task
            pass
    # The caller's own id of the input (the CLI's fingerprint of the file) replaces the walk.
    stamp = source_id if source_id is not None else source_stamp(image)
    stacked, plan = colorize_array(image, ModelRef(source, dev), tile_options, tile_size, overlap, batch_size,
                                   progress=None if client is not None else progress,
                                   cancel=None if client is not None else cancel, client=client, stamp=stamp)
    info = {"model": getattr(meta, "source", str(source) if not isinstance(source, torch.nn.Module) else "in-memory"),
            "device": dev, "method": options.method, "space": meta.config.space, "backbone": backbone,
            "tile_size": tile_size, "overlap": overlap, "batch_size": batch_size, "n_tiles": plan.n_tiles,
            "limits": tile_options.limits, "normalize": normalize, "precision": precision,
            "decode": dataclasses.asdict(options),
            "guidance": None if guidance is None else guidance.summary,
            "unstamped_input_token": _input_name(image, stacked, plan, client)}
    info["input_token"] = _stamped(info["unstamped_input_token"], stamp)
    return stacked, plan, info


def _normalization(normalize: str | None, limits) -> str | None:
    """The normalisation that ``limits`` given by the caller ask for: ``(lo, hi)`` mapped to
    [0, 1] ("minmax" with them).  Without a normalisation they used to be ignored for uint8,
    uint16 and floats (a 12-bit image in uint16 came out nearly black), yet reported as used.
    ``"none"`` (the command line's word) is None."""
    if isinstance(normalize, str) and normalize.lower() == "none":
        normalize = None
    if limits is not None and normalize == "dtype":
        raise ValueError("limits=(lo, hi) map that range to [0, 1], normalize='dtype' the data type's range: "
                         "pass one or the other")
    if limits is not None:  # before any work: (0.7, 0.7) turned the image black
        check_limits(limits)
    return "minmax" if limits is not None and normalize is None else normalize


def _input_name(image, stacked, plan, client) -> str:
    """The input's dask name, which (:func:`_stamped`) fingerprints a resumable store when the
    caller gave no source id.

    A numpy input scattered to a cluster gets a fresh name per call; its fingerprint is
    the one it has without a cluster, so an interrupted store resumes either way.
    """
    if client is not None and isinstance(image, np.ndarray):
        return as_dask(image, plan.chunks).name
    return next(iter(stacked.dask.dependencies[stacked.name]), stacked.name)


def _stamped(name: str, stamp: str | None) -> str:
    """The input's dask name with the state of the files it is read from (``stamp``): a zarr
    input's dask name is only its path."""
    return name if stamp is None else f"{name}|{dask.base.tokenize(stamp)}"


def _check_not_a_path_or_group(image) -> None:
    """A file name or a zarr group where pixels belong: say how to get the pixels (it was
    taken as an array and refused as "a gray image of shape ()")."""
    if isinstance(image, (str, bytes, os.PathLike)):
        raise TypeError(f"colorize takes pixels, not a file name ({os.fsdecode(image)!r}); read the file with "
                        "napari_colorize.io.read_image(path).data, or colour files with `napari-colorize colorize`")
    if not hasattr(image, "shape") and hasattr(image, "array_keys"):  # a zarr group
        keys = list(image.array_keys())
        raise TypeError(f"colorize takes an array, not a zarr group; pass one of its arrays, e.g. group[{keys[0]!r}]"
                        if keys else "colorize takes an array, not a zarr group (this one holds no array)")
