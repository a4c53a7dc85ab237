"""(X)HTML -> the Markdown the project reads (issue 13, items 3 and 11), shared by the EPUB, HTML and DOCX
readers (the DOCX reader builds an HTML tree from WordprocessingML and converts it with this).

What a listener hears of a page is its words, so the converter keeps the words and the structure that
shapes them, and nothing else:

* ``<h1>``-``<h6>`` -> ``#`` headings; paragraphs, list items, definition terms, blockquotes and table
  rows -> paragraphs (a blank line between; a row's cells separated by a space); ``<br>`` -> a line
  ending in two spaces (the words on either side stay separate); ``<pre>`` keeps its lines.
* ``<hr>``, scene-break elements (``class``/``epub:type`` ``scene-break``, ``section-break``,
  ``transition``, ...), a paragraph that is only ``* * *`` / ``⁂`` / ``#``, and a dinkus image -> a ``***``
  line (the chunker's pause); none at the start or end of a section, never two in a row.
* Not read: images (no alt text), ``<script>``, ``<style>``, ``<head>``, ruby annotations, ``hidden``
  elements; footnote and endnote reference marks (``epub:type="noteref"``, ``role="doc-noteref"``,
  ``<a class="footnote-ref">``, a ``<sup>``/``<a>`` whose link points at a note, mammoth's
  ``<sup><a href="#footnote-1">[1]</a></sup>``) vanish without touching the words around them; note
  bodies (``epub:type``/``role`` footnote, endnote, rearnote, ``<aside>`` notes, ``<section
  class="footnotes">``, mammoth's ``<li id="footnote-1">``) are not read inline (a section that is
  nothing but notes keeps them: it becomes a notes part, skipped by default); page-break markers
  (``epub:type="pagebreak"``, ``role="doc-pagebreak"``, ``<span class="pagenum">[Pg 12]</span>``).
* Text: entities decoded by the parser, whitespace collapsed the HTML way (a newline inside a paragraph
  is a space; between two CJK characters it is nothing), and every character Markdown would read as
  syntax escaped, so the spoken words of the output (:func:`pipeline.text.to_spoken_text`) are the
  page's words. Text never makes a pause marker: ``<#`` in the text is written ``< #``.

:func:`split_sections` cuts one document at chosen elements (the EPUB reader's TOC anchors, the HTML
reader's headings) and says for each section what the source calls it (``epub:type``, ``role``, class)
and which ids open it; :func:`element_to_markdown` and :func:`html_to_markdown` convert a whole tree or
an HTML string.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from html.entities import html5
from urllib.parse import unquote

from lxml import etree

from pipeline.errors import SourceFileError

OPS_NS = "http://www.idpf.org/2007/ops"
EPUB_TYPE = f"{{{OPS_NS}}}type"
_EPUB_CASE = f"{{{OPS_NS}}}case"

# --- what the elements are -------------------------------------------------------------------------

_DROPPED = {"script", "style", "head", "title", "meta", "link", "base", "template", "noscript", "img", "image",
            "svg", "picture", "source", "track", "video", "audio", "canvas", "object", "embed", "iframe", "map",
            "area", "rt", "rp", "input", "button", "select", "textarea", "datalist", "param", "wbr"}
_BLOCKS = {"html", "body", "p", "div", "section", "article", "aside", "nav", "main", "header", "footer", "address",
           "blockquote", "figure", "figcaption", "ul", "ol", "li", "dl", "dt", "dd", "table", "caption", "thead",
           "tbody", "tfoot", "tr", "pre", "hgroup", "details", "summary", "fieldset", "legend", "center", "dialog",
           "menu", "form", "colgroup", "col", "listing", "plaintext", "xmp", "frameset", "frame", "noframes"}
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_CELLS = {"td", "th"}

_NOTE_BODY_TYPES = {"footnote", "footnotes", "endnote", "endnotes", "rearnote", "rearnotes", "note"}
_NOTE_BODY_CLASSES = {"footnote", "footnotes", "endnote", "endnotes", "rearnote", "rearnotes", "footnote-body",
                      "footnote-text", "endnote-text", "footnotes-section", "endnotes-section", "sdfootnote",
                      "sdendnote"}
_NOTE_MARK_TYPES = {"noteref", "annoref", "backlink", "footnote-ref", "endnote-ref"}
_NOTE_MARK_CLASSES = {"footnote-ref", "footnoteref", "footnote-reference", "footnote-link", "footnote-anchor",
                      "footnote-call", "footnote-number", "fn-ref", "fnref", "noteref", "note-ref", "endnote-ref",
                      "endnote-reference", "endnote-link", "endnote-anchor", "footnote-back", "footnote-backref",
                      "footnote-return", "fn-back", "sdfootnoteanc", "sdendnoteanc", "sdfootnotesym", "sdendnotesym"}
_INLINE_MARK_TAGS = {"sup", "a", "span", "small", "sub", "b", "strong", "i", "em"}
# Ids that note bodies and reference marks carry in the tools that write books (pandoc fn1/fnref1, Word
# _ftn1/_ftnref1, LibreOffice sdfootnote1anc, mammoth footnote-1/footnote-ref-1, InDesign footnote-001).
_NOTE_ID = re.compile(r"(?:(?:foot|end|rear)notes?(?:[-_:.]?[\w.-]*)?|(?:_?ftn|_?edn|fn|notes?|n|en|sd(?:foot|end)note)"
                      r"(?:ref|anc|sym)?[-_:.]?(?:[a-z]+[-_:.]?)?\d[\w.-]*)", re.IGNORECASE)
_MARK_TEXT = re.compile(r"[\s\[\(]*(?:\d{1,4}[a-z]?|[ivxlcdm]{1,7}|[a-z]|[*†‡§¶#‖¤]+|[⁰¹²³⁴⁵⁶⁷⁸⁹]+|note\s*\d+"
                        r"|[↑↩⤴^⮐]|)[\s\]\)\.,:]*", re.IGNORECASE)
_BODY_ID = re.compile(r"(?:foot|end)note-\d+", re.IGNORECASE)  # mammoth's <li id="footnote-1">

_PAGE_TYPES = {"pagebreak", "page-break"}
_PAGE_CLASSES = {"pagebreak", "page-break", "pagenum", "page-num", "pagenumber", "page-number", "pageno",
                 "page_number", "folio"}
_PAGE_TEXT = re.compile(r"[\s\[\(]*(?:p(?:g|age|p)?\.?\s*)?[0-9ivxlcdm]*[\s\]\)]*", re.IGNORECASE)

_BREAK_NAMES = {"scene-break", "scenebreak", "scene_break", "section-break", "sectionbreak", "section_break",
                "space-break", "spacebreak", "dinkus", "transition", "asterism", "ornament", "fleuron",
                "scene-change", "scenechange", "thought-break", "thoughtbreak", "separator", "section-divider"}
_BREAK_IMAGE = re.compile(r"dinkus|ornament|fleuron|scene|break|separator|divider|asterism|flourish|decorat",
                          re.IGNORECASE)
_DINKUS_TEXT = re.compile(r"[\s*⁂•·∙~#◆◇❖❦❧☙✻✼✽✶✦✧○●◦†‡§¶⸙⸎=_—–-]+")


def local_name(element: etree._Element) -> str:
    """The element's tag without its namespace, in lower case ("" for a comment or processing instruction)."""
    tag: object = element.tag  # a function for a comment or a PI (the stubs say str)
    if not isinstance(tag, str):
        return ""
    name = _NAMES.get(tag)
    if name is None:
        name = _NAMES[tag] = tag.rsplit("}", 1)[-1].lower()
    return name


