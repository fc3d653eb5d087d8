"""evaluate and calibrate say when the images given trained the model (its metadata tells)."""

from __future__ import annotations

import copy
import csv
import warnings
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

import napari_colorize as nc
from napari_colorize.cli import main
from napari_colorize.evaluate import calibrate, compare, evaluate
from napari_colorize.evaluate.provenance import TrainedOnWarning, trained_on


def _photos(folder: Path, n: int, seed: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        rgb = np.zeros((48, 48, 3), np.uint8)
        rgb[..., 0] = rng.integers(120, 255)
        rgb[..., 2] = np.linspace(0, 255, 48).astype(np.uint8)
        paths.append(folder / f"p{i}.png")
        iio.imwrite(paths[-1], rgb)
    return paths


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A corpus of two sources, a (train) and b (validation), and a composite of a's stamps on a b backdrop."""
    root = tmp_path / "corpus"
    a, b, comp = _photos(root / "a", 2, 0), _photos(root / "b", 2, 1), _photos(root / "comp", 1, 2)
    with open(root / "manifest.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "source", "backdrop_source"])
        w.writerows([[p.relative_to(root).as_posix(), "a", ""] for p in a]
                    + [[p.relative_to(root).as_posix(), "b", ""] for p in b]
                    + [[comp[0].relative_to(root).as_posix(), "a", "b"]])
    return root


def _model(make_model, path: Path, **training) -> Path:
    model = copy.deepcopy(make_model())
    model.config.training.clear()
    return nc.save_model(model, path, **training)


def test_plain_training_folder_is_recognised(tmp_path, make_model):
    trained = _photos(tmp_path / "train", 2, 0)
    other = _photos(tmp_path / "train_more", 1, 1)  # a sibling whose name starts the same: not inside
    record = {"data": [str(tmp_path / "train")]}
    assert trained_on(record, [*trained, *other, None]) == [p.resolve() for p in trained]
    assert trained_on({"data": "unit test"}, trained) == []  # a record of another kind names no folder
    assert trained_on({}, trained) == []


def test_split_counts_only_training_sources(corpus, monkeypatch, make_model):
    monkeypatch.chdir(corpus.parent)  # the record keeps the manifest as given on the command line
    record = {"data": [str(corpus)], "held_out": {"manifest": "corpus/manifest.csv", "train_sources": ["a"],
                                                  "val_sources": ["b"], "test_sources": []}}
    files = sorted(corpus.rglob("*.png"))
    assert trained_on(record, files) == sorted((corpus / "a").glob("*.png"))  # not b, not the b-backdrop composite
    monkeypatch.chdir(corpus / "a")  # the recorded path does not lead there: the data folder's manifest is used
    assert trained_on(record, files) == sorted((corpus / "a").glob("*.png"))
    (corpus / "manifest.csv").rename(corpus.parent / "elsewhere.csv")
    assert trained_on(record, files) == []  # no manifest to be found: no claim


def test_fine_tuned_model_counts_its_base_models_images(tmp_path):
    base, own, fresh = _photos(tmp_path / "base", 1, 0), _photos(tmp_path / "own", 1, 1), _photos(tmp_path / "new", 1, 2)
    record = {"init": "base.safetensors", "data": [str(tmp_path / "own")], "held_out": None,
              "init_training": {"data": [str(tmp_path / "base")], "held_out": None, "init_training": "odd"}}
    assert trained_on(record, [*fresh, *base, *own]) == [base[0].resolve(), own[0].resolve()]
    # A base record written before it kept the split (no held_out key) cannot tell which images trained.
    del record["init_training"]["held_out"]
    assert trained_on(record, [*fresh, *base, *own]) == [own[0].resolve()]


def test_what_training_did_decides(tmp_path, corpus, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # A composite whose backdrop source has no images of its own trains (split_by_sources): it counts.
    rows = (corpus / "manifest.csv").read_text().replace("comp/p0.png,a,b", "comp/p0.png,a,z")
    (corpus / "manifest.csv").write_text(rows)
    record = {"data": [str(corpus)], "held_out": {"manifest": "corpus/manifest.csv", "train_sources": ["a"],
                                                  "val_sources": ["b"], "test_sources": [], "train_images": 3}}
    files = sorted(corpus.rglob("*.png"))
    assert [p.name for p in trained_on(record, files)] == ["p0.png", "p1.png", "p0.png"]  # a/*, comp/p0
    # A manifest that does not give the recorded number of training images is not the one it used.
    assert trained_on(record | {"held_out": record["held_out"] | {"train_images": 7}}, files) == []
    # A run that skipped one of the 3 (train_images 2) records its split's 3 as split_images: the
    # split is still recognised (the fallback gave up when the two counts differed).
    skipped = record | {"held_out": record["held_out"] | {"train_images": 2, "split_images": 3},
                        "trained_files": {"scheme": "damaged"}}
    assert [p.name for p in trained_on(skipped, files)] == ["p0.png", "p1.png", "p0.png"]
    # An image named through a link to a folder outside the data folder, as training walks it.
    outside = _photos(tmp_path / "store", 1, 3)[0]
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "linked").symlink_to(tmp_path / "store")
    assert trained_on({"data": [str(tmp_path / "train")]}, [tmp_path / "train" / "linked" / "p0.png"]) == [outside]


@pytest.mark.parametrize("record", [{"data": 3}, {"data": [None, 3]}, {"data": ["x"], "held_out": "odd"},
                                    {"init_training": ["odd"]}, ["odd"], "odd", None,
                                    {"data": ["x"], "held_out": {"manifest": 5, "val_sources": "b"}}])
def test_odd_training_records_never_stop_an_evaluation(tmp_path, record):
    image = _photos(tmp_path / "x", 1, 0)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trained_on(record, [image])


def test_evaluate_and_calibrate_warn_on_training_images(tmp_path, make_model):
    trained, fresh = _photos(tmp_path / "train", 2, 0), _photos(tmp_path / "new", 2, 1)
    path = _model(make_model, tmp_path / "m.safetensors", data=[str(tmp_path / "train")])
    with pytest.warns(TrainedOnWarning, match=r"2 of the 3 images evaluated were used to train this model"):
        evaluate([*trained, fresh[0]], model=str(path), device="cpu")
    with pytest.warns(TrainedOnWarning, match="calibrated on were used to train"):
        calibrate(str(path), trained, device="cpu", temperature=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrainedOnWarning)
        evaluate(fresh, model=str(path), device="cpu")
        calibrate(str(path), fresh, device="cpu", temperature=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compare(trained, [{"model": str(path)}, {"model": str(path), "calibrated": False}], device="cpu")
    assert sum(issubclass(w.category, TrainedOnWarning) for w in caught) == 1  # once per model, not per variant


def test_cli_evaluate_prints_the_warning(tmp_path, make_model, capsys):
    trained = _photos(tmp_path / "train", 2, 0)
    path = _model(make_model, tmp_path / "m.safetensors", data=[str(tmp_path / "train")])
    assert main(["evaluate", str(tmp_path / "train"), "--model", str(path), "--device", "cpu", "--summary"]) == 0
    err = capsys.readouterr().err
    assert f"warning: 2 of the 2 images evaluated were used to train this model, {path} (e.g." in err
    assert str(trained[0].name) in err
    # With several models compared, each warning names its model (the same line came twice).
    other = _model(make_model, tmp_path / "other.safetensors", data=[str(tmp_path / "train")])
    assert main(["evaluate", str(tmp_path / "train"), "--model", str(path), "--model", str(other), "--device", "cpu",
                 "--summary"]) == 0
    err = capsys.readouterr().err
    assert f"used to train this model, {path} (e.g." in err and f"used to train this model, {other} (e.g." in err


def test_a_manifest_in_the_data_folder_and_repeated_rows(tmp_path, corpus, monkeypatch):
    # Trained from inside the corpus with --manifest manifest.csv: found from elsewhere through the
    # data folder itself. A row repeated under another spelling is one training file, as recorded.
    with open(corpus / "manifest.csv", "a", newline="") as fh:
        csv.writer(fh).writerow(["./a/p0.png", "a", ""])
    record = {"data": [str(corpus)], "held_out": {"manifest": "manifest.csv", "train_sources": ["a"],
                                                  "val_sources": ["b"], "test_sources": [], "train_images": 2}}
    monkeypatch.chdir(tmp_path)
    files = sorted(corpus.rglob("*.png"))
    assert trained_on(record, files) == sorted((corpus / "a").glob("*.png"))


# ----------------------------------------------------------------------------- the files a run recorded

def test_the_files_a_run_trained_on_decide_not_its_folder(tmp_path):
    from napari_colorize.training import TrainConfig, train

    folder = tmp_path / "train"
    trained = _photos(folder, 2, 0)
    iio.imwrite(folder / "tiny.png", iio.imread(trained[0])[:24, :24])  # too small for the crop: skipped
    out = tmp_path / "m.safetensors"
    train(TrainConfig(data=[str(folder)], output=str(out), steps=1, batch_size=2, crop=32, max_side=48, points=16,
                      workers=0, progress=False, log="", weights="none"))
    added = _photos(tmp_path / "later", 1, 5)[0].rename(folder / "added_later.png")  # after training
    record = nc.load_model(out).config.training
    assert record["trained_files"]["count"] == 2
    assert trained_on(record, sorted(folder.iterdir())) == [p.resolve() for p in trained]
    replaced = trained[1]
    iio.imwrite(replaced, 255 - iio.imread(replaced))  # another image of the same size under a trained name
    assert trained_on(record, [*trained, added]) == [trained[0].resolve()]
    with warnings.catch_warnings():  # neither the new nor the skipped image is claimed
        warnings.simplefilter("error", TrainedOnWarning)
        evaluate([added], model=str(out), device="cpu")


def test_a_fine_tuned_models_base_record_of_files_counts(tmp_path):
    from napari_colorize.training.trained_files import trained_files_record

    base, own = _photos(tmp_path / "base", 2, 0), _photos(tmp_path / "own", 1, 1)
    record = {"data": [str(tmp_path / "own")], "trained_files": trained_files_record(own),
              "init_training": {"data": [str(tmp_path / "base")], "trained_files": trained_files_record(base[:1])}}
    # The base record has no split (held_out) key: without its file list it could not tell at all.
    assert trained_on(record, [*base, *own]) == [base[0].resolve(), own[0].resolve()]


@pytest.mark.parametrize("damage", [{"scheme": "other"}, {"digests": "not base64!"}, {"count": 7}, {"digests": 3}])
def test_a_damaged_file_record_falls_back_to_the_folders(tmp_path, damage):
    from napari_colorize.training.trained_files import trained_files_record

    files = _photos(tmp_path / "train", 2, 0)
    record = {"data": [str(tmp_path / "train")], "trained_files": trained_files_record(files[:1]) | damage}
    assert trained_on(record, files) == [p.resolve() for p in files]


def test_the_file_record_is_compact_and_the_shipped_model_keeps_its_split_record():
    import json

    from napari_colorize.model import read_config
    from napari_colorize.training.trained_files import trained_files_record

    record = trained_files_record([__file__, Path(__file__).parent / "conftest.py", __file__])  # one file twice
    assert record["count"] == 2 and len(record["digests"]) == 24  # 8 bytes a file, base64
    # The default model was trained before the record existed, with a manifest split: it is read
    # by the fallback (its data folders and split), unchanged.
    training = read_config("default").training
    assert "trained_files" not in training and isinstance(training["held_out"], dict)
    assert {"manifest", "val_sources", "test_sources", "train_images"} <= set(training["held_out"])
    assert trained_on(training, [__file__]) == []
    assert len(json.dumps(trained_files_record([]))) < 200


def test_images_of_sampling_weight_0_are_not_recorded_as_trained(tmp_path):
    from napari_colorize.training import TrainConfig, train

    folder = tmp_path / "train"
    photos = _photos(folder, 3, 0)
    with open(folder / "weights.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([["file", "weight"], ["p0.png", 1], ["p1.png", 1], ["p2.png", 0]])
    out = tmp_path / "m.safetensors"
    train(TrainConfig(data=[str(folder)], output=str(out), steps=1, batch_size=2, crop=32, max_side=48, points=16,
                      workers=0, progress=False, log="", weights=str(folder / "weights.csv")))
    record = nc.load_model(out).config.training
    assert record["trained_files"]["count"] == 2  # never drawn, never trained
    assert trained_on(record, photos) == [p.resolve() for p in photos[:2]]
