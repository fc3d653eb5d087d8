"""Decoding predicted histograms into colour (Larsson et al. 2016, section 3.3).

Histograms have their bins on axis 1: ``(B, K, ...)``.  Point estimates:

* ``expectation``: sum of bin centres weighted by probability (best for Lab);
* ``median``: where the cumulative sum crosses 0.5, linearly interpolated inside the
  bin (best for chroma; undefined for circular hue);
* ``mode``: the centre of the most probable bin;
* ``sample``: a draw from the histogram (seeded, reproducible);
* hue: the complex expectation ``z = sum_k p_k exp(i theta_k)``, hue = arg z / 2 pi;
* chromatic fading: chroma times ``min(|z| / eta, 1)``, eta = 0.03, so colour fades
  to gray where the hue is uncertain;
* temperature: ``softmax(log p / T)`` (= ``softmax(logits / T)``) before all of the
  above; T > 1 flattens over-confident histograms (fitted by held-out NLL, see
  :func:`napari_colorize.evaluate.fit_temperature`).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import torch

from .bins import Binning, softmax_over_bins

__all__ = [
    "METHODS",
    "DecodeOptions",
    "expectation",
    "median",
    "mode",
    "sample",
    "hue_complex_expectation",
    "chromatic_fading",
    "normalized_entropy",
    "point_estimate",
    "temper",
    "check_gains",
    "check_temperature",
    "finite_number",
]


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


def finite_number(value) -> float:
    """``value`` as a float if it is a real number (not a bool), else NaN: callers then
    check range and finiteness with one condition and name the option in their message."""
    real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    return float(value) if real else math.nan


def check_temperature(temperature: float) -> float:
    """``temperature`` as a float; a ``ValueError`` unless it is a finite number > 0."""
    value = finite_number(temperature)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"temperature must be a finite number > 0 (1 = the network's own histograms, "
                         f"> 1 less confident), got {temperature!r}")
    return value


def check_saturation(saturation: float) -> float:
    """``saturation`` as a float; a ``ValueError`` unless it is a finite number >= 0 (a string,
    None or a complex number used to fail with a bare ``TypeError``)."""
    value = finite_number(saturation)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"saturation must be a finite number >= 0 (1 = the model's own colour), got {saturation!r}")
    return value


def check_seed(seed: int) -> int:
    """``seed`` as an int; a ``ValueError`` unless it is a whole number (torch's generator
    refused 1.5 with "manual_seed expected a long" only when sampling began)."""
    value = finite_number(seed)
    if not (math.isfinite(value) and value == int(value)):
        raise ValueError(f"seed must be a whole number (the seed of method='sample'), got {seed!r}")
    return int(seed)


def temper(p: torch.Tensor, temperature: float) -> torch.Tensor:
    """Histograms (bins on axis 1) at ``temperature``: ``softmax(log p / T)``.

    Equivalent to ``softmax(logits / T)`` for ``p = softmax(logits)`` (probabilities
    below 1e-30 are taken as 1e-30).  T > 1 spreads the mass (higher entropy, lower
    confidence), T < 1 sharpens it; T = 1 returns ``p`` itself, unchanged.
    """
    temperature = check_temperature(temperature)
    if temperature == 1.0:
        return p
    return softmax_over_bins(torch.log(p.clamp_min(1e-30)) / temperature)


#: Point estimates of a non-circular histogram by name: ``f(p, binning, generator)``.
_ESTIMATORS: dict[str, Callable[[torch.Tensor, Binning, torch.Generator | None], torch.Tensor]] = {
    "expectation": lambda p, binning, generator: expectation(p, binning),
    "median": lambda p, binning, generator: median(p, binning),
    "mode": lambda p, binning, generator: mode(p, binning),
    "sample": sample,
}
#: The decoding methods, in the order they are offered (the command line's and the
#: widget's choices come from here).
METHODS: tuple[str, ...] = tuple(_ESTIMATORS)


def point_estimate(p: torch.Tensor, binning: Binning, method: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """One of :data:`METHODS` applied to a non-circular histogram."""
    try:
        estimator = _ESTIMATORS[method]
    except KeyError:
        raise ValueError(f"unknown decoding method {method!r}; choose one of {METHODS}") from None
    return estimator(p, binning, generator)


@dataclass(frozen=True)
class DecodeOptions:
    """How histograms become colour.

    Attributes
    ----------
    method : {None, "expectation", "median", "mode", "sample"}
        None picks the colour space's ``default_method``, the paper's best: Lab ->
        expectation; hue/chroma -> chroma median and complex hue expectation.  For hue,
        "expectation" and "median" both mean the complex expectation (the median is
        undefined on a circle).
    saturation : float
        Chroma multiplier (>= 0); colours are still kept inside the RGB gamut.
    fading : bool
        Chromatic fading (hue/chroma models): chroma x min(|z| / eta, 1).
    eta : float
        The fading threshold.
    confidence_fading : (float, float) or None
        Calibrated fading: chroma x clip((confidence - lo) / (hi - lo), 0, 1), so
        colour fades to gray where the chroma confidence is low.
    chroma_gain : float
        Calibrated chroma multiplier (> 0) of the decoded colour, before the fading and
        before colour hints: the median or expectation of an uncertain histogram is
        fainter than the colour it stands for.  Unlike ``saturation`` (the user's
        multiplier of the final image) it leaves a hint's colour exact.
    seed : int
        Seed of the ``sample`` method.
    temperature : float
        Histogram temperature T > 0, applied before decoding and before the
        uncertainty maps: ``p -> softmax(log p / T)`` (:func:`temper`).  1 leaves the
        network's histograms as they are; a calibrated model stores its fitted T.
    """

    method: str | None = None
    saturation: float = 1.0
    fading: bool = True
    eta: float = 0.03
    confidence_fading: tuple[float, float] | None = None
    chroma_gain: float = 1.0
    seed: int = 0
    temperature: float = 1.0

    def validated(self) -> DecodeOptions:
        """These options checked, ``confidence_fading`` and ``temperature`` as floats; a ``ValueError`` says what to change."""
        if self.method is not None and self.method not in METHODS:
            raise ValueError(f"unknown decoding method {self.method!r}; choose one of {METHODS} or None")
        saturation = check_saturation(self.saturation)
        seed = check_seed(self.seed)
        if not (self.chroma_gain > 0 and math.isfinite(self.chroma_gain)):
            raise ValueError(f"chroma_gain must be a finite number > 0 (1 = none), got {self.chroma_gain}")
        temperature = check_temperature(self.temperature)
        fading = self.confidence_fading
        if fading is not None:
            lo, hi = fading
            if not 0 <= lo < hi <= 1:
                raise ValueError(f"confidence_fading must be (lo, hi) with 0 <= lo < hi <= 1, got {self.confidence_fading}")
            fading = (float(lo), float(hi))
        return replace(self, saturation=saturation, seed=seed, confidence_fading=fading, temperature=temperature)


def check_gains(gains: str | Iterable[float]) -> tuple[float, ...]:
    """The chroma gains a calibration tries, as floats: at least one, each a valid
    :attr:`DecodeOptions.chroma_gain`.  A string is read as ``"1,1.25,1.5"`` (the CLI's and
    scripts' ``--gains``); a ``ValueError`` says which value is wrong."""
    if isinstance(gains, str):
        try:
            gains = [float(x) for x in gains.split(",") if x.strip()]
        except ValueError:
            raise ValueError(f"gains are numbers separated by commas, e.g. 1,1.25,1.5; got {gains!r}") from None
    values = tuple(float(g) for g in gains)
    if not values:
        raise ValueError("gains is empty; give at least one chroma gain (1 = none)")
    for gain in values:
        DecodeOptions(chroma_gain=gain).validated()
    return values
