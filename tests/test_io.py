"""Reading images as a user meets it: real files written by Pillow, tifffile and imageio, read back.

Each case is checked against an independent reference: the array that was written,
Pillow's own colour conversion, or the TIFF specification's meaning of the tags.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
from PIL import Image as PILImage
from skimage import data

import napari_colorize.io.tiff as io_tiff
from napari_colorize import io
from napari_colorize.inputs import to_unit_float
from napari_colorize.io import ColourInputWarning, ImageReadError, ReadWarning, find_inputs, read_image, scan_images


@pytest.fixture(scope="module")
def cam() -> np.ndarray:
    return data.camera()[::2, ::2].copy()  # (256, 256) uint8


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()[::2, ::2].copy()  # (256, 256, 3) uint8


def _quiet_read(path, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning expected
        return read_image(path, **kwargs)


# ----------------------------------------------------------------------------- unreadable files

@pytest.mark.parametrize("name", ["scan.png", "scan.tif", "scan.jpg"])
def test_zero_byte_file_says_it_is_empty(tmp_path, name):
    (tmp_path / name).touch()
    with pytest.raises(ImageReadError, match=rf"^{name} is empty \(0 bytes\).*copy or export it again"):
        read_image(tmp_path / name)


def test_foreign_file_names_the_file_and_what_to_do(tmp_path):
    (tmp_path / "notes.png").write_text("meeting notes, not a picture")
    with pytest.raises(ValueError, match=r"^cannot read notes\.png: not a PNG, JPEG, TIFF.*convert it") as info:
        read_image(tmp_path / "notes.png")
    assert "\n" not in str(info.value) and "backend" not in str(info.value)


def test_truncated_file_names_the_file_and_what_to_do(tmp_path, cam):
    iio.imwrite(tmp_path / "full.png", cam)
    (tmp_path / "cut.png").write_bytes((tmp_path / "full.png").read_bytes()[:2000])
    with pytest.raises(ValueError, match=r"^cannot read cut\.png: .*truncated.*save it again") as info:
        read_image(tmp_path / "cut.png")
    assert "\n" not in str(info.value)


def test_a_folder_is_not_an_image(tmp_path):
    (tmp_path / "scans").mkdir()
    with pytest.raises(ValueError, match=r"scans/ is a folder, not an image file or zarr store"):
        read_image(tmp_path / "scans")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_image(tmp_path / "missing.png")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_permissions_are_named(tmp_path, cam):
    iio.imwrite(tmp_path / "locked.png", cam)
    (tmp_path / "locked.png").chmod(0)
    with pytest.raises(ValueError, match=r"^cannot read locked\.png: permission denied"):
        read_image(tmp_path / "locked.png")


def test_files_are_read_by_content_not_name(tmp_path, cam):
    PILImage.fromarray(cam).save(tmp_path / "really_a_png.tif", format="PNG")
    tifffile.imwrite(tmp_path / "really_a_tiff.png", cam)
    for name in ("really_a_png.tif", "really_a_tiff.png"):
        np.testing.assert_array_equal(_quiet_read(tmp_path / name).data, cam)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_named_pipe_is_refused_instead_of_waiting_forever(tmp_path):
    os.mkfifo(tmp_path / "stream.png")
    with pytest.raises(ValueError, match=r"stream\.png is not a regular file"):
        read_image(tmp_path / "stream.png")


def test_camera_orientation_is_applied(tmp_path, cam):
    picture = cam[:40, :60]
    im = PILImage.fromarray(picture)
    exif = im.getexif()
    exif[0x0112] = 6  # EXIF orientation 6: rotate 90 degrees clockwise to display
    im.save(tmp_path / "phone.png", exif=exif)
    np.testing.assert_array_equal(_quiet_read(tmp_path / "phone.png").data, np.rot90(picture, -1))


# ----------------------------------------------------------------------------- colour models

def test_cmyk_jpeg_is_converted_to_rgb_then_gray(tmp_path, astronaut):
    PILImage.fromarray(astronaut).convert("CMYK").save(tmp_path / "print.jpg", quality=95)
    with pytest.warns(ColourInputWarning, match="CMYK colour image; converting it to RGB, then to gray"):
        image = read_image(tmp_path / "print.jpg")
    truth = astronaut.astype(np.float32).mean(-1) / 255
    assert image.converted and image.colour_model == "CMYK" and image.data.shape == truth.shape
    assert np.abs(image.data - truth).mean() < 0.02  # JPEG loss only; C,M,Y averaged would be 1 - truth
    assert np.corrcoef(image.data.ravel(), truth.ravel())[0, 1] > 0.99
    with pytest.raises(ValueError, match="print.jpg is a CMYK colour image"):
        read_image(tmp_path / "print.jpg", strict=True)


def test_cmyk_tiff_matches_pillows_conversion(tmp_path, astronaut):
    cmyk = PILImage.fromarray(astronaut).convert("CMYK")
    tifffile.imwrite(tmp_path / "print.tif", np.asarray(cmyk), photometric="separated")
    with pytest.warns(ColourInputWarning, match="CMYK"):
        image = read_image(tmp_path / "print.tif")
    reference = np.asarray(cmyk.convert("RGB"), np.float32).mean(-1) / 255  # Pillow's own CMYK -> RGB
    np.testing.assert_allclose(image.data, reference, atol=1.5 / 255)


def test_gray_alpha_png_drops_alpha_and_keeps_gray(tmp_path, cam):
    opaque = np.dstack([cam, np.full_like(cam, 255)])
    PILImage.fromarray(opaque, "LA").save(tmp_path / "opaque.png")
    np.testing.assert_array_equal(_quiet_read(tmp_path / "opaque.png").data, cam)
    see_through = np.dstack([cam, (np.arange(cam.size) % 256).reshape(cam.shape).astype(np.uint8)])
    PILImage.fromarray(see_through, "LA").save(tmp_path / "faded.png")
    with pytest.warns(ReadWarning, match="faded.png has transparent pixels; the alpha channel is ignored"):
        image = read_image(tmp_path / "faded.png")
    np.testing.assert_array_equal(image.data, cam)  # stored values, not composited
    assert not image.converted


def test_gray_alpha_tiff_drops_alpha(tmp_path, cam):
    tifffile.imwrite(tmp_path / "ga.tif", np.dstack([cam, np.full_like(cam, 255)]), photometric="minisblack",
                     extrasamples=["unassalpha"])
    np.testing.assert_array_equal(_quiet_read(tmp_path / "ga.tif").data, cam)


def test_signed_gray_alpha_tiff_drops_alpha(tmp_path, cam):
    # A signed type's opaque alpha is its maximum (no "min-is-white" refusal for int16).
    gray = cam.astype(np.int16) * 100
    tifffile.imwrite(tmp_path / "ga16.tif", np.dstack([gray, np.full_like(gray, 32767)]), photometric="minisblack",
                     extrasamples=["unassalpha"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ReadWarning)  # opaque: nothing to warn about
        np.testing.assert_array_equal(read_image(tmp_path / "ga16.tif").data, gray)


def test_rgba_png_warns_only_when_transparent(tmp_path, astronaut):
    alpha = np.full(astronaut.shape[:2], 255, np.uint8)
    iio.imwrite(tmp_path / "solid.png", np.dstack([astronaut, alpha]))
    alpha[:10] = 0
    iio.imwrite(tmp_path / "holes.png", np.dstack([astronaut, alpha]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        solid = read_image(tmp_path / "solid.png")
        holes = read_image(tmp_path / "holes.png")
    messages = [str(w.message) for w in caught]
    assert sum("transparent" in m for m in messages) == 1 and any("holes.png has transparent" in m for m in messages)
    np.testing.assert_allclose(solid.data, astronaut.mean(-1) / 255, atol=1e-6)
    np.testing.assert_array_equal(holes.data, solid.data)


def test_rgba_tiff_warns_only_when_transparent(tmp_path, astronaut):
    alpha = np.full(astronaut.shape[:2], 255, np.uint8)
    rgba = {"photometric": "rgb", "extrasamples": ["unassalpha"]}
    tifffile.imwrite(tmp_path / "solid.tif", np.dstack([astronaut, alpha]), **rgba)
    alpha[5:9] = 3
    tifffile.imwrite(tmp_path / "holes.tif", np.dstack([astronaut, alpha]), **rgba)
    with pytest.warns(ColourInputWarning):
        solid = read_image(tmp_path / "solid.tif")
    with pytest.warns(ReadWarning, match="holes.tif has transparent pixels"):
        holes = read_image(tmp_path / "holes.tif")
    np.testing.assert_allclose(solid.data, astronaut.mean(-1) / 255, atol=1e-6)
    np.testing.assert_array_equal(holes.data, solid.data)


def test_images_beyond_pillows_safety_limit_point_to_tiff(tmp_path, cam, monkeypatch):
    iio.imwrite(tmp_path / "huge.png", cam)
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", cam.size // 4)  # as if it had billions of pixels
    with pytest.raises(ValueError, match=r"^cannot read huge\.png: .*save such large images as TIFF"):
        read_image(tmp_path / "huge.png")


def test_a_large_png_is_noted_as_read_whole_not_as_an_attack(tmp_path, cam, monkeypatch):
    # Pillow's own words for an image above its limit: "could be decompression bomb DOS attack".
    iio.imwrite(tmp_path / "scan.png", cam)
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", cam.size * 2 // 3)  # above the limit, below twice it
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image = read_image(tmp_path / "scan.png")
    np.testing.assert_array_equal(image.data, cam)
    messages = [str(w.message) for w in caught]
    assert not any("decompression bomb" in m for m in messages), messages
    assert any(m.startswith("scan.png has 0 megapixels: as a PNG file it is read whole into memory") and
               "saved as TIFF, it would be read in tiles at any size" in m for m in messages), messages


def test_palette_files_are_looked_up(tmp_path, cam):
    PILImage.fromarray(cam).convert("P").save(tmp_path / "gray_palette.png")  # a gray palette is gray
    np.testing.assert_array_equal(_quiet_read(tmp_path / "gray_palette.png").data, cam)
    colormap = np.stack([65535 - np.arange(256) * 257, np.arange(256) * 257, np.zeros(256)]).astype(np.uint16)
    tifffile.imwrite(tmp_path / "pal.tif", cam, photometric="palette", colormap=colormap)
    with pytest.warns(ColourInputWarning):
        image = read_image(tmp_path / "pal.tif")
    rgb = colormap.T[cam] / 65535.0  # the TIFF meaning: each index looks up (R, G, B)
    np.testing.assert_allclose(image.data, rgb.mean(-1), atol=1e-6)


def test_min_is_white_tiff_is_inverted(tmp_path, cam):
    tifffile.imwrite(tmp_path / "fax.tif", 255 - cam, photometric="miniswhite")
    np.testing.assert_array_equal(_quiet_read(tmp_path / "fax.tif").data, cam)
    page = cam > 128
    tifffile.imwrite(tmp_path / "bilevel.tif", ~page, photometric="miniswhite")  # 1 = black on paper
    np.testing.assert_array_equal(_quiet_read(tmp_path / "bilevel.tif").data, page)


def test_a_pillow_palette_tiff_is_read_as_the_8_bit_colours_it_holds(tmp_path):
    # Its 16-bit colour map (each 8-bit value x 256) made colorize note "more than 8 bits per pixel".
    PILImage.fromarray(data.astronaut()[:96, :128]).quantize(32).save(tmp_path / "pal.tif")
    with pytest.warns(ColourInputWarning):
        image = read_image(tmp_path / "pal.tif")
    assert image.bits == 8 and image.colour_model == "palette"
    shown = np.asarray(PILImage.open(tmp_path / "pal.tif").convert("RGB"), float)
    np.testing.assert_allclose(image.data, shown.mean(-1) / 255, atol=1e-6)


@pytest.mark.parametrize("bits", [2, 4])
def test_low_bit_tiffs_fill_the_byte_range_as_pillow_reads_them(tmp_path, cam, bits):
    # A user test: a 4-bit scan was read as 0..15 of 255 and coloured nearly black, exit 0.
    stored = cam >> (8 - bits)
    tifffile.imwrite(tmp_path / "scan.tif", stored, photometric="minisblack", bitspersample=bits)
    tifffile.imwrite(tmp_path / "fax.tif", stored, photometric="miniswhite", bitspersample=bits)
    expected = np.round(stored.astype(float) * 255 / (2**bits - 1)).astype(np.uint8)  # 0..3 -> 0, 85, 170, 255
    read = _quiet_read(tmp_path / "scan.tif").data
    np.testing.assert_array_equal(read, expected)
    np.testing.assert_array_equal(read, np.asarray(PILImage.open(tmp_path / "scan.tif")))
    np.testing.assert_array_equal(_quiet_read(tmp_path / "fax.tif").data, 255 - expected)
    # A palette's indices are looked up, never stretched (a gray 4-bit palette was stretched twice, wrapped).
    levels = np.minimum(np.arange(256) * (255 // (2**bits - 1)), 255)  # tifffile takes a map of 256
    tifffile.imwrite(tmp_path / "pal.tif", stored, photometric="palette", bitspersample=bits,
                     colormap=np.stack([levels * 257] * 3).astype(np.uint16))
    np.testing.assert_array_equal(_quiet_read(tmp_path / "pal.tif").data, levels[stored])
    np.testing.assert_array_equal(_quiet_read(tmp_path / "pal.tif").data,
                                  np.asarray(PILImage.open(tmp_path / "pal.tif").convert("L")))


def test_gray_saved_as_rgb_is_gray_without_conversion(tmp_path, cam):
    iio.imwrite(tmp_path / "gray_rgb.png", np.dstack([cam] * 3))
    image = _quiet_read(tmp_path / "gray_rgb.png", strict=True)
    np.testing.assert_array_equal(image.data, cam)
    assert not image.converted


# ----------------------------------------------------------------------------- TIFF series and stacks

def test_tiff_series_of_different_shapes_are_refused(tmp_path, cam):
    with tifffile.TiffWriter(tmp_path / "mixed.tif") as tif:
        tif.write(cam)
        tif.write(cam[:100, :120])
        tif.write(cam)
    with pytest.raises(ValueError, match=r"mixed\.tif holds 3 images \(TIFF series\) of different shapes.*"
                                         r"\(256, 256\) uint8, \(100, 120\) uint8.*split it"):
        read_image(tmp_path / "mixed.tif")


def test_tiff_series_of_one_shape_are_read_as_a_stack(tmp_path, cam):
    planes = [cam, 255 - cam, cam // 2]
    with tifffile.TiffWriter(tmp_path / "series.tif") as tif:
        for plane in planes:
            tif.write(plane)
    image = _quiet_read(tmp_path / "series.tif")
    np.testing.assert_array_equal(image.data, np.stack(planes))


def test_lazy_tiff_series_stack(tmp_path, cam, monkeypatch):
    planes = [cam, 255 - cam]
    with tifffile.TiffWriter(tmp_path / "big.tif") as tif:
        for plane in planes:
            tif.write(plane, tile=(64, 64))
    monkeypatch.setattr(io_tiff, "LAZY_TIFF_BYTES", 1000)
    image = _quiet_read(tmp_path / "big.tif")
    assert hasattr(image.data, "dask")
    np.testing.assert_array_equal(image.data.compute(), np.stack(planes))


def test_lazy_tiff_closes_a_rewritten_or_crowded_file(tmp_path, cam, monkeypatch):
    monkeypatch.setattr(io_tiff, "LAZY_TIFF_BYTES", 1000)
    path = tmp_path / "big dir" / "big.tif"
    path.parent.mkdir()
    tifffile.imwrite(path, cam, tile=(64, 64))
    first = _quiet_read(path).data
    np.testing.assert_array_equal(first.compute(scheduler="threads"), cam)
    (old,) = [entry for key, entry in io_tiff._OPEN.items() if key[0] == str(path.resolve())]
    tifffile.imwrite(path, 255 - cam, tile=(64, 64))
    os.utime(path, ns=(1, 1))  # a new stamp even where the clock is coarse
    np.testing.assert_array_equal(_quiet_read(path).data.compute(), 255 - cam)
    assert old.file.filehandle.closed  # the replaced file is not held open
    assert [key[0] for key in io_tiff._OPEN].count(str(path.resolve())) == 1
    monkeypatch.setattr(io_tiff, "MAX_OPEN_TIFFS", 2)
    for i in range(3):
        tifffile.imwrite(tmp_path / f"{i}.tif", cam, tile=(64, 64))
        _quiet_read(tmp_path / f"{i}.tif").data.compute()
    assert len(io_tiff._OPEN) == 2
    with tifffile.TiffWriter(tmp_path / "series.tif") as tif:  # two series of one file stay open together
        for plane in (cam, 255 - cam):
            tif.write(plane, tile=(64, 64))
    _quiet_read(tmp_path / "series.tif").data.compute(scheduler="threads")
    assert [key[0] for key in io_tiff._OPEN].count(str((tmp_path / "series.tif").resolve())) == 2
    held = list(io_tiff._OPEN.values())
    io_tiff.close_lazy_tiffs()
    assert not io_tiff._OPEN and all(entry.file.filehandle.closed for entry in held)


def test_reduced_resolution_preview_is_not_a_series(tmp_path, cam):
    with tifffile.TiffWriter(tmp_path / "scan.tif") as tif:
        tif.write(cam)
        tif.write(cam[::8, ::8], subfiletype=1)  # thumbnail
    np.testing.assert_array_equal(_quiet_read(tmp_path / "scan.tif").data, cam)


def test_animated_png_frames_are_a_stack(tmp_path, cam):
    frames = [PILImage.fromarray(cam), PILImage.fromarray(255 - cam)]
    frames[0].save(tmp_path / "anim.png", save_all=True, append_images=frames[1:])
    np.testing.assert_array_equal(_quiet_read(tmp_path / "anim.png").data, np.stack([cam, 255 - cam]))


# ----------------------------------------------------------------------------- wide integer files

def test_int32_tiff_keeps_its_content(tmp_path, cam):
    tifffile.imwrite(tmp_path / "counts.tif", cam.astype(np.int32) * 16)  # 0-4080 in int32
    image = _quiet_read(tmp_path / "counts.tif")
    assert image.data.dtype == np.int32  # read as stored; scaled when coloured
    with pytest.warns(UserWarning, match=r"int32 image: scaling its data range \[0, 4080\] to \[0, 1\]"):
        gray = to_unit_float(image.data)
    np.testing.assert_allclose(gray, cam / 255.0, atol=1e-6)


def test_int32_rgb_tiff_is_converted_by_its_data_range(tmp_path, astronaut):
    tifffile.imwrite(tmp_path / "rgb32.tif", astronaut.astype(np.int32) * 100, photometric="rgb")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        image = read_image(tmp_path / "rgb32.tif")
    lo_hi = 100.0 * astronaut.max()
    np.testing.assert_allclose(image.data, astronaut.astype(np.float64).mean(-1) * 100 / lo_hi, atol=1e-5)


# ----------------------------------------------------------------------------- folders and suffixes

def test_one_suffix_list_and_walker_for_every_front_end(tmp_path, cam):
    root = tmp_path / "data"
    (root / "sub" / ".hidden").mkdir(parents=True)
    for name in ("a.png", "b.BMP", "sub/c.webp", "sub/d.tiff", ".e.png", "sub/.hidden/f.png"):
        PILImage.fromarray(np.dstack([cam] * 3)).save(root / name, format="TIFF" if "tif" in name else None)
    (root / "notes.txt").write_text("x")
    store = root / "sub" / "s.zarr"
    store.mkdir()
    (store / "zarr.json").write_text("{}")
    inputs, missing = find_inputs([str(root)])
    assert [p.relative_to(root.resolve()).as_posix() for p in inputs] == ["a.png", "b.BMP", "sub/s.zarr",
                                                                         "sub/c.webp", "sub/d.tiff"]
    assert missing == []
    assert [p.relative_to(root.resolve()).as_posix() for p in scan_images([root])] == \
        ["a.png", "b.BMP", "sub/c.webp", "sub/d.tiff"]  # no stores: training reads colour files
    from napari_colorize.training import data as training_data
    assert training_data.IMAGE_SUFFIXES is io.IMAGE_SUFFIXES and training_data.scan_images is io.scan_images
    assert training_data.read_rgb is io.read_rgb


def test_existing_names_with_brackets_are_taken_literally_not_as_globs(tmp_path, cam, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a[1]").mkdir()
    (tmp_path / "a1").mkdir()
    for name in ("scan[1].png", "scan1.png", "a[1]/y.png", "a1/z.png"):
        iio.imwrite(tmp_path / name, cam)

    def found(pattern: str) -> list[str]:
        inputs, missing = find_inputs([pattern])
        assert not missing, missing
        return [p.relative_to(tmp_path).as_posix() for p in inputs]

    assert found("scan[1].png") == ["scan[1].png"]  # the file, not the class [1] matching scan1.png
    assert found("a[1]") == ["a[1]/y.png"] and found("a[1]/*.png") == ["a[1]/y.png"]
    assert found("scan[0-9].png") == ["scan1.png"]  # a name that does not exist is still a glob
    from napari_colorize.cli_plan import plan_jobs

    jobs, _ = plan_jobs(["a[1]/*.png", "scan[1].png"], tmp_path / "out", None, ["rgb"])
    assert [j.targets["rgb"].relative_to(tmp_path / "out").as_posix() for j in jobs] == \
        ["y_colorized.png", "scan[1]_colorized.png"]


def test_linked_folders_are_followed_once_and_cycles_end(tmp_path, cam):
    names, ext = tmp_path / "names", tmp_path / "ext"
    names.mkdir()
    ext.mkdir()
    iio.imwrite(names / "a.png", cam)
    iio.imwrite(ext / "external.png", cam)
    (names / "extlink").symlink_to("../ext", target_is_directory=True)
    (names / "second").symlink_to("../ext", target_is_directory=True)  # one folder, linked twice
    (names / "loop").symlink_to(".", target_is_directory=True)  # the folder itself: a cycle
    (names / "extlink" / "back").symlink_to("../names", target_is_directory=True)  # a cycle through the link
    inputs, missing = find_inputs([str(names)])
    assert [p.relative_to(names).as_posix() for p in inputs] == ["a.png", "extlink/external.png"]
    assert not missing
    assert scan_images([names]) == [ext / "external.png", names / "a.png"]  # resolved, sorted
    from napari_colorize.cli_plan import plan_jobs

    jobs, _ = plan_jobs([str(names)], tmp_path / "out", None, ["rgb"])  # named through the link
    assert jobs[1].targets["rgb"] == tmp_path / "out" / "extlink" / "external_colorized.png"


def test_a_real_sub_folder_is_named_before_a_link_to_it(tmp_path, cam):
    (tmp_path / "d" / "real").mkdir(parents=True)
    iio.imwrite(tmp_path / "d" / "real" / "x.png", cam)
    (tmp_path / "d" / "0link").symlink_to("real", target_is_directory=True)  # sorts first
    inputs, _ = find_inputs([str(tmp_path / "d")])
    assert [p.relative_to(tmp_path / "d").as_posix() for p in inputs] == ["real/x.png"]
    # Also when the link is shallower than the real folder (reached first by a top-down walk).
    (tmp_path / "e" / "z" / "real").mkdir(parents=True)
    iio.imwrite(tmp_path / "e" / "z" / "real" / "x.png", cam)
    (tmp_path / "e" / "a_link").symlink_to("z/real", target_is_directory=True)
    inputs, _ = find_inputs([str(tmp_path / "e")])
    assert [p.relative_to(tmp_path / "e").as_posix() for p in inputs] == ["z/real/x.png"]
    # A link to a folder above the start leads back into it: nothing is walked twice.
    (tmp_path / "top" / "in" / "sub").mkdir(parents=True)
    iio.imwrite(tmp_path / "top" / "in" / "sub" / "x.png", cam)
    (tmp_path / "top" / "in" / "a_up").symlink_to("..", target_is_directory=True)
    inputs, _ = find_inputs([str(tmp_path / "top" / "in")])
    assert [p.relative_to(tmp_path / "top" / "in").as_posix() for p in inputs] == ["sub/x.png"]


@pytest.mark.parametrize("name,fmt,expected", [
    ("x.ome.tif", None, "x_colorized.tif"), ("x.OME.TIFF", None, "x_colorized.tif"),
    ("x.ome.tif", "png", "x_colorized.png"), ("x.ome.zarr", None, "x_colorized.zarr"),
    ("x.tif", None, "x_colorized.tif"), (".ome.tif", None, ".ome_colorized.tif"),
    ("home.tif", None, "home_colorized.tif")])
def test_ome_inputs_lose_the_double_suffix_in_output_names(tmp_path, name, fmt, expected):
    from napari_colorize.cli_inputs import _targets

    assert _targets(Path(name), fmt or ("zarr" if "zarr" in name else "tiff"), ["rgb"], tmp_path) \
        in ({"rgb": tmp_path / expected}, {"store": tmp_path / expected})


def test_outputs_carry_our_mark_and_other_files_do_not(tmp_path, cam):
    from napari_colorize.io import has_our_mark, tiff_memmaps, write_png

    write_png(tmp_path / "ours.png", cam)
    with tiff_memmaps({"t": (tmp_path / "ours.tif", cam.shape, "uint8", "minisblack")}) as maps:
        maps["t"][:] = cam
    with tiff_memmaps({"t": (tmp_path / "ours.ome.tif", (2, *cam.shape), "uint8", "minisblack")},
                      axes=["z"]) as maps:
        maps["t"][:] = cam
    assert all(has_our_mark(tmp_path / n) for n in ("ours.png", "ours.tif", "ours.ome.tif"))
    np.testing.assert_array_equal(iio.imread(tmp_path / "ours.png"), cam)
    iio.imwrite(tmp_path / "theirs.png", cam)
    tifffile.imwrite(tmp_path / "theirs.tif", cam)
    (tmp_path / "notes.png").write_text("my notes")
    (tmp_path / "torn.png").write_bytes((tmp_path / "ours.png").read_bytes()[:20])
    assert not any(has_our_mark(tmp_path / n) for n in ("theirs.png", "theirs.tif", "notes.png", "torn.png",
                                                        "missing.png"))


def test_read_rgb_reads_cmyk_and_min_is_white_correctly(tmp_path, astronaut, cam):
    PILImage.fromarray(astronaut).convert("CMYK").save(tmp_path / "print.jpg", quality=95)
    assert np.abs(io.read_rgb(tmp_path / "print.jpg").astype(float) - astronaut).mean() < 5
    tifffile.imwrite(tmp_path / "fax.tif", 255 - cam, photometric="miniswhite")
    np.testing.assert_array_equal(io.read_rgb(tmp_path / "fax.tif"), np.dstack([cam] * 3))


def test_evaluation_arrays_follow_the_same_integer_rules(astronaut):
    from napari_colorize.io import rgb_to_unit

    np.testing.assert_allclose(rgb_to_unit(astronaut.astype(np.int64), "a"), astronaut / astronaut.max(), atol=1e-6)
    np.testing.assert_allclose(rgb_to_unit(astronaut, "a"), astronaut / 255.0, atol=1e-6)
    bad = astronaut / 255.0
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        rgb_to_unit(bad, "a")
    with pytest.raises(ValueError, match=r"\(Y, X, 3\)"):
        rgb_to_unit(astronaut[..., 0], "a")


@pytest.mark.parametrize("planes", [2, 3, 4])
def test_read_rgb_of_a_gray_stack_is_its_first_plane(tmp_path, cam, planes):
    # 3 or 4 gray planes are not RGB(A): the file says it has no colour samples.
    stack = np.stack([np.roll(cam, 17 * i, axis=1) for i in range(planes)])
    tifffile.imwrite(tmp_path / "z.tif", stack, photometric="minisblack")
    np.testing.assert_array_equal(io.read_rgb(tmp_path / "z.tif"), np.dstack([cam] * 3))
    assert read_image(tmp_path / "z.tif").data.shape == stack.shape
    tifffile.imwrite(tmp_path / "rgb.tif", np.stack([np.dstack([cam, cam // 2, 255 - cam])] * planes))
    np.testing.assert_array_equal(io.read_rgb(tmp_path / "rgb.tif"), np.dstack([cam, cam // 2, 255 - cam]))


def test_a_scans_resolution_becomes_its_pixel_size(tmp_path):
    # 600 dpi is 25400 / 600 = 42.33 µm per pixel (PNG stores pixels per metre: 23622).
    gray = (data.camera()[:64, :80]).astype(np.uint8)
    PILImage.fromarray(gray).save(tmp_path / "scan.png", dpi=(600, 600))
    PILImage.fromarray(gray).save(tmp_path / "scan.jpg", dpi=(300, 150))
    PILImage.fromarray(gray).save(tmp_path / "plain.png")
    png, jpg = read_image(tmp_path / "scan.png"), read_image(tmp_path / "scan.jpg")
    np.testing.assert_allclose(png.pixel_size, (25400 / 600, 25400 / 600), rtol=1e-4)
    np.testing.assert_allclose(jpg.pixel_size, (25400 / 150, 25400 / 300))  # (y, x)
    assert png.unit == jpg.unit == "micrometer"
    assert read_image(tmp_path / "plain.png").pixel_size is None
    # A camera JPEG whose EXIF has no resolution: Pillow says 72 dpi, the file says nothing.
    exif = PILImage.Exif()
    exif[0x010F] = "camera maker"
    PILImage.fromarray(gray).save(tmp_path / "camera.jpg", exif=exif)
    assert read_image(tmp_path / "camera.jpg").pixel_size is None
    exif[0x011A], exif[0x011B] = 300, 300  # a resolution without its unit: inches, EXIF's default
    PILImage.fromarray(gray).save(tmp_path / "camera.jpg", exif=exif)
    np.testing.assert_allclose(read_image(tmp_path / "camera.jpg").pixel_size, (25400 / 300,) * 2)
    exif[0x0128] = 1  # "no absolute unit": no pixel size
    PILImage.fromarray(gray).save(tmp_path / "camera.jpg", exif=exif)
    assert read_image(tmp_path / "camera.jpg").pixel_size is None


def test_a_tiff_pixel_size_of_zero_is_no_pixel_size(tmp_path):
    # An unset OME field written as 0 became the output's scale, and napari refused the store.
    gray = (data.camera()[:64, :80]).astype(np.uint8)
    tifffile.imwrite(tmp_path / "ome.tif", gray, ome=True, metadata={"PhysicalSizeX": 0, "PhysicalSizeY": 0})
    tifffile.imwrite(tmp_path / "ok.tif", gray, ome=True, metadata={"PhysicalSizeX": 0.25, "PhysicalSizeY": 0.5})
    assert read_image(tmp_path / "ome.tif").pixel_size is None
    assert read_image(tmp_path / "ok.tif").pixel_size == pytest.approx((0.5, 0.25))


# ----------------------------------------------------------------------------- broken links and other formats

def test_a_broken_link_fails_alone_and_says_where_it_points(tmp_path, cam, monkeypatch):
    # A glob whose first match is a broken link (a git-annex file never fetched) used to
    # lose every other match ("the pattern matched nothing").
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d").mkdir()
    iio.imwrite(tmp_path / "d" / "x.png", cam)
    (tmp_path / "d" / "broken.png").symlink_to("/nonexistent/gone.png")
    found, missing = find_inputs(["d/*.png"])
    assert found == [tmp_path / "d" / "x.png"]
    assert missing == [("d/broken.png", "a broken link (it points to /nonexistent/gone.png, which does not exist); "
                                        "fix or remove the link")]
    assert find_inputs(["d/broken.png"])[1][0][1].startswith("a broken link")  # named, not "no such file"
    assert find_inputs(["d"])[1] == missing  # and found by walking the folder
    (tmp_path / "annex.png").symlink_to(".git/annex/objects/Xx/SHA256E-s1--ab.png")
    assert "git annex get" in find_inputs(["annex.png"])[1][0][1]
    with pytest.raises(FileNotFoundError, match="broken.png is a broken link"):
        read_image("d/broken.png")


def _formats(folder: Path, cam: np.ndarray) -> dict[str, np.ndarray]:
    """GIF, Netpbm and JPEG 2000 files of ``cam`` (lossless), by name."""
    from PIL import features

    files = {"g.gif": cam, "p.pgm": cam, "p16.pgm": cam.astype(np.uint16) * 257, "b.pbm": cam > 127}
    if features.check("jpg_2000"):  # Pillow built with OpenJPEG
        files.update({"j.jp2": cam, "j.j2k": cam})
    for name, values in files.items():
        PILImage.fromarray(values).save(folder / name)
    PILImage.fromarray(np.dstack([cam] * 3)).save(folder / "c.ppm")
    return files


def test_gif_netpbm_and_jpeg2000_are_read_and_found(tmp_path, cam):
    # Pillow reads them; a folder walk used to pass them over without a word.
    files = _formats(tmp_path, cam)
    for name, values in files.items():
        image = _quiet_read(tmp_path / name)
        np.testing.assert_array_equal(np.asarray(image.data), values)
        assert image.data.dtype == values.dtype  # a 16-bit PGM stays uint16 (Pillow holds it as int32)
    np.testing.assert_array_equal(np.asarray(_quiet_read(tmp_path / "c.ppm").data), cam)
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".hidden.txt").write_text("x")
    others: list[Path] = []
    found, _ = find_inputs([str(tmp_path)], others)
    assert sorted(p.name for p in found) == sorted([*files, "c.ppm"])
    assert others == [tmp_path / "notes.txt"]  # hidden files are not counted


@pytest.mark.parametrize("compression", ["tiff_lzw", "jpeg"])
def test_compressed_tiffs_of_scanners_and_slides_are_read(tmp_path, compression):
    # LZW (scanners, Photoshop) and JPEG (whole-slide images) need tifffile's codecs (imagecodecs):
    # without them every such file failed as "damaged, incomplete or of a variant not supported".
    rgb = data.astronaut()[::4, ::4]
    PILImage.fromarray(rgb).save(tmp_path / "scan.tif", compression=compression)  # an independent writer
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ColourInputWarning)
        gray = read_image(tmp_path / "scan.tif").data
    expected = rgb.astype(np.float64).mean(axis=-1) / 255  # colour files come back as gray in [0, 1]
    tolerance = 1e-4 if compression == "tiff_lzw" else 0.05  # lossless, or JPEG's own loss
    assert gray.shape == rgb.shape[:2]
    assert np.abs(np.asarray(gray, np.float64) - expected).mean() < tolerance
