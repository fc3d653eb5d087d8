"""Metrics against hand-computed values and scikit-image."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.color import rgb2lab
from skimage.metrics import peak_signal_noise_ratio

from napari_colorize.metrics import ab_error, auc_ab, auc_from_errors, colourfulness, psnr, rmse_ab


def test_psnr_of_known_mse():
    truth = np.full((4, 5, 3), 0.5)
    output = truth + 0.1  # MSE = 0.01 -> 10 log10(1 / 0.01) = 20 dB
    assert psnr(output, truth) == pytest.approx(20.0)
    half = truth.copy()
    half[:2] += 0.2  # MSE = 0.04 / 2 = 0.02
    assert psnr(half, truth) == pytest.approx(10 * np.log10(1 / 0.02))


def test_psnr_matches_skimage_and_is_infinite_for_identical(rng):
    a, b = rng.random((16, 16, 3)), rng.random((16, 16, 3))
    assert psnr(a, b) == pytest.approx(peak_signal_noise_ratio(b, a, data_range=1.0))
    assert psnr(a, a) == float("inf")


def test_psnr_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        psnr(np.zeros((4, 4, 3)), np.zeros((4, 5, 3)))


def test_ab_error_and_rmse_match_skimage_lab(rng):
    a, b = rng.random((8, 9, 3)), rng.random((8, 9, 3))
    ref = np.linalg.norm(rgb2lab(a)[..., 1:] - rgb2lab(b)[..., 1:], axis=-1)
    np.testing.assert_allclose(ab_error(a, b), ref, atol=1e-3)
    assert rmse_ab(a, b) == pytest.approx(np.sqrt(np.mean(ref**2)), rel=1e-4)


def test_rmse_ab_ignores_lightness():
    # Two grays of different lightness have a = b = 0: no (a, b) error.
    assert rmse_ab(np.full((3, 3, 3), 0.2), np.full((3, 3, 3), 0.8)) == pytest.approx(0.0, abs=0.01)  # D65 rounding leaves ~0.003


def test_auc_of_constant_error():
    # F(t) = 0 for t < e, 1 after: area (150 - e) / 150.
    assert auc_from_errors(np.full(100, 30.0)) == pytest.approx(1 - 30 / 150)
    assert auc_from_errors(np.zeros(10)) == pytest.approx(1.0)
    assert auc_from_errors(np.full(10, 200.0)) == pytest.approx(0.0)
    # Half the pixels perfect, half 60 off: (1 + 0.6) / 2.
    assert auc_from_errors(np.r_[np.zeros(5), np.full(5, 60.0)]) == pytest.approx(0.8)


def test_auc_matches_a_numerical_integral_of_the_cmf(rng):
    errors = rng.uniform(0, 180, size=500)
    thresholds = np.linspace(0, 150, 150001)
    cmf = (errors[None, :] <= thresholds[:, None]).mean(axis=1)
    assert auc_from_errors(errors) == pytest.approx(np.trapezoid(cmf, thresholds) / 150, abs=1e-4)


def test_auc_ab_of_gray_against_a_pure_colour():
    truth = np.zeros((4, 4, 3))
    truth[..., 0] = 1.0  # pure red
    gray = np.repeat(truth.mean(-1, keepdims=True), 3, axis=-1)
    e = np.linalg.norm(rgb2lab(truth)[0, 0, 1:] - rgb2lab(gray)[0, 0, 1:])
    assert auc_ab(gray, truth) == pytest.approx(max(0.0, 1 - e / 150), abs=1e-4)
    assert auc_ab(truth, truth) == pytest.approx(1.0)


def test_colourfulness_of_hand_made_images():
    assert colourfulness(np.full((5, 5, 3), 0.3)) == pytest.approx(0.0)
    # Uniform pure red: rg = 255, yb = 127.5, no spread -> 0.3 * sqrt(255^2 + 127.5^2).
    red = np.zeros((4, 4, 3))
    red[..., 0] = 1.0
    assert colourfulness(red) == pytest.approx(0.3 * np.hypot(255, 127.5))
    # Half red, half green: rg = +-255 (std 255, mean 0); yb = 127.5 (std 0) -> 255 + 0.3 * 127.5.
    rg = np.zeros((2, 2, 3))
    rg[0, :, 0] = 1.0
    rg[1, :, 1] = 1.0
    assert colourfulness(rg) == pytest.approx(255 + 0.3 * 127.5)
