"""Guided colour in the widget: the reference and hints fields, and live re-colour.

The user picks an RGB Image layer as the reference and a Points layer as the hints:
each point's face colour is the colour wanted there.  Points are placed in the Points
layer's own data space; :func:`hint_points` carries them through the world into the
gray layer's data coordinates, and :func:`plan_hints` into those of the array that is
coloured (a multiscale level, one plane of a stack), which is what the engine checks
and uses.  The checks and their messages are the guidance module's, as in the API.

While a result of the gray layer is shown, editing the hints re-colours it after a
short pause (:data:`LIVE_DELAY_MS`, restarted at each change, so dragging a point or
adding several runs once), if what would be coloured is small enough to be quick
(:data:`LIVE_MAX_PIXELS`); the widget then runs exactly what Run would.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox

from ..guidance import DEFAULT_HINT_RANGE, DEFAULT_REFERENCE_STRENGTH
from ..outputs import OUTPUTS
from ._geometry import in_layer_units, in_world_units
from ._layers import METADATA_KEY, level_factors
from ._planes import nearest_plane, plane_on_screen
from ._runner import Guide

__all__ = ["LIVE_DELAY_MS", "LIVE_MAX_PIXELS", "PRESS_RUN", "REFERENCE_READ_PIXELS", "GuidanceFields", "guide_key",
           "active_hints", "hint_points", "live_blocker", "plan_hints", "points_layers", "reference_array", "reference_layers"]

#: Live re-colour only when what would be coloured has at most this many pixels: a
#: 1024 x 1024 plane is re-coloured in ~0.4 s on two CPU cores once the network's histograms
#: are cached (``benchmarks/bench_guided.py --parts cost``), ~0.7 s with the pause.
LIVE_MAX_PIXELS = 1024 * 1024
#: Pause after the last change of the hints before re-colouring.
LIVE_DELAY_MS = 300
#: A larger reference is read with a regular stride: only its colour distribution is used
#: (the engine samples at most a few times guidance.reference.REFERENCE_PIXELS of them anyway).
REFERENCE_READ_PIXELS = 2048 * 2048
PRESS_RUN = "press Run to apply the hints"
#: The output whose layer records how the shown result was made (the colour; maps may be deleted).
_COLOUR = next(o.name for o in OUTPUTS if o.is_rgb)
#: The hint range field's lowest value, shown as "auto": the engine's default range for the image.
AUTO_RANGE = 0.0
#: The Points layer events that change the hints (where, which colour, the layer's transform).
HINT_EVENTS = ("data", "face_color", "current_face_color", "scale", "translate", "rotate", "shear", "affine")
NONE = ("none", None)


def reference_layers(layers: Any) -> list[Any]:
    """Image layers in colour (``rgb``), top first, not our own results: the references on offer."""
    from napari.layers import Image

    return [layer for layer in reversed(layers)
            if isinstance(layer, Image) and layer.rgb and METADATA_KEY not in layer.metadata]


def points_layers(layers: Any) -> list[Any]:
    """Points layers, top first: the hints on offer."""
    from napari.layers import Points

    return [layer for layer in reversed(layers) if isinstance(layer, Points)]


def _plane_index(layer: Any, level: int, world_point: Sequence[float],
                 world_units: Sequence[Any] | None = None) -> tuple[int, ...]:
    """Leading-axis index (at ``level``) of the plane of ``layer`` at the viewer's position
    (``viewer.dims.point`` in ``viewer.dims.units``; None: in the layer's own units)."""
    lead = layer.ndim - 2
    if lead <= 0:
        return ()
    data = layer.world_to_data(in_layer_units(layer, world_point, world_units))
    pos = np.asarray(data, float)[:lead] / level_factors(layer, level)[:lead]
    return plane_on_screen(pos, (layer.data[level] if layer.multiscale else layer.data).shape[:lead])


def reference_array(layer: Any, world_point: Sequence[float], world_units: Sequence[Any] | None = None) -> Any:
    """The reference image ``(H, W, 3|4)`` of an RGB layer, not read yet when it is in memory.

    A multiscale layer gives its coarsest level, a stack the plane on screen, and a plane
    above :data:`REFERENCE_READ_PIXELS` a regular subsample (a view).
    """
    level = len(layer.data) - 1 if layer.multiscale else 0
    data = layer.data[level] if layer.multiscale else layer.data
    plane = data[_plane_index(layer, level, world_point, world_units)]
    h, w = plane.shape[:2]
    step = max(1, int(np.ceil(np.sqrt(h * w / REFERENCE_READ_PIXELS))))
    return plane[::step, ::step] if step > 1 else plane


def _affine(fn: Callable[[np.ndarray], Any], ndim: int) -> tuple[np.ndarray, np.ndarray]:
    """``fn`` as ``x -> A @ x + b``: napari's layer transforms are affine, so ndim + 1 calls
    convert any number of points (a call per point would be slow for thousands)."""
    b = np.asarray(fn(np.zeros(ndim)), float)
    a = np.stack([np.asarray(fn(e), float) - b for e in np.eye(ndim)], axis=1)
    return a, b


def hint_points(points_layer: Any, image_layer: Any, world_point: Sequence[float],
                world_units: Sequence[Any] | None = None) -> np.ndarray:
    """The points of ``points_layer`` in ``image_layer``'s (level-0) data coordinates, ``(N, image.ndim)``.

    Each point goes data -> world through the Points layer's transform, and world -> data
    through the image's, each layer's world in its own units converted through the viewer's
    (``world_units``: ``viewer.dims.units``; None: all the same).  World axes the Points layer
    lacks (2D points over a stack) are those of the viewer's position ``world_point``: such a
    point lies on the plane on screen.
    """
    world = np.asarray(world_point, float)

    def to_image(p: np.ndarray) -> np.ndarray:
        full = world.copy()
        placed = in_world_units(points_layer, points_layer.data_to_world(p), world_units)
        full[len(full) - len(placed):] = placed
        return np.asarray(image_layer.world_to_data(in_layer_units(image_layer, full, world_units)), float)

    data = np.asarray(points_layer.data, float).reshape(-1, points_layer.ndim)
    a, b = _affine(to_image, points_layer.ndim)
    return data @ a.T + b


def active_hints(points_layer: Any) -> np.ndarray:
    """Which points are hints: those napari draws, i.e. shown (``layer.shown``) and with a
    face colour that is not fully transparent.  A point hidden either way is not a hint."""
    colours = np.asarray(points_layer.face_color, float)
    opaque = colours[:, 3] > 0 if colours.ndim == 2 and colours.shape[1] == 4 else np.ones(len(colours), bool)
    return np.asarray(points_layer.shown, bool).reshape(-1) & opaque


def plan_hints(points: np.ndarray, colours: np.ndarray, plan: Any, factors: np.ndarray,
               all_planes: bool, active: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Hints as the engine takes them for ``plan``.

    Each point's plane is the one napari shows it on (:func:`._planes.nearest_plane`), so
    the engine's own rounding of it never disagrees.  Points are in the coordinates of
    ``plan.array`` (what is coloured), except for one plane of a stack with hints on all
    planes: they keep their planes, in ``plan.stack``'s coordinates, for each field to be
    computed on its own plane as in a run of the whole stack (:class:`._runner.Guide`'s
    ``hint_stack``).

    Parameters
    ----------
    points : array (N, ndim)
        In the gray layer's level-0 data coordinates (:func:`hint_points`).
    colours : array (N, 3|4)
        RGB(A) in [0, 1], one per point.
    plan : napari_colorize._qt._layers.InputPlan
        Its level and, for one plane of a stack ("current slice"), the plane's index.
    factors : array (ndim,)
        Level-0 pixels per pixel of ``plan.level`` (:func:`._layers.level_factors`).
    all_planes : bool
        Hints colour every plane ("all"): on one plane they count wherever they were placed.
    active : array of bool (N,), optional
        The points that are hints (:func:`active_hints`); default all.  The others are left
        out, and the points keep their numbers in messages.

    Raises
    ------
    ValueError
        When points exist but none is active, one plane of a stack is coloured and none
        of the points lies on it, or a point used lies outside the image.
    """
    points = np.asarray(points, float) / factors
    if not len(points):
        return points, colours
    used = np.ones(len(points), bool) if active is None else np.asarray(active, bool)
    if not used.any():
        which, them = ("the hint point is", "it") if len(points) == 1 else (f"all {len(points)} hint points are", "them")
        raise ValueError(f"{which} hidden or fully transparent: show {them}, or give {them} "
                         "a face colour that is not transparent, in the Points layer")
    lead = points.shape[1] - 2
    points[:, :lead] = nearest_plane(points[:, :lead])
    one_plane = bool(plan.index) and not all_planes
    if one_plane:
        used = used & (points[:, :lead] == np.asarray(plan.index)).all(axis=1)
        if not used.any():
            which = "the hint does not lie" if len(points) == 1 else f"none of the {len(points)} hints lies"
            raise ValueError(f"{which} on {plan.plane_words()}, the plane on screen; add points "
                             "on this plane, tick 'hints on all planes', or colour the whole stack")
    _check_inside(points, used, tuple((plan.array if plan.stack is None else plan.stack).shape))
    points, colours = points[used], np.asarray(colours)[used]
    if one_plane:
        points[:, :lead] -= np.asarray(plan.index, float)  # the plan's array holds that one plane
    return points, colours


def _check_inside(points: np.ndarray, used: np.ndarray, shape: tuple[int, ...]) -> None:
    """Say which point of the layer lies outside the image, counted as napari lists them (from 1).

    The engine would refuse it too, but by its index among the points it was given and
    in the pixels of what is coloured, neither of which the user can find in the viewer.
    """
    index = np.floor(points + 0.5)  # the engine's pixel of a point (its planes are whole already)
    outside = used & ((index < 0) | (index >= np.asarray(shape))).any(axis=1)
    if outside.any():
        numbers = [str(i + 1) for i in np.flatnonzero(outside)]
        which = (f"point {numbers[0]}" if len(numbers) == 1 else
                 f"points {', '.join(numbers[:5])}{', …' if len(numbers) > 5 else ''} ({len(numbers)})")
        raise ValueError(f"hint {which} of {len(points)} {'lies' if len(numbers) == 1 else 'lie'} outside the "
                         f"image: move or delete {'it' if len(numbers) == 1 else 'them'} in the Points layer")


def guide_key(guide: Guide | None) -> bytes:
    """A fingerprint of the hints a run uses: live re-colour skips edits that change nothing
    (e.g. picking the colour of the next point)."""
    digest = hashlib.sha1()
    if guide is not None and guide.hints is not None:
        for part in guide.hints:
            digest.update(np.ascontiguousarray(part, np.float64).tobytes())
        digest.update(f"{guide.hint_range}|{guide.hint_planes}".encode())
    return digest.digest()


def live_blocker(outputs: Sequence[Any], settings_info: dict[str, Any], plan: Any, name: str) -> str | None:
    """Why a change of the hints cannot re-colour the shown result of ``name`` at once, or None.

    A live re-colour replaces the shown outputs without a word, so they must have been made
    with the panel's choices now (settings, scope and multiscale level, as their colour
    layer records them): after the scope was switched to "current slice", an edited hint
    must not swap a whole-stack result (minutes of work) for one plane.  Another plane of
    "current slice" is the same kind, Run would replace it too.  And it must be quick:
    small enough, and not a file (a zarr store of another job is never replaced).
    """
    colour = next((o for o in outputs if o.metadata[METADATA_KEY].get("output") == _COLOUR), outputs[0])
    made = colour.metadata[METADATA_KEY]
    if (made.get("settings") != settings_info or made.get("level") != plan.level
            or bool(made.get("index")) != bool(plan.index)):
        return f"the result of {name} on screen was made with other choices than the panel's now: {PRESS_RUN}"
    if settings_info["output"] == "zarr file" or int(np.prod(plan.array.shape)) > LIVE_MAX_PIXELS:
        return f"{plan.describe()}: {PRESS_RUN}"
    return None


class GuidanceFields:
    """The widget's guidance fields and what follows the chosen layers.

    Parameters
    ----------
    viewer : napari.Viewer
    on_change : callable
        Called at every change of a guidance choice or of the chosen layers (re-checks Run).
    on_hints_edited : callable
        Called :data:`LIVE_DELAY_MS` after the hints last changed (live re-colour).
    """

    def __init__(self, viewer: Any, on_change: Callable[[], None], on_hints_edited: Callable[[], None]) -> None:
        from qtpy.QtCore import QTimer

        self._viewer = viewer
        self._on_change = on_change
        self._watched: list[tuple[Any, Callable[..., None]]] = []
        self._white_noted: set[Any] = set()  # Points layers already told their hints are all white
        self.reference = ComboBox(label="reference", choices=self._reference_choices,
                                  tooltip="an RGB image layer of similar content: its colours guide the result")
        self.reference_strength = FloatSpinBox(
            label="reference strength", value=DEFAULT_REFERENCE_STRENGTH, min=0.0, max=10.0, step=0.1,
            tooltip=f"0 ignores the reference; {DEFAULT_REFERENCE_STRENGTH:g} is the calibrated default")
        self.hints = ComboBox(label="hints", choices=self._hint_choices,
                              tooltip="a Points layer: each point's face colour is the colour wanted there")
        low, high = DEFAULT_HINT_RANGE
        self.hint_range = FloatSpinBox(label="hint range", value=AUTO_RANGE, min=AUTO_RANGE, max=1e5, step=16.0,
                                       tooltip="how far a hint reaches, in pixels along similar content; auto: "
                                               f"the image's long side, {low:g} to {high:g}")
        self.hint_range.native.setSpecialValueText("auto")  # shown at the minimum: the engine's default
        self.all_planes = CheckBox(text="hints on all planes", value=False,
                                   tooltip="each hint colours every plane of the stack, not only its own")
        self.live = CheckBox(text="live hints", value=True,
                             tooltip="re-colour the shown result when the points change (images up to "
                                     f"{LIVE_MAX_PIXELS} pixels; larger: press Run)")
        # A child of a field's Qt widget: it goes with the dock, and never fires into a deleted one.
        self.timer = QTimer(self.live.native)
        self.timer.setSingleShot(True)  # restarted at each change: one re-colour after the last
        self.timer.setInterval(LIVE_DELAY_MS)
        self.timer.timeout.connect(on_hints_edited)
        for widget in (self.reference, self.reference_strength, self.hints, self.hint_range, self.all_planes):
            widget.changed.connect(self._changed)
        for widget in (self.hints, self.hint_range, self.all_planes):
            widget.changed.connect(self._hints_edited)
        self.reference.changed.connect(self._watch)
        self.hints.changed.connect(self._watch)
        self.live.native.destroyed.connect(self._unwatch)  # a closed dock no longer follows the layers

    @property
    def widgets(self) -> list[Any]:
        """The fields, in their order on screen."""
        return [self.reference, self.reference_strength, self.hints, self.hint_range, self.all_planes, self.live]

    def _reference_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return [NONE, *((layer.name, layer) for layer in reference_layers(self._viewer.layers))]

    def _hint_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return [NONE, *((layer.name, layer) for layer in points_layers(self._viewer.layers))]

    def _changed(self, *_: Any) -> None:
        self._on_change()

    def _hints_edited(self, *_: Any) -> None:
        self._on_change()  # at once: the reason under Run follows every edit
        if self.live.value:
            self.timer.start()

    def _unwatch(self, *_: Any) -> None:
        for emitter, callback in self._watched:
            emitter.disconnect(callback)
        self._watched = []

    def close(self) -> None:
        """The widget was closed: no more live re-colour, and no longer follow the layers."""
        self.timer.stop()
        self._unwatch()

    def _watch(self, *_: Any) -> None:
        """Follow the chosen layers: the hints' points, colours and transform; the reference's data."""
        self._unwatch()
        if self.hints.value is not None:
            self._watched += [(getattr(self.hints.value.events, name), self._hints_edited) for name in HINT_EVENTS]
        if self.reference.value is not None:
            self._watched.append((self.reference.value.events.data, self._changed))
        for emitter, callback in self._watched:
            emitter.connect(callback)

    def note_white_hints(self, guide: Guide | None) -> None:
        """When a job starts, once per Points layer: every hint white, napari's colour for new
        points, is more often an oversight than the colour wanted (white is used as asked)."""
        layer, hints = self.hints.value, getattr(guide, "hints", None)
        if layer is None or hints is None or not len(hints[1]) or layer.unique_id in self._white_noted:
            return
        if np.allclose(np.asarray(hints[1], float)[:, :3], 1.0):
            from napari.utils.notifications import show_warning

            self._white_noted.add(layer.unique_id)
            show_warning(f"napari-colorize: all {len(hints[1])} hints of {layer.name!r} are white, napari's colour "
                         "for new points; if you meant other colours, select the points and set their face colour")

    def sync_visibility(self, image: Any) -> None:
        """Show a field only where it matters: the strength with a reference, hint options with hints."""
        self.reference_strength.visible = self.reference.value is not None
        has_hints = self.hints.value is not None
        self.hint_range.visible = self.live.visible = has_hints
        self.all_planes.visible = has_hints and image is not None and image.ndim > 2

    def guide(self, image: Any, plan: Any) -> Guide | None:
        """The guidance for a run of ``plan`` on ``image`` (None without reference and hints).

        Raises ``ValueError`` when no hint lies on the plane coloured (:func:`plan_hints`);
        the other checks are :func:`._validation.check_guide`'s.
        """
        reference, points_layer = self.reference.value, self.hints.value
        if reference is None and points_layer is None:
            return None
        point, units = self._viewer.dims.point, self._viewer.dims.units
        all_planes = bool(self.all_planes.value) and image.ndim > 2
        hints = None
        if points_layer is not None:
            hints = plan_hints(hint_points(points_layer, image, point, units), np.asarray(points_layer.face_color, float),
                               plan, level_factors(image, plan.level), all_planes, active_hints(points_layer))
        # One plane of a stack, hints on all planes: each field on its own plane of the stack.
        hint_stack = plan.stack if all_planes and hints is not None and plan.index else None
        strength = float(self.reference_strength.value)
        hint_range = float(self.hint_range.value)
        # Only what acts: the engine says so when a tuning option comes without its guidance.
        return Guide(reference=None if reference is None else reference_array(reference, point, units),
                     reference_strength=None if reference is None or strength == DEFAULT_REFERENCE_STRENGTH
                     else strength,
                     hints=hints, hint_range=None if hints is None or hint_range == AUTO_RANGE else hint_range,
                     hint_planes="all" if all_planes and hints is not None else "own", hint_stack=hint_stack)
