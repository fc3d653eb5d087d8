"""The shipped sample images: what they are, that they are small, and reproducible."""

from __future__ import annotations

import importlib.util
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from napari_colorize._qt import _sample_data

ROOT = Path(__file__).resolve().parents[2]


def _make_samples():
    spec = importlib.util.spec_from_file_location("make_samples", ROOT / "scripts" / "make_samples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("key", sorted(_sample_data.SAMPLES))
def test_samples_are_single_channel_layer_tuples(key):
    (data, kwargs, kind), = _sample_data.SAMPLES[key]()
    assert kind == "image" and kwargs["name"]
    assert data.ndim in (2, 3) and min(data.shape[-2:]) >= 256  # gray, no colour axis, above the model minimum
    assert np.issubdtype(data.dtype, np.unsignedinteger)
    assert data.std() > 0.05 * (int(data.max()) - int(data.min()))  # not a blank image


def test_photograph_is_the_cameraman():
    from skimage import data

    (gray, _, _), = _sample_data.photograph()
    np.testing.assert_array_equal(gray, data.camera())  # gray from the start, not in the training corpus


def test_microscopy_stack_carries_its_geometry():
    (stack, kwargs, _), = _sample_data.microscopy_stack()
    assert stack.shape == (10, 256, 256) and stack.dtype == np.uint16
    assert kwargs["scale"] == (0.5, 0.214, 0.214) and kwargs["axis_labels"] == ("z", "y", "x")
    lo, hi = kwargs["contrast_limits"]
    assert lo == stack.min() and hi == stack.max() and hi < 4000  # camera counts, far below 65535
    # A focal series: the middle planes are the sharpest (largest gradient energy).
    sharpness = [np.abs(np.diff(p.astype(float), axis=-1)).mean() for p in stack]
    assert int(np.argmax(sharpness)) in (4, 5)


def test_shipped_files_are_small_and_regenerate_exactly():
    folder = resources.files("napari_colorize") / "data"
    sizes = {p.name: p.stat().st_size for p in Path(str(folder)).iterdir() if p.is_file()}
    assert set(sizes) >= {"photograph.png", "archival_scan.png", "microscopy_stack.tif"}
    assert sum(sizes.values()) < 1.5 * 2 ** 20
    make = _make_samples()
    np.testing.assert_array_equal(make.make_archival_scan(), _sample_data.archival_scan()[0][0])
    np.testing.assert_array_equal(make.make_microscopy_stack(), _sample_data.microscopy_stack()[0][0])
    assert make.STACK_SPACING_UM == _sample_data.STACK_SPACING_UM
