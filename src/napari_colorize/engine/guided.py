"""A job's guidance, built once before the graph: the reference prior, fitted on an
overview of the whole image or stack, and each hint's influence field on its gray
window (:mod:`napari_colorize.guidance`)."""

from __future__ import annotations

import numpy as np
import torch
from skimage.transform import resize

from ..decode import DecodeOptions, temper
from ..guidance import (
    Guidance,
    HintField,
    Hints,
    block_mean,
    check_hint_planes,
    check_hint_range,
    check_hints,
    check_reference_strength,
    check_references,
    fit_log_prior,
    hint_cells,
    influence_field,
    reference_histograms,
)
from ..guidance.apply import gray_cells
from ..inference import histograms
from ..inputs import to_unit_float
from ..model.hypercolumn import GRID_STRIDE

__all__ = ["OVERVIEW_PLANES", "OVERVIEW_SIDE", "build_guidance", "overview_histograms"]

#: Long side (pixels) of the overview the reference prior is fitted on: the colour
#: distribution of the whole image, not its detail (1/16 of a 1024^2 image's work).
OVERVIEW_SIDE = 256
#: Planes of a stack that the overview samples (evenly spaced).
OVERVIEW_PLANES = 8
#: Floor of a hint's soft histogram before its log: a hint rules colours out by at most e^-14.
LIKELIHOOD_FLOOR = 1e-6


def _planes(lead_shape: tuple[int, ...], count: int) -> list[tuple[int, ...]]:
    planes = list(np.ndindex(*lead_shape)) if lead_shape else [()]
    picks = np.unique(np.linspace(0, len(planes) - 1, min(count, len(planes))).round().astype(int))
    return [planes[i] for i in picks]


def _read(image, index: tuple) -> np.ndarray:
    return np.asarray(image[index])


def overview_histograms(image, model, decode: DecodeOptions, normalize: str | None,
                        limits: tuple[float, float] | None,
                        precision: str = "fp32") -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Predicted (tempered) histograms of a small overview of up to :data:`OVERVIEW_PLANES`
    planes, and the overview's mean gray per grid cell ``(B, h, w)``."""
    shape = tuple(image.shape)
    y, x = shape[-2:]
    scale = min(1.0, OVERVIEW_SIDE / max(y, x))
    size = (max(model.min_size, round(y * scale)), max(model.min_size, round(x * scale)))
    step = max(1, int(min(y, x) // (4 * min(size))))  # read at most ~4x the overview's pixels
    device = next(model.parameters()).device
    batches, cells = [], []
    for plane in _planes(shape[:-2], OVERVIEW_PLANES):
        gray = to_unit_float(_read(image, plane + (slice(None, None, step), slice(None, None, step))),
                             normalize, limits)
        small = resize(gray, size, anti_aliasing=True, preserve_range=True).astype(np.float32)
        probs = histograms(model, torch.from_numpy(small)[None].to(device), precision)
        batches.append({head: temper(p, decode.temperature).cpu() for head, p in probs.items()})
        cells.append(gray_cells(torch.from_numpy(small)[None], *next(iter(probs.values())).shape[-2:]))
    return {head: torch.cat([b[head] for b in batches]) for head in batches[0]}, torch.cat(cells)


def _hint_fields(image, hints: Hints, space, normalize: str | None, limits: tuple[float, float] | None,
                 hint_range: float, hint_planes: str) -> tuple[HintField, ...]:
    shape = tuple(image.shape)
    lead = len(shape) - 2
    colours = torch.from_numpy(hints.colours)
    soft = space.soft_targets(colours)
    u, v = space.channels(colours)
    fields = []
    for i in range(len(hints)):
        pixel = hints.pixel(i)
        y, x = pixel[-2:]
        source_plane = pixel[:-2] if len(pixel) == len(shape) else (0,) * lead
        sy, sx = hint_cells(y, x, hint_range, shape[-2:])
        rows = slice(sy.start * GRID_STRIDE, min(sy.stop * GRID_STRIDE, shape[-2]))
        cols = slice(sx.start * GRID_STRIDE, min(sx.stop * GRID_STRIDE, shape[-1]))
        cells = block_mean(to_unit_float(_read(image, source_plane + (rows, cols)), normalize, limits))
        weight = influence_field(cells, (y // GRID_STRIDE - sy.start, x // GRID_STRIDE - sx.start), hint_range)
        fields.append(HintField(plane=None if hint_planes == "all" else tuple(source_plane),
                                cell_y=sy.start, cell_x=sx.start, weight=weight,
                                log_likelihood={h: torch.log(q[i].clamp_min(LIKELIHOOD_FLOOR)).numpy()
                                                for h, q in soft.items()},
                                channels=np.array([float(u[i]), float(v[i])], np.float32)))
    return tuple(fields)


def build_guidance(image, model, decode: DecodeOptions, normalize: str | None, limits: tuple[float, float] | None,
                   *, reference=None, reference_strength: float | None = None, hints=None,
                   hint_range: float | None = None, hint_planes: str = "own",
                   precision: str = "fp32") -> Guidance | None:
    """Check the guidance a caller asked for and prepare it for the tiles; None when there is none.

    Parameters are those of :func:`napari_colorize.colorize`; ``model`` is the loaded
    network (used for the reference's overview pass only).  Every check runs before
    anything is computed or written, so bad guidance fails first.
    """
    shape = tuple(image.shape)
    references = check_references(reference)
    strength = check_reference_strength(reference_strength)
    hint_planes = check_hint_planes(hint_planes)
    hint_range = check_hint_range(hint_range, shape[-2:])
    checked = check_hints(hints, shape, hint_planes)
    if not references and checked is None:
        return None
    space = model.space
    log_prior = None
    if references and strength > 0:
        overview, cells = overview_histograms(image, model, decode, normalize, limits, precision)
        phi = fit_log_prior(overview, cells, reference_histograms(references, space))
        log_prior = {head: (strength * p).astype(np.float32) for head, p in phi.items()}
    fields = () if checked is None else _hint_fields(image, checked, space, normalize, limits, hint_range, hint_planes)
    summary = {"references": len(references), "reference_strength": strength if references else None,
               "hints": 0 if checked is None else len(checked), "hint_range": hint_range if checked else None,
               "hint_planes": hint_planes if checked else None}
    guidance = Guidance(log_prior, fields, summary)
    summary["token"] = guidance.token
    return guidance
