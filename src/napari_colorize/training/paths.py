"""The files a training run writes, and the rules that keep it from destroying anything.

A run writes three files: the model (``-o NAME.safetensors``), its resumable state
(``NAME.ckpt.safetensors``) and a JSON-lines log (``NAME.log.jsonl``).  None of them may
replace a file that is not this package's own: a model, a training checkpoint or a
training log.  An existing model or checkpoint of ours is replaced only with ``force``
(or continued with ``resume``); so is one cut short or corrupted, recognised as ours by
the start of its header.  The installed default model is never replaced, not even with
``force``.  All of this is checked before any data is loaded.
A resumed run appends to its log; a new one with ``force`` replaces an earlier run's log
(that run is being replaced), so a log holds one run and its resumptions.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .._atomic import atomic_path
from .._safetensors import is_damaged_file_of
from ..model import is_default_model, is_model_file, read_config, resolve_model_path
from ..model.metadata import METADATA_KEY
from .checkpoint import STATE_KEY, is_training_state, read_state_info

__all__ = ["RunFiles", "MODEL_SUFFIX", "check_writable", "default_checkpoint_path", "default_log_path", "plan_files",
           "file_calibration", "JsonLog"]

#: The suffix a model file must have.
MODEL_SUFFIX = ".safetensors"


@dataclass(frozen=True)
class RunFiles:
    """Where a run writes: the model, the resumable state, and the log (None: no log).

    ``replace_log``: the log holds an earlier run that this new one replaces (``force``).
    ``notes``: what the run will replace, said once every check has passed (not before a
    refusal for another reason).
    """

    output: Path
    checkpoint: Path
    log: Path | None
    replace_log: bool = False
    notes: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line for the user: which file is which."""
        log = f"log {self.log}" if self.log is not None else "no log"
        return f"model {self.output}; resumable state {self.checkpoint} (for --resume); {log}"


def _stem(output: Path) -> str:
    return output.name.removesuffix(MODEL_SUFFIX)


def default_checkpoint_path(output: str | os.PathLike) -> Path:
    """``model.safetensors`` -> ``model.ckpt.safetensors`` (the resumable state)."""
    out = Path(output)
    return out.with_name(_stem(out) + ".ckpt" + MODEL_SUFFIX)


def default_log_path(output: str | os.PathLike) -> Path:
    """``model.safetensors`` -> ``model.log.jsonl``."""
    out = Path(output)
    return out.with_name(_stem(out) + ".log.jsonl")


def _check_model_name(output: Path) -> None:
    if output.is_dir():
        raise ValueError(f"the output model path {output} is a folder; give a file name such as "
                         f"{output / ('model' + MODEL_SUFFIX)}")
    if output.suffix != MODEL_SUFFIX:
        raise ValueError(f"the output model must be a {MODEL_SUFFIX} file, got {output}; "
                         f"use e.g. -o {output.with_name(output.stem + MODEL_SUFFIX)}")


def check_writable(path: Path, what: str) -> None:
    """Fail now, not after hours of training, if ``path`` cannot be written."""
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise PermissionError(f"cannot create the folder {parent} for the {what}: {err}") from None
    if path.is_dir():
        raise ValueError(f"the {what} path {path} is a folder; give a file name such as {path / 'model.safetensors'}")
    probe = parent / f".{path.name}.write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise PermissionError(f"cannot write the {what} {path}: {err}; choose a writable location") from None


def _check_distinct(files: RunFiles) -> None:
    named = [("model", files.output), ("checkpoint", files.checkpoint), ("log", files.log)]
    seen: dict[Path, str] = {}
    for what, path in named:
        if path is None:
            continue
        key = path.resolve()
        if key in seen:
            raise ValueError(f"the {seen[key]} and the {what} would both be written to {path}; give them different names")
        seen[key] = what


def _model_summary(path: Path) -> str:
    try:
        training = read_config(path).training
    except ValueError:
        return "a model of napari-colorize"
    if "steps" not in training:
        return "a napari-colorize model"
    state = "complete" if training.get("complete") else "incomplete"
    return f"a napari-colorize model ({state}, {training['steps']} steps)"


