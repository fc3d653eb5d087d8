"""Tests of the corpus sources of issue 9 and of validation by source.

* the Qt resource (``.rcc``) reader, on bundles written here byte by byte
  (and, where PyQt6 is installed, checked against Qt's own reader);
* the Jigzo puzzle reader, the photo/drawing rules, near-duplicate
  detection, native crops and the licence lookups of ``scripts/corpus``;
* :mod:`napari_colorize.training.splits` on random manifests.
"""

from __future__ import annotations

import io
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from corpus.crops import crop_base, grid_boxes, native_crops, spread
from corpus.candidates import Candidate
from corpus.dedup import dedup_groups, dhash
from corpus.gcompris import activity_of, bundle_licence, parse_readme
from corpus.licences import CopyrightFile
from corpus.photo import frame_verdict, photo_metrics, photo_verdict, storage_format
from corpus.pzl import PzlError, read_picture
from corpus.rcc import FLAG_COMPRESSED, RccError, iter_entries, read_rcc

from napari_colorize.training.splits import (
    manifest_split,
    read_manifest_sources,
    source_folds,
    sources_by_path,
    split_by_sources,
)

# ---------------------------------------------------------------------------
# A writer for Qt's binary resource format, independent of the reader
# ---------------------------------------------------------------------------


def qt_hash(name: str) -> int:
    """Qt's ``qt_hash`` of a resource name (stored in the names block)."""
    h = 0
    for ch in name:
        h = ((h << 4) + ord(ch)) & 0xFFFFFFFF
        h ^= (h & 0xF0000000) >> 23
        h &= 0x0FFFFFFF
    return h


def write_rcc(files: dict[str, tuple[bytes, bool]], version: int = 3) -> bytes:
    """Bytes of an ``.rcc`` bundle holding ``{path: (content, compress)}``.

    Laid out as ``rcc --binary`` does: header, data blobs, names, then the
    tree with node 0 the root and each directory's children contiguous
    (sorted by name hash, as Qt needs for its binary search).
    """
    tree: dict = {}
    for path, payload in files.items():
        node = tree
        *dirs, leaf = path.split("/")
        for d in dirs:
            node = node.setdefault(d, {})
        node[leaf] = payload

    data, names, name_off = bytearray(), bytearray(), {}
    nodes: list[list] = [["", None, tree]]  # [name, parent_index, content]
    # Breadth first: a directory's children get consecutive node numbers.
    first_child: dict[int, int] = {}
    i = 0
    while i < len(nodes):
        content = nodes[i][2]
        if isinstance(content, dict):
            first_child[i] = len(nodes)
            for child in sorted(content, key=qt_hash):
                nodes.append([child, i, content[child]])
        i += 1

    def name_offset(name: str) -> int:
        if name not in name_off:
            name_off[name] = len(names)
            names.extend(struct.pack(">HI", len(name), qt_hash(name)) + name.encode("utf-16-be"))
        return name_off[name]

    flags_all = 0
    tree_bytes = bytearray()
    for index, (name, _parent, content) in enumerate(nodes):
        off = name_offset(name) if index else 0
        if isinstance(content, dict):
            tree_bytes += struct.pack(">IHII", off, 0x02, len(content), first_child[index])
        else:
            raw, compress = content
            flags = 0
            blob = raw
            if compress:
                blob = struct.pack(">I", len(raw)) + zlib.compress(raw, 9)
                flags = FLAG_COMPRESSED
                flags_all |= flags
            tree_bytes += struct.pack(">IHHHI", off, flags, 0, 1, len(data))
            data += struct.pack(">I", len(blob)) + blob
        if version >= 2:
            tree_bytes += struct.pack(">Q", 1_700_000_000_000)
    header_len = 24 if version >= 3 else 20
    data_off = header_len
    names_off = data_off + len(data)
    tree_off = names_off + len(names)
    header = b"qres" + struct.pack(">IIII", version, tree_off, data_off, names_off)
    if version >= 3:
        header += struct.pack(">I", flags_all)
    return header + bytes(data) + bytes(names) + bytes(tree_bytes)


