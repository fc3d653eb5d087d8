"""Fitting the calibrated decoding (confidence fading) on validation images, stored in the model."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from ..engine import decode_options_for, get_model
from ..metrics import lab_of
from .runs import _colour_from_probabilities, _probabilities
from .scoring import ImageInput, gray_baseline, load_images, score
from .table import EvaluationTable, _mean_row


def _default_grid() -> list[tuple[float, float]]:
    """Candidate (lo, hi) thresholds of confidence fading tried by :func:`fit_confidence_fading`."""
    grid = []
    for lo in np.round(np.arange(0.0, 0.71, 0.1), 2):
        for width in (0.05, 0.1, 0.2, 0.3, 0.5):
            hi = round(float(lo) + width, 2)
            if hi <= 1.0:
                grid.append((float(lo), hi))
    return grid + [(0.8, 1.0), (0.9, 1.0), (0.95, 1.0)]  # near-complete fading: a safe fallback


def fit_confidence_fading(model: Any, val_images: ImageInput | Iterable[ImageInput], method: str | None = None,
                          objective: str = "auc", min_colourfulness: float = 0.5,
                          grid: Sequence[tuple[float, float]] | None = None, device: str = "auto",
                          max_side: int | None = 256, limit: int | None = 32,
                          not_worse_than_gray: bool = True, return_table: bool = False):
    """Choose the calibrated decoder's fading thresholds on validation images.

    Colour is faded by ``clip((confidence - lo) / (hi - lo), 0, 1)`` (the chroma
    confidence ``1 - H(p_chroma) / log K``; see
    :class:`napari_colorize.inference.DecodeOptions`).  Every ``(lo, hi)`` of ``grid``
    is scored on the images (one network pass per image, many decodings); the choice
    (:func:`_select_fading`) is the best by ``objective`` among the candidates whose
    mean colourfulness is at least ``min_colourfulness`` times the truth's and whose
    mean AuC and PSNR are not below the gray baseline's.  If there is none, the
    guarantee "never worse than gray" wins over colourfulness: the most colourful
    candidate not worse than gray is taken, with a warning.

    Parameters
    ----------
    model : "default", path or HypercolumnColorizer
    val_images : folder, files, arrays
        Colour validation images (never the training images).
    method : str, optional
        Decoding method the thresholds are fitted for.
    objective : {"auc", "psnr", "blend"}
        Mean AuC; mean PSNR; or ``AuC + PSNR / 100`` (1 dB counted as 0.01 AuC).
    min_colourfulness : float
        Required ratio of mean output colourfulness to mean truth colourfulness.
    grid : sequence of (lo, hi), optional
        Candidates (default: lo in 0, 0.1, ..., 0.7; hi - lo in 0.05 ... 0.5).
    device, max_side, limit
        As for :func:`evaluate`.
    not_worse_than_gray : bool
        Require mean AuC and PSNR >= the gray baseline's (see above).
    return_table : bool
        Also return the scores of every candidate (an :class:`EvaluationTable`).

    Returns
    -------
    (lo, hi) : tuple of float
        (and the table if ``return_table``).
    """
    if objective not in ("auc", "psnr", "blend"):
        raise ValueError(f"unknown objective {objective!r}; choose 'auc', 'psnr' or 'blend'")
    net = get_model(model, device)
    images = load_images(val_images, max_side=max_side, limit=limit)
    grid = list(grid) if grid is not None else _default_grid()
    if not grid:
        raise ValueError("the grid of (lo, hi) candidates is empty")
    cached = []
    for _, rgb in images:
        gray = rgb.mean(axis=-1, dtype=np.float32)
        lab = lab_of(rgb)
        cached.append((rgb, lab, gray_baseline(rgb, lab), gray, _probabilities(net, gray)))
    rows = []
    for lo, hi in grid:
        options = decode_options_for(net, method, 1.0, calibrated=False, confidence_fading=(lo, hi))
        scores = [score(_colour_from_probabilities(net, probs, gray, options), rgb, lab, base)
                  for rgb, lab, base, gray, probs in cached]
        rows.append({"name": f"{lo:.2f}-{hi:.2f}", "lo": lo, "hi": hi, **_mean_row(scores)} | {"name": f"{lo:.2f}-{hi:.2f}"})

    best = _select_fading(rows, objective, min_colourfulness, not_worse_than_gray)
    chosen = (float(best["lo"]), float(best["hi"]))
    if return_table:
        table = EvaluationTable(rows, mean={}, info={"kind": "calibration", "objective": objective, "chosen": list(chosen),
                                                     "images": len(images), "method": method})
        return chosen, table
    return chosen


def _select_fading(rows: list[dict[str, Any]], objective: str, min_colourfulness: float,
                   not_worse_than_gray: bool = True) -> dict[str, Any]:
    """Pick a calibration candidate (rows of mean scores with ``lo``/``hi``); see
    :func:`fit_confidence_fading` for the rule."""
    def value(row: dict[str, Any]) -> float:
        return {"auc": row["auc"], "psnr": row["psnr"], "blend": row["auc"] + row["psnr"] / 100.0}[objective]

    def colourful(row: dict[str, Any]) -> bool:
        return row["colourfulness"] >= min_colourfulness * row["colourfulness_truth"]

    def safe(row: dict[str, Any]) -> bool:
        # Small tolerances: complete fading reproduces gray up to float rounding.
        return not not_worse_than_gray or (row["auc"] >= row["auc_gray"] - 1e-6 and row["psnr"] >= row["psnr_gray"] - 1e-4)

    good = [r for r in rows if colourful(r) and safe(r)]
    if good:
        return max(good, key=value)
    safe_rows = [r for r in rows if safe(r)]
    best = max(safe_rows, key=lambda r: r["colourfulness"]) if safe_rows else max(rows, key=value)
    warnings.warn(f"no fading thresholds give colourfulness >= {min_colourfulness} x the truth's "
                  f"({rows[0]['colourfulness_truth']:.1f})" + (" without scoring below gray" if not_worse_than_gray else "")
                  + f"; chose {best['lo']}-{best['hi']} (colourfulness {best['colourfulness']:.1f}, AuC {best['auc']:.4f} "
                  f"vs gray {best['auc_gray']:.4f}, PSNR {best['psnr']:.2f} vs gray {best['psnr_gray']:.2f} dB)", stacklevel=3)
    return best


def calibrate(model: Any, val_images: ImageInput | Iterable[ImageInput], output: str | os.PathLike | None = None,
              **kwargs: Any) -> tuple[float, float]:
    """Fit confidence fading (:func:`fit_confidence_fading`) and store it in the model.

    Sets ``model.config.decoding["confidence_fading"] = [lo, hi]`` (which
    :func:`napari_colorize.api.decode_options_for` applies by default) and, if
    ``output`` is given, saves the model there (a path may equal the model's own).
    A model object is changed in place; for a path, the copy cached by
    :func:`napari_colorize.api.get_model` is, so later calls in this process use it too.
    """
    from ..model import save_model

    net = get_model(model, kwargs.get("device", "auto"))
    lo, hi = fit_confidence_fading(net, val_images, **kwargs)
    # A model object is calibrated itself (get_model works on a copy of it).
    target = model if isinstance(model, torch.nn.Module) else net
    target.config.decoding["confidence_fading"] = [lo, hi]
    target.config.decoding["calibration"] = {"objective": kwargs.get("objective", "auc"),
                                          "min_colourfulness": kwargs.get("min_colourfulness", 0.5),
                                          "not_worse_than_gray": kwargs.get("not_worse_than_gray", True),
                                          "method": kwargs.get("method")}
    if output is not None:
        save_model(target, output)
    return lo, hi