def _check_init(init: str | None, output: Path) -> None:
    """Refuse to fine-tune a model in place: its first checkpoint would overwrite the starting
    weights, and a resumed run would describe the interrupted run as its ``init``."""
    if init is None:
        return
    try:
        source = resolve_model_path(init)
    except (FileNotFoundError, ValueError):
        return  # no such model: building the model says so
    # samefile: the same file through a symbolic or a hard link too
    if output.exists() and os.path.samefile(source, output):
        raise ValueError(f"--init {init} is the output model {output}: training would overwrite the model it starts "
                         f"from; write to another file (e.g. -o {output.with_name(_stem(output) + '-tuned' + MODEL_SUFFIX)})")


def _check_not_default(output: Path) -> None:
    """The installed default model is never an output, not even with ``force``: every user of
    this installation gets it as "default"."""
    if is_default_model(output):
        raise FileExistsError(f"-o {output} is the installed default model, or a link to it; training never replaces it, even with "
                              f"--force: choose another -o (e.g. -o {_stem(output)}-tuned{MODEL_SUFFIX}) and use that "
                              "model with --model")


def _check_output_model(output: Path, resume: bool, force: bool) -> None:
    """An existing file at ``output`` is replaced only if it is our model and the user agreed."""
    _check_not_default(output)
    if not output.exists():
        return
    if is_damaged_file_of(output, METADATA_KEY):
        if not force:
            raise FileExistsError(f"{output} is a damaged napari-colorize model (cut short or corrupted); add --force "
                                  "to replace it, or choose another -o name")
        return
    if not is_model_file(output):
        raise FileExistsError(f"{output} exists and is not a napari-colorize model; training never replaces other "
                              f"files: choose another -o name, or move that file away")
    if not (resume or force):
        raise FileExistsError(f"{output} is already {_model_summary(output)}; add --force to replace it, --resume "
                              "to continue its interrupted run, or choose another -o name")


def _recorded_output(settings: Any) -> str | None:
    """The model file a run's recorded settings name (its ``-o``), or None."""
    output = settings.get("output") if isinstance(settings, dict) else None
    return output if isinstance(output, str) else None


