"""Sample data for napari (File > Open Sample > napari-colorize).

Each function returns napari layer data tuples ``[(data, kwargs, "image"), ...]`` read from
the small files shipped in ``napari_colorize/data`` (made by ``scripts/make_samples.py``
from public-domain / CC0 scikit-image images; provenance in ``docs/plugin.md``).
Nothing is downloaded.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import numpy as np

__all__ = ["SAMPLES", "archival_scan", "ihc_slide", "microscopy_stack", "photograph"]

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


def ihc_slide() -> list[LayerDataTuple]:
    """An immunohistochemistry slide in gray and a colour slide of the same stain.

    Two layers, each 512 x 256 uint8, made from scikit-image's IHC image (colonic
    glands, DAB brown and hematoxylin blue): "IHC slide (gray)", its right half in
    gray, and "IHC reference (colour)", its left half in RGB, to pass as the
    reference of guided colouring.  The gray slide is placed 256 pixels to the right so
    the two halves sit side by side as on the original slide (and the colorized layers,
    which take the input's placement, land on top of the gray one).
    """
    gray = _read("ihc_slide_gray.png")
    reference = _read("ihc_reference.png")
    return [(gray, {"name": "IHC slide (gray)", "translate": (0.0, float(reference.shape[1]))}, "image"),
            (reference, {"name": "IHC reference (colour)", "rgb": True}, "image")]


#: Sample key (as in napari.yaml) -> function.
SAMPLES = {"photograph": photograph, "archival_scan": archival_scan, "microscopy_stack": microscopy_stack,
           "ihc_slide": ihc_slide}
