"""Atomic file writes and safetensors header reading, shared by every writer in the package.

A file is written under a temporary name in its destination folder and then
``os.replace``-d into place, so a run killed while writing leaves either the old file
or the new one, never a torn file.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "read_safetensors_metadata"]


def _create_temp(path: Path) -> Path:
    """Create an empty, new temporary file beside ``path`` and return its name.

    ``os.open`` with mode 0o666 lets the kernel apply the umask (and a folder's default
    ACL), so the final file gets the same permissions as one made by ``open(path, "w")``
    -- unlike ``tempfile.mkstemp`` (always 0600) followed by a ``chmod``, which needs the
    umask, and reading it (``os.umask``) changes it process-wide for a moment, which is
    not thread-safe.
    """
    for _ in range(100):
        tmp = path.with_name(f".{path.stem}.{secrets.token_hex(4)}.tmp{path.suffix}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"could not create a temporary file beside {path}; remove stale '.{path.stem}.*.tmp*' files there")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Write a file atomically: yield a temporary name beside ``path``, then rename it into place.

    The temporary file already exists (empty) when yielded; the writer may overwrite it.
    It keeps ``path``'s suffix (``.tmp.png`` ...) so writers that pick a format from the
    name still work.  On a normal exit it replaces ``path`` (``os.replace``, atomic on the
    same file system); on an exception it is deleted and ``path`` is left untouched.
    The destination folder must exist.

    Parameters
    ----------
    path : path-like
        The final file.

    Yields
    ------
    Path
        The temporary file to write.
    """
    path = Path(path)
    tmp = _create_temp(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def read_safetensors_metadata(path: Path, key: str, not_safetensors: Callable[[Exception], str], no_key: str) -> str:
    """The text (a JSON document) stored under ``key`` in a safetensors file's header, without its tensors.

    Parameters
    ----------
    path : Path
        An existing file.
    key : str
        The metadata key.
    not_safetensors : callable
        Makes the ``ValueError`` message from the reader's error when the file cannot be
        read as safetensors.
    no_key : str
        The ``ValueError`` message when the header has no ``key``.

    Returns
    -------
    str
        The stored text, not yet decoded (callers validate it their own way).
    """
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as err:
        raise ValueError(not_safetensors(err)) from err
    if key not in meta:
        raise ValueError(no_key)
    return meta[key]
