"""Guided colour on photographs from held-out sources: reference, half reference, hints, cost, flicker.

Usage::

    python benchmarks/bench_guided.py [--split val|test] [--max-side 384] [--limit N]
                                      [--parts quality,hints,cost,flicker] [--strength S] [--hint-range R]

The photographs are those of the default model's validation (``val``) or test sources
(its metadata records which sources; ``corpus/manifest.csv`` lists their files; stamp
composites are excluded).  Prints, against the gray baseline (AuC in points, PSNR in
dB, means over images):

* **quality**: automatic; the photograph's own colours as the reference; the left
  half as the reference, scored on the right half (which alone is coloured);
* **hints**: N hints at random pixels (colour = the truth's mean over 5 x 5), for
  N = 0, 1, 2, 5, 10, 20, 50;
* **cost**: wall time of a guided run over the automatic run on a 1024^2 image
  (ratios within one run; timings are noisy here), and a tiled 2048^2 image with one
  hint in a corner (tiles far from it must cost nothing);
* **flicker**: a stack of shifted crops of one photograph; mean |delta ab| between
  adjacent output planes minus the same for the truth, automatic, with a shared
  reference and with hints that follow the content;
* **per_source** (not in the default parts): the same runs per held-out source;
* **ablation** (not in the default parts): the design choices measured against each
  other: the probe's plain ratio vs a fitted global prior vs a prior per gray band,
  fading on/off; for hints, the histogram update and the colour pull alone and
  together, edge-aware vs Euclidean reach.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

import napari_colorize as nc
from napari_colorize.color import rgb_to_gray
from napari_colorize.evaluate.scoring import load_images, score
from napari_colorize.metrics import lab_of
from napari_colorize.model import DEFAULT_MODEL, read_config
from napari_colorize.training.splits import sources_by_path

HINT_COUNTS = (0, 1, 2, 5, 10, 20, 50)


def held_out_photos(split: str, manifest: Path, max_side: int, limit: int | None,
                    with_sources: bool = False) -> list[tuple]:
    """``(name, rgb)`` of the split's photographs, or ``(name, rgb, source)`` with ``with_sources``."""
    record = read_config(DEFAULT_MODEL).training["held_out"]
    wanted = set(record["val_sources" if split == "val" else "test_sources"])
    source_of = {p.resolve(): src for p, src in sources_by_path(manifest).items() if src in wanted}
    loaded = load_images(sorted(source_of), max_side=max_side, limit=limit, paths=with_sources)
    return [(name, rgb, source_of[Path(path).resolve()]) for name, rgb, path in loaded] if with_sources else loaded


