"""From a napari Image layer to the engine's input, and from its result to layers.

Pure logic, no Qt: what part of a layer to colour (the displayed slice, the whole
stack, which multiscale level), where the outputs sit in the world (scale, translate,
rotation, shear, affine, axis labels, units copied from the source, :mod:`._geometry`, so
the layers overlay exactly), and how
three output layers are created or updated in place.  The widget in ``_widget.py``
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
from ._geometry import Geometry
from ._planes import plane_on_screen, plane_words

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "METADATA_KEY",
    "NORMALIZATIONS",
    "SCOPES",
    "Geometry",
    "InputPlan",
    "apply_layer_data",
    "choose_level",
    "layer_data_tuples",
    "layer_id",
    "level_factors",
    "normalization_for",
    "offered_layers",
    "output_names",
    "outputs_of",
    "place_layer",
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


def plan_for_layer(layer: Any, world_point: Sequence[float], scope: str, output: str = "in memory") -> InputPlan:
    """:func:`plan_input` for a napari Image layer at the viewer's position ``world_point``."""
    levels = list(layer.data) if layer.multiscale else [layer.data]
    return plan_input(levels, Geometry.of_layer(layer), layer.world_to_data(world_point), scope, output)


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


def _ours(layer: Any) -> bool:
    """Whether a layer is an output of this plugin (never touch the user's own layers)."""
    return layer.__class__.__name__ == "Image" and METADATA_KEY in layer.metadata


def _same_source(old: dict[str, Any], new: dict[str, Any], live: set[str]) -> bool:
    """Whether an output's metadata ``old`` names the source ``new`` names: by the source
    layer's unique id while that layer is in the viewer (``live``; the id survives renaming
    it), else by name (outputs made before ids were kept, or of a layer since removed).
    Layers the reader opened from a store (``store`` in their metadata) are that store's,
    never a run's: a run of their source layer adds its own beside them."""
    if old.get("store") != new.get("store"):
        return False
    if old.get("source_id") in live and new.get("source_id"):
        return old["source_id"] == new["source_id"]
    return old.get("source") == new.get("source")


def layer_id(layer: Any) -> str | None:
    """A layer's unique id as text (napari's is a UUID), so output metadata stays JSON-friendly."""
    unique_id = getattr(layer, "unique_id", None)
    return str(unique_id) if unique_id else None


def _live_ids(layers: Any) -> set[str]:
    return {unique for unique in map(layer_id, layers) if unique}


def _find_output(layers: Any, meta: dict[str, Any]) -> Any:
    """Our earlier output of the same source and kind, found by metadata (not by name,
    which the user may have given to a layer of their own)."""
    live = _live_ids(layers)
    for layer in layers:
        if _ours(layer):
            old = layer.metadata[METADATA_KEY]
            if _same_source(old, meta, live) and old.get("output") == meta.get("output"):
                return layer
    return None


def outputs_of(layers: Any, source: Any) -> list[Any]:
    """This plugin's output layers of the layer ``source`` that are in ``layers``."""
    key, live = {"source": source.name, "source_id": layer_id(source)}, _live_ids(layers)
    return [layer for layer in layers if _ours(layer) and _same_source(layer.metadata[METADATA_KEY], key, live)]


def _slot_below_siblings(layers: Any, meta: dict[str, Any]) -> int | None:
    """Where a new output goes among its source's shown outputs: below those a run draws above
    it (a map the user deleted, made again, must not cover the colour).  None: on top."""
    names = [o.name for o in OUTPUTS]
    above = set(names[:names.index(meta["output"])]) if meta.get("output") in names else set()
    live = _live_ids(layers)
    slots = [i for i, layer in enumerate(layers) if _ours(layer) and layer.metadata[METADATA_KEY].get("output") in above
             and _same_source(layer.metadata[METADATA_KEY], meta, live)]
    return min(slots) if slots else None


def _replaceable(layer: Any, data: Any, kwargs: dict[str, Any]) -> bool:
    """Whether an existing output layer can take new data in place (same kind, dtype and ndim).

    Multiscale layers are replaced instead: their levels cannot be swapped in place.
    """
    return (_ours(layer) and bool(layer.rgb) == bool(kwargs.get("rgb", False)) and not layer.multiscale
            and not kwargs.get("multiscale", False) and np.dtype(layer.dtype) == np.dtype(data.dtype)
            and layer.ndim == np.ndim(data) - (1 if kwargs.get("rgb") else 0))


#: What a user may have changed on an output layer and a re-run keeps.
KEPT = ("visible", "opacity", "blending")


def place_layer(layers: Any, data: Any, kwargs: dict[str, Any], hidden: bool = False) -> tuple[Any, bool]:
    """Add one output layer to a viewer's layer list, or update our earlier one.

    The layer this plugin made earlier for the same source and output (marked in its
    metadata; a user's layer of the same name is left alone) gets the new data,
    transform, contrast limits and metadata in place; if it cannot (another ndim,
    dtype, or a pyramid), a new layer takes its position, visibility, opacity and
    blending.  Otherwise a new layer is added (:func:`_slot_below_siblings` says where).

    Parameters
    ----------
    layers : napari.components.LayerList
        ``viewer.layers``.
    data, kwargs
        One tuple of :func:`layer_data_tuples` (without the layer type).
    hidden : bool
        Insert a new layer invisible, for the caller to show it one event-loop turn
        later (with the returned visibility): creating the layer's controls and
        uploading its texture then freeze the viewer in two short turns, not one long.

    Returns
    -------
    layer : napari.layers.Image
    visible : bool
        The visibility the layer should have (the user's, for a replaced layer).
    """
    from napari.layers import Image

    existing = _find_output(layers, kwargs["metadata"][METADATA_KEY])
    if existing is not None and _replaceable(existing, data, kwargs):
        old = existing.metadata[METADATA_KEY]
        if existing.name == output_names(old.get("source", "")).get(old.get("output")):
            existing.name = kwargs["name"]  # its source was renamed; a name the user gave stays
        existing.data = data
        for attr in ("scale", "translate", "rotate", "shear", "affine", "contrast_limits", "metadata", "axis_labels",
                     "units"):
            if attr in kwargs:
                setattr(existing, attr, kwargs[attr])
        return existing, bool(existing.visible)
    kept = {attr: getattr(existing, attr) for attr in KEPT} if existing is not None else {"visible": True}
    layer = Image(data, **{**kwargs, **kept, **({"visible": False} if hidden else {})})
    if existing is not None:  # our earlier output, but of another kind: take its place
        position = layers.index(existing)
        layers.remove(existing)
        layers.insert(position, layer)
    elif (slot := _slot_below_siblings(layers, kwargs["metadata"][METADATA_KEY])) is not None:
        layers.insert(slot, layer)
    else:
        layers.append(layer)
    return layer, bool(kept["visible"])


def apply_layer_data(layers: Any, tuples: Sequence[LayerDataTuple]) -> list[Any]:
    """:func:`place_layer` for every tuple, visible at once; returns the layers in the order of ``tuples``."""
    return [place_layer(layers, data, kwargs)[0] for data, kwargs, _ in tuples]
