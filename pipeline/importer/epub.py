"""The EPUB reader (EPUB 2 and 3): an ``.epub`` file -> a :class:`~pipeline.importer.model.SourceBook`
(issue 13, item 3).

    META-INF/container.xml -> the package (OPF): metadata, manifest, spine, guide
    navigation: the EPUB 3 nav document (toc, landmarks), else the EPUB 2 NCX
    spine item by spine item: XHTML -> Markdown sections (pipeline.importer.markup), cut at top-level TOC
    anchors, titled, classified

* Reading order is the spine, never the manifest's item order. Every spine item yields at least one part
  (a file with no words, such as an image-only page, is a part skipped as "empty" or "cover"); a
  top-level TOC entry (depth <= ``split_level``) that points at an anchor inside a file cuts the file
  there. Text before the first such anchor is a part of its own when it has words. Nested entries stay
  inside their chapter, as its headings.
* A part's title is its TOC label (nav, else NCX), else its first heading, else the file name.
* A part is classified by :func:`~pipeline.importer.classify.skip_reason` with what the book says it is:
  ``epub:type``/``role`` of its body and opening sections, the nav's landmarks and the EPUB 2 guide
  pointing at it, ``toc`` for the nav document, ``cover`` for a page that shows only the cover image,
  ``notes`` for a section that holds nothing but notes. A ``linear="no"`` item is classified the same
  way; when nothing marks it as skippable it is read, and a note says so.
* Note reference marks are recognised across files (a mark in a chapter links to a note body, or into
  a notes file, elsewhere in the book).
* Hrefs are resolved relative to the document that holds them and URL-decoded; a part's ``origin`` is
  its member path and anchor ("OEBPS/ch01.xhtml#s2").

The archive is opened with :func:`pipeline.importer.archive.open_zip` and every XML document parsed with
:func:`pipeline.importer.archive.parse_xml`; a content document that is not well-formed XHTML is read
by the HTML parser instead (with a note), never an OPF, container or NCX. Every failure is a
``SourceFileError`` naming the file.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from lxml import etree

from pipeline.errors import SourceFileError
from pipeline.importer.archive import SafeZip, open_zip, parse_xml
from pipeline.importer.classify import normalise_title, skip_reason
from pipeline.importer.languages import api_language
from pipeline.importer.markup import (
    NoteHref,
    Section,
    anchor_id,
    element_text,
    epub_types,
    html_to_text,
    local_name,
    note_ids,
    parse_html,
    semantic_types,
    split_sections,
)
from pipeline.importer.model import ReadOptions, SourceBook, SourcePart

CONTAINER = "META-INF/container.xml"
OPF_NS = "http://www.idpf.org/2007/opf"
DC_NS = "http://purl.org/dc/elements/1.1/"
NCX_NS = "http://www.daisy.org/z3986/2005/ncx/"
CONTAINER_NS = "urn:oasis:names:tc:opendocument:xmlns:container"
XLINK_HREF = "{http://www.w3.org/1999/xlink}href"

_CONTENT_TYPES = {"application/xhtml+xml", "text/html", "application/xml", "text/xml", "application/x-dtbook+xml"}
_NOTES_TYPES = {"notes", "footnotes", "endnotes", "rearnotes", "footnote", "endnote", "rearnote"}
_YEAR = re.compile(r"\s*(\d{4})(?!\d)")


@dataclass(frozen=True)
class _Item:
    ident: str
    path: str  # the member's path in the archive
    media_type: str
    properties: frozenset[str]


@dataclass(frozen=True)
class _Entry:
    """A TOC entry: its label, where it points, its depth (1 = top level)."""

    title: str
    path: str
    fragment: str | None
    depth: int


@dataclass
class _Book:
    """What the reader gathered before writing parts: the package, the navigation, the documents."""

    source: Path
    archive: SafeZip
    opf_path: str = ""
    items: dict[str, _Item] = field(default_factory=dict)
    spine: list[tuple[_Item, bool]] = field(default_factory=list)  # (item, linear)
    toc: list[_Entry] = field(default_factory=list)
    landmarks: dict[tuple[str, str | None], list[str]] = field(default_factory=dict)  # (path, fragment) -> types
    nav_path: str | None = None
    cover_path: str | None = None
    notes: list[str] = field(default_factory=list)
    documents: dict[str, etree._Element | None] = field(default_factory=dict)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


def read(path: Path, options: ReadOptions) -> SourceBook:
    """Read the EPUB at ``path`` (see the module docstring); ``SourceFileError`` for anything unreadable."""
    with open_zip(path) as archive:
        book = _Book(path, archive)
        package = _open_package(book)
        _read_manifest_and_spine(book, package)
        _read_navigation(book, package)
        metadata = _metadata(book, package)
        cover = _cover(book, package)
        parts = _parts(book, options)
    title = metadata.title or next((p.title for p in parts if p.skip is None), None) or path.stem
    return SourceBook(title=title, parts=tuple(parts), author=metadata.author, language=metadata.language,
                      description=metadata.description, year=metadata.year, cover=cover, notes=tuple(book.notes))


# --- the package -----------------------------------------------------------------------------------


def _open_package(book: _Book) -> etree._Element:
    archive = book.archive
    if CONTAINER not in archive:
        if "word/document.xml" in archive:
            raise SourceFileError(book.source, "is a Word document (DOCX), not an EPUB; rename it to .docx")
        raise SourceFileError(book.source, f"is a ZIP archive but not an EPUB (it has no {CONTAINER})")
    container = parse_xml(archive.read(CONTAINER), source=book.source, member=CONTAINER)
    rootfiles = [element for element in container.iter(f"{{{CONTAINER_NS}}}rootfile", "rootfile")
                 if element.get("full-path")]
    preferred = [r for r in rootfiles if r.get("media-type") == "application/oebps-package+xml"] or rootfiles
    if not preferred:
        raise SourceFileError(book.source, f"{CONTAINER} names no package document (rootfile); the EPUB is damaged")
    book.opf_path = posixpath.normpath(unquote(str(preferred[0].get("full-path"))).lstrip("/"))
    if book.opf_path not in archive:
        raise SourceFileError(book.source, f"{CONTAINER} names the package {book.opf_path!r}, which is not in the "
                              "archive; the EPUB is damaged")
    package = parse_xml(archive.read(book.opf_path), source=book.source, member=book.opf_path)
    if local_name(package) != "package":
        raise SourceFileError(book.source, f"{book.opf_path} is not an OPF package document")
    return package


def resolve_href(base: str, href: str) -> tuple[str, str | None] | None:
    """``href`` as written in the archive member ``base`` -> (member path, fragment), URL-decoded.

    None for an external link (``http:``, ``mailto:``) or one that climbs out of the archive. An href
    that is only a fragment points into ``base`` itself.
    """
    parts = urlsplit(href.strip())
    if parts.scheme or parts.netloc:
        return None
    fragment = unquote(parts.fragment) or None
    if not parts.path:
        return base, fragment
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(base), unquote(parts.path)))
    if joined.startswith(("../", "/")) or joined in ("..", "."):
        return None
    return joined, fragment


def _children(element: etree._Element | None, name: str) -> Iterator[etree._Element]:
    if element is None:
        return iter(())
    return (child for child in element if local_name(child) == name)


def _first(element: etree._Element | None, name: str) -> etree._Element | None:
    return next(_children(element, name), None)


def _read_manifest_and_spine(book: _Book, package: etree._Element) -> None:
    for element in _children(_first(package, "manifest"), "item"):
        ident, href = element.get("id"), element.get("href")
        target = resolve_href(book.opf_path, str(href)) if href else None
        if not ident or target is None:
            continue
        book.items[str(ident)] = _Item(str(ident), target[0], str(element.get("media-type") or "").lower(),
                                       frozenset(str(element.get("properties") or "").split()))
    spine = _first(package, "spine")
    if spine is None:
        raise SourceFileError(book.source, f"{book.opf_path} has no <spine> (the reading order); the EPUB is "
                              "damaged")
    for itemref in _children(spine, "itemref"):
        item = book.items.get(str(itemref.get("idref") or ""))
        if item is None:
            book.note(f"the spine names {itemref.get('idref')!r}, which the manifest does not list; skipped")
            continue
        book.spine.append((item, str(itemref.get("linear") or "yes").strip().lower() != "no"))
    if not book.spine:
        raise SourceFileError(book.source, f"{book.opf_path} has an empty spine: the book has no reading order")


# --- navigation ------------------------------------------------------------------------------------


def _read_navigation(book: _Book, package: etree._Element) -> None:
    nav = next((item for item in book.items.values() if "nav" in item.properties), None)
    if nav is not None:
        book.nav_path = nav.path
        root = _document(book, nav.path)
        if root is not None:
            _read_nav(book, nav.path, root)
    if not book.toc:
        _read_ncx(book, package)
    for reference in _children(_first(package, "guide"), "reference"):
        target = resolve_href(book.opf_path, str(reference.get("href") or ""))
        if target is not None and reference.get("type"):
            book.landmarks.setdefault(target, []).append(str(reference.get("type")).lower())


def _read_nav(book: _Book, path: str, root: etree._Element) -> None:
    for nav in root.iter():
        if local_name(nav) != "nav":
            continue
        types = epub_types(nav)
        lists = list(_children(nav, "ol"))
        if "toc" in types and not book.toc:
            for ol in lists:
                book.toc.extend(_nav_entries(path, ol, 1))
        elif "landmarks" in types:
            for anchor in nav.iter():
                if local_name(anchor) == "a" and anchor.get("href"):
                    target = resolve_href(path, str(anchor.get("href")))
                    if target is not None:
                        book.landmarks.setdefault(target, []).extend(epub_types(anchor))


def _nav_entries(path: str, ol: etree._Element, depth: int) -> list[_Entry]:
    entries: list[_Entry] = []
    for li in _children(ol, "li"):
        label = next((child for child in li if local_name(child) in ("a", "span")), None)
        href = label.get("href") if label is not None and local_name(label) == "a" else None
        target = resolve_href(path, str(href)) if href else None
        if label is not None and target is not None:
            entries.append(_Entry(element_text(label), target[0], target[1], depth))
        for sub in _children(li, "ol"):
            entries.extend(_nav_entries(path, sub, depth + 1))
    return entries


def _read_ncx(book: _Book, package: etree._Element) -> None:
    spine = _first(package, "spine")
    ncx = book.items.get(str(spine.get("toc") or "")) if spine is not None else None
    ncx = ncx or next((i for i in book.items.values() if i.media_type == "application/x-dtbncx+xml"), None)
    if ncx is None or ncx.path not in book.archive:
        return
    root = parse_xml(book.archive.read(ncx.path), source=book.source, member=ncx.path)
    book.toc.extend(_ncx_entries(ncx.path, _find(root, "navmap"), 1))


def _find(root: etree._Element, name: str) -> etree._Element | None:
    return next((element for element in root.iter() if local_name(element) == name), None)


def _ncx_entries(path: str, parent: etree._Element | None, depth: int) -> list[_Entry]:
    entries: list[_Entry] = []
    for point in _children(parent, "navpoint"):
        label = _find(point, "text")
        content = _first(point, "content")
        target = resolve_href(path, str(content.get("src") or "")) if content is not None else None
        if target is not None:
            title = element_text(label) if label is not None else ""
            entries.append(_Entry(title, target[0], target[1], depth))
        entries.extend(_ncx_entries(path, point, depth + 1))
    return entries


# --- metadata and cover ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Metadata:
    title: str | None = None
    author: str | None = None
    language: str = "auto"
    description: str | None = None
    year: int | None = None


def _metadata(book: _Book, package: etree._Element) -> _Metadata:
    """dc:title (EPUB 3's main title first), the authors among dc:creator, dc:language as an API language,
    dc:description as plain text, the year of dc:date (the publication date first)."""
    metadata = _first(package, "metadata")
    if metadata is None:
        return _Metadata()
    # EPUB 3 <meta refines="#id" property="..."> and EPUB 2 <meta name= content=>
    refines: dict[tuple[str, str], str] = {}
    for meta in metadata.iter(f"{{{OPF_NS}}}meta", "meta"):
        if meta.get("refines") and meta.get("property"):
            refines[(str(meta.get("refines")).lstrip("#"), str(meta.get("property")))] = (meta.text or "").strip()

    def dc(name: str) -> list[etree._Element]:
        return [e for e in metadata.iter(f"{{{DC_NS}}}{name}") if " ".join((e.text or "").split())]

    def text(element: etree._Element) -> str:
        return " ".join((element.text or "").split())

    titles = dc("title")
    main = [t for t in titles if refines.get((str(t.get("id")), "title-type")) == "main"]
    creators = dc("creator")
    authors = [c for c in creators if (c.get(f"{{{OPF_NS}}}role") or refines.get((str(c.get("id")), "role"))
                                       or "aut") == "aut"] or creators
    dates = dc("date")
    published = [d for d in dates if str(d.get(f"{{{OPF_NS}}}event") or "publication") == "publication"] or dates
    year = next((m.group(1) for d in published if (m := _YEAR.match(text(d)))), None)
    descriptions = dc("description")
    description = None
    if descriptions:
        raw = str(etree.tostring(descriptions[0], method="text", encoding="unicode", with_tail=False))
        description = html_to_text(raw, source=book.source) if "<" in raw else " ".join(raw.split())
    languages = dc("language")
    return _Metadata(title=text((main or titles)[0]) if titles else None,
                     author=", ".join(dict.fromkeys(text(c) for c in authors)) or None,
                     language=api_language(text(languages[0]) if languages else None),
                     description=description or None, year=int(year) if year else None)


_IMAGE_KINDS = ((b"\xff\xd8\xff", "jpg"), (b"\x89PNG\r\n\x1a\n", "png"))
_OTHER_IMAGES = ((b"GIF8", "a GIF"), (b"RIFF", "a WebP"), (b"<svg", "an SVG"), (b"<?xml", "an SVG"), (b"BM", "a BMP"))


def _cover_item(book: _Book, package: etree._Element) -> _Item | None:
    """The manifest item of the cover image: EPUB 3 ``cover-image``, the EPUB 2 ``<meta name="cover">``,
    else the first image on the guide's or landmarks' cover page."""
    item = next((i for i in book.items.values() if "cover-image" in i.properties), None)
    if item is not None:
        return item
    for meta in package.iter(f"{{{OPF_NS}}}meta", "meta"):
        if str(meta.get("name") or "").lower() == "cover" and meta.get("content"):
            content = str(meta.get("content"))
            by_path = resolve_href(book.opf_path, content)
            found = book.items.get(content) or next((i for i in book.items.values()
                                                     if by_path and i.path == by_path[0]), None)
            if found is not None:
                return found
    for (path, _fragment), types in book.landmarks.items():
        if "cover" in types:
            image = _first_image(book, path)
            if image is not None:
                return image
    return None


def _first_image(book: _Book, path: str) -> _Item | None:
    """The image at ``path``, or the first image the page at ``path`` shows."""
    by_path = {item.path: item for item in book.items.values()}
    if path in by_path and by_path[path].media_type.startswith("image/"):
        return by_path[path]
    for target in _image_targets(path, _document(book, path)):
        if target in by_path:
            return by_path[target]
    return None


def _image_targets(path: str, root: etree._Element | None) -> list[str]:
    """The archive paths of the images a document shows (``<img src>``, SVG ``<image href>``)."""
    if root is None:
        return []
    targets = []
    for element in root.iter():
        name = local_name(element)
        if name == "img":
            href = element.get("src")
        elif name == "image":
            href = element.get(XLINK_HREF) or element.get("href")
        else:
            continue
        resolved = resolve_href(path, str(href)) if href else None
        if resolved is not None:
            targets.append(resolved[0])
    return targets


def _cover(book: _Book, package: etree._Element) -> tuple[bytes, str] | None:
    item = _cover_item(book, package)
    if item is None:
        return None
    book.cover_path = item.path
    if item.path not in book.archive:
        book.note(f"the cover image {item.path} is not in the archive; no cover")
        return None
    data = book.archive.read(item.path)
    for magic, kind in _IMAGE_KINDS:
        if data.startswith(magic):
            return data, kind
    what = next((name for magic, name in _OTHER_IMAGES if data.lstrip()[:5].startswith(magic)), "not a JPEG or PNG")
    book.note(f"the cover image {item.path} is {what} image; only JPEG and PNG covers are kept (convert it and "
              "set cover: in book.yaml)")
    return None


# --- documents -------------------------------------------------------------------------------------


def _document(book: _Book, path: str) -> etree._Element | None:
    """The parsed content document at ``path`` (None when it is not in the archive), read once."""
    if path in book.documents:
        return book.documents[path]
    root: etree._Element | None = None
    if path in book.archive:
        data = book.archive.read(path)
        try:
            root = parse_xml(data, source=book.source, member=path, html_entities=True)
        except SourceFileError as exc:
            cause = exc.__cause__
            if not isinstance(cause, etree.XMLSyntaxError) or "Excessive depth" in str(cause):
                raise  # entity declarations, a crafted depth: refused, never read leniently
            root = _parse_broken(book, path, data)
    book.documents[path] = root
    return root


def _parse_broken(book: _Book, path: str, data: bytes) -> etree._Element:
    """A content document that is not well-formed XML, read as HTML (as reading systems do)."""
    try:
        text = data.removeprefix(b"\xef\xbb\xbf").decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SourceFileError(book.source, f"{path} is neither well-formed XHTML nor UTF-8 text (byte "
                              f"0x{data[exc.start]:02x} at offset {exc.start})") from exc
    book.note(f"{path} is not well-formed XHTML; it was read as HTML")
    return parse_html(text, source=f"{book.source}: {path}")


def _body(root: etree._Element) -> etree._Element:
    return next((child for child in root if local_name(child) == "body"), root)


# --- parts -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _NoteTargets:
    """Where the book's notes are: ids of note bodies per file, and files that are notes sections."""

    ids: frozenset[tuple[str, str]]
    files: frozenset[str]

    def href_checker(self, path: str) -> NoteHref:
        def points_at_note(href: str) -> bool:
            target = resolve_href(path, href)
            if target is None:
                return False
            return target[0] in self.files or (target[1] is not None and (target[0], target[1]) in self.ids)

        return points_at_note


def _note_targets(book: _Book) -> _NoteTargets:
    ids: set[tuple[str, str]] = set()
    files: set[str] = set()
    titled_notes = {entry.path for entry in book.toc if normalise_title(entry.title) in ("notes", "endnotes",
                                                                                           "footnotes", "end notes")}
    for (path, _fragment), types in book.landmarks.items():
        if _NOTES_TYPES.intersection(types):
            files.add(path)
    for path, root in book.documents.items():
        if root is None:
            continue
        ids.update((path, ident) for ident in note_ids(root))
        body = _body(root)
        opening = [body, *(child for child in body if local_name(child) in ("section", "div", "aside"))][:2]
        if any(_NOTES_TYPES.intersection(semantic_types(e)) for e in opening) or path in titled_notes:
            files.add(path)
    targets = _NoteTargets(frozenset(ids), frozenset(files))
    # A mark that links to a note is where the note links back to: that backlink is a mark too.
    marks = set()
    for path, root in book.documents.items():
        points_at_note = targets.href_checker(path)
        for anchor in (root.iter() if root is not None else ()):
            if local_name(anchor) == "a" and anchor.get("id") and anchor.get("href") \
                    and points_at_note(str(anchor.get("href"))):
                marks.add((path, str(anchor.get("id"))))
    return _NoteTargets(frozenset(ids | marks), frozenset(files))


def _parts(book: _Book, options: ReadOptions) -> list[SourcePart]:
    for item, _linear in book.spine:
        if _is_content(item):
            _document(book, item.path)
    targets = _note_targets(book)
    parts: list[SourcePart] = []
    for item, linear in book.spine:
        item_parts = _item_parts(book, item, options, targets)
        if not linear:
            for part in item_parts:
                if part.skip is None:
                    book.note(f"{part.origin} is marked linear=\"no\" (outside the main reading order) but is "
                              "read as a chapter; comment it out in book.yaml if it should not be")
        parts.extend(item_parts)
    return parts


def _is_content(item: _Item) -> bool:
    return item.media_type in _CONTENT_TYPES or not item.media_type


def _item_parts(book: _Book, item: _Item, options: ReadOptions, targets: _NoteTargets) -> list[SourcePart]:
    if not _is_content(item):
        if not item.media_type.startswith("image/"):
            book.note(f"the spine names {item.path}, a {item.media_type} file, not a page; it is an empty part")
        semantic = ["cover"] if item.path == book.cover_path else []
        title = _title_for(book, item.path, frozenset(), first=True, level=options.split_level, heading=None)
        return [SourcePart(title, "", item.path, skip_reason(title, "", semantic=semantic))]
    root = book.documents.get(item.path)
    if root is None:
        if item.path not in book.archive:
            book.note(f"the spine names {item.path}, which is not in the archive; it is an empty part")
        title = _title_for(book, item.path, frozenset(), first=True, level=options.split_level, heading=None)
        return [SourcePart(title, "", item.path, skip_reason(title, "", semantic=()))]
    cuts = {entry.fragment for entry in book.toc
            if entry.path == item.path and entry.fragment and entry.depth <= options.split_level}
    sections = split_sections(root, starts=lambda e: anchor_id(e) in cuts, note_href=targets.href_checker(item.path))
    if len(sections) > 1 and not sections[0].has_words:
        sections = sections[1:]  # nothing but markup before the first anchor
    shows_cover = book.cover_path is not None and book.cover_path in _image_targets(item.path, root)
    return [_section_part(book, item, section, first=index == 0, level=options.split_level,
                          cover_page=shows_cover and not section.has_words) for index, section in enumerate(sections)]


def _section_part(book: _Book, item: _Item, section: Section, *, first: bool, level: int,
                  cover_page: bool) -> SourcePart:
    title = _title_for(book, item.path, section.ids, first=first, level=level, heading=section.heading)
    semantic = list(section.semantic)
    keys = [(item.path, fragment) for fragment in sorted(section.ids)] + ([(item.path, None)] if first else [])
    for key in keys:
        semantic.extend(book.landmarks.get(key, []))
    if item.path == book.nav_path:
        semantic.append("toc")
    if cover_page:
        semantic.append("cover")
    if section.notes_only:
        semantic.append("notes")
    start = anchor_id(section.start) if section.start is not None else None
    origin = f"{item.path}#{start}" if start else item.path
    return SourcePart(title, section.markdown, origin, skip_reason(title, section.markdown, semantic=semantic))


def _title_for(book: _Book, path: str, ids: frozenset[str], *, first: bool, level: int,
               heading: str | None) -> str:
    """The TOC label for the section of ``path`` that opens with ``ids`` (top-level entries first), else
    its first heading, else the file name."""
    matches = [entry for entry in book.toc if entry.path == path and entry.title
               and (entry.fragment in ids or (first and entry.fragment is None))]
    matches.sort(key=lambda entry: entry.depth > level)  # stable: TOC order within each group
    if matches:
        return matches[0].title
    if heading:
        return heading
    name = " ".join(re.split(r"[-_\s]+", posixpath.splitext(posixpath.basename(path))[0])).strip()
    return name[:1].upper() + name[1:] if name.islower() else name  # "cover" -> "Cover", "ch01-02" kept

