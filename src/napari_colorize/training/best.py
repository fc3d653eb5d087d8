"""Early stopping on held-out loss: remember the best weights, stop when they stop improving.

A from-scratch model on a few hundred photographs memorises them long before the
schedule ends (the first default model: training loss 1.58, held-out loss 5.36).  The
weights to ship are those with the lowest loss on held-out *sources*, so the run keeps
a copy of them (small: ~2 M parameters for ``compact``) and the model file holds them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..model import load_model, read_config

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

    def weights_step(self, step: int) -> int:
        """The step whose weights :meth:`model_to_save` gives at ``step`` (the model file's ``weights_step``)."""
        return self.step if self.state is not None and self.step is not None else step

    def history(self) -> dict[str, Any]:
        """What a checkpoint keeps (the weights themselves are in the model file)."""
        return {"loss": None if self.step is None else self.loss, "step": self.step, "stale": self.stale}

    def resume(self, doc: dict[str, Any] | None, model_file: Path, start: int) -> str | None:
        """Continue at step ``start`` from a checkpoint's :meth:`history` and the model file written with it.

        Early stopping keeps the best weights in the model file only; the record carries
        over only when that file holds them (its ``weights_step`` is the best step).  A
        first run without early stopping wrote its last weights there, and a run killed
        after a newer best its newer ones: then the record is dropped (the metadata would
        describe other tensors) and found anew.  Returns a note saying so, else None.
        """
        if not doc or doc.get("step") is None:
            return None
        loss, step, stale = float(doc["loss"]), int(doc["step"]), int(doc.get("stale", 0))
        if self.enabled:
            held = read_config(model_file).training.get("weights_step") if model_file.is_file() else None
            if held != step:
                holds = ("is missing" if not model_file.is_file() else f"holds the weights of step {held}"
                         if held is not None else "does not say which weights it holds")
                return (f"{model_file} {holds}, not those of the best validation so far "
                        f"(step {step}, loss {loss:.4f}); early stopping finds its best anew from the validations "
                        f"after step {start}")
            self.state = {k: v.detach().to("cpu", copy=True) for k, v in load_model(model_file).state_dict().items()}
        self.loss, self.step, self.stale = loss, step, stale
        return None
