"""The training loop: sparse hypercolumn training with checkpoints and exact resume.

Per step (Larsson et al. 2016, section 3.3): a batch of random crops of colour
images, their gray versions through the network, logits at 128 random pixels per
crop only (:meth:`~napari_colorize.model.HypercolumnColorizer.point_logits`), and the
KL / hue-chroma loss against histograms of the true colour there.

Everything a run draws at random is a function of ``(seed, step)`` (the data, see
:mod:`.data`) or of the saved RNG states (dropout), so ``resume=True`` continues a
killed run to the same weights an uninterrupted run would reach.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..devices import autocast, resolve_device
from ..losses import histogram_loss, hue_chroma_loss, lightness_weight
from ..model import build_model, load_model
from ..model.factory import read_config
from ..model.hypercolumn import GRID_STRIDE, HypercolumnColorizer, pad_to_multiple
from ..spaces import SPACES, SpaceSpec, target_indices
from .checkpoint import load_training_state, read_state_info, save_training_state
from .data import (
    ColorCropDataset,
    ImageSet,
    StepBatchSampler,
    find_manifest,
    load_image_set,
    read_manifest_weights,
    scan_images,
    skipped_counts,
    weight_summary,
)

__all__ = ["TrainConfig", "train", "compute_loss", "validate", "learning_rate", "default_checkpoint_path"]

#: Settings that must not change between a run and its resumption.
_RESUME_KEYS = ("backbone", "space", "batch_size", "crop", "points", "scale", "target_window", "seed",
                "optimizer", "max_side", "lambda_hue", "lightness_weight")


@dataclass
class TrainConfig:
    """Settings of a training run (the ``napari-colorize train`` options).

    Attributes
    ----------
    data : list of str
        Folders (searched recursively) or files of colour images.
    output : str
        The model file to write (``.safetensors``), rewritten at every checkpoint.
    backbone, space : str or None
        None: taken from ``init`` if given, else ``compact`` / ``hue_chroma``.
    pretrained : {None, "imagenet"}
        ImageNet VGG-16 initialisation (vgg16 only; needs torchvision's weight file).
    init : str or None
        Fine-tune from this model file (or ``"default"``).
    steps : int
        Total optimisation steps.
    batch_size : int
        Crops per step.
    crop : int
        Crop side in pixels (a multiple of 32).
    points : int
        Sampled pixels per crop (128 in the paper).
    scale : (float, float)
        Random scale range of the crops (see :class:`.data.ColorCropDataset`).
    target_window : int
        Odd window R of the target histograms (1 = one-hot; the released code used 7).
    lambda_hue : float
        Weight of the hue term (5 in the paper).
    lightness_weight : bool
        Down-weight the chroma loss near black and white (the released code's
        ``min(3L, 1, 3(1 - L))``).
    optimizer : {"adamw", "sgd"}
    lr, weight_decay : float or None
        None: 2e-3 / 1e-2 for AdamW, the paper's 1e-3 / 5e-4 for SGD.
    momentum : float
        SGD momentum (0.9 in the paper).
    warmup : int or None
        Linear warm-up steps (None: 5% of the steps, at most 500).
    schedule : {"cosine", "step", "constant"}
        Decay after warm-up ("step": x0.1 at 60% and 85% of the steps).
    clip_grad : float or None
        Gradient norm clipping (guards the first steps of a from-scratch model).
    device : str
        "auto", "cpu", "cuda", "mps", ...
    threads : int or None
        CPU threads of torch (None: torch's default, one per core).  On a shared
        machine 1 is much faster: with 2 threads each operation waits for a thread
        another process has descheduled (measured 4-5x slower under load).
    precision : {None, "fp32", "bf16", "fp16"}
        None: bf16 autocast on CUDA, fp32 elsewhere.
    workers : int or None
        Data loader processes (None: 1 on <= 2 CPU cores, else min(4, cores - 1)).
    max_side : int
        Images are decoded once and reduced to this long side.
    min_images : int
        Fewer usable images than this is an error.
    weights : str or None
        Sampling weights: a CSV with ``path`` and ``weight`` columns; None looks for
        ``manifest.csv`` in the first data folder (or its parent); "none" disables.
    val : str or None
        Folder of validation images (scored every ``val_every`` steps).
    val_every : int or None
        None: once per epoch (one pass over the training images).
    val_images : int
        Validation images used (spread evenly over the sorted folder).
    checkpoint : str or None
        Resumable state file (None: ``<output stem>.ckpt.safetensors``).
    checkpoint_every : int
    resume : bool
        Continue from ``checkpoint``.
    seed : int
    progress : bool
        Show a progress bar.
    log : str or None
        JSON-lines log (None: ``<output stem>.log.jsonl``; "" disables).
    log_every : int
    command : str
        The command line, stored in the model's metadata.
    stop_after : int or None
        Stop (with a checkpoint, as if killed just after it) once this many steps
        have been done in this call; ``resume`` continues.  For tests and time-boxed
        sessions.
    """

    data: list[str]
    output: str
    backbone: str | None = None
    space: str | None = None
    pretrained: str | None = None
    init: str | None = None
    steps: int = 5000
    batch_size: int = 16
    crop: int = 192
    points: int = 128
    scale: tuple[float, float] = (0.5, 1.0)
    target_window: int = 1
    lambda_hue: float = 5.0
    lightness_weight: bool = False
    optimizer: str = "adamw"
    lr: float | None = None
    weight_decay: float | None = None
    momentum: float = 0.9
    warmup: int | None = None
    schedule: str = "cosine"
    clip_grad: float | None = 10.0
    device: str = "auto"
    threads: int | None = None
    precision: str | None = None
    workers: int | None = None
    max_side: int = 512
    min_images: int = 2
    weights: str | None = None
    val: str | None = None
    val_every: int | None = None
    val_images: int = 16
    checkpoint: str | None = None
    checkpoint_every: int = 250
    resume: bool = False
    seed: int = 0
    progress: bool = True
    log: str | None = None
    log_every: int = 25
    command: str = ""
    stop_after: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- checks

def default_checkpoint_path(output: str | os.PathLike) -> Path:
    """``model.safetensors`` -> ``model.ckpt.safetensors`` (the resumable state)."""
    out = Path(output)
    return out.with_name(out.name[: -len(".safetensors")] + ".ckpt.safetensors" if out.name.endswith(".safetensors")
                         else out.name + ".ckpt.safetensors")


def _default_log_path(output: str | os.PathLike) -> Path:
    out = Path(output)
    stem = out.name[: -len(".safetensors")] if out.name.endswith(".safetensors") else out.name
    return out.with_name(stem + ".log.jsonl")


def _check_writable(path: Path, what: str) -> None:
    """Fail now, not after hours of training, if ``path`` cannot be written."""
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise PermissionError(f"cannot create the folder {parent} for the {what}: {err}") from None
    if path.is_dir():
        raise ValueError(f"the {what} path {path} is a folder; give a file name such as {path / 'model.safetensors'}")
    probe = parent / f".{path.name}.write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise PermissionError(f"cannot write the {what} {path}: {err}; choose a writable location") from None


def _check_config(cfg: TrainConfig) -> None:
    if not cfg.data:
        raise ValueError("give at least one folder of colour images")
    for name in ("steps", "batch_size", "crop", "points", "checkpoint_every", "val_images", "log_every"):
        value = getattr(cfg, name)
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name.replace('_', '-')} must be a positive integer, got {value!r}")
    if cfg.crop % 32 or cfg.crop < 32:
        raise ValueError(f"crop must be a multiple of 32 (the network's stride) and >= 32, got {cfg.crop}; "
                         f"try {max(32, round(cfg.crop / 32) * 32)}")
    if cfg.max_side < cfg.crop:
        raise ValueError(f"max-side ({cfg.max_side}) must be at least the crop ({cfg.crop})")
    if cfg.target_window < 1 or cfg.target_window % 2 == 0:
        raise ValueError(f"target-window must be a positive odd integer, got {cfg.target_window}")
    if cfg.optimizer not in ("adamw", "sgd"):
        raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose 'adamw' or 'sgd'")
    if cfg.schedule not in ("cosine", "step", "constant"):
        raise ValueError(f"unknown schedule {cfg.schedule!r}; choose 'cosine', 'step' or 'constant'")
    if cfg.space is not None and cfg.space not in SPACES:
        raise ValueError(f"unknown colour space {cfg.space!r}; choose one of {sorted(SPACES)}")
    if cfg.init is not None and cfg.pretrained is not None:
        raise ValueError("--init and --pretrained both set the starting weights; give only one")
    if not 0 < cfg.scale[0] <= cfg.scale[1]:
        raise ValueError(f"scale range must satisfy 0 < lo <= hi, got {cfg.scale}")


# --------------------------------------------------------------------------- model

def _make_model(cfg: TrainConfig) -> tuple[HypercolumnColorizer, str, str]:
    if cfg.init is not None:
        config = read_config(cfg.init)
        for key, asked in (("backbone", cfg.backbone), ("space", cfg.space)):
            have = getattr(config, key)
            if asked is not None and asked != have:
                raise ValueError(f"--init {cfg.init} is a {config.backbone}/{config.space} model, but --{key} {asked} "
                                 f"was asked; drop --{key} (it is taken from the --init model) or start from scratch")
        model = load_model(cfg.init, device="cpu")
        previous = dict(model.config.training)
        model.config.training = {"init": str(cfg.init), "init_training": {k: previous[k] for k in
                                 ("data", "steps", "wall_time_s", "final_loss", "val") if k in previous}}
        return model, config.backbone, config.space
    backbone, space = cfg.backbone or "compact", cfg.space or "hue_chroma"
    return build_model(backbone, space, pretrained=cfg.pretrained), backbone, space


def _optimizer(cfg: TrainConfig, model: torch.nn.Module) -> tuple[torch.optim.Optimizer, float]:
    # The paper trained VGG-16 (from ImageNet weights) with SGD, momentum 0.9, weight
    # decay 5e-4, lr 1e-3.  A compact model trained from scratch on a CPU budget of a
    # few thousand steps converges several times faster with AdamW (per-parameter step
    # sizes cope with the very different scales of the 15 hypercolumn projections),
    # so AdamW is the default; "sgd" reproduces the paper's recipe.
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        lr = cfg.lr if cfg.lr is not None else 1e-3
        wd = cfg.weight_decay if cfg.weight_decay is not None else 5e-4
        return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, weight_decay=wd), lr
    lr = cfg.lr if cfg.lr is not None else 2e-3
    wd = cfg.weight_decay if cfg.weight_decay is not None else 1e-2
    return torch.optim.AdamW(params, lr=lr, weight_decay=wd), lr


def learning_rate(step: int, base: float, steps: int, warmup: int, schedule: str = "cosine",
                  floor: float = 0.02) -> float:
    """Learning rate at ``step`` (0-based): linear warm-up, then the decay schedule.

    Parameters
    ----------
    step, steps, warmup : int
    base : float
        Peak learning rate.
    schedule : {"cosine", "step", "constant"}
        Cosine from ``base`` to ``floor * base``; or x0.1 at 60% and x0.01 at 85%.
    floor : float
        Final fraction of ``base`` for the cosine schedule.
    """
    if warmup > 0 and step < warmup:
        return base * (step + 1) / warmup
    if schedule == "constant":
        return base
    if schedule == "step":
        frac = step / max(1, steps)
        return base * (0.01 if frac >= 0.85 else 0.1 if frac >= 0.6 else 1.0)
    t = (step - warmup) / max(1, steps - warmup)
    return base * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, t))))


# --------------------------------------------------------------------------- loss

def compute_loss(model: HypercolumnColorizer, batch: dict[str, torch.Tensor], lambda_hue: float = 5.0,
                 use_lightness_weight: bool = False) -> torch.Tensor:
    """The paper's loss at the sampled points of a batch (from :class:`.data.ColorCropDataset`).

    ``hue_chroma``: KL(chroma) + lambda_hue * y_C * KL(hue); ``lab``: KL of the joint
    (a, b) histogram; ``lab_marginal``: the sum of the KL of a and of b.
    """
    logits = model.point_logits(batch["gray"], batch["points"])
    log_probs = {k: F.log_softmax(v.float(), dim=-1) for k, v in logits.items()}
    space = model.space
    if space.name == "hue_chroma":
        weight = lightness_weight(batch["lightness"]) if use_lightness_weight else None
        return hue_chroma_loss(batch["target_hue"], log_probs["hue"], batch["target_chroma"], log_probs["chroma"],
                               batch["chroma"], lambda_hue=lambda_hue, weight=weight)
    return sum(histogram_loss(batch[f"target_{head}"], log_probs[head]) for head in space.heads)


# --------------------------------------------------------------------------- validation

def load_validation_images(folder: str | os.PathLike, count: int = 16, max_side: int = 256) -> list[np.ndarray]:
    """Up to ``count`` colour images from ``folder``, spread evenly over its sorted files.

    Returns float32 RGB arrays in [0, 1] with the long side <= ``max_side``.
    """
    paths = scan_images([folder])
    picks = [paths[i] for i in np.unique(np.linspace(0, len(paths) - 1, min(count, len(paths))).round().astype(int))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        images = load_image_set(picks, max_side=max_side, min_side=32).images
    if not images:
        raise ValueError(f"no usable colour image (>= 32 px, not gray) among {len(picks)} tried in {folder}")
    return [im.astype(np.float32) / 255.0 for im in images]


def _grid_targets(rgb: torch.Tensor, space: SpaceSpec) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """True colour at the grid cell centres (4 j + 2, 4 i + 2) of an (H, W, 3) image."""
    centre = GRID_STRIDE // 2
    sub = rgb[centre::GRID_STRIDE, centre::GRID_STRIDE]
    return target_indices(sub, space)


@torch.no_grad()
def validate(model: HypercolumnColorizer, images: list[np.ndarray], device: torch.device,
             precision: str = "fp32", lambda_hue: float = 5.0) -> dict[str, float]:
    """Validation scores of ``model`` on RGB images (float in [0, 1]).

    Returns
    -------
    dict
        ``loss``: the training loss (one-hot targets) at every grid cell centre;
        ``auc``, ``psnr``: mean AuC of the (a, b) error and PSNR of the colorized gray
        images (uncalibrated default decoding); ``auc_gray``, ``psnr_gray``: the same
        for the gray image itself.
    """
    from ..inference import DecodeOptions, predict
    from ..metrics import auc_ab, psnr

    was_training = model.training
    model.eval()
    losses, aucs, psnrs, aucs_g, psnrs_g = [], [], [], [], []
    try:
        for rgb_np in images:
            rgb = torch.from_numpy(rgb_np)
            gray = rgb.mean(-1)
            h, w = gray.shape
            x = pad_to_multiple(gray[None, None], model.multiple).to(device)
            with autocast(device, precision):
                logits = model.grid_logits(x)
            gh, gw = len(range(GRID_STRIDE // 2, h, GRID_STRIDE)), len(range(GRID_STRIDE // 2, w, GRID_STRIDE))
            log_probs = {k: F.log_softmax(v.float()[0, :, :gh, :gw], dim=0).flatten(1).T.cpu() for k, v in logits.items()}
            indices, chroma = _grid_targets(rgb, model.space)
            batch_targets = {f"target_{k}": F.one_hot(v.flatten().long(), model.space.heads[k]).float()
                             for k, v in indices.items()}
            if model.space.name == "hue_chroma":
                loss = hue_chroma_loss(batch_targets["target_hue"], log_probs["hue"], batch_targets["target_chroma"],
                                       log_probs["chroma"], chroma.flatten(), lambda_hue=lambda_hue)
            else:
                loss = sum(histogram_loss(batch_targets[f"target_{k}"], log_probs[k]) for k in model.space.heads)
            losses.append(float(loss))
            out, _, _ = predict(model, gray[None].to(device), DecodeOptions(), precision)
            out = out[0].cpu().numpy()
            gray3 = np.repeat(gray.numpy()[..., None], 3, axis=-1)
            aucs.append(auc_ab(out, rgb_np))
            psnrs.append(psnr(out, rgb_np))
            aucs_g.append(auc_ab(gray3, rgb_np))
            psnrs_g.append(psnr(gray3, rgb_np))
    finally:
        model.train(was_training)
    return {"loss": float(np.mean(losses)), "auc": float(np.mean(aucs)), "psnr": float(np.mean(psnrs)),
            "auc_gray": float(np.mean(aucs_g)), "psnr_gray": float(np.mean(psnrs_g))}


# --------------------------------------------------------------------------- loop

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


def _load_training_images(cfg: TrainConfig) -> ImageSet:
    paths = scan_images(cfg.data)
    images = load_image_set(paths, max_side=cfg.max_side, min_side=cfg.crop, progress=cfg.progress,
                            report=lambda message: print(f"warning: {message}", file=sys.stderr))
    counts = skipped_counts(images)
    if len(images) == 0 and counts.get("too small") and counts["too small"] + counts.get("gray", 0) + counts.get("broken", 0) == len(paths):
        sizes = [int(m.split()[2]) for _, m in images.skipped["too small"]]
        raise ValueError(f"crop {cfg.crop} is larger than every image (largest short side {max(sizes)} px after "
                         f"reduction to a long side of at most {cfg.max_side} px); use --crop {max(32, max(sizes) // 32 * 32)} "
                         "or less, or larger images" + (" (or raise --max-side)" if max(sizes) >= cfg.max_side * 0.5 else ""))
    if len(images) < cfg.min_images:
        raise ValueError(f"too few usable colour images: found {len(images)} of {len(paths)} files "
                         f"({images.summary()}), need at least {cfg.min_images}")
    return images


def _resolve_weights(cfg: TrainConfig, images: ImageSet) -> tuple[np.ndarray | None, str | None, int]:
    if cfg.weights is not None and cfg.weights.lower() == "none":
        return None, None, 0
    manifest = Path(cfg.weights) if cfg.weights else find_manifest(cfg.data)
    if manifest is None:
        return None, None, 0
    if not manifest.is_file():
        raise FileNotFoundError(f"weights file {manifest} does not exist")
    weights, matched = read_manifest_weights(manifest, images.paths)
    return weights, str(manifest), matched


def _settings(cfg: TrainConfig, backbone: str, space: str) -> dict[str, Any]:
    doc = {k: v for k, v in asdict(cfg).items() if k not in ("extra", "progress", "resume", "command", "stop_after")}
    doc.update(backbone=backbone, space=space, scale=list(cfg.scale))
    return doc


def _check_resume(saved: dict[str, Any], now: dict[str, Any], fingerprint: str) -> None:
    diffs = [f"{k}: checkpoint {saved.get(k)!r}, now {now.get(k)!r}" for k in _RESUME_KEYS if saved.get(k) != now.get(k)]
    if saved.get("data_fingerprint") != fingerprint:
        diffs.append("the training images differ from the checkpoint's (files added, removed or changed)")
    if diffs:
        raise ValueError("cannot resume exactly, settings differ from the checkpoint: " + "; ".join(diffs)
                         + ". Use the same command (with --resume) or start a new run without --resume")


def _hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple MPS"
    return f"CPU {platform.processor() or platform.machine()} x{os.cpu_count()} ({torch.get_num_threads()} torch threads)"


class _Log:
    """JSON-lines log (one record per line), appended to."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def write(self, **record: Any) -> None:
        if self.path is not None:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Train (or fine-tune) a colorizer; returns a summary of the run.

    The model file ``cfg.output`` is (re)written at every checkpoint and at the end
    (``training["complete"]`` tells which); the resumable state goes to
    ``cfg.checkpoint``.

    Raises
    ------
    FileNotFoundError, ValueError, PermissionError, RuntimeError
        With a message that says what to change (see :func:`_check_config`).
    """
    _check_config(cfg)
    if cfg.threads is not None:
        if cfg.threads < 1:
            raise ValueError(f"threads must be a positive integer, got {cfg.threads}")
        torch.set_num_threads(cfg.threads)
    output = Path(cfg.output).expanduser()
    ckpt_path = Path(cfg.checkpoint).expanduser() if cfg.checkpoint else default_checkpoint_path(output)
    _check_writable(output, "output model")
    _check_writable(ckpt_path, "training checkpoint")
    resume_doc = read_state_info(ckpt_path) if cfg.resume else None
    if resume_doc is None and ckpt_path.exists():
        print(f"note: starting a new run; the checkpoint of an earlier run at {ckpt_path} will be overwritten "
              "(stop now and add --resume to continue that run instead)", file=sys.stderr)
    device = resolve_device(cfg.device)
    precision = cfg.precision or ("bf16" if device.type == "cuda" else "fp32")
    autocast(device, precision)  # validates the precision for this device now

    _seed_everything(cfg.seed)
    model, backbone, space = _make_model(cfg)
    images = _load_training_images(cfg)
    weights, weights_source, matched = _resolve_weights(cfg, images)
    val_images = load_validation_images(cfg.val, cfg.val_images) if cfg.val else []
    settings = _settings(cfg, backbone, space)
    settings["data_fingerprint"] = images.fingerprint()

    model = model.to(device).train()
    optimizer, base_lr = _optimizer(cfg, model)
    warmup = cfg.warmup if cfg.warmup is not None else min(500, cfg.steps // 20)
    start, history, wall_before = 0, {}, 0.0
    if resume_doc is not None:
        _check_resume(resume_doc["info"]["settings"], settings, settings["data_fingerprint"])
    epoch_steps = max(1, math.ceil(len(images) / cfg.batch_size))
    val_every = cfg.val_every or max(50, epoch_steps)

    dataset = ColorCropDataset(images.images, model.space, cfg.crop, cfg.points, tuple(cfg.scale), True, cfg.target_window)
    workers = _default_workers() if cfg.workers is None else cfg.workers
    start = int(resume_doc["step"]) if resume_doc is not None else 0
    if start >= cfg.steps:
        raise ValueError(f"the checkpoint has already done {start} steps; give --steps > {start} to train further")
    sampler = StepBatchSampler(len(images), cfg.batch_size, cfg.steps, cfg.seed, weights, start=start)
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, num_workers=workers, pin_memory=device.type == "cuda",
        prefetch_factor=4 if workers > 0 else None, persistent_workers=False,
    )
    batches = iter(loader)  # before restoring RNG: creating the iterator draws from torch's RNG
    if resume_doc is not None:
        doc = load_training_state(ckpt_path, model, optimizer, restore_random=True)
        history = doc["info"].get("history", {})
        wall_before = float(doc["info"].get("wall_time_s", 0.0))

    log = _Log(None if cfg.log == "" else Path(cfg.log) if cfg.log else _default_log_path(output))
    summary_line = (f"training {backbone}/{space} on {images.summary()} from {len(cfg.data)} folder(s); "
                    f"{weight_summary(weights)}" + (f" from {weights_source} ({matched} listed)" if weights_source else "")
                    + f"; device {device} ({precision}); {workers} loader worker(s); steps {start}..{cfg.steps}")
    print(summary_line, file=sys.stderr)
    log.write(event="start", step=start, message=summary_line, settings=settings, time=time.time())

    from tqdm.auto import tqdm

    bar = tqdm(total=cfg.steps, initial=start, desc="training", unit="step", disable=not cfg.progress,
               mininterval=1.0 if sys.stderr.isatty() else 30.0, dynamic_ncols=True)
    t0 = time.perf_counter()
    recent: list[float] = list(history.get("recent_losses", []))
    loss_mean = float(np.mean(recent)) if recent else None
    last_val = history.get("val")
    window_t, window_n = time.perf_counter(), 0
    images_per_s = float("nan")

    def info(step: int, complete: bool) -> dict[str, Any]:
        return {
            "settings": settings,
            "history": {"recent_losses": recent, "val": last_val},
            "wall_time_s": wall_before + time.perf_counter() - t0,
            "step": step,
            "complete": complete,
        }

    def save(step: int, complete: bool) -> None:
        meta = info(step, complete)
        save_training_state(ckpt_path, model, optimizer, step, meta)
        write_model(step, complete, meta)

    def write_model(step: int, complete: bool, meta: dict[str, Any]) -> None:
        from ..model import save_model

        save_model(model, output, data=[str(Path(d).resolve()) for d in cfg.data], steps=step, complete=complete,
              command=cfg.command, wall_time_s=round(meta["wall_time_s"], 1), final_loss=loss_mean, val=last_val,
              images=len(images), skipped=skipped_counts(images), weights=weights_source,
              optimizer=cfg.optimizer, lr=base_lr, warmup=warmup, schedule=cfg.schedule, batch_size=cfg.batch_size,
              crop=cfg.crop, points=cfg.points, scale=list(cfg.scale), target_window=cfg.target_window,
              lambda_hue=cfg.lambda_hue, lightness_weight=cfg.lightness_weight, seed=cfg.seed,
              device=str(device), precision=precision, hardware=_hardware(device),
              torch_version=torch.__version__)

    step = start
    try:
        for step in range(start, cfg.steps):
            batch = {k: v.to(device, non_blocking=True) for k, v in next(batches).items()}
            lr = learning_rate(step, base_lr, cfg.steps, warmup, cfg.schedule)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with autocast(device, precision):
                loss = compute_loss(model, batch, cfg.lambda_hue, cfg.lightness_weight)
            if not torch.isfinite(loss):
                raise RuntimeError(f"the loss became {float(loss)} at step {step}; lower --lr (now {lr:.3g}) "
                                   "or resume from the last checkpoint with a smaller one")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip_grad:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
            optimizer.step()
            value = float(loss.detach())
            recent = (recent + [value])[-50:]  # the reported loss: mean of the last 50 steps
            loss_mean = float(np.mean(recent))
            window_n += cfg.batch_size
            done = step + 1
            if done % cfg.log_every == 0 or done == cfg.steps:
                now = time.perf_counter()
                images_per_s = window_n / max(now - window_t, 1e-9)
                window_t, window_n = now, 0
                log.write(event="step", step=done, loss=value, loss_mean50=loss_mean, lr=lr, images_per_s=images_per_s,
                          elapsed_s=wall_before + now - t0)
            if cfg.val and (done % val_every == 0 or done == cfg.steps):
                last_val = validate(model, val_images, device, precision, cfg.lambda_hue)
                last_val["step"] = done
                log.write(event="val", **last_val)
                bar.write(f"step {done}: val loss {last_val['loss']:.4f}, AuC {last_val['auc']:.4f} "
                          f"(gray {last_val['auc_gray']:.4f}), PSNR {last_val['psnr']:.2f} dB (gray {last_val['psnr_gray']:.2f})")
            if (done % cfg.checkpoint_every == 0 and done != cfg.steps) or done - start == cfg.stop_after:
                save(done, complete=False)
            bar.set_postfix(loss=f"{loss_mean:.4f}", img_s=f"{images_per_s:.1f}", lr=f"{lr:.2g}", refresh=False)
            bar.update(1)
            if done - start == cfg.stop_after and done != cfg.steps:
                break
        else:
            save(cfg.steps, complete=True)
    finally:
        bar.close()
        del batches
    wall = wall_before + time.perf_counter() - t0
    result = {"output": str(output), "checkpoint": str(ckpt_path), "steps": step + 1, "final_loss": loss_mean,
              "val": last_val, "wall_time_s": wall, "images": len(images), "skipped": skipped_counts(images),
              "weights": weights_source}
    log.write(event="end", **result)
    skipped = ", ".join(f"{n} {k}" for k, n in result["skipped"].items() if n)
    print(f"wrote {output} after {step + 1} steps in {wall / 60:.1f} min (final loss {loss_mean:.4f}); "
          f"used {len(images)} images" + (f", skipped {skipped}" if skipped else ""), file=sys.stderr)
    return result
