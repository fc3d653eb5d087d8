"""Small Qt pieces the Colorize widget is built from: a cancelable job bar, a wrapping label, and
the signal that its dock was closed."""

from __future__ import annotations

from typing import Any

from magicgui.widgets import Label
from qtpy.QtCore import QEvent, QObject

__all__ = ["job_progress", "show_library_warning", "when_closed", "wrapping_label"]


def job_progress(desc: str, on_cancel: Any) -> Any:
    """A progress bar in napari's activity dock whose cancel button stops the job."""
    from napari.utils import cancelable_progress

    class JobProgress(cancelable_progress):
        def cancel(self) -> None:  # the dock's button: stop the worker, not only a loop
            super().cancel()
            on_cancel()

    return JobProgress(total=0, desc=desc)


def show_library_warning(args: tuple) -> None:
    """A warning of napari-colorize's from the worker thread (superqt's ``warned`` signal, with
    ``warnings.showwarning``'s arguments) as a napari notification, in the widget's words.

    napari 0.9 means to relay worker warnings itself, but its mixin's ``__init__`` is never
    called, so they were lost: e.g. why a 12-bit camera image comes out nearly black.
    Other libraries' warnings stay in the log.
    """
    from napari.utils.notifications import show_warning

    from ._validation import in_widget_words

    message, category = args[0], args[1]
    if getattr(category, "__module__", "").startswith("napari_colorize"):
        show_warning(f"napari-colorize: {in_widget_words(str(message))}")


def wrapping_label() -> Label:
    label = Label(value="")
    label.native.setWordWrap(True)  # engine messages are sentences, longer than the dock is wide
    return label


class _TakenOut(QObject):
    """Calls back when its widget loses its parent: napari's dock close button
    (``destroyOnClose`` -> ``remove_dock_widget``) takes the widget out of its dock without
    deleting it, so ``destroyed`` does not come."""

    def __init__(self, widget: Any, callback: Any) -> None:
        super().__init__(widget)
        self._callback = callback
        widget.installEventFilter(self)

    def eventFilter(self, obj: Any, event: Any) -> bool:
        if event.type() == QEvent.Type.ParentChange and obj.parent() is None:
            self._callback()
        return False


def when_closed(widget: Any, callback: Any) -> None:
    """Call ``callback`` when the Qt ``widget`` is deleted (its viewer closed) or taken out of its
    dock (the dock's close button); it may be called twice."""
    widget.destroyed.connect(callback)
    _TakenOut(widget, callback)
