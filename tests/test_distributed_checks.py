"""The check of a cluster's workers before a job (engine/distributed.py:worker_device_kind) says
what to do when the workers cannot run the package or vanish, instead of a bare error."""

from __future__ import annotations

import pytest

from napari_colorize.engine.distributed import worker_device_kind


class FakeClient:
    """What worker_device_kind asks of a dask.distributed Client."""

    def __init__(self, run):
        self.id = f"fake-{id(self)}"
        self._run = run

    def wait_for_workers(self, n, timeout=None):
        return None

    def ncores(self):
        return {"tcp://w1:1": 1}

    def run(self, function, *args, workers=None):
        return self._run(function, *args)


def test_workers_that_cannot_import_the_package_are_told_to_install_it():
    def run(function, *args):  # as distributed re-raises a worker's failure to unpickle the probe
        raise Exception(ModuleNotFoundError("import of napari_colorize halted; None in sys.modules"))

    with pytest.raises(RuntimeError, match=r"could not check the dask workers \['tcp://w1:1'\].*needs napari-colorize "
                                           r"installed"):
        worker_device_kind(FakeClient(run), "cpu", "fp32", None)


def test_workers_that_restart_while_checked_are_named_with_the_likely_cause():
    with pytest.raises(RuntimeError, match="left the cluster while they were checked.*out of memory"):
        worker_device_kind(FakeClient(lambda function, *args: {}), "cpu", "fp32", None)  # was: pop from an empty set

    def closed(function, *args):
        raise OSError("Stream is closed")

    with pytest.raises(RuntimeError, match=r"\(OSError: Stream is closed\).*out of memory"):
        worker_device_kind(FakeClient(closed), "cpu", "fp32", None)


def test_healthy_workers_give_their_device_kind():
    assert worker_device_kind(FakeClient(lambda function, *args: {"tcp://w1:1": function(*args)}),
                              "cpu", "fp32", None) == "cpu"
