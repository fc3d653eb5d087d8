"""Atomic file writes and disk-space errors, shared by every writer.

A file is written under a temporary name in its destination folder and then
``os.replace``-d into place, so a run killed while writing leaves either the old file
or the new one, never a torn file.  A full disk gives one :class:`DiskFullError` naming
the file (:class:`FileTooLargeError` for a file beyond the file system's limit), and the
temporary file is always removed.  A run killed with SIGKILL cannot
remove its temporary files; their names carry the host and process id, so the next
write into the same folder removes those whose process is gone (or whose process id is
this very process's, which did not make them: a restarted container reuses pids).
"""

from __future__ import annotations

import errno
import functools
import os
import re
import secrets
import shutil
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

__all__ = ["atomic_path", "temp_folder", "no_new_empty_folders", "remove_empty_folders", "preallocate", "remove_stale_temps", "DiskFullError", "FileTooLargeError", "space_error",
           "name_max", "fitted", "READ_ONLY_ERRNOS"]

#: errno values meaning "no room left" (a full disk, or the user's quota).
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
#: errno values meaning "not ours to write": read-only media or folder, another user's files.
READ_ONLY_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
#: errno values of file systems that cannot preallocate (then free space is checked instead).
_NO_FALLOCATE = frozenset({errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS, errno.ENODEV})
def _host_name() -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname())[:24] or "host"


def _host_id() -> str:
    """This host's name and pid namespace, as temporary and lock files record them (safe in a
    file name).  Containers that share a hostname (host networking, Kubernetes hostNetwork)
    each number their processes: a file recorded in another pid namespace is another
    host's, never judged by this one's pids (its live writer could look dead, or like us)."""
    name = _host_name()
    try:
        namespace = re.sub(r"\D", "", os.readlink("/proc/self/ns/pid"))[:10]
    except OSError:  # not Linux, or /proc hidden: the hostname alone, as before
        return name
    return f"{name}_{namespace}" if namespace else name


#: This host (and pid namespace) as temporary and lock files record it: :func:`_host_id`.
HOST = _host_id()
#: The bare hostname, as versions before the pid namespace recorded it.
_BARE_HOST = _host_name()
def is_this_host(recorded: str) -> bool:
    """Whether a lock or temporary file was recorded here: by :data:`HOST`, or by the bare
    hostname that versions before the pid namespace wrote (judged by this host's pids, as then)."""
    return recorded in (HOST, _BARE_HOST)


#: ``.<stem>.<8 hex>.tmp-<host>-<pid><suffix>``: recognisable, and says whose it is (the stem
#: shortened where the whole would be too long a name: :func:`fitted`).
_TEMP_RE = re.compile(r"^\..*\.[0-9a-f]{8}\.tmp-(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)(\.[^.]*)?$")
_swept: set[Path] = set()
_swept_lock = threading.Lock()
#: Names of the temporary files this process is writing: one with our pid not in here is
#: an earlier process's that had the same pid.
_own_temps: set[str] = set()


class DiskFullError(OSError):
    """The disk (or quota) is full while writing a file; ``errno`` is ``ENOSPC``.

    Parameters
    ----------
    path : Path
        The file being written (its final name).
    needed : int, optional
        Bytes the file needs, when known.
    """

    def __init__(self, path: Path, needed: int | None = None) -> None:
        free = _free_bytes(path.parent)
        need = f"{_mb(needed)} needed, " if needed is not None else ""
        have = f"{_mb(free)} free" if free is not None else "no free space"
        super().__init__(errno.ENOSPC, f"disk full while writing {path}: {need}{have} in {path.parent}; "
                         "free some space or choose another output folder")
        self.filename = str(path)

    def __str__(self) -> str:
        return self.strerror  # the message alone, without "[Errno 28]"


