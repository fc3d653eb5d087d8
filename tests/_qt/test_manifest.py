"""The npe2 manifest: valid, discoverable through the entry point, every command importable."""

from __future__ import annotations

import importlib

import pytest

npe2 = pytest.importorskip("npe2")


@pytest.fixture(scope="module")
def manifest():
    return npe2.PluginManifest.from_distribution("napari-colorize")


def test_entry_point_finds_a_valid_manifest(manifest):
    assert manifest.name == "napari-colorize"
    # What `npe2 validate napari-colorize` runs (imports every python_name too).
    from npe2.cli import app
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["validate", "napari-colorize"])
    assert result.exit_code == 0, result.output


def test_every_command_imports(manifest):
    for command in manifest.contributions.commands:
        module, _, attr = command.python_name.partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), command.id


def test_contributions(manifest):
    (widget,) = manifest.contributions.widgets
    assert widget.display_name == "Colorize"
    samples = {s.key: s for s in manifest.contributions.sample_data}
    assert set(samples) == {"photograph", "archival_scan", "microscopy_stack", "ihc_slide"}
    from napari_colorize._qt import _sample_data

    assert set(samples) == set(_sample_data.SAMPLES)
