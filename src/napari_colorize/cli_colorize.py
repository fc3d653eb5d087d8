"""``napari-colorize colorize``: colour files, folders and globs at full resolution.

One output set per input (``NAME_colorized``, ``NAME_confidence``, ``NAME_entropy``)
under the output folder, as PNG, TIFF or OME-Zarr, keeping each input's path below
its input argument (``scans/a/y.png`` -> ``OUT/a/y_colorized.png``).  Everything that
can be checked is checked once before the first input: the model and options, name
clashes, outputs over inputs, and existing outputs (refused unless --skip-existing
or --overwrite).  Files are written under a temporary name and renamed when
complete; zarr stores resume chunk by chunk.  Each output is locked while written,
so two runs on one folder never write the same file: an input another run is
writing is left to it.  A bad file is reported and skipped; the exit code is 1 if any
input failed, 2 if nothing was started.  A list of files can be read with
--files-from (find scans -name '*.tif' | napari-colorize colorize --files-from - -o OUT).

Colour can be guided by reference images (--reference) and colour hints (--hints);
bad guidance is refused before anything is written.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

import numpy as np

from ._atomic import remove_empty_folders
from .cli_guidance import add_guidance_arguments, check_hints_fit, guidance_kwargs
from ._locks import OutputBusyError, OutputLocks
from .cli_inputs import (aliases_note, check_listed_under_base, other_files_note, pass_over_our_outputs, passed_over_note,
                         read_file_list)
from .cli_plan import (CLASH_FIX, FORMATS, STORE, Job, check_output_folder, check_output_writable, make_folder,
                       no_inputs_error, output_folder, outputs_to_write, plan_jobs, preflight)
from .cli_progress import RunProgress, TileCallback, header_megapixels, shows_progress, warnings_as_lines
from .cli_report import Summary, failure_message
from .cli_write import write_pngs, write_tiffs
from .decode import METHODS
from .devices import PRECISIONS
from .outputs import check_output_keys, get_output, output_keys

__all__ = ["add_parser", "run"]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return value


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("colorize", help="colorize gray images (files, folders, globs; PNG/JPEG/TIFF/zarr and more)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="files, folders (searched recursively) or globs")
    p.add_argument("--files-from", metavar="LIST", default=None,
                   help="also colour the files listed in LIST, one path per line or NUL-separated (find -print0); - "
                        "reads standard input; blank lines ignored; paths relative to the current folder")
    p.add_argument("--base", metavar="DIR", default=None,
                   help="keep the listed files' sub-folders below DIR under -o (a/x.png -> OUT/a/x_colorized.png); "
                        "without it their outputs go straight into -o, as for a file argument")
    p.add_argument("-o", "--output", required=True,
                   help="output folder (created if needed; not an input folder); sub-folders of inputs are kept")
    p.add_argument("--model", default="default", help="'default' or a .safetensors file from `napari-colorize train`")
    p.add_argument("--method", default=None, choices=METHODS,
                   help="histogram decoding (default: the model's stored method, else the paper's best for it)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS, help="network precision on a GPU")
    p.add_argument("--tile-size", type=int, default=None, help="tile side in pixels (default per backbone)")
    p.add_argument("--overlap", type=int, default=None, help="overlap of adjacent tiles in pixels")
    p.add_argument("--batch-size", type=_positive_int, default=None,
                   help="tiles per model call (default: 1 on a CPU, about 16 M pixels on a GPU)")
    p.add_argument("--outputs", default=",".join(output_keys()),
                   help=f"comma-separated subset of {','.join(output_keys())} (default: all)")
    p.add_argument("--format", choices=tuple(FORMATS), default=None,
                   help="png, tiff or zarr (default: png for PNG/JPEG inputs, tiff for TIFF, zarr for zarr)")
    p.add_argument("--rgb-dtype", choices=["uint8", "float32"], default="uint8", help="RGB type for tiff/zarr")
    p.add_argument("--saturation", type=float, default=1.0, help="chroma multiplier")
    p.add_argument("--uncalibrated", dest="calibrated", action="store_false",
                   help="ignore the model's stored calibration (temperature, confidence fading, chroma gain)")
    p.add_argument("--normalize", choices=["none", "percentile", "minmax"], default="none",
                   help="percentile: map the 0.1-99.9 percentiles of each image to [0, 1] (microscopy)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS", help="dask.distributed scheduler to run on")
    p.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                   help="start N local worker processes. Each input costs a cluster job (with 2 workers on 2 cores, "
                        "40 files of 400x400 took 74 s, one process 21 s): it pays off with many cores or GPUs and "
                        "large images; for many small files on few cores, leave it out")
    existing = p.add_mutually_exclusive_group()
    existing.add_argument("--skip-existing", action="store_true",
                          help="keep existing outputs: colour only the outputs that are missing")
    existing.add_argument("--overwrite", action="store_true",
                          help="replace existing outputs of napari-colorize (never anything else)")
    p.add_argument("--strict", action="store_true", help="fail colour inputs instead of converting them to gray")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bars (they are drawn only when stderr is a terminal)")
    add_guidance_arguments(p)
    p.set_defaults(func=run)
    return p


def _outputs(text: str) -> tuple[str, ...]:
    try:
        return check_output_keys(s.strip() for s in text.split(",") if s.strip())
    except ValueError:
        raise ValueError(f"--outputs takes a comma-separated subset of {','.join(output_keys())}, got {text!r}") from None


def _policy(args) -> str:
    """What to do with existing outputs (argparse keeps the two flags exclusive)."""
    return "overwrite" if args.overwrite else "skip" if args.skip_existing else "refuse"


def _check_args(args) -> None:
    if args.scheduler is not None and not args.scheduler.strip():  # was taken as no cluster
        raise ValueError("--scheduler is empty; give the scheduler's address (tcp://HOST:8786), or leave it out")
    if args.workers is not None and args.scheduler:
        raise ValueError("give either --scheduler (an existing cluster) or --workers (a local one), not both")
    if not args.inputs and args.files_from is None:
        raise ValueError("give the inputs to colour: files, folders or globs, or --files-from LIST (- for standard "
                         "input)")
    if args.base is not None and args.files_from is None:
        raise ValueError("--base applies to the files of --files-from; input folders keep their sub-folders "
                         "under -o without it")


def _check_model(model: str):
    """The model's checked configuration, read once before starting (not once per input)."""
    from .model import incomplete_note, read_config
    try:
        config = read_config(model)
    except (ValueError, FileNotFoundError) as err:
        raise ValueError(f"--model {model}: {err}") from None
    if (note := incomplete_note(config, model)) is not None:
        print(note, file=sys.stderr)
    return config