class FileTooLargeError(OSError):
    """A file is larger than its file system (FAT32: 4 GB) or the process's limit allows; ``errno`` is ``EFBIG``."""

    def __init__(self, path: Path, needed: int | None = None) -> None:
        size = f" ({_mb(needed)})" if needed is not None else ""
        super().__init__(errno.EFBIG, f"{path} is too large{size} for the file system of {path.parent} or for this "
                         "process's file size limit (FAT32 holds at most 4 GB per file); write to another disk, or "
                         "write zarr, whose chunks are small files")
        self.filename = str(path)

    def __str__(self) -> str:
        return self.strerror


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def space_error(err: BaseException, path: Path, needed: int | None = None) -> OSError | None:
    """The clear error for a write that ran out of room (full disk, quota, file size limit), else None."""
    if isinstance(err, (DiskFullError, FileTooLargeError)) or not isinstance(err, OSError):
        return None
    if err.errno in DISK_FULL_ERRNOS:
        return DiskFullError(path, needed)
    if err.errno == errno.EFBIG:
        return FileTooLargeError(path, needed)
    return None


def process_start_time(pid: int) -> float | None:
    """When process ``pid`` of this host started (seconds since the epoch), from /proc; None
    where there is no /proc (not Linux) or the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            # Field 22 (start time, clock ticks after boot) counts after the ')' that ends
            # the command name, which may itself hold spaces and parentheses.
            ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat", encoding="ascii") as fh:
            boot = next(int(line.split()[1]) for line in fh if line.startswith("btime "))
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def pid_alive(pid: int) -> bool:
    """Whether a process of this host with this id runs (for stale temporary and lock files)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)  # signal 0: existence check only
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Delete temporary files left in ``folder`` by killed runs of this program on this host.

    Only names made by :func:`atomic_path` whose host is this machine and whose process
    no longer exists are removed (a temporary file of a run still going, or of another
    machine sharing the folder, is kept); so are those with this process's id that it is
    not writing (left by an earlier process with the same id).  Does nothing on Windows,
    where a process cannot be probed without side effects.

    Returns
    -------
    list of Path
        The files removed.
    """
    if os.name != "posix":
        return []
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    for name in names:
        match = _TEMP_RE.match(name)
        if match is None or not owner_gone(match["host"], int(match["pid"]), functools.partial(_made_here, name)):
            continue
        stale = Path(folder) / name
        try:
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()  # a folder: temp_folder's
        except FileNotFoundError:  # another run removed it first
            continue
        removed.append(stale)
    return removed


def owner_gone(host: str, pid: int, made_here: Callable[[], bool]) -> bool:
    """Whether the process that recorded ``host`` and ``pid`` on a lock or temporary file is gone:
    one of this host whose pid is dead, or this very process's pid on a file it did not make
    (``made_here``): an earlier process's, its pid reused.  Another host's is never judged."""
    if not is_this_host(host):
        return False
    return not made_here() if pid == os.getpid() else not pid_alive(pid)


def _made_here(name: str) -> bool:
    with _swept_lock:
        return name in _own_temps


def _sweep_once(folder: Path) -> None:
    """Remove stale temporary files from ``folder`` the first time this process writes there."""
    key = folder.resolve()
    with _swept_lock:
        if key in _swept:
            return
        _swept.add(key)
    remove_stale_temps(key)


def name_max(folder: Path) -> int:
    """The longest file name (bytes) the file system of ``folder`` (or its nearest existing parent) takes."""
    existing = next((p for p in [folder, *folder.parents] if p.is_dir()), None)
    try:
        return os.pathconf(existing, "PC_NAME_MAX") if existing is not None else 255
    except (OSError, ValueError, AttributeError):  # no pathconf (Windows), or no answer
        return 255


def fitted(stem: str, extra: int, limit: int) -> str:
    """``stem``, cut so that with ``extra`` bytes around it a name stays within ``limit`` bytes.

    Temporary and lock names add bytes to an output's name: a legal output name of 250
    bytes refused a whole batch.  Their stem only needs to be recognisable, not whole."""
    cut = stem
    # By whole characters: a character cut in half is no valid name on macOS, Windows or utf8only ZFS.
    while len(cut) > 1 and len(os.fsencode(cut)) + extra > limit:
        cut = cut[:-1]
    return cut


def _new_file(tmp: Path) -> None:
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))


def _create_temp(path: Path, make: Callable[[Path], None] = _new_file) -> Path:
    """Create an empty, new temporary file (or with ``make=os.mkdir`` a folder) beside ``path``; return its name.

    ``os.open`` with mode 0o666 lets the kernel apply the umask (and a folder's default
    ACL), so the final file gets the same permissions as one made by ``open(path, "w")``
    -- unlike ``tempfile.mkstemp`` (always 0600) followed by a ``chmod``, which needs the
    umask, and reading it (``os.umask``) changes it process-wide for a moment, which is
    not thread-safe.
    """
    _sweep_once(path.parent)
    tail = f".{'0' * 8}.tmp-{HOST}-{os.getpid()}{path.suffix}"
    stem = fitted(path.stem, 1 + len(os.fsencode(tail)), name_max(path.parent))
    for _ in range(100):
        tmp = path.with_name(f".{stem}.{secrets.token_hex(4)}.tmp-{HOST}-{os.getpid()}{path.suffix}")
        with _swept_lock:  # named ours before it exists, so that no sweep takes it for an earlier process's
            _own_temps.add(tmp.name)
        try:
            make(tmp)
        except FileExistsError:
            _forget_temp(tmp)
            continue
        except OSError as err:
            _forget_temp(tmp)
            clear = space_error(err, path)
            if clear is not None:
                raise clear from err
            raise
        return tmp
    raise FileExistsError(f"could not create a temporary file beside {path}; "
                          f"remove stale '.{stem}*.tmp*' files there")


def _forget_temp(tmp: Path) -> None:
    with _swept_lock:
        _own_temps.discard(tmp.name)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Write a file atomically: yield a temporary name beside ``path``, then rename it into place.

    The temporary file already exists (empty) when yielded; the writer may overwrite it.
    It keeps ``path``'s suffix (``.tmp-host-pid.png`` ...) so writers that pick a format
    from the name still work.  On a normal exit it replaces ``path`` (``os.replace``,
    atomic on the same file system); on an exception it is deleted and ``path`` is left
    untouched.  A full disk raised inside the block becomes one :class:`DiskFullError`
    naming ``path``.  The destination folder must exist.

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
    except OSError as err:
        clear = space_error(err, path)
        if clear is not None:
            raise clear from err
        raise
    finally:
        if tmp.exists():
            tmp.unlink()
        _forget_temp(tmp)


@contextmanager
def temp_folder(path: str | os.PathLike) -> Iterator[Path]:
    """A new hidden folder beside ``path``, named as :func:`atomic_path`'s files (so a killed
    run's is swept by the next run here), removed with its contents on exit."""
    tmp = _create_temp(Path(path), os.mkdir)
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        _forget_temp(tmp)


