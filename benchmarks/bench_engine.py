"""Benchmarks of the chunked engine (issue 4).  Prints figures; nothing is asserted.

Usage::

    python benchmarks/bench_engine.py seams          # tiled vs untiled |delta a,b| on 1536 x 1536
    python benchmarks/bench_engine.py seams 3072 1280/256 1280/384   # a larger image, chosen tilings
    python benchmarks/bench_engine.py throughput [SIDE]   # tiled vs single pass on SIDE x SIDE (2048)
    python benchmarks/bench_engine.py memory 16 64   # peak RSS of zarr -> zarr at 16 and 64 MP
    python benchmarks/bench_engine.py cli [SIDE [FORMAT ...]]   # MP/s and peak RSS through the CLI, in-process and --workers 2
    python benchmarks/bench_engine.py cli 16000x2600 tiff png --no-cluster   # a wide scan, in-process only
    python benchmarks/bench_engine.py overhead       # the engine alone (a null model): how fast it can feed a GPU
    python benchmarks/bench_engine.py gpu            # only with CUDA: compact/vgg16, fp32/bf16, pipeline ratio

Uses ``$BENCH_MODEL`` if set (a model file), else the default model when it exists, else a
random-init ``compact`` model (said in the output): timings are the same, seam figures are only indicative.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import napari_colorize as nc
from napari_colorize.engine import clear_caches


def _model(backbone: str = "compact"):
    chosen = os.environ.get("BENCH_MODEL")  # e.g. a context model: BENCH_MODEL=runs/x.safetensors
    if chosen:
        return chosen, chosen
    try:
        if backbone == "compact":
            nc.load_model("default")
            return "default", "default"
    except FileNotFoundError:
        pass
    torch.manual_seed(0)
    return nc.build_model(backbone).eval(), f"random-init {backbone}"


def _scene(size: int, width: int | None = None) -> np.ndarray:
    """A ``size`` x ``width`` (default square) gray scene tiled from skimage's samples."""
    from skimage import data, transform
    width = size if width is None else width
    tiles = [data.camera(), data.moon(), data.coins()[:, :300], data.text()]
    tiles = [transform.resize(t, (512, 512), anti_aliasing=True) for t in tiles]
    block = np.block([[tiles[0], tiles[1]], [tiles[2], tiles[3]]])
    return np.tile(block, (-(-size // 1024), -(-width // 1024)))[:size, :width].astype(np.float32)


def seams(size: int = 1536, tilings=None) -> None:
    from skimage import color
    model, name = _model()
    img = _scene(size)
    sat = 4.0 if name.startswith("random-init") else 1.0  # a random model's colours are faint: amplify them
    t = time.perf_counter()
    ref = nc.colorize(img, model, device="cpu", saturation=sat, tile_size=size).rgb
    print(f"[seams] model={name} saturation={sat} image={size}x{size} untiled {time.perf_counter() - t:.1f}s")
    ref_ab = color.rgb2lab(ref)[..., 1:]
    for tile, overlap in tilings or SEAM_TILINGS:
        clear_caches()
        res = nc.colorize(img, model, device="cpu", saturation=sat, tile_size=tile, overlap=overlap)
        rgb = np.asarray(res.rgb)
        d = np.abs(color.rgb2lab(rgb)[..., 1:] - ref_ab).max(-1)
        chunk = tile - overlap
        border = np.zeros(d.shape, bool)
        for k in range(chunk, size, chunk):
            border[k - 8:k + 8] = True
            border[:, k - 8:k + 8] = True
        gray_err = np.abs(rgb.mean(-1) - img).max()
        print(f"[seams] tile={tile:5d} overlap={overlap:4d}  all: mean {d.mean():.3f} p99 {np.percentile(d, 99):.3f} | "
              f"borders(+-8px): mean {d[border].mean():.3f} p99 {np.percentile(d[border], 99):.3f} | "
              f"interior: mean {d[~border].mean():.3f} p99 {np.percentile(d[~border], 99):.3f} | max|gray err| {gray_err:.1e}")


SEAM_TILINGS = [(1408, 384), (1024, 384), (1024, 256), (768, 256), (1024, 128), (768, 64), (512, 64), (512, 0)]


def throughput(size: int = 2048, repeats: int = 2) -> None:
    model, name = _model()
    img = _scene(size)
    nc.colorize(img[:512, :512], model, device="cpu", tile_size=512)  # warm up

    def best(fn):
        times = []
        for _ in range(repeats):
            clear_caches()
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return min(times)

    single = best(lambda: nc.colorize(img, model, device="cpu", tile_size=size))
    mp = size * size / 1e6
    print(f"[throughput] model={name} {size}x{size}: single pass {mp / single:.2f} MP/s ({single:.1f}s)")
    for tile, overlap in [(1408, 384), (1280, 256), (1024, 256), (768, 64), (512, 64)]:
        t = best(lambda: np.asarray(nc.colorize(img, model, device="cpu", tile_size=tile, overlap=overlap).rgb))  # noqa: B023 (called in this iteration)
        print(f"[throughput] tiled {tile}/{overlap}: {mp / t:.2f} MP/s ({t:.1f}s) = {single / t:.2f} of single pass")


def _memory_child(mp: int, work: str) -> None:
    import dask.array as da
    model, name = _model()
    side = round(np.sqrt(mp * 1e6) / 64) * 64
    pattern = da.from_array((_scene(1024) * 255).astype(np.uint8), chunks=512)
    reps = -(-side // 1024)
    src = da.tile(pattern, (reps, reps))[:side, :side].rechunk(2048)
    inp = os.path.join(work, f"in{mp}.zarr")
    da.to_zarr(src, inp, overwrite=True)
    import zarr
    z = zarr.open_array(inp, mode="r")
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    store = nc.colorize_to_zarr(z, os.path.join(work, f"out{mp}.zarr"), model, device="cpu")
    wall = time.perf_counter() - t
    import zarr as _z
    job = dict(_z.open_group(str(store), mode="r").attrs)["napari_colorize"]["options"]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"mp": side * side / 1e6, "side": side, "wall_s": wall, "peak_rss_mb": peak / 1024,
                      "rss_before_mb": base / 1024, "model": name,
                      "tiling": [job["tile_size"], job["overlap"]]}))


def memory(sizes=(16, 64)) -> None:
    with tempfile.TemporaryDirectory() as work:
        for mp in sizes:
            out = subprocess.run([sys.executable, __file__, "_memory_child", str(mp), work], capture_output=True,
                                 text=True, check=False)
            if out.returncode:
                print(out.stderr[-2000:])
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"[memory] zarr->zarr {r['mp']:.0f} MP ({r['side']}^2), model={r['model']}: wall {r['wall_s']:.0f}s "
                  f"({r['mp'] / r['wall_s']:.2f} MP/s), peak RSS {r['peak_rss_mb']:.0f} MB "
                  f"(before colorizing {r['rss_before_mb']:.0f} MB), tile/overlap {r.get('tiling')}")
            for stale in (f"out{mp}.zarr", f"in{mp}.zarr"):
                shutil.rmtree(os.path.join(work, stale), ignore_errors=True)


