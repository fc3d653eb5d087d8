"""Image-level colorization metrics (numpy, RGB channels last, values in [0, 1]).

* :func:`psnr` -- peak signal-to-noise ratio of RGB, data range 1, in dB.
* :func:`rmse_ab` -- root mean squared error of CIE Lab (a, b), in Lab units.
* :func:`auc_ab` -- area under the cumulative mass function of the per-pixel (a, b)
  error over thresholds 0..150, normalised to [0, 1] (Zhang et al. 2016, section 3.1;
  Larsson et al. 2016, table 1).
* :func:`colourfulness` -- Hasler & Suesstrunk (2003) colourfulness M.

References
----------
.. [1] R. Zhang, P. Isola, A. Efros, "Colorful Image Colorization", ECCV 2016.
.. [2] G. Larsson, M. Maire, G. Shakhnarovich, "Learning Representations for
   Automatic Colorization", ECCV 2016.
.. [3] D. Hasler, S. Suesstrunk, "Measuring colourfulness in natural images",
   Proc. SPIE 5007, Human Vision and Electronic Imaging VIII, 2003.
"""

from __future__ import annotations

import numpy as np
import torch

from .color import rgb_to_lab

__all__ = ["psnr", "rmse_ab", "ab_error", "auc_ab", "auc_from_errors", "colourfulness", "lab_of", "AUC_MAX_THRESHOLD"]

#: Largest (a, b) error threshold of the AuC, in Lab units (as in Zhang et al. 2016).
AUC_MAX_THRESHOLD = 150.0


def _check_pair(output: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    out, ref = np.asarray(output, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    if out.shape != ref.shape:
        raise ValueError(f"output and truth must have the same shape, got {out.shape} and {ref.shape}")
    if out.ndim < 1 or out.shape[-1] != 3:
        raise ValueError(f"expected RGB images with a trailing axis of 3 channels, got shape {out.shape}")
    return out, ref


def psnr(output: np.ndarray, truth: np.ndarray, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio ``10 log10(range^2 / MSE)`` over all RGB values, in dB.

    Parameters
    ----------
    output, truth : array_like, shape (..., 3), values in [0, ``data_range``]
    data_range : float

    Returns
    -------
    float
        PSNR in dB; ``inf`` for identical images.
    """
    out, ref = _check_pair(output, truth)
    mse = float(np.mean((out - ref) ** 2))
    return float("inf") if mse == 0 else float(10.0 * np.log10(data_range**2 / mse))


def lab_of(rgb: np.ndarray) -> np.ndarray:
    """sRGB in [0, 1] -> CIE Lab (D65), float64, through :func:`napari_colorize.color.rgb_to_lab`."""
    return rgb_to_lab(torch.from_numpy(np.asarray(rgb, dtype=np.float64))).numpy()


def ab_error(output: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-pixel Euclidean distance in the (a, b) plane, ``(...)``, in Lab units."""
    out, ref = _check_pair(output, truth)
    return np.linalg.norm(lab_of(out)[..., 1:] - lab_of(ref)[..., 1:], axis=-1)


def rmse_ab(output: np.ndarray, truth: np.ndarray) -> float:
    """Root mean squared (a, b) error ``sqrt(mean(|ab_out - ab_true|^2))``, in Lab units."""
    return float(np.sqrt(np.mean(ab_error(output, truth) ** 2)))


def auc_from_errors(errors: np.ndarray, max_threshold: float = AUC_MAX_THRESHOLD) -> float:
    """Area under the CMF of ``errors`` over thresholds [0, max_threshold], over max_threshold.

    The cumulative mass function ``F(t) = fraction of errors <= t`` is integrated
    exactly (it is a step function): ``(1 / T) int_0^T F(t) dt = mean(max(0, T - e)) / T``.
    """
    e = np.asarray(errors, dtype=np.float64).ravel()
    return float(np.mean(np.clip(max_threshold - e, 0.0, None)) / max_threshold)


def auc_ab(output: np.ndarray, truth: np.ndarray, max_threshold: float = AUC_MAX_THRESHOLD) -> float:
    """AuC of the cumulative mass function of per-pixel (a, b) error, in [0, 1].

    For each threshold t in [0, 150] the fraction of pixels whose (a, b) error is at
    most t is taken; the curve is integrated over t and divided by 150 (Zhang et al.
    2016).  1 means a perfect colour everywhere; an error of e everywhere gives
    ``1 - e / 150`` (0 beyond 150).
    """
    return auc_from_errors(ab_error(output, truth), max_threshold)


def colourfulness(rgb: np.ndarray) -> float:
    """Hasler & Suesstrunk (2003) colourfulness M of an RGB image in [0, 1].

    With channels on the 0..255 scale (as in the paper), ``rg = R - G`` and
    ``yb = (R + G) / 2 - B``::

        M = sqrt(std(rg)^2 + std(yb)^2) + 0.3 sqrt(mean(rg)^2 + mean(yb)^2)

    0 for any gray image; about 15 "slightly", 33 "moderately", 59 "quite", 82
    "highly" colourful.
    """
    arr = np.asarray(rgb, dtype=np.float64)
    if arr.ndim < 1 or arr.shape[-1] != 3:
        raise ValueError(f"expected an RGB image with a trailing axis of 3 channels, got shape {arr.shape}")
    arr = arr * 255.0
    r, g, b = arr[..., 0], arr[..., 1], arr[..., 2]
    rg, yb = r - g, 0.5 * (r + g) - b
    sigma = np.sqrt(rg.std() ** 2 + yb.std() ** 2)
    mu = np.sqrt(rg.mean() ** 2 + yb.mean() ** 2)
    return float(sigma + 0.3 * mu)
