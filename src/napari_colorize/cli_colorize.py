"""``napari-colorize colorize``: colour files, folders and globs at full resolution.

One output set per input (``NAME_colorized``, ``NAME_confidence``, ``NAME_entropy``)
in the output folder, as PNG, TIFF or OME-Zarr.  Files are written under a temporary
name and renamed when complete; zarr stores are resumable chunk by chunk.  A bad file
is reported and skipped; the exit code is 1 if any input failed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["add_parser", "run"]

OUTPUT_NAMES = {"rgb": "colorized", "confidence": "confidence", "entropy": "entropy"}
FORMATS = ("png", "tiff", "zarr")
SUFFIX = {"png": ".png", "tiff": ".tif", "zarr": ".zarr"}


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("colorize", help="colorize gray images (files, folders, globs; PNG/JPEG/TIFF/zarr)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="files, folders (searched recursively) or globs")
    p.add_argument("-o", "--output", required=True, help="output folder (created if needed; not an input folder)")
    p.add_argument("--model", default="default", help="'default' or a .safetensors file from `napari-colorize train`")
    p.add_argument("--method", default=None, choices=["expectation", "median", "mode", "sample"],
                   help="histogram decoding (default: the paper's best for the model)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"], help="network precision on a GPU")
    p.add_argument("--tile-size", type=int, default=None, help="tile side in pixels (default per backbone)")
    p.add_argument("--overlap", type=int, default=None, help="overlap of adjacent tiles in pixels")
    p.add_argument("--batch-size", type=int, default=None,
                   help="tiles per model call (default: 1 on a CPU, about 16 M pixels on a GPU)")
    p.add_argument("--outputs", default="rgb,confidence,entropy",
                   help="comma-separated subset of rgb,confidence,entropy (default: all)")
    p.add_argument("--format", choices=FORMATS, default=None,
                   help="png, tiff or zarr (default: png for PNG/JPEG inputs, tiff for TIFF, zarr for zarr)")
    p.add_argument("--rgb-dtype", choices=["uint8", "float32"], default="uint8", help="RGB type for tiff/zarr")
    p.add_argument("--saturation", type=float, default=1.0, help="chroma multiplier")
    p.add_argument("--normalize", choices=["none", "percentile", "minmax"], default="none",
                   help="percentile: map the 0.1-99.9 percentiles of each image to [0, 1] (microscopy)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS", help="dask.distributed scheduler to run on")
    p.add_argument("--workers", type=int, default=None, metavar="N", help="start N local worker processes")
    p.add_argument("--skip-existing", action="store_true", help="skip inputs whose outputs all exist")
    p.add_argument("--strict", action="store_true", help="fail colour inputs instead of converting them to gray")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
    return p


@dataclass
class Summary:
    done: list[tuple[Path, float]] = field(default_factory=list)  # (input, megapixels)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    start: float = field(default_factory=time.perf_counter)

    def report(self, stream=None) -> None:
        stream = stream or sys.stderr
        elapsed = time.perf_counter() - self.start
        mp = sum(m for _, m in self.done)
        print(f"colorized {len(self.done)} file(s), {mp:.1f} MP in {elapsed:.1f} s ({mp / max(elapsed, 1e-9):.2f} MP/s); "
              f"skipped {len(self.skipped)}; failed {len(self.failed)}", file=stream)
        for name, reason in self.failed:
            print(f"  FAILED {name}: {reason}", file=stream)


def _outputs(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    bad = [n for n in names if n not in OUTPUT_NAMES]
    if bad or not names:
        raise ValueError(f"--outputs takes a comma-separated subset of {','.join(OUTPUT_NAMES)}, got {text!r}")
    return names


def _check_args(args, inputs: list[Path], out_dir: Path) -> None:
    if args.tile_size is not None or args.overlap is not None:
        from .engine.tiling import check_tiling
        tile = args.tile_size if args.tile_size is not None else 1024
        check_tiling(tile, args.overlap if args.overlap is not None else min(128, tile // 4), 32)
    if args.workers is not None and args.scheduler:
        raise ValueError("give either --scheduler (an existing cluster) or --workers (a local one), not both")
    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    folders = {p.parent.resolve() for p in inputs} | {p.resolve() for p in inputs if p.is_dir() and not p.suffix == ".zarr"}
    if out_dir.resolve() in folders:
        raise ValueError(f"the output folder {out_dir} is also an input folder; choose a separate -o folder so that "
                         "outputs never mix with (or get picked up as) inputs")
    for p in inputs:
        if out_dir.resolve() == p.resolve() or p.resolve() in out_dir.resolve().parents and p.suffix == ".zarr":
            raise ValueError(f"the output folder {out_dir} is inside the input {p}; choose another -o folder")


def _targets(src: Path, fmt: str, outputs: tuple[str, ...], out_dir: Path) -> dict[str, Path]:
    stem = src.name[:-len(src.suffix)] if src.suffix else src.name
    if fmt == "zarr":
        return {"store": out_dir / f"{stem}_colorized.zarr"}
    return {name: out_dir / f"{stem}_{OUTPUT_NAMES[name]}{SUFFIX[fmt]}" for name in outputs}


def _format_for(src: Path, chosen: str | None) -> str:
    if chosen:
        return chosen
    from .io import is_zarr
    if is_zarr(src):
        return "zarr"
    return "tiff" if src.suffix.lower() in (".tif", ".tiff") else "png"


def run(args) -> int:
    from .io import find_inputs

    outputs = _outputs(args.outputs)
    inputs, missing = find_inputs(args.inputs)
    out_dir = Path(args.output)
    _check_args(args, inputs, out_dir)
    if not inputs:
        raise FileNotFoundError("no input images found in " + ", ".join(repr(a) for a in args.inputs)
                                + " (PNG, JPEG, TIFF or zarr)")
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = Summary(failed=[(p, r) for p, r in missing])
    kwargs = dict(model=args.model, method=args.method, device=args.device, saturation=args.saturation,
                  normalize=None if args.normalize == "none" else args.normalize, precision=args.precision,
                  tile_size=args.tile_size, overlap=args.overlap, batch_size=args.batch_size)
    input_set = {p.resolve() for p in inputs}
    with _client(args) as client:
        files = _bar(inputs, args, desc="files", unit="file")
        for src in files:
            fmt = _format_for(src, args.format)
            targets = _targets(src, fmt, outputs, out_dir)
            clash = [t for t in targets.values() if t.resolve() in input_set]
            if clash:
                summary.failed.append((str(src), f"its output {clash[0].name} would overwrite an input; skipped"))
                continue
            if args.skip_existing and _finished(targets, fmt):
                summary.skipped.append(src)
                continue
            try:
                mp = _colorize_one(src, fmt, targets, outputs, args, kwargs, client)
            except KeyboardInterrupt:
                raise
            except Exception as err:  # one bad file must not stop a folder
                summary.failed.append((str(src), f"{type(err).__name__}: {err}" if not isinstance(err, ValueError)
                                       else str(err)))
                continue
            summary.done.append((src, mp))
    summary.report()
    return 1 if summary.failed else 0


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


def _bar(items, args, **kwargs):
    if args.no_progress:
        return items
    from tqdm.auto import tqdm
    return tqdm(items, file=sys.stderr, leave=False, **kwargs)


def _finished(targets: dict[str, Path], fmt: str) -> bool:
    if fmt == "zarr":
        from .engine.zarr_io import is_complete
        return is_complete(targets["store"])
    return all(p.exists() for p in targets.values())


def _tile_bar(args, desc: str):
    """A tqdm bar driven by the engine's progress(done, total) callback."""
    if args.no_progress:
        return contextlib.nullcontext(None)
    from tqdm.auto import tqdm
    bar = tqdm(total=0, desc=desc, unit="tile", file=sys.stderr, leave=False)

    def update(done: int, total: int) -> None:
        if bar.total != total:
            bar.total = total
        bar.n = done
        bar.refresh()

    @contextlib.contextmanager
    def ctx():
        try:
            yield update
        finally:
            bar.close()
    return ctx()


