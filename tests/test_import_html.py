"""The HTML reader (pipeline.importer.html): decoding as a browser does, chapters at headings, metadata,
classification, and every chapter's words against the source's (computed here with lxml)."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest
from import_books import piece_words

from pipeline.errors import SourceFileError
from pipeline.importer import html
from pipeline.importer.model import ReadOptions, SourceBook
from pipeline.text import MARKER_RE, to_spoken_text

OPTIONS = ReadOptions()


def said(text: str) -> list[str]:
    return text.split()


def words(markdown: str) -> list[str]:
    return MARKER_RE.sub(" ", to_spoken_text(markdown, markdown=True, scene_break_s=2.0)).split()


def write(tmp_path: Path, content: str | bytes, name: str = "book.html") -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def read(tmp_path: Path, content: str | bytes, options: ReadOptions = OPTIONS, name: str = "book.html") -> SourceBook:
    return html.read(write(tmp_path, content, name), options)


CH1 = ('<h1 id="c1">Chapter One</h1>\n<p>It was a <em>dark</em> night<sup><a href="#fn1">1</a></sup>.</p>\n'
       '<p>Line one<br/>\nline two.</p>\n<hr/>\n<p>After the break.</p>')
CH2 = ('<h1>Chapter Two</h1>\n<p>Second <span epub:type="pagebreak" id="page2"/>chapter.</p>\n<h2>A section</h2>\n'
       '<p>Inside.</p>')
BOOK = ('<!DOCTYPE html>\n<html lang="en-GB" xmlns:epub="http://www.idpf.org/2007/ops"><head><meta charset="utf-8"/>'
        '<title>The Tide Book</title><meta name="author" content="Ann Writer"/>'
        '<meta name="description" content="A short   book."/><meta name="dc.date" content="1911-04-01"/>'
        '<style>h1 { color: red }</style></head>\n<body>\n'
        '<div class="titlepage"><p>The Tide Book</p>\n<p>by Ann Writer</p></div>\n'
        f"{CH1}\n{CH2}\n"
        '<section class="footnotes"><ol><li id="fn1"><p>A note.</p></li></ol></section>\n</body></html>')


def test_chapters_start_at_h1_with_front_matter_and_metadata(tmp_path: Path) -> None:
    book = read(tmp_path, BOOK)
    assert [(p.title, p.skip, p.origin) for p in book.parts] == [("Front matter", "title page", "line 1"),
                                                                 ("Chapter One", None, "line 6"),
                                                                 ("Chapter Two", None, "line 12")]
    assert (book.title, book.author, book.language, book.description, book.year) == (
        "The Tide Book", "Ann Writer", "English", "A short book.", 1911)
    assert book.cover is None


def test_text_is_preserved_word_for_word(tmp_path: Path) -> None:
    book = read(tmp_path, BOOK)
    assert words(book.parts[1].markdown) == piece_words(CH1)
    assert words(book.parts[2].markdown) == piece_words(CH2)
    assert book.parts[1].markdown == ("# Chapter One\n\nIt was a dark night.\n\nLine one  \nline two.\n\n***\n\n"
                                      "After the break.\n")
    assert book.parts[2].markdown == "# Chapter Two\n\nSecond chapter.\n\n## A section\n\nInside.\n"


def test_split_level_two(tmp_path: Path) -> None:
    book = read(tmp_path, BOOK, ReadOptions(split_level=2))
    assert [p.title for p in book.parts] == ["Front matter", "Chapter One", "Chapter Two", "A section"]


def test_a_document_without_headings_is_one_part_titled_by_the_book(tmp_path: Path) -> None:
    book = read(tmp_path, "<html><head><title>Short</title></head><body><p>Only text.</p></body></html>")
    assert [(p.title, p.markdown, p.skip) for p in book.parts] == [("Short", "Only text.\n", None)]


def test_title_falls_back_to_the_first_h1_then_the_file_name(tmp_path: Path) -> None:
    assert read(tmp_path, "<h1>Heading Title</h1><p>x</p>").title == "Heading Title"
    assert read(tmp_path, "<p>x</p>", name="my-story.htm").title == "my-story"


def test_classes_and_epub_types_classify(tmp_path: Path) -> None:
    content = ('<h1 class="toc">Overview</h1><p>One, Two</p>'
               '<section epub:type="copyright-page"><h1>Legal</h1><p>Some words.</p></section>'
               '<h1>Story</h1><p>Words.</p><div role="doc-index"><h1>Where</h1><p>apples 3</p></div>'
               '<h1>Dedication</h1><p>For Ann.</p><h1>Empty</h1>')
    book = read(tmp_path, content)
    assert [(p.title, p.skip) for p in book.parts] == [("Overview", "table of contents"), ("Legal", "copyright"),
                                                       ("Story", None), ("Where", "index"), ("Dedication", None),
                                                       ("Empty", None)]


def test_a_notes_section_of_its_own_is_a_notes_part(tmp_path: Path) -> None:
    content = ('<h1>One</h1><p>Text<a href="#n1">1</a>.</p>'
               '<section role="doc-endnotes"><h1>Notes</h1><ol><li id="n1">The note.</li></ol></section>')
    book = read(tmp_path, content)
    assert [(p.title, p.skip, words(p.markdown)) for p in book.parts] == [
        ("One", None, said("One Text.")), ("Notes", "notes", said("Notes The note."))]


# --- decoding ------------------------------------------------------------------------------------------


def test_windows_1252_with_a_meta_charset(tmp_path: Path) -> None:
    text = '<html><head><meta charset="windows-1252"></head><body><h1>Caf\u00e9</h1><p>\u201cQuoted\u201d \u2014 ok</p>'
    book = read(tmp_path, text.encode("cp1252"))
    assert book.parts[0].markdown == "# Café\n\n“Quoted” — ok\n"


def test_iso_8859_1_with_http_equiv_is_read_as_windows_1252(tmp_path: Path) -> None:
    # WHATWG: the label iso-8859-1 means windows-1252 (byte 0x93 is a curly quote, as browsers show it)
    head = '<meta http-equiv="Content-Type" content="text/html; charset=ISO-8859-1">'
    data = f"<html><head>{head}</head><body><p>na\u00efve ".encode("latin-1") + b"\x93q\x94</p></body></html>"
    book = read(tmp_path, data)
    assert book.parts[0].markdown == "naïve “q”\n"


def test_an_xml_declaration_names_the_encoding(tmp_path: Path) -> None:
    text = '<?xml version="1.0" encoding="ISO-8859-15"?>\n<html><body><p>\u20ac 5</p></body></html>'
    data = text.encode("iso8859_15")
    assert read(tmp_path, data).parts[0].markdown == "€ 5\n"


@pytest.mark.parametrize("bom, codec", [(codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"),
                                        (codecs.BOM_UTF16_BE, "utf-16-be")])
def test_a_byte_order_mark_wins(tmp_path: Path, bom: bytes, codec: str) -> None:
    data = bom + '<html><head><meta charset="windows-1252"></head><body><p>été “x”</p></body></html>'.encode(codec)
    assert read(tmp_path, data).parts[0].markdown == "été “x”\n"


def test_undeclared_invalid_bytes_are_a_clear_error(tmp_path: Path) -> None:
    path = write(tmp_path, b"<html><body>\n<p>fine</p>\n<p>\x93smart\x94</p></body></html>")
    with pytest.raises(SourceFileError) as caught:
        html.read(path, OPTIONS)
    assert str(caught.value) == (f"{path}: is not UTF-8 (byte 0x93 on line 3) and declares no charset; add "
                                 '<meta charset="windows-1252"> (or its real encoding) or save it as UTF-8')


def test_bytes_invalid_in_the_declared_charset(tmp_path: Path) -> None:
    path = write(tmp_path, b'<meta charset="utf-8"><p>\xff</p>')
    with pytest.raises(SourceFileError, match=r"is not valid utf-8 \(byte 0xff on line 1\), though charset 'utf-8'"):
        html.read(path, OPTIONS)


def test_an_unknown_charset(tmp_path: Path) -> None:
    path = write(tmp_path, b'<meta charset="klingon-8"><p>x</p>')
    with pytest.raises(SourceFileError, match=r"declares charset 'klingon-8', which is not a known text encoding"):
        html.read(path, OPTIONS)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(SourceFileError, match=r"nope.html: does not exist"):
        html.read(tmp_path / "nope.html", OPTIONS)
    (tmp_path / "dir.html").mkdir()
    with pytest.raises(SourceFileError, match=r"dir.html: is a folder"):
        html.read(tmp_path / "dir.html", OPTIONS)


def test_an_empty_file_is_one_empty_part(tmp_path: Path) -> None:
    book = read(tmp_path, "", name="blank.html")
    assert [(p.title, p.markdown, p.skip) for p in book.parts] == [("blank", "", "empty")]
