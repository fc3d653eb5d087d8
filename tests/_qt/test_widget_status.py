"""What the Colorize widget tells while a job runs and once it is done, in its own words.

Run: ``xvfb-run -a pytest tests/_qt/test_widget_status.py -q``: the multiscale level
coloured, engine messages said in the widget's terms, and a change of the contrast
limits while a job ran.
"""

from __future__ import annotations

import functools
import re
from contextlib import contextmanager

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_colorize._qt import _layers
from widget_driver import WAIT_MS, open_widget, run_and_wait


def ramp(shape=(128, 128)) -> np.ndarray:
    return np.tile(np.linspace(0.0, 1.0, shape[1], dtype=np.float32), (shape[0], 1))


def test_the_multiscale_level_coloured_is_named_until_the_end(make_napari_viewer, qtbot, strong_model, monkeypatch):
    # A 64 x 64 plane budget stands for the 4096 x 4096 one: level 0 (128 x 128) is over it.
    monkeypatch.setattr(_layers, "plan_input", functools.partial(_layers.plan_input, max_pixels=64 * 64))
    viewer = make_napari_viewer()
    gray = ramp()
    viewer.add_image([gray, gray[::2, ::2]], name="slide", multiscale=True, contrast_limits=(0.0, 1.0))
    widget = open_widget(viewer, strong_model)
    seen: list[str] = []  # what the viewer's status bar showed of ours
    viewer.events.status.connect(lambda event: seen.append(str(viewer.status).removeprefix("napari-colorize: ")))
    run_and_wait(qtbot, widget)
    level = "multiscale level 1 (64 x 64 pixels)"
    assert "level 0 is over 0.0041 MP a plane; colouring level 1 (64 x 64 pixels)" in seen
    progress = [text for text in seen if re.search(r": \d+/\d+$", text)]
    assert progress and all(text.startswith(f"Colorizing slide at {level}: ") for text in progress)
    assert widget.status.value.startswith("Colorized slide in ")
    assert widget.status.value.endswith(f", at {level}")
    assert viewer.layers["slide colorized"].metadata["napari_colorize"]["level"] == 1


@contextmanager
def notifications():
    """The notifications shown while the ``with`` block runs, as ``(severity, message)`` (filled at its end)."""
    from napari.utils.notifications import notification_manager

    seen, shown = [], []
    notification_manager.notification_ready.connect(seen.append)
    try:
        yield shown
    finally:
        notification_manager.notification_ready.disconnect(seen.append)
        shown.extend((str(n.severity), n.message) for n in seen)


#: What the API and command line say that this widget has no field for.
API_WORDS = ("normalize=", "np.", "limits=(", "--normalize")


def test_what_only_the_data_can_tell_is_said_in_the_widgets_words(make_napari_viewer, qtbot, strong_model):
    viewer = make_napari_viewer()
    constant = viewer.add_image(np.full((64, 64), 7, np.uint8), name="constant")
    holes = ramp((64, 64))
    holes[10:20, 10:20] = np.nan
    nan = viewer.add_image(holes, name="nan", contrast_limits=(0.0, 1.0))
    bright = viewer.add_image(ramp((64, 64)) * 3, name="bright", contrast_limits=(0.0, 3.0))
    widget = open_widget(viewer, strong_model)
    said = {}
    for layer, intensities in ((constant, "min-max"), (nan, "contrast limits"), (bright, "data type range")):
        widget.image.value = layer
        widget.normalization.value = intensities
        with notifications() as shown:
            run_and_wait(qtbot, widget)
        said[layer.name] = " ".join(message for _, message in shown)
    for name, text in said.items():
        assert text and not any(word in text for word in API_WORDS), (name, text)
    assert "intensities 'min-max' has no range to stretch" in said["constant"]
    assert "as intensities 'data type range' does" in said["constant"]
    assert "replace them before colorizing (e.g. with numpy's nan_to_num in napari's console)" in said["nan"]
    assert "choose intensities 'contrast limits' (the layer's displayed range)" in said["bright"]


def test_contrast_limits_changed_while_a_job_runs_are_said_and_the_result_kept(make_napari_viewer, qtbot,
                                                                               strong_model):
    viewer = make_napari_viewer()
    layer = viewer.add_image((ramp((96, 96)) * 255).astype(np.uint8), name="img", contrast_limits=(0, 255))
    widget = open_widget(viewer, strong_model)
    with notifications() as shown:
        widget.run_button.clicked()
        layer.contrast_limits = (100, 150)  # before the job can end: its result arrives through the event loop
        qtbot.waitUntil(lambda: not widget.is_running, timeout=WAIT_MS)
    said = ("img was coloured with the contrast limits it had at Run [0, 255]; they are now [100, 150]: "
            "press Run to colour it with them")
    assert widget.status.value.startswith("Colorized img in ") and widget.status.value.endswith(f"; {said}")
    assert ("info", f"napari-colorize: {said}") in shown
    assert viewer.layers["img colorized"].metadata["napari_colorize"]["settings"]["limits"] == [0.0, 255.0]
    with notifications() as shown:
        run_and_wait(qtbot, widget)  # again: the new limits, nothing to say
    assert "contrast limits" not in widget.status.value and shown == []
    assert viewer.layers["img colorized"].metadata["napari_colorize"]["settings"]["limits"] == [100.0, 150.0]
    widget.normalization.value = "min-max"  # the colours do not depend on the contrast limits
    widget.run_button.clicked()
    layer.contrast_limits = (0, 255)
    qtbot.waitUntil(lambda: not widget.is_running, timeout=WAIT_MS)
    assert "contrast limits" not in widget.status.value


def test_an_input_moved_while_a_job_runs_is_said(make_napari_viewer, qtbot, strong_model):
    # The outputs were placed where the input was at Run, without a word.
    viewer = make_napari_viewer()
    layer = viewer.add_image((ramp((96, 96)) * 255).astype(np.uint8), name="img")
    widget = open_widget(viewer, strong_model)
    with notifications() as shown:
        widget.run_button.clicked()
        layer.translate, layer.scale = (300, 300), (2, 2)  # before the job can end, as above
        qtbot.waitUntil(lambda: not widget.is_running, timeout=WAIT_MS)
    said = ("img was moved, scaled or turned while it was coloured: the outputs sit where it was at Run; "
            "press Run to place them over it")
    assert widget.status.value.startswith("Colorized img in ") and widget.status.value.endswith(f"; {said}")
    assert ("info", f"napari-colorize: {said}") in shown
    assert list(viewer.layers["img colorized"].translate) == [0, 0]
    run_and_wait(qtbot, widget)  # again: placed over it, nothing to say
    assert "moved" not in widget.status.value and list(viewer.layers["img colorized"].translate) == [300, 300]
