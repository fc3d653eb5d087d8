"""Colour hints: points with colours, checked, and how far each one reaches.

A hint's influence at a grid cell is ``exp(-d^2 / 2 sigma^2)`` with ``d`` the
*geodesic* distance from the hint's cell over the gray image, where a step costs
``1 + (gradient / EDGE_SCALE)^2`` cells (quadratic: texture costs little, a strong
gray-level edge a wall), times a gate on the gray-level difference from the hint's
own cell (:data:`GRAY_SIMILARITY`).  So a hint spreads
along similar, connected content, stops at edges and fades with distance; beyond
``hint_range`` pixels of geodesic distance it is exactly 0 (``sigma = range / 3``).
Fields live on the network's 1/4 grid, where the histograms are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from skimage.graph import MCP_Geometric

from ..decode import finite_number
from ..model.hypercolumn import GRID_STRIDE

__all__ = [
    "DEFAULT_HINT_RANGE",
    "EDGE_SCALE",
    "GRAY_SIMILARITY",
    "HINT_PLANES",
    "Hints",
    "gray_cells",
    "check_hint_planes",
    "check_hint_range",
    "check_hints",
    "hint_cells",
    "influence_field",
]

#: "own": a hint colours only the plane it was placed on; "all": every plane of a stack
#: (the hint's field is computed on its own plane and shared, so planes agree).
HINT_PLANES = ("own", "all")
#: How far (pixels of geodesic distance) a hint reaches when the caller does not say:
#: the plane's long side, within these bounds (measured with
#: ``benchmarks/bench_guided.py`` on the validation sources: a reach of a quarter of the
#: image gave 10 random hints +2.3 AuC points, the whole image +10).
DEFAULT_HINT_RANGE = (96.0, 1024.0)
#: Largest side (cells) of the grid a field is computed on; larger windows are
#: computed on coarser cells and interpolated (a 1024-pixel reach costs ~5 ms, not 150).
MAX_FIELD_CELLS = 96
#: Gray-level gradient (per grid cell, gray in [0, 1]) at which a step costs twice a flat
#: one.  Chosen with ``benchmarks/bench_guided.py`` on the validation sources among
#: values that stop a hint at a 0.3 | 0.7 step: 0.04 gave 10 random hints +13.9 AuC
#: points, a linear cost that stops it +11.1; no edge cost at all +14.0 but crosses.
EDGE_SCALE = 0.04
#: Standard deviation of the gate on the gray-level difference from the hint's cell.
GRAY_SIMILARITY = 0.3


@dataclass(frozen=True, eq=False)
class Hints:
    """Checked hints: ``points`` ``(N, ndim)`` in data coordinates, ``colours`` ``(N, 3)`` RGB in [0, 1]."""

    points: np.ndarray
    colours: np.ndarray

    def __len__(self) -> int:
        return len(self.points)

    def pixel(self, i: int) -> tuple[int, ...]:
        """Hint ``i``'s pixel: its coordinates rounded to the nearest index."""
        return tuple(int(v) for v in np.floor(self.points[i] + 0.5))


