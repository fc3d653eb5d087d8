"""Per-file licences from Debian ``copyright`` files."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Sequence


class CopyrightFile:
    """Minimal reader for a Debian ``copyright`` file.

    Machine-readable (DEP-5) files are matched per file: the last ``Files:``
    stanza whose pattern matches the path (or a suffix of it, since patterns
    are relative to the source tree, not the installed path) gives the
    licence.  Free-form files fall back to a keyword scan.
    """

    KEYWORDS = (
        ("CC-BY-SA-3.0", r"Attribution-ShareAlike 3\.0"),
        ("CC-BY-SA-2.0", r"Attribution-ShareAlike 2\.0"),
        ("CC-BY-3.0", r"Attribution 3\.0"),
        ("GPL-2+", r"GNU General Public License.*version 2"),
        ("public domain", r"public domain"),
    )

    def __init__(self, path: Path) -> None:
        self.path = path
        self.text = path.read_text(errors="replace") if path.exists() else ""
        self.stanzas: list[tuple[list[str], str]] = []
        for block in re.split(r"\n\s*\n", self.text):
            files = re.search(r"^Files:\s*(.*(?:\n[ \t]+.*)*)", block, re.M)
            lic = re.search(r"^License:\s*(\S.*)$", block, re.M)
            if files and lic:
                self.stanzas.append((files.group(1).split(), lic.group(1).strip()))

    def default(self) -> str:
        """Licence of ``Files: *`` or, for free-form files, a keyword summary."""
        for pats, lic in self.stanzas:
            if "*" in pats:
                return lic
        found = [name for name, rx in self.KEYWORDS if re.search(rx, self.text, re.I | re.S)]
        return " / ".join(found) if found else "see copyright file"

    def specific_licence(self, rel_path: str, loose: bool = True) -> str | None:
        """Licence of the last stanza other than ``Files: *`` matching the path, if any.

        With ``loose`` (for installed paths, which differ from the source
        paths the file uses) a pattern may also match a suffix of the path or
        just its file name; without it (for exact source paths, as GCompris's
        resource names are) only the pattern itself counts.
        """
        best = None
        for pats, lic in self.stanzas:
            for pat in pats:
                if pat == "*" or pat.startswith("debian/"):
                    continue
                base = pat.rsplit("/", 1)[-1]
                if fnmatch.fnmatch(rel_path, pat) or loose and (
                    fnmatch.fnmatch(rel_path, "*/" + pat)
                    # Installed layout may drop source folders (e.g. lomiri's
                    # "20.04/X.jpg" is installed as backgrounds/X.jpg), so an
                    # exact file name also counts as a match.
                    or ("*" not in base and rel_path.rsplit("/", 1)[-1] == base)
                ):
                    best = lic
        return best

    def licence_for(self, rel_path: str) -> str:
        """Licence short name for an installed path relative to the package root."""
        return self.specific_licence(rel_path) or self.default()

    def licence_for_any(self, rel_paths: Sequence[str], loose: bool = False) -> str:
        """Licence of the first of several names for one file that a stanza names.

        Packages convert images at build time (GCompris stores ``fish1.jpg``
        of its source tree as ``fish1.webp``), so the copyright file may list
        a file under another extension; ``rel_paths`` are tried in order.
        """
        for rel in rel_paths:
            lic = self.specific_licence(rel, loose)
            if lic is not None:
                return lic
        return self.default()
