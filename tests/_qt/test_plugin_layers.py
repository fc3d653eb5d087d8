"""The widget's pure logic (no Qt): what to colour and how outputs are laid out."""

from __future__ import annotations

import numpy as np
import pytest

from napari_colorize import ColorizeResult
from napari_colorize._layers import (Geometry, apply_layer_data, choose_level, layer_data_tuples,
                                     normalization_for, output_names, plan_input)


def test_choose_level_is_the_finest_that_fits():
    shapes = [(40000, 30000), (20000, 15000), (10000, 7500), (5000, 3750)]
    assert choose_level(shapes, max_pixels=10000 * 7500) == 2
    assert choose_level(shapes, max_pixels=10 ** 12) == 0
    assert choose_level(shapes, max_pixels=10) == 3  # nothing fits: the coarsest


def test_plan_current_slice_of_a_multiscale_stack():
    levels = [np.zeros((8, 4096, 4096), np.uint8), np.zeros((8, 2048, 2048), np.uint8),
              np.zeros((8, 1024, 1024), np.uint8)]
    geometry = Geometry(scale=(3.0, 0.5, 0.5), translate=(1.0, 10.0, 20.0), axis_labels=("z", "y", "x"))
    plan = plan_input(levels, geometry, (5.4, 100.0, 100.0), "current slice", max_pixels=2048 * 2048)
    assert plan.level == 1 and plan.index == (5,) and plan.displayed == (0,)
    assert plan.array.shape == (1, 2048, 2048)
    assert plan.geometry.scale == (3.0, 1.0, 1.0)  # level 1 pixels are twice as large in Y, X
    assert plan.geometry.translate == (1.0 + 5 * 3.0, 10.0, 20.0)
    assert plan.geometry.axis_labels == ("z", "y", "x")
    # A zarr file streams level 0 whatever its size.
    assert plan_input(levels, geometry, (0, 0, 0), "whole stack", output="zarr file", max_pixels=10).level == 0


def test_plan_slices_lazily_and_clips_the_position():
    da = pytest.importorskip("dask.array")
    lazy = da.zeros((4, 5, 64, 64), chunks=(1, 1, 64, 64))
    plan = plan_input([lazy], Geometry((1.0,) * 4, (0.0,) * 4), (9.0, -3.0, 0, 0), "current slice")
    assert plan.index == (3, 0) and plan.array.shape == (1, 1, 64, 64)
    assert hasattr(plan.array, "dask")  # still lazy
    whole = plan_input([lazy], Geometry((1.0,) * 4, (0.0,) * 4), (0, 0, 0, 0), "whole stack")
    assert whole.array is lazy and whole.index == () and whole.displayed == (0, 0)
    shown = plan_input([lazy], Geometry((1.0,) * 4, (0.0,) * 4), (2.0, 4.0, 0, 0), "whole stack")
    assert shown.displayed == (2, 4)


def test_normalization_choices():
    assert normalization_for("contrast limits", (100, 3000)) == ("minmax", (100.0, 3000.0))
    assert normalization_for("data type range") == (None, None)
    assert normalization_for("percentile") == ("percentile", None)
    with pytest.raises(ValueError, match="are empty"):
        normalization_for("contrast limits", (5, 5))
    with pytest.raises(ValueError, match="unknown normalisation"):
        normalization_for("gamma")


def test_layer_tuples_and_in_place_update():
    from napari.components import ViewerModel

    geometry = Geometry(scale=(2.0, 2.0), translate=(1.0, -1.0), axis_labels=("y", "x"))
    result = ColorizeResult(np.full((32, 48, 3), 0.5, np.float32), np.ones((32, 48), np.float32),
                            np.zeros((32, 48), np.float32))
    tuples = layer_data_tuples(result, "cells", geometry, {"model": "m"})
    assert [t[1]["name"] for t in tuples] == ["cells hue entropy", "cells chroma confidence", "cells colorized"]
    assert output_names("cells")["rgb"] == "cells colorized"
    assert tuples[2][1]["rgb"] and tuples[0][1]["colormap"] == "magma" and tuples[1][1]["colormap"] == "viridis"
    assert all(t[1]["contrast_limits"] == (0.0, 1.0) and t[1]["scale"] == (2.0, 2.0) for t in tuples)

    viewer = ViewerModel()
    viewer.add_image(np.zeros((5, 5)), name="cells colorized")  # a user's layer with our name: kept
    first = apply_layer_data(viewer.layers, tuples)
    assert len(viewer.layers) == 4 and viewer.layers[0].name == "cells colorized"
    again = apply_layer_data(viewer.layers, layer_data_tuples(result, "cells", geometry))
    assert all(a is b for a, b in zip(first, again)) and len(viewer.layers) == 4
    # A stack result replaces the 2D layers (new ndim) at the same positions.
    stack = ColorizeResult(np.zeros((2, 32, 48, 3), np.float32), np.zeros((2, 32, 48), np.float32),
                           np.zeros((2, 32, 48), np.float32))
    positions = [viewer.layers.index(layer) for layer in first]
    third = apply_layer_data(viewer.layers, layer_data_tuples(stack, "cells", Geometry((1.0,) * 3, (0.0,) * 3)))
    assert len(viewer.layers) == 4 and third[2].data.shape == (2, 32, 48, 3)
    assert [viewer.layers.index(layer) for layer in third] == positions
    assert not any(layer in viewer.layers for layer in first)
