"""The Python API: ``colorize(image) -> ColorizeResult``."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .devices import resolve_device
from .inference import DecodeOptions, predict
from .inputs import check_gray_shape, to_unit_float
from .model import DEFAULT_MODEL, HypercolumnColorizer, load_model

__all__ = ["ColorizeResult", "colorize", "get_model", "decode_options_for"]


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


_MODEL_CACHE: dict[tuple, HypercolumnColorizer] = {}
_MODEL_LOCK = threading.Lock()


def get_model(model: str | os.PathLike | HypercolumnColorizer = DEFAULT_MODEL,
              device: str | torch.device = "auto") -> HypercolumnColorizer:
    """A model on ``device`` in evaluation mode; files are loaded once per process.

    ``model`` is ``"default"``, a ``.safetensors`` path, or a model object (moved to
    the device as needed).
    """
    dev = resolve_device(device)
    if isinstance(model, torch.nn.Module):
        return model.to(dev).eval()
    key_path = str(model) if str(model) == DEFAULT_MODEL else os.path.abspath(os.fspath(model))
    mtime = os.path.getmtime(key_path) if key_path != DEFAULT_MODEL and os.path.exists(key_path) else None
    key = (key_path, mtime, str(dev))
    with _MODEL_LOCK:
        if key not in _MODEL_CACHE:
            _MODEL_CACHE[key] = load_model(model, device=dev)
        return _MODEL_CACHE[key]


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


def colorize(image, model: str | os.PathLike | HypercolumnColorizer = DEFAULT_MODEL, method: str | None = None,
             device: str = "auto", saturation: float = 1.0, normalize: str | None = None,
             precision: str = "fp32", calibrated: bool = True, seed: int = 0) -> ColorizeResult:
    """Colorize a gray image, keeping its lightness.

    Parameters
    ----------
    image : array_like, shape (Y, X)
        Gray image: integers (scaled by their dtype range) or floats in [0, 1].
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
        "percentile" maps the 0.1-99.9 percentiles to [0, 1] (microscopy data).
    precision : {"fp32", "bf16", "fp16"}
        Network precision on a GPU (autocast).
    calibrated : bool
        Use the model's calibrated decoding (fading where it is unsure) if it has one.
    seed : int
        Seed of ``method="sample"``.

    Returns
    -------
    ColorizeResult
    """
    net = get_model(model, device)
    arr = np.asarray(image)
    check_gray_shape(arr.shape, net.min_size)
    if arr.ndim != 2:
        raise ValueError(f"colorize takes a 2D image here, got shape {arr.shape}")
    gray = to_unit_float(arr, normalize)
    options = decode_options_for(net, method, saturation, calibrated, seed=seed)
    dev = next(net.parameters()).device
    rgb, conf, ent = predict(net, torch.from_numpy(gray)[None].to(dev), options, precision)
    return ColorizeResult(
        rgb=rgb[0].cpu().numpy(),
        chroma_confidence=conf[0].cpu().numpy(),
        hue_entropy=ent[0].cpu().numpy(),
        info={"model": getattr(net, "source", "in-memory"), "device": str(dev), "method": options.method,
              "space": net.space.name, "backbone": net.config.backbone},
    )