BUNDLE = {
    "gcompris/src/activities/erase/resource/photo.webp": (bytes(range(256)) * 40, True),
    "gcompris/src/activities/erase/resource/README": (b"Files: photo.webp\nLicense: CC0-1.0\n", False),
    "gcompris/src/activities/erase/Erase.qml": (b"import QtQuick 2.12\n" * 30, True),
    "gcompris/src/core/star.png": (b"\x89PNG\r\n\x1a\n not really a png", False),
    "top.txt": (b"", False),
    "gcompris/src/activities/caf\u00e9/n\u00e4me.bin": (b"\x00\x01\x02\xff", False),
}


# ---------------------------------------------------------------------------
# rcc reader
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", [1, 2, 3])
def test_rcc_reader_reads_back_names_and_bytes(tmp_path, version):
    path = tmp_path / "bundle.rcc"
    path.write_bytes(write_rcc(BUNDLE, version))
    got = read_rcc(path)
    assert got == {name: raw for name, (raw, _) in BUNDLE.items()}


def test_rcc_reader_reports_compression_per_entry():
    entries = {e.path: e for e in iter_entries(write_rcc(BUNDLE))}
    assert entries["gcompris/src/activities/erase/Erase.qml"].compressed
    assert not entries["gcompris/src/core/star.png"].compressed
    # The stored payload of a compressed entry is not the file itself.
    qml = entries["gcompris/src/activities/erase/Erase.qml"]
    assert qml.payload != BUNDLE[qml.path][0] and qml.read() == BUNDLE[qml.path][0]


def test_rcc_reader_rejects_bad_files():
    good = write_rcc(BUNDLE)
    with pytest.raises(RccError, match="qres"):
        list(iter_entries(b"QRES" + good[4:]))
    with pytest.raises(RccError, match="version"):
        list(iter_entries(good[:4] + struct.pack(">I", 9) + good[8:]))
    # A zlib entry whose size prefix disagrees with its content.
    bad = bytearray(good)
    qml = b"import QtQuick 2.12\n" * 30
    prefix = struct.pack(">I", len(qml))
    at = bytes(bad).index(prefix + zlib.compress(qml, 9)[:2])
    bad[at : at + 4] = struct.pack(">I", len(qml) + 1)
    with pytest.raises(RccError, match="inflated"):
        for entry in iter_entries(bytes(bad)):
            entry.read()


def test_rcc_writer_matches_qt(tmp_path):
    """The hand-written bundle is one Qt itself can read (so the reader test is honest)."""
    qtcore = pytest.importorskip("PyQt6.QtCore")
    path = tmp_path / "qt_check.rcc"
    path.write_bytes(write_rcc(BUNDLE))
    assert qtcore.QResource.registerResource(str(path), "/t")
    try:
        for name, (raw, _) in BUNDLE.items():
            f = qtcore.QFile(f":/t/{name}")
            assert f.open(qtcore.QIODevice.OpenModeFlag.ReadOnly), name
            assert bytes(f.readAll()) == raw, name
            f.close()
    finally:
        qtcore.QResource.unregisterResource(str(path), "/t")


# ---------------------------------------------------------------------------
# Jigzo puzzles
# ---------------------------------------------------------------------------


def make_pzl(picture: Image.Image) -> bytes:
    """A minimal Jigzo puzzle whose atlas holds ``picture`` at (0, 0) and junk elsewhere."""
    atlas = Image.new("RGB", (256, 256), (0, 0, 0))
    atlas.paste(picture, (0, 0))
    atlas.paste(Image.new("RGB", (40, 40), (255, 0, 0)), (200, 200))  # a "piece"
    jpg = io.BytesIO()
    atlas.save(jpg, "JPEG", quality=95)
    w, h = picture.size
    texture_map = f"#texture map data\ncrop000 200 200 40 40 0 0 0 0 0 0\nimage 0 0 {w} {h} 1 1\n".encode()
    sections = [("demo.map", texture_map), ("demo-t.jpg", jpg.getvalue()[:10]), ("demo.jpg", jpg.getvalue())]
    out = b"PzlF\n0.1\ndemo\nhttp://example.invalid/\n"
    for name, blob in sections:
        out += f"{name}\n{len(blob)}\n".encode() + blob
    return out


