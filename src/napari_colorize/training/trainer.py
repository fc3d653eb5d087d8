"""The training loop: sparse hypercolumn training with checkpoints and exact resume.

Per step (Larsson et al. 2016, section 3.3): a batch of random crops of colour
images, their gray versions through the network, logits at 128 random pixels per
crop only (:meth:`~napari_colorize.model.HypercolumnColorizer.point_logits`), and the
loss of the model's colour space against histograms of the true colour there.

Everything a run draws at random is a function of ``(seed, step)`` (the data, see
:mod:`.data`) or of the saved RNG states (dropout), so ``resume=True`` continues a
killed run to the same weights an uninterrupted run would reach.

The run's settings and their checks are in :mod:`.config`, its files and the rules
that protect existing files in :mod:`.paths`, its set-up in :mod:`.setup`, validation
scores in :mod:`.validation`.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .._signals import StoppedAfterStep, stop_requests
from ..devices import autocast
from ..losses import lightness_weight
from ..model import save_model
from ..model.hypercolumn import HypercolumnColorizer
from .checkpoint import save_training_state
from .config import TrainConfig
from .data import skipped_counts
from .optim import learning_rate
from .paths import default_checkpoint_path
from .setup import Run, hardware, setup_run
from .validation import load_validation_images, validate

__all__ = ["TrainConfig", "train", "compute_loss", "validate", "learning_rate", "default_checkpoint_path",
           "load_validation_images"]


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


# --------------------------------------------------------------------------- one step, validation, saving

def _train_step(run: Run, step: int) -> tuple[float, float]:
    """One optimisation step (0-based ``step``); returns its loss and learning rate."""
    cfg = run.cfg
    batch = {k: v.to(run.device, non_blocking=True) for k, v in next(run.batches).items()}
    lr = learning_rate(step, run.base_lr, cfg.steps, run.warmup, cfg.schedule)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    with autocast(run.device, run.precision):
        loss = compute_loss(run.model, batch, cfg.lambda_hue, cfg.lightness_weight)
    if not torch.isfinite(loss):
        again = ("or resume from the last checkpoint with a smaller one" if run.files.checkpoint.exists()
                 else "and start again (no checkpoint was written yet)")
        raise RuntimeError(f"the loss became {float(loss)} at step {step}; lower --lr (now {lr:.3g}) {again}")
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.clip_grad:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.clip_grad)
    run.optimizer.step()
    value = float(loss.detach())
    run.recent = (run.recent + [value])[-50:]
    run.window_n += cfg.batch_size
    return value, lr


def _log_step(run: Run, done: int, value: float, lr: float) -> None:
    if done % run.cfg.log_every and done != run.cfg.steps:
        return
    now = time.perf_counter()
    run.images_per_s = run.window_n / max(now - run.window_t, 1e-9)
    run.window_t, run.window_n = now, 0
    run.log.write(event="step", step=done, loss=value, loss_mean50=run.loss_mean, lr=lr,
                  images_per_s=run.images_per_s, elapsed_s=run.wall_before + now - run.t0)


def _validate(run: Run, done: int, bar) -> None:
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


def _checkpoint_due(run: Run, done: int) -> bool:
    cfg = run.cfg
    return (done % cfg.checkpoint_every == 0 and done != cfg.steps) or done - run.start == cfg.stop_after


def _save(run: Run, step: int, complete: bool) -> None:
    """Write the resumable state, then the model file (``training["complete"]`` says which it is)."""
    info = {"settings": run.settings, "history": {"recent_losses": run.recent, "val": run.last_val,
                                                  "best": run.best.history()},
            "wall_time_s": run.wall_time(), "step": step, "complete": complete}
    save_training_state(run.files.checkpoint, run.model, run.optimizer, step, info)
    _save_model(run, step, complete)


def _save_model(run: Run, step: int, complete: bool) -> None:
    """Write the model file: the last weights, or with early stopping the best held-out ones."""
    cfg, config = run.cfg, run.model.config
    # What the run used: a fine-tuned model keeps its --init model's dropout and context, and
    # the weight decay left to its default (None) is the optimizer's.
    extra = {"held_out": run.split.record() if run.split is not None else None, "degrade": cfg.degrade,
             "weight_decay": run.optimizer.param_groups[0]["weight_decay"], "dropout": config.dropout,
             "context": config.context, "context_dropout": config.context_dropout, "trained_files": run.trained_files,
             "best_val": run.best.history(), "early_stop": cfg.early_stop,
             "stopped_early": run.stopped_early, "weights_step": run.best.weights_step(step),
             "output": str(Path(run.files.output).absolute())}  # a copy of an unfinished run (calibrate -o) names the run's file
    save_model(run.best.model_to_save(run.model), run.files.output, data=[str(Path(d).resolve()) for d in cfg.data], steps=step,
               complete=complete, command=cfg.command, wall_time_s=round(run.wall_time(), 1),
               final_loss=run.loss_mean, val=run.last_val, images=len(run.images),
               skipped=skipped_counts(run.images), weights=run.weights_source, optimizer=cfg.optimizer,
               lr=run.base_lr, warmup=run.warmup, schedule=cfg.schedule, batch_size=cfg.batch_size, crop=cfg.crop,
               points=cfg.points, scale=list(cfg.scale), target_window=cfg.target_window, lambda_hue=cfg.lambda_hue,
               lightness_weight=cfg.lightness_weight, seed=cfg.seed, device=str(run.device),
               precision=run.precision, hardware=hardware(run.device), torch_version=torch.__version__, **extra)


# --------------------------------------------------------------------------- the loop

def _loop(run: Run) -> int:
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
        _close_batches(run)
    return step


def _close_batches(run: Run) -> None:
    """Shut the loader's worker processes down now, whatever still refers to the loader.

    They ignore SIGTERM (:func:`.._signals.ignore_stop_signals`), so a worker left to the
    interpreter's exit would be joined forever: a run whose output pipe closed (``| head``)
    before its first step hung.  ``_shutdown_workers`` is what the loader's own ``__del__`` calls.
    """
    batches, run.batches = run.batches, None
    shutdown = getattr(batches, "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()


def _stop(run: Run, done: int, signum: int, saved: bool) -> None:
    """Save the whole steps done so far (unless just saved) and stop on the signal received."""
    if not saved:
        _save(run, done, complete=False)
    run.log.write(event="stopped", step=done, signal=signal.Signals(signum).name)
    raise StoppedAfterStep(signum, done)


def _finish(run: Run, step: int) -> dict[str, Any]:
    wall = run.wall_time()
    result = {"output": str(run.files.output), "checkpoint": str(run.files.checkpoint), "steps": step + 1,
              "final_loss": run.loss_mean, "val": run.last_val, "wall_time_s": wall, "images": len(run.images),
              "skipped": skipped_counts(run.images), "weights": run.weights_source}
    run.log.write(event="end", **result)
    skipped = ", ".join(f"{n} {k}" for k, n in result["skipped"].items() if n)
    # With early stopping the file holds the best validation's weights, not the last ones.
    kept = run.best.weights_step(step + 1)
    holds = f", holding the weights of step {kept} (the lowest held-out loss)," if kept != step + 1 else ""
    print(f"wrote {run.files.output} after {step + 1} steps{holds} in {wall / 60:.1f} min (final loss "
          f"{run.loss_mean:.4f}); used {len(run.images)} images" + (f", skipped {skipped}" if skipped else "")
          + f"; resumable state in {run.files.checkpoint}", file=sys.stderr)
    inherited = (run.model.config.decoding.get("calibration") or {}).get("inherited_from")
    if inherited:
        print(f"note: its decoding calibration was fitted to the weights of {inherited}; fit it to these on held-out "
              f"colour images: napari-colorize calibrate {run.files.output} HELD_OUT/ -o {run.files.output} --force",
              file=sys.stderr)
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
    run = setup_run(cfg)
    try:
        print(run.summary, file=sys.stderr)
        print(f"writing: {run.files.describe()}", file=sys.stderr)
        run.log.write(event="start", step=run.start, message=run.summary, settings=run.settings, time=time.time())
        return _finish(run, _loop(run))
    finally:
        _close_batches(run)  # also when the run never reached its loop
