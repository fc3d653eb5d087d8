"""Shared fixtures for the test suite.

* ``rng``: a seeded :class:`numpy.random.Generator` (seed 0), fresh per test.
* ``make_model(backbone="compact", space="hue_chroma", seed=0)``: a randomly initialised
  colorizer in evaluation mode, cached for the session (do not modify it in place;
  ``copy.deepcopy`` it first).  Its head biases are drawn from N(0, 2) so that the
  predicted histograms are peaked and the decoded colours clearly chromatic: a test
  of lightness pass-through on a gray-looking output could not fail.
* ``model_path``: a ``compact`` model file with its initial weights (seed 3), for runs of the
  command line; a test file that needs other weights defines its own.
* ``photo_dir``: a folder ``train`` in ``tmp_path`` of four small synthetic colour photographs
  (PNG), for training runs.
* Tests marked ``@pytest.mark.cuda`` are skipped when no CUDA device is available.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


_MODELS: dict[tuple, torch.nn.Module] = {}


def _make_model(backbone: str = "compact", space: str = "hue_chroma", seed: int = 0):
    from napari_colorize import build_model

    key = (backbone, space, seed)
    if key not in _MODELS:
        torch.manual_seed(seed)
        model = build_model(backbone, space).eval()
        with torch.no_grad():
            for head in model.heads.values():
                head.bias.normal_(0.0, 2.0)
        _MODELS[key] = model
    return _MODELS[key]


@pytest.fixture(scope="session")
def make_model():
    return _make_model


@pytest.fixture(scope="session")
def model_path(tmp_path_factory) -> str:
    from napari_colorize import build_model, save_model

    torch.manual_seed(3)
    return str(save_model(build_model("compact"), tmp_path_factory.mktemp("m") / "m.safetensors"))


@pytest.fixture
def photo_dir(tmp_path: Path) -> Path:
    import imageio.v3 as iio
    from _scenes import synthetic_image, to_u8

    root = tmp_path / "train"
    root.mkdir()
    for i in range(4):
        iio.imwrite(root / f"img{i}.png", to_u8(synthetic_image(i)))
    return root
