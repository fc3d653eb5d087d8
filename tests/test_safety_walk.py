"""What ``colorize`` finds in an archive's folders: nothing passed over in silence.

From a user test on a folder of mixed scans: an unreadable sub-folder was skipped without a
word (or stopped the whole run with a raw error), scans in an ``-o`` set to an input
sub-folder were called earlier results, a link to the output folder inside the input tree
refused the resume, link loops were called broken links, and a ``--files-from`` given an
image printed its bytes as names.  Permissions are simulated (the suite may run as root,
which reads every folder): ``os.scandir`` and ``os.lstat`` refuse as they do for a folder of
mode 000 or 311.
"""

from __future__ import annotations

import errno
import os
import warnings
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from napari_colorize import cli
from napari_colorize.io import ReadWarning
from napari_colorize.io.files import scan_images

TILES = ["--tile-size", "128", "--overlap", "32", "--device", "cpu", "--no-progress"]


@pytest.fixture(autouse=True)
def _only_colorize(monkeypatch):
    monkeypatch.setattr(cli, "_SUBCOMMANDS", ("cli_colorize",))


def _scan(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, np.random.default_rng(len(str(path))).integers(0, 255, (64, 72), dtype=np.uint8))
    return path


def _run(*argv) -> int:
    return cli.main(["colorize", *map(str, argv)])


def _lines(err: str) -> list[str]:
    return [line.strip() for line in err.splitlines() if "error:" in line or "FAILED" in line]


def _refuse(monkeypatch, function: str, refused: Path) -> None:
    """``os.<function>`` raises EACCES for ``refused``, as for a folder its user may not read."""
    real = getattr(os, function)

    def guarded(path=".", *args, **kwargs):
        if not isinstance(path, int) and os.path.abspath(os.fspath(path)) == str(refused):  # int: a descriptor
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, function, guarded)


def test_an_unreadable_sub_folder_fails_by_name_and_the_rest_is_coloured(tmp_path, model_path, monkeypatch, capsys):
    _scan(tmp_path / "perm" / "box1" / "a.png")
    _scan(tmp_path / "perm" / "box2" / "b.png")
    _refuse(monkeypatch, "scandir", tmp_path / "perm" / "box2")
    assert _run(tmp_path / "perm", "-o", tmp_path / "out", "--model", model_path, *TILES) == 1
    err = capsys.readouterr().err
    assert _lines(err) == [f"FAILED {tmp_path / 'perm' / 'box2'}: permission denied: this folder cannot be read, so "
                           "none of its images were used; make it readable (chmod, or ask its owner) and run again, "
                           "or leave it out"]
    assert "failed 1" in err
    assert (tmp_path / "out" / "box1" / "a_colorized.png").exists()


def test_a_named_file_in_an_unreadable_folder_fails_alone(tmp_path, model_path, monkeypatch, capsys):
    # It stopped the whole run: "error: [Errno 13] Permission denied: 'perm/box2/b.png'".
    a, b = _scan(tmp_path / "box1" / "a.png"), _scan(tmp_path / "box2" / "b.png")
    for function in ("stat", "lstat"):
        _refuse(monkeypatch, function, b)
    assert _run(b, a, "-o", tmp_path / "out", "--model", model_path, *TILES) == 1
    assert _lines(capsys.readouterr().err) == [
        f"FAILED {b}: permission denied: this file, or a folder on its path, cannot be read; make it readable "
        "(chmod, or ask its owner) and run again, or leave it out"]
    assert (tmp_path / "out" / "a_colorized.png").exists()


def test_training_data_in_an_unreadable_folder_is_named_in_a_warning(tmp_path, monkeypatch):
    a = _scan(tmp_path / "photos" / "a.png")
    _scan(tmp_path / "photos" / "locked" / "b.png")
    _refuse(monkeypatch, "scandir", tmp_path / "photos" / "locked")
    with pytest.warns(ReadWarning, match=r"passed over 1 folder\(s\) that cannot be read, such as .*locked "
                      r"\(permission denied\): their images are not used"):
        assert scan_images([tmp_path / "photos"]) == [a]


def test_a_volumes_lost_and_found_is_passed_over_in_silence(tmp_path, model_path, monkeypatch, capsys):
    # Every ext4 volume's top holds root's lost+found (mode 700): a user's run of the whole
    # volume failed on it, exit 1, every time.
    _scan(tmp_path / "vol" / "a.png")
    (tmp_path / "vol" / "lost+found").mkdir()
    _refuse(monkeypatch, "scandir", tmp_path / "vol" / "lost+found")
    assert _run(tmp_path / "vol", "-o", tmp_path / "out", "--model", model_path, *TILES) == 0
    assert _lines(capsys.readouterr().err) == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(scan_images([tmp_path / "vol"])) == 1


def test_scans_in_an_output_folder_inside_the_input_are_refused_not_passed_over(tmp_path, model_path, capsys):
    for name in ("photos/a.png", "photos/1920s/c.png", "docs/d.png"):
        _scan(tmp_path / "ins" / name)
    before = sorted(p for p in (tmp_path / "ins").rglob("*"))
    assert _run(tmp_path / "ins", "-o", tmp_path / "ins" / "photos", "--model", model_path, *TILES) == 2
    (line,) = _lines(capsys.readouterr().err)
    assert "holds 2 image(s) that napari-colorize did not write, such as" in line
    assert "choose an -o folder outside the input folders" in line
    assert sorted(p for p in (tmp_path / "ins").rglob("*")) == before  # nothing written


