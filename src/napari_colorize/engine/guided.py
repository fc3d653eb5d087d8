"""A job's guidance, built once before the graph: the reference prior, fitted on an
overview of the whole image or stack, and each hint's influence field on its gray
window (:mod:`napari_colorize.guidance`)."""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable

import numpy as np
import torch

from ..color import relit
from ..decode import DecodeOptions, temper
from ..guidance import (
    Guidance,
    HintField,
    Hints,
    check_hint_planes,
    check_hint_range,
    check_hints,
    check_reference_strength,
    check_references,
    fit_log_prior,
    gray_cells,
    hint_cells,
    influence_field,
    reference_histograms,
)
from ..inference import histograms
from ..inputs import to_unit_float
from ..model import HypercolumnColorizer
from ..model.hypercolumn import GRID_STRIDE
from .context import sample_planes, small_plane
from .models import loaded

__all__ = ["OVERVIEW_PLANES", "OVERVIEW_SIDE", "build_guidance", "check_hint_stack", "overview_histograms"]

#: Long side (pixels) of the overview the reference prior is fitted on: the colour
#: distribution of the whole image, not its detail (1/16 of a 1024^2 image's work).
OVERVIEW_SIDE = 256
#: Planes of a stack that the overview samples (evenly spaced).
OVERVIEW_PLANES = 8
#: Floor of a hint's soft histogram before its log: a hint rules colours out by at most e^-14.
LIKELIHOOD_FLOOR = 1e-6


def overview_histograms(image, model, decode: DecodeOptions, normalize: str | None,
                        limits: tuple[float, float] | None,
                        precision: str = "fp32",
                        context: tuple[float, ...] | None = None) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Predicted (tempered) histograms of a small overview of up to :data:`OVERVIEW_PLANES`
    planes, and the overview's mean gray per grid cell ``(B, h, w)``.  ``context``: a
    context model's image-level context (:func:`.context.image_context`), as the tiles get it."""
    shape = tuple(image.shape)
    y, x = shape[-2:]
    scale = min(1.0, OVERVIEW_SIDE / max(y, x))
    size = (max(model.min_size, round(y * scale)), max(model.min_size, round(x * scale)))
    device = next(model.parameters()).device
    batches, cells = [], []
    for plane in sample_planes(shape[:-2], OVERVIEW_PLANES):
        # Area averaging: anti-aliased, and ~10x cheaper than a Gaussian pre-filter here.
        small = small_plane(image, plane, size, normalize, limits)[0]
        probs = histograms(model, small.to(device), precision, context)
        batches.append({head: temper(p, decode.temperature).cpu() for head, p in probs.items()})
        cells.append(gray_cells(small, *next(iter(probs.values())).shape[-2:]))
    return {head: torch.cat([b[head] for b in batches]) for head in batches[0]}, torch.cat(cells)


#: Cells (1/4-grid) of the union of a plane's hint windows up to which it is read and
#: averaged once for all its hints, rather than window by window.
SHARED_CELLS = 2048 * 2048


def _plane_cells(image, plane: tuple, windows: list[tuple[slice, slice]], normalize: str | None,
                 limits: tuple[float, float] | None):
    """``cells(sy, sx)``: the mean gray of a window of grid cells of ``plane``.

    The union of the plane's hint windows is read and averaged once when it is small
    enough (:data:`SHARED_CELLS`); otherwise each window is read on its own.
    """
    shape = tuple(image.shape)
    y0, y1 = min(w[0].start for w in windows), max(w[0].stop for w in windows)
    x0, x1 = min(w[1].start for w in windows), max(w[1].stop for w in windows)

    def read(sy: slice, sx: slice) -> np.ndarray:
        rows = slice(sy.start * GRID_STRIDE, min(sy.stop * GRID_STRIDE, shape[-2]))
        cols = slice(sx.start * GRID_STRIDE, min(sx.stop * GRID_STRIDE, shape[-1]))
        gray = torch.from_numpy(np.ascontiguousarray(to_unit_float(np.asarray(image[plane + (rows, cols)]), normalize,
                                                                    limits), np.float32))
        return gray_cells(gray[None], sy.stop - sy.start, sx.stop - sx.start)[0].numpy()

    if (y1 - y0) * (x1 - x0) > SHARED_CELLS:
        return read
    union = read(slice(y0, y1), slice(x0, x1))
    return lambda sy, sx: union[sy.start - y0:sy.stop - y0, sx.start - x0:sx.stop - x0]


