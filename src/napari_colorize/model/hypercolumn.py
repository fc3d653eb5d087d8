"""The hypercolumn colorizer: per-pixel colour histograms from every tapped layer.

Dense inference follows the reference implementation: the hypercolumn lives on the
conv3 grid (1/4 of the input resolution).  Finer taps (the input, conv1, conv2) are
average-pooled down to it, coarser taps (conv4, conv5, fc6, fc7) bilinearly upsampled.

h_fc1 is a 1x1 convolution over the 12,417-channel concatenation.  Because it is
linear, and so are pooling and bilinear upsampling, applying its slice of weights to
each tap *at that tap's own resolution* and upsampling the 1024-channel result gives
the same answer at a fraction of the cost (:meth:`HypercolumnColorizer.grid_logits`).
The concatenate-then-project version is kept as the reference
(:meth:`HypercolumnColorizer.grid_logits_naive`).
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..bins import softmax_over_bins
from ..spaces import SpaceSpec
from .backbones import Backbone, Tap

__all__ = ["HypercolumnColorizer", "GRID_STRIDE", "pad_to_multiple", "context_overview"]

#: Stride of the hypercolumn grid relative to the input (the conv3 grid).
GRID_STRIDE = 4


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Reflect-pad the last two axes up to a multiple of ``multiple`` (bottom/right)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def context_overview(gray: torch.Tensor, side: int) -> torch.Tensor:
    """A gray batch ``(B, 1, H, W)`` resized to the ``side x side`` overview that the
    image-level context is computed from (area averaging when shrinking: anti-aliased)."""
    mode = "area" if min(gray.shape[-2:]) >= side else "bilinear"
    kwargs = {} if mode == "area" else {"align_corners": False}
    return F.interpolate(gray.float(), size=(side, side), mode=mode, **kwargs)


def _project(proj: nn.Conv2d, feature: torch.Tensor) -> torch.Tensor:
    """A bias-free 1x1 convolution as one matrix product (about 2x faster than conv2d on CPUs)."""
    b, c, h, w = feature.shape
    weight = proj.weight.view(proj.out_channels, c)
    flat = feature.reshape(b, c, h * w)
    # One plain GEMM per image (torch.matmul would broadcast the weight and copy).
    return torch.stack([weight @ flat[i] for i in range(b)]).view(b, proj.out_channels, h, w)


def _pixels_by_channels(feature: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, H * W, C)`` (free for channels-last tensors)."""
    b, c = feature.shape[:2]
    return feature.permute(0, 2, 3, 1).reshape(b, -1, c)


