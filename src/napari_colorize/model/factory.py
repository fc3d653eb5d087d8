"""Building, saving and loading colorizers (safetensors weights + JSON metadata).

A checkpoint is one ``.safetensors`` file: the tensors, plus a JSON document in the
file's metadata header under the key ``napari_colorize`` that says how to rebuild the
network (backbone, colour space, bins, input convention, version) and how it was
trained.  Loading never unpickles anything.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from .._atomic import atomic_path, read_safetensors_metadata
from ..spaces import get_space
from .backbones import BACKBONES, VGG16Backbone
from .hypercolumn import HypercolumnColorizer

__all__ = ["ModelConfig", "build_model", "save_model", "load_model", "load_imagenet_vgg16", "DEFAULT_MODEL", "FORMAT_VERSION"]

FORMAT_VERSION = 1
METADATA_KEY = "napari_colorize"
INPUT_CONVENTION = "gray = (R + G + B) / 3, float in [0, 1], shape (B, 1, H, W)"
#: Name of the model shipped inside the package.
DEFAULT_MODEL = "default"
_HIDDEN = {"vgg16": 1024, "compact": 128}


@dataclass
class ModelConfig:
    """Everything needed to rebuild a colorizer; stored as JSON beside its weights."""

    backbone: str = "compact"
    space: str = "hue_chroma"
    hidden: int = 128
    dropout: float = 0.0
    input_convention: str = INPUT_CONVENTION
    format_version: int = FORMAT_VERSION
    #: Decoding defaults learnt on validation data (e.g. calibrated fading), free-form.
    decoding: dict[str, Any] = field(default_factory=dict)
    #: How it was trained (data, steps, scores), free-form.
    training: dict[str, Any] = field(default_factory=dict)

    def to_json(self, bins: bool = True) -> str:
        doc = asdict(self)
        if bins:  # written for readers of the file; rebuilt from `space` when loading
            doc["bins"] = {k: {"edges": list(b.edges), "centers": list(b.centers), "circular": b.circular}
                           for k, b in get_space(self.space).binnings.items()}
        return json.dumps(doc)

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        doc = json.loads(text)
        doc.pop("bins", None)
        version = doc.get("format_version", 0)
        if version > FORMAT_VERSION:
            raise ValueError(f"this checkpoint has format version {version}; upgrade napari-colorize to read it")
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in doc.items() if k in known})


def build_model(backbone: str = "compact", space: str = "hue_chroma", pretrained: str | None = None,
                hidden: int | None = None, dropout: float = 0.0) -> HypercolumnColorizer:
    """A new colorizer.

    Parameters
    ----------
    backbone : {"compact", "vgg16"}
        ``vgg16`` is the paper's network, ``compact`` a >= 10x faster one for CPUs.
    space : {"hue_chroma", "lab", "lab_marginal"}
        The histograms to predict (see :mod:`napari_colorize.spaces`).
    pretrained : {None, "imagenet"}
        ``None``: random initialisation, no network access.  ``"imagenet"`` (vgg16
        only): torchvision's ImageNet VGG-16 weights, conv1 folded to one channel.
    hidden : int, optional
        h_fc1 units (1024 for vgg16, 128 for compact by default).
    dropout : float
        Dropout after h_fc1 while training.
    """
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of {sorted(BACKBONES)}")
    hidden = hidden or _HIDDEN.get(backbone, 256)
    config = ModelConfig(backbone=backbone, space=space, hidden=hidden, dropout=dropout)
    model = _from_config(config)
    if pretrained is not None:
        if pretrained != "imagenet" or backbone != "vgg16":
            raise ValueError(f"pretrained={pretrained!r} is only available as 'imagenet' for the vgg16 backbone")
        load_imagenet_vgg16(model.backbone)
        config.training["init"] = "torchvision VGG16_Weights.IMAGENET1K_V1"
    return model


def _from_config(config: ModelConfig) -> HypercolumnColorizer:
    model = HypercolumnColorizer(BACKBONES[config.backbone](), get_space(config.space), config.hidden, config.dropout)
    model.config = config
    return model


def _fold_rgb_conv(weight: torch.Tensor, bias: torch.Tensor, mean, std) -> tuple[torch.Tensor, torch.Tensor]:
    """conv1_1 for a gray input g replicated to RGB and normalised per channel.

    ``sum_c W_c * (g - m_c) / s_c + b = (sum_c W_c / s_c) * g + (b - sum W_c m_c / s_c)``:
    the colour filters are averaged (times 3) after rescaling by the ImageNet std.
    """
    m = torch.tensor(mean, dtype=weight.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=weight.dtype).view(1, 3, 1, 1)
    gray_weight = (weight / s).sum(dim=1, keepdim=True)
    gray_bias = bias - (weight * m / s).sum(dim=(1, 2, 3))
    return gray_weight, gray_bias


def vgg16_state_from_torchvision(state: dict[str, torch.Tensor], mean=(0.485, 0.456, 0.406),
                                 std=(0.229, 0.224, 0.225)) -> dict[str, torch.Tensor]:
    """Map a torchvision ``vgg16`` state dict onto :class:`VGG16Backbone`."""
    out = {k: v for k, v in state.items() if k.startswith("features.")}
    out["features.0.weight"], out["features.0.bias"] = _fold_rgb_conv(state["features.0.weight"], state["features.0.bias"], mean, std)
    out["fc6.weight"] = state["classifier.0.weight"].reshape(4096, 512, 7, 7)
    out["fc6.bias"] = state["classifier.0.bias"]
    out["fc7.weight"] = state["classifier.3.weight"].reshape(4096, 4096, 1, 1)
    out["fc7.bias"] = state["classifier.3.bias"]
    return out


def load_imagenet_vgg16(backbone: VGG16Backbone) -> None:
    """Load torchvision's ImageNet VGG-16 weights into ``backbone`` (its weights API).

    Online, torchvision downloads the file once into torch's cache; offline, the file
    must already be there.  Never falls back to random weights.
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


