"""Read Qt binary resource files (``.rcc``) in pure Python, without Qt.

The format is the one ``rcc --binary`` writes (Qt's ``src/tools/rcc/rcc.cpp``,
read back by ``src/corelib/io/qresource.cpp``).  All integers are big-endian.

Header::

    b"qres"  u32 version  u32 tree_offset  u32 data_offset  u32 names_offset
    [u32 overall_flags]                      # version >= 3 only

Tree: a flat array of nodes, node 0 is the root directory.  Each node is::

    u32 name_offset  u16 flags
    directory:  u32 child_count  u32 first_child_index
    file:       u16 territory  u16 language  u32 data_offset
    [u64 last_modified_ms]                   # version >= 2 only

so a node is 14 bytes (version 1) or 22 bytes (version 2, 3).  A directory's
children are the ``child_count`` consecutive nodes starting at
``first_child_index``.  Names: ``u16 length  u32 hash  UTF-16BE chars``.
Data: ``u32 size`` then the payload, which is either stored, or zlib-
compressed by ``qCompress`` (a u32 uncompressed size, then a zlib stream), or
a Zstandard frame.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

MAGIC = b"qres"
FLAG_COMPRESSED = 0x01
FLAG_DIRECTORY = 0x02
FLAG_COMPRESSED_ZSTD = 0x04


class RccError(ValueError):
    """A malformed or unsupported ``.rcc`` file."""


@dataclass(frozen=True)
class RccHeader:
    """The offsets and version from an ``.rcc`` header."""

    version: int
    tree: int
    data: int
    names: int
    flags: int


@dataclass(frozen=True)
class RccEntry:
    """One file stored in a resource bundle.

    ``path`` has no leading ``:/``; ``flags`` says how ``payload`` is stored.
    """

    path: str
    flags: int
    payload: bytes

    @property
    def compressed(self) -> bool:
        """Whether the stored payload is zlib- or zstd-compressed."""
        return bool(self.flags & (FLAG_COMPRESSED | FLAG_COMPRESSED_ZSTD))

    def read(self) -> bytes:
        """The file's bytes, decompressed."""
        return decompress(self.payload, self.flags)


def parse_header(buf: bytes) -> RccHeader:
    """Parse and check the header of an ``.rcc`` file.

    Raises
    ------
    RccError
        When the magic is missing or the version is not 1-3.
    """
    if len(buf) < 20 or buf[:4] != MAGIC:
        raise RccError("not a Qt resource file (no 'qres' magic)")
    version, tree, data, names = struct.unpack_from(">4I", buf, 4)
    if version not in (1, 2, 3):
        raise RccError(f"unsupported rcc format version {version}")
    flags = struct.unpack_from(">I", buf, 20)[0] if version >= 3 else 0
    for what, off in (("tree", tree), ("data", data), ("names", names)):
        if off > len(buf):
            raise RccError(f"{what} offset {off} beyond end of file ({len(buf)} bytes)")
    return RccHeader(version, tree, data, names, flags)


def node_size(version: int) -> int:
    """Bytes per tree node: version 2 added a 64-bit modification time."""
    return 14 if version < 2 else 22


def read_name(buf: bytes, names: int, offset: int) -> str:
    """The UTF-16BE name stored at ``offset`` of the names block."""
    pos = names + offset
    (length,) = struct.unpack_from(">H", buf, pos)
    # Skip the 4-byte qt_hash: it only speeds up Qt's binary search.
    start = pos + 6
    return buf[start : start + 2 * length].decode("utf-16-be")


def read_payload(buf: bytes, data: int, offset: int) -> bytes:
    """The stored (possibly compressed) bytes at ``offset`` of the data block."""
    pos = data + offset
    (size,) = struct.unpack_from(">I", buf, pos)
    if pos + 4 + size > len(buf):
        raise RccError(f"data entry at {offset} runs past the end of the file")
    return buf[pos + 4 : pos + 4 + size]


def decompress(payload: bytes, flags: int) -> bytes:
    """Undo rcc's compression of one payload.

    Raises
    ------
    RccError
        For zstd payloads when no zstd module (``zstandard``) is installed.
    """
    if flags & FLAG_COMPRESSED_ZSTD:
        try:
            import zstandard
        except ImportError as exc:  # Debian 12's gcompris uses zlib only
            raise RccError("zstd-compressed entry, but 'zstandard' is not installed") from exc
        return zstandard.ZstdDecompressor().decompress(payload)
    if flags & FLAG_COMPRESSED:
        # qCompress prefixes the zlib stream with the uncompressed size.
        expected = struct.unpack_from(">I", payload, 0)[0]
        out = zlib.decompress(payload[4:])
        if len(out) != expected:
            raise RccError(f"zlib entry inflated to {len(out)} bytes, header says {expected}")
        return out
    return payload


def iter_entries(buf: bytes) -> Iterator[RccEntry]:
    """Yield every file in the bundle, depth first, in stored order.

    Raises
    ------
    RccError
        On a bad header or a directory structure that loops or points
        outside the tree.
    """
    hdr = parse_header(buf)
    size = node_size(hdr.version)

    def node(index: int) -> tuple[str, int, int, int]:
        pos = hdr.tree + index * size
        if pos + size > len(buf):
            raise RccError(f"tree node {index} lies outside the file")
        name_off, flags = struct.unpack_from(">IH", buf, pos)
        a, b = struct.unpack_from(">II", buf, pos + 6)  # dir: count, first
        name = read_name(buf, hdr.names, name_off) if index else ""
        return name, flags, a, b

    stack: list[tuple[int, str]] = [(0, "")]
    seen: set[int] = set()
    while stack:
        index, prefix = stack.pop()
        if index in seen:
            raise RccError(f"tree node {index} is reached twice")
        seen.add(index)
        name, flags, a, b = node(index)
        path = f"{prefix}/{name}" if prefix else name
        if flags & FLAG_DIRECTORY:
            # Push in reverse so children come out in stored order.
            stack.extend((b + i, path) for i in reversed(range(a)))
        else:
            # For files, bytes 6..9 are territory + language; 10..13 the data offset.
            yield RccEntry(path, flags, read_payload(buf, hdr.data, b))


def read_rcc(path: str | Path) -> dict[str, bytes]:
    """All files of an ``.rcc`` bundle as ``{path: decompressed bytes}``."""
    buf = Path(path).read_bytes()
    return {e.path: e.read() for e in iter_entries(buf)}
