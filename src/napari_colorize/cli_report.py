"""What ``napari-colorize colorize`` reports: the summary of a run, and each failure in the CLI's own words.

Every line names an input as the user wrote it (:attr:`~napari_colorize.cli_inputs.Job.written`),
and the engine's advice, given in API terms (``overwrite=True``), is said with the
command's options, as this run can follow it.
"""

from __future__ import annotations

import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .cli_inputs import Job
from ._locks import OutputBusyError

__all__ = ["Summary", "failure_message", "in_cli_words", "warning_in_cli_words"]


#: Inputs left to other runs named after the first (two runs on a folder of thousands leave many).
_LEFT_NAMED = 10


@dataclass
class Summary:
    done: list[tuple[Path, float]] = field(default_factory=list)  # (input as written, megapixels)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    # Inputs whose outputs another live run holds locked: that run colours them, so they are
    # not failures (two runs on one folder with --skip-existing are meant to share the work).
    left: list[tuple[str, str]] = field(default_factory=list)
    # Inputs of more than 8 bits per pixel whose colour was written as 8-bit RGB.
    deep: list[Path] = field(default_factory=list)
    start: float = field(default_factory=time.perf_counter)

    def report(self, stream=None, not_started: int = 0) -> None:
        """The counts and each failure; ``not_started``: inputs an interrupted run left unfinished (the one it was colouring among them)."""
        stream = stream or sys.stderr
        elapsed = time.perf_counter() - self.start
        mp = sum(m for _, m in self.done)
        others = f"; left to another run {len(self.left)}" if self.left else ""
        unfinished = f"; not finished {not_started}" if not_started else ""
        rate = mp / max(elapsed, 1e-9)
        print(f"colorized {len(self.done)} file(s), {mp:.1f} MP in {elapsed:.1f} s ({rate:.2f} MP/s); "
              f"skipped {len(self.skipped)}; failed {len(self.failed)}{others}{unfinished}", file=stream)
        for name, reason in self.failed:
            print(f"  FAILED {name}: {reason}", file=stream)
        if self.left:  # one line, not one per file: two runs sharing a folder hand each other many
            name, reason = self.left[0]
            print(f"  LEFT {name}: {reason}", file=stream)
        if len(self.left) > 1:
            names = [name for name, _ in self.left[1:]]
            more = f", and {len(names) - _LEFT_NAMED} more" if len(names) > _LEFT_NAMED else ""
            print(f"  LEFT the same way: {', '.join(names[:_LEFT_NAMED])}{more}", file=stream)
        if self.deep:
            print(f"note: {len(self.deep)} input(s) have more than 8 bits per pixel (such as {self.deep[0].name}); "
                  "their colour outputs hold 8-bit RGB: --rgb-dtype float32 with --format tiff or zarr keeps "
                  "their depth", file=stream)

    def exit_code(self) -> int:
        """1 if any input failed, else 0: inputs left to another run are that run's to colour."""
        return 1 if self.failed else 0


def _replace_advice(policy: str) -> str:
    """How to replace another job's store in this run's terms: --overwrite and --skip-existing exclude each other."""
    if policy == "skip":
        return "delete that store, or colour that input alone with --overwrite instead of --skip-existing"
    return "pass --overwrite to replace it"


def in_cli_words(text: str, policy: str) -> str:
    """The zarr writer's advice (``overwrite=True (--overwrite)``) said with this command's options."""
    advice = _replace_advice(policy)
    for engine, cli in (
            ("; pass overwrite=True (--overwrite) to replace it, or choose another output path",
             f"; {advice}, or choose another -o"),
            ("run again, or pass overwrite=True (--overwrite) to replace it", f"run again, or {advice}"),
            ("not even with overwrite=True (--overwrite): move it or choose another path",
             "not even with --overwrite: move it or choose another -o")):
        text = text.replace(engine, cli)
    return text


def warning_in_cli_words(text: str) -> str:
    """A scaling warning's advice, given in API terms (``normalize='percentile' (--normalize
    percentile, microscopy)``), said with this command's option only (``--normalize percentile``).
    The API's ``normalize='dtype'`` is this command's default, and its ``limits=`` has no option here."""
    text = text.replace("as normalize='dtype' does", "as without --normalize").replace("; pass limits=(lo, hi) to choose", "")
    text = text.replace(" (e.g. np.nan_to_num)", "")  # a numpy function is no advice on the command line
    text = re.sub(r" \(--normalize(?: \w+)?(?:, ([^)]*))?\)", lambda m: f" ({m.group(1)})" if m.group(1) else "", text)
    text = re.sub(r"normalize='(\w+)'", r"--normalize \1", text)
    return re.sub(r"(--normalize \w+[^']*?) or '(\w+)'", r"\1 or --normalize \2", text)


def failure_message(err: Exception, job: Job, policy: str) -> str:
    """Our own errors say what to do; a full disk is named as such; anything else also names its type."""
    from ._atomic import DiskFullError, FileTooLargeError, space_error

    target = next(iter(job.targets.values()))
    err = space_error(err, target) or (DiskFullError(target) if _out_of_space(err, target) else err)
    if isinstance(err, (DiskFullError, FileTooLargeError)) and job.fmt == "zarr":
        return (f"{err} (the chunks already written are kept: run the same command again, with --skip-existing "
                "if other outputs are finished, to finish the store)")
    if isinstance(err, (ValueError, FileExistsError, FileNotFoundError, OutputBusyError, DiskFullError,
                        FileTooLargeError)):
        return in_cli_words(warning_in_cli_words(str(err)), policy)  # the value checks speak the API's words
    return f"{type(err).__name__}: {err}"


def _out_of_space(err: Exception, target: Path) -> bool:
    """An OSError without an errno (zarr's short writes) on a disk with under 1 MB left."""
    if not isinstance(err, OSError) or err.errno is not None:
        return False
    folder = next((p for p in target.parents if p.is_dir()), None)
    try:
        return folder is not None and shutil.disk_usage(folder).free < 2**20
    except OSError:
        return False
