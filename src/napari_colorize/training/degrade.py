"""Archival degradations of the gray network input (the colour target stays clean).

Users bring scanned prints, old film and microscope frames, not clean renderings of
colour photographs: the gray input is grainy, soft, JPEG-blocked, faded and unevenly
lit.  Training on clean ``(R + G + B) / 3`` only teaches the network to rely on cues
those inputs lack.  :func:`degrade_gray` applies each degradation independently with
probability ``p`` to the *input* of a training crop; the targets (and the lightness
weighting the loss) are computed from the clean crop, so the model learns to predict
the true colour from a damaged gray.
"""

from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["DEGRADATIONS", "degrade_gray"]


def _grain(gray: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    # Film grain: stronger in mid-tones, like silver halide noise.
    sigma = rng.uniform(0.01, 0.05)
    noise = torch.from_numpy(rng.standard_normal(gray.shape).astype(np.float32))
    return gray + sigma * noise * (4 * gray * (1 - gray)).clamp_min(0.25)


def _blur(gray: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    sigma = rng.uniform(0.5, 1.8)
    radius = int(np.ceil(2.5 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = k / k.sum()
    img = F.pad(gray[None, None], (radius, radius, radius, radius), mode="reflect")
    img = F.conv2d(img, k.view(1, 1, 1, -1))
    img = F.conv2d(img, k.view(1, 1, -1, 1))
    return img[0, 0]


def _jpeg(gray: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    from PIL import Image

    quality = int(rng.integers(15, 70))
    buf = io.BytesIO()
    Image.fromarray((gray.clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)).save(buf, "JPEG", quality=quality)
    buf.seek(0)
    return torch.from_numpy(np.asarray(Image.open(buf), dtype=np.float32) / 255.0)


def _fade(gray: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    # Faded print: blacks lifted, whites lowered, a gamma shift.
    lo, hi = rng.uniform(0.0, 0.25), rng.uniform(0.75, 1.0)
    gamma = float(np.exp(rng.uniform(-0.35, 0.35)))
    return lo + (hi - lo) * gray.clamp(0, 1) ** gamma


def _illumination(gray: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    # Uneven illumination: a smooth multiplicative field (a tilted plane plus a vignette).
    h, w = gray.shape
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    gx, gy = rng.uniform(-0.25, 0.25, size=2)
    vignette = rng.uniform(0.0, 0.3)
    field = 1 + gx * xx + gy * yy - vignette * (xx ** 2 + yy ** 2) / 2
    return gray * field


#: The degradations, in the order they are applied (as they arise: the print fades and
#: is unevenly lit, then it is scanned with blur and grain, then compressed).
DEGRADATIONS = {"fade": _fade, "illumination": _illumination, "blur": _blur, "grain": _grain, "jpeg": _jpeg}


def degrade_gray(gray: torch.Tensor, rng: np.random.Generator, p: float) -> torch.Tensor:
    """A degraded copy of a gray crop ``(H, W)`` in [0, 1]; each degradation applies with probability ``p``.

    The result is float32 in [0, 1].  ``p = 0`` returns ``gray`` itself (no draws are
    made, so runs without degradations are unchanged).
    """
    if p <= 0:
        return gray
    out = gray.float()
    for fn in DEGRADATIONS.values():
        if rng.random() < p:
            out = fn(out, rng)
    return out.clamp(0.0, 1.0).contiguous()
