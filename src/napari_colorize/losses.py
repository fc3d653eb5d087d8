"""Histogram losses (Larsson et al. 2016, section 3.2)."""

from __future__ import annotations

import torch

__all__ = ["kl_divergence", "histogram_loss", "hue_chroma_loss", "lightness_weight"]


def kl_divergence(target: torch.Tensor, log_pred: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """KL(y || f) = sum_k y_k (log y_k - log f_k), with 0 log 0 = 0.

    Parameters
    ----------
    target : torch.Tensor
        Target histograms y (non-negative, summing to 1 along ``dim``).
    log_pred : torch.Tensor
        Log-probabilities log f (e.g. ``log_softmax`` of the logits), same shape.
    dim : int
        The bin axis.

    Returns
    -------
    torch.Tensor
        KL divergence per histogram (``dim`` reduced), >= 0.
    """
    # 0 log 0 = 0 in both terms: a bin the target leaves empty adds nothing even where
    # log f = -inf (a one-hot prediction), which would otherwise give 0 * -inf = NaN.
    cross = torch.where(target > 0, target * log_pred, torch.zeros_like(log_pred))
    return (torch.xlogy(target, target) - cross).sum(dim=dim)


def lightness_weight(lightness: torch.Tensor) -> torch.Tensor:
    """The released code's down-weighting of chroma near black and white: min(3L, 1, 3(1 - L))."""
    return torch.minimum(torch.minimum(3.0 * lightness, torch.ones_like(lightness)), 3.0 * (1.0 - lightness)).clamp_min(0)


def histogram_loss(target: torch.Tensor, log_pred: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Mean KL(y || f) over all histograms: the Lab loss."""
    return kl_divergence(target, log_pred, dim=dim).mean()


def hue_chroma_loss(
    target_hue: torch.Tensor,
    log_pred_hue: torch.Tensor,
    target_chroma: torch.Tensor,
    log_pred_chroma: torch.Tensor,
    true_chroma: torch.Tensor,
    lambda_hue: float = 5.0,
    weight: torch.Tensor | None = None,
    dim: int = -1,
) -> torch.Tensor:
    """KL(y_C || f_C) + lambda_H * y_C * KL(y_H || f_H), averaged over pixels.

    Hue counts in proportion to the true chroma ``y_C`` in [0, 1], because hue is
    undefined for gray pixels.  ``weight`` (per pixel, optional) scales the chroma term,
    e.g. :func:`lightness_weight`.
    """
    kl_c = kl_divergence(target_chroma, log_pred_chroma, dim=dim)
    if weight is not None:
        kl_c = kl_c * weight
    kl_h = kl_divergence(target_hue, log_pred_hue, dim=dim)
    return (kl_c + lambda_hue * true_chroma * kl_h).mean()
