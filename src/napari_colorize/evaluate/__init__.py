"""Scoring colorizers on colour images: each image is made gray, colorized and compared.

For every colour image the gray version ``(R + G + B) / 3`` is colorized and
compared with the original by the metrics of :mod:`napari_colorize.metrics` (PSNR,
RMSE in a,b, AuC of the a,b error, colourfulness), each beside the same metric for
the gray baseline (the output is the gray input itself).

* :func:`evaluate` -- one model / decoding -> per-image rows and their mean.
* :func:`compare` -- several models or decodings -> one table of means (model card).
* ``group_by=`` / :meth:`EvaluationTable.grouped` -- also one summary row per group
  (a parent folder, or a column of a corpus manifest: :func:`group_key`).
* :func:`fit_temperature` -- the histogram temperature minimising held-out NLL;
* :func:`fit_confidence_fading` -- pick the calibrated decoder's fading thresholds on
  validation images; :func:`calibrate` fits the temperature, then the fading at that
  temperature, and stores both in the model's metadata so that
  :func:`napari_colorize.colorize` uses them by default.
"""

from __future__ import annotations

from .calibration import fit_confidence_fading, fit_temperature
from .groups import group_key
from .runs import compare, evaluate
from .scoring import METRICS, gray_baseline, load_images, score
from .store import calibrate
from .table import EvaluationTable

__all__ = [
    "METRICS",
    "EvaluationTable",
    "load_images",
    "score",
    "gray_baseline",
    "evaluate",
    "compare",
    "group_key",
    "fit_temperature",
    "fit_confidence_fading",
    "calibrate",
]