def check_hints(hints, shape: tuple[int, ...], hint_planes: str = "own") -> Hints | None:
    """Validate ``(points, colours)`` for an image of ``shape``; None passes through.

    ``points`` is ``(N, len(shape))`` as in a napari Points layer's ``data`` (for a stack
    with ``hint_planes="all"``, ``(N, 2)`` is accepted too); ``colours`` ``(N, 3)`` or
    ``(N, 4)`` RGB(A) in [0, 1] as in ``Points.face_color`` (alpha is ignored).
    """
    if hints is None:
        return None
    if not isinstance(hints, (tuple, list)) or len(hints) != 2:
        raise ValueError("hints must be a pair (points, colours): points (N, ndim) in pixel coordinates as in a "
                         "napari Points layer's .data, colours (N, 3) or (N, 4) RGB(A) in [0, 1]")
    points = np.asarray(hints[0], dtype=np.float64) if np.size(hints[0]) else np.zeros((0, len(shape)))
    try:
        colours = np.asarray(hints[1], dtype=np.float64) if np.size(hints[1]) else np.zeros((0, 3))
    except (TypeError, ValueError):  # colour names ("red"): numpy's own words name no hint
        raise ValueError("hint colours must be numbers, RGB(A) in [0, 1] one row per point (e.g. (1, 0, 0) for "
                         f"red), not names or text; got {list(hints[1])[:3]!r}") from None
    if points.ndim == 1 and len(points) in (2, len(shape)):
        raise ValueError(f"hint points must be an (N, {len(shape)}) array, one row per point; one point is "
                         f"[{points.tolist()}], not {points.tolist()}")
    if points.ndim != 2 or len(points) == 0:
        raise ValueError("the hints have no points; add points (e.g. to a napari Points layer) or pass hints=None")
    ndims = {len(shape), 2} if hint_planes == "all" else {len(shape)}
    if points.shape[1] not in ndims:
        if hint_planes == "all":  # asked for already: both lengths it takes
            planes = " or 2 for (row, column) on every plane"
        elif len(shape) > 2 and points.shape[1] == 2:
            planes = " (or, with hint_planes='all' (--hint-planes all), 2 for (row, column) on every plane)"
        else:
            planes = ""
        raise ValueError(f"hint points must have {len(shape)} coordinates each (one per image axis, "
                         f"image shape {shape}){planes}, got shape {points.shape}")
    if colours.ndim != 2 or colours.shape[1] not in (3, 4) or len(colours) != len(points):
        raise ValueError(f"hint colours must be ({len(points)}, 3) or ({len(points)}, 4) RGB(A), one per point, "
                         f"got shape {colours.shape}")
    if not np.isfinite(points).all():
        raise ValueError("hint points contain NaN or infinite coordinates")
    if not (np.isfinite(colours).all() and colours.min() >= 0 and colours.max() <= 1):
        bad = int(np.flatnonzero(~(np.isfinite(colours) & (colours >= 0) & (colours <= 1)).all(axis=1))[0])
        advice = ("give finite values" if not np.isfinite(colours[bad]).all()
                  else "divide 8-bit colours by 255" if colours[bad].max() > 1 else "values below 0 are not colours")
        raise ValueError(f"hint colours must be RGB(A) in [0, 1]; hint {bad} has {colours[bad].tolist()} ({advice})")
    dims = np.asarray(shape[-points.shape[1]:])
    index = np.floor(points + 0.5)
    outside = ((index < 0) | (index >= dims)).any(axis=1)
    if outside.any():
        bad = int(np.flatnonzero(outside)[0])
        order = "(row, column)" if points.shape[1] == 2 else f"({', '.join(['plane'] * (points.shape[1] - 2))}, row, column)"
        raise ValueError(f"hint {bad} at {points[bad].tolist()} lies outside the image of shape {shape}; "
                         f"{int(outside.sum())} of {len(points)} hints do: give points as {order} in this "
                         "image's pixels, in the image's axis order, or drop the ones outside")
    return Hints(points.copy(), colours[:, :3].astype(np.float32))


def check_hint_range(hint_range, image_yx: tuple[int, int] | None = None) -> float:
    """``hint_range`` in pixels as a float; finite and > 0.

    None means the default: the long side of ``image_yx`` within
    :data:`DEFAULT_HINT_RANGE` (its upper bound without an image).
    """
    low, high = DEFAULT_HINT_RANGE
    if hint_range is None:
        return high if image_yx is None else float(min(max(*image_yx, low), high))
    value = finite_number(hint_range)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"hint range must be a distance in pixels > 0 (default: the image's long side, "
                         f"{low:g} to {high:g}), got {hint_range!r}")
    return value


def check_hint_planes(hint_planes: str) -> str:
    if hint_planes not in HINT_PLANES:
        raise ValueError(f"hint_planes must be one of {HINT_PLANES} ('own': each hint colours its own plane; "
                         f"'all': every plane of the stack), got {hint_planes!r}")
    return hint_planes


