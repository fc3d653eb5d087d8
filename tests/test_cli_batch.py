"""`napari-colorize colorize` on a batch, as a user running it over a tree of scans meets it.

Progress in megapixels, a clean log when stderr is redirected, lists of files
(``--files-from``), warnings in the command's words, and a quiet cluster shutdown.
"""

from __future__ import annotations

import codecs
import io
import logging
import sys
from types import SimpleNamespace

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
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


class _Terminal(io.StringIO):
    """A stderr that says it is a terminal: bars are drawn into it."""

    def isatty(self) -> bool:
        return True


# --- progress: megapixels, only on a terminal -------------------------------------------------------


def test_the_run_bar_counts_megapixels_and_shows_the_file_count(tmp_path, model_path, monkeypatch):
    # It counted files: a tree of small scans with two 12 MP files said 99% with most of the work left.
    iio.imwrite(tmp_path / "big.png", _gray(128))
    iio.imwrite(tmp_path / "small.png", _gray(64))
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    assert _run(tmp_path / "big.png", tmp_path / "small.png", "-o", tmp_path / "out", "--model", model_path,
                "--tile-size", "128", "--overlap", "32", *FAST) == 0
    text = term.getvalue()
    # 128² + 64² = 0.016384 + 0.004096 MP: after the big file 80% of the run is done, not 50%.
    assert "files 0/2:   0%|" in text and "0.000/0.020 MP" in text
    assert "files 1/2:  80%|" in text and "0.016/0.020 MP" in text
    assert "files 2/2: 100%|" in text and "0.020/0.020 MP" in text
    assert "file/s" not in text and "s/file" not in text
    assert "colorized 2 file(s)" in text


def test_an_input_of_one_tile_draws_no_tile_bar(tmp_path, model_path, monkeypatch):
    iio.imwrite(tmp_path / "one.png", _gray(64))
    iio.imwrite(tmp_path / "many.png", _gray(128))
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    args = ["-o", tmp_path / "out", "--model", model_path, "--tile-size", "64", "--overlap", "16", *FAST]
    assert _run(tmp_path / "one.png", *args) == 0
    assert "tile" not in term.getvalue() and "one.png" not in term.getvalue()
    assert _run(tmp_path / "many.png", *args) == 0
    assert "many.png:" in term.getvalue() and "/9 [" in term.getvalue()  # 128² in 64-px tiles, 16 overlap: 3 x 3


def test_a_redirected_log_gets_clean_lines_only(tmp_path, model_path, capsys):
    # With `2> full.log` a run wrote 540 KB of bar redraws, warnings cut into bar fragments.
    iio.imwrite(tmp_path / "a.png", _gray(128))
    dim = (_gray(64).astype(np.uint16) * 8)  # 12-bit camera data, dimmer: max 2016
    iio.imwrite(tmp_path / "dim.png", dim)
    assert _run(tmp_path / "a.png", tmp_path / "dim.png", "-o", tmp_path / "out", "--model", model_path,
                "--tile-size", "64", "--overlap", "16", *FAST) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and "\x1b" not in err
    lines = err.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(f"warning: dim.png: uint16 image with values up to {int(dim.max())} only")
    assert lines[1].startswith("colorized 2 file(s), 0.0 MP in ") and lines[1].endswith("skipped 0; failed 0")
    assert lines[2].startswith("note: 1 input(s) have more than 8 bits per pixel (such as dim.png)")


def test_a_float_tiff_outside_0_1_fails_in_the_commands_words(tmp_path, model_path, capsys):
    # It said "pass normalize='percentile' (microscopy) or 'minmax' (--normalize percentile|minmax)".
    tifffile.imwrite(tmp_path / "f.tif", _gray(64).astype(np.float32) * 4.0)
    assert _run(tmp_path / "f.tif", "-o", tmp_path / "out", "--model", model_path, *FAST) == 1
    err = capsys.readouterr().err
    assert "; pass --normalize percentile (microscopy) or --normalize minmax, or rescale it first" in err
    assert "normalize='" not in err
    holes = _gray(64).astype(np.float32) / 255
    holes[3, 3] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", holes)
    assert _run(tmp_path / "nan.tif", "-o", tmp_path / "out", "--model", model_path, *FAST) == 1
    err = capsys.readouterr().err
    assert "the image contains NaN or infinite values; replace them before colorizing" in err  # no np.nan_to_num


