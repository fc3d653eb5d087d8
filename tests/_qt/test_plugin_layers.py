"""The widget's pure logic (no Qt): what to colour, how outputs are prepared and laid out,
and the checks that keep Run disabled."""

from __future__ import annotations

import re

import numpy as np
import pytest

import napari_colorize as nc
from napari_colorize import ColorizeResult
from napari_colorize._qt import _display, _validation
from napari_colorize._qt._display import display_levels, downsample, pyramid, rgb_to_uint8
from napari_colorize._qt._layers import (Geometry, choose_level, layer_data_tuples, normalization_for, output_names,
                                         plan_input)
from napari_colorize._qt._placing import apply_layer_data, place_layer
from napari_colorize._qt._runner import METHODS, Settings
from napari_colorize.decode import METHODS as DECODE_METHODS


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
    result = ColorizeResult(rgb=np.full((32, 48, 3), 0.5, np.float32), chroma_confidence=np.ones((32, 48), np.float32),
                            hue_entropy=np.zeros((32, 48), np.float32))
    tuples = layer_data_tuples(result, "cells", geometry, {"model": "m"})
    assert [t[1]["name"] for t in tuples] == ["cells hue entropy", "cells chroma confidence", "cells colorized"]
    assert output_names("cells")["rgb"] == "cells colorized"
    assert tuples[2][1]["rgb"] and tuples[0][1]["colormap"] == "magma" and tuples[1][1]["colormap"] == "viridis"
    assert all(t[1]["scale"] == (2.0, 2.0) and not t[1]["multiscale"] for t in tuples)
    # The colour is shown as uint8 (converted here, in the worker); the maps stay exact float32.
    assert tuples[2][0].dtype == np.uint8 and tuples[2][1]["contrast_limits"] == (0.0, 255.0)
    assert tuples[0][0] is result.hue_entropy and tuples[0][1]["contrast_limits"] == (0.0, 1.0)

    viewer = ViewerModel()
    viewer.add_image(np.zeros((5, 5)), name="cells colorized")  # a user's layer with our name: kept
    first = apply_layer_data(viewer.layers, tuples)
    assert len(viewer.layers) == 4 and viewer.layers[0].name == "cells colorized"
    again = apply_layer_data(viewer.layers, layer_data_tuples(result, "cells", geometry))
    assert all(a is b for a, b in zip(first, again)) and len(viewer.layers) == 4
    # A stack result replaces the 2D layers (new ndim) at the same positions.
    stack = ColorizeResult(rgb=np.zeros((2, 32, 48, 3), np.float32),
                           chroma_confidence=np.zeros((2, 32, 48), np.float32),
                           hue_entropy=np.zeros((2, 32, 48), np.float32))
    positions = [viewer.layers.index(layer) for layer in first]
    third = apply_layer_data(viewer.layers, layer_data_tuples(stack, "cells", Geometry((1.0,) * 3, (0.0,) * 3)))
    assert len(viewer.layers) == 4 and third[2].data.shape == (2, 32, 48, 3)
    assert [viewer.layers.index(layer) for layer in third] == positions
    assert not any(layer in viewer.layers for layer in first)


def test_rgb_to_uint8_rounds_to_nearest_and_keeps_lightness():
    values = np.array([0.0, 0.4999 / 255, 0.5001 / 255, 0.5, 1.0, 1.2, -0.1], np.float32)
    rgb = np.repeat(values[:, None], 3, 1)[None]  # (1, 7, 3)
    assert rgb_to_uint8(rgb)[0, :, 0].tolist() == [0, 0, 1, 128, 255, 255, 0]
    colour = np.random.default_rng(0).random((600, 40, 3), dtype=np.float32)  # more rows than one block
    shown = rgb_to_uint8(colour)
    assert np.abs(shown / 255.0 - colour).max() <= 0.5 / 255 + 1e-6
    assert np.abs(shown.mean(-1) / 255.0 - colour.mean(-1)).max() <= 0.5 / 255 + 1e-6  # gray within half a level
    assert rgb_to_uint8(shown) is shown
    da = pytest.importorskip("dask.array")
    lazy = rgb_to_uint8(da.from_array(colour, chunks=(100, 40, 3)))
    assert hasattr(lazy, "dask") and lazy.dtype == np.uint8
    np.testing.assert_array_equal(lazy.compute(), shown)


