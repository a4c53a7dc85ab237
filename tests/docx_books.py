"""Real DOCX files for the import tests, written with python-docx (tests only) plus raw WordprocessingML
where python-docx has no API: tracked insertions and deletions (``w:ins`` / ``w:del``), footnotes and
endnotes (their parts, relationships and content types), content controls (``w:sdt``), and any other
construct as a fragment of XML (:func:`raw`, :class:`Raw`): fields, moves, text boxes and
``mc:AlternateContent``, breaks, hidden runs, nested tables.

A book is a list of blocks: ``(style, pieces)`` for a paragraph, :class:`Table` for a table,
:class:`Control` for a block-level content control holding paragraphs, :class:`Raw` for block-level XML.
A paragraph's pieces are strings (plain runs) and :class:`Piece` values made by :func:`ins`,
:func:`deleted`, :func:`footnote`, :func:`endnote`, :func:`comment`, :func:`control` and :func:`raw`.
:attr:`Book.styles` adds paragraph and character styles (:class:`Style`). :func:`spoken_pieces` says
which words of a block a listener hears (what the importer must keep): for raw XML, the words its author
wrote down beside it, so the expectation never comes from reading the XML the way the importer does.
"""

from __future__ import annotations

import datetime
import io
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import docx
from docx.enum.style import WD_STYLE_TYPE
from docx.oxml import OxmlElement
from docx.oxml.ns import qn
from docx.text.paragraph import Paragraph
from lxml import etree

W_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
REL_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
# The prefixes a raw fragment may use (python-docx's document declares most of them too).
FRAGMENT_NAMESPACES = {
    "w": W_NS, "r": REL_NS, "mc": "http://schemas.openxmlformats.org/markup-compatibility/2006",
    "wp": "http://schemas.openxmlformats.org/drawingml/2006/wordprocessingDrawing",
    "a": "http://schemas.openxmlformats.org/drawingml/2006/main",
    "wps": "http://schemas.microsoft.com/office/word/2010/wordprocessingShape",
    "v": "urn:schemas-microsoft-com:vml", "o": "urn:schemas-microsoft-com:office:office",
    "m": "http://schemas.openxmlformats.org/officeDocument/2006/math",
    "w14": "http://schemas.microsoft.com/office/word/2010/wordml",
}
NOTE_TYPES = {
    "footnote": "application/vnd.openxmlformats-officedocument.wordprocessingml.footnotes+xml",
    "endnote": "application/vnd.openxmlformats-officedocument.wordprocessingml.endnotes+xml",
}


@dataclass(frozen=True)
class Piece:
    """Inline content other than a plain run: ``kind`` is ins, del, footnote, endnote, comment, control or
    xml (``text`` is then the XML fragment, ``spoken`` the words heard where it stands and ``after`` those
    heard after the paragraph: a text box's)."""

    kind: str
    text: str
    spoken: str = ""
    after: str = ""


def ins(text: str) -> Piece:
    """A tracked insertion (kept by the importer)."""
    return Piece("ins", text)


def deleted(text: str) -> Piece:
    """A tracked deletion (dropped)."""
    return Piece("del", text)


def footnote(text: str) -> Piece:
    """A footnote reference here, ``text`` in the footnotes part (neither is read)."""
    return Piece("footnote", text)


def endnote(text: str) -> Piece:
    return Piece("endnote", text)


def comment(text: str) -> Piece:
    """A comment on the run before it (not read)."""
    return Piece("comment", text)


def control(text: str) -> Piece:
    """An inline content control (w:sdt) holding ``text`` (kept)."""
    return Piece("control", text)


def raw(xml: str, spoken: str = "", after: str = "") -> Piece:
    """WordprocessingML appended to the paragraph as it is (runs, fields, hyperlinks, ...), with the words a
    listener hears of it, in place (``spoken``) and after the paragraph (``after``: its text boxes)."""
    return Piece("xml", xml, spoken, after)


def fragment(xml: str) -> list[etree._Element]:
    """The elements of an XML fragment that uses the prefixes of :data:`FRAGMENT_NAMESPACES`."""
    declarations = " ".join(f'xmlns:{prefix}="{uri}"' for prefix, uri in FRAGMENT_NAMESPACES.items())
    return list(etree.fromstring(f"<fragment {declarations}>{xml}</fragment>"))


@dataclass(frozen=True)
class Raw:
    """Block-level WordprocessingML (paragraphs, tables, content controls), and the words heard of it."""

    xml: str
    spoken: str


@dataclass(frozen=True)
class Style:
    """A style added to the document: a paragraph style (``character``: a character style) named ``name``,
    based on ``base``, with an outline level (``w:outlineLvl``) and hidden text (``w:vanish``) when given."""

    name: str
    base: str | None = None
    outline_level: int | None = None
    hidden: bool = False
    character: bool = False


