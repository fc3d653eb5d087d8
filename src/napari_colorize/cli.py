"""The ``napari-colorize`` command: ``colorize``, ``train``, ``evaluate`` and ``calibrate``.

Each subcommand lives in its own module (``cli_colorize``, ``cli_train``,
``cli_evaluate``) exposing ``add_parser(subparsers)``; the parser it adds sets
``func(args) -> int`` (the exit code).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import signal
import sys
import threading
from collections.abc import Iterator

from ._signals import StoppedAfterStep, exit_at_next_signal, exit_now

__all__ = ["main", "build_parser"]

_SUBCOMMANDS = ("cli_colorize", "cli_train", "cli_evaluate", "cli_calibrate")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="napari-colorize", description="Automatic colorization of grayscale images "
                                     "(Larsson et al. 2016), at full resolution and any size.")
    parser.add_argument("--version", action="version", version=f"napari-colorize {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{colorize,train,evaluate,calibrate}")
    for name in _SUBCOMMANDS:
        importlib.import_module(f"napari_colorize.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 some inputs failed, 2 usage/input error).

    Usage errors found by argparse (an unknown option, two exclusive flags) return 2
    after argparse's message, as every other refusal does, instead of exiting the caller.
    """
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # argparse: --help/--version (0) or a usage error (2)
        return exit_.code if isinstance(exit_.code, int) else 0 if exit_.code is None else 2
    try:
        with _terminate_as_interrupt():
            return int(args.func(args) or 0)
    except (ValueError, OSError, RuntimeError) as err:  # OSError: a full disk or read-only file system too
        print(f"napari-colorize {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:  # the same words for both: how to carry on matters as much after Ctrl-C
        terminated = isinstance(stop, Terminated) or getattr(stop, "signum", None) == signal.SIGTERM
        how = "terminated (SIGTERM)" if terminated else "interrupted (Ctrl-C)"
        print(f"napari-colorize {args.command}: {how}{_to_continue(args, stop)}", file=sys.stderr)
        code = 128 + signal.SIGTERM if terminated else 130
        if argv is None:  # the napari-colorize command itself, not a caller of main() in its own process
            exit_at_next_signal(code)
        return code


def _to_continue(args: argparse.Namespace, stop: KeyboardInterrupt) -> str:
    """How a stopped command carries on (evaluate and calibrate start again)."""
    if isinstance(stop, StoppedAfterStep):  # a training run that saved its last step
        return f"; {stop}"
    if args.command == "train":  # stopped before its first step, or by a second signal while saving
        return "; continue it with the same command and --resume (without it if no checkpoint was written yet)"
    if args.command != "colorize":
        return ""
    if getattr(args, "overwrite", False) or getattr(args, "skip_existing", False):
        return "; run the same command again to continue"
    return "; run the same command again to continue, with --skip-existing if it colours several inputs"


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the command is, like Ctrl-C: the same clean-up runs."""


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """Handle SIGTERM as Ctrl-C while a command runs, and only the first of either.

    Batch systems (SLURM at the time limit), ``timeout``, ``kill`` and ``docker stop``
    send SIGTERM, whose default is to die at once: output locks and temporary files were
    left behind, and a rerun on another node of a shared file system was then refused.
    The first SIGINT or SIGTERM stops the command where it is; the second, while it cleans
    up (a double Ctrl-C), is let pass: one raised inside the clean-up cut short the wait for
    the tiles in progress, and torch's threads then met the interpreter's exit ("terminate
    called without an active exception", exit 134).  A third ends the process at once (a
    clean-up that hangs); what it leaves, the next run clears.  A training run records the
    first signal itself (:func:`._signals.stop_requests`) and hands the next one to this.
    Only the main thread may set handlers; elsewhere the signals keep their handling.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stopped = []

    def stop(signum, frame) -> None:
        stopped.append(signum)
        if len(stopped) == 1:
            raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()
        if len(stopped) > 2:  # a clean-up that hangs (an unreachable share): a way out
            print("napari-colorize: stopping at once; the next run clears what this one left", file=sys.stderr)
            exit_now(130 if stopped[0] == signal.SIGINT else 128 + signal.SIGTERM)
        # The second (a double Ctrl-C): let the clean-up finish.

    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGINT, signal.SIGTERM)
                if signal.getsignal(signum) is not signal.SIG_IGN}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)


if __name__ == "__main__":
    sys.exit(main())