def preallocate(tmp: Path, size: int, final: Path) -> None:
    """Reserve ``size`` bytes of disk for the file ``tmp`` now, so a full disk fails here.

    Memory-mapped files are written page by page by the kernel; on a full disk that
    write is a SIGBUS that kills the process without a message.  Reserving the blocks
    first (``posix_fallocate``) turns it into an error before any pixel is computed.
    Where the file system cannot preallocate, the free space is compared instead.

    Raises
    ------
    DiskFullError
        If the disk cannot hold ``size`` bytes.
    FileTooLargeError
        If the file system (or the process's limit) does not allow a file that large.
    """
    if hasattr(os, "posix_fallocate"):
        fd = os.open(tmp, os.O_RDWR)
        try:
            os.posix_fallocate(fd, 0, size)
            return
        except OSError as err:
            clear = space_error(err, final, size)
            if clear is not None:
                raise clear from err
            if err.errno not in _NO_FALLOCATE:
                raise
        finally:
            os.close(fd)
    free = _free_bytes(tmp.parent)
    allocated = getattr(tmp.stat(), "st_blocks", 0) * 512
    if free is not None and size - allocated > free:
        raise DiskFullError(final, size)


def remove_empty_folders(folders: Iterable[Path]) -> None:
    """Remove those of ``folders`` that hold nothing, deepest first (a parent emptied by its
    child's removal goes too); folders holding anything stay (rmdir refuses)."""
    for folder in sorted(set(folders), key=lambda p: -len(p.parts)):
        with suppress(OSError):  # not empty, or gone
            os.rmdir(folder)


@contextmanager
def no_new_empty_folders(*paths: str | os.PathLike | None) -> Iterator[None]:
    """On the way out, remove the folders above ``paths`` that did not exist on the way in
    and are still empty: a command refused after it made its output folder (bad data, a
    failed check) leaves nothing behind."""
    new = {folder for path in paths if path for folder in Path(path).expanduser().absolute().parents
           if not folder.exists()}
    try:
        yield
    finally:
        remove_empty_folders(new)