def test_pzl_reader_cuts_the_picture_from_the_atlas():
    y, x = np.mgrid[0:90, 0:150]
    pic = Image.fromarray(np.stack([x * 1.5, y * 2.5, 255 - x], -1).astype(np.uint8))
    got = read_picture(make_pzl(pic))
    assert got.size == (150, 90)
    # JPEG round trip: close to the original (a box off by 10 px would not be).
    diff = np.abs(np.asarray(got, float) - np.asarray(pic, float)).mean()
    assert diff < 3
    with pytest.raises(PzlError):
        read_picture(b"GIF89a")


# ---------------------------------------------------------------------------
# Photo / drawing rules
# ---------------------------------------------------------------------------


def synthetic_photo(rng: np.random.Generator, size: int = 256) -> Image.Image:
    """Smooth colour gradients plus sensor-like noise: what photographs look like numerically."""
    y, x = np.mgrid[0:size, 0:size] / size
    base = np.stack([0.3 + 0.5 * x, 0.2 + 0.6 * y, 0.5 + 0.3 * np.sin(6 * x * y)], -1)
    noisy = np.clip(base + rng.normal(0, 0.03, base.shape), 0, 1)
    return Image.fromarray((noisy * 255).astype(np.uint8))


def synthetic_drawing(size: int = 256) -> Image.Image:
    """Flat fills in a few colours with black outlines: a cartoon."""
    a = np.full((size, size, 3), (250, 230, 90), np.uint8)
    a[40:200, 50:150] = (220, 60, 40)
    a[120:230, 140:240] = (60, 120, 220)
    a[38:42, 50:150] = a[198:202, 50:150] = 0
    return Image.fromarray(a)


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def test_storage_format_tells_lossy_from_lossless():
    im = synthetic_drawing(64)
    assert storage_format(encode(im, "JPEG")) == "jpeg"
    assert storage_format(encode(im, "PNG")) == "png"
    assert storage_format(encode(im, "WEBP", quality=80)) == "webp-lossy"
    assert storage_format(encode(im, "WEBP", lossless=True)) == "webp-lossless"
    # Extended WebP (alpha + lossy): the VP8 chunk comes after VP8X/ALPH.
    rgba = im.convert("RGBA")
    assert storage_format(encode(rgba, "WEBP", quality=80)) == "webp-lossy"
    assert storage_format(b"GIF89a...") == "other"


def test_frame_verdict_keeps_lossy_full_frames_only(rng):
    photo = synthetic_photo(rng)
    data = encode(photo, "WEBP", quality=85)
    assert frame_verdict(data, Image.open(io.BytesIO(data))) is None
    data = encode(photo, "JPEG", quality=90)
    assert frame_verdict(data, Image.open(io.BytesIO(data))) is None
    data = encode(photo, "WEBP", lossless=True)
    assert "lossless" in frame_verdict(data, Image.open(io.BytesIO(data)))
    cutout = photo.convert("RGBA")
    alpha = np.full(photo.size[::-1], 255, np.uint8)
    alpha[:, :60] = 0  # a quarter transparent: a sprite, not a photograph
    cutout.putalpha(Image.fromarray(alpha))
    data = encode(cutout, "WEBP", quality=85)
    assert "cut-out" in frame_verdict(data, Image.open(io.BytesIO(data)))


@pytest.mark.parametrize("kind", ["photo", "curated"])
def test_photo_verdict_separates_photo_from_drawing(rng, kind):
    assert photo_verdict(photo_metrics(synthetic_photo(rng)), kind) is None
    assert photo_verdict(photo_metrics(synthetic_drawing()), kind) is not None


def test_curated_thresholds_are_looser_than_photo():
    # An object photographed on white: few colours, but not flat fills.
    metrics = {"colours": 250.0, "flat": 0.05}
    assert photo_verdict(metrics, "photo") is not None
    assert photo_verdict(metrics, "curated") is None
    assert photo_verdict({"colours": 250.0, "flat": 0.4}, "curated") is not None


def test_crop_verdict_drops_out_of_focus_windows(rng):
    sharp = synthetic_photo(rng)
    bokeh = sharp.filter(ImageFilter.GaussianBlur(12)).resize((64, 64)).resize((256, 256))
    # A window of an accepted photograph need not look like a photograph
    # (few colours, smooth), but it must hold some detail.
    assert photo_verdict(photo_metrics(sharp), "crop") is None
    assert "out-of-focus" in photo_verdict(photo_metrics(bokeh), "crop")
    assert photo_verdict({"colours": 60.0, "flat": 0.5, "detail": 0.02}, "crop") is None


