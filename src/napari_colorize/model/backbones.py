"""Feature extractors whose every layer is tapped for the hypercolumn.

A backbone yields its tapped feature maps in order (``forward`` is a generator), so the
hypercolumn head can project and pool each one as soon as it exists and the large
early maps are freed at once: peak memory stays near one layer, not all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from .imagenet import load_imagenet_vgg16

__all__ = ["Tap", "Backbone", "VGG16Backbone", "CompactBackbone", "BackboneSpec", "BACKBONES", "HIDDEN_RANGE",
           "register_backbone", "get_backbone"]


@dataclass(frozen=True)
class Tap:
    """One tapped layer: its name, channel count and stride relative to the input."""

    name: str
    channels: int
    stride: int


class Backbone(nn.Module):
    """Base class: ``taps`` describes what ``forward`` yields, in order.

    ``multiple`` is the factor the input height and width must be divisible by (the
    stride of the coarsest tap), ``min_size`` the smallest input side it accepts
    (:meth:`BackboneSpec.build` sets it from the registry).
    """

    taps: list[Tap]
    multiple: int = 32
    min_size: int = 32


# VGG-16 configuration "D": channels per conv, "M" = 2x2 max pool.
_VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG16Backbone(Backbone):
    """The paper's network: VGG-16 on one gray channel, fc6/fc7 as convolutions.

    ``features`` has torchvision's layout (``features.N`` indices match
    ``torchvision.models.vgg16().features``) so ImageNet weights load by name; conv1_1
    takes one channel.  fc6 is a 7x7 convolution (pad 3, 4096 channels) and fc7 a 1x1
    convolution on pool5 (pool5 is kept; no dilation, as in the released code).
    Taps: conv1_1 ... conv5_3 (after ReLU) and fc6, fc7: with the input, 12,417 channels.
    """

    def __init__(self, dropout: float = 0.5) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        taps: list[Tap] = []
        in_ch, stride, stage, index = 1, 1, 1, 1
        for v in _VGG16_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
                stride, stage, index = stride * 2, stage + 1, 1
                continue
            layers += [nn.Conv2d(in_ch, v, 3, padding=1), nn.ReLU(inplace=True)]
            taps.append(Tap(f"conv{stage}_{index}", v, stride))
            in_ch, index = v, index + 1
        self.features = nn.Sequential(*layers)
        self.fc6 = nn.Conv2d(512, 4096, 7, padding=3)
        self.fc7 = nn.Conv2d(4096, 4096, 1)
        self.dropout = nn.Dropout(dropout)
        self.taps = taps + [Tap("fc6", 4096, stride), Tap("fc7", 4096, stride)]

    def forward(self, x: torch.Tensor) -> Iterator[torch.Tensor]:
        for layer in self.features:
            x = layer(x)
            if isinstance(layer, nn.ReLU):
                yield x
        x = self.dropout(torch.relu(self.fc6(x)))
        yield x
        yield self.dropout(torch.relu(self.fc7(x)))


class ConvBNReLU(nn.Sequential):
    """Convolution, batch normalisation, ReLU; in inference the normalisation is folded in.

    In evaluation mode without gradients the batch norm is a fixed affine map, so it is
    folded into the convolution's weights and bias (cached until any of them changes):
    one pass over each feature map instead of two, and one full-resolution map less in
    memory.  The children and the state dict are those of the plain sequence.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3) -> None:
        super().__init__(nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(out_ch),
                         nn.ReLU(inplace=True))
        self._folded: tuple | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or torch.is_grad_enabled():
            return super().forward(x)
        conv = self[0]
        weight, bias = self._fold()
        return torch.relu_(nn.functional.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups))

    def _fold(self) -> tuple[torch.Tensor, torch.Tensor]:
        conv, bn = self[0], self[1]
        tensors = (conv.weight, bn.weight, bn.bias, bn.running_mean, bn.running_var)
        key = tuple((t.data_ptr(), t._version, t.dtype, t.device, t.stride()) for t in tensors)
        if self._folded is None or self._folded[0] != key:
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            weight = conv.weight * scale.view(-1, 1, 1, 1)  # keeps the weight's memory format
            bias = bn.bias - bn.running_mean * scale
            self._folded = (key, weight.detach(), bias.detach())
        return self._folded[1], self._folded[2]


def _conv_bn_relu(in_ch: int, out_ch: int, kernel: int = 3) -> nn.Sequential:
    return ConvBNReLU(in_ch, out_ch, kernel)