def test_results_in_an_output_folder_inside_the_input_are_still_passed_over(tmp_path, model_path, capsys):
    _scan(tmp_path / "ins" / "docs" / "d.png")
    assert _run(tmp_path / "ins", "-o", tmp_path / "ins" / "out", "--model", model_path, *TILES) == 0
    assert _run(tmp_path / "ins", "-o", tmp_path / "ins" / "out", "--model", model_path, *TILES, "--skip-existing") == 0
    assert "were not taken as inputs (results of an earlier run)" in capsys.readouterr().err


def test_results_beyond_pillows_limit_are_still_known_as_ours(tmp_path, model_path, monkeypatch, capsys):
    # A review: Pillow refuses to open a PNG of over twice its limit (179 MP), so a large
    # result read as "not ours" and the rerun was refused as holding scans.
    from PIL import Image as PILImage

    _scan(tmp_path / "ins" / "docs" / "d.png")
    assert _run(tmp_path / "ins", "-o", tmp_path / "ins" / "out", "--model", model_path, *TILES) == 0
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 100)  # as if each result had billions of pixels
    assert _run(tmp_path / "ins", "-o", tmp_path / "ins" / "out", "--model", model_path, *TILES, "--skip-existing") == 0
    assert "skipped 1; failed 0" in capsys.readouterr().err


def test_an_output_folder_linked_into_the_input_tree_resumes(tmp_path, model_path, capsys):
    # The first run worked; the resume it advised was refused: "the output folder is also an input folder".
    _scan(tmp_path / "lk" / "a.png")
    (tmp_path / "lk" / "results").symlink_to(tmp_path / "lk_out")
    assert _run(tmp_path / "lk", "-o", tmp_path / "lk_out", "--model", model_path, *TILES) == 0
    assert _run(tmp_path / "lk", "-o", tmp_path / "lk_out", "--model", model_path, *TILES, "--skip-existing") == 0
    err = capsys.readouterr().err
    assert "skipped 1; failed 0" in err and "error" not in err


def test_linked_files_whose_targets_lie_in_the_output_folder_are_inputs(tmp_path, model_path, capsys):
    # A review: a curated folder of links into data/raw, coloured into data, was refused as
    # "holds 1 image(s) that napari-colorize did not write" (it coloured them before).
    raw = _scan(tmp_path / "data" / "raw" / "a.png")
    (tmp_path / "picks").mkdir()
    (tmp_path / "picks" / "a.png").symlink_to(raw)
    assert _run(tmp_path / "picks", "-o", tmp_path / "data", "--model", model_path, *TILES) == 0
    assert "colorized 1 file(s)" in capsys.readouterr().err
    assert (tmp_path / "data" / "a_colorized.png").exists()


def test_a_link_loop_is_called_a_loop(tmp_path, model_path, capsys):
    loops = tmp_path / "loops"
    loops.mkdir()
    (loops / "a.png").symlink_to("b.png")
    (loops / "b.png").symlink_to("a.png")
    _scan(loops / "fine.png")
    assert _run(loops, "-o", tmp_path / "out", "--model", model_path, *TILES) == 1
    assert _lines(capsys.readouterr().err) == [
        f"FAILED {loops / name}: a link loop (it points to {to}, which leads back to it); fix or remove the link"
        for name, to in (("a.png", "b.png"), ("b.png", "a.png"))]


def test_an_image_given_as_the_list_is_one_clear_error(tmp_path, model_path, capsys):
    # It printed 146 KB: every NUL-separated run of the PNG's bytes as a missing name.
    image = _scan(tmp_path / "gray8.png")
    assert _run("--files-from", image, "-o", tmp_path / "out", "--model", model_path, *TILES) == 2
    err = capsys.readouterr().err
    assert _lines(err) == [f"napari-colorize colorize: error: --files-from {image} is not a list of paths but binary "
                           "data (an image? name images as INPUT arguments); give a text file listing one input per "
                           "line"]
    assert len(err) < 400


def test_a_black_uncompressed_tiff_given_as_the_list_is_one_clear_error(tmp_path, model_path, capsys):
    # Its bytes are zeros after the header: NUL-separated "names" without other control bytes.
    import tifffile

    tifffile.imwrite(tmp_path / "black.tif", np.zeros((256, 256), np.uint8))
    assert _run("--files-from", tmp_path / "black.tif", "-o", tmp_path / "out", "--model", model_path, *TILES) == 2
    assert "is not a list of paths but binary data" in capsys.readouterr().err


def test_a_list_of_names_with_a_stray_control_character_is_still_a_list(tmp_path, model_path, capsys):
    odd = _scan(tmp_path / "odd\x1bname.png")
    listing = tmp_path / "list.txt"
    listing.write_bytes(os.fsencode(f"{odd}\n"))
    assert _run("--files-from", listing, "-o", tmp_path / "out", "--model", model_path, *TILES) == 0