def hint_cells(y: int, x: int, hint_range: float, image_yx: tuple[int, int]) -> tuple[slice, slice]:
    """The grid cells a hint at pixel ``(y, x)`` can reach: its window, in global cell indices."""
    reach = math.ceil(hint_range / GRID_STRIDE) + 1
    cells = (-(-image_yx[0] // GRID_STRIDE), -(-image_yx[1] // GRID_STRIDE))
    cy, cx = y // GRID_STRIDE, x // GRID_STRIDE
    return (slice(max(cy - reach, 0), min(cy + reach + 1, cells[0])),
            slice(max(cx - reach, 0), min(cx + reach + 1, cells[1])))


def gray_cells(gray: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Mean gray ``(B, h, w)`` of each grid cell of images ``(B, H, W)`` (edges replicated).

    The one definition of a cell's gray level: hint fields, the reference's gray bands on
    the overview and on each tile all use it.
    """
    g = gray.float().unsqueeze(1)
    ph, pw = max(h * GRID_STRIDE - g.shape[-2], 0), max(w * GRID_STRIDE - g.shape[-1], 0)
    if ph or pw:
        g = F.pad(g, (0, pw, 0, ph), mode="replicate")
    return F.avg_pool2d(g[..., :h * GRID_STRIDE, :w * GRID_STRIDE], GRID_STRIDE)[:, 0]


def influence_field(cells: np.ndarray, centre: tuple[int, int], hint_range: float,
                    edge_scale: float = EDGE_SCALE, similarity: float = GRAY_SIMILARITY) -> np.ndarray:
    """A hint's weight in [0, 1] over a window of grid cells (1 at its own cell).

    Parameters
    ----------
    cells : array (h, w)
        Mean gray of each cell of the window (:func:`gray_cells`), in [0, 1].
    centre : (int, int)
        The hint's cell within the window.
    hint_range : float
        Reach in pixels; the weight is 0 beyond this geodesic distance.
    """
    factor = math.ceil(max(cells.shape) / MAX_FIELD_CELLS)
    if factor > 1:  # a coarser grid for long reaches, then back to the cells by interpolation
        # Without the gray gate: it is applied once below, on the cells' own gray levels
        # (gated here too, it was squared).
        coarse = _coarse_field(cells, centre, hint_range, factor, edge_scale, math.inf)
        fine = F.interpolate(torch.from_numpy(coarse)[None, None], scale_factor=factor, mode="bilinear",
                             align_corners=False)[0, 0, :cells.shape[0], :cells.shape[1]].numpy()
        fine = fine * _gray_gate(cells, centre, similarity)
        # Near the hint, the fine field itself: interpolation mixes in coarse cells across a
        # nearby edge, and the hint's own cell must keep weight 1 (its colour reproduced there).
        (cy, cx), r = centre, 2 * factor
        window = (slice(max(cy - r, 0), cy + r + 1), slice(max(cx - r, 0), cx + r + 1))
        local = _field(cells[window], (cy - window[0].start, cx - window[1].start), hint_range / GRID_STRIDE,
                       edge_scale, similarity)
        fine[window] = np.maximum(fine[window], local)
        return fine.astype(np.float32)
    return _field(cells, centre, hint_range / GRID_STRIDE, edge_scale, similarity)


def _gray_gate(cells: np.ndarray, centre: tuple[int, int], similarity: float) -> np.ndarray:
    return np.exp(-0.5 * ((cells - cells[centre]) / similarity) ** 2)


def _field(cells: np.ndarray, centre: tuple[int, int], reach: float, edge_scale: float,
           similarity: float, cell_span: int = 1) -> np.ndarray:
    """The weight on ``cells`` for a reach of ``reach`` cells (geodesic, with edge costs and the gray gate).

    ``cell_span``: fine cells per cell of ``cells``; a step's edge cost is divided by it,
    so crossing a gray step costs as many fine cells as on the fine grid.
    """
    gy, gx = np.gradient(cells.astype(np.float64))
    costs = 1.0 + (np.hypot(gy, gx) / edge_scale) ** 2 / cell_span
    distance, _ = MCP_Geometric(costs).find_costs([centre])
    weight = np.exp(-0.5 * (distance / (reach / 3.0)) ** 2) * _gray_gate(cells, centre, similarity)
    weight[distance > reach] = 0.0
    return weight.astype(np.float32)


def _coarse_field(cells: np.ndarray, centre: tuple[int, int], hint_range: float, factor: int, edge_scale: float,
                  similarity: float) -> np.ndarray:
    """:func:`_field` on cells ``factor`` times larger (block means); a gray step still costs the same to cross."""
    h, w = cells.shape
    padded = np.pad(cells, ((0, -h % factor), (0, -w % factor)), mode="edge")
    coarse = padded.reshape(padded.shape[0] // factor, factor, padded.shape[1] // factor, factor).mean(axis=(1, 3))
    return _field(coarse, (centre[0] // factor, centre[1] // factor), hint_range / GRID_STRIDE / factor,
                  edge_scale, similarity, cell_span=factor)
