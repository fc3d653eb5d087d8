"""OME-Zarr output: layout, resume after a kill, and the same job on a dask.distributed cluster."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import zarr
from skimage import data, transform

import napari_colorize as nc
from napari_colorize.engine import tile_cache
from napari_colorize.engine import zarr_io
from napari_colorize.engine.zarr_io import MARKERS, is_complete, open_zarr_result

TILING = {"tile_size": 128, "overlap": 32, "device": "cpu"}


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    torch.manual_seed(1)
    return nc.save_model(nc.build_model("compact"), tmp_path_factory.mktemp("model") / "compact.safetensors")


@pytest.fixture(scope="module")
def stack():
    cam = transform.resize(data.camera(), (200, 230), anti_aliasing=True)
    return (np.stack([cam, cam[::-1]]) * 65535).astype(np.uint16)


@pytest.fixture(autouse=True)
def _empty_cache():
    tile_cache.clear()
    yield
    tile_cache.clear()


def _read(path):
    root = zarr.open_group(str(path), mode="r")
    return np.asarray(root["0"]), np.asarray(root["confidence/0"]), np.asarray(root["entropy/0"])


def test_zarr_layout_and_values(model_path, stack, tmp_path):
    out = nc.colorize_to_zarr(stack, tmp_path / "out.zarr", model_path, scale=(0.25, 0.5), unit="micrometer",
                              rgb_dtype="float32", **TILING)
    assert is_complete(out) and not os.path.exists(out / MARKERS)
    root = zarr.open_group(str(out), mode="r")
    ms = root.attrs["multiscales"][0]
    assert [a["name"] for a in ms["axes"]] == ["z", "c", "y", "x"]
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [1.0, 1.0, 0.25, 0.5]
    assert root["confidence"].attrs["multiscales"][0]["axes"][-1] == {"name": "x", "type": "space", "unit": "micrometer"}
    rgb, conf, ent = _read(out)
    assert rgb.shape == (2, 3, 200, 230) and rgb.dtype == np.float32 and root["0"].chunks == (1, 3, 96, 96)
    ref = nc.colorize(stack, model_path, **TILING)
    np.testing.assert_array_equal(np.moveaxis(rgb, 1, -1), ref.rgb.compute())
    np.testing.assert_array_equal(conf, ref.chroma_confidence.compute())
    np.testing.assert_array_equal(ent, ref.hue_entropy.compute())
    back = open_zarr_result(out)
    np.testing.assert_array_equal(back.rgb.compute(), ref.rgb.compute())


@pytest.mark.parametrize("stripe", [4, 1])  # 1: three stripes, pieces handed on through the spill folder
def test_resume_after_a_kill_gives_identical_output(model_path, stack, tmp_path, monkeypatch, stripe):
    monkeypatch.setattr(zarr_io, "STRIPE_CHUNKS", stripe)
    full = nc.colorize_to_zarr(stack, tmp_path / "full.zarr", model_path, **TILING)

    class Killed(Exception):
        pass

    def kill_after(k):
        def progress(done, total):
            if done >= k:
                raise Killed
        return progress

    out = tmp_path / "resumed.zarr"
    with pytest.raises(Killed):
        nc.colorize_to_zarr(stack, out, model_path, progress=kill_after(5), **TILING)
    # Tasks already running in the killed run's worker threads finish their chunk (data
    # first, then its marker) after the exception surfaced: let them settle before counting.
    time.sleep(1.0)
    assert not is_complete(out)
    with pytest.raises(ValueError, match="unfinished"):
        open_zarr_result(out)
    finished = set(os.listdir(out / MARKERS))
    assert 5 <= len(finished) < 18
    # A chunk whose data was written but whose marker was not (killed in between) is redone.
    victim = sorted(finished)[0]
    os.remove(out / MARKERS / victim)
    root = zarr.open_group(str(out), mode="r+")
    plane, cy, cx = map(int, victim.split("."))
    root["0"][plane, :, cy * 96:(cy + 1) * 96, cx * 96:(cx + 1) * 96] = 0  # torn write
    written = []
    nc.colorize_to_zarr(stack, out, model_path, progress=lambda d, t: written.append(d), **TILING)
    assert len(written) == 18 - len(finished) + 1  # only the unfinished chunks were computed again
    assert is_complete(out)
    for a, b in zip(_read(full), _read(out)):
        np.testing.assert_array_equal(a, b)
    # A finished store is skipped; a different job is refused without losing it.
    nc.colorize_to_zarr(stack, out, model_path, progress=lambda d, t: pytest.fail("recomputed"), **TILING)
    with pytest.raises(FileExistsError, match="different"):
        nc.colorize_to_zarr(stack, out, model_path, saturation=2.0, **TILING)
    assert is_complete(out)


@pytest.mark.parametrize("workers", [1, 3])  # 1: row by row (a CPU); 3: whole stripes (a GPU's threads)
def test_stripes_compute_each_tile_once(model_path, stack, tmp_path, monkeypatch, workers):
    # One chunk column per stripe: the tiles on each stripe's edge feed the next stripe through
    # the spill folder instead of being computed again, and the result does not change.
    from napari_colorize import inference
    from napari_colorize.engine import TilePlan

    whole = nc.colorize_to_zarr(stack, tmp_path / "whole.zarr", model_path, **TILING)
    monkeypatch.setattr(zarr_io, "STRIPE_CHUNKS", 1)
    real_write = zarr_io._write_in_order
    monkeypatch.setattr(zarr_io, "_write_in_order", lambda dsk, keys, n, spill: real_write(dsk, keys, workers, spill))
    calls, real = [], inference.predict

    def counting(model, gray, *args, **kwargs):
        calls.append(gray.shape[0])
        return real(model, gray, *args, **kwargs)

    monkeypatch.setattr(inference, "predict", counting)
    striped = nc.colorize_to_zarr(stack, tmp_path / "striped.zarr", model_path, **TILING)
    plan = TilePlan.create(stack.shape, TILING["tile_size"], TILING["overlap"])
    assert plan.tx.n_chunks == 3 and sum(calls) == plan.n_tiles
    assert not os.path.exists(striped / zarr_io.SPILL)
    for a, b in zip(_read(whole), _read(striped)):
        np.testing.assert_array_equal(a, b)


def test_never_deletes_foreign_folders(model_path, stack, tmp_path):
    foreign = tmp_path / "mine.zarr"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        nc.colorize_to_zarr(stack, foreign, model_path, overwrite=True, **TILING)
    assert (foreign / "precious.txt").read_text() == "keep me"


def _single_process_reference(model_path, stack, out, threads):
    """The single-process job in a fresh interpreter with ``threads`` torch threads.

    oneDNN picks its kernels, and with them how sums are split, from the thread count
    when a shape is first seen in a process; dask workers run torch on one thread
    (dask sets OMP_NUM_THREADS=1), so the reference must use one thread from the start.
    """
    src = out.parent / "stack.npy"
    np.save(src, stack)
    script = (f"import numpy as np, torch, napari_colorize as nc; torch.set_num_threads({threads}); "
              f"nc.colorize_to_zarr(np.load({str(src)!r}), {str(out)!r}, {str(model_path)!r}, "
              f"tile_size={TILING['tile_size']}, overlap={TILING['overlap']}, device='cpu')")
    subprocess.run([sys.executable, "-c", script], check=True, timeout=300)
    return out


def test_local_cluster_matches_single_process(model_path, stack, tmp_path):
    from napari_colorize.engine.distributed import local_cluster

    single = _single_process_reference(model_path, stack, tmp_path / "single.zarr", threads=1)
    ticks = []
    with local_cluster(2) as client:
        dist = nc.colorize_to_zarr(stack, tmp_path / "dist.zarr", model_path, client=client,
                                   progress=lambda d, t: ticks.append((d, t)), **TILING)
        lazy = nc.colorize(stack[:1], model_path, client=client, **TILING)
        from_cluster = client.compute(lazy.hue_entropy).result()
        # One model per worker: each worker process loaded the file once.
        loaded = client.run(lambda: len(__import__("napari_colorize.api", fromlist=["x"])._MODEL_CACHE))
    assert ticks[-1] == (18, 18)
    assert set(loaded.values()) == {1}
    (rgb_a, conf_a, ent_a), (rgb_b, conf_b, ent_b) = _read(single), _read(dist)
    np.testing.assert_array_equal(rgb_b, rgb_a)
    np.testing.assert_array_equal(conf_b, conf_a)
    np.testing.assert_array_equal(ent_b, ent_a)
    np.testing.assert_array_equal(from_cluster, ent_a[:1])


def test_client_needs_a_model_path(stack):
    class FakeClient:
        pass

    with pytest.raises(ValueError, match="path"):
        nc.colorize(stack, nc.build_model("compact"), client=FakeClient(), **TILING)


def test_zarr_io_works_with_installed_zarr():
    assert zarr_io._ZARR3 == (int(zarr.__version__.split(".")[0]) >= 3)
