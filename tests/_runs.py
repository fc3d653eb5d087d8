"""Another run of this program, stood for by a thread of the test's own process."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

from napari_colorize._locks import OutputLocks


@contextlib.contextmanager
def held_by_another_run(*targets: Path) -> Iterator[None]:
    """Hold the output locks of ``targets`` in another thread for the ``with`` block, as a run
    writing them would (a lock taken by this thread would be this thread's own)."""
    held, done = threading.Event(), threading.Event()

    def other_run() -> None:
        with OutputLocks(list(targets)):
            held.set()
            done.wait(60)

    thread = threading.Thread(target=other_run)
    thread.start()
    try:
        assert held.wait(10)
        yield
    finally:
        done.set()
        thread.join()