_NAMES: dict[str, str] = {}


@dataclass(frozen=True)
class _Facts:
    """What the converter asks of an element, read once: its name and the attributes that say what it is."""

    name: str
    types: tuple[str, ...] = ()  # epub:type and role values (role without "doc-")
    classes: tuple[str, ...] = ()
    ident: str = ""

    @property
    def plain(self) -> bool:
        return not (self.types or self.classes or self.ident)


_PLAIN: dict[str, _Facts] = {}


def _facts(element: etree._Element) -> _Facts:
    name = local_name(element)
    if not element.keys():  # most elements: no attributes, nothing to read
        facts = _PLAIN.get(name)
        if facts is None:
            facts = _PLAIN[name] = _Facts(name)
        return facts
    types = _tokens(element.get(EPUB_TYPE) or element.get("epub:type"))
    types += [role.removeprefix("doc-") for role in _tokens(element.get("role"))]
    return _Facts(name, tuple(types), tuple(_tokens(element.get("class"))), str(element.get("id") or ""))


def _tokens(value: str | None) -> list[str]:
    return value.lower().split() if value else []


def epub_types(element: etree._Element) -> list[str]:
    """The element's ``epub:type`` values (namespaced in XHTML, a plain ``epub:type`` attribute in HTML)."""
    return _tokens(element.get(EPUB_TYPE) or element.get("epub:type"))


