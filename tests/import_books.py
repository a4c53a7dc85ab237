"""Builders of real EPUB files for the importer's tests, the README sample and the benchmark.

``write_epub(path, spec)`` writes an EPUB 2 or 3 file from an :class:`EpubSpec`: hand-written OPF,
container, nav document and NCX, one XHTML file per :class:`Page`, ``mimetype`` first and stored. A spec
can give a manifest order that differs from the spine, mid-file TOC anchors, nested TOC entries, nav and
NCX or only one of them, ``linear="no"`` items, landmarks and guide types, a cover, images.

``build_sample_epub(path)`` writes *The Salt Road*, a small novel written for this project (original
prose, free to use): cover, title page, copyright, contents (the nav document, in the spine), dedication,
twelve chapters (two of them in one file, cut by a TOC anchor; one with nested sections), an afterword,
endnotes (``linear="no"``), an index and a colophon; noterefs, an inline footnote, page breaks, a
figure, verse and scene breaks. ``SAMPLE_CHAPTERS`` lists the titles the importer should find, in order.

``piece_words(html)`` is the test's own account of what a listener should hear of a piece of XHTML:
its words (lxml ``itertext``) after removing only what issue 13 says to remove, as these fixtures mark
it (noterefs, note bodies, page breaks, images, scene breaks). It does not use the converter.
"""

from __future__ import annotations

import io
import random
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote
from xml.sax.saxutils import escape, quoteattr

from lxml import etree

XHTML_NS = "http://www.w3.org/1999/xhtml"
OPS_NS = "http://www.idpf.org/2007/ops"
NSMAP = {"x": XHTML_NS, "epub": OPS_NS}


@dataclass(frozen=True)
class Piece:
    """A run of a page's body. ``toc`` is the label of a top-level TOC entry pointing at it (at the file
    when ``anchor`` is None, else at ``#anchor``, the id its first element must carry); ``subtoc`` holds
    nested entries (fragment, label) pointing inside it."""

    html: str
    toc: str | None = None
    anchor: str | None = None
    subtoc: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Page:
    """One XHTML file in ``OEBPS/text/``."""

    name: str
    pieces: tuple[Piece, ...]
    body_type: str | None = None  # epub:type on <body> (EPUB 3 only)
    linear: bool = True
    landmark: str | None = None  # nav landmarks epub:type and EPUB 2 guide type
    in_spine: bool = True
    head_title: str | None = None
    doctype: str = ""  # e.g. an XHTML 1.1 DOCTYPE


@dataclass(frozen=True)
class EpubSpec:
    pages: tuple[Page, ...]
    title: str = "A Test Book"
    author: str = "Ada Test"
    language: str = "en"
    description: str | None = None
    date: str | None = None
    version: int = 3  # 2: EPUB 2 (OPF 2.0, guide, <meta name="cover">; no nav unless nav=True)
    nav: bool | None = None  # None: EPUB 3 has a nav document, EPUB 2 does not
    ncx: bool = True
    nav_spine_index: int | None = None  # put the nav document in the spine before this page
    manifest_order: str = "spine"  # "spine", "reversed" or "shuffled"
    cover: bytes | None = None  # written as OEBPS/images/cover.<cover_ext>
    cover_ext: str = "jpg"
    cover_media_type: str = "image/jpeg"
    images: dict[str, bytes] = field(default_factory=dict)  # more files under OEBPS/images/
    extra_members: dict[str, bytes] = field(default_factory=dict)  # verbatim, e.g. hostile ones


def has_nav(spec: EpubSpec) -> bool:
    return spec.nav if spec.nav is not None else spec.version >= 3


def xhtml(body: str, *, title: str = "", body_type: str | None = None, version: int = 3, doctype: str = "") -> str:
    """A complete XHTML content document around ``body``."""
    epub = f' xmlns:epub="{OPS_NS}"' if version >= 3 else ""
    typed = f" epub:type={quoteattr(body_type)}" if body_type and version >= 3 else ""
    return (f'<?xml version="1.0" encoding="utf-8"?>\n{doctype}<html xmlns="{XHTML_NS}"{epub}>\n'
            f"<head><title>{escape(title)}</title><style>p {{ margin: 0 }}</style></head>\n"
            f"<body{typed}>\n{body}\n</body>\n</html>\n")


