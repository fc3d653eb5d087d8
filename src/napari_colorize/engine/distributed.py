"""Running the engine on a dask.distributed cluster.

The graph is the same as in one process; only where it runs changes.  Tasks carry
the model's *path* (``ModelRef``), and each worker loads it once into its
per-process cache (:func:`napari_colorize.api.get_model`), so weights are never
pickled per task.  GPU workers should have one thread each (``threads_per_worker=1``;
dask-cuda's ``LocalCUDACluster`` does this and pins one GPU per worker).  See
docs/engine.md for dask-cuda and dask-jobqueue recipes; neither is a dependency.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator

from .jobs import Cancelled

__all__ = ["compute_as_completed", "compute_on_client", "connect", "local_cluster", "run_on_client", "scatter_blocks", "worker_device_kind",
           "worker_model_path", "WORKER_WAIT_S"]

#: How long a job waits for the first worker to join (a batch system may start them late).
WORKER_WAIT_S = 300

#: Device types of worker sets already checked: (client id, workers, device, precision, model file) -> type.
_CHECKED: dict[tuple, str] = {}


@contextlib.contextmanager
def local_cluster(n_workers: int, threads_per_worker: int = 1, memory_limit: str | None = "auto") -> Iterator:
    """A LocalCluster of ``n_workers`` processes on loopback and its Client.

    Each worker process loads the model once.  One thread per worker suits GPUs and
    CPUs alike (torch uses all of a worker's cores inside one call).
    """
    from distributed import Client, LocalCluster

    if n_workers < 1:
        raise ValueError(f"--workers must be >= 1, got {n_workers}")
    with _children_leave_ctrl_c():
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker, processes=True,
                               host="127.0.0.1", dashboard_address=None, memory_limit=memory_limit)
    try:
        client = Client(cluster)
    except BaseException:
        cluster.close()
        raise
    try:
        yield client
    finally:
        # Stopped (Ctrl-C, or an error): the tasks in flight are cancelled, which the scheduler
        # and the workers' state machines report as errors; they are the stop itself.  After
        # a run that ended normally, their errors still show.
        stopping = sys.exc_info()[0] is not None
        quiet = logging.CRITICAL if stopping else logging.NOTSET
        with _quiet_logger("distributed.nanny"), _quiet_logger("distributed.scheduler", quiet), \
                _quiet_logger("distributed.worker.state_machine", quiet):
            client.close()
            cluster.close()


@contextlib.contextmanager
def _children_leave_ctrl_c() -> Iterator[None]:
    """Start worker processes that ignore SIGINT, then take it back.

    Ctrl-C reaches every process of the terminal's group: each worker died of it mid-task,
    printing a KeyboardInterrupt traceback (about 70 lines for two workers) over the summary.
    An ignored signal stays ignored in a process started meanwhile (Python then installs no
    handler of its own), so the command alone stops, and closes its cluster.  Main thread only.
    The price: a Ctrl-C in the seconds the cluster starts is lost (press it again once it
    runs); a worker the nanny starts again later (one killed for memory) does not ignore it.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)


@contextlib.contextmanager
def _quiet_logger(name: str, level: int = logging.ERROR) -> Iterator[None]:
    """Only ``level`` and above from logger ``name`` while inside.

    Closing a LocalCluster, the nannies warn "Worker process still alive after 4.0
    seconds, killing" when a worker is slow to stop; the run's work is done and saved by
    then, so the warning only alarms.  Quieted for the shutdown alone: the same logger's
    warnings during the run (a worker killed for memory) still show.
    """
    logger = logging.getLogger(name)
    previous = logger.level
    logger.setLevel(max(level, logger.getEffectiveLevel()))
    try:
        yield
    finally:
        logger.setLevel(previous)


@contextlib.contextmanager
def connect(address: str) -> Iterator:
    """A Client of a running scheduler (``tcp://host:8786``)."""
    from distributed import Client

    try:
        client = Client(address, timeout="20s")
    except OSError as err:
        raise RuntimeError(f"could not reach the dask scheduler at {address!r} ({err}); start one with "
                           "`dask scheduler` and workers with `dask worker ADDRESS --nthreads 1`") from err
    with client:
        yield client


