"""Feature extractors whose every layer is tapped for the hypercolumn.

A backbone yields its tapped feature maps in order (``forward`` is a generator), so the
hypercolumn head can project and pool each one as soon as it exists and the large
early maps are freed at once: peak memory stays near one layer, not all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["Tap", "Backbone", "VGG16Backbone", "CompactBackbone", "BACKBONES", "register_backbone"]


@dataclass(frozen=True)
class Tap:
    """One tapped layer: its name, channel count and stride relative to the input."""

    name: str
    channels: int
    stride: int


class Backbone(nn.Module):
    """Base class: ``taps`` describes what ``forward`` yields, in order.

    ``multiple`` is the factor the input height and width must be divisible by (the
    stride of the coarsest tap), ``min_size`` the smallest input side it accepts.
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


BACKBONES: dict[str, Callable[[], Backbone]] = {"vgg16": VGG16Backbone, "compact": CompactBackbone}


def register_backbone(name: str, factory: Callable[[], Backbone]) -> None:
    """Make a new backbone available to :func:`napari_colorize.build_model` by name."""
    BACKBONES[name] = factory
