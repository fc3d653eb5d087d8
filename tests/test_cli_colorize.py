"""`napari-colorize colorize` end to end: PNG, a 16-bit TIFF stack, zarr, folders, bad inputs."""

from __future__ import annotations

import os
import warnings

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
import torch
import zarr
from skimage import data, transform

import napari_colorize as nc
from napari_colorize import cli
from napari_colorize.engine.cache import clear_caches
from napari_colorize.engine.zarr_io import open_zarr_result

TILES = ["--tile-size", "128", "--overlap", "32", "--device", "cpu", "--no-progress"]


@pytest.fixture(autouse=True)
def _only_colorize(monkeypatch):
    # Other subcommands are developed separately; this tests the colorize one through cli.main.
    monkeypatch.setattr(cli, "_SUBCOMMANDS", ("cli_colorize",))
    clear_caches()


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    torch.manual_seed(2)
    return str(nc.save_model(nc.build_model("compact"), tmp_path_factory.mktemp("m") / "m.safetensors"))


@pytest.fixture(scope="module")
def cam():
    return transform.resize(data.camera(), (150, 170), anti_aliasing=True).astype(np.float32)


@pytest.fixture
def inputs(tmp_path, cam):
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    iio.imwrite(d / "cam.png", (cam * 255).astype(np.uint8))
    stack = (np.stack([cam, cam[::-1]]) * 65535).astype(np.uint16)
    tifffile.imwrite(d / "sub" / "stack.tif", stack, imagej=True, resolution=(2.0, 2.0),
                     metadata={"unit": "um", "axes": "ZYX"})
    z = zarr.open_array(str(d / "z.zarr"), mode="w", shape=cam.shape, chunks=(64, 64), dtype="float32")
    z[:] = cam
    return d


def _run(*argv):
    return cli.main(["colorize", *map(str, argv)])


def test_folder_end_to_end(inputs, tmp_path, model_path, cam, capsys):
    from napari_colorize.engine.cache import histogram_cache, tile_cache
    out = tmp_path / "out"
    assert _run(inputs, "-o", out, "--model", model_path, *TILES) == 0
    # A batch job keeps nothing cached between inputs (nothing would be reused).
    assert len(tile_cache) == 0 and len(histogram_cache) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["cam_colorized.png", "cam_confidence.png", "cam_entropy.png", "sub", "z_colorized.zarr"]
    # The input's sub-folder is kept under -o.
    assert sorted(p.name for p in (out / "sub").iterdir()) == ["stack_colorized.tif", "stack_confidence.tif",
                                                               "stack_entropy.tif"]
    ref = nc.colorize(cam, model_path, device="cpu", tile_size=128, overlap=32)
    png = iio.imread(out / "cam_colorized.png")
    gray8 = (cam * 255).astype(np.uint8) / 255.0
    np.testing.assert_allclose(png / 255.0, np.clip(np.rint(nc.colorize(gray8.astype(np.float32), model_path, device="cpu",
                               tile_size=128, overlap=32).rgb.compute() * 255), 0, 255) / 255.0, atol=1 / 255 + 1e-6)
    # 16-bit TIFF stack: planes kept, pixel size carried over (2 px/um -> 0.5 um = 5000 px/cm).
    with tifffile.TiffFile(out / "sub" / "stack_colorized.tif") as tif:
        rgb = tif.asarray()
        xres = tif.pages[0].tags["XResolution"].value
    assert rgb.shape == (2, 150, 170, 3) and rgb.dtype == np.uint8
    assert xres[0] / xres[1] == pytest.approx(2e4)
    ent = tifffile.imread(out / "sub" / "stack_entropy.tif")
    assert ent.shape == (2, 150, 170) and ent.dtype == np.float32
    # zarr input -> OME-Zarr output equal to the Python API.
    store = zarr.open_group(str(out / "z_colorized.zarr"), mode="r")
    assert store.attrs["napari_colorize"]["complete"]
    np.testing.assert_array_equal(np.asarray(store["confidence/0"]), ref.chroma_confidence.compute())
    err = capsys.readouterr().err
    assert "colorized 3 file(s)" in err and "MP/s" in err and "failed 0" in err


