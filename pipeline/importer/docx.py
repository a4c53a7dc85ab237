"""DOCX manuscripts -> a :class:`SourceBook` (issue 13, item 4). The one module that imports mammoth.

The container is checked before mammoth sees it (:func:`pipeline.importer.archive.open_zip`: a ZIP, no
bomb, safe member names; a ``[Content_Types].xml`` naming a Word main document; every XML part
well-formed and free of entity declarations, :func:`~pipeline.importer.archive.parse_xml`). mammoth
(BSD) then turns the body into HTML, and :mod:`pipeline.importer.markup` turns that into Markdown:

* ``Heading 1`` starts a chapter (``Heading N`` with ``--split-level N``; a heading above that level
  starts a part too); a ``Title`` paragraph names the book and opens its title page; the text before
  the first of them is a part of its own. A heading with no text under it (``Part One`` directly over
  ``Chapter 1``) opens the chapter below it instead of becoming an empty one.
* Tracked changes read as if accepted: insertions kept, deletions dropped (mammoth's behaviour).
* Not read: comments (mammoth's default, and mapped to nothing here), footnotes and endnotes (mammoth
  appends their bodies as ``<li id="footnote-N">`` and links ``[N]`` marks to them: the converter drops
  both), page headers and footers (mammoth never reads them), images (converted to nothing), a style
  map embedded in the file.
* Kept: text inside content controls (``w:sdt``) and tables (a paragraph per cell).

Metadata: ``docProps/core.xml`` (title, creator, language, created year, description); the book title
prefers the ``Title`` paragraph, which is what the author sees, over the core title. The language is the
core property's, else the document defaults' ``w:lang`` (its East Asian one for a text in CJK script),
mapped to an API language name or ``auto``. What the reader noticed (tracked changes, notes, comments,
headers, mammoth's warnings about content it could not read) goes into :attr:`SourceBook.notes`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import mammoth
from lxml import etree

from pipeline.errors import SourceFileError
from pipeline.importer.archive import SafeZip, open_zip, parse_xml
from pipeline.importer.classify import skip_reason
from pipeline.importer.markup import Section, api_language, heading_level, local_name, parse_html, split_sections
from pipeline.importer.model import ReadOptions, SourceBook, SourcePart
from pipeline.importer.plain import is_title_page
from pipeline.models import LANGUAGE_AUTO
from pipeline.text import to_spoken_text

W_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
_W = f"{{{W_NS}}}"
_CONTENT_TYPES_NS = "{http://schemas.openxmlformats.org/package/2006/content-types}"
_RELS_NS = "{http://schemas.openxmlformats.org/package/2006/relationships}"
_DC = "{http://purl.org/dc/elements/1.1/}"
_DCTERMS = "{http://purl.org/dc/terms/}"

WORD_MAIN_TYPES = frozenset({
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml",
    "application/vnd.ms-word.document.macroEnabled.main+xml",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.template.main+xml",
    "application/vnd.ms-word.template.macroEnabledTemplate.main+xml",
})
# What a ZIP that is not a Word document is, by its main part's content type or its mimetype member.
_OTHER_KINDS = {
    "spreadsheetml": "an Excel workbook", "presentationml": "a PowerPoint presentation",
    "application/epub+zip": "an EPUB book (rename it to .epub)",
    "application/vnd.oasis.opendocument.text": "an OpenDocument text (save it as .docx)",
}
BOOK_TITLE_CLASS = "book-title"
TOC_CLASS = "toc"  # classify reads it as "table of contents"
# mammoth's style map, before its defaults (Heading 1-6 -> h1-h6): the Title paragraph is marked so it is
# recognised; Word's table of contents (a "TOC Heading" over "toc 1".."toc 9" paragraphs) is marked so
# it becomes a part of its own, skipped; a subtitle is a paragraph; comment references are dropped
# (mammoth's default, made explicit). Style names match case-insensitively.
STYLE_MAP = f"""
p[style-name='Title'] => h1.{BOOK_TITLE_CLASS}:fresh
p[style-name='TOC Heading'] => h1.{TOC_CLASS}:fresh
p[style-name^='toc '] => p.{TOC_CLASS}:fresh
p[style-name='table of figures'] => p.{TOC_CLASS}:fresh
p[style-name='Subtitle'] => p:fresh
comment-reference => !
"""
# mammoth warnings that are about looks, not words (styles it has no mapping for, images it drops).
_QUIET_WARNINGS = re.compile(r"Unrecognised (?:paragraph|run|table) style|was referenced but not defined|"
                             r"^Image of type|image file|imagedata", re.IGNORECASE)
_MAX_WARNINGS_LISTED = 5


def read(path: Path, options: ReadOptions) -> SourceBook:
    """Read the Word document at ``path`` into its metadata and parts (see the module docstring).

    Raises :class:`SourceFileError` (one line naming the file) for a file that is not a ZIP, a damaged
    or truncated one, a zip bomb or unsafe member names, a ZIP that is not a Word document, XML that is
    not well-formed or declares entities, and a document mammoth cannot convert.
    """
    with open_zip(path) as archive:
        package = _Package(path, archive)
    html, warnings = _convert(path)
    return _Book(path, package, html, warnings, options).book()


# --- the container ------------------------------------------------------------------------------------------

class _Package:
    """What the reader takes from the ZIP itself: the checked main document, core properties, styles."""

    def __init__(self, path: Path, archive: SafeZip) -> None:
        self.path = path
        roots = {name: parse_xml(archive.read(name), source=path, member=name)
                 for name in archive.names if name.endswith((".xml", ".rels"))}
        self.main = _main_document(path, archive, roots)
        self.document = roots[self.main]
        self.core = _core_properties(roots)
        folder = self.main.rpartition("/")[0]
        self.styles = roots.get(f"{folder}/styles.xml" if folder else "styles.xml")

    def count(self, *tags: str) -> int:
        return sum(1 for tag in tags for _ in self.document.iter(f"{_W}{tag}"))

    def default_language(self) -> tuple[str | None, str | None]:
        """The document defaults' ``w:lang`` (Latin, East Asian), from styles.xml."""
        if self.styles is None:
            return None, None
        lang = self.styles.find(f"{_W}docDefaults/{_W}rPrDefault/{_W}rPr/{_W}lang")
        if lang is None:
            return None, None
        return lang.get(f"{_W}val"), lang.get(f"{_W}eastAsia")


