"""Building, saving and loading colorizers (safetensors weights + JSON metadata).

A checkpoint is one ``.safetensors`` file: the tensors, plus a JSON document in the
file's metadata header under the key ``napari_colorize`` that says how to rebuild the
network (backbone, colour space, bins, input convention, version) and how it was
trained.  Loading never unpickles anything, checks the metadata against its schema
(:mod:`.metadata`) before building anything, and checks the tensors' names and shapes
against the network the metadata describes before reading them.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from .._safetensors import has_safetensors_key, is_damaged_file_of, read_safetensors_metadata, write_safetensors
from ..spaces import SPACES, get_space
from .backbones import BACKBONES, get_backbone
from .hypercolumn import HypercolumnColorizer
from .imagenet import load_imagenet_vgg16, vgg16_state_from_torchvision
from .metadata import FORMAT_VERSION, METADATA_KEY, TRAINING_STATE_KEY, check_metadata, parse_metadata

__all__ = ["ModelConfig", "build_model", "save_model", "load_model", "read_config", "resolve_model_path",
           "is_model_file", "is_default_model", "load_imagenet_vgg16", "vgg16_state_from_torchvision", "DEFAULT_MODEL",
           "FORMAT_VERSION", "METADATA_KEY"]

INPUT_CONVENTION = "gray = (R + G + B) / 3, float in [0, 1], shape (B, 1, H, W)"
#: Name of the model shipped inside the package.
DEFAULT_MODEL = "default"


@dataclass
class ModelConfig:
    """Everything needed to rebuild a colorizer; stored as JSON beside its weights."""

    backbone: str = "compact"
    space: str = "hue_chroma"
    hidden: int = 128
    dropout: float = 0.0
    #: Side of the whole-image overview of the image-level context (0: no context).
    context: int = 0
    #: Probability of dropping an image's whole context vector while training.
    context_dropout: float = 0.0
    input_convention: str = INPUT_CONVENTION
    format_version: int = FORMAT_VERSION
    #: Decoding defaults learnt on validation data (e.g. calibrated fading); checked
    #: against :data:`.metadata.DECODING_FIELDS`, other keys kept as notes.
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
    def from_json(cls, text: str, source: str = "model metadata") -> ModelConfig:
        """Parse and check a metadata document (:func:`.metadata.parse_metadata`).

        ``source`` (usually the file's path) starts every error message.
        """
        doc = parse_metadata(text, source)
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in doc.items() if k in known})

    def check(self, source: str = "model settings") -> ModelConfig:
        """Check these settings against the metadata schema before building a network from them."""
        check_metadata(asdict(self), source)
        return self


def build_model(backbone: str = "compact", space: str = "hue_chroma", pretrained: str | None = None,
                hidden: int | None = None, dropout: float = 0.0, context: int = 0,
                context_dropout: float = 0.0) -> HypercolumnColorizer:
    """A new colorizer.

    Parameters
    ----------
    backbone : str
        A name of :data:`~napari_colorize.model.BACKBONES`: ``vgg16`` is the paper's
        network, ``compact`` a >= 10x faster one for CPUs.
    space : str
        A name of :data:`~napari_colorize.spaces.SPACES` (``hue_chroma``, ``lab``,
        ``lab_marginal``): the histograms to predict.
    pretrained : str or None
        ``None``: random initialisation, no network access.  Otherwise one of the
        backbone's named initialisations (``"imagenet"`` for vgg16: torchvision's
        ImageNet VGG-16 weights, conv1 folded to one channel).
    hidden : int, optional
        h_fc1 units (the backbone's default: 1024 for vgg16, 128 for compact).
    dropout : float
        Dropout after h_fc1 while training.
    context : int
        Side of the whole-image overview for an image-level context vector; 0: none
        (:class:`~napari_colorize.model.HypercolumnColorizer`).
    context_dropout : float
        While training, the probability of dropping an image's whole context vector.
    """
    spec = get_backbone(backbone)
    get_space(space)
    loader = _pretrained_loader(backbone, pretrained)
    config = ModelConfig(backbone=backbone, space=space, hidden=spec.hidden if hidden is None else hidden,
                         dropout=dropout, context=context, context_dropout=context_dropout).check("build_model()")
    model = _from_config(config)
    if loader is not None:
        config.training["init"] = loader(model.backbone)
    return model


def _pretrained_loader(backbone: str, pretrained: str | None):
    """The backbone's loader for ``pretrained``; an error saying which backbones offer it otherwise."""
    if pretrained is None:
        return None
    loaders = get_backbone(backbone).pretrained
    if pretrained in loaders:
        return loaders[pretrained]
    offered = [f"{name!r} for {spec.name}" for spec in BACKBONES.values() for name in spec.pretrained]
    raise ValueError(f"pretrained={pretrained!r} is not available for the {backbone} backbone; "
                     f"available: {', '.join(offered) or 'none'} (or None for a random start)")


def _from_config(config: ModelConfig) -> HypercolumnColorizer:
    model = HypercolumnColorizer(get_backbone(config.backbone).build(), get_space(config.space), config.hidden,
                                 config.dropout, config.context, config.context_dropout)
    model.config = config
    return model


def save_model(model: HypercolumnColorizer, path: str | os.PathLike, **training_info: Any) -> Path:
    """Write ``model`` to a ``.safetensors`` file atomically (temporary file, then rename).

    ``training_info`` is merged into the stored ``training`` metadata.
    """
    path = Path(path)
    config: ModelConfig = model.config
    config.training.update(training_info)
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()
               if v.is_floating_point()}
    tensors.update({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if not v.is_floating_point()})
    path.parent.mkdir(parents=True, exist_ok=True)
    write_safetensors(path, tensors, {METADATA_KEY: config.to_json()})
    return path