def semantic_types(element: etree._Element, *, classes: bool = False) -> list[str]:
    """What the source says the element is: its ``epub:type`` and ``role`` values (``doc-`` dropped) and,
    with ``classes``, its class names; for :func:`pipeline.importer.classify.skip_reason`."""
    facts = _facts(element)
    return [*facts.types, *facts.classes] if classes else list(facts.types)


def _text_of(element: etree._Element) -> str:
    return str(etree.tostring(element, method="text", encoding="unicode", with_tail=False))


def _short_text(element: etree._Element, limit: int = 64) -> str | None:
    """The element's text when it is at most ``limit`` characters (marks and dinkuses are short), else None;
    stops reading as soon as it is longer."""
    pieces: list[str] = []
    length = 0
    for piece in element.itertext():
        length += len(piece)
        if length > limit:
            return None
        pieces.append(str(piece))
    return "".join(pieces)


def _looks_like_mark(text: str | None) -> bool:
    return text is not None and bool(_MARK_TEXT.fullmatch(text))


def _fragment(href: str) -> str:
    return unquote(href.partition("#")[2])


def is_note_body(element: etree._Element) -> bool:
    """Whether ``element`` holds the text of a footnote or endnote (or a list of them)."""
    return _is_note_body(_facts(element))


_NOT_BODIES = _INLINE_MARK_TAGS - {"span"}
_WORD_NOTE_DIV = re.compile(r"_?(?:ftn|edn)\d+|sd(?:foot|end)note\d+", re.IGNORECASE)


def _is_note_body(facts: _Facts) -> bool:
    if facts.plain or facts.name in _NOT_BODIES:
        return False
    if _NOTE_BODY_TYPES.intersection(facts.types):
        return True
    if _NOTE_BODY_CLASSES.intersection(facts.classes):
        return facts.name != "span" or bool(facts.ident)
    if facts.name == "li":
        return bool(_BODY_ID.fullmatch(facts.ident))
    if facts.name == "aside":
        return bool(_NOTE_ID.fullmatch(facts.ident)) or any("note" in c for c in facts.classes)
    return facts.name == "div" and bool(_WORD_NOTE_DIV.fullmatch(facts.ident))


def note_ids(root: etree._Element) -> set[str]:
    """The ids a link to a note points at under ``root``: note bodies and everything inside them, and
    reference marks named as such (a note's link back to its mark is a mark too)."""
    ids: set[str] = set()
    for element in root.iter():
        if not local_name(element) or not element.keys():
            continue
        facts = _facts(element)
        if _is_note_body(facts):
            ids.update(str(inner.get("id")) for inner in element.iter() if inner.get("id"))
        elif facts.ident and _NOTE_MARK_TYPES.intersection(facts.types):
            ids.add(facts.ident)
    return ids


NoteHref = Callable[[str], bool]  # an href (as written in the document) -> whether it points at a note


def _is_note_mark(element: etree._Element, facts: _Facts, note_href: NoteHref) -> bool:
    """A footnote/endnote reference mark (or a note's link back to it): not read."""
    if facts.name not in _INLINE_MARK_TAGS or not element.keys():
        return False
    if _NOTE_MARK_TYPES.intersection(facts.types):
        return True
    if _NOTE_MARK_CLASSES.intersection(facts.classes):
        return _looks_like_mark(_short_text(element))
    if facts.name == "sup" and any(c in ("footnote", "endnote", "note", "fn") for c in facts.classes):
        return True
    href = element.get("href") if facts.name == "a" else None
    if href is None or not _looks_like_mark(_short_text(element)):
        return False
    return note_href(href) or bool(_NOTE_ID.fullmatch(_fragment(href)))