def _toc_entries(spec: EpubSpec) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(label, href from the text folder, [(sub-href, sub-label)]) for every top-level entry."""
    entries = []
    for page in spec.pages:
        for piece in page.pieces:
            if piece.toc is None:
                continue
            href = quote(page.name) + (f"#{piece.anchor}" if piece.anchor else "")
            entries.append((piece.toc, href, [(f"{quote(page.name)}#{f}", label) for f, label in piece.subtoc]))
    return entries


def _nav(spec: EpubSpec) -> str:
    def items(entries: list[tuple[str, str, list[tuple[str, str]]]]) -> str:
        out = []
        for label, href, subs in entries:
            sub = ""
            if subs:
                sub = "<ol>" + "".join(f'<li><a href="text/{h}">{escape(lbl)}</a></li>' for h, lbl in subs) + "</ol>"
            out.append(f'<li><a href="text/{href}">{escape(label)}</a>{sub}</li>')
        return "\n".join(out)

    landmarks = "".join(f'<li><a epub:type="{p.landmark}" href="text/{quote(p.name)}">{escape(p.landmark)}</a></li>'
                        for p in spec.pages if p.landmark)
    body = (f'<nav epub:type="toc" id="toc"><h1>Contents</h1><ol>\n{items(_toc_entries(spec))}\n</ol></nav>\n'
            f'<nav epub:type="landmarks" hidden=""><h2>Landmarks</h2><ol>{landmarks}</ol></nav>')
    return xhtml(body, title="Contents")


def _ncx(spec: EpubSpec) -> str:
    order = 0

    def point(label: str, href: str, subs: list[tuple[str, str]]) -> str:
        nonlocal order
        order += 1
        me = order
        inner = "".join(point(lbl, h, []) for h, lbl in subs)
        return (f'<navPoint id="np{me}" playOrder="{me}"><navLabel><text>{escape(label)}</text></navLabel>'
                f'<content src="text/{href}"/>{inner}</navPoint>\n')

    points = "".join(point(label, href, subs) for label, href, subs in _toc_entries(spec))
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<ncx xmlns="http://www.daisy.org/z3986/2005/ncx/" '
            f'version="2005-1"><head><meta name="dtb:uid" content="urn:uuid:test"/></head>'
            f"<docTitle><text>{escape(spec.title)}</text></docTitle><navMap>\n{points}</navMap></ncx>\n")


def _opf(spec: EpubSpec) -> str:
    manifest: list[tuple[str, str]] = []  # (id, item xml)
    spine: list[str] = []
    nav_item = ('nav', '<item id="nav" href="nav.xhtml" media-type="application/xhtml+xml" properties="nav"/>')
    if has_nav(spec):
        manifest.append(nav_item)
    if spec.ncx:
        manifest.append(("ncx", '<item id="ncx" href="toc.ncx" media-type="application/x-dtbncx+xml"/>'))
    for index, page in enumerate(spec.pages):
        if index == spec.nav_spine_index and has_nav(spec):
            spine.append('<itemref idref="nav"/>')
        ident = f"p{index:02d}"
        manifest.append((ident, f'<item id="{ident}" href="text/{quote(page.name)}" '
                                'media-type="application/xhtml+xml"/>'))
        if page.in_spine:
            spine.append(f'<itemref idref="{ident}"{"" if page.linear else " linear=" + quoteattr("no")}/>')
    if spec.cover is not None:
        props = ' properties="cover-image"' if spec.version >= 3 else ""
        manifest.append(("cover-image", f'<item id="cover-image" href="images/cover.{spec.cover_ext}" '
                                        f'media-type="{spec.cover_media_type}"{props}/>'))
    for index, name in enumerate(spec.images):
        manifest.append((f"img{index}", f'<item id="img{index}" href="images/{quote(name)}" media-type="image/png"/>'))
    if spec.manifest_order == "reversed":
        manifest.reverse()
    elif spec.manifest_order == "shuffled":
        random.Random(7).shuffle(manifest)
    role = ' opf:role="aut"' if spec.version < 3 else ""
    meta = [f"<dc:identifier id=\"uid\">urn:test:{zlib.crc32(spec.title.encode()):010d}</dc:identifier>",
            f"<dc:title>{escape(spec.title)}</dc:title>",
            f'<dc:creator{role}>{escape(spec.author)}</dc:creator>',
            f"<dc:language>{escape(spec.language)}</dc:language>"]
    if spec.description is not None:
        meta.append(f"<dc:description>{escape(spec.description)}</dc:description>")
    if spec.date is not None:
        meta.append(f"<dc:date>{escape(spec.date)}</dc:date>")
    if spec.version >= 3:
        meta.append('<meta property="dcterms:modified">2024-05-01T00:00:00Z</meta>')
    elif spec.cover is not None:
        meta.append('<meta name="cover" content="cover-image"/>')
    guide = ""
    if spec.version < 3:
        refs = "".join(f'<reference type="{p.landmark}" title="{p.landmark}" href="text/{quote(p.name)}"/>'
                       for p in spec.pages if p.landmark)
        guide = f"<guide>{refs}</guide>" if refs else ""
    toc = ' toc="ncx"' if spec.ncx else ""
    version = "3.0" if spec.version >= 3 else "2.0"
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<package xmlns="http://www.idpf.org/2007/opf" version="{version}" unique-identifier="uid">\n'
            '<metadata xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:opf="http://www.idpf.org/2007/opf">\n'
            + "\n".join(meta) + "\n</metadata>\n<manifest>\n" + "\n".join(item for _, item in manifest)
            + f"\n</manifest>\n<spine{toc}>\n" + "\n".join(spine) + f"\n</spine>\n{guide}</package>\n")


CONTAINER_XML = ('<?xml version="1.0"?>\n<container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:'
                 'container"><rootfiles><rootfile full-path="OEBPS/content.opf" '
                 'media-type="application/oebps-package+xml"/></rootfiles></container>\n')


def epub_members(spec: EpubSpec) -> dict[str, bytes]:
    """Every member of the EPUB ``spec`` describes (``mimetype`` first), as bytes."""
    members: dict[str, bytes] = {"mimetype": b"application/epub+zip",
                                 "META-INF/container.xml": CONTAINER_XML.encode(),
                                 "OEBPS/content.opf": _opf(spec).encode()}
    if has_nav(spec):
        members["OEBPS/nav.xhtml"] = _nav(spec).encode()
    if spec.ncx:
        members["OEBPS/toc.ncx"] = _ncx(spec).encode()
    for page in spec.pages:
        body = "\n".join(piece.html for piece in page.pieces)
        members[f"OEBPS/text/{page.name}"] = xhtml(body, title=page.head_title or page.name, body_type=page.body_type,
                                                   version=spec.version, doctype=page.doctype).encode()
    if spec.cover is not None:
        members[f"OEBPS/images/cover.{spec.cover_ext}"] = spec.cover
    for name, data in spec.images.items():
        members[f"OEBPS/images/{name}"] = data
    members.update(spec.extra_members)
    return members


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    """A ZIP with ``members`` in order; ``mimetype`` stored, the rest deflated."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            method = zipfile.ZIP_STORED if name == "mimetype" else zipfile.ZIP_DEFLATED
            archive.writestr(zipfile.ZipInfo(name, date_time=(2024, 5, 1, 0, 0, 0)), data, compress_type=method)
    return path


