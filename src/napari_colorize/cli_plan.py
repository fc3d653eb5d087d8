"""What ``napari-colorize colorize`` will write, decided and checked before anything is computed.

* The inputs and their output names are :mod:`.cli_inputs`'s (re-exported here).
* Refused before starting, all problems in one message and nothing written: two inputs
  that would write one output (``x.png`` and ``x.jpg``), an output that would land on
  or in an input (or an input's store), anything in the way that is not ours (a folder
  or a file without our mark where a PNG/TIFF goes, a file or a foreign folder where a store
  goes: never replaced), and existing outputs unless ``--skip-existing`` or ``--overwrite`` says what to do.
* One rule for PNG, TIFF and zarr: by default an existing output is refused;
  ``--skip-existing`` keeps it (an input whose outputs all exist is skipped);
  ``--overwrite`` replaces our earlier outputs.  An unfinished store is handed to the
  zarr writer, which resumes it if it is this same job (not an overwrite) and
  otherwise replaces it only with ``--overwrite``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from ._atomic import name_max
from .cli_inputs import FORMATS, STORE, Job, argument_root, is_ours, plan_jobs

__all__ = ["CLASH_FIX", "POLICIES", "FORMATS", "STORE", "Job", "plan_jobs", "check_output_folder", "preflight", "outputs_to_write",
           "output_folder", "check_output_writable", "no_inputs_error", "make_folder"]

#: What to do with existing outputs: the default, --skip-existing, --overwrite.
POLICIES = ("refuse", "skip", "overwrite")
#: Problems listed per kind in the refusal before the rest are counted.
_MAX_LISTED = 20

#: What to do about an existing output, in the refusal.
_EXISTING_FIX = "pass --skip-existing to keep it and colour only what is missing, or --overwrite to replace it"


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_output_folder(out_dir: Path, patterns: Sequence[str], jobs: list[Job],
                        base: Path | None = None) -> tuple[list[Job], list[Job]]:
    """Check ``-o`` against the inputs; returns the jobs to keep and those dropped.

    Inputs found by walking a folder that holds the output folder, or listed by
    ``--files-from`` under a root (``--base``, or their own folder) that holds it, are
    dropped when they lie in the output folder: they are results of an earlier run, not
    inputs.  Images there that napari-colorize did not write (scans, with ``-o`` set to a
    sub-folder of the input) are refused, not dropped in silence.  An input folder inside the output folder (``colorize scans -o .``) is walked
    for inputs like any other (results of ours met there are passed over by their mark:
    :func:`.cli_inputs.pass_over_our_outputs`).  ``patterns`` are the input arguments; a list's own root is
    its ``base`` (``-o`` equal to it is refused like an input folder), and without one its
    files go straight into ``-o`` wherever they lie, so no folder of it is refused.

    Raises
    ------
    ValueError
        If ``-o`` is a file, an input folder, inside an input store, or inside an input folder
        and holding images not written by napari-colorize.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"-o {out_dir} is a file; -o takes a folder (created if needed) to write the results into")
    out = out_dir.resolve()
    roots = [(root.resolve(), walked) for root, walked in map(argument_root, patterns)]
    if base is not None:
        roots.append((base.resolve(), True))
    if any(walked and root == out for root, walked in roots):
        raise ValueError(f"the output folder {out_dir} is also an input folder; choose a separate -o folder so that "
                         "outputs never mix with (or get picked up as) inputs")
    # -o as written too: a link to results kept on scratch storage lies in the walked folder
    # as written, though not once resolved.
    from .io import as_written

    written = as_written(out_dir)
    # Also where the walk reached -o through a linked folder of the input tree (input/results ->
    # the -o folder elsewhere); a linked *file* whose target lies in -o is an input like another.
    earlier = [j.from_folder and _inside(j.source, out)
               and (j.root is None or _inside(written, j.root) or _inside(out, j.root.resolve())
                    or _through_linked_folder(j, out)) for j in jobs]
    dropped = [j for j, drop in zip(jobs, earlier) if drop]
    foreign = [j for j in dropped if not is_ours(j)]
    if foreign:  # not results: scans that would be neither coloured nor kept apart from the results
        raise ValueError(f"the output folder {out_dir} lies in an input folder and holds {len(foreign)} image(s) that "
                         f"napari-colorize did not write, such as {foreign[0].written}: they would not be coloured; "
                         "choose an -o folder outside the input folders (or an empty one), or name that folder "
                         "as an input of its own run")
    jobs = [j for j, drop in zip(jobs, earlier) if not drop]
    if any(j.source.parent == out for j in jobs):
        raise ValueError(f"the output folder {out_dir} is also an input folder; choose a separate -o folder so that "
                         "outputs never mix with (or get picked up as) inputs")
    for job in jobs:
        if job.source.is_dir() and _inside(out, job.source):
            raise ValueError(f"the output folder {out_dir} is inside the input {job.written}; choose another -o folder")
    return jobs, dropped


