"""Choose, calibrate, test and ship the default model; print the model card's tables.

Usage::

    python scripts/finalize_default.py runs/compact_lab_d0.safetensors runs/compact_lab_d2.safetensors \
        [--compare runs/old_default.safetensors] [--ship src/napari_colorize/weights/default.safetensors] \
        [--json runs/finalize.json]

Every candidate records its source-grouped split in its metadata (``training.held_out``,
written by ``napari-colorize train --val-fold K/N --hold-out J``): the *validation*
sources (early stopping) and the *test* sources (never used for any choice).

1. Each run gives two candidates: the weights of its lowest held-out loss (the model
   file) and its last weights (the checkpoint).  The one with the lowest held-out
   negative log-likelihood *after* temperature scaling (validation sources) is chosen:
   the raw loss also penalises mere overconfidence, which the temperature removes.
2. It is calibrated on the validation sources only (:func:`napari_colorize.evaluate.calibrate`:
   temperature by NLL, then confidence fading under the rules "no worse than gray
   pooled, no validation source more than 0.3 AuC points below gray, near-neutral
   scenes at most 1.5x their own colourfulness, colourfulness at least 0.35 of the
   truth's"), once per decoding method; the method with the best calibrated AuC on the
   validation sources, among those that meet the rule, is kept.
   Then, for that method and temperature, the fading is fitted again with every chroma
   gain of ``--gains`` (default 1, 1.25, 1.5, 1.75, 2) under the same rule: the median of
   an uncertain histogram is fainter than the colour it stands for.  (Searching gains for
   every method and temperature would cost 5x the time; this is coordinate-wise.)
3. Only then is it scored on the test sources, per source, beside gray, the same model
   uncalibrated and any ``--compare`` models (e.g. the previous default).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import numpy as np

from napari_colorize.evaluate import calibrate, evaluate, fit_temperature, load_images
from napari_colorize.decode import check_gains
from napari_colorize.model import load_model, read_config, save_model
from napari_colorize.training.splits import sources_by_path

METHODS = ("expectation", "median")
COLUMNS = (("images", "n", "{:.0f}"), ("auc", "AuC", "{:.2f}"), ("auc_gray", "gray AuC", "{:.2f}"),
           ("d_auc", "Δ AuC", "{:+.2f}"), ("psnr", "PSNR dB", "{:.2f}"), ("psnr_gray", "gray PSNR", "{:.2f}"),
           ("rmse_ab", "RMSE ab", "{:.2f}"), ("colourfulness_ratio", "colourful / truth", "{:.2f}"),
           ("neutral_ratio", "near-neutral ratio (n)", "{:.2f}"))


def split_of(models: list[str]) -> dict:
    """The held-out record all candidates share (an error if they differ)."""
    records = [read_config(m).training.get("held_out") for m in models]
    if any(r is None for r in records):
        sys.exit("every candidate must be trained with --val-fold/--val-sources (no held_out record in its metadata)")
    keys = ("manifest", "val_sources", "test_sources")
    if any({k: r[k] for k in keys} != {k: records[0][k] for k in keys} for r in records):
        sys.exit("the candidates were trained on different splits; compare them on one split")
    return records[0]


def source_images(manifest: Path, sources: list[str]) -> tuple[list[Path], dict[Path, str]]:
    """Files of the given sources (composites excluded: their ``source`` is the stamp set)."""
    source_of = {path.resolve(): src for path, src in sources_by_path(manifest).items() if src in sources}
    return sorted(source_of), source_of


def calibration_summary(decoding: dict) -> str:
    """One calibrated decoding's fading and validation scores, as the model card quotes them."""
    sc = decoding["calibration"]["scores"]
    return (f"fading {decoding['confidence_fading']}, validation AuC {100 * sc['auc']:.2f} (gray {100 * sc['auc_gray']:.2f}), "
            f"worst source {100 * sc.get('worst_group_d_auc', 0):+.2f}, "
            f"colourfulness {sc['colourfulness'] / sc['colourfulness_truth']:.2f} of the truth's")