def write_epub(path: Path, spec: EpubSpec) -> Path:
    return write_zip(path, epub_members(spec))


def png_bytes(size: tuple[int, int] = (8, 8), color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(size: tuple[int, int] = (60, 90)) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, (20, 60, 110)).save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


# --- the test's own word count ---------------------------------------------------------------------

# What these fixtures mark as not read (issue 13, item 3): note marks and bodies, page breaks, images,
# scene breaks (whose "* * *" is a pause, not words).
_NOT_READ = ("//x:a[@epub:type='noteref'] | //x:a[@role='doc-noteref'] | //x:a[@class='footnote-ref'] | //x:sup[x:a]"
             " | //x:a[starts-with(@href, 'notes.xhtml#')]"
             " | //x:aside | //*[@epub:type='footnote'] | //*[@epub:type='endnote'] | //*[@epub:type='pagebreak']"
             " | //*[@role='doc-pagebreak'] | //x:img | //x:hr | //x:p[@class='scene-break'] | //x:head")


def piece_words(html: str) -> list[str]:
    """The words of an XHTML fragment a listener should hear (see the module docstring)."""
    root = etree.fromstring(f'<div xmlns="{XHTML_NS}" xmlns:epub="{OPS_NS}">{html}</div>'.encode())
    for element in root.xpath(_NOT_READ, namespaces=NSMAP):
        if element.getparent() is not None:
            _remove_keeping_tail(element)
    return "".join(root.itertext()).split()