def _through_linked_folder(job: Job, out: Path) -> bool:
    """Whether the walk found ``job`` through a linked folder below its root that leads into ``out``."""
    if job.root is None:
        return False
    folder = job.written.parent
    while folder != job.root and job.root in folder.parents:
        if folder.is_symlink() and _inside(folder.resolve(), out):
            return True
        folder = folder.parent
    return False


def _clashes(jobs: list[Job], fix: str) -> list[str]:
    """Inputs that would write the same output (compared without case: macOS and Windows ignore it)."""
    by_target: dict[str, list[Job]] = {}
    for job in jobs:
        for target in job.targets.values():
            by_target.setdefault(str(target).casefold(), []).append(job)
    seen: set[tuple[Path, ...]] = set()
    lines = []
    for key, group in by_target.items():
        sources = tuple(sorted(j.source for j in group))
        if len(group) > 1 and sources not in seen:
            seen.add(sources)
            target = next(t for t in group[0].targets.values() if str(t).casefold() == key)
            each = "both" if len(sources) == 2 else "all"
            names = sorted(str(j.written) for j in group)
            lines.append(f"{' and '.join(names)} would {each} write {target}: {fix}")
    return lines


def _overlaps(jobs: list[Job]) -> list[str]:
    """Outputs that would land on an input, in an input's folder-store, or around an input.

    Paths are looked up with their parents in sets, so that ten thousand inputs take
    milliseconds, not every target against every input.
    """
    sources = {str(j.source): j for j in jobs}  # compared resolved; named as written
    owner = {str(t): j for j in jobs for t in j.targets.values()}
    lines = []
    for target, job in owner.items():
        hit = next((p for p in _self_and_parents(target) if p in sources), None)  # on or in an input
        if hit is not None:
            lines.append(f"{target} (the output of {job.written}) would be written over the input "
                         f"{sources[hit].written}; choose another -o folder")
    for source, job in sources.items():
        target = next((p for p in _self_and_parents(source)[1:] if p in owner), None)  # an input in a store
        if target is not None:
            lines.append(f"{target} (the output of {owner[target].written}) would be written over the input "
                         f"{job.written}; choose another -o folder")
    return lines


def _self_and_parents(path: str) -> list[str]:
    """``path`` and its parent folders, as strings (Path.parents is slow over many thousand paths)."""
    out = [path]
    while (parent := os.path.dirname(out[-1])) != out[-1]:
        out.append(parent)
    return out


def _folder_blocked(target: Path) -> bool:
    """True if a file stands where a folder of ``target`` goes."""
    for parent in target.parents:
        if os.path.exists(parent):
            return not parent.is_dir()
    return False


def _long_names(jobs: list[Job]) -> list[str]:
    """Output names too long for their file system (temporary and lock names are cut to fit: :func:`._atomic.fitted`)."""
    lines = []
    limits: dict[Path, int] = {}
    for job in jobs:
        for target in job.targets.values():
            if target.parent not in limits:
                limits[target.parent] = name_max(target.parent)
            size, limit = len(os.fsencode(target.name)), limits[target.parent]
            if size > limit:
                lines.append(f"{target.name} ({size} bytes, the output of {job.written.name}) is too long a file "
                             f"name: this file system takes {limit} bytes; shorten the input's name")
    return lines


