"""Early stopping on held-out loss: remember the best weights, stop when they stop improving.

A from-scratch model on a few hundred photographs memorises them long before the
schedule ends (the first default model: training loss 1.58, held-out loss 5.36).  The
weights to ship are those with the lowest loss on held-out *sources*, so the run keeps
a copy of them (small: ~2 M parameters for ``compact``) and the model file holds them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["BestWeights"]


@dataclass
class BestWeights:
    """The lowest held-out loss so far, its step and weights.

    ``patience`` = 0 only records (no stopping, the model file keeps the last weights).
    """

    patience: int = 0
    loss: float = float("inf")
    step: int | None = None
    stale: int = 0
    state: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    @property
    def enabled(self) -> bool:
        return self.patience > 0

    def update(self, loss: float, step: int, model: torch.nn.Module) -> bool:
        """Record one validation; True when it is the best so far."""
        if loss < self.loss:
            self.loss, self.step, self.stale = float(loss), int(step), 0
            if self.enabled:
                self.state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            return True
        self.stale += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.enabled and self.stale >= self.patience

    def model_to_save(self, model: torch.nn.Module) -> torch.nn.Module:
        """``model`` itself, or (early stopping with a best so far) a copy holding the best weights."""
        if not self.enabled or self.state is None:
            return model
        best = copy.deepcopy(model)
        best.load_state_dict(self.state)
        return best

    def history(self) -> dict[str, Any]:
        """What a checkpoint keeps (the weights themselves are in the model file)."""
        return {"loss": None if self.step is None else self.loss, "step": self.step, "stale": self.stale}

    def restore(self, doc: dict[str, Any] | None, saved_model: torch.nn.Module | None) -> None:
        """Continue from a checkpoint's :meth:`history` and the model file written with it."""
        if not doc or doc.get("step") is None:
            return
        self.loss, self.step, self.stale = float(doc["loss"]), int(doc["step"]), int(doc.get("stale", 0))
        if self.enabled and saved_model is not None:
            self.state = {k: v.detach().to("cpu", copy=True) for k, v in saved_model.state_dict().items()}
