"""Which files are images: the suffix list, zarr stores, and walking folders and globs.

The one place that decides this for every front end: ``napari-colorize colorize``
(:func:`find_inputs`), training and evaluation (:func:`scan_images`).
"""

from __future__ import annotations

import errno
import glob
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

__all__ = ["IMAGE_SUFFIXES", "is_broken_link", "is_zarr", "is_glob", "split_glob", "image_stem", "find_inputs", "walk_images", "scan_images",
           "source_fingerprint", "broken_link_reason", "is_our_output", "own_outputs_note", "shown_path"]

#: The file extensions of colorize's PNG and TIFF outputs (its zarr stores are never walked as images).
_OUTPUT_EXTENSIONS = (".png", ".tif")

#: File name endings read as images (case-insensitive).  Files are decoded by their
#: content, so a PNG named ``.jpg`` is still read as a PNG.  GIF, the Netpbm family
#: (PGM/PPM/PBM/PNM) and JPEG 2000 are read by Pillow like the others.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif", ".pgm", ".ppm", ".pbm", ".pnm",
                  ".jp2", ".j2k")


#: Folders a file system keeps for itself at a volume's top (ext4's, and NTFS's when mounted):
#: unreadable to users by design, passed over in silence by a walk, not failed.
SYSTEM_FOLDERS = frozenset({"lost+found", "System Volume Information", "$RECYCLE.BIN"})


def is_zarr(path: Path) -> bool:
    """A zarr store (v2 or v3), judged by its metadata files or its ``.zarr`` suffix.

    False, not an error, for a folder that cannot be read: the walk then reports it."""
    return os.path.isdir(path) and (Path(path).suffix.lower() == ".zarr" or any(
        os.path.exists(os.path.join(path, name)) for name in (".zarray", ".zgroup", "zarr.json")))


def unreadable_reason(path: str | os.PathLike, err: OSError | None = None) -> str:
    """Why ``path`` (a named input, or a folder met in a walk) cannot be reached, and what to do.

    ``err`` is the error met, if any; else ``path`` is examined.  A permission error says so
    (the path is there), where ``os.path.exists`` would say "no such file"."""
    if err is None:
        try:
            os.lstat(path)
        except OSError as met:
            err = met
        else:
            return "cannot be read"
    if isinstance(err, FileNotFoundError):
        return "no such file or folder"
    if isinstance(err, PermissionError):
        what = ("folder cannot be read, so none of its images were used" if os.path.isdir(path)
                else "file, or a folder on its path, cannot be read")
        return f"permission denied: this {what}; make it readable (chmod, or ask its owner) and run again, or leave it out"
    return f"cannot be read ({err.strerror or err})"


