"""Which inputs ``napari-colorize colorize`` colours, and what each is named in messages and outputs.

* Output names keep each input's path relative to its input argument: ``scans/a/y.png``
  from the argument ``scans`` goes to ``OUT/a/y_colorized.png`` (a file argument keeps
  its name only, a glob the path below its fixed part).
* Every message names an input as the user wrote it (:attr:`Job.written`, links kept:
  ``scans/1931/harbour.png`` in a git-annex tree), while reading's safety checks compare
  the resolved file (:attr:`Job.source`).
* Files found by walking a folder or glob that napari-colorize wrote (its outputs carry
  its mark) are results of an earlier run, not inputs: they are passed over with one note.
  A file named on the command line is coloured whatever it is: the user asked for it.
* ``--files-from LIST`` adds one path per line (``-``: standard input).  A list is a folder
  walk done by ``find``: its files are taken like walked ones (our earlier outputs in it are
  passed over), so rerunning the same ``find`` pipeline colours nothing twice.  Their outputs
  keep the path below ``--base DIR`` if given (``a/x.png`` and ``b/x.png`` listed with
  ``--base .`` go to ``OUT/a/`` and ``OUT/b/``), else their name only.
"""

from __future__ import annotations

import codecs
import os
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from .outputs import get_output

__all__ = ["FORMATS", "STORE", "Job", "plan_jobs", "argument_root", "pass_over_our_outputs", "passed_over_note", "aliases_note",
           "other_files_note", "read_file_list", "check_listed_under_base"]

#: Output format -> file-name suffix ("zarr": one store per input).
FORMATS = {"png": ".png", "tiff": ".tif", "zarr": ".zarr"}
#: The store of a zarr job, in :attr:`Job.targets`.
STORE = "store"
#: Kinds of other files named in the note about them (the most common first).
_MAX_KINDS = 5
#: Listed files outside --base named in the refusal.
_MAX_OUTSIDE = 5


@dataclass(frozen=True)
class Job:
    """One input and the files (or store) it writes.

    Attributes
    ----------
    source : Path
        The input, resolved: what safety checks compare and duplicates are found by.
    relative : Path
        Its path relative to its input argument (names the outputs).
    fmt : {"png", "tiff", "zarr"}
    targets : dict of str -> Path
        Output key -> file, or ``{"store": path}`` for zarr.
    from_folder : bool
        Found by walking a folder or glob, or listed by ``--files-from`` (not named on the command line).
    outputs : tuple of str
        The output keys asked for (a store holds them all).
    written : Path
        The input as the user named it (absolute, links kept): what it is read through
        and what every message names.
    root : Path or None
        The folder ``relative`` is relative to: the walked folder or glob's folder, a
        list's ``--base`` (or the listed file's own folder), a named file's folder.
    """

    source: Path
    relative: Path
    fmt: str
    targets: dict[str, Path]
    from_folder: bool
    outputs: tuple[str, ...]
    written: Path
    root: Path | None = None


def _format_for(src: Path, chosen: str | None) -> str:
    if chosen:
        return chosen
    from .io import is_zarr
    if is_zarr(src):
        return "zarr"
    return "tiff" if src.suffix.lower() in (".tif", ".tiff") else "png"


def _targets(relative: Path, fmt: str, outputs: Sequence[str], out_dir: Path) -> dict[str, Path]:
    from .io import image_stem
    stem = image_stem(relative.name)
    folder = out_dir / relative.parent
    if fmt == "zarr":
        return {STORE: folder / f"{stem}_colorized{FORMATS['zarr']}"}
    return {key: folder / f"{stem}_{get_output(key).suffix}{FORMATS[fmt]}" for key in outputs}


def argument_root(pattern: str) -> tuple[Path, bool]:
    """(the folder an argument's inputs are named relative to, whether it is a folder or glob).

    Absolute, with links kept as written: outputs are named after the paths the user sees.
    """
    from .io import as_written, is_glob, is_zarr, split_glob

    path = Path(pattern)
    if is_glob(pattern):
        return as_written(split_glob(pattern)[0]), True
    if os.path.isdir(path) and not is_zarr(path):  # not Path.is_dir: no error in an unreadable folder
        return as_written(path), True
    return as_written(path).parent, False


def _below(source: Path, root: Path) -> Path | None:
    """``source``'s path below ``root`` (``.`` for root itself), as written or else with both
    resolved (one side may be resolved: ``..`` in a listed path, the other with its links); None
    if it lies outside."""
    for path, folder in ((source, root), (source.resolve(), root.resolve())):
        try:
            return path.relative_to(folder)
        except ValueError:
            pass
    return None


