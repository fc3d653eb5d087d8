"""The chunked engine: tile plans, blending, lazy results, caching, OOM fallback, progress, cancel."""

from __future__ import annotations

import threading
import time

import dask
import dask.array as da
import numpy as np
import pytest
import torch
from skimage import color, data, transform

import napari_colorize as nc
from napari_colorize import inference
from napari_colorize.engine import (
    Cancelled,
    TilePlan,
    assemble_chunk,
    axis_tiles,
    blend_tiles,
    check_tiling,
    cut_pieces,
    feather_weights,
    reset_memory_limits,
)
from napari_colorize.engine.cache import clear_caches
from napari_colorize.inputs import percentile_limits, scale_to_unit
from napari_colorize.model.hypercolumn import GRID_STRIDE


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return nc.build_model("compact").eval()


@pytest.fixture(autouse=True)
def _empty_cache():
    clear_caches()
    reset_memory_limits()
    yield
    clear_caches()
    reset_memory_limits()


@pytest.fixture(scope="module")
def camera():
    return transform.resize(data.camera(), (256, 256), anti_aliasing=True).astype(np.float32)


@pytest.fixture
def count_calls(monkeypatch):
    calls = []
    real = inference.histograms

    def counting(model, gray, *args, **kwargs):
        calls.append(tuple(gray.shape))
        return real(model, gray, *args, **kwargs)

    monkeypatch.setattr(inference, "histograms", counting)
    return calls


# --- tile plans and weights -------------------------------------------------------------------

@pytest.mark.parametrize("length", [40, 128, 129, 200, 250, 257, 1000])
@pytest.mark.parametrize("tile,overlap", [(128, 32), (96, 16), (64, 0)])
def test_axis_tiles_cover_every_chunk(length, tile, overlap):
    ax = axis_tiles(length, tile, overlap)
    assert sum(ax.chunks) == length
    assert ax.starts[0] == 0 and ax.stops[-1] == length
    for s, e in zip(ax.starts, ax.stops):
        assert 0 <= s < e <= length and e - s <= max(tile + 31, length if length <= tile else 0)
    for i in range(ax.n_chunks):
        lo, hi = ax.chunk_range(i)
        covered = np.zeros(hi - lo, bool)
        for j in ax.tiles_for_chunk(i):
            covered[max(lo, ax.starts[j]) - lo:min(hi, ax.stops[j]) - lo] = True
        assert covered.all()


def test_tiles_are_aligned_to_the_network_stride():
    ax = axis_tiles(1000, 256, 64)
    assert all(s % 32 == 0 for s in ax.starts)


@pytest.mark.parametrize("tile,overlap", [(100, 10), (1000, 100), (97, 13), (150, 50), (128, 32)])
def test_tiles_start_on_the_decoded_grid_whatever_the_sizes(tile, overlap):
    # A user's --tile-size 1000 --overlap 100: starts on the 4-pixel grid that guidance needs.
    for length in (1000, 1234, 3001):
        ax = axis_tiles(length, tile, overlap)
        assert all(s % GRID_STRIDE == 0 for s in ax.starts), (length, ax.starts)
        assert all(e - s <= tile + 31 for s, e in zip(ax.starts, ax.stops))


