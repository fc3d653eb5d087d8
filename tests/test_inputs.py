"""Input checks and scaling: dtypes, normalisation, actionable errors, inputs untouched."""

from __future__ import annotations

import numpy as np
import pytest

from napari_colorize import colorize
from napari_colorize.inputs import (
    InputScalingWarning,
    check_gray_shape,
    check_gray_values,
    data_range_limits,
    needs_data_limits,
    percentile_limits,
    to_unit_float,
)


@pytest.mark.parametrize("dtype, values, expected", [
    (np.uint8, [0, 1, 128, 255], [0, 1 / 255, 128 / 255, 1]),
    (np.uint16, [0, 1, 32768, 65535], [0, 1 / 65535, 32768 / 65535, 1]),
    (np.int16, [-32768, -1, 0, 32767], [0, 32767 / 65535, 32768 / 65535, 1]),
    (np.float32, [0, 0.25, 0.5, 1], [0, 0.25, 0.5, 1]),
    (np.float64, [0, 1e-3, 0.7, 1], [0, 1e-3, 0.7, 1]),
    (np.bool_, [False, True, True, False], [0, 1, 1, 0]),
])
def test_dtype_scaling(dtype, values, expected):
    out = to_unit_float(np.array(values, dtype=dtype))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-7)


def test_floats_outside_unit_range_need_a_normalisation():
    with pytest.raises(ValueError, match="normalize='percentile'") as info:
        to_unit_float(np.array([0.0, 2.5]))
    assert "[0, 2.5]" in str(info.value)


def test_boolean_images_normalise_and_convert_like_0_and_1():
    # A thresholded mask: numpy's percentile and iinfo know no booleans, 0/1 stand in for them.
    from napari_colorize import rgb_to_gray

    mask = np.zeros((8, 8), bool)
    mask[:, 4:] = True
    assert percentile_limits(mask) == (0.0, 1.0)
    np.testing.assert_array_equal(to_unit_float(mask, normalize="percentile"), mask.astype(np.float32))
    np.testing.assert_allclose(rgb_to_gray(np.array([[[True, False, True]]])), [[2 / 3]])


def test_percentile_normalisation_uses_0_1_and_99_9(rng):
    image = rng.normal(1000, 100, (128, 128))
    image[0, :20] = 1e6  # hot pixels must not set the range
    lo, hi = np.percentile(image, [0.1, 99.9])
    expected = np.clip((image - lo) / (hi - lo), 0, 1)
    out = to_unit_float(image, normalize="percentile")
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, atol=1e-5)
    assert percentile_limits(image) == pytest.approx((lo, hi))
    # Limits from elsewhere (e.g. the whole image when this is one tile) take precedence.
    np.testing.assert_allclose(to_unit_float(image, "percentile", limits=(900.0, 1100.0)),
                               np.clip((image - 900) / 200, 0, 1), atol=1e-5)


def test_minmax_and_constant_images():
    image = np.array([[10, 20], [30, 50]], np.uint16)
    np.testing.assert_allclose(to_unit_float(image, "minmax"), [[0, 0.25], [0.5, 1]])
    with pytest.warns(InputScalingWarning, match=r"constant \(7\).*\[0, 1\].*gray 1\)"):
        # It was 0.0: a constant image came out black whatever its value.
        np.testing.assert_array_equal(to_unit_float(np.full((4, 4), 7.0), "minmax"), 1.0)
    with pytest.raises(ValueError, match="choose one of"):
        to_unit_float(image, normalize="zscore")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_are_refused(bad):
    image = np.full((64, 64), 0.5)
    image[3, 4] = bad
    with pytest.raises(ValueError, match="NaN or infinite.*nan_to_num"):
        to_unit_float(image)
    with pytest.raises(ValueError, match="NaN or infinite"):
        to_unit_float(image, normalize="percentile")


@pytest.mark.parametrize("shape, words", [
    ((0, 64), "empty"),
    ((64, 0), "empty"),
    ((5, 0, 64), "empty"),
    ((64,), r"\(\.\.\., Y, X\)"),
    ((), r"\(\.\.\., Y, X\)"),
    ((64, 64, 3), "RGB.*rgb_to_gray"),
    ((64, 64, 4), "RGB.*rgb_to_gray"),
    ((31, 64), "at least 32 x 32"),
    ((64, 31), "at least 32 x 32"),
    ((3, 8, 8), "at least 32 x 32"),
    ((64, 64, 1), r"a trailing axis of 1 looks like a single channel, not the image's width; pass image\[\.\.\., 0\]"),
    ((5, 64, 64, 1), "single channel"),
    ((64, 64, 2), "gray and alpha channels"),  # said: 64 x 2 pixels, upsample it
])
def test_bad_shapes_get_actionable_messages(shape, words):
    with pytest.raises(ValueError, match=words):
        check_gray_shape(shape, 32)