def _colorize_one(src: Path, fmt: str, targets: dict[str, Path], outputs, args, kwargs, client) -> float:
    """Colorize one input into ``targets``; returns its megapixels."""
    from .io import ColourInputWarning, read_image

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ColourInputWarning)
        image = read_image(src, strict=args.strict)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    shape = tuple(image.data.shape)
    mp = float(np.prod(shape, dtype=np.int64)) / 1e6
    if fmt == "zarr":
        from .engine.zarr_io import colorize_to_zarr
        store = targets["store"]
        st = os.stat(src)
        source_id = f"{src.resolve()}|{st.st_size}|{st.st_mtime_ns}"
        overwrite = store.exists() and _is_ours(store)
        with _tile_bar(args, src.name) as bar:
            try:
                colorize_to_zarr(image.data, store, outputs=outputs, rgb_dtype=args.rgb_dtype, scale=image.pixel_size,
                                 unit=image.unit, axes=image.axes, source_id=source_id, progress=bar, client=client,
                                 overwrite=False, **kwargs)
            except FileExistsError:
                if not overwrite:
                    raise
                colorize_to_zarr(image.data, store, outputs=outputs, rgb_dtype=args.rgb_dtype, scale=image.pixel_size,
                                 unit=image.unit, axes=image.axes, source_id=source_id, progress=bar, client=client,
                                 overwrite=True, **kwargs)
        return mp
    from .api import colorize_stacked
    with _tile_bar(args, src.name) as bar:
        stacked, plan, _ = colorize_stacked(image.data, client=client, progress=bar, **kwargs)
        if fmt == "png":
            _write_pngs(stacked, targets, src)
        else:
            _write_tiffs(stacked, plan, targets, image.pixel_size if image.unit == "micrometer" else None, args.rgb_dtype)
    return mp


