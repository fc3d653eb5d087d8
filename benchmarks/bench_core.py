"""Core-library speed and memory figures (random-initialised models; speed does not depend on weights).

Prints:

(a) throughput of :func:`napari_colorize.colorize` on a 1024 x 1024 image, in megapixels
    per second, for the ``compact`` and ``vgg16`` backbones, and their ratio
    (goals: compact >= 1 MP/s on a CPU and >= 10x vgg16);
(b) the efficient hypercolumn head (project each tap at its own resolution) against the
    concatenate-then-project reference for vgg16 at 256 x 256: speed ratio of the head
    alone and end to end (goal >= 5x), and their largest absolute logit difference;
(c) peak resident memory of ``colorize`` on 2048 x 2048 per backbone, each in a fresh
    subprocess, minus the memory after import + model load.

Usage::

    python benchmarks/bench_core.py [--device cpu] [--size 1024] [--mem-size 2048] [--skip-memory]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F


def _test_image(size: int, seed: int = 0) -> np.ndarray:
    # A new seed gives a new image: colorize() caches finished tiles per process.
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    rng = np.random.default_rng(seed)
    return ((np.sin(xx / 37) * np.cos(yy / 23) + 1) / 2 * 0.8 + 0.2 * rng.random((size, size))).astype(np.float32)


def _model(backbone: str, device: str):
    from napari_colorize import build_model

    torch.manual_seed(0)
    return build_model(backbone, "hue_chroma").to(device).eval()


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def throughput(device: str, size: int, repeats: int) -> dict[str, float]:
    """(a) Megapixels per second of colorize() per backbone."""
    from napari_colorize import colorize

    out = {}
    for backbone in ("compact", "vgg16"):
        model = _model(backbone, device)
        colorize(_test_image(256, 99), model=model, device=device)  # warm-up (allocators, kernels)
        times = []
        for repeat in range(repeats if backbone == "compact" else 1):
            image = _test_image(size, seed=repeat)
            _sync(device)
            t0 = time.perf_counter()
            result = colorize(image, model=model, device=device)
            np.asarray(result.rgb)
            _sync(device)
            times.append(time.perf_counter() - t0)
        best = min(times)
        out[backbone] = size * size / 1e6 / best
        print(f"(a) colorize {size}x{size} {backbone:8s}: {best:7.2f} s  -> {out[backbone]:6.3f} MP/s"
              f"  (info: {json.dumps({k: result.info.get(k) for k in ('tile_size', 'batch_size', 'n_tiles')})})",
              flush=True)
        del model
    ratio = out["compact"] / out["vgg16"]
    print(f"(a) compact / vgg16 speed ratio: {ratio:.1f}x  (goal >= 10x); compact {out['compact']:.3f} MP/s "
          f"(goal >= 1 MP/s)", flush=True)
    return {**out, "ratio": ratio}


def _head_efficient(model, features, x):
    # The library's own grid_logits, fed the stored backbone output (head only).
    model._features = lambda gray: iter(list(features))
    try:
        return model.grid_logits(x)
    finally:
        del model._features


def _head_naive(model, features, grid):
    hyper = torch.cat([model._to_grid(f, t, grid) for t, f in zip(model.taps, features)], dim=1)
    weight = torch.cat([p.weight for p in model.projections], dim=1)
    return model._classify(F.conv2d(hyper, weight, model.projection_bias))


def _best_time(fn, repeats: int, device: str) -> float:
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return min(times)


@torch.no_grad()
def head_speed(device: str, size: int, repeats: int) -> dict[str, float]:
    """(b) Efficient vs naive hypercolumn head for vgg16."""
    model = _model("vgg16", device)
    x = torch.from_numpy(_test_image(size))[None, None].to(device)
    grid = (size // 4, size // 4)
    features = [f.clone() for f in model._features(x)]  # the backbone once; ReLUs are in place
    fast = _head_efficient(model, features, x)
    naive = _head_naive(model, features, grid)
    diff = max((fast[k] - naive[k]).abs().max().item() for k in fast)
    scale = max(naive[k].abs().max().item() for k in naive)
    t_fast = _best_time(lambda: _head_efficient(model, features, x), repeats, device)
    t_naive = _best_time(lambda: _head_naive(model, features, grid), repeats, device)
    e_fast = _best_time(lambda: model.grid_logits(x), max(1, repeats // 2), device)
    e_naive = _best_time(lambda: model.grid_logits_naive(x), max(1, repeats // 2), device)
    print(f"(b) vgg16 {size}x{size} head only: efficient {t_fast * 1e3:8.1f} ms, naive {t_naive * 1e3:8.1f} ms "
          f"-> {t_naive / t_fast:.1f}x (goal >= 5x)", flush=True)
    print(f"(b) vgg16 {size}x{size} end to end: efficient {e_fast:6.2f} s, naive {e_naive:6.2f} s "
          f"-> {e_naive / e_fast:.2f}x (the shared backbone dominates)", flush=True)
    print(f"(b) max |efficient - naive| logit difference: {diff:.2e} (logits up to {scale:.2e})", flush=True)
    return {"head_ratio": t_naive / t_fast, "end_to_end_ratio": e_naive / e_fast, "max_abs_diff": diff}


_MEMORY_CHILD = r"""
import json, sys, numpy as np, torch
def status(key):
    for line in open('/proc/self/status'):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
backbone, size, device = sys.argv[1], int(sys.argv[2]), sys.argv[3]
from napari_colorize import build_model, colorize
torch.manual_seed(0)
model = build_model(backbone, 'hue_chroma').to(device).eval()
colorize(np.zeros((64, 64), np.float32), model=model, device=device)  # load lazily imported code
baseline = status('VmRSS:')
image = np.random.default_rng(0).random((size, size), dtype=np.float32)
result = colorize(image, model=model, device=device)
rgb = np.asarray(result.rgb)
print(json.dumps({'baseline': baseline, 'peak': status('VmHWM:'), 'after': status('VmRSS:'),
                  'output': rgb.nbytes + np.asarray(result.chroma_confidence).nbytes * 2 + image.nbytes}))
"""


def peak_memory(device: str, size: int) -> dict[str, dict[str, float]]:
    """(c) Peak RSS of colorize() on size x size, in a fresh process per backbone."""
    out = {}
    for backbone in ("compact", "vgg16"):
        proc = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, backbone, str(size), device],
                              capture_output=True, text=True, check=True)
        stats = json.loads(proc.stdout.strip().splitlines()[-1])
        gib = {k: v / 2**30 for k, v in stats.items()}
        delta = gib["peak"] - gib["baseline"]
        out[backbone] = {**gib, "delta": delta}
        print(f"(c) colorize {size}x{size} {backbone:8s}: peak RSS {gib['peak']:.2f} GiB, after import+load "
              f"{gib['baseline']:.2f} GiB -> +{delta:.2f} GiB for the call (of which input+outputs "
              f"{gib['output']:.2f} GiB)", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=1024, help="image side for (a)")
    parser.add_argument("--head-size", type=int, default=256, help="image side for (b)")
    parser.add_argument("--mem-size", type=int, default=2048, help="image side for (c)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}", flush=True)
    throughput(args.device, args.size, args.repeats)
    head_speed(args.device, args.head_size, args.repeats)
    if not args.skip_memory:
        peak_memory(args.device, args.mem_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
