"""Decoding predicted histograms into colour (Larsson et al. 2016, section 3.3).

Histograms have their bins on axis 1: ``(B, K, ...)``.  Point estimates:

* ``expectation``: sum of bin centres weighted by probability (best for Lab);
* ``median``: where the cumulative sum crosses 0.5, linearly interpolated inside the
  bin (best for chroma; undefined for circular hue);
* ``mode``: the centre of the most probable bin;
* ``sample``: a draw from the histogram (seeded, reproducible);
* hue: the complex expectation ``z = sum_k p_k exp(i theta_k)``, hue = arg z / 2 pi;
* chromatic fading: chroma times ``min(|z| / eta, 1)``, eta = 0.03, so colour fades
  to gray where the hue is uncertain.
"""

from __future__ import annotations

import math

import torch

from .bins import Binning

__all__ = [
    "METHODS",
    "expectation",
    "median",
    "mode",
    "sample",
    "hue_complex_expectation",
    "chromatic_fading",
    "normalized_entropy",
    "point_estimate",
]

METHODS = ("expectation", "median", "mode", "sample")


def _centers(binning: Binning, p: torch.Tensor) -> torch.Tensor:
    shape = [1, binning.k] + [1] * (p.ndim - 2)
    return binning.centers_tensor(p).view(shape)


def expectation(p: torch.Tensor, binning: Binning) -> torch.Tensor:
    """``sum_k p_k c_k`` over axis 1."""
    return (p * _centers(binning, p)).sum(dim=1)


def median(p: torch.Tensor, binning: Binning) -> torch.Tensor:
    """The interpolated median: where the cumulative histogram reaches 0.5.

    Inside the bin ``k`` where the cumulative sum first reaches 0.5, the mass is taken
    as spread uniformly between the bin's edges.
    """
    if binning.circular:
        raise ValueError("the median is not defined for a circular histogram (hue); use the complex expectation")
    cdf = p.cumsum(dim=1)
    k = (cdf < 0.5).sum(dim=1, keepdim=True).clamp(max=binning.k - 1)
    p_k = p.gather(1, k)
    below = cdf.gather(1, k) - p_k
    frac = ((0.5 - below) / p_k.clamp_min(1e-12)).clamp(0.0, 1.0)
    edges = binning.edges_tensor(p)
    lo, hi = edges[:-1][k], edges[1:][k]
    return (lo + frac * (hi - lo)).squeeze(1)


def mode(p: torch.Tensor, binning: Binning) -> torch.Tensor:
    """The centre of the most probable bin."""
    return binning.centers_tensor(p)[p.argmax(dim=1)]


def sample(p: torch.Tensor, binning: Binning, generator: torch.Generator | None = None) -> torch.Tensor:
    """One draw per histogram (the centre of the drawn bin)."""
    flat = p.movedim(1, -1).reshape(-1, binning.k).float().clamp_min(0)
    idx = torch.multinomial(flat, 1, generator=generator).view(p.movedim(1, -1).shape[:-1])
    return binning.centers_tensor(p)[idx]


def sample_index(p: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Index of one draw per histogram (bins on axis 1)."""
    k = p.shape[1]
    flat = p.movedim(1, -1).reshape(-1, k).float().clamp_min(0)
    return torch.multinomial(flat, 1, generator=generator).view(p.movedim(1, -1).shape[:-1])


def hue_complex_expectation(p_hue: torch.Tensor, binning: Binning) -> tuple[torch.Tensor, torch.Tensor]:
    """Hue as the argument of ``z = sum_k p_k exp(i theta_k)``, and ``|z|``.

    Returns
    -------
    hue : torch.Tensor
        In [0, 1).
    magnitude : torch.Tensor
        ``|z|`` in [0, 1]: 1 when all mass is in one bin, 0 when spread evenly.
    """
    theta = 2.0 * math.pi * _centers(binning, p_hue)
    zx, zy = (p_hue * torch.cos(theta)).sum(dim=1), (p_hue * torch.sin(theta)).sum(dim=1)
    hue = torch.remainder(torch.atan2(zy, zx) / (2.0 * math.pi), 1.0)
    return hue, torch.hypot(zx, zy)


def chromatic_fading(chroma: torch.Tensor, magnitude: torch.Tensor, eta: float = 0.03) -> torch.Tensor:
    """Scale chroma by ``min(|z| / eta, 1)``: fade to gray where hue is uncertain."""
    return chroma * (magnitude / eta).clamp(max=1.0)


def normalized_entropy(p: torch.Tensor) -> torch.Tensor:
    """Entropy of each histogram over axis 1, divided by ``log K``: in [0, 1]."""
    k = p.shape[1]
    return (-torch.xlogy(p, p).sum(dim=1) / math.log(k)).clamp(0.0, 1.0)


def point_estimate(p: torch.Tensor, binning: Binning, method: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """One of :data:`METHODS` applied to a non-circular histogram."""
    if method == "expectation":
        return expectation(p, binning)
    if method == "median":
        return median(p, binning)
    if method == "mode":
        return mode(p, binning)
    if method == "sample":
        return sample(p, binning, generator)
    raise ValueError(f"unknown decoding method {method!r}; choose one of {METHODS}")
