"""Guided colour on the command line: the hints CSV reader and `napari-colorize colorize`
with --reference and --hints (PNG, TIFF stack, zarr; bad guidance fails before writing)."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
import zarr
from skimage import data, transform

import napari_colorize as nc
from napari_colorize import cli
from napari_colorize.color import rgb_to_gray
from napari_colorize.engine.cache import clear_caches
from napari_colorize.io import read_hints_csv, read_rgb

TILES = ["--tile-size", "128", "--overlap", "32", "--device", "cpu", "--no-progress"]
#: The hint colour of the CLI tests; its lightness (channel mean) is 0.5, the gray of the hinted region.
HINT = (0.8, 0.4, 0.3)


@pytest.fixture(autouse=True)
def _only_colorize(monkeypatch):
    # Other subcommands are developed separately; this tests the colorize one through cli.main.
    monkeypatch.setattr(cli, "_SUBCOMMANDS", ("cli_colorize",))
    clear_caches()


@pytest.fixture(scope="module")
def model_path(tmp_path_factory, make_model):
    # conftest's model has peaked histograms: clearly chromatic colours, so colour changes show.
    return str(nc.save_model(make_model(), tmp_path_factory.mktemp("m") / "m.safetensors"))


@pytest.fixture(scope="module")
def cam():
    return transform.resize(data.camera(), (96, 112), anti_aliasing=True).astype(np.float32)


@pytest.fixture
def colour_reference(tmp_path):
    path = tmp_path / "reference.png"
    iio.imwrite(path, data.astronaut()[::4, ::4])
    return path


def _run(*argv):
    return cli.main(["colorize", *map(str, argv)])


def _csv(tmp_path, text: str, name: str = "hints.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def _two_regions(shape=(64, 96)) -> np.ndarray:
    """Left half at the hint's lightness 0.5 (128/255), right half darker: one edge a hint must not cross."""
    gray = np.full(shape, 128, np.uint8)
    gray[:, shape[1] // 2:] = 50
    return gray


# --- the CSV reader -------------------------------------------------------------------------------------------------

def test_napari_points_csv_with_hex_colours(tmp_path):
    # As napari writes it (index, axis-*, features), with a colour feature; alpha is ignored.
    path = _csv(tmp_path, "index,axis-0,axis-1,colour,label\n0,10.5,20,#ff8000,sky\n1,30,40,#00FF00cc,tree\n")
    points, colours = read_hints_csv(path)
    assert points.dtype == np.float64 and colours.dtype == np.float32
    np.testing.assert_array_equal(points, [[10.5, 20], [30, 40]])
    np.testing.assert_allclose(colours, [[1, 128 / 255, 0], [0, 1, 0]], atol=1e-7)


def test_rgb_columns_as_fractions_or_8_bit_levels(tmp_path):
    # Columns in any order and case, a byte order mark, blank lines and 3D points.
    path = tmp_path / "h.csv"
    path.write_text("\ufeffindex, AXIS-2 ,axis-0,axis-1,B,G,R\n0,3,1,2,0.25,0.5,1.0\n\n", encoding="utf-8")
    points, colours = read_hints_csv(path)
    np.testing.assert_array_equal(points, [[1, 2, 3]])
    np.testing.assert_allclose(colours, [[1.0, 0.5, 0.25]])
    # Any value above 1: every value is an 8-bit level.
    points, colours = read_hints_csv(_csv(tmp_path, "axis-0,axis-1,r,g,b\n0,0,255,0,1\n5,6,0,51,0\n"))
    np.testing.assert_allclose(colours, [[1, 0, 1 / 255], [0, 0.2, 0]], atol=1e-7)
    assert points.shape == (2, 2)


@pytest.mark.parametrize("text,message", [
    (None, "does not exist"),
    ("", "has no points"),
    ("index,axis-0,axis-1,colour\n", "has no points"),
    ("index,x,y,colour\n0,1,2,#ffffff\n", "no coordinate columns"),
    ("axis-0,axis-2,colour\n1,2,#ffffff\n", "axis-1 is missing"),
    ("axis-0,axis-1,label\n1,2,sky\n", "no colour column"),
    ("axis-0,axis-1,r,g\n1,2,0,0\n", "b is missing"),
    ("axis-0,axis-1,colour,r,g,b\n1,2,#ffffff,1,1,1\n", "keep one of the two forms"),
    ("axis-0,axis-1,colour\n1,2,#ffffff\n3,4,orange\n", "line 3: 'orange' is not a hex colour"),
    ("axis-0,axis-1,colour\n1,2,#ffffff\n3,4,#fff\n", "line 3: '#fff' is not a hex colour"),
    ("axis-0,axis-1,colour\n1,2,#ffffff\nabc,4,#ffffff\n", "line 3: axis-0 holds 'abc', not a number"),
    ("axis-0,axis-1,colour\n1,,#ffffff\n", "line 2: axis-1 holds nothing"),
    ("axis-0,axis-1,colour\n1,2\n", "line 2: 2 values, but the header has 3 columns"),
    ("axis-0,axis-1,r,g,b\n1,2,0.5,0,0\n1,2,200,0,0.5\n", "line 2: r = 0.5; since some"),
    ("axis-0,axis-1,r,g,b\n1,2,-1,0,0\n", "is negative"),
])
def test_bad_hints_files_are_clear_errors(tmp_path, text, message):
    path = tmp_path / "hints.csv" if text is None else _csv(tmp_path, text)
    with pytest.raises(ValueError, match=message) as info:
        read_hints_csv(path)
    assert str(path) in str(info.value)  # names the file


# --- the command line -----------------------------------------------------------------------------------------------

def test_reference_changes_colour_but_not_lightness(tmp_path, cam, model_path, colour_reference):
    src = tmp_path / "cam.png"
    gray8 = (cam * 255).astype(np.uint8)
    iio.imwrite(src, gray8)
    plain, guided = tmp_path / "plain", tmp_path / "guided"
    assert _run(src, "-o", plain, "--model", model_path, "--outputs", "rgb", *TILES) == 0
    assert _run(src, "-o", guided, "--model", model_path, "--outputs", "rgb", "--reference", colour_reference,
                "--reference", colour_reference, "--reference-strength", "2", *TILES) == 0
    before = iio.imread(plain / "cam_colorized.png") / 255.0
    after = iio.imread(guided / "cam_colorized.png") / 255.0
    assert np.abs(after - before).mean() > 0.02  # the colours moved
    # Each channel is rounded to 8 bits on its own: the mean is kept to within that rounding.
    np.testing.assert_allclose(rgb_to_gray(after), gray8 / 255.0, atol=1 / 255)
    # The options reach the engine as the Python API takes them.
    reference = read_rgb(colour_reference)
    api = nc.colorize((gray8 / 255.0).astype(np.float32), model_path, device="cpu", tile_size=128, overlap=32,
                      reference=[reference, reference], reference_strength=2.0).rgb
    np.testing.assert_allclose(after, np.rint(np.asarray(api) * 255) / 255, atol=1 / 255 + 1e-6)


def test_hints_reproduce_their_colour_near_their_point(tmp_path, model_path):
    src = tmp_path / "two.png"
    iio.imwrite(src, _two_regions())
    hints = _csv(tmp_path, "index,axis-0,axis-1,colour\n0,32,20,#cc664d\n")  # HINT in 8 bits
    plain, guided = tmp_path / "plain", tmp_path / "guided"
    assert _run(src, "-o", plain, "--model", model_path, "--outputs", "rgb", *TILES) == 0
    assert _run(src, "-o", guided, "--model", model_path, "--outputs", "rgb", "--hints", hints, "--hint-range", "40",
                *TILES) == 0
    before = iio.imread(plain / "two_colorized.png") / 255.0
    rgb = iio.imread(guided / "two_colorized.png") / 255.0
    assert np.abs(before[32, 20] - HINT).max() > 0.1  # the model alone gives another colour there
    np.testing.assert_allclose(rgb[30:35, 18:23].reshape(-1, 3), np.broadcast_to(HINT, (25, 3)), atol=0.03)
    # Not across the edge: the dark half keeps the model's own colours.
    np.testing.assert_array_equal(rgb[:, 56:], before[:, 56:])


def test_hints_on_every_plane_of_a_stack(tmp_path, model_path):
    src = tmp_path / "stack.tif"
    tifffile.imwrite(src, np.stack([_two_regions(), _two_regions()]), imagej=True, metadata={"axes": "ZYX"})
    hints = _csv(tmp_path, "axis-0,axis-1,r,g,b\n32,20,204,102,77\n")  # 2D points
    out = tmp_path / "out"
    # 2D hints on a stack need --hint-planes all: the input fails, saying so, and nothing of it is written.
    assert _run(src, "-o", out, "--model", model_path, "--hints", hints, *TILES) == 1
    assert _files(out) == []
    assert _run(src, "-o", out, "--model", model_path, "--hints", hints, "--hint-planes", "all", "--outputs", "rgb",
                *TILES) == 0
    rgb = tifffile.imread(out / "stack_colorized.tif") / 255.0
    assert rgb.shape == (2, 64, 96, 3)
    np.testing.assert_allclose(rgb[:, 32, 20], [HINT, HINT], atol=0.03)


def test_a_gray_reference_fails_before_anything_is_written(tmp_path, cam, model_path, capsys):
    src = tmp_path / "cam.png"
    iio.imwrite(src, (cam * 255).astype(np.uint8))
    gray_ref = tmp_path / "gray_ref.png"
    iio.imwrite(gray_ref, np.repeat((cam * 255).astype(np.uint8)[..., None], 3, axis=-1))
    out = tmp_path / "out"
    assert _run(src, "-o", out, "--model", model_path, "--reference", gray_ref, *TILES) == 2
    err = capsys.readouterr().err
    assert f"--reference {gray_ref}" in err and "is gray" in err
    assert not out.exists()


@pytest.mark.parametrize("argv,message", [
    (["--reference", "missing.png"], "--reference missing.png: no such file"),
    (["--reference-strength", "-1"], "--reference-strength"),
    (["--hints", "missing.csv"], "missing.csv does not exist"),
    (["--hint-range", "0"], "--hint-range"),
])
def test_bad_guidance_options_are_refused_before_starting(tmp_path, cam, model_path, capsys, argv, message):
    src = tmp_path / "cam.png"
    iio.imwrite(src, (cam * 255).astype(np.uint8))
    out = tmp_path / "out"
    assert _run(src, "-o", out, "--model", model_path, *argv, *TILES) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_a_hints_file_separated_by_semicolons_is_read(tmp_path):
    # A spreadsheet saved in a European locale: it was "no coordinate columns".
    from napari_colorize.io import read_hints_csv

    (tmp_path / "h.csv").write_text("axis-0;axis-1;colour\n10;20;#ff0000\n")
    (tmp_path / "t.csv").write_text("axis-0\taxis-1\tcolour\n10\t20\t#ff0000\n")
    for name in ("h.csv", "t.csv"):
        points, colours = read_hints_csv(tmp_path / name)
        np.testing.assert_array_equal(points, [[10, 20]])
        np.testing.assert_allclose(colours, [[1, 0, 0]])


def test_a_reference_with_transparency_gives_only_its_opaque_colours(tmp_path, cam, model_path, capsys):
    # The command line dropped the alpha channel: a transparent green half turned 59 % of the output green.
    src = tmp_path / "cam.png"
    iio.imwrite(src, (cam * 255).astype(np.uint8))
    left = data.astronaut()[::4, ::4][:, :64]
    rgba = np.zeros((128, 128, 4), np.uint8)
    rgba[:, :64, :3], rgba[:, :64, 3] = left, 255
    rgba[:, 64:] = (0, 255, 0, 0)  # pure green, fully transparent
    iio.imwrite(tmp_path / "half.png", rgba)
    iio.imwrite(tmp_path / "left.png", left)
    for ref in ("half.png", "left.png"):
        assert _run(src, "-o", tmp_path / ref[:-4], "--model", model_path, "--reference", tmp_path / ref, *TILES) == 0
    np.testing.assert_array_equal(iio.imread(tmp_path / "half" / "cam_colorized.png"),
                                  iio.imread(tmp_path / "left" / "cam_colorized.png"))
    rgba[..., 3] = 0
    iio.imwrite(tmp_path / "clear.png", rgba)
    assert _run(src, "-o", tmp_path / "out", "--model", model_path, "--reference", tmp_path / "clear.png", *TILES) == 2
    assert "clear.png: reference is fully transparent: it has no colour to give" in capsys.readouterr().err
    assert _run(src, "-o", tmp_path / "out", "--model", model_path, "--reference", tmp_path / "half", *TILES) == 2
    assert f"--reference {tmp_path / 'half'} is a folder; give a colour image file" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_decimal_commas_of_a_european_spreadsheet_are_read(tmp_path):
    # napari's coordinates are fractional: "axis-0 holds '200,5', not a number".
    from napari_colorize.training.manifest import read_manifest_weights

    (tmp_path / "h.csv").write_text("index;axis-0;axis-1;r;g;b\n0;200,5;128,25;0,2;0,4;0,8\n")
    points, colours = read_hints_csv(tmp_path / "h.csv")
    np.testing.assert_array_equal(points, [[200.5, 128.25]])
    np.testing.assert_allclose(colours, [[0.2, 0.4, 0.8]])
    (tmp_path / "w.csv").write_text("file;weight\na.png;1,5\nb.png;0,25\n")
    weights, matched = read_manifest_weights(tmp_path / "w.csv", [tmp_path / "a.png", tmp_path / "b.png"])
    np.testing.assert_allclose(weights, [1.5, 0.25])
    assert matched == 2
    (tmp_path / "bad.csv").write_text("axis-0;axis-1;colour\n1,000.5;3;#ff0000\n")
    with pytest.raises(ValueError, match="axis-0 holds '1,000.5', not a number"):
        read_hints_csv(tmp_path / "bad.csv")
    # In a comma-separated file a quoted "1,024" is a thousands separator: refused, never 1.024.
    (tmp_path / "us.csv").write_text('axis-0,axis-1,colour\n"1,024",3,#ff0000\n')
    with pytest.raises(ValueError, match="axis-0 holds '1,024', not a number"):
        read_hints_csv(tmp_path / "us.csv")
    (tmp_path / "us_w.csv").write_text('file,weight\na.png,"1,000"\n')
    with pytest.raises(ValueError, match="weight '1,000' of .*a.png is not a number"):
        read_manifest_weights(tmp_path / "us_w.csv", [tmp_path / "a.png"])


def test_an_empty_reference_file_is_named_empty(tmp_path, cam, model_path, capsys):
    src, empty = tmp_path / "cam.png", tmp_path / "empty.png"
    iio.imwrite(src, (cam * 255).astype(np.uint8))
    empty.write_bytes(b"")
    assert _run(src, "-o", tmp_path / "out", "--model", model_path, "--reference", empty, *TILES) == 2
    assert f"--reference {empty} is empty (0 bytes)" in capsys.readouterr().err  # was "cannot identify image file"


@pytest.mark.parametrize("fmt", ["png", "tiff", "zarr"])
def test_a_hint_outside_one_input_fails_that_input_only(tmp_path, model_path, capsys, fmt):
    inputs = tmp_path / "in"
    inputs.mkdir()
    iio.imwrite(inputs / "big.png", _two_regions((64, 96)))
    iio.imwrite(inputs / "small.png", _two_regions((40, 40)))
    hints = _csv(tmp_path, "axis-0,axis-1,colour\n32,60,#cc664d\n")
    out = tmp_path / "out"
    assert _run(inputs, "-o", out, "--model", model_path, "--hints", hints, "--format", fmt, "--outputs", "rgb",
                *TILES) == 1
    err = capsys.readouterr().err
    assert "FAILED" in err and "small.png" in err and "lies outside the image of shape (40, 40)" in err
    assert "give points as (row, column)" in err  # says what to check
    assert f"--hints {hints}" in err
    written = _files(out)
    assert written and all(name.startswith("big_colorized") for name in written)  # nothing of small, no temp/lock
    if fmt == "zarr":
        assert zarr.open_group(str(out / "big_colorized.zarr"), mode="r").attrs["napari_colorize"]["complete"]
