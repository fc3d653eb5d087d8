"""What is at a store's path before :func:`~.zarr_io.colorize_to_zarr` writes there: nothing,
a store of this job (finished or not), another job's, or something that is not ours.

Read without a lock: :func:`done_as_asked` lets a finished store of the same job be
returned while another run holds its lock, or where no lock file can be made.  Also what a
path may be (:func:`local_store_path`), whether a chunk task's store is still its job's
(:func:`still_writing`), and what becomes of a store whose input failed its checks
(:func:`discard_failed`).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from .._atomic import READ_ONLY_ERRNOS
from .placement import Placement, placement_current, store_has_layout
from .store import ATTR as _ATTR
from .store import MARKERS, open_group

__all__ = ["read_job", "is_complete", "claim_path", "done_as_asked", "still_writing", "discard_failed",
           "local_store_path", "said_unwritable"]


def read_job(path: str | os.PathLike) -> dict | None:
    """The job record of a store written by :func:`colorize_to_zarr`, or None.

    None means ``path`` is not such a store (missing, a file, a folder or zarr store of
    something else).  The record holds ``fingerprint`` and ``complete`` besides the
    job's input, model and options.  A store killed while being created (its markers
    folder made, its record not yet written, no results in it) gives
    ``{"complete": False}``: ours, unfinished, of no known job.
    """
    if not os.path.isdir(path):
        return None
    try:
        job = dict(open_group(str(path), "r").attrs).get(_ATTR)
    except Exception:  # noqa: BLE001 -- unreadable or not zarr: not ours, unless killed while being created
        job = None
    if job is None and os.path.isdir(os.path.join(path, MARKERS)):
        return {"complete": False}
    return job if isinstance(job, dict) else None


def is_complete(path: str | os.PathLike) -> bool:
    """True when ``path`` is a store written completely by :func:`colorize_to_zarr`."""
    return bool((read_job(path) or {}).get("complete"))


def done_as_asked(path: str, fingerprints: tuple[str, ...], outputs: Sequence[str], placement: Placement,
                  recorded: dict | None) -> bool:
    """Whether ``path`` is a finished store of this job, under these axis names, that already
    says this run's placement: nothing would be written, so it needs no lock."""
    job = read_job(path) or {}
    return (bool(job.get("complete")) and job.get("fingerprint") in fingerprints
            and store_has_layout(path, outputs, placement) and placement_current(path, outputs, placement, recorded))


def claim_path(path: str, fingerprints: tuple[str, ...], overwrite: bool,
                same_layout: Callable[[], bool], advice: str = "") -> bool | None:
    """Decide what to do with whatever is at ``path`` before a store is written there.

    Returns None when a new store is to be created (nothing there, an empty folder, or
    a store of another job that ``overwrite`` replaces, or in which no chunk was finished
    and that no cluster wrote),
    and otherwise whether the
    store of this same job (and, ``same_layout()``, under the same axis names) is complete (an unfinished one is resumed: that is not an
    overwrite, and recomputing it would give the identical result).

    Raises
    ------
    FileExistsError
        For a file, for anything not written by napari-colorize (never deleted, even
        with ``overwrite``), and for a store of another job without ``overwrite``.
    """
    if os.path.lexists(path) and not os.path.isdir(path):
        raise FileExistsError(f"{path} is a file, not a zarr store; it is never replaced: choose a folder path "
                              "such as out.zarr")
    if not os.path.exists(path) or _is_empty_folder(path):
        return None
    job = read_job(path)
    if job is None:
        raise FileExistsError(f"{path} holds something that was not written by napari-colorize; it is never "
                              "deleted, not even with overwrite=True (--overwrite): move it or choose another path")
    if job.get("fingerprint") in fingerprints and same_layout():
        return bool(job.get("complete"))
    if "fingerprint" not in job and not os.path.islink(path):
        if _created_only(path):
            shutil.rmtree(path)  # killed while being created: no result in it to lose
            return None
        if not overwrite:  # its job is unknown: maybe this one, after a passing file-system error
            raise FileExistsError(f"{path} is a napari-colorize store whose job record cannot be read (torn, or a "
                                  "file-system error); run again, or pass overwrite=True (--overwrite) to replace it")
    if not job.get("complete") and not job.get("cluster") and _no_chunk_done(path) and not os.path.islink(path):
        # Another job's store in which no chunk was finished (killed early, say): nothing to
        # lose, and the next run should not need overwrite.  Not one written on a cluster: a
        # cancelled task may still be running there, and removing the folder under it races
        # its writes (still_writing narrows that window; it cannot close it).
        shutil.rmtree(path)
        return None
    if not overwrite:
        if job.get("failed"):
            raise FileExistsError(f"{path} holds the store of an earlier run on a dask.distributed cluster whose input "
                                  "failed its checks (NaN, values outside [0, 1]): nothing in it is worth keeping. Once "
                                  "that run's tasks have stopped, pass overwrite=True (--overwrite) to replace it, or "
                                  "choose another output path")
        state = "a finished" if job.get("complete") else "an unfinished"
        raise FileExistsError(f"{path} already holds {state} result of a different colorization job (another "
                              "input, model, options or axis names); pass overwrite=True (--overwrite) to replace it, or "
                              f"choose another output path{advice}")
    if os.path.islink(path):
        raise FileExistsError(f"{path} is a link to a store; replace the store it points to, or choose another path")
    shutil.rmtree(path)
    return None


