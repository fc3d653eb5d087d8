"""Training throughput: images per second of sparse hypercolumn training.

Prints, for each backbone / crop / batch size, the images per second of one
optimisation step (forward at 128 points per crop, backward, AdamW), and the crops
per second the data pipeline delivers (random scale, crop, mirror, targets), so one
can see which side limits a run.  On CUDA the step runs under bf16 autocast, as
``napari-colorize train`` does.

    python benchmarks/bench_train.py                 # CPU (and CUDA if present)
    python benchmarks/bench_train.py --device cuda --backbone vgg16 --crop 256 --batch 16
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from napari_colorize import build_model
from napari_colorize.devices import autocast, resolve_device
from napari_colorize.spaces import get_space
from napari_colorize.training.data import ColorCropDataset, StepBatchSampler
from napari_colorize.training.trainer import compute_loss


def synthetic_images(n: int = 32, seed: int = 0) -> list[np.ndarray]:
    """Smooth random colour images, 384 x 512 (the size training keeps in memory)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        low = rng.random((12, 16, 3)).astype(np.float32)
        img = torch.nn.functional.interpolate(torch.from_numpy(low).permute(2, 0, 1)[None], size=(384, 512),
                                              mode="bicubic", align_corners=False)[0].permute(1, 2, 0)
        out.append((img.clamp(0, 1).numpy() * 255).astype(np.uint8))
    return out


def bench_data(images, crop: int, batch: int, workers: int, steps: int = 10) -> float:
    """Crops per second delivered by the DataLoader."""
    ds = ColorCropDataset(images, get_space("hue_chroma"), crop)
    loader = torch.utils.data.DataLoader(ds, batch_sampler=StepBatchSampler(len(images), batch, steps + 2),
                                         num_workers=workers, prefetch_factor=4 if workers else None)
    it = iter(loader)
    next(it), next(it)  # start the workers
    t = time.perf_counter()
    for _ in range(steps):
        next(it)
    return steps * batch / (time.perf_counter() - t)


def bench_step(backbone: str, device: torch.device, crop: int, batch: int, images, steps: int = 5) -> float:
    """Images per second of full training steps (data prepared beforehand)."""
    torch.manual_seed(0)
    model = build_model(backbone).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ds = ColorCropDataset(images, model.space, crop)
    batches = [torch.utils.data.default_collate([ds[(i % len(images), s * batch + i)] for i in range(batch)])
               for s in range(2)]
    precision = "bf16" if device.type == "cuda" else "fp32"

    def step(b):
        b = {k: v.to(device) for k, v in b.items()}
        with autocast(device, precision):
            loss = compute_loss(model, b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step(batches[0])  # warm-up (allocations, cuDNN/oneDNN choices)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for s in range(steps):
        step(batches[s % 2])
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", action="append", default=None, help="cpu, cuda, ... (default: cpu, and cuda if present)")
    p.add_argument("--backbone", action="append", default=None, help="compact (default), vgg16")
    p.add_argument("--crop", type=int, action="append", default=None, help="default 160, 192, 256")
    p.add_argument("--batch", type=int, action="append", default=None, help="default 8, 16")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.device or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    images = synthetic_images()
    print(f"torch {torch.__version__}, {os.cpu_count()} CPU cores, {torch.get_num_threads()} torch threads, "
          f"load average {os.getloadavg()[0]:.1f}")
    for workers in (0, 1):
        print(f"data pipeline, crop 192 batch 16, {workers} worker(s): {bench_data(images, 192, 16, workers):.1f} crops/s")
    for name in devices:
        device = resolve_device(name)
        label = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
        for backbone in args.backbone or ["compact"]:
            for crop in args.crop or [160, 192, 256]:
                for batch in args.batch or [8, 16]:
                    ips = bench_step(backbone, device, crop, batch, images, args.steps)
                    print(f"{label:>24} {backbone:8} crop {crop:4d} batch {batch:3d}: {ips:8.1f} images/s "
                          f"({batch / ips:.2f} s/step)")


if __name__ == "__main__":
    main()
