"""Scores of one colour output against its truth, beside the gray baseline; the images to score."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..metrics import auc_from_errors, colourfulness, lab_of, psnr

#: Metric columns, each also given for the gray baseline (``<name>_gray``).
METRICS = ("psnr", "rmse_ab", "auc", "colourfulness")

#: An image is near-neutral when its truth's colourfulness is below this (Hasler-Suesstrunk
#: units; 15 is "slightly colourful" on their scale).  Summary rows count these images
#: (``neutral``) and average output / truth colourfulness over them (``neutral_ratio``).
NEUTRAL_COLOURFULNESS = 15.0

#: The project's goal for near-neutral photographs: ``neutral_ratio`` at most this.
NEUTRAL_RATIO_GOAL = 1.5


# --------------------------------------------------------------------------- images

ImageInput = str | os.PathLike | np.ndarray | tuple[str, np.ndarray] | tuple[str, np.ndarray, str | None]


def load_images(data: ImageInput | Iterable[ImageInput], max_side: int | None = 512,
                limit: int | None = None, paths: bool = False) -> list[tuple]:
    """Colour images to evaluate on, as ``(name, float32 RGB in [0, 1])``.

    Parameters
    ----------
    data : folder, file, array, (name, array), (name, array, path), or a sequence of these
        Folders are searched recursively (see :func:`napari_colorize.io.scan_images`);
        arrays are RGB: uint8/uint16, other integers (by their data range, see
        :func:`napari_colorize.io.rgb_to_unit`) or floats in [0, 1].
    max_side : int or None
        Files are reduced so their long side is at most this (arrays are used as given).
    limit : int, optional
        Use at most this many images, spread evenly over the sorted list.
    paths : bool
        Return ``(name, rgb, path)`` instead: the file's path as found (None for arrays),
        so that rows can be grouped (:func:`napari_colorize.evaluate.evaluate`'s ``group_by``).

    Gray and unreadable files are skipped with a warning.

    Raises
    ------
    ValueError
        If no usable colour image remains.
    """
    from ..io import (ImageReadError, is_gray, read_rgb, refuse_empty, rgb_to_unit, scan_images, shown_path,
                      unreadable_message)

    items = [data] if isinstance(data, (str, os.PathLike, np.ndarray, tuple)) else list(data)
    entries: list[tuple[str, Any, str | None]] = []
    shown: dict[str, str] = {}  # a file as warnings name it: below the folder given, as train's do
    for item in items:
        if isinstance(item, tuple):
            entries.append((str(item[0]), np.asarray(item[1]), item[2] if len(item) > 2 else None))
        elif isinstance(item, np.ndarray):
            entries.append((f"image{len(entries)}", item, None))
        else:
            found = scan_images([item], keep_links=True)
            entries += [(str(p), p, str(p)) for p in found]
            shown.update((str(p), shown_path(p, [item])) for p in found)
    if limit is not None and len(entries) > limit:
        picks = np.unique(np.linspace(0, len(entries) - 1, limit).round().astype(int))
        entries = [entries[i] for i in picks]
    out = []
    for name, src, path in entries:
        label = shown.get(name, name)
        if isinstance(src, np.ndarray):
            rgb = rgb_to_unit(src, name)
        else:
            try:
                refuse_empty(src)  # read_rgb would only say that no decoder knows it
                rgb = read_rgb(src, max_side).astype(np.float32) / 255.0
            except ImageReadError as err:  # our own words, naming the file and what to do
                warnings.warn(f"skipping {label}: {err}", stacklevel=2)
                continue
            except Exception as err:  # noqa: BLE001 -- decoding errors of any library: skip the file
                warnings.warn(f"skipping {label}: {unreadable_message(Path(src), err)}", stacklevel=2)
                continue
            name = Path(src).name if len({Path(e[0]).name for e in entries}) == len(entries) else str(src)
        if is_gray(rgb):
            warnings.warn(f"skipping {label}: no colour (gray image), nothing to compare with", stacklevel=2)
            continue
        if min(rgb.shape[:2]) < 32:
            warnings.warn(f"skipping {label}: smaller than 32 x 32 pixels", stacklevel=2)
            continue
        out.append((name, rgb, path) if paths else (name, rgb))
    if not out:
        raise ValueError("no usable colour image (gray, broken or too small files were skipped); give colour "
                         "images, whose colour is the truth to score or calibrate against")
    return out


# --------------------------------------------------------------------------- scoring

def _metrics(image: np.ndarray, truth: np.ndarray, lab_t: np.ndarray, suffix: str = "") -> dict[str, float]:
    err = np.linalg.norm(lab_of(image)[..., 1:] - lab_t[..., 1:], axis=-1)
    return {"psnr" + suffix: psnr(image, truth), "rmse_ab" + suffix: float(np.sqrt(np.mean(err**2))),
            "auc" + suffix: auc_from_errors(err)}


def gray_baseline(truth: np.ndarray, truth_lab: np.ndarray | None = None) -> dict[str, float]:
    """Metrics of the gray image ``(R + G + B) / 3`` (replicated to RGB) against ``truth``.

    Returns ``psnr_gray``, ``rmse_ab_gray``, ``auc_gray`` and ``colourfulness_truth``.
    """
    truth = np.asarray(truth, dtype=np.float64)
    lab_t = lab_of(truth) if truth_lab is None else truth_lab
    gray = np.repeat(truth.mean(axis=-1, keepdims=True), 3, axis=-1)
    return {**_metrics(gray, truth, lab_t, "_gray"), "colourfulness_truth": colourfulness(truth)}


def prepared_truth(truth: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
    """``(lab_of(truth), gray_baseline(truth))``: :func:`score`'s ``truth_lab`` and
    ``baseline``, for scoring many outputs against one truth."""
    lab = lab_of(truth)
    return lab, gray_baseline(truth, lab)


def score(output: np.ndarray, truth: np.ndarray, truth_lab: np.ndarray | None = None,
          baseline: dict[str, float] | None = None) -> dict[str, float]:
    """All metrics of one colorized image against its original, and for the gray baseline.

    Parameters
    ----------
    output, truth : arrays (Y, X, 3), float in [0, 1]
    truth_lab : array, optional
        ``lab_of(truth)`` if already computed.
    baseline : dict, optional
        ``gray_baseline(truth)`` if already computed.

    Returns
    -------
    dict
        ``psnr``, ``psnr_gray``, ``rmse_ab``, ``rmse_ab_gray``, ``auc``, ``auc_gray``,
        ``colourfulness``, ``colourfulness_truth``.
    """
    truth = np.asarray(truth, dtype=np.float64)
    output = np.asarray(output, dtype=np.float64)
    lab_t = lab_of(truth) if truth_lab is None else truth_lab
    out = _metrics(output, truth, lab_t)
    out.update(baseline if baseline is not None else gray_baseline(truth, lab_t))
    out["colourfulness"] = colourfulness(output)
    return out


def _order(row: dict[str, float]) -> dict[str, Any]:
    keys = ["name", "path", "psnr", "psnr_gray", "rmse_ab", "rmse_ab_gray", "auc", "auc_gray", "colourfulness",
            "colourfulness_truth"]
    return {k: row[k] for k in keys if k in row} | {k: v for k, v in row.items() if k not in keys}