def per_source(photos, model, kw: dict) -> None:
    """Per held-out source: automatic, own colours, left half and 10 hints, each beside gray."""
    runs = {
        "automatic": lambda gray, rgb, i: (nc.colorize(gray, model).rgb, rgb),
        "own colours": lambda gray, rgb, i: (nc.colorize(gray, model, reference=rgb, **kw).rgb, rgb),
        "left half": lambda gray, rgb, i: (
            nc.colorize(gray[:, rgb.shape[1] // 2:], model, reference=rgb[:, :rgb.shape[1] // 2], **kw).rgb,
            rgb[:, rgb.shape[1] // 2:]),
        "10 hints": lambda gray, rgb, i: (
            nc.colorize(gray, model, hints=random_hints(rgb, 10, np.random.default_rng(1000 + i)), **kw).rgb, rgb),
    }
    rows: dict[str, dict[str, list]] = {}
    for i, (_, rgb, source) in enumerate(photos):
        gray = gray_of(rgb)
        for label, run in runs.items():
            if label == "left half" and min(rgb.shape[0], rgb.shape[1] - rgb.shape[1] // 2) < model.min_size:
                continue
            out, truth = run(gray, rgb, i)
            rows.setdefault(source, {}).setdefault(label, []).append(score(np.asarray(out), truth))
    print(f"\n### Per source ({len(photos)} photographs): Δ AuC / Δ PSNR against gray (gray AuC, PSNR)\n")
    print("| source | n | " + " | ".join(runs) + " |\n|---|---|" + "---|" * len(runs))
    for source in sorted(rows):
        cells = []
        for label in runs:
            r = mean_rows(rows[source][label])
            cells.append(f"{100 * (r['auc'] - r['auc_gray']):+.2f} / {r['psnr'] - r['psnr_gray']:+.2f} "
                         f"({100 * r['auc_gray']:.1f}, {r['psnr_gray']:.1f})")
        print(f"| {source} | {len(rows[source]['automatic'])} | " + " | ".join(cells) + " |", flush=True)


def gray_of(rgb: np.ndarray) -> np.ndarray:
    return rgb_to_gray(torch.from_numpy(np.ascontiguousarray(rgb)).float()).numpy()


def mean_rows(rows: list[dict]) -> dict:
    return {k: statistics.fmean(r[k] for r in rows) for k in rows[0]}


def line(label: str, row: dict) -> str:
    return (f"| {label} | {100 * row['auc']:.2f} | {100 * row['auc_gray']:.2f} | "
            f"{100 * (row['auc'] - row['auc_gray']):+.2f} | {row['psnr']:.2f} | {row['psnr_gray']:.2f} | "
            f"{row['psnr'] - row['psnr_gray']:+.2f} | {row['colourfulness'] / max(row['colourfulness_truth'], 1e-9):.2f} |")


HEADER = ("| | AuC | gray | Δ AuC | PSNR | gray | Δ PSNR | colourful / truth |\n"
          "|---|---|---|---|---|---|---|---|")


def random_hints(rgb: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    h, w, _ = rgb.shape
    ys, xs = rng.integers(2, h - 2, n), rng.integers(2, w - 2, n)
    colours = np.array([rgb[y - 2:y + 3, x - 2:x + 3].reshape(-1, 3).mean(0) for y, x in zip(ys, xs)])
    return np.stack([ys, xs], axis=1).astype(float), colours.reshape(n, 3)


def quality(photos, model, kw: dict) -> None:
    rows = {"automatic": [], "own colours as reference": [], "left half as reference (right half)": [],
            "automatic (right half)": []}
    for _, rgb in photos:
        gray = gray_of(rgb)
        rows["automatic"].append(score(np.asarray(nc.colorize(gray, model).rgb), rgb))
        rows["own colours as reference"].append(
            score(np.asarray(nc.colorize(gray, model, reference=rgb, **kw).rgb), rgb))
        half = rgb.shape[1] // 2
        if min(rgb.shape[0], rgb.shape[1] - half) >= model.min_size:
            right = rgb[:, half:]
            rows["left half as reference (right half)"].append(
                score(np.asarray(nc.colorize(gray[:, half:], model, reference=rgb[:, :half], **kw).rgb), right))
            rows["automatic (right half)"].append(score(np.asarray(nc.colorize(gray[:, half:], model).rgb), right))
    print(f"\n### Reference ({len(photos)} photographs)\n\n{HEADER}")
    for label, r in rows.items():
        print(line(f"{label} (n={len(r)})", mean_rows(r)))


def hints_curve(photos, model, kw: dict) -> None:
    print(f"\n### Hints at random pixels ({len(photos)} photographs)\n\n{HEADER}")
    for n in HINT_COUNTS:
        rows = []
        for i, (_, rgb) in enumerate(photos):
            gray = gray_of(rgb)
            hints = random_hints(rgb, n, np.random.default_rng(1000 + i)) if n else None
            rows.append(score(np.asarray(nc.colorize(gray, model, hints=hints, **kw).rgb), rgb))
        print(line(f"{n} hints", mean_rows(rows)), flush=True)


def best_of(fn, repeats: int = 3) -> float:
    from napari_colorize.engine import clear_caches
    times = []
    for _ in range(repeats):
        clear_caches()  # every run computes its tiles and histograms (the caches would answer repeats)
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def interleaved(cases: dict, repeats: int = 5) -> dict[str, float]:
    """Median wall time per case, the cases run in turn ``repeats`` times (timings drift here:
    interleaving makes the ratios fair), every run from empty caches."""
    from napari_colorize.engine import clear_caches
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            clear_caches()
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def cost(photos, model, kw: dict) -> None:
    from skimage.transform import resize

    from napari_colorize.engine import clear_caches
    rgb = resize(photos[0][1], (1024, 1024), anti_aliasing=True).astype(np.float32)
    gray = gray_of(rgb)
    hints = random_hints(rgb, 10, np.random.default_rng(0))
    print(f"\n### Cost ({torch.get_num_threads()} threads, median of 5 interleaved runs, empty caches)\n")
    for side, tiling in ((1024, {}), (2048, {"tile_size": 512, "overlap": 64})):
        g = gray if side == 1024 else np.tile(gray, (2, 2))
        h = hints if side == 1024 else (np.concatenate([hints[0] + (dy, dx) for dy in (0, 1024) for dx in (0, 1024)]),
                                        np.tile(hints[1], (4, 1)))
        corner = (np.array([[20.0, 20.0]]), np.array([[0.9, 0.2, 0.2]]))
        cases = {"automatic": lambda: np.asarray(nc.colorize(g, model, **tiling).rgb),  # noqa: B023 (called in this iteration)
                 "reference": lambda: np.asarray(nc.colorize(g, model, reference=rgb, **tiling, **kw).rgb),  # noqa: B023 (called in this iteration)
                 f"{len(h[0])} hints": lambda: np.asarray(nc.colorize(g, model, hints=h, **tiling, **kw).rgb),  # noqa: B023 (called in this iteration)
                 "both": lambda: np.asarray(nc.colorize(g, model, reference=rgb, hints=h, **tiling, **kw).rgb)}  # noqa: B023 (called in this iteration)
        if tiling:
            cases["1 hint in a corner, reach 128 px"] = lambda: np.asarray(
                nc.colorize(g, model, hints=corner, hint_range=128, **tiling).rgb)  # noqa: B023 (called in this iteration)
        med = interleaved(cases)
        auto = med["automatic"]
        parts = "; ".join(f"{k} {v / auto:.2f}x" for k, v in med.items() if k != "automatic")
        print(f"{side} x {side}{' in 512-px tiles' if tiling else ''}: automatic {auto:.2f} s "
              f"({side * side / 1e6 / auto:.2f} MP/s); {parts}")
    # napari's live re-colour: the shown image was coloured once; the hints move; the tile's
    # histograms come from the cache and only the decoding runs again.
    clear_caches()
    np.asarray(nc.colorize(gray, model).rgb)
    moves = []
    for shift in (8, 16, 24, 32, 40):
        t = time.perf_counter()
        np.asarray(nc.colorize(gray, model, hints=(np.clip(hints[0] + shift, 0, 1023), hints[1]), **kw).rgb)
        moves.append(time.perf_counter() - t)
    print(f"re-colour of a 1024 x 1024 view after moving its 10 hints (histograms cached): median "
          f"{statistics.median(moves):.2f} s")


def flicker_of(stack_rgb: np.ndarray) -> float:
    ab = np.stack([lab_of(p)[..., 1:] for p in stack_rgb])
    return float(np.mean(np.linalg.norm(np.diff(ab, axis=0), axis=-1)))


def flicker(photos, model, kw: dict, planes: int = 8, shift: int = 4, side: int = 256) -> None:
    rgb = max(photos, key=lambda p: p[1].shape[0] * p[1].shape[1])[1]
    side = min(side, rgb.shape[0] - planes * shift, rgb.shape[1] - planes * shift)
    truth = np.stack([rgb[i * shift:i * shift + side, i * shift:i * shift + side] for i in range(planes)])
    gray = np.stack([gray_of(p) for p in truth])
    base = flicker_of(truth)
    scene, colours = random_hints(rgb[:side, :side], 10, np.random.default_rng(0))
    # The same scene points in every plane: plane i shows the photograph shifted by i * shift.
    points = np.concatenate([np.c_[np.full(len(scene), i), scene - i * shift] for i in range(planes)])
    keep = ((points[:, 1:] >= 0) & (points[:, 1:] < side)).all(axis=1)
    hints = (points[keep], np.tile(colours, (planes, 1))[keep])
    runs = {"automatic": {}, "shared reference (the photograph)": {"reference": rgb, **kw},
            "10 hints following the content": {"hints": hints, **kw}}
    print(f"\n### Flicker ({planes} planes of {side}^2, shifted {shift} px per plane; truth's own: {base:.3f})\n")
    print("| | mean abs delta ab, adjacent planes | minus truth's | AuC | gray |\n|---|---|---|---|---|")
    for label, extra in runs.items():
        out = np.asarray(nc.colorize(gray, model, **extra).rgb)
        rows = mean_rows([score(o, t) for o, t in zip(out, truth)])
        value = flicker_of(out)
        print(f"| {label} | {value:.3f} | {value - base:+.3f} | {100 * rows['auc']:.2f} | {100 * rows['auc_gray']:.2f} |")


#: Design variants compared by ``--parts ablation``: (label, {module.attribute: value}, extra colorize kwargs).
#: The guidance functions are swapped where the engine calls them (engine/guided.py, inference.py).
_G = "napari_colorize.engine.guided"


def _one_band(refs, space):
    from napari_colorize.guidance.reference import reference_histograms
    return reference_histograms(refs, space, bands=1)


def _one_step(overview, cells, target):
    from napari_colorize.guidance.reference import fit_log_prior
    return fit_log_prior(overview, cells, target, iterations=1)


def _euclidean(cells, centre, hint_range):
    from napari_colorize.guidance.hints import influence_field
    return influence_field(cells, centre, hint_range, edge_scale=float("inf"), similarity=1e9)


REFERENCE_VARIANTS = (
    ("probe: one global ratio step, power 2, fading on",
     {f"{_G}.reference_histograms": _one_band, f"{_G}.fit_log_prior": _one_step,
      "napari_colorize.engine.pipeline.FADE_WITH_REFERENCE": True}, {"reference_strength": 2.0}),
    ("global fit (IPF), fading on", {f"{_G}.reference_histograms": _one_band,
                                     "napari_colorize.engine.pipeline.FADE_WITH_REFERENCE": True}, {}),
    ("per-gray-band fit, fading on", {"napari_colorize.engine.pipeline.FADE_WITH_REFERENCE": True}, {}),
    ("per-gray-band fit, fading off (shipped)", {}, {}),
)
HINT_VARIANTS = (
    ("colour pull only (no histogram update)", {"napari_colorize.guidance.apply.HINT_WEIGHT": 0.0}, {}),
    ("histogram update only (no colour pull)",
     {"napari_colorize.inference.guide_colour": lambda u, v, guides: (u, v)}, {}),
    ("both, Euclidean reach (no edge cost, no gray gate)", {f"{_G}.influence_field": _euclidean}, {}),
    ("both, edge-aware (shipped)", {}, {}),
)


def _patched(changes: dict):
    """Context manager: set ``module.attribute`` values for one variant, restored afterwards."""
    import contextlib
    import importlib

    @contextlib.contextmanager
    def cm():
        saved = []
        for name, value in changes.items():
            module, attr = name.rsplit(".", 1)
            target = importlib.import_module(module)
            saved.append((target, attr, getattr(target, attr)))
            setattr(target, attr, value)
        try:
            yield
        finally:
            for target, attr, value in reversed(saved):
                setattr(target, attr, value)
    return cm()


def ablation(photos, model, kw: dict) -> None:
    from napari_colorize.engine import clear_caches
    print(f"\n### Design choices ({len(photos)} photographs)\n\nLeft half as the reference, right half scored:\n")
    print(HEADER)
    for label, changes, extra in REFERENCE_VARIANTS:
        rows = []
        with _patched(changes):
            for _, rgb in photos:
                half = rgb.shape[1] // 2
                if min(rgb.shape[0], rgb.shape[1] - half) < model.min_size:
                    continue
                clear_caches()
                out = nc.colorize(gray_of(rgb)[:, half:], model, reference=rgb[:, :half], **{**kw, **extra}).rgb
                rows.append(score(np.asarray(out), rgb[:, half:]))
        print(line(label, mean_rows(rows)), flush=True)
    print(f"\n10 hints at random pixels:\n\n{HEADER}")
    for label, changes, extra in HINT_VARIANTS:
        rows = []
        with _patched(changes):
            for i, (_, rgb) in enumerate(photos):
                clear_caches()
                hints = random_hints(rgb, 10, np.random.default_rng(1000 + i))
                rows.append(score(np.asarray(nc.colorize(gray_of(rgb), model, hints=hints, **{**kw, **extra}).rgb), rgb))
        print(line(label, mean_rows(rows)), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", choices=("val", "test"), default="val")
    ap.add_argument("--manifest", type=Path, default=Path("corpus/manifest.csv"))
    ap.add_argument("--max-side", type=int, default=384)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--parts", default="quality,hints,cost,flicker")
    ap.add_argument("--strength", type=float, default=None)
    ap.add_argument("--hint-range", type=float, default=None)
    args = ap.parse_args()
    model = nc.get_model("default", "cpu")
    photos = held_out_photos(args.split, args.manifest, args.max_side, args.limit, with_sources=True)
    kw = {"reference_strength": args.strength, "hint_range": args.hint_range}
    print(f"{len(photos)} photographs of the {args.split} sources, long side {args.max_side}; model {DEFAULT_MODEL}")
    parts = args.parts.split(",")
    for name, fn in (("quality", quality), ("hints", hints_curve), ("cost", cost), ("flicker", flicker),
                     ("ablation", ablation), ("per_source", per_source)):
        if name in parts:  # per_source needs each photograph's source; the other parts take (name, rgb)
            given = photos if name == "per_source" else [(n, rgb) for n, rgb, _ in photos]
            fn(given, model, {k: v for k, v in kw.items() if v is not None})


if __name__ == "__main__":
    main()