def fmt(value, pattern: str) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    return pattern.format(value)


def markdown(rows: list[dict], first: str) -> str:
    """A per-group table; AuC values in points (x100)."""
    head = f"| {first} | " + " | ".join(c[1] for c in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 1)]
    for r in rows:
        cells = []
        for key, _, pattern in COLUMNS:
            v = r.get(key)
            if v is not None and key in ("auc", "auc_gray", "d_auc"):
                v = 100 * v
            cell = fmt(v, pattern)
            if key == "neutral_ratio" and r.get("neutral"):
                cell += f" ({r['neutral']})"
            cells.append(cell)
        lines.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def last_weights(path: str):
    """The model with the last weights of its run (from ``MODEL.ckpt.safetensors``), or None."""
    from safetensors.torch import load_file

    ckpt = Path(path).with_name(Path(path).name.replace(".safetensors", ".ckpt.safetensors"))
    if not ckpt.is_file():
        return None
    net = load_model(path, device="cpu")
    net.load_state_dict({k[len("model."):]: v for k, v in load_file(str(ckpt)).items() if k.startswith("model.")})
    return net


def choose_candidate(models: list[str], calib: list[tuple]) -> tuple[str, object, dict]:
    """The (name, model, row) with the lowest held-out NLL after temperature scaling."""
    from napari_colorize.training.checkpoint import read_state_info

    print("\n**Candidates** (validation sources; NLL = the training loss, before and after temperature scaling)\n")
    print("| candidate | dropout | weight decay | step | held-out NLL (T = 1) | T | held-out NLL (T) |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    for m in models:
        t = read_config(m).training
        ckpt = Path(m).with_name(Path(m).name.replace(".safetensors", ".ckpt.safetensors"))
        last_step = read_state_info(ckpt)["step"] if ckpt.is_file() else None
        options = [(f"{Path(m).stem} best", load_model(m, device="cpu"), t.get("weights_step"))]
        if last_step is not None and last_step != t.get("weights_step"):
            options.append((f"{Path(m).stem} last", last_weights(m), last_step))
        for name, net, step in options:
            temp, fit = fit_temperature(net, calib, device="cpu", max_side=None, return_details=True)
            row = {"name": name, "step": step, "nll_1": fit["nll_before"], "t": temp, "nll_t": fit["nll_after"],
                   "dropout": t.get("dropout"), "weight_decay": t.get("weight_decay")}
            print(f"| {name} | {row['dropout']} | {row['weight_decay'] or 'default'} | {step} | {row['nll_1']:.4f} | "
                  f"{temp:.2f} | {row['nll_t']:.4f} |")
            rows.append((name, net, row))
    return min(rows, key=lambda r: r[2]["nll_t"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("candidates", nargs="+")
    p.add_argument("--compare", action="append", default=[], help="other models to score on the test sources")
    p.add_argument("--ship", type=Path, default=None)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--calib-side", type=int, default=256)
    p.add_argument("--test-side", type=int, default=512)
    p.add_argument("--gains", default="1,1.25,1.5,1.75,2",
                   help="chroma gains tried with the chosen method and temperature (1: no gain search)")
    args = p.parse_args()
    gains = check_gains(args.gains)  # before an hour of work, not after

    split = split_of(args.candidates)
    manifest = Path(split["manifest"])
    calib_files, calib_source = source_images(manifest, split["val_sources"])
    test_files, test_source = source_images(manifest, split["test_sources"])
    print(f"validation (calibration) sources: {', '.join(split['val_sources'])} ({len(calib_files)} images)")
    print(f"test sources: {', '.join(split['test_sources'])} ({len(test_files)} images)")
    calib = load_images(calib_files, max_side=args.calib_side, paths=True)
    groups = [calib_source[Path(path).resolve()] for _, _, path in calib]
    chosen, chosen_net, chosen_row = choose_candidate(args.candidates, calib)
    print(f"\nchosen: {chosen}")
    report: dict = {"split": split, "chosen": chosen_row, "calibration": {}}
    best_method = None
    # The temperature flattens the histograms, which also pulls an expectation toward the
    # mean colour: whether to decode at the fitted T or at T = 1 is a choice like the method,
    # made by the same rule on the validation sources.
    for method in METHODS:
        for fit_t in (True, False):
            net = copy.deepcopy(chosen_net)
            calibrate(net, calib, temperature=fit_t, method=method, min_colourfulness=0.35, groups=groups,
                      max_side=None, limit=None, device="cpu")
            record = net.config.decoding["calibration"]
            sc = record["scores"]
            safe = bool(record.get("safe", True))
            label = f"{method}, T = {net.config.decoding.get('temperature', 1.0):.2f}"
            print(f"calibrated for {label} (NLL {record['nll_before']:.4f} -> {record['nll_after']:.4f}): "
                  + calibration_summary(net.config.decoding)
                  + ("" if safe else "; NOT SAFE (no fading met the rule), not eligible"))
            report["calibration"][label] = dict(net.config.decoding)
            # Only decodings that meet the rule compete; if none does, the least unsafe one.
            key = (safe, sc["auc"] if safe else sc.get("worst_group_d_auc", -1.0))
            if best_method is None or key > best_method[1]:
                best_method = (method, key, net)
    method, _, net = best_method
    if gains != (1.0,):
        fitted_t = "temperature" in net.config.decoding
        with_gain = copy.deepcopy(net)
        calibrate(with_gain, calib, temperature=net.config.decoding["temperature"] if fitted_t else False,
                  method=method, min_colourfulness=0.35, groups=groups, max_side=None, limit=None, device="cpu",
                  gains=gains)
        print(f"with chroma gains {list(gains)}: gain {with_gain.config.decoding.get('chroma_gain', 1.0):g}, "
              + calibration_summary(with_gain.config.decoding))
        report["calibration"][f"{method}, gains"] = dict(with_gain.config.decoding)
        if with_gain.config.decoding["calibration"].get("safe", True):
            net = with_gain
    net.config.decoding["method"] = method
    print(f"decoding kept: {method}, chroma gain {net.config.decoding.get('chroma_gain', 1.0):g}")

    test = load_images(test_files, max_side=args.test_side, paths=True)
    by_source = lambda row: test_source[Path(row["path"]).resolve()]  # noqa: E731
    variants = [("calibrated (shipped)", net, True), ("uncalibrated", net, False)]
    variants += [(f"{Path(m).stem} (as stored)", m, True) for m in args.compare]
    report["test"] = {}
    for name, model, calibrated in variants:
        table = evaluate(None, model=model, method=method if model is net else None, calibrated=calibrated,
                         device="cpu", images=test, group_by=by_source)
        pooled = {**table.mean, "name": "**pooled**"}
        print(f"\n**Test sources, {name}**\n")
        print(markdown([*table.groups, pooled], "source"))
        report["test"][name] = {"pooled": table.mean, "groups": table.groups}
    if args.ship:
        net.config.training["shipped_weights"] = chosen  # which of the run's weights: best held-out or last
        net.config.training["weights_step"] = chosen_row["step"]
        net.config.training["temperature_fit"] = {"t": chosen_row["t"], "nll_1": chosen_row["nll_1"],
                                                  "nll_t": chosen_row["nll_t"]}
        save_model(net, args.ship, test_scores={k: v for k, v in report["test"]["calibrated (shipped)"]["pooled"].items()
                                                if isinstance(v, (int, float))})
        print(f"\nshipped {args.ship} ({args.ship.stat().st_size / 1e6:.1f} MB)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=lambda o: None))


if __name__ == "__main__":
    main()