def source_fingerprint(path: str | os.PathLike) -> str:
    """Path, size and modification time of an input: what a resumable job knows it by.

    A zarr store is a folder whose pixels sit in files below it: rewriting a chunk
    leaves the folder's own size and time alone, so a store's fingerprint sums every
    file in it (count, bytes, newest time) and a changed store is never taken for the
    one an earlier result came from.
    """
    path = Path(path).resolve()
    if not path.is_dir():
        st = path.stat()
        return f"{path}|{st.st_size}|{st.st_mtime_ns}"
    count = size = newest = 0
    folders = [str(path)]
    while folders:  # os.scandir, not os.walk + os.stat: half the time on a store of 10,000 chunks
        with os.scandir(folders.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    folders.append(entry.path)
                    continue
                st = entry.stat()
                count, size, newest = count + 1, size + st.st_size, max(newest, st.st_mtime_ns)
    return f"{path}|{count} files|{size}|{newest}"


def as_written(path: str | os.PathLike) -> Path:
    """``path`` made absolute with its links kept (they name outputs and groups), or resolved
    when it holds ``..``: after a link, ``..`` is the link target's parent, which only the
    file system knows."""
    path = Path(path)
    return path.resolve() if ".." in path.parts else Path(os.path.abspath(path))


def is_glob(pattern: str) -> bool:
    """True if ``pattern`` is a glob: it has ``*?[`` and names no existing path.

    An existing file or folder is taken literally: ``scan[1].png`` is that file, not a
    pattern matching ``scan1.png`` (microscopes and spreadsheets write such names).
    """
    return glob.has_magic(pattern) and not os.path.lexists(pattern)


def split_glob(pattern: str) -> tuple[Path, str]:
    """A glob split into its fixed folder (``.`` if none) and the rest, which holds the wildcards.

    Leading parts that name existing paths are fixed even with ``[`` in them: ``a[1]/*.png``
    lists the folder ``a[1]``.
    """
    parts = Path(pattern).parts
    fixed = 0
    while fixed < len(parts) and (not glob.has_magic(parts[fixed]) or os.path.lexists(Path(*parts[:fixed + 1]))):
        fixed += 1
    return Path(*parts[:fixed]) if fixed else Path(), os.path.join("", *parts[fixed:])


def image_stem(name: str) -> str:
    """A file or store name without its suffix, and without ``.ome`` before it.

    ``x.ome.tif`` and ``x.ome.zarr`` name the image ``x``: outputs are ``x_colorized.tif``,
    not ``x.ome_colorized.tif`` (whether an output is OME is its content, not its name).
    """
    stem, suffix = os.path.splitext(name)
    if suffix and stem.lower().endswith(".ome") and len(stem) > 4:
        stem = stem[:-4]
    return stem


def _is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_SUFFIXES and not name.startswith(".")


def walk_images(folder: Path, stores: bool = True, others: list[Path] | None = None,
                unreadable: list[tuple[str, str]] | None = None) -> list[Path]:
    """Image files (and zarr stores, if ``stores``) under ``folder``, recursively.

    A sub-folder that cannot be listed (no read permission) is never passed over in silence:
    it is added to ``unreadable`` as (folder, why), or without that list, raised as an error;
    only a file system's own folders (:data:`SYSTEM_FOLDERS`, such as ``lost+found``) are.

    Hidden files and folders (names starting with ".": editor backups, macOS
    ``._`` resource forks, our own temporary files) are skipped; a zarr store is one
    input, never walked into.  Folders and files are visited in sorted order.
    The other files met (not hidden, not images by their name) are added to ``others``.

    Linked folders are followed, as linked files are (a data set assembled from links),
    and named through the link.  A folder already walked (by its resolved path: a link
    to an ancestor, or a second link to one folder) is not walked again, so a cycle
    ends and nothing is read twice; real sub-folders come before links to them.
    """
    out: list[Path] = []
    walked = {os.path.realpath(folder)}
    real: set[str] | None = None  # listed once a link is met: most trees have none

    def cannot_list(err: OSError) -> None:  # os.walk passes over such a folder without a word
        if os.path.basename(err.filename) in SYSTEM_FOLDERS:  # root's own, at every volume's top
            return
        reason = unreadable_reason(err.filename, err)
        if unreadable is None:
            raise type(err)(err.errno, f"{err.filename}: {reason}") from err
        unreadable.append((str(err.filename), reason))

    for root, dirs, files in os.walk(folder, followlinks=True, onerror=cannot_list):
        rootp = Path(root)
        found = [d for d in dirs if is_zarr(rootp / d)]
        if stores:
            out += [rootp / d for d in sorted(found)]
        names = [d for d in dirs if d not in found and not d.startswith(".")]
        if real is None and any(os.path.islink(rootp / d) for d in names):
            real = _real_folders(folder)
        dirs[:] = _unseen_folders(rootp, names, walked, real or set())
        out += [rootp / f for f in sorted(files) if _is_image_name(f)]
        if others is not None:
            others += [rootp / f for f in sorted(files) if not f.startswith(".") and not _is_image_name(f)]
    return out


def _real_folders(folder: Path) -> set[str]:
    """Resolved paths of the walked (not hidden, not zarr) folders below ``folder`` reached without links."""
    found = set()
    for root, dirs, _ in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".") and not is_zarr(Path(root) / d)]
        found.update(os.path.realpath(os.path.join(root, d)) for d in dirs if not os.path.islink(os.path.join(root, d)))
    return found


