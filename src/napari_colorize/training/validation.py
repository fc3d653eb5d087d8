"""Scoring a model on held-out colour images while it trains."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..devices import autocast
from ..inference import grid_targets
from ..model.hypercolumn import HypercolumnColorizer, pad_to_multiple
from .data import load_image_set, scan_images

__all__ = ["load_validation_images", "validate"]


def load_validation_images(source: str | os.PathLike | Sequence[Path], count: int = 16,
                           max_side: int = 256, label: str | None = None) -> list[np.ndarray]:
    """Up to ``count`` colour images from a folder or a list of files, spread evenly over them (sorted).

    Returns float32 RGB arrays in [0, 1] with the long side <= ``max_side``; ``label``
    names the images in an error (default: the folder, or "N held-out files").
    """
    folder = label or (source if isinstance(source, (str, os.PathLike)) else f"{len(source)} held-out files")
    paths = scan_images([source]) if isinstance(source, (str, os.PathLike)) else sorted(Path(p) for p in source)
    picks = [paths[i] for i in np.unique(np.linspace(0, len(paths) - 1, min(count, len(paths))).round().astype(int))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        images = load_image_set(picks, max_side=max_side, min_side=32).images
    if not images:
        raise ValueError(f"no usable colour image (>= 32 px, not gray) among {len(picks)} tried in {folder}")
    return [im.astype(np.float32) / 255.0 for im in images]


def _grid_loss(model: HypercolumnColorizer, rgb: torch.Tensor, gray: torch.Tensor, device: torch.device,
               precision: str, lambda_hue: float) -> float:
    """The training loss (one-hot targets) at every grid cell centre of one image."""
    x = pad_to_multiple(gray[None, None], model.multiple).to(device)
    with autocast(device, precision):
        # The image is whole: its own context, taken before padding (as inference does).
        logits = model.grid_logits(x, model.context_features(gray[None, None].to(device)))
    indices, chroma = grid_targets(rgb, model.space)
    gh, gw = chroma.shape
    log_probs = {k: F.log_softmax(v.float()[0, :, :gh, :gw], dim=0).flatten(1).T.cpu() for k, v in logits.items()}
    targets = {k: F.one_hot(v.flatten().long(), model.space.heads[k]).float() for k, v in indices.items()}
    return float(model.space.loss(log_probs, targets, chroma.flatten(), lambda_hue=lambda_hue))


@torch.no_grad()
def validate(model: HypercolumnColorizer, images: list[np.ndarray], device: torch.device,
             precision: str = "fp32", lambda_hue: float = 5.0) -> dict[str, float]:
    """Validation scores of ``model`` on RGB images (float in [0, 1]).

    Returns
    -------
    dict
        ``loss``: the training loss (one-hot targets) at every grid cell centre;
        ``auc``, ``psnr``: mean AuC of the (a, b) error and PSNR of the colorized gray
        images (uncalibrated default decoding); ``auc_gray``, ``psnr_gray``: the same
        for the gray image itself.
    """
    from ..inference import DecodeOptions, predict
    from ..metrics import auc_ab, psnr

    was_training = model.training
    model.eval()
    scores: dict[str, list[float]] = {k: [] for k in ("loss", "auc", "psnr", "auc_gray", "psnr_gray")}
    try:
        for rgb_np in images:
            rgb = torch.from_numpy(rgb_np)
            gray = rgb.mean(-1)
            scores["loss"].append(_grid_loss(model, rgb, gray, device, precision, lambda_hue))
            out = predict(model, gray[None].to(device), DecodeOptions(), precision)[0][0].cpu().numpy()
            gray3 = np.repeat(gray.numpy()[..., None], 3, axis=-1)
            scores["auc"].append(auc_ab(out, rgb_np))
            scores["psnr"].append(psnr(out, rgb_np))
            scores["auc_gray"].append(auc_ab(gray3, rgb_np))
            scores["psnr_gray"].append(psnr(gray3, rgb_np))
    finally:
        model.train(was_training)
    return {k: float(np.mean(v)) for k, v in scores.items()}