def _is_ours(store: Path) -> bool:
    from .engine.zarr_io import _open_group
    try:
        return "napari_colorize" in dict(_open_group(str(store), "r").attrs)
    except Exception:
        return False


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)


def _write_pngs(stacked, targets: dict[str, Path], src: Path) -> None:
    if stacked.ndim != 3:
        raise ValueError(f"{src.name} is a stack of shape {stacked.shape[:-1]}; PNG holds one plane: use --format tiff or zarr")
    from .io import write_png
    values = np.asarray(stacked.compute())
    channels = {"rgb": values[..., :3], "confidence": values[..., 3], "entropy": values[..., 4]}
    for name, path in targets.items():
        write_png(path, _to_uint8(channels[name]))


def _write_tiffs(stacked, plan, targets: dict[str, Path], pixel_size, rgb_dtype: str) -> None:
    """Fill memory-mapped TIFFs one band of chunk rows at a time (bounded memory)."""
    from .io import tiff_memmaps
    shape = tuple(stacked.shape[:-1])
    specs = {}
    for name, path in targets.items():
        if name == "rgb":
            specs[name] = (path, shape + (3,), rgb_dtype, "rgb")
        else:
            specs[name] = (path, shape, "float32", "minisblack")
    with tiff_memmaps(specs, pixel_size) as maps:
        for plane in plan.planes:
            for cy in range(plan.ty.n_chunks):
                ys = slice(*plan.ty.chunk_range(cy))
                band = np.asarray(stacked[plane + (ys,)].compute())
                if "rgb" in maps:
                    maps["rgb"][plane + (ys,)] = _to_uint8(band[..., :3]) if rgb_dtype == "uint8" else band[..., :3]
                for name, channel in (("confidence", 3), ("entropy", 4)):
                    if name in maps:
                        maps[name][plane + (ys,)] = band[..., channel]
