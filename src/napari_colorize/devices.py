"""Choosing a torch device and an autocast precision."""

from __future__ import annotations

import contextlib

import torch

__all__ = ["resolve_device", "available_devices", "autocast", "PRECISIONS"]

PRECISIONS = ("fp32", "bf16", "fp16")


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()


def available_devices() -> list[str]:
    """Device names usable here, best first, always ending with ``"cpu"``."""
    names = [f"cuda:{i}" if i else "cuda" for i in range(torch.cuda.device_count())]
    if _mps_available():
        names.append("mps")
    return names + ["cpu"]


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` picks CUDA, then MPS, then CPU; other names are checked, not guessed.

    Raises
    ------
    ValueError
        If the requested device does not exist here, with what does.
    """
    if isinstance(device, torch.device):
        return device
    if isinstance(device, str) and not device.strip():  # was taken as "auto"
        raise ValueError(f"the device is empty; use 'auto' or one of {available_devices()}")
    name = (device or "auto").lower()
    if name == "auto":
        return torch.device(available_devices()[0])
    try:
        dev = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"unknown device {device!r}; use 'auto' or one of {available_devices()}") from err
    if dev.type == "cuda" and (not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count()):
        raise ValueError(f"device {device!r} is not available here (no CUDA GPU); use 'auto' or one of {available_devices()}")
    if dev.type == "mps" and not _mps_available():
        raise ValueError(f"device {device!r} is not available here; use 'auto' or one of {available_devices()}")
    return dev


def autocast(device: torch.device, precision: str = "fp32"):
    """A context that runs the network in ``precision`` (bf16/fp16 autocast, GPU/MPS only).

    On the CPU reduced precision is slower than fp32, so it is refused with a message.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
    if precision == "fp32":
        return contextlib.nullcontext()
    if device.type == "cpu":
        raise ValueError(f"precision={precision!r} (--precision {precision}) needs a GPU; on the CPU use "
                         "precision='fp32', the default")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)
