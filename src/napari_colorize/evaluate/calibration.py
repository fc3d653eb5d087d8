"""Fitting the calibrated decoding on validation images, stored in the model.

Two steps, in this order (:func:`napari_colorize.evaluate.calibrate`, in :mod:`.store`):

1. :func:`fit_temperature` -- one histogram temperature T, the minimiser of the
   held-out negative log-likelihood of the true colour bins (the training loss with
   one-hot targets) at the grid cell centres;
2. :func:`fit_confidence_fading` -- the fading thresholds, scored with T applied;
   :func:`~napari_colorize.evaluate.calibrate` may also choose a chroma gain with them (``gains``).

Why a gain: the median or expectation of an uncertain histogram is pulled toward gray
(the mass on both sides of neutral cancels), so where the fading keeps colour it is
fainter than the network's best guess.  A gain > 1 undoes that; the same rule on the
held-out sources decides whether it may.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..decode import METHODS, check_gains, check_temperature
from ..engine import decode_options_for, get_model
from ..inference import grid_targets
from .runs import _colour_from_probabilities, _probabilities
from .scoring import NEUTRAL_RATIO_GOAL, ImageInput, load_images, prepared_truth, score
from .table import EvaluationTable, summary_row

#: Default largest AuC loss (0.3 points) to gray of any one group (source) that fading may leave.
MAX_GROUP_LOSS = 0.003
#: Range of the temperature search.
TEMPERATURE_BOUNDS = (0.5, 20.0)
#: The hue weight of the hue/chroma training loss, used in the NLL of :func:`fit_temperature`.
LAMBDA_HUE = 5.0
#: At most this many grid cells per image enter the NLL (a seeded random subset beyond it):
#: all of them for images of up to 256 x 256 pixels.
_MAX_CELLS = 4096


def _default_grid() -> list[tuple[float, float]]:
    """Candidate (lo, hi) thresholds of confidence fading tried by :func:`fit_confidence_fading`."""
    grid = []
    for lo in np.round(np.arange(0.0, 0.71, 0.1), 2):
        for width in (0.05, 0.1, 0.2, 0.3, 0.5):
            hi = round(float(lo) + width, 2)
            if hi <= 1.0:
                grid.append((float(lo), hi))
    return grid + [(0.8, 1.0), (0.9, 1.0), (0.95, 1.0)]  # near-complete fading: a safe fallback


def _network_passes(net: Any, images: list[tuple]) -> list[tuple[np.ndarray, np.ndarray, dict]]:
    """``(rgb, gray, histograms)`` per image: the one network pass that the temperature
    and the fading fits both decode from."""
    passes = []
    for _, rgb, *_ in images:
        gray = rgb.mean(axis=-1, dtype=np.float32)
        passes.append((rgb, gray, _probabilities(net, gray)))
    return passes


def _grid_log_probs(space: Any, rgb: np.ndarray, probs: dict, seed: int) -> tuple[dict, dict, torch.Tensor]:
    """Untempered log-histograms ``(N, K)`` per head at the grid cell centres of one colour
    image, the true bin indices ``(N,)`` per head and the true chroma ``(N,)`` (on the CPU)."""
    indices, chroma = grid_targets(torch.from_numpy(np.asarray(rgb, dtype=np.float32)), space)
    gh, gw = chroma.shape
    # log of the softmax = the logits up to a constant per histogram (which softmax ignores),
    # the same representation as the decoder tempers (napari_colorize.decode.temper).
    log_p = {k: torch.log(v[0, :, :gh, :gw].float().clamp_min(1e-30)).flatten(1).T.cpu() for k, v in probs.items()}
    indices = {k: v.flatten().long() for k, v in indices.items()}
    chroma = chroma.flatten().float()
    n = len(chroma)
    if n > _MAX_CELLS:
        keep = torch.from_numpy(np.sort(np.random.default_rng(seed).choice(n, _MAX_CELLS, replace=False)))
        log_p = {k: v[keep] for k, v in log_p.items()}
        indices = {k: v[keep] for k, v in indices.items()}
        chroma = chroma[keep]
    return log_p, indices, chroma


def _nll(space: Any, data: list[tuple[dict, dict, torch.Tensor]], temperature: float) -> float:
    """Mean training loss (one-hot targets) over all cells of ``data`` at ``temperature``."""
    total, cells = 0.0, 0
    for log_p, indices, chroma in data:
        log_probs = {k: F.log_softmax(v / temperature, dim=-1) for k, v in log_p.items()}
        targets = {k: F.one_hot(indices[k], space.heads[k]).float() for k in log_p}
        n = len(chroma)
        total += n * float(space.loss(log_probs, targets, chroma, lambda_hue=LAMBDA_HUE))
        cells += n
    return total / max(cells, 1)


def _golden_section(f, lo: float, hi: float, tol: float = 1e-3) -> float:
    """The minimiser of a unimodal ``f`` on ``[lo, hi]``, to within ``tol``."""
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = lo + (1 - ratio) * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = f(a), f(b)
    while hi - lo > tol:
        if fa <= fb:  # the minimum is in [lo, b]
            hi, b, fb = b, a, fa
            a = lo + (1 - ratio) * (hi - lo)
            fa = f(a)
        else:  # in [a, hi]
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = f(b)
    return (lo + hi) / 2.0


def fit_temperature(model: Any, val_images: ImageInput | Iterable[ImageInput], device: str = "auto",
                    max_side: int | None = 256, limit: int | None = None,
                    grid: Sequence[float] | None = None, return_details: bool = False):
    """The histogram temperature that best fits held-out colour images.

    One scalar T for every head: the decoder's histograms become
    ``softmax(logits / T)`` (:class:`napari_colorize.decode.DecodeOptions`
    ``temperature``).  T minimises the mean negative log-likelihood of the true colour
    bin at the grid cell centres, summed over the colour space's heads as in training
    (``model.space.loss`` with one-hot targets; for hue/chroma the hue term weighted by
    the true chroma times 5).  The network runs once per image; the 1-D search (golden
    section on log T in :data:`TEMPERATURE_BOUNDS`) only re-normalises the stored
    logits.  The NLL is convex in 1 / T, so the search finds its minimum in the range.

    Parameters
    ----------
    model : "default", path or HypercolumnColorizer
        The network's own histograms are fitted (a temperature stored in the model is
        not applied first).
    val_images : folder, files, arrays
        Colour images from sources not used for training.
    device, max_side, limit
        As for :func:`napari_colorize.evaluate.evaluate`.
    grid : sequence of float, optional
        Candidate temperatures: the best of them is returned instead of searching.
    return_details : bool
        Also return a dict: ``images``, ``cells``, ``nll_before`` (T = 1),
        ``nll_after`` (the fitted T).

    Returns
    -------
    float
        T > 1: the network is over-confident; T < 1: under-confident.
    """
    net = get_model(model, device)
    images = load_images(val_images, max_side=max_side, limit=limit)
    return _fit_temperature(net, _network_passes(net, images), grid, return_details)


def _fit_temperature(net: Any, passes: list[tuple], grid: Sequence[float] | None, return_details: bool):
    """:func:`fit_temperature` on network passes already made (:func:`_network_passes`)."""
    candidates = None if grid is None else [check_temperature(t) for t in grid]
    if candidates is not None and not candidates:
        raise ValueError("the grid of candidate temperatures is empty")
    data = [_grid_log_probs(net.space, rgb, probs, i) for i, (rgb, _, probs) in enumerate(passes)]
    if candidates is not None:
        scores = [_nll(net.space, data, t) for t in candidates]
        best = candidates[int(np.argmin(scores))]
    else:
        lo, hi = (math.log(t) for t in TEMPERATURE_BOUNDS)
        best = round(math.exp(_golden_section(lambda u: _nll(net.space, data, math.exp(u)), lo, hi)), 4)
    before = _nll(net.space, data, 1.0)
    after = _nll(net.space, data, best)
    if grid is None and after > before:  # T = 1 is in the search range: never a worse fit than none
        best, after = 1.0, before
    if not return_details:
        return best
    return best, {"images": len(passes), "cells": int(sum(len(c) for _, _, c in data)),
                  "nll_before": before, "nll_after": after}


def fit_confidence_fading(model: Any, val_images: ImageInput | Iterable[ImageInput], method: str | None = None,
                          objective: str = "auc", min_colourfulness: float = 0.5,
                          grid: Sequence[tuple[float, float]] | None = None, device: str = "auto",
                          max_side: int | None = 256, limit: int | None = 32,
                          not_worse_than_gray: bool = True, return_table: bool = False,
                          temperature: float | None = None, groups: Sequence[str] | None = None,
                          max_group_loss: float = MAX_GROUP_LOSS, max_neutral_ratio: float | None = NEUTRAL_RATIO_GOAL,
                          chroma_gain: float | None = None):
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
    temperature : float, optional
        Histogram temperature applied while scoring (default: the model's stored one,
        1 if it has none); the thresholds are fitted for decoding at this T.
    chroma_gain : float, optional
        Chroma multiplier applied while scoring (default: the model's stored one, 1 if it
        has none): the thresholds are judged on the colour the front ends will give.

    Returns
    -------
    (lo, hi) : tuple of float
        (and the table if ``return_table``).
    """
    net = get_model(model, device)
    stored = decode_options_for(net)
    temperature = stored.temperature if temperature is None else check_temperature(temperature)
    gain = stored.chroma_gain if chroma_gain is None else chroma_gain  # checked with the grid, before any image is read
    check_fading_choices(method, objective, grid, (gain,))
    images = load_images(val_images, max_side=max_side, limit=limit)
    best, rows = _fit_fading(net, _network_passes(net, images), method, objective, min_colourfulness, grid,
                             not_worse_than_gray, temperature, groups, max_group_loss, max_neutral_ratio, (gain,))
    chosen = (float(best["lo"]), float(best["hi"]))
    if return_table:
        table = EvaluationTable(rows, mean={}, info={"kind": "calibration", "objective": objective, "chosen": list(chosen),
                                                     "images": len(images), "method": method,
                                                     "temperature": temperature, "chroma_gain": gain})
        return chosen, table
    return chosen


