"""The training loop: sparse hypercolumn training with checkpoints and exact resume.

Per step (Larsson et al. 2016, section 3.3): a batch of random crops of colour
images, their gray versions through the network, logits at 128 random pixels per
crop only (:meth:`~napari_colorize.model.HypercolumnColorizer.point_logits`), and the
loss of the model's colour space against histograms of the true colour there.

Everything a run draws at random is a function of ``(seed, step)`` (the data, see
:mod:`.data`) or of the saved RNG states (dropout), so ``resume=True`` continues a
killed run to the same weights an uninterrupted run would reach.

The run's settings and their checks are in :mod:`.config`, its files and the rules
that protect existing files in :mod:`.paths`, validation scores in :mod:`.validation`.
"""

from __future__ import annotations

import math
import os
import platform
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .._signals import StoppedAfterStep, ignore_stop_signals, stop_requests
from ..devices import autocast, resolve_device
from ..losses import lightness_weight
from ..model import ModelConfig, build_model, load_model, read_config, save_model
from ..model.hypercolumn import HypercolumnColorizer
from .best import BestWeights
from .checkpoint import load_training_state, read_state_info, save_training_state
from .config import TrainConfig, check_config, check_resume, settings_record
from .data import ColorCropDataset, ImageSet, StepBatchSampler, skipped_counts, weight_summary
from .heldout import HeldOut
from .inputs import load_inputs
from .manifest import resolve_weights
from .optim import learning_rate, make_optimizer
from .paths import JsonLog, RunFiles, default_checkpoint_path, plan_files
from .trained_files import trained_files_record
from .validation import load_validation_images, validate

__all__ = ["TrainConfig", "train", "compute_loss", "validate", "learning_rate", "default_checkpoint_path",
           "load_validation_images"]


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


# --------------------------------------------------------------------------- loss

def compute_loss(model: HypercolumnColorizer, batch: dict[str, torch.Tensor], lambda_hue: float = 5.0,
                 use_lightness_weight: bool = False) -> torch.Tensor:
    """The paper's loss at the sampled points of a batch (from :class:`.data.ColorCropDataset`).

    The model's colour space defines it (:meth:`~napari_colorize.spaces.SpaceSpec.loss`):
    ``hue_chroma``: KL(chroma) + lambda_hue * y_C * KL(hue); ``lab``: KL of the joint
    (a, b) histogram; ``lab_marginal``: the sum of the KL of a and of b.
    """
    context = model.context_features(batch["overview"]) if "overview" in batch else None  # the crop's whole image
    logits = model.point_logits(batch["gray"], batch["points"], context)
    log_probs = {k: F.log_softmax(v.float(), dim=-1) for k, v in logits.items()}
    weight = lightness_weight(batch["lightness"]) if use_lightness_weight else None
    targets = {head: batch[f"target_{head}"] for head in model.space.heads}
    return model.space.loss(log_probs, targets, batch["chroma"], lambda_hue=lambda_hue, weight=weight)


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


def _hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple MPS"
    return f"CPU {platform.processor() or platform.machine()} x{os.cpu_count()} ({torch.get_num_threads()} torch threads)"


@dataclass
class _Run:
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


def _restore(run: _Run) -> str | None:
    """Load the checkpoint's weights, optimizer, RNG states and progress into ``run``; a note on its best, if any."""
    doc = load_training_state(run.files.checkpoint, run.model, run.optimizer, restore_random=True)
    history = doc["info"].get("history", {})
    run.wall_before = float(doc["info"].get("wall_time_s", 0.0))
    run.recent = list(history.get("recent_losses", []))
    run.last_val = history.get("val")
    with torch.random.fork_rng(devices=[]):  # building the model draws initial weights: keep the restored RNG
        return run.best.resume(history.get("best"), run.files.output, run.start)


