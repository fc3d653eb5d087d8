"""The settings of a training run (:class:`TrainConfig`) and their checks."""

from __future__ import annotations

import math
import os
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from ..devices import PRECISIONS
from ..model import BACKBONES, resolve_model_path
from ..model.backbones import HIDDEN_RANGE
from ..spaces import SPACES

__all__ = ["TrainConfig", "OPTIMIZERS", "SCHEDULES", "RESUME_KEYS", "check_config", "parse_fold", "settings_record", "check_resume"]

#: Optimizers offered, the default first.
OPTIMIZERS = ("adamw", "sgd")
#: Learning-rate decays after warm-up, the default first.
SCHEDULES = ("cosine", "step", "constant")
#: Settings that must not change between a run and its resumption.
RESUME_KEYS = ("backbone", "space", "batch_size", "crop", "points", "scale", "target_window", "seed",
               "optimizer", "max_side", "lambda_hue", "lightness_weight", "degrade", "dropout", "context", "context_dropout",
               "hidden", "val_sources", "val_fold", "hold_out",
               # the optimisation path and the sampling (steps, early stopping and lr may change: a lower
               # lr is how a run whose loss became NaN goes on; optim.peak_lr notes the change)
               "weight_decay", "momentum", "warmup", "schedule", "clip_grad", "precision", "weights")


