"""The options of ``train``: their defaults, their checks, and what may change on resume."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import pytest
from _scenes import synthetic_image
from _scenes import to_u8 as _u8

from napari_colorize import build_model, save_model
from napari_colorize.model.factory import read_config
from napari_colorize.training import TrainConfig, train


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    root = tmp_path / "train"
    root.mkdir()
    for i in range(4):
        iio.imwrite(root / f"img{i}.png", _u8(synthetic_image(i)))
    return root


def _config(data: Path, output: Path, **kw) -> TrainConfig:
    base = dict(data=[str(data)], output=str(output), steps=2, batch_size=2, crop=64, max_side=96, points=32,
                workers=0, progress=False, log="", checkpoint_every=100)
    return TrainConfig(**{**base, **kw})


def test_fine_tuning_defaults_to_the_shipped_models_learning_rate(tmp_path, image_dir):
    # The documented fine-tuning command gives no --lr: 2e-3, the from-scratch rate, undid the
    # --init model's training in a few steps.
    base = save_model(build_model("compact", "lab"), tmp_path / "base.safetensors")
    runs = {"tuned": dict(init=str(base)), "scratch": {}, "chosen": dict(init=str(base), lr=1e-3),
            "sgd": dict(init=str(base), optimizer="sgd")}
    lrs = {}
    for name, kw in runs.items():
        out = tmp_path / f"{name}.safetensors"
        train(_config(image_dir, out, **kw))
        lrs[name] = read_config(out).training["lr"]
    assert lrs == {"tuned": 5e-4, "scratch": 2e-3, "chosen": 1e-3, "sgd": 1e-3}
