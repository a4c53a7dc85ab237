"""pipeline.importer.docx: Word documents -> parts (issue 13, items 4, 6 and 8), on real DOCX files built by
tests/docx_books.py (python-docx plus raw WordprocessingML for tracked changes, notes, content controls).

Text preservation is checked word for word: the words the project's reader speaks from each part's
Markdown equal the words of that part's blocks in the fixture (headings, runs, insertions, content
controls and table cells; not deletions, footnotes, endnotes, comments, headers or footers).
"""

from __future__ import annotations

import datetime
import re
import zipfile
from pathlib import Path

import pytest
from docx_books import (
    Block,
    Book,
    Control,
    Table,
    comment,
    control,
    deleted,
    edit_member,
    endnote,
    footnote,
    ins,
    paragraph,
    spoken_pieces,
    write_docx,
    zip_of,
)

from pipeline.errors import SourceFileError
from pipeline.importer.docx import read
from pipeline.importer.model import ReadOptions, SourceBook
from pipeline.text import MARKER_RE, to_spoken_text

NOT_READ = ["HEADERWORD", "FOOTERWORD", "DELETEDWORD", "FOOTNOTEWORD", "ENDNOTEWORD", "COMMENTWORD"]

NOVEL: list[Block] = [
    paragraph("Title", "The Lighthouse"),
    paragraph("Subtitle", "A Novel"),
    paragraph("Normal", "by Ann Smith"),
    paragraph("Heading 1", "Copyright"),
    paragraph("Normal", "Copyright © 2024 Ann Smith. All rights reserved."),
    paragraph("Heading 1", "Contents"),
    paragraph("Normal", "Chapter One"),
    paragraph("Normal", "Chapter Two"),
    paragraph("Heading 1", "Dedication"),
    paragraph("Normal", "For the keepers of the light."),
    paragraph("Heading 1", "Part One"),
    paragraph("Heading 1", "Chapter One"),
    paragraph("Normal", "The ferry ", ins("left"), deleted(" DELETEDWORD sank"), " at dawn.",
              footnote("FOOTNOTEWORD a note on ferries."), " Elsie stood", comment("COMMENTWORD check this."),
              " on the jetty."),
    paragraph("Heading 2", "The jetty"),
    paragraph("Normal", "Tide tables, as the keeper wrote them:"),
    Table([["High water", "6:12"], ["Low water", "12:30"]]),
    Control([paragraph("Normal", "Text inside a content control."),
             paragraph("Normal", "And its second paragraph.")]),
    paragraph("Normal", "A ", control("controlled"), " word, *stars*, a_b and [brackets] kept."),
    paragraph("Heading 1", "Chapter Two"),
    paragraph("Normal", "The light was still on", endnote("ENDNOTEWORD an endnote."), "."),
    paragraph("Normal", "第二章的中文句子．"),
]
NOVEL_LAYOUT = [("The Lighthouse", "title page"), ("Copyright", "copyright"), ("Contents", "table of contents"),
                ("Dedication", None), ("Part One: Chapter One", None), ("Chapter Two", None)]
NOVEL_STARTS = [0, 3, 5, 8, 10, 18]  # where each part starts in NOVEL