@dataclass
class TrainConfig:
    """Settings of a training run (the ``napari-colorize train`` options).

    Attributes
    ----------
    data : list of str, or one str / path
        Folders (searched recursively) or files of colour images.  Paths may be
        :class:`pathlib.Path` objects; they are stored as strings.
    output : str
        The model file to write (a name ending in ``.safetensors``), rewritten at every
        checkpoint.  An existing file is replaced only if it is a model of this
        package and ``force`` (or ``resume``) is given; any other file is never replaced.
    backbone, space : str or None
        None: taken from ``init`` if given, else ``compact`` / ``hue_chroma``.
    pretrained : str or None
        A named initialisation of the backbone (``"imagenet"`` for vgg16: needs
        torchvision's weight file).
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
        See :data:`OPTIMIZERS`.
    lr, weight_decay : float or None
        None: 2e-3 / 1e-2 for AdamW (lr 5e-4 with ``init``, the shipped model's), the
        paper's 1e-3 / 5e-4 for SGD.
    momentum : float
        SGD momentum (0.9 in the paper).
    warmup : int or None
        Linear warm-up steps (None: 5% of the steps, at most 500).
    schedule : {"cosine", "step", "constant"}
        See :data:`SCHEDULES`.
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
    manifest : str or None
        A corpus ``manifest.csv`` (``file`` and ``source`` columns) for the source-grouped
        split (None: found next to the first data folder, as for ``weights``).
    val_sources : list of str, one str, or None
        Validate on these sources of the manifest; none of their images (nor composites
        on their photographs) trains the model.
    val_fold : str or None
        ``"K/N"``: validate on fold K of N source-grouped folds
        (:func:`.splits.source_folds`), instead of naming ``val_sources``.
    hold_out : list of int
        Further folds (of the same N) kept out of training *and* validation: a test set
        for scores no choice was made on.
    degrade : float
        Probability of each archival degradation of the gray input (:mod:`.degrade`).
    dropout : float
        Dropout on the hypercolumn head's hidden layer (new models only).
    hidden : int or None
        Width of h_fc1, the hypercolumn head's hidden layer (new models only; None:
        the backbone's default, 128 for ``compact``).
    context : int
        Side of the whole-image overview of an image-level context vector (new models
        only; 0: none).  Each crop is trained with the context of the image it is cut from.
    context_dropout : float
        Probability of dropping a crop's whole context vector in training (new models).
    early_stop : int
        With validation: stop after this many validations without a lower held-out
        loss; the model file then holds the weights of the best validation.  0 = off
        (the model file holds the last weights).
    val_every : int or None
        None: once per epoch (one pass over the training images).
    val_images : int
        Validation images used (spread evenly over the sorted folder).
    checkpoint : str or None
        Resumable state file (None: ``<output stem>.ckpt.safetensors``).
    checkpoint_every : int
    resume : bool
        Continue from ``checkpoint``.
    force : bool
        Replace an existing model file (and the checkpoint of an earlier run) of this
        package at ``output``; never a file that is not a model of this package.
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
    manifest: str | None = None
    val_sources: list[str] | None = None
    val_fold: str | None = None
    hold_out: list[int] = field(default_factory=list)
    degrade: float = 0.0
    dropout: float = 0.0
    hidden: int | None = None
    context: int = 0
    context_dropout: float = 0.0
    early_stop: int = 0
    val_every: int | None = None
    val_images: int = 16
    checkpoint: str | None = None
    checkpoint_every: int = 250
    resume: bool = False
    force: bool = False
    seed: int = 0
    progress: bool = True
    log: str | None = None
    log_every: int = 25
    command: str = ""
    stop_after: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # One folder given as a string would otherwise be iterated letter by letter.
        if isinstance(self.data, (str, os.PathLike)):
            self.data = [self.data]
        self.data = [os.fspath(d) if isinstance(d, os.PathLike) else d for d in self.data]
        for name in _PATH_FIELDS:  # stored as strings: the settings are written as JSON
            value = getattr(self, name)
            if isinstance(value, os.PathLike):
                setattr(self, name, os.fspath(value))
        if isinstance(self.val_sources, str):
            self.val_sources = [self.val_sources]
        if isinstance(self.hold_out, int):
            self.hold_out = [self.hold_out]


#: The settings that name one file or folder.
_PATH_FIELDS = ("output", "init", "weights", "val", "manifest", "checkpoint", "log")


def _choice(name: str, value: Any, choices) -> None:
    if value is not None and value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")


def _init_backbone(init: str | None) -> str | None:
    """The backbone a run without ``--backbone`` trains: the ``--init`` model's (its metadata
    only), the default without one, or None when that file cannot be read (its own error
    is reported where the model is loaded, not a check of other options)."""
    from ..model import ModelConfig, read_config

    if init is None:
        return ModelConfig.backbone
    try:
        return read_config(init).backbone
    except (OSError, ValueError):
        return None


def check_config(cfg: TrainConfig) -> None:
    """Refuse settings that cannot work, with what to change, before anything is loaded."""
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
    _choice("optimizer", cfg.optimizer, OPTIMIZERS)
    _choice("schedule", cfg.schedule, SCHEDULES)
    _choice("backbone", cfg.backbone, tuple(BACKBONES))
    backbone = cfg.backbone or _init_backbone(cfg.init)
    spec = BACKBONES.get(backbone) if backbone is not None else None
    if spec is not None and spec.batch_norm and cfg.batch_size * (cfg.crop // 32) ** 2 < 2:
        raise ValueError(f"batch-size {cfg.batch_size} with crop {cfg.crop} leaves one value per channel at the "
                         f"{backbone} network's deepest layer, which batch normalisation cannot train on; use "
                         "--batch-size 2 or more, or --crop 64 or more")
    _choice("colour space", cfg.space, tuple(SPACES))
    _choice("precision", cfg.precision, PRECISIONS)
    if cfg.threads is not None and cfg.threads < 1:
        raise ValueError(f"threads must be a positive integer, got {cfg.threads}")
    if cfg.init is not None and cfg.pretrained is not None:
        raise ValueError("--init and --pretrained both set the starting weights; give only one")
    _check_split(cfg)
    if not 0 <= cfg.degrade <= 1:
        raise ValueError(f"degrade must be a probability in [0, 1], got {cfg.degrade}")
    if not 0 <= cfg.dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {cfg.dropout}")
    if cfg.hidden is not None and not HIDDEN_RANGE[0] <= cfg.hidden <= HIDDEN_RANGE[1]:
        raise ValueError(f"hidden must be a width of {HIDDEN_RANGE[0]}-{HIDDEN_RANGE[1]} units, got {cfg.hidden}; "
                         "the compact default is 128")
    if not 0 <= cfg.context <= 1024 or cfg.context % 32:
        raise ValueError(f"context must be 0 (none) or an overview side of 32-1024 pixels, a multiple of 32, "
                         f"got {cfg.context}; try 128")
    if not 0 <= cfg.context_dropout < 1:
        raise ValueError(f"context-dropout must be in [0, 1), got {cfg.context_dropout}")
    _check_optimisation(cfg)
    if cfg.context_dropout and not cfg.context and cfg.init is None:  # an --init model's is checked against it
        raise ValueError(f"--context-dropout {cfg.context_dropout} drops the image-level context, but the new model "
                         "has none: give --context SIDE too (e.g. 128), or leave --context-dropout out")
    if cfg.early_stop < 0:
        raise ValueError(f"early-stop must be >= 0 validations, got {cfg.early_stop}")
    if not 0 < cfg.scale[0] <= cfg.scale[1]:
        raise ValueError(f"scale range must satisfy 0 < lo <= hi, got {cfg.scale}")


def _check_optimisation(cfg: TrainConfig) -> None:
    """The optimizer's numbers (the CLI refuses the same values as it parses them).

    A negative ``lambda_hue`` trains away from the true hue, ``lr`` 0 trains nothing and a
    negative one climbs the loss; torch refused only some, after every image was decoded.
    """
    if cfg.lr is not None and not (math.isfinite(cfg.lr) and cfg.lr > 0):
        raise ValueError(f"--lr must be a positive number, got {cfg.lr}")
    for name in ("lambda_hue", "weight_decay", "clip_grad", "momentum"):
        value = getattr(cfg, name)
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise ValueError(f"--{name.replace('_', '-')} must be a number >= 0, got {value}")
    for name in ("warmup", "workers"):
        value = getattr(cfg, name)
        if value is not None and value < 0:
            raise ValueError(f"--{name} must be 0 or a positive integer, got {value}")


def parse_fold(text: str) -> tuple[int, int]:
    """``"K/N"`` -> ``(K, N)`` with ``0 <= K < N`` and ``N >= 2``; a ``ValueError`` says the form."""
    try:
        k, n = (int(part) for part in str(text).split("/"))
    except ValueError:
        raise ValueError(f"a fold is written K/N (fold K of N, counted from 0), e.g. 0/5; got {text!r}") from None
    if n < 2 or not 0 <= k < n:
        raise ValueError(f"fold {text!r}: need N >= 2 and 0 <= K < N")
    return k, n


def _check_split(cfg: TrainConfig) -> None:
    """The source-grouped split settings agree with each other and with ``val``."""
    split = cfg.val_sources is not None or cfg.val_fold is not None
    if cfg.val_sources is not None and cfg.val_fold is not None:
        raise ValueError("give either --val-sources or --val-fold, not both")
    if split and cfg.val:
        raise ValueError("--val names a validation folder and --val-sources/--val-fold a split of the data; give one")
    if cfg.hold_out and cfg.val_fold is None:
        raise ValueError("--hold-out names folds: it needs --val-fold K/N")
    if cfg.val_fold is not None:
        k, n = parse_fold(cfg.val_fold)
        bad = [f for f in cfg.hold_out if not 0 <= f < n or f == k]
        if bad:
            raise ValueError(f"--hold-out folds must be in 0..{n - 1} and differ from the validation fold {k}; got {bad}")
    if cfg.early_stop and not (split or cfg.val):
        raise ValueError("--early-stop needs held-out images: give --val-fold, --val-sources or --val")


def settings_record(cfg: TrainConfig, backbone: str, space: str) -> dict[str, Any]:
    """The run's settings as stored in its checkpoint and log."""
    skip = ("extra", "progress", "resume", "force", "command", "stop_after")
    doc = {k: v for k, v in asdict(cfg).items() if k not in skip}
    doc.update(backbone=backbone, space=space, scale=list(cfg.scale))
    return doc


