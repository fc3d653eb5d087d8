"""Which plane of a stack a position lies on, and how a person names that plane.

Pure logic, no Qt and no napari import.  One rule serves every question the widget asks
about planes (which plane "current slice" colours, which hints lie on it, which plane of
a reference is read), and it is napari's own, so the widget's plane is always the one
napari shows: napari 0.9 slices a layer at ``int(np.round(point))`` of the viewer's
position in the layer's data coordinates, divided by a multiscale level's downsampling
and clipped to the level's planes (``napari/layers/_scalar_field/_slice.py``:
``_thick_slice_at_level`` and ``_point_to_slices``).  ``np.round`` rounds halves to
even: a viewer half-way between planes 0 and 1 (another layer with a finer step) shows
plane 0, half-way between 1 and 2 plane 2.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["nearest_plane", "plane_on_screen", "plane_words"]


def nearest_plane(position: np.ndarray) -> np.ndarray:
    """The plane index of each position along a stack's leading axes (floats, not clipped):
    the nearest, halves to even, as napari slices."""
    return np.round(np.asarray(position, float))


def plane_on_screen(position: Sequence[float], shape: Sequence[int]) -> tuple[int, ...]:
    """The leading-axis index napari shows at ``position`` (data coordinates of the array of
    leading shape ``shape``), kept within the array as napari keeps it."""
    index = np.clip(nearest_plane(position), 0, np.asarray(shape, int) - 1)
    return tuple(int(i) for i in index)


def _named(label: str) -> bool:
    """Whether an axis label names the axis for a person ("z", "time"), not napari's default
    of its position ("-3")."""
    try:
        float(label)
    except ValueError:
        return bool(label.strip())
    return False


def plane_words(index: Sequence[int], labels: Sequence[str] | None = None) -> str:
    """A plane as a person reads it: "plane 3", "plane z 3", "plane t 2, z 0"; ``labels`` are the
    leading axes' labels (the layer's ``axis_labels``, used when they are names)."""
    labels = list(labels or [])[:len(index)]
    if len(labels) == len(index) and all(_named(str(label)) for label in labels):
        return "plane " + ", ".join(f"{label} {int(i)}" for label, i in zip(labels, index))
    return "plane " + ", ".join(str(int(i)) for i in index)
