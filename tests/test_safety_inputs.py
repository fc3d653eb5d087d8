"""No silent data loss on the way in (issue 12), as a user meets it: the API and the CLI on real files.

The reference for every colourised result is the rule the product promises: the
lightness of the result equals the gray input (``rgb_to_gray(result) == gray``), so
an input whose content was lost (flat gray, inverted) cannot pass.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image as PILImage
from skimage import data

import napari_colorize as nc
from napari_colorize import cli, colorize, rgb_to_gray
from napari_colorize.inputs import InputScalingWarning, data_range_limits


@pytest.fixture(scope="module")
def cam() -> np.ndarray:
    return data.camera()[::4, ::4].copy()  # (128, 128) uint8, 0-255


@pytest.fixture(scope="module")
def model(make_model):
    return make_model("compact", "hue_chroma")


@pytest.fixture(autouse=True)
def _fresh_tile_cache():
    from napari_colorize.engine.cache import clear_caches
    clear_caches()  # equal inputs of earlier cases would be served from the cache, unread


def _lightness(rgb) -> np.ndarray:
    return np.asarray(rgb_to_gray(np.asarray(rgb, np.float32)))


@pytest.mark.parametrize("convert", [lambda a: a.astype(np.int64), lambda a: a.astype(np.int32) * 16,
                                     lambda a: a.tolist()], ids=["int64", "int32 0-4080", "list"])
def test_wide_integer_images_keep_their_content(model, cam, convert):
    with pytest.warns(InputScalingWarning, match="data range"):
        result = colorize(convert(cam), model=model, device="cpu")
    np.testing.assert_allclose(_lightness(result.rgb), cam / 255.0, atol=2e-3)  # not 0.5 everywhere
    reference = colorize(cam, model=model, device="cpu")
    np.testing.assert_allclose(result.rgb, reference.rgb, atol=1e-5)


def test_tiles_of_a_wide_integer_image_share_the_whole_images_limits(model, cam):
    counts = cam.astype(np.int32) * 16
    counts[:64] //= 4  # the top tiles alone would be stretched by their own, smaller maximum
    limits = data_range_limits(counts, warn=False)
    tiled = dict(model=model, device="cpu", tile_size=64, overlap=16)
    result = colorize(counts, limits=limits, **tiled)
    np.testing.assert_allclose(_lightness(result.rgb), counts / limits[1], atol=2e-3)


def test_tiles_of_a_wide_integer_image_get_the_limits_without_asking(model, cam):
    counts = cam.astype(np.int32) * 16
    counts[:64] //= 4
    with pytest.warns(InputScalingWarning):
        rgb = np.asarray(colorize(counts, model=model, device="cpu", tile_size=64, overlap=16).rgb)
    np.testing.assert_allclose(_lightness(rgb), counts / counts.max(), atol=2e-3)


# ----------------------------------------------------------------------------- the command line on real files

@pytest.fixture
def only_colorize(monkeypatch):
    monkeypatch.setattr(cli, "_SUBCOMMANDS", ("cli_colorize",))


def test_cli_colours_awkward_files_right_and_refuses_the_rest_one_line_each(tmp_path, cam, model_path,
                                                                            only_colorize, capsys):
    src = tmp_path / "in"
    src.mkdir()
    tifffile.imwrite(src / "counts.tif", cam.astype(np.int32) * 16)
    rgb = np.dstack([cam, 255 - cam, cam // 2])
    PILImage.fromarray(rgb).convert("CMYK").save(src / "print.jpg", quality=98)
    PILImage.fromarray(np.dstack([cam, np.full_like(cam, 200)]), "LA").save(src / "faded.png")
    (src / "empty.png").touch()
    with tifffile.TiffWriter(src / "mixed.tif") as tif:
        tif.write(cam)
        tif.write(cam[:64])
    out = tmp_path / "out"
    code = cli.main(["colorize", str(src), "-o", str(out), "--model", model_path, "--device", "cpu",
                     "--format", "tiff", "--rgb-dtype", "float32", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1  # failures are reported, never success over a loss
    failed = [line for line in err.splitlines() if "FAILED" in line]
    assert len(failed) == 2 and "Traceback" not in err
    assert any("empty.png" in line and "empty (0 bytes)" in line for line in failed)
    assert any("mixed.tif" in line and "2 images (TIFF series) of different shapes" in line for line in failed)
    assert "faded.png has transparent pixels" in err and "print.jpg is a CMYK colour image" in err

    def lightness(name: str) -> np.ndarray:
        return _lightness(tifffile.imread(out / f"{name}_colorized.tif"))

    np.testing.assert_allclose(lightness("counts"), cam / 255.0, atol=2e-3)
    np.testing.assert_allclose(lightness("faded"), cam / 255.0, atol=2e-3)
    truth = rgb.astype(np.float32).mean(-1) / 255.0
    assert np.abs(lightness("print") - truth).mean() < 0.02  # averaged C, M, Y would give 1 - truth


# ----------------------------------------------------------------------------- normalisation ranges that collapse

def _beads() -> np.ndarray:
    """Sparse bright beads on black: 40 of 65,536 pixels, so the 0.1/99.9 percentiles are both 0."""
    image = np.zeros((256, 256), np.uint16)
    image.flat[np.random.default_rng(1).choice(image.size, 40, replace=False)] = 3000
    return image


@pytest.mark.parametrize("lazy", [False, True], ids=["numpy", "dask"])
def test_sparse_beads_with_percentile_normalisation_keep_their_content(model, lazy):
    import dask.array as da

    beads = _beads()
    image = da.from_array(beads, chunks=64) if lazy else beads
    with pytest.warns(InputScalingWarning, match="percentiles of the image are both 0"):
        result = colorize(image, model=model, device="cpu", normalize="percentile")
    assert result.info["limits"] == (0.0, 3000.0)  # was (0.0, 0.0): an all-black result
    np.testing.assert_allclose(_lightness(result.rgb), beads / 3000.0, atol=2e-6)


@pytest.mark.parametrize("image, normalize, gray", [
    (np.ones((64, 64), np.float32), "minmax", 1.0),
    (np.full((64, 64), 65535, np.uint16), "percentile", 1.0),
    (np.full((64, 64), 13107, np.uint16), "minmax", 0.2),
])
def test_a_constant_image_is_not_turned_black(model, image, normalize, gray):
    with pytest.warns(InputScalingWarning, match="constant"):
        result = colorize(image, model=model, device="cpu", normalize=normalize)
    np.testing.assert_allclose(_lightness(result.rgb), gray, atol=2e-6)


def test_empty_limits_are_refused_before_any_work(model, monkeypatch):
    from napari_colorize.engine import pipeline

    monkeypatch.setattr(pipeline, "_model_meta", lambda *a: pytest.fail("the model was loaded"))
    with pytest.raises(ValueError, match=r"lo < hi.*got \(0.7, 0.7\)"):
        colorize(np.full((64, 64), 0.5, np.float32), model=model, device="cpu", limits=(0.7, 0.7))


def test_cli_percentile_normalisation_of_sparse_beads_is_not_black(tmp_path, model_path, only_colorize, capsys):
    beads = _beads()
    tifffile.imwrite(tmp_path / "beads.tif", beads)
    code = cli.main(["colorize", str(tmp_path / "beads.tif"), "-o", str(tmp_path / "out"), "--model", model_path,
                     "--device", "cpu", "--normalize", "percentile", "--rgb-dtype", "float32", "--no-progress"])
    assert code == 0 and "percentiles of the image are both 0" in capsys.readouterr().err
    np.testing.assert_allclose(_lightness(tifffile.imread(tmp_path / "out" / "beads_colorized.tif")),
                               beads / 3000.0, atol=2e-6)


# ----------------------------------------------------------------------------- torch tensors

@pytest.mark.parametrize("to_tensor", [lambda a: torch.from_numpy(a.copy()),
                                       lambda a: torch.from_numpy(a / np.float32(255)).requires_grad_(True)],
                         ids=["uint8", "float32 with grad"])
def test_a_torch_tensor_is_coloured_like_the_numpy_array(model, cam, to_tensor):
    tensor = to_tensor(cam)
    before = tensor.detach().clone()
    result = colorize(tensor, model=model, device="cpu")  # was "Cannot interpret 'torch.uint8' as a data type"
    expected = colorize(tensor.detach().numpy(), model=model, device="cpu")
    assert isinstance(result.rgb, np.ndarray)  # in memory, like the array: not a lazy result
    np.testing.assert_array_equal(result.rgb, expected.rgb)
    np.testing.assert_allclose(_lightness(result.rgb), cam / 255.0, atol=2e-6)
    assert torch.equal(tensor.detach(), before)


def test_a_torch_tensor_is_coloured_into_a_zarr_store(model, cam, tmp_path):
    path = nc.colorize_to_zarr(torch.from_numpy(cam.copy()), tmp_path / "t.zarr", model, device="cpu",
                               rgb_dtype="float32")
    from napari_colorize.engine.zarr_io import open_zarr_result

    stored = np.asarray(open_zarr_result(path).rgb)
    np.testing.assert_array_equal(stored, colorize(cam, model=model, device="cpu").rgb)


# ----------------------------------------------------------------------------- clear errors for odd arguments

def test_timedelta_data_is_refused_like_datetime_data(model):
    # timedelta64 counts as an integer to numpy: it failed with "Invalid integer data type 'm'."
    for dtype in ("timedelta64[s]", "datetime64[s]"):
        with pytest.raises(ValueError, match=rf"cannot colorize data of dtype {dtype[:-3]}\[s\]; pass a real-valued"):
            colorize(np.zeros((64, 64), dtype), model=model, device="cpu")


def test_a_dask_array_of_unknown_chunk_sizes_says_to_compute_them(model, tmp_path):
    import dask.array as da

    lazy = da.from_array(np.full((64, 64), 0.5, np.float32), chunks=32)
    filtered = lazy[lazy[:, 0] >= 0]  # boolean indexing: shape (nan, 64)
    words = r"shape \(nan, 64\) is unknown.*compute_chunk_sizes\(\) first"
    with pytest.raises(ValueError, match=words):  # was TypeError: 'float' object cannot be interpreted as an integer
        colorize(filtered, model=model, device="cpu")
    with pytest.raises(ValueError, match=words):
        nc.colorize_to_zarr(filtered, tmp_path / "x.zarr", model, device="cpu")
    assert not (tmp_path / "x.zarr").exists()
    filtered.compute_chunk_sizes()  # what the message says to do
    np.testing.assert_allclose(_lightness(colorize(filtered, model=model, device="cpu").rgb), 0.5, atol=2e-6)


@pytest.mark.parametrize("seed", [1.5, "1", float("inf")])
def test_a_seed_that_is_not_a_whole_number_is_a_value_error(model, seed):
    with pytest.raises(ValueError, match=rf"seed must be a whole number.*got {re.escape(repr(seed))}"):
        colorize(np.full((64, 64), 0.5, np.float32), model=model, device="cpu", method="sample", seed=seed)


def test_a_whole_float_seed_samples_as_its_integer(model, cam):
    kwargs = dict(model=model, device="cpu", method="sample")
    result = colorize(cam, seed=2.0, **kwargs)
    assert result.info["decode"]["seed"] == 2
    np.testing.assert_array_equal(result.rgb, colorize(cam, seed=2, **kwargs).rgb)


@pytest.mark.parametrize("saturation", ["2", None, 2 + 0j, True, float("nan"), -1.0])
def test_a_saturation_that_is_not_a_number_is_a_value_error(model, saturation):
    # A string, None or a complex number failed with a bare TypeError.
    with pytest.raises(ValueError, match=rf"saturation must be a finite number >= 0.*got {re.escape(repr(saturation))}"):
        colorize(np.full((64, 64), 0.5, np.float32), model=model, device="cpu", saturation=saturation)


def test_normalize_none_is_the_command_line_word_for_none():
    img = (np.arange(64 * 64).reshape(64, 64) % 251).astype(np.uint8)
    a = nc.colorize(img, normalize="none", device="cpu")
    b = nc.colorize(img, device="cpu")
    np.testing.assert_array_equal(np.asarray(a.rgb), np.asarray(b.rgb))