def _relative(source: Path, root: Path) -> Path:
    # Reached through a link out of the folder: its name only (clashes are caught).
    return _below(source, root) or Path(source.name)


def read_file_list(source: str) -> list[str]:
    """The paths listed one per line in ``source`` (``-``: standard input); blank lines are ignored.

    Read as bytes and decoded as the file system does, so any name ``find`` prints is
    kept; only the line ending is stripped (a name may begin or end with a space), and a
    leading UTF-8 byte-order mark (Windows Notepad writes one), which no path begins with; a list
    in UTF-16 or UTF-32 with its mark (PowerShell's ``>``) is read as text.
    A list holding NUL bytes is split at them instead (``find -print0``): no path holds one.
    """
    try:
        if source == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(source, "rb") as fh:
                data = fh.read()
    except OSError as err:
        raise ValueError(f"--files-from {source}: {err.strerror}; give a file listing one input per line, "
                         "or - to read the list from standard input") from None
    data = _as_file_system_bytes(data)
    if _is_binary(data):
        raise ValueError(f"--files-from {source} is not a list of paths but binary data (an image? name images as "
                         "INPUT arguments); give a text file listing one input per line")
    if b"\0" in data:
        return [os.fsdecode(name) for name in data.split(b"\0") if name.strip()]
    lines = (os.fsdecode(line.rstrip(b"\r")) for line in data.split(b"\n"))
    return [line for line in lines if line.strip()]


#: Control bytes no list of names holds (tab, line ends and NUL separators excepted).
_CONTROL = bytes(set(range(32)) - {9, 10, 13, 0} | {127})


#: How image files begin (an uncompressed TIFF of a black page may hold no other control byte).
_IMAGE_SIGNATURES = (b"\x89PNG", b"\xff\xd8\xff", b"II*\0", b"MM\0*", b"II+\0", b"MM\0+", b"GIF8", b"BM")


