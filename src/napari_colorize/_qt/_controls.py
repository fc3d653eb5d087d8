"""Small Qt pieces the Colorize widget is built from: a cancelable job bar, a wrapping label."""

from __future__ import annotations

from typing import Any

from magicgui.widgets import Label

__all__ = ["job_progress", "wrapping_label"]


def job_progress(desc: str, on_cancel: Any) -> Any:
    """A progress bar in napari's activity dock whose cancel button stops the job."""
    from napari.utils import cancelable_progress

    class JobProgress(cancelable_progress):
        def cancel(self) -> None:  # the dock's button: stop the worker, not only a loop
            super().cancel()
            on_cancel()

    return JobProgress(total=0, desc=desc)


def wrapping_label() -> Label:
    label = Label(value="")
    label.native.setWordWrap(True)  # engine messages are sentences, longer than the dock is wide
    return label