def _unseen_folders(root: Path, names: list[str], walked: set[str], real: set[str]) -> list[str]:
    """The sub-folders of ``root`` to walk, sorted: none already walked (by resolved path: a
    link to an ancestor, a second link to one folder), and no link to a folder that the
    walk reaches without links (``real``), so files keep their real names even when the
    link is met first.  ``walked`` gets the folders kept."""
    keep = []
    for name in sorted(names):
        path = root / name
        resolved = os.path.realpath(path)
        if resolved in walked or (os.path.islink(path) and resolved in real):
            continue
        walked.add(resolved)
        keep.append(name)
    return keep


def find_inputs(patterns: Iterable[str], others: list[Path] | None = None,
                aliases: list[tuple[Path, Path]] | None = None) -> tuple[list[Path], list[tuple[str, str]]]:
    """Expand files, folders (recursively) and globs into input paths.

    Parameters
    ----------
    patterns : iterable of str
        Files, folders and globs, as given on the command line.
    others : list of Path, optional
        Gets the files that walked folders and globs hold besides images (not hidden
        ones), for the caller to say that they were passed over.
    aliases : list of (Path, Path), optional
        Gets (name, the name kept) for each file found again under another name (a link).

    Returns
    -------
    inputs : list of Path
        Unique files (by their resolved path), in the order given (folders sorted),
        absolute but with links kept as written.
    missing : list of (name, reason)
        Patterns that matched nothing, and broken links (named or found), each on its own.
    """
    found: list[Path] = []
    missing: list[tuple[str, str]] = []
    for pattern in patterns:
        magic = is_glob(pattern)
        matches = [Path(p) for p in sorted(_glob(pattern))] if magic else [Path(pattern)]
        if not matches or not os.path.lexists(matches[0]):  # a glob's matches exist, at least as links
            missing.append((pattern, "the pattern matched nothing" if magic else unreadable_reason(pattern)))
            continue
        for path in matches:
            if os.path.isdir(path) and not is_zarr(path):
                found += walk_images(path, others=others, unreadable=missing)
            elif is_zarr(path) or path.suffix.lower() in IMAGE_SUFFIXES or (not magic and os.path.islink(path)):
                found.append(path)
            elif path.is_file() and not magic:
                found.append(path)  # named explicitly: try it, and report why it fails
            elif path.is_file() and others is not None and not path.name.startswith("."):
                others.append(path)
    # One entry per file (two links to one file are one input), named as the user wrote it:
    # a link's own name and folder (scans/1931/harbour.png in a git-annex or DataLad tree),
    # not its target's (.git/annex/objects/...).
    unique: dict[Path, Path] = {}
    for p in found:
        if is_broken_link(p):  # a git-annex file never fetched: it fails alone, named as such
            missing.append((str(p), broken_link_reason(p)))
        else:
            kept = unique.setdefault(p.resolve(), as_written(p))
            if aliases is not None and kept != as_written(p):
                aliases.append((as_written(p), kept))
    return list(unique.values()), missing


def is_broken_link(path: str | os.PathLike) -> bool:
    """A link whose target does not exist (a git-annex file never fetched, an unmounted share)."""
    return os.path.islink(path) and not os.path.exists(path)


def broken_link_reason(path: str | os.PathLike) -> str:
    """Why a broken link cannot be read, with where it points and what to do."""
    try:
        target = os.readlink(path)
    except OSError:  # removed meanwhile, or not a link after all
        target = "?"
    try:
        os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:  # its target exists, as a link leading back round
            return f"a link loop (it points to {target}, which leads back to it); fix or remove the link"
        if isinstance(err, PermissionError):
            return unreadable_reason(path, err)
    fix = ("get its content first (git annex get, datalad get)" if "annex/objects" in target
           else "fix or remove the link")
    return f"a broken link (it points to {target}, which does not exist); {fix}"


def _glob(pattern: str) -> list[str]:
    """The paths a glob matches, its fixed folder taken literally (see :func:`split_glob`)."""
    root, rest = split_glob(pattern)
    return glob.glob(os.path.join(glob.escape(str(root)), rest), recursive=True)


