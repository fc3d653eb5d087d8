"""How the widget tests drive the Colorize widget, as a user would: open it from the
Plugins menu set to a model file, click Run, wait for the job."""

from __future__ import annotations

from napari_colorize._qt import _widget

PLUGIN = "napari-colorize"
#: The longest a test waits for one job.
WAIT_MS = 60_000


def open_widget(viewer, model_path: str) -> _widget.ColorizeWidget:
    """The widget as a user opens it (Plugins menu -> the manifest's command), set to ``model_path``."""
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Colorize")
    assert isinstance(widget, _widget.ColorizeWidget)
    widget.model_source.value = "from file"
    widget.model_path.value = model_path
    return widget


def run_and_wait(qtbot, widget, timeout: int = WAIT_MS) -> None:
    """Click Run (what a click emits) and wait until the job has finished."""
    widget.run_button.clicked()
    assert widget.is_running
    qtbot.waitUntil(lambda: not widget.is_running, timeout=timeout)