def _main_document(path: Path, archive: SafeZip, roots: dict[str, etree._Element]) -> str:
    mimetype = archive.read("mimetype").decode("ascii", "replace").strip() if "mimetype" in archive else ""
    if mimetype in _OTHER_KINDS:
        raise SourceFileError(path, f"is not a Word document: it is {_OTHER_KINDS[mimetype]}")
    types = roots.get("[Content_Types].xml")
    if types is None:
        raise SourceFileError(path, "is not a Word document: it is a ZIP archive without [Content_Types].xml "
                                    "(save the manuscript as .docx from a word processor)")
    main = "word/document.xml"
    package_rels = roots.get("_rels/.rels")
    if package_rels is not None:
        for rel in package_rels.iter(f"{_RELS_NS}Relationship"):
            if (rel.get("Type") or "").endswith("/officeDocument") and rel.get("Target"):
                main = str(rel.get("Target")).lstrip("/")
                break
    if main not in roots:
        raise SourceFileError(path, f"is not a Word document: it is a ZIP archive without {main} (save the "
                                    "manuscript as .docx from a word processor)")
    overrides = {str(o.get("PartName") or "").lstrip("/"): str(o.get("ContentType") or "")
                 for o in types.iter(f"{_CONTENT_TYPES_NS}Override")}
    kind = overrides.get(main, "")
    if kind not in WORD_MAIN_TYPES:
        other = next((name for key, name in _OTHER_KINDS.items() if key in kind), None)
        what = f"it is {other}" if other else f"its main part {main} is {kind or 'of no declared type'}"
        raise SourceFileError(path, f"is not a Word document: {what}")
    return main