def test_pyramid_levels_are_2x2_means():
    maps = np.arange(2 * 5 * 7, dtype=np.float32).reshape(2, 5, 7)  # a stack, odd plane sides
    half = downsample(maps, rgb=False)
    assert half.shape == (2, 3, 4) and half.dtype == np.float32
    assert half[1, 0, 0] == maps[1, :2, :2].mean()
    assert half[0, 2, 3] == maps[0, 4, 6]  # the odd corner: its edge repeated
    colour = np.full((4, 6, 3), 10, np.uint8)
    colour[0, 0] = 13  # (13 + 30) / 4 = 10.75: rounded, not truncated
    assert downsample(colour, rgb=True)[0, 0].tolist() == [11, 11, 11]
    levels = pyramid(np.zeros((1000, 300, 3), np.uint8), rgb=True, top=128)
    assert [lv.shape for lv in levels] == [(1000, 300, 3), (500, 150, 3), (250, 75, 3), (125, 38, 3)]


def test_display_levels_pyramid_only_large_in_memory_planes(monkeypatch):
    monkeypatch.setattr(_display, "PYRAMID_TOP", 32)  # the coarsest level's side
    small = np.zeros((64, 64), np.float32)
    assert display_levels(small, rgb=False, pyramid_from=64)[0] is small
    large = display_levels(np.zeros((65, 40, 3), np.float32), rgb=True, pyramid_from=64)
    assert [lv.shape for lv in large] == [(65, 40, 3), (33, 20, 3), (17, 10, 3)]
    assert all(level.dtype == np.uint8 for level in large)
    da = pytest.importorskip("dask.array")
    lazy = da.zeros((3, 4096, 4096), np.float32, chunks=(1, 4096, 4096))
    assert len(display_levels(lazy, rgb=False, pyramid_from=64)) == 1  # a pyramid would compute every plane
    stored = [np.zeros((8, 8, 3), np.uint8), np.zeros((4, 4, 3), np.uint8)]  # a store's levels: kept
    assert [lv.shape for lv in display_levels(stored, rgb=True)] == [(8, 8, 3), (4, 4, 3)]


def _cells_result(value: float = 0.0) -> list:
    result = ColorizeResult(rgb=np.full((32, 48, 3), value, np.float32), chroma_confidence=np.zeros((32, 48), np.float32),
                            hue_entropy=np.zeros((32, 48), np.float32))
    return layer_data_tuples(result, "cells", Geometry((1.0, 1.0), (0.0, 0.0)))


def test_outputs_go_below_the_hints_and_a_renamed_result_is_kept():
    from napari.components import ViewerModel

    viewer = ViewerModel()
    viewer.add_image(np.zeros((32, 48)), name="cells")
    viewer.add_points([[5, 5]], name="hints")
    # The colour layer used to go on top, covering the hint points it was made from.
    apply_layer_data(viewer.layers, _cells_result())
    assert [layer.name for layer in viewer.layers] == [
        "cells", "cells hue entropy", "cells chroma confidence", "cells colorized", "hints"]
    viewer.layers["cells chroma confidence"].contrast_limits = (0.5, 1.0)  # a user's display choice
    kept = viewer.layers["cells colorized"]
    kept.name = "my favourite version"  # renamed to keep it: it was overwritten by the next run
    apply_layer_data(viewer.layers, _cells_result(0.5))
    assert [layer.name for layer in viewer.layers] == [
        "cells", "cells hue entropy", "cells chroma confidence", "my favourite version", "cells colorized", "hints"]
    assert kept.data.max() == 0 and viewer.layers["cells colorized"].data.max() == 128
    assert tuple(viewer.layers["cells chroma confidence"].contrast_limits) == (0.5, 1.0)  # was reset to (0, 1)


