"""Scoring colorizers on colour images: each image is made gray, colorized and compared.

For every colour image the gray version ``(R + G + B) / 3`` is colorized and
compared with the original by the metrics of :mod:`napari_colorize.metrics` (PSNR,
RMSE in a,b, AuC of the a,b error, colourfulness), each beside the same metric for
the gray baseline (the output is the gray input itself).

* :func:`evaluate` -- one model / decoding -> per-image rows and their mean.
* :func:`compare` -- several models or decodings -> one table of means (model card).
* :func:`fit_confidence_fading` -- pick the calibrated decoder's fading thresholds on
  validation images; :func:`calibrate` stores them in the model's metadata so that
  :func:`napari_colorize.colorize` uses them by default.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ._atomic import atomic_path
from .api import decode_options_for, get_model
from .devices import autocast
from .inference import DecodeOptions, compose, decode_grid
from .metrics import auc_from_errors, colourfulness, lab_of, psnr
from .model.hypercolumn import GRID_STRIDE, HypercolumnColorizer, pad_to_multiple

__all__ = [
    "METRICS",
    "EvaluationTable",
    "load_images",
    "score",
    "gray_baseline",
    "evaluate",
    "compare",
    "fit_confidence_fading",
    "calibrate",
]

#: Metric columns, each also given for the gray baseline (``<name>_gray``).
METRICS = ("psnr", "rmse_ab", "auc", "colourfulness")


@dataclass
class EvaluationTable:
    """Rows of scores: one per image (or per method in :func:`compare`) and their mean.

    Attributes
    ----------
    rows : list of dict
        ``name`` plus the metric columns: ``psnr``/``psnr_gray`` (dB),
        ``rmse_ab``/``rmse_ab_gray`` (Lab units), ``auc``/``auc_gray`` (in [0, 1]),
        ``colourfulness`` (output), ``colourfulness_truth`` (original image).
    mean : dict
        The mean of every numeric column over ``rows`` (``name`` = "mean"); computed
        when not given, empty for comparison tables.
    info : dict
        Model, method, decoding and data details.
    """

    rows: list[dict[str, Any]]
    mean: dict[str, Any] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mean is None:
            self.mean = _mean_row(self.rows) if self.rows else {}

    def columns(self) -> list[str]:
        cols = ["name"]
        for row in self.rows:
            cols += [k for k in row if k not in cols]
        return cols

    def format(self, per_image: bool = True, floatfmt: str = ".4g") -> str:
        """A plain-text table (per-image rows, then the mean row).

        ``per_image=False`` keeps only the mean row; a comparison table (no mean row)
        always shows its rows.
        """
        cols = self.columns()
        per_image = per_image or not self.mean
        rows = (self.rows if per_image else []) + ([self.mean] if self.mean else [])
        cells = [[_fmt(r.get(c, ""), floatfmt) for c in cols] for r in rows]
        widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(cols)]
        line = lambda values: "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths)))
        out = [line(cols), line(["-" * w for w in widths])]
        out += [line(row) for row in cells[: len(cells) - (1 if self.mean else 0)]]
        if self.mean:
            if per_image and self.rows:
                out.append(line(["-" * w for w in widths]))
            out.append(line(cells[-1]))
        return "\n".join(out)

    def to_markdown(self, per_image: bool = False, floatfmt: str = ".4g") -> str:
        """A Markdown table (for the model card)."""
        cols = self.columns()
        rows = (self.rows if per_image or not self.mean else []) + [self.mean]
        out = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
        out += ["| " + " | ".join(_fmt(r.get(c, ""), floatfmt) for c in cols) + " |" for r in rows if r]
        return "\n".join(out)

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "mean": self.mean, "info": self.info}

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """JSON text of the table; written atomically to ``path`` if given."""
        text = json.dumps(_finite(self.to_dict()), indent=2)
        if path is not None:
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                tmp.write_text(text + "\n", encoding="utf-8")
        return text


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no inf/nan
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _fmt(value: Any, floatfmt: str) -> str:
    return format(value, floatfmt) if isinstance(value, float) else str(value)


def _mean_row(rows: Sequence[dict[str, Any]], name: str = "mean") -> dict[str, Any]:
    keys = [k for k, v in rows[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    out: dict[str, Any] = {"name": name}
    for k in keys:
        values = np.array([r[k] for r in rows], dtype=np.float64)
        # PSNR of a perfect image is inf; the mean over the finite ones is more useful.
        finite = values[np.isfinite(values)]
        out[k] = float(finite.mean()) if finite.size else float("nan")
    return out


# --------------------------------------------------------------------------- images

ImageInput = str | os.PathLike | np.ndarray | tuple[str, np.ndarray]


def load_images(data: ImageInput | Iterable[ImageInput], max_side: int | None = 512,
                limit: int | None = None) -> list[tuple[str, np.ndarray]]:
    """Colour images to evaluate on, as ``(name, float32 RGB in [0, 1])``.

    Parameters
    ----------
    data : folder, file, array, (name, array), or a sequence of these
        Folders are searched recursively (see
        :func:`napari_colorize.training.data.scan_images`); arrays are RGB, uint8 or
        float in [0, 1].
    max_side : int or None
        Files are reduced so their long side is at most this (arrays are used as given).
    limit : int, optional
        Use at most this many images, spread evenly over the sorted list.

    Gray and unreadable files are skipped with a warning.

    Raises
    ------
    ValueError
        If no usable colour image remains.
    """
    from .training.data import is_gray, read_rgb, scan_images

    items = [data] if isinstance(data, (str, os.PathLike, np.ndarray, tuple)) else list(data)
    entries: list[tuple[str, Any]] = []
    for item in items:
        if isinstance(item, tuple):
            entries.append((str(item[0]), np.asarray(item[1])))
        elif isinstance(item, np.ndarray):
            entries.append((f"image{len(entries)}", item))
        else:
            entries += [(str(p), p) for p in scan_images([item])]
    if limit is not None and len(entries) > limit:
        picks = np.unique(np.linspace(0, len(entries) - 1, limit).round().astype(int))
        entries = [entries[i] for i in picks]
    out = []
    for name, src in entries:
        if isinstance(src, np.ndarray):
            rgb = _array_to_unit(src, name)
        else:
            try:
                rgb = read_rgb(src, max_side).astype(np.float32) / 255.0
            except Exception as err:  # decoding errors of any library: skip the file
                warnings.warn(f"skipping {src}: {type(err).__name__}: {err}", stacklevel=2)
                continue
            name = Path(src).name if len({Path(e[0]).name for e in entries}) == len(entries) else str(src)
        if is_gray(rgb):
            warnings.warn(f"skipping {name}: no colour (gray image), nothing to compare with", stacklevel=2)
            continue
        if min(rgb.shape[:2]) < 32:
            warnings.warn(f"skipping {name}: smaller than 32 x 32 pixels", stacklevel=2)
            continue
        out.append((name, rgb))
    if not out:
        raise ValueError("no usable colour image to evaluate on (gray, broken or too small files were skipped)")
    return out


def _array_to_unit(arr: np.ndarray, name: str) -> np.ndarray:
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"{name}: expected an RGB image of shape (Y, X, 3), got {arr.shape}")
    if np.issubdtype(arr.dtype, np.integer):
        return arr.astype(np.float32) / float(np.iinfo(arr.dtype).max)
    arr = arr.astype(np.float32)
    if arr.min() < 0 or arr.max() > 1:
        raise ValueError(f"{name}: float RGB images must lie in [0, 1]")
    return arr


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
    keys = ["name", "psnr", "psnr_gray", "rmse_ab", "rmse_ab_gray", "auc", "auc_gray", "colourfulness",
            "colourfulness_truth"]
    return {k: row[k] for k in keys if k in row} | {k: v for k, v in row.items() if k not in keys}


@torch.no_grad()
def _probabilities(model: HypercolumnColorizer, gray: np.ndarray, precision: str = "fp32") -> dict[str, torch.Tensor]:
    """Softmax histograms on the 1/4 grid for one gray image (as in inference.predict)."""
    dev = next(model.parameters()).device
    x = pad_to_multiple(torch.from_numpy(gray)[None, None].to(dev), model.multiple)
    with autocast(dev, precision):
        logits = model.grid_logits(x)
    return {k: torch.softmax(v.float(), dim=1) for k, v in logits.items()}


@torch.no_grad()
def _colour_from_probabilities(model: HypercolumnColorizer, probs: dict[str, torch.Tensor], gray: np.ndarray,
                               options: DecodeOptions) -> np.ndarray:
    """Decode cached histograms into RGB: the tail of :func:`napari_colorize.inference.predict`.

    Kept separate so that calibration can try many decoders on one network pass.
    """
    h, w = gray.shape
    maps = decode_grid(probs, model.space, options)
    maps = F.interpolate(maps, scale_factor=GRID_STRIDE, mode="bilinear", align_corners=False)[..., :h, :w]
    g = torch.from_numpy(gray)[None].to(maps.device)
    return compose(maps[:, :2], g, model.space, options.saturation)[0].cpu().numpy()


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
    from .model import save_model

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
