"""Sample data for napari (File > Open Sample > napari-colorize).

Each function returns napari layer data tuples ``[(data, kwargs, "image")]`` read from
the small files shipped in ``napari_colorize/data`` (made by ``scripts/make_samples.py``
from public-domain / CC0 scikit-image images; provenance in ``docs/plugin.md``).
Nothing is downloaded.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import numpy as np

__all__ = ["photograph", "archival_scan", "microscopy_stack", "SAMPLES"]

#: Physical sampling of the microscopy stack in micrometres (z, y, x).
STACK_SPACING_UM = (0.5, 0.214, 0.214)

LayerDataTuple = tuple[np.ndarray, dict[str, Any], str]


def _read(name: str) -> np.ndarray:
    """A shipped sample file as an array (a fresh copy each call)."""
    ref = resources.files("napari_colorize") / "data" / name
    with resources.as_file(ref) as path:
        if name.endswith(".tif"):
            import tifffile

            return tifffile.imread(path)
        import imageio.v3 as iio

        return np.asarray(iio.imread(path))


def photograph() -> list[LayerDataTuple]:
    """A grayscale photograph: the cameraman (scikit-image, CC0), 512 x 512 uint8."""
    return [(_read("photograph.png"), {"name": "photograph"}, "image")]


def archival_scan() -> list[LayerDataTuple]:
    """An archival-style scan: a faded, grainy, scratched print on its paper, 464 x 664 uint8."""
    return [(_read("archival_scan.png"), {"name": "archival scan"}, "image")]


def microscopy_stack() -> list[LayerDataTuple]:
    """A small focal series of a cell, (Z, Y, X) = (10, 256, 256) uint16 camera counts.

    The layer carries the physical pixel size (micrometres) and axis labels, and
    contrast limits spanning the data (the counts use about 1,500 of uint16's 65,535).
    """
    stack = _read("microscopy_stack.tif")
    kwargs = {
        "name": "microscopy stack",
        "scale": STACK_SPACING_UM,
        "axis_labels": ("z", "y", "x"),
        "units": ("um", "um", "um"),
        "contrast_limits": (float(stack.min()), float(stack.max())),
    }
    return [(stack, kwargs, "image")]


#: Sample key (as in napari.yaml) -> function.
SAMPLES = {"photograph": photograph, "archival_scan": archival_scan, "microscopy_stack": microscopy_stack}
