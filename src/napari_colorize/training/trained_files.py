"""Which files trained a model, kept compactly in its metadata (``training["trained_files"]``).

``evaluate`` and ``calibrate`` warn when they are given images that trained the model
(:mod:`napari_colorize.evaluate.provenance`).  A training folder alone cannot tell: files
are added to it after training, and training skips some (too small for the crop, gray,
broken).  So a run records the files it decoded and trained on: per file an 8-byte
BLAKE2b digest of its resolved path and its size in bytes, the digests sorted and
stored as one base64 string: about 11 bytes of metadata per file (10,000 files: about
110 kB), where a list of paths would take several times that.  The size makes a file
replaced by another under the same name count as new.  A file counted here may be
missed only if it was moved, or rewritten to a new size, since training.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["SCHEME", "file_digest", "trained_files_record", "trained_digests"]

#: How the digests are made; a record of another scheme is not read.
SCHEME = "blake2b-8 of resolved path + NUL + size in bytes; sorted; base64"
_SIZE = 8


def file_digest(path: str | os.PathLike) -> bytes | None:
    """The digest of a file as :func:`trained_files_record` keeps it; None if it cannot be read."""
    resolved = Path(path).resolve()
    try:
        size = resolved.stat().st_size
    except OSError:
        return None
    return hashlib.blake2b(os.fsencode(resolved) + b"\0" + str(size).encode(), digest_size=_SIZE).digest()


def trained_files_record(paths: Iterable[str | os.PathLike]) -> dict[str, Any]:
    """The ``trained_files`` record of the files that trained a model (read when training starts)."""
    digests = sorted({d for d in map(file_digest, paths) if d is not None})
    return {"scheme": SCHEME, "count": len(digests), "digests": base64.b64encode(b"".join(digests)).decode("ascii")}


def trained_digests(record: Any) -> frozenset[bytes] | None:
    """The digests of a ``trained_files`` record; None for a record that is missing, of another
    scheme or damaged (its reader then falls back to what else the metadata tells)."""
    if not isinstance(record, dict) or record.get("scheme") != SCHEME or not isinstance(record.get("digests"), str):
        return None
    try:
        raw = base64.b64decode(record["digests"], validate=True)
    except ValueError:
        return None
    if len(raw) % _SIZE or len(raw) // _SIZE != record.get("count"):
        return None
    return frozenset(raw[i:i + _SIZE] for i in range(0, len(raw), _SIZE))
