"""What a manuscript reader returns: the book's metadata and every part of it, in reading order."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Why a part is not read aloud by default (issue 13, item 2). A part with ``skip`` set is still written
# as a chapter file and listed, commented out, in the manifest.
SKIP_REASONS = ("cover", "title page", "half-title", "copyright", "table of contents", "colophon", "licence",
                "index", "notes", "bibliography", "empty")


@dataclass(frozen=True)
class SourcePart:
    """One part of the source in reading order: a chapter, or front or back matter.

    ``markdown`` is the part's body as Markdown the project's reader understands: ``#`` headings,
    paragraphs separated by blank lines, a line break inside verse as two trailing spaces or ``<br>``,
    a scene break as a ``***`` line; nothing else that is not text. ``title`` comes from the source's
    table of contents, else its first heading, else its file name. ``skip`` is one of
    :data:`SKIP_REASONS` (None: read aloud). ``origin`` says where in the source it came from
    ("OEBPS/ch01.xhtml#s2", "line 120", "paragraph 14").
    """

    title: str
    markdown: str
    origin: str
    skip: str | None = None

    @property
    def chars(self) -> int:
        return len(self.markdown)


@dataclass(frozen=True)
class SourceBook:
    """A manuscript as read: metadata (None where the source has none) and its parts in reading order.

    ``language`` is an API language name ("English", "Chinese", ...) or ``auto`` when the source's
    language is unknown or not one the API reads. ``cover`` is the cover image's bytes and its kind
    ("jpg" or "png"), when the source has one.
    """

    title: str
    parts: tuple[SourcePart, ...]
    author: str | None = None
    language: str = "auto"
    description: str | None = None
    year: int | None = None
    cover: tuple[bytes, str] | None = None
    notes: tuple[str, ...] = field(default=())  # what the reader noticed and the user should know


@dataclass(frozen=True)
class ReadOptions:
    """How a reader cuts the source into parts (``audiobook init`` flags).

    ``split_level``: the heading level that starts a chapter (1: ``Heading 1`` in DOCX, ``#`` in
    Markdown, ``<h1>`` in HTML, top-level TOC entries in EPUB; 2 cuts at the level below instead).
    ``chapter_pattern``: for plain text and Markdown, a line matching it (``re.fullmatch`` on the
    stripped line) also starts a chapter.
    """

    split_level: int = 1
    chapter_pattern: re.Pattern[str] | None = None
