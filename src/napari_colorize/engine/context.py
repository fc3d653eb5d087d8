"""A context model's image-level context, computed once per job before the graph.

A context model (:class:`napari_colorize.model.HypercolumnColorizer` with ``context``)
adds to every pixel a vector computed from an overview of the *whole* image.  The engine
computes that vector here, once, from a small strided read of the image, and every
tile of every plane gets the same one (:class:`.jobs.TileOptions`): tiling stays one
network pass per tile and cannot make seams, and the planes of a stack (a z-stack, a
time series: one scene) share one context, so their colours do not flicker with it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..devices import autocast
from ..inputs import to_unit_float
from ..model import HypercolumnColorizer
from .models import loaded

__all__ = ["CONTEXT_PLANES", "image_context", "sample_planes", "small_plane"]

#: Planes of a stack whose contexts are averaged (evenly spaced).
CONTEXT_PLANES = 8


def sample_planes(lead_shape: tuple[int, ...], count: int) -> list[tuple[int, ...]]:
    """Up to ``count`` evenly spaced plane indices of a stack (``[()]`` for one image)."""
    planes = list(np.ndindex(*lead_shape)) if lead_shape else [()]
    picks = np.unique(np.linspace(0, len(planes) - 1, min(count, len(planes))).round().astype(int))
    return [planes[i] for i in picks]


def small_plane(image, plane: tuple, size: tuple[int, int], normalize: str | None,
                limits: tuple[float, float] | None) -> torch.Tensor:
    """Plane ``plane`` of ``image`` as a ``(1, 1, *size)`` gray tensor in [0, 1].

    It is read with a stride (at most ~4x the small image's pixels, so a gigapixel plane
    is never loaded whole), normalised like the tiles, then area-averaged (anti-aliased).
    """
    y, x = tuple(image.shape)[-2:]
    step = max(1, int(min(y, x) // (4 * min(size))))
    gray = to_unit_float(np.asarray(image[plane + (slice(None, None, step), slice(None, None, step))]),
                         normalize, limits)
    small = torch.from_numpy(np.ascontiguousarray(gray, np.float32))[None, None]
    if small.shape[-2] >= size[0] and small.shape[-1] >= size[1]:
        return F.interpolate(small, size=size, mode="area")
    return F.interpolate(small, size=size, mode="bilinear", align_corners=False)


@torch.no_grad()
def image_context(image, model: HypercolumnColorizer | Callable[[], HypercolumnColorizer],
                  normalize: str | None, limits: tuple[float, float] | None,
                  precision: str = "fp32") -> tuple[float, ...]:
    """The context vector of a whole image or stack: the mean over up to
    :data:`CONTEXT_PLANES` planes of :meth:`~napari_colorize.model.HypercolumnColorizer.context_features`.

    ``model`` may be a function that loads it (a cluster job loads it here, on the CPU,
    only for this).  Returned as a tuple, so the job's options stay hashable and tokenizable.
    """
    model = loaded(model)
    side = model.context_side
    device = next(model.parameters()).device
    features = []
    for plane in sample_planes(tuple(image.shape)[:-2], CONTEXT_PLANES):
        # Already the overview's size: context_features' own resize leaves it as it is.
        overview = small_plane(image, plane, (side, side), normalize, limits)
        with autocast(device, precision):
            features.append(model.context_features(overview.to(device)).float().cpu())
    return tuple(float(v) for v in torch.cat(features).mean(dim=0))
