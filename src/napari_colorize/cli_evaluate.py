"""``napari-colorize evaluate``: score a colorizer on colour images against the gray baseline.

Each colour image is made gray ((R + G + B) / 3), colorized and compared with the
original: PSNR (RGB, dB), RMSE in a,b (Lab units), AuC of the per-pixel a,b error
over thresholds 0..150 (Zhang et al. 2016), and the Hasler-Suesstrunk colourfulness
of the output vs the truth -- each beside the same metric for the gray image itself.

The mean row (and each group's row) adds: images, d_psnr and d_auc (the gain over
gray), colourfulness_ratio (output / truth), and the near-neutral check: neutral,
how many truths have colourfulness below 15, and neutral_ratio, the mean output /
truth colourfulness over those (the goal: at most 1.5).

--group-by summarises the images per group as well: level:N (or N) groups by the
name of the N-th folder above each file (1: its own folder); manifest:COLUMN (or
COLUMN, or manifest:COLUMN=MANIFEST.csv) by a column of a corpus manifest.csv, found
next to or above the images unless named with --manifest.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .decode import METHODS

__all__ = ["add_parser", "run", "print_warning"]

_EPILOG = """examples:
  napari-colorize evaluate photos/val
  napari-colorize evaluate photos/val --model mymodel.safetensors --json scores.json
  napari-colorize evaluate photos/val --method median --method expectation --uncalibrated
  napari-colorize evaluate corpus/val --group-by source --summary
  napari-colorize evaluate corpus/val --group-by source --manifest corpus/manifest.csv --both
  napari-colorize evaluate photos/*/ --group-by level:1 --json by_folder.json
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``evaluate`` subcommand to the ``napari-colorize`` parser."""
    p = subparsers.add_parser("evaluate", help="score a colorizer on colour images (vs the gray baseline)",
                              description=__doc__, epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", nargs="+", metavar="DATA_DIR", help="folders or files of colour images")
    p.add_argument("--model", action="append", default=None,
                   help="'default' (shipped) or a .safetensors model file; repeat to compare models in one table")
    p.add_argument("--method", action="append", default=None,
                   choices=("default", *METHODS),
                   help="histogram decoding; repeat to compare several in one table (default: the model's best)")
    cal = p.add_mutually_exclusive_group()
    cal.add_argument("--calibrated", dest="calibrated", action="store_true", default=True,
                     help="use the model's calibrated decoding (confidence fading) if it has one (default)")
    cal.add_argument("--uncalibrated", dest="calibrated", action="store_false",
                     help="ignore the model's calibrated decoding")
    cal.add_argument("--both", dest="calibrated", action="store_const", const=None,
                     help="report calibrated and uncalibrated decoding side by side")
    p.add_argument("--saturation", type=float, default=1.0, help="chroma multiplier (default 1)")
    p.add_argument("--max-side", type=int, default=512, help="reduce images to this long side first (default 512)")
    p.add_argument("--limit", type=int, default=None, help="use at most this many images (spread evenly)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    p.add_argument("--json", default=None, metavar="OUT", help="also write the table as JSON to OUT")
    p.add_argument("--summary", action="store_true", help="print only the mean row (and group rows)")
    p.add_argument("--group-by", default=None, metavar="SPEC",
                   help="also one row per group: level:N (N-th folder above the file, 1 = its folder) "
                        "or manifest:COLUMN[=MANIFEST.csv] / COLUMN (a column of the corpus manifest.csv)")
    p.add_argument("--manifest", default=None, metavar="CSV",
                   help="the manifest.csv for --group-by COLUMN (default: next to or above the images)")
    p.set_defaults(func=run)
    return p


def print_warning(message, category, *rest, **kw) -> None:
    """``warnings.showwarning`` for evaluate and calibrate: one line on stderr, ``note:`` for what
    was left out on purpose (results of ours in the folders), ``warning:`` for the rest."""
    from .io import OwnOutputsNote

    kind = "note" if issubclass(category, OwnOutputsNote) else "warning"
    print(f"{kind}: {message}", file=sys.stderr)


def _is_table_json(path: Path) -> bool:
    """Whether ``path`` holds an evaluation table of ours (``--json`` of an earlier run)."""
    try:
        with open(path, encoding="utf-8") as fh:
            table = json.load(fh)
    except (OSError, ValueError):  # binary (an image), or not JSON
        return False
    return isinstance(table, dict) and {"rows", "mean", "info"} <= table.keys()


def _check_json_target(path: Path) -> None:
    """``--json`` may replace an earlier table only, and must be writable: checked before scoring."""
    from .training.paths import check_writable

    if path.is_dir():
        raise ValueError(f"--json {path} is a folder; give the path of the .json file to write")
    if path.exists() and not _is_table_json(path):
        raise FileExistsError(f"--json {path} exists and is not an evaluation table of napari-colorize; evaluate "
                              "never replaces other files (an image it scores, say): choose another --json path")
    check_writable(path, "evaluation table (--json)")


def _distinct_models(models: list[str]) -> list[str]:
    """``models`` without a second name of one file (a link, another spelling): scored once, said so."""
    from .model import resolve_model_path

    seen: dict[str, str] = {}
    for model in models:
        try:
            key = os.path.realpath(resolve_model_path(model))
        except (OSError, ValueError):  # missing or not a model: refused later, in words
            key = model
        if key in seen:
            print(f"note: --model {model} is the same file as --model {seen[key]}; it is scored once", file=sys.stderr)
            continue
        seen[key] = model
    return list(seen.values())


def _note_unfinished(models: list[str]) -> None:
    """Say which models are unfinished training runs (a missing or bad file fails later, in words)."""
    from .model import incomplete_note, read_config

    for model in models:
        try:
            note = incomplete_note(read_config(model), model)
        except (ValueError, FileNotFoundError):
            continue
        if note is not None:
            print(note, file=sys.stderr)


def _model_labels(models: list[str]) -> dict[str, str]:
    """Each model's name in the table: its file's stem, or the path as given where two share a stem."""
    stems = {model: Path(model).stem if model != "default" else "default" for model in models}
    shared = {stem for stem in stems.values() if list(stems.values()).count(stem) > 1}
    return {model: model if stem in shared else stem for model, stem in stems.items()}


def _variant_name(label: str | None, method: str | None, calibrated: bool) -> str:
    """A compared variant's row name: its decoding ("auto": the model's own, as the widget
    says), after the model's label when several are compared."""
    decoding = f"{method or 'auto'} {'calibrated' if calibrated else 'uncalibrated'}"
    return decoding if label is None else f"{label}: {decoding}"


def run(args: argparse.Namespace) -> int:
    """Run ``evaluate`` from parsed arguments; returns the exit code."""
    from ._atomic import no_new_empty_folders

    methods = [None if m == "default" else m for m in (args.method or [None])]
    calibrations = [True, False] if args.calibrated is None else [args.calibrated]
    if args.max_side is not None and args.max_side < 32:
        raise ValueError(f"--max-side must be at least 32, got {args.max_side}")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be at least 1, got {args.limit}")
    json_path = Path(args.json).expanduser() if args.json else None
    with no_new_empty_folders(json_path):  # --json's folder is made by the early check: gone if refused
        return _evaluate(args, methods, calibrations, json_path)


def _evaluate(args: argparse.Namespace, methods: list, calibrations: list, json_path: Path | None) -> int:
    import warnings

    from .evaluate import compare, evaluate

    if json_path is not None:
        _check_json_target(json_path)
    if args.manifest is not None and args.group_by is None:
        raise ValueError("--manifest is used with --group-by COLUMN; add --group-by (e.g. --group-by source)")
    grouping = {"group_by": args.group_by, "manifest": args.manifest}
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = print_warning
        models = _distinct_models(args.model or ["default"])
        _note_unfinished(models)  # once per file, not per name given
        if len(models) == 1 and len(methods) == 1 and len(calibrations) == 1:
            table = evaluate(args.data, model=models[0], method=methods[0], calibrated=calibrations[0],
                             device=args.device, saturation=args.saturation, max_side=args.max_side,
                             limit=args.limit, progress=sys.stderr.isatty(), **grouping)
        else:
            # A second --model used to replace the first silently; now each is a row of its own.
            labels = _model_labels(models)
            variants = [{"model": model, "method": m, "calibrated": c, "saturation": args.saturation,
                         "name": _variant_name(labels[model] if len(models) > 1 else None, m, c)}
                        for model in models for m in methods for c in calibrations]
            table = compare(args.data, variants, device=args.device, max_side=args.max_side, limit=args.limit,
                            **grouping)
    if len(models) == 1:
        print(f"model: {models[0]}", file=sys.stderr)  # the table does not say which it scored
    print(table.format(per_image=not args.summary))
    if json_path is not None:
        table.to_json(json_path)
        print(f"wrote {json_path}", file=sys.stderr)
    return 0
