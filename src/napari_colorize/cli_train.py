"""``napari-colorize train``: train or fine-tune a colorizer on folders of colour images."""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
from pathlib import Path

from .devices import PRECISIONS
from .model import BACKBONES, ModelConfig
from .spaces import SPACES
from .training.config import OPTIMIZERS, SCHEDULES

__all__ = ["add_parser", "run", "main"]

_EPILOG = """examples:
  napari-colorize train photos/ -o mymodel.safetensors --steps 3000
  napari-colorize train slides/ -o slides.safetensors --init default --steps 1000   # fine-tunes at lr 5e-4
  napari-colorize train photos/ -o mymodel.safetensors --steps 3000 --resume   # after an interruption
  napari-colorize train photos/ -o mymodel.safetensors --steps 3000 --force    # start over, replacing mymodel

Besides the model, a run writes its resumable state to NAME.ckpt.safetensors and a
JSON-lines log to NAME.log.jsonl beside it (see --checkpoint and --log).  An existing
file that is not a napari-colorize model, checkpoint or log is never replaced.
"""


def _whole(text: str, what: str) -> int:
    """``text`` as a whole number; argparse would name this function ("invalid _positive_int value")."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what} (digits only), got {text!r}") from None


def _positive_int(text: str) -> int:
    value = _whole(text, "a positive integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = _whole(text, "0 or a positive integer")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or a positive integer, got {text}")
    return value


def _number(text: str) -> float:
    """A finite float: nan and inf pass every comparison below, and would train on garbage."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = _number(text)
    if value <= 0:  # a learning rate of 0 trains nothing; a negative one climbs the loss
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or a positive number, got {text}")
    return value


def _pretrained_names() -> tuple[str, ...]:
    return tuple(dict.fromkeys(name for spec in BACKBONES.values() for name in spec.pretrained))


def _pretrained_help() -> str:
    offers = {name: [spec.name for spec in BACKBONES.values() if name in spec.pretrained] for name in _pretrained_names()}
    return "; ".join(f"{name} ({', '.join(specs)}; the weights file must be in torch's cache when offline)"
                     for name, specs in offers.items()) or "none available"


