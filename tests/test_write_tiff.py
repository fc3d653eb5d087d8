"""What the TIFF outputs record: axis names, pixel size and z step, for any reader to take.

Each file is checked twice, independently: its tags and OME metadata read with tifffile,
and the whole file read back with napari-colorize's own reader.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest
import tifffile

from napari_colorize.io import ColourInputWarning, read_image, tiff_memmaps

SHAPE = (3, 40, 50)  # three planes


def _write(path, shape, dtype, photometric, **spacing):
    values = (np.arange(np.prod(shape)).reshape(shape) % 200).astype(dtype)
    with tiff_memmaps({"a": (path, shape, dtype, photometric)}, **spacing) as maps:
        maps["a"][:] = values
    return values


def _read_back(path, rgb: bool):
    """napari-colorize's reader: an RGB file comes back gray, with a warning saying so."""
    if not rgb:
        return read_image(path)
    with pytest.warns(ColourInputWarning):
        return read_image(path)


def _ome_pixels(path) -> dict[str, str]:
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome
        root = ET.fromstring(tif.ome_metadata)
    return next(el.attrib for el in root.iter() if el.tag.endswith("Pixels"))


@pytest.mark.parametrize("dtype, photometric, extra", [("float32", "minisblack", ()), ("uint8", "rgb", (3,)),
                                                       ("float32", "rgb", (3,))],
                         ids=["confidence", "rgb-uint8", "rgb-float32"])
def test_a_z_stack_records_its_plane_spacing(tmp_path, dtype, photometric, extra):
    # 0.5 um pixels, planes 1.5 um apart: the file said neither z step nor axes, so readers showed it squashed.
    path = tmp_path / "out.tif"
    values = _write(path, SHAPE + extra, dtype, photometric, pixel_size=(0.5, 0.5), axes=["z"], z_step=1.5)
    with tifffile.TiffFile(path) as tif:
        assert tif.series[0].axes == "ZYX" + ("S" if extra else "")
        xres = tif.pages[0].tags["XResolution"].value  # the plain tag is still there, for tag-only readers
    assert xres[0] / xres[1] == pytest.approx(2e4)  # pixels per centimeter
    pixels = _ome_pixels(path)
    assert float(pixels["PhysicalSizeZ"]) == pytest.approx(1.5)
    assert float(pixels["PhysicalSizeX"]) == pytest.approx(0.5) and float(pixels["PhysicalSizeY"]) == pytest.approx(0.5)
    assert pixels.get("PhysicalSizeZUnit", "µm") == "µm"
    image = _read_back(path, bool(extra))  # the round trip
    assert image.axes == ["z"] and image.z_step == pytest.approx(1.5)
    assert image.pixel_size == pytest.approx((0.5, 0.5)) and image.unit == "micrometer"
    assert image.scale() == pytest.approx([1.5, 0.5, 0.5])
    if not extra:
        np.testing.assert_array_equal(np.asarray(image.data), values)
    np.testing.assert_array_equal(tifffile.imread(path), values)


@pytest.mark.parametrize("names, axes, z_step", [(["t"], "TYX", None), (["c"], "CYX", None),
                                                 (["c", "z"], "CZYX", 1.5), (["t", "z"], "TZYX", 1.5)])
def test_only_a_z_axis_gets_the_spacing(tmp_path, names, axes, z_step):
    path = tmp_path / "out.tif"
    shape = (2,) * (len(names) - 1) + SHAPE
    _write(path, shape, "float32", "minisblack", pixel_size=(0.5, 0.5), axes=names, z_step=1.5)
    with tifffile.TiffFile(path) as tif:
        assert tif.series[0].axes == axes and tif.series[0].shape == shape
    pixels = _ome_pixels(path)
    assert ("PhysicalSizeZ" in pixels) == (z_step is not None)
    image = read_image(path)
    assert image.axes == names and image.z_step == z_step
    assert image.data.shape == shape


def test_a_time_series_rgb_names_its_axes(tmp_path):
    path = tmp_path / "out.tif"
    _write(path, (2,) + SHAPE + (3,), "uint8", "rgb", pixel_size=(0.5, 0.5), axes=["t", "z"], z_step=2.0)
    with tifffile.TiffFile(path) as tif:
        assert tif.series[0].axes == "TZYXS"
    image = _read_back(path, rgb=True)
    assert image.axes == ["t", "z"] and image.z_step == pytest.approx(2.0) and image.data.shape == (2,) + SHAPE


@pytest.mark.parametrize("spacing", [{}, {"pixel_size": (0.5, 0.5)}, {"pixel_size": (0.5, 0.5), "axes": None},
                                     {"axes": ["z"], "z_step": 1.5}, {"axes": ["q", "z"], "z_step": 1.5}],
                         ids=["nothing", "pixel-size", "no-names", "wrong-count", "unknown-name"])
def test_unnamed_axes_stay_a_plain_tiff(tmp_path, spacing):
    # Leading axes without (the right number of) names are not guessed: tifffile would call two of them ZC.
    path = tmp_path / "out.tif"
    values = _write(path, (2,) + SHAPE, "float32", "minisblack", **spacing)
    with tifffile.TiffFile(path) as tif:
        assert not tif.is_ome and not tif.is_imagej
        np.testing.assert_array_equal(tif.asarray(), values)
    image = read_image(path)
    assert image.axes is None and image.z_step is None
    assert image.pixel_size == (pytest.approx((0.5, 0.5)) if spacing.get("pixel_size") else None)


def test_axes_without_a_pixel_size_are_named_without_sizes(tmp_path):
    path = tmp_path / "out.tif"
    _write(path, SHAPE, "float32", "minisblack", axes=["z"])
    pixels = _ome_pixels(path)
    assert not any(k.startswith("PhysicalSize") for k in pixels)
    image = read_image(path)
    assert image.axes == ["z"] and image.pixel_size is None and image.z_step is None