def check_fading_choices(method: str | None, objective: str, grid: Sequence[tuple[float, float]] | None,
                         gains: Sequence[float]) -> tuple[list[tuple[float, float]], tuple[float, ...]]:
    """The fit's choices checked (before any image is read): ``(grid, gains)`` as the fit uses them."""
    if method is not None and method not in METHODS:
        raise ValueError(f"unknown decoding method {method!r}; choose one of {METHODS} or None (the model's own)")
    if objective not in ("auc", "psnr", "blend"):
        raise ValueError(f"unknown objective {objective!r}; choose 'auc', 'psnr' or 'blend'")
    grid = list(grid) if grid is not None else _default_grid()
    if not grid:
        raise ValueError("the grid of (lo, hi) candidates is empty")
    return grid, check_gains(gains)


def _fit_fading(net: Any, passes: list[tuple], method: str | None = None, objective: str = "auc",
                min_colourfulness: float = 0.5, grid: Sequence[tuple[float, float]] | None = None,
                not_worse_than_gray: bool = True, temperature: float = 1.0, groups: Sequence[str] | None = None,
                max_group_loss: float = MAX_GROUP_LOSS, max_neutral_ratio: float | None = NEUTRAL_RATIO_GOAL,
                gains: Sequence[float] = (1.0,)) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """:func:`fit_confidence_fading` on network passes already made: ``(chosen row, rows)``.

    Every ``(lo, hi)`` of ``grid`` is tried at every chroma gain of ``gains`` (rows carry
    ``lo``, ``hi`` and ``gain``)."""
    grid, gains = check_fading_choices(method, objective, grid, gains)
    if groups is not None and len(groups) != len(passes):
        raise ValueError(f"groups has {len(groups)} entries for {len(passes)} images; give one group per image")
    cached = [(rgb, *prepared_truth(rgb), gray, probs) for rgb, gray, probs in passes]  # once for every decoding
    rows = []
    for gain in gains:
        for lo, hi in grid:
            # As every front end will decode once these are stored: the model's own method,
            # saturation and eta unless the call names a method.
            options = decode_options_for(net, method, 1.0, calibrated=True, confidence_fading=(lo, hi),
                                         temperature=temperature, chroma_gain=gain)
            scores = [score(_colour_from_probabilities(net, probs, gray, options), rgb, lab, base)
                      for rgb, lab, base, gray, probs in cached]
            name = f"{lo:.2f}-{hi:.2f}" + (f" x{gain:g}" if len(gains) > 1 else "")
            rows.append({"lo": lo, "hi": hi, "gain": gain, **summary_row(scores), "name": name,
                         **_worst_group(scores, groups)})

    best = _select_fading(rows, objective, min_colourfulness, not_worse_than_gray, max_group_loss, max_neutral_ratio)
    return best, rows


