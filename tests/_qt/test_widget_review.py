"""The Colorize widget as users met it in a review: closing its dock, transformed layers, messages.

Run: ``xvfb-run -a pytest tests/_qt/test_widget_review.py -q``.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_colorize._qt import _guidance
from napari_colorize._qt._layers import METADATA_KEY
from widget_driver import WAIT_MS, open_widget, run_and_wait


def outputs(viewer) -> list:
    return [layer for layer in viewer.layers if METADATA_KEY in layer.metadata]


def test_closing_the_dock_stops_the_job(make_napari_viewer, qtbot, strong_model):
    # The dock's close button (napari's destroyOnClose) takes the widget out of its dock but
    # does not delete it: the job used to run on and add its layers to the viewer.
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(1).integers(0, 255, (24, 256, 256), dtype=np.uint8), name="big")
    widget = open_widget(viewer, strong_model)
    widget.scope.value = "whole stack"
    widget.run_button.clicked()
    done = []
    widget.worker.finished.connect(lambda: done.append(True))
    qtbot.waitUntil(lambda: widget._progress is not None and widget._progress.n >= 1, timeout=WAIT_MS)
    viewer.window.remove_dock_widget(widget.native)  # what the close button does
    assert widget._cancel.is_set()
    qtbot.waitUntil(lambda: bool(done), timeout=WAIT_MS)
    qtbot.wait(300)
    assert outputs(viewer) == []


def test_a_closed_dock_no_longer_recolours_live(make_napari_viewer, qtbot, strong_model):
    viewer = make_napari_viewer()
    viewer.add_image(np.linspace(0, 1, 64 * 80, dtype=np.float32).reshape(64, 80), name="g",
                     contrast_limits=(0.0, 1.0))
    points = viewer.add_points([[32.0, 40.0]], name="hints", face_color="blue")
    widget = open_widget(viewer, strong_model)
    widget.hints.value = points
    run_and_wait(qtbot, widget)
    before = np.array(viewer.layers["g colorized"].data)
    viewer.window.remove_dock_widget(widget.native)
    points.add([10.0, 10.0])  # with the panel closed, nothing may change the result
    qtbot.wait(_guidance.LIVE_DELAY_MS + 500)
    qtbot.waitUntil(lambda: not widget.is_running, timeout=WAIT_MS)
    assert np.array_equal(np.asarray(viewer.layers["g colorized"].data), before)


def world_corners(layer) -> np.ndarray:
    """The world position of the (Y, X) plane's corners, on the layer's first plane."""
    ny, nx = (layer.data.shape[:-1] if layer.rgb else layer.data.shape)[-2:]
    lead = layer.ndim - 2
    corners = [(*([0] * lead), y, x) for y in (0, ny - 1) for x in (0, nx - 1)]
    return np.array([layer.data_to_world(c) for c in corners], float)


@pytest.mark.parametrize("scope", ["whole stack", "current slice"])
def test_outputs_overlay_a_rotated_sheared_affine_source(make_napari_viewer, qtbot, strong_model, scope):
    # Outputs kept only scale and translate: over a source with rotate, shear or affine (a
    # tilted stage, a deskewed light sheet, a registered image) they lay elsewhere.
    viewer = make_napari_viewer()
    data = np.random.default_rng(2).integers(0, 255, (3, 48, 64), dtype=np.uint8)
    affine = np.eye(4)
    affine[1:3, 3] = (5.0, -8.0)
    source = viewer.add_image(data, name="tilted", scale=(2.0, 0.5, 0.7), translate=(3.0, 1.0, 2.0), rotate=25,
                              shear=[0.3, 0.0, 0.1], affine=affine)
    # On the third plane (the shear mixes Y into Z: the whole world point says which plane).
    viewer.dims.set_point(range(3), tuple(source.data_to_world((2, 0, 0))))
    widget = open_widget(viewer, strong_model)
    widget.scope.value = scope
    run_and_wait(qtbot, widget)
    first_plane = 2 if scope == "current slice" else 0
    ny, nx = data.shape[1:]
    expected = np.array([source.data_to_world((first_plane, y, x)) for y in (0, ny - 1) for x in (0, nx - 1)])
    assert len(outputs(viewer)) == 3
    for layer in outputs(viewer):
        np.testing.assert_allclose(world_corners(layer), expected, atol=1e-6, err_msg=layer.name)
    # Run again without the transform: the outputs follow it (updated in place).
    source.rotate, source.shear, source.affine = 0, [0.0, 0.0, 0.0], np.eye(4)
    run_and_wait(qtbot, widget)
    expected = np.array([source.data_to_world((first_plane, y, x)) for y in (0, ny - 1) for x in (0, nx - 1)])
    for layer in outputs(viewer):
        np.testing.assert_allclose(world_corners(layer), expected, atol=1e-6, err_msg=layer.name)


def test_more_engine_advice_is_said_in_the_widgets_words(tmp_path):
    # Shown under Run or as a notification, these still told the user to "pass 'default'",
    # "overwrite=True (--overwrite)" or "Pass a colour image": arguments the widget does not have.
    from napari_colorize import colorize_to_zarr
    from napari_colorize._qt._validation import as_reason
    from napari_colorize.guidance import check_references
    from napari_colorize.model import read_config

    def reason(call) -> str:
        with pytest.raises((ValueError, FileNotFoundError, FileExistsError)) as info:
            call()
        return as_reason(info.value)

    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "keep.txt").write_text("mine")
    gray = np.repeat(np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64, 1), 3, axis=-1)
    cases = {
        "no model file": lambda: read_config(str(tmp_path / "none.safetensors")),
        "model is a folder": lambda: read_config(str(tmp_path)),
        "foreign folder": lambda: colorize_to_zarr(np.zeros((64, 64), np.float32), tmp_path / "photos"),
        "gray reference": lambda: check_references(gray),
    }
    for name, call in cases.items():
        text = reason(call)
        assert not any(word in text for word in ("pass ", "Pass ", "--", "=")), (name, text)
    assert "choose model: default" in reason(cases["no model file"])


def test_the_librarys_warnings_are_shown(make_napari_viewer, qtbot, strong_model):
    # A 12-bit camera's uint16 image with intensities 'data type range' comes out nearly black;
    # the engine warns why, but napari 0.9 never connects its worker-warning relay, so the
    # warning was lost and the user saw a dark, colourless result without a word.
    from napari.utils.notifications import NotificationSeverity, notification_manager

    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(3).integers(100, 1600, (64, 80)).astype(np.uint16), name="camera")
    widget = open_widget(viewer, strong_model)
    widget.normalization.value = "data type range"
    seen = []
    notification_manager.notification_ready.connect(seen.append)
    try:
        run_and_wait(qtbot, widget)
        qtbot.wait(100)
    finally:
        notification_manager.notification_ready.disconnect(seen.append)
    warned = [n.message for n in seen if n.severity == NotificationSeverity.WARNING]
    assert len(warned) == 1 and "uint16 image with values up to" in warned[0], warned
    assert "choose intensities" in warned[0] and "normalize=" not in warned[0], warned[0]
    assert len(outputs(viewer)) == 3  # a warning, not a failure


def test_output_metadata_is_json(make_napari_viewer, qtbot, strong_model):
    # The source layer's id (napari keeps a UUID) is stored as text: the metadata is meant
    # to be saved with the layer, and json.dumps refused the UUID.
    import json

    viewer = make_napari_viewer()
    source = viewer.add_image(np.random.default_rng(2).integers(0, 255, (64, 64), dtype=np.uint8), name="img")
    run_and_wait(qtbot, open_widget(viewer, strong_model))
    assert len(outputs(viewer)) == 3
    for layer in outputs(viewer):
        meta = json.loads(json.dumps(layer.metadata))[METADATA_KEY]
        assert meta["source_id"] == str(source.unique_id)


@pytest.mark.parametrize("shear", [[0.3, 0.0, 0.1], [[1.0, 0.0, 0.0], [0.4, 1.0, 0.0], [0.2, 0.1, 1.0]]],
                         ids=["upper", "lower-triangular"])
def test_current_slice_geometry_follows_either_shear(shear):
    # napari keeps a lower-triangular shear as the whole matrix: reading it as values raised
    # TypeError at every check of the choices, so the widget failed as soon as such a layer existed.
    from napari.layers import Image

    from napari_colorize._qt._layers import plan_for_layer

    source = Image(np.zeros((3, 48, 64), np.uint8), scale=(2.0, 0.5, 0.7), translate=(3.0, 1.0, 2.0), rotate=25,
                   shear=shear)
    plan = plan_for_layer(source, source.data_to_world((2, 0, 0)), "current slice")
    out = Image(np.zeros((1, 48, 64), np.uint8), **plan.geometry.as_kwargs())
    for y, x in ((0, 0), (47, 0), (0, 63), (47, 63)):
        np.testing.assert_allclose(out.data_to_world((0, y, x)), source.data_to_world((2, y, x)), atol=1e-6)


def test_an_edited_hint_does_not_swap_a_stack_result_for_one_plane(make_napari_viewer, qtbot, strong_model):
    # Live re-colour used the widget's current choices: after the scope was switched to
    # "current slice" (no Run), moving a hint replaced a whole-stack result by one plane.
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(2).integers(0, 255, (3, 48, 64), dtype=np.uint8), name="z")
    points = viewer.add_points([[1.0, 20.0, 20.0]], name="hints", face_color="blue", ndim=3)
    widget = open_widget(viewer, strong_model)
    widget.hints.value = points
    widget.scope.value = "whole stack"
    run_and_wait(qtbot, widget)
    assert viewer.layers["z colorized"].data.shape == (3, 48, 64, 3)
    widget.scope.value = "current slice"
    points.data = np.array([[1.0, 30.0, 30.0]])
    qtbot.waitUntil(lambda: _guidance.PRESS_RUN in widget.status.value, timeout=5000)
    assert widget.status.value == f"the result of z on screen was made with other choices than the panel's now: " \
                                  f"{_guidance.PRESS_RUN}"
    assert not widget.is_running and viewer.layers["z colorized"].data.shape == (3, 48, 64, 3)

    widget.scope.value = "whole stack"  # the choices of the result shown: the edit re-colours it
    points.data = np.array([[1.0, 35.0, 35.0]])
    qtbot.waitUntil(lambda: widget.status.value.startswith("Re-coloured z"), timeout=WAIT_MS)
    assert viewer.layers["z colorized"].data.shape == (3, 48, 64, 3)


def test_a_deleted_map_made_again_goes_below_the_colour(make_napari_viewer, qtbot, strong_model):
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(3).integers(0, 255, (48, 64), dtype=np.uint8), name="cam")
    widget = open_widget(viewer, strong_model)
    run_and_wait(qtbot, widget)
    assert [layer.name for layer in viewer.layers] == ["cam", "cam hue entropy", "cam chroma confidence",
                                                       "cam colorized"]  # the colour over its maps
    viewer.layers.remove("cam hue entropy")
    viewer.layers["cam chroma confidence"].name = "my conf"
    run_and_wait(qtbot, widget)
    # The renamed map is the user's to keep: the run makes its own maps, together below the colour.
    assert [layer.name for layer in viewer.layers] == ["cam", "my conf", "cam hue entropy", "cam chroma confidence",
                                                       "cam colorized"]
