"""Histogram bins of colour values and the training targets built from them.

Larsson et al. (2016), section 3.2: Lab ``a`` and ``b`` are binned by evenly spaced
quantiles of a Gaussian (mu 0, sigma 25) -- K = 32 per marginal, 16 x 16 for the joint
histogram -- and hue and chroma by K = 32 uniform bins on [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = [
    "Binning",
    "uniform_bins",
    "gaussian_quantile_bins",
    "bin_index",
    "one_hot",
    "windowed_histogram",
    "joint_index",
    "softmax_over_bins",
]


@dataclass(frozen=True)
class Binning:
    """K bins on one colour axis.

    Attributes
    ----------
    edges : tuple of float, length K + 1
        Bin boundaries, increasing.  Outer edges are finite (see the constructors) so
        that the interpolated median is defined everywhere.
    centers : tuple of float, length K
        The value each bin stands for when decoding.
    circular : bool
        True for hue: bin K-1 neighbours bin 0.
    """

    edges: tuple[float, ...]
    centers: tuple[float, ...]
    circular: bool = False

    @property
    def k(self) -> int:
        return len(self.centers)

    def centers_tensor(self, like: torch.Tensor | None = None) -> torch.Tensor:
        return _tensor(self.centers, like)

    def edges_tensor(self, like: torch.Tensor | None = None) -> torch.Tensor:
        return _tensor(self.edges, like)


def _tensor(values, like: torch.Tensor | None) -> torch.Tensor:
    if like is None:
        return torch.tensor(values, dtype=torch.float32)
    dtype = like.dtype if like.is_floating_point() else torch.float32
    return torch.tensor(values, dtype=dtype, device=like.device)


def uniform_bins(k: int = 32, circular: bool = False) -> Binning:
    """K uniform bins on [0, 1] (hue: ``circular=True``; chroma)."""
    if k < 2:
        raise ValueError(f"need at least 2 bins, got {k}")
    edges = tuple(i / k for i in range(k + 1))
    centers = tuple((i + 0.5) / k for i in range(k))
    return Binning(edges, centers, circular)


def _gaussian_ppf(p: float, mu: float, sigma: float) -> float:
    # Inverse CDF of N(mu, sigma) through erfinv (no scipy dependency at import time).
    return mu + sigma * math.sqrt(2.0) * torch.special.erfinv(torch.tensor(2.0 * p - 1.0, dtype=torch.float64)).item()


def gaussian_quantile_bins(k: int = 32, mu: float = 0.0, sigma: float = 25.0) -> Binning:
    """K bins of equal mass under N(mu, sigma): the paper's binning of Lab a and b.

    Inner edges sit at the quantiles ``i / K`` (i = 1..K-1) and centres at the
    quantiles ``(i + 0.5) / K``.  The two outer edges are mirrored about the outer
    centres, so each outer bin is as wide around its centre as its inner half.
    """
    if k < 2:
        raise ValueError(f"need at least 2 bins, got {k}")
    inner = [_gaussian_ppf(i / k, mu, sigma) for i in range(1, k)]
    centers = tuple(_gaussian_ppf((i + 0.5) / k, mu, sigma) for i in range(k))
    lo = 2 * centers[0] - inner[0]
    hi = 2 * centers[-1] - inner[-1]
    return Binning((lo, *inner, hi), centers, False)


def bin_index(values: torch.Tensor, binning: Binning) -> torch.Tensor:
    """Index of the bin holding each value (values outside the edges go to the end bins)."""
    inner = binning.edges_tensor(values)[1:-1].contiguous()
    idx = torch.bucketize(values.contiguous(), inner, right=True)
    return idx.clamp(0, binning.k - 1)


def joint_index(index_a: torch.Tensor, index_b: torch.Tensor, k_b: int) -> torch.Tensor:
    """Flattened index of a joint (a, b) bin: ``index_a * k_b + index_b``."""
    return index_a * k_b + index_b


def one_hot(index: torch.Tensor, k: int, dim: int = -1) -> torch.Tensor:
    """One-hot histograms (R = 1 targets): a float tensor with a new bin axis at ``dim``."""
    out = F.one_hot(index.long(), k).to(torch.float32)
    return out.movedim(-1, dim) if dim != -1 else out


def windowed_histogram(index: torch.Tensor, k: int, window: int) -> torch.Tensor:
    """Histogram of bin indices in a ``window x window`` neighbourhood of every pixel.

    Parameters
    ----------
    index : torch.Tensor, shape (B, H, W), integer
        Bin index per pixel.
    k : int
        Number of bins.
    window : int
        Odd window size R (1 gives one-hot targets; the released training used 7).

    Returns
    -------
    hist : torch.Tensor, shape (B, K, H, W)
        Normalised histograms (each sums to 1); near the border only pixels inside
        the image count.
    """
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd integer, got {window}")
    hot = one_hot(index, k, dim=1)
    if window == 1:
        return hot
    return F.avg_pool2d(hot, window, stride=1, padding=window // 2, count_include_pad=False)


def softmax_over_bins(logits: torch.Tensor, log: bool = False) -> torch.Tensor:
    """``(log_)softmax`` over axis 1, the bins of ``(B, K, h, w)`` histograms, in their memory layout.

    The network's dense logits are views of channels-last memory (bins contiguous,
    :meth:`~napari_colorize.model.HypercolumnColorizer.grid_logits`).  PyTorch's softmax
    over axis 1 of such a view copies it to the planar layout first, 5x slower on a CPU
    than a softmax over the contiguous axis (245 ms against 49 ms for 256 bins on a
    1024 x 1024 image's grid); the result keeps the input's layout.
    """
    fn = torch.log_softmax if log else torch.softmax
    if logits.ndim == 4 and logits.stride(1) == 1 and logits.shape[1] > 1:
        return fn(logits.permute(0, 2, 3, 1), dim=-1).permute(0, 3, 1, 2)
    return fn(logits, dim=1)