def _core_properties(roots: dict[str, etree._Element]) -> dict[str, str]:
    target = "docProps/core.xml"
    package_rels = roots.get("_rels/.rels")
    if package_rels is not None:
        for rel in package_rels.iter(f"{_RELS_NS}Relationship"):
            if (rel.get("Type") or "").endswith("/core-properties") and rel.get("Target"):
                target = str(rel.get("Target")).lstrip("/")
    core = roots.get(target)
    if core is None:
        return {}
    values = {}
    for key, tag in (("title", f"{_DC}title"), ("creator", f"{_DC}creator"), ("language", f"{_DC}language"),
                     ("description", f"{_DC}description"), ("created", f"{_DCTERMS}created")):
        text = core.findtext(tag)
        if text and text.strip():
            values[key] = " ".join(text.split())
    return values


# --- mammoth ------------------------------------------------------------------------------------------------

def _no_image(image: object) -> list[object]:
    return []  # images contribute nothing (issue 13, item 3); their bytes are never read


def _convert(path: Path) -> tuple[str, list[str]]:
    """mammoth's HTML of the document body, and the warnings worth telling the user."""
    try:
        with path.open("rb") as handle:
            result: Any = mammoth.convert_to_html(
                handle, style_map=STYLE_MAP, include_embedded_style_map=False, include_default_style_map=True,
                convert_image=_no_image, external_file_access=False)
    except OSError as exc:
        raise SourceFileError(path, f"cannot be read ({exc.strerror or exc})") from exc
    except Exception as exc:  # mammoth documents no exceptions: any failure in it is a damaged document
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SourceFileError(path, f"cannot be converted ({detail}); open it in a word processor and save it "
                                    "again as .docx") from exc
    warnings = [str(m.message) for m in result.messages if not _QUIET_WARNINGS.search(str(m.message))]
    return str(result.value), list(dict.fromkeys(warnings))


# --- parts --------------------------------------------------------------------------------------------------

