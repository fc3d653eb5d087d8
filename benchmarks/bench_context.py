"""What the image-level context costs at inference: a context model against the same
weights with the context switched off, at 1024 x 1024 on the CPU.

Usage::

    python benchmarks/bench_context.py runs/compact_lab_ctx.safetensors [--rounds 2]

Prints MP/s per round for both (timings are noisy here: compare within a round).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from skimage import data

import napari_colorize as nc
from napari_colorize.engine.cache import clear_caches
from napari_colorize.model import load_model, save_model


def best_seconds(image: np.ndarray, model: str, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        clear_caches()
        t = time.perf_counter()
        np.asarray(nc.colorize(image, model, device="cpu", tile_size=max(image.shape)).rgb)
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", help="a context model (napari-colorize train --context)")
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    image = np.tile(data.camera().astype(np.float32) / 255, (2, 2))  # 1024 x 1024
    ctx = load_model(args.model)
    if not ctx.context_side:
        raise SystemExit(f"{args.model} has no context (train it with --context)")
    with tempfile.TemporaryDirectory() as work:
        plain = nc.build_model(ctx.config.backbone, ctx.config.space, hidden=ctx.config.hidden)
        plain.load_state_dict({k: v for k, v in ctx.state_dict().items() if not k.startswith("context_")})
        plain.config.decoding = dict(ctx.config.decoding)
        off = str(save_model(plain, Path(work) / "off.safetensors"))
        mp = image.size / 1e6
        for r in range(args.rounds):
            for name, model in (("context", args.model), ("same weights, no context", off)):
                best_seconds(image, model, 1)  # load and warm up
                print(f"[context] round {r} {name}: {mp / best_seconds(image, model):.2f} MP/s", flush=True)


if __name__ == "__main__":
    main()
