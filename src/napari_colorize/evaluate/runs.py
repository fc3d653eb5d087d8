"""Running models on colour images made gray: :func:`evaluate` (one model) and :func:`compare` (several)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..engine import decode_options_for, get_model
from ..inference import DecodeOptions, decode_histograms, histograms
from ..model.hypercolumn import HypercolumnColorizer
from .groups import GroupSpec, check_level_inside, group_key, parse_group_by
from .provenance import warn_if_trained_on
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
             images: list[tuple] | None = None, group_by: str | Callable[[dict], str] | None = None,
             manifest: str | os.PathLike | None = None, **decode: Any) -> EvaluationTable:
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
    images : list of (name, RGB array) or (name, RGB array, path), optional
        Already loaded images (:func:`load_images`).
    group_by : str or callable, optional
        Also summarise the rows per group (:meth:`EvaluationTable.grouped`): a
        ``--group-by`` spec (``"level:1"``, ``"source"``, ``"manifest:source=corpus/manifest.csv"``;
        see :mod:`napari_colorize.evaluate.groups`) or a function ``row -> group``.
        Every image is placed before any is colorized, so a missing manifest entry
        fails at once.
    manifest : path, optional
        The manifest for a column spec (default: the nearest ``manifest.csv`` next to
        or above each image).
    **decode
        Further :class:`napari_colorize.inference.DecodeOptions` fields, e.g.
        ``confidence_fading=(0.2, 0.5)`` or ``fading=False``.

    Returns
    -------
    EvaluationTable
        One row per image (``name``, ``path`` for files, the scores) and the mean row,
        each metric beside the gray baseline; with ``group_by`` also one row per group.

    Raises
    ------
    ValueError
        If ``group_by`` cannot place an image (see :func:`napari_colorize.evaluate.groups.group_key`).
    """
    key, label, spec = _grouping(group_by, manifest)
    net = get_model(model, device)
    if images is None:  # given images are compare()'s, which says it once for all variants
        images = load_images(data, max_side=max_side, limit=limit, paths=True)
        warn_if_trained_on(net, [item[2] for item in images], "evaluated")
    images = [(item[0], item[1], item[2] if len(item) > 2 else None) for item in images]
    if key is not None:
        _place(images, key, spec, data)
    options = decode_options_for(net, method, saturation, calibrated, **decode)
    rows = []
    iterator: Iterable = images
    if progress:
        from tqdm.auto import tqdm
        iterator = tqdm(images, desc="evaluating", unit="img")
    for name, rgb, path in iterator:
        gray = rgb.mean(axis=-1, dtype=np.float32)
        out = _colour_from_probabilities(net, _probabilities(net, gray, precision), gray, options)
        rows.append(_order({"name": name, **({"path": path} if path else {}), **score(out, rgb)}))
    info = {"model": getattr(net, "source", "in-memory"), "backbone": net.config.backbone, "space": net.space.name,
            "method": options.method or "default", "calibrated": calibrated,
            "confidence_fading": list(options.confidence_fading) if options.confidence_fading else None,
            "fading": options.fading, "saturation": options.saturation, "images": len(rows), "max_side": max_side}
    table = EvaluationTable(rows, info=info)
    return table.grouped(key, label) if key is not None else table


def compare(data: ImageInput | Iterable[ImageInput], variants: Sequence[dict[str, Any]], device: str = "auto",
            max_side: int | None = 512, limit: int | None = None, progress: bool = False,
            group_by: str | Callable[[dict], str] | None = None,
            manifest: str | os.PathLike | None = None) -> EvaluationTable:
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
    group_by, manifest
        As for :func:`evaluate`: each variant is also summarised per group.

    Returns
    -------
    EvaluationTable
        Rows: one per variant (its summary row over the images), then a "gray" row
        (the baseline, whose metrics equal the ``*_gray`` columns); ``mean`` is empty.
        With ``group_by``, ``groups`` holds one row per group and variant (sorted by
        group, then in the order of ``variants``), named "GROUP | VARIANT".
    """
    key, label, spec = _grouping(group_by, manifest)
    images = load_images(data, max_side=max_side, limit=limit, paths=True)
    if key is not None:
        _place(images, key, spec, data)
    models = {id(m) if isinstance(m, torch.nn.Module) else m: m for m in (v.get("model", "default") for v in variants)}
    for model in models.values():  # once per model, not per variant
        warn_if_trained_on(get_model(model, device), [item[2] for item in images], "evaluated")
    rows, groups = [], []
    for i, variant in enumerate(variants):
        kwargs = dict(variant)
        name = kwargs.pop("name", None) or _variant_name(kwargs, i)
        kwargs.setdefault("device", device)
        table = evaluate(None, images=images, progress=progress, **kwargs)
        rows.append({"name": name, **{k: v for k, v in table.mean.items() if k != "name"}})
        if key is not None:
            groups += [(g["group"], i, g | {"name": f"{g['group']} | {name}", "variant": name})
                       for g in table.grouped(key).groups or []]
    if rows:
        first = rows[0]
        gray = {"name": "gray (no colour)", "psnr": first["psnr_gray"], "rmse_ab": first["rmse_ab_gray"],
                "auc": first["auc_gray"], "colourfulness": 0.0, "d_psnr": 0.0, "d_auc": 0.0,
                "colourfulness_ratio": 0.0, "neutral_ratio": 0.0 if first.get("neutral") else None}
        rows.append({k: gray.get(k, v) for k, v in first.items()} | {"name": gray["name"]})
    info = {"kind": "comparison", "images": len(images), "max_side": max_side,
            "variants": [dict(v) for v in variants]} | ({"group_by": label} if key is not None else {})
    return EvaluationTable(rows, mean={}, info=info,
                           groups=[g for _, _, g in sorted(groups, key=lambda t: t[:2])] if key is not None else None)


def _grouping(group_by: str | Callable[[dict], str] | None, manifest: str | os.PathLike | None
              ) -> tuple[Callable[[dict], str] | None, str | None, GroupSpec | None]:
    """``(row -> group, label, parsed spec)`` for ``group_by`` (a spec, or a function: no parsed
    spec), or ``(None, None, None)``."""
    if group_by is None:
        if manifest is not None:
            raise ValueError("a manifest is only used to group by one of its columns; give group_by too")
        return None, None, None
    if callable(group_by):
        if manifest is not None:
            raise ValueError("a manifest is only used with a group_by spec, not with a function")
        return group_by, getattr(group_by, "label", "custom"), None
    spec = parse_group_by(group_by, manifest)
    return group_key(spec), spec.label, spec


def _place(images: Sequence[tuple], key: Callable[[dict], str], spec: GroupSpec | None, data: Any) -> None:
    """Find every image's group before any is colorized (raises what ``key`` raises), and
    refuse a folder level above the data folders given (:func:`check_level_inside`)."""
    for item in images:
        key({"name": item[0], "path": item[2] if len(item) > 2 else None})
    if spec is not None:
        check_level_inside(spec, [item[2] if len(item) > 2 else None for item in images], data)


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