def _remove_keeping_tail(element: etree._Element) -> None:
    parent = element.getparent()
    previous = element.getprevious()
    if element.tail:
        if previous is not None:
            previous.tail = (previous.tail or "") + element.tail
        else:
            parent.text = (parent.text or "") + element.tail
    parent.remove(element)


# --- The Salt Road -------------------------------------------------------------------------------

SAMPLE_TITLE = "The Salt Road"
SAMPLE_AUTHOR = "Maren Holt"

# Original prose written for this project (free to use). Each chapter: (title, paragraphs); a paragraph
# starting with "|" is verse (lines split at " / "), "***" is a scene break.
_CHAPTERS: list[tuple[str, list[str]]] = [
    ("The Ferryman’s Daughter", [
        "Ilse Varrow was nine when she first rowed the ferry alone, and eleven when she stopped telling anyone "
        "that she was afraid of the water. The river at Carrow ran brown in spring and green in autumn, and in "
        "every season it carried something down from the hills: a gate, a goat, once a whole hayrick with a "
        "cat asleep on top.",
        "Her father kept a ledger of the things the river brought. He wrote them in a slanting hand, with the "
        "date and the weather, as if one day someone would come and ask for them back.",
        "“Nobody ever does,” Ilse said.",
        "“Then we shall have a very complete record,” said her father, and blotted the page."]),
    ("A Letter from Vell", [
        "The letter came in March, folded three times and sealed with green wax. It was addressed to her "
        "father, but it was Ilse who read it aloud, because his eyes had grown weak over the winter and he "
        "would not admit it.",
        "It was from the salt office at Vell.<a epub:type=\"noteref\" href=\"notes.xhtml#n1\" id=\"r1\">1</a> "
        "The old causeway across the marsh was to be reopened, it said, and the ferry at Carrow would be needed "
        "for the carts until the new bridge was built. A clerk would come in May to take the tolls.",
        "“A clerk,” her father said, as if the word tasted of vinegar."]),
    ("The Long Causeway", [
        "<h2 id=\"s3-1\">i. Low tide</h2>",
        "At low tide the causeway showed itself like the spine of some drowned animal, a line of grey stones "
        "running out across the marsh toward the distant roofs of Vell. Ilse walked the first mile of it with "
        "her boots tied round her neck.",
        "<h2 id=\"s3-2\">ii. High water</h2>",
        "When the water came back it came quickly, filling the channels from below so that the mud seemed to "
        "breathe. She counted the stones as she ran, and reached the ferry steps with four to spare."]),
    ("Lanterns at Carrow", [
        "The clerk arrived on the first of May with a trunk, a tin box of receipts and a face that had never "
        "been out in the wind. His name was Tobias Penn, and he asked at once where he might buy a lantern.",
        "<figure><img src=\"../images/map.png\" alt=\"A map of the causeway and the marsh\"/>"
        "<figcaption>The causeway between Carrow and Vell</figcaption></figure>",
        "Ilse sold him her father’s second-best one for twice what it was worth. He paid without arguing, "
        "which she found she could not forgive."]),
    ("The Tollhouse", [
        "They built the tollhouse in a week, out of timber that had come down the river the winter before. Her "
        "father entered every plank in the ledger before he let it be used.<sup><a href=\"notes.xhtml#n2\" "
        "id=\"r2\">2</a></sup>",
        "Penn sat inside it with his tin box and his lantern and wrote down every cart, every barrow, every "
        "woman with a basket of eggs. By June he had filled two books and started on a third.",
        "<span epub:type=\"pagebreak\" id=\"page57\" title=\"57\"/>“You write more than my father,” Ilse told "
        "him. “That is not a compliment.”"]),
    ("What the Tide Left", [
        "In July a storm came in from the sea and sat on the marsh for three days. The causeway vanished. The "
        "ferry strained at its rope like a dog that has smelled a fox.",
        "***",
        "On the fourth morning the water went out and left behind it a boat none of them had ever seen, lying "
        "on its side in the reeds with its mast snapped and its hold full of sacks of salt.",
        "Penn counted the sacks twice. There were forty-one. He wrote the number down and then, after a long "
        "pause, crossed it out."]),
    ("The Cartographer", [
        "The boat’s owner came looking for it a week later: a tall woman in a salt-stained coat who said she "
        "made maps of places that would not keep still.<a epub:type=\"noteref\" href=\"#fn7\" id=\"r7\">*</a> "
        "Her name was Odile Marsh, and she laughed when they told her it suited her.",
        "She spread her charts on the tollhouse table and showed Ilse how the channels had moved in fifty "
        "years, each survey drawn over the last in a different ink.",
        "<aside epub:type=\"footnote\" id=\"fn7\"><p>Odile’s charts survive in the archive at Vell, catalogued "
        "under the wrong name.</p></aside>"]),
    ("Night Crossing", [
        "Odile had to reach Vell before the salt office opened, and the tide would not turn until midnight. So "
        "Ilse rowed her across in the dark, with Penn’s lantern in the bow, and Odile sang to keep time.",
        "|Low road, salt road, / carry me over, / the marsh has my boots / and the river my name.",
        "Ilse did not know the song, but by the far bank she could sing the last verse on her own."]),
    ("The Salt Market", [
        "Vell on market day smelled of tar and fish and wet wool. The salt was sold from long tables under the "
        "arcade, weighed on brass scales that had been inspected so often their stamps overlapped.",
        "Odile’s forty-one sacks, it turned out, were worth a great deal more than forty-one sacks ought to be. "
        "Somebody had been paying a toll on salt that never crossed the causeway at all."]),
    ("Burning the Ledgers", [
        "Penn went pale when Ilse told him. He opened his books and ran his finger down the columns, and the "
        "figures that had been so neat in June looked, now, like a fence with missing posts.",
        "“They will say I did it,” he said.",
        "“Then we shall have a very complete record,” said Ilse, and for the first time he laughed."]),
    ("The Drowned Bell", [
        "There had been a chapel on the marsh once, before the sea came in. On still nights the fishermen "
        "said they could hear its bell under the water.<a epub:type=\"noteref\" href=\"notes.xhtml#n3\" "
        "id=\"r3\">3</a>",
        "Ilse heard it on the night the salt office burned. She never told anyone, not even her father, "
        "because she was no longer sure that it had been a bell and not her own heart."]),
    ("Home by the Low Road", [
        "The new bridge opened the following spring. The ferry was sold to a man from upriver who wanted it "
        "for eels, and the tollhouse was taken down plank by plank.",
        "Her father wrote each plank out of the ledger as carefully as he had written it in. On the last page "
        "he wrote the date, and the weather, and under them, in a hand that no longer slanted: Nothing more.",
        "Ilse took the ledger with her when she left for Vell. It is on the shelf beside me as I write."]),
]