def test_stacks_of_gray_images_pass_the_shape_check():
    check_gray_shape((3, 64, 64), 32)
    check_gray_shape((2, 5, 40, 33), 32)
    check_gray_shape((64, 64), 32)
    check_gray_shape((3, 40, 40), 32)  # a stack of three: the leading axis is not colour


@pytest.mark.parametrize("data, words", [
    (np.zeros((4, 4), complex), "complex"),
    (np.array([["a", "b"], ["c", "d"]]), "dtype"),
])
def test_non_numeric_data_is_refused(data, words):
    with pytest.raises(ValueError, match=words):
        to_unit_float(data)


@pytest.mark.parametrize("normalize", [None, "percentile", "minmax"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_inputs_are_never_modified(rng, normalize, dtype):
    image = (rng.random((40, 48)) * (255 if dtype == np.uint8 else 60000 if dtype == np.uint16 else 1)).astype(dtype)
    original = image.copy()
    out = to_unit_float(image, normalize)
    assert not np.shares_memory(out, image)
    out[...] = 0.123  # the result is the caller's to change
    np.testing.assert_array_equal(image, original)
    image.setflags(write=False)  # read-only inputs (e.g. memory-mapped files) work too
    np.testing.assert_array_equal(to_unit_float(image, normalize), to_unit_float(original, normalize))


@pytest.mark.parametrize("normalize", [None, "percentile"])
def test_colorize_leaves_a_read_only_input_alone(make_model, rng, normalize):
    image = (rng.random((64, 64)) * 4000).astype(np.uint16)
    original = image.copy()
    image.setflags(write=False)
    result = colorize(image, model=make_model("compact", "hue_chroma"), normalize=normalize)
    np.testing.assert_array_equal(image, original)
    assert result.rgb.shape == (64, 64, 3)


@pytest.mark.parametrize("image, words", [
    (np.full((64, 64), np.nan), "NaN"),
    (np.zeros((64, 64, 3)), "RGB"),
    (np.zeros((16, 64)), "at least 32"),
    (np.zeros((0, 0)), "empty"),
    (np.full((64, 64), 300.0), "normalize="),
])
def test_colorize_reports_bad_inputs(make_model, image, words):
    with pytest.raises(ValueError, match=words):
        colorize(image, model=make_model("compact", "hue_chroma"))


# ----------------------------------------------------------------------------- wide and signed integers

@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, np.uint32, np.uint64])
def test_wide_and_signed_integers_are_scaled_by_their_data_range(dtype):
    from skimage import data

    cam = data.camera()[::4, ::4]
    values = cam.astype(dtype) if np.iinfo(dtype).max >= 255 else (cam // 2).astype(dtype)
    with pytest.warns(InputScalingWarning, match=rf"{np.dtype(dtype)} image: scaling its data range \[0, "):
        out = to_unit_float(values)
    np.testing.assert_allclose(out, values / float(values.max()), atol=1e-6)  # 0 black, the maximum white


def test_a_python_list_is_scaled_like_the_uint8_image_it_came_from():
    from skimage import data

    cam = data.camera()[::4, ::4]
    with pytest.warns(InputScalingWarning):
        out = to_unit_float(cam.tolist())
    np.testing.assert_allclose(out, cam / 255.0, atol=1e-6)


def test_a_dim_uint16_image_is_pointed_to_percentile_normalisation():
    # 12-bit camera data in uint16: scaled by 65535 it is nearly black.
    import warnings

    from skimage import data

    from napari_colorize.model import build_model

    model = build_model("compact")
    dim = data.camera()[:64, :64].astype(np.uint16) * 16  # up to 3360 of 65535
    with pytest.warns(InputScalingWarning, match=r"values up to \d+ only \(\d\.\d% of the uint16 range\).*"
                      r"normalize='percentile' \(--normalize percentile"):
        colorize(dim, model, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputScalingWarning)
        colorize(dim, model, device="cpu", normalize="percentile")  # stretched: nothing to say
        colorize(dim * 16, model, device="cpu")  # uses the range
        colorize((data.camera()[:64, :64] // 8).astype(np.uint8), model, device="cpu")  # a dark photograph


def test_data_range_keeps_zero_black_and_negative_values():
    with pytest.warns(InputScalingWarning, match=r"\[0, 4000\]"):
        np.testing.assert_allclose(to_unit_float(np.array([[1000, 2000], [3000, 4000]], np.int32)),
                                   [[0.25, 0.5], [0.75, 1.0]])
    with pytest.warns(InputScalingWarning, match=r"\[-1024, 3072\]"):  # CT numbers
        np.testing.assert_allclose(to_unit_float(np.array([[-1024, 0], [1024, 3072]], np.int16)),
                                   [[0, 0.25], [0.5, 1.0]])
    with pytest.warns(InputScalingWarning, match=r"\[0, 1\]"):  # all zeros: a range that is not empty
        np.testing.assert_array_equal(to_unit_float(np.zeros((4, 4), np.int64)), 0.0)


def test_given_limits_are_shared_by_tiles_of_a_wide_integer_image():
    image = np.arange(64, dtype=np.int64).reshape(8, 8) * 10  # 0-630
    limits = data_range_limits(image, warn=False)
    assert limits == (0.0, 630.0)
    tile = image[:4]  # its own maximum is 310
    np.testing.assert_allclose(to_unit_float(tile, limits=limits), tile / 630.0, atol=1e-7)


def test_data_range_limits_of_lazy_arrays_are_computed_once_over_all_chunks(tmp_path):
    import dask.array as da
    import zarr

    image = np.arange(2 * 64 * 64, dtype=np.int32).reshape(2, 64, 64) - 100
    lazy = da.from_array(image, chunks=(1, 32, 32))
    store = zarr.open_array(str(tmp_path / "in.zarr"), mode="w", shape=image.shape, chunks=(1, 32, 32),
                            dtype=image.dtype)
    store[:] = image
    for source in (lazy, store):
        with pytest.warns(InputScalingWarning):
            assert data_range_limits(source) == (-100.0, float(image.max()))


@pytest.mark.parametrize("dtype, expected", [
    (np.uint8, False), (np.uint16, False), (">u2", False), (np.bool_, False), (np.float32, False),
    (np.int8, True), (np.int16, True), (np.int32, True), (np.int64, True), (np.uint32, True), (np.uint64, True),
])
def test_which_types_need_data_limits(dtype, expected):
    assert needs_data_limits(dtype) is expected
    assert (data_range_limits(np.ones((2, 2), dtype), warn=False) is not None) is expected


# ----------------------------------------------------------------------------- the one value check

@pytest.mark.parametrize("image, normalize, limits, words", [
    (np.full((4, 4), 2.0), None, None, r"float images must lie in \[0, 1\], this one spans \[2, 2\]"),
    (np.array([[0.5, 1.0001]], np.float32), None, None, r"spans \[0.5, 1.00010002\]"),  # not rounded to "1"
    (np.full((4, 4), -0.5), "dtype", None, "normalize='percentile'"),
    (np.array([[0.5, np.nan]]), "percentile", None, "NaN or infinite"),
    (np.array([[0.5, np.inf]]), None, None, "NaN or infinite"),
    (np.zeros((4, 4), np.complex64), None, None, "dtype complex64"),
    (np.array([["a"]]), None, None, "dtype <U1"),
    (np.zeros((4, 4)), "zscore", None, "choose one of"),
    (np.zeros((4, 4)), "minmax", (1.0, np.nan), "two finite numbers"),
    (np.zeros((4, 4)), "minmax", (5.0, 1.0), "lo < hi"),
    (np.zeros((4, 4)), "minmax", (0.7, 0.7), r"lo < hi.*got \(0.7, 0.7\)"),
    (np.zeros((4, 4)), "minmax", "ab", "two numbers"),
])
def test_check_gray_values_refuses_with_one_message(image, normalize, limits, words):
    with pytest.raises(ValueError, match=words):
        check_gray_values(image, normalize, limits)


def test_rounding_noise_around_0_and_1_is_clipped_not_refused():
    noisy = np.array([[-1e-9, 0.25], [0.75, 1.0 + 1e-7]])
    before = noisy.copy()
    gray = to_unit_float(noisy)
    np.testing.assert_array_equal(gray, np.array([[0.0, 0.25], [0.75, 1.0]], np.float32))
    np.testing.assert_array_equal(noisy, before)  # the input is untouched
    np.testing.assert_array_equal(to_unit_float(np.nextafter(np.float32(1), np.float32(2)).reshape(1, 1)), [[1.0]])
    with pytest.raises(ValueError, match="must lie in"):
        to_unit_float(np.array([[0.5, 1.001]]))  # beyond noise: still refused


def test_check_gray_values_accepts_what_to_unit_float_accepts():
    import dask.array as da

    check_gray_values(np.full((4, 4), 300.0), "percentile")
    check_gray_values(np.zeros((4, 4), np.int64))
    check_gray_values([[0, 1], [1, 0]])
    check_gray_values(np.zeros((4, 4), bool), limits=(0, 1))
    # Lazy data are checked by type here and value by value tile by tile (to_unit_float).
    check_gray_values(da.full((4, 4), np.nan, chunks=2))
    with pytest.raises(ValueError, match="dtype complex"):
        check_gray_values(da.zeros((4, 4), dtype=complex, chunks=2))


def test_the_data_range_warning_of_signed_data_says_where_0_goes():
    """It said "0 stays black" for int8 data in [-127, 127], where 0 becomes mid-gray."""
    import warnings

    from napari_colorize.inputs import InputScalingWarning, data_range_limits

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert data_range_limits(np.array([[-127, 0, 127]], np.int8)) == (-127.0, 127.0)
        data_range_limits(np.array([[0, 9, 4000]], np.int32))
    said = [str(w.message) for w in caught if issubclass(w.category, InputScalingWarning)]
    assert "the minimum -127 becomes black, 0 a gray of 0.50" in said[0] and "0 stays black" not in said[0]
    assert "0 stays black" in said[1]


# ----------------------------------------------------------------------------- limits that collapse

def _beads() -> np.ndarray:
    """A dark uint16 field with 40 bright beads: 40 of 65,536 pixels, under the 0.1 % above the 99.9th percentile."""
    image = np.zeros((256, 256), np.uint16)
    image.flat[np.random.default_rng(1).choice(image.size, 40, replace=False)] = 3000
    return image


def test_collapsed_percentiles_fall_back_to_the_data_range():
    image = _beads()
    assert percentile_limits(image) == (0.0, 0.0)  # what turned the whole image black
    with pytest.warns(InputScalingWarning, match=r"percentiles of the image are both 0.*\[0, 3000\]"):
        out = to_unit_float(image, "percentile")
    np.testing.assert_array_equal(out, image / np.float32(3000))  # beads white, background black
    assert out.max() == 1.0


@pytest.mark.parametrize("image, normalize, expected, words", [
    (np.ones((8, 8), np.float32), "minmax", 1.0, r"constant \(1\).*\[0, 1\]"),
    (np.full((8, 8), 0.25, np.float64), "percentile", 0.25, r"constant \(0.25\).*\[0, 1\]"),
    (np.full((8, 8), 65535, np.uint16), "percentile", 1.0, r"constant \(65535\).*\[0, 65535\]"),
    (np.full((8, 8), 51, np.uint8), "minmax", 0.2, r"constant \(51\).*\[0, 255\]"),
    (np.full((8, 8), 300, np.int32), "minmax", 1.0, r"constant \(300\).*\[0, 300\]"),
    (np.full((8, 8), -300, np.int32), "percentile", 0.0, r"constant \(-300\).*\[-300, 0\]"),
    (np.zeros((8, 8), np.int16), "minmax", 0.0, r"constant \(0\).*\[0, 1\]"),
    (np.ones((8, 8), bool), "percentile", 1.0, r"constant \(1\).*\[0, 1\]"),
])
def test_a_constant_image_is_scaled_by_its_type_as_normalize_dtype_does(image, normalize, expected, words):
    with pytest.warns(InputScalingWarning, match=words):
        out = to_unit_float(image, normalize)
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-7)


def test_an_empty_range_is_never_scaled_to_black():
    from napari_colorize.inputs import scale_to_unit

    with pytest.raises(ValueError, match=r"empty range \[5, 5\]"):
        scale_to_unit(np.full((2, 2), 5.0), 5.0, 5.0)
