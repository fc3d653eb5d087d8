"""Histogram bins and targets against scipy and hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import norm

from napari_colorize.bins import (
    bin_index,
    gaussian_quantile_bins,
    joint_index,
    one_hot,
    softmax_over_bins,
    uniform_bins,
    windowed_histogram,
)
from napari_colorize.spaces import SPACES, get_space, target_indices


@pytest.mark.parametrize("k", [32, 16])
def test_gaussian_quantile_bins_have_equal_mass(k):
    binning = gaussian_quantile_bins(k)
    edges = np.array(binning.edges)
    assert binning.k == k and edges.size == k + 1 and np.all(np.diff(edges) > 0)
    # Inner bins: mass 1/K each under N(0, 25); outer bins: the tails (mass 1/K too).
    cdf = norm.cdf(np.concatenate([[-np.inf], edges[1:-1], [np.inf]]), loc=0, scale=25)
    np.testing.assert_allclose(np.diff(cdf), 1.0 / k, atol=1e-9)
    # Centres at the (i + 0.5) / K quantiles, symmetric about 0.
    np.testing.assert_allclose(binning.centers, norm.ppf((np.arange(k) + 0.5) / k, scale=25), atol=1e-9)
    np.testing.assert_allclose(binning.centers, -np.array(binning.centers[::-1]), atol=1e-9)
    # Outer edges are finite and mirror the outer centres.
    assert np.all(np.isfinite(edges))
    np.testing.assert_allclose(edges[0], 2 * binning.centers[0] - edges[1])
    assert not binning.circular


def test_gaussian_quantile_bins_shift_and_scale():
    binning = gaussian_quantile_bins(8, mu=10.0, sigma=5.0)
    np.testing.assert_allclose(binning.edges[1:-1], norm.ppf(np.arange(1, 8) / 8, loc=10, scale=5), atol=1e-9)


def test_uniform_bins():
    binning = uniform_bins(32, circular=True)
    np.testing.assert_allclose(binning.edges, np.linspace(0, 1, 33), atol=1e-15)
    np.testing.assert_allclose(binning.centers, (np.arange(32) + 0.5) / 32, atol=1e-15)
    assert binning.circular and not uniform_bins(4).circular
    with pytest.raises(ValueError, match="at least 2 bins"):
        uniform_bins(1)
    with pytest.raises(ValueError, match="at least 2 bins"):
        gaussian_quantile_bins(1)


def test_bin_index_hand_cases():
    binning = uniform_bins(4)  # edges 0, .25, .5, .75, 1
    values = torch.tensor([-1.0, 0.0, 0.1, 0.25, 0.4999, 0.5, 0.75, 0.99, 1.0, 7.0])
    # A value on an inner edge belongs to the bin above it; outside values to the end bins.
    assert bin_index(values, binning).tolist() == [0, 0, 0, 1, 1, 2, 3, 3, 3, 3]
    gauss = gaussian_quantile_bins(4)  # inner edges at -16.86, 0, 16.86
    e = norm.ppf(0.25, scale=25)
    top = gauss.edges[3]  # exactly on the last inner edge: the bin above
    assert abs(top + e) < 1e-9
    values = torch.tensor([-200.0, e - 1e-3, e + 1e-3, -1e-4, 0.0, 1e-4, top - 1e-6, top, 200.0], dtype=torch.float64)
    assert bin_index(values, gauss).tolist() == [0, 0, 1, 1, 2, 2, 2, 3, 3]


def test_bin_index_matches_numpy_digitize(rng):
    binning = gaussian_quantile_bins(32)
    values = rng.normal(0, 40, 5000)
    expected = np.clip(np.digitize(values, binning.edges[1:-1]), 0, 31)
    np.testing.assert_array_equal(bin_index(torch.from_numpy(values), binning).numpy(), expected)


def test_one_hot():
    index = torch.tensor([[0, 2], [3, 1]])
    hot = one_hot(index, 4)
    assert hot.shape == (2, 2, 4) and hot.dtype == torch.float32
    np.testing.assert_array_equal(hot.numpy(), np.eye(4)[index.numpy()])
    hot1 = one_hot(index[None], 4, dim=1)
    assert hot1.shape == (1, 4, 2, 2)
    np.testing.assert_array_equal(hot1[0, :, 1, 0].numpy(), [0, 0, 0, 1])


def _windowed_histogram_loop(index: np.ndarray, k: int, window: int) -> np.ndarray:
    b, h, w = index.shape
    r = window // 2
    out = np.zeros((b, k, h, w))
    for n in range(b):
        for y in range(h):
            for x in range(w):
                patch = index[n, max(0, y - r):y + r + 1, max(0, x - r):x + r + 1]
                out[n, :, y, x] = np.bincount(patch.ravel(), minlength=k) / patch.size
    return out


@pytest.mark.parametrize("window", [1, 3, 7])
def test_windowed_histogram_matches_loop_including_borders(rng, window):
    index = rng.integers(0, 5, (2, 9, 11))
    hist = windowed_histogram(torch.from_numpy(index), 5, window)
    assert hist.shape == (2, 5, 9, 11)
    np.testing.assert_allclose(hist.numpy(), _windowed_histogram_loop(index, 5, window), atol=1e-6)
    np.testing.assert_allclose(hist.sum(1).numpy(), 1.0, atol=1e-6)


def test_windowed_histogram_corner_by_hand():
    index = torch.tensor([[[0, 1, 1], [2, 0, 1], [1, 1, 1]]])
    hist = windowed_histogram(index, 3, 3)
    # Top-left corner sees the 2x2 block [[0, 1], [2, 0]]; the centre sees all nine.
    np.testing.assert_allclose(hist[0, :, 0, 0].numpy(), [0.5, 0.25, 0.25])
    np.testing.assert_allclose(hist[0, :, 1, 1].numpy(), [2 / 9, 6 / 9, 1 / 9], atol=1e-7)
    with pytest.raises(ValueError, match="odd"):
        windowed_histogram(index, 3, 4)


def test_joint_index_and_lab_targets():
    assert joint_index(torch.tensor(3), torch.tensor(5), 16).item() == 53
    space = get_space("lab")
    a_bins = space.a_bins
    # A colour whose Lab (a, b) fall in known bins: compute with skimage independently.
    from skimage.color import rgb2lab

    rgb = np.array([[0.8, 0.2, 0.1], [0.1, 0.5, 0.9], [0.5, 0.5, 0.5]])
    lab = rgb2lab(rgb[None])[0]
    ia = np.clip(np.digitize(lab[:, 1], a_bins.edges[1:-1]), 0, 15)
    ib = np.clip(np.digitize(lab[:, 2], a_bins.edges[1:-1]), 0, 15)
    indices, chroma = target_indices(torch.from_numpy(rgb), space)
    np.testing.assert_array_equal(indices["ab"].numpy(), ia * 16 + ib)
    np.testing.assert_allclose(chroma.numpy(), [0.7, 0.8, 0.0], atol=1e-12)
    marginal, _ = target_indices(torch.from_numpy(rgb), SPACES["lab_marginal"])
    edges32 = SPACES["lab_marginal"].a_bins.edges[1:-1]
    np.testing.assert_array_equal(marginal["a"].numpy(), np.clip(np.digitize(lab[:, 1], edges32), 0, 31))
    hc, _ = target_indices(torch.from_numpy(rgb), SPACES["hue_chroma"])
    # Hues: (0.2 - 0.1) / 0.7 / 6 = 0.0238 -> bin 0; blue-ish 0.5833 -> bin 18; chroma .7 -> 22, .8 -> 25
    assert hc["hue"].tolist() == [0, 18, 0] and hc["chroma"].tolist() == [22, 25, 0]
    with pytest.raises(ValueError, match="choose one of"):
        get_space("rgb")


@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("layout", ["planar", "channels_last"])
def test_softmax_over_bins_is_a_softmax_over_axis_1_in_either_layout(log, layout):
    x = torch.randn(2, 7, 5, 3, generator=torch.Generator().manual_seed(0)) * 4
    if layout == "channels_last":  # as the network returns them: a pixel's bins contiguous
        x = x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    out = softmax_over_bins(x, log=log)
    # Reference: the textbook formula in float64 on a plain copy.
    e = torch.exp(x.double() - x.double().amax(1, keepdim=True))
    ref = e / e.sum(1, keepdim=True)
    np.testing.assert_allclose(out.double().numpy(), (ref.log() if log else ref).numpy(), rtol=0, atol=1e-6)
    assert out.stride(1) == x.stride(1)  # the layout is kept: nothing downstream reads it strided


@pytest.mark.parametrize("layout", ["planar", "channels_last"])
def test_bin_group_sums_are_the_masses_of_each_group_in_either_layout(layout):
    from napari_colorize.spaces import _bin_sums
    p = torch.rand(2, 6, 4, 3, generator=torch.Generator().manual_seed(1))
    if layout == "channels_last":
        p = p.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    groups = torch.tensor([[1, 0], [1, 0], [0, 1], [0, 1], [0, 1], [0, 0]], dtype=torch.float32)
    out = _bin_sums(p, groups)
    # By hand: bins 0-1 are the first group, 2-4 the second, bin 5 belongs to none.
    np.testing.assert_allclose(out[:, 0].numpy(), p[:, :2].sum(1).numpy(), rtol=1e-6)
    np.testing.assert_allclose(out[:, 1].numpy(), p[:, 2:5].sum(1).numpy(), rtol=1e-6)
    assert out.shape == (2, 2, 4, 3)
