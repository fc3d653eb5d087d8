"""A reference image's colours as a prior over the predicted histograms.

The reference's colour distribution is taken *per lightness*: ``h(k | l)`` per histogram
head, in the model's bins, for :data:`LIGHTNESS_BINS` bands of gray level ``l`` (the
input's gray is known at every pixel, and a stain's or a scene's colours differ by
lightness: dark nuclei, mid-tone stain, pale background; dark foliage, bright sky).
It is imposed by re-weighting every predicted histogram,
``p'(k) ~ p(k) exp(s phi(k | l))``, with ``l`` the cell's gray level (the weights
interpolated between bands).  ``phi`` is fitted so that, within each band, the mean of the
re-weighted histograms over an overview of the image equals ``h(. | l)`` (iterative
proportional fitting; its first step is the plain ratio ``h / mean(p)``); ``s`` is the
strength, 0 ignores the reference.  ``phi`` is one table for the whole image or stack,
a function of the gray level only, so tiles and planes get the same prior: no seams,
no flicker from it.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch

from ..decode import finite_number
from ..io.colour import is_gray, rgb_to_unit
from ..spaces import SpaceSpec

__all__ = [
    "DEFAULT_REFERENCE_STRENGTH",
    "LIGHTNESS_BINS",
    "REFERENCE_PIXELS",
    "band_weights",
    "check_reference_strength",
    "check_references",
    "fit_log_prior",
    "lightness_band",
    "reference_histograms",
]

#: Strength of the reference prior when the caller gives none: measured with
#: ``benchmarks/bench_guided.py`` on the validation sources (see docs/guidance.md).
DEFAULT_REFERENCE_STRENGTH = 1.0
#: Pixels read from each reference (a regular subsample beyond this): its colour
#: distribution, not its detail, is what is used.
REFERENCE_PIXELS = 1 << 14
#: Share of a uniform histogram mixed into the reference's, so that colours the
#: reference lacks become unlikely rather than impossible.
UNIFORM_SHARE = 0.01
#: Bound on |phi|: a colour is never favoured or excluded by more than e^8.
MAX_LOG_WEIGHT = 8.0
#: Gray-level bands of the reference's distribution (1: one distribution for all).
LIGHTNESS_BINS = 8
#: Pseudo-count (share of the reference's pixels) by which a band's distribution is
#: drawn to the reference's overall one, so thinly populated bands stay sensible.
BAND_PRIOR = 0.02


def check_references(reference) -> list[np.ndarray]:
    """The reference image(s) as float32 RGB pixels ``(N, 3)`` in [0, 1] (copies; a regular
    sample of large images).

    ``reference`` is None, one image or a list of images: ``(H, W, 3)`` or
    ``(H, W, 4)`` (alpha is dropped; fully transparent pixels are ignored), uint8/uint16
    or floats in [0, 1].  A ``ValueError`` says what to pass instead of a gray image, a
    wrong shape, or bad values.
    """
    if reference is None:
        return []
    items = list(reference) if isinstance(reference, (list, tuple)) else [reference]
    if not items:
        raise ValueError("reference is an empty list; pass one or more RGB images, or None for no reference")
    out = []
    for i, item in enumerate(items):
        name = "reference" if len(items) == 1 else f"reference {i + 1}"
        if isinstance(item, (str, os.PathLike)):
            raise ValueError(f"{name} is a file name ({os.fspath(item)!r}); pass its pixels: "
                             "napari_colorize.io.read_rgb(path)")
        arr = np.asarray(item)
        if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
            hint = " (a gray image: use a colour photograph of similar content)" if arr.ndim == 2 else ""
            raise ValueError(f"{name} must be an RGB image of shape (H, W, 3) or RGBA (H, W, 4), "
                             f"got shape {arr.shape}{hint}")
        if min(arr.shape[:2]) < 1:
            raise ValueError(f"{name} is empty (shape {arr.shape})")
        # Only its colour distribution is used: a regular sample of ~4x REFERENCE_PIXELS
        # pixels is read and checked (a whole slide scan would cost seconds for nothing).
        step = max(1, math.ceil(math.sqrt(arr.shape[0] * arr.shape[1] / (4 * REFERENCE_PIXELS))))
        arr = np.asarray(arr[::step, ::step])
        alpha = None
        if arr.shape[-1] == 4:
            alpha = rgb_to_unit(arr[..., 3:].repeat(3, axis=-1), name, camera_depth=False)[..., 0]
            arr = arr[..., :3]
        rgb = rgb_to_unit(arr, name)
        pixels = rgb if alpha is None else rgb[alpha > 0]
        if pixels.size == 0:
            raise ValueError(f"{name} is fully transparent: it has no colour to give")
        if is_gray(pixels.reshape(-1, 1, 3)):
            raise ValueError(f"{name} is gray: it has no colour to give. Pass a colour image (e.g. a colour "
                             "photograph or slide of similar content), or no reference")
        out.append(pixels.reshape(-1, 3))
    return out


def check_reference_strength(strength) -> float:
    """``strength`` as a float (None: :data:`DEFAULT_REFERENCE_STRENGTH`); finite and >= 0."""
    if strength is None:
        return DEFAULT_REFERENCE_STRENGTH
    value = finite_number(strength)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"reference strength must be a finite number >= 0 (0 ignores the reference, "
                         f"{DEFAULT_REFERENCE_STRENGTH} is the default), got {strength!r}")
    return value


def lightness_band(gray: torch.Tensor, bands: int = LIGHTNESS_BINS) -> torch.Tensor:
    """The band index of gray levels in [0, 1] (``bands`` equal bands)."""
    return (gray * bands).long().clamp(0, bands - 1)


def reference_histograms(references: list[np.ndarray], space: SpaceSpec, bands: int = LIGHTNESS_BINS,
                         chunk: int = 8192) -> dict[str, np.ndarray]:
    """The references' colour distribution per gray-level band, per head: ``(bands, K)`` each.

    Every reference counts equally whatever its size (up to :data:`REFERENCE_PIXELS`
    pixels are read from each); colours are binned softly
    (:meth:`~napari_colorize.spaces.SpaceSpec.soft_targets`); each band is drawn to
    the overall distribution by :data:`BAND_PRIOR`, and a little uniform mass is mixed
    in (:data:`UNIFORM_SHARE`).
    """
    sums = {head: np.zeros((bands, k), np.float64) for head, k in space.heads.items()}
    for pixels in references:
        step = max(1, math.ceil(len(pixels) / REFERENCE_PIXELS))
        sample = torch.from_numpy(np.ascontiguousarray(pixels[::step]))
        for start in range(0, len(sample), chunk):
            part = sample[start:start + chunk]
            band = lightness_band(part.mean(dim=-1), bands)
            for head, q in space.soft_targets(part).items():
                acc = torch.zeros(bands, q.shape[1], dtype=torch.float64).index_add_(0, band, q.double())
                sums[head] += acc.numpy() / len(sample)
    out = {}
    for head, counts in sums.items():
        counts = counts / len(references)
        overall = counts.sum(axis=0)
        mass = counts.sum(axis=1, keepdims=True)
        bands_h = (counts + BAND_PRIOR * overall) / (mass + BAND_PRIOR)
        out[head] = (1 - UNIFORM_SHARE) * bands_h + UNIFORM_SHARE / counts.shape[1]
    return out


def _fit(probs: torch.Tensor, groups: torch.Tensor, log_target: torch.Tensor, iterations: int) -> torch.Tensor:
    """IPF for several groups: ``phi (G, K)`` with, for each group ``g``, the mean of
    ``p[i] exp(phi[g]) / sum_k p[i, k] exp(phi[g, k])`` over its members ``i`` equal to
    ``exp(log_target[g])``.

    ``probs`` ``(N, K)``; ``groups`` ``(N,)`` gives each row's group; every group must
    have a member.  Each step is two matrix-vector products per group (no ``(N, K)``
    temporaries), so fitting a 256-bin prior on a 256^2 overview takes milliseconds.
    """
    phi = torch.zeros_like(log_target)
    members = [probs[groups == g] for g in range(log_target.shape[0])]
    for _ in range(iterations):
        for g, p in enumerate(members):
            w = torch.exp(phi[g])
            mean = w * (p.T @ (1.0 / (p @ w).clamp_min(1e-30))) / len(p)
            step = phi[g] + log_target[g] - torch.log(mean.clamp_min(1e-12))
            phi[g] = (step - step.mean()).clamp(-MAX_LOG_WEIGHT, MAX_LOG_WEIGHT)
    return phi


def fit_log_prior(overview: dict[str, torch.Tensor], gray_cells: torch.Tensor, target: dict[str, np.ndarray],
                  iterations: int = 10) -> dict[str, np.ndarray]:
    """The log re-weighting ``phi(k | band)`` per head that makes the overview match ``target`` band by band.

    Parameters
    ----------
    overview : dict head -> tensor ``(B, K, h, w)``
        Predicted (already tempered) histograms of an overview of the image.
    gray_cells : tensor ``(B, h, w)``
        The overview's mean gray level per grid cell, in [0, 1].
    target : dict head -> array ``(bands, K)``
        The reference's distribution per band (:func:`reference_histograms`).
    iterations : int
        Proportional-fitting steps: ``phi += log target - log mean(softmax(log p + phi))``.

    Returns
    -------
    dict head -> float32 array ``(bands, K)``, each row centred on 0, within
    +-:data:`MAX_LOG_WEIGHT`.  A band with no overview cells gets the fit of the
    whole overview to that band's target.
    """
    prior = {}
    for head, probs in overview.items():
        bands = target[head].shape[0]
        flat = probs.float().movedim(1, -1).reshape(-1, probs.shape[1]).clamp_min(1e-12)
        band = lightness_band(gray_cells.reshape(-1), bands)
        log_target = torch.log(torch.as_tensor(target[head], dtype=torch.float32))
        present = torch.unique(band)
        phi = torch.zeros_like(log_target)
        phi[present] = _fit(flat, torch.searchsorted(present, band), log_target[present], iterations)
        for b in sorted(set(range(bands)) - set(present.tolist())):
            # The whole overview stands in for a gray level it does not show.
            phi[b] = _fit(flat, torch.zeros_like(band), log_target[b:b + 1], iterations)[0]
        prior[head] = phi.float().numpy()
    return prior


def band_weights(log_prior: np.ndarray, gray_cells: torch.Tensor) -> torch.Tensor:
    """The prior's weights ``exp(phi)`` at each cell's gray level, up to a factor per cell:
    ``(h, w)`` -> ``(K, h, w)``.

    Linear between band centres (in weight), clamped beyond the outer centres.  One small
    matrix product (bands x cells), not a gather per bin: a 1024^2 tile's 256-bin
    weights take ~20 ms on two cores.  The factor, which the posterior's normalisation
    removes, keeps them finite: a strong reference (strength 20 makes ``phi`` reach
    +-160) would overflow ``exp`` to inf, and inf / inf to NaN.  Each band is taken
    relative to its own largest weight and each cell to the largest band it mixes, so a
    cell's largest weight is close to 1 whatever the strength.
    """
    log_table = torch.from_numpy(log_prior).to(gray_cells)
    peak = log_table.amax(dim=1)  # (bands,)
    table = torch.exp(log_table - peak[:, None])  # every row's largest weight is 1
    bands = table.shape[0]
    pos = (gray_cells.reshape(-1) * bands - 0.5).clamp(0, bands - 1)
    lo = pos.floor().long().clamp(max=bands - 1)
    hi = (lo + 1).clamp(max=bands - 1)
    frac = pos - lo
    # The cell's scale: the larger peak of the bands it mixes (only lo when frac is 0).
    top = torch.where(frac > 0, torch.maximum(peak[lo], peak[hi]), peak[lo])
    cell = torch.arange(pos.numel(), device=pos.device)
    mix = torch.zeros(bands, pos.numel(), dtype=table.dtype, device=table.device)
    mix.index_put_((lo, cell), (1 - frac) * torch.exp(peak[lo] - top), accumulate=True)
    # Clamped: with frac 0 the hi band is unused and may peak far above top (0 x inf is NaN).
    mix.index_put_((hi, cell), frac * torch.exp((peak[hi] - top).clamp(max=0)), accumulate=True)
    return (table.T @ mix).view(-1, *gray_cells.shape)