_MARK_GROUP_MAX = 16


def _is_mark_group(element: etree._Element, facts: _Facts, note_href: NoteHref) -> bool:
    """A ``<sup>``/``<span>``/``<a>`` that holds note marks and nothing else but brackets or commas."""
    if facts.name not in _INLINE_MARK_TAGS or len(element) == 0:
        return False
    inner = list(itertools.islice(element.iterdescendants(), _MARK_GROUP_MAX))
    if len(inner) == _MARK_GROUP_MAX:
        return False  # a group of marks is small
    text = _short_text(element)
    if text is None:
        return False
    marks = [e for e in inner if local_name(e) and _is_note_mark(e, _facts(e), note_href)]
    if not marks:
        return False
    for mark in marks:
        text = text.replace(_text_of(mark), "", 1)
    return not re.search(r"\w", text)


def _is_page_break(element: etree._Element, facts: _Facts) -> bool:
    if facts.plain:
        return False
    if _PAGE_TYPES.intersection(facts.types):
        return True
    if _PAGE_CLASSES.intersection(facts.classes) and facts.name in ("span", "a", "div", "p", "small"):
        text = _short_text(element)
        return text is not None and bool(_PAGE_TEXT.fullmatch(text))
    return False


def _is_break_image(element: etree._Element) -> bool:
    attributes = " ".join(str(element.get(name) or "") for name in ("src", "class", "id", "{http://www.w3.org/"
                                                                    "1999/xlink}href", "href"))
    alt = (element.get("alt") or "").strip()
    return bool(_BREAK_IMAGE.search(attributes) or _BREAK_IMAGE.search(alt)
                or (alt and _DINKUS_TEXT.fullmatch(alt)))


_BREAK_HOLDERS = {"p", "div", "span", "section", "figure", "center"}
_WORD = re.compile(r"\w")


def _is_scene_break(element: etree._Element, facts: _Facts) -> bool:
    """``<hr>``, an element named a scene break with no words in it, a ``* * *`` paragraph, a dinkus image."""
    if facts.name == "hr":
        return True
    if facts.name in ("img", "image", "svg"):
        return _is_break_image(element)
    if facts.name not in _BREAK_HOLDERS or (element.text and _WORD.search(element.text)):
        return False  # (most paragraphs start with a word)
    if facts.name == "span" and facts.plain:
        return False
    text = _short_text(element)
    if text is None or _WORD.search(text):
        return False
    if _BREAK_NAMES.intersection(facts.types) or _BREAK_NAMES.intersection(facts.classes):
        return True
    if text.strip():
        return bool(_DINKUS_TEXT.fullmatch(text))
    images = [inner for inner in element.iterdescendants() if local_name(inner) in ("img", "image", "svg")]
    return bool(images) and all(_is_break_image(image) for image in images)


def anchor_id(element: etree._Element) -> str | None:
    """The id a link can point at: ``id``, or ``name`` on an ``<a>`` (older XHTML)."""
    if not element.keys():
        return None
    ident = element.get("id") or (element.get("name") if local_name(element) == "a" else None)
    return str(ident) if ident else None


def heading_level(element: etree._Element) -> int | None:
    """1-6 for ``<h1>``-``<h6>``, else None."""
    return _HEADINGS.get(local_name(element))


# --- text -> Markdown --------------------------------------------------------------------------------

_HTML_SPACE = re.compile(r"[\t\n\f\r][ \t\n\f\r]*| [ \t\n\f\r]+")  # a lone space is left alone (fast)
_CJK = "\u2e80-\u2fff\u3001-\u303f\u3040-\u30ff\u3100-\u312f\u3190-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff" \
       "\uff00-\uffef\U00020000-\U0003ffff"
