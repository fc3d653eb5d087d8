"""A per-process LRU cache of finished tile results.

napari computes each layer of a shared dask graph separately (napari issue 1732), so
the colour, confidence and entropy layers of one result would each run the model
once per tile.  Tile batches are therefore kept here, keyed by the graph's name
(a token of the input, the model and every option) and the batch number, so the
second and third layer reuse the first one's model passes.  The cache is bounded in
bytes; the least recently used batches are dropped first.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Any

import numpy as np

__all__ = ["TileCache", "clear_caches", "histogram_cache", "tile_cache"]

#: Default capacity; override with the environment variable NAPARI_COLORIZE_TILE_CACHE_MB.
DEFAULT_CACHE_MB = 512


class TileCache:
    """A thread-safe least-recently-used mapping with a byte budget.

    Parameters
    ----------
    max_bytes : int
        Capacity; 0 disables caching.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[Any, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def _size(value: Any) -> int:
        if isinstance(value, np.ndarray) or isinstance(getattr(value, "nbytes", None), int):
            return int(value.nbytes)  # numpy arrays and torch tensors
        if isinstance(value, dict):
            value = list(value.values())
        if isinstance(value, (list, tuple)):
            return sum(TileCache._size(v) for v in value)
        return 64

    def get(self, key: Any) -> Any | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item[0]

    def put(self, key: Any, value: Any) -> None:
        size = self._size(value)
        if size > self.max_bytes:
            return
        with self._lock:
            if key in self._items:
                self._bytes -= self._items.pop(key)[1]
            self._items[key] = (value, size)
            self._bytes += size
            while self._bytes > self.max_bytes and self._items:
                _, (_, dropped) = self._items.popitem(last=False)
                self._bytes -= dropped

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0
            self.hits = self.misses = 0

    def resize(self, max_bytes: int) -> None:
        """Change the capacity (bytes), dropping old entries as needed."""
        with self._lock:
            self.max_bytes = int(max_bytes)
            while self._bytes > self.max_bytes and self._items:
                _, (_, dropped) = self._items.popitem(last=False)
                self._bytes -= dropped

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)


tile_cache = TileCache(int(float(os.environ.get("NAPARI_COLORIZE_TILE_CACHE_MB", DEFAULT_CACHE_MB)) * 2**20))

#: Default capacity of the histogram cache; override with NAPARI_COLORIZE_HISTOGRAM_CACHE_MB.
DEFAULT_HISTOGRAM_CACHE_MB = 384
#: The network's grid histograms of recent CPU tiles, keyed by input, model and tile only
#: (not by decoding or guidance): moving a colour hint in napari re-decodes the shown
#: tiles without running the network again (a 1024^2 tile's Lab histograms: 64 MB).
histogram_cache = TileCache(int(float(os.environ.get("NAPARI_COLORIZE_HISTOGRAM_CACHE_MB",
                                                     DEFAULT_HISTOGRAM_CACHE_MB)) * 2**20))


def clear_caches() -> None:
    """Empty both per-process caches: finished tiles and network histograms."""
    tile_cache.clear()
    histogram_cache.clear()