def _follow(futures: list, total: int, done: int, progress: Callable[[int, int], None] | None,
            cancel: threading.Event | None) -> None:
    """Wait for ``futures`` as they finish, counting them into ``progress(done, total)``.

    Raises the first task error, or :class:`Cancelled` when ``cancel`` is set; the caller
    cancels what is left.
    """
    from distributed import as_completed

    for future in as_completed(futures):
        future.result()  # re-raises a task's exception here
        done += 1
        if progress is not None:
            progress(done, total)
        if cancel is not None and cancel.is_set():
            raise Cancelled("colorization was cancelled")


def run_on_client(client, dsk: dict, keys: list, total: int, done: int = 0,
                  progress: Callable[[int, int], None] | None = None, cancel: threading.Event | None = None) -> None:
    """Compute ``keys`` of ``dsk`` on ``client``, reporting finished keys to ``progress``.

    Raises the first task error, or :class:`Cancelled` when ``cancel`` is set (the
    remaining tasks are cancelled; finished chunks stay written).
    """
    futures = client.get(dsk, keys, sync=False)
    try:
        _follow(futures, total, done, progress, cancel)
    finally:
        client.cancel(futures)


def compute_on_client(client, array, progress: Callable[[int, int], None] | None = None,
                      cancel: threading.Event | None = None):
    """Compute a dask ``array`` on ``client``, reporting finished chunks, cancellable between them.

    ``client.compute(array).result()`` would wait for the whole array with no progress
    and no way to stop; here each chunk is a future, so ``progress(done, total)`` counts
    chunks (one per plane of the in-memory results) and ``cancel`` stops the rest.
    """
    import uuid

    import numpy as np
    from distributed import futures_of

    # Keys of this call only: the client shares one state per key, so cancelling a call's
    # futures would also cancel an identical call's made right after it (same graph, same keys).
    own = array.map_blocks(np.asarray, dtype=array.dtype, name=f"napari-colorize-result-{uuid.uuid4().hex}")
    persisted = client.persist(own)
    futures = futures_of(persisted)
    try:
        _follow(futures, len(futures), 0, progress, cancel)
        return client.compute(persisted, sync=True)
    except BaseException:
        client.cancel(futures)
        raise


def compute_as_completed(client, arrays: list, progress: Callable[[int, int], None] | None = None) -> Iterator:
    """Compute dask ``arrays`` on ``client`` as one job; yield ``(index, value)`` as each finishes.

    One submission, so a task that several arrays need (a tile on the border of two bands
    of rows) runs once; computed one after the other, it ran once per array.  Each result
    is released on the cluster as soon as it has been handed over, and the rest is
    cancelled when the caller stops early (an error, Ctrl-C).
    """
    from distributed import as_completed

    futures = client.compute(arrays)
    index = {future.key: i for i, future in enumerate(futures)}
    pending = as_completed(futures)
    del futures  # the loop holds each future only until its result is handed over
    try:
        for done, future in enumerate(pending, 1):
            value, key = future.result(), future.key
            del future
            yield index[key], value
            if progress is not None:
                progress(done, len(index))
    finally:
        # Still computing, or finished and not yet handed over.
        client.cancel(list(pending.futures) + list(pending.queue.queue))
        pending.clear()


def scatter_blocks(client, array, chunks: tuple[tuple[int, ...], ...]):
    """A dask array of ``array`` whose blocks the workers hold.

    An in-memory array put into a task graph travels through the scheduler, which
    keeps the whole image until the job ends (dask warns above 10 MB); scattered,
    each block goes to one worker and the graph holds only its future.
    """
    import itertools
    import uuid

    import dask.array as da

    blocks = [array[index] for index in da.core.slices_from_chunks(chunks)]
    # Keys of this call only (hash=False and a fresh name): scattered data cannot be
    # recomputed, and with content-hashed keys an earlier call's release could drop the
    # blocks of an identical call made right after it.
    futures = client.scatter(blocks, hash=False)
    name = f"napari-colorize-input-{uuid.uuid4().hex}"
    keys = itertools.product([name], *(range(len(c)) for c in chunks))
    return da.Array(dict(zip(keys, futures)), name, chunks, array.dtype)