def save_model(model: HypercolumnColorizer, path: str | os.PathLike, **training_info: Any) -> Path:
    """Write ``model`` to a ``.safetensors`` file atomically (temporary file, then rename).

    ``training_info`` is merged into the stored ``training`` metadata.
    """
    from safetensors.torch import save_file

    path = Path(path)
    config: ModelConfig = model.config
    config.training.update(training_info)
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()
               if v.is_floating_point()}
    tensors.update({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if not v.is_floating_point()})
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:  # permissions follow the umask (0644 usually): a model file is not a secret
        save_file(tensors, str(tmp), metadata={METADATA_KEY: config.to_json()})
    return path


def _resolve(name_or_path: str | os.PathLike) -> Path:
    if str(name_or_path) == DEFAULT_MODEL:
        path = Path(str(resources.files("napari_colorize") / "weights" / "default.safetensors"))
        if not path.exists():
            raise FileNotFoundError(f"the default model is missing from the installation ({path}); reinstall napari-colorize")
        return path
    path = Path(name_or_path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"no model file at {path}; pass 'default' or the path of a .safetensors file written by napari-colorize train")
    return path


def read_config(name_or_path: str | os.PathLike) -> ModelConfig:
    """The metadata of a checkpoint, without loading its tensors."""
    path = _resolve(name_or_path)
    text = read_safetensors_metadata(
        path, METADATA_KEY,
        not_safetensors=lambda err: f"{path} is not a safetensors file ({err}); napari-colorize models are .safetensors files",
        no_key=f"{path} has no napari-colorize metadata; it was not written by save_model()/napari-colorize train")
    return ModelConfig.from_json(text)


def load_model(name_or_path: str | os.PathLike = DEFAULT_MODEL, device: str | torch.device = "cpu") -> HypercolumnColorizer:
    """Load a colorizer: ``"default"`` (shipped in the package) or a ``.safetensors`` path.

    The model is returned in evaluation mode.
    """
    from safetensors.torch import load_file

    config = read_config(name_or_path)
    model = _from_config(config)
    state = load_file(str(_resolve(name_or_path)), device="cpu")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"checkpoint does not match a {config.backbone}/{config.space} model: "
                         f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.source = str(name_or_path)
    return model.to(device).eval()
