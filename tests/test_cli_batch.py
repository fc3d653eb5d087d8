"""`napari-colorize colorize` on a batch, as a user running it over a tree of scans meets it.

Warnings in the command's words, and a quiet cluster shutdown.
"""

from __future__ import annotations

import logging

import imageio.v3 as iio
import numpy as np
import pytest
import torch

import napari_colorize as nc
from napari_colorize import cli
from napari_colorize.engine.cache import clear_caches

FAST = ["--device", "cpu"]


@pytest.fixture(autouse=True)
def _only_colorize(monkeypatch):
    monkeypatch.setattr(cli, "_SUBCOMMANDS", ("cli_colorize",))
    clear_caches()


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    torch.manual_seed(4)
    return str(nc.save_model(nc.build_model("compact"), tmp_path_factory.mktemp("m") / "m.safetensors"))


def _gray(side: int, seed: int = 0) -> np.ndarray:
    ramp = np.add.outer(np.arange(side), np.arange(side)) * (255 // (2 * side - 2))
    return np.roll(ramp, seed, axis=1).astype(np.uint8)


def _run(*argv) -> int:
    return cli.main(["colorize", *map(str, argv)])


def test_the_dim_16_bit_warning_names_only_the_cli_option(tmp_path, model_path, capsys):
    # It said "pass normalize='percentile' (--normalize percentile, microscopy)": the API's words.
    dim = (_gray(64).astype(np.uint16) * 8)
    iio.imwrite(tmp_path / "dim.png", dim)
    assert _run(tmp_path / "dim.png", "-o", tmp_path / "out", "--model", model_path, *FAST, "--no-progress") == 0
    warning = next(line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:"))
    assert warning == (f"warning: dim.png: uint16 image with values up to {int(dim.max())} only (3.1% of the uint16 "
                       "range): scaled by that range it is nearly black and gets little colour; pass --normalize "
                       "percentile (microscopy) or --normalize minmax to stretch it")


def test_scaling_advice_in_cli_words():
    from napari_colorize.cli_report import warning_in_cli_words

    assert warning_in_cli_words("int32 image: ...; pass normalize='percentile' or 'minmax' (--normalize), or convert "
                                "it to uint8/uint16, to choose otherwise") == (
        "int32 image: ...; pass --normalize percentile or --normalize minmax, or convert it to uint8/uint16, to "
        "choose otherwise")


# --- the local cluster's shutdown -------------------------------------------------------------------


def test_local_cluster_quiets_the_nanny_at_shutdown_only(monkeypatch):
    # At exit it printed "distributed.nanny - WARNING - Worker process still alive after 4.0 seconds, killing".
    import distributed

    from napari_colorize.engine.distributed import local_cluster

    nanny = logging.getLogger("distributed.nanny")

    class FakeCluster:
        def __init__(self, **kwargs) -> None:
            pass

        def close(self) -> None:
            nanny.warning("Worker process still alive after 4.0 seconds, killing")

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            self.close()

    class FakeClient(FakeCluster):
        def __init__(self, cluster) -> None:
            pass

        def close(self) -> None:
            pass

    monkeypatch.setattr(distributed, "LocalCluster", FakeCluster)
    monkeypatch.setattr(distributed, "Client", FakeClient)
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    level = nanny.level
    nanny.addHandler(handler)
    try:
        with local_cluster(2):
            nanny.warning("Worker exceeded 95% memory budget. Restarting")  # during the run: shown
    finally:
        nanny.removeHandler(handler)
    assert seen == ["Worker exceeded 95% memory budget. Restarting"]
    assert nanny.level == level
