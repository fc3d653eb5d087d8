"""A table of scores: per-image rows and their mean, as text, Markdown or JSON."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_path


@dataclass
class EvaluationTable:
    """Rows of scores: one per image (or per method in :func:`compare`) and their mean.

    Attributes
    ----------
    rows : list of dict
        ``name`` plus the metric columns: ``psnr``/``psnr_gray`` (dB),
        ``rmse_ab``/``rmse_ab_gray`` (Lab units), ``auc``/``auc_gray`` (in [0, 1]),
        ``colourfulness`` (output), ``colourfulness_truth`` (original image).
    mean : dict
        The mean of every numeric column over ``rows`` (``name`` = "mean"); computed
        when not given, empty for comparison tables.
    info : dict
        Model, method, decoding and data details.
    """

    rows: list[dict[str, Any]]
    mean: dict[str, Any] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mean is None:
            self.mean = _mean_row(self.rows) if self.rows else {}

    def columns(self) -> list[str]:
        cols = ["name"]
        for row in self.rows:
            cols += [k for k in row if k not in cols]
        return cols

    def format(self, per_image: bool = True, floatfmt: str = ".4g") -> str:
        """A plain-text table (per-image rows, then the mean row).

        ``per_image=False`` keeps only the mean row; a comparison table (no mean row)
        always shows its rows.
        """
        cols = self.columns()
        per_image = per_image or not self.mean
        rows = (self.rows if per_image else []) + ([self.mean] if self.mean else [])
        cells = [[_fmt(r.get(c, ""), floatfmt) for c in cols] for r in rows]
        widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(cols)]
        line = lambda values: "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths)))
        out = [line(cols), line(["-" * w for w in widths])]
        out += [line(row) for row in cells[: len(cells) - (1 if self.mean else 0)]]
        if self.mean:
            if per_image and self.rows:
                out.append(line(["-" * w for w in widths]))
            out.append(line(cells[-1]))
        return "\n".join(out)

    def to_markdown(self, per_image: bool = False, floatfmt: str = ".4g") -> str:
        """A Markdown table (for the model card)."""
        cols = self.columns()
        rows = (self.rows if per_image or not self.mean else []) + [self.mean]
        out = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
        out += ["| " + " | ".join(_fmt(r.get(c, ""), floatfmt) for c in cols) + " |" for r in rows if r]
        return "\n".join(out)

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "mean": self.mean, "info": self.info}

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """JSON text of the table; written atomically to ``path`` if given."""
        text = json.dumps(_finite(self.to_dict()), indent=2)
        if path is not None:
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                tmp.write_text(text + "\n", encoding="utf-8")
        return text


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no inf/nan
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _fmt(value: Any, floatfmt: str) -> str:
    return format(value, floatfmt) if isinstance(value, float) else str(value)


def _mean_row(rows: Sequence[dict[str, Any]], name: str = "mean") -> dict[str, Any]:
    keys = [k for k, v in rows[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    out: dict[str, Any] = {"name": name}
    for k in keys:
        values = np.array([r[k] for r in rows], dtype=np.float64)
        # PSNR of a perfect image is inf; the mean over the finite ones is more useful.
        finite = values[np.isfinite(values)]
        out[k] = float(finite.mean()) if finite.size else float("nan")
    return out
