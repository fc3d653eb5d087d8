"""The output registry drives every front end: one entry plus its computation adds a map."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import napari_colorize as nc
from napari_colorize import inference
from napari_colorize.outputs import (OUTPUTS, ColorizeResult, Output, channel_slices, check_output_keys, get_output,
                                     register_output, unregister_output)


def test_built_in_outputs_and_their_channels():
    assert [o.key for o in OUTPUTS[:3]] == ["rgb", "confidence", "entropy"]
    slices = channel_slices()
    assert slices["rgb"] == slice(0, 3) and slices["chroma_confidence"] == 3 and slices["hue_entropy"] == 4
    assert get_output("confidence") is get_output("chroma_confidence")
    with pytest.raises(ValueError, match="choose from rgb, confidence, entropy"):
        get_output("colour")
    assert check_output_keys(["entropy", "rgb", "entropy"]) == ("entropy", "rgb")
    with pytest.raises(ValueError, match="at least one"):
        check_output_keys([])


def test_result_names_its_outputs():
    stacked = np.arange(2 * 3 * 5, dtype=np.float32).reshape(2, 3, 5)
    result = ColorizeResult.from_stacked(stacked, {"model": "x"})
    np.testing.assert_array_equal(result.rgb, stacked[..., :3])
    np.testing.assert_array_equal(result.hue_entropy, stacked[..., 4])
    assert result.info == {"model": "x"}
    with pytest.raises(AttributeError, match="no output 'colour'"):
        _ = result.colour


@pytest.fixture
def half_confidence():
    """A dummy fourth map, 'half the chroma confidence', registered for one test."""
    output = Output("half_confidence", "half", 1, "half/0", "half", "half confidence", "gray", "test map")

    def compute(probs, space):
        return 0.5 * space.uncertainty(probs)[0]

    register_output(output)
    inference.MAP_FUNCTIONS["half_confidence"] = compute
    yield output
    unregister_output("half_confidence")
    del inference.MAP_FUNCTIONS["half_confidence"]


def test_a_new_output_reaches_api_zarr_cli_and_layers(half_confidence, tmp_path, camera_small, model_path):
    gray = camera_small
    # API
    result = nc.colorize(gray, model_path, device="cpu")
    np.testing.assert_allclose(result.half_confidence, 0.5 * result.chroma_confidence, atol=1e-6)
    # zarr
    from napari_colorize.engine.zarr_io import open_zarr_result
    store = nc.colorize_to_zarr(gray, tmp_path / "out.zarr", model_path, device="cpu")
    opened = open_zarr_result(store)
    np.testing.assert_allclose(np.asarray(opened.half_confidence), result.half_confidence, atol=1e-6)
    # CLI
    import imageio.v3 as iio

    from napari_colorize import cli
    src = tmp_path / "in" / "cam.png"
    src.parent.mkdir()
    iio.imwrite(src, gray)
    assert cli.main(["colorize", str(src), "-o", str(tmp_path / "out"), "--model", str(model_path),
                     "--outputs", "rgb,half", "--no-progress"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["cam_colorized.png", "cam_half.png"]
    # layers (no viewer needed: the layer data tuples the widget adds)
    from napari_colorize._qt._layers import Geometry, layer_data_tuples
    tuples = layer_data_tuples(result, "cam", Geometry((1.0, 1.0), (0.0, 0.0)))
    by_name = {kw["name"]: (data, kw) for data, kw, _ in tuples}
    assert "cam half confidence" in by_name and by_name["cam half confidence"][1]["colormap"] == "gray"
    assert tuples[-1][1]["name"] == "cam colorized"  # the colour image stays on top


def test_only_scalar_maps_can_be_added():
    with pytest.raises(ValueError, match="scalar maps"):
        register_output(Output("rgb2", "rgb2", 3, "rgb2/0", "rgb2", "rgb2", None, "x"))
    with pytest.raises(ValueError, match="already registered"):
        register_output(Output("hue_entropy", "e2", 1, "e2/0", "e2", "e2", None, "x"))


@pytest.fixture
def camera_small():
    from skimage import data
    return data.camera()[100:228, 150:278].copy()


@pytest.fixture
def model_path(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    nc.save_model(nc.build_model("compact", "lab"), path)
    return path


def test_repr_shows_the_shapes_of_multiscale_outputs():
    """open_zarr_levels gives each output as a list of levels: its repr named them None, as if not written."""
    levels = ColorizeResult(rgb=[np.zeros((8, 8, 3)), np.zeros((4, 4, 3))], chroma_confidence=[np.zeros((8, 8))])
    text = repr(levels)
    assert "'rgb': [(8, 8, 3), (4, 4, 3)]" in text
    assert "'chroma_confidence': [(8, 8)]" in text
    assert "'hue_entropy': None" in text
    assert "'rgb': (2, 2, 3)" in repr(ColorizeResult(rgb=np.zeros((2, 2, 3))))
