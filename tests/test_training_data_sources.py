"""What train, evaluate and calibrate take as colour truth from the folders they are given.

Results of ``colorize`` kept inside a collection carry napari-colorize's mark: they are a
model's guess, so a folder walk passes over them (as ``colorize`` does) and says so once.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import imageio.v3 as iio
import pytest
from _scenes import synthetic_image
from _scenes import to_u8 as _u8

from napari_colorize import build_model, save_model
from napari_colorize.io import scan_images, write_png


@pytest.fixture
def collection(tmp_path: Path) -> Path:
    """Three colour photos, a folder of colorize results beside them, and a user's own file
    whose name only looks like a result (no mark: it is data)."""
    root = tmp_path / "photos"
    (root / "colorized").mkdir(parents=True)
    for i in range(3):
        iio.imwrite(root / f"p{i}.png", _u8(synthetic_image(i)))
    write_png(root / "colorized" / "gray_colorized.png", _u8(synthetic_image(9)))
    write_png(root / "colorized" / "gray_confidence.png", _u8(synthetic_image(9).mean(-1)))
    iio.imwrite(root / "holiday_colorized.png", _u8(synthetic_image(5)))
    return root


def test_scan_images_passes_over_colorize_results_with_one_note(collection):
    from napari_colorize.io import OwnOutputsNote

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = scan_images([collection])
    assert [p.name for p in found] == ["holiday_colorized.png", "p0.png", "p1.png", "p2.png"]
    notes = [w for w in caught if issubclass(w.category, OwnOutputsNote)]
    assert len(notes) == 1
    assert str(notes[0].message).startswith("passed over 2 file(s) in the data folders that napari-colorize wrote "
                                            f"(results of an earlier run, such as {collection / 'colorized'}")
    # Named on its own, a result is used: the user asked for it.
    assert scan_images([collection / "colorized" / "gray_colorized.png"]) == \
        [(collection / "colorized" / "gray_colorized.png").resolve()]
    with pytest.raises(ValueError, match="besides 2 that napari-colorize wrote"):
        scan_images([collection / "colorized"], report=lambda message: None)


def test_train_evaluate_and_calibrate_leave_colorize_results_out(tmp_path, collection, capsys):
    from napari_colorize.cli import main

    out = tmp_path / "m.safetensors"
    assert main(["train", str(collection), "-o", str(out), "--steps", "1", "--batch-size", "2", "--crop", "64",
                 "--max-side", "96", "--workers", "0", "--no-progress", "--log", ""]) == 0
    err = capsys.readouterr().err
    assert "on 4 usable colour images from 1 folder(s)" in err
    assert "note: passed over 2 file(s) in the data folders that napari-colorize wrote" in err
    assert "skipping" not in err  # the gray confidence map is not even looked at
    model = save_model(build_model("compact"), tmp_path / "plain.safetensors")
    assert main(["evaluate", str(collection), "--model", str(model), "--device", "cpu", "--max-side", "64"]) == 0
    captured = capsys.readouterr()
    assert "note: passed over 2 file(s)" in captured.err and "gray_colorized" not in captured.out
    assert len([line for line in captured.out.splitlines() if line.startswith(("p0", "p1", "p2", "holiday"))]) == 4
    assert main(["calibrate", str(model), str(collection), "-o", str(tmp_path / "cal.safetensors"), "--device", "cpu",
                 "--max-side", "64"]) == 0
    captured = capsys.readouterr()
    assert "note: passed over 2 file(s)" in captured.err and "calibrated on 4 image(s)" in captured.out
