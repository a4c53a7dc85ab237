"""DOCX manuscripts -> a :class:`SourceBook` (issue 13, item 4). The one third-party reader this module owns is
lxml: the WordprocessingML of ``word/document.xml`` is read directly.

Why directly: speed. mammoth, the DOCX-to-HTML converter this module used before, reads the XML into its
own pure-Python document model (1.7 s per MB of text) and then converts that to HTML (1.2 s per MB): the
bench's DOCX with 2.5 MB of text (``bench/importing.py --mb 2.5``) took 4.6 s to read and 6.0 s to import.
Walking the lxml tree once, as here, reads it in 0.75 s (the import: 2.65 s, the rest being the folder's
own checks). The walk builds a small HTML element tree (``h1``-``h6`` with the classes below, ``p``,
``br``, ``table``/``tr``/``td``, ``a`` for links to bookmarks) that :mod:`pipeline.importer.markup` turns
into Markdown, as it does for EPUB and HTML.

The container is checked first (:func:`pipeline.importer.archive.open_zip`: a ZIP, no bomb, safe member
names; a ``[Content_Types].xml`` naming a Word main document; every XML part well-formed and free of
entity declarations, :func:`~pipeline.importer.archive.parse_xml`). Then:

* **Headings.** A paragraph's style is named in ``word/styles.xml`` (``w:styleId`` -> ``w:name``; a style
  the file does not define is read by its id). ``heading 1``..``heading 9`` (any case; 7-9 become ``h6``,
  Markdown's deepest) are headings; ``Heading 1`` starts a chapter (``Heading N`` with ``--split-level
  N``; a heading above that level starts a part too); a ``Title`` paragraph names the book and opens its
  title page; ``TOC Heading`` over ``toc 1``..``toc 9`` (or ``table of figures``) paragraphs is Word's
  table of contents, a part of its own, skipped; ``Subtitle`` is a paragraph. Any other paragraph is a
  heading when Word's navigation pane shows it as one: an outline level (``w:outlineLvl`` 0-8 -> level
  1-9) set on the paragraph, else on its style or the nearest style it is based on (``w:basedOn``) that
  sets one or is a heading style; so a custom ``Chapter`` style based on ``Heading 1`` is a heading 1.
  The text before the first heading is a part of its own; a heading with no text under it (``Part One``
  directly over ``Chapter 1``) opens the chapter below it instead of becoming an empty one.
* **Text.** Body children in order: paragraphs, tables (a paragraph per cell paragraph, nested tables
  in place), content controls (``w:sdt``, at block, row, cell and run level: their content is read;
  a control still showing its placeholder prompt is not). In a paragraph: runs, hyperlinks, smart tags,
  custom XML, ``w:bdo``/``w:dir``, simple fields (``w:fldSimple``: their runs). In a run: ``w:t``;
  ``w:tab``/``w:ptab`` a space; ``w:br``/``w:cr`` a line break, but a page or column break
  (``w:br w:type="page"``) ends the paragraph and starts another (in a heading: a space); a
  non-breaking hyphen is ``-``, an optional (soft) hyphen nothing; ``w:sym`` nothing (a glyph of a
  symbol font, whose code point is not the character shown); ruby: the base text, not the annotation.
* **Fields.** A complex field (``w:fldChar`` begin / separate / end) shows its result: the text between
  separate and end is read (a cross-reference's or page reference's text, a TOC's entries), its code
  (``w:instrText``, and everything before separate, nested fields' results included) never is; a field
  with no result (an index entry, ``XE``) shows nothing. A ``HYPERLINK \\l "bookmark"`` field, like a
  ``w:hyperlink w:anchor``, becomes a link to ``#bookmark``, so the markup converter drops a note mark
  such as ``[1]`` linked to ``_ftn1`` (a document converted from HTML) as it does in EPUB.
* **Tracked changes** read as if accepted: insertions (``w:ins``) and the destination of moves
  (``w:moveTo``) kept, deletions (``w:del``, ``w:delText``, a deleted table row) and the source of
  moves (``w:moveFrom``) dropped.
* **Text boxes** (``w:txbxContent``, in a DrawingML shape or a VML ``w:pict``) are read once, as
  paragraphs right after the paragraph that anchors them (so the sentence around the anchor is not cut
  in two). Word writes each shape twice, inside ``mc:AlternateContent``: one branch is read, never
  both: the first ``mc:Choice`` when it has text, else ``mc:Fallback``.
* **Hidden text** (``w:vanish`` on the run, on its character style or on the paragraph's style, each
  through ``w:basedOn``) is not read: a listener should hear what a reader sees. (A hidden paragraph
  *mark* hides the mark only; its text is read.)
* **Not read**: comments and their marks (``w:commentReference``, ``w:annotationRef``), footnotes and
  endnotes (their reference marks are dropped, with no number left behind, and ``footnotes.xml`` /
  ``endnotes.xml`` are never read), page headers and footers (never read), images, charts, OLE objects
  (``w:drawing``/``w:pict``/``w:object`` contribute only their text boxes), equations (``m:oMath``),
  embedded foreign documents (``w:altChunk``).

A part's origin is ``paragraph N``: N counts the body's blocks that have text, in order (a table is one
block; each paragraph of a block-level content control or a text box is one).

Metadata: ``docProps/core.xml`` (title, creator, language, created year, description); the book title
prefers the ``Title`` paragraph, which is what the author sees, over the core title. The language is the
core property's, else the document defaults' ``w:lang`` (its East Asian one for a text in CJK script),
mapped to an API language name or ``auto``. What the reader noticed (tracked changes, notes, comments,
headers, hidden text, placeholders, embedded documents, fields never ended, text in elements it does
not know) goes into :attr:`SourceBook.notes`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from pipeline.errors import SourceFileError
from pipeline.importer.archive import SafeZip, open_zip, parse_xml
from pipeline.importer.classify import is_title_page, skip_reason
from pipeline.importer.languages import api_language
from pipeline.importer.markup import Section, heading_level, local_name, split_sections
from pipeline.importer.model import ReadOptions, SourceBook, SourcePart
from pipeline.models import LANGUAGE_AUTO
from pipeline.text import to_spoken_text

W_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
_W = f"{{{W_NS}}}"
_STRICT_W_NS = "http://purl.oclc.org/ooxml/wordprocessingml/main"
_MC = "{http://schemas.openxmlformats.org/markup-compatibility/2006}"
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
_MAX_LISTED = 5


def read(path: Path, options: ReadOptions) -> SourceBook:
    """Read the Word document at ``path`` into its metadata and parts (see the module docstring).

    Raises :class:`SourceFileError` (one line naming the file) for a file that is not a ZIP, a damaged
    or truncated one, a zip bomb or unsafe member names, a ZIP that is not a Word document, XML that is
    not well-formed or declares entities, and a main document without a ``w:body`` (Strict Open XML
    among them).
    """
    with open_zip(path) as archive:
        package = _Package(path, archive)
    reader = _Reader(package)
    body = reader.body()
    return _Book(path, package, body, reader.notes(), options).book()


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


# --- styles -------------------------------------------------------------------------------------------------

_Kind = tuple[str, str | None]  # the HTML tag a paragraph becomes, and its class
_PARAGRAPH: _Kind = ("p", None)
_TITLE: _Kind = ("h1", BOOK_TITLE_CLASS)
_TOC_HEADING: _Kind = ("h1", TOC_CLASS)
_TOC_ENTRY: _Kind = ("p", TOC_CLASS)
_HEADING_NAME = re.compile(r"heading ?([1-9])")
_TOC_NAME = re.compile(r"toc(?: .*| ?[0-9]+)|table of figures")
_MAX_BASED_ON = 32  # a chain of w:basedOn longer than this is a loop in a crafted file


def _heading(level: int) -> _Kind:
    return (f"h{min(level, 6)}", None)


def _named_kind(name: str) -> _Kind | None:
    """What a paragraph in the style named ``name`` is, by the name alone (None: the name does not say)."""
    name = " ".join(name.lower().split())
    if name == "title":
        return _TITLE
    if name in ("toc heading", "tocheading"):
        return _TOC_HEADING
    if _TOC_NAME.fullmatch(name):
        return _TOC_ENTRY
    if name == "subtitle":
        return _PARAGRAPH
    heading = _HEADING_NAME.fullmatch(name)
    return _heading(int(heading.group(1))) if heading else None


def _outline_kind(level: int) -> _Kind:
    """``w:outlineLvl`` 0-8 is a heading level 1-9; 9 is body text."""
    return _heading(level + 1) if 0 <= level <= 8 else _PARAGRAPH


def _int_value(element: etree._Element | None) -> int | None:
    if element is None:
        return None
    try:
        return int(element.get(f"{_W}val") or "")
    except ValueError:
        return None


def _on(element: etree._Element) -> bool:
    """A WordprocessingML on/off property: on unless ``w:val`` says false."""
    return (element.get(f"{_W}val") or "true").lower() not in ("false", "0", "off")


class _Styles:
    """The paragraph and character styles of ``word/styles.xml``, resolved through ``w:basedOn`` (cached)."""

    def __init__(self, root: etree._Element | None) -> None:
        self._styles: dict[str, etree._Element] = {}
        self.default_paragraph: str | None = None
        if root is not None:
            for style in root.iterfind(f"{_W}style"):
                ident = style.get(f"{_W}styleId")
                if ident and ident not in self._styles:
                    self._styles[ident] = style
                    if style.get(f"{_W}type") == "paragraph" and style.get(f"{_W}default") in ("1", "true") \
                            and self.default_paragraph is None:
                        self.default_paragraph = ident
        self._kinds: dict[str | None, _Kind] = {}
        self._named: dict[str | None, _Kind | None] = {}
        self._hidden: dict[str | None, bool | None] = {}

    def _chain(self, ident: str | None) -> Iterable[tuple[str, etree._Element | None]]:
        """The style ``ident`` and the styles it is based on, nearest first (a style the file does not
        define: its id alone, with no element)."""
        seen: set[str] = set()
        while ident and ident not in seen and len(seen) < _MAX_BASED_ON:
            seen.add(ident)
            style = self._styles.get(ident)
            yield ident, style
            if style is None:
                return
            based = style.find(f"{_W}basedOn")
            ident = based.get(f"{_W}val") if based is not None else None

    def _name(self, ident: str, style: etree._Element | None) -> str:
        name = style.find(f"{_W}name") if style is not None else None
        return str(name.get(f"{_W}val") or ident) if name is not None else ident

    def kind(self, ident: str | None, outline: int | None) -> _Kind:
        """What a paragraph in style ``ident`` (None: the default paragraph style) with the outline level
        ``outline`` set on it (None: none) is (see the module docstring)."""
        ident = ident or self.default_paragraph
        if ident not in self._named:
            self._named[ident] = _named_kind(self._name(ident, self._styles.get(ident))) if ident else None
        named = self._named[ident]
        if named is not None:
            return named
        if outline is not None:
            return _outline_kind(outline)
        kind = self._kinds.get(ident)
        if kind is None:
            kind = self._kinds[ident] = self._inherited(ident)
        return kind

    def _inherited(self, ident: str | None) -> _Kind:
        for position, (each, style) in enumerate(self._chain(ident)):
            level = _int_value(style.find(f"{_W}pPr/{_W}outlineLvl")) if style is not None else None
            if level is not None:
                return _outline_kind(level)
            named = _named_kind(self._name(each, style)) if position else None
            if named is not None and named[0] != "p" and named[1] is None:  # based on a heading style
                return named
        return _PARAGRAPH

    def hidden(self, ident: str | None) -> bool | None:
        """Whether the style ``ident`` (or the nearest style it is based on that says) hides its text."""
        if ident in self._hidden:
            return self._hidden[ident]
        hidden = None
        for _, style in self._chain(ident):
            vanish = style.find(f"{_W}rPr/{_W}vanish") if style is not None else None
            if vanish is not None:
                hidden = _on(vanish)
                break
        self._hidden[ident] = hidden
        return hidden

    def paragraph_hidden(self, ident: str | None) -> bool:
        return bool(self.hidden(ident or self.default_paragraph))


# --- the body -----------------------------------------------------------------------------------------------

def _tags(*names: str) -> frozenset[str]:
    return frozenset(f"{_W}{name}" for name in names)


_P, _R, _T, _TBL, _TR, _TC, _SDT = (f"{_W}{n}" for n in ("p", "r", "t", "tbl", "tr", "tc", "sdt"))
_PPR, _RPR, _PSTYLE, _RSTYLE, _VANISH = (f"{_W}{n}" for n in ("pPr", "rPr", "pStyle", "rStyle", "vanish"))
_OUTLINE, _VAL, _TYPE = f"{_W}outlineLvl", f"{_W}val", f"{_W}type"
_SDT_CONTENT, _SDT_PR, _PLACEHOLDER = f"{_W}sdtContent", f"{_W}sdtPr", f"{_W}showingPlcHdr"
_HYPERLINK, _ANCHOR, _FLD_SIMPLE, _INSTR = f"{_W}hyperlink", f"{_W}anchor", f"{_W}fldSimple", f"{_W}instr"
_FLD_CHAR, _FLD_CHAR_TYPE, _INSTR_TEXT = f"{_W}fldChar", f"{_W}fldCharType", f"{_W}instrText"
_TAB, _BR, _CR = _tags("tab", "ptab"), f"{_W}br", f"{_W}cr"
_NO_BREAK_HYPHEN, _RUBY, _RUBY_BASE = f"{_W}noBreakHyphen", f"{_W}ruby", f"{_W}rubyBase"
_TXBX_CONTENT, _ALT_CHUNK = f"{_W}txbxContent", f"{_W}altChunk"
_ALTERNATE, _CHOICE, _FALLBACK = f"{_MC}AlternateContent", f"{_MC}Choice", f"{_MC}Fallback"
_TRPR, _DEL = f"{_W}trPr", f"{_W}del"
_SHAPES = _tags("drawing", "pict", "object")

# Containers whose content is read where they stand, in block, paragraph and table context.
_BLOCK_OPEN = _tags("customXml", "ins", "moveTo")
_INLINE_OPEN = _tags("ins", "moveTo", "smartTag", "customXml", "bdo", "dir")
_ROW_OPEN = _tags("customXml", "ins", "moveTo")
# Not read, on purpose (deleted text, notes, comments, properties, markers); never reported as unknown.
_NOT_READ = _tags(
    "pPr", "rPr", "tblPr", "tblGrid", "tblPrEx", "trPr", "tcPr", "sectPr", "sdtPr", "sdtEndPr",
    "del", "moveFrom", "delText", "delInstrText", "softHyphen", "sym", "lastRenderedPageBreak",
    "footnoteReference", "endnoteReference", "commentReference", "annotationRef", "footnoteRef", "endnoteRef",
    "separator", "continuationSeparator", "bookmarkStart", "bookmarkEnd", "proofErr", "permStart", "permEnd",
    "commentRangeStart", "commentRangeEnd", "moveFromRangeStart", "moveFromRangeEnd", "moveToRangeStart",
    "moveToRangeEnd", "customXmlInsRangeStart", "customXmlInsRangeEnd", "customXmlDelRangeStart",
    "customXmlDelRangeEnd", "customXmlMoveFromRangeStart", "customXmlMoveFromRangeEnd",
    "customXmlMoveToRangeStart", "customXmlMoveToRangeEnd", "dayShort", "dayLong", "monthShort", "monthLong",
    "yearShort", "yearLong", "pgNum", "contentPart", "fldData", "rt", "rubyPr")
_HYPERLINK_FIELD = re.compile(r'\s*HYPERLINK\b.*?\\l\s+"?([^"\s]+)"?', re.IGNORECASE)


class _Marker:
    """A place in a paragraph's text that is not text: a line break, a page break, a link's end."""


_LINE, _PAGE, _LINK_END = _Marker(), _Marker(), _Marker()


@dataclass(frozen=True)
class _LinkStart:
    href: str


_Item = str | _Marker | _LinkStart


@dataclass
class _Field:
    """A complex field being read: its code so far, and whether its result (after "separate") has begun."""

    code: list[str] = field(default_factory=list)
    result: bool = False
    link: bool = False


def _link_target(code: str | None) -> str | None:
    """``#bookmark`` for a ``HYPERLINK \\l "bookmark"`` field code, else None."""
    match = _HYPERLINK_FIELD.match(code or "")
    return f"#{match.group(1)}" if match else None