def _check_engine(args, config, client) -> None:
    """Check every engine option once, before the first input, with the engine's own checks.

    The tiling is resolved as for an image too large for one pass, where every tiling
    option applies.  In one process the model is loaded here (tensors checked); the
    engine reuses that load for every input.
    """
    from types import SimpleNamespace

    from .devices import autocast, resolve_device
    from .engine import decode_options_for, get_model, resolve_tiling
    from .model import BACKBONES

    decode_options_for(SimpleNamespace(config=config), args.method, args.saturation, args.calibrated)
    device = resolve_device(args.device) if client is None else None
    if device is not None:
        kind = device.type
    else:  # checked on every worker: device, precision, and the model file on their file system
        from .engine.distributed import worker_device_kind, worker_model_path
        from .model import DEFAULT_MODEL
        model_file = worker_model_path(args.model)  # as the engine gives it: the workers are asked once
        kind = worker_device_kind(client, args.device, args.precision,
                                  None if model_file == DEFAULT_MODEL else model_file)
    if args.tile_size is not None or args.overlap is not None:
        min_size = int(getattr(BACKBONES.get(config.backbone), "min_size", 32))
        resolve_tiling(config.backbone, None, kind, args.tile_size, args.overlap, min_size)
    if device is not None:
        with autocast(device, args.precision):  # refuses bf16/fp16 on a CPU
            pass
        try:  # last: the slowest check
            get_model(args.model, device)
        except (ValueError, FileNotFoundError) as err:
            raise ValueError(f"--model {args.model}: {err}") from None


#: Suffixes of an ``-o`` that looks like a file name (the results then go into a folder of that name).
FILE_LIKE = (".png", ".tif", ".tiff", ".jpg", ".jpeg")


def _looks_like_a_file(text: str, out_dir: Path) -> bool:
    """``-o result.png``: a folder of that name is made, which a user may not expect (``-o result.png/`` is clear)."""
    return not out_dir.exists() and out_dir.suffix.lower() in FILE_LIKE and not text.endswith(("/", os.sep))


