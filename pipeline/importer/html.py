"""The HTML reader (``.html``/``.htm``): one HTML file -> a :class:`~pipeline.importer.model.SourceBook`.

The file is decoded the way a browser decodes it (a byte-order mark, else the charset the document
declares in ``<meta charset>``, ``http-equiv`` or an XML declaration, with WHATWG's labels: ``latin1``
means windows-1252, else UTF-8) and refused with a clear message when the bytes are not what it says.
A chapter starts at every heading of level ``split_level`` or above (``<h1>`` by default); what comes
before the first one is a part of its own when it has words (front matter). Each part is converted by
:mod:`pipeline.importer.markup` and classified by :func:`~pipeline.importer.classify.skip_reason`, given
the ``epub:type``, ``role`` and class values of the elements that open it.
"""

from __future__ import annotations

import codecs
import re
from pathlib import Path

from lxml import etree

from pipeline.errors import SourceFileError
from pipeline.importer.archive import file_bytes
from pipeline.importer.classify import skip_reason
from pipeline.importer.languages import api_language
from pipeline.importer.markup import element_text, heading_level, parse_html, split_sections
from pipeline.importer.model import ReadOptions, SourceBook, SourcePart

MAX_HTML_BYTES = 50_000_000  # a whole book in one file is a few MB
_SNIFF_BYTES = 4096  # where a charset declaration may stand (the HTML standard prescans 1024)

_BOMS = ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"), (codecs.BOM_UTF8, "utf-8"),
         (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
_META_CHARSET = re.compile(rb"""<meta\s[^>]*?charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.IGNORECASE)
_XML_ENCODING = re.compile(rb"""^\s*<\?xml\s[^>]*?encoding\s*=\s*["']([A-Za-z0-9._:-]+)["']""", re.IGNORECASE)
# The WHATWG Encoding Standard's labels that browsers read differently from Python's codecs of that name.
_WHATWG = {"iso-8859-1": "windows-1252", "iso8859-1": "windows-1252", "latin1": "windows-1252",
           "latin-1": "windows-1252", "l1": "windows-1252", "us-ascii": "windows-1252", "ascii": "windows-1252",
           "cp819": "windows-1252", "ibm819": "windows-1252", "iso-ir-100": "windows-1252",
           "iso-8859-9": "windows-1254", "latin5": "windows-1254", "iso-8859-11": "windows-874",
           "tis-620": "windows-874", "utf-16": "utf-8", "utf-16le": "utf-8", "utf-16be": "utf-8",
           "x-sjis": "shift_jis", "gb2312": "gbk", "gb_2312-80": "gbk", "x-gbk": "gbk"}
_YEAR = re.compile(r"\s*(\d{4})(?!\d)")


def read(path: Path, options: ReadOptions) -> SourceBook:
    """Read the HTML book at ``path``; every part in document order (``SourceFileError`` for a file
    that cannot be read, decoded or parsed)."""
    text = decode_html(file_bytes(path, limit=MAX_HTML_BYTES, what="an HTML book"), source=path)
    root = parse_html(text, source=path)
    title = _meta(root, "dc.title", "dcterms.title") or _title(root) or path.stem
    parts = _parts(root, book_title=title, options=options)
    year_text = _meta(root, "dc.date", "dcterms.date", "dcterms.issued", "date", "citation_publication_date")
    year = _YEAR.match(year_text or "")
    language = root.get("lang") or root.get("{http://www.w3.org/XML/1998/namespace}lang") or root.get("xml:lang")
    language = language or _meta(root, "dc.language", "dcterms.language", "language", "content-language")
    return SourceBook(title=title, parts=parts,
                      author=_meta(root, "author", "dc.creator", "dcterms.creator", "citation_author"),
                      language=api_language(language),
                      description=_meta(root, "description", "dc.description", "dcterms.description"),
                      year=int(year.group(1)) if year else None)


def declared_charset(data: bytes) -> str | None:
    """The charset the start of an HTML document declares (``<meta charset>``, ``http-equiv``, an XML
    declaration), as written; None when it declares none."""
    head = data[:_SNIFF_BYTES]
    match = _XML_ENCODING.match(head) or _META_CHARSET.search(head)
    return match.group(1).decode("ascii") if match else None


def decode_html(data: bytes, *, source: object) -> str:
    """Decode an HTML document as a browser would: BOM, else declared charset, else UTF-8.

    Raises ``SourceFileError`` naming ``source`` for an unknown charset and for bytes that are not
    valid in the encoding used (with the line and the byte), saying how to fix it.
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return _decode(data[len(bom):], encoding, source=source, declared=f"its byte-order mark ({encoding})")
    label = declared_charset(data)
    if label is None:
        return _decode(data, "utf-8", source=source, declared=None)
    encoding = _WHATWG.get(label.lower(), label)
    try:
        codecs.lookup(encoding)
    except LookupError as exc:
        raise SourceFileError(source, f"declares charset {label!r}, which is not a known text encoding; fix the "
                              "<meta charset> or save the file as UTF-8") from exc
    return _decode(data, encoding, source=source, declared=f"charset {label!r}")


def _decode(data: bytes, encoding: str, *, source: object, declared: str | None) -> str:
    try:
        return data.decode(encoding).replace("\r\n", "\n")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        byte = f"byte 0x{data[exc.start]:02x} on line {line}"
        if declared is None:
            raise SourceFileError(source, f"is not UTF-8 ({byte}) and declares no charset; add "
                                  "<meta charset=\"windows-1252\"> (or its real encoding) or save it as UTF-8") from exc
        raise SourceFileError(source, f"is not valid {encoding} ({byte}), though {declared} says so; fix the "
                              "declaration or save the file as UTF-8") from exc


def _meta(root: etree._Element, *names: str) -> str | None:
    """The content of the first ``<meta name=...>`` (or ``http-equiv``) among ``names``, case-insensitive."""
    found: dict[str, str] = {}
    for meta in root.iter("meta"):
        key = str(meta.get("name") or meta.get("http-equiv") or meta.get("property") or "").lower()
        content = " ".join(str(meta.get("content") or "").split())
        if key and content:
            found.setdefault(key, content)
    return next((found[name] for name in names if name in found), None)


def _title(root: etree._Element) -> str | None:
    for element in root.iter("title", "h1"):
        text = element_text(element)
        if text:
            return text
    return None


def _parts(root: etree._Element, *, book_title: str, options: ReadOptions) -> tuple[SourcePart, ...]:
    def starts(element: etree._Element) -> bool:
        level = heading_level(element)
        return level is not None and level <= options.split_level

    sections = split_sections(root, starts=starts, classes=True)
    if len(sections) > 1 and not sections[0].has_words:
        sections = sections[1:]  # nothing before the first heading
    parts = []
    for section in sections:
        if section.start is not None and section.heading:
            title = section.heading
        else:
            title = section.heading or (book_title if len(sections) == 1 else "Front matter")
        line = section.start.sourceline if section.start is not None else None
        semantic = (*section.semantic, *(("notes",) if section.notes_only else ()))
        parts.append(SourcePart(title=title, markdown=section.markdown, origin=f"line {line or 1}",
                                skip=skip_reason(title, section.markdown, semantic=semantic)))
    return tuple(parts)
