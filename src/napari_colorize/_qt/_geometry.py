"""Where a layer's data sits in napari's world: what the output layers copy from their source.

Pure logic, no Qt and no napari import.  napari places a layer's pixel ``x`` at
``affine(rotate @ shear @ diag(scale) @ x + translate)``; outputs that copy all five
overlay their source exactly, whether it is only scaled (most images) or also rotated,
sheared (a deskewed light sheet) or registered with an affine matrix.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

__all__ = ["Geometry", "store_placement", "in_layer_units", "in_world_units"]

Matrix = tuple[tuple[float, ...], ...]


def _matrix(values: Any) -> Matrix:
    return tuple(tuple(float(v) for v in row) for row in np.asarray(values, float))


def _shear(values: Any) -> tuple[float, ...] | Matrix:
    """napari's ``layer.shear``: the upper-triangular values, or the whole matrix when the
    shear is lower-triangular (napari keeps that form as given); either goes back to napari."""
    values = np.asarray(values, float)
    return _matrix(values) if values.ndim == 2 else tuple(values.tolist())


@dataclass(frozen=True)
class Geometry:
    """Where a layer's data sits in the world (napari's data-to-world transform).

    Attributes
    ----------
    scale, translate : tuple of float
        Per data axis (world units per pixel, world offset of pixel 0).
    axis_labels, units : tuple of str or None
        Per data axis, copied from the source when it has them.
    rotate : (ndim, ndim) matrix, optional
        The source's rotation (napari's ``layer.rotate``); None: none, or not known.
    shear : tuple of float or (ndim, ndim) matrix, optional
        The source's shear as napari keeps it (``layer.shear``): its upper-triangular values,
        or the whole matrix of a lower-triangular shear.
    affine : (ndim + 1, ndim + 1) matrix, optional
        The source's affine transform, applied after the others (``layer.affine``).
    """

    scale: tuple[float, ...]
    translate: tuple[float, ...]
    axis_labels: tuple[str, ...] | None = None
    units: tuple[str, ...] | None = None
    rotate: Matrix | None = None
    shear: tuple[float, ...] | Matrix | None = None
    affine: Matrix | None = None

    @classmethod
    def of_layer(cls, layer: Any) -> Geometry:
        """A napari layer's geometry (level 0 of a multiscale layer)."""
        return cls(scale=tuple(map(float, layer.scale)), translate=tuple(map(float, layer.translate)),
                   axis_labels=tuple(layer.axis_labels), units=tuple(str(u) for u in layer.units),
                   rotate=_matrix(layer.rotate), shear=_shear(layer.shear),
                   affine=_matrix(layer.affine.affine_matrix))

    def as_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``viewer.add_image`` / ``Layer.__init__`` (also set on a layer updated in place)."""
        kwargs: dict[str, Any] = {"scale": self.scale, "translate": self.translate}
        for name in ("axis_labels", "units", "rotate", "shear"):
            if getattr(self, name) is not None:
                kwargs[name] = getattr(self, name)
        if self.affine is not None:
            kwargs["affine"] = np.asarray(self.affine)
        return kwargs

    def linear(self, scale: Sequence[float] | None = None) -> np.ndarray:
        """``rotate @ shear @ diag(scale)``: data pixels to world offsets, before ``translate`` and ``affine``."""
        scale = np.asarray(self.scale if scale is None else scale, float)
        n = len(scale)
        matrix = np.eye(n)
        if self.shear is not None and np.ndim(self.shear) == 2:  # napari keeps a lower-triangular shear whole
            matrix = np.asarray(self.shear, float).copy()
        elif self.shear is not None:
            matrix[np.triu_indices(n, 1)] = self.shear
        if self.rotate is not None:
            matrix = np.asarray(self.rotate, float) @ matrix
        return matrix @ np.diag(scale)

    def shifted(self, scale: Sequence[float], offset: Sequence[float]) -> Geometry:
        """The geometry of this layer's data at another pixel size (``scale``: a multiscale
        level), starting ``offset`` pixels of that size further along (one plane of a stack)."""
        translate = np.asarray(self.translate, float) + self.linear(scale) @ np.asarray(offset, float)
        return replace(self, scale=tuple(map(float, scale)), translate=tuple(translate.tolist()))


def store_placement(geometry: Any, names: Sequence[str]
                    ) -> tuple[list[float] | None, list[float] | None, str | None, str | None]:
    """What a zarr store records of ``geometry``: ``(scale, translation, unit of the space axes,
    unit of the time axis)``; ``names`` are the store's leading axis names.

    The translation is ``geometry.translate``, the world position of the data's pixel 0 (of the
    one plane of a "current slice" job).  NGFF gives the space axes one unit, that of x here, so
    a leading space axis ("z") in another length unit has its pixel size *and* position
    converted (z in micrometres over y, x in nanometres was stored 1000 times too small).  A
    time axis ("t") keeps its own unit; napari's "pixel" is no unit.

    OME-NGFF 0.4 has scale and translation only, so a source's rotation, shear and affine
    transform are not stored: a store reopened from disk lies unrotated at that position.
    No geometry records none of these.
    """
    if geometry is None:
        return None, None, None, None
    scale = [float(s) for s in geometry.scale]
    origin = [float(t) for t in geometry.translate]
    units = [None if u is None or str(u) in ("pixel", "px") else str(u) for u in (geometry.units or [None] * len(scale))]
    space, lead = units[-1], len(scale) - 2
    time = next((units[i] for i, n in enumerate(names) if n == "t" and i < len(units)), None)
    for i, name in enumerate(names[:lead]):
        if name == "z" and units[i] and space and units[i] != space:
            factor = _length_factor(units[i], space)
            scale[i] *= factor
            origin[i] *= factor
    return scale, origin, space, time


def _length_factor(unit: str, target: str) -> float:
    """How many ``target`` one ``unit`` is (1 where pint cannot tell: not lengths, unknown names)."""
    import pint

    try:
        return float(pint.get_application_registry().Quantity(1.0, unit).to(target).magnitude)
    except (pint.errors.PintError, ValueError, AttributeError, TypeError):
        return 1.0


def _unit_factors(world_units: Sequence[Any] | None, layer_units: Sequence[Any]) -> np.ndarray:
    """Per axis of a layer, how many of its units one of the viewer's world units is, by napari's
    own rule (the ratio of base units, whatever their kind: not :func:`_length_factor`), as
    napari scales a layer whose units differ from the viewer's (``dims.units``)."""
    factors = np.ones(len(layer_units))
    if world_units is None or len(world_units) < len(layer_units):
        return factors
    import pint

    registry = pint.get_application_registry()
    for i, (world, own) in enumerate(zip(list(world_units)[-len(layer_units):], layer_units)):
        with contextlib.suppress(pint.errors.PintError, ValueError, AttributeError, TypeError, ZeroDivisionError):
            factors[i] = float(registry.get_base_units(world)[0] / registry.get_base_units(own)[0])
    return factors