class CompactBackbone(Backbone):
    """A small VGG-shaped network for CPUs: the same design with far fewer channels.

    Five stages separated by 2x2 max pools, every convolution tapped, and a context
    block (a 7x7 and a 1x1 convolution at stride 32) in place of fc6/fc7, so each pixel
    still sees a few hundred pixels of surroundings.  Batch normalisation makes it
    trainable from scratch (there are no ImageNet weights for it); in evaluation it is
    a fixed affine map, so tiled inference stays exact.
    """

    def __init__(
        self,
        widths: tuple[int, ...] = (16, 32, 64, 96, 128),
        depths: tuple[int, ...] = (1, 2, 2, 2, 2),
        context: int = 192,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if len(widths) != 5 or len(depths) != 5:
            raise ValueError("the compact backbone has 5 stages: give 5 widths and 5 depths")
        self.stages = nn.ModuleList()
        taps: list[Tap] = []
        in_ch, stride = 1, 1
        for stage, (width, depth) in enumerate(zip(widths, depths), start=1):
            convs = nn.ModuleList()
            for index in range(1, depth + 1):
                convs.append(_conv_bn_relu(in_ch, width))
                taps.append(Tap(f"conv{stage}_{index}", width, stride))
                in_ch = width
            self.stages.append(convs)
            stride *= 2
        self.context = nn.ModuleList([_conv_bn_relu(in_ch, context, 7), _conv_bn_relu(context, context, 1)])
        self.dropout = nn.Dropout(dropout)
        self.taps = taps + [Tap("context1", context, stride), Tap("context2", context, stride)]

    def forward(self, x: torch.Tensor) -> Iterator[torch.Tensor]:
        for convs in self.stages:
            for conv in convs:
                x = conv(x)
                yield x
            x = nn.functional.max_pool2d(x, 2)
        for block in self.context:
            x = self.dropout(block(x))
            yield x


#: Allowed h_fc1 widths: below 8 units the head cannot separate colours; above 4096 a
#: VGG-16 hypercolumn projection alone would need over 200 MB per 1000 units.
HIDDEN_RANGE = (8, 4096)


@dataclass(frozen=True)
class BackboneSpec:
    """Everything the package knows about one backbone: how to build it and its defaults.

    Adding a backbone is one :func:`register_backbone` call with one of these; the model
    factory, the metadata validation, the engine's tiling defaults and the command-line
    choices all read it from :data:`BACKBONES`.

    Attributes
    ----------
    name : str
        The name stored in model files and given to ``--backbone``.
    factory : callable
        Makes a new, randomly initialised :class:`Backbone`.
    hidden : int
        Default width of the hypercolumn's h_fc1 layer (within :data:`HIDDEN_RANGE`).
    cpu_tiling : (int, int)
        Default (tile size, overlap) in pixels on CPUs (and MPS).
    single_pass_max : int
        Planes up to this side are coloured as one tile on CPUs (no overlap to recompute).
    gpu_tiling : (int, int)
        Default (tile size, overlap) on CUDA; planes up to the tile size are one tile.
    min_size : int
        The smallest input side the network accepts.
    pretrained : dict of str -> callable
        Named initialisations: ``loader(backbone) -> description`` fills a new backbone's
        weights and returns what to record as the model's ``training["init"]``.
    batch_norm : bool
        Whether it trains with batch normalisation, which needs two values per channel of
        a batch at its deepest (stride 32) layer.
    """

    name: str
    factory: Callable[[], Backbone]
    hidden: int
    cpu_tiling: tuple[int, int]
    single_pass_max: int
    gpu_tiling: tuple[int, int]
    min_size: int = 32
    pretrained: Mapping[str, Callable[[Backbone], str]] = field(default_factory=dict)
    batch_norm: bool = False

    def __post_init__(self) -> None:
        lo, hi = HIDDEN_RANGE
        if not lo <= self.hidden <= hi:
            raise ValueError(f"backbone {self.name!r}: hidden must lie in [{lo}, {hi}], got {self.hidden}")
        for what, (tile, overlap) in (("cpu_tiling", self.cpu_tiling), ("gpu_tiling", self.gpu_tiling)):
            if not (overlap >= 0 and tile > 2 * overlap and tile >= self.min_size):
                raise ValueError(f"backbone {self.name!r}: {what} needs tile > 2 x overlap >= 0 and tile >= "
                                 f"min_size {self.min_size}, got {(tile, overlap)}")

    def build(self) -> Backbone:
        """A new backbone module, with this entry's ``min_size``."""
        module = self.factory()
        module.min_size = self.min_size
        return module

    def tiling(self, device_type: str = "cpu") -> tuple[int, int, int]:
        """``(tile size, overlap, single-pass maximum side)`` on a device type ("cpu", "cuda", "mps")."""
        if device_type == "cuda":
            return (*self.gpu_tiling, self.gpu_tiling[0])
        return (*self.cpu_tiling, self.single_pass_max)


#: The backbones by name, in the order they are offered.
BACKBONES: dict[str, BackboneSpec] = {}


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    """Make a backbone available by name to :func:`~napari_colorize.model.build_model`,
    model files, the engine and the command line.  A name already taken is an error."""
    if spec.name in BACKBONES:
        raise ValueError(f"a backbone named {spec.name!r} is already registered")
    BACKBONES[spec.name] = spec
    return spec


def get_backbone(name: str) -> BackboneSpec:
    """The registered backbone ``name``; one clear error listing the choices otherwise."""
    try:
        return BACKBONES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}") from None


# The numbers: see docs/engine.md.  Overlaps are wide because the receptive field is
# (context 7x7 at stride 32): a chunk border needs about 192 px of context on each side.
# With the trained default model, 1408/384 tiles keep chunk borders below the interior's
# own differences on 1536² and 3072² (benchmarks/bench_engine.py seams); 1280/256 leaves
# faint seams.  Planes up to the single-pass side run as one tile: a 1024² plane is 1.8x
# faster as one compact tile than as 768/64 tiles on 2 CPU cores.  On a GPU tiles are
# larger, since every overlap pixel is computed twice (1408/384 tiles compute up to 1.89x
# the image's pixels, 4096/384 tiles 1.22x) and memory is plentiful.  vgg16 takes the
# same overlap (no trained vgg16 to measure).
register_backbone(BackboneSpec("compact", CompactBackbone, hidden=128, cpu_tiling=(1408, 384),
                               single_pass_max=1536, gpu_tiling=(4096, 384), batch_norm=True))
register_backbone(BackboneSpec("vgg16", VGG16Backbone, hidden=1024, cpu_tiling=(1024, 384),
                               single_pass_max=1024, gpu_tiling=(2048, 384),
                               pretrained={"imagenet": load_imagenet_vgg16}))
