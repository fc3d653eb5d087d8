"""Plot training curves from ``napari-colorize train`` logs (JSON lines) to a PNG.

Top: training loss (the running mean over 50 steps, ``loss_mean50``) and held-out loss
per step, the best held-out step marked (the last ``best`` event, else the lowest
held-out loss).  Bottom: held-out AuC beside the gray baseline's (dashed).

Each LOG is a ``MODEL.log.jsonl`` or the model itself (``MODEL.safetensors`` ->
``MODEL.log.jsonl`` beside it).  Each run writes a ``start`` event at its first step: 0
for a new run, the checkpoint's step for a resumed one.  So a log that holds several runs
(``train`` replaces an earlier run's log only with ``--force``) plots only the last, and a
resumed run plots whole, its killed part's records past the resumed step dropped (the
resumption writes those steps again).  Needs matplotlib (not a dependency of napari-colorize).

Usage:
  python scripts/plot_training.py mine.log.jsonl -o docs/images/training-curves.png
  python scripts/plot_training.py a.safetensors b.safetensors --label "lr 1e-3" --label "lr 3e-4" -o cmp.png
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class TrainingLog:
    """What one log holds, sorted by step: training loss, held-out scores, the best step."""

    path: Path
    steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    val: list[dict] = field(default_factory=list)
    best_step: int | None = None

    @property
    def best(self) -> dict | None:
        """The held-out record of the best step (the ``best`` event's, else the lowest loss)."""
        if self.best_step is not None:
            match = [v for v in self.val if v["step"] == self.best_step]
            if match:
                return match[-1]
        finite = [v for v in self.val if _finite(v.get("loss"))]
        return min(finite, key=lambda v: v["loss"]) if finite else None


def log_path(path: str | Path) -> Path:
    """A log file as given, or ``MODEL.log.jsonl`` beside a model file ``MODEL.safetensors``."""
    p = Path(path)
    if p.suffix == ".jsonl":
        return p
    stem = p.name[: -len(".safetensors")] if p.name.endswith(".safetensors") else p.stem
    return p.with_name(stem + ".log.jsonl")


def read_log(path: str | Path) -> TrainingLog:
    """Read a training log; unreadable lines (a crash mid-write) are skipped with a note."""
    p = log_path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no training log {p}" + ("" if p == Path(path) else f" (for {path})"))
    train: dict[int, float] = {}
    val: dict[int, dict] = {}
    best: list[int] = []
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            print(f"{p}:{n}: skipping a line that is not JSON", file=sys.stderr)
            continue
        if not isinstance(rec, dict) or "step" not in rec:
            continue
        event, step = rec.get("event"), int(rec["step"])
        if event == "start":
            _drop_after(step, train, val, best)
        elif event == "step":
            value = rec.get("loss_mean50", rec.get("loss"))
            if value is not None:
                train[step] = float(value)
        elif event == "val":
            val[step] = rec
        elif event == "best":
            best.append(step)
    steps = sorted(train)
    return TrainingLog(p, steps, [train[s] for s in steps], [val[s] for s in sorted(val)], best[-1] if best else None)


def _drop_after(start: int, train: dict[int, float], val: dict[int, dict], best: list[int]) -> None:
    """Forget what was logged after step ``start``: all of an earlier run when a new one starts (step 0),
    the part of a killed run after its checkpoint when it resumes."""
    for records in (train, val):
        for step in [s for s in records if s > start]:
            del records[step]
    best[:] = [s for s in best if s <= start]


def plot(logs: list[TrainingLog], labels: list[str], output: str | Path, title: str | None = None,
         dpi: int = 120) -> Path:
    """Draw the two panels for every log and save them as a PNG at ``output``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 7), sharex=True, constrained_layout=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (log, label) in enumerate(zip(logs, labels)):
        c = colours[i % len(colours)]
        if log.steps:
            top.plot(log.steps, log.train_loss, color=c, alpha=0.45, lw=1, label=f"{label}: training (mean of 50)")
        vs = [v for v in log.val if _finite(v.get("loss"))]
        if vs:
            top.plot([v["step"] for v in vs], [v["loss"] for v in vs], color=c, lw=2, marker="o", ms=3,
                     label=f"{label}: held-out")
        best = log.best
        if best is not None:
            top.plot([best["step"]], [best["loss"]], color=c, marker="*", ms=14, mec="black", ls="none",
                     label=f"{label}: best (step {best['step']})")
        auc = [v for v in log.val if _finite(v.get("auc"))]
        if auc:
            bottom.plot([v["step"] for v in auc], [v["auc"] for v in auc], color=c, lw=2, marker="o", ms=3,
                        label=f"{label}: AuC")
        gray = [v for v in log.val if _finite(v.get("auc_gray"))]
        if gray:
            bottom.plot([v["step"] for v in gray], [v["auc_gray"] for v in gray], color=c, lw=1, ls="--",
                        label=f"{label}: gray baseline")
        if best is not None and _finite(best.get("auc")):
            bottom.plot([best["step"]], [best["auc"]], color=c, marker="*", ms=14, mec="black", ls="none")
    top.set_ylabel("loss")
    top.set_title(title or "training and held-out loss")
    bottom.set_ylabel("held-out AuC (ab error 0-150)")
    bottom.set_xlabel("step")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize=8)
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("logs", nargs="+", metavar="LOG", help="MODEL.log.jsonl or MODEL.safetensors (its log beside it)")
    p.add_argument("-o", "--output", required=True, help="PNG to write, e.g. docs/images/training-curves.png")
    p.add_argument("--label", action="append", default=None, help="legend name per LOG, in order (default: file stem)")
    p.add_argument("--title", default=None)
    p.add_argument("--dpi", type=int, default=120)
    args = p.parse_args(argv)
    labels = list(args.label or [])
    if len(labels) > len(args.logs):
        p.error(f"{len(labels)} --label for {len(args.logs)} logs")
    try:
        logs = [read_log(path) for path in args.logs]
    except FileNotFoundError as err:
        print(f"plot_training: {err}", file=sys.stderr)
        return 2
    labels += [log.path.name.removesuffix(".jsonl").removesuffix(".log") for log in logs[len(labels):]]
    if not any(log.steps or log.val for log in logs):
        print("plot_training: no step or val events in " + ", ".join(str(log.path) for log in logs), file=sys.stderr)
        return 2
    out = plot(logs, labels, args.output, args.title, args.dpi)
    for log, label in zip(logs, labels):
        best = log.best
        where = f"best held-out loss {best['loss']:.4f} at step {best['step']}" if best else "no held-out scores"
        print(f"{label}: {len(log.steps)} step records, {len(log.val)} held-out; {where}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
