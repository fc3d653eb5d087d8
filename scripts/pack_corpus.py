"""Pack the corpus as JPEG so it fits the 64 MiB transfer to a GPU machine.

    python scripts/pack_corpus.py corpus .gpu_corpus [--quality 93]

Writes OUT/train, OUT/val and OUT/manifest.csv (file names changed to .jpg; weights,
sources and every other column unchanged) and prints the packed size.  The GPU recipe
of the default model trained on such a copy.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from PIL import Image


def pack(src: Path, dst: Path, quality: int = 93) -> int:
    """Re-encode every PNG/JPEG of src/{train,val} as JPEG under dst; returns the count."""
    count = 0
    for split in ("train", "val"):
        (dst / split).mkdir(parents=True, exist_ok=True)
        for path in sorted((src / split).iterdir()):
            if path.suffix.lower() in (".png", ".jpg", ".jpeg"):
                Image.open(path).convert("RGB").save(dst / split / f"{path.stem}.jpg", quality=quality)
                count += 1
    with open(src / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["file"] = str(Path(row["file"]).with_suffix(".jpg"))
    with open(dst / "manifest.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return count


def folder_bytes(folder: Path) -> int:
    """Total size of the files below ``folder``."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src", type=Path, help="corpus built by scripts/build_corpus.py")
    ap.add_argument("dst", type=Path, help="output folder")
    ap.add_argument("--quality", type=int, default=93, help="JPEG quality (default 93)")
    args = ap.parse_args(argv)
    n = pack(args.src, args.dst, args.quality)
    print(f"packed {n} images, {folder_bytes(args.dst) / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
