"""Setting a training run up: every check, then the model, the data and the optimizer.

The order matters for exact resumption: the seed before the model (its initial weights),
the batch iterator before restoring the RNG states (creating it draws).  :func:`setup_run`
returns a :class:`Run`, which :mod:`.trainer` trains.
"""

from __future__ import annotations

import math
import os
import platform
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._signals import ignore_stop_signals
from ..devices import autocast, resolve_device
from ..model import ModelConfig, build_model, load_model, read_config
from ..model.hypercolumn import HypercolumnColorizer
from .best import BestWeights
from .checkpoint import load_training_state, read_state_info
from .config import TrainConfig, check_config, check_resume, settings_record
from .data import ColorCropDataset, ImageSet, StepBatchSampler, weight_summary
from .heldout import HeldOut
from .inputs import load_inputs
from .manifest import resolve_weights
from .optim import make_optimizer, peak_lr
from .paths import JsonLog, RunFiles, file_calibration, plan_files
from .trained_files import trained_files_record

__all__ = ["Run", "setup_run", "hardware"]


# --------------------------------------------------------------------------- model

def _make_model(cfg: TrainConfig) -> tuple[HypercolumnColorizer, str, str]:
    """The starting model: the ``init`` file's (checked against --backbone/--space/--context/--hidden) or a new one."""
    if cfg.init is not None:
        config = read_config(cfg.init)
        # 0 is the dropout options' default: only another value was asked for (it used to be ignored).
        asked_for = {"backbone": cfg.backbone, "space": cfg.space, "context": cfg.context or None, "hidden": cfg.hidden,
                     "dropout": cfg.dropout or None, "context_dropout": cfg.context_dropout or None}
        for key, asked in asked_for.items():
            have = getattr(config, key)
            if asked is not None and asked != have:
                flag = key.replace("_", "-")
                raise ValueError(f"--init {cfg.init} is a {config.backbone}/{config.space} model with {flag} {have}, but "
                                 f"--{flag} {asked} was asked; drop --{flag} (it is taken from the --init model) or start "
                                 "from scratch")
        model = load_model(cfg.init, device="cpu")
        previous = dict(model.config.training)
        kept = ("data", "held_out", "trained_files", "init_training", "steps", "wall_time_s", "final_loss", "val")
        model.config.training = {"init": str(cfg.init), "init_training": {k: previous[k] for k in kept if k in previous}}
        if model.config.decoding.get("calibration"):  # fitted to the --init weights, kept until recalibrated
            model.config.decoding["calibration"] = {**model.config.decoding["calibration"], "inherited_from": str(cfg.init)}
        return model, config.backbone, config.space
    backbone, space = cfg.backbone or ModelConfig.backbone, cfg.space or ModelConfig.space
    return build_model(backbone, space, pretrained=cfg.pretrained, hidden=cfg.hidden, dropout=cfg.dropout,
                       context=cfg.context, context_dropout=cfg.context_dropout), backbone, space


def _keep_calibration(model: HypercolumnColorizer, output: Path) -> None:
    """A resumed run keeps the calibration of the model file it continues.

    ``calibrate -o`` in place on a half-trained model leaves a calibration fitted to the
    weights of that step; the resumed run used to replace it with its ``--init`` model's (or
    none), unsaid.  It is kept as a fine-tuned model keeps its ``--init`` model's: marked
    ``inherited_from`` (the file and step), and the end of the run says to fit it again.
    """
    found = file_calibration(output)
    if found is None:  # none, or the file gone or damaged: the run's own decoding stands
        return
    decoding, steps = found
    calibration = decoding["calibration"]
    if "inherited_from" not in calibration:  # fitted to the file's weights, which training now changes
        calibration = {**calibration, "inherited_from": f"{output} at step {steps}" if steps is not None else str(output)}
    model.config.decoding = {**decoding, "calibration": calibration}


# --------------------------------------------------------------------------- set-up

def _seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _default_workers() -> int:
    cores = os.cpu_count() or 1
    # On 2 cores, one loader process overlaps crops with the step; more would steal
    # the network's threads (a crop costs ~2 ms, a step of 16 crops ~0.4 s).
    return 1 if cores <= 2 else min(4, cores - 1)