def _is_binary(data: bytes) -> bool:
    """Whether ``data`` is binary rather than names: an image file, or control bytes beyond a
    stray one or two (a name may hold one), which an archive has in every few hundred bytes."""
    if data.startswith(_IMAGE_SIGNATURES) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP"):
        return True
    controls = len(data) - len(data.translate(None, _CONTROL))
    return controls > max(2, len(data) // 1000)


def _as_file_system_bytes(data: bytes) -> bytes:
    """The list without its byte-order mark, and a UTF-16 or UTF-32 one (PowerShell's ``>``
    writes UTF-16 with a mark) re-encoded as the file system's names: its NUL bytes would
    split every name."""
    marks = ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),  # UTF-32's first: FF FE 00 00
             (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
    for bom, codec in marks:
        if data.startswith(bom):
            try:
                return os.fsencode(data[len(bom):].decode(codec))
            except UnicodeError:  # odd-length or broken: read it as bytes, as before
                break
    return data.removeprefix(codecs.BOM_UTF8)


def check_listed_under_base(listed: Sequence[str], base: str) -> Path:
    """``--base`` as a folder holding every listed path, or being one (``find DIR`` prints DIR first).

    Compared as written (links kept), else both resolved: a listed ``..`` is resolved, so
    ``scans/a/../b/x.png`` is below ``--base scans`` even where ``scans`` is a link.

    Raises
    ------
    ValueError
        If ``base`` is not a folder, or some listed paths lie outside it.
    """
    from .io import as_written

    folder = as_written(base)
    if not folder.is_dir():
        raise ValueError(f"--base {base} is not a folder; give the folder that the listed files' sub-folders are "
                         "kept below")
    outside = [p for p in listed if _below(as_written(p), folder) is None]
    if outside:
        names = ", ".join(outside[:_MAX_OUTSIDE]) + (", ..." if len(outside) > _MAX_OUTSIDE else "")
        raise ValueError(f"{len(outside)} listed file(s) are outside --base {base} ({names}); nothing was written: "
                         "choose a --base that holds them all, or leave --base out to write every output straight "
                         "into -o")
    return folder


def _sources(patterns: Sequence[str], listed: Sequence[str],
             base: Path | None) -> list[tuple[str, Path | str, bool]]:
    """(argument, the folder its inputs are named relative to or why it cannot be reached,
    walked) for every argument.

    Listed paths count as walked: a list is ``find``'s folder walk.  A missing one listed
    twice is reported once, as a file listed twice is coloured once.
    """
    from .io.files import unreadable_reason

    out: list[tuple[str, Path | str, bool]] = []
    for pattern in patterns:
        root, walked = argument_root(pattern)
        out.append((pattern, root, walked))
    missing: set[str] = set()
    for path in listed:
        if not os.path.lexists(path):  # a listed line is a path, never a glob: missing is missing
            if os.path.abspath(path) not in missing:
                missing.add(os.path.abspath(path))
                out.append((path, unreadable_reason(path), False))
            continue
        root = argument_root(path)[0]
        out.append((path, base or root, True))
    return out


def plan_jobs(patterns: Sequence[str], out_dir: Path, fmt: str | None, outputs: Sequence[str],
              others: list[Path] | None = None, listed: Sequence[str] = (),
              base: Path | None = None, aliases: list[tuple[Path, Path]] | None = None
              ) -> tuple[list[Job], list[tuple[str, str]]]:
    """The jobs for the command-line inputs, and the arguments (or broken links) that matched nothing.

    An input reached from two arguments is coloured once, named after the first; it counts
    as named on the command line if either argument names it.  ``others`` gets the files in
    walked folders and globs that are not images by their name.  ``listed`` are the paths
    of ``--files-from``, named relative to ``base`` if given (see :func:`check_listed_under_base`).
    ``aliases`` gets (name, the input's first name) for each input reached again by another
    name (a link to it, a ``..`` path), which is coloured once.
    """
    from .io import find_inputs, series_output_path

    jobs: dict[Path, Job] = {}
    missing: list[tuple[str, str]] = []
    out_dir = out_dir.resolve()
    for pattern, root, walked in _sources(patterns, listed, base):
        if isinstance(root, str):
            missing.append((pattern, root))
            continue
        found, not_found = find_inputs([pattern], others, aliases)
        missing += not_found
        for written in found:
            source = written.resolve()  # what every safety check compares
            if source in jobs:
                if aliases is not None and written != jobs[source].written:
                    aliases.append((written, jobs[source].written))
                if not walked:  # also named on its own: asked for, whatever a folder walk would pass over
                    jobs[source] = replace(jobs[source], from_folder=False)
                continue
            relative = series_output_path(written, _relative(written, root))  # s.ome.zarr/0: s.ome_0
            chosen = _format_for(written, fmt)
            targets = _targets(relative, chosen, outputs, out_dir)
            jobs[source] = Job(source, relative, chosen, targets, walked, tuple(outputs), written, root)
    return list(jobs.values()), missing


def is_ours(job: Job) -> bool:
    """Whether napari-colorize wrote ``job``'s input, named as its outputs are: a PNG/TIFF with its
    mark (:func:`.io.is_our_output`, headers only), or a store with its job record."""
    from .outputs import output_name_endings
    if job.written.name.endswith(output_name_endings((FORMATS["zarr"],))):  # names first: no stat of every input
        from .engine.zarr_io import read_job
        return job.source.is_dir() and read_job(job.source) is not None
    from .io import is_our_output
    return is_our_output(job.source, job.written.name)


def pass_over_our_outputs(jobs: list[Job]) -> tuple[list[Job], list[Job]]:
    """(the jobs to run, those passed over): inputs found in folders and globs that are our outputs.

    A rerun with another ``-o`` would otherwise colour the earlier results lying in an
    input folder again.  Only files named as outputs are opened (a folder of scans costs
    nothing; a TIFF's header takes about a millisecond), and only their headers are read.
    """
    kept, passed = [], []
    for job in jobs:
        (passed if job.from_folder and is_ours(job) else kept).append(job)
    return kept, passed


def passed_over_note(passed: list[Job]) -> str:
    return (f"note: passed over {len(passed)} file(s) in the input folders that napari-colorize wrote (results of an "
            f"earlier run, such as {passed[0].written}); name one on the command line to colour it anyway")


def other_files_note(others: list[Path]) -> str:
    """One line counting the files in input folders that are not read, by kind (``.txt 3, .gif 1``)."""
    kinds = Counter(p.suffix.lower() or "no suffix" for p in others)
    listed = ", ".join(f"{kind} {n}" for kind, n in kinds.most_common(_MAX_KINDS))
    more = ", ..." if len(kinds) > _MAX_KINDS else ""
    return (f"note: passed over {len(others)} other file(s) in the input folders, not images by their name "
            f"({listed}{more}); name a file on the command line to try it anyway")


def aliases_note(aliases: list[tuple[Path, Path]]) -> str:
    """One line for the inputs reached by two names (``link.png`` is ``scan.png``), coloured once."""
    name, first = aliases[0]
    more = f" and {len(aliases) - 1} more" if len(aliases) > 1 else ""
    return (f"note: {len(aliases)} input(s) resolve to the same file as another input (a link, or identical "
            f"content in a git-annex tree) and are coloured once, under its first name ({name.name} is {first}{more})")
