"""Which histograms a model predicts ("colour space" of the model), and what follows from it.

A colour space object carries all the behaviour that depends on that choice: the
training targets and loss, the decoding of histograms into two colour channels, the
uncertainty maps, and how the decoded channels and the input's gray become RGB.  The
rest of the package calls these methods and never asks which space it holds, so adding
a space is one subclass of :class:`SpaceSpec` and one :func:`register_space` call.

``hue_chroma``
    Two marginal histograms, hue and chroma, 32 uniform bins each (the paper's
    hue/chroma model).
``lab``
    The joint histogram of Lab (a, b), 16 x 16 bins at Gaussian quantiles (mu 0,
    sigma 25) per axis (the paper's joint Lab model).
``lab_marginal``
    Two marginal histograms of a and b, 32 Gaussian-quantile bins each.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

import torch

from . import decode as D
from .bins import Binning, bin_index, gaussian_quantile_bins, joint_index, uniform_bins
from .color import (gray_to_lab_lightness, hue_chroma_to_rgb, lab_planes_to_rgb, planes_to_hue_chroma, rgb_to_hue_chroma,
                    rgb_to_lab)
from .decode import DecodeOptions
from .losses import histogram_loss, hue_chroma_loss

__all__ = ["SPACES", "SpaceSpec", "HueChromaSpace", "LabSpace", "LabMarginalSpace", "register_space", "get_space",
           "target_indices", "lab_to_hue_chroma_maps", "LAB_CHROMA_REF"]

#: Lab chroma C*_ab that fills the top chroma bin when deriving uncertainty from a,b.
LAB_CHROMA_REF = 100.0

Histograms = dict[str, torch.Tensor]


@dataclass(frozen=True)
class SpaceSpec(ABC):
    """A colour space: its heads (name -> number of bins), per-axis binnings and behaviour.

    Histograms (``probs``) are dicts head -> tensor with the bins on axis 1,
    ``(B, K, h, w)``; the decoded colour is two Cartesian channels ``(u, v)`` per pixel,
    so that bilinear upsampling never wraps hue around the circle the wrong way.
    """

    name: str
    heads: dict[str, int]
    binnings: dict[str, Binning]
    #: Decoding method used when the caller gives none (the paper's best for the space).
    default_method: ClassVar[str] = "expectation"

    @property
    def a_bins(self) -> Binning:
        return self.binnings["a"]

    @property
    def b_bins(self) -> Binning:
        return self.binnings["b"]

    @abstractmethod
    def targets(self, rgb: torch.Tensor) -> tuple[Histograms, torch.Tensor]:
        """Bin index of every true colour per head, and the true chroma (see :func:`target_indices`)."""

    @abstractmethod
    def loss(self, log_probs: Histograms, targets: Histograms, true_chroma: torch.Tensor, lambda_hue: float = 5.0,
             weight: torch.Tensor | None = None) -> torch.Tensor:
        """The training loss, averaged over histograms (bins on the last axis).

        ``true_chroma`` weights a hue term, ``weight`` (per pixel) a chroma term, in
        the spaces that have them.
        """

    @abstractmethod
    def decode(self, probs: Histograms, opts: DecodeOptions,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Histograms -> the two colour channels ``(u, v)``, each ``(B, h, w)``."""

    @abstractmethod
    def uncertainty(self, probs: Histograms) -> tuple[torch.Tensor, torch.Tensor]:
        """``(chroma confidence, hue entropy)``, each ``(B, h, w)`` in [0, 1]."""

    @abstractmethod
    def to_rgb(self, u: torch.Tensor, v: torch.Tensor, gray: torch.Tensor) -> torch.Tensor:
        """Colour channels + the input gray -> RGB ``(B, H, W, 3)`` whose channel mean is ``gray``."""

    @abstractmethod
    def channels(self, rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The colour channels ``(u, v)`` of RGB colours ``(..., 3)``: what :meth:`decode` would ideally return."""

    @abstractmethod
    def soft_targets(self, rgb: torch.Tensor, spread: float = 1.0) -> Histograms:
        """Histograms ``(N, K)`` per head that put the mass of each colour ``(N, 3)`` near its own bin.

        A Gaussian over bin positions with ``spread`` bins of standard deviation, so a
        colour between two bin centres shares their mass (used for guidance: a hint's
        likelihood, a reference's colour distribution).
        """


@dataclass(frozen=True)
class HueChromaSpace(SpaceSpec):
    """Marginal hue and chroma histograms; the colour channels are the chroma vector
    ``C (cos 2 pi H, sin 2 pi H)``."""

    default_method: ClassVar[str] = "median"

    def targets(self, rgb: torch.Tensor) -> tuple[Histograms, torch.Tensor]:
        hue, chroma, _ = rgb_to_hue_chroma(rgb)
        return {"hue": bin_index(hue, self.binnings["hue"]), "chroma": bin_index(chroma, self.binnings["chroma"])}, chroma

    def loss(self, log_probs: Histograms, targets: Histograms, true_chroma: torch.Tensor, lambda_hue: float = 5.0,
             weight: torch.Tensor | None = None) -> torch.Tensor:
        return hue_chroma_loss(targets["hue"], log_probs["hue"], targets["chroma"], log_probs["chroma"], true_chroma,
                               lambda_hue=lambda_hue, weight=weight)

    def decode(self, probs: Histograms, opts: DecodeOptions,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        p_hue, p_chroma = probs["hue"], probs["chroma"]
        hue_bins, chroma_bins = self.binnings["hue"], self.binnings["chroma"]
        method = opts.method or self.default_method
        chroma = D.point_estimate(p_chroma, chroma_bins, method, generator)
        hue_mean, magnitude = D.hue_complex_expectation(p_hue, hue_bins)
        if method == "mode":
            hue = D.mode(p_hue, hue_bins)
        elif method == "sample":
            hue = D.sample(p_hue, hue_bins, generator)
        else:  # the median is undefined on a circle: expectation and median both mean the complex mean
            hue = hue_mean
        if opts.fading:
            chroma = D.chromatic_fading(chroma, magnitude, opts.eta)
        angle = 2.0 * math.pi * hue
        return chroma * torch.cos(angle), chroma * torch.sin(angle)

    def uncertainty(self, probs: Histograms) -> tuple[torch.Tensor, torch.Tensor]:
        return 1.0 - D.normalized_entropy(probs["chroma"]), D.normalized_entropy(probs["hue"])

    def to_rgb(self, u: torch.Tensor, v: torch.Tensor, gray: torch.Tensor) -> torch.Tensor:
        hue = torch.remainder(torch.atan2(v, u) / (2.0 * math.pi), 1.0)
        return hue_chroma_to_rgb(hue, torch.hypot(u, v), gray)

    def channels(self, rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hue, chroma, _ = rgb_to_hue_chroma(rgb)
        return chroma * torch.cos(2.0 * math.pi * hue), chroma * torch.sin(2.0 * math.pi * hue)

    def soft_targets(self, rgb: torch.Tensor, spread: float = 1.0) -> Histograms:
        hue, chroma, _ = rgb_to_hue_chroma(rgb.float())
        hue_bins, chroma_bins = self.binnings["hue"], self.binnings["chroma"]
        p_hue = _gaussian_over(_fractional_index(hue, hue_bins), hue_bins.k, spread, circular=True)
        # A gray colour says nothing about hue: its hue histogram is flat, and becomes
        # peaked as the chroma rises through the first chroma bin.
        certain = (chroma / (chroma_bins.edges[1] - chroma_bins.edges[0])).clamp(0, 1).unsqueeze(-1)
        p_hue = certain * p_hue + (1 - certain) / hue_bins.k
        return {"hue": p_hue, "chroma": _gaussian_over(_fractional_index(chroma, chroma_bins), chroma_bins.k, spread)}


@dataclass(frozen=True)
class LabSpace(SpaceSpec):
    """The joint (a, b) histogram of Lab, one head ``"ab"`` (a-major); the colour channels are (a, b)."""

    def targets(self, rgb: torch.Tensor) -> tuple[Histograms, torch.Tensor]:
        _, chroma, _ = rgb_to_hue_chroma(rgb)
        lab = rgb_to_lab(rgb)
        ia, ib = bin_index(lab[..., 1], self.a_bins), bin_index(lab[..., 2], self.b_bins)
        return self._head_indices(ia, ib), chroma

    def _head_indices(self, ia: torch.Tensor, ib: torch.Tensor) -> Histograms:
        return {"ab": joint_index(ia, ib, self.b_bins.k)}

    def loss(self, log_probs: Histograms, targets: Histograms, true_chroma: torch.Tensor, lambda_hue: float = 5.0,
             weight: torch.Tensor | None = None) -> torch.Tensor:
        # The paper's Lab loss: KL per head, no hue term and no per-pixel weight.
        return sum(histogram_loss(targets[head], log_probs[head]) for head in self.heads)

    def joint(self, probs: Histograms) -> torch.Tensor:
        """The joint (a, b) histogram ``(B, K_a * K_b, h, w)``."""
        return probs["ab"]

    def decode(self, probs: Histograms, opts: DecodeOptions,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        method = opts.method or self.default_method
        a_bins, b_bins = self.a_bins, self.b_bins
        joint = probs["ab"]
        if method in ("expectation", "median"):  # separable: decode the marginals
            pa, pb = _bin_sums(joint, _lab_marginal_maps(self.name, str(joint.device))).split(
                (a_bins.k, b_bins.k), dim=1)
            return D.point_estimate(pa, a_bins, method), D.point_estimate(pb, b_bins, method)
        idx = joint.argmax(dim=1) if method == "mode" else D.sample_index(joint, generator)
        return a_bins.centers_tensor(joint)[idx // b_bins.k], b_bins.centers_tensor(joint)[idx % b_bins.k]

    def uncertainty(self, probs: Histograms) -> tuple[torch.Tensor, torch.Tensor]:
        to_hue, to_chroma = _lab_maps(self.name, str(next(iter(probs.values())).device))
        p_hue, p_chroma = _bin_sums(self.joint(probs), torch.cat((to_hue, to_chroma), dim=1)).split(
            (to_hue.shape[1], to_chroma.shape[1]), dim=1)
        return 1.0 - D.normalized_entropy(p_chroma), D.normalized_entropy(p_hue)

    def to_rgb(self, u: torch.Tensor, v: torch.Tensor, gray: torch.Tensor) -> torch.Tensor:
        hue, chroma = planes_to_hue_chroma(*lab_planes_to_rgb(gray_to_lab_lightness(gray), u, v))
        return hue_chroma_to_rgb(hue, chroma, gray)

    def channels(self, rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lab = rgb_to_lab(rgb.float())
        return lab[..., 1], lab[..., 2]

    def soft_targets(self, rgb: torch.Tensor, spread: float = 1.0) -> Histograms:
        a, b = self.channels(rgb)
        pa = _gaussian_over(_fractional_index(a, self.a_bins), self.a_bins.k, spread)
        pb = _gaussian_over(_fractional_index(b, self.b_bins), self.b_bins.k, spread)
        return self._from_marginals(pa, pb)

    def _from_marginals(self, pa: torch.Tensor, pb: torch.Tensor) -> Histograms:
        # The joint Gaussian over (a, b) bin positions is separable.
        return {"ab": (pa.unsqueeze(-1) * pb.unsqueeze(-2)).flatten(-2)}


@dataclass(frozen=True)
class LabMarginalSpace(LabSpace):
    """Marginal a and b histograms (heads ``"a"`` and ``"b"``), decoded independently."""

    def _head_indices(self, ia: torch.Tensor, ib: torch.Tensor) -> Histograms:
        return {"a": ia, "b": ib}

    def _from_marginals(self, pa: torch.Tensor, pb: torch.Tensor) -> Histograms:
        return {"a": pa, "b": pb}

    def joint(self, probs: Histograms) -> torch.Tensor:
        pa, pb = probs["a"], probs["b"]
        return (pa.unsqueeze(2) * pb.unsqueeze(1)).flatten(1, 2)

    def decode(self, probs: Histograms, opts: DecodeOptions,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        method = opts.method or self.default_method
        return (D.point_estimate(probs["a"], self.a_bins, method, generator),
                D.point_estimate(probs["b"], self.b_bins, method, generator))


def _fractional_index(values: torch.Tensor, binning: Binning) -> torch.Tensor:
    """Each value's position on the bin axis: ``i`` at centre ``i``, linear between centres
    (clamped to the outer centres; for a circular binning, wrapped)."""
    centers = binning.centers_tensor(values)
    if binning.circular:  # uniform circular bins: position = value * K - 1/2, modulo K
        return torch.remainder(values * binning.k - 0.5, binning.k)
    i = torch.searchsorted(centers, values.contiguous()).clamp(1, binning.k - 1)
    lo, hi = centers[i - 1], centers[i]
    return (i - 1 + ((values - lo) / (hi - lo)).clamp(0, 1)).to(values.dtype)


def _gaussian_over(position: torch.Tensor, k: int, spread: float, circular: bool = False) -> torch.Tensor:
    """``(..., K)`` histograms: a Gaussian of ``spread`` bins around each fractional position."""
    index = torch.arange(k, dtype=position.dtype, device=position.device)
    d = index - position.unsqueeze(-1)
    if circular:
        d = torch.remainder(d + k / 2, k) - k / 2
    w = torch.exp(-0.5 * (d / spread) ** 2)
    return w / w.sum(dim=-1, keepdim=True)


#: The colour spaces by name, in the order they are offered.
SPACES: dict[str, SpaceSpec] = {}


def register_space(space: SpaceSpec) -> SpaceSpec:
    """Make a colour space available by name to models, model files and the command line."""
    if space.name in SPACES:
        raise ValueError(f"a colour space named {space.name!r} is already registered")
    SPACES[space.name] = space
    return space


def get_space(name: str) -> SpaceSpec:
    """Look up a colour space by name, with a helpful error."""
    try:
        return SPACES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown colour space {name!r}; choose one of {sorted(SPACES)}") from None


def _register_builtin_spaces() -> None:
    hue, chroma = uniform_bins(32, circular=True), uniform_bins(32)
    joint_axis, marginal_axis = gaussian_quantile_bins(16), gaussian_quantile_bins(32)
    register_space(HueChromaSpace("hue_chroma", {"hue": 32, "chroma": 32}, {"hue": hue, "chroma": chroma}))
    register_space(LabSpace("lab", {"ab": 256}, {"a": joint_axis, "b": joint_axis}))
    register_space(LabMarginalSpace("lab_marginal", {"a": 32, "b": 32}, {"a": marginal_axis, "b": marginal_axis}))


_register_builtin_spaces()


def target_indices(rgb: torch.Tensor, space: SpaceSpec) -> tuple[Histograms, torch.Tensor]:
    """Bin index of every true colour, per head, and the true chroma.

    Parameters
    ----------
    rgb : torch.Tensor, shape (..., 3), values in [0, 1]
        True colours (channels last).
    space : SpaceSpec

    Returns
    -------
    indices : dict of str -> torch.Tensor, shape (...)
        Bin index per head.
    chroma : torch.Tensor, shape (...)
        The colour's chroma ``max - min`` in [0, 1]; the hue loss is weighted by it.
    """
    return space.targets(rgb)


def _bin_sums(joint: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """``(B, K, h, w)`` histograms -> ``(B, N, h, w)``: the mass of each of N groups of
    bins, ``groups`` a ``(K, N)`` 0/1 matrix.  One matrix product, which reads the
    network's channels-last histograms in order (:func:`~napari_colorize.bins.softmax_over_bins`):
    on that layout a plain ``(pixels, K) @ (K, N)`` product, 1.5-2x faster on a CPU than
    ``einsum``, which copies the histograms to another layout first."""
    groups = groups.to(joint.dtype)
    b, k, h, w = joint.shape
    if joint.stride(1) != 1:  # planar histograms (a caller's own): einsum reads them as they are
        return torch.einsum("bkhw,kn->bnhw", joint, groups)
    pixels = joint.permute(0, 2, 3, 1).reshape(b * h * w, k)  # a view: bins are contiguous
    return (pixels @ groups).view(b, h, w, -1).permute(0, 3, 1, 2)


@lru_cache(maxsize=8)
def _lab_marginal_maps(space_name: str, device: str) -> torch.Tensor:
    """``(K_a * K_b, K_a + K_b)``: which a bin, then which b bin, each joint (a-major) bin belongs to."""
    space = get_space(space_name)
    ka, kb = space.a_bins.k, space.b_bins.k
    index = torch.arange(ka * kb)
    eye_a, eye_b = torch.eye(ka), torch.eye(kb)
    return torch.cat((eye_a[index // kb], eye_b[index % kb]), dim=1).to(torch.device(device))


@lru_cache(maxsize=8)
def _lab_maps(space_name: str, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    return lab_to_hue_chroma_maps(get_space(space_name), torch.device(device))


def lab_to_hue_chroma_maps(space: SpaceSpec, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Matrices that turn a joint (a, b) histogram into hue and chroma histograms.

    Each (a, b) bin centre is assigned to the hue bin of its Lab hue angle
    ``atan2(b, a)`` and the chroma bin of ``C*_ab / LAB_CHROMA_REF`` (32 uniform bins
    each).  Returns ``(K_ab, 32)`` matrices of zeros and ones.
    """
    a = space.a_bins.centers_tensor().to(torch.float64)
    b = space.b_bins.centers_tensor().to(torch.float64)
    aa, bb = torch.meshgrid(a, b, indexing="ij")
    hue = torch.remainder(torch.atan2(bb, aa) / (2 * math.pi), 1.0).flatten()
    chroma = (torch.hypot(aa, bb) / LAB_CHROMA_REF).flatten()
    hue_idx = (hue * 32).long().clamp(0, 31)
    chroma_idx = (chroma * 32).long().clamp(0, 31)
    eye = torch.eye(32, dtype=torch.float32)
    return eye[hue_idx].to(device), eye[chroma_idx].to(device)
