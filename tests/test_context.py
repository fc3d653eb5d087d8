"""The image-level context vector (issue 9, item 5): model, engine and training."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from _scenes import synthetic_image
from _scenes import to_u8 as _u8

from napari_colorize import build_model, colorize, load_model, save_model
from napari_colorize.engine.cache import clear_caches
from napari_colorize.inference import predict_maps
from napari_colorize.model.factory import read_config
from napari_colorize.training import TrainConfig, train
from napari_colorize.training.data import ColorCropDataset


def _context_model(side: int = 64, seed: int = 0):
    torch.manual_seed(seed)
    model = build_model("compact", "lab", context=side).eval()
    # Trained models have a non-zero projection; a new one starts at zero (see below).
    torch.nn.init.normal_(model.context_projection.weight, 0.0, 0.3)
    return model


def _scene(h: int = 200, w: int = 264) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w] / max(h, w)
    return (0.5 + 0.3 * np.sin(9 * xx) * np.cos(7 * yy) + 0.15 * (yy > 0.4)).clip(0, 1).astype(np.float32)


def test_fast_and_naive_paths_agree_and_points_sample_the_grid():
    model = _context_model()
    gray = torch.rand(2, 1, 96, 128)
    with torch.no_grad():
        fast, naive = model.grid_logits(gray), model.grid_logits_naive(gray)
        points = torch.tensor([[[2.0, 2.0], [10.0, 6.0]]]).expand(2, -1, -1)
        sparse = model.point_logits(gray, points)
    assert torch.allclose(fast["ab"], naive["ab"], atol=1e-4)
    # (2, 2) is the centre of cell (0, 0); (10, 6) of cell (row 1, column 2).
    assert torch.allclose(sparse["ab"][:, 0], fast["ab"][:, :, 0, 0], atol=1e-4)
    assert torch.allclose(sparse["ab"][:, 1], fast["ab"][:, :, 1, 2], atol=1e-4)


def test_a_new_context_model_starts_as_its_plain_twin():
    torch.manual_seed(3)
    plain = build_model("compact", "lab").eval()
    ctx = build_model("compact", "lab", context=64).eval()
    missing = ctx.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing == ["context_projection.weight"]
    gray = torch.rand(1, 1, 64, 96)
    with torch.no_grad():
        assert torch.equal(plain.grid_logits(gray)["ab"], ctx.grid_logits(gray)["ab"])


def test_the_context_carries_the_whole_image_into_a_tile():
    model = _context_model()
    whole = torch.from_numpy(_scene())[None, None]
    tile = whole[..., :96, :96]
    with torch.no_grad():
        own = model.grid_logits(tile)["ab"]  # the tile as its own image
        given = model.grid_logits(tile, model.context_features(whole))["ab"]
        other = model.grid_logits(tile, model.context_features(1 - whole))["ab"]
    assert not torch.allclose(own, given, atol=1e-3)
    assert not torch.allclose(given, other, atol=1e-3)


def test_tiling_stays_seam_free_and_matches_one_pass():
    model = _context_model()
    gray = _scene(256, 384)
    clear_caches()
    one = np.asarray(colorize(gray, model=model, device="cpu", tile_size=512, overlap=0).rgb)
    clear_caches()
    tiled = np.asarray(colorize(gray, model=model, device="cpu", tile_size=160, overlap=32).rgb)
    assert np.abs(one - tiled).max() < 2e-3
    # The engine's context of a whole image is the model's own (the image is its overview).
    direct = predict_maps(model, torch.from_numpy(gray)[None])["rgb"][0].numpy()
    assert np.abs(one - direct).max() < 2e-3
    assert np.allclose(one.mean(-1), gray, atol=1e-5)  # lightness kept


def test_a_stack_shares_one_context_so_identical_planes_match():
    model = _context_model()
    plane = _scene(128, 160)
    stack = np.stack([plane, 1 - plane, plane])
    clear_caches()
    out = np.asarray(colorize(stack, model=model, device="cpu").rgb)
    assert np.abs(out[0] - out[2]).max() < 1e-6
    # Shared: plane 0 of the stack differs from plane 0 coloured alone (its own context).
    alone = np.asarray(colorize(plane, model=model, device="cpu").rgb)
    assert np.abs(out[0] - alone).max() > 1e-4


def test_context_is_saved_loaded_and_checked(tmp_path):
    model = _context_model(side=96)
    path = save_model(model, tmp_path / "ctx.safetensors")
    assert read_config(path).context == 96
    loaded = load_model(path)
    assert loaded.context_side == 96
    assert torch.equal(loaded.context_projection.weight, model.context_projection.weight)
    with pytest.raises(ValueError, match="context"):
        build_model("compact", "lab", context=-1)
    with pytest.raises(ValueError, match="multiple of 32"):
        build_model("compact", "lab", context=100)


def test_crops_come_with_their_whole_image_overview():
    images = [_u8(synthetic_image(i)) for i in range(2)]
    from napari_colorize.spaces import get_space
    plain = ColorCropDataset(images, get_space("lab"), 64, degrade=0.5)
    ctx = ColorCropDataset(images, get_space("lab"), 64, degrade=0.5, context=64)
    a, b = plain[(1, 7)], ctx[(1, 7)]
    assert set(b) - set(a) == {"overview"} and b["overview"].shape == (1, 64, 64)
    for key in a:  # the crop, its targets and its degraded gray do not depend on the context
        assert torch.equal(a[key], b[key]), key
    assert float(b["overview"].min()) >= 0 and float(b["overview"].max()) <= 1
    clean = ColorCropDataset(images, get_space("lab"), 64, context=64)[(1, 7)]["overview"]
    whole = torch.from_numpy(images[1]).float().mean(-1) / 255
    # Area averaging of the whole image: its mean is kept.
    assert abs(float(clean.mean()) - float(whole.mean())) < 1e-3


def test_training_a_context_model(tmp_path, photo_dir):
    out = tmp_path / "ctx.safetensors"
    cfg = dict(data=[str(photo_dir)], steps=3, batch_size=2, crop=64, max_side=96, points=32, workers=0,
               progress=False, log="", checkpoint_every=100, lr=3e-3)
    train(TrainConfig(output=str(out), context=64, **cfg))
    model = load_model(out)
    assert model.context_side == 64 and read_config(out).training["context"] == 64
    assert float(model.context_projection.weight.abs().max()) > 0  # it learnt from the overview
    with pytest.raises(ValueError, match="compact/hue_chroma model.*--context 128"):
        train(TrainConfig(output=str(tmp_path / "x.safetensors"), init=str(out), context=128, **cfg))
    with pytest.raises(ValueError, match="context must be"):
        train(TrainConfig(output=str(tmp_path / "y.safetensors"), context=40, **cfg))



def test_api_zarr_and_cli_give_one_colour_with_a_context_model(tmp_path):
    from napari_colorize import colorize_to_zarr
    from napari_colorize.engine.zarr_io import open_zarr_result
    from napari_colorize.cli import main

    path = save_model(_context_model(), tmp_path / "ctx.safetensors")
    gray = _scene(160, 224)
    clear_caches()
    ref = colorize(gray, model=str(path), device="cpu", tile_size=128, overlap=32)
    store = colorize_to_zarr(gray, tmp_path / "out.zarr", str(path), device="cpu", tile_size=128, overlap=32,
                             rgb_dtype="float32")
    np.testing.assert_allclose(open_zarr_result(store).rgb.compute(), ref.rgb.compute(), atol=1e-6)
    src = tmp_path / "in.png"
    iio.imwrite(src, np.round(gray * 255).astype(np.uint8))
    assert main(["colorize", str(src), "-o", str(tmp_path / "cli"), "--model", str(path), "--device", "cpu",
                 "--no-progress"]) == 0
    written = iio.imread(tmp_path / "cli" / "in_colorized.png").astype(np.float32) / 255
    alone = np.asarray(colorize(np.round(gray * 255).astype(np.uint8), model=str(path), device="cpu").rgb)
    assert np.abs(written - alone).max() <= 1 / 255 + 1e-6


@pytest.mark.cuda
def test_a_context_model_on_the_gpu_matches_the_cpu():
    model = _context_model()
    gray = _scene(256, 384)
    clear_caches()
    cpu = np.asarray(colorize(gray, model=model, device="cpu", tile_size=160, overlap=32).rgb)
    clear_caches()
    gpu = np.asarray(colorize(gray, model=model, device="cuda", tile_size=160, overlap=32, batch_size=3).rgb)
    assert np.abs(gpu - cpu).max() < 0.02
    np.testing.assert_allclose(gpu.mean(-1), gray, atol=2e-6)


def test_context_dropout_drops_whole_vectors_in_training_only():
    torch.manual_seed(0)
    model = build_model("compact", "lab", context=64, context_dropout=0.5)
    torch.nn.init.normal_(model.context_projection.weight, 0.0, 0.3)
    gray = torch.rand(64, 1, 64, 64)
    model.train()
    context = torch.ones(64, model.hypercolumn_channels)
    with torch.no_grad():
        torch.manual_seed(1)
        bias = model._context_bias(gray, context)
    dropped = (bias.abs().sum(1) == 0)
    assert 16 < int(dropped.sum()) < 48  # about half the images, each all or nothing
    kept = bias[~dropped]
    assert torch.allclose(kept, 2 * model.context_projection(context[:1]).detach().expand_as(kept), atol=1e-5)
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model._context_bias(gray, context), model.context_projection(context), atol=1e-6)
