"""The CLI's PNG and TIFF writers: chunk by chunk in stripe order, equal to the whole result."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import tifffile
import torch

import napari_colorize as nc
from napari_colorize import inference
from napari_colorize.cli_write import write_pngs, write_tiffs
from napari_colorize.engine.pipeline import colorize_stacked
from napari_colorize.engine.stripes import STRIPE_CHUNKS
from napari_colorize.io.write import to_uint8
from napari_colorize.outputs import channel_slices, get_output, output_keys


def _counted_model(monkeypatch):
    """A small random model, and a list that grows by one per network pass (batch size 1: per tile)."""
    torch.manual_seed(0)
    calls = []
    histograms = inference.histograms

    def counting(*args, **kwargs):
        calls.append(1)
        return histograms(*args, **kwargs)

    monkeypatch.setattr(inference, "histograms", counting)
    return nc.build_model("compact").eval(), calls


def _expected(whole: np.ndarray, key: str, rgb8: bool) -> np.ndarray:
    values = whole[..., channel_slices()[get_output(key).name]]
    return to_uint8(values) if rgb8 else values


def test_tiffs_of_a_wide_stack_are_written_in_stripes_each_tile_once(tmp_path, monkeypatch):
    # A row of chunks as wide as the image used to be computed at once (3.5 GB for a 16000 px
    # wide scan); now the zarr writer's stripes fill the memory-mapped files.
    gray = np.random.default_rng(1).random((2, 150, 700), dtype=np.float32)
    model, calls = _counted_model(monkeypatch)
    stacked, plan, _ = colorize_stacked(gray, model, device="cpu", tile_size=64, overlap=16, batch_size=1,
                                        cache=False)
    assert plan.tx.n_chunks > 2 * STRIPE_CHUNKS and plan.ty.n_chunks > 1  # several stripes and rows
    out = tmp_path / "out"
    out.mkdir()
    targets = {key: out / f"{key}.tif" for key in output_keys()}
    write_tiffs(stacked, plan, targets, "uint8", axes=["z"], pixel_size=None, z_step=None, device="cpu")
    assert len(calls) == plan.n_tiles  # no tile computed twice, although the stripes share tiles
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in targets.values())  # no spill left
    whole = np.asarray(stacked.compute())
    for key, path in targets.items():
        np.testing.assert_array_equal(tifffile.imread(path), _expected(whole, key, get_output(key).is_rgb))


def test_pngs_are_written_in_stripes_equal_to_the_whole_result(tmp_path, monkeypatch):
    gray = np.random.default_rng(2).random((130, 600), dtype=np.float32)
    model, calls = _counted_model(monkeypatch)
    stacked, plan, _ = colorize_stacked(gray, model, device="cpu", tile_size=64, overlap=16, batch_size=1,
                                        cache=False)
    assert plan.tx.n_chunks > STRIPE_CHUNKS
    targets = {key: tmp_path / f"{key}.png" for key in output_keys()}
    write_pngs(stacked, plan, targets, tmp_path / "in.png", None, device="cpu")
    assert len(calls) == plan.n_tiles
    whole = np.asarray(stacked.compute())
    for key, path in targets.items():
        np.testing.assert_array_equal(iio.imread(path), _expected(whole, key, True))


def test_a_failed_tile_waits_for_the_copies_in_flight(tmp_path):
    # dask returns the first error while other tasks still run: a copy into a TIFF's memory map
    # then ran on after the caller closed the map (a segfault on a GPU or on Ctrl-C).
    import threading
    import time

    from napari_colorize.engine import stripes

    copied = threading.Event()

    def slow_copy():
        time.sleep(0.5)
        copied.set()

    def failing_tile():
        time.sleep(0.05)
        raise RuntimeError("a tile failed")

    dsk = {("w", 0, 0): (slow_copy,), ("w", 0, 1): (failing_tile,)}
    spill = tmp_path / "spill"
    spill.mkdir()
    try:
        stripes.write_in_order(dsk, list(dsk), None, str(spill))  # several threads, as on a GPU
    except RuntimeError as err:
        assert "a tile failed" in str(err)
    else:
        raise AssertionError("the failed tile was not reported")
    assert copied.is_set()  # the copy in flight had finished before the error reached the caller
