"""What ``napari-colorize colorize`` shows while it runs: progress bars and warning lines.

* Bars are drawn only on a terminal.  Redirected to a file (``2> run.log``), every
  redraw (``\\r``, cursor moves) would be kept: a batch of 2,000 scans wrote 540 KB of
  them, with warnings cut into bar fragments.  A log gets clean lines only.
* The run's bar counts megapixels, not files: a tree of small scans with two 12 MP
  files finished its files at "99%" with most of the work left.  The pixel counts come
  from the files' headers (no pixels decoded), read only when the bar is drawn; the
  file count stays in the bar's description (``files 12/2013``).
* An input's own tile bar is drawn only when it has more than one tile.
* Warnings are printed as ``warning: ...`` lines above the bars, never inside them.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from .cli_report import warning_in_cli_words

__all__ = ["RunProgress", "TileCallback", "header_megapixels", "say", "shows_progress", "warnings_as_lines"]

#: The tile callback the engine calls: ``progress(done, total)``.
TileCallback = Callable[[int, int], None]


def shows_progress(no_progress: bool, stream=None) -> bool:
    """Whether bars are drawn: not with ``--no-progress``, and only on a terminal."""
    stream = stream or sys.stderr
    isatty = getattr(stream, "isatty", None)
    return not no_progress and callable(isatty) and bool(isatty())


def say(line: str) -> None:
    """Print ``line`` to stderr above any bar (a bar is cleared and redrawn below it, not cut)."""
    from tqdm import tqdm
    tqdm.write(line, file=sys.stderr)


def header_megapixels(path: Path) -> float:
    """The megapixels of an input's gray planes from its header, without decoding pixels.

    An estimate for the progress bar only: 0 when the header cannot be read (the file
    will fail with its own message when it is coloured).
    """
    from .io import is_zarr
    try:
        with warnings.catch_warnings():  # reading warns again, naming the file, when it is coloured
            warnings.simplefilter("ignore")
            if is_zarr(path):
                from .io import read_image
                return _megapixels(read_image(path).data.shape)  # lazy: only metadata is read
            if path.suffix.lower() in (".tif", ".tiff"):
                return _tiff_megapixels(path)
            return _raster_megapixels(path)
    except Exception:  # noqa: BLE001 -- any unreadable header: the bar's estimate only
        return 0.0


def _megapixels(shape: Sequence[int]) -> float:
    return float(np.prod(shape, dtype=np.int64)) / 1e6


def _tiff_megapixels(path: Path) -> float:
    import tifffile
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        gray = [n for n, axis in zip(series.shape, series.axes) if axis != "S"]  # colour samples become one gray
        return _megapixels(gray) * max(1, len(tif.series))


def _raster_megapixels(path: Path) -> float:
    from PIL import Image as PILImage

    from .io.raster import frame_count
    with PILImage.open(path) as im:
        return im.width * im.height * frame_count(im) / 1e6


def _decimals(total: float) -> int:
    """Decimals for megapixel counts: whole numbers for big runs, enough to move for small ones."""
    return 0 if total >= 100 else 1 if total >= 1 else 3


class RunProgress:
    """The run's bar, in megapixels, and each input's tile bar.

    Parameters
    ----------
    megapixels : sequence of float
        Each input's megapixels, in the order they are coloured.
    show : bool
        Draw bars; otherwise every method does nothing and :meth:`file` yields None.
    """

    def __init__(self, megapixels: Sequence[float], show: bool) -> None:
        self.files = len(megapixels)
        # No header read (all unreadable): the bar counts files, as it cannot weigh them.
        self.unit = "MP" if any(megapixels) else "file"
        self.megapixels = list(megapixels) if self.unit == "MP" else [1.0] * self.files
        self.done_mp = 0.0
        self.files_done = 0
        self.bar = self._run_bar() if show else None

    def _run_bar(self):
        from tqdm import tqdm
        total = sum(self.megapixels)
        d = _decimals(total) if self.unit == "MP" else 0
        counts = f"{{n:.{d}f}}/{{total:.{d}f}} {self.unit}"
        return tqdm(total=total, unit=self.unit, desc=self._files_desc(), file=sys.stderr, leave=False,
                    bar_format="{desc}: {percentage:3.0f}%|{bar}| " + counts + " [{elapsed}<{remaining}, {rate_fmt}]")

    def _files_desc(self) -> str:
        return f"files {self.files_done}/{self.files}"

    def __enter__(self) -> RunProgress:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.bar is not None:
            self.bar.close()

    @contextlib.contextmanager
    def file(self, index: int, name: str) -> Iterator[TileCallback | None]:
        """The tile callback for input ``index`` while it is coloured; the run's bar moves on when it ends."""
        if self.bar is None:
            yield None
            return
        mp = self.megapixels[index]
        tiles = None  # made on the first report of more than one tile

        def update(done: int, total: int) -> None:
            nonlocal tiles
            if tiles is None and total > 1:
                from tqdm import tqdm
                tiles = tqdm(total=total, desc=name, unit="tile", file=sys.stderr, leave=False)
            if tiles is not None:
                tiles.total = total
                tiles.n = done
                tiles.refresh()
            self._move_to(self.done_mp + mp * min(done, total) / max(total, 1))

        try:
            yield update
        finally:
            if tiles is not None:
                tiles.close()
            self.done_mp += mp
            self.files_done += 1
            self.bar.set_description_str(self._files_desc(), refresh=False)
            self._move_to(self.done_mp, force=True)

    def _move_to(self, n: float, force: bool = False) -> None:
        """Move the run's bar to ``n`` MP; redrawn at tqdm's pace, or now if ``force``."""
        self.bar.update(n - self.bar.n)
        if force:
            self.bar.refresh()


@contextlib.contextmanager
def warnings_as_lines(name: str) -> Iterator[None]:
    """Every warning while an input is read and coloured as one ``warning: ...`` line naming the input."""
    from .engine.ome import NgffWarning
    from .inputs import InputScalingWarning
    from .io import ReadWarning

    pending: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ReadWarning)
            warnings.simplefilter("always", InputScalingWarning)
            warnings.simplefilter("once", NgffWarning)
            try:
                yield
            finally:
                pending = list(caught)
    finally:  # outside the recording, which would take back what is shown here
        for w in pending:
            if issubclass(w.category, ReadWarning):  # its message names the file
                say(f"warning: {w.message}")
            elif issubclass(w.category, (InputScalingWarning, NgffWarning)):
                say(f"warning: {name}: {warning_in_cli_words(str(w.message))}")
            else:  # a library's (Pillow's "Corrupt EXIF data"): one line naming the input, not its source line
                say(f"warning: {name}: {str(w.message).strip()}")