def _configure(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("data", nargs="+", metavar="DATA_DIR", help="folders of colour images (searched recursively; "
                   "PNG, JPEG, TIFF incl. 16-bit); gray and broken files are skipped")
    p.add_argument("-o", "--output", required=True, metavar="MODEL.safetensors",
                   help="model file to write, ending in .safetensors (rewritten at every checkpoint; metadata says "
                        "if complete); an existing model is replaced only with --force, any other file never")
    p.add_argument("--force", action="store_true",
                   help="replace an existing model at --output (and the resumable state of its earlier run), also a "
                        "damaged one of ours; never the installed default model")
    g = p.add_argument_group("model")
    g.add_argument("--backbone", choices=tuple(BACKBONES), default=None,
                   help=f"network (default: {ModelConfig.backbone}, or that of --init)")
    g.add_argument("--space", choices=tuple(SPACES), default=None,
                   help=f"predicted histograms (default: {ModelConfig.space}, or that of --init)")
    g.add_argument("--pretrained", choices=_pretrained_names(), default=None,
                   help="start from a named initialisation of the backbone: " + _pretrained_help())
    g.add_argument("--init", metavar="MODEL", default=None,
                   help="fine-tune from a model file, or 'default' for the shipped model")
    g = p.add_argument_group("optimisation")
    g.add_argument("--steps", type=_positive_int, default=5000, help="total steps (default 5000)")
    g.add_argument("--batch-size", type=_positive_int, default=16, help="crops per step (default 16)")
    g.add_argument("--crop", type=_positive_int, default=192, help="crop side in pixels, multiple of 32 (default 192)")
    g.add_argument("--points", type=_positive_int, default=128, help="sampled pixels per crop (default 128, the paper's)")
    g.add_argument("--scale", type=float, nargs=2, default=(0.5, 1.0), metavar=("LO", "HI"),
                   help="random scale range of crops relative to the decoded image (default 0.5 1.0)")
    g.add_argument("--target-window", type=_positive_int, default=1, metavar="R",
                   help="odd window of the target colour histograms (1 = one-hot; the released code used 7)")
    g.add_argument("--lambda-hue", type=_non_negative_float, default=5.0, help="weight of the hue loss (default 5, the paper's)")
    g.add_argument("--lightness-weight", action="store_true",
                   help="down-weight the chroma loss near black and white (the released code's min(3L, 1, 3(1-L)))")
    g.add_argument("--optimizer", choices=OPTIMIZERS, default=OPTIMIZERS[0],
                   help="adamw (default; much faster from scratch) or sgd (the paper's: momentum 0.9, wd 5e-4)")
    g.add_argument("--lr", type=_positive_float, default=None,
                   help="peak learning rate (default: adamw 2e-3 from scratch, 5e-4 with --init, the shipped model's; "
                        "sgd 1e-3)")
    g.add_argument("--weight-decay", type=_non_negative_float, default=None, help="default 1e-2 adamw, 5e-4 sgd")
    g.add_argument("--warmup", type=_non_negative_int, default=None, help="linear warm-up steps (default 5%% of --steps, <= 500)")
    g.add_argument("--schedule", choices=SCHEDULES, default=SCHEDULES[0],
                   help="learning-rate decay after warm-up (default cosine)")
    g.add_argument("--degrade", type=float, default=0.0, metavar="P",
                   help="probability of each archival degradation of the gray input (grain, blur, JPEG, fading, "
                        "uneven light); the colour target stays clean (default 0)")
    g.add_argument("--dropout", type=float, default=0.0, help="dropout on the head's hidden layer (new models; default 0)")
    g.add_argument("--hidden", type=int, default=None, metavar="UNITS",
                   help="width of the head's hidden layer h_fc1 (new models; default: the backbone's, 128 for compact)")
    g.add_argument("--context", type=int, default=0, metavar="SIDE",
                   help="image-level context: every crop also sees its whole image as a SIDE x SIDE overview "
                        "(new models; e.g. 128; default 0 = none)")
    g.add_argument("--context-dropout", type=float, default=0.0, metavar="P",
                   help="drop a crop's whole context vector with probability P while training (default 0)")
    g.add_argument("--clip-grad", type=_non_negative_float, default=10.0, help="gradient norm clipping, 0 to disable (default 10)")
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    g = p.add_argument_group("data and device")
    g.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps")
    g.add_argument("--threads", type=_positive_int, default=None,
                   help="CPU threads (default: one per core); use 1 when other jobs share the CPU (several times faster)")
    g.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="autocast precision (default bf16 on CUDA, fp32 elsewhere)")
    g.add_argument("--workers", type=_non_negative_int, default=None,
                   help="data loader processes (default 1 on <= 2 CPU cores, else min(4, cores - 1))")
    g.add_argument("--max-side", type=_positive_int, default=512,
                   help="decode each image once, reduced to this long side (default 512)")
    g.add_argument("--min-images", type=_positive_int, default=2, help="fewer usable images is an error (default 2)")
    g.add_argument("--weights", default=None, metavar="MANIFEST.csv",
                   help="per-image sampling weights: CSV with 'file' (or 'path') and 'weight' columns (default: manifest.csv in "
                        "the first DATA_DIR or its parent, if any; 'none' to sample uniformly)")
    g = p.add_argument_group("validation, checkpoints, logging")
    g.add_argument("--val", metavar="DIR", default=None, help="folder of validation images, scored during training")
    g.add_argument("--manifest", default=None, metavar="MANIFEST.csv",
                   help="corpus manifest (columns file, source) for --val-sources/--val-fold (default: next to DATA_DIR)")
    g.add_argument("--val-sources", default=None, metavar="A,B,...",
                   help="validate on these manifest sources; none of their images trains (a source-grouped split)")
    g.add_argument("--val-fold", default=None, metavar="K/N",
                   help="validate on fold K of N source-grouped folds of the manifest (e.g. 0/5)")
    g.add_argument("--hold-out", type=int, action="append", default=[], metavar="K",
                   help="with --val-fold: also keep fold K out of training and validation (a test set); repeatable")
    g.add_argument("--early-stop", type=int, default=0, metavar="N",
                   help="stop after N validations without a lower held-out loss; the model file keeps the best "
                        "weights (default 0: off)")
    g.add_argument("--val-every", type=_positive_int, default=None, help="steps between validations (default: each epoch)")
    g.add_argument("--val-images", type=_positive_int, default=16, help="validation images used (default 16)")
    g.add_argument("--checkpoint", default=None, metavar="STATE.safetensors",
                   help="resumable state file (default: OUTPUT with .ckpt.safetensors)")
    g.add_argument("--checkpoint-every", type=_positive_int, default=250, help="steps between checkpoints (default 250)")
    g.add_argument("--resume", action="store_true",
                   help="continue exactly from the checkpoint (same command otherwise; --steps, --lr and --early-stop "
                        "may change, other settings that shape the run are refused)")
    g.add_argument("--log", default=None, help="JSON-lines log file (default: OUTPUT with .log.jsonl; '' disables)")
    g.add_argument("--log-every", type=_positive_int, default=25, help="steps between log records (default 25)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``train`` subcommand to the ``napari-colorize`` parser."""
    p = subparsers.add_parser("train", help="train or fine-tune a colorizer on colour images",
                              description=__doc__, epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    return _configure(p)


def run(args: argparse.Namespace) -> int:
    """Run ``train`` from parsed arguments; returns the exit code."""
    from .training import TrainConfig, train

    cfg = TrainConfig(
        data=list(args.data), output=args.output, backbone=args.backbone, space=args.space,
        pretrained=args.pretrained, init=args.init, steps=args.steps, batch_size=args.batch_size, crop=args.crop,
        points=args.points, scale=tuple(args.scale), target_window=args.target_window, lambda_hue=args.lambda_hue,
        lightness_weight=args.lightness_weight, optimizer=args.optimizer, lr=args.lr, weight_decay=args.weight_decay,
        warmup=args.warmup, schedule=args.schedule, clip_grad=args.clip_grad or None, seed=args.seed,
        device=args.device, threads=args.threads, precision=args.precision, workers=args.workers, max_side=args.max_side,
        min_images=args.min_images, weights=args.weights, val=args.val, val_every=args.val_every,
        val_images=args.val_images, manifest=args.manifest,
        val_sources=[x.strip() for x in args.val_sources.split(",") if x.strip()] if args.val_sources else None,
        val_fold=args.val_fold, hold_out=list(args.hold_out), early_stop=args.early_stop, degrade=args.degrade,
        dropout=args.dropout, hidden=args.hidden, context=args.context, context_dropout=args.context_dropout,
        checkpoint=args.checkpoint, checkpoint_every=args.checkpoint_every,
        resume=args.resume, force=args.force, log=args.log, log_every=args.log_every, progress=not args.no_progress,
        command=" ".join(["napari-colorize", *map(shlex.quote, getattr(args, "argv", None) or sys.argv[1:])]),
    )
    from ._atomic import no_new_empty_folders
    from ._locks import MODEL_ADVICE, OutputLocks
    from .training.paths import MODEL_SUFFIX

    with no_new_empty_folders(args.output, args.checkpoint, args.log):  # a refused run leaves no folder
        if not args.output.endswith(MODEL_SUFFIX):
            train(cfg)  # refused there, in its words (an empty -o, a folder, another suffix)
            return 0
        output = Path(args.output).expanduser()
        run_files = _run_files(output, args.checkpoint, args.log)
        # One run per model: two (a second one with --resume or --force) interleaved their
        # steps in one log and checkpoint, and the last to finish won.
        with OutputLocks([output], MODEL_ADVICE), OutputLocks(run_files, _RUN_FILES_ADVICE):
            train(cfg)
    return 0


#: What a run is told when its checkpoint or log is another run's.
_RUN_FILES_ADVICE = "let it finish (or stop it), or give --checkpoint and --log names of this run's own"


def _run_files(output: Path, checkpoint: str | None, log: str | None) -> list[Path]:
    """The checkpoint and log the run will write (named or by default), checked writable, to
    be locked with the model: two runs of different models given one checkpoint (or one
    naming another's default) both passed its owner check before either had written it."""
    from .training.paths import check_writable, default_checkpoint_path, default_log_path

    check_writable(output, "output model")  # said of the model, not of a hidden lock file
    files = [(Path(checkpoint).expanduser() if checkpoint else default_checkpoint_path(output), "training checkpoint")]
    if log != "":  # "": no log
        files.append((Path(log).expanduser() if log else default_log_path(output), "training log"))
    seen = {os.path.realpath(output)}
    locked: list[Path] = []
    for path, what in files:
        check_writable(path, what)
        if os.path.realpath(path) not in seen:  # one file named twice is refused later, in words
            seen.add(os.path.realpath(path))
            locked.append(path)
    return locked


def main(argv: list[str] | None = None) -> int:
    """``python -m napari_colorize.cli_train``: the train command on its own."""
    parser = _configure(argparse.ArgumentParser(prog="napari-colorize train", description=__doc__, epilog=_EPILOG,
                                                formatter_class=argparse.RawDescriptionHelpFormatter))
    args = parser.parse_args(argv)
    args.argv = ["train", *(sys.argv[1:] if argv is None else argv)]
    try:
        return run(args)
    except (ValueError, OSError, RuntimeError) as err:
        print(f"napari-colorize train: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