def novel(**overrides: object) -> Book:
    values: dict[str, object] = {"blocks": list(NOVEL), "title": "lighthouse_v3_FINAL", "author": "Ann Smith",
                                 "language": "en-GB", "description": "A short novel.",
                                 "created": datetime.datetime(2021, 5, 6, 7, 8), "header": "HEADERWORD The Lighthouse",
                                 "footer": "FOOTERWORD page"}
    values.update(overrides)
    return Book(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def novel_book(tmp_path_factory: pytest.TempPathFactory) -> SourceBook:
    """The novel, read once for the tests that only look at it (mammoth takes a while over styles.xml)."""
    return read(write_docx(tmp_path_factory.mktemp("novel") / "novel.docx", novel()), ReadOptions())


def spoken_words(markdown: str) -> list[str]:
    return MARKER_RE.sub(" ", to_spoken_text(markdown, markdown=True, scene_break_s=2.0)).split()


def layout(book: SourceBook) -> list[tuple[str, str | None]]:
    return [(p.title, p.skip) for p in book.parts]


def read_docx(tmp_path: Path, book: Book, name: str = "book.docx", **options: object) -> SourceBook:
    return read(write_docx(tmp_path / name, book), ReadOptions(**options))  # type: ignore[arg-type]


# --- structure and metadata -------------------------------------------------------------------------------

def test_headings_start_chapters_and_the_title_names_the_book(novel_book: SourceBook) -> None:
    book = novel_book
    assert layout(book) == NOVEL_LAYOUT
    assert (book.title, book.author, book.language, book.year, book.description) == (
        "The Lighthouse", "Ann Smith", "English", 2021, "A short novel.")
    # Word's paragraphs, the content control's two counted as two
    assert [p.origin for p in book.parts] == [f"paragraph {n}" for n in (1, 4, 6, 9, 11, 20)]
    assert book.parts[4].markdown.startswith("# Part One\n\n# Chapter One\n\nThe ferry left at dawn. Elsie stood on "
                                             "the jetty.\n\n## The jetty\n\n")


def test_every_word_of_every_part_is_kept_and_nothing_else(novel_book: SourceBook) -> None:
    book = novel_book
    for part, start, end in zip(book.parts, NOVEL_STARTS, [*NOVEL_STARTS[1:], len(NOVEL)]):
        expected = [word for block in NOVEL[start:end] for word in spoken_pieces(block)]
        assert spoken_words(part.markdown) == expected, part.title
    everything = " ".join(p.markdown for p in book.parts)
    for word in NOT_READ:
        assert word not in everything
    assert not re.search(r"\[\d\]|↑", everything)  # no note marks, no back links


def test_what_was_not_read_is_noted(novel_book: SourceBook) -> None:
    notes = novel_book.notes
    assert "tracked changes read as accepted: 1 insertion kept, 1 deletion dropped" in notes
    assert "1 comment not read" in notes
    assert "1 footnote and 1 endnote not read (their marks are removed from the text)" in notes
    assert "page headers and footers not read" in notes
    assert not any(note.startswith("mammoth:") for note in notes)  # style warnings are not news


def test_split_level_two_cuts_at_heading_2(tmp_path: Path) -> None:
    book = read_docx(tmp_path, novel(), split_level=2)
    assert layout(book) == [*NOVEL_LAYOUT[:5], ("The jetty", None), ("Chapter Two", None)]


def test_text_before_the_first_heading_is_its_own_part_and_the_title_falls_back(tmp_path: Path) -> None:
    blocks: list[Block] = [paragraph("Normal", "A word before the story."), paragraph("Heading 1", "One"),
                           paragraph("Normal", "Text.")]
    book = read_docx(tmp_path, Book(blocks, title="Core Title"), name="draft.docx")
    assert layout(book) == [("A word before the story.", None), ("One", None)]
    assert book.title == "Core Title"
    assert read_docx(tmp_path, Book(blocks), name="draft.docx").title == "draft"


def test_a_long_title_section_is_read_not_skipped_as_a_title_page(tmp_path: Path) -> None:
    prologue = "It was a long night. " * 40
    book = read_docx(tmp_path, Book([paragraph("Title", "Night"), paragraph("Normal", prologue),
                                     paragraph("Heading 1", "One"), paragraph("Normal", "Day.")]))
    assert layout(book) == [("Night", None), ("One", None)]


def test_several_title_paragraphs_are_chapter_headings(tmp_path: Path) -> None:
    book = read_docx(tmp_path, Book([paragraph("Title", "One"), paragraph("Normal", "First."),
                                     paragraph("Title", "Two"), paragraph("Normal", "Second.")], title="Book"))
    assert layout(book) == [("One", None), ("Two", None)]
    assert book.title == "Book"


def test_a_word_table_of_contents_is_one_skipped_part(tmp_path: Path) -> None:
    entries = [paragraph("toc 1", "Chapter One\t1"), paragraph("toc 2", "A section\t2"),
               paragraph("toc 1", "Chapter Two\t5")]
    chapters = [paragraph("Heading 1", "Chapter One"), paragraph("Normal", "One."),
                paragraph("Heading 1", "Chapter Two"), paragraph("Normal", "Two.")]
    with_heading = read_docx(tmp_path, Book([paragraph("Title", "A Book"), paragraph("TOC Heading", "In This Book"),
                                             *entries, *chapters]))
    assert layout(with_heading) == [("A Book", "title page"), ("In This Book", "table of contents"),
                                    ("Chapter One", None), ("Chapter Two", None)]
    assert with_heading.parts[1].markdown == "# In This Book\n\nChapter One 1\n\nA section 2\n\nChapter Two 5\n"
    bare = read_docx(tmp_path, Book([paragraph("Title", "A Book"), *entries, paragraph("Normal", "A foreword."),
                                     *chapters]))
    assert layout(bare) == [("A Book", "title page"), ("Contents", "table of contents"), ("A foreword.", None),
                            ("Chapter One", None), ("Chapter Two", None)]


def test_a_heading_with_nothing_under_it_opens_the_next_chapter_unless_it_is_skipped(tmp_path: Path) -> None:
    book = read_docx(tmp_path, Book([paragraph("Heading 1", "Contents"), paragraph("Heading 1", "Book One"),
                                     paragraph("Heading 1", "Chapter 1"), paragraph("Normal", "Text."),
                                     paragraph("Heading 1", "Epilogue")]))
    assert layout(book) == [("Contents", "table of contents"), ("Book One: Chapter 1", None), ("Epilogue", None)]
    assert book.parts[1].markdown == "# Book One\n\n# Chapter 1\n\nText.\n"


def test_an_empty_document_is_one_empty_part(tmp_path: Path) -> None:
    book = read_docx(tmp_path, Book([]), name="blank.docx")
    assert layout(book) == [("blank", "empty")]


@pytest.mark.parametrize(("core", "latin", "east", "text", "expected"), [
    ("", "de-DE", None, "Ein Satz.", "German"),
    ("", "en-US", "zh-CN", "这是一个中文句子，还有一个．", "Chinese"),
    ("", "en-US", "zh-CN", "An English sentence.", "English"),
    ("fr-FR", "de-DE", None, "Une phrase.", "French"),
    ("", "xx-XX", None, "Text.", "auto"),
])
def test_language_from_core_properties_or_document_defaults(tmp_path: Path, core: str, latin: str, east: str | None,
                                                            text: str, expected: str) -> None:
    book = Book([paragraph("Heading 1", "One"), paragraph("Normal", text)], language=core, default_language=latin,
                east_asian_language=east)
    assert read_docx(tmp_path, book).language == expected


def test_mammoth_warnings_about_lost_content_are_noted(tmp_path: Path) -> None:
    path = write_docx(tmp_path / "odd.docx", Book([paragraph("Heading 1", "One"), paragraph("Normal", "Text.")]))
    edit_member(path, "word/document.xml", lambda xml: xml.replace(b"<w:t>Text.</w:t>", b"<w:t>Text.</w:t><w:oddity/>"))
    book = read(path, ReadOptions())
    assert any(note.startswith("mammoth: An unrecognised element was ignored: w:oddity") for note in book.notes)


# --- hostile and broken files -----------------------------------------------------------------------------

def refusal(path: Path) -> str:
    with pytest.raises(SourceFileError) as info:
        read(path, ReadOptions())
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return message


def test_a_zip_of_something_else_is_not_a_word_document(tmp_path: Path) -> None:
    path = zip_of(tmp_path / "photos.docx", {"holiday/notes.txt": "Sunny.", "holiday/a.xml": "<a/>"})
    assert "is not a Word document: it is a ZIP archive without [Content_Types].xml" in refusal(path)


def test_a_zip_with_content_types_but_no_document_is_not_a_word_document(tmp_path: Path) -> None:
    path = zip_of(tmp_path / "x.docx", {"[Content_Types].xml": '<Types xmlns="http://schemas.openxmlformats.org/'
                                                              'package/2006/content-types"/>'})
    assert "is not a Word document: it is a ZIP archive without word/document.xml" in refusal(path)


def test_a_renamed_epub_or_workbook_is_named_for_what_it_is(tmp_path: Path) -> None:
    epub = zip_of(tmp_path / "book.docx", {"mimetype": "application/epub+zip", "META-INF/container.xml": "<c/>"})
    assert "is not a Word document: it is an EPUB book (rename it to .epub)" in refusal(epub)
    types = ('<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Override '
             'PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.'
             'spreadsheetml.sheet.main+xml"/></Types>')
    rels = ('<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship '
            'Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" '
            'Target="xl/workbook.xml"/></Relationships>')
    workbook = zip_of(tmp_path / "sheet.docx", {"[Content_Types].xml": types, "_rels/.rels": rels,
                                                "xl/workbook.xml": "<workbook/>"})
    assert "is not a Word document: it is an Excel workbook" in refusal(workbook)


def test_a_wrong_main_content_type_is_refused(tmp_path: Path) -> None:
    path = write_docx(tmp_path / "x.docx", Book([paragraph("Normal", "Text.")]))
    edit_member(path, "[Content_Types].xml", lambda xml: xml.replace(b"wordprocessingml.document.main+xml",
                                                                      b"something.else+xml"))
    assert "is not a Word document: its main part word/document.xml is application/vnd.openxmlformats-" \
           "officedocument.something.else+xml" in refusal(path)


def test_a_truncated_docx_is_refused(tmp_path: Path) -> None:
    whole = write_docx(tmp_path / "whole.docx", novel()).read_bytes()
    path = tmp_path / "cut.docx"
    path.write_bytes(whole[: len(whole) // 2])
    assert "truncated or damaged ZIP archive" in refusal(path)


def test_a_corrupt_member_is_refused(tmp_path: Path) -> None:
    path = write_docx(tmp_path / "x.docx", novel())
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("word/document.xml")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    for offset in range(start + 10, start + 60):
        data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    assert "word/document.xml" in refusal(path)


def test_text_pretending_to_be_a_docx_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.docx"
    path.write_text("Just some text saved with the wrong name.\n")
    assert "is not a ZIP archive" in refusal(path)


def test_xml_entities_are_refused_before_mammoth_sees_them(tmp_path: Path) -> None:
    path = write_docx(tmp_path / "bomb.docx", Book([paragraph("Normal", "Text.")]))
    laughs = (b'<?xml version="1.0"?><!DOCTYPE w:document [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>')
    edit_member(path, "word/document.xml", lambda xml: laughs + xml.split(b"?>", 1)[1].replace(b"Text.", b"&lol2;"))
    assert "word/document.xml declares XML entities" in refusal(path)


def test_malformed_xml_is_refused(tmp_path: Path) -> None:
    path = write_docx(tmp_path / "bad.docx", Book([paragraph("Normal", "Text.")]))
    edit_member(path, "word/document.xml", lambda xml: xml.replace(b"</w:body>", b""))
    assert "word/document.xml is not well-formed XML" in refusal(path)


def test_a_document_mammoth_cannot_convert_is_refused(tmp_path: Path) -> None:
    path = write_docx(tmp_path / "odd.docx", Book([paragraph("Normal", "Text.")]))
    edit_member(path, "word/document.xml", lambda xml: xml.replace(b"<w:t>Text.</w:t>", b"<w:footnoteReference/>"))
    assert "cannot be converted" in refusal(path)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    assert "does not exist" in refusal(tmp_path / "nope.docx")