def _branch(alternate: etree._Element) -> etree._Element | None:
    """The one branch of an ``mc:AlternateContent`` that is read: the first ``mc:Choice`` if it holds
    text, else the ``mc:Fallback`` (else that first choice)."""
    choice = alternate.find(_CHOICE)
    if choice is not None and any(t.text for t in choice.iter(_T)):
        return choice
    fallback = alternate.find(_FALLBACK)
    return fallback if fallback is not None else choice


class _Reader:
    """Walks ``w:body`` once, building the HTML body the markup converter reads (see the module docstring).

    The walk recurses along the document's structure; the XML parser refuses documents nested deeper than
    256 levels, which bounds the recursion.
    """

    def __init__(self, package: _Package) -> None:
        self.package = package
        self.styles = _Styles(package.styles)
        self.fields: list[_Field] = []
        self.in_code = 0  # how many of the open fields are in their code (before "separate")
        self.hidden_runs = 0
        self.placeholders = 0
        self.alt_chunks = 0
        self.unknown: Counter[str] = Counter()

    def body(self) -> etree._Element:
        document = self.package.document
        body = document.find(f"{_W}body")
        if body is None:
            path, main = self.package.path, self.package.main
            if document.tag.startswith(f"{{{_STRICT_W_NS}}}"):
                raise SourceFileError(path, f"{main} is in Strict Open XML, which is not read; save the manuscript "
                                            "as a Word Document (.docx) from a word processor")
            raise SourceFileError(path, f"{main} has no document body (w:body); open it in a word processor and "
                                        "save it again as .docx")
        html = etree.Element("html")
        out = etree.SubElement(html, "body")
        self._blocks(body, out)
        return out

    def notes(self) -> list[str]:
        notes = []
        if self.hidden_runs:
            notes.append(f"{self.hidden_runs} run{_s(self.hidden_runs)} of hidden text not read")
        if self.placeholders:
            notes.append(f"{self.placeholders} content control{_s(self.placeholders)} showing placeholder text "
                         "not read")
        if self.alt_chunks:
            notes.append(f"{self.alt_chunks} embedded document{_s(self.alt_chunks)} (w:altChunk) not read; open the "
                         "file in Word and save it again to merge them into the text")
        unclosed = sum(1 for f in self.fields if not f.result)
        if unclosed:
            notes.append(f"{unclosed} field{_s(unclosed)} never ended: the text after its start is field code, "
                         "not read; repair the document in a word processor")
        if self.unknown:
            count = sum(self.unknown.values())
            names = ", ".join(name for name, _ in self.unknown.most_common(_MAX_LISTED))
            notes.append(f"text in {count} element{_s(count)} the reader does not know not read ({names})")
        return notes

    def _unknown(self, element: etree._Element) -> None:
        tag: object = element.tag
        if isinstance(tag, str) and any(text.strip() for text in element.itertext()):
            local = tag.rpartition("}")[2]
            self.unknown[f"{element.prefix}:{local}" if element.prefix else local] += 1

    def _content(self, sdt: etree._Element) -> etree._Element | None:
        """A content control's content, None when it shows its placeholder (the prompt Word fills in)."""
        props = sdt.find(_SDT_PR)
        if props is not None and props.find(_PLACEHOLDER) is not None:
            self.placeholders += 1
            return None
        return sdt.find(_SDT_CONTENT)

    # blocks

    def _blocks(self, container: etree._Element, out: etree._Element) -> None:
        for child in container:
            tag = child.tag
            if tag == _P:
                self._paragraph(child, out)
            elif tag == _TBL:
                self._rows(child, etree.SubElement(out, "table"))
            elif tag == _SDT:
                content = self._content(child)
                if content is not None:
                    self._blocks(content, out)
            elif tag in _BLOCK_OPEN:
                self._blocks(child, out)
            elif tag == _ALTERNATE:
                branch = _branch(child)
                if branch is not None:
                    self._blocks(branch, out)
            elif tag == _ALT_CHUNK:
                self.alt_chunks += 1
            elif tag not in _NOT_READ:
                self._unknown(child)

    def _rows(self, container: etree._Element, table: etree._Element) -> None:
        for child in container:
            tag = child.tag
            if tag == _TR:
                props = child.find(_TRPR)
                if props is None or props.find(_DEL) is None:  # a deleted row is dropped
                    self._cells(child, etree.SubElement(table, "tr"))
            elif tag == _SDT:
                content = self._content(child)
                if content is not None:
                    self._rows(content, table)
            elif tag in _ROW_OPEN:
                self._rows(child, table)
            elif tag not in _NOT_READ:
                self._unknown(child)

    def _cells(self, container: etree._Element, row: etree._Element) -> None:
        for child in container:
            tag = child.tag
            if tag == _TC:
                self._blocks(child, etree.SubElement(row, "td"))
            elif tag == _SDT:
                content = self._content(child)
                if content is not None:
                    self._cells(content, row)
            elif tag in _ROW_OPEN:
                self._cells(child, row)
            elif tag not in _NOT_READ:
                self._unknown(child)

    def _paragraph(self, paragraph: etree._Element, out: etree._Element) -> None:
        style = outline = None
        props = paragraph[0] if len(paragraph) and paragraph[0].tag == _PPR else None
        if props is not None:
            style_element = props.find(_PSTYLE)
            style = style_element.get(_VAL) if style_element is not None else None
            outline = _int_value(props.find(_OUTLINE))
        kind = self.styles.kind(style, outline)
        items: list[_Item] = []
        boxes: list[etree._Element] = []
        self._inline(paragraph, items, boxes, self.styles.paragraph_hidden(style))
        _emit(kind, items, out)
        if boxes:
            fields, in_code = self.fields, self.in_code
            for box in boxes:  # a text box's fields are its own
                self.fields, self.in_code = [], 0
                self._blocks(box, out)
            self.fields, self.in_code = fields, in_code

    # inline

    def _inline(self, container: etree._Element, items: list[_Item], boxes: list[etree._Element],
                hidden: bool) -> None:
        for child in container:
            tag = child.tag
            if tag == _R:
                self._run(child, items, boxes, hidden)
            elif tag in _INLINE_OPEN:
                self._inline(child, items, boxes, hidden)
            elif tag in (_HYPERLINK, _FLD_SIMPLE):
                anchor = child.get(_ANCHOR) if tag == _HYPERLINK else None
                target = f"#{anchor}" if anchor else _link_target(child.get(_INSTR)) if tag == _FLD_SIMPLE else None
                if target:
                    items.append(_LinkStart(target))
                self._inline(child, items, boxes, hidden)
                if target:
                    items.append(_LINK_END)
            elif tag == _SDT:
                content = self._content(child)
                if content is not None:
                    self._inline(content, items, boxes, hidden)
            elif tag == _ALTERNATE:
                branch = _branch(child)
                if branch is not None:
                    self._inline(branch, items, boxes, hidden)
            elif tag not in _NOT_READ:
                self._unknown(child)

    def _run(self, run: etree._Element, items: list[_Item], boxes: list[etree._Element], hidden: bool) -> None:
        props = run[0] if len(run) and run[0].tag == _RPR else None
        if props is not None:
            vanish = props.find(_VANISH)
            if vanish is not None:
                hidden = _on(vanish)
            else:
                style = props.find(_RSTYLE)
                by_style = self.styles.hidden(style.get(_VAL)) if style is not None else None
                if by_style is not None:
                    hidden = by_style
        self._run_content(run, items, boxes, hidden)

    def _run_content(self, run: etree._Element, items: list[_Item], boxes: list[etree._Element],
                     hidden: bool) -> None:
        for child in run:
            tag = child.tag
            if tag == _T:
                text = child.text if len(child) == 0 else "".join(str(t) for t in child.itertext())
                if text and not self.in_code:
                    if hidden:
                        self.hidden_runs += 1
                    else:
                        items.append(text)
            elif hidden or self.in_code:
                if tag == _FLD_CHAR:
                    self._field_char(child, items)
                elif tag == _INSTR_TEXT and self.fields and child.text:
                    self.fields[-1].code.append(child.text)
                elif tag == _ALTERNATE:  # (it may hold field characters)
                    branch = _branch(child)
                    if branch is not None:
                        self._run_content(branch, items, boxes, hidden)
            elif tag in _TAB:
                items.append("\t")
            elif tag == _BR:
                items.append(_PAGE if child.get(_TYPE) in ("page", "column") else _LINE)
            elif tag == _CR:
                items.append(_LINE)
            elif tag == _NO_BREAK_HYPHEN:
                items.append("-")
            elif tag == _FLD_CHAR:
                self._field_char(child, items)
            elif tag in _SHAPES:
                boxes.extend(_text_boxes(child))
            elif tag == _ALTERNATE:
                branch = _branch(child)
                if branch is not None:
                    self._run_content(branch, items, boxes, hidden)
            elif tag == _RUBY:
                base = child.find(_RUBY_BASE)
                if base is not None:
                    self._inline(base, items, boxes, hidden)
            elif tag not in _NOT_READ and tag != _INSTR_TEXT:
                self._unknown(child)

    def _field_char(self, char: etree._Element, items: list[_Item]) -> None:
        kind = char.get(_FLD_CHAR_TYPE)
        if kind == "begin":
            self.fields.append(_Field())
            self.in_code += 1
        elif kind == "separate" and self.fields and not self.fields[-1].result:
            current = self.fields[-1]
            current.result = True
            self.in_code -= 1
            target = None if self.in_code else _link_target("".join(current.code))
            if target:
                items.append(_LinkStart(target))
                current.link = True
        elif kind == "end" and self.fields:
            current = self.fields.pop()
            if not current.result:
                self.in_code -= 1
            if current.link:
                items.append(_LINK_END)


