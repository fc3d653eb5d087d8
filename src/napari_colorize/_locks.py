"""One writer per output file or store: lock files beside the outputs of ``napari-colorize colorize``
and the stores of ``colorize_to_zarr``.

Two runs on one output folder (two terminals, two queue jobs, two threads) would otherwise
write the same files at once: renamed PNGs replacing each other, two processes filling one
zarr store.  Before an input is coloured, each of its outputs gets a lock file
``.NAME.lock`` beside it, created with ``O_CREAT | O_EXCL`` (atomic, also on NFS)
and holding ``pid host``.  A second run finds it and reports the input as being
written by that process.  A lock whose process has died on this host (a killed run)
is taken over; a lock of another host is never judged stale, since its process
cannot be probed from here: the message names the file to delete.  A lock recorded
with this very process's id and host that this process did not make is stale too: a
container restarted gives its command the same pid (often 1) as the killed run had.
``colorize_to_zarr`` takes the same lock of its store (:func:`store_lock`), so the
command line and the API exclude each other; the command line, which holds it already
when it calls ``colorize_to_zarr`` in the same thread, is not refused by its own lock.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ._atomic import HOST, READ_ONLY_ERRNOS, fitted, is_this_host, name_max, owner_gone, pid_alive, process_start_time

__all__ = ["OutputBusyError", "OutputLocks", "lock_path", "store_lock", "live_writer", "CLI_ADVICE", "MODEL_ADVICE"]

#: A lock file without a readable owner (its writer was killed between creating and
#: filling it, a window of microseconds) is stale after this many seconds; so is a
#: ``.break`` file, held only for the microseconds of a takeover.
STALE_AFTER_S = 60.0
#: Tries to create a lock while stale ones are being taken over by other runs.
_ATTEMPTS = 20
#: The locks this process holds (absolute path -> (inode, holding thread)): a lock with our
#: pid but not in here was left by an earlier process that had the same pid.
_HELD: dict[str, tuple[int, int]] = {}
#: What a run of the command line that finds an output locked is told to do.
CLI_ADVICE = "let it finish, then run again with --skip-existing to colour what is left"
#: What a train or calibrate run whose model another run is writing is told.
MODEL_ADVICE = "let it finish (or stop it), or write to another -o"
_HELD_LOCK = threading.Lock()


class OutputBusyError(RuntimeError):
    """An output is being written by another run.

    Parameters
    ----------
    target : Path
        The output file or store.
    owner : _Owner or None
        The process holding its lock, when the lock file could be read.
    advice : str
        What to do, in the words of the front end that met the lock.
    """

    def __init__(self, target: Path, owner: _Owner | None, advice: str = CLI_ADVICE) -> None:
        self.target = target
        self.owner = owner
        who = "another run" if owner is None else f"another run (pid {owner.pid}" + (
            f" on {owner.host})" if not is_this_host(owner.host) else ")")
        super().__init__(f"{target} is being written by {who}; {advice} "
                         f"(if no such run is active, delete {lock_path(target)})")


@dataclass(frozen=True)
class _Owner:
    pid: int
    host: str
    inode: int
    age: float

    def stale(self, lock: Path) -> bool:
        """Whether the run that made ``lock`` is gone: a dead process of this host, or
        this process's pid on a lock it does not hold (an earlier process's, pid reused)."""
        return owner_gone(self.host, self.pid, lambda: self._held_here(lock))

    def _held_here(self, lock: Path) -> bool:
        with _HELD_LOCK:
            return _HELD.get(os.path.abspath(lock), (None,))[0] == self.inode

    def known_alive(self) -> bool:
        """Whether a live run of this host is known to own the lock: its pid runs, and that
        process started before the lock was written (give or take a minute of clock and file
        system time).  A killed run's pid is often reused (after a reboot, almost surely) by
        a process that started later; without /proc, nothing is known."""
        if not is_this_host(self.host) or not pid_alive(self.pid):
            return False
        started = process_start_time(self.pid)
        return started is not None and started <= time.time() - self.age + 60.0


def lock_path(target: Path) -> Path:
    """The lock file of an output: hidden, beside it, so folder walks never take it for an input.

    In its folder's real path, so that two spellings of one folder (a link to it, a relative
    path, ``..``) share one lock.  An output name too long to take ``.`` and ``.lock`` is cut,
    with a hash of the whole name, so that two long names never share a lock."""
    folder = Path(os.path.realpath(target.parent))
    return folder / _sibling_name(f".{target.name}", ".lock", name_max(folder))


def _sibling_name(name: str, suffix: str, limit: int) -> str:
    """``name + suffix``, or where that is too long a name, ``name`` cut, with a hash of the
    whole of it (two long names never share a lock), then ``suffix``."""
    if len(os.fsencode(name + suffix)) <= limit:
        return name + suffix
    digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:12]
    return f"{fitted(name, 1 + 12 + len(os.fsencode(suffix)), limit)}.{digest}{suffix}"


def live_writer(target: Path) -> int | None:
    """The pid of a run that holds ``target``'s lock and is not known to be gone, or None."""
    lock = lock_path(target)
    owner = _read_owner(lock)
    return owner.pid if isinstance(owner, _Owner) and not owner.stale(lock) else None


def _read_owner(lock: Path) -> _Owner | str | None:
    """The owner of ``lock``; None if it is gone; "unreadable" if it holds no ``pid host`` yet."""
    try:
        with open(lock, encoding="utf-8", errors="replace") as fh:
            stat = os.fstat(fh.fileno())
            fields = fh.read(256).split()
    except FileNotFoundError:
        return None
    age = time.time() - stat.st_mtime
    if len(fields) != 2 or not fields[0].isdigit():
        return _Owner(-1, HOST, stat.st_ino, age) if age > STALE_AFTER_S else "unreadable"
    return _Owner(int(fields[0]), fields[1], stat.st_ino, age)


