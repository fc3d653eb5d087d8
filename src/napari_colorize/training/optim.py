"""The optimizer and the learning-rate schedule of a training run."""

from __future__ import annotations

import math
from typing import Any

import torch

from .config import TrainConfig

__all__ = ["make_optimizer", "learning_rate", "default_lr", "peak_lr"]

#: AdamW's peak learning rate from scratch, and when fine-tuning (``--init``): 5e-4 is the
#: shipped model's, whose runs had the lowest held-out loss at it (docs/model-card.md).  At
#: 2e-3 a fine-tuned default model first loses much of what it knew (a user's test on 14
#: images: held-out loss 4.3 before, 19.5 after 5 steps at 2e-3, 5.0 at 5e-4).
ADAMW_LR, ADAMW_FINE_TUNE_LR = 2e-3, 5e-4
#: The paper's SGD learning rate (itself a fine-tuning of ImageNet weights).
SGD_LR = 1e-3


def default_lr(cfg: TrainConfig) -> float:
    """The peak learning rate of a run without ``lr``."""
    if cfg.optimizer == "sgd":
        return SGD_LR
    return ADAMW_FINE_TUNE_LR if cfg.init is not None else ADAMW_LR


def peak_lr(cfg: TrainConfig, saved: dict[str, Any] | None, start: int) -> tuple[float, str]:
    """A run's peak learning rate, and a note ("" if none) when a resumed run changes it.

    Resumed without ``lr``, a run goes on at its own, as its checkpoint's settings record
    it (those written before they recorded the rate in use hold None: the defaults of the
    time, 2e-3 for AdamW with or without ``init``, 1e-3 for SGD).  A new ``lr`` is taken:
    after a loss that became NaN, resuming at a lower rate is the way on; it is not one of
    the settings refused (:data:`.config.RESUME_KEYS`), but the run then differs from an
    uninterrupted one, and the note says so.
    """
    if saved is None:
        return (cfg.lr if cfg.lr is not None else default_lr(cfg)), ""
    before = saved.get("lr")
    if before is None:
        before = SGD_LR if saved.get("optimizer") == "sgd" else ADAMW_LR
    if cfg.lr is None or cfg.lr == before:
        return float(before), ""
    return cfg.lr, (f"--lr {_rate(cfg.lr)} differs from the checkpoint's {_rate(before)}: the run continues at "
                    f"{_rate(cfg.lr)} from step {start}, so it will not equal an uninterrupted run")


def _rate(value: float) -> str:
    """A learning rate as one is written on the command line: 0.01, 5e-4."""
    if value >= 0.01:
        return f"{value:g}"
    mantissa, exponent = f"{value:.3e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def make_optimizer(cfg: TrainConfig, model: torch.nn.Module, lr: float) -> tuple[torch.optim.Optimizer, float]:
    """The run's optimizer over the trainable parameters, and its peak learning rate ``lr``
    (:func:`peak_lr`'s, the one place that picks the configured, default or resumed rate)."""
    # The paper trained VGG-16 (from ImageNet weights) with SGD, momentum 0.9, weight
    # decay 5e-4, lr 1e-3.  A compact model trained from scratch on a CPU budget of a
    # few thousand steps converges several times faster with AdamW (per-parameter step
    # sizes cope with the very different scales of the 15 hypercolumn projections),
    # so AdamW is the default; "sgd" reproduces the paper's recipe.
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        wd = cfg.weight_decay if cfg.weight_decay is not None else 5e-4
        return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, weight_decay=wd), lr
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