@pytest.mark.parametrize("kind", ["imagej", "ome"])
def test_a_z_stack_keeps_its_plane_spacing_in_zarr(tmp_path, model_path, cam, kind):
    # 0.5 um pixels, planes 1.5 um apart: the OME-Zarr output says so (it said 1, squashing the stack in 3D).
    stack = (np.stack([cam, cam[::-1], cam]) * 65535).astype(np.uint16)
    src = tmp_path / ("s.tif" if kind == "imagej" else "s.ome.tif")
    if kind == "imagej":
        tifffile.imwrite(src, stack, imagej=True, resolution=(2.0, 2.0),
                         metadata={"unit": "um", "axes": "ZYX", "spacing": 1.5})
    else:
        tifffile.imwrite(src, stack, metadata={"axes": "ZYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5,
                                               "PhysicalSizeZ": 1.5})
    out = tmp_path / "out"
    assert _run(src, "-o", out, "--model", model_path, "--format", "zarr", *TILES) == 0
    store = zarr.open_group(str(next(out.glob("*.zarr"))), mode="r")
    for name in ("rgb", "confidence"):
        ms = (store if name == "rgb" else store[name]).attrs["multiscales"][0]
        scale = ms["datasets"][0]["coordinateTransformations"][0]["scale"]
        z = [a["name"] for a in ms["axes"]].index("z")
        assert scale[z] == pytest.approx(1.5) and scale[-2:] == pytest.approx([0.5, 0.5])
    from napari_colorize.io import read_image

    assert read_image(next(out.glob("*.zarr"))).z_step == pytest.approx(1.5)  # and read back


