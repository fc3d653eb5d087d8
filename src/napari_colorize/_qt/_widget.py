"""The Colorize dock widget (Plugins > napari-colorize > Colorize).

A thin magicgui front end: it gathers choices, hands the work to a napari
``thread_worker`` (so the viewer stays responsive), shows progress in napari's
activity dock and status bar, and adds or updates the three output layers.  What to
colour and how outputs are laid out is in :mod:`._layers`; the engine call is in
:mod:`._runner`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import (ComboBox, Container, FileEdit, FloatSpinBox, Label, PushButton, RadioButtons,
                              SpinBox)
from superqt.utils import ensure_main_thread

from . import _layers, _runner

if TYPE_CHECKING:
    import napari

__all__ = ["ColorizeWidget", "settings_path"]

log = logging.getLogger(__name__)

MODEL_SOURCES = ("default", "from file")
#: Widgets whose values persist between sessions (paths are checked on load).
PERSISTED = ("model_source", "model_path", "method", "saturation", "device", "tile_size", "overlap",
             "normalization", "scope", "output", "zarr_path")
#: Errors whose message is the library's explanation for the user (shown without a traceback).
USER_ERRORS = (ValueError, FileNotFoundError, OSError, MemoryError, RuntimeError)


def settings_path() -> Path:
    """Where the widget keeps its choices (magicgui's per-user cache folder)."""
    from magicgui._util import user_cache_dir

    return Path(user_cache_dir()) / "napari_colorize.ColorizeWidget.json"


@dataclass
class Outcome:
    """What the worker hands back to the GUI thread."""

    status: str  # "done" | "cancelled" | "error"
    result: Any = None
    message: str = ""
    seconds: float = 0.0


def _work(plan: _layers.InputPlan, settings: _runner.Settings, cancel: threading.Event,
          progress: Any) -> Outcome:
    """Run in the worker thread: expected failures become messages, never tracebacks."""
    start = time.perf_counter()
    try:
        result = _runner.run(plan.array, settings, progress=progress, cancel=cancel, geometry=plan.geometry,
                             displayed=plan.displayed)
    except _runner.Cancelled:
        return Outcome("cancelled", seconds=time.perf_counter() - start)
    except USER_ERRORS as err:
        return Outcome("error", message=str(err) or type(err).__name__)
    except Exception as err:  # a bug: say so plainly, keep the traceback in the log
        log.exception("napari-colorize failed")
        return Outcome("error", message=f"napari-colorize failed unexpectedly ({type(err).__name__}: {err}); "
                                        "please report this with the log")
    return Outcome("done", result=result, seconds=time.perf_counter() - start)


def _job_progress(desc: str, on_cancel: Any) -> Any:
    """A progress bar in napari's activity dock whose cancel button stops the job."""
    from napari.utils import cancelable_progress

    class JobProgress(cancelable_progress):
        def cancel(self) -> None:  # the dock's button: stop the worker, not only a loop
            super().cancel()
            on_cancel()

    return JobProgress(total=0, desc=desc)


class ColorizeWidget(Container):
    """Colorize a single-channel Image layer into three layers: colour, chroma confidence, hue entropy.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        Injected by napari when the widget is opened from the Plugins menu.
    """

    def __init__(self, napari_viewer: "napari.viewer.Viewer") -> None:
        from .devices import available_devices

        self._viewer = napari_viewer
        self.image = ComboBox(label="input", choices=self._image_choices, nullable=False,
                              tooltip="single-channel Image layers (RGB layers are already in colour)")
        self.model_source = ComboBox(label="model", choices=MODEL_SOURCES, value="default",
                                     tooltip="the shipped model, or a .safetensors file from napari-colorize train")
        self.model_path = FileEdit(label="model file", mode="r", filter="*.safetensors", visible=False)
        self.method = ComboBox(label="decoding", choices=_runner.METHODS, value="auto",
                               tooltip="how per-pixel colour histograms become colour (auto: the paper's best)")
        self.saturation = FloatSpinBox(label="saturation", value=1.0, min=0.0, max=5.0, step=0.1,
                                       tooltip="chroma multiplier; colours stay inside the RGB gamut")
        self.device = ComboBox(label="device", choices=("auto", *available_devices()), value="auto")
        self.tile_size = SpinBox(label="tile size", value=_runner.Settings.tile_size, min=64, max=16384, step=32,
                                 tooltip="pixels per tile edge; smaller tiles cancel sooner and use less memory")
        self.overlap = SpinBox(label="tile overlap", value=_runner.Settings.overlap, min=0, max=4096, step=16,
                               tooltip="pixels shared by neighbouring tiles (blended, so seams do not show)")
        self.normalization = ComboBox(label="intensities", choices=_layers.NORMALIZATIONS, value="contrast limits",
                                      tooltip="how pixel values map to gray [0, 1]; 'contrast limits' uses the "
                                              "layer's displayed range")
        self.scope = RadioButtons(label="scope", choices=_layers.SCOPES, value="current slice",
                                  orientation="horizontal")
        self.output = ComboBox(label="output", choices=_runner.OUTPUT_MODES, value="in memory",
                               tooltip="lazy: computed slice by slice as you scroll; zarr file: written to disk")
        self.zarr_path = FileEdit(label="zarr path", mode="w", filter="*.zarr", visible=False)
        self.run_button = PushButton(text="Run")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.status = Label(value="")
        super().__init__(widgets=[
            self.image, self.model_source, self.model_path, self.method, self.saturation, self.device,
            self.tile_size, self.overlap, self.normalization, self.scope, self.output, self.zarr_path,
            Container(widgets=[self.run_button, self.cancel_button], layout="horizontal", labels=False),
            self.status,
        ])
        self.model_source.changed.connect(self._sync_visibility)
        self.output.changed.connect(self._sync_visibility)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self._load_settings()
        self._sync_visibility()
        for name in PERSISTED:
            getattr(self, name).changed.connect(self._save_settings)
        layer_events = napari_viewer.layers.events
        for event in (layer_events.inserted, layer_events.removed, layer_events.reordered):
            event.connect(self.reset_choices)
        self.reset_choices()
        self.worker: Any = None
        self._adding = False
        self._cancel = threading.Event()
        self._progress: Any = None
        self._job: dict[str, Any] = {}

    # -- choices ---------------------------------------------------------------------------

    def _image_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        """Single-channel Image layers, top first (RGB(A) layers are left out)."""
        from napari.layers import Image

        return [(layer.name, layer) for layer in reversed(self._viewer.layers)
                if isinstance(layer, Image) and not layer.rgb and _layers.METADATA_KEY not in layer.metadata]

    def _sync_visibility(self, *_: Any) -> None:
        self.model_path.visible = self.model_source.value == "from file"
        self.zarr_path.visible = self.output.value == "zarr file"

    # -- persistence -----------------------------------------------------------------------

    def _save_settings(self, *_: Any) -> None:
        values = {}
        for name in PERSISTED:
            value = getattr(self, name).value
            values[name] = str(value) if isinstance(value, Path) else value
        try:
            path = settings_path()
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(values))
            tmp.replace(path)
        except OSError:  # a read-only cache folder must not break the widget
            log.debug("could not save napari-colorize settings", exc_info=True)

    def _load_settings(self) -> None:
        try:
            values = json.loads(settings_path().read_text())
        except (OSError, ValueError):
            return
        # Paths that no longer exist are dropped: a model file must exist, a zarr store's folder must.
        model = values.get("model_path")
        if not (model and Path(model).is_file()):
            values.pop("model_path", None)
            if values.get("model_source") == "from file":
                values["model_source"] = "default"
        store = values.get("zarr_path")
        if not (store and Path(store).parent.is_dir() and str(store) not in ("", ".")):
            values.pop("zarr_path", None)
        for name in PERSISTED:
            if name in values:
                try:
                    getattr(self, name).value = values[name]
                except (ValueError, TypeError):  # e.g. a device that is gone
                    continue

    # -- running ---------------------------------------------------------------------------

    @property
    def is_running(self) -> bool:
        """True from Run until the outputs are in the viewer (or the job stopped)."""
        return self.worker is not None or self._adding

    def settings(self) -> _runner.Settings:
        """The current choices as engine settings (``ValueError`` if incomplete)."""
        layer = self.image.value
        normalize, limits = _layers.normalization_for(self.normalization.value, layer.contrast_limits)
        model = "default" if self.model_source.value == "default" else str(self.model_path.value)
        if self.model_source.value == "from file" and not Path(model).is_file():
            raise FileNotFoundError(f"no model file at {model!r}; choose a .safetensors file or the default model")
        return _runner.Settings(
            model=model, method=self.method.value, saturation=float(self.saturation.value),
            device=self.device.value, tile_size=int(self.tile_size.value), overlap=int(self.overlap.value),
            normalize=normalize, limits=limits, output=self.output.value,
            zarr_path=str(self.zarr_path.value) if self.output.value == "zarr file" else None,
        ).validated()

    def plan(self) -> _layers.InputPlan:
        """What the current choices would colour (reads no pixels)."""
        layer = self.image.value
        levels = list(layer.data) if layer.multiscale else [layer.data]
        geometry = _layers.Geometry(
            scale=tuple(map(float, layer.scale)), translate=tuple(map(float, layer.translate)),
            axis_labels=tuple(layer.axis_labels), units=tuple(str(u) for u in layer.units))
        position = layer.world_to_data(self._viewer.dims.point)
        return _layers.plan_input(levels, geometry, position, self.scope.value, self.output.value)

    def run(self) -> None:
        """Start colorizing in a worker thread (the Run button)."""
        from napari.qt.threading import create_worker
        from napari.utils.notifications import show_error

        if self.is_running:
            return
        layer = self.image.value
        if layer is None:
            show_error("napari-colorize: add or choose a single-channel image layer first")
            return
        try:
            settings = self.settings()
            plan = self.plan()
        except USER_ERRORS as err:
            show_error(f"napari-colorize: {err}")
            return
        self._cancel = threading.Event()
        self._job = {"layer": layer, "name": layer.name, "plan": plan, "settings": settings,
                     "clicked": time.perf_counter()}
        self._progress = _job_progress(f"Colorizing {layer.name}", self.cancel)
        self._set_status(f"Colorizing {layer.name}: {plan.describe()}")
        for note in plan.notes:
            self._set_status(note)
        self.worker = create_worker(_work, plan, settings, self._cancel, self._report_progress)
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
        if pbar is None or self._cancel.is_set():
            return
        if pbar.total != total:
            pbar.total = total
        pbar.update(done - pbar.n)
        self._set_status(f"Colorizing {self._job.get('name', '')}: {done}/{total}")

    def _finish(self, outcome: Outcome) -> None:
        from napari.utils.notifications import show_error, show_info

        name = self._job.get("name", "")
        if outcome.status == "cancelled":
            self._set_status(f"Cancelled: {name} was not changed")
            show_info(f"napari-colorize: colorizing {name} was cancelled; no layers were added")
            return
        if outcome.status == "error":
            self._set_status("Failed")
            show_error(f"napari-colorize: {outcome.message}")
            return
        plan: _layers.InputPlan = self._job["plan"]
        settings: _runner.Settings = self._job["settings"]
        info = {"settings": settings.as_info(), "level": plan.level, "index": list(plan.index),
                "model": str(outcome.result.info.get("model", settings.model)),
                "method": str(outcome.result.info.get("method") or settings.method),
                "device": str(outcome.result.info.get("device", settings.device))}
        tuples = _layers.layer_data_tuples(outcome.result, name, plan.geometry, info)
        self._job["computed_at"] = time.perf_counter()
        self._adding = True
        self._add_next(tuples, f"Colorized {name} in {outcome.seconds:.1f} s ({info['device']}, {info['method']})")

    def _add_next(self, tuples: list, done_message: str) -> None:
        """Add (or update) one output layer per event-loop turn.

        Creating a napari layer (its vispy visual and controls) takes a few hundred
        milliseconds; three in a row would freeze the viewer for their sum.
        """
        from qtpy.QtCore import QTimer

        if not tuples:
            self._adding = False
            self._job["layers_at"] = time.perf_counter()
            self._set_status(done_message)
            self._sync_buttons()
            return
        _layers.apply_layer_data(self._viewer.layers, tuples[:1])
        self._job.setdefault("first_layer_at", time.perf_counter())
        QTimer.singleShot(0, lambda: self._add_next(tuples[1:], done_message))

    def _cleanup(self) -> None:
        if self._progress is not None:
            self._progress.close()
            self._progress = None
        self.worker = None
        self._sync_buttons()

    def _sync_buttons(self) -> None:
        self.run_button.enabled = not self.is_running
        self.cancel_button.enabled = self.worker is not None

    def _set_status(self, text: str) -> None:
        self.status.value = text
        self._viewer.status = f"napari-colorize: {text}"
