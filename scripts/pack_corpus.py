"""Pack the corpus as JPEG (quality 93) so it fits a 64 MiB transfer to a GPU machine.

    python scripts/pack_corpus.py /work/corpus .gpu_corpus

Writes OUT/train, OUT/val and OUT/manifest.csv (file names changed to .jpg; weights and
everything else unchanged).  The GPU recipe of the default model trained on this copy.
"""

from __future__ import annotations

import csv
import sys
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


if __name__ == "__main__":
    print(f"packed {pack(Path(sys.argv[1]), Path(sys.argv[2]))} images")