class HypercolumnColorizer(nn.Module):
    """Gray image -> colour histograms per pixel (Larsson et al. 2016).

    Parameters
    ----------
    backbone : Backbone
        Yields the tapped feature maps (see :mod:`napari_colorize.model.backbones`).
    space : SpaceSpec
        The histograms to predict (heads and bin counts).
    hidden : int
        Units of h_fc1 (1024 in the paper).
    dropout : float
        Dropout after h_fc1 while training.
    context : int
        0: none (the paper's network).  Otherwise the side of a square overview of the
        *whole* image from which an image-level context vector is computed: every tapped
        layer of the same backbone, averaged over the overview, projected to h_fc1 and
        added to every pixel's hypercolumn projection.  A tile of sky then knows the
        image it belongs to; one vector per image, so tiles stay one pass each and seam-free.
        The projection starts at zero, so a context model starts as its plain twin.
    context_dropout : float
        While training, the probability that an image's whole context vector is dropped
        (the rest scaled up to keep the mean), so that pixels cannot lean on it alone.

    Notes
    -----
    Inputs are gray images ``(B, 1, H, W)`` in [0, 1] whose sides are multiples of
    ``backbone.multiple`` (:func:`pad_to_multiple`).  Outputs are logits per head on
    the grid ``(B, K, H / 4, W / 4)`` (dense) or at given points ``(B, N, K)`` (sparse).
    """

    def __init__(self, backbone: Backbone, space: SpaceSpec, hidden: int = 1024, dropout: float = 0.0,
                 context: int = 0, context_dropout: float = 0.0) -> None:
        super().__init__()
        self.backbone = backbone
        self.space = space
        self.taps: list[Tap] = [Tap("input", 1, 1), *backbone.taps]
        self.projections = nn.ModuleList(nn.Conv2d(t.channels, hidden, 1, bias=False) for t in self.taps)
        self.projection_bias = nn.Parameter(torch.zeros(hidden))
        self.heads = nn.ModuleDict({name: nn.Conv2d(hidden, k, 1) for name, k in space.heads.items()})
        self.dropout = nn.Dropout(dropout)
        self.context_side = int(context)
        self.context_dropout = float(context_dropout)
        if self.context_side and (self.context_side % backbone.multiple or self.context_side < backbone.min_size):
            raise ValueError(f"context must be 0 (none) or a multiple of {backbone.multiple} of at least "
                             f"{backbone.min_size} pixels, got {context}")
        if self.context_side:
            self.context_projection = nn.Linear(self.hypercolumn_channels, hidden, bias=False)
            nn.init.zeros_(self.context_projection.weight)
        self._init_projections()

    def _init_projections(self) -> None:
        # One linear layer over the whole hypercolumn: fan-in is the total channel count.
        std = math.sqrt(2.0 / self.hypercolumn_channels)
        for proj in self.projections:
            nn.init.normal_(proj.weight, 0.0, std)

    @property
    def hypercolumn_channels(self) -> int:
        """Channels of the concatenated hypercolumn (12,417 for VGG-16)."""
        return sum(t.channels for t in self.taps)

    @property
    def multiple(self) -> int:
        return self.backbone.multiple

    @property
    def min_size(self) -> int:
        return self.backbone.min_size

    def context_features(self, gray: torch.Tensor) -> torch.Tensor | None:
        """The image-level context ``(B, C)`` of whole gray images ``(B, 1, H, W)``: the mean
        of every tapped layer over the image's :func:`context_overview`; None without context.

        The engine computes it once per image (:mod:`napari_colorize.engine.context`) and
        passes it with every tile; given None, :meth:`grid_logits` uses the input itself.
        """
        if not self.context_side:
            return None
        overview = context_overview(gray, self.context_side)
        return torch.cat([f.float().mean(dim=(-2, -1)) for f in self._features(overview)], dim=1)

    def _context_bias(self, gray: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor | None:
        """``(B, hidden)``: what the context adds to every pixel's h_fc1 input (None without context)."""
        if not self.context_side:
            return None
        if context is None:
            context = self.context_features(gray)
        if self.training and self.context_dropout > 0:
            keep = torch.rand(context.shape[0], 1, device=context.device) >= self.context_dropout
            context = context * keep.to(context.dtype) / (1.0 - self.context_dropout)
        return self.context_projection(context.to(self.context_projection.weight.dtype))

    def _features(self, gray: torch.Tensor):
        self._check_input(gray)
        return itertools.chain([gray], self.backbone(gray))

    def _check_input(self, gray: torch.Tensor) -> None:
        if gray.ndim != 4 or gray.shape[1] != 1:
            raise ValueError(f"expected a gray batch of shape (B, 1, H, W), got {tuple(gray.shape)}")
        h, w = gray.shape[-2:]
        if h % self.multiple or w % self.multiple:
            raise ValueError(f"height and width must be multiples of {self.multiple}; pad with pad_to_multiple()")

    @staticmethod
    def _pool_to_grid(feature: torch.Tensor, tap: Tap) -> torch.Tensor:
        if tap.stride < GRID_STRIDE:
            return F.avg_pool2d(feature, GRID_STRIDE // tap.stride)
        return feature

    @staticmethod
    def _upsample_to_grid(feature: torch.Tensor, tap: Tap, grid: tuple[int, int]) -> torch.Tensor:
        if tap.stride > GRID_STRIDE:
            # Channels-last: PyTorch's CPU bilinear kernel is ~10x faster on it for wide maps.
            feature = feature.contiguous(memory_format=torch.channels_last)
            return F.interpolate(feature, size=grid, mode="bilinear", align_corners=False)
        return feature

    def _to_grid(self, feature: torch.Tensor, tap: Tap, grid: tuple[int, int]) -> torch.Tensor:
        return self._upsample_to_grid(self._pool_to_grid(feature, tap), tap, grid)

    def _activate(self, hidden: torch.Tensor) -> torch.Tensor:
        # In place when nothing is recorded for backward: the hidden map is the largest
        # tensor of the head (1024 channels on the grid for VGG-16).
        return self.dropout(torch.relu(hidden) if torch.is_grad_enabled() else hidden.relu_())

    def _classify(self, hidden: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden = self._activate(hidden)
        return {name: head(hidden) for name, head in self.heads.items()}

    def _classify_pixels(self, acc: torch.Tensor, grid: tuple[int, int]) -> dict[str, torch.Tensor]:
        """The heads on the channels-last accumulator ``(B, h * w, hidden)``, one GEMM each.

        The logits ``(B, K, h, w)`` are views of channels-last memory: the bins of a pixel
        are contiguous, so the softmax over them (:func:`~napari_colorize.bins.softmax_over_bins`)
        and the bin sums of decoding read memory in order.  A 1x1 convolution on the NCHW
        view costs the same but returns the bins strided, which made the softmax 5x slower.
        """
        hidden = self._activate(acc)
        b = acc.shape[0]
        return {name: F.linear(hidden, head.weight.flatten(1), head.bias).view(b, *grid, -1).permute(0, 3, 1, 2)
                for name, head in self.heads.items()}

    def grid_logits(self, gray: torch.Tensor, context: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Dense logits on the 1/4 grid, projecting each tap at its own resolution.

        ``context`` ``(B, C)`` is the image-level context of the image each input is cut
        from (:meth:`context_features`); None: the input is the whole image.

        The accumulator is kept channels-last, ``(B, h * w, hidden)``: taps on the grid
        are projected straight into it with in-place GEMMs (no temporaries, no separate
        additions), and coarser taps are projected at their own resolution, summed per
        resolution and upsampled once per resolution (upsampling is linear too).
        """
        b = gray.shape[0]
        grid = (gray.shape[-2] // GRID_STRIDE, gray.shape[-1] // GRID_STRIDE)
        hidden = self.projection_bias.numel()
        bias = self.projection_bias.float().expand(b, hidden)
        extra = self._context_bias(gray, context)
        if extra is not None:
            bias = bias + extra.float()
        acc = bias[:, None, :].expand(b, grid[0] * grid[1], hidden).contiguous()
        coarse: dict[int, torch.Tensor] = {}
        for tap, proj, feature in zip(self.taps, self.projections, self._features(gray)):
            # Pool before projecting (fewer pixels), upsample after (fewer channels).
            pooled = self._pool_to_grid(feature, tap)
            if tap.stride <= GRID_STRIDE:
                flat = _pixels_by_channels(pooled).to(acc.dtype)
                weight_t = proj.weight.flatten(1).t().to(acc.dtype)
                for i in range(b):
                    acc[i].addmm_(flat[i], weight_t)
            else:
                projected = _project(proj, pooled)
                coarse[tap.stride] = projected if tap.stride not in coarse else coarse[tap.stride] + projected
        out = acc.view(b, grid[0], grid[1], hidden).permute(0, 3, 1, 2)  # NCHW view of channels-last memory
        for stride, projected in coarse.items():
            # In place: the accumulator is this function's own tensor (autograd allows it).
            out.add_(self._upsample_to_grid(projected, Tap("coarse", 0, stride), grid).to(out.dtype))
        return self._classify_pixels(acc, grid)

    def hypercolumns(self, gray: torch.Tensor) -> torch.Tensor:
        """The concatenated hypercolumn on the grid, ``(B, C, H / 4, W / 4)`` (reference only)."""
        grid = (gray.shape[-2] // GRID_STRIDE, gray.shape[-1] // GRID_STRIDE)
        return torch.cat([self._to_grid(f, t, grid) for t, f in zip(self.taps, self._features(gray))], dim=1)

    def grid_logits_naive(self, gray: torch.Tensor, context: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Concatenate-then-project h_fc1: the reference for :meth:`grid_logits`."""
        weight = torch.cat([p.weight for p in self.projections], dim=1)
        out = F.conv2d(self.hypercolumns(gray), weight, self.projection_bias)
        extra = self._context_bias(gray, context)
        if extra is not None:
            out = out + extra[:, :, None, None]
        return self._classify(out)

    def point_logits(self, gray: torch.Tensor, points: torch.Tensor,
                     context: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Sparse hypercolumns: logits at ``points`` only (the paper's sparse training).

        Parameters
        ----------
        gray : torch.Tensor, shape (B, 1, H, W)
        points : torch.Tensor, shape (B, N, 2)
            (x, y) positions in input pixel units, pixel ``i`` spanning [i, i + 1).

        Returns
        -------
        dict of str -> torch.Tensor, shape (B, N, K)
            Equal to :meth:`grid_logits` where a point falls on a grid cell centre
            ``(4 j + 2, 4 i + 2)``; bilinear in between.  Gradients flow to the four
            neighbours in every tapped layer.

        ``context``: as in :meth:`grid_logits` (training passes that of the whole image
        the crop was cut from).
        """
        h, w = gray.shape[-2:]
        norm = torch.stack((2.0 * points[..., 0] / w - 1.0, 2.0 * points[..., 1] / h - 1.0), dim=-1)
        norm = norm.unsqueeze(1).to(gray.dtype)  # (B, 1, N, 2)
        acc = None
        for tap, proj, feature in zip(self.taps, self.projections, self._features(gray)):
            feature = self._pool_to_grid(feature, tap)
            sampled = F.grid_sample(feature, norm.to(feature.dtype), mode="bilinear", padding_mode="border", align_corners=False)
            projected = proj(sampled)  # (B, hidden, 1, N)
            acc = projected if acc is None else acc + projected
        acc = acc + self.projection_bias.view(1, -1, 1, 1)
        extra = self._context_bias(gray, context)
        if extra is not None:
            acc = acc + extra[:, :, None, None]
        logits = self._classify(acc)
        return {name: v[:, :, 0, :].transpose(1, 2) for name, v in logits.items()}

    def forward(self, gray: torch.Tensor, context: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Log-probabilities per head on the 1/4 grid (``log_softmax`` of :meth:`grid_logits`)."""
        return {name: softmax_over_bins(v.float(), log=True) for name, v in self.grid_logits(gray, context).items()}