@pytest.mark.parametrize("kind", ["imagej", "ome-channels"])
def test_a_z_stack_keeps_its_plane_spacing_in_tiff(tmp_path, model_path, cam, kind):
    # The TIFF outputs recorded only the pixel size, so napari and Fiji showed the z-stack squashed (z step 1).
    import xml.etree.ElementTree as ET

    from napari_colorize.io import ColourInputWarning, read_image

    planes = np.stack([cam, cam[::-1], cam])
    src = tmp_path / "s.tif"
    if kind == "imagej":
        axes, rgb_dtype, channels = "ZYX", "uint8", ()
        tifffile.imwrite(src, (planes * 65535).astype(np.uint16), imagej=True, resolution=(2.0, 2.0),
                         metadata={"unit": "um", "axes": axes, "spacing": 1.5})
    else:  # two channels of a z-stack: only the z axis gets the spacing; float RGB is not ImageJ-writable
        axes, rgb_dtype, channels = "CZYX", "float32", (2,)
        tifffile.imwrite(src, (np.stack([planes, planes[:, ::-1]]) * 65535).astype(np.uint16), ome=True,
                         metadata={"axes": axes, "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5, "PhysicalSizeZ": 1.5})
    out = tmp_path / "out"
    assert _run(src, "-o", out, "--model", model_path, "--format", "tiff", "--rgb-dtype", rgb_dtype, *TILES) == 0
    for name in ("colorized", "confidence", "entropy"):
        rgb = name == "colorized"
        with tifffile.TiffFile(out / f"s_{name}.tif") as tif:
            assert tif.series[0].axes == axes + ("S" if rgb else "")
            assert tif.series[0].dtype == np.dtype(rgb_dtype if rgb else "float32")
            pixels = next(el.attrib for el in ET.fromstring(tif.ome_metadata).iter() if el.tag.endswith("Pixels"))
        assert float(pixels["PhysicalSizeZ"]) == pytest.approx(1.5) and float(pixels["PhysicalSizeX"]) == pytest.approx(0.5)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ColourInputWarning)  # the colour output is read back as gray
            image = read_image(out / f"s_{name}.tif")  # and napari-colorize reads it back
        assert image.axes == list(axes[:-2].lower()) and image.z_step == pytest.approx(1.5)
        assert image.pixel_size == pytest.approx((0.5, 0.5)) and image.data.shape == channels + planes.shape


def test_bad_files_do_not_stop_a_folder(inputs, tmp_path, model_path, capsys):
    (inputs / "broken.png").write_bytes(b"definitely not a png")
    tifffile.imwrite(inputs / "tiny.tif", np.zeros((1, 1), np.uint8))
    iio.imwrite(inputs / "colour.png", data.astronaut()[:96, :96])
    out = tmp_path / "out"
    assert _run(inputs, "-o", out, "--model", model_path, "--strict", *TILES) == 1
    err = capsys.readouterr().err
    assert "FAILED" in err and "broken.png" in err and "cannot read" in err
    assert "colour.png" in err and "colour image" in err  # --strict
    assert "tiny.tif" in err and "pixels" in err  # too small for the model
    assert (out / "cam_colorized.png").exists() and (out / "sub" / "stack_colorized.tif").exists()
    assert not list(out.rglob(".*tmp*")) and not list(out.rglob(".*.lock"))  # no temporary files or locks left
    # Without --strict the colour file is converted with a warning.
    out2 = tmp_path / "out2"
    assert _run(inputs / "colour.png", "-o", out2, "--model", model_path, *TILES) == 0
    assert "converting it to gray" in capsys.readouterr().err


def test_skip_existing_and_outputs(inputs, tmp_path, model_path, capsys):
    out = tmp_path / "out"
    assert _run(inputs / "cam.png", "-o", out, "--model", model_path, "--outputs", "rgb", *TILES) == 0
    assert [p.name for p in out.iterdir()] == ["cam_colorized.png"]
    before = (out / "cam_colorized.png").stat().st_mtime_ns
    assert _run(inputs / "cam.png", "-o", out, "--model", model_path, "--outputs", "rgb", "--skip-existing", *TILES) == 0
    assert (out / "cam_colorized.png").stat().st_mtime_ns == before
    assert "skipped 1" in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["--tile-size", "64", "--overlap", "40"], "more than twice"),
    (["--tile-size", "16", "--overlap", "32"], "tile size"),
    (["--outputs", "rgb,colour"], "--outputs"),
])
def test_bad_options_are_clear_errors(inputs, tmp_path, model_path, capsys, argv, message):
    before = sorted(p.name for p in inputs.rglob("*"))
    assert _run(inputs / "cam.png", "-o", tmp_path / "out", "--model", model_path, *argv) == 2
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in inputs.rglob("*")) == before


def test_output_folder_equal_to_input_folder_is_refused(inputs, model_path, capsys):
    before = sorted(p.name for p in inputs.rglob("*"))
    assert _run(inputs, "-o", inputs, "--model", model_path, *TILES) == 2
    assert "also an input folder" in capsys.readouterr().err
    assert sorted(p.name for p in inputs.rglob("*")) == before


def test_an_output_named_like_a_file_is_said_to_be_a_folder(inputs, tmp_path, model_path, capsys):
    # -o single.png made a folder of that name without a word: the user looked for a file.
    out = tmp_path / "single.png"
    assert _run(inputs / "cam.png", "-o", out, "--model", model_path, *TILES) == 0
    assert (f"note: -o names the folder the results go into; {out} does not exist and is created as a folder"
            in capsys.readouterr().err)
    assert (out / "cam_colorized.png").is_file()
    assert _run(inputs / "cam.png", "-o", out, "--model", model_path, *TILES, "--overwrite") == 0
    assert "-o names the folder" not in capsys.readouterr().err  # a folder now: nothing to say
    assert _run(inputs / "cam.png", "-o", f"{tmp_path / 'other.png'}/", "--model", model_path, *TILES) == 0
    assert _run(inputs / "gone.png", "-o", tmp_path / "never.png", "--model", model_path, *TILES) == 2
    assert not (tmp_path / "never.png").exists()
    assert "-o names the folder" not in capsys.readouterr().err  # plainly a folder; nothing written