def test_the_dim_16_bit_warning_names_only_the_cli_option(tmp_path, model_path, capsys):
    # It said "pass normalize='percentile' (--normalize percentile, microscopy)": the API's words.
    dim = (_gray(64).astype(np.uint16) * 8)
    iio.imwrite(tmp_path / "dim.png", dim)
    assert _run(tmp_path / "dim.png", "-o", tmp_path / "out", "--model", model_path, *FAST) == 0
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


def test_normalisation_fallbacks_name_no_option_the_cli_lacks(tmp_path, model_path, capsys):
    # They said "as --normalize dtype does" and "pass limits=(lo, hi) to choose": an API value and
    # an API argument that this command does not have.
    beads = np.zeros((64, 64), np.uint16)
    beads.flat[::2000] = 3000  # 3 of 4096 pixels: both percentiles are 0
    iio.imwrite(tmp_path / "beads.png", beads)
    iio.imwrite(tmp_path / "flat.png", np.full((64, 64), 7, np.uint16))
    for name, normalize in (("beads", "percentile"), ("flat", "minmax")):
        _run(tmp_path / f"{name}.png", "-o", tmp_path / name, "--model", model_path, "--normalize", normalize, *FAST)
        warning = next(line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:"))
        assert "limits=" not in warning and "dtype" not in warning and "normalize=" not in warning
    assert warning.endswith("as without --normalize (gray 0.000107)")


# --- --files-from ----------------------------------------------------------------------------------


@pytest.fixture
def two_folders(tmp_path, monkeypatch):
    """``a/x.png`` and ``b/x.png`` (one name in two folders) and ``b/y.png``, the current folder their parent."""
    for i, name in enumerate(("a/x.png", "b/x.png", "b/y.png")):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        iio.imwrite(tmp_path / name, _gray(64, seed=7 * i))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _stdin(monkeypatch, text: str) -> None:
    monkeypatch.setattr(sys, "stdin", SimpleNamespace(buffer=io.BytesIO(text.encode())))


def _written(out) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))


def test_files_from_stdin_with_base_keeps_sub_folders(two_folders, model_path, monkeypatch):
    # `find ... | napari-colorize colorize - -o out` said "-: no such file or folder".
    _stdin(monkeypatch, "a/x.png\n\nb/x.png\r\n")
    out = two_folders / "out"
    assert _run("--files-from", "-", "--base", ".", "-o", out, "--model", model_path, *FAST) == 0
    assert _written(out) == [f"{d}/x_{k}.png" for d in "ab" for k in ("colorized", "confidence", "entropy")]


def test_files_from_a_list_without_base_writes_into_the_output_folder(two_folders, model_path, capsys):
    (two_folders / "list.txt").write_text("a/x.png\nb/y.png\n")
    out = two_folders / "out"
    assert _run("--files-from", "list.txt", "-o", out, "--model", model_path, *FAST) == 0
    assert _written(out) == [f"{n}_{k}.png" for n in "xy" for k in ("colorized", "confidence", "entropy")]
    assert "colorized 2 file(s)" in capsys.readouterr().err


def test_files_from_adds_to_input_arguments_and_names_missing_files(two_folders, model_path, capsys):
    (two_folders / "list.txt").write_text("b/y.png\nb/gone.png\n")
    out = two_folders / "out"
    assert _run("a/x.png", "--files-from", "list.txt", "-o", out, "--model", model_path, *FAST) == 1
    assert _written(out) == [f"{n}_{k}.png" for n in "xy" for k in ("colorized", "confidence", "entropy")]
    err = capsys.readouterr().err
    assert "failed 1" in err and "  FAILED b/gone.png: no such file or folder" in err


def test_files_from_one_name_in_two_folders_without_base_is_refused(two_folders, model_path, capsys):
    (two_folders / "list.txt").write_text("a/x.png\nb/x.png\n")
    out = two_folders / "out"
    assert _run("--files-from", "list.txt", "-o", out, "--model", model_path, *FAST) == 2
    err = capsys.readouterr().err
    assert (f"{two_folders / 'a/x.png'} and {two_folders / 'b/x.png'} would both write {out / 'x_colorized.png'}: "
            "rename one of them, or colour them into separate -o folders, or give --base DIR to keep the listed "
            "files' sub-folders under -o") in err
    assert not out.exists()