def _rescaled(layer: Any, point: Sequence[float], world_units: Sequence[Any] | None, power: int) -> np.ndarray:
    """``point`` with its last ``layer.ndim`` axes times the unit factors to the ``power`` (1: into
    the layer's units, -1: back into the viewer's)."""
    point = np.asarray(point, float).copy()
    n = min(len(point), layer.ndim)
    if n:
        point[-n:] *= _unit_factors(world_units, list(layer.units)[-n:]) ** power
    return point


def in_layer_units(layer: Any, point: Sequence[float], world_units: Sequence[Any] | None) -> np.ndarray:
    """A viewer position (napari's world, in ``world_units``: ``viewer.dims.units``) in
    ``layer``'s own world units, which ``layer.world_to_data`` expects.

    They differ where the layer's axes have different length units (z in micrometres, y and x
    in nanometres): napari's world is then in nanometres on every axis, and the position
    6000 nm is the layer's z = 6 um.  The axes the layer lacks are left as they are.
    """
    return _rescaled(layer, point, world_units, 1)


def in_world_units(layer: Any, point: Sequence[float], world_units: Sequence[Any] | None) -> np.ndarray:
    """The inverse of :func:`in_layer_units`: a position in ``layer``'s world units (what
    ``layer.data_to_world`` gives) in the viewer's."""
    return _rescaled(layer, point, world_units, -1)
