"""Fixtures shared by the widget tests."""

from __future__ import annotations

import pytest
import torch

import napari_colorize as nc


@pytest.fixture(autouse=True)
def private_settings(tmp_path, monkeypatch):
    """Keep the widget's persisted choices out of the user's cache folder; the path it uses instead."""
    from napari_colorize._qt import _widget

    path = tmp_path / "settings.json"
    monkeypatch.setattr(_widget, "settings_path", lambda: path)
    return path


@pytest.fixture(autouse=True)
def fresh_caches():
    """Tiles cached by one test would skip another's cancel checks (they are not computed)."""
    from napari_colorize.engine.cache import clear_caches

    clear_caches()
    yield
    clear_caches()


@pytest.fixture(scope="module")
def strong_model(tmp_path_factory):
    """A compact model that predicts hue bin 2 (orange) at chroma bin 20 with certainty."""
    torch.manual_seed(0)
    model = nc.build_model("compact")
    with torch.no_grad():
        for head in model.heads.values():
            head.weight.zero_()
            head.bias.fill_(-10.0)
        model.heads["hue"].bias[2] = 10.0
        model.heads["chroma"].bias[20] = 10.0
    return str(nc.save_model(model, tmp_path_factory.mktemp("model") / "strong.safetensors"))
