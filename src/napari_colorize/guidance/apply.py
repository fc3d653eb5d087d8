"""Guidance in global coordinates (:class:`Guidance`), each tile's part of it
(:class:`TileGuide`), and the update of a tile's histograms and colour by it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..model.hypercolumn import GRID_STRIDE
from .hints import gray_cells
from .reference import band_weights

__all__ = [
    "HINT_SHARPNESS",
    "HINT_SPREAD",
    "HINT_WEIGHT",
    "Guidance",
    "HintField",
    "TileGuide",
    "guide_colour",
    "guide_histograms",
]

#: Spread (in bins) of a hint's colour likelihood over the histogram bins.
HINT_SPREAD = 1.0
#: Exponent of a hint's likelihood where its influence is 1 (the Bayesian update's weight).
HINT_WEIGHT = 1.0
#: Where hints overlap, the colour drawn to is their average weighted by influence to
#: this power, so that each hint wins near its own point.
HINT_SHARPNESS = 4.0
#: Floor on probabilities before taking logs: no colour the network gave (near) zero
#: is beyond a strong hint's reach.
PROB_FLOOR = 1e-4


@dataclass(frozen=True, eq=False)
class HintField:
    """One hint, ready for the tiles: where it acts, how much, and its colour.

    Attributes
    ----------
    plane : tuple of int, or None
        The leading (stack) index it acts on; None: every plane.
    cell_y, cell_x : int
        Global grid cell of ``weight[0, 0]``.
    weight : array (h, w), float32
        Influence in [0, 1] on the grid cells of its window.
    log_likelihood : dict head -> array (K,)
        ``log`` of its colour's soft histogram (:meth:`SpaceSpec.soft_targets`).
    channels : array (2,)
        Its colour's channels ``(u, v)`` in the model's colour space.
    """

    plane: tuple[int, ...] | None
    cell_y: int
    cell_x: int
    weight: np.ndarray
    log_likelihood: dict[str, np.ndarray]
    channels: np.ndarray

    def overlap(self, cy: int, cx: int, gh: int, gw: int) -> tuple[slice, slice, slice, slice] | None:
        """(rows, cols) of this field and (rows, cols) of the cell window ``[cy, cy+gh) x [cx, cx+gw)`` that coincide."""
        h, w = self.weight.shape
        y0, y1 = max(cy, self.cell_y), min(cy + gh, self.cell_y + h)
        x0, x1 = max(cx, self.cell_x), min(cx + gw, self.cell_x + w)
        if y0 >= y1 or x0 >= x1:
            return None
        return (slice(y0 - self.cell_y, y1 - self.cell_y), slice(x0 - self.cell_x, x1 - self.cell_x),
                slice(y0 - cy, y1 - cy), slice(x0 - cx, x1 - cx))


@dataclass(frozen=True, eq=False)
class TileGuide:
    """The guidance of one tile, on its grid (cell ``(0, 0)`` = the tile's first cell).

    ``log_prior``: dict head -> ``(K,)`` (strength included) or None; ``weights``
    ``(M, gh, gw)``, ``log_likelihood`` head -> ``(M, K)`` and ``channels`` ``(M, 2)``
    for the ``M`` hints that reach the tile (``M`` may be 0).
    """

    log_prior: dict[str, np.ndarray] | None
    weights: np.ndarray
    log_likelihood: dict[str, np.ndarray]
    channels: np.ndarray

    @property
    def has_hints(self) -> bool:
        return len(self.weights) > 0

    def crop(self, y0: int, x0: int, h: int, w: int) -> TileGuide:
        """The guide of the sub-tile of pixels ``[y0, y0+h) x [x0, x0+w)`` (``y0``, ``x0`` on the grid)."""
        cy, cx = y0 // GRID_STRIDE, x0 // GRID_STRIDE
        weights = self.weights[:, cy:cy + -(-h // GRID_STRIDE), cx:cx + -(-w // GRID_STRIDE)]
        return TileGuide(self.log_prior, weights, self.log_likelihood, self.channels)


@dataclass(frozen=True, eq=False)
class Guidance:
    """A job's guidance in global coordinates; picklable (numpy only) for dask.distributed.

    Attributes
    ----------
    log_prior : dict head -> array (K,), or None
        The reference prior ``s * phi`` (:func:`.reference.fit_log_prior`).
    hints : tuple of HintField
    summary : dict
        What was asked for, for the result's ``info`` (counts, strength, range).
    """

    log_prior: dict[str, np.ndarray] | None
    hints: tuple[HintField, ...] = ()
    summary: dict = field(default_factory=dict)

    def __dask_tokenize__(self) -> str:
        return self.token

    @property
    def token(self) -> str:
        digest = hashlib.sha1()
        for head, phi in sorted((self.log_prior or {}).items()):
            digest.update(head.encode() + np.ascontiguousarray(phi).tobytes())
        for h in self.hints:
            digest.update(repr((h.plane, h.cell_y, h.cell_x, h.weight.shape)).encode())
            digest.update(h.weight.tobytes() + h.channels.tobytes())
            for head, ll in sorted(h.log_likelihood.items()):
                digest.update(head.encode() + ll.tobytes())
        return digest.hexdigest()

    def for_tile(self, plane: tuple[int, ...], y0: int, x0: int, h: int, w: int) -> TileGuide | None:
        """The part of this guidance that acts on the tile of pixels ``[y0, y0+h) x [x0, x0+w)`` of ``plane``.

        ``y0`` and ``x0`` are multiples of the grid stride (tile starts are).  None when
        nothing acts on the tile: a tile far from every hint and without a reference
        costs nothing.
        """
        if y0 % GRID_STRIDE or x0 % GRID_STRIDE:
            raise ValueError(f"internal error: a guided tile must start on the grid, got ({y0}, {x0})")
        cy, cx = y0 // GRID_STRIDE, x0 // GRID_STRIDE
        gh, gw = -(-h // GRID_STRIDE), -(-w // GRID_STRIDE)
        reaching = []
        for hint in self.hints:
            if hint.plane is not None and hint.plane != tuple(plane):
                continue
            where = hint.overlap(cy, cx, gh, gw)
            if where is not None and hint.weight[where[0], where[1]].any():
                reaching.append((hint, where))
        if self.log_prior is None and not reaching:
            return None
        weights = np.zeros((len(reaching), gh, gw), np.float32)
        for m, (hint, (fy, fx, ty, tx)) in enumerate(reaching):
            weights[m, ty, tx] = hint.weight[fy, fx]
        heads = reaching[0][0].log_likelihood if reaching else {}
        log_likelihood = {head: np.stack([hint.log_likelihood[head] for hint, _ in reaching]) for head in heads}
        channels = np.stack([hint.channels for hint, _ in reaching]) if reaching else np.zeros((0, 2), np.float32)
        return TileGuide(self.log_prior, weights, log_likelihood, channels)


def _fit_grid(weights: np.ndarray, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """A tile's hint weights ``(M, gh, gw)`` on a grid of ``h x w`` cells (the padded tile's), as a tensor."""
    t = torch.from_numpy(weights).to(device=like.device, dtype=like.dtype)[:, :h, :w]
    ph, pw = h - t.shape[1], w - t.shape[2]
    if (ph or pw) and t.shape[0]:
        # The padded cells past the image edge repeat the edge's weights: the last pixels are
        # interpolated partly from them, and zero weight there would leak unguided colour in.
        t = F.pad(t.unsqueeze(0), (0, pw, 0, ph), mode="replicate")[0]
    return t


def guide_histograms(probs: dict[str, torch.Tensor], guides: list[TileGuide | None],
                     gray: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The Bayesian update of a batch's histograms ``(B, K, h, w)`` per head by each item's guide.

    ``p' ~ max(p, PROB_FLOOR) * exp(prior(gray level)) * exp(sum_m HINT_WEIGHT * w_m * log q_m)``,
    normalised; ``gray`` ``(B, H, W)`` is the tiles' input, whose cell means pick the
    reference prior's band (:func:`.reference.band_weights`).  Each factor is one small
    matrix product (bands or hints x cells), so guidance costs a few passes over the
    histograms.  Items whose guide is None are returned unchanged; ``probs`` itself is
    not modified.
    """
    if all(g is None for g in guides):
        return probs
    out = {}
    cells = None
    if any(g is not None and g.log_prior is not None for g in guides):
        if gray is None:
            raise ValueError("internal error: a reference prior needs the tiles' gray levels")
        p0 = next(iter(probs.values()))
        cells = gray_cells(gray.to(p0.device), *p0.shape[-2:])
    for head, p in probs.items():
        k, h, w = p.shape[1:]
        # One new tensor for the batch (no per-item copies to stack): the in-place steps
        # below never touch `probs`, which the histogram cache may hold.
        batch = p.clamp_min(PROB_FLOOR)
        for i, guide in enumerate(guides):
            post = batch[i]
            if guide is None:
                post.copy_(p[i])
                continue
            if guide.log_prior is not None:
                post.mul_(band_weights(guide.log_prior[head], cells[i].to(post)))
            if guide.has_hints:
                weights = _fit_grid(guide.weights, h, w, post).reshape(len(guide.weights), -1)
                ll = torch.from_numpy(guide.log_likelihood[head]).to(post)
                log_w = ((HINT_WEIGHT * ll.T) @ weights).view(k, h, w)
                # Shifted to 0 at each cell's best bin before exp: a shift common to all bins cancels
                # in the normalisation below, and a dozen far-off hints (each about log 1e-6 in every
                # bin) would otherwise underflow every bin to 0, and 0 / 0 to NaN.
                post.mul_(log_w.sub_(log_w.amax(dim=0, keepdim=True)).exp_())
            post.div_(post.sum(dim=0, keepdim=True))
        out[head] = batch
    return out