def test_files_from_a_file_outside_base_is_a_usage_error(two_folders, model_path, capsys):
    (two_folders / "list.txt").write_text("a/x.png\nb/y.png\n")
    assert _run("--files-from", "list.txt", "--base", "a", "-o", two_folders / "out", "--model", model_path,
                *FAST) == 2
    assert ("error: 1 listed file(s) are outside --base a (b/y.png); nothing was written: choose a --base that holds "
            "them all, or leave --base out to write every output straight into -o") in capsys.readouterr().err
    assert not (two_folders / "out").exists()


def test_a_dash_input_says_to_use_files_from(two_folders, model_path, capsys):
    assert _run("-", "-o", two_folders / "out", "--model", model_path, *FAST) == 2
    assert ("error: -: no such file or folder (to read the inputs' paths from standard input, use --files-from -)"
            in capsys.readouterr().err)


def test_no_inputs_and_no_list_is_a_usage_error(two_folders, model_path, capsys, monkeypatch):
    assert _run("-o", two_folders / "out", "--model", model_path, *FAST) == 2
    assert "error: give the inputs to colour" in capsys.readouterr().err
    _stdin(monkeypatch, "\n")  # `find` that found nothing
    assert _run("--files-from", "-", "-o", two_folders / "out", "--model", model_path, *FAST) == 2
    assert "error: --files-from - lists no files; nothing to colour" in capsys.readouterr().err



def _find(top: str = ".", png_only: bool = True) -> str:
    """What ``find TOP -name '*.png'`` (or ``find TOP``, folders first) prints, one path a line."""
    import os

    lines = []
    for folder, dirs, files in os.walk(top):
        dirs.sort()
        lines += [] if png_only else [folder]
        lines += [os.path.join(folder, f) for f in sorted(files) if f.endswith(".png") or not png_only]
    return "".join(f"{line}\n" for line in lines)


_OUTS = ("colorized", "confidence", "entropy")
_TREE = [f"{d}/{n}_{k}.png" for d, n in (("a", "x"), ("b", "x"), ("b", "y")) for k in _OUTS]


def test_files_from_a_find_rerun_passes_over_earlier_outputs(two_folders, model_path, monkeypatch, capsys):
    # A rerun with another -o coloured out1's results again (out2/out1/a/x_colorized_colorized.png ...).
    for out in ("out1", "out2"):
        _stdin(monkeypatch, _find())
        assert _run("--files-from", "-", "--base", ".", "-o", out, "--model", model_path, *FAST) == 0
    assert _written(two_folders / "out2") == _TREE
    assert "note: passed over 9 file(s) in the input folders that napari-colorize wrote" in capsys.readouterr().err
    _stdin(monkeypatch, _find())  # the same pipeline again: out2's own results are not inputs either
    assert _run("--files-from", "-", "--base", ".", "-o", "out2", "--skip-existing", "--model", model_path,
                *FAST) == 0
    err = capsys.readouterr().err
    assert "note: 9 file(s) inside the output folder out2 were not taken as inputs" in err
    assert "colorized 0 file(s)" in err and "skipped 3; failed 0" in err
    assert _written(two_folders / "out2") == _TREE


def test_files_from_with_the_output_folder_inside_the_listed_tree(two_folders, model_path, monkeypatch, capsys):
    # A --skip-existing rerun failed, exit 2: "... would be written over the input ..." with --base,
    # "the output folder out is also an input folder" without.
    for _ in range(2):
        _stdin(monkeypatch, _find(png_only=False))  # `find .`: folders too, the base folder first
        assert _run("--files-from", "-", "--base", ".", "-o", "out", "--skip-existing", "--model", model_path,
                    *FAST) == 0
    assert _written(two_folders / "out") == _TREE
    assert "skipped 3; failed 0" in capsys.readouterr().err
    for _ in range(2):  # without --base: `find a b/y.png` style, the flat results lying in -o
        _stdin(monkeypatch, "a/x.png\nb/y.png\n" + (_find("flat") if (two_folders / "flat").exists() else ""))
        assert _run("--files-from", "-", "-o", "flat", "--skip-existing", "--model", model_path, *FAST) == 0
    assert _written(two_folders / "flat") == [f"{n}_{k}.png" for n in "xy" for k in _OUTS]
    assert "note: 6 file(s) inside the output folder flat were not taken as inputs" in capsys.readouterr().err


