"""What a colorization job carries into its tasks: the model reference, the options,
progress and cancellation."""

from __future__ import annotations

import os
import threading
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..inference import DecodeOptions

__all__ = ["Cancelled", "ModelRef", "TileOptions", "Monitor", "check_callbacks"]


class Cancelled(Exception):
    """Raised by a computation whose ``cancel`` event was set (checked between tile batches)."""


@dataclass(frozen=True)
class ModelRef:
    """How a task finds its model: a name or path loaded once per process, or an object.

    Tasks on a dask.distributed worker load the model there (by path, through
    :func:`.models.get_model`'s per-process cache) instead of receiving
    pickled weights with every task.
    """

    source: Any
    device: str = "auto"

    def load(self):
        from .models import get_model
        return get_model(self.source, self.device)

    def token(self) -> tuple:
        """A value that changes whenever the model's weights may have changed."""
        if isinstance(self.source, torch.nn.Module):
            from .models import weights_version
            with _TAGS_LOCK:
                tag = _OBJECT_TAGS.setdefault(self.source, uuid.uuid4().hex)
            return ("object", tag, weights_version(self.source), self.device)
        from ..model import resolve_model_path
        path = resolve_model_path(self.source)
        st = os.stat(path)
        return ("file", str(path.resolve()), st.st_size, st.st_mtime_ns, self.device)


#: A random tag per model object (kept outside the object, and only while it lives), so
#: two objects never share cache entries even if one reuses the other's id().
_OBJECT_TAGS: weakref.WeakKeyDictionary[torch.nn.Module, str] = weakref.WeakKeyDictionary()
_TAGS_LOCK = threading.Lock()


@dataclass(frozen=True)
class TileOptions:
    """Everything a batch task needs besides the model and its pixels."""

    decode: DecodeOptions
    precision: str = "fp32"
    normalize: str | None = None
    limits: tuple[float, float] | None = None
    min_size: int = 32
    #: Keep finished batches in the per-process tile cache (for napari, which computes the
    #: three layers separately).  A zarr write turns it off: dask already holds each batch
    #: until every chunk that blends it is written, and a second copy only costs memory.
    cache: bool = True
    #: A reference prior and colour hints in global coordinates (:class:`napari_colorize.guidance.Guidance`).
    guidance: Any = None
    #: A context model's image-level context, shared by every tile (:func:`.context.image_context`).
    context: tuple[float, ...] | None = None


def check_callbacks(progress, cancel) -> None:
    """Refuse a ``progress`` that cannot be called and a ``cancel`` that is no event before
    any work starts (``cancel=True`` was ignored; a bad progress failed after the store was made)."""
    if cancel is not None and not callable(getattr(cancel, "is_set", None)):
        raise TypeError(f"cancel must be a threading.Event (set it to stop the run), got {cancel!r}")
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be a function progress(done, total), got {progress!r}")


@dataclass(eq=False)
class Monitor:
    """Progress reporting and cancellation for computations in this process.

    ``callback(done, total)`` is called after each batch with the number of distinct
    tiles finished so far (cache hits included) and the number of tiles in the whole
    result; computing only part of a result stops below ``total``.
    """

    total: int
    callback: Callable[[int, int], None] | None = None
    cancel: threading.Event | None = None
    _done: set = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("colorization was cancelled")

    def mark_done(self, items) -> None:
        """Count work finished before this computation started (e.g. chunks of an earlier run)."""
        with self._lock:
            self._done.update(items)

    def advance(self, tiles: tuple[int, ...]) -> None:
        # The callback runs under the lock so that reported counts never go backwards.
        with self._lock:
            self._done.update(tiles)
            if self.callback is not None:
                self.callback(len(self._done), self.total)
