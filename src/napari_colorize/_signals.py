"""Ctrl-C and SIGTERM during work that must stop at a clean point: a training step.

Raised where the program happens to be, ``KeyboardInterrupt`` (or the CLI's SIGTERM,
raised the same way) leaves an optimizer step half done, so a training run could only
fall back to its last periodic checkpoint and lose every step since.  Inside
:func:`stop_requests` the first SIGINT or SIGTERM is only recorded: the run finishes its
step, saves, and raises :class:`StoppedAfterStep`.  The handlers that were there before
come back at that first signal, so a second Ctrl-C acts at once as usual (an atomic write
in progress then leaves the previous file whole).

Only the main thread may handle signals; elsewhere nothing changes.  A signal that was
ignored before (``SIG_IGN``: a background job of a non-interactive shell ignores SIGINT)
stays ignored.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator

__all__ = ["STOP_SIGNALS", "StopRequest", "StoppedAfterStep", "stop_requests", "ignore_stop_signals",
           "exit_at_next_signal", "exit_now"]

#: The signals that ask a run to stop.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StoppedAfterStep(KeyboardInterrupt):
    """A run stopped on a signal after ``step`` whole steps, all of them saved.

    A ``KeyboardInterrupt``, so that code catching Ctrl-C (a notebook, the CLI) still does;
    ``signum`` says which signal it was.
    """

    def __init__(self, signum: int, step: int) -> None:
        super().__init__(f"stopped at step {step}; the checkpoint holds step {step}: continue with the same "
                         "command and --resume")
        self.signum = signum
        self.step = step


class StopRequest:
    """The first stop signal received inside :func:`stop_requests` (``signum``; None: none yet)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _record(self, signum: int, frame) -> None:
        self.signum = signum
        self._restore()  # a second signal: the usual handling, at once

    def _install(self) -> None:
        for signum in STOP_SIGNALS:
            if signal.getsignal(signum) is not signal.SIG_IGN:
                self._previous[signum] = signal.signal(signum, self._record)

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            # None: a handler set outside Python, which cannot be put back; the default is closest.
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        self._previous.clear()


@contextlib.contextmanager
def stop_requests() -> Iterator[StopRequest]:
    """Record the first SIGINT or SIGTERM instead of acting on it; check ``.requested`` at clean points."""
    request = StopRequest()
    if threading.current_thread() is threading.main_thread():
        request._install()
    try:
        yield request
    finally:
        request._restore()


def ignore_stop_signals(*_) -> None:
    """For helper processes (data loader workers): leave SIGINT and SIGTERM to the main process.

    Ctrl-C reaches every process of the terminal's group and a batch system's SIGTERM every
    process of the job; a worker that died of it would fail the main process's step in
    progress (torch reports a worker killed by a signal as an error) before it could save.
    The main process shuts its workers down when it stops.
    """
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def exit_at_next_signal(code: int) -> None:
    """After a stopped command has cleaned up: a further SIGINT or SIGTERM ends the process at
    once with ``code``.

    The command returns at the first signal, but Python's exit still waits for the worker
    threads to finish the tile each is computing (seconds for a large one).  A second Ctrl-C
    pressed meanwhile interrupted that wait, and the interpreter was torn down under running
    torch threads: "terminate called without an active exception", exit 134 instead of 130.
    For the command line only (a library must not end its caller's process); main thread only.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, lambda signum, frame: exit_now(code))


def exit_now(code: int) -> None:
    """End the process at once with ``code``, its output flushed: no clean-up, no waiting for
    threads (what is left behind, the next run clears)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