def _same_init(saved: str | None, now: str | None) -> bool:
    """Whether two ``--init`` values name one model file (the text may differ: a relative or an
    absolute path, "default" or the shipped file's path)."""
    if saved is None or now is None or saved == now:
        return saved == now
    try:
        return os.path.samefile(resolve_model_path(saved), resolve_model_path(now))
    except (OSError, ValueError):  # either one gone: they cannot be shown to be the same
        return False


def check_resume(saved: dict[str, Any], now: dict[str, Any], fingerprint: str | None, legacy: str | None = None) -> None:
    """Refuse to resume with settings or images other than the checkpoint's (``legacy``: the
    images' digest as checkpoints of earlier versions recorded it, sizes only; ``fingerprint``
    None: the settings alone, checked before any image is read)."""
    # A key an older checkpoint lacks had its default then.
    defaults = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}
    defaults["hold_out"] = []
    before = {k: saved.get(k, defaults.get(k)) for k in RESUME_KEYS}
    diffs = [f"{k}: checkpoint {before[k]!r}, now {now.get(k)!r}" for k in RESUME_KEYS if before[k] != now.get(k)]
    if fingerprint is not None and saved.get("data_fingerprint") not in (fingerprint, legacy or fingerprint):
        diffs.append("the training images differ from the checkpoint's (files added, removed or changed)")
    if diffs and not _same_init(saved.get("init"), now.get("init")):
        # --init sets the backbone, space and head width: without it they fall to the defaults,
        # and the differences listed would name options the user never typed.
        was = f"--init {saved['init']}" if saved.get("init") else "no --init"
        diffs.insert(0, f"the run was started with {was}, now {'--init ' + str(now['init']) if now.get('init') else 'without'}")
    if diffs:
        raise ValueError("cannot resume exactly, settings differ from the checkpoint: " + "; ".join(diffs)
                         + ". Use the same command (with --resume), or start a new run with --force instead of --resume")
