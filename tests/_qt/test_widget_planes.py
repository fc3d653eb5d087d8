"""Which plane of a stack the widget colours, takes hints on and reads a reference from.

Run: ``xvfb-run -a pytest tests/_qt/test_widget_planes.py -q``.  The widget's plane must
be the one napari shows, also when the viewer stands half-way between two of the
stack's planes (another layer with a finer step), and a plane coloured alone with hints
on all planes must get that plane's colours of the whole stack's run.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_colorize._qt import _guidance
from widget_driver import open_widget, run_and_wait

BLUE = (0.3, 0.45, 0.75)


def napari_plane(layer) -> int:
    """The plane napari shows of a 3D layer (its own slicing of the viewer's position)."""
    return int(np.round(layer._data_slice.point[0]))


def reason_shown(widget) -> str | None:
    shown = not widget.reason.native.isHidden()
    return widget.reason.value if shown else None


def half_way_viewer(make_napari_viewer, **stack_kwargs):
    """A 4-plane stack of z step 2 beside a layer of step 1: world z 1 is its data z 0.5."""
    viewer = make_napari_viewer()
    stack = viewer.add_image(np.zeros((4, 64, 80), np.float32), name="s", scale=(2, 1, 1),
                             contrast_limits=(0.0, 1.0), **stack_kwargs)
    viewer.add_image(np.zeros((7, 64, 80), np.float32), name="finer", visible=False)
    return viewer, stack


@pytest.mark.parametrize("world_z, shown", [(1.0, 0), (5.0, 2)])  # data z 0.5 and 2.5: halves to even
def test_a_hint_half_way_between_planes_lies_on_the_plane_napari_shows(make_napari_viewer, strong_model,
                                                                       world_z, shown):
    viewer, stack = half_way_viewer(make_napari_viewer)
    viewer.dims.set_point(0, world_z)
    assert stack.world_to_data(viewer.dims.point)[0] == world_z / 2 and napari_plane(stack) == shown
    points = viewer.add_points([[world_z, 30.0, 20.0]], ndim=3, name="hints", face_color=[(*BLUE, 1.0)])
    flat = viewer.add_points([[30.0, 20.0]], ndim=2, name="flat", face_color=[(*BLUE, 1.0)])
    widget = open_widget(viewer, strong_model)
    widget.image.value = stack
    widget.scope.value = "current slice"
    assert widget.plan().index == (shown,)
    for layer in (points, flat):  # clicked on the canvas, or a 2D layer over the stack
        widget.hints.value = layer
        assert reason_shown(widget) is None, layer.name
        assert widget.run_button.enabled


def test_a_hint_on_another_plane_is_refused_naming_the_plane_as_a_person_reads_it(make_napari_viewer, strong_model):
    viewer, stack = half_way_viewer(make_napari_viewer, axis_labels=("z", "y", "x"))
    viewer.dims.set_point(0, 1.0)
    points = viewer.add_points([[4.0, 30.0, 20.0]], ndim=3, name="hints", face_color=[(*BLUE, 1.0)])
    widget = open_widget(viewer, strong_model)
    widget.image.value = stack
    widget.scope.value = "current slice"
    widget.hints.value = points
    assert reason_shown(widget).startswith("The hint does not lie on plane z 0, the plane on screen;")


def test_plane_words():
    from napari_colorize._qt import _planes

    assert _planes.plane_words((3,), ("-3", "-2", "-1")) == "plane 3"  # napari's default labels name no axis
    assert _planes.plane_words((3,), ("z", "y", "x")) == "plane z 3"
    assert _planes.plane_words((2, 0), ("t", "z", "y", "x")) == "plane t 2, z 0"
    assert _planes.plane_words((2, 0), None) == "plane 2, 0"


def test_the_reference_is_read_on_the_plane_napari_shows(make_napari_viewer):
    viewer = make_napari_viewer()
    planes = np.stack([np.full((40, 50, 3), 60 * z, np.uint8) for z in range(4)])
    reference = viewer.add_image(planes, name="ref", rgb=True, scale=(2, 1, 1))
    viewer.add_image(np.zeros((7, 40, 50), np.float32), name="finer")
    viewer.dims.set_point(0, 1.0)
    assert napari_plane(reference) == 0
    np.testing.assert_array_equal(_guidance.reference_array(reference, viewer.dims.point), planes[0])


def textured_stack(planes: int = 4) -> np.ndarray:
    """Mid gray left of an edge that moves right plane by plane, dark beyond: a hint's reach
    differs from plane to plane."""
    stack = np.full((planes, 64, 96), 0.2, np.float32)
    for z in range(planes):
        stack[z, :, :30 + 15 * z] = 0.5
    return stack


def test_current_slice_with_hints_on_all_planes_matches_the_whole_stack(make_napari_viewer, qtbot, strong_model):
    # The hints lie on planes 2 and 3; plane 1 coloured alone got fields computed on plane 1.
    viewer = make_napari_viewer()
    viewer.add_image(textured_stack(), name="s", contrast_limits=(0.0, 1.0))
    points = viewer.add_points([[2.0, 30.0, 40.0], [3.0, 20.0, 60.0]], name="hints",
                               face_color=[(*BLUE, 1.0), (0.2, 0.6, 0.3, 1.0)])
    widget = open_widget(viewer, strong_model)
    widget.hints.value = points
    widget.hints_all_planes.value = True
    widget.live_hints.value = False
    viewer.dims.set_current_step(0, 1)
    widget.scope.value = "current slice"
    run_and_wait(qtbot, widget)
    alone = np.asarray(viewer.layers["s colorized"].data, np.int16)
    assert alone.shape == (1, 64, 96, 3)
    widget.scope.value = "whole stack"
    run_and_wait(qtbot, widget)
    whole = np.asarray(viewer.layers["s colorized"].data, np.int16)
    assert np.abs(alone[0] - whole[1]).max() <= 1


def mixed_units_viewer(make_napari_viewer):
    """A 5-plane stack with z in micrometres over y, x in nanometres, plane z of gray z / 10:
    napari's world is then in nanometres on every axis (z 6 um is world 6000)."""
    viewer = make_napari_viewer()
    planes = np.stack([np.full((64, 80), z / 10, np.float32) for z in range(5)])
    units = ("micrometer", "nanometer", "nanometer")
    stack = viewer.add_image(planes, name="s", scale=(3, 200, 200), translate=(1, 0, 0), units=units,
                             contrast_limits=(0.0, 1.0))
    viewer.dims.set_current_step(0, 2)
    return viewer, stack, units


def test_with_mixed_length_units_the_plane_is_the_one_napari_shows(make_napari_viewer, strong_model):
    # A user test: the viewer's position (world z 7000 nm) was read as the layer's z 7000 um,
    # so the last plane was coloured, and hints and the reference were read there too.
    viewer, stack, units = mixed_units_viewer(make_napari_viewer)
    assert napari_plane(stack) == 2
    widget = open_widget(viewer, strong_model)
    widget.image.value = stack
    widget.scope.value = "current slice"
    plan = widget.plan()
    assert plan.index == (2,)
    assert plan.geometry.translate[0] == pytest.approx(1 + 3 * 2)  # the plane's own z, in micrometres
    points = viewer.add_points([[7.0, 2000.0, 4000.0]], ndim=3, name="hints", face_color=[(*BLUE, 1.0)],
                               units=units)  # on plane 2 at pixel (10, 20)
    np.testing.assert_allclose(_guidance.hint_points(points, stack, viewer.dims.point, viewer.dims.units),
                               [[2.0, 10.0, 20.0]], atol=1e-9)
    widget.hints.value = points
    assert reason_shown(widget) is None
    reference = viewer.add_image(np.stack([np.full((8, 8, 3), 60 * z, np.uint8) for z in range(5)]), rgb=True,
                                 scale=(3, 200, 200), translate=(1, 0, 0), units=units, name="ref")
    np.testing.assert_array_equal(_guidance.reference_array(reference, viewer.dims.point, viewer.dims.units),
                                  np.full((8, 8, 3), 120, np.uint8))