def test_an_output_named_with_a_suffix_follows_its_renamed_source_and_a_kept_one_is_not_its_output():
    from napari.components import ViewerModel

    from napari_colorize._qt._layers import METADATA_KEY
    from napari_colorize._qt._placing import layer_id, outputs_of

    viewer = ViewerModel()
    source = viewer.add_image(np.zeros((32, 48)), name="cells")
    viewer.add_image(np.zeros((32, 48)), name="cells colorized")  # e.g. a store of the CLI's, opened

    def run(name: str) -> list:
        result = ColorizeResult(rgb=np.zeros((32, 48, 3), np.float32), chroma_confidence=np.zeros((32, 48), np.float32),
                                hue_entropy=np.zeros((32, 48), np.float32))
        tuples = layer_data_tuples(result, name, Geometry((1.0, 1.0), (0.0, 0.0)))
        for _, kwargs, _ in tuples:  # as the widget marks them: the source layer itself
            kwargs["metadata"][METADATA_KEY]["source_id"] = layer_id(source)
        return apply_layer_data(viewer.layers, tuples)

    first = run("cells")
    assert first[2].name == "cells colorized [1]"
    source.name = "nuclei"
    second = run("nuclei")
    third = run("nuclei")  # a name with napari's suffix was once taken for one the user gave
    assert all(a is b is c for a, b, c in zip(first, second, third)) and len(viewer.layers) == 5
    assert third[2].name == "nuclei colorized"
    third[2].name = "kept"  # the user keeps it: no longer an output that live re-colouring would replace
    assert third[2] not in outputs_of(viewer.layers, source) and third[1] in outputs_of(viewer.layers, source)
    third[1].name = "nuclei chroma confidence [2]"  # kept too, though it looks like napari's own suffix
    fourth = run("nuclei")
    assert fourth[1] is not third[1] and third[1].name == "nuclei chroma confidence [2]"
    # An image opened after the hints (a reference) does not lift the outputs over them.
    viewer.add_points([[5, 5]], name="hints")
    viewer.add_image(np.zeros((32, 48, 3), np.uint8), name="reference", rgb=True)
    for layer in fourth:
        viewer.layers.remove(layer)
    fifth = run("nuclei")
    names = [layer.name for layer in viewer.layers]
    assert names.index(fifth[2].name) < names.index("hints") < names.index("reference")


def test_place_layer_hidden_then_keeps_user_choices(monkeypatch):
    from napari.components import ViewerModel

    monkeypatch.setattr(_display, "PYRAMID_TOP", 16)
    viewer = ViewerModel()
    result = ColorizeResult(rgb=np.zeros((32, 48, 3), np.float32), chroma_confidence=np.zeros((32, 48), np.float32),
                            hue_entropy=np.zeros((32, 48), np.float32))
    (data, kwargs, _), *_ = reversed(layer_data_tuples(result, "cells", Geometry((1.0, 1.0), (0.0, 0.0))))
    layer, visible = place_layer(viewer.layers, data, kwargs, hidden=True)
    assert not layer.visible and visible  # to be shown by the caller one event-loop turn later
    layer.visible, layer.opacity = True, 0.3
    pyramid_tuple = layer_data_tuples(result, "cells", Geometry((1.0, 1.0), (0.0, 0.0)), pyramid_from=16)[-1]
    again, visible = place_layer(viewer.layers, pyramid_tuple[0], pyramid_tuple[1], hidden=True)
    assert again is not layer and again.multiscale and again.opacity == 0.3 and visible
    assert list(viewer.layers) == [again]


def plan_of(shape, output="in memory"):
    return plan_input([np.zeros(shape, np.uint8)], Geometry((1.0,) * len(shape), (0.0,) * len(shape)),
                      (0,) * len(shape), "whole stack", output)


