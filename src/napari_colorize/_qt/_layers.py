"""From a napari Image layer to the engine's input, and from its result to layers.

Pure logic, no Qt: what part of a layer to colour (the displayed slice, the whole
stack, which multiscale level), where the outputs sit in the world (scale, translate,
rotation, shear, affine, axis labels, units copied from the source, :mod:`._geometry`, so
the layers overlay exactly), and the output layers' data and settings; :mod:`._placing`
creates or updates them in the viewer's layer list.  The widget in ``_widget.py``
only gathers choices, runs this in a worker thread and reports progress.

Nothing here reads pixel data: arrays are sliced lazily (numpy views, dask or zarr
slices), so a dask- or zarr-backed layer is never computed whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..outputs import OUTPUTS
from ._display import display_maps, display_range
from ._geometry import Geometry, in_layer_units
from ._planes import plane_on_screen, plane_words

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "METADATA_KEY",
    "NORMALIZATIONS",
    "SCOPES",
    "Geometry",
    "InputPlan",
    "choose_level",
    "layer_data_tuples",
    "level_factors",
    "normalization_for",
    "offered_layers",
    "output_names",
    "plan_for_layer",
    "plan_input",
]

#: What to colour: the plane on screen, or every plane of the layer.
SCOPES = ("current slice", "whole stack")
#: Widget label -> meaning; see :func:`normalization_for`.
NORMALIZATIONS = ("contrast limits", "data type range", "percentile", "min-max")
#: A multiscale level is used in memory only if one of its planes has at most this many pixels.
DEFAULT_MAX_PIXELS = 4096 * 4096
#: Key of the layer metadata that marks (and describes) this plugin's outputs.
METADATA_KEY = "napari_colorize"

LayerDataTuple = tuple[Any, dict[str, Any], str]


@dataclass(frozen=True)
class InputPlan:
    """What to colour.

    Attributes
    ----------
    array : array-like, shape (..., Y, X)
        A lazy view of the part to colour (not computed): leading axes of size 1 for
        "current slice".
    geometry : Geometry
        Where the outputs go so that they overlay the source exactly.
    level : int
        Multiscale level used (0 for single-scale layers).
    index : tuple of int
        The leading-axis indices (at ``level``) of the slice; ``()`` for whole stacks and 2D.
    displayed : tuple of int
        Leading-axis indices, into ``array``, of the plane the viewer shows now (a lazy
        output computes it first, so napari finds it ready).
    stack : array-like, shape (..., Y, X)
        The whole layer at ``level`` (lazy), which ``array`` is cut from: hints on all
        planes have their fields computed on their own planes of it.
    """

    array: Any
    geometry: Geometry
    level: int = 0
    index: tuple[int, ...] = ()
    displayed: tuple[int, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)
    stack: Any = None

    def describe(self) -> str:
        """A one-line summary for the status bar."""
        where = f" of {self.plane_words()}" if self.index else ""
        level = f", multiscale level {self.level}" if self.level else ""
        return f"{'x'.join(map(str, self.array.shape))} pixels{where}{level}"

    def level_words(self) -> str:
        """The multiscale level coloured, for a person: "multiscale level 1 (2100 x 2100 pixels)"; "" at level 0."""
        return f"multiscale level {self.level} ({' x '.join(map(str, self.array.shape[-2:]))} pixels)" if self.level else ""

    def plane_words(self) -> str:
        """The plane coloured, as a person reads it ("plane 3", "plane z 3"; :func:`._planes.plane_words`)."""
        return plane_words(self.index, self.geometry.axis_labels)


def output_names(source_name: str) -> dict[str, str]:
    """Result field -> output layer name, e.g. ``{"rgb": "cells colorized", ...}``."""
    return {o.name: f"{source_name} {o.layer_name}" for o in OUTPUTS}


def choose_level(plane_shapes: Sequence[tuple[int, int]], max_pixels: int = DEFAULT_MAX_PIXELS) -> int:
    """The finest multiscale level whose (Y, X) plane has at most ``max_pixels`` pixels.

    Parameters
    ----------
    plane_shapes : sequence of (int, int)
        The (Y, X) shape of each level, finest (level 0) first.
    max_pixels : int
        Pixel budget of one plane (the outputs take 20 bytes per pixel in memory).

    Returns
    -------
    int
        The level index; the coarsest level if none fits.
    """
    for level, (ny, nx) in enumerate(plane_shapes):
        if ny * nx <= max_pixels:
            return level
    return len(plane_shapes) - 1


def _level_factors(shape0: Sequence[int], shape: Sequence[int]) -> np.ndarray:
    """Per-axis downsampling of a level relative to level 0 (napari's convention)."""
    return np.asarray(shape0, float) / np.asarray(shape, float)


def plan_input(levels: Sequence[Any], geometry: Geometry, data_position: Sequence[float], scope: str,
               output: str = "in memory", max_pixels: int = DEFAULT_MAX_PIXELS) -> InputPlan:
    """Decide which pixels of a layer to colour, without reading any.

    Parameters
    ----------
    levels : sequence of array-like
        The layer's data: one array, or the levels of a multiscale layer (finest first).
        Shapes are ``(..., Y, X)``; the last two axes are the image plane.
    geometry : Geometry
        The source layer's transform, axis labels and units (level 0).
    data_position : sequence of float
        The viewer's current position in the layer's level-0 data coordinates
        (``layer.world_to_data(viewer.dims.point)``); only its leading axes are used.
    scope : {"current slice", "whole stack"}
        "current slice" colours the (Y, X) plane at ``data_position``.
    output : {"in memory", "lazy", "zarr file"}
        For multiscale layers, "zarr file" always uses level 0 (it streams to disk);
        the others use the finest level whose plane fits ``max_pixels``.
    max_pixels : int
        See :func:`choose_level`.

    Returns
    -------
    InputPlan
    """
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; choose one of {SCOPES}")
    shape0 = tuple(levels[0].shape)
    if len(shape0) < 2:
        raise ValueError(f"the layer has shape {shape0}; napari-colorize needs at least 2 axes (Y, X)")
    lead = len(shape0) - 2
    notes: list[str] = []
    level = 0
    if len(levels) > 1 and output != "zarr file":
        level = choose_level([tuple(lv.shape[-2:]) for lv in levels], max_pixels)
        if level:
            y, x = levels[level].shape[-2:]
            notes.append(f"level 0 is over {max_pixels / 1e6:.3g} MP a plane; colouring level {level} ({y} x {x} pixels)")
    array = levels[level]
    factors = _level_factors(shape0, array.shape)
    scale = np.asarray(geometry.scale, float) * factors
    index: tuple[int, ...] = ()
    # The plane napari shows at this level (its rule, also half-way between two planes).
    shown = plane_on_screen(np.asarray(data_position, float)[-len(shape0):][:lead] / factors[:lead],
                            array.shape[:lead])
    if scope == "current slice" and lead:
        index = shown
        array = array[tuple(slice(i, i + 1) for i in index)]
        shown = (0,) * lead
    # The one plane keeps its world position (through the source's scale, shear and rotation).
    out_geometry = geometry.shifted(scale, (*index, 0, 0) if index else np.zeros(len(shape0)))
    return InputPlan(array=array, geometry=out_geometry, level=level, index=index, displayed=shown,
                     notes=tuple(notes), stack=levels[level])


def plan_for_layer(layer: Any, world_point: Sequence[float], scope: str, output: str = "in memory",
                   world_units: Sequence[Any] | None = None) -> InputPlan:
    """:func:`plan_input` for a napari Image layer at the viewer's position ``world_point``
    (``viewer.dims.point``, in ``world_units``: ``viewer.dims.units``; None: the layer's own)."""
    levels = list(layer.data) if layer.multiscale else [layer.data]
    position = layer.world_to_data(in_layer_units(layer, world_point, world_units))
    return plan_input(levels, Geometry.of_layer(layer), position, scope, output)


def level_factors(layer: Any, level: int) -> np.ndarray:
    """Per data axis, how many level-0 pixels one pixel of ``level`` spans (ones for single-scale layers)."""
    if not layer.multiscale:
        return np.ones(layer.ndim)
    shapes = layer.level_shapes
    return _level_factors(shapes[0], shapes[level])


def offered_layers(layers: Any) -> list[Any]:
    """The layers the widget can colour, top first: single-channel Image layers, not our outputs
    (RGB(A) layers are in colour already)."""
    from napari.layers import Image

    return [layer for layer in reversed(layers)
            if isinstance(layer, Image) and not layer.rgb and METADATA_KEY not in layer.metadata]


def normalization_for(choice: str, contrast_limits: Sequence[float] | None = None
                      ) -> tuple[str | None, tuple[float, float] | None]:
    """Widget choice -> ``(normalize, limits)`` for :func:`napari_colorize.inputs.to_unit_float`.

    Parameters
    ----------
    choice : {"contrast limits", "data type range", "percentile", "min-max"}
        "contrast limits" maps the layer's displayed range to [0, 1], so the model sees
        what the user sees, the same for every slice and without reading the data.
    contrast_limits : (float, float), optional
        The layer's contrast limits (needed for "contrast limits").
    """
    if choice == "contrast limits":
        if contrast_limits is None:
            raise ValueError("normalisation 'contrast limits' needs the layer's contrast limits")
        lo, hi = (float(v) for v in contrast_limits)
        if not hi > lo:
            raise ValueError(f"the layer's contrast limits ({lo:g}, {hi:g}) are empty; widen them or choose "
                             "another normalisation")
        return "minmax", (lo, hi)
    if choice == "data type range":
        return None, None
    if choice == "percentile":
        return "percentile", None
    if choice == "min-max":
        return "minmax", None
    raise ValueError(f"unknown normalisation {choice!r}; choose one of {NORMALIZATIONS}")


def layer_data_tuples(result: Any, source_name: str, geometry: Geometry, info: dict[str, Any] | None = None,
                      pyramid_from: int | None = None) -> list[LayerDataTuple]:
    """The output layers as napari layer data tuples ``(data, kwargs, "image")``, ready to show.

    Call it in the worker thread: the colour image is converted to uint8 and large
    in-memory planes get a pyramid here (:mod:`._display`), not on the GUI thread.

    Parameters
    ----------
    result : ColorizeResult
        ``rgb`` (..., Y, X, 3) and the maps (..., Y, X), numpy, dask or zarr arrays
        with values in [0, 1] (or uint8 colour), or lists of such levels (a store's
        pyramid); an output that is None (not written) gets no layer.
    source_name : str
        The source layer's name; outputs are called ``"<name> colorized"`` etc.
    geometry : Geometry
        Of the colourised part (see :func:`plan_input`).
    info : dict, optional
        Stored in each layer's ``metadata["napari_colorize"]`` (settings, model).
    pyramid_from : int, optional
        In-memory planes with a side above this are shown as a multiscale pyramid
        (default :data:`._display.PYRAMID_FROM`).

    Returns
    -------
    list of tuple
        One per output of :data:`napari_colorize.outputs.OUTPUTS`, the maps first and
        the colour image last, so that it ends on top.  Contrast limits are given
        (0-255 for the uint8 colour image, 0-1 for the maps) so napari never scans the data.
    """
    names = output_names(source_name)
    shown = display_maps(result.maps, pyramid_from)
    tuples: list[LayerDataTuple] = []
    for output in reversed(OUTPUTS):
        levels = shown.get(output.name)
        if levels is None:
            continue
        kwargs: dict[str, Any] = {
            "name": names[output.name], "contrast_limits": display_range(levels[0].dtype),
            "multiscale": len(levels) > 1,
            "metadata": {METADATA_KEY: {"source": source_name, **(info or {}), "output": output.name}},
            **geometry.as_kwargs()}
        if output.is_rgb:
            kwargs["rgb"] = True
        else:
            kwargs["colormap"] = output.colormap
        tuples.append((levels if len(levels) > 1 else levels[0], kwargs, "image"))
    return tuples