def test_missing_input_and_png_stack(inputs, tmp_path, model_path, capsys):
    out = tmp_path / "out"
    assert _run(inputs / "nope.png", inputs / "sub" / "stack.tif", "-o", out, "--model", model_path,
                "--format", "png", *TILES) == 1
    err = capsys.readouterr().err
    assert "nope.png" in err and "no such file" in err and "PNG holds one plane" in err
    assert not out.exists()  # every input failed: no empty folder left behind


def test_linked_inputs_are_named_as_written(tmp_path, model_path, cam):
    # A git-annex / DataLad tree: the files are links into a hidden object store.
    tree = tmp_path / "annex"
    objects = tree / ".git" / "annex" / "objects"
    objects.mkdir(parents=True)
    (tree / "scans" / "1931").mkdir(parents=True)
    iio.imwrite(objects / "SHA256E-s1--9f.png", (cam * 255).astype(np.uint8))
    (tree / "scans" / "1931" / "harbour.png").symlink_to(objects / "SHA256E-s1--9f.png")
    (tree / "scans" / "1931" / "again.png").symlink_to(objects / "SHA256E-s1--9f.png")  # one file, twice
    out = tmp_path / "out"
    assert _run(tree / "scans", "-o", out, "--model", model_path, "--outputs", "rgb", *TILES) == 0
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert written == ["1931/again_colorized.png"]  # named after the first link; coloured once
    assert (objects / "SHA256E-s1--9f.png").is_file() and not list((tree / ".git").rglob("*colorized*"))


def test_awkward_names_and_linked_folders_end_to_end(tmp_path, model_path, cam, monkeypatch):
    # scan[1].png is a file, not a glob; a linked sub-folder is walked and named through the link;
    # x.ome.tif gives x_colorized.tif, not x.ome_colorized.tif.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "names").mkdir()
    (tmp_path / "ext").mkdir()
    gray = (cam * 255).astype(np.uint8)
    iio.imwrite(tmp_path / "names" / "scan[1].png", gray)
    iio.imwrite(tmp_path / "ext" / "external.png", gray)
    tifffile.imwrite(tmp_path / "names" / "x.ome.tif", np.stack([gray, gray[::-1]]), ome=True, metadata={"axes": "ZYX"})
    (tmp_path / "names" / "extlink").symlink_to("../ext", target_is_directory=True)
    (tmp_path / "names" / "loop").symlink_to(".", target_is_directory=True)
    assert _run("names/scan[1].png", "-o", "o1", "--model", model_path, "--outputs", "rgb", *TILES) == 0
    assert [p.name for p in (tmp_path / "o1").iterdir()] == ["scan[1]_colorized.png"]
    assert _run("names", "-o", "o2", "--model", model_path, "--outputs", "rgb", *TILES) == 0
    written = sorted(p.relative_to(tmp_path / "o2").as_posix() for p in (tmp_path / "o2").rglob("*.*"))
    assert written == ["extlink/external_colorized.png", "scan[1]_colorized.png", "x_colorized.tif"]
    assert tifffile.TiffFile(tmp_path / "o2" / "x_colorized.tif").is_ome  # named axes: still OME inside
    assert _run("names", "-o", "o2", "--model", model_path, "--outputs", "rgb", "--skip-existing", *TILES) == 0