def resolve_model_path(name_or_path: str | os.PathLike) -> Path:
    """The file of a model: ``"default"`` (shipped in the package) or an existing file path.

    Raises
    ------
    FileNotFoundError
        If the file does not exist, or the shipped model is missing.
    ValueError
        If the path is a folder.
    """
    if not str(name_or_path).strip():  # Path("") is ".", "a folder"
        raise ValueError("the model is empty; pass 'default' or the path of a .safetensors file written by "
                         "napari-colorize train")
    if str(name_or_path) == DEFAULT_MODEL:
        path = _default_model_file()
        if not path.exists():
            raise FileNotFoundError(f"the default model is missing from the installation ({path}); reinstall napari-colorize")
        return path
    path = Path(name_or_path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"no model file at {path}; pass 'default' or the path of a .safetensors file written by napari-colorize train")
    if path.is_dir():
        raise ValueError(f"{path} is a folder; pass 'default' or the path of a .safetensors model file inside it")
    return path


def _default_model_file() -> Path:
    """Where the shipped model lives in this installation (whether or not it is there)."""
    return Path(str(resources.files("napari_colorize") / "weights" / "default.safetensors"))


def is_default_model(path: str | os.PathLike) -> bool:
    """Whether ``path`` is the installed default model's file: the same path once links are
    resolved, or the same file through a hard link.  Front ends that write models never
    write there: replacing it would change what ``"default"`` means for every user of
    this installation."""
    shipped, target = _default_model_file(), Path(path).expanduser()
    if target.resolve() == shipped.resolve():
        return True
    try:
        return os.path.samefile(target, shipped)
    except OSError:  # either file missing: not the same file
        return False


def _read_metadata_text(path: Path) -> str:
    try:
        return read_safetensors_metadata(
            path, METADATA_KEY,
            not_safetensors=lambda err: f"{path} is not a safetensors file ({err}); napari-colorize models are "
                                        ".safetensors files",
            no_key=f"{path} has no napari-colorize metadata; it was not written by save_model()/napari-colorize train")
    except ValueError:
        if has_safetensors_key(path, TRAINING_STATE_KEY):  # the run's other file, easily taken for its model
            raise ValueError(_checkpoint_message(path)) from None
        if is_damaged_file_of(path, METADATA_KEY):  # ours, cut short: not "not a safetensors file"
            raise ValueError(f"{path} is a damaged napari-colorize model (cut short or corrupted); copy it again "
                             "from where it came, or train it again") from None
        raise


def _checkpoint_message(path: Path) -> str:
    model = path.name[:-len(".ckpt.safetensors")] + ".safetensors" if path.name.endswith(".ckpt.safetensors") else None
    which = f"its model, {path.with_name(model)}" if model else "the model file it wrote (its -o)"
    return (f"{path} is a training checkpoint (the resumable state of a `napari-colorize train` run), not a model; "
            f"pass {which}, or continue the run with `napari-colorize train ... --resume`")


def read_config(name_or_path: str | os.PathLike) -> ModelConfig:
    """The checked metadata of a checkpoint, without loading its tensors.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        Not a safetensors file, no napari-colorize metadata, or metadata that fails the
        schema (:class:`~.metadata.ModelMetadataError`, naming the file and the field).
    """
    path = resolve_model_path(name_or_path)
    return ModelConfig.from_json(_read_metadata_text(path), str(path))


def incomplete_note(config: ModelConfig, name: str | os.PathLike) -> str | None:
    """A line for a model whose training run was stopped before its end (the file is
    rewritten at every checkpoint), or None: results from it may be much poorer."""
    training = config.training
    if not training or training.get("complete", True):
        return None
    from .._locks import live_writer

    step = training.get("steps", "?")
    recorded = training.get("output")
    run_output = recorded if isinstance(recorded, str) and recorded else _run_output(training.get("command"))
    if run_output is not None and _is_a_copy(Path(run_output), name):
        return (f"note: {name} is a copy of an unfinished training run ({run_output}, saved at step {step}): its "
                "colours may be poorer than the finished model's; finish that run with its train command and "
                "--resume, then make the copy again")
    pid = live_writer(resolve_model_path(name)) if str(name) != DEFAULT_MODEL else None
    if pid is not None:  # its run goes on: --resume would be refused
        return (f"note: {name} is being trained now (pid {pid}; these are the weights of step {step}): its colours "
                "may be poorer than the finished model's")
    return (f"note: {name} is an unfinished training run (saved at step {step}): its colours may "
            "be poorer than the finished model's; finish it with the same train command and --resume")


