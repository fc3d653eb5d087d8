"""Guided colour in the Colorize widget: a reference layer, a Points layer of hints, live re-colour.

Run: ``xvfb-run -a pytest tests/_qt/test_widget_guided.py -q``.  As in test_widget.py the
widget runs in a real viewer with compact models saved to ``tmp_path`` and chosen through
its file option: one whose heads predict orange everywhere with certainty (so a hint's
colour is plainly its own), and the shared randomly initialised one (uncertain enough
for a reference to move its colours).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from skimage.color import rgb2lab

import napari_colorize as nc
from napari_colorize._qt import _guidance, _layers, _validation
from napari_colorize.color import rgb_to_gray
from widget_driver import WAIT_MS, open_widget, run_and_wait

#: The colour layer is uint8: each channel within half a level of the float result.
LEVEL = 1.0 / 255
#: A blue of lightness 0.5 ((R + G + B) / 3), far from the strong model's orange.
BLUE = (0.3, 0.45, 0.75)


@pytest.fixture
def random_model(make_model, tmp_path):
    return str(nc.save_model(copy.deepcopy(make_model()), tmp_path / "random.safetensors"))


def shown_rgb(viewer, name: str) -> np.ndarray:
    data = viewer.layers[f"{name} colorized"].data
    assert data.dtype == np.uint8
    return np.asarray(data, np.float64) / 255.0


def reason_shown(widget) -> str | None:
    """The reason under Run, or None when Run is enabled."""
    shown = not widget.reason.native.isHidden()
    assert widget.run_button.enabled is not shown
    return widget.reason.value if shown else None


def delta_ab(rgb: np.ndarray, colour) -> np.ndarray:
    """Distance in CIE a*b* between each pixel of ``rgb`` and ``colour``."""
    ab = rgb2lab(np.clip(rgb, 0, 1))[..., 1:]
    return np.linalg.norm(ab - rgb2lab(np.asarray(colour, float)[None, None])[0, 0, 1:], axis=-1)


def two_regions(shape=(96, 128)) -> np.ndarray:
    """Mid gray on the left, dark on the right: an edge that a hint must not cross."""
    gray = np.full(shape, 0.5, np.float32)
    gray[:, shape[1] // 2:] = 0.2
    return gray


def test_choices_follow_the_layer_list(make_napari_viewer, strong_model):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((64, 64), np.uint8), name="gray")
    widget = open_widget(viewer, strong_model)
    assert widget.reference.choices == (None,) and widget.hints.choices == (None,)
    assert widget.reference.native.currentText() == "none"
    colour = viewer.add_image(np.zeros((16, 16, 3), np.uint8), name="photo", rgb=True)
    points = viewer.add_points(name="pts")
    assert widget.reference.choices == (None, colour) and widget.hints.choices == (None, points)
    assert widget.reference_strength.native.isHidden() and widget.hint_range.native.isHidden()
    widget.reference.value, widget.hints.value = colour, points
    assert widget.reference_strength.value == nc.guidance.DEFAULT_REFERENCE_STRENGTH
    assert not widget.reference_strength.native.isHidden() and not widget.hint_range.native.isHidden()
    assert widget.hints_all_planes.native.isHidden()  # a 2D image has one plane
    points.name = "hint points"  # a rename shows at once
    assert widget.hints.native.currentText() == "hint points"
    viewer.layers.remove(colour)
    assert widget.reference.value is None and widget.reference.choices == (None,)


def test_reference_changes_colour_and_keeps_lightness(make_napari_viewer, qtbot, random_model):
    yy, xx = np.mgrid[0:96, 0:128]
    gray = (0.15 + 0.7 * (xx / 127) * (0.5 + 0.5 * np.sin(yy / 9.0) ** 2)).astype(np.float32)
    # A green photograph: its palette should pull the colours towards green.
    rng = np.random.default_rng(0)
    photo = np.clip(np.stack([0.2 + 0.1 * rng.random((40, 50)), 0.5 + 0.4 * rng.random((40, 50)),
                              0.15 + 0.1 * rng.random((40, 50))], -1), 0, 1)
    viewer = make_napari_viewer()
    viewer.add_image(gray, name="g", contrast_limits=(0.0, 1.0))
    reference = viewer.add_image((photo * 255).round().astype(np.uint8), name="photo", rgb=True)
    widget = open_widget(viewer, random_model)
    run_and_wait(qtbot, widget)
    plain = shown_rgb(viewer, "g")
    assert widget.reference.choices == (None, reference)  # not the colour result of the first run
    widget.reference.value = reference
    run_and_wait(qtbot, widget)
    guided = shown_rgb(viewer, "g")
    assert len(viewer.layers) == 5  # updated in place

    api = nc.colorize(gray, model=random_model, device="cpu", reference=reference.data)
    np.testing.assert_allclose(guided, api.rgb, atol=LEVEL / 2 + 1e-6)  # the widget passes what the API takes
    np.testing.assert_allclose(rgb_to_gray(api.rgb), gray, atol=1e-5)  # lightness kept exactly
    np.testing.assert_allclose(rgb_to_gray(guided), gray, atol=LEVEL / 2 + 1e-6)  # and as shown (uint8)
    assert np.abs(guided - plain).mean() > 0.02
    greenness = [float((rgb[..., 1] - rgb[..., [0, 2]].mean(-1)).mean()) for rgb in (plain, guided)]
    assert greenness[1] > greenness[0] + 0.02, greenness
    assert viewer.layers["g colorized"].metadata[_layers.METADATA_KEY]["guidance"]["reference"] == [40, 50, 3]


def test_hint_colours_its_region_not_across_the_edge(make_napari_viewer, qtbot, strong_model):
    gray = two_regions()
    viewer = make_napari_viewer()
    viewer.add_image(gray, name="g", contrast_limits=(0.0, 1.0), scale=(2.0, 3.0), translate=(10.0, -4.0))
    widget = open_widget(viewer, strong_model)
    run_and_wait(qtbot, widget)
    plain = shown_rgb(viewer, "g")
    # The Points layer has its own transform: the hint is at image pixel (40, 30) through the world.
    world = np.array([10.0 + 2.0 * 40, -4.0 + 3.0 * 30])
    points = viewer.add_points((world - (0.0, 6.0)) / (1.0, 1.5), name="hints", scale=(1.0, 1.5),
                               translate=(0.0, 6.0), face_color=[(*BLUE, 1.0)])
    widget.hints.value = points
    run_and_wait(qtbot, widget)
    guided = shown_rgb(viewer, "g")
    assert delta_ab(plain[38:43, 28:33], BLUE).min() > 40  # orange before
    assert delta_ab(guided[38:43, 28:33], BLUE).max() < 3  # the hint's colour near its point
    np.testing.assert_allclose(guided[:, 80:], plain[:, 80:], atol=LEVEL)  # the dark side is left alone
    np.testing.assert_allclose(rgb_to_gray(guided), gray, atol=LEVEL / 2 + 1e-6)
    assert widget.hint_range.native.text() == "auto"  # the engine's default: here the image's long side
    assert delta_ab(guided[60:62, 30:32], BLUE).max() < 15  # 20 pixels away, same region: reached
    widget.hint_range.value = 16.0
    run_and_wait(qtbot, widget)
    short = shown_rgb(viewer, "g")
    np.testing.assert_allclose(short[60:62, 30:32], plain[60:62, 30:32], atol=LEVEL)  # now out of reach
    assert delta_ab(short[40:41, 30:31], BLUE).max() < 3  # still the hint's colour at its point


def test_empty_or_outside_hints_say_why_and_add_nothing(make_napari_viewer, qtbot, strong_model):
    from napari.utils.notifications import NotificationSeverity, notification_manager

    gray = two_regions((64, 80))
    viewer = make_napari_viewer()
    viewer.add_image(gray, name="g", contrast_limits=(0.0, 1.0))
    points = viewer.add_points(name="hints", ndim=2)
    widget = open_widget(viewer, strong_model)
    widget.hints.value = points

    def api_reason(pts, colours) -> str:
        with pytest.raises(ValueError) as err:
            nc.colorize(gray, model=strong_model, device="cpu", hints=(pts, colours))
        return _validation.as_reason(err.value)

    assert reason_shown(widget) == api_reason(points.data, points.face_color)
    assert "no points" in reason_shown(widget)
    points.add([20.0, 10.0])
    points.add([70.0, 10.0])  # below the image: named as the layer lists it, not as the engine does
    assert "lies outside the image" in api_reason(points.data, points.face_color)
    assert reason_shown(widget) == "Hint point 2 of 2 lies outside the image: move or delete it in the Points layer"
    points.add([[-5.0, 10.0], [20.0, 99.0]])
    assert reason_shown(widget) == ("Hint points 2, 3, 4 (3) of 4 lie outside the image: move or delete them in the "
                                    "Points layer")
    points.data = points.data[:2]
    errors = []
    notification_manager.notification_ready.connect(errors.append)
    try:
        widget.run_button.clicked()  # a click that reaches run() gets the reason; nothing starts
    finally:
        notification_manager.notification_ready.disconnect(errors.append)
    assert not widget.is_running
    assert [n.severity for n in errors] == [NotificationSeverity.ERROR]
    assert "lies outside the image" in errors[0].message
    qtbot.wait(_guidance.LIVE_DELAY_MS + 200)
    assert [layer.name for layer in viewer.layers] == ["g", "hints"]
    points.data = np.array([[20.0, 10.0]])
    assert reason_shown(widget) is None


def test_current_slice_takes_hints_on_its_plane_or_all_planes(make_napari_viewer, qtbot, strong_model):
    stack = np.stack([two_regions((64, 80))] * 3)
    viewer = make_napari_viewer()
    viewer.add_image(stack, name="s", contrast_limits=(0.0, 1.0))
    viewer.dims.set_current_step(0, 1)
    points = viewer.add_points([[2.0, 30.0, 20.0]], name="hints", face_color=[(*BLUE, 1.0)])
    widget = open_widget(viewer, strong_model)
    widget.scope.value = "current slice"
    widget.hints.value = points
    assert reason_shown(widget).startswith("The hint does not lie on plane 1, the plane on screen")
    assert not widget.hints_all_planes.native.isHidden()
    widget.hints_all_planes.value = True
    assert reason_shown(widget) is None
    run_and_wait(qtbot, widget)
    rgb = shown_rgb(viewer, "s")
    assert rgb.shape == (1, 64, 80, 3)
    assert delta_ab(rgb[0, 28:33, 18:23], BLUE).max() < 3


def test_scrolling_a_stack_rechecks_whether_run_can_start(make_napari_viewer, qtbot, strong_model):
    # The hints on the plane on screen decide it: the reason follows the plane, once scrolling rests.
    viewer = make_napari_viewer()
    viewer.add_image(np.stack([two_regions((64, 80))] * 3), name="s", contrast_limits=(0.0, 1.0))
    viewer.dims.set_current_step(0, 2)
    points = viewer.add_points([[2.0, 30.0, 20.0]], name="hints", face_color=[(*BLUE, 1.0)])
    widget = open_widget(viewer, strong_model)
    widget.scope.value = "current slice"
    widget.hints.value = points
    assert reason_shown(widget) is None and widget.run_button.enabled
    viewer.dims.set_current_step(0, 0)
    qtbot.waitUntil(lambda: reason_shown(widget) is not None, timeout=WAIT_MS)
    assert reason_shown(widget).startswith("The hint does not lie on plane 0, the plane on screen")
    assert not widget.run_button.enabled
    viewer.dims.set_current_step(0, 2)
    qtbot.waitUntil(lambda: reason_shown(widget) is None, timeout=WAIT_MS)
    assert widget.run_button.enabled


def test_hint_points_go_through_the_world(make_napari_viewer):
    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((4, 50, 60), np.float32), scale=(3.0, 0.5, 2.0), translate=(1.0, -5.0, -8.0))
    flat = viewer.add_points([[12.0, -2.0], [5.0, 10.0]], ndim=2, scale=(0.25, 1.0))
    viewer.dims.set_point(0, 1.0 + 3.0 * 2)  # plane 2 on screen
    data = _guidance.hint_points(flat, image, viewer.dims.point)
    # 2D points lie on the plane on screen; y: 12 * 0.25 = 3 -> (3 + 5) / 0.5; x: (-2 + 8) / 2.
    np.testing.assert_allclose(data, [[2.0, 16.0, 3.0], [2.0, 12.5, 9.0]])
    plan = _layers.plan_for_layer(image, viewer.dims.point, "current slice")
    colours = np.array([[1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    points, kept = _guidance.plan_hints(data, colours, plan, np.ones(3), all_planes=False)
    np.testing.assert_allclose(points, [[0.0, 16.0, 3.0], [0.0, 12.5, 9.0]], atol=1e-9)  # the plan: plane 2 only
    np.testing.assert_array_equal(kept, colours)
    data[1, 0] = 3.0  # the second point moves to plane 3: it is not on the plane coloured
    points, kept = _guidance.plan_hints(data, colours, plan, np.ones(3), all_planes=False)
    np.testing.assert_allclose(points, [[0.0, 16.0, 3.0]], atol=1e-9)
    np.testing.assert_array_equal(kept, colours[:1])
    data[1, 1] = 60.0  # below the image, but on plane 3: not used, so not refused
    _guidance.plan_hints(data, colours, plan, np.ones(3), all_planes=False)
    with pytest.raises(ValueError, match="hint point 2 of 2 lies outside the image"):
        _guidance.plan_hints(data, colours, plan, np.ones(3), all_planes=True)  # now it is used
    data[1, 1] = 12.5
    data[1, 0] = 2.0
    halved, _ = _guidance.plan_hints(data, np.ones((2, 4)), _layers.plan_input(
        [image.data], _layers.Geometry((1, 1, 1), (0, 0, 0)), (0, 0, 0), "whole stack"), np.array([1.0, 2.0, 2.0]),
        all_planes=False)
    np.testing.assert_allclose(halved, [[2.0, 8.0, 1.5], [2.0, 6.25, 4.5]], atol=1e-9)  # a level at half resolution


def test_live_hints_recolour_in_place(make_napari_viewer, qtbot, strong_model, monkeypatch):
    gray = two_regions((64, 80))
    viewer = make_napari_viewer()
    viewer.add_image(gray, name="g", contrast_limits=(0.0, 1.0))
    # A first hint on the dark side, beyond the edge: it leaves the next one's colour alone.
    points = viewer.add_points([[50.0, 70.0]], name="hints", face_color=[(0.3, 0.15, 0.15, 1.0)])
    widget = open_widget(viewer, strong_model)
    widget.hints.value = points
    run_and_wait(qtbot, widget)
    layer = viewer.layers["g colorized"]
    before = shown_rgb(viewer, "g")
    names = [lyr.name for lyr in viewer.layers]

    points.current_face_color = (*BLUE, 1.0)
    points.selected_data = set()
    points.add([20.0, 20.0])  # no Run: the edit re-colours after a short pause
    qtbot.waitUntil(lambda: not np.array_equal(np.asarray(layer.data) / 255.0, before) and not widget.is_running,
                    timeout=WAIT_MS)
    after = shown_rgb(viewer, "g")
    assert viewer.layers["g colorized"] is layer and [lyr.name for lyr in viewer.layers] == names
    assert delta_ab(after[18:23, 18:23], BLUE).max() < 3
    assert widget.status.value.startswith("Re-coloured g")

    points.selected_data = set()
    points.current_face_color = "red"  # the next point's colour: the hints are unchanged, nothing runs
    qtbot.wait(_guidance.LIVE_DELAY_MS + 200)
    assert not widget.is_running and widget.status.value.startswith("Re-coloured g")

    widget.live_hints.value = False  # off: edits wait for Run
    points.data = points.data[:1]
    qtbot.wait(_guidance.LIVE_DELAY_MS + 500)
    assert not widget.is_running and np.array_equal(shown_rgb(viewer, "g"), after)

    widget.live_hints.value = True  # too large to be quick: the status says to press Run
    monkeypatch.setattr(_guidance, "LIVE_MAX_PIXELS", 64 * 80 - 1)
    points.add([30.0, 30.0])
    qtbot.waitUntil(lambda: _guidance.PRESS_RUN in widget.status.value, timeout=5000)
    assert not widget.is_running and np.array_equal(shown_rgb(viewer, "g"), after)


def test_all_white_hints_are_used_and_noted_once(make_napari_viewer, qtbot, strong_model, monkeypatch):
    # New points are white in napari: a user who never picked colours pushed the image to white
    # without a word. White is still used as asked (it may be meant), with one note per layer.
    import napari.utils.notifications as notifications

    shown: list[str] = []
    monkeypatch.setattr(notifications, "show_warning", shown.append)
    viewer = make_napari_viewer()
    viewer.add_image(two_regions(), name="g", contrast_limits=(0.0, 1.0))
    widget = open_widget(viewer, strong_model)
    points = viewer.add_points([[40.0, 30.0], [50.0, 30.0]], name="hints")
    assert np.allclose(points.face_color[:, :3], 1.0)  # napari's colour for new points
    widget.hints.value = points
    points.add([[60.0, 30.0]])  # edits before any result is shown are checked, not coloured
    qtbot.wait(400)
    assert widget.run_blocker() is None and not [m for m in shown if "are white" in m]  # said when a job uses them
    points.data = points.data[:2]
    run_and_wait(qtbot, widget)
    assert delta_ab(shown_rgb(viewer, "g")[39:42, 29:32], (0.5, 0.5, 0.5)).max() < 3  # white at lightness 0.5: gray
    notes = [m for m in shown if "hints of 'hints' are white" in m]
    assert len(notes) == 1 and "all 2 hints" in notes[0]
    run_and_wait(qtbot, widget)
    assert len([m for m in shown if "are white" in m]) == 1  # not again for the same layer
    points.face_color = [(*BLUE, 1.0), (*BLUE, 1.0)]
    run_and_wait(qtbot, widget)
    assert len([m for m in shown if "are white" in m]) == 1


def test_transparent_or_hidden_points_are_not_hints(make_napari_viewer, qtbot, strong_model):
    # napari does not draw a point with a fully transparent face, nor one with shown=False: such a
    # point used to colour the image all the same, with a colour the user could not see.
    viewer = make_napari_viewer()
    viewer.add_image(two_regions(), name="g", contrast_limits=(0.0, 1.0))
    widget = open_widget(viewer, strong_model)
    run_and_wait(qtbot, widget)
    plain = shown_rgb(viewer, "g")
    points = viewer.add_points([[40.0, 30.0], [90.0, 10.0]], name="hints",
                               face_color=[(*BLUE, 0.0), (*BLUE, 0.0)])
    widget.hints.value = points
    assert reason_shown(widget) == ("All 2 hint points are hidden or fully transparent: show them, or give them "
                                    "a face colour that is not transparent, in the Points layer")
    points.face_color = [(*BLUE, 0.5), (*BLUE, 0.0)]  # half-transparent counts: alpha is not a weight
    points.data = np.array([[40.0, 30.0], [140.0, 10.0]])  # the transparent one outside: not refused
    assert reason_shown(widget) is None
    run_and_wait(qtbot, widget)
    guided = shown_rgb(viewer, "g")
    assert delta_ab(guided[38:43, 28:33], BLUE).max() < 3
    points.shown = np.array([False, True])
    points.data = np.array([[40.0, 30.0], [90.0, 10.0]])
    points.face_color = [(*BLUE, 1.0), (*BLUE, 1.0)]  # the shown point at (90, 10) is on the same side
    run_and_wait(qtbot, widget)
    assert delta_ab(shown_rgb(viewer, "g")[38:43, 28:33], BLUE).max() > 3  # the hidden hint's colour is gone
    assert delta_ab(shown_rgb(viewer, "g")[89:92, 9:12], BLUE).max() < 3
    assert delta_ab(plain[38:43, 28:33], BLUE).min() > 40