def _worst_group(scores: list[dict[str, Any]], groups: Sequence[str] | None) -> dict[str, Any]:
    """``worst_group_d_auc`` (the lowest per-group mean ``auc - auc_gray``) and ``worst_group`` (None without groups)."""
    if groups is None:
        return {"worst_group_d_auc": None, "worst_group": None}
    gains: dict[str, list[float]] = {}
    for g, row in zip(groups, scores):
        gains.setdefault(g, []).append(row["auc"] - row["auc_gray"])
    worst = min(gains, key=lambda g: np.mean(gains[g]))
    return {"worst_group_d_auc": float(np.mean(gains[worst])), "worst_group": worst}


def is_safe(row: dict[str, Any], not_worse_than_gray: bool = True, max_group_loss: float = MAX_GROUP_LOSS,
            max_neutral_ratio: float | None = NEUTRAL_RATIO_GOAL) -> bool:
    """The calibration rule's "no worse than gray" for one row of mean scores: pooled AuC and
    PSNR >= gray's, no group (source) losing more than ``max_group_loss`` AuC to gray
    (``worst_group_d_auc``), near-neutral truths coloured at most ``max_neutral_ratio`` x
    their own colourfulness (``neutral_ratio``), where the row carries them."""
    if not not_worse_than_gray:
        return True
    # Small tolerances: complete fading reproduces gray up to float rounding.
    worst, neutral = row.get("worst_group_d_auc"), row.get("neutral_ratio")
    return (row["auc"] >= row["auc_gray"] - 1e-6 and row["psnr"] >= row["psnr_gray"] - 1e-4
            and (worst is None or worst >= -max_group_loss)
            and (neutral is None or max_neutral_ratio is None or neutral <= max_neutral_ratio))