def hardware(device: torch.device) -> str:
    """The device in words, for the model's metadata."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple MPS"
    return f"CPU {platform.processor() or platform.machine()} x{os.cpu_count()} ({torch.get_num_threads()} torch threads)"


@dataclass
class Run:
    """A training run in progress: its objects, and the progress it reports and saves."""

    cfg: TrainConfig
    files: RunFiles
    device: torch.device
    precision: str
    model: HypercolumnColorizer
    optimizer: torch.optim.Optimizer
    base_lr: float
    warmup: int
    images: ImageSet
    weights_source: str | None
    val_images: list[np.ndarray]
    trained_files: dict[str, Any]
    val_every: int
    settings: dict[str, Any]
    start: int
    batches: Iterator[dict[str, torch.Tensor]] | None
    log: JsonLog
    summary: str = ""
    wall_before: float = 0.0
    recent: list[float] = field(default_factory=list)
    last_val: dict[str, float] | None = None
    split: HeldOut | None = None
    best: BestWeights = field(default_factory=BestWeights)
    stopped_early: bool = False
    t0: float = 0.0
    window_t: float = 0.0
    window_n: int = 0
    images_per_s: float = float("nan")

    @property
    def loss_mean(self) -> float | None:
        """The reported loss: mean of the last 50 steps."""
        return float(np.mean(self.recent)) if self.recent else None

    def wall_time(self) -> float:
        return self.wall_before + time.perf_counter() - self.t0


def _device_and_precision(cfg: TrainConfig) -> tuple[torch.device, str]:
    device = resolve_device(cfg.device)
    precision = cfg.precision or ("bf16" if device.type == "cuda" else "fp32")
    autocast(device, precision)  # validates the precision for this device now
    return device, precision


def _batches(cfg: TrainConfig, images: ImageSet, model: HypercolumnColorizer, weights: np.ndarray | None,
             device: torch.device, start: int) -> tuple[Iterator[dict[str, torch.Tensor]], int]:
    """The batch iterator from step ``start`` on, and the number of loader workers."""
    dataset = ColorCropDataset(images.images, model.space, cfg.crop, cfg.points, tuple(cfg.scale), True,
                               cfg.target_window, cfg.degrade, model.context_side)
    workers = _default_workers() if cfg.workers is None else cfg.workers
    sampler = StepBatchSampler(len(images), cfg.batch_size, cfg.steps, cfg.seed, weights, start=start)
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, num_workers=workers, pin_memory=device.type == "cuda",
        prefetch_factor=4 if workers > 0 else None, persistent_workers=False,
        worker_init_fn=ignore_stop_signals if workers > 0 else None,  # the main process stops them, after its step
    )
    return iter(loader), workers


def _start_step(cfg: TrainConfig, resume_doc: dict[str, Any] | None) -> int:
    start = int(resume_doc["step"]) if resume_doc is not None else 0
    if start >= cfg.steps:
        raise ValueError(f"the checkpoint has already done {start} steps; give --steps > {start} to train further")
    return start


def _restore(run: Run) -> str | None:
    """Load the checkpoint's weights, optimizer, RNG states and progress into ``run``; a note on its best, if any."""
    doc = load_training_state(run.files.checkpoint, run.model, run.optimizer, restore_random=True)
    history = doc["info"].get("history", {})
    run.wall_before = float(doc["info"].get("wall_time_s", 0.0))
    run.recent = list(history.get("recent_losses", []))
    run.last_val = history.get("val")
    with torch.random.fork_rng(devices=[]):  # building the model draws initial weights: keep the restored RNG
        return run.best.resume(history.get("best"), run.files.output, run.start)


def setup_run(cfg: TrainConfig) -> Run:
    """Check everything, then build the model, the data and the optimizer (restored when resuming)."""
    check_config(cfg)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    files = plan_files(cfg.output, cfg.checkpoint, cfg.log, cfg.resume, cfg.force, cfg.init)
    resume_doc = read_state_info(files.checkpoint) if cfg.resume else None
    device, precision = _device_and_precision(cfg)
    _seed_everything(cfg.seed)
    model, backbone, space = _make_model(cfg)
    if resume_doc is not None:  # the settings before the images are decoded (minutes on a large corpus)
        check_resume(resume_doc["info"]["settings"], settings_record(cfg, backbone, space), None)
        _keep_calibration(model, files.output)  # nothing to keep if the file is gone
    inputs = load_inputs(cfg)
    images, split = inputs.images, inputs.split
    weights, weights_source, matched = resolve_weights(cfg.weights, cfg.data, images.paths)
    saved = resume_doc["info"]["settings"] if resume_doc is not None else None
    lr, lr_note = peak_lr(cfg, saved, int(resume_doc["step"]) if resume_doc is not None else 0)
    # The rate in use, not None for a default: a resumed run goes on at it (see peak_lr).
    settings = {**settings_record(cfg, backbone, space), "lr": lr, "data_fingerprint": images.fingerprint()}
    model = model.to(device).train()
    optimizer, base_lr = make_optimizer(cfg, model, lr)
    if resume_doc is not None:
        check_resume(resume_doc["info"]["settings"], settings, settings["data_fingerprint"], images.legacy_fingerprint())
    start = _start_step(cfg, resume_doc)
    batches, workers = _batches(cfg, images, model, weights, device, start)
    run = Run(cfg, files, device, precision, model, optimizer, base_lr,
               warmup=cfg.warmup if cfg.warmup is not None else min(500, cfg.steps // 20), images=images,
               weights_source=weights_source, val_images=inputs.val_images,
               trained_files=trained_files_record(images.paths if weights is None else  # weight 0: never drawn
                                                  [p for p, w in zip(images.paths, weights) if w > 0]),
               val_every=cfg.val_every or max(50, math.ceil(len(images) / cfg.batch_size)), settings=settings,
               start=start, batches=batches, log=JsonLog(files.log, files.replace_log), split=split,
               best=BestWeights(cfg.early_stop))
    # Said only now that every check has passed: what the run replaces, what a resume changes.
    notes = [*files.notes, lr_note, _restore(run) if resume_doc is not None else None]
    run.summary = (f"training {backbone}/{space} on {images.summary()} from {len(cfg.data)} folder(s); "
                   f"{weight_summary(weights)}" + (f" from {weights_source} ({matched} listed)" if weights_source else "")
                   + f"; device {device} ({precision}); {workers} loader worker(s); steps {start}..{cfg.steps}"
                   + (f"\n{split.describe()}" if split is not None else "")
                   + "".join(f"\nnote: {note}" for note in notes if note))
    return run