def _state(target: Path, fmt: str, outputs: Sequence[str]) -> str:
    """What is at an output path.

    "free", "exists" (ours, finished), "unfinished" (a store, resumed or replaced by the
    zarr writer), "partial" (a finished store without some of ``outputs``), "unmarked" (a
    file without our mark) or "blocked" (not ours, or a file where a folder goes: never replaced).
    """
    if not os.path.lexists(target):
        return "blocked" if _folder_blocked(target) else "free"
    if fmt != "zarr":  # a file is ours only if it carries our mark: --overwrite never replaces another's
        from .io import has_our_mark
        return "blocked" if target.is_dir() else "exists" if has_our_mark(target) else "unmarked"
    if not target.is_dir():
        return "blocked"
    from .engine.zarr_io import read_job
    with os.scandir(target) as entries:
        if next(entries, None) is None:
            return "free"
    job = read_job(target)
    if job is None:
        return "blocked"
    if not job.get("complete"):
        return "unfinished"
    return "exists" if set(outputs) <= set(job.get("outputs", ())) else "partial"


def _blocked_message(target: Path, fmt: str) -> str:
    if not os.path.lexists(target):
        return f"a file stands where the folder of {target} goes; it is never replaced: move it or choose another -o"
    if fmt != "zarr" and not target.is_dir():
        return (f"{target} was not written by napari-colorize (it has no napari-colorize mark: another program's "
                "file, or an output of a version before the mark); it is never replaced, not even with --overwrite: "
                "keep it with --skip-existing, move or delete it yourself, or choose another -o")
    if fmt != "zarr":
        return f"{target} is a folder where this output file goes; it is never replaced: move it or choose another -o"
    if not target.is_dir():
        return f"{target} is a file where this zarr store goes; it is never replaced: move it or choose another -o"
    return (f"{target} exists and was not written by napari-colorize; it is never deleted, not even with "
            "--overwrite: move it or choose another -o")


def outputs_to_write(job: Job, policy: str) -> tuple[Job | None, list[str]]:
    """The job narrowed to the outputs this run writes, and why it cannot run (if so).

    Returns ``(None, [])`` when every output exists and ``policy`` is "skip".
    """
    keep: dict[str, Path] = {}
    problems: list[str] = []
    for key, target in job.targets.items():
        state = _state(target, job.fmt, job.outputs)
        if state == "unmarked":  # --skip-existing leaves it as it is (an earlier version's output, say)
            state = "exists" if policy == "skip" else "blocked"
        if state == "blocked":
            problems.append(_blocked_message(target, job.fmt))
        elif state == "partial" and policy != "overwrite":
            problems.append(f"{target} holds a finished result without some of the outputs asked for "
                            f"({','.join(job.outputs)}): pass --overwrite to replace it, or ask only for what it "
                            "holds with --outputs")
        elif state == "exists" and policy == "refuse":
            problems.append(f"{target} already exists: {_EXISTING_FIX}")
        elif state != "exists" or policy == "overwrite":
            keep[key] = target
    if problems:
        return job, problems
    return (replace(job, targets=keep) if keep else None), []


def _listed(lines: list[str]) -> list[str]:
    more = len(lines) - _MAX_LISTED
    return lines[:_MAX_LISTED] + ([f"... and {more} more like these"] if more > 0 else [])


#: What to do about two inputs writing one output, in the refusal.
CLASH_FIX = "rename one of them, or colour them into separate -o folders"


