"""Which files trained a model, kept compactly in its metadata (``training["trained_files"]``).

``evaluate`` and ``calibrate`` warn when they are given images that trained the model
(:mod:`napari_colorize.evaluate.provenance`).  A training folder alone cannot tell: files
are added to it after training, and training skips some (too small for the crop, gray,
broken).  So a run records the files it decoded and trained on: per file an 8-byte
BLAKE2b digest of its resolved path, its size in bytes and its modification time, the
digests sorted and stored as one base64 string: about 11 bytes of metadata per file
(10,000 files: about 110 kB), where a list of paths would take several times that.  Size
and time make a file replaced by another under the same name count as new (an
uncompressed image of the same dimensions has the same size).  A training file is missed
if it was moved, rewritten or touched since training: where the record cannot tell,
nothing is claimed.
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
SCHEME = "blake2b-8 of resolved path + NUL + size in bytes + NUL + mtime in ns; sorted; base64"
_SIZE = 8


def file_digest(path: str | os.PathLike) -> bytes | None:
    """The digest of a file as :func:`trained_files_record` keeps it; None if it cannot be read."""
    resolved = Path(path).resolve()
    try:
        stat = resolved.stat()
    except OSError:
        return None
    key = os.fsencode(resolved) + b"\0" + str(stat.st_size).encode() + b"\0" + str(stat.st_mtime_ns).encode()
    return hashlib.blake2b(key, digest_size=_SIZE).digest()


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
