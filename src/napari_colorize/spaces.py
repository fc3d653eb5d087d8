"""Which histograms a model predicts ("colour space" of the model) and their targets.

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

from dataclasses import dataclass

import torch

from .bins import Binning, bin_index, gaussian_quantile_bins, joint_index, uniform_bins
from .color import rgb_to_hue_chroma, rgb_to_lab

__all__ = ["SPACES", "SpaceSpec", "get_space", "target_indices"]


@dataclass(frozen=True)
class SpaceSpec:
    """The heads of a colour space: name -> number of bins, and the per-axis binnings."""

    name: str
    heads: dict[str, int]
    binnings: dict[str, Binning]

    @property
    def a_bins(self) -> Binning:
        return self.binnings["a"]

    @property
    def b_bins(self) -> Binning:
        return self.binnings["b"]


def _make_spaces() -> dict[str, SpaceSpec]:
    hue, chroma = uniform_bins(32, circular=True), uniform_bins(32)
    joint_axis = gaussian_quantile_bins(16)
    marginal_axis = gaussian_quantile_bins(32)
    return {
        "hue_chroma": SpaceSpec("hue_chroma", {"hue": 32, "chroma": 32}, {"hue": hue, "chroma": chroma}),
        "lab": SpaceSpec("lab", {"ab": 256}, {"a": joint_axis, "b": joint_axis}),
        "lab_marginal": SpaceSpec("lab_marginal", {"a": 32, "b": 32}, {"a": marginal_axis, "b": marginal_axis}),
    }


SPACES: dict[str, SpaceSpec] = _make_spaces()


def get_space(name: str) -> SpaceSpec:
    """Look up a colour space by name, with a helpful error."""
    try:
        return SPACES[name]
    except KeyError:
        raise ValueError(f"unknown colour space {name!r}; choose one of {sorted(SPACES)}") from None


def target_indices(rgb: torch.Tensor, space: SpaceSpec) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
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
    hue, chroma, _ = rgb_to_hue_chroma(rgb)
    if space.name == "hue_chroma":
        return {"hue": bin_index(hue, space.binnings["hue"]), "chroma": bin_index(chroma, space.binnings["chroma"])}, chroma
    lab = rgb_to_lab(rgb)
    ia, ib = bin_index(lab[..., 1], space.a_bins), bin_index(lab[..., 2], space.b_bins)
    if space.name == "lab":
        return {"ab": joint_index(ia, ib, space.b_bins.k)}, chroma
    return {"a": ia, "b": ib}, chroma
