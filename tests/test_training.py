"""Training: data loading, crops and targets, the loop, checkpoints, resume, errors.

Everything runs on the CPU on tiny generated images (96 x 96, crops of 64).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
import torch
from _scenes import synthetic_image
from _scenes import to_u8 as _u8
from safetensors.torch import load_file

from napari_colorize import build_model, colorize, load_model, save_model
from napari_colorize.bins import windowed_histogram
from napari_colorize.model.factory import read_config
from napari_colorize.spaces import get_space, target_indices
from napari_colorize.training import TrainConfig, learning_rate, train, validate
from napari_colorize.training.data import (
    ColorCropDataset,
    StepBatchSampler,
    load_image_set,
    point_histograms,
    read_manifest_weights,
    read_rgb,
    scan_images,
)


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    root = tmp_path / "train"
    (root / "nested").mkdir(parents=True)
    for i in range(5):
        iio.imwrite(root / f"img{i}.png", _u8(synthetic_image(i)))
    tifffile.imwrite(root / "nested" / "deep16.tif", np.round(synthetic_image(7) * 65535).astype(np.uint16))
    iio.imwrite(root / "gray.png", _u8(np.repeat(synthetic_image(8).mean(-1, keepdims=True), 3, -1)))
    (root / "broken.jpg").write_bytes(b"this is not a JPEG")
    return root


@pytest.fixture
def val_dir(tmp_path: Path) -> Path:
    root = tmp_path / "val"
    root.mkdir()
    for i in range(2):
        iio.imwrite(root / f"v{i}.png", _u8(synthetic_image(100 + i)))
    return root


def _config(data, output, **kw) -> TrainConfig:
    base = dict(data=[str(data)], output=str(output), steps=4, batch_size=2, crop=64, max_side=96, points=32,
                workers=0, progress=False, log="", checkpoint_every=100)
    base.update(kw)
    return TrainConfig(**base)


# ----------------------------------------------------------------------------- data

def test_scan_and_load_skip_gray_and_broken(image_dir):
    paths = scan_images([image_dir])
    assert len(paths) == 8 and paths == sorted(paths)
    messages = []
    images = load_image_set(paths, max_side=96, report=messages.append)
    assert len(images) == 6
    assert {k: len(v) for k, v in images.skipped.items()} == {"broken": 1, "gray": 1, "too small": 0}
    assert len(messages) == 2 and any("gray" in m for m in messages) and any("broken" in m for m in messages)


def test_16bit_tiff_is_scaled_to_unit_range(image_dir):
    rgb = read_rgb(image_dir / "nested" / "deep16.tif")
    assert rgb.dtype == np.uint8
    np.testing.assert_allclose(rgb, _u8(synthetic_image(7)), atol=1)


def test_read_rgb_reduces_long_side(tmp_path):
    iio.imwrite(tmp_path / "big.png", _u8(synthetic_image(0, size=200)))
    assert read_rgb(tmp_path / "big.png", max_side=50).shape == (50, 50, 3)


def test_point_histograms_equal_windowed_histogram(rng):
    index = torch.from_numpy(rng.integers(0, 7, size=(12, 10)))
    yx = torch.tensor([[0, 0], [11, 9], [5, 4], [0, 9], [6, 1]])
    for window in (1, 3, 5):
        dense = windowed_histogram(index[None], 7, window)[0]  # (K, H, W)
        np.testing.assert_allclose(point_histograms(index, yx, 7, window), dense[:, yx[:, 0], yx[:, 1]].T, atol=1e-6)


def test_dataset_item_targets_match_the_true_colours():
    img = _u8(synthetic_image(3, size=64))
    space = get_space("hue_chroma")
    ds = ColorCropDataset([img], space, crop=64, points=50, scale=(1.0, 1.0), mirror=False)
    item = ds[(0, 123)]
    rgb = torch.from_numpy(img).float() / 255
    torch.testing.assert_close(item["gray"][0], rgb.mean(-1))
    px = (item["points"] - 0.5).long()
    assert torch.equal(item["points"] - 0.5, px.float())  # pixel centres
    at = rgb[px[:, 1], px[:, 0]]
    indices, chroma = target_indices(at, space)
    assert torch.equal(item["target_hue"].argmax(-1), indices["hue"])
    assert torch.equal(item["target_chroma"].argmax(-1), indices["chroma"])
    torch.testing.assert_close(item["chroma"], chroma)
    assert torch.equal(ds[(0, 123)]["points"], item["points"])  # a pure function of the seed


def test_dataset_crops_are_scaled_and_mirrored():
    img = _u8(synthetic_image(1, size=96))
    ds = ColorCropDataset([img], get_space("lab"), crop=32, scale=(0.34, 0.34), mirror=False)
    crop = ds.crop_rgb(0, np.random.default_rng(0))
    assert crop.shape == (32, 32, 3)  # the whole 96-pixel image, reduced by 3
    np.testing.assert_allclose(crop.mean((0, 1)).numpy(), img.mean((0, 1)) / 255, atol=0.01)
    mirrored = ColorCropDataset([img], get_space("lab"), crop=96, scale=(1, 1), mirror=True)
    flips = {bool(torch.equal(mirrored.crop_rgb(0, np.random.default_rng(s)), torch.from_numpy(img).float().flip(1) / 255))
             for s in range(8)}
    assert flips == {True, False}


def test_sampler_epochs_and_weights():
    s = StepBatchSampler(n=5, batch_size=2, steps=10, seed=1)
    first_epoch = [i for step in range(5) for i, _ in s.batch(step)]
    assert sorted(first_epoch[:5]) == [0, 1, 2, 3, 4]
    assert s.batch(3) == StepBatchSampler(n=5, batch_size=2, steps=10, seed=1, start=3).batch(3)
    assert list(StepBatchSampler(5, 2, 10, 1, start=7)) == [s.batch(k) for k in range(7, 10)]
    w = StepBatchSampler(n=3, batch_size=64, steps=50, seed=0, weights=np.array([1.0, 0.0, 3.0]))
    counts = np.bincount([i for k in range(50) for i, _ in w.batch(k)], minlength=3)
    assert counts[1] == 0 and counts[2] / counts[0] == pytest.approx(3.0, rel=0.15)


def test_manifest_weights(tmp_path, image_dir):
    paths = scan_images([image_dir])
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("file,weight\ntrain/img0.png,2.5\ntrain/nested/deep16.tif,0.5\n")
    weights, matched = read_manifest_weights(manifest, paths)
    by_name = dict(zip([p.name for p in paths], weights))
    assert matched == 2 and by_name["img0.png"] == 2.5 and by_name["deep16.tif"] == 0.5
    assert by_name["img1.png"] == pytest.approx(1.5)  # unlisted: the mean weight
    manifest.write_text("file,weight\ntrain/img0.png,1e308\ntrain/nested/deep16.tif,1e308\n")  # overflowed into NaN
    weights, _ = read_manifest_weights(manifest, paths)
    assert np.isfinite(weights).all() and np.isfinite(StepBatchSampler(len(paths), 2, 3, weights=weights).p).all()
    (tmp_path / "bad.csv").write_text("file,score\nx.png,1\n")
    with pytest.raises(ValueError, match="weight"):
        read_manifest_weights(tmp_path / "bad.csv", paths)
    # One found next to the data with a header alone sets no weights either (it stopped training for a while).
    from napari_colorize.training.manifest import resolve_weights
    manifest.write_text("file,source\n")
    assert resolve_weights(None, [image_dir], paths) == (None, None, 0)
    # A corpus manifest found next to the data that only names sources sets no weights (it used to stop training).
    manifest.write_text("file,source\ntrain/img0.png,a\n")
    result = train(_config(image_dir, tmp_path / "m.safetensors", steps=1))
    assert read_config(tmp_path / "m.safetensors").training["steps"] == 1 and result["images"] == 6


def test_learning_rate_schedule():
    assert learning_rate(0, 1.0, 100, 10) == pytest.approx(0.1)
    assert learning_rate(9, 1.0, 100, 10) == pytest.approx(1.0)
    assert learning_rate(10, 1.0, 100, 10) == pytest.approx(1.0)
    assert learning_rate(100, 1.0, 100, 10, floor=0.0) == pytest.approx(0.0, abs=1e-12)
    assert learning_rate(55, 1.0, 100, 10, floor=0.0) == pytest.approx(0.5)
    assert learning_rate(70, 1.0, 100, 0, schedule="step") == pytest.approx(0.1)


# ----------------------------------------------------------------------------- training

def test_training_lowers_the_loss_and_writes_a_usable_model(tmp_path, image_dir, val_dir):
    from napari_colorize.evaluate import evaluate
    from napari_colorize.training.trainer import load_validation_images

    torch.manual_seed(0)
    val_images = load_validation_images(val_dir, 2, max_side=64)
    before = validate(build_model("compact").train(), val_images, torch.device("cpu"))["loss"]
    out = tmp_path / "models" / "m.safetensors"
    result = train(_config(image_dir, out, steps=16, batch_size=2, lr=3e-3, val=str(val_dir), val_every=8,
                           checkpoint_every=8, log=str(tmp_path / "log.jsonl")))
    assert result["images"] == 6 and result["skipped"]["gray"] == 1 and result["skipped"]["broken"] == 1
    assert result["val"]["loss"] < 0.8 * before, (result["val"]["loss"], before)
    assert out.exists() and Path(result["checkpoint"]).exists()
    meta = read_config(out).training
    assert meta["steps"] == 16 and meta["complete"] is True and meta["val"]["step"] == 16
    assert meta["data"] == [str(image_dir.resolve())] and meta["wall_time_s"] > 0
    rgb = colorize(synthetic_image(5).mean(-1).astype(np.float32), model=str(out), device="cpu").rgb
    assert rgb.shape == (96, 96, 3)
    table = evaluate(str(val_dir), model=str(out), device="cpu")
    assert len(table.rows) == 2 and np.isfinite(table.mean["auc"])
    assert (tmp_path / "log.jsonl").read_text().count('"event": "val"') == 2


@pytest.mark.parametrize("extra", [{}, {"dropout": 0.3, "val_every": 2, "early_stop": 5}])
def test_resume_reproduces_an_uninterrupted_run(tmp_path, image_dir, val_dir, extra):
    # With early stopping the resumed run also reloads the best weights so far: that load must
    # not draw from the restored random state (dropout masks would differ from there on).
    full = tmp_path / "full.safetensors"
    part = tmp_path / "part.safetensors"
    kw = dict(steps=6, lr=3e-3, **extra)
    if extra:
        kw["val"] = str(val_dir)
    train(_config(image_dir, full, **kw))
    train(_config(image_dir, part, stop_after=3, **kw))
    assert read_config(part).training["steps"] == 3 and read_config(part).training["complete"] is False
    train(_config(image_dir, part, resume=True, **kw))
    for pair in ((full, part), (tmp_path / "full.ckpt.safetensors", tmp_path / "part.ckpt.safetensors")):
        a, b = (load_file(str(p)) for p in pair)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (pair[0].name, key)
    # The interrupted run really changed the weights between step 3 and 6.
    assert not torch.equal(load_file(str(tmp_path / "part.ckpt.safetensors"))["model.heads.hue.weight"],
                           build_model("compact").state_dict()["heads.hue.weight"])


def test_resume_refuses_changed_settings(tmp_path, image_dir):
    out = tmp_path / "m.safetensors"
    train(_config(image_dir, out, stop_after=1))
    import napari_colorize.training.setup as setup

    def never(*_):
        raise AssertionError("images read before the settings were compared")

    with pytest.MonkeyPatch.context() as mp:  # refused before any image is decoded
        mp.setattr(setup, "load_inputs", never)
        with pytest.raises(ValueError, match="batch_size"):
            train(_config(image_dir, out, batch_size=3, resume=True))
    for changed in ({"schedule": "constant"}, {"weight_decay": 0.5}, {"warmup": 7}, {"clip_grad": 1.0}):
        with pytest.raises(ValueError, match=f"{next(iter(changed))}: checkpoint"):
            train(_config(image_dir, out, resume=True, **changed))
    with pytest.raises(FileNotFoundError, match="start a new run with --force instead of --resume"):
        train(_config(image_dir, tmp_path / "other.safetensors", resume=True))
    # An image replaced by another of the same size is other data (its channels swapped here).
    first = image_dir / "img0.png"
    iio.imwrite(first, iio.imread(first)[..., ::-1])
    with pytest.raises(ValueError, match=r"training images differ from the checkpoint's \(files added, removed or changed"):
        train(_config(image_dir, out, resume=True))


def test_a_checkpoint_of_an_earlier_version_still_resumes(tmp_path, image_dir, monkeypatch):
    # Earlier versions recorded the images' digest of file list and sizes only.
    from napari_colorize.training.data import ImageSet

    out = tmp_path / "m.safetensors"
    monkeypatch.setattr(ImageSet, "fingerprint", ImageSet.legacy_fingerprint)  # the earlier version's run
    train(_config(image_dir, out, stop_after=1))
    monkeypatch.undo()
    train(_config(image_dir, out, resume=True))  # resumes: no "the training images differ"
    assert read_config(out).training["complete"]


def test_init_fine_tunes_and_checks_backbone_and_space(tmp_path, image_dir):
    base = tmp_path / "base.safetensors"
    save_model(build_model("compact", "lab"), base)
    out = tmp_path / "tuned.safetensors"
    train(_config(image_dir, out, init=str(base), steps=2))
    cfg = read_config(out)
    assert (cfg.backbone, cfg.space) == ("compact", "lab") and cfg.training["init"] == str(base)
    with pytest.raises(ValueError, match="compact/lab model.*--space hue_chroma"):
        train(_config(image_dir, tmp_path / "x.safetensors", init=str(base), space="hue_chroma"))
    with pytest.raises(ValueError, match="compact/lab model.*--backbone vgg16"):
        train(_config(image_dir, tmp_path / "x.safetensors", init=str(base), backbone="vgg16"))


def test_a_calibration_inherited_by_fine_tuning_is_marked_and_named(tmp_path, image_dir, capsys):
    # Fitted to the --init weights, not to the new ones: kept as a prior, marked, and the user told.
    base_model = build_model("compact", "lab")
    base_model.config.decoding = {"temperature": 1.7, "confidence_fading": [0.2, 0.4], "calibration": {"images": 9}}
    base = save_model(base_model, tmp_path / "base.safetensors")
    out = tmp_path / "tuned.safetensors"
    train(_config(image_dir, out, init=str(base), steps=2))
    decoding = read_config(out).decoding
    assert decoding["temperature"] == 1.7 and decoding["calibration"] == {"images": 9, "inherited_from": str(base)}
    assert f"napari-colorize calibrate {out} HELD_OUT/ -o {out} --force" in capsys.readouterr().err
    plain = tmp_path / "plain.safetensors"
    train(_config(image_dir, plain, init=str(save_model(build_model("compact", "lab"), tmp_path / "b2.safetensors")),
                  steps=2))
    assert "calibrate" not in capsys.readouterr().err  # nothing inherited, nothing to say


def test_fine_tuning_records_the_dropout_and_weight_decay_it_trained_with(tmp_path, image_dir):
    # The CLI's --dropout default (0) is not what a fine-tuned model trained with: its --init model's is.
    base = save_model(build_model("compact", "lab", dropout=0.2, context=32), tmp_path / "base.safetensors")
    out = tmp_path / "tuned.safetensors"
    train(_config(image_dir, out, init=str(base), steps=1))
    training = read_config(out).training
    assert (training["dropout"], training["context"], training["weight_decay"]) == (0.2, 32, 1e-2)
    assert read_config(out).dropout == 0.2


def test_a_single_data_folder_may_be_given_as_a_string_or_path(tmp_path, image_dir):
    # A string is one folder, not a sequence of one-letter folders; paths are kept as strings.
    out = tmp_path / "m.safetensors"
    cfg = _config(image_dir, out)
    for data in (str(image_dir), image_dir):
        one = TrainConfig(**{**vars(cfg), "data": data, "output": out, "val_sources": "src1"})
        assert one.data == [str(image_dir)] and one.output == str(out) and one.val_sources == ["src1"]
    assert train(dataclasses.replace(cfg, data=image_dir))["images"] == 6
    assert read_config(out).training["data"] == [str(image_dir.resolve())]


# ----------------------------------------------------------------------------- errors

def _no_decoding(monkeypatch) -> None:
    """Fail the test if any training image is decoded: the checks must come first."""
    from napari_colorize.training import inputs

    def refuse(*args, **kwargs):
        raise AssertionError("training images were decoded before the check")

    monkeypatch.setattr(inputs, "load_image_set", refuse)


def test_a_bad_validation_folder_is_named_before_any_image_is_decoded(tmp_path, image_dir, monkeypatch):
    _no_decoding(monkeypatch)
    with pytest.raises(FileNotFoundError, match=r"the validation folder .*nope \(--val\) does not exist; give --val"):
        train(_config(image_dir, tmp_path / "m.safetensors", val=str(tmp_path / "nope")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"the validation folder .*empty \(--val\) holds no images"):
        train(_config(image_dir, tmp_path / "m.safetensors", val=str(tmp_path / "empty")))


def test_validation_images_that_also_train_are_warned_of_and_refused_for_early_stopping(tmp_path, image_dir, capsys,
                                                                                        monkeypatch):
    # --val a parent of the training folder: its 8 files are those of training (broken and gray ones included).
    (tmp_path / "more").mkdir()
    iio.imwrite(tmp_path / "more" / "other.png", _u8(synthetic_image(50)))
    out = tmp_path / "m.safetensors"
    with monkeypatch.context() as m:
        _no_decoding(m)
        with pytest.raises(ValueError, match=r"8 of the 9 images in the validation folder .* are also in the training "
                                             r"folders .*--early-stop would keep the weights that fit the training"):
            train(_config(image_dir, out, val=str(tmp_path), early_stop=2))
    train(_config(image_dir, out, val=str(image_dir), steps=1))
    assert "warning: 8 of the 8 images in the validation folder" in capsys.readouterr().err
    train(_config(image_dir, out, val=str(tmp_path / "more"), steps=1, force=True))
    assert "are also in the training folders" not in capsys.readouterr().err



def test_clear_errors_for_bad_folders(tmp_path, image_dir):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        train(_config(tmp_path / "missing", tmp_path / "m.safetensors"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        train(_config(tmp_path / "empty", tmp_path / "m.safetensors"))
    with pytest.raises(ValueError, match=r"too few usable colour images: found 6 .* need at least 10"):
        train(_config(image_dir, tmp_path / "m.safetensors", min_images=10))


def test_clear_error_for_crop_larger_than_all_images(tmp_path, image_dir):
    with pytest.raises(ValueError, match=r"crop 128 is larger than every image .*96 px.*--crop 96"):
        train(_config(image_dir, tmp_path / "m.safetensors", crop=128, max_side=512))
    with pytest.raises(ValueError, match="multiple of 32"):
        train(_config(image_dir, tmp_path / "m.safetensors", crop=176))
    with pytest.raises(ValueError, match="use --batch-size 2 or more, or --crop 64 or more"):
        train(_config(image_dir, tmp_path / "m.safetensors", crop=32, batch_size=1))
    assert not list(tmp_path.glob("m.*"))  # refused before any file is written
    # Only batch normalisation needs two values per channel: vgg16 (none) may train so.
    from napari_colorize.training.config import check_config
    check_config(_config(image_dir, tmp_path / "m.safetensors", crop=32, batch_size=1, backbone="vgg16"))
    vgg = save_model(build_model("vgg16", "lab", hidden=16), tmp_path / "vgg.safetensors")  # fine-tuned: its backbone
    check_config(_config(image_dir, tmp_path / "m.safetensors", crop=32, batch_size=1, init=str(vgg)))
    with pytest.raises(FileNotFoundError, match="no model file at .*typo.safetensors"):  # its own error first
        train(_config(image_dir, tmp_path / "m.safetensors", crop=32, batch_size=1,
                      init=str(tmp_path / "typo.safetensors")))


@pytest.mark.skipif(os.name == "nt" or os.geteuid() == 0, reason="root can write anywhere")
def test_clear_error_for_unwritable_output_nonroot(tmp_path, image_dir):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(PermissionError, match="cannot write"):
        train(_config(image_dir, locked / "m.safetensors"))


def test_clear_error_for_unwritable_output(tmp_path, image_dir):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    # The output's folder cannot be created: a file is in the way.  Checked before loading data.
    with pytest.raises(PermissionError, match="cannot create the folder"):
        train(_config(tmp_path / "missing-data", blocker / "sub" / "m.safetensors"))
    with pytest.raises(ValueError, match="is a folder"):
        train(_config(image_dir, tmp_path))


def test_pretrained_imagenet_offline_says_how_to_get_the_weights(tmp_path, image_dir, monkeypatch):
    from torchvision.models import VGG16_Weights

    def offline(self, *args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(VGG16_Weights, "get_state_dict", offline)
    with pytest.raises(RuntimeError, match="Download https://"):
        train(_config(image_dir, tmp_path / "m.safetensors", backbone="vgg16", pretrained="imagenet"))


def test_cli_reports_errors_cleanly(tmp_path, capsys):
    from napari_colorize.cli_train import main

    code = main([str(tmp_path / "nowhere"), "-o", str(tmp_path / "m.safetensors"), "--no-progress"])
    assert code == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_trains(tmp_path, image_dir):
    from napari_colorize.cli_train import main

    out = tmp_path / "cli.safetensors"
    code = main([str(image_dir), "-o", str(out), "--steps", "2", "--batch-size", "2", "--crop", "64",
                 "--max-side", "96", "--workers", "0", "--no-progress", "--space", "lab_marginal", "--log", ""])
    assert code == 0
    cfg = read_config(out)
    assert cfg.space == "lab_marginal" and cfg.training["steps"] == 2 and "--steps 2" in cfg.training["command"]


def test_cli_choices_come_from_the_registries(monkeypatch):
    import argparse

    from napari_colorize.cli import build_parser
    from napari_colorize.decode import METHODS
    from napari_colorize.devices import PRECISIONS
    from napari_colorize.model import BACKBONES
    from napari_colorize.spaces import SPACES
    from napari_colorize.training.config import OPTIMIZERS, SCHEDULES

    monkeypatch.setitem(SPACES, "lab_fine", SPACES["lab"])  # a space registered after import is offered too
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices

    def choices(command: str, flag: str) -> tuple:
        return tuple(next(a for a in commands[command]._actions if flag in a.option_strings).choices)

    assert choices("train", "--space") == tuple(SPACES) and "lab_fine" in SPACES
    assert choices("train", "--backbone") == tuple(BACKBONES)
    assert choices("train", "--precision") == PRECISIONS
    assert choices("train", "--optimizer") == OPTIMIZERS and choices("train", "--schedule") == SCHEDULES
    assert choices("train", "--pretrained") == ("imagenet",)
    assert choices("evaluate", "--method") == ("default", *METHODS)


def test_training_a_chosen_head_width(tmp_path, image_dir):
    out = tmp_path / "h32.safetensors"
    cfg = dict(data=[str(image_dir)], steps=2, batch_size=2, crop=64, max_side=96, points=32, workers=0,
               progress=False, log="", checkpoint_every=100)
    train(TrainConfig(output=str(out), hidden=32, **cfg))
    model = load_model(out)
    assert read_config(out).hidden == 32 and model.projection_bias.numel() == 32
    assert all(head.in_channels == 32 for head in model.heads.values())
    with pytest.raises(ValueError, match="--hidden 64"):
        train(TrainConfig(output=str(tmp_path / "x.safetensors"), init=str(out), hidden=64, **cfg))
    with pytest.raises(ValueError, match=r"with dropout 0.0, but --dropout 0.5 was asked; drop --dropout"):
        train(TrainConfig(output=str(tmp_path / "x.safetensors"), init=str(out), dropout=0.5, **cfg))
    with pytest.raises(ValueError, match="hidden must be"):
        train(TrainConfig(output=str(tmp_path / "y.safetensors"), hidden=4, **cfg))