# ---------------------------------------------------------------------------
# Near-duplicates
# ---------------------------------------------------------------------------


def test_dedup_groups_a_near_duplicate_pair_only(rng):
    a = synthetic_photo(rng, 320)
    # Rescaled, recompressed and slightly brighter: the same photograph.
    b = Image.open(io.BytesIO(encode(a.resize((200, 200)), "JPEG", quality=70)))
    b = Image.fromarray(np.clip(np.asarray(b, np.int16) + 8, 0, 255).astype(np.uint8))
    c = a.transpose(Image.Transpose.FLIP_LEFT_RIGHT).rotate(90)  # different picture
    d = synthetic_drawing(320)
    hashes = [dhash(im) for im in (a, b, c, d)]
    groups = dedup_groups(hashes)
    assert groups[0] == groups[1]
    assert len({groups[0], groups[2], groups[3]}) == 3


# ---------------------------------------------------------------------------
# Native crops
# ---------------------------------------------------------------------------


def test_grid_boxes_are_disjoint_and_inside():
    boxes = grid_boxes((2700, 1350), 512)
    assert len(boxes) == 10
    for x0, y0, x1, y1 in boxes:
        assert 0 <= x0 < x1 <= 2700 and 0 <= y0 < y1 <= 1350 and x1 - x0 == y1 - y0 == 512
    area = np.zeros((1350, 2700), np.int8)
    for x0, y0, x1, y1 in boxes:
        area[y0:y1, x0:x1] += 1
    assert area.max() == 1
    assert grid_boxes((500, 4000), 512) == []
    assert spread(10, 3) == [0, 4, 9] and spread(3, 6) == [0, 1, 2]


def test_native_crops_cap_per_parent_and_share_the_parent():
    def cand(parent: str, size: tuple[int, int], tag: str = "", cap: int | None = None) -> Candidate:
        im = Image.new("RGB", size)
        return Candidate("pkg", parent, parent, size[0] * size[1], "CC0", lambda: im, tag=tag,
                         size=size, max_crops=cap)

    cands = [cand("big", (5120, 2880)), cand("big", (2560, 1440), tag="crop0"),
             cand("small", (900, 600)), cand("pano", (3000, 1100), tag="tile0"),
             cand("pano", (3000, 1100), tag="tile1"), cand("earth", (2700, 1350), cap=10)]
    crops = native_crops(cands, 512, per_parent=6)
    per = {}
    for c in crops:
        per.setdefault(c.parent, []).append(c)
    assert len(per["big"]) == 6 and "small" not in per and len(per["earth"]) == 10
    assert len(per["pano"]) == 6 and {c.tag.split("+")[0] for c in per["pano"]} == {"tile0", "tile1"}
    assert all(c.load().size == (512, 512) for c in per["big"])
    assert all(not c.tag.startswith("crop") for c in crops)
    assert {crop_base(c.tag) for c in per["pano"]} == {"tile0", "tile1"}
    assert crop_base("grid3") == "" and crop_base("crop0") is None and crop_base("tile2") is None


# ---------------------------------------------------------------------------
# Licences
# ---------------------------------------------------------------------------

COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/

Files: *
License: GPL-3+

