"""Per-source scores of a model on its validation or test sources, calibrated and not.

Usage::

    python benchmarks/bench_sources.py [--model default] [--split val|test] [--side 256]

The sources are those recorded in the model's metadata (``training.held_out``, written by
``napari-colorize train --val-fold/--hold-out``) and the files are those of the corpus
manifest (``scripts/build_corpus.py``).  Prints one table per decoding (uncalibrated, then
with the model's stored temperature and fading), each source beside gray: which held-out
sources gain from colour and which bind the calibration rule (docs/model-card.md).  The
uncalibrated table keeps the stored decoding method (the model card's "uncalibrated" is the
same weights and method without temperature, fading or gain); ``calibrated=False`` alone
would also drop the method and decode with the space's default.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from finalize_default import markdown, source_images, split_of

from napari_colorize.evaluate import evaluate, load_images
from napari_colorize.model import read_config, resolve_model_path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default")
    p.add_argument("--split", choices=("val", "test"), default="val")
    p.add_argument("--side", type=int, default=256, help="long side of the images (256: as calibrated)")
    args = p.parse_args()
    split = split_of([str(resolve_model_path(args.model))])
    files, source = source_images(Path(split["manifest"]), split[f"{args.split}_sources"])
    images = load_images(files, max_side=args.side, paths=True)
    print(f"{args.model}: {len(images)} images of the {args.split} sources, long side {args.side}")
    method = read_config(args.model).decoding.get("method")
    for calibrated in (False, True):
        table = evaluate(None, model=args.model, method=method, calibrated=calibrated, device="cpu", images=images,
                         group_by=lambda row: source[Path(row["path"]).resolve()])
        name = "calibrated (as stored)" if calibrated else f"uncalibrated ({method or 'default'} method as stored)"
        print(f"\n**{name}**\n")
        print(markdown([*table.groups, {**table.mean, "name": "**pooled**"}], "source"))


if __name__ == "__main__":
    main()