@dataclass(frozen=True)
class Table:
    rows: Sequence[Sequence[str]]


@dataclass(frozen=True)
class Control:
    """A block-level content control holding paragraphs (kept)."""

    paragraphs: Sequence[tuple[str, Sequence[str | Piece]]]


Block = tuple[str, Sequence[str | Piece]] | Table | Control | Raw


@dataclass
class Book:
    blocks: list[Block]
    title: str | None = None
    author: str | None = None
    language: str | None = None
    description: str | None = None
    created: datetime.datetime | None = None
    header: str | None = None
    footer: str | None = None
    default_language: str | None = None  # w:lang w:val of the document defaults (styles.xml)
    east_asian_language: str | None = None  # its w:eastAsia
    notes: dict[str, list[tuple[int, str]]] = field(default_factory=lambda: {"footnote": [], "endnote": []})
    styles: list[Style] = field(default_factory=list)


def paragraph(style: str, *pieces: str | Piece) -> tuple[str, Sequence[str | Piece]]:
    return (style, pieces)


def write_docx(path: Path, book: Book) -> Path:
    """Write ``book`` as a real DOCX file at ``path`` and return the path."""
    document = docx.Document()
    props = document.core_properties
    props.title = book.title or ""
    props.author = book.author or ""
    props.language = book.language or ""
    props.comments = book.description or ""  # python-docx's name for dc:description
    props.created = book.created or datetime.datetime(2013, 12, 23, 23, 15)
    if book.header is not None:
        document.sections[0].header.paragraphs[0].text = book.header
    if book.footer is not None:
        document.sections[0].footer.paragraphs[0].text = book.footer
    for spec in book.styles:
        _add_style(document, spec)
    body = document.element.body
    for block in book.blocks:
        if isinstance(block, Raw):
            for element in fragment(block.xml):
                body.insert(len(body) - 1, element)  # before the section properties
        elif isinstance(block, Table):
            table = document.add_table(rows=len(block.rows), cols=max(len(r) for r in block.rows))
            for row, values in zip(table.rows, block.rows):
                for cell, value in zip(row.cells, values):
                    cell.text = value
        elif isinstance(block, Control):
            sdt = OxmlElement("w:sdt")
            sdt.append(OxmlElement("w:sdtPr"))
            content = OxmlElement("w:sdtContent")
            sdt.append(content)
            for style, pieces in block.paragraphs:
                para = _paragraph(document, style)
                _fill(document, book, para, pieces)
                content.append(para._p)
            body.insert(len(body) - 1, sdt)  # before the section properties
        else:
            style, pieces = block
            _fill(document, book, _paragraph(document, style), pieces)
    buffer = io.BytesIO()
    document.save(buffer)
    path.write_bytes(_with_raw_parts(buffer.getvalue(), book))
    return path


def _add_style(document: docx.document.Document, spec: Style) -> None:
    kind = WD_STYLE_TYPE.CHARACTER if spec.character else WD_STYLE_TYPE.PARAGRAPH
    style = document.styles.add_style(spec.name, kind)
    if spec.base:
        style.base_style = document.styles[spec.base]
    if spec.hidden:
        style.font.hidden = True
    if spec.outline_level is not None:
        level = OxmlElement("w:outlineLvl")
        level.set(qn("w:val"), str(spec.outline_level))
        style.element.get_or_add_pPr().append(level)


def _paragraph(document: docx.document.Document, style: str) -> Paragraph:
    if style not in [s.name for s in document.styles]:  # "toc 1": Word has it, python-docx's template not
        document.styles.add_style(style, WD_STYLE_TYPE.PARAGRAPH)
    return document.add_paragraph(style=style)


def _fill(document: docx.document.Document, book: Book, para: Paragraph, pieces: Sequence[str | Piece]) -> None:
    last_run = None
    for index, piece in enumerate(pieces):
        if isinstance(piece, str):
            last_run = para.add_run(piece)
        elif piece.kind in ("ins", "del"):
            change = OxmlElement(f"w:{piece.kind}")
            change.set(qn("w:id"), str(100 + index))
            change.set(qn("w:author"), "Editor")
            change.set(qn("w:date"), "2024-01-01T00:00:00Z")
            change.append(_run(piece.text, deleted=piece.kind == "del"))
            para._p.append(change)
        elif piece.kind in ("footnote", "endnote"):
            notes = book.notes[piece.kind]
            number = len(notes) + 1
            notes.append((number, piece.text))
            run = OxmlElement("w:r")
            props = OxmlElement("w:rPr")
            align = OxmlElement("w:vertAlign")
            align.set(qn("w:val"), "superscript")
            props.append(align)
            run.append(props)
            reference = OxmlElement(f"w:{piece.kind}Reference")
            reference.set(qn("w:id"), str(number))
            run.append(reference)
            para._p.append(run)
        elif piece.kind == "comment":
            assert last_run is not None, "a comment needs a run before it"
            document.add_comment(runs=[last_run], text=piece.text, author="Editor", initials="ED")
        elif piece.kind == "control":
            sdt = OxmlElement("w:sdt")
            sdt.append(OxmlElement("w:sdtPr"))
            content = OxmlElement("w:sdtContent")
            content.append(_run(piece.text))
            sdt.append(content)
            para._p.append(sdt)
        elif piece.kind == "xml":
            para._p.extend(fragment(piece.text))
        else:
            raise ValueError(piece.kind)