def _setup(cfg: TrainConfig) -> _Run:
    """Check everything, then build the model, the data and the optimizer (restored when resuming).

    The order matters for exact resumption: the seed before the model (its initial
    weights), the batch iterator before restoring the RNG states (creating it draws).
    """
    check_config(cfg)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    files = plan_files(cfg.output, cfg.checkpoint, cfg.log, cfg.resume, cfg.force, cfg.init)
    resume_doc = read_state_info(files.checkpoint) if cfg.resume else None
    device, precision = _device_and_precision(cfg)
    _seed_everything(cfg.seed)
    model, backbone, space = _make_model(cfg)
    inputs = load_inputs(cfg)
    images, split = inputs.images, inputs.split
    weights, weights_source, matched = resolve_weights(cfg.weights, cfg.data, images.paths)
    settings = {**settings_record(cfg, backbone, space), "data_fingerprint": images.fingerprint()}
    model = model.to(device).train()
    optimizer, base_lr = make_optimizer(cfg, model)
    if resume_doc is not None:
        check_resume(resume_doc["info"]["settings"], settings, settings["data_fingerprint"], images.legacy_fingerprint())
    start = _start_step(cfg, resume_doc)
    batches, workers = _batches(cfg, images, model, weights, device, start)
    run = _Run(cfg, files, device, precision, model, optimizer, base_lr,
               warmup=cfg.warmup if cfg.warmup is not None else min(500, cfg.steps // 20), images=images,
               weights_source=weights_source, val_images=inputs.val_images,
               trained_files=trained_files_record(images.paths if weights is None else  # weight 0: never drawn
                                                  [p for p, w in zip(images.paths, weights) if w > 0]),
               val_every=cfg.val_every or max(50, math.ceil(len(images) / cfg.batch_size)), settings=settings,
               start=start, batches=batches, log=JsonLog(files.log, files.replace_log), split=split,
               best=BestWeights(cfg.early_stop))
    note = _restore(run) if resume_doc is not None else None
    run.summary = (f"training {backbone}/{space} on {images.summary()} from {len(cfg.data)} folder(s); "
                   f"{weight_summary(weights)}" + (f" from {weights_source} ({matched} listed)" if weights_source else "")
                   + f"; device {device} ({precision}); {workers} loader worker(s); steps {start}..{cfg.steps}"
                   + (f"\n{split.describe()}" if split is not None else "") + (f"\nnote: {note}" if note else ""))
    return run


# --------------------------------------------------------------------------- one step, validation, saving

def _train_step(run: _Run, step: int) -> tuple[float, float]:
    """One optimisation step (0-based ``step``); returns its loss and learning rate."""
    cfg = run.cfg
    batch = {k: v.to(run.device, non_blocking=True) for k, v in next(run.batches).items()}
    lr = learning_rate(step, run.base_lr, cfg.steps, run.warmup, cfg.schedule)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    with autocast(run.device, run.precision):
        loss = compute_loss(run.model, batch, cfg.lambda_hue, cfg.lightness_weight)
    if not torch.isfinite(loss):
        raise RuntimeError(f"the loss became {float(loss)} at step {step}; lower --lr (now {lr:.3g}) "
                           "or resume from the last checkpoint with a smaller one")
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.clip_grad:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.clip_grad)
    run.optimizer.step()
    value = float(loss.detach())
    run.recent = (run.recent + [value])[-50:]
    run.window_n += cfg.batch_size
    return value, lr


def _log_step(run: _Run, done: int, value: float, lr: float) -> None:
    if done % run.cfg.log_every and done != run.cfg.steps:
        return
    now = time.perf_counter()
    run.images_per_s = run.window_n / max(now - run.window_t, 1e-9)
    run.window_t, run.window_n = now, 0
    run.log.write(event="step", step=done, loss=value, loss_mean50=run.loss_mean, lr=lr,
                  images_per_s=run.images_per_s, elapsed_s=run.wall_before + now - run.t0)


def _validate(run: _Run, done: int, bar) -> None:
    """Score the validation images when due (every ``val_every`` steps and at the end)."""
    if not run.val_images or (done % run.val_every and done != run.cfg.steps):
        return
    val = validate(run.model, run.val_images, run.device, run.precision, run.cfg.lambda_hue)
    run.last_val = {**val, "step": done}
    run.log.write(event="val", **run.last_val)
    if run.best.update(val["loss"], done, run.model):
        run.log.write(event="best", step=done, loss=val["loss"])
        if run.best.enabled:  # the model file always holds the best weights so far
            _save_model(run, done, complete=False)
    run.stopped_early = run.best.should_stop
    bar.write(f"step {done}: val loss {val['loss']:.4f}, AuC {val['auc']:.4f} (gray {val['auc_gray']:.4f}), "
              f"PSNR {val['psnr']:.2f} dB (gray {val['psnr_gray']:.2f})")


def _checkpoint_due(run: _Run, done: int) -> bool:
    cfg = run.cfg
    return (done % cfg.checkpoint_every == 0 and done != cfg.steps) or done - run.start == cfg.stop_after


def _save(run: _Run, step: int, complete: bool) -> None:
    """Write the resumable state, then the model file (``training["complete"]`` says which it is)."""
    info = {"settings": run.settings, "history": {"recent_losses": run.recent, "val": run.last_val,
                                                  "best": run.best.history()},
            "wall_time_s": run.wall_time(), "step": step, "complete": complete}
    save_training_state(run.files.checkpoint, run.model, run.optimizer, step, info)
    _save_model(run, step, complete)


