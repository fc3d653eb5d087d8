"""A table of scores: per-image rows, group summaries and their mean, as text, Markdown or JSON."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_path
from .scoring import NEUTRAL_COLOURFULNESS

#: Columns kept in JSON but not shown in text and Markdown tables.
_HIDDEN = ("path", "group", "variant")
#: Summary columns shown right after another column (else at the end).
_AFTER = {"images": "name", "d_psnr": "psnr_gray", "d_auc": "auc_gray", "colourfulness_ratio": "colourfulness_truth"}


@dataclass
class EvaluationTable:
    """Rows of scores: one per image (or per method in :func:`compare`) and their mean.

    Attributes
    ----------
    rows : list of dict
        ``name`` (and ``path`` for files) plus the metric columns: ``psnr``/``psnr_gray``
        (dB), ``rmse_ab``/``rmse_ab_gray`` (Lab units), ``auc``/``auc_gray`` (in [0, 1]),
        ``colourfulness`` (output), ``colourfulness_truth`` (original image).
    mean : dict
        The summary of ``rows`` (:func:`summary_row`, ``name`` = "mean"): the mean of
        every numeric column, ``images``, ``d_psnr``/``d_auc`` (the mean gain over
        gray), ``colourfulness_ratio`` (mean output / mean truth colourfulness), and
        the near-neutral check ``neutral`` / ``neutral_ratio``.  Computed when not
        given; empty for comparison tables.
    info : dict
        Model, method, decoding and data details (``group_by`` when grouped).
    groups : list of dict or None
        One summary row per group (:meth:`grouped`), with ``group`` (and ``variant``
        in comparisons); None when not grouped.
    """

    rows: list[dict[str, Any]]
    mean: dict[str, Any] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    groups: list[dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        if self.mean is None:
            self.mean = summary_row(self.rows) if self.rows else {}

    def grouped(self, key: Callable[[dict[str, Any]], str], label: str | None = None) -> EvaluationTable:
        """The same table with one summary row per group of rows (sorted by group name).

        Parameters
        ----------
        key : callable
            ``row -> group name``, e.g. ``lambda r: Path(r["path"]).parent.name`` or
            :func:`napari_colorize.evaluate.groups.group_key` (``--group-by``).
        label : str, optional
            What the rows are grouped by (``info["group_by"]``).

        Returns
        -------
        EvaluationTable
            ``rows`` and ``mean`` (the pooled mean) unchanged, ``groups`` set: each a
            :func:`summary_row` of its rows, with ``name`` and ``group`` = the group.
        """
        members: dict[str, list[dict[str, Any]]] = {}
        for row in self.rows:
            members.setdefault(str(key(row)), []).append(row)
        groups = [summary_row(rows, name) | {"group": name} for name, rows in sorted(members.items())]
        info = dict(self.info) | ({"group_by": label} if label is not None else {})
        return EvaluationTable(list(self.rows), mean=dict(self.mean or {}), info=info, groups=groups)

    def columns(self) -> list[str]:
        """Shown columns: those of the rows in order, then summary columns (``path``,
        ``group`` and ``variant`` are in JSON only)."""
        cols = ["name"]
        for row in self.rows + (self.groups or []) + [self.mean or {}]:
            cols += [k for k in row if k not in cols and k not in _HIDDEN]
        for k, anchor in _AFTER.items():
            if k in cols and anchor in cols:
                cols.remove(k)
                cols.insert(cols.index(anchor) + 1, k)
        return cols

    def _shown(self, per_image: bool) -> list[list[dict[str, Any]]]:
        """Blocks of rows to show: per-image rows, group rows, the mean row.  A comparison's
        rows are each variant's pooled means (it has no mean row): they follow its groups."""
        if not self.mean:
            return [b for b in (self.groups or [], self.rows) if b]
        blocks = [self.rows if per_image else [], self.groups or [], [self.mean]]
        return [b for b in blocks if b]

    def format(self, per_image: bool = True, floatfmt: str = ".4g") -> str:
        """A plain-text table: per-image rows, group rows (if grouped), then the mean row.

        ``per_image=False`` keeps only the group and mean rows; a comparison table (no
        mean row) always shows its rows (each variant's pooled means), after its groups.
        """
        cols = self.columns()
        blocks = [[[_fmt(r.get(c, ""), floatfmt) for c in cols] for r in block] for block in self._shown(per_image)]
        cells = [row for block in blocks for row in block]
        widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(cols)]

        def line(values):
            return "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths))).rstrip()

        rule = line(["-" * w for w in widths])
        out = [line(cols)]
        for block in blocks:
            out.append(rule)
            out += [line(row) for row in block]
        if not blocks:
            out.append(rule)
        return "\n".join(out)

    def to_markdown(self, per_image: bool = False, floatfmt: str = ".4g") -> str:
        """A Markdown table (for the model card): group rows (if grouped) and the mean row,
        or every row if ``per_image`` or there is no mean row."""
        cols = self.columns()
        rows = [r for block in self._shown(per_image) for r in block]
        out = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
        out += ["| " + " | ".join(_fmt(r.get(c, ""), floatfmt) for c in cols) + " |" for r in rows if r]
        return "\n".join(out)

    def to_dict(self) -> dict[str, Any]:
        out = {"rows": self.rows, "mean": self.mean, "info": self.info}
        return out | ({"groups": self.groups} if self.groups is not None else {})

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
    if value is None:
        return "-"
    return format(value, floatfmt) if isinstance(value, float) else str(value)