@pytest.mark.parametrize("length", [256, 100, 33])
def test_every_tile_is_at_least_the_networks_minimum_for_every_valid_small_tiling(length):
    # 150 tilings the docs allow (tile >= 32, tile > 2 * overlap) cut a 31-pixel first tile,
    # refused by the network only when it ran ("at least 32 x 32 pixels, got 32 x 31").
    for tile in range(32, 49):
        for overlap in range((tile + 1) // 2):
            ax = axis_tiles(length, tile, overlap, min_width=32)
            widths = [e - s for s, e in zip(ax.starts, ax.stops)]
            assert min(widths) >= min(32, length), (tile, overlap, ax.starts, ax.stops)
            covered = np.zeros(length, bool)
            for s, e in zip(ax.starts, ax.stops):
                covered[s:e] = True
            assert covered.all() and ax.starts[0] == 0 and ax.stops[-1] == length


def test_the_first_tile_cut_by_the_edge_reaches_forward_to_the_minimum():
    ax = axis_tiles(256, 32, 2, min_width=32)  # chunks of 30; tile k starts at 30 k - 1
    assert (ax.starts[0], ax.stops[0]) == (0, 32)  # was (0, 31)
    assert (ax.starts[1], ax.stops[1]) == (28, 61)  # 29 aligned down to the 4-pixel grid, unchanged


@pytest.mark.parametrize("tile,overlap", [(32, 2), (33, 16)])
def test_small_tiles_colour_an_image_end_to_end(model, camera, tile, overlap):
    gray = camera[:100, :68]
    rgb = nc.colorize(gray, model, device="cpu", tile_size=tile, overlap=overlap).rgb.compute()
    assert rgb.shape == (100, 68, 3)
    np.testing.assert_allclose(rgb.mean(-1), gray, atol=1e-6)


def test_feather_weights_of_neighbours_sum_to_one():
    ax = axis_tiles(1000, 256, 64)
    total = np.zeros(1000)
    for j, (s, e) in enumerate(zip(ax.starts, ax.stops)):
        total[s:e] += ax.weights(j)
    # Exactly 1 where two regular tiles overlap by `overlap`; everywhere > 0.
    assert (total > 0).all()
    mid = slice(ax.starts[2], ax.stops[1])  # tiles 1 and 2 overlap by exactly 64
    assert ax.stops[1] - ax.starts[2] == 64
    np.testing.assert_allclose(total[mid], 1.0, atol=1e-6)
    w = feather_weights(8, 4)
    np.testing.assert_allclose(w, [0.125, 0.375, 0.625, 0.875, 0.875, 0.625, 0.375, 0.125])


def test_blend_of_constant_tiles_is_exact():
    plan = TilePlan.create((100, 130), 64, 16)
    results = {(jy, jx): np.full((plan.ty.stops[jy] - plan.ty.starts[jy], plan.tx.stops[jx] - plan.tx.starts[jx], 2),
                                 7.0, np.float32)
               for jy in range(len(plan.ty.starts)) for jx in range(len(plan.tx.starts))}
    np.testing.assert_allclose(blend_tiles(plan, results), 7.0, rtol=1e-6)


def _random_tiles(plan, rng):
    # Independent reference: accumulate w * value and w with full 2D weights, then divide.
    shape = plan.shape
    acc, wsum, results = np.zeros(shape + (3,)), np.zeros(shape + (1,)), {}
    for jy in range(len(plan.ty.starts)):
        for jx in range(len(plan.tx.starts)):
            sy, sx = plan.tile_window(jy, jx)
            values = rng.random((sy.stop - sy.start, sx.stop - sx.start, 3)).astype(np.float32)
            wy, wx = plan.weights(jy, jx)
            acc[sy, sx] += np.outer(wy, wx)[..., None] * values
            wsum[sy, sx] += np.outer(wy, wx)[..., None]
            results[jy, jx] = values
    return results, acc / wsum


def test_blend_equals_the_weighted_mean():
    plan = TilePlan.create((150, 170), 96, 32)
    results, expected = _random_tiles(plan, np.random.default_rng(3))
    np.testing.assert_allclose(blend_tiles(plan, results), expected, atol=1e-6)


def test_pieces_are_separate_and_sum_to_each_chunk():
    plan = TilePlan.create((150, 170), 96, 32)
    results, expected = _random_tiles(plan, np.random.default_rng(4))
    pieces = {}
    for (jy, jx), values in results.items():
        cut = cut_pieces(values, plan, jy, jx)
        # Each piece owns its memory, so dask can free it as soon as its chunk is done.
        assert all(p.base is None or len(cut) == 1 for p in cut.values())
        rows = [cy for cy in range(plan.ty.n_chunks) if jy in plan.ty.tiles_for_chunk(cy)]
        cols = [cx for cx in range(plan.tx.n_chunks) if jx in plan.tx.tiles_for_chunk(cx)]
        assert set(cut) == {(cy, cx) for cy in rows for cx in cols}
        for chunk, piece in cut.items():
            pieces.setdefault(chunk, []).append((jy, jx, piece))
    for (cy, cx), mine in pieces.items():
        region = (slice(*plan.ty.chunk_range(cy)), slice(*plan.tx.chunk_range(cx)))
        np.testing.assert_allclose(assemble_chunk(plan, cy, cx, mine), expected[region], atol=1e-6)
    assert len(pieces) == plan.ty.n_chunks * plan.tx.n_chunks


@pytest.mark.parametrize("tile,overlap,match", [(64, 32, "more than twice"), (64, 40, "more than twice"),
                                                (16, 4, "minimum"), (64, -1, ">= 0")])
def test_bad_tiling_is_refused(tile, overlap, match):
    with pytest.raises(ValueError, match=match):
        check_tiling(tile, overlap, 32)


def test_bad_tiling_through_colorize(model, camera):
    with pytest.raises(ValueError, match="more than twice"):
        nc.colorize(camera, model, device="cpu", tile_size=64, overlap=48)


# --- tiled against untiled --------------------------------------------------------------------

def _ab_delta(a, b):
    return np.abs(color.rgb2lab(a)[..., 1:] - color.rgb2lab(b)[..., 1:]).max(-1)


def _border_mask(shape, chunk, width=4):
    mask = np.zeros(shape, bool)
    for k in range(chunk, shape[0], chunk):
        mask[k - width:k + width] = True
    for k in range(chunk, shape[1], chunk):
        mask[:, k - width:k + width] = True
    return mask


def test_tiled_matches_untiled_without_seams(model, camera):
    untiled = nc.colorize(camera, model, device="cpu", saturation=4.0, tile_size=512)
    assert isinstance(untiled.rgb, np.ndarray) and untiled.info["n_tiles"] == 1
    tiled = nc.colorize(camera, model, device="cpu", saturation=4.0, tile_size=160, overlap=64)
    assert isinstance(tiled.rgb, da.Array) and tiled.info["n_tiles"] == 9
    rgb = tiled.rgb.compute()
    # Lightness pass-through survives blending (a convex combination of tiles).
    np.testing.assert_allclose(rgb.mean(-1), camera, atol=2e-6)
    np.testing.assert_allclose(tiled.chroma_confidence.compute(), untiled.chroma_confidence, atol=0.05)
    delta = _ab_delta(rgb, untiled.rgb)
    border = _border_mask(delta.shape, 96)
    assert delta.mean() < 0.5 and np.percentile(delta, 99) < 3.0
    # Feathering: tile borders are no worse than the tiles' interiors (within 25%).
    assert np.percentile(delta[border], 99) <= 1.25 * np.percentile(delta[~border], 99) + 0.05
    assert delta[border].mean() <= 1.25 * delta[~border].mean() + 0.01
    # ...whereas abutting tiles without overlap do show seams: the measure can fail.
    hard = _ab_delta(nc.colorize(camera, model, device="cpu", saturation=4.0, tile_size=96, overlap=0).rgb.compute(),
                     untiled.rgb)
    hard_border = _border_mask(hard.shape, 96)
    assert hard[hard_border].mean() > 2 * hard[~hard_border].mean()


def test_percentile_limits_are_global(model, camera):
    img = (camera * 3000 + 100).astype(np.uint16)
    img[:40, :40] = 60000  # a bright corner only one tile sees
    res = nc.colorize(img, model, device="cpu", normalize="percentile", tile_size=128, overlap=32)
    expected = scale_to_unit(img, *percentile_limits(img))
    np.testing.assert_allclose(res.rgb.compute().mean(-1), expected, atol=2e-6)
    assert res.info["limits"] == pytest.approx(percentile_limits(img))


# --- stacks and laziness ----------------------------------------------------------------------

def test_stacks_keep_leading_axes(model, camera):
    stack = np.stack([np.stack([camera[:96, :128], camera[100:196, 50:178], camera[-96:, -128:]])] * 2)
    stack[1] = 1 - stack[1]
    res = nc.colorize(stack, model, device="cpu", tile_size=128, overlap=32)
    assert res.rgb.shape == (2, 3, 96, 128, 3)
    assert res.chroma_confidence.shape == res.hue_entropy.shape == (2, 3, 96, 128)
    plane = nc.colorize(stack[1, 2], model, device="cpu", tile_size=128, overlap=32)
    np.testing.assert_allclose(np.asarray(res.rgb[1, 2]), plane.rgb, atol=1e-6)
    np.testing.assert_allclose(np.asarray(res.hue_entropy[1, 2]), plane.hue_entropy, atol=1e-6)


def test_lazy_input_gives_lazy_result_and_zarr_works(model, camera, tmp_path):
    import zarr
    z = zarr.open_array(str(tmp_path / "in.zarr"), mode="w", shape=(2, 128, 160), chunks=(1, 50, 50), dtype="float32")
    z[:] = np.stack([camera[:128, :160], camera[64:192, 32:192]])
    res = nc.colorize(z, model, device="cpu", tile_size=128, overlap=32)
    assert isinstance(res.rgb, da.Array) and res.info["lazy"]
    ref = nc.colorize(np.asarray(z), model, device="cpu", tile_size=128, overlap=32)
    np.testing.assert_array_equal(res.rgb.compute(), ref.rgb.compute())


def test_three_outputs_share_one_model_pass(model, camera, count_calls):
    res = nc.colorize(da.from_array(camera), model, device="cpu", tile_size=128, overlap=32)
    n = res.info["n_tiles"]
    dask.compute(res.rgb, res.chroma_confidence, res.hue_entropy)
    assert len(count_calls) == n
    # napari computes each layer on its own: the tile cache keeps it at one pass per tile.
    clear_caches()
    count_calls.clear()
    for layer in (res.rgb, res.chroma_confidence, res.hue_entropy):
        layer.compute()
    assert len(count_calls) == n


def test_lazy_result_computes_only_what_is_asked(model, camera, count_calls):
    stack = da.from_array(np.stack([camera, camera[::-1], camera[:, ::-1]]))
    res = nc.colorize(stack, model, device="cpu", tile_size=128, overlap=32)
    assert res.info["n_tiles"] == 27 and not count_calls  # nothing computed at construction
    res.rgb[1, :10, :10].compute()
    assert len(count_calls) == 4  # the 2 x 2 tiles that reach into the top-left chunk, of 27
    res.hue_entropy[2].compute()
    assert len(count_calls) == 4 + 9


def test_batches_group_tiles(model, camera, count_calls):
    res = nc.colorize(camera, model, device="cpu", tile_size=128, overlap=32, batch_size=4)
    single = nc.colorize(camera, model, device="cpu", tile_size=128, overlap=32, batch_size=1)
    a = res.rgb.compute()
    # 9 tiles of four shapes (the first row and column are shorter): batches of 1, 2, 2 and 4.
    assert sorted(c[0] for c in count_calls) == [1, 2, 2, 4]
    np.testing.assert_allclose(a, single.rgb.compute(), atol=1e-5)


# --- out of memory, progress, cancel ----------------------------------------------------------

def test_out_of_memory_halves_the_batch(model, camera, monkeypatch):
    ref = nc.colorize(camera, model, device="cpu", tile_size=128, overlap=32, batch_size=4).rgb.compute()
    clear_caches()
    real, raised, seen = inference.histograms, [], []

    def flaky(model, gray, *args, **kwargs):
        seen.append(gray.shape[0])
        if not raised and gray.shape[0] > 1:
            raised.append(True)
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(model, gray, *args, **kwargs)

    monkeypatch.setattr(inference, "histograms", flaky)
    out = nc.colorize(camera, model, device="cpu", tile_size=128, overlap=32, batch_size=4).rgb.compute()
    assert raised and 2 in seen
    np.testing.assert_allclose(out, ref, atol=1e-5)


def test_out_of_memory_on_one_tile_splits_it(model, camera, monkeypatch):
    real, sizes = inference.histograms, []

    def small_only(model, gray, *args, **kwargs):
        sizes.append(tuple(gray.shape[1:]))
        if max(gray.shape[1:]) > 160:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return real(model, gray, *args, **kwargs)

    monkeypatch.setattr(inference, "histograms", small_only)
    res = nc.colorize(camera, model, device="cpu", tile_size=256, overlap=32)
    rgb = np.asarray(res.rgb)
    assert (256, 256) in sizes and max(s[0] for s in sizes[1:]) <= 160
    np.testing.assert_allclose(rgb.mean(-1), camera, atol=2e-6)


def test_out_of_memory_is_remembered(model, camera, monkeypatch):
    # After a batch of N pixels ran out of memory, no batch of N pixels or more is tried again.
    real, tried, failed = inference.histograms, [], []

    def limited(model, gray, *args, **kwargs):
        tried.append(gray.numel())
        if gray.shape[0] > 2:
            failed.append(gray.numel())
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return real(model, gray, *args, **kwargs)

    monkeypatch.setattr(inference, "histograms", limited)
    image = np.concatenate([camera, camera[::-1]], axis=1)  # 256 x 512: 18 tiles of 128/32, batches of 4
    out = nc.colorize(image, model, device="cpu", tile_size=128, overlap=32, batch_size=4).rgb.compute(
        scheduler="synchronous")
    assert failed and failed == sorted(set(failed), reverse=True)  # each failure smaller than the last
    after_first = tried[tried.index(failed[0]) + 1:]
    assert after_first and all(s < failed[0] for s in after_first)
    np.testing.assert_allclose(out.mean(-1), image, atol=2e-6)


def test_weights_applied_on_the_device_equal_host_scaling(model, camera, monkeypatch):
    # The GPU path multiplies by the blending weights before copying back; check it on the CPU,
    # also through the out-of-memory split, against the plain product.
    from napari_colorize.api import decode_options_for
    from napari_colorize.engine import TileOptions, predict_tiles
    options = TileOptions(decode_options_for(model))
    gray = np.stack([camera[:128, :128], camera[64:192, 64:192]])
    weights = [(np.linspace(0.1, 1, 128).astype(np.float32), np.linspace(1, 0.2, 128).astype(np.float32)),
               (np.full(128, 0.5, np.float32), np.ones(128, np.float32))]
    plain = predict_tiles(model, gray, options)
    expected = plain * np.stack([np.outer(wy, wx) for wy, wx in weights])[..., None]
    np.testing.assert_allclose(predict_tiles(model, gray, options, weights=weights), expected, atol=1e-6)
    real = inference.histograms

    def small_only(model, gray, *args, **kwargs):
        if max(gray.shape[1:]) > 100:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return real(model, gray, *args, **kwargs)

    monkeypatch.setattr(inference, "histograms", small_only)
    split = predict_tiles(model, gray, options, overlap=32, weights=weights)
    assert split.shape == expected.shape
    # Split tiles see less context, so only the weighting is compared: weighted / weights = unweighted split.
    unweighted = predict_tiles(model, gray, options, overlap=32)
    np.testing.assert_allclose(split, unweighted * np.stack([np.outer(wy, wx) for wy, wx in weights])[..., None],
                               atol=1e-6)


@pytest.mark.cuda
def test_tiled_gpu_pipeline_matches_the_cpu(model, camera):
    # Weights applied on the GPU, batches of several tiles, copies on a side stream from
    # several dask threads at once: the blended result must still match the CPU's.
    image = np.tile(camera, (3, 3))  # 768 x 768: 25 tiles of 256/64
    cpu = nc.colorize(image, model, device="cpu", tile_size=256, overlap=64).rgb.compute()
    clear_caches()
    gpu = nc.colorize(image, model, device="cuda", tile_size=256, overlap=64, batch_size=3)
    assert gpu.info["batch_size"] == 3
    rgb = gpu.rgb.compute(scheduler="threads", num_workers=8)
    assert np.abs(rgb - cpu).mean() < 1e-3 and np.abs(rgb - cpu).max() < 0.05
    np.testing.assert_allclose(rgb.mean(-1), image, atol=2e-6)


def test_gpu_defaults_use_larger_tiles_and_batches():
    from napari_colorize.engine import default_batch, default_tiling
    from napari_colorize.model import get_backbone
    assert default_tiling("compact", (5000, 5000), "cuda") == get_backbone("compact").gpu_tiling
    assert default_tiling("compact", (3000, 4000), "cuda") == (4000, 0)  # one pass
    assert default_tiling("compact", (3000, 4000), "cpu") == get_backbone("compact").cpu_tiling
    assert default_batch("cuda", 1024) == 16 and default_batch("cuda", 4096) == 1 and default_batch("cpu", 1024) == 1


def test_out_of_memory_that_cannot_shrink_is_reported(model, camera, monkeypatch):
    def always(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(inference, "histograms", always)
    with pytest.raises(RuntimeError, match="smaller --tile-size"):
        nc.colorize(camera[:64, :64], model, device="cpu")


def test_progress_reports_distinct_tiles(model, camera):
    seen = []
    res = nc.colorize(da.from_array(camera), model, device="cpu", tile_size=128, overlap=32,
                      progress=lambda done, total: seen.append((done, total)))
    dask.compute(res.rgb, res.hue_entropy)
    res.chroma_confidence.compute()  # cache hits do not count twice
    assert seen[-1] == (9, 9) and all(t == 9 for _, t in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_cancel_stops_between_tiles(model, camera, count_calls):
    cancel = threading.Event()

    def stop_after_two(done, total):
        if done >= 2:
            cancel.set()

    res = nc.colorize(da.from_array(camera), model, device="cpu", tile_size=128, overlap=32,
                      progress=stop_after_two, cancel=cancel)
    with pytest.raises(Cancelled):
        res.rgb.compute(scheduler="synchronous")
    assert len(count_calls) == 2


def test_cancel_stops_batches_that_waited_for_the_network(model, camera, count_calls, monkeypatch):
    # Batches start together (one per thread), pass their cancel check, then queue for the one
    # network pass: each used to run once it got the network, however long ago Cancel was pressed.
    cancel = threading.Event()
    real = inference.histograms

    def cancel_during_the_first_pass(*args, **kwargs):
        if not count_calls:  # the first pass (counted once it starts)
            time.sleep(0.5)  # the other threads' batches start and wait for the network meanwhile
            cancel.set()
        return real(*args, **kwargs)

    monkeypatch.setattr(inference, "histograms", cancel_during_the_first_pass)
    res = nc.colorize(da.from_array(camera), model, device="cpu", tile_size=64, overlap=16, cancel=cancel)
    with pytest.raises(Cancelled):
        res.rgb.compute(scheduler="threads", num_workers=4)
    assert len(count_calls) == 1


def test_a_job_from_another_thread_runs_as_many_batches_as_the_main_thread(model, monkeypatch):
    # dask gives a computation started outside the main thread (the napari widget's worker)
    # min(32, cores + 4) threads unless told: on 2 cores, 6 batches queued for the network,
    # 40 % more memory for no speed.
    from napari_colorize.engine import graph
    in_flight, most = [0], [0]
    lock = threading.Lock()
    real = graph.predict_tiles

    def counted(*args, **kwargs):
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        try:
            time.sleep(0.05)
            return real(*args, **kwargs)
        finally:
            with lock:
                in_flight[0] -= 1

    monkeypatch.setattr(graph, "predict_tiles", counted)
    stack = np.random.default_rng(0).random((12, 64, 64), dtype=np.float32)  # one tile a plane: computed inside
    worker = threading.Thread(target=lambda: nc.colorize(stack, model, device="cpu"))
    worker.start()
    worker.join()
    assert 1 <= most[0] <= dask.system.CPU_COUNT


def test_local_threads_follow_the_dask_config():
    from napari_colorize.engine.defaults import local_threads

    assert local_threads() == dask.system.CPU_COUNT
    with dask.config.set(num_workers=1):  # a user capping threads (memory) is obeyed, as dask obeys it
        assert local_threads() == 1


def test_input_is_not_modified(model, camera):
    img = (camera * 255).astype(np.uint8)
    before = img.copy()
    nc.colorize(img, model, device="cpu", tile_size=128, overlap=32, normalize="percentile").rgb.compute()
    np.testing.assert_array_equal(img, before)


def test_bad_inputs_give_clear_errors(model):
    with pytest.raises(ValueError, match="empty"):
        nc.colorize(np.zeros((0, 64)), model, device="cpu")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        nc.colorize(np.full((64, 64), 2.0), model, device="cpu")
    with pytest.raises(ValueError, match="RGB"):
        nc.colorize(np.zeros((64, 64, 3)), model, device="cpu")
