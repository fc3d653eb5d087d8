"""The napari reader: a store the CLI wrote opens as its three multiscale layers; others are left alone.

Run: ``QT_API=pyqt6 xvfb-run -a pytest tests/_qt/test_reader.py -q``.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

import dask.array as da
import tifffile
import torch
import zarr
from skimage import data, transform

import napari_colorize as nc
from napari_colorize import cli
from napari_colorize._qt._layers import METADATA_KEY
from napari_colorize._qt._reader import napari_get_reader, source_name
from napari_colorize.engine import pyramid
from napari_colorize.engine.cache import clear_caches

PLUGIN = "napari-colorize"
TILES = ["--tile-size", "128", "--overlap", "32", "--device", "cpu", "--no-progress"]
#: (y, x) of the levels of a 150 x 170 plane when levels go down to 64 px.
LEVELS = [(150, 170), (75, 85), (38, 43)]


@pytest.fixture(scope="module")
def cli_store(tmp_path_factory):
    """``napari-colorize colorize stack.tif -o out --format zarr``: a z-stack with a 0.5 um pixel size."""
    torch.manual_seed(3)
    root = tmp_path_factory.mktemp("reader")
    model = nc.save_model(nc.build_model("compact"), root / "m.safetensors")
    cam = transform.resize(data.camera(), LEVELS[0], anti_aliasing=True)
    stack = (np.stack([cam, cam[::-1]]) * 65535).astype(np.uint16)
    tifffile.imwrite(root / "stack.tif", stack, imagej=True, resolution=(2.0, 2.0),
                     metadata={"unit": "um", "axes": "ZYX"})
    clear_caches()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pyramid, "MAX_PLANE", 64)  # a pyramid on a small image
        code = cli.main(["colorize", str(root / "stack.tif"), "-o", str(root / "out"), "--format", "zarr",
                         "--model", str(model), *TILES])
    assert code == 0
    return root / "out" / "stack_colorized.zarr"


def test_reader_opens_a_store_the_cli_wrote(make_napari_viewer, cli_store):
    viewer = make_napari_viewer()
    layers = viewer.open(str(cli_store), plugin=PLUGIN)
    # The widget's names and order: the colour image last, so on top.
    names = ["stack hue entropy", "stack chroma confidence", "stack colorized"]
    assert [layer.name for layer in viewer.layers] == names
    assert len(layers) == 3
    store = zarr.open_group(str(cli_store), mode="r")
    for layer in viewer.layers:
        assert layer.multiscale and len(layer.data) == len(LEVELS)
        assert all(isinstance(level, da.Array) for level in layer.data)  # lazy
        assert [tuple(level.shape[1:3]) for level in layer.data] == LEVELS
        np.testing.assert_allclose(layer.scale, (1.0, 0.5, 0.5))
        np.testing.assert_allclose(layer.translate, (0.0, 0.0, 0.0))  # the TIFF gives no position
        assert tuple(layer.axis_labels) == ("z", "y", "x")
        assert [str(u) for u in layer.units[1:]] == ["micrometer", "micrometer"]
        meta = layer.metadata[METADATA_KEY]
        assert meta["source"] == "stack" and meta["store"] == str(cli_store) and meta["job"]["complete"]
    rgb = viewer.layers["stack colorized"]
    assert rgb.rgb and rgb.data[0].dtype == np.uint8 and tuple(rgb.contrast_limits) == (0, 255)
    np.testing.assert_array_equal(np.asarray(rgb.data[1]), np.moveaxis(np.asarray(store["1"]), 0, -1))
    confidence = viewer.layers["stack chroma confidence"]
    assert confidence.colormap.name == "viridis" and tuple(confidence.contrast_limits) == (0, 1)
    np.testing.assert_array_equal(np.asarray(confidence.data[2]), np.asarray(store["confidence/2"]))


def test_a_store_without_levels_opens_as_plain_layers(tmp_path):
    # A plane under the pyramid's top size has level 0 only: one array per layer, not a
    # list of rows taken for levels.
    torch.manual_seed(3)
    plane = transform.resize(data.camera(), LEVELS[0], anti_aliasing=True).astype(np.float32)
    store = nc.colorize_to_zarr(plane, tmp_path / "one_colorized.zarr", nc.build_model("compact"), device="cpu")
    from napari_colorize._qt._reader import napari_get_reader
    layers = napari_get_reader(str(store))(str(store))
    assert [kw["name"] for _, kw, _ in layers] == ["one hue entropy", "one chroma confidence", "one colorized"]
    for layer_data, kwargs, _ in layers:
        assert not kwargs["multiscale"] and isinstance(layer_data, da.Array)
        assert tuple(layer_data.shape[:2]) == LEVELS[0]
    assert tuple(layers[-1][1]["contrast_limits"]) == (0, 255) and layers[-1][0].dtype == np.uint8


def test_reader_gives_a_reordered_store_back_in_the_inputs_axis_order(tmp_path):
    # An ImageJ (z, c) stack is stored (ch, z) for OME-NGFF; its layers keep the input's order.
    torch.manual_seed(3)
    plane = transform.resize(data.camera(), (96, 112), anti_aliasing=True).astype(np.float32)
    zc = np.stack([np.stack([plane, 1 - plane])] * 3)  # (z, c, y, x)
    store = nc.colorize_to_zarr(zc, tmp_path / "zc_colorized.zarr", nc.build_model("compact"), axes=["z", "c"],
                                scale=[0.8, 1.0, 0.2, 0.2], origin=[1.6, 0.0, 2.0, -1.0], device="cpu")
    assert zarr.open_group(str(store), mode="r")["confidence/0"].shape == (2, 3, 96, 112)
    layers = napari_get_reader(str(store))(str(store))
    for layer_data, kwargs, _ in layers:
        assert tuple(layer_data.shape[:4]) == (3, 2, 96, 112)
        assert tuple(kwargs["axis_labels"]) == ("z", "ch", "y", "x")
        np.testing.assert_allclose(kwargs["scale"], (0.8, 1.0, 0.2, 0.2))
        np.testing.assert_allclose(kwargs["translate"], (1.6, 0.0, 2.0, -1.0))  # also in the input's order


def test_a_store_written_with_an_origin_reopens_where_its_source_lies(make_napari_viewer, tmp_path):
    torch.manual_seed(3)
    cam = transform.resize(data.camera(), LEVELS[0], anti_aliasing=True).astype(np.float32)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pyramid, "MAX_PLANE", 64)  # a pyramid on a small image
        store = nc.colorize_to_zarr(np.stack([cam, cam[::-1]]), tmp_path / "tile_colorized.zarr",
                                    nc.build_model("compact"), scale=(2.0, 0.5, 0.25), origin=(6.0, 1.5, -4.0),
                                    unit="micrometer", device="cpu")
    from napari.layers import Image

    source = Image(np.stack([cam, cam[::-1]]), scale=(2.0, 0.5, 0.25), translate=(6.0, 1.5, -4.0))
    viewer = make_napari_viewer()
    viewer.open(str(store), plugin=PLUGIN)
    assert len(viewer.layers) == 3
    for layer in viewer.layers:
        assert layer.multiscale and len(layer.data) == len(LEVELS)
        np.testing.assert_allclose(layer.scale, (2.0, 0.5, 0.25))
        np.testing.assert_allclose(layer.translate, (6.0, 1.5, -4.0))
        for pixel in ((0, 0, 0), (1, 37, 101)):  # each pixel overlays the source's
            np.testing.assert_allclose(layer.data_to_world(pixel), source.data_to_world(pixel))


def test_reader_declines_other_zarr_stores(tmp_path):
    from ome_zarr.writer import write_image

    other = zarr.open_group(str(tmp_path / "other.zarr"), mode="w", zarr_format=2)
    write_image(np.zeros((64, 64), np.uint8), other, axes="yx")
    assert napari_get_reader(str(tmp_path / "other.zarr")) is None
    plain = tmp_path / "plain.zarr"
    zarr.open_array(str(plain), mode="w", shape=(8, 8), dtype="uint8")
    assert napari_get_reader(str(plain)) is None
    assert napari_get_reader(str(tmp_path / "missing.zarr")) is None
    (tmp_path / "folder.zarr").mkdir()
    assert napari_get_reader(str(tmp_path / "folder.zarr")) is None


def test_reader_refuses_an_unfinished_store(cli_store, tmp_path):
    import shutil

    unfinished = tmp_path / "half_colorized.zarr"
    shutil.copytree(cli_store, unfinished)
    group = zarr.open_group(str(unfinished), mode="r+")
    group.attrs[METADATA_KEY] = dict(group.attrs[METADATA_KEY], complete=False)
    reader = napari_get_reader(str(unfinished))
    assert reader is not None  # ours: napari-ome-zarr would show its empty levels as black
    with pytest.raises(ValueError, match="unfinished"):
        reader(str(unfinished))


def test_napari_ome_zarr_opens_our_store_with_its_levels(cli_store):
    from napari_ome_zarr import (
        _reader as ome_reader,  # in the testing extra: must be installed
    )

    reader = ome_reader.napari_get_reader(str(cli_store))
    assert reader is not None
    (rgb, kwargs, kind), *_ = reader(str(cli_store))
    assert kind == "image" and kwargs["channel_axis"] == 0  # red, green, blue as three layers
    assert [tuple(level.shape) for level in rgb] == [(3, 2) + shape for shape in LEVELS]
    for group in ("confidence", "entropy"):
        (maps, _, _), *_ = ome_reader.napari_get_reader(str(cli_store / group))(str(cli_store / group))
        assert [tuple(level.shape) for level in maps] == [(2,) + shape for shape in LEVELS]


def test_source_name():
    assert source_name("/data/photo_colorized.zarr") == "photo"
    assert source_name("/data/photo_colorized.zarr/") == "photo"
    assert source_name("out.zarr") == "out"


def test_manifest_declares_the_reader():
    import npe2

    manifest = npe2.PluginManifest.from_distribution(PLUGIN)
    (reader,) = manifest.contributions.readers
    assert reader.filename_patterns == ["*.zarr"] and reader.accepts_directories
    command = next(c for c in manifest.contributions.commands if c.id == reader.command)
    assert command.python_name == "napari_colorize._qt._reader:napari_get_reader"


def test_a_run_of_the_source_leaves_a_reopened_store_alone(make_napari_viewer, qtbot, cli_store):
    """The reader's layers carry the store, not a source id: a run of a layer of the source's name
    used to take them over by name (new pixels in place, the store's metadata gone)."""
    from widget_driver import open_widget, run_and_wait

    viewer = make_napari_viewer()
    viewer.open(str(cli_store), plugin=PLUGIN)
    stored = {layer.name: np.asarray(layer.data[0]) for layer in viewer.layers}
    viewer.add_image(np.linspace(0, 1, 64 * 80, dtype=np.float32).reshape(64, 80), name="stack")
    widget = open_widget(viewer, str(cli_store.parent.parent / "m.safetensors"))
    run_and_wait(qtbot, widget)
    for name, pixels in stored.items():
        (layer,) = [lay for lay in viewer.layers if lay.name == name and "store" in lay.metadata[METADATA_KEY]]
        np.testing.assert_array_equal(np.asarray(layer.data[0]), pixels)
    assert len(viewer.layers) == 3 + 1 + 3  # the store's, the source, the run's


def test_a_widget_store_keeps_time_units_and_one_space_unit(make_napari_viewer, qtbot, cli_store, tmp_path):
    """Only x's unit was stored: a time axis lost "second" (the reopened layers then clashed with
    their source's units), and z in micrometres over y, x in nanometres was stored 1000x too small,
    its pixel size first, then (a user test) its position."""
    from widget_driver import open_widget, run_and_wait

    from napari_colorize.engine.zarr_read import read_placement

    viewer = make_napari_viewer()
    stack = np.linspace(0, 1, 2 * 2 * 64 * 64, dtype=np.float32).reshape(2, 2, 64, 64)
    viewer.add_image(stack, name="series", scale=(30.0, 2.0, 100.0, 100.0), axis_labels=("t", "z", "y", "x"),
                     translate=(60.0, 1.5, 300.0, 0.0), units=("second", "micrometer", "nanometer", "nanometer"))
    widget = open_widget(viewer, str(cli_store.parent.parent / "m.safetensors"))
    widget.scope.value = "whole stack"
    widget.output.value = "zarr file"
    widget.zarr_path.value = str(tmp_path / "series.zarr")
    run_and_wait(qtbot, widget)
    assert widget.status.value.endswith(f"; written to {tmp_path / 'series.zarr'}")  # a typed name: where it went
    axes, scale, translate = read_placement(tmp_path / "series.zarr")
    assert [a.get("unit") for a in axes] == ["second", "nanometer", "nanometer", "nanometer"]
    np.testing.assert_allclose(scale, [30.0, 2000.0, 100.0, 100.0])
    np.testing.assert_allclose(translate, [60.0, 1500.0, 300.0, 0.0])  # z 1.5 um is 1500 nm