def run(args) -> int:
    outputs = _outputs(args.outputs)
    _check_args(args)
    guidance = guidance_kwargs(args)  # read and checked once, before anything is planned or written
    policy = _policy(args)
    config = _check_model(args.model)
    out_dir = output_folder(args.output)
    jobs, missing = _plan(args, out_dir, outputs)
    if args.rgb_dtype != "uint8" and any(job.fmt == "png" for job in jobs):
        print(f"note: --rgb-dtype {args.rgb_dtype} applies to tiff and zarr outputs; PNG files hold 8-bit RGB "
              "(add --format tiff to keep float32)", file=sys.stderr)
    to_run, skipped = preflight(jobs, policy, _clash_fix(args))
    if to_run and _looks_like_a_file(args.output, out_dir):
        print(f"note: -o names the folder the results go into; {out_dir} does not exist and is created as a "
              "folder", file=sys.stderr)
    summary = Summary(failed=list(missing), skipped=[j.written for j in skipped])
    kwargs = dict(model=args.model, method=args.method, device=args.device, saturation=args.saturation,
                  calibrated=args.calibrated,
                  normalize=None if args.normalize == "none" else args.normalize, precision=args.precision,
                  tile_size=args.tile_size, overlap=args.overlap, batch_size=args.batch_size, **guidance)
    if to_run:
        check_output_writable(out_dir, to_run)
        finished = False
        try:
            with _client(args) as client:
                _check_engine(args, config, client)
                _run_jobs(to_run, policy, outputs, args, kwargs, client, summary, out_dir)
                finished = True
        except KeyboardInterrupt:
            if not finished:
                raise
            # Every input was done: the signal only cut short the close of --workers' cluster,
            # whose summary (and exit code) is the run's.
    summary.report()
    return summary.exit_code()


def _run_jobs(to_run: list[Job], policy: str, outputs, args, kwargs, client, summary: Summary,
              out_dir: Path) -> None:
    """Colour the jobs in turn under the run's progress bar (closed before any summary is printed)."""
    made: list[Path] = []
    finished = 0
    show = shows_progress(args.no_progress)
    try:  # from the first folder made and header read: a Ctrl-C there also removes the folders and says what is left
        make_folder(out_dir, made)
        megapixels = [header_megapixels(job.written) for job in to_run] if show else [0.0] * len(to_run)
        with RunProgress(megapixels, show) as bars:
            for index, job in enumerate(to_run):
                with bars.file(index, job.written.name) as tiles:
                    _run_job(job, policy, outputs, args, kwargs, client, summary, made, tiles)
                finished += 1
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: what finished is said before the stop
        summary.report(not_started=len(to_run) - finished)
        raise
    finally:  # inputs that failed (or Ctrl-C) leave no empty folders behind
        remove_empty_folders(made)


def _plan(args, out_dir: Path, outputs: tuple[str, ...]) -> tuple[list[Job], list[tuple[str, str]]]:
    """The jobs and the inputs not found, with one note per kind of file passed over.

    Raises
    ------
    FileNotFoundError
        If no input is left to colour.
    """
    others: list[Path] = []
    listed = read_file_list(args.files_from) if args.files_from is not None else []
    if args.files_from is not None and not listed and not args.inputs:  # an empty find: say so, not "no images in "
        raise FileNotFoundError(f"--files-from {args.files_from} lists no files; nothing to colour")
    base = check_listed_under_base(listed, args.base) if args.base is not None else None
    aliases: list[tuple[Path, Path]] = []
    jobs, missing = plan_jobs(args.inputs, out_dir, args.format, outputs, others, listed, base, aliases)
    if aliases:
        print(aliases_note(aliases), file=sys.stderr)
    missing = [(name, _missing_hint(name, reason)) for name, reason in missing]
    jobs, dropped = check_output_folder(out_dir, args.inputs, jobs, base)  # a list's root is its --base
    if dropped:
        print(f"note: {len(dropped)} file(s) inside the output folder {out_dir} were not taken as inputs "
              "(results of an earlier run)", file=sys.stderr)
    jobs, ours = pass_over_our_outputs(jobs)
    if ours:
        print(passed_over_note(ours), file=sys.stderr)
    if others:
        print(other_files_note(others), file=sys.stderr)
    if not jobs:
        raise no_inputs_error([*args.inputs, *listed], missing)
    return jobs, missing


def _missing_hint(name: str, reason: str) -> str:
    """What a missing input's name suggests: ``-`` as an INPUT is a file, not standard input;
    a name that begins or ends with white space is likely a padded line of a list."""
    if name == "-":
        return f"{reason} (to read the inputs' paths from standard input, use --files-from -)"
    if name != name.strip():
        return f"{reason} (the name {name!r} begins or ends with white space: is the line padded?)"
    return reason


def _clash_fix(args) -> str:
    """What to do about a name clash: listed files from several folders keep them apart with --base."""
    if args.files_from is not None and args.base is None:
        return f"{CLASH_FIX}, or give --base DIR to keep the listed files' sub-folders under -o"
    return CLASH_FIX


