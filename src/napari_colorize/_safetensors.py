"""Safetensors files of ours: written atomically, their JSON metadata read from the header
alone (no tensor is loaded, nothing is unpickled), and damaged ones told apart from others."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ._atomic import atomic_path

__all__ = ["has_safetensors_key", "is_damaged_file_of", "read_safetensors_metadata", "write_safetensors"]


def write_safetensors(path: str | os.PathLike, tensors: dict, metadata: dict[str, str]) -> None:
    """Write torch ``tensors`` and ``metadata`` to a safetensors file atomically (:func:`atomic_path`).

    The bytes go into the temporary file, whose permissions follow the umask (0644 usually):
    models and checkpoints are shared (a cluster's workers may run as another user), and
    safetensors' ``save_file`` would re-create the file as 0600.
    """
    from safetensors.torch import save

    with atomic_path(path) as tmp:
        tmp.write_bytes(save(tensors, metadata=metadata))


def has_safetensors_key(path: str | os.PathLike, key: str) -> bool:
    """Whether ``path`` is a safetensors file whose header carries metadata under ``key`` (header only)."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        read_safetensors_metadata(path, key, not_safetensors=str, no_key="")
    except ValueError:
        return False
    return True


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


def is_damaged_file_of(path: str | os.PathLike, key: str) -> bool:
    """Whether ``path`` is a file of ours that cannot be read: a safetensors file cut short or
    corrupted whose header still begins with our metadata ``key`` (as :func:`save_training_state`
    and ``save_model`` write it).  Such a file may be replaced with ``--force``; one that does
    not show our key is never taken for ours."""
    path = Path(path)
    if not path.is_file() or has_safetensors_key(path, key):
        return False
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    # Unescaped, these quotes are the header's own structure, never text inside a value; a
    # readable header with it would carry the key (has_safetensors_key above).
    return head[8:9] == b"{" and f'"__metadata__":{{"{key}":'.encode() in head[8:]