def test_an_input_folder_inside_the_output_folder_is_walked_for_inputs(two_folders, model_path, monkeypatch, capsys):
    # `colorize scans -o .` dropped every scan as "a result of an earlier run" (exit 2), and
    # `colorize scans elsewhere -o .` left the scans out and exited 0.
    assert _run("b", "-o", ".", "--model", model_path, *FAST) == 0
    assert sorted(p.name for p in two_folders.glob("*.png")) == [f"{n}_{k}.png" for n in "xy" for k in _OUTS]
    err = capsys.readouterr().err
    assert "not taken as inputs" not in err and "colorized 2 file(s)" in err
    (two_folders / "deep").mkdir()
    assert _run("a", str(two_folders / "b" / "y.png"), "-o", "deep/..", "--model", model_path, "--overwrite",
                *FAST) == 0
    assert "colorized 2 file(s)" in capsys.readouterr().err
    _stdin(monkeypatch, "a/x.png\n")  # `find a -name '*.png'`: a list under the output folder
    assert _run("--files-from", "-", "-o", ".", "--model", model_path, "--overwrite", *FAST) == 0
    assert "colorized 1 file(s)" in capsys.readouterr().err


def test_files_from_a_link_and_dotdot_under_base(two_folders, model_path, monkeypatch):
    # `linkscans/a/../b/x.png` (resolved) was "outside --base linkscans" (kept as a link).
    (two_folders / "linkscans").symlink_to(two_folders, target_is_directory=True)
    _stdin(monkeypatch, "linkscans/a/x.png\nlinkscans/a/../b/x.png\n")
    assert _run("--files-from", "-", "--base", "linkscans", "-o", "o16", "--model", model_path, *FAST) == 0
    assert _written(two_folders / "o16") == [f"{d}/x_{k}.png" for d in "ab" for k in _OUTS]


def test_a_rerun_into_a_linked_results_folder_inside_the_input_folder(two_folders, model_path, capsys):
    # `colorize . -o out`, out a link to results kept elsewhere: its earlier results were no longer
    # dropped, and the run was refused ("the output folder out is also an input folder").
    elsewhere = two_folders.parent / f"{two_folders.name}_scratch"
    elsewhere.mkdir()
    (two_folders / "out").symlink_to(elsewhere, target_is_directory=True)
    for _ in range(2):
        assert _run("b", "-o", "b/../out", "--model", model_path, "--skip-existing", *FAST) == 0
    (two_folders / "b" / "res").symlink_to(elsewhere, target_is_directory=True)
    assert _run("b", "-o", "b/res", "--model", model_path, "--skip-existing", *FAST) == 0
    assert "not taken as inputs" in capsys.readouterr().err


def test_an_input_named_twice_through_a_link_is_coloured_once_with_a_note(two_folders, model_path, capsys):
    (two_folders / "b" / "link.png").symlink_to(two_folders / "b" / "y.png")
    assert _run("b/y.png", "b/link.png", "-o", "out", "--model", model_path, *FAST) == 0
    err = capsys.readouterr().err
    assert "note: 1 input(s) resolve to the same file as another input (a link, or identical content in a git-annex " \
           f"tree) and are coloured once, under its first name (link.png is {two_folders / 'b' / 'y.png'})" in err
    assert _written(two_folders / "out") == [f"y_{k}.png" for k in _OUTS]
    assert _run("b", "-o", "out2", "--model", model_path, *FAST) == 0  # walked: the link is noted too
    assert "note: 1 input(s) resolve to the same file" in capsys.readouterr().err


def test_files_from_a_nul_separated_list_and_a_padded_line(two_folders, model_path, monkeypatch, capsys):
    # `find -print0` gave one long name ("a/x.png b/y.png ...: no such file"); a padded line's
    # space was easy to miss before the colon.
    _stdin(monkeypatch, "a/x.png\0b/y.png\0")
    assert _run("--files-from", "-", "-o", "out", "--model", model_path, *FAST) == 0
    assert _written(two_folders / "out") == [f"{n}_{k}.png" for n in "xy" for k in _OUTS]
    _stdin(monkeypatch, "b/x.png \n")
    assert _run("--files-from", "-", "-o", "out2", "--model", model_path, *FAST) == 2
    assert "(the name 'b/x.png ' begins or ends with white space: is the line padded?)" in capsys.readouterr().err


