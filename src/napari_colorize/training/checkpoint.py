"""Resumable training state in one ``.safetensors`` file, without pickle.

Tensors (model weights, optimizer moments, torch RNG states) are stored as tensors;
everything else (step, optimizer hyper-parameters, Python and numpy RNG states, the
run's settings) as JSON in the file's metadata header under ``napari_colorize_state``.
The file is written to a temporary name and renamed, so a run killed while saving
leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._safetensors import has_safetensors_key, is_damaged_file_of, read_safetensors_metadata, write_safetensors
from ..model.metadata import TRAINING_STATE_KEY

__all__ = ["save_training_state", "load_training_state", "read_state_info", "is_training_state",
           "capture_rng", "restore_rng", "STATE_KEY"]

STATE_KEY = TRAINING_STATE_KEY
STATE_VERSION = 1


def capture_rng() -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Python, numpy and torch (CPU, CUDA and MPS) RNG states: JSON part and tensor part."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # MT19937 state
    doc = {"python": [version, list(internal), gauss],
           "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]}
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = state
    if _mps_available():  # dropout on Apple GPUs draws from their own generator
        tensors["rng.mps"] = torch.mps.get_rng_state()
    return doc, tensors


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def restore_rng(doc: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    """Inverse of :func:`capture_rng`."""
    version, internal, gauss = doc["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = doc["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(tensors["rng.torch"].cpu())
    cuda_keys = sorted((k for k in tensors if k.startswith("rng.cuda.")), key=lambda k: int(k.rsplit(".", 1)[1]))
    cuda = [tensors[k] for k in cuda_keys]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([t.cpu() for t in cuda[: torch.cuda.device_count()]])
    if "rng.mps" in tensors and _mps_available():
        torch.mps.set_rng_state(tensors["rng.mps"].cpu())


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.item()
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    return value


def _split_optimizer(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """optimizer.state_dict() -> (JSON document, flat tensors)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, pstate in state["state"].items():
        for key, value in pstate.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{pid}.{key}"] = value
            else:
                scalars.setdefault(str(pid), {})[key] = _jsonable(value)
    return {"param_groups": _jsonable(state["param_groups"]), "scalars": scalars}, tensors


def _join_optimizer(doc: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = value
    for pid, values in doc["scalars"].items():
        state.setdefault(int(pid), {}).update(values)
    groups = []
    for group in doc["param_groups"]:
        group = dict(group)
        if "betas" in group:  # Adam-style optimizers expect a tuple
            group["betas"] = tuple(group["betas"])
        groups.append(group)
    return {"state": state, "param_groups": groups}


def save_training_state(path: str | os.PathLike, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        step: int, info: dict[str, Any]) -> Path:
    """Write everything needed to continue a run exactly after ``step`` steps.

    Parameters
    ----------
    path : path-like
        The ``.safetensors`` file (replaced atomically).
    model, optimizer : the training objects
    step : int
        Steps completed.
    info : dict
        JSON-able settings of the run (checked when resuming) and its progress
        (loss history, wall time, ...).
    """
    path = Path(path)
    rng_doc, rng_tensors = capture_rng()
    optim_doc, optim_tensors = _split_optimizer(optimizer.state_dict())
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update(optim_tensors)
    tensors.update(rng_tensors)
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    doc = {"version": STATE_VERSION, "step": int(step), "rng": rng_doc, "optimizer": optim_doc, "info": _jsonable(info)}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_safetensors(path, tensors, {STATE_KEY: json.dumps(doc)})
    return path


def _damaged(path: Path, problem: str) -> ValueError:
    return ValueError(f"the training checkpoint {path} is damaged ({problem}), so its run cannot be resumed: restore "
                      "the file from a backup, or start over with --force instead of --resume (that replaces it)")


def read_state_info(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON document of a training state (step, info, ...) without its tensors.

    Raises
    ------
    FileNotFoundError, ValueError
        No file; a file that is not a training state, or one of ours that is damaged
        (truncated, edited): naming the file and what to do.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no training checkpoint at {path}; start a new run with --force instead of --resume (it "
                                "replaces the model at -o)")
    if is_damaged_file_of(path, STATE_KEY):
        raise _damaged(path, "it is cut short or corrupted")
    advice = ("give --checkpoint the resumable state of the run to continue, or start a new run without --resume "
              "(training never replaces other files: move this one away, or give --checkpoint another name)")
    text = read_safetensors_metadata(
        path, STATE_KEY, not_safetensors=lambda err: f"{path} is not a napari-colorize training checkpoint ({err}); {advice}",
        no_key=f"{path} is not a napari-colorize training checkpoint (no {STATE_KEY} metadata); {advice}")
    try:
        doc = json.loads(text)
    except ValueError as err:
        raise _damaged(path, f"its metadata is not valid JSON: {err}") from None
    problem = _state_problem(doc)
    if problem:
        raise _damaged(path, problem)
    return doc


def _state_problem(doc: Any) -> str:
    """What is wrong with a training state's JSON document (an edited or foreign one); "" if nothing."""
    if not isinstance(doc, dict):
        return "its metadata is not a JSON object"
    missing = [k for k in ("step", "rng", "optimizer", "info") if k not in doc]
    if missing:
        return f"its metadata lacks {', '.join(missing)}"
    step, info = doc["step"], doc["info"]
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        return f"its step is {step!r}, not a whole number of steps"
    if not isinstance(info, dict) or not isinstance(info.get("settings"), dict):
        return "its metadata lacks the run's settings (info.settings)"
    if not isinstance(info.get("history", {}), dict) or not isinstance(info.get("wall_time_s", 0.0), (int, float)):
        return "its progress record (info.history, info.wall_time_s) is malformed"
    optimizer, rng = doc["optimizer"], doc["rng"]
    if not (isinstance(optimizer, dict) and isinstance(optimizer.get("param_groups"), list)
            and isinstance(optimizer.get("scalars"), dict)):
        return "its optimizer state is malformed"
    if not (isinstance(rng, dict) and "python" in rng and "numpy" in rng):
        return "its random-number states are malformed"
    return ""


def is_training_state(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a safetensors file with a training state's metadata key (header only)."""
    return has_safetensors_key(path, STATE_KEY)


def load_training_state(path: str | os.PathLike, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        restore_random: bool = True) -> dict[str, Any]:
    """Load a state written by :func:`save_training_state` into ``model`` and ``optimizer``.

    Returns the JSON document (``step``, ``info``, ...).  The RNG states are restored
    too unless ``restore_random`` is False.
    """
    from safetensors.torch import load_file

    doc = read_state_info(path)
    if doc.get("version", 0) > STATE_VERSION:
        raise ValueError(f"{path} was written by a newer napari-colorize; upgrade to resume it")
    tensors = load_file(str(path), device="cpu")
    device = next(model.parameters()).device
    model_state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    model.load_state_dict(model_state, strict=True)
    optim = _join_optimizer(doc["optimizer"], tensors)
    optimizer.load_state_dict(optim)
    for pstate in optimizer.state.values():  # load_state_dict casts moments; keep 'step' on CPU as saved
        for key, value in pstate.items():
            if isinstance(value, torch.Tensor) and key != "step":
                pstate[key] = value.to(device)
    if restore_random:
        restore_rng(doc["rng"], {k: v for k, v in tensors.items() if k.startswith("rng.")})
    return doc
