"""Colour reads for training and evaluation: uint16 data of 10-14-bit cameras, ImageJ composites.

Expected values are computed by hand from the written samples: ``round(v / (2**b - 1) * 255)``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import tifffile
from skimage import data

from napari_colorize.inputs import InputScalingWarning
from napari_colorize.io import colour, is_gray, read_rgb, rgb_to_unit
from napari_colorize.training.data import load_image_set


def _pixels(*rgb: tuple[int, int, int]) -> np.ndarray:
    """A 1 x N uint16 RGB image of the given pixels."""
    return np.array([rgb], dtype=np.uint16)


@pytest.mark.parametrize(("pixels", "bits", "expected"), [
    # 8-bit data widened to uint16 keep their values.
    (((255, 128, 0), (10, 20, 30)), 8, ((255, 128, 0), (10, 20, 30))),
    # 10-bit (max 971, the reviewer's H&E): 971/1023*255 = 242.04, 512/1023*255 = 127.62, 100/1023*255 = 24.93.
    (((971, 512, 100), (0, 0, 0)), 10, ((242, 128, 25), (0, 0, 0))),
    # 12-bit: 4080/4095*255 = 254.07, 2040/4095*255 = 127.03; 1024 is above 10 bits.
    (((4080, 2040, 0), (1024, 1024, 1024)), 12, ((254, 127, 0), (64, 64, 64))),
    # 14-bit: 16383 -> 255, 8192/16383*255 = 127.51, 1000/16383*255 = 15.56.
    (((16383, 8192, 1000), (0, 0, 0)), 14, ((255, 128, 16), (0, 0, 0))),
    # Above 14 bits: the whole uint16 range (20000/65535*255 = 77.82).
    (((16384, 20000, 0), (0, 0, 0)), None, ((64, 78, 0), (0, 0, 0))),
])
def test_uint16_colour_is_scaled_by_its_camera_depth(tmp_path, pixels, bits, expected):
    arr = _pixels(*pixels)
    tifffile.imwrite(tmp_path / "cam.tif", arr, photometric="rgb")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rgb = read_rgb(tmp_path / "cam.tif")
    np.testing.assert_array_equal(rgb, np.array([expected], np.uint8))
    notes = [str(w.message) for w in caught if issubclass(w.category, InputScalingWarning)]
    if bits is None:
        assert not notes
    else:  # one line naming the file and the depth assumed
        assert len(notes) == 1 and "cam.tif" in notes[0] and f"{bits}-bit" in notes[0] and "\n" not in notes[0]
    # In-memory arrays (evaluate, references) follow the same rule.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.testing.assert_allclose(rgb_to_unit(arr, "a") * 255, np.array([expected], float), atol=0.5)
    assert colour.camera_bits(arr) == bits


def test_pale_10bit_colour_is_not_quantised_to_gray_but_12bit_noise_is_gray(tmp_path):
    # Chroma 20 of 1023 = 4.98 of 255, above GRAY_CHROMA (4 of 255); scaled by 65535 it was 0.08
    # of 255, rounded to 0: gray.
    pale = np.full((40, 40, 3), 600, np.uint16)
    pale[..., 0] += 20
    pale[0, 0] = 1023
    tifffile.imwrite(tmp_path / "pale10.tif", pale, photometric="rgb")
    # Sensor noise of +-2 of 4095 between channels: 0.12 of 255, gray after scaling too.
    noise = np.random.default_rng(0).integers(-2, 3, (40, 40, 3))
    gray12 = (np.full((40, 40, 3), 3000) + noise).astype(np.uint16)
    tifffile.imwrite(tmp_path / "gray12.tif", gray12, photometric="rgb")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InputScalingWarning)
        rgb = read_rgb(tmp_path / "pale10.tif")
        assert rgb[1, 1].tolist() == [155, 150, 150]  # 620/1023*255 = 154.55, 600/1023*255 = 149.56
        assert not is_gray(rgb)
        assert is_gray(read_rgb(tmp_path / "gray12.tif"))
    # Training keeps the colour one, reporting the depth once on one line, and skips the gray one.
    messages: list[str] = []
    images = load_image_set([tmp_path / "pale10.tif", tmp_path / "gray12.tif"], max_side=None, report=messages.append)
    assert [p.name for p in images.paths] == ["pale10.tif"] and len(images.skipped["gray"]) == 1
    assert len(messages) == 2 and "pale10.tif" in messages[0] and "10-bit" in messages[0] and "gray" in messages[1]


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()[::4, ::4].copy()  # (128, 128, 3) uint8


@pytest.mark.parametrize("channels", [3, 4])
def test_imagej_composite_channels_are_rgb(tmp_path, astronaut, channels):
    cyx = np.moveaxis(astronaut, -1, 0)
    if channels == 4:  # an alpha (or fourth) channel is dropped
        cyx = np.concatenate([cyx, np.full((1, *cyx.shape[1:]), 255, np.uint8)])
    tifffile.imwrite(tmp_path / "cyx.tif", cyx, imagej=True, metadata={"axes": "CYX", "mode": "composite"})
    np.testing.assert_array_equal(read_rgb(tmp_path / "cyx.tif"), astronaut)
    # A z-stack of composites gives its first plane.
    zcyx = np.stack([cyx, 255 - cyx])
    tifffile.imwrite(tmp_path / "zcyx.tif", zcyx, imagej=True, metadata={"axes": "ZCYX", "mode": "composite"})
    np.testing.assert_array_equal(read_rgb(tmp_path / "zcyx.tif"), astronaut)


def test_imagej_composite_of_12bit_channels_and_of_two_channels(tmp_path, astronaut):
    # v * 4095 / 255, rounded: 12-bit samples whose scaling by 4095 gives v back (error <= 0.03 of 255).
    cyx = np.round(np.moveaxis(astronaut, -1, 0) * (4095 / 255)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "c12.tif", cyx, imagej=True, metadata={"axes": "CYX", "mode": "composite"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InputScalingWarning)
        rgb = read_rgb(tmp_path / "c12.tif")
    np.testing.assert_array_equal(rgb, astronaut)
    # Two channels are no colour image: the first channel, as gray.
    tifffile.imwrite(tmp_path / "c2.tif", np.moveaxis(astronaut, -1, 0)[:2], imagej=True,
                     metadata={"axes": "CYX", "mode": "composite"})
    np.testing.assert_array_equal(read_rgb(tmp_path / "c2.tif"), np.dstack([astronaut[..., 0]] * 3))


def _png16(path, values: np.ndarray, orientation: int | None = None) -> None:
    """A 16-bit PNG written by hand (signature, IHDR, [eXIf,] one IDAT, IEND), independent of any reader."""
    import struct
    import zlib

    arr = np.asarray(values, ">u2")
    h, w, c = arr.shape
    kind = {2: 4, 3: 2, 4: 6}[c]  # PNG colour types: gray + alpha, RGB, RGBA

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    rows = b"".join(b"\0" + arr[y].tobytes() for y in range(h))
    # eXIf: a big-endian TIFF header and one IFD holding the orientation tag (0x0112, SHORT, 1 value).
    exif = b"" if orientation is None else chunk(b"eXIf", b"MM\0*" + struct.pack(">IHHHIHHI", 8, 1, 0x0112, 3, 1,
                                                                                 orientation, 0, 0))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, kind, 0, 0, 0))
                     + exif + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def test_a_16_bit_colour_png_is_read_at_full_depth_like_the_same_tiff(tmp_path):
    # Pillow keeps only the high byte of a 48-bit PNG: 12-bit values up to 4095 came back as 0-15,
    # a black image, with no warning.
    rgb = data.astronaut()[::4, ::4].astype(np.uint16) * 16  # 12-bit camera data
    _png16(tmp_path / "a.png", rgb)
    tifffile.imwrite(tmp_path / "a.tif", rgb)
    with pytest.warns(InputScalingWarning, match="12-bit"):
        png = read_rgb(tmp_path / "a.png")
    with pytest.warns(InputScalingWarning, match="12-bit"):
        tif = read_rgb(tmp_path / "a.tif")
    np.testing.assert_array_equal(png, tif)
    assert png.max() > 240


def test_a_16_bit_colour_png_is_read_as_gray_at_full_depth(tmp_path):
    from napari_colorize.io import ReadWarning, read_image

    rgb = np.random.default_rng(0).integers(0, 65536, (20, 30, 3)).astype(np.uint16)
    _png16(tmp_path / "rgb.png", rgb)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.testing.assert_array_equal(read_image(tmp_path / "rgb.png").data, read_image(tmp_path / "rgb.tif").data)
    gray_alpha = np.stack([rgb[..., 0], np.full((20, 30), 65535, np.uint16)], axis=-1)
    gray_alpha[0, 0, 1] = 0  # one transparent pixel: the alpha is dropped with a warning
    _png16(tmp_path / "la.png", gray_alpha)
    with pytest.warns(ReadWarning, match="transparen"):
        image = read_image(tmp_path / "la.png")
    assert image.data.dtype == np.uint16
    np.testing.assert_array_equal(image.data, rgb[..., 0])


def test_a_16_bit_colour_png_is_turned_upright_at_full_depth(tmp_path):
    from napari_colorize.io import read_image

    rgb = np.random.default_rng(1).integers(0, 65536, (20, 30, 3)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "up.tif", rgb, photometric="rgb")  # full depth, no orientation
    _png16(tmp_path / "turned.png", rgb, orientation=6)  # shown turned a quarter clockwise
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        up, turned = read_image(tmp_path / "up.tif").data, read_image(tmp_path / "turned.png").data
    np.testing.assert_array_equal(turned, np.rot90(up, -1))  # Pillow's 8 bits a sample differ
