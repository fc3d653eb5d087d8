"""The registry of what a colorization produces: one :class:`Output` per map.

Every front end reads this one table: the engine lays the maps out as channels of one
stacked array in this order, the zarr writer names its arrays from it, the CLI its
files and ``--outputs`` choices, the napari layers their names and colormaps, and
:class:`ColorizeResult` its attributes.  Adding an output map is one entry here
(:func:`register_output`) plus its computation from the histograms in
:data:`napari_colorize.inference.MAP_FUNCTIONS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Output", "OUTPUTS", "ColorizeResult", "register_output", "unregister_output", "get_output",
           "output_keys", "output_name_endings", "channel_slices", "n_channels", "check_output_keys"]


@dataclass(frozen=True)
class Output:
    """One output map and its names in every front end.

    Attributes
    ----------
    name : str
        Python name: the :class:`ColorizeResult` attribute (``"chroma_confidence"``).
    key : str
        Short name used by ``--outputs``, the zarr writer and ``colorize_to_zarr(outputs=...)``.
    channels : int
        3 for the colour image, 1 for a scalar map in [0, 1].
    zarr_path : str
        Path of its full-resolution array in an output store (pyramid levels are siblings).
    suffix : str
        File-name suffix of the CLI's output files (``photo_confidence.png``).
    layer_name : str
        napari layer name, after the source layer's name.
    colormap : str or None
        napari colormap of a scalar map (None for RGB).
    description : str
        One line for help texts.
    """

    name: str
    key: str
    channels: int
    zarr_path: str
    suffix: str
    layer_name: str
    colormap: str | None
    description: str

    @property
    def is_rgb(self) -> bool:
        return self.channels == 3


#: The outputs, in the order of the channels of the engine's stacked result.  The colour
#: image comes first: its channels 0-2 are R, G, B.
OUTPUTS: list[Output] = [
    Output("rgb", "rgb", 3, "0", "colorized", "colorized", None,
           "the colour image, lightness equal to the input"),
    Output("chroma_confidence", "confidence", 1, "confidence/0", "confidence", "chroma confidence", "viridis",
           "1 - normalised entropy of the chroma histogram: 1 where the model is sure how colourful"),
    Output("hue_entropy", "entropy", 1, "entropy/0", "entropy", "hue entropy", "magma",
           "normalised entropy of the hue histogram: 1 where any hue is equally likely"),
]


def register_output(output: Output) -> None:
    """Add an output map (its computation goes in ``inference.MAP_FUNCTIONS[output.name]``)."""
    if any(o.name == output.name or o.key == output.key for o in OUTPUTS):
        raise ValueError(f"an output named {output.name!r} or keyed {output.key!r} is already registered")
    if output.channels != 1:
        raise ValueError("added outputs are scalar maps (channels=1); the colour image is the only 3-channel output")
    OUTPUTS.append(output)


def unregister_output(name: str) -> None:
    """Remove an output added with :func:`register_output` (the built-in three stay)."""
    if name in ("rgb", "chroma_confidence", "hue_entropy"):
        raise ValueError(f"{name!r} is a built-in output")
    OUTPUTS[:] = [o for o in OUTPUTS if o.name != name]


def get_output(name_or_key: str) -> Output:
    """The output with this name or key; a clear error listing the choices otherwise."""
    for o in OUTPUTS:
        if name_or_key in (o.name, o.key):
            return o
    raise ValueError(f"unknown output {name_or_key!r}; choose from {', '.join(output_keys())}")


def output_keys() -> tuple[str, ...]:
    return tuple(o.key for o in OUTPUTS)


def output_name_endings(extensions) -> tuple[str, ...]:
    """The endings of the names the CLI gives its output files, for each file extension
    (``_colorized.png``, ``_entropy.tif`` ...): how earlier results are told from inputs."""
    return tuple(f"_{o.suffix}{extension}" for o in OUTPUTS for extension in extensions)


def check_output_keys(keys) -> tuple[str, ...]:
    """Validated, de-duplicated output keys (names accepted too), in the caller's order; one
    key alone may be given as a string (not read letter by letter)."""
    keys = (keys,) if isinstance(keys, str) else keys
    keys = tuple(dict.fromkeys(get_output(k).key for k in keys))
    if not keys:
        raise ValueError(f"choose at least one output of {', '.join(output_keys())}")
    return keys


def channel_slices() -> dict[str, slice]:
    """Output name -> its channels in the stacked ``(..., Y, X, C)`` result."""
    out, start = {}, 0
    for o in OUTPUTS:
        out[o.name] = slice(start, start + o.channels) if o.is_rgb else start
        start += o.channels
    return out


def n_channels() -> int:
    return sum(o.channels for o in OUTPUTS)


class ColorizeResult:
    """What :func:`napari_colorize.colorize` returns: one array per output, plus ``info``.

    Attributes are the output names of :data:`OUTPUTS`: ``rgb`` ``(..., Y, X, 3)``
    float32 in [0, 1] with ``rgb_to_gray(rgb)`` equal to the (normalised) input;
    ``chroma_confidence`` and ``hue_entropy`` ``(..., Y, X)`` float32 in [0, 1]; and
    any registered map.  An output that was not written (zarr) is None.  ``info`` holds
    the model, method, device and tiling used.
    """

    def __init__(self, info: dict | None = None, **maps: Any) -> None:
        unknown = set(maps) - {o.name for o in OUTPUTS}
        if unknown:
            raise TypeError(f"unknown outputs {sorted(unknown)}")
        self.maps: dict[str, Any] = {o.name: maps.get(o.name) for o in OUTPUTS}
        self.info: dict = dict(info or {})

    @classmethod
    def from_stacked(cls, stacked: Any, info: dict | None = None) -> ColorizeResult:
        """Split a stacked ``(..., Y, X, C)`` array (numpy or dask) into its outputs (views)."""
        return cls(info, **{name: stacked[..., sl] for name, sl in channel_slices().items()})

    def __getattr__(self, name: str) -> Any:
        maps = self.__dict__.get("maps", {})
        if name in maps:
            return maps[name]
        raise AttributeError(f"ColorizeResult has no output {name!r}; outputs: {', '.join(maps)}")

    def __repr__(self) -> str:
        def shape(value: Any) -> Any:  # a list of levels (open_zarr_levels): each level's shape
            return [getattr(v, "shape", None) for v in value] if isinstance(value, list) else getattr(value, "shape", None)

        shapes = {k: shape(v) for k, v in self.maps.items()}
        return f"ColorizeResult({shapes})"