def worker_model_path(model) -> str:
    """The model as the workers are given it: ``"default"``, or the file's absolute path
    (``~`` expanded; the workers do not share this process's working folder).  One spelling
    for the CLI's check and the engine's, so that the workers are checked once."""
    from ..model import DEFAULT_MODEL

    return DEFAULT_MODEL if str(model) == DEFAULT_MODEL else os.path.abspath(os.path.expanduser(os.fspath(model)))


def worker_device_kind(client, device: str, precision: str, model_file: str | None) -> str:
    """Check every worker before a job, and return the device type they run on ("cpu", "cuda").

    Waits for the first worker (``cluster.scale()`` returns before any has started), then
    asks each one whether ``device`` and ``precision`` work there and whether the model
    file is on its file system: one clear error before the job, not one per task after.
    A set of workers that passed is not asked again by the same client.
    """
    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT_S)
    except TimeoutError:
        raise RuntimeError(f"no dask worker joined (and stayed in) the cluster within {WORKER_WAIT_S} s; start "
                           f"workers (docs/engine.md), or run without a cluster. {_RESTARTS}") from None
    # A folder of thousands of files asks once, not once per file: one scheduler round trip
    # instead of one to every worker, and a worker that joins later is checked then.
    workers = tuple(sorted(client.ncores()))
    key = (client.id, workers, device, precision, model_file)
    if key not in _CHECKED:
        results = _run_probe(client, workers, device, precision, model_file)
        problems = [(worker, result[1]) for worker, result in results.items() if result[0] == "error"]
        if problems:
            worker, message = problems[0]
            raise ValueError(f"on dask worker {worker} ({len(problems)} of {len(results)} workers): {message}")
        kinds = {result[1] for result in results.values()}
        _CHECKED[key] = "cuda" if "cuda" in kinds else kinds.pop()
    return _CHECKED[key]


#: Why workers vanish while they are checked or while they work, and what to do.
_RESTARTS = ("Workers that keep restarting are usually out of memory: give each more (dask worker --memory-limit, "
             "LocalCluster(memory_limit=...)) or use a smaller tile size.")


def _run_probe(client, workers: tuple[str, ...], device: str, precision: str,
               model_file: str | None) -> dict[str, tuple[str, str]]:
    """:func:`_probe_worker` on every one of ``workers``; RuntimeError saying what to do when
    it cannot run there (the package missing, workers restarting) or no worker answers."""
    try:
        results = client.run(_probe_worker, device, precision, model_file, workers=list(workers))
    except Exception as err:  # whatever the cluster raises, say what to check
        reason = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        missing = "napari_colorize" in reason or "ModuleNotFoundError" in reason
        hint = ("Every worker needs napari-colorize installed, the same version as here (pip install "
                "napari-colorize in the workers' environment)." if missing else _RESTARTS)
        raise RuntimeError(f"could not check the dask workers {list(workers)} ({reason}). {hint}") from err
    if not results:
        raise RuntimeError(f"the dask workers {list(workers)} left the cluster while they were checked. {_RESTARTS}")
    return results


def _probe_worker(device: str, precision: str, model_file: str | None) -> tuple[str, str]:
    """On a worker: ``("ok", device type)`` or ``("error", what to do)``."""
    from ..devices import autocast, resolve_device

    try:
        dev = resolve_device(device)
        with autocast(dev, precision):
            pass
    except (ValueError, RuntimeError) as err:
        return "error", str(err)
    if model_file is not None and not os.path.isfile(model_file):
        return "error", (f"the model file {model_file} is not there; put it on a file system every worker "
                         "sees (docs/engine.md)")
    if model_file is not None and not os.access(model_file, os.R_OK):
        return "error", (f"the model file {model_file} cannot be read by the worker's user; make it readable "
                         f"(chmod a+r {model_file})")
    return "ok", dev.type