def _try_create(lock: Path) -> bool:
    try:
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    key = os.path.abspath(lock)
    # Held before the file names our pid: another thread of this process that read it
    # earlier would judge it a lock left by an earlier process of this pid, and take it over.
    with _HELD_LOCK:
        _HELD[key] = (os.fstat(fd).st_ino, threading.get_ident())
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{os.getpid()} {HOST}\n")
    except BaseException:  # a full disk: no empty lock may stay behind to block the next run
        with _HELD_LOCK:
            _HELD.pop(key, None)
        lock.unlink(missing_ok=True)
        raise
    return True


def _take_over(lock: Path, stale: _Owner) -> None:
    """Delete ``lock`` if it is still the stale one, one run at a time.

    Two runs that both saw the stale lock must not both delete "it": the second
    would delete the fresh lock the first has just made.  So deleting happens only
    while holding ``lock.break`` (itself O_EXCL), and only if the file is still the
    very one judged stale (same inode).
    """
    breaker = lock.with_name(_sibling_name(lock.name, ".break", name_max(lock.parent)))
    try:
        os.close(os.open(breaker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    except FileExistsError:
        try:
            if time.time() - breaker.stat().st_mtime > STALE_AFTER_S:  # its run was killed mid-takeover
                breaker.unlink()
        except FileNotFoundError:
            pass
        return
    try:
        current = _read_owner(lock)
        if isinstance(current, _Owner) and current.inode == stale.inode and current.stale(lock):
            lock.unlink()
    finally:
        breaker.unlink()


def _acquire(target: Path, advice: str = CLI_ADVICE) -> Path:
    lock = lock_path(target)
    for attempt in range(_ATTEMPTS):
        if _try_create(lock):
            return lock
        owner = _read_owner(lock)
        if owner is None:  # released meanwhile
            continue
        if owner == "unreadable" and attempt < _ATTEMPTS - 1:
            # Just made: its run writes "pid host" into it within microseconds. Read it again,
            # so that a live run is named as one (a busy output is then left to it, not failed).
            time.sleep(0.005 * (attempt + 1))
            continue
        if owner == "unreadable" or not owner.stale(lock):
            raise OutputBusyError(target, owner if isinstance(owner, _Owner) else None, advice)
        _take_over(lock, owner)
        time.sleep(0.01 * attempt)  # another run may be mid-takeover
    raise OutputBusyError(target, None, advice)


def _release(lock: Path) -> None:
    owner = _read_owner(lock)
    with _HELD_LOCK:
        inode = _HELD.pop(os.path.abspath(lock), (None,))[0]
    # Only our own lock: had ours been judged stale and taken over, the file is another run's now.
    if isinstance(owner, _Owner) and owner.inode == inode and owner.pid == os.getpid() and owner.host == HOST:
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()


class OutputLocks:
    """Hold the locks of several outputs (one input's) for a ``with`` block.

    All are taken or none: if one output is busy, the locks already taken are
    released and :class:`OutputBusyError` is raised.  The outputs' folders must exist.
    """

    def __init__(self, targets: Iterable[Path], advice: str = CLI_ADVICE) -> None:
        self.targets = list(targets)
        self.advice = advice
        self.locks: list[Path] = []

    def __enter__(self) -> OutputLocks:
        try:
            for target in self.targets:
                self.locks.append(_acquire(target, self.advice))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        locks, self.locks = self.locks, []
        for lock in locks:
            _release(lock)


@contextlib.contextmanager
def store_lock(target: Path, advice: str, finished: Callable[[], bool] | None = None) -> Iterator[bool]:
    """Hold ``target``'s lock for a ``with`` block, unless this thread holds it already; the
    block gets True, or False when it runs without the lock (below).

    ``colorize_to_zarr``'s lock: two threads or processes filling one store met each
    other's half-made arrays (``ContainsGroupError``, a vanished chunk marker); the second
    now gets :class:`OutputBusyError` with ``advice``.  The command line locks its outputs
    (:class:`OutputLocks`) and then calls ``colorize_to_zarr`` in the same thread, which
    goes on under that lock.  The store's folder is made first, as the store would be.

    ``finished()``: whether the store is already what the caller asks for, so that it needs
    no writer.  Then a lock held by another run, or one that cannot be made (read-only
    media), is no obstacle: the block runs without it (False) and must write nothing.
    """
    lock = lock_path(target)
    with _HELD_LOCK:
        holder = _HELD.get(os.path.abspath(lock), (None, None))[1]
    if holder == threading.get_ident():
        yield True
        return
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        taken = _acquire(target, advice)
    except OutputBusyError:
        if finished is None or not finished():
            raise
        taken = None
    except OSError as err:
        # The folder is not ours to write (read-only media, another user's): a finished store
        # can still be read; anything else would fail to write, so say where (not the lock file).
        if err.errno not in READ_ONLY_ERRNOS or finished is None or not finished():
            if err.errno not in READ_ONLY_ERRNOS | {errno.ENOENT}:  # a full disk, too long a name: as they are
                raise
            raise type(err)(err.errno, f"cannot write in {target.parent} ({err.strerror}); choose a folder you can "
                                       "write to") from err
        taken = None
    if taken is None:
        yield False
        return
    try:
        yield True
    finally:
        _release(taken)
