"""The Python API: lightness pass-through for every space and method, options, model cache."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from napari_colorize import build_model, colorize, get_model, rgb_to_gray, save_model
from napari_colorize.api import decode_options_for
from napari_colorize.color import rgb_to_hue_chroma

METHODS = [None, "expectation", "median", "mode", "sample"]
SPACES = ["hue_chroma", "lab", "lab_marginal"]


def _images() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(42)
    yy, xx = np.mgrid[:64, :80]
    return {
        "random": rng.random((64, 80)).astype(np.float32),
        "smooth": ((np.sin(xx / 9.0) * np.cos(yy / 7.0) + 1) / 2).astype(np.float32),
        "black": np.zeros((64, 80), np.float32),
        "white": np.ones((64, 80), np.float32),
        "mid_gray": np.full((64, 80), 0.5, np.float32),
        "checkerboard": ((yy + xx) % 2).astype(np.float32),
    }


IMAGES = _images()


def _chroma(rgb: np.ndarray) -> np.ndarray:
    return rgb_to_hue_chroma(torch.from_numpy(rgb))[1].numpy()


@pytest.mark.parametrize("space", SPACES)
@pytest.mark.parametrize("method", METHODS)
def test_lightness_pass_through(make_model, space, method):
    model = make_model("compact", space)
    for name, image in IMAGES.items():
        result = colorize(image, model=model, method=method)
        rgb = result.rgb
        assert rgb.shape == (64, 80, 3) and rgb.dtype == np.float32, name
        assert rgb.min() >= 0 and rgb.max() <= 1, name
        assert np.abs(rgb_to_gray(rgb) - image).max() <= 1 / 255, name
        if name in ("black", "white"):
            np.testing.assert_array_equal(rgb, np.repeat(image[..., None], 3, -1))
        if name in ("random", "smooth"):
            # The model does colour these: keeping the gray is not a trivial gray output.
            assert _chroma(rgb).mean() > 0.03, (name, space, method)


@pytest.mark.parametrize("space", SPACES)
def test_saturation_boost_keeps_gray_and_gamut(make_model, space):
    model = make_model("compact", space)
    for name in ("random", "smooth", "checkerboard", "mid_gray"):
        image = IMAGES[name]
        plain = colorize(image, model=model).rgb
        boosted = colorize(image, model=model, saturation=3.0).rgb
        assert boosted.min() >= 0 and boosted.max() <= 1
        assert np.abs(rgb_to_gray(boosted) - image).max() <= 1 / 255
        if name in ("random", "smooth"):  # (a 0/1 checkerboard has no room for chroma at all)
            assert _chroma(boosted).mean() > _chroma(plain).mean() + 0.01, name
    # Saturation 0 gives the gray image itself.
    gray = colorize(IMAGES["smooth"], model=model, saturation=0.0).rgb
    # (Lab: within the float32 round trip through lab_to_rgb)
    np.testing.assert_allclose(gray, np.repeat(IMAGES["smooth"][..., None], 3, -1), atol=1e-4)


def test_integer_inputs_keep_their_scaled_gray(make_model):
    image = (IMAGES["smooth"] * 65535).astype(np.uint16)
    rgb = colorize(image, model=make_model("compact", "lab")).rgb
    assert np.abs(rgb_to_gray(rgb) - image / 65535).max() <= 1 / 255


@pytest.mark.parametrize("space", SPACES)
def test_uncertainty_maps(make_model, space):
    result = colorize(IMAGES["random"], model=make_model("compact", space))
    for m in (result.chroma_confidence, result.hue_entropy):
        assert m.shape == (64, 80) and m.dtype == np.float32
        assert m.min() >= 0 and m.max() <= 1 and m.std() > 0
    assert result.info["space"] == space and result.info["backbone"] == "compact"
    assert result.info["device"] == "cpu" and result.info["model"] == "in-memory"


def test_sample_method_is_seeded(make_model):
    model = make_model("compact", "lab")
    a = colorize(IMAGES["random"], model=model, method="sample", seed=5).rgb
    b = colorize(IMAGES["random"], model=model, method="sample", seed=5).rgb
    c = colorize(IMAGES["random"], model=model, method="sample", seed=6).rgb
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_calibrated_decoding_from_model_metadata(make_model):
    model = copy.deepcopy(make_model("compact", "hue_chroma"))
    model.config.decoding = {"confidence_fading": [0.95, 0.99]}  # nearly everything fades
    opts = decode_options_for(model)
    assert opts.confidence_fading == (0.95, 0.99)
    assert decode_options_for(model, calibrated=False).confidence_fading is None
    faded = colorize(IMAGES["smooth"], model=model).rgb
    plain = colorize(IMAGES["smooth"], model=model, calibrated=False).rgb
    assert _chroma(faded).mean() < 0.5 * _chroma(plain).mean()
    assert np.abs(rgb_to_gray(faded) - IMAGES["smooth"]).max() <= 1 / 255


def test_a_stored_chroma_gain_is_applied_and_saturation_still_scales_the_result(make_model):
    model = copy.deepcopy(make_model("compact", "hue_chroma"))
    plain = copy.deepcopy(model)
    model.config.decoding = {"chroma_gain": 1.5}  # a calibrated gain
    assert decode_options_for(model).chroma_gain == 1.5
    assert decode_options_for(model, calibrated=False).chroma_gain == 1.0
    for saturation in (1.0, 2.0):  # unguided, the gain and the saturation multiply
        want = colorize(IMAGES["smooth"], model=plain, saturation=1.5 * saturation).rgb
        np.testing.assert_allclose(colorize(IMAGES["smooth"], model=model, saturation=saturation).rgb, want, atol=1e-5)
    plain.config.decoding = {"chroma_gain": 0.0}  # edited by hand: one clear error
    with pytest.raises(ValueError, match="chroma_gain"):
        colorize(IMAGES["smooth"], model=plain)


def test_a_stored_saturation_is_applied_by_every_front_end_and_the_calls_multiplies_it(make_model, tmp_path):
    # It used to be replaced by the call's default of 1, so a model's own saturation did nothing.
    import imageio.v3 as iio
    import zarr

    from napari_colorize import colorize_to_zarr
    from napari_colorize.cli import main

    plain = copy.deepcopy(make_model("compact", "hue_chroma"))
    model = copy.deepcopy(plain)
    model.config.decoding = {"saturation": 0.5}
    path = save_model(model, tmp_path / "faint.safetensors")
    gray = IMAGES["smooth"]
    half = colorize(gray, model=plain, saturation=0.5).rgb
    assert np.abs(half - colorize(gray, model=plain).rgb).max() > 0.01  # the test can tell them apart
    for source in (model, str(path)):
        np.testing.assert_allclose(colorize(gray, model=source).rgb, half, atol=1e-6)
        np.testing.assert_allclose(colorize(gray, model=source, saturation=2.0).rgb, colorize(gray, model=plain).rgb,
                                   atol=1e-6)
    np.testing.assert_allclose(colorize(gray, model=str(path), calibrated=False).rgb, colorize(gray, model=plain).rgb,
                               atol=1e-6)
    root = zarr.open_group(str(colorize_to_zarr(gray, tmp_path / "o.zarr", model=str(path), rgb_dtype="float32")),
                           mode="r")
    np.testing.assert_allclose(np.moveaxis(np.asarray(root["0"]), 0, -1), half, atol=1e-6)
    gray8 = np.round(gray * 255).astype(np.uint8)
    iio.imwrite(tmp_path / "g.png", gray8)
    assert main(["colorize", str(tmp_path / "g.png"), "-o", str(tmp_path / "cli"), "--model", str(path),
                 "--device", "cpu", "--no-progress"]) == 0
    want = colorize(gray8.astype(np.float32) / 255, model=plain, saturation=0.5).rgb
    np.testing.assert_allclose(iio.imread(tmp_path / "cli" / "g_colorized.png") / 255, want, atol=1 / 255 + 1e-6)
    # --uncalibrated is the CLI's calibrated=False.
    assert main(["colorize", str(tmp_path / "g.png"), "-o", str(tmp_path / "raw"), "--model", str(path),
                 "--device", "cpu", "--no-progress", "--uncalibrated"]) == 0
    want = colorize(gray8.astype(np.float32) / 255, model=plain).rgb
    np.testing.assert_allclose(iio.imread(tmp_path / "raw" / "g_colorized.png") / 255, want, atol=1 / 255 + 1e-6)


def test_bad_options_are_reported(make_model):
    model = make_model("compact", "hue_chroma")
    with pytest.raises(ValueError, match="unknown decoding method"):
        colorize(IMAGES["random"], model=model, method="average")
    with pytest.raises(ValueError, match="saturation"):
        colorize(IMAGES["random"], model=model, saturation=-2)
    with pytest.raises(ValueError, match="precision"):
        colorize(IMAGES["random"], model=model, precision="fp8")


def test_stacks_keep_each_plane_gray(make_model):
    stack = np.stack([IMAGES["smooth"], IMAGES["random"]])
    result = colorize(stack, model=make_model("compact", "hue_chroma"))
    assert np.asarray(result.rgb).shape == (2, 64, 80, 3)
    assert np.abs(rgb_to_gray(np.asarray(result.rgb)) - stack).max() <= 1 / 255
    single = colorize(IMAGES["smooth"], model=make_model("compact", "hue_chroma")).rgb
    np.testing.assert_allclose(np.asarray(result.rgb)[0], single, atol=1e-6)


def test_get_model_loads_a_file_once(make_model, tmp_path):
    path = save_model(copy.deepcopy(make_model("compact", "lab")), tmp_path / "m.safetensors")
    first, second = get_model(path, "cpu"), get_model(str(path), "cpu")
    assert first is second and not first.training
    result = colorize(IMAGES["smooth"], model=path)
    expected = colorize(IMAGES["smooth"], model=make_model("compact", "lab"))
    np.testing.assert_array_equal(result.rgb, expected.rgb)
    assert result.info["model"] == str(path)
    with pytest.raises(FileNotFoundError, match="no model file"):
        colorize(IMAGES["smooth"], model=tmp_path / "nothing.safetensors")


def test_a_model_object_is_left_as_it_was():
    # A user may colorize with a model mid-training: it must stay in training mode, in its
    # own memory layout, with its own weights; the engine works on a copy.
    torch.manual_seed(5)
    model = build_model("compact", "lab").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    first = colorize(IMAGES["smooth"], model=model, device="cpu")
    assert model.training and get_model(model, "cpu") is not model
    assert not any(p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
                   for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert get_model(model, "cpu") is get_model(model, "cpu")  # the copy is reused...
    with torch.no_grad():
        model.heads["ab"].bias[0] += 5.0  # ...until the weights change
    second = colorize(IMAGES["smooth"], model=model, device="cpu")
    assert not np.array_equal(first.rgb, second.rgb)
    # A model already set up for inference on the device is used itself: no second copy in memory.
    model.eval()
    assert get_model(model, "cpu") is model


def test_a_file_name_or_zarr_group_says_how_to_get_the_pixels(tmp_path):
    import zarr

    with pytest.raises(TypeError, match=r"not a file name \('photo.png'\); read the file with napari_colorize.io"):
        colorize("photo.png")
    with pytest.raises(TypeError, match="not a file name"):
        colorize(tmp_path / "photo.png")
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    group.create_array("0", shape=(64, 64), dtype="u1")
    with pytest.raises(TypeError, match=r"not a zarr group; pass one of its arrays, e.g. group\['0'\]"):
        colorize(group)


def test_limits_without_a_normalisation_are_the_range_used_for_every_dtype(make_model):
    """limits=(lo, hi) used to be ignored for uint8, uint16 and floats (a 12-bit camera image in
    uint16 came out nearly black) while info reported them as used."""
    camera = (np.arange(64 * 80).reshape(64, 80) % 256).astype(np.float64) / 255.0
    for data, limits in [((camera * 4095).astype(np.uint16), (0, 4095)), (camera.astype(np.float32) * 10, (0, 10))]:
        result = colorize(data, make_model(), device="cpu", limits=limits)
        np.testing.assert_allclose(rgb_to_gray(np.asarray(result.rgb)), data / limits[1], atol=1e-5)
        assert result.info["normalize"] == "minmax" and result.info["limits"] == tuple(map(float, limits))
    with pytest.raises(ValueError, match="pass one or the other"):
        colorize((camera * 255).astype(np.uint8), make_model(), device="cpu", limits=(0, 255), normalize="dtype")


def test_tiled_outputs_stay_within_0_and_1():
    """The blend of tiles is a float32 sum: it passed 1 by 1e-7 on three pixels of the camera,
    and skimage.util.img_as_ubyte refused the result."""
    from skimage import data
    from skimage.util import img_as_ubyte

    result = colorize(data.camera()[:256, :256], device="cpu", tile_size=128, overlap=32)
    for name in ("rgb", "chroma_confidence", "hue_entropy"):
        values = np.asarray(getattr(result, name))
        assert values.min() >= 0.0 and values.max() <= 1.0, name
    img_as_ubyte(np.asarray(result.rgb))


@pytest.mark.parametrize("tiling, message", [({"tile_size": 64.5}, "tile size must be a whole number of pixels, got 64.5"),
                                             ({"tile_size": 128, "overlap": 16.5}, "overlap must be a whole number"),
                                             ({"tile_size": float("nan")}, "tile size must be a whole number")])
def test_a_fractional_tile_size_is_refused_not_truncated(make_model, tiling, message):
    with pytest.raises(ValueError, match=message):
        colorize(np.zeros((200, 200), np.float32), make_model(), device="cpu", **tiling)