def _is_a_copy(run_output: Path, name: str | os.PathLike) -> bool:
    """Whether the model file ``name`` is another file than its run's ``-o`` (a calibrated copy):
    by the files themselves where the run's still exists (a link to it is the run), else by
    file name (the run's folder was moved)."""
    if str(name) == DEFAULT_MODEL:
        return False
    try:
        path = resolve_model_path(name)
    except (OSError, ValueError):
        path = Path(name)
    if run_output.exists():
        return os.path.realpath(run_output) != os.path.realpath(path)
    return run_output.name != Path(path).name


def _run_output(command: Any) -> str | None:
    """The ``-o`` of a recorded ``napari-colorize train`` command line, or None."""
    import shlex

    try:
        words = shlex.split(command) if isinstance(command, str) else []
    except ValueError:
        return None
    for i, word in enumerate(words[:-1]):
        if word in ("-o", "--output"):
            return words[i + 1]
    return next((w.split("=", 1)[1] for w in words if w.startswith("--output=")), None)


def is_model_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a safetensors file carrying this package's model metadata key.

    Only the header is read; the metadata itself is not checked (an edited model of
    ours is still ours).
    """
    return has_safetensors_key(path, METADATA_KEY)


def _tensor_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor in a safetensors file, read from its header only."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 -- safe_open handles are not iterable


def _state_shapes(module: torch.nn.Module, prefix: str = "") -> dict[str, tuple[int, ...]]:
    return {f"{prefix}{k}": tuple(v.shape) for k, v in module.state_dict().items()}


def _backbone_shapes(name: str) -> dict[str, tuple[int, ...]]:
    # Built for real (on the CPU): only reached for a file already refused, to say what it holds.
    return _state_shapes(get_backbone(name).build(), "backbone.")


def _mismatch_hints(config: ModelConfig, found: dict[str, tuple[int, ...]]) -> list[str]:
    """What the file's tensors look like where they differ from the metadata."""
    hints = []
    found_backbone = {k: v for k, v in found.items() if k.startswith("backbone.")}
    if found_backbone != _backbone_shapes(config.backbone):
        looks = [name for name in BACKBONES if _backbone_shapes(name) == found_backbone]
        hints.append(f"they look like {looks[0]!r} weights" if looks else "their backbone is none of " + ", ".join(BACKBONES))
    width = found.get("projection_bias")
    if width is not None and width != (config.hidden,):
        hints.append(f"their hidden width is {width[0]}, the metadata says {config.hidden}")
    heads = {k.split(".")[1]: v[0] for k, v in found.items() if k.startswith("heads.") and v}
    if heads != dict(get_space(config.space).heads):
        looks = [name for name, space in SPACES.items() if dict(space.heads) == heads]
        hints.append(f"their heads are those of a {looks[0]!r} model" if looks else
                     f"their heads {sorted(heads)} fit no colour space")
    return hints


def _check_tensors(path: Path, config: ModelConfig, model: HypercolumnColorizer) -> None:
    """Refuse a file whose tensors do not fit ``model``, the network its metadata names, before loading them."""
    found, expected = _tensor_shapes(path), _state_shapes(model)
    if found == expected:
        return
    hints = _mismatch_hints(config, found)
    if not hints:
        missing = sorted(set(expected) - set(found))[:3]
        unexpected = sorted(set(found) - set(expected))[:3]
        reshaped = [f"{k} {found[k]} != {expected[k]}" for k in sorted(set(found) & set(expected))
                    if found[k] != expected[k]][:3]
        hints = [f"missing {missing}" if missing else "", f"unexpected {unexpected}" if unexpected else "",
                 f"wrong shapes {reshaped}" if reshaped else ""]
    raise ValueError(f"the weights in {path} do not match the {config.backbone}/{config.space} model "
                     f"(backbone {config.backbone!r}, hidden {config.hidden}) named in its metadata: "
                     f"{'; '.join(h for h in hints if h)}. The metadata was edited or the file is damaged: "
                     "use an unedited copy of the model, or correct the metadata to match the weights")


def load_model(name_or_path: str | os.PathLike = DEFAULT_MODEL, device: str | torch.device = "cpu") -> HypercolumnColorizer:
    """Load a colorizer: ``"default"`` (shipped in the package) or a ``.safetensors`` path.

    The metadata is checked before the network is built, and the tensors' names and
    shapes (from the file's header) before any tensor is read.  The model is returned in
    evaluation mode.
    """
    from safetensors.torch import load_file

    path = resolve_model_path(name_or_path)
    config = ModelConfig.from_json(_read_metadata_text(path), str(path))
    model = _from_config(config)
    _check_tensors(path, config, model)
    model.load_state_dict(load_file(str(path), device="cpu"), strict=True)
    model.source = str(name_or_path)
    return model.to(device).eval()
