"""Input checks and scaling: dtypes, normalisation, actionable errors, inputs untouched."""

from __future__ import annotations

import numpy as np
import pytest

from napari_colorize import colorize
from napari_colorize.inputs import check_gray_shape, percentile_limits, to_unit_float


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
    np.testing.assert_array_equal(to_unit_float(np.full((4, 4), 7.0), "minmax"), 0.0)
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
