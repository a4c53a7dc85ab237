"""Manuscript import (``audiobook init``): an EPUB, DOCX, Markdown, plain-text or HTML book -> a book folder.

    source file --reader--> SourceBook (metadata + every part in reading order, classified)
                --folder--> DIR/book.yaml, DIR/chapters/NN-<slug>.md, DIR/cover.jpg|png

One module owns each third-party reader: :mod:`pipeline.importer.epub` (zipfile + lxml, EPUB 2 and 3),
:mod:`pipeline.importer.html` (lxml), :mod:`pipeline.importer.docx` (lxml, WordprocessingML read directly),
:mod:`pipeline.importer.plain` (Markdown and plain text, Project Gutenberg files). Every reader returns a
:class:`~pipeline.importer.model.SourceBook`; :mod:`pipeline.importer.classify` says which parts are read
aloud and which are skipped (never dropped: a skipped part is written too, commented out in the manifest);
:mod:`pipeline.importer.folder` writes the folder and, with ``--update``, merges a revised manuscript into
an existing one without losing the user's edits.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

from pipeline.errors import SourceFileError
from pipeline.importer.archive import regular_file
from pipeline.importer.model import ReadOptions, SourceBook

# Suffix -> the reader module that owns it (imported only when a file of its kind is read: each pulls
# in its own third-party library).
READERS = {
    ".epub": "epub",
    ".docx": "docx",
    ".md": "plain", ".markdown": "plain", ".txt": "plain",
    ".html": "html", ".htm": "html", ".xhtml": "html",
}
SUPPORTED = ", ".join(READERS)


def read_book(path: Path, options: ReadOptions | None = None) -> SourceBook:
    """Read the manuscript at ``path`` with the reader for its suffix (:data:`READERS`).

    Raises :class:`~pipeline.errors.SourceFileError` (one line: the file, what is wrong, the fix) for an
    unsupported suffix, a file that is missing, not a regular file or unreadable, and whatever the
    reader finds wrong inside it. Nothing is written.
    """
    suffix = path.suffix.lower()
    name = READERS.get(suffix)
    if name is None:
        kind = f"a {suffix} file" if suffix else "a file without an extension"
        raise SourceFileError(path, f"is {kind}, which `audiobook init` cannot read; give one of {SUPPORTED} "
                                    "(export the manuscript to EPUB or DOCX if need be)")
    regular_file(path, f"the manuscript file ({SUPPORTED})")
    reader: Callable[[Path, ReadOptions], SourceBook] = importlib.import_module(f"pipeline.importer.{name}").read
    try:
        return reader(path, options or ReadOptions())
    except OSError as exc:  # the one boundary where a reader's file-system failure is translated
        raise SourceFileError(path, f"cannot be read ({exc.strerror or exc}); check the file and its "
                                    "permissions") from exc
