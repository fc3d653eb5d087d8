"""Where a run's output layers go in the viewer's layer list: our earlier outputs of the same
source are found by their metadata and updated in place (a layer the user renamed is theirs
and is kept), new ones are slotted below the outputs drawn above them and below the colour
hints, so that a Points layer of hints stays visible and draggable over the result.

Pure logic on napari's layer list, no Qt widgets.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..outputs import OUTPUTS
from ._layers import METADATA_KEY, LayerDataTuple, output_names

__all__ = ["apply_layer_data", "layer_id", "outputs_of", "place_layer"]


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
    which the user may have given to a layer of their own), unless the user renamed it:
    renaming a result is how napari users keep it, so the next run adds its own."""
    live = _live_ids(layers)
    for layer in layers:
        if _ours(layer):
            old = layer.metadata[METADATA_KEY]
            if (_same_source(old, meta, live) and old.get("output") == meta.get("output")
                    and _named_as_made(layer.name, old)):
                return layer
    return None


def _named_as_made(name: str, meta: dict[str, Any]) -> bool:
    """Whether an output still has the name it was given: the one recorded when it was placed
    (napari may have added " [1]"), or for outputs of earlier versions the one made from its
    source's name, with any such suffix."""
    if "layer_name" in meta:
        return name == meta["layer_name"]
    given = output_names(meta.get("source", "")).get(meta.get("output"))
    return given is not None and re.fullmatch(re.escape(given) + r"( \[\d+\])?", name) is not None


def outputs_of(layers: Any, source: Any) -> list[Any]:
    """This plugin's output layers of the layer ``source`` that are in ``layers``."""
    key, live = {"source": source.name, "source_id": layer_id(source)}, _live_ids(layers)
    # Not one the user renamed to keep: the next run makes its own (what live re-colouring checks).
    return [layer for layer in layers if _ours(layer) and _same_source(layer.metadata[METADATA_KEY], key, live)
            and _named_as_made(layer.name, layer.metadata[METADATA_KEY])]


def _slot_below_siblings(layers: Any, meta: dict[str, Any]) -> int | None:
    """Where a new output goes among its source's shown outputs: below those a run draws above
    it (a map the user deleted, made again, must not cover the colour).  None: on top."""
    names = [o.name for o in OUTPUTS]
    above = set(names[:names.index(meta["output"])]) if meta.get("output") in names else set()
    live = _live_ids(layers)
    slots = [i for i, layer in enumerate(layers) if _ours(layer) and layer.metadata[METADATA_KEY].get("output") in above
             and _same_source(layer.metadata[METADATA_KEY], meta, live)
             and _named_as_made(layer.name, layer.metadata[METADATA_KEY])]  # not among the ones kept
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
    metadata; a user's layer of the same name, or one of ours the user renamed, is left
    alone) gets the new data, transform and metadata in place; if it cannot (another ndim,
    dtype, or a pyramid), a new layer takes its position, visibility, opacity and
    blending.  Otherwise a new layer is added (:func:`_slot_below_siblings`, else
    :func:`_above_the_images` says where).

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
        if existing.name != kwargs["name"]:  # its source was renamed (one the user renamed is not found);
            existing.name = kwargs["name"]  # napari adds " [1]" again where the name is taken
        existing.data = data
        # Not the contrast limits: an output's range is fixed by its kind (0-255, 0-1), and a
        # user's own limits on a map survive a re-run, as its visibility and colormap do.
        for attr in ("scale", "translate", "rotate", "shear", "affine", "metadata", "axis_labels", "units"):
            if attr in kwargs:
                setattr(existing, attr, kwargs[attr])
        _record_name(existing)
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
        layers.insert(_above_the_images(layers, kwargs["metadata"][METADATA_KEY].get("source_id")), layer)
    _record_name(layer)
    return layer, bool(kept["visible"])


def _record_name(layer: Any) -> None:
    """Note the name the layer got (napari adds " [1]" to one taken): any other is the user's."""
    layer.metadata[METADATA_KEY]["layer_name"] = layer.name


def _above_the_images(layers: Any, source_id: str | None = None) -> int:
    """The slot just above the topmost image layer, but below the first points, shapes or labels
    layer above the source: such layers (the colour hints above all) stay above the result,
    visible and editable, even under an image opened after them (a reference)."""
    kinds = [layer.__class__.__name__ for layer in layers]
    slot = max((i + 1 for i, kind in enumerate(kinds) if kind == "Image"), default=len(layers))
    source = next((i for i, layer in enumerate(layers) if source_id and layer_id(layer) == source_id), None)
    if source is not None:
        above = [i for i in range(source + 1, len(layers)) if kinds[i] != "Image"]
        slot = min([slot, *above[:1]])
    return slot


def apply_layer_data(layers: Any, tuples: Sequence[LayerDataTuple]) -> list[Any]:
    """:func:`place_layer` for every tuple, visible at once; returns the layers in the order of ``tuples``."""
    return [place_layer(layers, data, kwargs)[0] for data, kwargs, _ in tuples]