def _save_model(run: _Run, step: int, complete: bool) -> None:
    """Write the model file: the last weights, or with early stopping the best held-out ones."""
    cfg, config = run.cfg, run.model.config
    # What the run used: a fine-tuned model keeps its --init model's dropout and context, and
    # the weight decay left to its default (None) is the optimizer's.
    extra = {"held_out": run.split.record() if run.split is not None else None, "degrade": cfg.degrade,
             "weight_decay": run.optimizer.param_groups[0]["weight_decay"], "dropout": config.dropout,
             "context": config.context, "context_dropout": config.context_dropout, "trained_files": run.trained_files,
             "best_val": run.best.history(), "early_stop": cfg.early_stop,
             "stopped_early": run.stopped_early, "weights_step": run.best.weights_step(step)}
    save_model(run.best.model_to_save(run.model), run.files.output, data=[str(Path(d).resolve()) for d in cfg.data], steps=step,
               complete=complete, command=cfg.command, wall_time_s=round(run.wall_time(), 1),
               final_loss=run.loss_mean, val=run.last_val, images=len(run.images),
               skipped=skipped_counts(run.images), weights=run.weights_source, optimizer=cfg.optimizer,
               lr=run.base_lr, warmup=run.warmup, schedule=cfg.schedule, batch_size=cfg.batch_size, crop=cfg.crop,
               points=cfg.points, scale=list(cfg.scale), target_window=cfg.target_window, lambda_hue=cfg.lambda_hue,
               lightness_weight=cfg.lightness_weight, seed=cfg.seed, device=str(run.device),
               precision=run.precision, hardware=_hardware(run.device), torch_version=torch.__version__, **extra)


# --------------------------------------------------------------------------- the loop

def _loop(run: _Run) -> int:
    """Train from ``run.start``; returns the last step index run.  Saves at checkpoints and at the end."""
    from tqdm.auto import tqdm

    cfg = run.cfg
    bar = tqdm(total=cfg.steps, initial=run.start, desc="training", unit="step", disable=not cfg.progress,
               mininterval=1.0 if sys.stderr.isatty() else 30.0, dynamic_ncols=True)
    run.t0 = run.window_t = time.perf_counter()
    step = run.start
    try:
        with stop_requests() as stop:  # Ctrl-C and SIGTERM stop the run between steps, saved
            for step in range(run.start, cfg.steps):
                value, lr = _train_step(run, step)
                done = step + 1
                _log_step(run, done, value, lr)
                _validate(run, done, bar)
                saved = _checkpoint_due(run, done)
                if saved:
                    _save(run, done, complete=False)
                bar.set_postfix(loss=f"{run.loss_mean:.4f}", img_s=f"{run.images_per_s:.1f}", lr=f"{lr:.2g}",
                                refresh=False)
                bar.update(1)
                if run.stopped_early:
                    bar.write(f"step {done}: stopping early, no lower held-out loss in {cfg.early_stop} validations "
                              f"(best {run.best.loss:.4f} at step {run.best.step})")
                    _save(run, done, complete=True)
                    break
                if done - run.start == cfg.stop_after and done != cfg.steps:
                    break
                if stop.requested and done != cfg.steps:
                    _stop(run, done, stop.signum, saved)
            else:
                _save(run, cfg.steps, complete=True)
    finally:
        bar.close()
        run.batches = None  # shuts the loader's worker processes down
    return step


def _stop(run: _Run, done: int, signum: int, saved: bool) -> None:
    """Save the whole steps done so far (unless just saved) and stop on the signal received."""
    if not saved:
        _save(run, done, complete=False)
    run.log.write(event="stopped", step=done, signal=signal.Signals(signum).name)
    raise StoppedAfterStep(signum, done)


def _finish(run: _Run, step: int) -> dict[str, Any]:
    wall = run.wall_time()
    result = {"output": str(run.files.output), "checkpoint": str(run.files.checkpoint), "steps": step + 1,
              "final_loss": run.loss_mean, "val": run.last_val, "wall_time_s": wall, "images": len(run.images),
              "skipped": skipped_counts(run.images), "weights": run.weights_source}
    run.log.write(event="end", **result)
    skipped = ", ".join(f"{n} {k}" for k, n in result["skipped"].items() if n)
    print(f"wrote {run.files.output} after {step + 1} steps in {wall / 60:.1f} min (final loss {run.loss_mean:.4f}); "
          f"used {len(run.images)} images" + (f", skipped {skipped}" if skipped else "")
          + f"; resumable state in {run.files.checkpoint}", file=sys.stderr)
    if (run.model.config.decoding.get("calibration") or {}).get("inherited_from"):
        print(f"note: its decoding calibration was fitted to {run.model.config.decoding['calibration']['inherited_from']}'s weights; fit it to these on held-out colour "
              f"images: napari-colorize calibrate {run.files.output} HELD_OUT/ -o {run.files.output} --force", file=sys.stderr)
    return result


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Train (or fine-tune) a colorizer; returns a summary of the run.

    The model file ``cfg.output`` is (re)written at every checkpoint and at the end
    (``training["complete"]`` tells which); the resumable state goes to
    ``cfg.checkpoint``.  Existing files are protected (see :mod:`.paths`).

    Raises
    ------
    FileNotFoundError, FileExistsError, ValueError, PermissionError, RuntimeError
        With a message that says what to change (see :func:`.config.check_config`).
    """
    run = _setup(cfg)
    print(run.summary, file=sys.stderr)
    print(f"writing: {run.files.describe()}", file=sys.stderr)
    run.log.write(event="start", step=run.start, message=run.summary, settings=run.settings, time=time.time())
    return _finish(run, _loop(run))