def _run(text: str, *, deleted: bool = False) -> OxmlElement:
    run = OxmlElement("w:r")
    node = OxmlElement("w:delText" if deleted else "w:t")
    node.set("{http://www.w3.org/XML/1998/namespace}space", "preserve")
    node.text = text
    run.append(node)
    return run


def _with_raw_parts(data: bytes, book: Book) -> bytes:
    """Add the footnotes/endnotes parts python-docx cannot write, and the default language."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            content = source.read(info.filename)
            if info.filename == "[Content_Types].xml":
                for kind, notes in book.notes.items():
                    if notes:
                        override = f'<Override PartName="/word/{kind}s.xml" ContentType="{NOTE_TYPES[kind]}"/>'
                        content = content.replace(b"</Types>", override.encode() + b"</Types>")
            elif info.filename == "word/_rels/document.xml.rels":
                for kind, notes in book.notes.items():
                    if notes:
                        rel = (f'<Relationship Id="rId{kind}s" Type="{REL_NS}/{kind}s" Target="{kind}s.xml"/>')
                        content = content.replace(b"</Relationships>", rel.encode() + b"</Relationships>")
            elif info.filename == "word/styles.xml":
                latin, east = book.default_language or "en-US", book.east_asian_language or "en-US"
                content = content.replace(b'w:val="en-US" w:eastAsia="en-US"',
                                          f'w:val="{latin}" w:eastAsia="{east}"'.encode())
                content = _without_unused_table_styles(content)
            target.writestr(info, content)
        for kind, notes in book.notes.items():
            if notes:
                target.writestr(f"word/{kind}s.xml", _notes_xml(kind, notes))
    return out.getvalue()


def _without_unused_table_styles(styles: bytes) -> bytes:
    """python-docx's template carries a hundred table styles (340 KB of the 350 KB styles.xml); the fixtures
    use two of them, and smaller files are quicker to write and read."""
    root = etree.fromstring(styles)
    for style in root.findall(f"{{{W_NS}}}style"):
        if style.get(f"{{{W_NS}}}type") == "table" and style.get(f"{{{W_NS}}}styleId") not in ("TableNormal",
                                                                                              "TableGrid"):
            root.remove(style)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", standalone=True))


def _notes_xml(kind: str, notes: list[tuple[int, str]]) -> str:
    separators = (f'<w:{kind} w:type="separator" w:id="-1"><w:p><w:r><w:separator/></w:r></w:p></w:{kind}>'
                  f'<w:{kind} w:type="continuationSeparator" w:id="0"><w:p><w:r><w:continuationSeparator/>'
                  f'</w:r></w:p></w:{kind}>')
    bodies = "".join(f'<w:{kind} w:id="{number}"><w:p><w:r><w:{kind}Ref/></w:r><w:r><w:t xml:space="preserve"> '
                     f'{text}</w:t></w:r></w:p></w:{kind}>' for number, text in notes)
    return (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:{kind}s xmlns:w="{W_NS}">'
            f"{separators}{bodies}</w:{kind}s>")


def spoken_pieces(block: Block) -> list[str]:
    """The words of ``block`` a listener hears: plain runs, insertions, content controls and table cells,
    and what raw XML was written down to say; not deletions, notes or comments."""
    if isinstance(block, Raw):
        return block.spoken.split()
    if isinstance(block, Table):
        return [word for row in block.rows for cell in row for word in cell.split()]
    if isinstance(block, Control):
        return [word for para in block.paragraphs for word in spoken_pieces(para)]
    _, pieces = block
    text = "".join(p if isinstance(p, str) else (p.text if p.kind in ("ins", "control") else p.spoken)
                   for p in pieces)
    after = " ".join(p.after for p in pieces if isinstance(p, Piece))
    return text.split() + after.split()


def zip_of(path: Path, members: dict[str, bytes | str]) -> Path:
    """A ZIP archive at ``path`` holding ``members`` (for files that only claim to be a DOCX)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return path


def edit_member(path: Path, name: str, edit: Callable[[bytes], bytes]) -> Path:
    """Rewrite member ``name`` of the ZIP at ``path`` with ``edit`` (the other members unchanged)."""
    with zipfile.ZipFile(path) as source:
        members = [(info, source.read(info.filename)) for info in source.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for info, content in members:
            target.writestr(info, edit(content) if info.filename == name else content)
    return path