def cli(size: int = 4096, formats=("png", "tiff", "zarr"), width: int | None = None, cluster: bool = True) -> None:
    import imageio.v3 as iio
    model, name = _model()
    width = size if width is None else width
    with tempfile.TemporaryDirectory() as work:
        src = Path(work) / "in"
        src.mkdir()
        iio.imwrite(src / "big.png", (_scene(size, width) * 255).astype(np.uint8))
        model_arg = model if isinstance(model, str) else str(nc.save_model(model, Path(work) / "m.safetensors"))
        for extra in ([], ["--workers", "2"]) if cluster else ([],):
            for fmt in formats:
                out = Path(work) / f"out-{fmt}-{len(extra)}"
                t = time.perf_counter()
                child = subprocess.Popen([sys.executable, "-m", "napari_colorize.cli", "colorize", str(src), "-o",
                                          str(out), "--model", model_arg, "--device", "cpu", "--format", fmt,
                                          "--no-progress", *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                         text=True)
                err = child.stderr.read()
                _, status, usage = os.wait4(child.pid, 0)  # this child's own peak RSS (kB on Linux)
                wall = time.perf_counter() - t
                summary = [line for line in err.splitlines() if line.startswith("colorized")]
                print(f"[cli] {width}x{size} {fmt} {' '.join(extra) or 'in-process'} model={name}: "
                      f"rc={os.waitstatus_to_exitcode(status)} wall {wall:.1f}s incl. start-up = "
                      f"{size * width / 1e6 / wall:.2f} MP/s; peak RSS {usage.ru_maxrss / 1024:.0f} MB "
                      f"(the main process; cluster workers not counted); {summary[0] if summary else err[-500:]}")


def _null_predict(model, gray, options=None, precision="fp32"):
    """Stands in for the network: outputs of the right shape at memory-copy cost."""
    b, h, w = gray.shape
    zeros = torch.zeros((b, h, w), device=gray.device)
    return {"rgb": gray.unsqueeze(-1).expand(b, h, w, 3).contiguous(), "chroma_confidence": zeros,
            "hue_entropy": zeros.clone()}


def overhead(size: int = 4096, repeats: int = 3) -> None:
    """MP/s of everything but the network: reading, tiling, blending, assembling the result.

    A GPU can only be kept busy if the engine around it is faster than the network;
    this is that ceiling, measured with the network replaced by a copy.
    """
    from napari_colorize import inference
    import dask
    model, _name = _model()
    img = _scene(size)
    real = inference.predict_maps
    inference.predict_maps = _null_predict
    try:
        for tile, overlap in [(1024, 256), (2048, 256)]:
            times = []
            for _ in range(repeats):
                clear_caches()
                t = time.perf_counter()
                res = nc.colorize(img, model, device="cpu", tile_size=tile, overlap=overlap)
                dask.compute(res.rgb, res.chroma_confidence, res.hue_entropy)
                times.append(time.perf_counter() - t)
            mp = size * size / 1e6
            print(f"[overhead] {size}x{size} tile {tile}/{overlap}, network replaced by a copy, {os.cpu_count()} cores: "
                  f"{mp / min(times):.1f} MP/s ({min(times):.2f}s)")
    finally:
        inference.predict_maps = real


class _GpuBusy:
    """Samples nvidia-smi's utilisation every 0.1 s while a block runs (mean %, or None)."""

    def __enter__(self):
        import threading
        self.samples, self._stop = [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(0.1):
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, timeout=5, check=True).stdout.split()
                self.samples.append(float(out[0]))
            except (OSError, subprocess.SubprocessError, ValueError, IndexError):  # no usable nvidia-smi
                return

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def mean(self):
        return sum(self.samples) / len(self.samples) if self.samples else None


def gpu(size: int = 4096) -> None:
    if not torch.cuda.is_available():
        print("[gpu] no CUDA device here; skipped")
        return
    from napari_colorize import inference
    from napari_colorize.api import decode_options_for
    img = _scene(size)
    print(f"[gpu] {torch.cuda.get_device_name()}, {os.cpu_count()} CPU cores, image {size}x{size}")
    for backbone in ("compact", "vgg16"):
        model, name = _model(backbone)
        net = nc.get_model(model, "cuda")
        for precision in ("fp32", "bf16"):
            for tile in (None, 2048, 1024):  # None: the GPU default (the backbone's gpu_tiling, one pass up to its tile size)
                np.asarray(nc.colorize(img, net, device="cuda", precision=precision, tile_size=tile).rgb)  # warm-up
                clear_caches()
                torch.cuda.synchronize()
                with _GpuBusy() as busy:
                    t = time.perf_counter()
                    res = nc.colorize(img, net, device="cuda", precision=precision, tile_size=tile)
                    np.asarray(res.rgb)
                    torch.cuda.synchronize()
                    pipe = size * size / 1e6 / (time.perf_counter() - t)
                batch, tile = res.info["batch_size"], res.info["tile_size"]
                x = torch.rand(batch, tile, tile, device="cuda")
                opts = decode_options_for(net)
                inference.predict(net, x, opts, precision)
                torch.cuda.synchronize()
                t = time.perf_counter()
                n = 5
                for _ in range(n):
                    inference.predict(net, x, opts, precision)
                torch.cuda.synchronize()
                model_only = n * batch * tile * tile / 1e6 / (time.perf_counter() - t)
                util = "n/a" if busy.mean is None else f"{busy.mean:.0f}%"
                print(f"[gpu] {name} {precision} tile {tile}/{res.info['overlap']} ({res.info['n_tiles']} tiles) batch {batch}: "
                      f"pipeline {pipe:.1f} MP/s, model only {model_only:.1f} MP/s, ratio {pipe / model_only:.2f} "
                      f"(tiling overhead included); "
                      f"GPU busy {util}; peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
                torch.cuda.reset_peak_memory_stats()


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    if what == "_memory_child":
        _memory_child(int(sys.argv[2]), sys.argv[3])
    elif what == "seams":  # seams [SIZE [TILE/OVERLAP ...]], e.g. seams 3072 1280/256 1280/384
        size = int(sys.argv[2]) if len(sys.argv) > 2 else 1536
        seams(size, [tuple(int(v) for v in a.split("/")) for a in sys.argv[3:]] or None)
    elif what == "throughput":
        throughput(int(sys.argv[2]) if len(sys.argv) > 2 else 2048)
    elif what == "memory":
        memory(tuple(int(a) for a in sys.argv[2:]) or (16, 64))
    elif what == "cli":  # cli [SIDE|WIDTHxHEIGHT [FORMAT ...] [--no-cluster]], e.g. cli 16000x2600 tiff --no-cluster
        args = [a for a in sys.argv[2:] if a != "--no-cluster"]
        width, _, height = (args[0] if args else "4096").partition("x")
        cli(int(height or width), tuple(args[1:]) or ("png", "tiff", "zarr"), int(width),
            cluster="--no-cluster" not in sys.argv)
    elif what == "overhead":
        overhead()
    elif what == "gpu":
        gpu()
    else:
        for part in (seams, throughput, memory, cli, gpu):
            part()