class _Book:
    def __init__(self, path: Path, package: _Package, html: str, warnings: list[str], options: ReadOptions) -> None:
        self.path = path
        self.package = package
        self.html = html
        self.warnings = warnings
        self.options = options
        self.notes: list[str] = []

    def book(self) -> SourceBook:
        body = parse_html(self.html, source=self.path).find("body")
        sections = split_sections(body, starts=self._starts, classes=True) if body is not None else []
        titles = [s for s in sections if _is_book_title(s.start)]
        book_title = titles[0].heading if len(titles) == 1 else None
        if len(titles) > 1:
            self.notes.append(f"{len(titles)} paragraphs in the Title style: read as chapter headings")
        core = self.package.core
        title = book_title or core.get("title") or self.path.stem
        author = core.get("creator")
        order = _paragraph_numbers(body) if body is not None else {}
        parts = [self._part(section, order, title, author, book_title is not None) for section in _carried(sections)]
        if not parts:
            parts = [SourcePart(title, "", "paragraph 1", "empty")]
        self._notice()
        year = re.match(r"\d{4}", core.get("created", ""))
        return SourceBook(title=title, parts=tuple(parts), author=author, language=self._language(parts),
                          description=core.get("description"), year=int(year.group()) if year else None,
                          notes=tuple(self.notes))

    def _starts(self, element: etree._Element) -> bool:
        level = heading_level(element)
        if level is not None:
            return level <= self.options.split_level or _is_book_title(element)
        parent = element.getparent()
        if parent is None or local_name(parent) != "body":
            return False
        previous = element.getprevious()
        # A part starts where a table of contents starts, and where it ends.
        return _has_class(element, TOC_CLASS) != (previous is not None and _has_class(previous, TOC_CLASS))

    def _part(self, section: Section, order: dict[etree._Element, int], book_title: str, author: str | None,
              has_title_page: bool) -> SourcePart:
        start = section.start
        semantic = list(section.semantic)
        if section.notes_only:
            semantic.append("notes")
        opens_with_heading = start is not None and heading_level(start) is not None
        title = section.heading if opens_with_heading and section.heading else None
        if title is None and TOC_CLASS in semantic:
            title = "Contents"
        if title is None:
            first = next((line for line in section.markdown.split("\n") if line.strip()), "")
            title = " ".join(to_spoken_text(first, markdown=True, scene_break_s=0).split())[:80] or "Front matter"
        if _is_book_title(start) and has_title_page and is_title_page(section.markdown, book_title, author):
            semantic.append("titlepage")
        origin = f"paragraph {order.get(start, 0) + 1}" if start is not None else "paragraph 1"
        return SourcePart(title, section.markdown, origin, skip_reason(title, section.markdown, semantic=semantic))

    def _language(self, parts: Iterable[SourcePart]) -> str:
        declared = self.package.core.get("language")
        if declared:
            chosen = api_language(declared)
            if chosen != LANGUAGE_AUTO:
                return chosen
            self.notes.append(f"the document's language {declared!r} is not one the API reads")
        latin, east_asian = self.package.default_language()
        sample = "".join(p.markdown for p in parts)[:20_000]
        cjk = len(re.findall(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff]", sample))
        if east_asian and cjk > len(re.findall(r"[A-Za-z]", sample)):
            return api_language(east_asian)
        return api_language(latin) if latin else LANGUAGE_AUTO

    def _notice(self) -> None:
        package = self.package
        inserted, removed = package.count("ins", "moveTo"), package.count("del", "moveFrom")
        if inserted or removed:
            self.notes.append(f"tracked changes read as accepted: {inserted} insertion{_s(inserted)} kept, "
                              f"{removed} deletion{_s(removed)} dropped")
        comments = package.count("commentReference")
        if comments:
            self.notes.append(f"{comments} comment{_s(comments)} not read")
        footnotes, endnotes = package.count("footnoteReference"), package.count("endnoteReference")
        if footnotes or endnotes:
            self.notes.append(f"{footnotes} footnote{_s(footnotes)} and {endnotes} endnote{_s(endnotes)} not read "
                              "(their marks are removed from the text)")
        if package.count("headerReference", "footerReference"):
            self.notes.append("page headers and footers not read")
        if self.warnings:
            listed = "; ".join(self.warnings[:_MAX_WARNINGS_LISTED])
            more = len(self.warnings) - _MAX_WARNINGS_LISTED
            self.notes.append(f"mammoth: {listed}" + (f" (and {more} more)" if more > 0 else ""))


def _s(count: int) -> str:
    return "" if count == 1 else "s"


def _has_class(element: etree._Element | None, name: str) -> bool:
    return element is not None and name in (element.get("class") or "").split()


def _is_book_title(element: etree._Element | None) -> bool:
    return _has_class(element, BOOK_TITLE_CLASS)


def _carried(sections: list[Section]) -> Iterable[Section]:
    """The sections with words; a section that is nothing but headings (a part title right above a
    chapter's) is carried into the next one, unless it is one to skip ("Contents" with no entries)."""
    pending: list[Section] = []
    for section in sections:
        if not section.has_words and not pending:
            continue
        if _only_headings(section.markdown) and not _is_book_title(section.start) \
                and skip_reason(section.heading or "", section.markdown, semantic=section.semantic) is None:
            pending.append(section)
            continue
        if pending:
            first = pending[0]
            headings = [s.heading for s in pending if s.heading]
            title = ": ".join([*headings, section.heading] if section.heading else headings) or None
            merged = "\n".join(s.markdown for s in [*pending, section])
            section = Section(merged, first.start, first.ids | section.ids, section.semantic, title,
                              section.notes_only)
            pending = []
        yield section
    if pending:
        first = pending[0]
        yield Section("\n".join(s.markdown for s in pending), first.start, first.ids, first.semantic,
                      first.heading)


def _only_headings(markdown: str) -> bool:
    lines = [line for line in markdown.split("\n") if line.strip()]
    return bool(lines) and all(line.startswith("#") for line in lines)


def _paragraph_numbers(body: etree._Element) -> dict[etree._Element, int]:
    """Each element of the body -> the 0-based number of the top-level block it is in (a heading, a
    paragraph, a table, a list)."""
    numbers: dict[etree._Element, int] = {}
    for index, block in enumerate(child for child in body if local_name(child)):
        for element in block.iter():
            numbers[element] = index
    return numbers