def preflight(jobs: list[Job], policy: str, clash_fix: str = CLASH_FIX) -> tuple[list[Job], list[Job]]:
    """Check every job before anything is computed; ``clash_fix`` says what to do about a name clash.

    Returns
    -------
    to_run : list of Job
        Narrowed to the outputs to write.
    skipped : list of Job
        Jobs whose outputs all exist (``policy == "skip"``).

    Raises
    ------
    ValueError
        Listing every clash, overlap, blocked path and (by default) existing output,
        each with what to do; nothing has been written.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; choose one of {POLICIES}")
    kinds = [_clashes(jobs, clash_fix), _overlaps(jobs), _long_names(jobs)]
    to_run, skipped, existing = [], [], []
    for job in jobs:
        narrowed, issues = outputs_to_write(job, policy)
        existing += issues
        if narrowed is None:
            skipped.append(job)
        elif not issues:
            to_run.append(narrowed)
    kinds.append(existing)
    count = sum(map(len, kinds))
    if count:
        lines = [line for kind in kinds for line in _listed(kind)]
        raise ValueError(f"{count} problem(s) found before starting; nothing was written:\n  " + "\n  ".join(lines))
    return to_run, skipped


def _nearest_existing(folder: Path) -> Path | None:
    """``folder`` or the nearest of its parents that exists (what creating it would meet)."""
    return next((p for p in (folder, *folder.parents) if p.exists()), None)


def output_folder(text: str) -> Path:
    """The ``-o`` folder, refused before anything is planned if it cannot become one.

    Refused: an empty ``-o`` (``Path("")`` is the current folder: a script's unset
    variable would scatter results there), a broken link on its path (creating it
    would fail as "a file is in the way"), and a file above it (every input would
    fail alike); ``-o`` naming a file itself is :func:`check_output_folder`'s to report.
    """
    if not text:
        raise ValueError("-o is empty; give the folder to write the results into (-o . for the current folder)")
    folder = Path(text)
    from .io.files import broken_link_reason, is_broken_link

    link = next((p for p in (folder, *folder.parents) if is_broken_link(p)), None)
    if link is not None:
        raise ValueError(f"cannot create the output folder {folder}: {link} is {broken_link_reason(link)}, or "
                         "choose another -o")
    existing = _nearest_existing(folder)
    if existing is not None and not existing.is_dir() and existing != folder:
        raise ValueError(f"cannot create the output folder {folder}: {existing} is a file; move it or choose "
                         "another -o")
    return folder


def _writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK | os.X_OK)


def check_output_writable(folder: Path, jobs: Sequence[Job] = ()) -> None:
    """Refuse an output folder, or an existing folder in it that ``jobs`` write to, that this
    user cannot make or write in, before anything is written (otherwise every input there
    fails alike, naming a hidden lock file).  Each folder is checked once.

    Checked only when something is to be written: re-running with ``--skip-existing`` over
    a finished, read-only results folder writes nothing and must not fail.
    """
    existing = _nearest_existing(folder)
    if existing is not None and existing.is_dir() and not _writable(existing):
        what = "write in the output folder" if existing == folder else f"create the output folder {folder} in"
        raise ValueError(f"cannot {what} {existing}: permission denied; choose another -o or make it writable")
    nearest: dict[Path, Path | None] = {}  # an output's folder -> what creating it would meet
    writable: dict[Path, bool] = {}
    refused: dict[Path, Path] = {}  # an existing folder -> an output that goes there
    for target in (t for job in jobs for t in job.targets.values()):
        if target.parent in nearest:
            continue
        found = nearest[target.parent] = _nearest_existing(target.parent)
        if found is not None and found not in writable and found.is_dir():
            writable[found] = _writable(found)
            if not writable[found]:
                refused[found] = target
    if len(refused) == 1:
        where, target = next(iter(refused.items()))
        raise ValueError(f"cannot write in {where} (where {target.name} goes, inside the output folder): permission "
                         "denied; make it writable or choose another -o")
    if refused:
        lines = _listed([f"{where} (where {target.name} goes)" for where, target in refused.items()])
        raise ValueError(f"cannot write in {len(refused)} folders inside the output folder: permission denied; "
                         "make them writable or choose another -o:\n  " + "\n  ".join(lines))


def no_inputs_error(inputs: list[str], missing: list[tuple[str, str]]) -> FileNotFoundError:
    """Why nothing is to be done: each missing input named, else no images where looked."""
    if missing:
        return FileNotFoundError("; ".join(f"{name}: {reason}" for name, reason in missing))
    return FileNotFoundError("no input images found in " + ", ".join(repr(a) for a in inputs)
                             + " (PNG, JPEG, TIFF, GIF, PGM/PPM, JPEG 2000 or zarr)")


def make_folder(folder: Path, made: list[Path] | None = None) -> None:
    """Create ``folder`` and its missing parents; those created are added to ``made``, for
    :func:`napari_colorize._atomic.remove_empty_folders` to remove only what this run made: never a folder inside a
    zarr store (an unfinished store keeps its markers folder to be resumed), nor another run's."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if made is not None:
            made += missing
    except FileExistsError:
        raise ValueError(f"cannot create the output folder {folder}: a file is in the way; move it or choose "
                         "another -o") from None
    except OSError as err:
        raise ValueError(f"cannot create the output folder {folder}: {err.strerror}; choose another -o") from None