def guide_colour(u: torch.Tensor, v: torch.Tensor, guides: list[TileGuide | None]) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw the decoded channels ``(B, h, w)`` to the hints' exact colours by their influence.

    ``c' = c + a (c_hint - c)`` with ``a`` the largest influence at the cell and
    ``c_hint`` the hints' colours averaged with weights ``influence ** HINT_SHARPNESS``:
    at a hint's own cell ``a = 1``, so its colour is reproduced there.
    """
    if not any(g is not None and g.has_hints for g in guides):
        return u, v
    us, vs = [], []
    for i, guide in enumerate(guides):
        if guide is None or not guide.has_hints:
            us.append(u[i])
            vs.append(v[i])
            continue
        w = _fit_grid(guide.weights, *u.shape[-2:], u)
        sharp = w ** HINT_SHARPNESS
        total = sharp.sum(dim=0).clamp_min(1e-12)
        channels = torch.from_numpy(guide.channels).to(u)
        target_u = torch.einsum("mhw,m->hw", sharp, channels[:, 0]) / total
        target_v = torch.einsum("mhw,m->hw", sharp, channels[:, 1]) / total
        alpha = w.amax(dim=0)
        us.append(u[i] + alpha * (target_u - u[i]))
        vs.append(v[i] + alpha * (target_v - v[i]))
    return torch.stack(us), torch.stack(vs)
