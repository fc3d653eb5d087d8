"""The Colorize dock widget (Plugins > napari-colorize > Colorize).

A thin magicgui front end: it gathers choices, keeps Run disabled (with the reason
under it) while they cannot run, hands the work to a napari ``thread_worker`` (so the
viewer stays responsive), shows progress in napari's activity dock and status bar, and
adds or updates the output layers.  What to colour and how outputs are laid out is in
:mod:`._layers`; how they are prepared for display in :mod:`._display`; the checks of
the choices in :mod:`._validation`; the engine call in :mod:`._runner`; the reference,
hints and live re-colour in :mod:`._guidance`.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, FloatSpinBox, PushButton, RadioButtons, SpinBox
from qtpy.QtCore import QTimer
from superqt.utils import ensure_main_thread

from ..devices import PRECISIONS
from . import _controls, _guidance, _layers, _persist, _placing, _runner, _status, _validation

if TYPE_CHECKING:
    import napari

__all__ = ["ColorizeWidget", "settings_path"]

MODEL_SOURCES = ("default", "from file")
#: Widgets whose values persist between sessions (paths are checked on load).
PERSISTED = ("model_source", "model_path", "method", "saturation", "device", "precision", "auto_tiling", "tile_size",
             "overlap", "normalization", "scope", "output", "zarr_path", "live_hints", "reference_strength",
             "hint_range", "hints_all_planes")
#: Pause between the steps of adding layers.  Not 0: Qt runs zero-delay timers before
#: due timers and redraws, so the steps would run back to back as one long freeze.
STEP_MS = 15
#: Quiet time after the last scroll through a stack before Run's reason is checked again.
DIMS_DEBOUNCE_MS = 150
#: How the reason Run is disabled stands out from the status line (readable on napari's themes).
REASON_STYLE = "color: #e6a23c;"


def settings_path() -> Path:
    """Where the widget keeps its choices (magicgui's per-user cache folder)."""
    return _persist.default_path()


class ColorizeWidget(Container):
    """Colorize a single-channel Image layer into three layers: colour, chroma confidence, hue entropy.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        Injected by napari when the widget is opened from the Plugins menu.
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        self._viewer = napari_viewer
        self.worker: Any = None
        self._adding = False
        self._cancel = threading.Event()
        self._progress: Any = None
        self._job: dict[str, Any] = {}
        self._watched: Any = None
        # The image and hints of the last result (live re-colour skips edits that change neither).
        self._shown_key: tuple[str, bytes] | None = None
        self.guidance = _guidance.GuidanceFields(napari_viewer, self._revalidate, self._recolour_live)
        self._blocker: str | None = _validation.LAYER_NEEDED  # why Run is disabled; None: it can run
        fields = self._make_fields()
        self.run_button = PushButton(text="Run")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.reason = _controls.wrapping_label()  # why Run is disabled
        self.reason.native.setStyleSheet(REASON_STYLE)
        self.status = _controls.wrapping_label()
        super().__init__(widgets=[
            *fields, Container(widgets=[self.run_button, self.cancel_button], layout="horizontal", labels=False),
            self.reason, self.status])
        self._closed = False  # the dock or the viewer was closed: nothing may touch the widgets
        self._load_settings()
        self._connect()
        self.reset_choices()
        self._sync_visibility()
        self._watch_layer()

    # -- fields ----------------------------------------------------------------------------

    def _make_fields(self) -> list[Any]:
        """The choice widgets, in their order on screen; choice lists come from the registries."""
        from ..devices import available_devices

        tile, overlap = _validation.default_tiling_for("default", "auto")
        self.image = ComboBox(label="input", choices=self._image_choices, nullable=False,
                              tooltip="single-channel Image layers (RGB layers are already in colour)")
        self.model_source = ComboBox(label="model", choices=MODEL_SOURCES, value="default",
                                     tooltip="the shipped model, or a .safetensors file from napari-colorize train")
        self.model_path = FileEdit(label="model file", mode="r", filter="*.safetensors", visible=False)
        self.method = ComboBox(label="decoding", choices=_runner.METHODS, value="auto",
                               tooltip="how per-pixel colour histograms become colour (auto: the model's stored method, else the paper's best)")
        self.saturation = FloatSpinBox(label="saturation", value=1.0, min=0.0, max=5.0, step=0.1,
                                       tooltip="chroma multiplier; colours stay inside the RGB gamut")
        self.device = ComboBox(label="device", choices=("auto", *available_devices()), value="auto")
        self.precision = ComboBox(label="precision", choices=PRECISIONS, value=PRECISIONS[0],
                                  tooltip="network precision; bf16/fp16 are faster on a GPU and need one")
        self.auto_tiling = CheckBox(text="automatic tiling", value=True,
                                    tooltip="the engine's tiles for the model, image size and device")
        self.tile_size = SpinBox(label="tile size", value=tile, min=1, max=65536, step=32, visible=False,
                                 tooltip="pixels per tile edge; smaller tiles cancel sooner and use less memory")
        self.overlap = SpinBox(label="tile overlap", value=overlap, min=0, max=16384, step=32, visible=False,
                               tooltip="pixels shared by neighbouring tiles (blended, so seams do not show)")
        self.normalization = ComboBox(label="intensities", choices=_layers.NORMALIZATIONS, value="contrast limits",
                                      tooltip="how pixel values map to gray [0, 1]; 'contrast limits' uses the "
                                              "layer's displayed range")
        self.scope = RadioButtons(label="scope", choices=_layers.SCOPES, value="current slice",
                                  orientation="horizontal")
        self.output = ComboBox(label="output", choices=_runner.OUTPUT_MODES, value="in memory",
                               tooltip="lazy: computed slice by slice as you scroll; zarr file: written to disk")
        self.zarr_path = FileEdit(label="zarr path", mode="w", filter="*.zarr", visible=False)
        g = self.guidance
        self.reference, self.reference_strength, self.hints = g.reference, g.reference_strength, g.hints
        self.hint_range, self.hints_all_planes, self.live_hints = g.hint_range, g.all_planes, g.live
        return [self.image, self.model_source, self.model_path, self.method, self.saturation, self.device,
                self.precision, self.auto_tiling, self.tile_size, self.overlap, self.normalization, self.scope,
                self.output, self.zarr_path, *g.widgets]

    def _connect(self) -> None:
        """Every change of a choice or of the layer list re-checks whether Run can start."""
        for widget in (self.model_source, self.output, self.auto_tiling, self.image, self.reference, self.hints):
            widget.changed.connect(self._sync_visibility)
        for name in PERSISTED:
            getattr(self, name).changed.connect(self._save_settings)
            getattr(self, name).changed.connect(self._revalidate)
        self.image.changed.connect(self._watch_layer)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        # Scrolling a stack changes which hints lie on the plane on screen: re-check, once it rests.
        self._dims_timer = QTimer(self.native, singleShot=True, interval=DIMS_DEBOUNCE_MS, timeout=self._revalidate)
        events = self._viewer.layers.events
        self._hooks = [*((e, self._on_layers_changed) for e in (events.inserted, events.removed, events.reordered,
                                                                  events.renamed)),
                       (self._viewer.dims.events.current_step, self._on_scroll)]
        for event, handler in self._hooks:
            event.connect(handler)
        _controls.when_closed(self.native, self._on_closed)  # the viewer, or the dock's close button

    def _on_scroll(self, *_: Any) -> None:
        self._dims_timer.start()

    def _on_closed(self, *_: Any) -> None:
        """The dock or the viewer was closed: stop the job and live re-colour, and drop late callbacks."""
        self._closed = True
        self._cancel.set()
        self.guidance.close()
        for event, handler in self._hooks:
            event.disconnect(handler)

    def _image_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return [(layer.name, layer) for layer in _layers.offered_layers(self._viewer.layers)]

    def _on_layers_changed(self, *_: Any) -> None:
        chosen = {combo: combo.value for combo in (self.image, self.reference, self.hints)}
        self.reset_choices()
        for combo, layer in chosen.items():  # a renamed layer is a new choice to magicgui: keep it chosen
            if layer is not None and combo.value is not layer and any(c is layer for c in combo.choices):
                combo.value = layer
        self._revalidate()

    def _watch_layer(self, *_: Any) -> None:
        """Follow the chosen layer's data and contrast limits: they decide whether Run can start."""
        if self._watched is not None:
            for event in (self._watched.events.data, self._watched.events.contrast_limits):
                event.disconnect(self._revalidate)
        self._watched = self.image.value
        if not self.is_running:
            self._set_status("")  # the last run's outcome was about another input
        if self._watched is not None:
            for event in (self._watched.events.data, self._watched.events.contrast_limits):
                event.connect(self._revalidate)
        self._revalidate()

    def _sync_visibility(self, *_: Any) -> None:
        self.model_path.visible = self.model_source.value == "from file"
        self.zarr_path.visible = self.output.value == "zarr file"
        self.tile_size.visible = self.overlap.visible = not self.auto_tiling.value
        self.guidance.sync_visibility(self.image.value)

    def _save_settings(self, *_: Any) -> None:
        _persist.save(settings_path(), {name: getattr(self, name).value for name in PERSISTED})

    def _load_settings(self) -> None:
        values = _persist.load(settings_path())
        for name in PERSISTED:
            if name in values:
                try:
                    getattr(self, name).value = values[name]
                except (ValueError, TypeError):  # e.g. a device that is gone
                    continue

    # -- checking --------------------------------------------------------------------------

    def settings(self) -> _runner.Settings:
        """The current choices as engine settings (``ValueError`` if incomplete)."""
        normalize, limits = _layers.normalization_for(self.normalization.value, self.image.value.contrast_limits)
        auto = bool(self.auto_tiling.value)
        return _runner.Settings(
            model=self._model_choice(), method=self.method.value, saturation=float(self.saturation.value),
            device=self.device.value, precision=self.precision.value,
            tile_size=None if auto else int(self.tile_size.value), overlap=None if auto else int(self.overlap.value),
            normalize=normalize, limits=limits, output=self.output.value,
            zarr_path=str(self.zarr_path.value) if self.output.value == "zarr file" else None)

    def _model_choice(self) -> str:
        if self.model_source.value == "default":
            return "default"
        path = str(self.model_path.value)
        if path in ("", "."):
            raise ValueError(_validation.MODEL_NEEDED)
        return path

    def plan(self) -> _layers.InputPlan:
        """What the current choices would colour (reads no pixels)."""
        return _layers.plan_for_layer(self.image.value, self._viewer.dims.point, self.scope.value, self.output.value,
                                      self._viewer.dims.units)

    def checked(self) -> tuple[_runner.Settings, _layers.InputPlan, _runner.Guide | None]:
        """The settings, plan and guidance of a run that can start; raises with the reason otherwise."""
        if self.image.value is None:
            raise ValueError(_validation.LAYER_NEEDED)
        settings, plan = self.settings(), self.plan()
        guide = self.guidance.guide(self.image.value, plan)
        _validation.check_run(settings, plan, guide)
        return settings, plan, guide

    def run_blocker(self) -> str | None:
        """Why Run cannot start now (the engine's message), or None."""
        try:
            self.checked()
        except _runner.USER_ERRORS as err:
            return _validation.as_reason(err)
        return None

    def _revalidate(self, *_: Any) -> None:
        if self._closed:
            return
        self._blocker = reason = self.run_blocker()
        self.reason.value = reason or ""
        self.reason.visible = reason is not None
        self.run_button.tooltip = reason or "colorize the input with these settings"
        self._sync_buttons()

    # -- running ---------------------------------------------------------------------------

    @property
    def is_running(self) -> bool:
        """True from Run until the outputs are in the viewer (or the job stopped)."""
        return self.worker is not None or self._adding

    def run(self) -> None:
        """Start colorizing in a worker thread (the Run button)."""
        from napari.utils.notifications import show_error

        if self.is_running:
            return
        try:  # the button is disabled while this fails; a programmatic click still gets the reason
            settings, plan, guide = self.checked()
        except _runner.USER_ERRORS as err:
            show_error(f"napari-colorize: {_validation.as_reason(err)}")
            return
        self._start(settings, plan, guide, live=False)

    def _recolour_live(self) -> None:
        """After the hints changed: re-colour the shown result of this image as Run would, if it is quick."""
        image = self.image.value
        outputs = _placing.outputs_of(self._viewer.layers, image) if image is not None else []
        if not self.live_hints.value or not outputs:
            return
        if self.is_running:  # try again once this job is done: the last edit must not be lost
            self.guidance.timer.start()
            return
        try:
            settings, plan, guide = self.checked()
        except _runner.USER_ERRORS:
            return  # the reason under Run says what to fix
        if (image.name, _guidance.guide_key(guide)) == self._shown_key:
            return  # e.g. the colour for the next point was picked: the hints are those shown
        blocker = _guidance.live_blocker(outputs, settings.as_info(), plan, image.name)
        if blocker:
            self._set_status(blocker)
            return
        self._start(settings, plan, guide, live=True)

    def _start(self, settings: _runner.Settings, plan: _layers.InputPlan, guide: _runner.Guide | None,
               live: bool) -> None:
        """Colorize in a worker thread; a live re-colour (about a second) shows no progress bar."""
        from napari.qt.threading import create_worker

        name = self.image.value.name
        self._cancel = threading.Event()
        self._job = {"name": name, "clicked": time.perf_counter(), "live": live,
                     "key": (name, _guidance.guide_key(guide)), "source_id": _placing.layer_id(self.image.value),
                     "layer": self.image.value, "data": self.image.value.data, "level": plan.level_words()}
        self._job["limits"] = _status.limits_at_run(self.normalization.value, settings.limits, self.image.value)
        self._job["transform"] = _status.transform_at_run(self.image.value)
        self.worker = create_worker(_runner.work, plan, settings, name, self._cancel, self._report_progress, guide)
        self.guidance.note_white_hints(guide)  # a job's hints, not each check of the choices
        if live:
            hinted = guide is not None and guide.hints is not None
            self._set_status(f"Re-colouring {name} {'with the hints' if hinted else 'without hints'}…")
        else:
            self._progress = _controls.job_progress(f"Colorizing {name}", self.cancel)
            self.worker.warned.connect(_controls.show_library_warning)  # live: not again at every edit
            self._set_status(f"Colorizing {name}: {plan.describe()}")
            for note in plan.notes:
                self._set_status(note)
        self.worker.returned.connect(self._finish)
        self.worker.finished.connect(self._cleanup)
        self.worker.start()
        self._sync_buttons()

    def cancel(self) -> None:
        """Ask the running job to stop (the Cancel button); it stops between tiles."""
        if self.is_running:
            self._cancel.set()
            self._set_status("Cancelling…")

    @ensure_main_thread
    def _report_progress(self, done: int, total: int) -> None:
        # Called from the worker thread, delivered on the GUI thread.
        pbar = self._progress
        if pbar is None or self._cancel.is_set() or self._closed:
            return
        self._set_status(_status.progress_words(self._job, done, total))
        # napari's bar processes events while it redraws, so the job's end (its status, its
        # bar closed) can run inside these calls: nothing may follow them.
        if pbar.total != total:
            pbar.total = total
        if self._progress is pbar:  # not closed by an end run while the total was drawn
            pbar.update(done - pbar.n)

    def _finish(self, outcome: _runner.Outcome) -> None:
        from napari.utils.notifications import show_error, show_info

        name = self._job.get("name", "")
        if self._closed:  # closed while it ran: its layers would land in a viewer nobody is using
            return
        # Cancel pressed while the last tile ran: the job finished, but the user asked for nothing.
        if outcome.status == "cancelled" or (outcome.status == "done" and self._cancel.is_set()):
            self._set_status(f"Cancelled: {name} was not changed")
            show_info(f"napari-colorize: colorizing {name} was cancelled; no layers were added")
            return
        if outcome.status == "error":
            self._set_status("Failed")
            show_error(f"napari-colorize: {_validation.in_widget_words(outcome.message)}")
            return
        source = self._job["layer"]
        if source not in self._viewer.layers or source.data is not self._job["data"]:
            what = "was removed" if source not in self._viewer.layers else "got new data"
            self._set_status(f"{name} {what} while it was being coloured: no layers were added")
            return
        self._job["computed_at"] = time.perf_counter()
        self._shown_key = self._job.get("key")
        for _, kwargs, _ in outcome.tuples:  # the input layer itself, whatever it is called later
            kwargs["metadata"][_layers.METADATA_KEY]["source_id"] = self._job["source_id"]
        self._adding = True
        self._add_next(outcome.tuples, _status.done_words(self._job, outcome.seconds, outcome.info))

    def _add_next(self, tuples: list, done_message: str, reveal: tuple[Any, bool] | None = None) -> None:
        """Show the layer placed in the last event-loop turn, or place the next one (hidden).

        Creating a napari layer (its controls and vispy visual) and drawing it each take
        about 0.1 s on a slow machine: one step per turn, with the viewer redrawn and
        responding in between, keeps every freeze short.
        """
        next_reveal = None
        if self._closed:
            self._adding = False
            return
        if reveal is not None:
            layer, visible = reveal
            layer.visible = visible
        elif tuples:
            (data, kwargs, _), tuples = tuples[0], tuples[1:]
            layer, visible = _placing.place_layer(self._viewer.layers, data, kwargs, hidden=True)
            self._job.setdefault("first_layer_at", time.perf_counter())
            next_reveal = (layer, visible) if visible and not layer.visible else None
        else:
            self._adding = False
            self._job["layers_at"] = time.perf_counter()
            status, notice = _status.finished(done_message, self._job)
            self._set_status(status)
            _status.notify(notice)
            self._sync_buttons()
            return
        QTimer.singleShot(STEP_MS, lambda: self._add_next(tuples, done_message, next_reveal))

    def _cleanup(self) -> None:
        # The job's input (read by _finish, before this) must not outlive it: a multi-GB
        # layer deleted after colouring would stay in memory until the next run.
        self._job.pop("layer", None)
        self._job.pop("data", None)
        if self._progress is not None:
            self._progress.close()
            self._progress = None
        self.worker = None
        self._sync_buttons()

    def _sync_buttons(self) -> None:
        if self._closed:
            return
        self.run_button.enabled = not self.is_running and self._blocker is None
        self.cancel_button.enabled = self.worker is not None

    def _set_status(self, text: str) -> None:
        if self._closed:
            return
        self.status.value = text
        if text:
            self._viewer.status = f"napari-colorize: {text}"