def test_files_from_a_list_with_a_byte_order_mark(two_folders, model_path, monkeypatch, capsys):
    # Windows Notepad's list failed: "FAILED \ufeffa/x.png: no such file or folder".
    _stdin(monkeypatch, "\ufeffa/x.png\r\nb/y.png\r\n")
    assert _run("--files-from", "-", "-o", "out", "--model", model_path, *FAST) == 0
    assert _written(two_folders / "out") == [f"{n}_{k}.png" for n in "xy" for k in _OUTS]


def test_files_from_a_utf16_list_from_powershell(two_folders, model_path, monkeypatch):
    # PowerShell's `dir -Name ... > list.txt` writes UTF-16 with a mark: its NUL bytes were read
    # as `find -print0`'s separators, one name per letter.
    boms = {"utf-16-le": codecs.BOM_UTF16_LE, "utf-16-be": codecs.BOM_UTF16_BE, "utf-32-le": codecs.BOM_UTF32_LE}
    for codec, bom in boms.items():
        monkeypatch.setattr(sys, "stdin", SimpleNamespace(buffer=io.BytesIO(bom + "a/x.png\r\nb/y.png\r\n".encode(codec))))
        assert _run("--files-from", "-", "-o", f"out-{codec}", "--model", model_path, *FAST) == 0
        assert _written(two_folders / f"out-{codec}") == [f"{n}_{k}.png" for n in "xy" for k in _OUTS]


def test_files_from_a_missing_file_listed_twice_fails_once(two_folders, model_path, monkeypatch, capsys):
    _stdin(monkeypatch, "b/gone.png\nb/y.png\n./b/gone.png\nb/y.png\n")
    assert _run("--files-from", "-", "-o", "out", "--model", model_path, *FAST) == 1
    err = capsys.readouterr().err
    assert "colorized 1 file(s)" in err and "failed 1" in err and err.count("FAILED") == 1


def test_ctrl_c_while_headers_are_read_leaves_no_folders_and_says_what_is_left(two_folders, model_path, capsys,
                                                                               monkeypatch):
    # The output folder was made, and headers read, before the run's try: Ctrl-C left an empty -o, no summary.
    from napari_colorize import cli_colorize

    def interrupted(path):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_colorize, "shows_progress", lambda no_progress: True)
    monkeypatch.setattr(cli_colorize, "header_megapixels", interrupted)
    assert _run(".", "-o", "deep/out", "--model", model_path, *FAST) == 130
    err = capsys.readouterr().err
    assert "colorized 0 file(s), 0.0 MP" in err and "skipped 0; failed 0; not finished 3" in err
    assert not (two_folders / "deep").exists()

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


def test_png_outputs_are_filled_band_by_band_and_equal_the_whole_result(tmp_path):
    # PNG files used to be made from the float32 result of the whole image (20 bytes a pixel,
    # twice while dask joined it); now each band of chunk rows is converted in turn.
    import imageio.v3 as iio
    import numpy as np

    from napari_colorize.cli_write import write_pngs
    from napari_colorize.io.write import to_uint8
    from napari_colorize.engine.pipeline import colorize_stacked
    from napari_colorize.outputs import channel_slices, output_keys

    gray = np.random.default_rng(0).random((300, 200), dtype=np.float32)
    stacked, plan, _ = colorize_stacked(gray, device="cpu", tile_size=128, overlap=32)
    assert plan.ty.n_chunks > 2  # several bands
    targets = {key: tmp_path / f"{key}.png" for key in output_keys()}
    write_pngs(stacked, plan, targets, tmp_path / "in.png", None)
    whole = np.asarray(stacked.compute())
    channels = channel_slices()
    from napari_colorize.outputs import get_output
    for key, path in targets.items():
        expected = to_uint8(whole[..., channels[get_output(key).name]])
        np.testing.assert_allclose(iio.imread(path).astype(int), expected.astype(int), atol=1)
