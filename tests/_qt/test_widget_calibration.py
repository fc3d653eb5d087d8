"""The Colorize widget applies a model's stored calibration (temperature and fading).

Run: ``xvfb-run -a pytest tests/_qt/test_widget_calibration.py -q``.  A model file
carrying ``decoding["temperature"] = 3`` is chosen through the widget's file option, as
a user would; the layers must equal the Python API's calibrated result (which equals an
explicit ``DecodeOptions(temperature=3)`` decode, see tests/test_temperature.py), not
the uncalibrated one.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

import napari_colorize as nc
from widget_driver import PLUGIN, WAIT_MS


def test_widget_applies_the_stored_temperature(make_napari_viewer, qtbot, make_model, tmp_path):
    model = copy.deepcopy(make_model())
    model.config.decoding["temperature"] = 3.0
    path = str(nc.save_model(model, tmp_path / "hot.safetensors"))
    yy, xx = np.mgrid[0:96, 0:128]
    gray = (0.15 + 0.7 * (xx / 127) * (0.5 + 0.5 * np.sin(yy / 9.0) ** 2)).astype(np.float32)

    viewer = make_napari_viewer()
    viewer.add_image(gray, name="g", contrast_limits=(0.0, 1.0))
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Colorize")
    widget.model_source.value = "from file"
    widget.model_path.value = path
    widget.run_button.clicked()
    assert widget.is_running
    qtbot.waitUntil(lambda: not widget.is_running, timeout=WAIT_MS)

    rgb = np.asarray(viewer.layers["g colorized"].data, np.float64) / 255.0
    conf = np.asarray(viewer.layers["g chroma confidence"].data)
    calibrated = nc.colorize(gray, model=path, device="cpu")
    uncalibrated = nc.colorize(gray, model=path, device="cpu", calibrated=False)
    assert calibrated.info["decode"]["temperature"] == 3.0
    np.testing.assert_allclose(conf, calibrated.chroma_confidence, atol=1e-5)
    np.testing.assert_allclose(rgb, calibrated.rgb, atol=1 / 255 + 1e-6)  # shown as uint8
    assert conf.mean() < uncalibrated.chroma_confidence.mean() - 0.01