_NOTES = [("n1", "r1", "ch02.xhtml", "The salt office at Vell was founded in the reign of the third "
           "Margrave and closed, after the fire, in the reign of the fifth."),
          ("n2", "r2", "ch05.xhtml", "The ledger survives. The planks are listed on its pages 212 to 219."),
          ("n3", "r3", "ch11.xhtml", "No chapel appears on any map of the marsh, including Odile Marsh’s.")]

SAMPLE_CHAPTERS = [title for title, _ in _CHAPTERS]


def _paragraph(text: str) -> str:
    if text == "***":
        return '<p class="scene-break">* * *</p>'
    if text.startswith("|"):
        lines = text[1:].split(" / ")
        return '<p class="verse">' + "<br/>\n".join(escape(line) for line in lines) + "</p>"
    if text.startswith(("<h2", "<figure", "<aside")):
        return text
    return f"<p>{text}</p>"


def _chapter_html(number: int, title: str, paragraphs: list[str], scale: int) -> str:
    body = [f'<h1 id="ch{number:02d}">{escape(title)}</h1>']
    for repeat in range(scale):
        for text in paragraphs:
            if repeat and ("id=" in text or text.startswith("<h2")):
                continue  # ids and section headings once
            body.append(_paragraph(text))
    return '<section epub:type="chapter">\n' + "\n".join(body) + "\n</section>"


