"""Which parts of a manuscript are read aloud, and why the others are not (issue 13, item 2).

A part is skipped for one of :data:`~pipeline.importer.model.SKIP_REASONS`: what the source says it is
(EPUB 3 ``epub:type``, the nav's landmarks, the EPUB 2 guide, a DOCX or HTML class) decides first; then
its title ("Contents", "Copyright", "Index", ...); then its text (nothing to read, a copyright notice, a
licence). Dedications, epigraphs, prefaces, forewords, prologues, epilogues, afterwords and appendices
are chapters. A skipped part is never dropped: the folder writer writes it and comments it out.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from pipeline.text import to_spoken_text

# Semantic types (EPUB 3 Structural Semantics, the EPUB 2 guide's types, ARIA doc- roles without the
# prefix) -> the reason a part of that type is skipped.
_SKIPPED_TYPES = {
    "cover": "cover", "cover-image": "cover",
    "titlepage": "title page", "title-page": "title page", "fulltitle": "title page",
    "halftitlepage": "half-title", "halftitle": "half-title", "half-title": "half-title",
    "copyright-page": "copyright", "copyright": "copyright", "imprint": "copyright",
    "imprimatur": "copyright", "credits": "copyright", "other-credits": "copyright",
    "toc": "table of contents", "loi": "table of contents", "lot": "table of contents",
    "lov": "table of contents", "loa": "table of contents", "page-list": "table of contents",
    "colophon": "colophon",
    "license": "licence", "licence": "licence",
    "index": "index", "index-group": "index",
    "notes": "notes", "footnotes": "notes", "endnotes": "notes", "rearnotes": "notes",
    "footnote": "notes", "endnote": "notes", "rearnote": "notes",
    "bibliography": "bibliography",
}
# Types that are read aloud even when the title would suggest otherwise.
_READ_TYPES = {
    "chapter", "part", "volume", "division", "subchapter", "bodymatter", "text", "prologue", "epilogue",
    "preface", "foreword", "introduction", "preamble", "dedication", "epigraph", "afterword", "appendix",
    "conclusion", "acknowledgments", "acknowledgements", "abstract", "prelude", "postscript",
}

# Titles (normalised: case folded, no punctuation, single spaces) -> reason.
_SKIPPED_TITLES = {
    "cover": "cover", "front cover": "cover", "cover page": "cover", "封面": "cover",
    "title page": "title page", "title": "title page", "titlepage": "title page", "扉页": "title page",
    "half title": "half-title", "halftitle": "half-title", "half title page": "half-title",
    "copyright": "copyright", "copyright page": "copyright", "imprint": "copyright",
    "copyright notice": "copyright", "版权": "copyright", "版权页": "copyright", "版權": "copyright",
    "contents": "table of contents", "table of contents": "table of contents", "toc": "table of contents",
    "list of illustrations": "table of contents", "list of figures": "table of contents",
    "list of tables": "table of contents", "目录": "table of contents", "目錄": "table of contents",
    "colophon": "colophon", "about this ebook": "colophon", "about this e book": "colophon",
    "licence": "licence", "license": "licence", "the full project gutenberg license": "licence",
    "project gutenberg license": "licence", "full license": "licence",
    "index": "index", "general index": "index", "索引": "index",
    "notes": "notes", "endnotes": "notes", "footnotes": "notes", "end notes": "notes",
    "注释": "notes", "注釋": "notes",
    "bibliography": "bibliography", "references": "bibliography", "works cited": "bibliography",
    "further reading": "bibliography", "sources": "bibliography", "参考文献": "bibliography",
    # the same in the other languages the API reads most (French, German, Spanish, Italian, Portuguese)
    "table des matières": "table of contents", "sommaire": "table of contents", "inhalt": "table of contents",
    "inhaltsverzeichnis": "table of contents", "índice": "table of contents", "indice": "table of contents",
    "contenido": "table of contents", "contenidos": "table of contents", "tabla de contenido": "table of contents",
    "sommario": "table of contents", "sumário": "table of contents", "conteúdo": "table of contents",
    "impressum": "copyright", "mentions légales": "copyright", "droits d auteur": "copyright",
    "anmerkungen": "notes", "fußnoten": "notes", "notas": "notes", "note": "notes",
    "bibliographie": "bibliography", "literaturverzeichnis": "bibliography", "bibliografía": "bibliography",
    "bibliografia": "bibliography", "register": "index", "stichwortverzeichnis": "index",
    "índice remissivo": "index", "indice analitico": "index", "colofón": "colophon",
}

_WORD = re.compile(r"\w", re.UNICODE)
_COPYRIGHT = re.compile(r"(?:©|\(c\)|copyright\b)", re.IGNORECASE)
_RIGHTS = re.compile(r"all rights reserved|isbn[\s:-]*[\dx-]{10,}|printed in |first published", re.IGNORECASE)
_LICENCE = re.compile(r"project gutenberg(?:-tm)? licen[cs]e|creative commons (?:attribution|licen[cs]e)|"
                      r"licensed under the", re.IGNORECASE)
_SHORT = 1500  # a notice is short; a chapter that mentions copyright is not a notice
TITLE_PAGE_EXTRA_CHARS = 300  # a title page holds the title, the author and an edition line or two


def normalise_title(title: str) -> str:
    """``title`` as the tables here spell titles: NFKC, case folded, punctuation and numbering gone."""
    text = unicodedata.normalize("NFKC", title).casefold()
    text = re.sub(r"[^\w\s]", " ", text)
    return " ".join(text.split())


def skip_reason(title: str, markdown: str, *, semantic: Iterable[str] = ()) -> str | None:
    """Why the part titled ``title`` with body ``markdown`` is not read aloud, or None to read it.

    ``semantic`` holds what the source says the part is: ``epub:type`` values, landmark or guide
    types, role values (``doc-`` prefix allowed), in any case.
    """
    types = [t.casefold().removeprefix("doc-") for value in semantic for t in value.split()]
    for kind in types:
        if kind in _SKIPPED_TYPES:
            return _SKIPPED_TYPES[kind]
    if not _WORD.search(_without_markup(markdown)):
        return "empty"
    if any(kind in _READ_TYPES for kind in types):
        return None
    name = normalise_title(title)
    if name in _SKIPPED_TITLES:
        return _SKIPPED_TITLES[name]
    if name.split(" ", 1)[0] in _READ_TYPES:  # "Preface", "Appendix B", "Epilogue: ten years on"
        return None
    return _reason_from_text(markdown)


def _without_markup(markdown: str) -> str:
    return re.sub(r"<#[\d.]+#>|!\[[^\]]*\]\([^)]*\)|<[^>]*>", "", markdown)


def _reason_from_text(markdown: str) -> str | None:
    if _LICENCE.search(markdown[:600]) and len(markdown) < 40_000:
        return "licence"
    if len(markdown) < _SHORT and _COPYRIGHT.search(markdown) and _RIGHTS.search(markdown):
        return "copyright"
    return None


def is_title_page(markdown_text: str, title: str, author: str | None) -> bool:
    """A front part that holds the book's title (and author) and little else is its title page."""
    spoken = to_spoken_text(markdown_text, markdown=True, scene_break_s=0)
    rest = normalise_title(spoken)
    name = normalise_title(title)
    if not name or name not in rest:
        return False
    rest = rest.replace(name, " ", 1)
    if author:
        rest = rest.replace(normalise_title(author), " ", 1)
    rest = re.sub(r"(?:^|\s)by(?=\s|$)", " ", rest)
    return len(" ".join(rest.split())) <= TITLE_PAGE_EXTRA_CHARS
