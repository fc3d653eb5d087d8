"""Colour spaces against scikit-image and the lightness pass-through algebra."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import color as skcolor

from napari_colorize.color import (
    gray_to_lab_lightness,
    hue_chroma_to_rgb,
    hue_to_rgb_unit,
    lab_to_rgb,
    max_chroma_in_gamut,
    rgb_to_gray,
    rgb_to_hue_chroma,
    rgb_to_lab,
)

DTYPES = [np.float32, np.float64]


def _random_rgb(rng: np.random.Generator, n: int = 4096) -> np.ndarray:
    """Random colours plus the corners and edges of the RGB cube (ties between channels)."""
    corners = np.array(np.meshgrid([0, 1], [0, 1], [0, 1], indexing="ij")).reshape(3, -1).T
    ties = rng.random((64, 1)).repeat(3, axis=1)
    ties[:32, 2] = rng.random(32)  # R == G, B free
    ties[32:, 0] = 1.0  # R at the top, G == B
    quantised = rng.integers(0, 256, (256, 3)) / 255.0  # many exact ties
    return np.concatenate([rng.random((n, 3)), corners, ties, quantised])[:, None, :]  # (N, 1, 3) image


def _circular_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = np.abs(a - b) % 1.0
    return np.minimum(d, 1.0 - d)


@pytest.mark.parametrize("dtype", DTYPES)
def test_rgb_to_lab_matches_skimage(rng, dtype):
    rgb = _random_rgb(rng)
    reference = skcolor.rgb2lab(rgb)  # float64: the exact reference for both dtypes
    lab = rgb_to_lab(torch.from_numpy(rgb.astype(dtype))).numpy()
    assert lab.dtype == dtype
    np.testing.assert_allclose(lab, reference, rtol=0, atol=1e-4)


@pytest.mark.parametrize("dtype", DTYPES)
def test_lab_to_rgb_matches_skimage_in_gamut(rng, dtype):
    rgb = _random_rgb(rng)
    lab = skcolor.rgb2lab(rgb)  # in gamut by construction
    reference = skcolor.lab2rgb(lab)
    out = lab_to_rgb(torch.from_numpy(lab.astype(dtype))).numpy()
    assert out.dtype == dtype
    np.testing.assert_allclose(out, reference, rtol=0, atol=1e-4)
    np.testing.assert_allclose(out, rgb, rtol=0, atol=1e-4)  # the round trip


def test_lab_to_rgb_out_of_gamut_clipped_like_skimage():
    lab = np.array([[[50.0, 120.0, -120.0], [5.0, -90.0, 90.0], [95.0, 0.0, 110.0]]])
    with pytest.warns(UserWarning):  # skimage warns about the negative Z it clips
        reference = skcolor.lab2rgb(lab)
    out = lab_to_rgb(torch.from_numpy(lab)).numpy()
    np.testing.assert_allclose(out, reference, atol=1e-6)
    assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("dtype", DTYPES)
def test_rgb_lab_round_trip(rng, dtype):
    rgb = torch.from_numpy(_random_rgb(rng).astype(dtype))
    np.testing.assert_allclose(lab_to_rgb(rgb_to_lab(rgb)).numpy(), rgb.numpy(), atol=1e-4)


@pytest.mark.parametrize("dtype", DTYPES)
def test_hue_and_chroma_match_skimage_hsv(rng, dtype):
    rgb = _random_rgb(rng).astype(dtype)
    hsv = skcolor.rgb2hsv(rgb.astype(np.float64))
    hue, chroma, lightness = (t.numpy() for t in rgb_to_hue_chroma(torch.from_numpy(rgb)))
    assert np.all((hue >= 0) & (hue < 1))
    assert _circular_diff(hue, hsv[..., 0]).max() < 1e-4
    np.testing.assert_allclose(chroma, hsv[..., 1] * hsv[..., 2], atol=1e-6)
    np.testing.assert_allclose(lightness, rgb.astype(np.float64).mean(-1), atol=1e-6)


def test_hue_of_named_colours():
    rgb = torch.tensor([[1.0, 0, 0], [1, 1, 0], [0, 1, 0], [0, 1, 1], [0, 0, 1], [1, 0, 1], [0.5, 0.5, 0.5]])
    hue, chroma, lightness = rgb_to_hue_chroma(rgb)
    np.testing.assert_allclose(hue.numpy(), [0, 1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6, 0], atol=1e-7)
    np.testing.assert_allclose(chroma.numpy(), [1, 1, 1, 1, 1, 1, 0])
    np.testing.assert_allclose(lightness.numpy(), [1 / 3, 2 / 3, 1 / 3, 2 / 3, 1 / 3, 2 / 3, 0.5], atol=1e-7)


@pytest.mark.parametrize("dtype", DTYPES)
def test_hue_chroma_round_trip(rng, dtype):
    rgb = torch.from_numpy(_random_rgb(rng).astype(dtype))
    back = hue_chroma_to_rgb(*rgb_to_hue_chroma(rgb))
    tol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(back.numpy(), rgb.numpy(), atol=tol)


def test_hue_to_rgb_unit_is_hsv_with_full_saturation(rng):
    hue = rng.random(1000)
    hsv = np.stack([hue, np.ones_like(hue), np.ones_like(hue)], -1)[:, None]
    np.testing.assert_allclose(hue_to_rgb_unit(torch.from_numpy(hue)).numpy(), skcolor.hsv2rgb(hsv)[:, 0], atol=1e-12)


def _adversarial_hcl(rng):
    """Hue, (often far too large) chroma and lightness, including black, white and L near 0/1."""
    lightness = np.concatenate([[0, 1, 0, 1, 1e-6, 1 - 1e-6, 1e-3, 1 - 1e-3, 1 / 3, 2 / 3, 0.5], rng.random(2000)])
    n = lightness.size
    hue = np.concatenate([[0, 1 / 6, 1 / 3, 0.5, 2 / 3, 5 / 6, 0.999999, 0.25, 0, 1 / 3, 2 / 3], rng.random(n - 11)])
    chroma = np.concatenate([[1, 1, 5, 5, 10, 10, 100, 1e3, 1, 1, 1], rng.random(n - 11) * 3])
    return (torch.from_numpy(v) for v in (hue, chroma, lightness))


def test_gamut_reduction_keeps_gray_and_hue(rng):
    hue, chroma, lightness = _adversarial_hcl(rng)
    rgb = hue_chroma_to_rgb(hue, chroma, lightness)
    assert rgb.min() >= 0 and rgb.max() <= 1
    np.testing.assert_allclose(rgb.mean(-1).numpy(), lightness.numpy(), atol=1e-12)
    out_hue, out_chroma, _ = rgb_to_hue_chroma(rgb)
    # Only chroma is reduced: where colour survives, its hue is the requested one.
    coloured = out_chroma.numpy() > 1e-6
    assert _circular_diff(out_hue.numpy()[coloured], hue.numpy()[coloured]).max() < 1e-6
    assert np.all(out_chroma.numpy() <= chroma.numpy() + 1e-12)


def test_saturated_primaries_at_their_own_lightness_are_exact():
    # Red (1, 0, 0) has L = 1/3 and chroma 1: exactly on the gamut boundary.
    rgb = hue_chroma_to_rgb(torch.tensor([0.0, 1 / 3, 2 / 3], dtype=torch.float64),
                            torch.tensor([5.0, 5.0, 5.0], dtype=torch.float64),
                            torch.full((3,), 1 / 3, dtype=torch.float64))
    np.testing.assert_allclose(rgb.numpy(), np.eye(3), atol=1e-12)


def test_black_and_white_stay_gray_at_any_chroma():
    hue = torch.tensor([0.1, 0.5, 0.9, 0.3], dtype=torch.float64)
    chroma = torch.tensor([1.0, 10.0, 1e6, 0.5], dtype=torch.float64)
    for level in (0.0, 1.0):
        rgb = hue_chroma_to_rgb(hue, chroma, torch.full((4,), level, dtype=torch.float64))
        np.testing.assert_array_equal(rgb.numpy(), np.full((4, 3), level))


def test_max_chroma_reaches_the_cube_boundary(rng):
    hue = torch.from_numpy(rng.random(500))
    lightness = torch.from_numpy(rng.uniform(0.01, 0.99, 500))
    c_max = max_chroma_in_gamut(hue, lightness)
    rgb = hue_chroma_to_rgb(hue, c_max, lightness)
    # At the maximal chroma one channel touches 0 or 1; a little more would leave the cube.
    on_boundary = np.minimum(rgb.min(-1).values.numpy(), 1 - rgb.max(-1).values.numpy())
    np.testing.assert_allclose(on_boundary, 0, atol=1e-12)
    np.testing.assert_allclose(rgb_to_hue_chroma(rgb)[1].numpy(), c_max.numpy(), atol=1e-12)


def test_gray_to_lab_lightness_matches_skimage(rng):
    gray = np.concatenate([[0.0, 0.01, 0.04045, 0.5, 1.0], rng.random(200)])
    reference = skcolor.rgb2lab(np.repeat(gray[:, None, None], 3, axis=-1))[..., 0, 0]
    np.testing.assert_allclose(gray_to_lab_lightness(torch.from_numpy(gray)).numpy(), reference, atol=1e-6)


def test_rgb_to_gray_is_the_channel_mean(rng):
    rgb = rng.random((5, 7, 3))
    np.testing.assert_allclose(rgb_to_gray(rgb), rgb.mean(-1))
    np.testing.assert_allclose(rgb_to_gray(torch.from_numpy(rgb)).numpy(), rgb.mean(-1))
    as_uint8 = np.array([[[255, 0, 0], [255, 255, 255]]], np.uint8)
    np.testing.assert_allclose(rgb_to_gray(as_uint8), [[1 / 3, 1.0]], atol=1e-7)
    with pytest.raises(ValueError, match="3 channels"):
        rgb_to_gray(rng.random((5, 4)))


def test_oklab_matches_its_published_values():
    # Ottosson's reference values (bottosson.github.io/posts/oklab): white, red, green, blue.
    from napari_colorize.color import rgb_to_oklab

    rgb = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    expected = [[1.0, 0.0, 0.0], [0.62796, 0.22486, 0.12585], [0.86644, -0.23389, 0.17950],
                [0.45201, -0.03246, -0.31153]]
    np.testing.assert_allclose(rgb_to_oklab(rgb).numpy(), expected, atol=2e-4)


def test_relit_keeps_the_oklab_hue_at_the_asked_gray():
    # A hint's colour at another pixel's lightness: blue asked of a light sky was CIELab's pink.
    from napari_colorize.color import relit, rgb_to_oklab

    colours = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.8, 0.4, 0.3], [0.3, 0.75, 0.25], [0.5, 0.5, 0.5]])
    grays = torch.tensor([0.9, 0.5, 0.5, 0.2, 0.8])
    out = relit(colours, grays)
    np.testing.assert_allclose(out.mean(-1).numpy(), grays.numpy(), atol=1e-5)  # this package's lightness
    np.testing.assert_allclose(out[2].numpy(), colours[2].numpy(), atol=1e-5)  # at its own lightness: itself
    np.testing.assert_allclose(out[4].numpy(), [0.8] * 3, atol=1e-5)  # gray stays gray
    r, g, b = out[0].tolist()
    assert b > g > r and b - r > 0.1  # light blue (was about (1.0, 0.70, 1.0))
    hue = lambda lab: torch.atan2(lab[..., 2], lab[..., 1])  # noqa: E731
    for i in (0, 1, 3):  # the hue is kept, the chroma cut only as far as the gamut needs
        assert abs(float(hue(rgb_to_oklab(out[i])) - hue(rgb_to_oklab(colours[i])))) < 0.02