_CJK_BREAK = re.compile(rf"(?<=[{_CJK}])[ \t\f\r]*\n[ \t\n\f\r]*(?=[{_CJK}])")
_CJK_CHAR = re.compile(f"[{_CJK}]")
_MARK = "\x00"  # where a note mark was; cleaned up with the brackets around it
_LINE = "\x01"  # a <br>
_MARK_LEFTOVER = re.compile(rf"[\[\(]\s*{_MARK}(?:[\s,;–-]*{_MARK})*\s*[\]\)]|{_MARK}(?:[,;]\s*{_MARK})*")
_SPECIAL = re.compile(r"([\\`*_\[\]<>~|{}#])")
_SPECIAL_CHARS = frozenset("\\`*_[]<>~|{}#")
_SPACE_CHARS = frozenset("\t\n\f\r")
_ENTITY_LIKE = re.compile(r"&(?=#[0-9]+;|#[xX][0-9a-fA-F]+;|[A-Za-z][A-Za-z0-9]*;)")
_LIST_START = re.compile(r"(\d+)([.)])")
_SETEXT_LINE = re.compile(r"=+")
SCENE_BREAK = "***"
_IGNORABLE = " \t\n\f\r" + _MARK + _LINE


def escape_markdown(text: str) -> str:
    """``text`` (one line, already collapsed) written so that a CommonMark reader shows exactly ``text``.

    Backslash-escapes everything that is syntax anywhere (``\\ ` * _ [ ] < > ~ | { } #``), ``&`` where it
    would start an entity, and list markers at the line start; ``<#`` (a pause marker's opening) gets a
    space.
    """
    if not _SPECIAL_CHARS.isdisjoint(text):  # (a set test is much faster than a regex scan)
        text = _SPECIAL.sub(r"\\\1", text.replace("<#", "< #"))
    if "&" in text:
        text = _ENTITY_LIKE.sub(r"\\&", text)
    if text[:1] in ("-", "+"):
        return "\\" + text
    return _LIST_START.sub(r"\1\\\2", text, count=1) if _LIST_START.match(text) else text


def _collapse(raw: str) -> str:
    text = _CJK_BREAK.sub("", raw) if "\n" in raw and _CJK_CHAR.search(raw) else raw
    if "  " in text or not _SPACE_CHARS.isdisjoint(text):
        text = _HTML_SPACE.sub(" ", text)
    if _MARK in text:
        text = _HTML_SPACE.sub(" ", _MARK_LEFTOVER.sub("", text))
    return text


def _paragraphs(raw: str) -> list[str]:
    """A paragraph's raw text (``_LINE`` for each ``<br>``) -> its Markdown paragraphs (usually one)."""
    paragraphs: list[list[str]] = [[]]
    for line in _collapse(raw).split(_LINE):
        line = line.strip()
        if not line or (paragraphs[-1] and _SETEXT_LINE.fullmatch(line)):
            paragraphs.append([])  # an empty line ends the paragraph; "===" under a line would be a heading
        if line:
            paragraphs[-1].append(escape_markdown(line))
    return ["  \n".join(lines) for lines in paragraphs if lines]


def _heading(raw: str, level: int) -> tuple[str, str] | None:
    text = _collapse(raw.replace(_LINE, " ")).strip()
    return (f"{'#' * level} {escape_markdown(text)}", text) if text else None