def _mean_row(rows: Sequence[dict[str, Any]], name: str = "mean") -> dict[str, Any]:
    keys = [k for k, v in rows[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    out: dict[str, Any] = {"name": name}
    for k in keys:
        values = np.array([r[k] for r in rows if r.get(k) is not None], dtype=np.float64)
        # PSNR of a perfect image is inf; the mean over the finite ones is more useful.
        finite = values[np.isfinite(values)]
        out[k] = float(finite.mean()) if finite.size else float("nan")
    return out


def summary_row(rows: Sequence[dict[str, Any]], name: str = "mean") -> dict[str, Any]:
    """The mean of every numeric column of ``rows`` (per-image scores), and summaries.

    Beside the means (:func:`_mean_row`): ``images`` (the number of rows); where the
    columns exist, ``d_psnr`` = psnr - psnr_gray and ``d_auc`` = auc - auc_gray (of the
    means, so the mean gain over gray), ``colourfulness_ratio`` = mean colourfulness /
    mean colourfulness_truth, ``neutral`` = how many truths are near-neutral
    (colourfulness below :data:`~napari_colorize.evaluate.scoring.NEUTRAL_COLOURFULNESS`)
    and ``neutral_ratio`` = the mean per-image output / truth colourfulness over those
    (None if there are none).
    """
    out = _mean_row(rows, name)
    extra: dict[str, Any] = {"images": len(rows)}
    if "psnr" in out and "psnr_gray" in out:
        extra["d_psnr"] = out["psnr"] - out["psnr_gray"]
    if "auc" in out and "auc_gray" in out:
        extra["d_auc"] = out["auc"] - out["auc_gray"]
    if "colourfulness" in out and "colourfulness_truth" in out:
        extra["colourfulness_ratio"] = _ratio(out["colourfulness"], out["colourfulness_truth"])
        neutral = [r for r in rows if r.get("colourfulness_truth", np.inf) < NEUTRAL_COLOURFULNESS]
        extra["neutral"] = len(neutral)
        extra["neutral_ratio"] = (float(np.mean([_ratio(r["colourfulness"], r["colourfulness_truth"])
                                                 for r in neutral])) if neutral else None)
    return out | extra


def _ratio(output: float, truth: float) -> float:
    if truth > 0:
        return float(output / truth)
    return 1.0 if output == 0 else float("inf")