def _hint_fields(image, hints: Hints, space, normalize: str | None, limits: tuple[float, float] | None,
                 hint_range: float, hint_planes: str) -> tuple[HintField, ...]:
    shape = tuple(image.shape)
    lead = len(shape) - 2
    pixels = [hints.pixel(i) for i in range(len(hints))]
    planes = [p[:-2] if len(p) == len(shape) else (0,) * lead for p in pixels]
    windows = [hint_cells(p[-2], p[-1], hint_range, shape[-2:]) for p in pixels]
    readers = {plane: _plane_cells(image, plane, [w for w, q in zip(windows, planes) if q == plane], normalize,
                                   limits) for plane in set(planes)}
    weights, grays = [], []
    for pixel, source_plane, (sy, sx) in zip(pixels, planes, windows):
        cells = readers[source_plane](sy, sx)
        centre = (pixel[-2] // GRID_STRIDE - sy.start, pixel[-1] // GRID_STRIDE - sx.start)
        weights.append(influence_field(cells, centre, hint_range))
        grays.append(float(cells[centre]))
    # Each colour at the gray where it was given: the pixels it colours keep their lightness,
    # and CIELab would turn a blue hint on a light sky violet (:func:`napari_colorize.color.relit`).
    colours = relit(torch.from_numpy(hints.colours), torch.tensor(grays))
    soft = space.soft_targets(colours)
    u, v = space.channels(colours)
    fields = []
    for i, (weight, source_plane, (sy, sx)) in enumerate(zip(weights, planes, windows)):
        fields.append(HintField(plane=None if hint_planes == "all" else tuple(source_plane),
                                cell_y=sy.start, cell_x=sx.start, weight=weight,
                                log_likelihood={h: torch.log(q[i].clamp_min(LIKELIHOOD_FLOOR)).numpy()
                                                for h, q in soft.items()},
                                channels=np.array([float(u[i]), float(v[i])], np.float32)))
    return tuple(fields)


def _warn_idle_options(reference: bool, hints: bool, reference_strength, hint_range_given: bool,
                       hint_planes: str) -> None:
    """Say when an option that only tunes guidance is given without that guidance (it used to be
    ignored without a word: a typo'd ``reference=`` looked like a weak reference)."""
    idle = ([] if reference or reference_strength is None else ["reference_strength= without reference="]) + (
        [] if hints or not (hint_range_given or hint_planes != "own") else ["hint_range=/hint_planes= without hints="])
    if idle:
        warnings.warn(f"{' and '.join(idle)} {'have' if len(idle) > 1 else 'has'} no effect", UserWarning,
                      stacklevel=_caller_level())


def _caller_level() -> int:
    """The ``stacklevel`` of the first frame outside this package, for :func:`warnings.warn`
    called by the function that calls this (the API has several entry points, of different depths)."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    frame, level = sys._getframe(2), 2
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package + os.sep):
        frame, level = frame.f_back, level + 1
    return level


def check_hint_stack(hint_stack, image_shape: tuple[int, ...], hint_planes: str):
    """The array the hints' fields are computed on: ``hint_stack`` (checked), else the image.

    ``hint_stack`` is a stack that the image coloured is one plane of, with hints placed on
    its planes: with ``hint_planes="all"`` each field is computed on its hint's own plane of
    it, as a run of the whole stack computes it, so that one plane coloured alone matches
    that plane of the whole stack's result.  Without hints it is idle, as ``hint_planes``
    (which it needs) is said to be.
    """
    if hint_stack is None:
        return None
    if hint_planes != "all":
        raise ValueError("hint_stack= is for hint_planes='all' (each hint colours every plane, its field computed "
                         "on its own plane of the stack); with 'own', colour the stack itself")
    if not hasattr(hint_stack, "shape"):
        hint_stack = np.asarray(hint_stack)
    shape = tuple(hint_stack.shape)
    if len(shape) < 3 or shape[-2:] != tuple(image_shape[-2:]):
        raise ValueError(f"hint_stack must be a stack (..., Y, X) with the image's planes {tuple(image_shape[-2:])}, "
                         f"got shape {shape}")
    return hint_stack


def build_guidance(image, model: HypercolumnColorizer | Callable[[], HypercolumnColorizer], decode: DecodeOptions, normalize: str | None, limits: tuple[float, float] | None,
                   *, reference=None, reference_strength: float | None = None, hints=None,
                   hint_range: float | None = None, hint_planes: str = "own", hint_stack=None,
                   precision: str = "fp32", context: tuple[float, ...] | None = None) -> Guidance | None:
    """Check the guidance a caller asked for and prepare it for the tiles; None when there is none.

    Parameters are those of :func:`napari_colorize.colorize`; ``model`` is the network,
    or a function that loads it, called only when there is guidance (its colour space, and
    the reference's overview pass).  Every check runs before anything is computed or
    written, so bad guidance fails first.
    """
    shape = tuple(image.shape)
    references = check_references(reference)
    strength = check_reference_strength(reference_strength)
    hint_planes = check_hint_planes(hint_planes)
    hint_range_given = hint_range is not None
    hint_range = check_hint_range(hint_range, shape[-2:])
    hint_stack = check_hint_stack(hint_stack, shape, hint_planes)
    fields_on = image if hint_stack is None else hint_stack
    checked = check_hints(hints, tuple(fields_on.shape), hint_planes)
    _warn_idle_options(bool(references), checked is not None, reference_strength, hint_range_given, hint_planes)
    if not references and checked is None:
        return None
    model = loaded(model)
    space = model.space
    log_prior = None
    if references and strength > 0:
        overview, cells = overview_histograms(image, model, decode, normalize, limits, precision, context)
        phi = fit_log_prior(overview, cells, reference_histograms(references, space))
        log_prior = {head: (strength * p).astype(np.float32) for head, p in phi.items()}
    fields = () if checked is None else _hint_fields(fields_on, checked, space, normalize, limits, hint_range,
                                                     hint_planes)
    summary = {"references": len(references), "reference_strength": strength if references else None,
               "hints": 0 if checked is None else len(checked), "hint_range": hint_range if checked else None,
               "hint_planes": hint_planes if checked else None}
    guidance = Guidance(log_prior, fields, summary)
    summary["token"] = guidance.token
    return guidance
