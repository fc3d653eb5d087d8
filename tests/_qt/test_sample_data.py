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
    # The first layer of every sample is the gray image to colour; others (a colour
    # reference) are RGB and say so.
    (data, kwargs, kind), *extra = _sample_data.SAMPLES[key]()
    assert kind == "image" and kwargs["name"] and not kwargs.get("rgb", False)
    assert data.ndim in (2, 3) and min(data.shape[-2:]) >= 256  # gray, no colour axis, above the model minimum
    assert np.issubdtype(data.dtype, np.unsignedinteger)
    assert data.std() > 0.05 * (int(data.max()) - int(data.min()))  # not a blank image
    for extra_data, extra_kwargs, extra_kind in extra:
        assert extra_kind == "image" and extra_kwargs["name"] and extra_kwargs.get("rgb") is True
        assert extra_data.ndim == 3 and extra_data.shape[-1] == 3


def test_ihc_slide_is_a_gray_half_and_its_colour_reference():
    from skimage import data

    from napari_colorize.color import rgb_to_gray

    (gray, gray_kwargs, _), (reference, ref_kwargs, _) = _sample_data.ihc_slide()
    assert gray_kwargs["name"] == "IHC slide (gray)" and "rgb" not in gray_kwargs
    assert ref_kwargs["name"] == "IHC reference (colour)" and ref_kwargs["rgb"] is True
    assert gray.shape == (512, 256) and gray.dtype == np.uint8
    assert reference.shape == (512, 256, 3) and reference.dtype == np.uint8
    # Side by side as on the slide: the gray half starts where the reference ends.
    assert gray_kwargs["translate"] == (0.0, 256.0) and "translate" not in ref_kwargs
    ihc = data.immunohistochemistry()
    np.testing.assert_array_equal(reference, ihc[:, :256])  # the left half, untouched
    # The gray is the library's lightness of the right half (so a colorization keeps it).
    expected = np.round(rgb_to_gray(ihc[:, 256:]).astype(np.float64) * 255.0)
    np.testing.assert_array_equal(gray, expected)
    # The reference is colour (DAB brown, hematoxylin blue), not a gray image in RGB.
    channels = reference.astype(np.int16)
    assert np.abs(channels[..., 0] - channels[..., 2]).mean() > 10


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
    assert set(sizes) >= {"photograph.png", "archival_scan.png", "microscopy_stack.tif", "ihc_slide_gray.png",
                          "ihc_reference.png"}
    assert sum(sizes.values()) < 1.5 * 2 ** 20
    make = _make_samples()
    np.testing.assert_array_equal(make.make_archival_scan(), _sample_data.archival_scan()[0][0])
    np.testing.assert_array_equal(make.make_microscopy_stack(), _sample_data.microscopy_stack()[0][0])
    (gray, _, _), (reference, _, _) = _sample_data.ihc_slide()
    made_gray, made_reference = make.make_ihc_pair()
    np.testing.assert_array_equal(made_gray, gray)
    np.testing.assert_array_equal(made_reference, reference)
    assert make.STACK_SPACING_UM == _sample_data.STACK_SPACING_UM
