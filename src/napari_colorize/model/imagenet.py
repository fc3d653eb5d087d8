"""torchvision's ImageNet VGG-16 weights mapped onto :class:`~.backbones.VGG16Backbone`.

The only pretrained initialisation the project offers (``build_model("vgg16",
pretrained="imagenet")``); the backbone registry names it in the vgg16 entry.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

__all__ = ["vgg16_state_from_torchvision", "load_imagenet_vgg16", "IMAGENET_VGG16"]

#: What :func:`load_imagenet_vgg16` records as the model's ``training["init"]``.
IMAGENET_VGG16 = "torchvision VGG16_Weights.IMAGENET1K_V1"


def _fold_rgb_conv(weight: torch.Tensor, bias: torch.Tensor, mean, std) -> tuple[torch.Tensor, torch.Tensor]:
    """conv1_1 for a gray input g replicated to RGB and normalised per channel.

    ``sum_c W_c * (g - m_c) / s_c + b = (sum_c W_c / s_c) * g + (b - sum W_c m_c / s_c)``:
    the colour filters are averaged (times 3) after rescaling by the ImageNet std.
    Exact inside the image.  On its one-pixel border it is not: torchvision zero-pads the
    *normalised* input (each channel's mean), this conv the raw gray (black), so the
    border's response differs by the padded taps' ``sum W_c m_c / s_c``; fine-tuning
    absorbs that, and a 3-channel conv1_1 to avoid it would cost every tile a copy.
    """
    m = torch.tensor(mean, dtype=weight.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=weight.dtype).view(1, 3, 1, 1)
    gray_weight = (weight / s).sum(dim=1, keepdim=True)
    gray_bias = bias - (weight * m / s).sum(dim=(1, 2, 3))
    return gray_weight, gray_bias


def vgg16_state_from_torchvision(state: dict[str, torch.Tensor], mean=(0.485, 0.456, 0.406),
                                 std=(0.229, 0.224, 0.225)) -> dict[str, torch.Tensor]:
    """Map a torchvision ``vgg16`` state dict onto :class:`~.backbones.VGG16Backbone`."""
    out = {k: v for k, v in state.items() if k.startswith("features.")}
    out["features.0.weight"], out["features.0.bias"] = _fold_rgb_conv(state["features.0.weight"], state["features.0.bias"], mean, std)
    out["fc6.weight"] = state["classifier.0.weight"].reshape(4096, 512, 7, 7)
    out["fc6.bias"] = state["classifier.0.bias"]
    out["fc7.weight"] = state["classifier.3.weight"].reshape(4096, 4096, 1, 1)
    out["fc7.bias"] = state["classifier.3.bias"]
    return out


def load_imagenet_vgg16(backbone: nn.Module) -> str:
    """Load torchvision's ImageNet VGG-16 weights into a :class:`~.backbones.VGG16Backbone`.

    Online, torchvision downloads the file once into torch's cache; offline, the file
    must already be there.  Never falls back to random weights.

    Returns
    -------
    str
        The initialisation's name, for the model's training metadata.
    """
    from torchvision.models import VGG16_Weights

    weights = VGG16_Weights.IMAGENET1K_V1
    try:
        state = weights.get_state_dict(progress=False)
    except Exception as err:  # URLError, OSError, HTTP errors: all mean "could not get the file"
        cache = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
        raise RuntimeError(
            "Could not load torchvision's ImageNet VGG-16 weights (are you offline?). "
            f"Download {weights.url} on a machine with internet access and copy it to {cache} "
            "(or set TORCH_HOME to a folder whose hub/checkpoints/ holds it), then try again. "
            f"Original error: {err}"
        ) from err
    transforms = weights.transforms()
    backbone.load_state_dict(vgg16_state_from_torchvision(state, transforms.mean, transforms.std))
    return IMAGENET_VGG16
