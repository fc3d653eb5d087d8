"""OME-Zarr inputs and outputs of common layouts: NGFF channels, bioformats2raw, 5D and ImageJ stacks."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import tifffile
import torch
import zarr
from skimage import data

import napari_colorize as nc
from napari_colorize.cli_plan import STORE, plan_jobs
from napari_colorize.engine.zarr_io import open_zarr_result
from napari_colorize.engine.zarr_read import read_geometry, read_placement
from napari_colorize.io import ColourInputWarning, ReadWarning, read_image

TILING = {"tile_size": 128, "overlap": 32, "device": "cpu"}
CAM = data.camera()[:96, :112]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    torch.manual_seed(1)
    return nc.save_model(nc.build_model("compact"), tmp_path_factory.mktemp("model") / "compact.safetensors")


def _valid(store, rgb: bool = True) -> list[list[str] | None]:
    """The axis names of the store's images, each validated as OME-NGFF 0.4 (raises otherwise);
    None for the colour image unless ``rgb``."""
    from ome_zarr_models.v04 import Image

    root = zarr.open_group(str(store), mode="r")
    return [[a.name for a in Image.from_zarr(g).attributes.multiscales[0].axes] if rgb or g is not root else None
            for g in (root, root["confidence"], root["entropy"])]


def _ome_zarr(path, arr, axes: str, omero: list[str] | None = None, group=None) -> None:
    """An NGFF 0.4 image of ``arr`` with ``axes`` (channel colours ``omero``), at ``path`` or in ``group``."""
    g = group if group is not None else zarr.open_group(str(path), mode="w", zarr_format=2)
    g.create_array("0", data=arr, chunks=arr.shape)
    kinds = {"t": "time", "c": "channel"}
    g.attrs["multiscales"] = [{"version": "0.4", "axes": [{"name": n, "type": kinds.get(n, "space")} for n in axes],
                               "datasets": [{"path": "0", "coordinateTransformations": [
                                   {"type": "scale", "scale": [1.0] * arr.ndim}]}]}]
    if omero:
        g.attrs["omero"] = {"channels": [{"color": c, "label": str(i)} for i, c in enumerate(omero)]}


def test_ome_zarr_channels_are_coloured_each_unless_the_store_says_rgb(model_path, tmp_path):
    fluo = np.stack([CAM, 255 - CAM, CAM // 4, np.full_like(CAM, 7)])
    _ome_zarr(tmp_path / "fluo4.ome.zarr", fluo, "cyx", ["00FF00", "FF00FF", "FFFFFF", "0000FF"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ColourInputWarning)  # channels: nothing is converted
        image = read_image(tmp_path / "fluo4.ome.zarr")
    assert image.axes == ["c"] and image.data.shape == (4, 96, 112) and not image.converted
    out = nc.colorize_to_zarr(image.data, tmp_path / "o.zarr", model_path, axes=image.axes, **TILING)
    assert _valid(out)[0] == ["ch", "c", "y", "x"]
    assert open_zarr_result(out).rgb.shape == (4, 96, 112, 3)  # the 4th channel is kept
    # An RGB image converted by bioformats2raw: its omero channels say red, green, blue.
    rgb = data.astronaut()[:96, :112].transpose(2, 0, 1)
    _ome_zarr(tmp_path / "rgb.ome.zarr", rgb, "cyx", ["FF0000", "00FF00", "0000FF"])
    with pytest.warns(ColourInputWarning, match="rgb.ome.zarr is a colour image"):
        gray = read_image(tmp_path / "rgb.ome.zarr")
    assert gray.axes is None and gray.data.shape == (96, 112) and gray.converted


@pytest.mark.parametrize("unit,factor", [("micrometer", 1.0), ("nanometer", 1e-3)])
def test_an_ome_zarr_inputs_position_is_carried_to_its_store(model_path, tmp_path, unit, factor):
    """A translated OME-Zarr input (a tile of a larger acquisition) gives a store at its place."""
    from napari_colorize import cli

    zyx = np.stack([CAM, CAM[::-1]])
    _ome_zarr(tmp_path / "tile.ome.zarr", zyx, "zyx")
    g = zarr.open_group(str(tmp_path / "tile.ome.zarr"), mode="r+")
    ms = g.attrs["multiscales"]
    for a in ms[0]["axes"]:
        a["unit"] = unit
    ms[0]["datasets"][0]["coordinateTransformations"] = [
        {"type": "scale", "scale": [2.0 / factor, 0.5 / factor, 0.5 / factor]},
        {"type": "translation", "translation": [6.0 / factor, 1.5 / factor, -4.0 / factor]}]
    g.attrs["multiscales"] = ms
    image = read_image(tmp_path / "tile.ome.zarr")
    assert image.unit == "micrometer" and image.translation() == pytest.approx([6.0, 1.5, -4.0])
    assert cli.main(["colorize", str(tmp_path / "tile.ome.zarr"), "-o", str(tmp_path / "out"), "--format", "zarr",
                     "--model", str(model_path), "--tile-size", "128", "--overlap", "32", "--device", "cpu",
                     "--no-progress"]) == 0
    out = tmp_path / "out" / "tile_colorized.zarr"
    assert _valid(out) == [["c", "z", "y", "x"], ["z", "y", "x"], ["z", "y", "x"]]
    _, scale, translate = read_placement(out)
    assert scale == pytest.approx([2.0, 0.5, 0.5]) and translate == pytest.approx([6.0, 1.5, -4.0])


def test_bioformats2raw_store_opens_its_first_series_and_names_outputs_after_the_store(tmp_path):
    root = zarr.open_group(str(tmp_path / "sample.ome.zarr"), mode="w", zarr_format=2)
    root.attrs["bioformats2raw.layout"] = 3
    for series in ("0", "1"):
        _ome_zarr(None, np.stack([CAM] * 2)[None], "tczyx"[:1] + "zyx", group=root.create_group(series))
    with pytest.warns(ReadWarning, match=r"sample.ome.zarr holds 2 image series; colouring the first "
                                         r"\(sample.ome.zarr/0\); give sample.ome.zarr/1"):
        image = read_image(tmp_path / "sample.ome.zarr")
    assert image.data.shape == (1, 2, 96, 112) and image.axes == ["t", "z"]
    jobs, _ = plan_jobs([str(tmp_path / "sample.ome.zarr"), str(tmp_path / "sample.ome.zarr/1")], tmp_path / "out",
                        None, ["rgb"])
    assert [j.targets[STORE].name for j in jobs] == ["sample_colorized.zarr", "sample_1_colorized.zarr"]


@pytest.mark.parametrize("singleton", [True, False])
def test_5d_tczyx_stays_within_ngff_and_reads_back_5d(model_path, tmp_path, singleton):
    # The canonical 5D layout: t and c of size 1 gave a 6D colour image that no NGFF reader accepts.
    from napari_colorize.engine.ome import NgffWarning

    t, c = (1, 1) if singleton else (2, 2)
    tczyx = np.broadcast_to(CAM, (t, c, 2) + CAM.shape).copy()
    tczyx[..., :10, :10] = np.arange(t * c * 2).reshape(t, c, 2, 1, 1) * 20  # planes differ
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = nc.colorize_to_zarr(tczyx, tmp_path / "o.zarr", model_path, axes=["t", "c", "z"],
                                  scale=[1, 1, 2.0, 0.5, 0.5], unit="micrometer", **TILING)
    ngff = [str(w.message) for w in caught if issubclass(w.category, NgffWarning)]
    if singleton:  # the size-1 time axis is left out of the store, and put back when it is read
        assert not ngff and _valid(out) == [["ch", "c", "z", "y", "x"], ["ch", "z", "y", "x"], ["ch", "z", "y", "x"]]
    else:  # nothing can be left out: written as it is, saying why it is not OME-Zarr
        assert len(ngff) == 1 and "has 6 axes ['t', 'ch', 'c', 'z', 'y', 'x']" in ngff[0]
    result = open_zarr_result(out)
    assert result.rgb.shape == tczyx.shape + (3,) and result.chroma_confidence.shape == tczyx.shape
    ref = nc.colorize(tczyx, model_path, **TILING)
    np.testing.assert_allclose(result.chroma_confidence.compute(), np.asarray(ref.chroma_confidence), atol=1e-6)
    axes, scale = read_geometry(out)
    assert [a["name"] for a in axes] == ["t", "ch", "z", "y", "x"] and scale == [1.0, 1.0, 2.0, 0.5, 0.5]


@pytest.mark.parametrize("order", ["ZCYX", "TZCYX"])
def test_imagej_channel_stacks_are_stored_in_ngff_order_and_read_back_in_theirs(model_path, tmp_path, order):
    zc = np.stack([np.stack([np.roll(CAM, z * 4, 1), 255 - np.roll(CAM, z * 4, 1)]) for z in range(3)])  # (z, c)
    arr = zc if order == "ZCYX" else np.stack([zc, zc[::-1]])[:, :2]  # (t, z, c): 2 x 2 x 2 planes
    tifffile.imwrite(tmp_path / "ij.tif", arr, imagej=True, resolution=(5, 5),
                     metadata={"axes": order, "spacing": 0.8, "unit": "um"})
    image = read_image(tmp_path / "ij.tif")
    lead = ["z", "c"] if order == "ZCYX" else ["t", "z", "c"]
    assert image.axes == lead
    origin = [0.0] * (len(lead) - 2) + [1.6, 0.0, 2.0, -1.0]  # (t,) z, c, y, x: plane 2 of a z-stack
    out = nc.colorize_to_zarr(image.data, tmp_path / "o.zarr", model_path, axes=image.axes, scale=image.scale(),
                              unit=image.unit, origin=origin, **TILING)
    names = _valid(out, rgb=order == "ZCYX")  # NGFF: time, channels, then space
    if order == "ZCYX":
        assert names == [["ch", "c", "z", "y", "x"], ["ch", "z", "y", "x"], ["ch", "z", "y", "x"]]
    else:  # t, ch and z of 2 planes each: 6 axes with the colour channels, valid as maps
        assert names[1:] == [["t", "ch", "z", "y", "x"]] * 2
    result = open_zarr_result(out)  # in the input's order, as the widget and the napari reader show it
    ref = nc.colorize(image.data, model_path, **TILING)
    np.testing.assert_allclose(result.rgb.compute(), np.asarray(ref.rgb), atol=1 / 255 + 1e-6)
    np.testing.assert_allclose(result.hue_entropy.compute(), np.asarray(ref.hue_entropy), atol=1e-6)
    axes, scale = read_geometry(out)
    assert [a["name"] for a in axes] == [{"c": "ch"}.get(n, n) for n in lead] + ["y", "x"]
    assert scale[lead.index("z")] == pytest.approx(0.8) and scale[-2:] == pytest.approx([0.2, 0.2])
    assert read_placement(out)[2] == origin  # the position too, in the input's order


def test_the_cli_says_an_ngff_warning_in_one_line_naming_the_input(capsys):
    from napari_colorize.cli_progress import warnings_as_lines
    from napari_colorize.engine.ome import NgffWarning

    with warnings_as_lines("tczyx.ome.tif"):
        warnings.warn("the colour image has 6 axes", NgffWarning, stacklevel=1)
    assert capsys.readouterr().err == "warning: tczyx.ome.tif: the colour image has 6 axes\n"


@pytest.mark.parametrize("broken", [float("nan"), float("inf"), "6"])
def test_a_broken_ome_zarr_position_is_ignored_not_fatal(tmp_path, broken):
    """A non-finite or non-numeric translation is no position: it used to stop the job (an output
    store cannot record it); the pixel size next to it is still read."""
    _ome_zarr(tmp_path / "tile.ome.zarr", np.stack([CAM, CAM[::-1]]), "zyx")
    g = zarr.open_group(str(tmp_path / "tile.ome.zarr"), mode="r+")
    ms = g.attrs["multiscales"]
    ms[0]["datasets"][0]["coordinateTransformations"] = [
        {"type": "scale", "scale": [2.0, 0.5, 0.5]}, {"type": "translation", "translation": [broken, 1.5, -4.0]}]
    g.attrs["multiscales"] = ms
    image = read_image(tmp_path / "tile.ome.zarr")
    assert image.translation() is None and image.scale() == pytest.approx([2.0, 0.5, 0.5])


@pytest.mark.parametrize("scale", [[2.0, 0.0, 0.0], [-1.0, 0.5, 0.5]])
def test_an_ome_zarr_pixel_size_of_zero_or_below_is_no_pixel_size(tmp_path, scale):
    """A size of 0 (an unset field) or a negative z step became the output's scale, and the
    input was then refused ("scale must be positive"), naming an option the CLI has not."""
    _ome_zarr(tmp_path / "tile.ome.zarr", np.stack([CAM, CAM[::-1]]), "zyx")
    g = zarr.open_group(str(tmp_path / "tile.ome.zarr"), mode="r+")
    ms = g.attrs["multiscales"]
    ms[0]["datasets"][0]["coordinateTransformations"] = [{"type": "scale", "scale": scale}]
    g.attrs["multiscales"] = ms
    assert read_image(tmp_path / "tile.ome.zarr").scale() is None
