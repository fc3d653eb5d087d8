"""OME-Zarr output: layout, pyramid levels, resume after a kill, and the same job on a dask.distributed cluster."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import warnings

import dask.array as da
import numpy as np
import pytest
import torch
import zarr
from _runs import held_by_another_run
from skimage import data, transform

import napari_colorize as nc
from napari_colorize.engine import pyramid, store, stripes, zarr_io
from napari_colorize.engine.cache import clear_caches
from napari_colorize.engine.jobs import Cancelled
from napari_colorize.engine.zarr_read import read_placement
from napari_colorize.engine.zarr_io import (
    MARKERS,
    is_complete,
    open_zarr_levels,
    open_zarr_result,
)


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
    clear_caches()
    yield
    clear_caches()


@pytest.fixture(autouse=True)
def _small_pyramid(monkeypatch):
    # Levels down to 64 px: the 200 x 230 test planes get levels 1 (100 x 115: 2 x 2 chunks of
    # 96, an odd width) and 2 (50 x 58), so every test here also writes and resumes a pyramid.
    monkeypatch.setattr(pyramid, "MAX_PLANE", 64)


def _read(path):
    root = zarr.open_group(str(path), mode="r")
    return np.asarray(root["0"]), np.asarray(root["confidence/0"]), np.asarray(root["entropy/0"])


def _read_levels(path):
    """Every array of every level of a store, in a fixed order."""
    root = zarr.open_group(str(path), mode="r")
    return [np.asarray(root[f"{parent}{n}"]) for parent in ("", "confidence/", "entropy/") for n in range(3)]


def test_zarr_layout_and_values(model_path, stack, tmp_path):
    out = nc.colorize_to_zarr(stack, tmp_path / "out.zarr", model_path, scale=(0.25, 0.5), unit="micrometer",
                              rgb_dtype="float32", **TILING)
    assert is_complete(out) and not os.path.exists(out / MARKERS)
    root = zarr.open_group(str(out), mode="r")
    ms = root.attrs["multiscales"][0]
    # NGFF 0.4 orders axes time, channel, space: the colour channels come before z.
    assert [a["name"] for a in ms["axes"]] == ["c", "z", "y", "x"]
    assert [d["path"] for d in ms["datasets"]] == ["0", "1", "2"]
    assert ms["datasets"][0]["coordinateTransformations"] == [  # no origin given: at the origin, as ever
        {"type": "scale", "scale": [1.0, 1.0, 0.25, 0.5]}, {"type": "translation", "translation": [0.0] * 4}]
    assert read_placement(out)[2] == [0.0, 0.0, 0.0]
    assert ms["datasets"][2]["coordinateTransformations"] == [
        {"type": "scale", "scale": [1.0, 1.0, 1.0, 2.0]},
        {"type": "translation", "translation": [0.0, 0.0, 0.375, 0.75]}]  # the centre of a 4 x 4 block
    x_axis = root["confidence"].attrs["multiscales"][0]["axes"][-1]
    assert x_axis == {"name": "x", "type": "space", "unit": "micrometer"}
    rgb, conf, ent = _read(out)
    assert rgb.shape == (3, 2, 200, 230) and rgb.dtype == np.float32 and root["0"].chunks == (3, 1, 96, 96)
    assert root["1"].shape == (3, 2, 100, 115) and root["2"].shape == (3, 2, 50, 58)
    assert root["2"].chunks == (3, 1, 50, 58)
    assert root["confidence/2"].shape == (2, 50, 58)
    ref = nc.colorize(stack, model_path, **TILING)
    np.testing.assert_array_equal(np.moveaxis(rgb, 0, -1), ref.rgb.compute())
    np.testing.assert_array_equal(conf, ref.chroma_confidence.compute())
    np.testing.assert_array_equal(ent, ref.hue_entropy.compute())
    back = open_zarr_result(out)
    np.testing.assert_array_equal(back.rgb.compute(), ref.rgb.compute())


@pytest.mark.parametrize("stripe", [4, 1])  # 1: three stripes, pieces handed on through the spill folder
def test_resume_after_a_kill_gives_identical_output(model_path, stack, tmp_path, monkeypatch, stripe):
    monkeypatch.setattr(stripes, "STRIPE_CHUNKS", stripe)
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
    victim = min(finished)
    os.remove(out / MARKERS / victim)
    root = zarr.open_group(str(out), mode="r+")
    plane, cy, cx = map(int, victim.split("."))
    root["0"][:, plane, cy * 96:(cy + 1) * 96, cx * 96:(cx + 1) * 96] = 0  # torn write
    written = []
    nc.colorize_to_zarr(stack, out, model_path, progress=lambda d, t: written.append(d), **TILING)
    # The bar starts at the chunks kept, then only the unfinished chunks are computed again.
    assert written[0] == len(finished) - 1 and len(written) == 1 + 18 - len(finished) + 1
    assert is_complete(out)
    for a, b in zip(_read_levels(full), _read_levels(out)):
        np.testing.assert_array_equal(a, b)
    # A finished store is skipped; a different job is refused without losing it.
    ticks = []  # nothing recomputed, and a progress bar is told it is full
    nc.colorize_to_zarr(stack, out, model_path, progress=lambda d, t: ticks.append((d, t)), **TILING)
    assert ticks == [(18, 18)]
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
    monkeypatch.setattr(stripes, "STRIPE_CHUNKS", 1)
    real_write = stripes.write_in_order
    monkeypatch.setattr(stripes, "write_in_order", lambda dsk, keys, n, spill: real_write(dsk, keys, workers, spill))
    calls, real = [], inference.histograms

    def counting(model, gray, *args, **kwargs):
        calls.append(gray.shape[0])
        return real(model, gray, *args, **kwargs)

    monkeypatch.setattr(inference, "histograms", counting)
    striped = nc.colorize_to_zarr(stack, tmp_path / "striped.zarr", model_path, **TILING)
    plan = TilePlan.create(stack.shape, TILING["tile_size"], TILING["overlap"])
    assert plan.tx.n_chunks == 3 and sum(calls) == plan.n_tiles
    assert not os.path.exists(striped / store.SPILL)
    for a, b in zip(_read(whole), _read(striped)):
        np.testing.assert_array_equal(a, b)


def test_never_deletes_foreign_folders(model_path, stack, tmp_path):
    foreign = tmp_path / "mine.zarr"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        nc.colorize_to_zarr(stack, foreign, model_path, overwrite=True, **TILING)
    assert (foreign / "precious.txt").read_text() == "keep me"


def test_a_store_killed_while_being_created_is_ours(model_path, stack, tmp_path, monkeypatch):
    # Killed after the group was made, while its arrays were created (before the job record).
    out = tmp_path / "out.zarr"
    real = zarr_io._create_output

    def killed(group, *args, **kwargs):
        real(group, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(zarr_io, "_create_output", killed)
    with pytest.raises(KeyboardInterrupt):
        nc.colorize_to_zarr(stack, out, model_path, **TILING)
    monkeypatch.setattr(zarr_io, "_create_output", real)
    assert zarr_io.read_job(out) == {"complete": False}  # ours and unfinished, not a foreign folder
    # It holds no result (its job record comes before any chunk), so the same call redoes it,
    # without overwrite (it was refused as "a different colorization job").
    nc.colorize_to_zarr(stack, out, model_path, **TILING)
    assert zarr_io.is_complete(out)


def test_a_store_whose_record_cannot_be_read_is_never_deleted(model_path, stack, tmp_path):
    # Torn attributes (or a permission or network error) prove nothing: refused, not wiped.
    out = tmp_path / "out.zarr"
    nc.colorize_to_zarr(stack[:1], out, model_path, **TILING)
    os.makedirs(out / MARKERS, exist_ok=True)  # as an unfinished store has
    (out / ".zattrs").write_text("{")  # stores are written as zarr format 2
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    with pytest.raises(FileExistsError, match="job record cannot be read .*run again, or pass overwrite=True"):
        nc.colorize_to_zarr(stack[:1], out, model_path, **TILING)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


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


def test_local_cluster_matches_single_process(model_path, stack, tmp_path, monkeypatch):
    from napari_colorize.engine.distributed import local_cluster, worker_device_kind

    single = _single_process_reference(model_path, stack, tmp_path / "single.zarr", threads=1)
    ticks = []
    with local_cluster(2) as client:
        dist = nc.colorize_to_zarr(stack, tmp_path / "dist.zarr", model_path, client=client,
                                   progress=lambda d, t: ticks.append((d, t)), **TILING)
        # The store's fingerprint is the input's, not of its blocks' trip to the workers: it resumes.
        nc.colorize_to_zarr(stack, tmp_path / "dist.zarr", model_path, client=client, **TILING)
        lazy = nc.colorize(stack[:1], model_path, client=client, **TILING)
        # In memory through the cluster: progress per plane, and cancel stops it.
        planes = []
        small = np.ascontiguousarray(stack[:, :96, :96])
        in_memory = nc.colorize(small, model_path, client=client, progress=lambda d, t: planes.append((d, t)),
                                **TILING)
        # The image's blocks go to the workers, not through the scheduler inside the graph.
        from napari_colorize.engine.pipeline import colorize_stacked

        graph = dict(colorize_stacked(small, model_path, client=client, **TILING)[0].dask)
        assert not [v for v in graph.values() if isinstance(v, np.ndarray)]
        stop = threading.Event()
        stop.set()
        with pytest.raises(Cancelled):
            nc.colorize(small, model_path, client=client, cancel=stop, **TILING)
        from_cluster = client.compute(lazy.hue_entropy).result()
        # One model per worker: each worker process loaded the file once.
        loaded = client.run(lambda: len(__import__("napari_colorize.engine.models", fromlist=["x"])._MODEL_CACHE))
        # Checked on the workers before a job: one clear error, and no store left to block the rerun.
        assert worker_device_kind(client, "auto", "fp32", model_path) == "cpu"
        probes, real_run = [], client.run
        monkeypatch.setattr(client, "run", lambda *a, **k: probes.append(a[0]) or real_run(*a, **k))
        assert worker_device_kind(client, "auto", "fp32", model_path) == "cpu"
        assert probes == []  # these workers passed: not asked again (a folder of files asks once)
        monkeypatch.undo()
        with pytest.raises(ValueError, match=r"on dask worker \S+ \(2 of 2 workers\): precision='bf16'"):
            nc.colorize_to_zarr(stack, tmp_path / "bf16.zarr", model_path, client=client, precision="bf16", **TILING)
        assert not (tmp_path / "bf16.zarr").exists()
        # A TIFF read lazily (a large one) goes to the workers by path, not as an open file.
        import tifffile

        from napari_colorize.io import read_image, tiff

        tifffile.imwrite(tmp_path / "stack.tif", stack, tile=(64, 64))
        monkeypatch.setattr(tiff, "LAZY_TIFF_BYTES", 0)
        lazy_tiff = read_image(tmp_path / "stack.tif").data
        assert hasattr(lazy_tiff, "dask")
        from_tiff = nc.colorize_to_zarr(lazy_tiff, tmp_path / "tiff.zarr", model_path, client=client, **TILING)
        with pytest.raises(ValueError, match="is not there; put it on a file system every worker sees"):
            worker_device_kind(client, "auto", "fp32", str(tmp_path / "gone.safetensors"))
    assert ticks[-1] == (18, 18)
    assert planes == [(i, len(small)) for i in range(1, len(small) + 1)] and not in_memory.info["lazy"]
    np.testing.assert_allclose(in_memory.rgb, nc.colorize(small, model_path, **TILING).rgb, atol=1e-5)
    assert set(loaded.values()) <= {0, 1} and max(loaded.values()) == 1  # never twice (a worker may get no tile)
    (rgb_a, conf_a, ent_a), (rgb_b, conf_b, ent_b) = _read(single), _read(dist)
    np.testing.assert_array_equal(rgb_b, rgb_a)
    np.testing.assert_array_equal(conf_b, conf_a)
    np.testing.assert_array_equal(ent_b, ent_a)
    np.testing.assert_array_equal(from_cluster, ent_a[:1])
    np.testing.assert_array_equal(_read(from_tiff)[0], rgb_a)


def test_workers_get_the_model_path_as_the_user_wrote_it(tmp_path, model_path, monkeypatch):
    import shutil

    from napari_colorize.engine import distributed, pipeline

    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(model_path, home / "m.safetensors")
    monkeypatch.setenv("HOME", str(home))
    _, source, _ = pipeline._model_meta("~/m.safetensors", "cpu", object())
    assert source == str(home / "m.safetensors")  # not <cwd>/~/m.safetensors
    assert distributed._probe_worker("cpu", "fp32", source) == ("ok", "cpu")
    monkeypatch.setattr(os, "access", lambda p, mode: False)  # saved 0600 by another user
    state, message = distributed._probe_worker("cpu", "fp32", source)
    assert state == "error" and message.endswith(f"cannot be read by the worker's user; make it readable "
                                                 f"(chmod a+r {source})")


def test_a_cluster_without_workers_is_one_clear_error(monkeypatch):
    from napari_colorize.engine import distributed

    class NoWorkers:
        def wait_for_workers(self, n, timeout):
            raise TimeoutError

    with pytest.raises(RuntimeError, match=r"no dask worker joined \(and stayed in\) the cluster within \d+ s"):
        distributed.worker_device_kind(NoWorkers(), "auto", "fp32", None)


_CALLS: list = []  # module level: the in-process workers run this module's function, not a pickled copy


def _counted_tile(value: int) -> np.ndarray:
    _CALLS.append(value)
    return np.full((4, 4), value)


def test_arrays_computed_on_a_cluster_as_one_job_share_their_tasks():
    """TIFF bands on a cluster: a tile on the border of two bands runs once, not once per band."""
    import dask
    from distributed import Client, LocalCluster

    from napari_colorize.engine.distributed import compute_as_completed

    _CALLS.clear()
    ticks = []
    shared = da.from_delayed(dask.delayed(_counted_tile)(3), (4, 4), dtype=int)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        got = dict(compute_as_completed(client, [shared + 1, shared[:2] * 2], lambda d, t: ticks.append((d, t))))
    assert _CALLS == [3]
    np.testing.assert_array_equal(got[0], np.full((4, 4), 4))
    np.testing.assert_array_equal(got[1], np.full((2, 4), 6))
    assert ticks == [(1, 2), (2, 2)]


def test_client_needs_a_model_path(stack):
    class FakeClient:
        pass

    with pytest.raises(ValueError, match="path"):
        nc.colorize(stack, nc.build_model("compact"), client=FakeClient(), **TILING)


def test_zarr_io_works_with_installed_zarr():
    assert (int(zarr.__version__.split(".")[0]) >= 3) == store.ZARR3


def _mean_2x2(level: np.ndarray) -> np.ndarray:
    """The mean of 2 x 2 blocks in y, x, written here independently of the engine: an odd
    last row or column is averaged over the pixels it has (float64)."""
    level = np.asarray(level, np.float64)
    h, w = level.shape[-2:]
    padded = np.pad(level, [(0, 0)] * (level.ndim - 2) + [(0, h % 2), (0, w % 2)], mode="edge")
    return padded.reshape(*padded.shape[:-2], (h + 1) // 2, 2, (w + 1) // 2, 2).mean(axis=(-3, -1))


def _block_mean(level0: np.ndarray, factor: int) -> np.ndarray:
    """The mean of whole ``factor`` x ``factor`` blocks of level 0 (the image's uneven edge left out)."""
    h, w = (n // factor for n in level0.shape[-2:])
    cut = np.asarray(level0, np.float64)[..., :h * factor, :w * factor]
    return cut.reshape(*cut.shape[:-2], h, factor, w, factor).mean(axis=(-3, -1))


@pytest.mark.parametrize("rgb_dtype", ["uint8", "float32"])
def test_pyramid_levels_are_mean_downsamplings_and_valid_ome_zarr(model_path, stack, tmp_path, rgb_dtype):
    from ome_zarr_models.v04 import Image

    out = nc.colorize_to_zarr(stack, tmp_path / "out.zarr", model_path, scale=(0.25, 0.5), unit="micrometer",
                              rgb_dtype=rgb_dtype, **TILING)
    root = zarr.open_group(str(out), mode="r")
    for group in (root, root["confidence"], root["entropy"]):
        image = Image.from_zarr(group)  # raises on invalid OME-NGFF 0.4 metadata or missing levels
        paths = [d.path for d in image.datasets[0]]
        assert paths == ["0", "1", "2"]
        scales = [d.coordinateTransformations[0].scale[-2:] for d in image.datasets[0]]
        assert scales == [[0.25, 0.5], [0.5, 1.0], [1.0, 2.0]]
        levels = [np.asarray(group[p]) for p in paths]
        for n in (1, 2):
            expected = _mean_2x2(levels[n - 1])
            if levels[n].dtype == np.uint8:  # rounded to the nearest level, exactly
                np.testing.assert_array_equal(levels[n], np.rint(expected).astype(np.uint8))
            else:
                np.testing.assert_allclose(levels[n], expected, rtol=1e-6, atol=1e-7)
            # Against level 0 directly: equal but for rounding to uint8 at each level (at most
            # 0.5 per level) where the blocks are whole.
            direct = _block_mean(levels[0], 2 ** n)
            inner = levels[n][..., :direct.shape[-2], :direct.shape[-1]].astype(np.float64)
            np.testing.assert_allclose(inner, direct, atol=0.5 * n + 1e-9 if levels[n].dtype == np.uint8 else 1e-5)
        assert not np.all(levels[2] == 0)


def _world(transforms: list[dict], index) -> np.ndarray:
    """World position of a level's pixel ``index`` by its NGFF transformations (scale, then translation)."""
    scale, shift = (np.asarray(t[t["type"]], float) for t in transforms)
    return scale * np.asarray(index, float) + shift


def test_a_store_written_with_an_origin_reopens_there_and_its_levels_line_up(model_path, stack, tmp_path):
    from ome_zarr_models.v04 import Image

    out = nc.colorize_to_zarr(stack, tmp_path / "out.zarr", model_path, scale=(0.25, 0.5), unit="micrometer",
                              origin=(3.0, 10.0, 20.0), rgb_dtype="float32", **TILING)
    axes, scale, translate = read_placement(out)  # what the napari reader gives the layers
    assert [a["name"] for a in axes] == ["z", "y", "x"] and scale == [1.0, 0.25, 0.5] and translate == [3.0, 10.0, 20.0]
    root = zarr.open_group(str(out), mode="r")
    for group in (root, root["confidence"], root["entropy"]):
        Image.from_zarr(group)  # still valid OME-NGFF 0.4
    levels = [d["coordinateTransformations"] for d in root["confidence"].attrs["multiscales"][0]["datasets"]]
    assert levels[0] == [{"type": "scale", "scale": [1.0, 0.25, 0.5]},
                         {"type": "translation", "translation": [3.0, 10.0, 20.0]}]
    # The colour image's channel axis (first) has no position.
    assert root.attrs["multiscales"][0]["datasets"][2]["coordinateTransformations"][1]["translation"][0] == 0.0
    # By hand: level 1's pixel (z 1, y 3, x 5) is the mean of level-0 rows 6-7 (centres 10 + 0.25 * 6
    # = 11.5 and 11.75) and columns 10-11 (20 + 0.5 * 10 = 25.0 and 25.5): it lies at (3 + 1, 11.625, 25.25).
    np.testing.assert_allclose(_world(levels[1], (1, 3, 5)), (4.0, 11.625, 25.25))
    # Level 2's pixel (z 1, y 1, x 2): rows 4-7 (11.0 ... 11.75) and columns 8-11 (24.0 ... 25.5).
    np.testing.assert_allclose(_world(levels[2], (1, 1, 2)), (4.0, 11.375, 24.75))
    # The same in general: a level pixel sits at the mean position of the level-0 pixels it averages.
    conf = [np.asarray(root[f"confidence/{n}"]) for n in range(3)]
    for n, (y, x) in ((1, (3, 5)), (2, (1, 2)), (2, (7, 9))):
        f = 2 ** n
        block = [(1, y * f + i, x * f + j) for i in range(f) for j in range(f)]
        np.testing.assert_allclose(_world(levels[n], (1, y, x)), np.mean([_world(levels[0], b) for b in block], 0))
        np.testing.assert_allclose(conf[n][1, y, x], np.mean([conf[0][b] for b in block]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("origin, message", [((np.nan, 0.0), r"origin must be finite numbers"),
                                             ((0.0, np.inf), r"origin must be finite numbers"),
                                             ((1.0, 2.0, 3.0, 4.0), r"position of \(y, x\) or of all 3 axes")])
def test_a_bad_origin_is_refused_before_anything_is_written(model_path, stack, tmp_path, origin, message):
    # NaN and inf would be written into .zattrs as NaN/Infinity, which is not JSON.
    with pytest.raises(ValueError, match=message):
        nc.colorize_to_zarr(stack, tmp_path / "out.zarr", model_path, origin=origin, **TILING)
    assert not (tmp_path / "out.zarr").exists()


@pytest.mark.parametrize("options, message", [
    (dict(scale=(0.0, 0.0)), r"scale must be positive pixel sizes, got \[0.0, 0.0\]"),  # napari refused the store
    (dict(scale=(1.0, -0.5, 0.5)), r"scale must be positive"),
    (dict(axes=["t", "z"]), r"the 1 leading axes of the image; give one name per axis before \(y, x\), e.g. \['z'\]$"),
    (dict(scale=2), r"got the single number 2; e.g. scale=\(2, 2\)"),  # was "'int' object is not iterable"
])
def test_bad_placement_options_are_refused_before_anything_is_written(model_path, stack, tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        nc.colorize_to_zarr(stack, tmp_path / "out.zarr", model_path, **options, **TILING)
    assert not (tmp_path / "out.zarr").exists()


def test_open_zarr_levels(model_path, stack, tmp_path):
    out = nc.colorize_to_zarr(stack, tmp_path / "out.zarr", model_path, **TILING)
    levels = open_zarr_levels(out)
    assert [lv.shape for lv in levels.rgb] == [(2, 200, 230, 3), (2, 100, 115, 3), (2, 50, 58, 3)]
    assert levels.rgb[0].dtype == np.uint8 and levels.hue_entropy[1].dtype == np.float32
    assert [lv.shape for lv in levels.chroma_confidence] == [(2, 200, 230), (2, 100, 115), (2, 50, 58)]
    root = zarr.open_group(str(out), mode="r")
    np.testing.assert_array_equal(levels.rgb[1].compute(), np.moveaxis(np.asarray(root["1"]), 0, -1))
    level0 = open_zarr_result(out)
    np.testing.assert_array_equal(level0.rgb.compute(), levels.rgb[0].compute().astype(np.float32) / 255.0)
    assert levels.info["complete"] and levels.info["levels"] == 3


def test_kill_during_the_pyramid_resumes_it(model_path, stack, tmp_path, monkeypatch):
    from napari_colorize import inference

    full = nc.colorize_to_zarr(stack, tmp_path / "full.zarr", model_path, **TILING)
    real = pyramid.downsample
    calls = []

    class Killed(Exception):
        pass

    def dying(block):
        calls.append(block.shape)
        if len(calls) > 5:  # level 1 has 2 planes x 2 x 2 chunks x 3 outputs: killed inside it
            raise Killed
        return real(block)

    monkeypatch.setattr(pyramid, "downsample", dying)
    monkeypatch.setattr(pyramid, "MAX_WORKERS", 1)  # more threads could share the 5 calls, none finishing a chunk
    out = tmp_path / "out.zarr"
    with pytest.raises(Killed):
        nc.colorize_to_zarr(stack, out, model_path, **TILING)
    assert not is_complete(out)
    finished = os.listdir(out / MARKERS / "level1")
    assert 0 < len(finished) < 8 and not os.path.exists(out / MARKERS / "level2")
    monkeypatch.setattr(pyramid, "downsample", real)
    predicted = []
    real_predict = inference.histograms
    monkeypatch.setattr(inference, "histograms", lambda *a, **k: predicted.append(1) or real_predict(*a, **k))
    nc.colorize_to_zarr(stack, out, model_path, **TILING)
    assert is_complete(out) and not predicted  # level 0 was finished: no tile computed again
    for a, b in zip(_read_levels(full), _read_levels(out)):
        np.testing.assert_array_equal(a, b)


def test_cancel_during_the_pyramid(model_path, stack, tmp_path, monkeypatch):
    import threading

    cancel = threading.Event()
    real = pyramid.write_pyramid

    def cancel_first(*args, **kwargs):
        cancel.set()  # level 0 is written: cancel as the pyramid starts
        return real(*args, **kwargs)

    monkeypatch.setattr(zarr_io, "write_pyramid", cancel_first)
    with pytest.raises(Cancelled):
        nc.colorize_to_zarr(stack, tmp_path / "out.zarr", model_path, cancel=cancel, **TILING)
    assert not is_complete(tmp_path / "out.zarr")
    assert os.listdir(tmp_path / "out.zarr" / MARKERS / "level1") == []
    monkeypatch.setattr(zarr_io, "write_pyramid", real)
    ticks = []  # only the pyramid is left: the bar is told level 0 is full (it was never called)
    nc.colorize_to_zarr(stack, tmp_path / "out.zarr", model_path, progress=lambda d, t: ticks.append((d, t)), **TILING)
    assert ticks == [(18, 18)] and is_complete(tmp_path / "out.zarr")


def test_time_series_keeps_channels_between_time_and_space(model_path, stack, tmp_path):
    from ome_zarr_models.v04 import Image

    series = np.stack([stack[:, :80, :100], stack[::-1, :80, :100]])  # (t, z, y, x)
    out = nc.colorize_to_zarr(series, tmp_path / "t.zarr", model_path, axes=("t", "z"), **TILING)
    root = zarr.open_group(str(out), mode="r")
    image = Image.from_zarr(root)
    assert [a.name for a in image.attributes.multiscales[0].axes] == ["t", "c", "z", "y", "x"]
    assert root["0"].shape == (2, 3, 2, 80, 100) and root["1"].shape == (2, 3, 2, 40, 50)
    ref = nc.colorize(series, model_path, **TILING)
    as_uint8 = np.clip(np.rint(np.asarray(ref.rgb) * 255.0), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(np.moveaxis(np.asarray(root["0"]), 1, -1), as_uint8)
    np.testing.assert_array_equal(open_zarr_levels(out).rgb[1].compute(), np.moveaxis(np.asarray(root["1"]), 1, -1))


def test_a_multichannel_stack_keeps_its_channel_axis(model_path, stack, tmp_path):
    # A two-channel z-stack (OME-TIFF CZYX): its channel axis was called "t" in the output.
    import tifffile
    from ome_zarr_models.v04 import Image

    from napari_colorize.io import read_image

    czyx = np.stack([stack[:, :80, :100], stack[:, :80, :100] // 2])  # (c, z, y, x)
    tifffile.imwrite(tmp_path / "czyx.ome.tif", czyx, metadata={"axes": "CZYX"})
    image = read_image(tmp_path / "czyx.ome.tif")
    assert image.axes == ["c", "z"]
    out = nc.colorize_to_zarr(image.data, tmp_path / "c.zarr", model_path, axes=image.axes, **TILING)
    root = zarr.open_group(str(out), mode="r")
    rgb_axes = Image.from_zarr(root).attributes.multiscales[0].axes  # valid OME-NGFF 0.4
    assert [(a.name, a.type) for a in rgb_axes] == [("ch", None), ("c", "channel"), ("z", "space"), ("y", "space"),
                                                    ("x", "space")]
    assert [a["name"] for a in root["confidence"].attrs["multiscales"][0]["axes"]] == ["ch", "z", "y", "x"]
    assert root["0"].shape == (2, 3, 2, 80, 100)
    read = open_zarr_result(out)  # the channel axis stays in place in every output
    assert read.rgb.shape == (2, 2, 80, 100, 3) and read.chroma_confidence.shape == (2, 2, 80, 100)


def test_axes_outside_ngff_are_kept_with_a_warning(tmp_path):
    from napari_colorize.engine.ome import ome_axes, write_multiscales

    group = zarr.open_group(str(tmp_path / "odd.zarr"), mode="w", zarr_format=2)
    group.create_array("0", shape=(2, 2, 4, 4), dtype="float32")
    axes = ome_axes(2, False, None, ["angle", "phase"])  # two custom axes: NGFF 0.4 allows one
    with pytest.warns(UserWarning, match="not valid OME-NGFF"):
        write_multiscales(group, "odd", axes, [1.0] * 4, ["0"])
    ms = group.attrs["multiscales"][0]
    assert [a["name"] for a in ms["axes"]] == ["angle", "phase", "y", "x"] and ms["datasets"][0]["path"] == "0"


def test_a_zarr_input_rewritten_at_the_same_path_is_coloured_anew(make_model, tmp_path):
    """dask names a zarr array after its path: the second call used to get the first image's
    tiles from this process's cache (its colours and its lightness), and a store of it resumed."""
    first = (np.arange(96 * 112, dtype=np.uint32).reshape(96, 112) % 251).astype(np.uint8)
    model = make_model()
    results, stores = [], []
    for n, pixels in enumerate([first, 255 - first, first[::-1]]):
        if n < 2:  # rewritten as a new array at the same path, then in place
            z = zarr.open_array(str(tmp_path / "in.zarr"), mode="w", shape=first.shape, chunks=(64, 64), dtype="uint8")
        z[:] = pixels
        src = zarr.open_array(str(tmp_path / "in.zarr"), mode="r")
        results.append(nc.colorize(src, model, device="cpu", tile_size=64, overlap=16))
        np.testing.assert_allclose(nc.rgb_to_gray(np.asarray(results[-1].rgb)), pixels / 255.0, atol=1e-5)
        stores.append(nc.colorize_to_zarr(src, tmp_path / f"out{n}.zarr", model, device="cpu", tile_size=64,
                                          overlap=16))
    with pytest.raises(FileExistsError, match="different colorization job"):  # the input changed since
        nc.colorize_to_zarr(zarr.open_array(str(tmp_path / "in.zarr"), mode="r"), stores[0], model, device="cpu",
                            tile_size=64, overlap=16)


def test_an_unfinished_store_of_a_zarr_input_written_before_its_files_were_stamped_resumes(make_model, tmp_path):
    """Before the stamp, a zarr input was known by its dask name alone: such a store still resumes."""
    from napari_colorize.engine import zarr_io

    z = zarr.open_array(str(tmp_path / "in.zarr"), mode="w", shape=(96, 112), chunks=(64, 64), dtype="uint8")
    z[:] = (np.arange(96 * 112).reshape(96, 112) % 251).astype(np.uint8)
    src = zarr.open_array(str(tmp_path / "in.zarr"), mode="r")
    out = tmp_path / "out.zarr"
    kwargs = dict(device="cpu", tile_size=64, overlap=16)
    nc.colorize_to_zarr(src, out, make_model(), **kwargs)
    group = zarr.open_group(str(out), mode="r+")
    record = dict(group.attrs)["napari_colorize"]
    _, _, info = zarr_io.colorize_stacked(src, make_model(), cache=False, **kwargs)
    old = dict({k: v for k, v in record.items() if k not in ("fingerprint", "complete")}, source=info["unstamped_input_token"])
    group.attrs["napari_colorize"] = dict(old, fingerprint=zarr_io._fingerprint(old), complete=False)  # as then
    os.makedirs(out / ".napari_colorize_done")  # no chunk marked done: every one is redone
    nc.colorize_to_zarr(src, out, make_model(), **kwargs)  # resumed, not refused as another job
    assert zarr_io.read_job(out)["complete"] and zarr_io.read_job(out)["source"] == info["input_token"]


def test_a_memmap_input_has_one_token_with_or_without_a_cluster(make_model, tmp_path):
    """The cluster branch dropped the files' stamp, so a store of a memmap begun without a
    cluster was refused as another job when resumed on one."""
    from napari_colorize.engine.pipeline import _input_name, _stamped

    mm = np.lib.format.open_memmap(str(tmp_path / "in.npy"), mode="w+", dtype=np.uint8, shape=(96, 112))
    mm[:] = 7
    mm.flush()
    src = np.load(str(tmp_path / "in.npy"), mmap_mode="r")
    stacked, plan, info = nc.engine.pipeline.colorize_stacked(src, make_model(), device="cpu", cache=False)
    assert "|" in info["input_token"]  # stamped
    on_cluster, here = _input_name(src, stacked, plan, object()), _input_name(src, stacked, plan, None)
    assert _stamped(on_cluster, "stamp") == _stamped(here, "stamp")


def test_a_second_writer_of_one_store_is_refused_while_the_first_finishes(model_path, stack, tmp_path):
    # Two threads on one path met each other's half-made store: ContainsGroupError at
    # 'confidence', or FileNotFoundError on a chunk marker.  The lock is the CLI's.
    from napari_colorize._locks import OutputBusyError, lock_path

    path = tmp_path / "same.zarr"
    writing, refused = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def progress(done, total):
        writing.set()
        refused.wait(60)  # hold the first writer inside its store until the second has tried

    def first():
        try:
            nc.colorize_to_zarr(stack, path, model_path, progress=progress, **TILING)
        except BaseException as err:  # noqa: BLE001 -- reported by the main thread
            errors.append(err)

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert writing.wait(120)
        assert lock_path(path).exists()
        with pytest.raises(OutputBusyError, match=rf"same.zarr is being written by another run \(pid {os.getpid()}\); "
                                                  "wait for it, or write to another path"):
            nc.colorize_to_zarr(stack, path, model_path, **TILING)
    finally:
        refused.set()
        thread.join()
    assert not errors and is_complete(path) and not lock_path(path).exists()
    # Called again afterwards, it returns the finished store, as the message says.
    assert nc.colorize_to_zarr(stack, path, model_path, **TILING) == path


def test_the_api_and_the_command_line_exclude_each_other_by_one_lock(model_path, stack, tmp_path):
    from napari_colorize._locks import OutputBusyError, OutputLocks, lock_path

    path = tmp_path / "out.zarr"
    with held_by_another_run(path):
        with pytest.raises(OutputBusyError, match="is being written by another run"):
            nc.colorize_to_zarr(stack, path, model_path, **TILING)
        assert not path.exists()  # refused before the store is made
    # The command line's own thread goes on under the lock it holds.
    with OutputLocks([path]):
        nc.colorize_to_zarr(stack, path, model_path, **TILING)
    assert is_complete(path) and not lock_path(path).exists()


def test_two_spellings_of_one_folder_share_one_lock(model_path, stack, tmp_path):
    # The lock was named from the path as typed: a run through a link to the folder took a
    # lock of its own and wrote into the same store as the run that held the other.
    from napari_colorize._locks import OutputBusyError

    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with held_by_another_run(tmp_path / "real" / "out.zarr"):
        for spelling in (tmp_path / "link" / "out.zarr", tmp_path / "link" / ".." / "real" / "out.zarr"):
            with pytest.raises(OutputBusyError, match="is being written by another run"):
                nc.colorize_to_zarr(stack, spelling, model_path, **TILING)


def test_a_thread_reading_a_lock_another_thread_is_making_finds_it_held(tmp_path, monkeypatch):
    # The lock used to be recorded as held only after its file named our pid: a thread reading
    # it in between took it for a lock left by an earlier process of this pid and took it over.
    from napari_colorize import _locks

    target, seen, tried, real_fdopen = tmp_path / "out.zarr", [], [], os.fdopen

    def another_thread_tries():
        try:
            _locks._release(_locks._acquire(target))
            seen.append("taken over")
        except _locks.OutputBusyError:
            seen.append("busy")

    class LockFile:  # the new lock's handle: another thread looks right after our pid is written
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.handle.__exit__(*exc)

        def fileno(self):
            return self.handle.fileno()

        def write(self, text):
            self.handle.write(text)
            self.handle.flush()
            if not tried:  # once: the other thread's own lock file must not start a third
                tried.append(True)
                other = threading.Thread(target=another_thread_tries)
                other.start()
                other.join()

    monkeypatch.setattr(os, "fdopen", lambda fd, *args, **kwargs: LockFile(real_fdopen(fd, *args, **kwargs)))
    lock = _locks._acquire(target)
    monkeypatch.undo()
    assert seen == ["busy"] and lock.exists()
    _locks._release(lock)
    assert not lock.exists()


def test_two_threads_never_prepare_one_model_object_at_once(monkeypatch):
    # Two colorize_to_zarr calls with one in-memory model re-laid out its weights in both
    # threads at once: a segmentation fault.
    from napari_colorize.engine import models

    model = nc.build_model("compact").eval()
    inside, most, real = [0], [0], models._for_inference
    count = threading.Lock()

    def slow_preparation(net):
        with count:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.2)
        try:
            return real(net)
        finally:
            with count:
                inside[0] -= 1

    monkeypatch.setattr(models, "_for_inference", slow_preparation)
    threads = [threading.Thread(target=models.get_model, args=(model, "cpu")) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most[0] == 1


def _flaky(block: np.ndarray) -> np.ndarray:
    if block.max() > 0.99:
        raise ValueError("the file server dropped the chunk")
    return block


def test_a_store_left_by_a_lazy_input_that_failed_its_check_is_replaced_by_the_corrected_run(make_model, tmp_path):
    # NaN in a dask input is found in the first tile, after the store was made: the corrected
    # run was refused as "a different colorization job" and needed overwrite=True.
    pixels = np.linspace(0, 1, 96 * 112, dtype=np.float32).reshape(96, 112)
    holes = pixels.copy()
    holes[10:20, 10:20] = np.nan
    out, model = tmp_path / "o.zarr", make_model()
    with pytest.raises(ValueError, match="NaN"):
        nc.colorize_to_zarr(da.from_array(holes, chunks=48), out, model, device="cpu", tile_size=64, overlap=16)
    assert not out.exists()  # made by that call, for nothing: removed
    (tmp_path / "empty.zarr").mkdir()
    with pytest.raises(ValueError, match="NaN"):
        nc.colorize_to_zarr(da.from_array(holes, chunks=48), tmp_path / "empty.zarr", model, device="cpu", tile_size=64,
                            overlap=16)
    assert list((tmp_path / "empty.zarr").iterdir()) == []  # the empty folder given stays, empty
    with pytest.raises(ValueError, match="dropped the chunk"):  # not about the input's values
        nc.colorize_to_zarr(da.from_array(pixels, chunks=48).map_blocks(_flaky), tmp_path / "broken.zarr", model,
                            device="cpu", tile_size=64, overlap=16)
    assert (tmp_path / "broken.zarr").is_dir()  # kept: such a failure may pass, and its finished chunks resume
    # As an earlier version left it (or a kill before the first chunk): another job's, no chunk done.
    zarr_io.open_group(str(out), "w").attrs["napari_colorize"] = {"fingerprint": "another job", "complete": False}
    (out / zarr_io.MARKERS).mkdir()
    nc.colorize_to_zarr(da.from_array(pixels, chunks=48), out, model, device="cpu", tile_size=64, overlap=16)
    assert zarr_io.is_complete(out)
    with pytest.raises(FileExistsError, match="different colorization job"):  # a finished one is still kept
        nc.colorize_to_zarr(da.from_array(holes, chunks=48), out, model, device="cpu", tile_size=64, overlap=16)


def test_a_rechunked_dask_input_is_told_about_source_id(make_model, tmp_path):
    # The same pixels in other chunks have another dask name: refused as "another input", with
    # no word of source_id=, which lets a script resume them.
    pixels = np.linspace(0, 1, 96 * 112, dtype=np.float32).reshape(96, 112)
    model, kw = make_model(), dict(device="cpu", tile_size=64, overlap=16)
    nc.colorize_to_zarr(da.from_array(pixels, chunks=48), tmp_path / "a.zarr", model, **kw)
    with pytest.raises(FileExistsError, match="give the same source_id= in both runs"):
        nc.colorize_to_zarr(da.from_array(pixels, chunks=40), tmp_path / "a.zarr", model, **kw)
    nc.colorize_to_zarr(da.from_array(pixels, chunks=48), tmp_path / "b.zarr", model, source_id="scan 1", **kw)
    nc.colorize_to_zarr(da.from_array(pixels, chunks=40), tmp_path / "b.zarr", model, source_id="scan 1", **kw)
    with pytest.raises(FileExistsError) as refused:  # named by the user: nothing to add
        nc.colorize_to_zarr(da.from_array(pixels, chunks=40), tmp_path / "b.zarr", model, source_id="scan 2", **kw)
    assert "source_id" not in str(refused.value)


def test_api_slips_are_named_in_the_callers_words(make_model, tmp_path):
    image = np.linspace(0, 1, 64 * 80, dtype=np.float32).reshape(64, 80)
    with pytest.raises(TypeError, match=r"^colorize_to_zarr\(\) got an unexpected keyword argument 'methd'$"):
        nc.colorize_to_zarr(image, tmp_path / "a.zarr", make_model(), methd="mode", device="cpu")
    assert not (tmp_path / "a.zarr").exists()
    with pytest.raises(TypeError, match=r"cancel must be a threading.Event \(set it to stop the run\), got True"):
        nc.colorize_to_zarr(image, tmp_path / "a.zarr", make_model(), cancel=True, device="cpu")  # was ignored
    with pytest.raises(TypeError, match="progress must be a function progress"):
        nc.colorize(image, make_model(), progress=5, device="cpu")
    zarr.open_array(str(tmp_path / "plain.zarr"), mode="w", shape=(4, 4), dtype="u1")
    with pytest.raises(ValueError, match="plain.zarr was not written by napari-colorize .it is no zarr group"):
        open_zarr_result(tmp_path / "plain.zarr")  # was zarr's GroupNotFoundError
    with pytest.raises(FileNotFoundError, match="gone.zarr is missing, not a store written by napari-colorize"):
        open_zarr_result(tmp_path / "gone.zarr")
    assert not (tmp_path / "a.zarr").exists()
    store = nc.colorize_to_zarr(image, tmp_path / "b.zarr", make_model(), outputs="rgb", device="cpu")  # not 'r', 'g', 'b'
    assert zarr_io.read_job(store)["outputs"] == ["rgb"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # ome-zarr's own deprecated default is not ours to show
        for name in [m for m in sys.modules if m.startswith("ome_zarr.writer")]:
            del sys.modules[name]
        nc.colorize_to_zarr(image, tmp_path / "c.zarr", make_model(), device="cpu")


def test_on_a_cluster_a_store_of_an_input_that_failed_its_check_is_kept_and_says_why(model_path, tmp_path):
    # A cancelled task may still run on a worker, and removing the folder under it races its
    # writes: on a cluster the store stays, is never replaced unasked, and the refusal says that
    # nothing in it is worth keeping (it said "a different colorization job").
    from distributed import Client, LocalCluster

    from napari_colorize.inputs import InputValuesError

    holes = np.linspace(0, 1, 96 * 112, dtype=np.float32).reshape(96, 112)
    holes[10:20, 10:20] = np.nan
    kw = dict(device="cpu", tile_size=64, overlap=16)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        with pytest.raises(InputValuesError, match="NaN"):
            nc.colorize_to_zarr(da.from_array(holes, chunks=48), tmp_path / "o.zarr", model_path, client=client, **kw)
    job = zarr_io.read_job(tmp_path / "o.zarr")
    assert job["failed"] == "input values" and job["cluster"] is True
    fixed = np.nan_to_num(holes)
    with pytest.raises(FileExistsError, match="whose input failed its checks .* nothing in it is worth keeping"):
        nc.colorize_to_zarr(fixed, tmp_path / "o.zarr", model_path, **kw)
    stored = open_zarr_result(nc.colorize_to_zarr(fixed, tmp_path / "o.zarr", model_path, overwrite=True, **kw)).rgb
    fresh = open_zarr_result(nc.colorize_to_zarr(fixed, tmp_path / "fresh.zarr", model_path, **kw)).rgb
    np.testing.assert_array_equal(np.asarray(stored), np.asarray(fresh))


def test_a_task_of_a_cancelled_run_writes_nothing_into_the_store_that_replaced_it(model_path, tmp_path, monkeypatch):
    # On a cluster a cancelled run's task keeps running on its worker.  If the next call has
    # replaced the store (another job, overwrite=True), that task's chunk and marker must not
    # land there: the new job would take the chunk for its own and never rewrite it.
    first = np.linspace(0, 1, 96 * 112, dtype=np.float32).reshape(96, 112)
    second = first[::-1].copy()
    kw = dict(device="cpu", tile_size=64, overlap=16)
    calls = []
    write_block = zarr_io._write_block
    monkeypatch.setattr(zarr_io, "_write_block", lambda *args: calls.append(args) or write_block(*args))
    nc.colorize_to_zarr(first, tmp_path / "first.zarr", model_path, **kw)
    stale = calls[-1]  # the first job's last chunk, as its task would write it
    stop = threading.Event()
    with pytest.raises(Cancelled):
        nc.colorize_to_zarr(second, tmp_path / "o.zarr", model_path, cancel=stop, progress=lambda *_: stop.set(), **kw)
    assert not os.path.exists(store.marker(str(tmp_path / "o.zarr"), stale[3]))
    write_block(stale[0], str(tmp_path / "o.zarr"), *stale[2:])  # the first job's task, late
    assert not os.path.exists(store.marker(str(tmp_path / "o.zarr"), stale[3]))
    resumed = open_zarr_result(nc.colorize_to_zarr(second, tmp_path / "o.zarr", model_path, **kw)).rgb
    fresh = open_zarr_result(nc.colorize_to_zarr(second, tmp_path / "fresh.zarr", model_path, **kw)).rgb
    np.testing.assert_array_equal(np.asarray(resumed), np.asarray(fresh))