def test_dot_dot_after_a_link_is_the_file_system_s(tmp_path, model_path, cam):
    # a/link/../x.png, with link -> b/c: the file is b/x.png (the file system's ..), not a/x.png
    (tmp_path / "a").mkdir()
    (tmp_path / "b" / "c").mkdir(parents=True)
    (tmp_path / "a" / "link").symlink_to(tmp_path / "b" / "c", target_is_directory=True)
    iio.imwrite(tmp_path / "b" / "x.png", (cam * 255).astype(np.uint8))
    from napari_colorize.io import find_inputs

    found, missing = find_inputs([str(tmp_path / "a" / "link" / ".." / "x.png")])
    assert found == [(tmp_path / "b" / "x.png").resolve()] and not missing


def test_local_workers(inputs, tmp_path, model_path, monkeypatch):
    from distributed import Client

    from napari_colorize.engine import distributed

    probes, real_run = [], Client.run
    monkeypatch.setattr(Client, "run", lambda self, fn, *a, **k: probes.append(fn) or real_run(self, fn, *a, **k))
    out, linked = tmp_path / "out", tmp_path / "linked.safetensors"
    linked.symlink_to(model_path)  # resolved and as written differ: one spelling all the same
    assert _run(inputs / "cam.png", "-o", out, "--model", linked, "--workers", "2", "--format", "zarr", *TILES) == 0
    assert probes.count(distributed._probe_worker) == 1  # the CLI's check and the engine's are one
    assert zarr.open_group(str(out / "cam_colorized.zarr"), mode="r").attrs["napari_colorize"]["complete"]
    # TIFF bands on the cluster (one job, written as they arrive) hold the same pixels.
    assert _run(inputs / "cam.png", "-o", out, "--model", model_path, "--workers", "2", "--format", "tiff", *TILES) == 0
    stored = open_zarr_result(out / "cam_colorized.zarr")
    np.testing.assert_allclose(tifffile.imread(out / "cam_confidence.tif"), np.asarray(stored.chroma_confidence),
                               atol=1e-6)
    np.testing.assert_array_equal(tifffile.imread(out / "cam_colorized.tif"), np.round(np.asarray(stored.rgb) * 255))


def test_a_zarr_input_changed_in_place_is_colorized_again(tmp_path, model_path, cam):
    # A zarr store's pixels live in files below its folder: rewriting them must not resume
    # (or return) the result of the old pixels.
    src, out = tmp_path / "scan.zarr", tmp_path / "out"
    arr = zarr.open_group(str(src), mode="w").create_array("0", shape=cam.shape, chunks=(64, 64), dtype="u1")
    arr[:] = np.round(cam * 255).astype(np.uint8)
    result = out / "scan_colorized.zarr"
    assert _run(src, "-o", out, "--model", model_path, "--format", "zarr", *TILES) == 0
    before = np.asarray(open_zarr_result(result).rgb)
    arr[:] = np.round((1 - cam) * 255).astype(np.uint8)  # the same size on disk, other pixels
    for chunk in (src / "0").rglob("*"):
        os.utime(chunk, ns=(chunk.stat().st_atime_ns, chunk.stat().st_mtime_ns + 10**9))
    assert _run(src, "-o", out, "--model", model_path, "--format", "zarr", "--overwrite", *TILES) == 0
    after = np.asarray(open_zarr_result(result).rgb)
    np.testing.assert_allclose(after.mean(-1), 1 - before.mean(-1), atol=3e-3)


def test_a_dim_16_bit_input_gets_one_warning_line_naming_it(tmp_path, model_path, cam, capsys):
    tifffile.imwrite(tmp_path / "dim.tif", np.round(cam * 4095).astype(np.uint16))  # 12-bit camera data
    assert _run(tmp_path / "dim.tif", "-o", tmp_path / "out", "--model", model_path, *TILES) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("warning: dim.tif: uint16 image with values up to ")
    assert lines[0].endswith("; pass --normalize percentile (microscopy) or --normalize minmax to stretch it")
    assert _run(tmp_path / "dim.tif", "-o", tmp_path / "out2", "--model", model_path, "--normalize", "percentile",
                *TILES) == 0
    assert "warning:" not in capsys.readouterr().err


