"""Guided colour on the command line: the options ``--reference``, ``--reference-strength``,
``--hints``, ``--hint-range`` and ``--hint-planes`` of ``napari-colorize colorize``.

Everything that does not depend on an input -- reading and checking the reference
images, the hints file and the numbers -- is done once, before any input is planned
and before the output folder is made, so bad guidance fails the whole run with
nothing written.  Whether the hints fit an input (one coordinate per axis, inside the
image) can only be known per input: it is checked right after the input is read,
before anything of it is computed or written, and a hint outside one input fails
that input only, reported like any other bad file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .guidance import DEFAULT_HINT_RANGE, DEFAULT_REFERENCE_STRENGTH, HINT_PLANES

__all__ = ["REFERENCE_MAX_SIDE", "add_guidance_arguments", "check_hints_fit", "guidance_kwargs"]

#: Long side (pixels) a reference is read at.  Only its colour distribution is used
#: (at most 65536 of its pixels are sampled), which an area-reduced copy keeps, while a
#: full-size slide scan would cost gigabytes in float32.
REFERENCE_MAX_SIDE = 4096


def add_guidance_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the guided-colour options to the ``colorize`` parser, in a group of their own."""
    # The parser keeps descriptions as written (RawDescriptionHelpFormatter): lines broken here.
    group = parser.add_argument_group(
        "guided colour", "Guide the colours by reference images and/or colour hints;\n"
        "the lightness of every output stays the input's.")
    group.add_argument("--reference", action="append", metavar="PATH",
                       help="a colour image of similar content (PNG, JPEG, TIFF) whose colours the result takes on; "
                            "repeat for several")
    group.add_argument("--reference-strength", type=float, metavar="FLOAT",
                       help=f"weight of the reference's colours: 0 ignores them (default {DEFAULT_REFERENCE_STRENGTH:g})")
    group.add_argument("--hints", metavar="FILE.csv",
                       help="colour hints: a napari Points CSV (axis-0, axis-1, ... in pixels) with a colour column "
                            "(#rrggbb) or r, g, b columns; see docs/guidance.md")
    group.add_argument("--hint-range", type=float, metavar="PIXELS",
                       help="how far a hint reaches along similar content, in pixels (default: the image's long "
                            f"side, from {DEFAULT_HINT_RANGE[0]:g} to {DEFAULT_HINT_RANGE[1]:g})")
    group.add_argument("--hint-planes", choices=HINT_PLANES, default="own",
                       help="in a stack, a hint colours its own plane (own, the default) or every plane (all; then "
                            "points may have 2 coordinates)")


def guidance_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The engine's guidance keyword arguments from the options, read and checked.

    Returns only the keywords that act: ``{}`` without ``--reference`` and ``--hints``
    (the options that only tune them are then noted as having no effect).

    Raises
    ------
    ValueError
        Naming the option and saying what to fix: an unreadable or gray reference, a
        bad hints file, a strength below 0, a range not above 0.
    """
    from .guidance import check_hint_range, check_reference_strength
    from .io import read_hints_csv

    kwargs: dict[str, Any] = {}
    strength = _checked("--reference-strength", check_reference_strength, args.reference_strength)
    hint_range = _checked("--hint-range", check_hint_range, args.hint_range)
    if args.reference:
        kwargs.update(reference=[_read_reference(path) for path in args.reference], reference_strength=strength)
    elif args.reference_strength is not None:
        _note("--reference-strength has no effect without --reference")
    if args.hints is not None:
        # read_hints_csv's errors name the file and line.
        kwargs.update(hints=read_hints_csv(args.hints), hint_range=hint_range, hint_planes=args.hint_planes)
    elif args.hint_range is not None or args.hint_planes != "own":
        _note("--hint-range and --hint-planes have no effect without --hints")
    return kwargs


def check_hints_fit(kwargs: dict[str, Any], shape: tuple[int, ...], hints_file: str | None) -> None:
    """Check the hints of ``kwargs`` against one input of ``shape``, before it is coloured.

    Raises
    ------
    ValueError
        A hint outside the input, or points with the wrong number of coordinates,
        prefixed with the hints file.
    """
    hints = kwargs.get("hints")
    if hints is None:
        return
    from .guidance import check_hints

    planes = kwargs["hint_planes"]
    try:
        check_hints(hints, tuple(shape), planes)
    except ValueError as err:
        # 2D hints (the usual napari layer over one plane) on a stack: say how to use them.
        tip = (" (or pass --hint-planes all to colour every plane of the stack with 2D hints)"
               if planes == "own" and len(shape) > 2 and np.shape(hints[0])[1] == 2 else "")
        raise ValueError(f"--hints {hints_file}: {err}{tip}") from None


def _checked(option: str, check, value):
    """``check(value)``, its error prefixed with the option."""
    try:
        return check(value)
    except ValueError as err:
        raise ValueError(f"{option}: {err}") from None


def _note(text: str) -> None:
    print(f"note: {text}", file=sys.stderr)


def _read_reference(path: str) -> np.ndarray:
    """One reference file as uint8 RGB (RGBA if it has transparency), refused here (not per
    input) if unreadable or gray."""
    from PIL import Image

    from .guidance import check_references
    from .io import read_rgb
    from .io.colour import read_rgba

    if Path(path).is_dir():
        raise ValueError(f"--reference {path} is a folder; give a colour image file (PNG, JPEG or TIFF) in it")
    if not Path(path).is_file():
        raise ValueError(f"--reference {path}: no such file; give a colour image file (PNG, JPEG or TIFF)")
    if Path(path).stat().st_size == 0:
        raise ValueError(f"--reference {path} is empty (0 bytes): it was not written or copied completely; copy it "
                         "again or give another colour image")
    try:
        rgb = read_rgba(path, max_side=REFERENCE_MAX_SIDE)  # transparent pixels give no colour, as in the API
        rgb = read_rgb(path, max_side=REFERENCE_MAX_SIDE) if rgb is None else rgb
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise ValueError(f"--reference {path}: cannot read it as an image ({err}); give a colour PNG, JPEG or "
                         "TIFF file") from None
    _checked(f"--reference {path}", check_references, rgb)
    return rgb
