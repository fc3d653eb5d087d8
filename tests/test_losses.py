"""KL and hue/chroma losses against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napari_colorize.losses import histogram_loss, hue_chroma_loss, kl_divergence, lightness_weight


def test_kl_is_nonnegative_and_zero_at_equality(rng):
    y = torch.softmax(torch.from_numpy(rng.normal(0, 2, (200, 32))), dim=-1)
    log_f = torch.log_softmax(torch.from_numpy(rng.normal(0, 2, (200, 32))), dim=-1)
    assert (kl_divergence(y, log_f) >= 0).all()
    np.testing.assert_allclose(kl_divergence(y, torch.log(y)).numpy(), 0, atol=1e-12)


def test_kl_zero_for_one_hot_target_and_prediction():
    # Zeros in the target contribute nothing, even where the prediction is exactly 0 too.
    y = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]])
    kl = kl_divergence(y, torch.log(y))
    assert torch.isfinite(kl).all()
    np.testing.assert_allclose(kl.numpy(), [0.0, 0.0])
    # A target bin with mass where the prediction has none is infinitely wrong.
    assert kl_divergence(torch.tensor([0.5, 0.5]), torch.log(torch.tensor([1.0, 0.0]))).item() == math.inf


def test_kl_hand_values():
    y = torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.2, 0.8, 0.0]], dtype=torch.float64)
    f = torch.tensor([[0.25, 0.25, 0.5], [0.5, 0.25, 0.25], [0.5, 0.5, 0.0]], dtype=torch.float64)
    expected = [math.log(2), math.log(2), 0.2 * math.log(0.4) + 0.8 * math.log(1.6)]
    np.testing.assert_allclose(kl_divergence(y, torch.log(f)).numpy(), expected, atol=1e-12)
    # Bins on another axis; histogram_loss is the mean.
    np.testing.assert_allclose(kl_divergence(y.T, torch.log(f).T, dim=0).numpy(), expected, atol=1e-12)
    assert histogram_loss(y, torch.log(f)).item() == pytest.approx(np.mean(expected), abs=1e-12)


def test_kl_gradient_is_finite_for_one_hot_targets():
    logits = torch.zeros(4, requires_grad=True)
    kl_divergence(torch.tensor([0.0, 1.0, 0.0, 0.0]), torch.log_softmax(logits, -1)).backward()
    # d KL / d logits = softmax - y
    np.testing.assert_allclose(logits.grad.numpy(), [0.25, -0.75, 0.25, 0.25], atol=1e-7)


def test_lightness_weight():
    lightness = torch.tensor([0.0, 0.1, 1 / 3, 0.5, 0.9, 1.0])
    np.testing.assert_allclose(lightness_weight(lightness).numpy(), [0.0, 0.3, 1.0, 1.0, 0.3, 0.0], atol=1e-6)


def test_hue_chroma_loss_by_hand():
    # Two pixels, 2 bins per head, bins on the last axis.
    y_c = torch.tensor([[1.0, 0.0], [0.5, 0.5]], dtype=torch.float64)
    f_c = torch.tensor([[0.5, 0.5], [0.25, 0.75]], dtype=torch.float64)
    y_h = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    f_h = torch.tensor([[0.2, 0.8], [0.5, 0.5]], dtype=torch.float64)
    true_chroma = torch.tensor([0.6, 0.0], dtype=torch.float64)
    kl_c = [math.log(2), 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)]
    kl_h = [math.log(1 / 0.8), math.log(2)]
    # Pixel 2 is gray (chroma 0): its hue does not count.
    expected = ((kl_c[0] + 5 * 0.6 * kl_h[0]) + (kl_c[1] + 0.0)) / 2
    loss = hue_chroma_loss(y_h, torch.log(f_h), y_c, torch.log(f_c), true_chroma)
    assert loss.item() == pytest.approx(expected, abs=1e-12)
    # lambda_H and the per-pixel chroma weight (e.g. lightness_weight) enter linearly.
    weight = torch.tensor([0.3, 1.0], dtype=torch.float64)
    expected_w = ((0.3 * kl_c[0] + 2.0 * 0.6 * kl_h[0]) + kl_c[1]) / 2
    loss_w = hue_chroma_loss(y_h, torch.log(f_h), y_c, torch.log(f_c), true_chroma, lambda_hue=2.0, weight=weight)
    assert loss_w.item() == pytest.approx(expected_w, abs=1e-12)