def test_16_bit_inputs_written_as_8_bit_colour_are_noted_once(tmp_path, model_path, cam, capsys):
    # 16-bit masters came out as 8-bit RGB without a word.
    (tmp_path / "in").mkdir()
    for name in ("a.tif", "b.png"):
        iio.imwrite(tmp_path / "in" / name, np.round(cam * 65535).astype(np.uint16))
    iio.imwrite(tmp_path / "in" / "c.png", np.round(cam * 255).astype(np.uint8))
    eight = np.round(cam * 255).astype(np.uint8)
    iio.imwrite(tmp_path / "in" / "d.png", np.dstack([eight, eight // 2, 255 - eight]))  # 8-bit colour: gray is float
    assert _run(tmp_path / "in", "-o", tmp_path / "out", "--model", model_path, *TILES) == 0
    err = capsys.readouterr().err
    assert err.count("note: 2 input(s) have more than 8 bits per pixel (such as a.tif); their colour outputs hold "
                     "8-bit RGB: --rgb-dtype float32 with --format tiff or zarr keeps their depth") == 1
    assert _run(tmp_path / "in" / "a.tif", "-o", tmp_path / "deep", "--model", model_path, "--rgb-dtype", "float32",
                *TILES) == 0
    assert "more than 8 bits" not in capsys.readouterr().err
    assert tifffile.imread(tmp_path / "deep" / "a_colorized.tif").dtype == np.float32


def test_an_archives_catalogue_text_reaches_png_and_tiff_outputs(tmp_path, model_path, cam):
    # Title, author, copyright, date and description were dropped from every output.
    from PIL import Image as PILImage
    from PIL.PngImagePlugin import PngInfo

    gray = np.round(cam * 255).astype(np.uint8)
    (tmp_path / "in").mkdir()
    exif = PILImage.Exif()
    exif[0x010E], exif[0x013B], exif[0x8298], exif[0x0132] = "Harbour, 1931", "A. Smith", "(c) City Archive", \
        "1931:06:01 12:00:00"
    exif[0x0112] = 6  # an orientation: the pixels are turned upright, so the outputs must not carry it
    PILImage.fromarray(gray).save(tmp_path / "in" / "exif.jpg", exif=exif)
    chunks = PngInfo()
    chunks.add_text("Title", "Mill")
    chunks.add_itxt("Author", "Zoë")
    PILImage.fromarray(gray).save(tmp_path / "in" / "text.png", pnginfo=chunks)
    tifffile.imwrite(tmp_path / "in" / "tags.tif", gray, description="Glass plate 12", metadata=None,
                     extratags=[(315, "s", 0, "B. Jones", True), (33432, "s", 0, "CC BY 4.0", True)])
    for fmt in ("png", "tiff"):
        assert _run(tmp_path / "in", "-o", tmp_path / fmt, "--model", model_path, "--format", fmt, "--outputs", "rgb",
                    *TILES) == 0
    with PILImage.open(tmp_path / "png" / "exif_colorized.png") as out:
        assert {k: out.info[k] for k in ("Description", "Author", "Copyright", "Creation Time")} == {
            "Description": "Harbour, 1931", "Author": "A. Smith", "Copyright": "(c) City Archive",
            "Creation Time": "1931:06:01 12:00:00"}
        assert out.getexif().get(0x0112) is None and out.size == gray.shape  # turned upright once, not again
    with PILImage.open(tmp_path / "png" / "text_colorized.png") as out:
        assert out.info["Title"] == "Mill" and out.info["Author"] == "Zoë"
    from napari_colorize.io.provenance import tiff_text_tags
    assert [t[0] for t in tiff_text_tags({"Creation Time": "June 1931", "Author": "x"})] == [315]  # DateTime: its form only
    with PILImage.open(tmp_path / "png" / "tags_colorized.png") as out:
        assert (out.info["Description"], out.info["Author"], out.info["Copyright"]) == \
            ("Glass plate 12", "B. Jones", "CC BY 4.0")
    with tifffile.TiffFile(tmp_path / "tiff" / "exif_colorized.tif") as tif:
        tags = tif.pages.first.tags
        assert (tags[315].value, tags[306].value, tags[33432].value) == ("A. Smith", "1931:06:01 12:00:00",
                                                                           "(c) City Archive")
    with tifffile.TiffFile(tmp_path / "tiff" / "text_colorized.tif") as tif:
        title, author = (tif.pages.first.tags[code].value for code in (269, 315))
        assert (title, author) == ("Mill", "Zoë")  # UTF-8 in an ASCII tag, as most writers do
    with tifffile.TiffFile(tmp_path / "tiff" / "tags_colorized.tif") as tif:
        assert tif.pages.first.tags[315].value == "B. Jones" and "Glass plate" not in tif.pages.first.description


@pytest.mark.filterwarnings("always::UserWarning")
def test_a_jpeg_with_corrupt_exif_gets_one_line_naming_it(tmp_path, model_path, cam, capsys):
    # Pillow's warning came twice, as Python source lines without the file's name.
    from PIL import Image as PILImage

    gray = np.round(cam * 255).astype(np.uint8)
    PILImage.fromarray(gray).save(tmp_path / "bad.jpg", exif=b"Exif\x00\x00II*\x00\x08\x00\x00\x00\xff\xff\x01\x02garbage")
    assert _run(tmp_path / "bad.jpg", "-o", tmp_path / "out", "--model", model_path, *TILES) == 0
    err = capsys.readouterr().err
    assert err.count("warning: bad.jpg: Corrupt EXIF data") == 1 and "warnings.warn" not in err


def test_a_float32_rgb_asked_for_png_output_is_noted(inputs, tmp_path, model_path, capsys):
    assert _run(inputs / "cam.png", "-o", tmp_path / "out", "--model", model_path, "--rgb-dtype", "float32",
                *TILES) == 0
    assert "note: --rgb-dtype float32 applies to tiff and zarr outputs" in capsys.readouterr().err
    assert iio.imread(tmp_path / "out" / "cam_colorized.png").dtype == np.uint8


def test_a_scans_dpi_reaches_png_and_tiff_outputs(tmp_path, model_path, cam):
    from PIL import Image as PILImage

    src = tmp_path / "scan.png"
    PILImage.fromarray(np.round(cam * 255).astype(np.uint8)).save(src, dpi=(600, 600))
    assert _run(src, "-o", tmp_path / "png", "--model", model_path, *TILES) == 0
    with PILImage.open(tmp_path / "png" / "scan_colorized.png") as out:
        np.testing.assert_allclose(out.info["dpi"], (600, 600), atol=0.01)
    assert _run(src, "-o", tmp_path / "tif", "--model", model_path, "--format", "tiff", *TILES) == 0
    with tifffile.TiffFile(tmp_path / "tif" / "scan_colorized.tif") as tif:
        tags = tif.pages[0].tags
        x_num, x_den = tags["XResolution"].value
        dpi = x_num / x_den * (2.54 if tags["ResolutionUnit"].value == 3 else 1)  # 3: per centimetre
    assert abs(dpi - 600) < 0.01


@pytest.fixture
def small8(cam):
    return (cam[:48, :56] * 255).astype(np.uint8)


def test_a_broken_link_in_a_glob_fails_alone(tmp_path, model_path, small8, capsys, monkeypatch):
    # broken.png sorts first: the glob used to be reported as matching nothing, x.png never coloured.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "real").mkdir()
    iio.imwrite(tmp_path / "real" / "x.png", small8)
    (tmp_path / "real" / "broken.png").symlink_to("/nonexistent/gone.png")
    assert _run("real/*.png", "-o", "out", "--model", model_path, "--outputs", "rgb", *TILES) == 1
    assert (tmp_path / "out" / "x_colorized.png").exists()
    failed = [line for line in capsys.readouterr().err.splitlines() if "FAILED" in line]
    assert failed == ["  FAILED real/broken.png: a broken link (it points to /nonexistent/gone.png, which does not "
                      "exist); fix or remove the link"]


def test_failures_and_warnings_name_a_linked_input_as_written(tmp_path, model_path, small8, capsys):
    # A git-annex tree: messages named the object (.git/annex/objects/.../SHA256E-...), not the user's file.
    objects = tmp_path / "annex" / ".git" / "annex" / "objects"
    objects.mkdir(parents=True)
    scans = tmp_path / "annex" / "scans"
    scans.mkdir()
    (objects / "SHA256E-s2--bad.png").write_bytes(b"xx")
    iio.imwrite(objects / "SHA256E-s3--colour.png", data.astronaut()[:48, :56])
    (scans / "bad.png").symlink_to(objects / "SHA256E-s2--bad.png")
    (scans / "harbour.png").symlink_to(objects / "SHA256E-s3--colour.png")
    assert _run(scans, "-o", tmp_path / "out", "--model", model_path, "--outputs", "rgb", *TILES) == 1
    err = capsys.readouterr().err
    assert "SHA256E" not in err and ".git" not in err
    assert f"FAILED {scans / 'bad.png'}: cannot read bad.png:" in err
    assert "warning: harbour.png is a colour image" in err


def test_earlier_results_in_an_input_folder_are_passed_over(tmp_path, model_path, small8, capsys):
    # `colorize small -o small/out`, then `-o small/out2`: small/out's results were coloured again.
    small = tmp_path / "small"
    small.mkdir()
    iio.imwrite(small / "a.png", small8)
    assert _run(small, "-o", small / "out", "--model", model_path, *TILES) == 0
    capsys.readouterr()
    assert _run(small, "-o", small / "out2", "--model", model_path, *TILES) == 0
    assert sorted(p.name for p in (small / "out2").iterdir()) == ["a_colorized.png", "a_confidence.png",
                                                                  "a_entropy.png"]
    err = capsys.readouterr().err
    assert "note: passed over 3 file(s) in the input folders that napari-colorize wrote" in err
    assert "name one on the command line to colour it anyway" in err
    # Named on the command line, an output is coloured (the user asked for it), even when its folder is an input too.
    confidence = small / "out" / "a_confidence.png"
    assert _run(small, confidence, "-o", tmp_path / "again", "--model", model_path, "--outputs", "rgb", *TILES) == 0
    assert sorted(p.relative_to(tmp_path / "again").as_posix() for p in (tmp_path / "again").rglob("*.png")) == [
        "a_colorized.png", "out/a_confidence_colorized.png"]
    assert "note: passed over 5 file(s)" in capsys.readouterr().err  # out/ and out2/, but the one named


def test_gif_and_netpbm_inputs_are_coloured_and_other_files_noted(tmp_path, model_path, small8, capsys):
    scans = tmp_path / "scans"
    scans.mkdir()
    from PIL import Image as PILImage
    PILImage.fromarray(small8).save(scans / "g.gif")
    PILImage.fromarray(small8).save(scans / "p.pgm")
    (scans / "notes.txt").write_text("x")
    (scans / "list.csv").write_text("x")
    (scans / ".hidden").write_text("x")
    assert _run(scans, "-o", tmp_path / "out", "--model", model_path, "--outputs", "rgb", *TILES) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["g_colorized.png", "p_colorized.png"]
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    assert notes == ["note: passed over 2 other file(s) in the input folders, not images by their name (.csv 1, "
                     ".txt 1); name a file on the command line to try it anyway"]
