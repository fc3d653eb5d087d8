"""Guided colour: a reference image's palette and colour hints, applied to the histograms.

The network predicts a colour *histogram* per grid cell; guidance is a Bayesian update
of those histograms before they are decoded (Larsson et al. 2016 decode the same
histograms without it):

* a **reference** image (or several) gives a colour distribution; the prior that makes
  the image-wide mean of the updated histograms match it is fitted once per image, on
  a small overview of the whole image or stack (:mod:`.reference`), and applied to
  every tile alike, so tiles and planes agree;
* a **hint** (a point and a colour) multiplies the histograms near it by a likelihood
  peaked at its colour, weighted by an influence field that spreads along similar,
  connected content and stops at edges (a geodesic distance on the gray image,
  :mod:`.hints`); the decoded colour is then drawn to the hint's exact colour by the
  same weight, so the hint's colour is reproduced at its point.

Fields and the prior are computed once, in global coordinates, and each tile takes its
part (:class:`.apply.Guidance`), which makes guided tiling seam-free by construction
and leaves tiles far from every hint untouched.
"""

from .apply import Guidance, HintField, TileGuide, guide_colour, guide_histograms
from .hints import (
                    DEFAULT_HINT_RANGE,
                    HINT_PLANES,
                    Hints,
                    check_hint_planes,
                    check_hint_range,
                    check_hints,
                    gray_cells,
                    hint_cells,
                    influence_field,
)
from .reference import (
                    DEFAULT_REFERENCE_STRENGTH,
                    check_reference_strength,
                    check_references,
                    fit_log_prior,
                    reference_histograms,
)

__all__ = [
                    "DEFAULT_HINT_RANGE",
                    "DEFAULT_REFERENCE_STRENGTH",
                    "HINT_PLANES",
                    "Guidance",
                    "HintField",
                    "Hints",
                    "TileGuide",
                    "gray_cells",
                    "check_hint_planes",
                    "check_hint_range",
                    "check_hints",
                    "check_reference_strength",
                    "check_references",
                    "fit_log_prior",
                    "guide_colour",
                    "guide_histograms",
                    "hint_cells",
                    "influence_field",
                    "reference_histograms",
]
