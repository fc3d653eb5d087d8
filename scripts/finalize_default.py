"""Choose, calibrate and ship the default model; print the model card's tables.

Usage::

    python scripts/finalize_default.py CANDIDATE.safetensors [...] --corpus /work/corpus \
        [--ship src/napari_colorize/weights/default.safetensors] [--json runs/finalize.json]

The corpus's validation split (``manifest.csv``, ``split == val``) is divided by source
image group into a *calibration* half (fading thresholds are fitted there) and a *test*
half (every number reported is measured there), so the reported scores are not tuned on
the images they are measured on.  No training image is used.

For each candidate: the uncalibrated scores of every decoding method; then the best
method of the best candidate per colour space is calibrated and scored again.  The
shipped model is the candidate with the best calibrated test AuC among those not worse
than gray and at least half as colourful as the truth.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
from pathlib import Path

import numpy as np

from napari_colorize.api import get_model
from napari_colorize.evaluate import compare, fit_confidence_fading, load_images
from napari_colorize.model import save_model

METHODS = ("expectation", "median", "mode")
COLUMNS = ("psnr", "rmse_ab", "auc", "colourfulness", "colourfulness_truth")


def split_val(corpus: Path) -> tuple[list[Path], list[Path]]:
    """Validation files, split by dedup group into (calibration, test) halves."""
    calib, test = [], []
    with open(corpus / "manifest.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["split"] != "val":
                continue
            half = int(hashlib.sha1(row["dedup_group"].encode()).hexdigest(), 16) % 2
            (calib if half == 0 else test).append(corpus / row["file"])
    return calib, test


def markdown(rows: list[dict], title: str) -> str:
    head = "| variant | PSNR dB | RMSE ab | AuC | colourfulness | truth colourfulness |"
    lines = [f"**{title}**", "", head, "|---|---|---|---|---|---|"]
    for r in rows:
        vals = [r.get(c) for c in COLUMNS]
        lines.append("| " + r["name"] + " | " + " | ".join("" if v is None else f"{v:.4f}" if c == "auc" else f"{v:.2f}"
                                                       for c, v in zip(COLUMNS, vals)) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("candidates", nargs="+")
    p.add_argument("--corpus", type=Path, default=Path("/work/corpus"))
    p.add_argument("--ship", type=Path, default=None)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()

    calib_files, test_files = split_val(args.corpus)
    test = load_images(test_files, max_side=512)
    calib = load_images(calib_files, max_side=256)
    print(f"validation: {len(calib)} calibration images, {len(test)} test images")
    report: dict = {"calibration_images": len(calib), "test_images": len(test), "candidates": {}}

    uncal_rows = []
    for cand in args.candidates:
        variants = [{"name": f"{Path(cand).stem} {m}", "model": cand, "method": m, "calibrated": False} for m in METHODS]
        table = compare(test, variants)
        uncal_rows += table.rows[:-1]
        gray_row = table.rows[-1]
        report["candidates"][cand] = table.rows[:-1]
    uncal_rows.append(gray_row)
    print(markdown(uncal_rows, "Uncalibrated decoders (test half of the validation split)"))

    # Best uncalibrated (candidate, method) per colour space, by AuC; then calibrate it.
    best_per_space: dict[str, tuple[str, str, float]] = {}
    for cand in args.candidates:
        space = get_model(cand, "cpu").space.name
        for row, method in zip(report["candidates"][cand], METHODS):
            if space not in best_per_space or row["auc"] > best_per_space[space][2]:
                best_per_space[space] = (cand, method, row["auc"])
    cal_rows, chosen = [], None
    for space, (cand, method, _) in best_per_space.items():
        net = get_model(cand, "cpu")
        lo, hi = fit_confidence_fading(net, calib, method=method, max_side=None, limit=None)
        row = compare(test, [{"name": f"{Path(cand).stem} {method} calibrated {lo:.2f}-{hi:.2f}", "model": net,
                              "method": method, "calibrated": False, "confidence_fading": (lo, hi)},
                             {"name": f"{Path(cand).stem} {method} uncalibrated", "model": net, "method": method,
                              "calibrated": False}]).rows
        cal_rows += row[:-1]
        gray_row = row[-1]
        cal = row[0]
        ok = cal["auc"] >= cal["auc_gray"] and cal["psnr"] >= cal["psnr_gray"] and \
            cal["colourfulness"] >= 0.5 * cal["colourfulness_truth"]
        report.setdefault("calibrated", {})[space] = {"model": cand, "method": method, "fading": [lo, hi], **cal, "ok": ok}
        if ok and (chosen is None or cal["auc"] > chosen[3]["auc"]):
            chosen = (cand, method, (lo, hi), cal)
    cal_rows.append(gray_row)
    print(markdown(cal_rows, "Calibrated vs uncalibrated (test half)"))

    if chosen is None:
        print("no candidate is both better than gray and colourful enough; nothing shipped")
    else:
        cand, method, (lo, hi), row = chosen
        print(f"chosen: {cand} method={method} confidence_fading=({lo:.2f}, {hi:.2f}) "
              f"AuC {row['auc']:.4f} (gray {row['auc_gray']:.4f}), PSNR {row['psnr']:.2f} (gray {row['psnr_gray']:.2f})")
        report["chosen"] = {"model": cand, "method": method, "fading": [lo, hi]}
        if args.ship:
            net = get_model(cand, "cpu")
            net.config.decoding.update({"method": method, "confidence_fading": [lo, hi]})
            save_model(net, args.ship, validation={k: row[k] for k in row if isinstance(row[k], float)},
                       calibration_images=len(calib), test_images=len(test))
            print(f"shipped {args.ship} ({args.ship.stat().st_size / 1e6:.1f} MB)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=float))


if __name__ == "__main__":
    main()
