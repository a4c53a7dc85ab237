"""The EPUB reader (pipeline.importer.epub) on real EPUB 2 and 3 files built by tests/import_books.py.

Chapter order, titles, counts and skip reasons are asserted exactly, and the text of every chapter word
for word against the source (issue 13, item 6): the words of ``to_spoken_text(part.markdown)`` equal the
words of the XHTML the fixture wrote, after removing only note marks and bodies, page breaks, images and
scene breaks (computed by ``import_books.piece_words`` with lxml, not by the converter).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from import_books import (
    SAMPLE_AUTHOR,
    SAMPLE_CHAPTERS,
    SAMPLE_TITLE,
    EpubSpec,
    Page,
    Piece,
    build_sample_epub,
    jpeg_bytes,
    piece_words,
    png_bytes,
    sample_spec,
    write_epub,
)

from pipeline.importer import epub
from pipeline.importer.epub import resolve_href
from pipeline.importer.model import ReadOptions, SourceBook
from pipeline.text import MARKER_RE, to_spoken_text

OPTIONS = ReadOptions()


def said(text: str) -> list[str]:
    """The words of ``text`` (what the tests expect to hear)."""
    return text.split()


def words(markdown: str) -> list[str]:
    return MARKER_RE.sub(" ", to_spoken_text(markdown, markdown=True, scene_break_s=2.0)).split()


def read(tmp_path: Path, spec: EpubSpec, options: ReadOptions = OPTIONS, name: str = "book.epub") -> SourceBook:
    return epub.read(write_epub(tmp_path / name, spec), options)


def chapter(name: str, title: str, text: str, **page: object) -> Page:
    html = f'<h1 id="h-{name}">{title}</h1>\n<p>{text}</p>'
    return Page(f"{name}.xhtml", (Piece(html, toc=title),), **page)  # type: ignore[arg-type]


def table(book: SourceBook) -> list[tuple[str, str, str | None]]:
    return [(part.origin, part.title, part.skip) for part in book.parts]


# --- the sample book --------------------------------------------------------------------------------


def test_sample_book_parts_in_reading_order_with_toc_titles_and_reasons(tmp_path: Path) -> None:
    book = epub.read(build_sample_epub(tmp_path / "salt.epub"), OPTIONS)
    front = [("OEBPS/text/cover.xhtml", "Cover", "cover"),
             ("OEBPS/text/title.xhtml", "Title Page", "title page"),
             ("OEBPS/text/copyright.xhtml", "Copyright", "copyright"),
             ("OEBPS/nav.xhtml", "Contents", "table of contents"),
             ("OEBPS/text/dedication.xhtml", "Dedication", None)]
    files = [f"ch{n:02d}.xhtml" for n in range(1, 9)] + ["ch09-10.xhtml", "ch09-10.xhtml#part10", "ch11.xhtml",
                                                          "ch12.xhtml"]
    chapters = [(f"OEBPS/text/{file}", title, None) for file, title in zip(files, SAMPLE_CHAPTERS)]
    back = [("OEBPS/text/afterword.xhtml", "Afterword", None),
            ("OEBPS/text/notes.xhtml", "Notes", "notes"),
            ("OEBPS/text/index.xhtml", "Index", "index"),
            ("OEBPS/text/colophon.xhtml", "Colophon", "colophon")]
    assert table(book) == front + chapters + back
    assert len(SAMPLE_CHAPTERS) == 12
    assert (book.title, book.author, book.language, book.year) == (SAMPLE_TITLE, SAMPLE_AUTHOR, "English", 2024)
    assert book.description == "A ferryman’s daughter, a toll clerk and a drowned bell."
    assert book.cover is not None and book.cover[1] == "jpg" and book.cover[0] == jpeg_bytes()
    assert book.notes == ()


def test_sample_book_text_is_preserved_word_for_word(tmp_path: Path) -> None:
    spec = sample_spec()
    book = epub.read(write_epub(tmp_path / "salt.epub", spec), OPTIONS)
    by_origin = {part.origin: part for part in book.parts}
    checked = 0
    for page in spec.pages:
        for piece in page.pieces:
            origin = f"OEBPS/text/{page.name}" + (f"#{piece.anchor}" if piece.anchor else "")
            part = by_origin[origin]
            if part.skip == "notes":
                continue  # the notes part keeps the note bodies (below)
            assert words(part.markdown) == piece_words(piece.html), origin
            checked += 1
    assert checked == 19  # every piece of the book but the notes
    notes = by_origin["OEBPS/text/notes.xhtml"]
    assert words(notes.markdown) == ["Notes"] + " ".join(text for *_, text in epub_notes()).split()


def epub_notes() -> list[tuple[str, str, str, str]]:
    from import_books import _NOTES

    return _NOTES


def test_sample_book_chapters_hold_no_note_numbers_and_keep_headings_and_breaks(tmp_path: Path) -> None:
    book = epub.read(build_sample_epub(tmp_path / "salt.epub"), OPTIONS)
    parts = {part.title: part for part in book.parts}
    letter = parts["A Letter from Vell"].markdown
    assert "It was from the salt office at Vell. The old causeway" in letter
    assert "Vell.1" not in letter and "1 The" not in letter
    assert "used. Penn" not in parts["The Tollhouse"].markdown  # the <sup> mark left no glue
    assert "before he let it be used.\n" in parts["The Tollhouse"].markdown
    cartographer = parts["The Cartographer"].markdown
    assert "still. Her name" in cartographer and "catalogued" not in cartographer  # inline footnote not read
    causeway = parts["The Long Causeway"].markdown
    assert causeway.startswith("# The Long Causeway\n\n## i. Low tide\n\n")
    assert "\n## ii. High water\n" in causeway
    assert "\n\n***\n\n" in parts["What the Tide Left"].markdown
    assert "Low road, salt road,  \ncarry me over,  \n" in parts["Night Crossing"].markdown
    assert "The causeway between Carrow and Vell" in parts["Lanterns at Carrow"].markdown  # the caption
    assert "A map" not in parts["Lanterns at Carrow"].markdown  # not the alt text
    assert "57" not in parts["The Tollhouse"].markdown  # the page break


# --- reading order and the TOC ---------------------------------------------------------------------


def three_chapters(**spec: object) -> EpubSpec:
    pages = (chapter("a", "Alpha", "First text."), chapter("b", "Beta", "Second text."),
             chapter("c", "Gamma", "Third text."))
    return EpubSpec(pages=pages, **spec)  # type: ignore[arg-type]


@pytest.mark.parametrize("order", ["reversed", "shuffled"])
def test_reading_order_is_the_spine_not_the_manifest(tmp_path: Path, order: str) -> None:
    book = read(tmp_path, three_chapters(manifest_order=order))
    assert [part.title for part in book.parts] == ["Alpha", "Beta", "Gamma"]
    assert [words(part.markdown) for part in book.parts] == [["Alpha", "First", "text."], ["Beta", "Second", "text."],
                                                             ["Gamma", "Third", "text."]]


@pytest.mark.parametrize("nav, titles", [(True, ["Alpha", "Beta", "Gamma"]),
                                         (False, ["NCX Alpha", "NCX Beta", "NCX Gamma"])])
def test_nav_titles_win_over_the_ncx_and_the_ncx_over_headings(tmp_path: Path, nav: bool, titles: list[str]) -> None:
    from import_books import epub_members, write_zip

    members = epub_members(three_chapters(nav=nav))
    members["OEBPS/toc.ncx"] = members["OEBPS/toc.ncx"].replace(b"<text>", b"<text>NCX ")
    for name in ("a", "b", "c"):  # headings that differ from both
        members[f"OEBPS/text/{name}.xhtml"] = members[f"OEBPS/text/{name}.xhtml"].replace(b"<h1", b"<h1>H</h1><h1")
    book = epub.read(write_zip(tmp_path / "t.epub", members), OPTIONS)
    assert [part.title for part in book.parts] == titles


def test_epub2_with_only_an_ncx(tmp_path: Path) -> None:
    doctype = ('<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.1//EN" '
               '"http://www.w3.org/TR/xhtml11/DTD/xhtml11.dtd">\n')
    pages = (Page("cover.xhtml", (Piece('<div><img src="../images/cover.jpg" alt="Cover"/></div>'),),
                  landmark="cover", doctype=doctype),
             Page("one.xhtml", (Piece('<h2>I</h2>\n<p>Words&nbsp;with a no-break space &mdash; and&#160;more.</p>',
                                      toc="Chapter One"),), doctype=doctype, landmark="text"),
             Page("two.xhtml", (Piece("<h2>II</h2>\n<p>Second.</p>", toc="Chapter Two"),), doctype=doctype),
             Page("toc.xhtml", (Piece("<h2>Contents</h2>\n<p>Chapter One</p>\n<p>Chapter Two</p>"),),
                  landmark="toc", doctype=doctype))
    spec = EpubSpec(pages=pages, version=2, cover=jpeg_bytes(), language="fre", date="1999-03-14")
    book = read(tmp_path, spec)
    assert table(book) == [("OEBPS/text/cover.xhtml", "Cover", "cover"),
                           ("OEBPS/text/one.xhtml", "Chapter One", None),
                           ("OEBPS/text/two.xhtml", "Chapter Two", None),
                           ("OEBPS/text/toc.xhtml", "Contents", "table of contents")]
    assert words(book.parts[1].markdown) == ["I", "Words", "with", "a", "no-break", "space", "—", "and", "more."]
    assert "Words\xa0with a no-break space — and\xa0more." in book.parts[1].markdown  # &nbsp; without its DTD
    assert (book.language, book.year, book.cover and book.cover[1]) == ("French", 1999, "jpg")


def test_without_any_toc_titles_come_from_headings_then_file_names(tmp_path: Path) -> None:
    pages = (chapter("a", "Alpha", "First."), Page("b.xhtml", (Piece("<p>No heading here.</p>"),)))
    book = read(tmp_path, EpubSpec(pages=pages, nav=False, ncx=False))
    assert [part.title for part in book.parts] == ["Alpha", "B"]


def test_a_file_outside_the_toc_is_its_own_part(tmp_path: Path) -> None:
    pages = (chapter("a", "Alpha", "First."), Page("a2.xhtml", (Piece("<p>Continued.</p>"),)),
             chapter("b", "Beta", "Second."))
    book = read(tmp_path, EpubSpec(pages=pages))
    assert table(book) == [("OEBPS/text/a.xhtml", "Alpha", None), ("OEBPS/text/a2.xhtml", "A2", None),
                           ("OEBPS/text/b.xhtml", "Beta", None)]


def mid_file_spec(*, front: str = "") -> EpubSpec:
    pieces = (Piece(front) if front else None,
              Piece('<section id="one"><h1>One</h1>\n<p>Text one.</p>\n<h2 id="one-a">A part</h2>\n<p>More one.</p>'
                    "</section>", toc="One", anchor="one", subtoc=(("one-a", "A part"),)),
              Piece('<section id="two"><h1>Two</h1>\n<p>Text two.</p></section>', toc="Two", anchor="two"),
              Piece('<div><h1 id="three">Three</h1>\n<p>Text three.</p></div>', toc="Three", anchor="three"))
    return EpubSpec(pages=(chapter("pre", "Before", "Earlier."),
                           Page("all.xhtml", tuple(p for p in pieces if p is not None))))


def test_a_mid_file_toc_anchor_cuts_the_file(tmp_path: Path) -> None:
    spec = mid_file_spec()
    book = read(tmp_path, spec)
    assert table(book) == [("OEBPS/text/pre.xhtml", "Before", None), ("OEBPS/text/all.xhtml#one", "One", None),
                           ("OEBPS/text/all.xhtml#two", "Two", None), ("OEBPS/text/all.xhtml#three", "Three", None)]
    for part, piece in zip(book.parts[1:], spec.pages[1].pieces):
        assert words(part.markdown) == piece_words(piece.html)
    assert book.parts[1].markdown == "# One\n\nText one.\n\n## A part\n\nMore one.\n"  # nested entry: a heading


def test_text_before_the_first_anchor_is_its_own_part(tmp_path: Path) -> None:
    spec = mid_file_spec(front='<p class="epigraph">A line before the chapters.</p>')
    book = read(tmp_path, spec)
    assert table(book)[1:3] == [("OEBPS/text/all.xhtml", "All", None), ("OEBPS/text/all.xhtml#one", "One", None)]
    assert words(book.parts[1].markdown) == said("A line before the chapters.")
    assert len(book.parts) == 5


def test_split_level_two_cuts_at_nested_entries(tmp_path: Path) -> None:
    book = read(tmp_path, mid_file_spec(), ReadOptions(split_level=2))
    assert table(book)[1:4] == [("OEBPS/text/all.xhtml#one", "One", None),
                                ("OEBPS/text/all.xhtml#one-a", "A part", None),
                                ("OEBPS/text/all.xhtml#two", "Two", None)]
    assert book.parts[2].markdown == "## A part\n\nMore one.\n"


def test_a_toc_anchor_inside_a_paragraph_or_heading(tmp_path: Path) -> None:
    html = '<p>Start.</p>\n<h1><a id="c2"></a>Chapter Two</h1>\n<p>Text <a id="c3"/>continues.</p>'
    # the anchors sit inside the first piece's XHTML; the empty pieces only add their TOC entries
    page = Page("x.xhtml", (Piece(html, toc="Start"), Piece("", toc="Two", anchor="c2"),
                            Piece("", toc="Three", anchor="c3")))
    book = read(tmp_path, EpubSpec(pages=(page,)))
    assert table(book) == [("OEBPS/text/x.xhtml", "Start", None), ("OEBPS/text/x.xhtml#c2", "Two", None),
                           ("OEBPS/text/x.xhtml#c3", "Three", None)]
    assert [part.markdown for part in book.parts] == ["Start.\n", "# Chapter Two\n\nText\n", "continues.\n"]


def test_hrefs_are_resolved_relative_and_url_decoded(tmp_path: Path) -> None:
    pages = (chapter("chapter one", "One", "First."), chapter("été", "Two", "Second."))
    book = read(tmp_path, EpubSpec(pages=pages))
    assert table(book) == [("OEBPS/text/chapter one.xhtml", "One", None), ("OEBPS/text/été.xhtml", "Two", None)]


def test_resolve_href() -> None:
    assert resolve_href("OEBPS/content.opf", "text/ch%201.xhtml#s%202") == ("OEBPS/text/ch 1.xhtml", "s 2")
    assert resolve_href("OEBPS/text/a.xhtml", "../images/x.png") == ("OEBPS/images/x.png", None)
    assert resolve_href("OEBPS/text/a.xhtml", "#n1") == ("OEBPS/text/a.xhtml", "n1")
    assert resolve_href("a.opf", "../../etc/passwd") is None
    assert resolve_href("a.opf", "http://example.com/x.xhtml") is None
    assert resolve_href("a.opf", "mailto:x@example.com") is None


# --- classification --------------------------------------------------------------------------------


def test_linear_no_notes_and_other_non_linear_items(tmp_path: Path) -> None:
    pages = (chapter("a", "Alpha", 'Text<a epub:type="noteref" href="notes.xhtml#n1">1</a> here.'),
             Page("notes.xhtml", (Piece('<h1>Notes</h1>\n<p id="n1"><a href="a.xhtml">1</a> The note.</p>',
                                        toc="Notes"),), linear=False),
             Page("extra.xhtml", (Piece("<h1>Sidebar</h1>\n<p>Extra reading.</p>", toc="Sidebar"),), linear=False))
    book = read(tmp_path, EpubSpec(pages=pages))
    assert table(book) == [("OEBPS/text/a.xhtml", "Alpha", None), ("OEBPS/text/notes.xhtml", "Notes", "notes"),
                           ("OEBPS/text/extra.xhtml", "Sidebar", None)]
    assert words(book.parts[0].markdown) == ["Alpha", "Text", "here."]
    assert book.notes == ('OEBPS/text/extra.xhtml is marked linear="no" (outside the main reading order) but is '
                          "read as a chapter; comment it out in book.yaml if it should not be",)


@pytest.mark.parametrize("body_type, section, title, reason", [
    ("frontmatter", "titlepage", "The Book", "title page"),
    ("frontmatter", "halftitlepage", "The Book", "half-title"),
    ("frontmatter", "copyright-page", "Legal", "copyright"),
    ("frontmatter", "toc", "Overview", "table of contents"),
    ("backmatter", "colophon", "Production", "colophon"),
    ("backmatter", "index", "Where to find it", "index"),
    ("backmatter", "bibliography", "Reading", "bibliography"),
    ("backmatter", "endnotes", "Remarks", "notes"),
    ("frontmatter", "dedication", "For Ann", None),
    ("frontmatter", "epigraph", "Words", None),
    ("frontmatter", "preface", "Preface", None),
    ("bodymatter", "prologue", "Before", None),
    ("backmatter", "afterword", "After", None),
    ("backmatter", "appendix", "Appendix A", None),
])
def test_epub_type_decides(tmp_path: Path, body_type: str, section: str, title: str, reason: str | None) -> None:
    html = f'<section epub:type="{section}"><h1>{title}</h1>\n<p>Some words on this page.</p></section>'
    pages = (chapter("a", "Alpha", "First."), Page("x.xhtml", (Piece(html, toc=title),), body_type=body_type))
    book = read(tmp_path, EpubSpec(pages=pages))
    assert table(book)[1] == ("OEBPS/text/x.xhtml", title, reason)


def test_landmarks_and_the_guide_classify(tmp_path: Path) -> None:
    pages = (Page("t.xhtml", (Piece("<p>A Book</p>\n<p>by Someone</p>", toc="A Book"),), landmark="titlepage"),
             chapter("a", "Alpha", "First.", landmark="bodymatter"),
             Page("i.xhtml", (Piece("<p>apples, 3</p>\n<p>pears, 5</p>", toc="Apples and pears"),), landmark="index"))
    for version in (3, 2):
        book = read(tmp_path, EpubSpec(pages=pages, version=version), name=f"v{version}.epub")
        assert [part.skip for part in book.parts] == ["title page", None, "index"], version


def test_the_nav_document_in_the_spine_is_a_toc_part(tmp_path: Path) -> None:
    book = read(tmp_path, three_chapters(nav_spine_index=0))
    assert table(book)[0] == ("OEBPS/nav.xhtml", "Contents", "table of contents")
    assert words(book.parts[0].markdown) == ["Contents", "Alpha", "Beta", "Gamma"]


def test_an_image_only_file_is_an_empty_part_and_the_cover_page_a_cover(tmp_path: Path) -> None:
    pages = (Page("cover.xhtml", (Piece('<div><img src="../images/cover.jpg" alt="Cover"/></div>'),)),
             chapter("a", "Alpha", "First."),
             Page("plate.xhtml", (Piece('<figure><img src="../images/plate.png" alt="A plate"/></figure>',
                                        toc="Plate I"),)),
             Page("svgcover.xhtml", (Piece('<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/'
                                           '1999/xlink"><image xlink:href="../images/cover.jpg"/></svg>'),)))
    book = read(tmp_path, EpubSpec(pages=pages, cover=jpeg_bytes(), images={"plate.png": png_bytes()}))
    assert table(book) == [("OEBPS/text/cover.xhtml", "Cover", "cover"), ("OEBPS/text/a.xhtml", "Alpha", None),
                           ("OEBPS/text/plate.xhtml", "Plate I", "empty"),
                           ("OEBPS/text/svgcover.xhtml", "Svgcover", "cover")]
    assert [part.markdown for part in book.parts if part.skip] == ["", "", ""]


def test_an_image_in_the_spine_and_a_missing_spine_file_are_parts(tmp_path: Path) -> None:
    spec = three_chapters(cover=jpeg_bytes())
    from import_books import epub_members, write_zip

    members = epub_members(spec)
    opf = members["OEBPS/content.opf"].decode()
    opf = opf.replace("<spine toc=\"ncx\">", '<spine toc="ncx">\n<itemref idref="cover-image"/>')
    members["OEBPS/content.opf"] = opf.encode()
    del members["OEBPS/text/c.xhtml"]
    book = epub.read(write_zip(tmp_path / "x.epub", members), OPTIONS)
    assert table(book) == [("OEBPS/images/cover.jpg", "Cover", "cover"), ("OEBPS/text/a.xhtml", "Alpha", None),
                           ("OEBPS/text/b.xhtml", "Beta", None), ("OEBPS/text/c.xhtml", "Gamma", "empty")]
    assert book.notes == ("the spine names OEBPS/text/c.xhtml, which is not in the archive; it is an empty part",)


# --- notes inside chapters ---------------------------------------------------------------------------


NOTED = ('<h1>Noted</h1>\n'
         '<p>One<a epub:type="noteref" href="#fn1">1</a> two<sup><a href="#fn2">2</a></sup> three '
         '<a class="footnote-ref" href="#fn3"><sup>3</sup></a>four [<a href="notes.xhtml#e1">4</a>] five'
         '<a role="doc-noteref" href="notes.xhtml#e2">5</a>.<span epub:type="pagebreak" id="p9">9</span> Six'
         '<span epub:type="pagebreak" id="p10"/> seven.</p>\n'
         '<aside epub:type="footnote" id="fn1"><p>Footnote one.</p></aside>\n'
         '<aside epub:type="footnote" id="fn2"><p>Footnote two.</p></aside>\n'
         '<aside epub:type="footnote" id="fn3"><p>Footnote three.</p></aside>\n'
         '<p>Eight nine.</p>')


def test_note_marks_and_bodies_are_not_read_and_the_words_stay_apart(tmp_path: Path) -> None:
    notes = Page("notes.xhtml", (Piece('<section epub:type="endnotes"><h1>Notes</h1>\n<p id="e1">End one.</p>\n'
                                       '<p id="e2">End two.</p></section>', toc="Notes"),))
    book = read(tmp_path, EpubSpec(pages=(Page("n.xhtml", (Piece(NOTED, toc="Noted"),)), notes)))
    assert words(book.parts[0].markdown) == said("Noted One two three four five. Six seven. Eight nine.")
    assert words(book.parts[0].markdown) == [w for w in piece_words(NOTED) if w not in ("[]",)]
    assert book.parts[1].skip == "notes"
    assert words(book.parts[1].markdown) == said("Notes End one. End two.")


def test_a_link_into_a_notes_file_is_a_mark_even_without_semantics(tmp_path: Path) -> None:
    pages = (chapter("a", "Alpha", 'It rained<sup><a href="back.xhtml#x7">7</a></sup>.'),
             Page("back.xhtml", (Piece('<h1>Notes</h1>\n<p id="x7">It did.</p>', toc="Notes"),)))
    book = read(tmp_path, EpubSpec(pages=pages))
    assert book.parts[0].markdown == "# Alpha\n\nIt rained.\n"


# --- metadata and cover ------------------------------------------------------------------------------


@pytest.mark.parametrize("language, name", [("en-US", "English"), ("zh-CN", "Chinese"), ("ja", "Japanese"),
                                            ("ger", "German"), ("tlh", "auto"), ("", "auto")])
def test_language(tmp_path: Path, language: str, name: str) -> None:
    assert read(tmp_path, three_chapters(language=language)).language == name


def test_description_loses_its_markup_and_date_gives_the_year(tmp_path: Path) -> None:
    book = read(tmp_path, three_chapters(description="<p>A <b>bold</b> &amp; bright tale.</p>\n<p>Two.</p>",
                                         date="1871-12"))
    assert (book.description, book.year) == ("A bold & bright tale. Two.", 1871)
    plain = read(tmp_path, three_chapters(description="Tom & Jerry\n  in   space", date="n.d."), name="p.epub")
    assert (plain.description, plain.year) == ("Tom & Jerry in space", None)


def test_epub3_metadata_refinements(tmp_path: Path) -> None:
    from import_books import epub_members, write_zip

    members = epub_members(three_chapters())
    opf = members["OEBPS/content.opf"].decode()
    opf = opf.replace("<dc:title>A Test Book</dc:title>",
                      '<dc:title id="t2">Being a Subtitle</dc:title><dc:title id="t1">The Main Title</dc:title>'
                      '<meta refines="#t1" property="title-type">main</meta>'
                      '<meta refines="#t2" property="title-type">subtitle</meta>')
    opf = opf.replace("<dc:creator>Ada Test</dc:creator>",
                      '<dc:creator id="c1">Ada Test</dc:creator><dc:creator id="c2">Ed Itor</dc:creator>'
                      '<meta refines="#c2" property="role" scheme="marc:relators">edt</meta>'
                      '<dc:creator id="c3">Bo Second</dc:creator>')
    members["OEBPS/content.opf"] = opf.encode()
    book = epub.read(write_zip(tmp_path / "m.epub", members), OPTIONS)
    assert (book.title, book.author) == ("The Main Title", "Ada Test, Bo Second")


@pytest.mark.parametrize("version", [3, 2])
def test_cover_png(tmp_path: Path, version: int) -> None:
    book = read(tmp_path, three_chapters(cover=png_bytes(), cover_ext="png", cover_media_type="image/png",
                                         version=version))
    assert book.cover == (png_bytes(), "png")


def test_cover_from_the_guide_cover_page_only(tmp_path: Path) -> None:
    pages = (Page("cover.xhtml", (Piece('<img src="../images/front.png" alt="front"/>'),), landmark="cover"),
             chapter("a", "Alpha", "First."))
    book = read(tmp_path, EpubSpec(pages=pages, version=2, images={"front.png": png_bytes()}))
    assert book.cover == (png_bytes(), "png")
    assert book.parts[0].skip == "cover"


def test_a_gif_cover_is_not_kept_and_a_note_says_why(tmp_path: Path) -> None:
    gif = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x00\x00\x00\x00\x00,\x00\x00\x00" \
          b"\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
    book = read(tmp_path, three_chapters(cover=gif, cover_ext="gif", cover_media_type="image/gif"))
    assert book.cover is None
    assert book.notes == ("the cover image OEBPS/images/cover.gif is a GIF image; only JPEG and PNG covers are kept "
                          "(convert it and set cover: in book.yaml)",)


def test_a_book_without_metadata(tmp_path: Path) -> None:
    from import_books import epub_members, write_zip

    members = epub_members(three_chapters())
    opf = members["OEBPS/content.opf"].decode()
    start, end = opf.index("<metadata"), opf.index("</metadata>") + len("</metadata>")
    members["OEBPS/content.opf"] = (opf[:start] + "<metadata/>" + opf[end:]).encode()
    book = epub.read(write_zip(tmp_path / "bare.epub", members), OPTIONS)
    assert (book.title, book.author, book.language, book.year, book.description) == ("Alpha", None, "auto", None,
                                                                                       None)


def test_a_broken_xhtml_file_is_read_as_html_with_a_note(tmp_path: Path) -> None:
    from import_books import epub_members, write_zip

    members = epub_members(three_chapters())
    members["OEBPS/text/b.xhtml"] = b"<html><body><h1>Beta</h1><p>AT&T rocks<br>and rolls</p></body></html>"
    book = epub.read(write_zip(tmp_path / "broken.epub", members), OPTIONS)
    assert words(book.parts[1].markdown) == ["Beta", "AT&T", "rocks", "and", "rolls"]
    assert book.notes == ("OEBPS/text/b.xhtml is not well-formed XHTML; it was read as HTML",)


def test_the_shipped_sample_epub_is_the_one_the_builder_makes(tmp_path: Path) -> None:
    """README's example, sample_texts/the-salt-road.epub, reads exactly as the builder's book (regenerate it
    with `python tests/import_books.py sample_texts/the-salt-road.epub` after changing the builder)."""
    shipped = epub.read(Path(__file__).resolve().parent.parent / "sample_texts" / "the-salt-road.epub", OPTIONS)
    built = epub.read(build_sample_epub(tmp_path / "salt.epub"), OPTIONS)
    assert shipped.parts == built.parts
    assert (shipped.title, shipped.author, shipped.language, shipped.description, shipped.year) == \
        (built.title, built.author, built.language, built.description, built.year)