def _text_boxes(shape: etree._Element) -> list[etree._Element]:
    """The text boxes in a drawing, VML picture or object, in document order (a text box inside a text
    box is read with the outer one; of an ``mc:AlternateContent``, one branch)."""
    found: list[etree._Element] = []
    stack = [shape]
    while stack:
        node = stack.pop()
        if node.tag == _TXBX_CONTENT:
            found.append(node)
            continue
        if node.tag == _ALTERNATE:
            branch = _branch(node)
            stack.extend(() if branch is None else [branch])
            continue
        stack.extend(child for child in reversed(node) if isinstance(child.tag, str))
    return found


def _emit(kind: _Kind, items: list[_Item], out: etree._Element) -> None:
    """Append the paragraph ``items`` make to ``out`` as ``kind`` (nothing for a paragraph without
    text; several paragraphs for one with page breaks)."""
    tag, cls = kind
    if all(type(item) is str for item in items):  # most paragraphs: text alone
        text = "".join(items)  # type: ignore[arg-type]
        if text:
            element = etree.SubElement(out, tag, {"class": cls} if cls else {})
            element.text = text
        return
    segments: list[list[_Item]] = [[]]
    for item in items:
        if item is _PAGE and tag == "p":
            segments.append([])
        else:
            segments[-1].append(_LINE if item is _PAGE else item)
    for segment in segments:
        if any(type(item) is str and item for item in segment):
            _fill(etree.SubElement(out, tag, {"class": cls} if cls else {}), segment)