def shown_path(path: Path, folders: Sequence[str | os.PathLike]) -> str:
    """``path`` as the user would name it: below the folder argument it was found in, as that
    was written (``photos/a/x.png`` for ``photos``), else in full.  Messages about the files of
    a walk name them so, whether the walk kept links or resolved them."""
    for folder in folders:
        written = Path(folder).expanduser()
        for inner, outer in ((path, as_written(written)), (path.resolve(), written.resolve())):
            try:
                below = inner.relative_to(outer)
            except ValueError:
                continue
            return str(written / below)
    return str(path)


def is_our_output(path: Path, name: str | None = None) -> bool:
    """Whether the file ``path`` is a PNG or TIFF result of ``napari-colorize colorize``: named as
    one (``x_colorized.png``; ``name``, e.g. a link's, default ``path``'s) and carrying its mark.
    Only such names are opened, and only their headers read."""
    from ..outputs import output_name_endings
    from .write import has_our_mark

    return (path.name if name is None else name).endswith(output_name_endings(_OUTPUT_EXTENSIONS)) \
        and has_our_mark(path)


def own_outputs_note(passed: Sequence[Path]) -> str:
    """Why files of ours found in data folders were left out (the words of colorize's note)."""
    return (f"passed over {len(passed)} file(s) in the data folders that napari-colorize wrote (results of an "
            f"earlier run, such as {passed[0]}): their colours are a model's guess, not the truth to train on or "
            "score against; name one on the command line to use it anyway")


def scan_images(folders: Sequence[str | os.PathLike], keep_links: bool = False,
                report: Callable[[str], None] | None = None) -> list[Path]:
    """All image files under ``folders`` (recursively), sorted, without duplicates.

    For training and evaluation: files only (zarr stores are not colour training
    data), hidden files skipped as in :func:`walk_images`.  Paths are resolved, or with
    ``keep_links`` absolute with links kept as written (evaluation groups images by the
    folders the user sees); duplicates are found by the resolved path either way.

    A sub-folder that cannot be read is passed over with a :class:`~.image.ReadWarning` naming
    it.  Results of ``colorize`` found in a folder (:func:`is_our_output`) are passed over, as
    ``colorize`` passes over them: kept inside a collection, a model's own output would
    be taken for a true colour photograph, trained on, or scored against its own guess.
    ``report`` gets one note counting them (default: a :class:`~.image.OwnOutputsNote`
    warning).  A file named in ``folders`` is used whatever it is.

    Raises
    ------
    FileNotFoundError
        If a folder does not exist.
    ValueError
        If a folder holds no image file (besides results of ours).
    """
    found: dict[Path, Path] = {}
    passed: list[Path] = []
    unreadable: list[tuple[str, str]] = []
    for folder in folders:
        root = Path(folder).expanduser()
        if not root.exists():
            raise FileNotFoundError(f"data folder {root} does not exist")
        ours: list[Path] = []
        if root.is_file():
            files = [root] if root.suffix.lower() in IMAGE_SUFFIXES else []
        else:
            files = []
            for p in walk_images(root, stores=False, unreadable=unreadable):  # one pass, not a test per file
                if p.is_file():
                    (ours if is_our_output(p) else files).append(p)
            passed += ours
        if not files:
            besides = f" besides {len(ours)} that napari-colorize wrote (results, not true colours)" if ours else ""
            raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found under {root}{besides}; "
                             "give folders holding colour photographs")
        for p in files:
            found.setdefault(p.resolve(), as_written(p) if keep_links else p.resolve())
    if passed:
        (report or _note)(own_outputs_note(passed))
    if unreadable:  # said, not raised: one locked folder of a colleague's should not stop a run
        from .image import ReadWarning

        warnings.warn(f"passed over {len(unreadable)} folder(s) that cannot be read, such as {unreadable[0][0]} "
                      "(permission denied): their images are not used; make them readable (chmod, or ask their "
                      "owner) to use them", ReadWarning, stacklevel=2)
    return sorted(found.values())


def _note(message: str) -> None:
    from .image import OwnOutputsNote

    warnings.warn(message, OwnOutputsNote, stacklevel=3)  # the caller of scan_images