def _select_fading(rows: list[dict[str, Any]], objective: str, min_colourfulness: float,
                   not_worse_than_gray: bool = True, max_group_loss: float = MAX_GROUP_LOSS,
                   max_neutral_ratio: float | None = NEUTRAL_RATIO_GOAL) -> dict[str, Any]:
    """Pick a calibration candidate (rows of mean scores with ``lo``/``hi``); see
    :func:`fit_confidence_fading` for the rule.

    "Safe" also means, where the rows carry them: no group (source) losing more than
    ``max_group_loss`` AuC to gray (``worst_group_d_auc``), and near-neutral truths
    coloured at most ``max_neutral_ratio`` x their own colourfulness (``neutral_ratio``).
    """
    def value(row: dict[str, Any]) -> float:
        return {"auc": row["auc"], "psnr": row["psnr"], "blend": row["auc"] + row["psnr"] / 100.0}[objective]

    def colourful(row: dict[str, Any]) -> bool:
        return row["colourfulness"] >= min_colourfulness * row["colourfulness_truth"]

    def safe(row: dict[str, Any]) -> bool:
        return is_safe(row, not_worse_than_gray, max_group_loss, max_neutral_ratio)

    good = [r for r in rows if colourful(r) and safe(r)]
    if good:
        return max(good, key=value)
    safe_rows = [r for r in rows if safe(r)]
    best = max(safe_rows, key=lambda r: r["colourfulness"]) if safe_rows else max(rows, key=value)
    warnings.warn(f"no fading thresholds give colourfulness >= {min_colourfulness} x the truth's "
                  f"({rows[0]['colourfulness_truth']:.1f})" + (" without scoring below gray" if not_worse_than_gray else "")
                  + f"; chose {best.get('name', (best['lo'], best['hi']))} (colourfulness {best['colourfulness']:.1f}, AuC {best['auc']:.4f} "
                  f"vs gray {best['auc_gray']:.4f}, PSNR {best['psnr']:.2f} vs gray {best['psnr_gray']:.2f} dB)", stacklevel=3)
    return best
