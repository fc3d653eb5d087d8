"""The per-tile computation: decoding on the grid, uncertainty, composing with the input gray."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import norm
from skimage import color as skcolor

from napari_colorize.color import gray_to_lab_lightness, rgb_to_hue_chroma
from napari_colorize.inference import (
    LAB_CHROMA_REF,
    DecodeOptions,
    compose,
    decode_grid,
    lab_to_hue_chroma_maps,
    predict,
)
from napari_colorize.model import pad_to_multiple
from napari_colorize.spaces import SPACES


def _independent_lab_bins(k: int) -> tuple[np.ndarray, np.ndarray]:
    """(hue bin, chroma bin) of every (a, b) bin centre, from scipy and numpy only."""
    centres = norm.ppf((np.arange(k) + 0.5) / k, scale=25)
    aa, bb = np.meshgrid(centres, centres, indexing="ij")
    hue = (np.arctan2(bb, aa) / (2 * np.pi)) % 1.0
    chroma = np.hypot(aa, bb) / LAB_CHROMA_REF
    return (np.clip(np.floor(hue * 32), 0, 31).astype(int).ravel(),
            np.clip(np.floor(chroma * 32), 0, 31).astype(int).ravel())


@pytest.mark.parametrize("space, k", [("lab", 16), ("lab_marginal", 32)])
def test_lab_to_hue_chroma_maps(space, k):
    to_hue, to_chroma = lab_to_hue_chroma_maps(SPACES[space], torch.device("cpu"))
    assert to_hue.shape == (k * k, 32) and to_chroma.shape == (k * k, 32)
    for matrix in (to_hue, to_chroma):
        assert set(matrix.unique().tolist()) == {0.0, 1.0}
        np.testing.assert_array_equal(matrix.sum(1).numpy(), 1.0)  # each (a, b) bin goes somewhere
    hue_idx, chroma_idx = _independent_lab_bins(k)
    np.testing.assert_array_equal(to_hue.argmax(1).numpy(), hue_idx)
    np.testing.assert_array_equal(to_chroma.argmax(1).numpy(), chroma_idx)


def test_lab_to_hue_chroma_maps_hand_case():
    to_hue, to_chroma = lab_to_hue_chroma_maps(SPACES["lab"], torch.device("cpu"))
    # Bin (a = 15, b = 8): a = 25 * ppf(15.5 / 16) = 46.5, b = 25 * ppf(8.5 / 16) = 1.96:
    # hue angle 2.4 degrees -> hue bin 0; C*ab = 46.6 -> 0.466 * 32 = 14.9 -> chroma bin 14.
    row = 15 * 16 + 8
    assert to_hue[row].argmax().item() == 0 and to_chroma[row].argmax().item() == 14
    # Bin (a = 0, b = 0): a = b = -46.5, hue 225 degrees -> 0.625 * 32 = bin 20; C = 65.8 -> bin 21.
    assert to_hue[0].argmax().item() == 20 and to_chroma[0].argmax().item() == 21


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum() / np.log(32))


def test_lab_uncertainty_from_the_joint_histogram():
    space = SPACES["lab"]
    probs = torch.zeros(2, 256, 1, 1)
    probs[0, 15 * 16 + 8] = 1.0  # certain
    probs[1] = 1.0 / 256  # uniform over (a, b)
    maps = decode_grid({"ab": probs}, space, DecodeOptions())
    confidence, entropy = maps[:, 2, 0, 0].numpy(), maps[:, 3, 0, 0].numpy()
    hue_idx, chroma_idx = _independent_lab_bins(16)
    p_hue = np.bincount(hue_idx, minlength=32) / 256
    p_chroma = np.bincount(chroma_idx, minlength=32) / 256
    np.testing.assert_allclose(confidence, [1.0, 1.0 - _entropy(p_chroma)], atol=1e-6)
    np.testing.assert_allclose(entropy, [0.0, _entropy(p_hue)], atol=1e-6)
    assert 0.5 < entropy[1] < 1  # uniform over (a, b) is far from certain about hue


def test_lab_marginal_uncertainty_uses_the_product_histogram():
    space = SPACES["lab_marginal"]
    pa, pb = torch.zeros(1, 32, 1, 1), torch.zeros(1, 32, 1, 1)
    pa[0, 31], pb[0, 16] = 1.0, 1.0
    maps = decode_grid({"a": pa, "b": pb}, space, DecodeOptions())
    np.testing.assert_allclose(maps[0, 2:, 0, 0].numpy(), [1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(maps[0, :2, 0, 0].numpy(), [space.a_bins.centers[31], space.b_bins.centers[16]], atol=1e-5)


def test_hue_chroma_decode_hand_case():
    space = SPACES["hue_chroma"]
    p_hue, p_chroma = torch.zeros(3, 32, 1, 1), torch.zeros(3, 32, 1, 1)
    p_chroma[:, 16] = 1.0  # chroma median: the centre of bin 16 = 16.5 / 32
    p_hue[0, 8] = 1.0  # certain hue 8.5 / 32
    p_hue[1] = 1.0 / 32  # uniform hue: faded to gray
    p_hue[2, 0] = p_hue[2, 31] = 0.5  # red, across the wrap-around
    maps = decode_grid({"hue": p_hue, "chroma": p_chroma}, space, DecodeOptions())
    c, h = 16.5 / 32, 2 * math.pi * 8.5 / 32
    np.testing.assert_allclose(maps[0, :, 0, 0].numpy(), [c * math.cos(h), c * math.sin(h), 1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(maps[1, :2, 0, 0].numpy(), [0.0, 0.0], atol=1e-6)
    assert maps[1, 3, 0, 0].item() == pytest.approx(1.0, abs=1e-6)
    u, v = maps[2, :2, 0, 0].tolist()
    assert u == pytest.approx(c, abs=1e-6) and v == pytest.approx(0.0, abs=1e-6)
    # Without fading a uniform hue keeps its chroma.
    unfaded = decode_grid({"hue": p_hue, "chroma": p_chroma}, space, DecodeOptions(fading=False))
    assert math.hypot(*unfaded[1, :2, 0, 0].tolist()) == pytest.approx(c, abs=1e-5)


def test_confidence_fading():
    space = SPACES["hue_chroma"]
    p_hue, p_chroma = torch.zeros(2, 32, 1, 1), torch.zeros(2, 32, 1, 1)
    p_hue[:, 4] = 1.0
    p_chroma[0, 20] = 1.0  # confidence 1: kept
    p_chroma[1] = 1.0 / 32  # confidence 0: faded to gray
    probs = {"hue": p_hue, "chroma": p_chroma}
    plain = decode_grid(probs, space, DecodeOptions())
    faded = decode_grid(probs, space, DecodeOptions(confidence_fading=(0.1, 0.5)).validated())
    np.testing.assert_allclose(faded[0].numpy(), plain[0].numpy())
    np.testing.assert_allclose(faded[1, :2].numpy(), 0.0, atol=1e-7)
    assert plain[1, :2].abs().max() > 0.1


@pytest.mark.parametrize("kwargs, words", [
    ({"method": "mean"}, "unknown decoding method"),
    ({"saturation": -1.0}, "saturation"),
    ({"saturation": math.nan}, "saturation"),
    ({"confidence_fading": (0.5, 0.2)}, "confidence_fading"),
])
def test_decode_options_are_validated(kwargs, words):
    with pytest.raises(ValueError, match=words):
        DecodeOptions(**kwargs).validated()


def test_compose_lab_keeps_gray_and_lab_hue(rng):
    gray = torch.from_numpy(rng.uniform(0.2, 0.8, (1, 4, 5)))
    ab = torch.from_numpy(rng.uniform(-20, 20, (1, 2, 4, 5)))
    rgb = compose(ab, gray, SPACES["lab"])
    np.testing.assert_allclose(rgb.mean(-1).numpy(), gray.numpy(), atol=1e-12)
    lab = np.stack([gray_to_lab_lightness(gray).numpy(), ab[:, 0].numpy(), ab[:, 1].numpy()], -1)
    reference_hue, _, _ = rgb_to_hue_chroma(torch.from_numpy(skcolor.lab2rgb(lab)))
    hue, _, _ = rgb_to_hue_chroma(rgb)
    d = (hue - reference_hue).abs().numpy() % 1
    assert np.minimum(d, 1 - d).max() < 1e-9


def test_compose_hue_chroma_and_saturation():
    gray = torch.full((1, 1, 3), 0.5, dtype=torch.float64)
    angle = 2 * math.pi * torch.tensor([0.1, 0.4, 0.7], dtype=torch.float64)
    colour = torch.stack((0.2 * torch.cos(angle), 0.2 * torch.sin(angle)))[None, :, None, :]
    for saturation, chroma in ((1.0, 0.2), (2.0, 0.4), (0.0, 0.0)):
        rgb = compose(colour, gray, SPACES["hue_chroma"], saturation)
        hue, out_chroma, lightness = rgb_to_hue_chroma(rgb)
        np.testing.assert_allclose(lightness.numpy(), 0.5, atol=1e-12)
        np.testing.assert_allclose(out_chroma.numpy(), chroma, atol=1e-12)
        if chroma:
            np.testing.assert_allclose(hue[0, 0].numpy(), [0.1, 0.4, 0.7], atol=1e-12)


def test_decoding_on_the_grid_equals_decoding_upsampled_histograms(make_model, rng):
    # The expectation is linear: decoding before upsampling is exact (module docstring).
    model = make_model("compact", "lab")
    gray = torch.from_numpy(rng.random((1, 64, 64), dtype=np.float32))
    with torch.no_grad():
        probs = torch.softmax(model.grid_logits(gray[:, None])["ab"], 1)
    opts = DecodeOptions(method="expectation")
    on_grid = F.interpolate(decode_grid({"ab": probs}, model.space, opts)[:, :2], scale_factor=4, mode="bilinear")
    upsampled = F.interpolate(probs, scale_factor=4, mode="bilinear")
    full = decode_grid({"ab": upsampled}, model.space, opts)[:, :2]
    np.testing.assert_allclose(on_grid.numpy(), full.numpy(), atol=1e-4)
    assert full.abs().max() > 1  # real colours, not zeros


@pytest.mark.parametrize("space", ["hue_chroma", "lab", "lab_marginal"])
def test_predict_shapes_ranges_and_lightness(make_model, rng, space):
    model = make_model("compact", space)
    gray = torch.from_numpy(rng.random((2, 40, 70), dtype=np.float32))
    rgb, confidence, entropy = predict(model, gray, DecodeOptions())
    assert rgb.shape == (2, 40, 70, 3) and confidence.shape == entropy.shape == (2, 40, 70)
    assert rgb.dtype == torch.float32
    for t in (rgb, confidence, entropy):
        assert t.min() >= 0 and t.max() <= 1
    np.testing.assert_allclose(rgb.mean(-1).numpy(), gray.numpy(), atol=1e-6)
    assert rgb_to_hue_chroma(rgb)[1].mean() > 0.03  # clearly coloured
    assert confidence.std() > 0 and entropy.std() > 0


def test_predict_sample_is_seeded(make_model, rng):
    model = make_model("compact", "hue_chroma")
    gray = torch.from_numpy(rng.random((1, 64, 64), dtype=np.float32))
    a = predict(model, gray, DecodeOptions(method="sample", seed=1))[0]
    b = predict(model, gray, DecodeOptions(method="sample", seed=1))[0]
    c = predict(model, gray, DecodeOptions(method="sample", seed=2))[0]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_predict_refuses_small_images(make_model):
    with pytest.raises(ValueError, match="at least 32 x 32"):
        predict(make_model("compact", "hue_chroma"), torch.rand(1, 31, 64))


def test_pad_to_multiple():
    x = torch.arange(35 * 40, dtype=torch.float32).view(1, 1, 35, 40)
    padded = pad_to_multiple(x, 32)
    assert padded.shape == (1, 1, 64, 64)
    assert torch.equal(padded[..., :35, :40], x)
    assert torch.equal(padded[..., 35, :40], x[..., 33, :])  # reflected about the last row
    assert pad_to_multiple(x[..., :32, :32], 32).shape == (1, 1, 32, 32)


def test_a_registered_space_is_used_through_its_own_methods(tmp_path):
    # A space that is not one of the built-in names: any code still choosing behaviour by
    # name (if space.name == "hue_chroma") would send it down the wrong path.
    from napari_colorize import build_model, load_model, save_model
    from napari_colorize.bins import uniform_bins
    from napari_colorize.spaces import HueChromaSpace, register_space
    from napari_colorize.training import compute_loss
    from napari_colorize.training.data import ColorCropDataset

    space = HueChromaSpace("hue_chroma16", {"hue": 16, "chroma": 16},
                           {"hue": uniform_bins(16, circular=True), "chroma": uniform_bins(16)})
    register_space(space)
    try:
        with pytest.raises(ValueError, match="already registered"):
            register_space(space)
        torch.manual_seed(0)
        model = build_model("compact", "hue_chroma16").eval()
        with torch.no_grad():
            for head in model.heads.values():
                head.bias.normal_(0.0, 2.0)
        loaded = load_model(save_model(model, tmp_path / "m.safetensors"))
        assert loaded.space is space and loaded.heads["hue"].out_channels == 16
        gray = torch.rand(1, 64, 64, generator=torch.Generator().manual_seed(1))
        rgb, _confidence, entropy = predict(loaded, gray)
        np.testing.assert_allclose(rgb.mean(-1).numpy(), gray.numpy(), atol=1e-6)
        assert rgb_to_hue_chroma(rgb)[1].mean() > 0.03 and 0 <= float(entropy.min()) <= float(entropy.max()) <= 1
        image = (np.random.default_rng(2).random((64, 64, 3)) * 255).astype(np.uint8)
        dataset = ColorCropDataset([image], space, 64, 8)
        item = dataset[(0, 3)]
        batch = {k: torch.stack([v, dataset[(0, 4)][k]]) for k, v in item.items()}  # batch norm needs 2
        assert set(item) >= {"target_hue", "target_chroma"} and item["target_hue"].shape == (8, 16)
        assert torch.isfinite(compute_loss(model.train(), batch))
    finally:
        del SPACES["hue_chroma16"]


def test_predict_refuses_non_finite_colours(make_model):
    import copy
    model = copy.deepcopy(make_model("compact", "lab"))
    with torch.no_grad():
        model.heads["ab"].bias[3] = float("inf")  # one bin: softmax gives NaN at every pixel
    with pytest.raises(FloatingPointError, match="non-finite colours"):
        predict(model, torch.rand(1, 64, 64))


def test_sampled_tiles_draw_independently_and_whatever_the_batch_size():
    # A flat gray, tiled without overlap: one generator per batch repeated the same draws at
    # the same offsets in every tile (correlation 0.98), and so did seeding by the tile's content.
    import napari_colorize as nc
    g = np.full((256, 256), 0.5, np.float32)  # every tile shows the same: draws must still differ
    runs = [np.asarray(nc.colorize(g, device="cpu", method="sample", tile_size=128, overlap=0, batch_size=b,
                                   seed=3).rgb, dtype=np.float64) for b in (1, 4)]
    np.testing.assert_allclose(runs[0], runs[1], atol=1e-5)  # batched convolutions round differently
    red = runs[0][..., 0] - runs[0].mean(-1)
    tiles = [red[y:y + 128, x:x + 128].ravel() for y in (0, 128) for x in (0, 128)]
    assert max(abs(np.corrcoef(tiles[0], t)[0, 1]) for t in tiles[1:]) < 0.2