def _run_job(job: Job, policy: str, outputs, args, kwargs, client, summary: Summary, made: list[Path],
             tiles: TileCallback | None = None) -> None:
    """Colour one input with its outputs locked; its failure is recorded, not raised.

    An output locked by another live run of this host is that run's to write: the input is
    recorded as left to it, not as failed (two runs sharing a folder with --skip-existing each meet the
    file the other is colouring)."""
    try:
        for target in job.targets.values():
            make_folder(target.parent, made)
        with OutputLocks(job.targets.values()):
            # Checked again under the lock: another run may have written outputs since the start.
            narrowed, problems = outputs_to_write(job, policy)
            if problems:
                raise FileExistsError(f"{problems[0]} (found after this run started)")
            if narrowed is None:
                summary.skipped.append(job.written)
                return
            mp, deep = _colorize_one(narrowed, outputs, args, kwargs, client, tiles)
    except KeyboardInterrupt:
        raise
    except OutputBusyError as err:
        # Left only to a run known to be alive (this host's, started before its lock); a lock
        # from another host or container, or whose pid a later process reuses, may be a killed
        # run's: the input then counts as failed, so that a batch job's exit code shows it.
        alive = err.owner is not None and err.owner.known_alive()
        (summary.left if alive else summary.failed).append((str(job.written), failure_message(err, job, policy)))
        return
    except Exception as err:  # noqa: BLE001 -- one bad file must not stop a folder
        summary.failed.append((str(job.written), failure_message(err, job, policy)))
        return
    finally:
        # A batch job never colours an input twice: its cached tiles and histograms (up to
        # ~900 MB) would only crowd out the next input's.
        from .engine.cache import clear_caches
        clear_caches()
    summary.done.append((job.written, mp))
    if deep:
        summary.deep.append(job.written)


@contextlib.contextmanager
def _client(args):
    if args.scheduler:
        from .engine.distributed import connect
        with connect(args.scheduler) as client:
            yield client
    elif args.workers:
        from .engine.distributed import local_cluster
        with local_cluster(args.workers) as client:
            yield client
    else:
        yield None


def _colorize_one(job: Job, outputs, args, kwargs, client, tiles: TileCallback | None = None) -> tuple[float, bool]:
    """Colorize one input into its targets, reporting tiles to ``tiles``; returns its megapixels
    and whether it has more than 8 bits per pixel while its colour was written in 8."""
    with warnings_as_lines(job.written.name):
        return _colorize_source(job, outputs, args, kwargs, client, tiles)


def _colorize_source(job: Job, outputs, args, kwargs, client, bar: TileCallback | None) -> tuple[float, bool]:
    from .io import read_image, source_fingerprint
    from .io.provenance import read_provenance

    # Read through the path as written (the same file): read errors and warnings name what the user sees,
    # not a link's target (.git/annex/objects/SHA256E-...).
    src = job.written
    image = read_image(src, strict=args.strict)
    shape = tuple(image.data.shape)
    check_hints_fit(kwargs, shape, args.hints)  # before this input's outputs are opened
    mp = float(np.prod(shape, dtype=np.int64)) / 1e6
    bits = image.bits or 8 * np.dtype(image.data.dtype).itemsize  # as stored: an 8-bit RGB file's gray is float
    deep = (bits > 8 and (job.fmt == "png" or args.rgb_dtype == "uint8")
            and any(get_output(key).is_rgb for key in job.outputs))
    if job.fmt == "zarr":
        from .engine.zarr_io import colorize_to_zarr
        source_id = source_fingerprint(job.source)
        # The same job's unfinished store is resumed; another job's is replaced only with --overwrite.
        colorize_to_zarr(image.data, job.targets[STORE], outputs=outputs, rgb_dtype=args.rgb_dtype,
                         scale=image.scale(), origin=image.translation(), unit=image.unit, axes=image.axes,
                         source_id=source_id, progress=bar, client=client, overwrite=args.overwrite, **kwargs)
        return mp, deep
    from .engine.pipeline import colorize_stacked
    # No tile cache: the writers compute each tile once (stripes here, one job on a cluster).
    stacked, plan, info = colorize_stacked(image.data, client=client, progress=bar, cache=False, **kwargs)
    um = image.unit == "micrometer"  # the outputs record sizes in micrometers only
    text = read_provenance(src)  # title, author, copyright, date: an archive's catalogue fields
    if job.fmt == "png":
        write_pngs(stacked, plan, job.targets, src, image.pixel_size if um else None, device=info["device"],
                   client=client, progress=bar, text=text)
    else:
        write_tiffs(stacked, plan, job.targets, args.rgb_dtype, axes=image.axes,
                    pixel_size=image.pixel_size if um else None, z_step=image.z_step if um else None,
                    device=info["device"], client=client, progress=bar, text=text)
    return mp, deep