def _checkpoint_output(path: Path) -> str | None:
    """The model whose run wrote the checkpoint ``path`` (None: unknown)."""
    try:
        return _recorded_output(read_state_info(path)["info"]["settings"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _first_log_record(path: Path) -> Any:
    """The first record of a JSON-lines log: None for an empty file, the line's bytes if it is not JSON."""
    with open(path, "rb") as fh:
        first = fh.readline(1 << 20)  # a start record carries the run's settings: more than a few bytes
    try:
        return json.loads(first) if first.strip() else None
    except ValueError:
        return first


def _of_another_model(recorded: str | None, output: Path) -> bool:
    """Whether a checkpoint or log names another model file than ``output``.  By file name: the
    recorded path may be relative to a working folder since left."""
    return recorded is not None and Path(recorded).name != output.name


def _check_checkpoint(path: Path, resume: bool, force: bool, output: Path | None = None) -> str:
    """Refuse to replace a checkpoint without ``force``, or one of another model's run at all;
    the note saying it will be replaced ("" if none)."""
    if resume or not path.exists():
        return ""  # resuming reads it (and says so if it is not a checkpoint)
    if is_damaged_file_of(path, STATE_KEY):  # ours, cut short or corrupted: replaced only on request
        if not force:
            raise FileExistsError(f"{path} is the damaged resumable state of an earlier run (cut short or corrupted); "
                                  "add --force to start a new run and replace it, or restore it from a backup and "
                                  "--resume")
        return f"starting a new run; the damaged checkpoint at {path} will be replaced"
    if not is_training_state(path):
        raise FileExistsError(f"the checkpoint path {path} holds a file that is not a napari-colorize training "
                              "checkpoint; training never replaces other files: give --checkpoint another name, "
                              "or move that file away")
    owner = _checkpoint_output(path)
    if output is not None and _of_another_model(owner, output):  # --force meant this model's own run
        raise FileExistsError(f"{path} holds the resumable state of the run of {owner}, not of {output}; it is never "
                              "replaced by another model's run, even with --force: give --checkpoint another name, or "
                              "leave it out")
    if not force:
        raise FileExistsError(f"{path} holds the resumable state of an earlier run; add --resume to continue that "
                              "run, or --force to start a new one and replace it")
    return f"starting a new run; the checkpoint of an earlier run at {path} will be overwritten"


def file_calibration(output: Path) -> tuple[dict[str, Any], int | None] | None:
    """The decoding of a model file that carries a calibration (fitted in place by ``calibrate
    -o``, or inherited and marked ``inherited_from``), and the step of the file's weights; None
    if it has none or cannot be read."""
    try:
        config = read_config(output)
    except (OSError, ValueError):  # damaged or unreadable: nothing to keep or tell
        return None
    if not config.decoding.get("calibration"):
        return None
    steps = config.training.get("steps")
    return dict(config.decoding), steps if isinstance(steps, int) else None


def _replaced_calibration(output: Path) -> str:
    """The note for a model file that a new run (``force``) replaces, calibration and all ("" if none to lose:
    an inherited calibration is the --init model's, which the new run inherits again)."""
    found = file_calibration(output)
    if found is None or "inherited_from" in found[0]["calibration"]:
        return ""
    weights = f"its step-{found[1]} weights" if found[1] is not None else "its weights"
    return (f"{output} carries a calibration that calibrate fitted to {weights}; the new run replaces the model "
            "and that calibration with it")


def _is_training_log(first: Any) -> bool:
    """Whether a log's first record (:func:`_first_log_record`) is one of :class:`JsonLog`'s, or the log is empty."""
    return first is None or (isinstance(first, dict) and "event" in first)


def _check_log(path: Path | None, resume: bool, force: bool, output: Path | None = None) -> bool:
    """Whether the new run replaces the log at ``path`` (ours, and ``force`` without ``resume``).
    Another model's run's log is neither appended to nor replaced."""
    if path is None or not path.exists():
        return False
    first = _first_log_record(path) if not path.is_dir() else b"a folder"
    if not _is_training_log(first):
        raise FileExistsError(f"the log path {path} holds a file that is not a napari-colorize training log; "
                              "training appends only to its own logs: give --log another name ('' for none)")
    owner = _recorded_output(first.get("settings")) if first is not None else None
    if output is not None and _of_another_model(owner, output):
        raise FileExistsError(f"the log {path} is the log of the run of {owner}, not of {output}; training appends "
                              "only to its own model's log: give --log another name ('' for none), or leave it out")
    return force and not resume


def plan_files(output: str | os.PathLike, checkpoint: str | os.PathLike | None, log: str | None, resume: bool,
               force: bool, init: str | None = None) -> RunFiles:
    """The run's files, checked: names, no clashes, writable, and nothing foreign replaced.

    Parameters
    ----------
    output : path-like
        The model file (must end in ``.safetensors``).
    checkpoint : path-like or None
        The resumable state (None: :func:`default_checkpoint_path`).
    log : str or None
        The JSON-lines log (None: :func:`default_log_path`; "": none).
    resume, force : bool
        Continue the run of the checkpoint; replace an existing model / checkpoint of ours.
    init : str or None
        The model training starts from (``--init``): never the output itself.

    Raises
    ------
    ValueError, PermissionError, FileExistsError
        With what to do.
    """
    if not os.fspath(output):  # Path("") is the current folder: say what was given, as colorize does
        raise ValueError(f"-o is empty; give the model file to write, e.g. -o mine{MODEL_SUFFIX}")
    out = Path(output).expanduser()
    _check_model_name(out)
    _check_init(init, out)
    files = RunFiles(out, Path(checkpoint).expanduser() if checkpoint else default_checkpoint_path(out),
                     None if log == "" else Path(log).expanduser() if log else default_log_path(out))
    _check_distinct(files)
    check_writable(files.output, "output model")
    check_writable(files.checkpoint, "training checkpoint")
    if files.log is not None:
        check_writable(files.log, "training log")
    _check_output_model(files.output, resume, force)
    notes = [_check_checkpoint(files.checkpoint, resume, force, files.output)]
    replace_log = _check_log(files.log, resume, force, files.output)
    if replace_log:
        notes.append(f"starting a new run; the log of an earlier run at {files.log} will be replaced")
    if force and not resume and files.output.exists():  # a resumed run keeps it (setup.resumed_decoding)
        notes.append(_replaced_calibration(files.output))
    return replace(files, replace_log=replace_log, notes=tuple(n for n in notes if n))


class JsonLog:
    """JSON-lines log (one record per line), appended to; ``None`` writes nothing.

    ``fresh``: the first record replaces the file's content atomically (a new file beside
    it, then renamed over it), so the old run's log survives until the new run starts.
    """

    def __init__(self, path: Path | None, fresh: bool = False) -> None:
        self.path = path
        self.fresh = fresh

    def write(self, **record: Any) -> None:
        if self.path is None:
            return
        line = json.dumps(record) + "\n"
        if self.fresh:
            with atomic_path(self.path) as new:
                new.write_text(line, encoding="utf-8")
            self.fresh = False
            return
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)
