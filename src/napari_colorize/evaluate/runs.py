"""Running models on colour images made gray: :func:`evaluate` (one model) and :func:`compare` (several)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..engine import decode_options_for, get_model
from ..inference import DecodeOptions, decode_histograms, histograms
from ..model.hypercolumn import HypercolumnColorizer
from .scoring import ImageInput, _order, load_images, score
from .table import EvaluationTable


def _probabilities(model: HypercolumnColorizer, gray: np.ndarray, precision: str = "fp32") -> dict[str, torch.Tensor]:
    """One network pass on one gray image: :func:`napari_colorize.inference.histograms`."""
    dev = next(model.parameters()).device
    return histograms(model, torch.from_numpy(gray)[None].to(dev), precision)


def _colour_from_probabilities(model: HypercolumnColorizer, probs: dict[str, torch.Tensor], gray: np.ndarray,
                               options: DecodeOptions) -> np.ndarray:
    """RGB from cached histograms (:func:`napari_colorize.inference.decode_histograms`), so that
    calibration tries many decoders on one network pass."""
    g = torch.from_numpy(gray)[None].to(next(iter(probs.values())).device)
    return decode_histograms(model, probs, g, options)["rgb"][0].cpu().numpy()


def evaluate(data: ImageInput | Iterable[ImageInput], model: Any = "default", method: str | None = None,
             calibrated: bool = True, device: str = "auto", saturation: float = 1.0, max_side: int | None = 512,
             limit: int | None = None, precision: str = "fp32", progress: bool = False,
             images: list[tuple[str, np.ndarray]] | None = None, **decode: Any) -> EvaluationTable:
    """Colorize the gray version of each colour image and score it against the original.

    Parameters
    ----------
    data : folder, file, array or a sequence of these
        Colour images (see :func:`load_images`); ignored if ``images`` is given.
    model : "default", path or HypercolumnColorizer
    method : {None, "expectation", "median", "mode", "sample"}
        Histogram decoding (None: the paper's best for the model's colour space).
    calibrated : bool
        Use the model's calibrated decoding (confidence fading) if it has one.
    device : str
    saturation : float
        Chroma multiplier.
    max_side : int or None
        Files are reduced to this long side before evaluation.
    limit : int, optional
        At most this many images.
    precision : {"fp32", "bf16", "fp16"}
    progress : bool
        Show a progress bar.
    images : list of (name, RGB array), optional
        Already loaded images (:func:`load_images`).
    **decode
        Further :class:`napari_colorize.inference.DecodeOptions` fields, e.g.
        ``confidence_fading=(0.2, 0.5)`` or ``fading=False``.

    Returns
    -------
    EvaluationTable
        One row per image and the mean row, each metric beside the gray baseline.
    """
    net = get_model(model, device)
    images = images if images is not None else load_images(data, max_side=max_side, limit=limit)
    options = decode_options_for(net, method, saturation, calibrated, **decode)
    rows = []
    iterator: Iterable = images
    if progress:
        from tqdm.auto import tqdm
        iterator = tqdm(images, desc="evaluating", unit="img")
    for name, rgb in iterator:
        gray = rgb.mean(axis=-1, dtype=np.float32)
        out = _colour_from_probabilities(net, _probabilities(net, gray, precision), gray, options)
        rows.append(_order({"name": name, **score(out, rgb)}))
    info = {"model": getattr(net, "source", "in-memory"), "backbone": net.config.backbone, "space": net.space.name,
            "method": options.method or "default", "calibrated": calibrated,
            "confidence_fading": list(options.confidence_fading) if options.confidence_fading else None,
            "fading": options.fading, "saturation": options.saturation, "images": len(rows), "max_side": max_side}
    return EvaluationTable(rows, info=info)


def compare(data: ImageInput | Iterable[ImageInput], variants: Sequence[dict[str, Any]], device: str = "auto",
            max_side: int | None = 512, limit: int | None = None, progress: bool = False) -> EvaluationTable:
    """Score several models / decoders on the same images: one mean row per variant.

    Parameters
    ----------
    data : folder, file, array or a sequence of these
        Colour images (see :func:`load_images`).
    variants : sequence of dict
        Keyword arguments of :func:`evaluate` per row (``model``, ``method``,
        ``calibrated``, ``saturation``, ``confidence_fading``, ...), plus an optional
        ``name``.  E.g. ``[{"name": "calibrated"}, {"name": "uncalibrated",
        "calibrated": False}]``.

    Returns
    -------
    EvaluationTable
        Rows: one per variant (means over the images), then a "gray" row (the
        baseline, whose metrics equal the ``*_gray`` columns); ``mean`` is empty.
    """
    images = load_images(data, max_side=max_side, limit=limit)
    rows = []
    for i, variant in enumerate(variants):
        kwargs = dict(variant)
        name = kwargs.pop("name", None) or _variant_name(kwargs, i)
        kwargs.setdefault("device", device)
        table = evaluate(None, images=images, progress=progress, **kwargs)
        rows.append({**{"name": name}, **{k: v for k, v in table.mean.items() if k != "name"}})
    if rows:
        gray = {"name": "gray (no colour)", "psnr": rows[0]["psnr_gray"], "rmse_ab": rows[0]["rmse_ab_gray"],
                "auc": rows[0]["auc_gray"], "colourfulness": 0.0, "colourfulness_truth": rows[0]["colourfulness_truth"]}
        rows.append({k: gray.get(k, v) for k, v in rows[0].items()} | {"name": gray["name"]})
    return EvaluationTable(rows, mean={}, info={"kind": "comparison", "images": len(images), "max_side": max_side,
                                                "variants": [dict(v) for v in variants]})


def _variant_name(kwargs: dict[str, Any], index: int) -> str:
    parts = [Path(str(kwargs["model"])).stem if "model" in kwargs and not isinstance(kwargs["model"], torch.nn.Module)
             else ("model" if "model" in kwargs else "")]
    parts.append(kwargs.get("method") or "default")
    if kwargs.get("calibrated", True) is False:
        parts.append("uncalibrated")
    if kwargs.get("confidence_fading"):
        parts.append("fade{:.2f}-{:.2f}".format(*kwargs["confidence_fading"]))
    return " ".join(p for p in parts if p) or f"variant {index}"


# --------------------------------------------------------------------------- calibration