Files: images/*.png
License: GPL-3

Files: src/activities/erase/resource/fish1.jpg
License: CC-BY-SA-3.0
"""


def test_licences_of_converted_and_unlisted_resources(tmp_path):
    path = tmp_path / "copyright"
    path.write_text(COPYRIGHT)
    cr = CopyrightFile(path)
    readmes = {"gcompris/src/activities/erase/resource": parse_readme(
        "Copyright: someone\nLicense: CC0-1.0\nFiles:\n  sub/bee.webp\n  other.webp\n\n"
        "License: Public Domain\nFiles: moth.webp\n")}
    erase = "gcompris/src/activities/erase/resource"
    # Listed by Debian under its pre-conversion name.
    assert bundle_licence(cr, f"{erase}/fish1.webp", readmes) == "CC-BY-SA-3.0"
    # Not listed by Debian: upstream's README, even from an ancestor folder.
    assert bundle_licence(cr, f"{erase}/sub/bee.webp", readmes).startswith("CC0-1.0")
    assert bundle_licence(cr, f"{erase}/moth.webp", readmes).startswith("public-domain")
    assert parse_readme("License: CC-BY-SA 4.0\nFiles: a.webp b.webp\n") == {
        "a.webp": "CC-BY-SA-4.0", "b.webp": "CC-BY-SA-4.0"}
    # A top-level "images/*.png" stanza must not match a nested images folder.
    nested = "gcompris/src/activities/categorization/resource/images/x.webp"
    assert bundle_licence(cr, nested, readmes) == "GPL-3+ (copyright file, Files: *)"
    assert activity_of(nested) == "categorization"


# ---------------------------------------------------------------------------
# Validation by source
# ---------------------------------------------------------------------------


def random_manifest(rng: np.random.Generator) -> list[str]:
    """A source per image: 2-15 sources of 1-60 images, shuffled."""
    n_sources = int(rng.integers(2, 16))
    counts = rng.integers(1, 61, n_sources)
    sources = [f"src{s}" for s, n in enumerate(counts) for _ in range(n)]
    return [sources[i] for i in rng.permutation(len(sources))]


@pytest.mark.parametrize("trial", range(60))
def test_source_folds_never_put_a_source_on_both_sides(trial):
    rng = np.random.default_rng(1000 + trial)
    sources = random_manifest(rng)
    distinct = sorted(set(sources))
    k = int(rng.integers(2, len(distinct) + 1))
    folds = source_folds(sources, k, seed=trial)
    assert len(folds) == k
    src = np.asarray(sources)
    validated = []
    for fold in folds:
        assert not set(src[fold.train]) & set(src[fold.val])
        assert set(src[fold.val]) == set(fold.val_sources)
        assert sorted(np.concatenate([fold.train, fold.val]).tolist()) == list(range(len(sources)))
        validated += fold.val_sources
    # Every source is validated exactly once.
    assert sorted(validated) == distinct
    # Balanced as GroupKFold's greedy: the fullest fold exceeds the emptiest by
    # at most its smallest source (it was the emptiest when that one was added).
    sizes = [len(f.val) for f in folds]
    fullest = folds[int(np.argmax(sizes))]
    assert max(sizes) - min(sizes) <= min(sources.count(s) for s in fullest.val_sources)
    # Deterministic for a seed.
    again = source_folds(sources, k, seed=trial)
    assert [f.val_sources for f in again] == [f.val_sources for f in folds]


def test_source_folds_seed_changes_ties_only():
    sources = [f"s{i}" for i in range(8) for _ in range(5)]  # all sources equally large
    a = [f.val_sources for f in source_folds(sources, 4, seed=0)]
    b = [f.val_sources for f in source_folds(sources, 4, seed=1)]
    assert a != b
    assert all(len(v) == 2 for v in a + b)


def test_too_few_sources_is_a_clear_error():
    with pytest.raises(ValueError, match="5 folds need at least 5 distinct sources.*has 3"):
        source_folds(["a", "b", "c", "a"], 5)
    with pytest.raises(ValueError, match="at least 2 folds"):
        source_folds(["a", "b"], 1)
    with pytest.raises(ValueError, match="not in the data: zzz"):
        split_by_sources(["a", "b"], ["zzz"])


def test_composites_follow_their_backdrop():
    sources = ["photos1"] * 3 + ["photos2"] * 3 + ["stamps"] * 4
    links = [""] * 6 + ["photos1", "photos2", "photos1", "photos2"]
    folds = source_folds(sources, 2, seed=0, links=links)
    # The composite-only source is never validated on, only trained on.
    assert sorted(s for f in folds for s in f.val_sources) == ["photos1", "photos2"]
    for fold in folds:
        held = set(fold.val_sources)
        # A composite whose backdrop is held out never trains.
        for i in fold.train:
            assert sources[i] not in held and links[i] not in held
        assert {links[i] for i in fold.dropped} <= held
        assert len(fold.dropped) == 2


def test_read_manifest_sources(tmp_path):
    path = tmp_path / "manifest.csv"
    path.write_text("file,split,source,backdrop_source,weight\n"
                    "train/a.png,train,pkg/a,,1\ntrain/b.png,train,stamps,pkg/a,1\n")
    files, sources, links = read_manifest_sources(path)
    assert files == ["train/a.png", "train/b.png"]
    assert sources == ["pkg/a", "stamps"] and links == ["", "pkg/a"]
    old = tmp_path / "old.csv"
    old.write_text("file,weight\ntrain/a.png,1\n")
    with pytest.raises(ValueError, match="no 'source' column"):
        read_manifest_sources(old)
    # One reader with evaluation's --group-by (napari_colorize.io.read_manifest_rows): a cell
    # padded by hand names the same source there and here.
    padded = tmp_path / "padded.csv"
    padded.write_text("file, source\ntrain/a.png, pkg/a \n")
    assert read_manifest_sources(padded) == (["train/a.png"], ["pkg/a"], [""])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_manifest_sources(tmp_path / "missing.csv")
    # A spreadsheet saved in a European locale separates with ';', or as text with tabs: it
    # said "has no path column ... it has ['file;source']".
    for name, sep in (("semi.csv", ";"), ("tabs.csv", "\t")):
        (tmp_path / name).write_text(f"\ufefffile{sep}source\ntrain/a.png{sep}pkg/a\n", encoding="utf-8")
        assert read_manifest_sources(tmp_path / name) == (["train/a.png"], ["pkg/a"], [""])
    # A header alone (or a binary file) said "validation sources not in the data".
    (tmp_path / "empty.csv").write_text("file,source\n")
    with pytest.raises(ValueError, match=r"empty.csv lists no images \(it has only a header\)"):
        read_manifest_sources(tmp_path / "empty.csv")
    (tmp_path / "binary.csv").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    with pytest.raises(ValueError, match="is not a text CSV file"):
        read_manifest_sources(tmp_path / "binary.csv")


def test_manifest_split_gives_paths_per_side(tmp_path):
    path = tmp_path / "manifest.csv"
    lines = ["file,source,backdrop_source"]
    lines += [f"train/a{i}.png,set/a," for i in range(3)] + [f"val/b{i}.png,set/b," for i in range(2)]
    lines += ["train/c0.png,set/c,", "train/s0.png,stamps,set/b"]
    path.write_text("\n".join(lines) + "\n")
    train, val, held = manifest_split(path, val_sources=["set/b"])
    assert held == ("set/b",)
    assert val == [tmp_path / "val/b0.png", tmp_path / "val/b1.png"]
    # The composite on a set/b backdrop trains nowhere while set/b is held out.
    assert tmp_path / "train/s0.png" not in train and len(train) == 4
    folds = [manifest_split(path, n_folds=3, fold=f, seed=2)[2] for f in range(3)]
    assert sorted(s for held in folds for s in held) == ["set/a", "set/b", "set/c"]
    assert sources_by_path(path)[tmp_path / "train/c0.png"] == "set/c"
    with pytest.raises(ValueError, match="either"):
        manifest_split(path)
    with pytest.raises(ValueError, match="fold 3"):
        manifest_split(path, n_folds=3, fold=3)


def test_manifest_lookup_training_one_level_up_evaluation_any_level(tmp_path):
    from napari_colorize.io import find_manifest_above
    from napari_colorize.training.manifest import find_manifest

    data = tmp_path / "corpus" / "images" / "deep"
    data.mkdir(parents=True)
    top = tmp_path / "manifest.csv"
    top.write_text("file,source\n")
    # Two levels up: evaluation finds it, training does not (it would set a user's weights).
    assert find_manifest_above(data) == top
    assert find_manifest_above(data, levels=1) is None and find_manifest([data]) is None
    parent = data.parent / "manifest.csv"
    parent.write_text("file,source\n")
    assert find_manifest([data]) == find_manifest_above(data) == parent
    own = data / "manifest.csv"
    own.write_text("file,source\n")
    assert find_manifest([data, tmp_path]) == find_manifest_above(data / "x.png") == own
    assert find_manifest([]) is None


def test_manifest_lookup_follows_the_folders_as_written(tmp_path):
    # corpus/data may be a link to photos stored elsewhere; the manifest sits in corpus.
    from napari_colorize.training.manifest import find_manifest

    photos = tmp_path / "disk" / "photos"
    photos.mkdir(parents=True)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "manifest.csv").write_text("file,source\n")
    (corpus / "data").symlink_to(photos, target_is_directory=True)
    assert find_manifest([corpus / "data"]) == corpus / "manifest.csv"
