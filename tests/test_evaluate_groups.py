"""``evaluate --group-by``: per-folder and per-source summaries, and the near-neutral check."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from _scenes import colour_scene

from napari_colorize import save_model
from napari_colorize.evaluate import EvaluationTable, compare, evaluate
from napari_colorize.evaluate.groups import GroupSpec, group_key, parse_group_by
from napari_colorize.evaluate.table import summary_row
from napari_colorize.metrics import colourfulness

METRICS = ("psnr", "psnr_gray", "rmse_ab", "rmse_ab_gray", "auc", "auc_gray", "colourfulness", "colourfulness_truth")


def _near_neutral(size: int = 48) -> np.ndarray:
    """A warm-gray ramp: colour enough not to be skipped as gray, colourfulness well below 15."""
    ramp = np.linspace(0.2, 0.8, size)[None, :, None] * np.ones((size, 1, 1))
    return np.clip(ramp + np.array([0.03, 0.0, -0.03]), 0, 1)


#: file (relative to the corpus root) -> source; the sources cross the folders a/ and b/.
FILES = {"val/a/x0.png": "alpha", "val/a/x1.png": "beta", "val/b/y0.png": "alpha", "val/b/y1.png": "alpha"}


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    for i, rel in enumerate(FILES):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        rgb = _near_neutral() if rel.endswith("y1.png") else colour_scene(i, 48)
        iio.imwrite(root / rel, np.round(rgb * 255).astype(np.uint8))
    _write_manifest(root / "manifest.csv", FILES)
    return root


def _write_manifest(path: Path, files: dict[str, str]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "split", "source"])
        for rel, source in files.items():
            w.writerow([rel, "val", source])


@pytest.fixture
def model(make_model):
    return copy.deepcopy(make_model())


def _expected(rows: list[dict], name: str) -> dict:
    out = {k: float(np.mean([r[k] for r in rows])) for k in METRICS}
    return out | {"images": len(rows), "d_auc": out["auc"] - out["auc_gray"], "d_psnr": out["psnr"] - out["psnr_gray"],
                  "colourfulness_ratio": out["colourfulness"] / out["colourfulness_truth"], "name": name}


def _check(group: dict, expected: dict) -> None:
    for k, v in expected.items():
        assert group[k] == (pytest.approx(v, rel=1e-9) if isinstance(v, float) else v), k


def test_linked_folders_are_groups_by_their_own_names(corpus, model, tmp_path):
    # siteA and siteB link into one store: grouped as the user named them, matched to the manifest by target.
    sites = tmp_path / "sites"
    sites.mkdir()
    (sites / "siteA").symlink_to(corpus / "val" / "a", target_is_directory=True)
    (sites / "siteB").symlink_to(corpus / "val" / "b", target_is_directory=True)
    table = evaluate([sites / "siteA", sites / "siteB"], model=model, device="cpu", group_by="level:1")
    assert [g["name"] for g in table.groups] == ["siteA", "siteB"]
    by_source = table.grouped(group_key("manifest:source", corpus / "manifest.csv"))
    assert sorted((g["name"], g["images"]) for g in by_source.groups) == [("alpha", 3), ("beta", 1)]


def test_rows_keep_paths_and_group_by_level(corpus, model):
    table = evaluate(corpus / "val", model=model, device="cpu", group_by="level:1")
    assert [Path(r["path"]).relative_to(corpus).as_posix() for r in table.rows] == list(FILES)
    assert [g["name"] for g in table.groups] == ["a", "b"] and table.info["group_by"] == "level:1"
    for g in table.groups:
        members = [r for r in table.rows if Path(r["path"]).parent.name == g["name"]]
        _check(g, _expected(members, g["name"]))
    _check(table.mean, _expected(table.rows, "mean"))  # the pooled mean row
    assert evaluate(corpus / "val", model=model, device="cpu").mean == table.mean
    top = table.grouped(group_key("2"))
    assert [(g["name"], g["images"]) for g in top.groups] == [("val", 4)]
    with pytest.raises(ValueError, match="deeper than"):
        table.grouped(group_key("level:999"))
    # Up to the folder given; above it every image fell in one group named after a folder never given.
    assert [g["name"] for g in evaluate(corpus / "val", model=model, device="cpu", group_by="2").groups] == ["val"]
    with pytest.raises(ValueError, match=r"level:3 climbs above the folder .*val that was given \(its image a.x0.png "
                                         r"has 2 folder level\(s\) up to it\); use a level of 1 to 2"):
        evaluate(corpus / "val", model=model, device="cpu", group_by="level:3")
    assert [g["name"] for g in evaluate(sorted((corpus / "val").glob("*/*.png")), model=model, device="cpu",
                                        group_by="level:3").groups] == ["corpus"]  # files given: any level
    with pytest.raises(ValueError, match="level:3 climbs above the folder"):  # comparing variants too
        compare(corpus / "val", [{"model": model}, {"model": model, "method": "mode"}], device="cpu",
                group_by="level:3")
    nested = evaluate([corpus, corpus / "val"], model=model, device="cpu", group_by="level:3")  # corpus bounds it
    assert {g["name"] for g in nested.groups} == {"corpus"}
    text = table.format(per_image=False)
    assert "x0.png" not in text and "\na " in text and "\nb " in text and "\nmean" in text and "d_auc" in text


def test_group_by_manifest_column(corpus, model):
    table = evaluate(corpus / "val", model=model, device="cpu", group_by="source")  # manifest found above
    assert [(g["name"], g["images"]) for g in table.groups] == [("alpha", 3), ("beta", 1)]
    by_rel = {Path(r["path"]).relative_to(corpus).as_posix(): r for r in table.rows}
    for g in table.groups:
        _check(g, _expected([by_rel[f] for f, s in FILES.items() if s == g["name"]], g["name"]))
    assert table.info["group_by"] == "manifest:source"
    # Named explicitly (in the spec or as manifest=), from a copy elsewhere: same groups.
    other = corpus.parent / "elsewhere.csv"
    _write_manifest(other, {str(corpus / f): s.upper() for f, s in FILES.items()})
    named = table.grouped(group_key(f"manifest:source={other}"))
    assert [g["name"] for g in named.groups] == ["ALPHA", "BETA"]
    assert [g["name"] for g in table.grouped(group_key("source", manifest=other)).groups] == ["ALPHA", "BETA"]
    doc = json.loads(table.to_json())
    assert [g["group"] for g in doc["groups"]] == ["alpha", "beta"] and doc["rows"][0]["path"]


@pytest.mark.parametrize("path_column", ["file", "path"])
def test_group_by_a_spreadsheet_manifest(corpus, model, path_column):
    # Excel's "CSV UTF-8" starts with a byte-order mark; a user's own manifest may say path.
    with open(corpus / "manifest.csv", "w", newline="", encoding="utf-8-sig") as fh:
        w = csv.writer(fh)
        w.writerow([path_column, "source"])
        w.writerows(FILES.items())
    table = evaluate(corpus / "val", model=model, device="cpu", group_by="source")
    assert [(g["name"], g["images"]) for g in table.groups] == [("alpha", 3), ("beta", 1)]


def test_missing_manifest_entry_column_or_manifest(corpus, model, tmp_path):
    _write_manifest(corpus / "manifest.csv", {k: v for k, v in FILES.items() if "x1" not in k})
    with pytest.raises(ValueError, match=r"x1\.png is not in .*manifest\.csv.*--manifest"):
        evaluate(corpus / "val", model=model, device="cpu", group_by="source")
    with pytest.raises(ValueError, match=r"no column 'licence'.*split"):
        evaluate(corpus / "val", model=model, device="cpu", group_by="manifest:licence")
    lone = tmp_path / "lone"
    lone.mkdir()
    iio.imwrite(lone / "z.png", np.round(colour_scene(9, 48) * 255).astype(np.uint8))
    with pytest.raises(ValueError, match="no manifest.csv next to or above"):
        evaluate(lone, model=model, device="cpu", group_by="source")
    with pytest.raises(ValueError, match="no file path"):
        evaluate([("arr", colour_scene(1, 48))], model=model, device="cpu", group_by="level:1")


def test_parse_group_by():
    assert parse_group_by("3") == GroupSpec(level=3) and parse_group_by("level:1") == GroupSpec(level=1)
    assert parse_group_by("source") == GroupSpec(column="source")
    assert parse_group_by("manifest:source=m.csv") == GroupSpec(column="source", manifest=Path("m.csv"))
    assert parse_group_by("source", manifest="m.csv").manifest == Path("m.csv")
    for bad, match in (("level:0", "1 .* or more"), ("level:x", "whole number"), ("manifest:", "name a manifest column")):
        with pytest.raises(ValueError, match=match):
            parse_group_by(bad)
    with pytest.raises(ValueError, match="two manifests"):
        parse_group_by("manifest:source=a.csv", manifest="b.csv")


def test_summary_row_near_neutral_check():
    rows = [{"name": "n1", "colourfulness": 12.0, "colourfulness_truth": 10.0},
            {"name": "c", "colourfulness": 30.0, "colourfulness_truth": 40.0},
            {"name": "n2", "colourfulness": 10.0, "colourfulness_truth": 5.0}]
    row = summary_row(rows)
    assert row["neutral"] == 2 and row["neutral_ratio"] == pytest.approx((1.2 + 2.0) / 2)
    assert row["colourfulness_ratio"] == pytest.approx(52 / 55) and row["images"] == 3
    assert summary_row(rows[1:2])["neutral"] == 0 and summary_row(rows[1:2])["neutral_ratio"] is None
    table = EvaluationTable(rows).grouped(lambda r: r["name"][0], label="initial")
    assert [(g["name"], g["images"], g["neutral"]) for g in table.groups] == [("c", 1, 0), ("n", 2, 2)]
    assert table.groups[1]["colourfulness"] == pytest.approx(11.0) and table.info["group_by"] == "initial"
    group_c = [line for line in table.format().splitlines() if line.startswith("c ")][-1]
    assert group_c.endswith(" -")  # no near-neutral image: neutral_ratio None, shown as "-"


def test_neutral_image_is_counted(corpus, model):
    table = evaluate(corpus / "val", model=model, device="cpu")
    truth = iio.imread(corpus / "val/b/y1.png").astype(np.float32) / 255
    assert colourfulness(truth) < 15 and table.mean["neutral"] == 1
    y1 = next(r for r in table.rows if r["name"] == "y1.png")
    assert table.mean["neutral_ratio"] == pytest.approx(y1["colourfulness"] / y1["colourfulness_truth"])


def test_compare_groups_within_each_variant(corpus, model):
    variants = [{"model": model, "name": "cal"}, {"model": model, "name": "mode", "method": "mode"}]
    table = compare(corpus / "val", variants, device="cpu", group_by="level:1")
    assert [g["name"] for g in table.groups] == ["a | cal", "a | mode", "b | cal", "b | mode"]
    single = evaluate(corpus / "val", model=model, device="cpu", method="mode", group_by="level:1")
    _check(table.groups[3], {k: v for k, v in single.groups[1].items() if k != "name"})
    assert table.rows[-1]["name"] == "gray (no colour)" and table.rows[-1]["d_auc"] == 0.0


def test_cli_group_by(tmp_path, corpus, model, capsys):
    from napari_colorize.cli import main

    path = tmp_path / "m.safetensors"
    save_model(model, path)
    out_json = tmp_path / "g.json"
    base = ["evaluate", str(corpus / "val"), "--model", str(path), "--device", "cpu"]
    assert main([*base, "--group-by", "source", "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "\nalpha " in out and "\nbeta " in out and "x0.png" in out and "neutral_ratio" in out
    doc = json.loads(out_json.read_text())
    assert [(g["group"], g["images"]) for g in doc["groups"]] == [("alpha", 3), ("beta", 1)]
    assert doc["info"]["group_by"] == "manifest:source" and len(doc["rows"]) == 4

    assert main([*base, "--group-by", "level:1", "--both", "--method", "default", "--method", "mode",
                 "--summary"]) == 0
    out = capsys.readouterr().out
    for variant in ("auto calibrated", "auto uncalibrated", "mode calibrated", "mode uncalibrated"):
        assert f"a | {variant}" in out and f"b | {variant}" in out
    names = [line.split("  ")[0] for line in out.splitlines()]
    assert names.index("b | mode uncalibrated") < names.index("auto calibrated")  # the pooled rows follow the groups
    assert names[-1] == "gray (no colour)"

    (corpus / "manifest.csv").write_text("file,source\nval/a/x0.png,alpha\n", encoding="utf-8")
    assert main([*base, "--group-by", "source"]) == 2
    assert "is not in" in capsys.readouterr().err
    assert main([*base, "--manifest", str(corpus / "manifest.csv")]) == 2
    assert "--group-by" in capsys.readouterr().err