def sample_spec(*, scale: int = 1) -> EpubSpec:
    """The spec of *The Salt Road*; ``scale`` repeats each chapter's paragraphs (for the benchmark)."""
    chapters: list[Page] = []
    for number, (title, paragraphs) in enumerate(_CHAPTERS, start=1):
        html = _chapter_html(number, title, paragraphs, scale)
        subtoc = (("s3-1", "i. Low tide"), ("s3-2", "ii. High water")) if number == 3 else ()
        if number == 10:
            continue  # in the same file as chapter 9
        if number == 9:
            html10 = _chapter_html(10, *_CHAPTERS[9], scale)
            html10 = html10.replace('<section epub:type="chapter">', '<section epub:type="chapter" id="part10">', 1)
            chapters.append(Page("ch09-10.xhtml", (Piece(html, toc=title),
                                                   Piece(html10, toc=_CHAPTERS[9][0], anchor="part10"))))
            continue
        chapters.append(Page(f"ch{number:02d}.xhtml", (Piece(html, toc=title, subtoc=subtoc),),
                             landmark="bodymatter" if number == 1 else None))
    notes = "\n".join(f'<li id="{n}" epub:type="endnote"><p><a href="{page}#{ref}">↩</a> {escape(text)}</p></li>'
                      for n, ref, page, text in _NOTES)
    front = (
        Page("cover.xhtml", (Piece('<div class="cover"><img src="../images/cover.jpg" alt="The Salt Road, a novel"/>'
                                   '</div>'),), landmark="cover"),
        Page("title.xhtml", (Piece('<section epub:type="titlepage"><h1 class="title">The Salt Road</h1>\n'
                                   '<p class="author">Maren Holt</p></section>', toc="Title Page"),),
             body_type="frontmatter"),
        Page("copyright.xhtml", (Piece('<section epub:type="copyright-page"><p>Copyright © 2024 Maren Holt. '
                                       'All rights reserved.</p>\n<p>First published in this edition 2024.</p>'
                                       '</section>', toc="Copyright"),), body_type="frontmatter"),
    )
    middle = (
        Page("dedication.xhtml", (Piece('<section epub:type="dedication"><p>For my mother, who kept the lamp '
                                        'lit.</p></section>', toc="Dedication"),), body_type="frontmatter"),
        *chapters,
        Page("afterword.xhtml", (Piece('<section epub:type="afterword"><h1>Afterword</h1>\n<p>Carrow is not on '
                                       'any map either. I have tried to keep it that way.</p></section>',
                                       toc="Afterword"),), body_type="backmatter"),
        Page("notes.xhtml", (Piece(f'<section epub:type="endnotes"><h1>Notes</h1>\n<ol>\n{notes}\n</ol></section>',
                                   toc="Notes"),), body_type="backmatter", linear=False),
        Page("index.xhtml", (Piece('<section epub:type="index"><h1>Index</h1>\n<ul><li>Carrow, 1, 4, 12</li>\n'
                                   '<li>causeway, 3, 6</li>\n<li>Marsh, Odile, 7, 8, 9</li>\n<li>Penn, Tobias, 4, '
                                   '5, 10</li></ul></section>', toc="Index"),), body_type="backmatter"),
        Page("colophon.xhtml", (Piece('<section epub:type="colophon"><p>Set in a digital face by the '
                                      'soundclone-audiobook test suite.</p></section>', toc="Colophon"),),
             body_type="backmatter"),
    )
    return EpubSpec(pages=(*front, *middle), title=SAMPLE_TITLE, author=SAMPLE_AUTHOR, language="en-GB",
                    description="<p>A ferryman’s daughter, a toll clerk and a <em>drowned</em> bell.</p>",
                    date="2024-05-01", nav_spine_index=3, manifest_order="shuffled", cover=jpeg_bytes(),
                    images={"map.png": png_bytes()})


def build_sample_epub(path: Path, *, scale: int = 1) -> Path:
    """Write *The Salt Road* to ``path`` (see the module docstring); ``scale`` makes it longer."""
    spec = sample_spec(scale=scale)
    return write_epub(path, spec)


if __name__ == "__main__":  # python tests/import_books.py sample_texts/the-salt-road.epub
    import sys

    print(build_sample_epub(Path(sys.argv[1])))
