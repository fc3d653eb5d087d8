"""Decoding histograms into colour, on hand-made histograms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napari_colorize import decode as D
from napari_colorize.bins import gaussian_quantile_bins, uniform_bins

BINS4 = uniform_bins(4)  # edges 0 .25 .5 .75 1, centres .125 .375 .625 .875
HUE32 = uniform_bins(32, circular=True)


def _hist(*rows) -> torch.Tensor:
    """Histograms as (B, K) with bins on axis 1, float64."""
    return torch.tensor(rows, dtype=torch.float64)


def test_expectation():
    p = _hist([0.25, 0.75, 0, 0], [0, 0, 0, 1], [0.25, 0.25, 0.25, 0.25])
    np.testing.assert_allclose(D.expectation(p, BINS4).numpy(), [0.3125, 0.875, 0.5])


def test_median_interpolates_inside_the_bin():
    p = _hist(
        [0.1, 0.2, 0.4, 0.3],  # cdf .1 .3 .7: bin 2, (0.5 - 0.3) / 0.4 = half way -> 0.625
        [0.0, 0.0, 1.0, 0.0],  # one-hot: the middle of the bin (its centre)
        [0.0, 0.6, 0.4, 0.0],  # bin 1, 0.5 / 0.6 of the way: 0.25 + 0.25 * 5 / 6
        [0.5, 0.0, 0.0, 0.5],  # two-bin split: the cdf reaches 0.5 at the top of bin 0
        [0.3, 0.0, 0.0, 0.7],  # bin 3, (0.5 - 0.3) / 0.7 of the way
    )
    expected = [0.625, 0.625, 0.25 + 0.25 * 5 / 6, 0.25, 0.75 + 0.25 * 0.2 / 0.7]
    np.testing.assert_allclose(D.median(p, BINS4).numpy(), expected, atol=1e-12)


def test_median_in_the_outer_gaussian_bin_uses_its_finite_edges():
    bins = gaussian_quantile_bins(4)
    p = torch.zeros(1, 4, dtype=torch.float64)
    p[0, 0] = 1.0
    np.testing.assert_allclose(D.median(p, bins).numpy(), [bins.centers[0]], atol=1e-9)


def test_median_refuses_circular_histograms():
    with pytest.raises(ValueError, match="complex expectation"):
        D.median(torch.full((1, 32), 1 / 32), HUE32)


def test_mode():
    p = _hist([0.1, 0.2, 0.4, 0.3], [0.9, 0.05, 0.05, 0])
    np.testing.assert_allclose(D.mode(p, BINS4).numpy(), [0.625, 0.125])


def test_point_estimate_on_spatial_histograms():
    p = torch.zeros(2, 4, 3, 5, dtype=torch.float64)
    p[:, 3] = 1.0
    for method in ("expectation", "median", "mode", "sample"):
        out = D.point_estimate(p, BINS4, method, torch.Generator().manual_seed(0))
        assert out.shape == (2, 3, 5)
        np.testing.assert_allclose(out.numpy(), 0.875, atol=1e-12)
    with pytest.raises(ValueError, match="choose one of"):
        D.point_estimate(p, BINS4, "mean")


def test_sample_is_seeded_and_follows_the_histogram():
    probs = [0.1, 0.2, 0.3, 0.4]
    p = torch.tensor(probs).view(1, 4, 1).expand(1, 4, 40000).contiguous()
    a = D.sample(p, BINS4, torch.Generator().manual_seed(3))
    b = D.sample(p, BINS4, torch.Generator().manual_seed(3))
    c = D.sample(p, BINS4, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    freq = [(a == centre).float().mean().item() for centre in BINS4.centers]
    # Binomial standard error at n = 40000 is < 0.0025: 0.01 is four of them.
    np.testing.assert_allclose(freq, probs, atol=0.01)
    index = D.sample_index(p, torch.Generator().manual_seed(3))
    np.testing.assert_allclose(np.bincount(index.flatten().numpy(), minlength=4) / 40000, probs, atol=0.01)


def test_complex_hue_mean_across_the_wrap_around():
    p = torch.zeros(1, 32, dtype=torch.float64)
    p[0, 0] = p[0, 31] = 0.5
    hue, magnitude = D.hue_complex_expectation(p, HUE32)
    assert min(hue.item(), 1 - hue.item()) < 1e-9  # red, not cyan (the linear mean 0.5)
    assert magnitude.item() == pytest.approx(math.cos(math.pi / 32), abs=1e-12)
    # One-hot bin k: exactly its centre, |z| = 1.
    p = torch.zeros(1, 32, dtype=torch.float64)
    p[0, 10] = 1.0
    hue, magnitude = D.hue_complex_expectation(p, HUE32)
    assert hue.item() == pytest.approx(10.5 / 32) and magnitude.item() == pytest.approx(1.0)
    # Two opposite bins with 3:1 weights: the direction of the heavier, |z| = 0.5.
    p = torch.zeros(1, 32, dtype=torch.float64)
    p[0, 4], p[0, 20] = 0.75, 0.25
    hue, magnitude = D.hue_complex_expectation(p, HUE32)
    assert hue.item() == pytest.approx(4.5 / 32) and magnitude.item() == pytest.approx(0.5)


def test_chromatic_fading():
    uniform = torch.full((1, 32), 1 / 32, dtype=torch.float64)
    _, magnitude = D.hue_complex_expectation(uniform, HUE32)
    assert magnitude.item() < 1e-12
    assert D.chromatic_fading(torch.tensor([0.8], dtype=torch.float64), magnitude).item() < 1e-9
    faded = D.chromatic_fading(torch.tensor([0.5, 0.5, 0.5]), torch.tensor([0.015, 0.03, 0.5]), eta=0.03)
    np.testing.assert_allclose(faded.numpy(), [0.25, 0.5, 0.5])


def test_normalized_entropy():
    p = torch.zeros(3, 32, 2, dtype=torch.float64)
    p[0, 7] = 1.0  # one-hot
    p[1] = 1 / 32  # uniform
    p[2, :2] = 0.5  # two bins of 32: log 2 / log 32 = 1 / 5
    np.testing.assert_allclose(D.normalized_entropy(p).numpy(), [[0, 0], [1, 1], [0.2, 0.2]], atol=1e-12)


def test_point_estimate_dispatches_every_method_and_names_the_choices():
    binning = uniform_bins(4)
    p = torch.tensor([[0.0, 0.2, 0.8, 0.0]])
    assert D.METHODS == ("expectation", "median", "mode", "sample")
    gen = torch.Generator().manual_seed(0)
    expected = {"expectation": D.expectation(p, binning), "median": D.median(p, binning), "mode": D.mode(p, binning)}
    for method, value in expected.items():
        assert torch.equal(D.point_estimate(p, binning, method), value), method
    assert D.point_estimate(p, binning, "sample", gen).item() in binning.centers
    with pytest.raises(ValueError, match=r"unknown decoding method 'mean'; choose one of \('expectation'"):
        D.point_estimate(p, binning, "mean")


def test_check_gains_reads_the_comma_list_and_numbers_alike():
    # One rule for the CLI, scripts and benchmarks: "1, 1.25,,2" and (1, 1.25, 2) are the same gains.
    assert D.check_gains("1, 1.25,,2") == D.check_gains([1, 1.25, 2]) == (1.0, 1.25, 2.0)
    for bad, message in (("1,x", "numbers separated by commas"), ("", "gains is empty"), ([1, -2], "chroma_gain must")):
        with pytest.raises(ValueError, match=message):
            D.check_gains(bad)