def _fill(element: etree._Element, items: list[_Item]) -> None:
    """Put the text, line breaks (``<br>``) and links (``<a href>``, not nested) of ``items`` in ``element``."""
    parent = element
    last: etree._Element | None = None  # the child whose tail the text goes to (None: parent's text)
    open_links: list[tuple[etree._Element, etree._Element]] = []
    ignored = 0  # links started inside a link
    pending: list[str] = []
    for item in [*items, _LINK_END]:  # (a last marker flushes the text)
        if isinstance(item, str):
            pending.append(item)
            continue
        if pending:
            text = "".join(pending)
            pending.clear()
            if last is None:
                parent.text = (parent.text or "") + text
            else:
                last.tail = (last.tail or "") + text
        if item is _LINE:
            last = etree.SubElement(parent, "br")
        elif isinstance(item, _LinkStart):
            if open_links:
                ignored += 1
                continue
            link = etree.SubElement(parent, "a", {"href": item.href})
            open_links.append((parent, link))
            parent, last = link, None
        elif item is _LINK_END:
            if ignored:
                ignored -= 1
            elif open_links:
                parent, last = open_links.pop()


# --- parts -------------------------------------------------------------------------------------------------

class _Book:
    def __init__(self, path: Path, package: _Package, body: etree._Element, reader_notes: list[str],
                 options: ReadOptions) -> None:
        self.path = path
        self.package = package
        self.body = body
        self.reader_notes = reader_notes
        self.options = options
        self.notes: list[str] = []

    def book(self) -> SourceBook:
        body = self.body
        sections = split_sections(body, starts=self._starts, classes=True, note_href=_bookmark_link)
        titles = [s for s in sections if _is_book_title(s.start)]
        book_title = titles[0].heading if len(titles) == 1 else None
        if len(titles) > 1:
            self.notes.append(f"{len(titles)} paragraphs in the Title style: read as chapter headings")
        core = self.package.core
        title = book_title or core.get("title") or self.path.stem
        author = core.get("creator")
        order = _paragraph_numbers(body)
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
        self.notes.extend(self.reader_notes)


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


def _bookmark_link(href: str) -> bool:
    """Whether a link points at a note: the body built here holds no note bodies, so only a bookmark named
    as Word and converters name notes' (``#_ftn1``) does, which the markup converter checks itself."""
    return False