def test_check_run_uses_the_engines_checks_and_messages(tmp_path):
    from napari_colorize.engine.defaults import resolve_tiling
    from napari_colorize.engine.tiling import check_tiling

    assert ("auto", *DECODE_METHODS) == METHODS  # the decoder's registry, not a retyped list
    auto = Settings(device="cpu")
    assert _validation.check_run(auto, plan_of((300, 200))) == resolve_tiling("compact", (300, 200), "cpu")
    with pytest.raises(ValueError) as engine:
        check_tiling(256, 128, 32)
    with pytest.raises(ValueError, match=re.escape(str(engine.value))):
        _validation.check_run(Settings(device="cpu", tile_size=256, overlap=128), plan_of((300, 200)))
    with pytest.raises(ValueError, match="needs at least 32 x 32"):
        _validation.check_run(auto, plan_of((4, 20, 31)))
    with pytest.raises(ValueError, match="needs a GPU"):
        _validation.check_run(Settings(device="cpu", precision="fp16"), plan_of((64, 64)))
    with pytest.raises(ValueError, match="needs a path"):
        _validation.check_run(Settings(device="cpu", output="zarr file"), plan_of((64, 64), "zarr file"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        _validation.check_run(Settings(device="cpu", output="zarr file", zarr_path=str(tmp_path / "no" / "o.zarr")),
                              plan_of((64, 64), "zarr file"))
    with pytest.raises(FileNotFoundError, match="No model file|no model file"):
        _validation.check_run(Settings(model=str(tmp_path / "m.safetensors"), device="cpu"), plan_of((64, 64)))


def test_zarr_destination_inside_the_input_is_refused(tmp_path):
    zarr = pytest.importorskip("zarr")
    source = zarr.open_array(str(tmp_path / "in.zarr"), mode="w", shape=(64, 64), dtype="u1")
    plan = plan_input([source], Geometry((1.0, 1.0), (0.0, 0.0)), (0, 0), "whole stack", "zarr file")
    with pytest.raises(ValueError, match="destroy the input"):
        _validation.check_run(Settings(device="cpu", output="zarr file", zarr_path=str(tmp_path / "in.zarr")), plan)


def test_engine_advice_is_said_in_the_widgets_words(tmp_path):
    # The real messages, so a reworded engine message cannot silently escape the translation.
    import dask.array as da
    import torch

    from napari_colorize import colorize_to_zarr
    from napari_colorize._qt._validation import in_widget_words
    from napari_colorize.devices import autocast
    from napari_colorize.guidance.hints import check_hints
    from napari_colorize.inputs import check_gray_shape, check_gray_values

    def message(call) -> str:
        with pytest.raises((ValueError, FileExistsError)) as info:
            call()
        return str(info.value)

    model = nc.build_model("compact")
    colorize_to_zarr(np.zeros((64, 64), np.float32), tmp_path / "a.zarr", model, device="cpu")
    cases = {
        "precision": lambda: autocast(torch.device("cpu"), "bf16").__enter__(),
        "no hints": lambda: check_hints((np.zeros((0, 2)), np.zeros((0, 3))), (64, 64)),
        "float range": lambda: check_gray_values(np.full((4, 4), 1000.0)),
        "rgb": lambda: check_gray_shape((1, 300, 3), 32),
        "other job": lambda: colorize_to_zarr(np.ones((64, 64), np.float32), tmp_path / "a.zarr", model, device="cpu"),
        # A dask layer not read from files: its advice named the API's source_id= (a user test).
        "other lazy job": lambda: colorize_to_zarr(da.ones((64, 64), dtype=np.float32), tmp_path / "a.zarr", model,
                                                   device="cpu"),
    }
    for name, call in cases.items():
        text = in_widget_words(message(call))
        assert "--" not in text and "=" not in text.split(";")[-1], (name, text)  # no CLI flags or arguments
        assert "source_id" not in text, (name, text)