# --- the walk --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    """One section of a converted document.

    ``start`` is the element it was cut at (None: the start of what was converted). ``ids`` holds the ids
    of the elements that open before its first words (``start``'s among them); ``semantic`` what the
    source calls the elements open at its start and those opening before its first words
    (:func:`semantic_types`); ``heading`` the text of its first heading (unescaped). ``notes_only``: the
    section held nothing but note bodies, and ``markdown`` is their text.
    """

    markdown: str
    start: etree._Element | None = None
    ids: frozenset[str] = frozenset()
    semantic: tuple[str, ...] = ()
    heading: str | None = None
    notes_only: bool = False

    @property
    def has_words(self) -> bool:
        return bool(re.search(r"\w", self.markdown))


@dataclass
class _Draft:
    start: etree._Element | None
    semantic: list[str]
    ids: set[str] = field(default_factory=set)
    blocks: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    heading: str | None = None
    notes_heading: str | None = None
    has_content: bool = False

    def finish(self) -> Section:
        markdown = _join_blocks(self.blocks)
        notes_only = not re.search(r"\w", markdown) and bool(re.search(r"\w", "".join(self.notes)))
        heading = self.heading
        if notes_only:
            markdown, heading = _join_blocks(self.notes), self.notes_heading
        return Section(markdown, self.start, frozenset(self.ids), tuple(dict.fromkeys(self.semantic)), heading,
                       notes_only)


def _join_blocks(blocks: list[str]) -> str:
    kept: list[str] = []
    for block in blocks:
        if block == SCENE_BREAK and (not kept or kept[-1] == SCENE_BREAK):
            continue
        kept.append(block)
    while kept and kept[-1] == SCENE_BREAK:
        kept.pop()
    return "\n\n".join(kept) + "\n" if kept else ""


@dataclass
class _Sink:
    """Where text goes: the main flow, or a note body (``notes``) that is set aside."""

    notes: bool
    inline: list[str] = field(default_factory=list)
    heading: int = 0  # the level of the heading being read, 0 outside one
    pre: int = 0


_OPEN, _SKIP, _CLOSE, _CLOSE_NOTE = range(4)  # the walk's phases for an element


class _Walker:
    """Walks a tree once, without recursion (a deep tree cannot overflow the stack), writing Markdown."""

    def __init__(self, *, starts: Callable[[etree._Element], bool], note_href: NoteHref, keep_notes: bool,
                 classes: bool) -> None:
        self._starts = starts
        self._note_href = note_href
        self._keep_notes = keep_notes
        self._classes = classes
        self._sinks = [_Sink(notes=False)]
        self._open: list[list[str]] = []  # semantic types of the open elements
        self.drafts = [_Draft(None, [])]

    # the current section and sink
    @property
    def _draft(self) -> _Draft:
        return self.drafts[-1]

    @property
    def _sink(self) -> _Sink:
        return self._sinks[-1]

    def _has_content(self) -> bool:
        draft = self._draft
        if draft.has_content:
            return True
        found = (any(block != SCENE_BREAK for block in draft.blocks) or bool(draft.notes)
                 or any(piece.strip(_IGNORABLE) for sink in self._sinks for piece in sink.inline))
        draft.has_content = found
        return found

    def walk(self, root: etree._Element) -> list[Section]:
        stack: list[tuple[etree._Element, int]] = [(root, _OPEN)]
        while stack:
            node, phase = stack.pop()
            if phase == _OPEN:
                if not local_name(node):  # a comment, a processing instruction or an entity
                    if isinstance(node, etree._Entity):
                        self._text(html5.get(f"{node.name};", node.text))
                    self._text(node.tail)
                    continue
                phase = self._start(node)
                if phase == _SKIP:
                    self._text(node.tail)
                    continue
                self._text(node.text)
                stack.append((node, phase))
                stack.extend((child, _OPEN) for child in reversed(node))
            else:
                self._end(node, phase)
                self._text(node.tail)
        for sink in self._sinks:
            self._flush(sink)
        return [draft.finish() for draft in self.drafts]

    def _text(self, text: str | None) -> None:
        if not text:
            return
        if self._sink.pre:
            text = text.replace("\r\n", "\n").replace("\n", _LINE)
        self._sink.inline.append(text)

    def _start(self, element: etree._Element) -> int:
        """Handle an opening element; how to close it (``_SKIP``: do not read what is inside it)."""
        if self._starts(element):
            self._cut(element)
        facts = _facts(element)
        name = facts.name
        if name == "case" and element.tag == _EPUB_CASE:  # an EPUB 3 epub:switch is read by its epub:default
            return _SKIP
        if name in _DROPPED or element.get("hidden") is not None or _is_page_break(element, facts):
            if name in ("img", "image", "svg") and not self._sink.heading and _is_break_image(element):
                self._scene_break()
            return _SKIP
        if _is_note_mark(element, facts, self._note_href) or _is_mark_group(element, facts, self._note_href):
            self._sink.inline.append(_MARK)
            return _SKIP
        types = [*facts.types, *facts.classes] if self._classes else list(facts.types)
        note_body = not self._keep_notes and _is_note_body(facts)
        if not self._has_content():
            if not note_body:  # a note before the text does not make the section a notes section
                self._draft.semantic.extend(types)
            ident = anchor_id(element)
            if ident:
                self._draft.ids.add(ident)
        if note_body:
            self._open.append(types)
            self._sinks.append(_Sink(notes=True))
            return _CLOSE_NOTE
        if not self._sink.heading and _is_scene_break(element, facts):
            self._scene_break()
            return _SKIP
        self._open.append(types)
        self._structure_start(name)
        return _CLOSE

    def _structure_start(self, name: str) -> None:
        sink = self._sink
        level = _HEADINGS.get(name)
        if sink.heading:
            if name in _BLOCKS or level or name == "br":
                sink.inline.append(" ")
        elif level:
            self._flush(sink)
            sink.heading = level
        elif name == "br":
            sink.inline.append(_LINE)
        elif name in _CELLS:
            sink.inline.append(" ")
        elif name in _BLOCKS:
            self._flush(sink)
        if name == "pre":
            sink.pre += 1

    def _end(self, element: etree._Element, phase: int) -> None:
        self._open.pop()
        sink = self._sink
        if phase == _CLOSE_NOTE:
            self._flush(sink)
            self._sinks.pop()
            return
        name = local_name(element)
        closes_heading = sink.heading and sink.heading == _HEADINGS.get(name)
        if closes_heading or (name in _BLOCKS and not sink.heading):
            self._flush(sink)
        if name == "pre":
            sink.pre -= 1

    def _flush(self, sink: _Sink) -> None:
        raw = "".join(sink.inline)
        sink.inline.clear()
        target = self._draft.notes if sink.notes else self._draft.blocks
        if sink.heading:
            level, sink.heading = sink.heading, 0
            heading = _heading(raw, level)
            if heading:
                target.append(heading[0])
                if sink.notes:
                    self._draft.notes_heading = self._draft.notes_heading or heading[1]
                else:
                    self._draft.heading = self._draft.heading or heading[1]
            return
        target.extend(_paragraphs(raw))

    def _scene_break(self) -> None:
        self._flush(self._sink)
        target = self._draft.notes if self._sink.notes else self._draft.blocks
        target.append(SCENE_BREAK)

    def _cut(self, element: etree._Element) -> None:
        """Start a new section at ``element`` (unless nothing has been read since the last start)."""
        if not self._has_content():
            if self._draft.start is None:
                self._draft.start = element
            if anchor_id(element):
                self._draft.ids.add(str(anchor_id(element)))
            return
        sink = self._sink
        carried, level = sink.inline[:], sink.heading  # a cut inside a heading moves the heading along
        if level:
            sink.inline.clear()
            sink.heading = 0
        for each in self._sinks:
            self._flush(each)
        semantic = [value for types in self._open for value in types]
        ident = anchor_id(element)
        self.drafts.append(_Draft(element, semantic, {ident} if ident else set()))
        if level:
            sink.heading = level
            sink.inline.extend(carried)


def _note_href_in(root: etree._Element) -> NoteHref:
    ids = note_ids(root)
    return lambda href: href.startswith("#") and _fragment(href) in ids


def split_sections(element: etree._Element, *, starts: Callable[[etree._Element], bool] = lambda _: False,
                   note_href: NoteHref | None = None, keep_notes: bool = False,
                   classes: bool = False) -> list[Section]:
    """Convert ``element`` (a document, its body, or any element) to Markdown sections, cut before every
    element for which ``starts`` is true (see :class:`Section`; the first section holds what comes before
    the first cut and may be empty).

    ``note_href`` says whether a link points at a note (default: at a note body in the same document);
    ``keep_notes`` reads note bodies where they stand instead of setting them aside; ``classes`` counts
    class names in :attr:`Section.semantic` (for HTML, whose only semantics they often are).
    """
    if note_href is None:
        note_href = _note_href_in(element.getroottree().getroot())
    walker = _Walker(starts=starts, note_href=note_href, keep_notes=keep_notes, classes=classes)
    return walker.walk(element)


def element_to_markdown(element: etree._Element, *, note_href: NoteHref | None = None,
                        keep_notes: bool = False) -> str:
    """``element`` and everything in it as Markdown (see the module docstring); "" when it has no words.

    A tree with nothing but note bodies in it gives their text (it is a notes section).
    """
    return split_sections(element, note_href=note_href, keep_notes=keep_notes)[0].markdown


_PLAIN_TEXT = _Facts("")


def _no_note_links(_href: str) -> bool:
    return False  # a label links to chapters, never to notes


def element_text(element: etree._Element) -> str:
    """The words of ``element`` as one plain line (a TOC label, a title): what Markdown conversion would
    keep, unescaped, with line and block breaks as spaces."""
    parts: list[str] = []
    stack: list[tuple[etree._Element, bool]] = [(element, False)]
    while stack:
        node, ended = stack.pop()
        if ended:
            parts.append(" " if local_name(node) in _BLOCKS or local_name(node) in _HEADINGS else "")
            parts.append(node.tail or "")
            continue
        name = local_name(node)
        facts = _facts(node) if name else _PLAIN_TEXT
        skip = (not name or name in _DROPPED or node.get("hidden") is not None or _is_page_break(node, facts)
                or _is_note_mark(node, facts, _no_note_links))
        if skip and node is not element:
            parts.append(node.tail or "")
            continue
        parts.append(" " if name in ("br", *_CELLS) else "")
        parts.append(node.text or "")
        stack.append((node, True))
        stack.extend((child, False) for child in reversed(node))
    if parts and element.tail:
        parts.pop()  # the element's own tail is not its text
    return _collapse("".join(parts)).replace(_MARK, "").strip()


# --- HTML strings ----------------------------------------------------------------------------------

_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>", re.IGNORECASE)
_ENTITY_DECLARATION = re.compile(r"<!ENTITY", re.IGNORECASE)


def parse_html(text: str, *, source: object) -> etree._Element:
    """Parse an HTML document or fragment (already decoded) with lxml's HTML parser (no network, no DTD)
    and return its ``<html>`` root. A DOCTYPE that declares entities is refused (``SourceFileError``
    naming ``source``), as in :func:`pipeline.importer.archive.parse_xml`."""
    if _ENTITY_DECLARATION.search(text):
        raise SourceFileError(source, "declares entities (<!ENTITY>), which an HTML book never needs "
                              "(entity expansion and external entities are attacks); refused")
    text = _XML_DECLARATION.sub("", text.removeprefix("\ufeff"), count=1)
    if not text.strip():
        return etree.fromstring("<html><body/></html>")
    parser = etree.HTMLParser(no_network=True, remove_pis=True, huge_tree=False, compact=True)
    try:
        root = etree.fromstring(text, parser)
    except (etree.LxmlError, ValueError) as exc:
        raise SourceFileError(source, f"cannot be parsed as HTML ({exc})") from exc
    if any(entry.type_name == "ERR_RESOURCE_LIMIT" for entry in parser.error_log):
        # libxml2 stops at 256 levels of nesting and drops what is deeper: refuse rather than lose text
        raise SourceFileError(source, "nests elements more than 256 levels deep (a crafted file?); refused")
    if root is None:
        return etree.fromstring("<html><body/></html>")
    return root


def html_to_markdown(html: str | bytes, *, source: object) -> str:
    """An HTML document or fragment (``bytes``: UTF-8) as Markdown (see :func:`element_to_markdown`).

    ``source`` names the file in a ``SourceFileError`` (bytes that are not UTF-8, entity declarations).
    """
    if isinstance(html, bytes):
        try:
            html = html.removeprefix(b"\xef\xbb\xbf").decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SourceFileError(source, f"is not valid UTF-8 HTML (byte 0x{html[exc.start]:02x} at offset "
                                  f"{exc.start})") from exc
    return element_to_markdown(parse_html(html, source=source))


def html_to_text(html: str, *, source: object) -> str:
    """The words of an HTML fragment as one plain line (an EPUB description that holds markup)."""
    return element_text(parse_html(html, source=source))
