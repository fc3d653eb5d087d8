""":func:`calibrate`: fit a model's decoding on held-out colour images and store it in the model.

The fits themselves are in :mod:`.calibration`; this is the front end that checks its
arguments before any network runs, works on its own copy of a model named by path (the
copy that :func:`napari_colorize.engine.get_model` caches for ``colorize`` stays as it is
on disk) and writes the result.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

from ..decode import check_temperature
from ..engine import get_model
from ..model import is_default_model
from .calibration import (LAMBDA_HUE, MAX_GROUP_LOSS, _fit_fading, _fit_temperature, _network_passes,
                          check_fading_choices, is_safe)
from .provenance import warn_if_trained_on
from .runs import _grouping
from .scoring import METRICS, NEUTRAL_RATIO_GOAL, ImageInput, load_images

__all__ = ["calibrate"]

#: The scores of the chosen decoding kept in the model's calibration record.
_SCORE_COLUMNS = (*METRICS, *(f"{m}_gray" for m in METRICS), "colourfulness_truth", "neutral_ratio", "worst_group_d_auc")


def calibrate(model: Any, val_images: ImageInput | Iterable[ImageInput], output: str | os.PathLike | None = None,
              temperature: bool | float = True, *, method: str | None = None, objective: str = "auc",
              min_colourfulness: float = 0.5, grid: Sequence[tuple[float, float]] | None = None,
              device: str = "auto", max_side: int | None = 256, limit: int | None = 32,
              not_worse_than_gray: bool = True, groups: Sequence[str] | None = None,
              group_by: str | Callable[[dict], str] | None = None, manifest: str | os.PathLike | None = None,
              max_group_loss: float = MAX_GROUP_LOSS, max_neutral_ratio: float | None = NEUTRAL_RATIO_GOAL,
              gains: Sequence[float] = (1.0,)) -> tuple[float, float]:
    """Fit the temperature, then the confidence fading at that temperature, and store both in the model.

    1. ``temperature=True``: :func:`~.calibration.fit_temperature` sets
       ``model.config.decoding["temperature"] = T``; a number stores that T instead;
       ``False`` removes any stored temperature (T = 1).
    2. :func:`~.calibration.fit_confidence_fading` (method, objective,
       min_colourfulness, grid, not_worse_than_gray, max_group_loss, max_neutral_ratio)
       with T applied sets ``decoding["confidence_fading"] = [lo, hi]``.  With ``gains``
       (chroma multipliers, e.g. ``(1, 1.25, 1.5)``) every fading is tried at every
       gain under the same rule, and a chosen gain other than 1 is stored as
       ``decoding["chroma_gain"]``.

    Both are applied by default by every front end
    (:func:`napari_colorize.engine.decode_options_for`).  ``decoding["calibration"]``
    records how: the objective and rule, the number of images, the NLL at T = 1 and at
    T (``nll_before``, ``nll_after``) and the mean scores of the chosen decoding beside
    the gray baseline.  Both steps use the same images (``max_side`` 256 and ``limit``
    32 unless given).

    Which model is changed: a model object is calibrated in place (its
    ``config.decoding``; the weights are untouched).  For ``"default"`` or a path, a
    copy is calibrated: the file, and the model ``colorize`` loads from it in this
    process, stay as they are; give ``output`` to keep the result (then colorize with
    ``model=output``).

    Parameters
    ----------
    output : path, optional
        Save the calibrated model there atomically (it may be the model's own file);
        never the installed default model.
    device, max_side, limit
        As for :func:`napari_colorize.evaluate.evaluate`.
    groups : sequence of str, optional
        The source of each image *as used*: after ``limit`` and after skipped (gray,
        broken, tiny) files.  Prefer ``group_by``, which finds it from each file.
    group_by, manifest
        As for :func:`napari_colorize.evaluate.evaluate` (e.g. ``"source"`` from the corpus
        manifest, ``"level:1"`` for the folder): then no group may lose more than
        ``max_group_loss`` AuC to gray under the chosen fading.

    Returns
    -------
    (lo, hi) : tuple of float
        The fading thresholds (the temperature is ``decoding["temperature"]``).

    Raises
    ------
    ValueError
        Before any network runs: a bad method, objective, grid or gain, ``output`` is the default model, ``groups`` and
        ``group_by`` both given, a group cannot be found, or ``groups`` does not give
        one group per image used.
    """
    from ..model import save_model

    _check_output(output)
    check_fading_choices(method, objective, grid, gains)  # before any image is read or network run
    key, label, _ = _grouping(group_by, manifest)  # a bad spec fails before any image is read
    if key is not None and groups is not None:
        raise ValueError("give either groups (one per image) or group_by (found from each file), not both")
    fixed = None if temperature is True else 1.0 if temperature is False else check_temperature(temperature)
    net = get_model(model, device)
    target = model if isinstance(model, torch.nn.Module) else _own_config(net)  # never the process cache's
    images = load_images(val_images, max_side=max_side, limit=limit, paths=True)
    groups = _groups_of(images, groups, key)
    warn_if_trained_on(net, [item[2] for item in images], "calibrated on")
    passes = _network_passes(net, images)  # one network pass per image serves both fits
    t, fit = _fit_temperature(net, passes, None if fixed is None else [fixed], return_details=True)
    options = {"method": method, "objective": objective, "min_colourfulness": min_colourfulness,
               "not_worse_than_gray": not_worse_than_gray, "max_group_loss": max_group_loss,
               "max_neutral_ratio": max_neutral_ratio}
    chosen, _ = _fit_fading(net, passes, grid=grid, temperature=t, groups=groups, gains=gains, **options)
    lo, hi, gain = float(chosen["lo"]), float(chosen["hi"]), float(chosen["gain"])
    _store(target.config.decoding, None if temperature is False else t, (lo, hi), gain, method)
    target.config.decoding["calibration"] = {
        **options, "gains": [float(g) for g in gains],
        "max_group_loss": max_group_loss if groups else None, "groups": len(set(groups)) if groups else None,
        **({"group_by": label} if label else {}),
        "images": fit["images"], "temperature_fitted": fixed is None,
        "nll_before": _finite(fit["nll_before"]), "nll_after": _finite(fit["nll_after"]),
        "nll": f"training loss, one-hot targets at the grid cell centres (lambda_hue {LAMBDA_HUE:g})",
        "scores": {k: _finite(chosen[k]) for k in _SCORE_COLUMNS if chosen.get(k) is not None},
        # False when no fading met the rule and the best unsafe one was taken.
        "safe": is_safe(chosen, not_worse_than_gray, max_group_loss, max_neutral_ratio)}
    if output is not None:
        save_model(target, output)
    return lo, hi


def _own_config(net: torch.nn.Module) -> torch.nn.Module:
    """``net`` with a config of its own and the same weights: calibrate changes only the decoding
    (a deep copy doubled the model's memory, on the GPU too)."""
    target = copy.copy(net)
    target.config = copy.deepcopy(net.config)
    return target


def _check_output(output: str | os.PathLike | None) -> None:
    if output is not None and is_default_model(output):
        raise ValueError(f"output={os.fspath(output)!r} is the installed default model, or a link to it; calibrate never replaces it: "
                         "write the calibrated model to another file and colorize with model=<that file>")


def _groups_of(images: list[tuple], groups: Sequence[str] | None,
               key: Callable[[dict], str] | None) -> list[str] | None:
    """The group of every image used: found by ``key`` from its file, or ``groups`` checked to line up."""
    if key is not None:
        return [key({"name": name, "path": path}) for name, _, path in images]
    if groups is None:
        return None
    groups = list(groups)
    if len(groups) != len(images):
        raise ValueError(f"groups has {len(groups)} entries for the {len(images)} images used (after limit and after "
                         "skipping gray, broken or tiny files); give group_by (e.g. 'source' or 'level:1') to find "
                         "each image's group from its file, or one group per image used")
    return groups


def _store(decoding: dict[str, Any], temperature: float | None, fading: tuple[float, float], gain: float,
           method: str | None) -> None:
    """Write the fitted decoding (None: no temperature, any stored one removed)."""
    if temperature is None:
        decoding.pop("temperature", None)
    else:
        decoding["temperature"] = temperature
    decoding["confidence_fading"] = list(fading)
    if method is not None:
        decoding["method"] = method  # the method the fading was fitted for
    if gain == 1.0:
        decoding.pop("chroma_gain", None)
    else:
        decoding["chroma_gain"] = gain


def _finite(value: Any) -> float | None:
    """A JSON-safe number (None for inf / NaN)."""
    value = float(value)
    return value if math.isfinite(value) else None