def still_writing(path: str, job: str) -> bool:
    """Whether the store at ``path`` is still the unfinished store of job ``job``.

    On a dask.distributed cluster a task keeps running after its call was cancelled or
    raised, and the next call may meanwhile have replaced the store (``overwrite``) with
    another job's: a chunk and marker written there would be taken for that job's own.
    Checked before a chunk is written and again before its marker (one small attribute
    read per chunk): a task that finds the store finished or replaced writes nothing, and
    one that was already writing when it was replaced leaves a chunk without its marker,
    which the new job rewrites.  Only a replacement within the few milliseconds of one
    chunk's write can still meet it, which is why a cluster's stores are never replaced
    unasked (:func:`claim_path`).
    """
    record = read_job(path) or {}
    return record.get("fingerprint") == job and not record.get("complete")


def discard_failed(path: str, existed: bool, cluster: bool) -> None:
    """Remove the store this call made for an input that failed its checks; on a cluster, mark
    it so (:func:`claim_path` then says so when it refuses it), since a task still running on
    a worker could rebuild a removed store's folders as something that is no store."""
    if cluster:
        group = open_group(path, "r+")
        group.attrs[_ATTR] = dict(group.attrs[_ATTR], failed="input values")
        return
    shutil.rmtree(path, ignore_errors=True)
    if existed:  # the empty folder it was given stays
        os.makedirs(path, exist_ok=True)


def local_store_path(path: str | os.PathLike) -> str:
    """``path`` made absolute, or a clear refusal of what would not be a local store there."""
    text = os.fspath(path)
    if not str(text).strip():
        raise ValueError("the store path is empty; give a folder path such as out.zarr")
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]+://", str(text)):  # it became a local folder 's3:/bucket/...'
        raise ValueError(f"{text} is a URL; colorize_to_zarr writes local (or mounted) folders only: write to a "
                         "local path, then copy the store")
    path = os.path.abspath(text)
    nearest = next((p for p in Path(path).parents if os.path.exists(p)), None)  # the folder it would be made in
    if nearest is not None and not nearest.is_dir():
        raise FileExistsError(f"{nearest} is a file, so no store can be made inside it at {path}; choose another path")
    return path


@contextlib.contextmanager
def said_unwritable(path: str) -> Iterator[None]:
    """Name the store when it cannot be written, not one of its inner files ("[Errno 1]
    Operation not permitted: '.../f.zarr/.zgroup.ffac8dea...partial'")."""
    try:
        yield
    except OSError as err:
        named = err.filename if isinstance(err.filename, (str, bytes, os.PathLike)) else None
        inside = named is not None and os.path.abspath(os.fsdecode(named)).startswith(
            os.path.join(path, ""))  # only the store's own files: an input that cannot be read says so itself
        if err.errno not in READ_ONLY_ERRNOS or not inside:
            raise
        raise type(err)(err.errno, f"cannot write in {path} ({err.strerror}): the store or its folder is read-only "
                                   "or not yours; choose another path, or make it writable") from err


def _no_chunk_done(path: str) -> bool:
    """Whether the store's markers folder exists and is empty (a missing one proves nothing)."""
    try:
        with os.scandir(os.path.join(path, MARKERS)) as entries:
            return next(entries, None) is None
    except OSError:
        return False


def _created_only(path: str) -> bool:
    """A store whose attributes were read and hold no job record: killed between its creation
    and its record, which comes before any chunk.  Unreadable attributes (torn, a permission
    or network error) prove nothing: such a store is never deleted without overwrite."""
    try:
        return _ATTR not in dict(open_group(path, "r").attrs)
    except Exception:  # noqa: BLE001 -- any failure to read: not provably empty
        return False


def _is_empty_folder(path: str) -> bool:
    with os.scandir(path) as entries:
        return next(entries, None) is None
