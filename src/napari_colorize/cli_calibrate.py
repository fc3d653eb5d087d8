"""``napari-colorize calibrate``: fit a model's decoding on held-out colour images and save it.

Two steps, each stored in the new model file's metadata and applied by default by
``colorize``, the Python API and the napari widget:

1. a histogram temperature T: the decoder uses softmax(logits / T), with T chosen to
   minimise the negative log-likelihood of the true colours (T > 1: the network
   was over-confident);
2. confidence fading at that temperature: colour fades to gray where the chroma
   confidence is low, thresholds chosen by --objective among those at least
   --min-colourfulness times as colourful as the truth and not worse than gray.

Use colour images from sources NOT used for training (another collection, another
instrument or session): on its own training images a network looks better
calibrated than it is.  The input model is never changed; OUT is written atomically.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from .decode import METHODS, check_gains

__all__ = ["add_parser", "run"]

_EPILOG = """examples:
  napari-colorize calibrate mymodel.safetensors heldout/ -o mymodel_calibrated.safetensors
  napari-colorize calibrate default photos/val --objective blend -o default_calibrated.safetensors
  napari-colorize calibrate mymodel.safetensors heldout/ -o mymodel.safetensors --force   # in place
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``calibrate`` subcommand to the ``napari-colorize`` parser."""
    p = subparsers.add_parser("calibrate", help="fit a model's temperature and confidence fading on held-out colour "
                              "images (not its training sources) and save the calibrated model",
                              description=__doc__, epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", metavar="MODEL", help="'default' (shipped) or a .safetensors model file")
    p.add_argument("data", nargs="+", metavar="DATA_DIR",
                   help="folders or files of colour images from sources NOT used for training")
    p.add_argument("-o", "--output", required=True, metavar="OUT.safetensors",
                   help="the calibrated model file to write (an existing file only with --force)")
    p.add_argument("--method", default=None, choices=METHODS,
                   help="decoding method to fit the fading for (default: the model's best)")
    p.add_argument("--objective", default="auc", choices=("auc", "psnr", "blend"),
                   help="what the fading maximises: mean AuC, mean PSNR, or AuC + PSNR / 100 (default auc)")
    p.add_argument("--min-colourfulness", type=float, default=0.5, metavar="R",
                   help="keep mean colourfulness >= R x the truth's where possible (default 0.5)")
    p.add_argument("--max-side", type=int, default=256, help="reduce images to this long side first (default 256)")
    p.add_argument("--limit", type=int, default=32, help="use at most this many images, spread evenly (default 32)")
    p.add_argument("--group-by", default=None, metavar="SPEC",
                   help="the source of each image, as for evaluate --group-by (e.g. 'source' from the corpus "
                        "manifest, or level:1 for the folder): then no source may lose more than 0.3 AuC points "
                        "to gray under the chosen fading")
    p.add_argument("--manifest", default=None, metavar="CSV", help="the manifest for --group-by COLUMN")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    p.add_argument("--no-temperature", action="store_true",
                   help="fit no temperature (T = 1, any stored one removed); fit the fading only")
    p.add_argument("--gains", default="1", metavar="G,G,...",
                   help="chroma gains to try with every fading (default 1: none), e.g. 1,1.25,1.5: the median of an "
                        "uncertain histogram is fainter than the colour; a gain > 1 is kept only under the same rule")
    p.add_argument("--force", action="store_true",
                   help="replace OUT if it is a model of ours (never the installed default model)")
    p.set_defaults(func=run)
    return p


def _check_args(args: argparse.Namespace) -> Path:
    """The output path, after every check that needs no model."""
    if not args.output:  # the words of colorize and train for an unset variable in a script
        raise ValueError("-o is empty; give the .safetensors file to write, e.g. -o mine_calibrated.safetensors")
    out = Path(args.output).expanduser()
    if out.suffix != ".safetensors":
        raise ValueError(f"-o {args.output}: the output must be a .safetensors file")
    if out.is_dir():
        raise ValueError(f"-o {args.output} is a folder; give the path of the .safetensors file to write")
    resolved = out.resolve()
    for item in args.data:
        if Path(item).expanduser().resolve() == resolved:
            raise ValueError(f"-o {args.output} is one of the image inputs; choose another output file")
    from .model import is_default_model

    if is_default_model(out):  # before --force is considered: the shipped model is never replaced
        raise FileExistsError(f"-o {args.output} is the installed default model, or a link to it; calibrate never replaces it, even "
                              f"with --force: choose another -o (e.g. -o {out.stem}_calibrated.safetensors) and use "
                              "that model with --model")
    if out.exists():
        from .model import is_model_file
        from .training.checkpoint import is_training_state

        if is_training_state(out) or not is_model_file(out):  # a run's resumable state, or not ours at all
            raise FileExistsError(f"{out} exists and is not a napari-colorize model (a training checkpoint or "
                                  "another file); calibrate never replaces it, even with --force: choose another -o")
        if not args.force:
            raise FileExistsError(f"{out} exists; pass --force to replace it, or choose another -o")
    if not (math.isfinite(args.min_colourfulness) and args.min_colourfulness >= 0):
        raise ValueError(f"--min-colourfulness must be a number >= 0, got {args.min_colourfulness}")
    if args.max_side is not None and args.max_side < 32:
        raise ValueError(f"--max-side must be at least 32, got {args.max_side}")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be at least 1, got {args.limit}")
    from .training.paths import check_writable

    check_writable(out, "calibrated model")  # now, not after the fitting
    return out


#: Fewer images than this get a note: one photograph's colours set the temperature and fading.
FEW_IMAGES = 20


def run(args: argparse.Namespace) -> int:
    """Run ``calibrate`` from parsed arguments; returns the exit code."""
    from ._atomic import no_new_empty_folders

    with no_new_empty_folders(args.output):  # -o's folder is made by the early check: gone if refused
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    import warnings

    from .cli_evaluate import print_warning
    from .devices import resolve_device
    from .evaluate import calibrate
    from .model import incomplete_note, load_model, save_model

    out = _check_args(args)
    gains = check_gains(args.gains)
    # A fresh copy, not the process cache's: the input model stays as it is on disk and in memory.
    model = load_model(args.model, device=resolve_device(args.device))
    if (note := incomplete_note(model.config, args.model)) is not None:
        print(note, file=sys.stderr)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = print_warning
        images = _images(args)
        if len(images) < FEW_IMAGES:
            print(f"note: calibrating on {len(images)} image(s): a temperature and fading fitted on so few may not "
                  f"hold for other images; {FEW_IMAGES} or more, from sources the model was not trained on, give a "
                  "fit to rely on", file=sys.stderr)
        lo, hi = calibrate(model, images, temperature=not args.no_temperature, method=args.method,
                           objective=args.objective, min_colourfulness=args.min_colourfulness,
                           max_side=None, limit=None, device=args.device, group_by=args.group_by,
                           manifest=args.manifest, gains=gains)
    decoding = model.config.decoding
    info = decoding["calibration"]
    t = decoding.get("temperature", 1.0)
    print(f"calibrated on {info['images']} image(s)")
    nll = f"NLL {_num(info['nll_before'])} at T = 1 -> {_num(info['nll_after'])}"
    print(f"temperature: T = {t:.4g} ({nll})" if info["temperature_fitted"] else f"temperature: not fitted, T = 1 ({nll})")
    print(f"confidence fading: {lo:.2f}-{hi:.2f} (objective {args.objective})")
    if "chroma_gain" in decoding:
        print(f"chroma gain: {decoding['chroma_gain']:g}")
    s = info["scores"]
    print(f"mean scores vs gray: AuC {_num(s.get('auc'))} vs {_num(s.get('auc_gray'))}, "
          f"PSNR {_num(s.get('psnr'), 2)} vs {_num(s.get('psnr_gray'), 2)} dB, "
          f"RMSE ab {_num(s.get('rmse_ab'), 2)} vs {_num(s.get('rmse_ab_gray'), 2)}, "
          f"colourfulness {_num(s.get('colourfulness'), 1)} (truth {_num(s.get('colourfulness_truth'), 1)})")
    from ._locks import MODEL_ADVICE, OutputLocks

    with OutputLocks([out], MODEL_ADVICE):  # not while a train or calibrate run writes it
        save_model(model, out)
    print(f"wrote {out}", file=sys.stderr)
    return 0


def _images(args: argparse.Namespace) -> list[tuple]:
    """The images, loaded once, with their paths (for --group-by)."""
    from .evaluate import load_images

    if args.manifest and not args.group_by:
        raise ValueError("--manifest is read for --group-by; give --group-by COLUMN too")
    return load_images(args.data, max_side=args.max_side, limit=args.limit, paths=True)


def _num(value, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"
