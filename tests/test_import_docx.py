"""pipeline.importer.docx: Word documents -> parts (issue 13, items 4, 6 and 8), on real DOCX files built by
tests/docx_books.py (python-docx plus raw WordprocessingML for tracked changes, notes, content controls,
fields, moves, text boxes, breaks, hidden text, nested tables).

Text preservation is checked word for word: the words the project's reader speaks from each part's
Markdown equal the words of that part's blocks in the fixture (headings, runs, insertions, content
controls and table cells, and what each raw XML fragment was written down to say; not deletions,
footnotes, endnotes, comments, headers or footers).
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
    Raw,
    Style,
    Table,
    comment,
    control,
    deleted,
    edit_member,
    endnote,
    footnote,
    ins,
    paragraph,
    raw,
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
    """The novel, read once for the tests that only look at it."""
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
    assert novel_book.notes == (  # and nothing about styles or looks: they are not news
        "tracked changes read as accepted: 1 insertion kept, 1 deletion dropped", "1 comment not read",
        "1 footnote and 1 endnote not read (their marks are removed from the text)",
        "page headers and footers not read")


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


def test_text_in_an_element_the_reader_does_not_know_is_noted(tmp_path: Path) -> None:
    path = write_docx(tmp_path / "odd.docx", Book([paragraph("Heading 1", "One"), paragraph("Normal", "Text.")]))
    edit_member(path, "word/document.xml", lambda xml: xml.replace(
        b"<w:t>Text.</w:t></w:r>", b"<w:t>Text.</w:t></w:r><w:oddity><w:r><w:t>ODDWORD</w:t></w:r></w:oddity>"
                                   b"<w:emptyOddity/>"))
    book = read(path, ReadOptions())
    assert book.parts[0].markdown == "# One\n\nText.\n"
    assert "text in 1 element the reader does not know not read (w:oddity)" in book.notes


# --- WordprocessingML constructs -------------------------------------------------------------------------

def run(text: str, props: str = "") -> str:
    """A run of ``text`` (with run properties ``props``) as raw XML."""
    return f'<w:r>{f"<w:rPr>{props}</w:rPr>" if props else ""}<w:t xml:space="preserve">{text}</w:t></w:r>'


def field_char(kind: str) -> str:
    return f'<w:r><w:fldChar w:fldCharType="{kind}"/></w:r>'


def field_code(code: str) -> str:
    return f'<w:r><w:instrText xml:space="preserve">{code}</w:instrText></w:r>'


def field(code: str, result: str = "") -> str:
    """A complex field: its code, and its result runs when it has one."""
    shown = field_char("separate") + result if result else ""
    return field_char("begin") + field_code(code) + shown + field_char("end")


def text_box(text: str) -> str:
    return f"<w:txbxContent><w:p>{run(text)}</w:p></w:txbxContent>"


def drawing_box(text: str) -> str:
    """A DrawingML shape holding a text box (Word 2010 and later)."""
    return ('<w:drawing><wp:anchor><a:graphic><a:graphicData uri="http://schemas.microsoft.com/office/word/2010/'
            f'wordprocessingShape"><wps:wsp><wps:txbx>{text_box(text)}</wps:txbx></wps:wsp></a:graphicData>'
            "</a:graphic></wp:anchor></w:drawing>")


def vml_box(text: str) -> str:
    """A VML shape holding a text box (older Word, and Word's fallback for readers without DrawingML)."""
    return f"<w:pict><v:shape><v:textbox>{text_box(text)}</v:textbox></v:shape></w:pict>"


def alternate(choice: str, fallback: str) -> str:
    return (f'<w:r><mc:AlternateContent><mc:Choice Requires="wps">{choice}</mc:Choice>'
            f"<mc:Fallback>{fallback}</mc:Fallback></mc:AlternateContent></w:r>")


CHANGE = 'w:author="Editor" w:date="2024-01-01T00:00:00Z"'
PAGE_BREAK = '<w:r><w:br w:type="page"/></w:r>'
PLACEHOLDER = "<w:sdtPr><w:showingPlcHdr/></w:sdtPr>"
CONSTRUCT_STYLES = [Style("Secret", hidden=True, character=True), Style("Secret Note", base="Normal", hidden=True)]
CONSTRUCTS: list[Block] = [
    paragraph("Heading 1", "Fields"),
    paragraph("Normal", "See ", raw(field(' HYPERLINK "https://example.com/chart" ', run("the harbour chart")),
                                    "the harbour chart"), " for the tides."),
    paragraph("Normal", "Turn to page ", raw(field(r" PAGEREF _Ref1 \h ", run("12")), "12"), "."),
    paragraph("Normal", "Lanterns", raw(field(' XE "INSTRWORD lanterns" ')), " burn all night."),
    paragraph("Normal", "The ", raw(field_char("begin") + field_code(" IF ") + field(" PAGE ", run("NESTEDCODEWORD"))
                                    + field_code(' > 1 "chosen" "other" ') + field_char("separate") + run("chosen")
                                    + field_char("end"), "chosen"), " word."),
    paragraph("Normal", "Written by ", raw(f'<w:fldSimple w:instr=" AUTHOR ">{run("Ann Smith")}</w:fldSimple>',
                                           "Ann Smith"), "."),
    paragraph("Normal", raw(field_char("begin") + field_code(r" REF _Ref2 \h ") + field_char("separate")
                            + run("A field result that runs on"), "A field result that runs on")),
    paragraph("Normal", raw(run("into the next paragraph.") + field_char("end"), "into the next paragraph.")),
    paragraph("Normal", "A claim", raw(field(r' HYPERLINK \l "_ftn1" ', run("[1]"))), " stands, and",
              raw(f'<w:hyperlink w:anchor="_ftn2">{run("[2]")}</w:hyperlink>'), " so does ",
              raw(f'<w:hyperlink w:anchor="harbour">{run("the harbour")}</w:hyperlink>', "the harbour"), "."),
    paragraph("Heading 1", "Changes"),
    paragraph("Normal", "The keeper ",
              raw(f'<w:moveFrom w:id="201" {CHANGE}>{run("MOVEDFROMWORD slowly ")}</w:moveFrom>'),
              "walked ", raw(f'<w:moveTo w:id="202" {CHANGE}>{run("slowly ")}</w:moveTo>', "slowly "), "home."),
    paragraph("Heading 1", "Text boxes"),
    paragraph("Normal", "Before the box ", raw(alternate(drawing_box("Log entry one."), vml_box("Log entry one.")),
                                               after="Log entry one."), "and after it."),
    paragraph("Normal", "An empty choice ", raw(alternate("<w:drawing/>", vml_box("The fallback box.")),
                                                after="The fallback box."), "falls back."),
    paragraph("Normal", "An old box", raw(f"<w:r>{vml_box('Read once.')}</w:r>", after="Read once."), "."),
    paragraph("Heading 1", raw(PAGE_BREAK), "Breaks"),
    paragraph("Normal", "The last line of a page", raw(PAGE_BREAK, " "), "the first of the next."),
    paragraph("Heading 2", "A heading", raw(PAGE_BREAK, " "), "over two pages"),
    paragraph("Normal", "One line\nanother line."),  # python-docx writes w:br
    paragraph("Normal", "Name\tvalue."),  # and w:tab
    paragraph("Normal", "An extra", raw("<w:r><w:softHyphen/></w:r>"), "ordinary, well",
              raw("<w:r><w:noBreakHyphen/></w:r>", "-"), "known star",
              raw('<w:r><w:sym w:font="Wingdings" w:char="F0AB"/></w:r>'), " shines",
              raw("<w:r><w:cr/></w:r>", " "), "on."),
    paragraph("Heading 1", "Hidden"),
    paragraph("Normal", "Seen ", raw(run("HIDDENWORD ", "<w:vanish/>")),
              raw(run("and shown ", '<w:vanish w:val="0"/>'), "and shown "),
              raw(run("HIDDENSTYLEWORD ", '<w:rStyle w:val="Secret"/>')), "words."),
    Raw('<w:p><w:pPr><w:pStyle w:val="SecretNote"/></w:pPr>' + run("HIDDENPARAWORD a note to self, ")
        + run("but this is shown.", '<w:vanish w:val="0"/>') + "</w:p>", "but this is shown."),
    paragraph("Heading 1", "Tables"),
    Raw(f"<w:tbl><w:tblPr/><w:tblGrid><w:gridCol/><w:gridCol/></w:tblGrid>"
        f"<w:tr><w:tc><w:p>{run('Outer one')}</w:p></w:tc><w:tc><w:p>{run('Outer two')}</w:p>"
        f"<w:tbl><w:tr><w:tc><w:p>{run('Inner cell')}</w:p></w:tc></w:tr></w:tbl><w:p/></w:tc></w:tr>"
        f"<w:tr><w:tc><w:p>{run('Outer three')}</w:p></w:tc></w:tr>"
        f'<w:tr><w:trPr><w:del w:id="301" {CHANGE}/></w:trPr><w:tc><w:p>{run("DELETEDROWWORD")}</w:p></w:tc></w:tr>'
        f"<w:sdt><w:sdtPr/><w:sdtContent><w:tr><w:tc><w:p>{run('A row in a control')}</w:p></w:tc></w:tr>"
        "</w:sdtContent></w:sdt></w:tbl>", "Outer one Outer two Inner cell Outer three A row in a control"),
    paragraph("Heading 1", "Controls"),
    Raw(f"<w:sdt><w:sdtPr/><w:sdtContent><w:tbl><w:tr><w:tc><w:p>{run('A table in a control.')}</w:p></w:tc></w:tr>"
        "</w:tbl></w:sdtContent></w:sdt>", "A table in a control."),
    Raw(f"<w:sdt>{PLACEHOLDER}<w:sdtContent><w:p>{run('PLACEHOLDERWORD Click here to enter text.')}</w:p>"
        "</w:sdtContent></w:sdt>", ""),
    paragraph("Normal", "Name: ", raw(f"<w:sdt>{PLACEHOLDER}<w:sdtContent>{run('PLACEHOLDERWORD')}</w:sdtContent>"
                                      "</w:sdt>"), "to be filled in."),
    paragraph("Normal", raw(f'<w:smartTag w:uri="urn:x" w:element="place">{run("Smart ")}</w:smartTag>'
                            f'<w:customXml w:element="x">{run("custom ")}</w:customXml>'
                            f'<w:bdo w:val="rtl">{run("bdo ")}</w:bdo><w:dir w:val="ltr">{run("dir ")}</w:dir>',
                            "Smart custom bdo dir "), "words."),
    paragraph("Normal", "Ruby: ", raw(f"<w:r><w:ruby><w:rubyPr/><w:rt>{run('RUBYWORD')}</w:rt>"
                                      f"<w:rubyBase>{run('漢字')}</w:rubyBase></w:ruby></w:r>", "漢字"), "."),
]
CONSTRUCT_TITLES = ["Fields", "Changes", "Text boxes", "Breaks", "Hidden", "Tables", "Controls"]
CONSTRUCTS_NOT_READ = ["INSTRWORD", "NESTEDCODEWORD", "MOVEDFROMWORD", "HIDDENWORD", "HIDDENSTYLEWORD",
                       "HIDDENPARAWORD", "DELETEDROWWORD", "PLACEHOLDERWORD", "RUBYWORD", "Wingdings", "[1]", "[2]"]


@pytest.fixture(scope="module")
def constructs(tmp_path_factory: pytest.TempPathFactory) -> SourceBook:
    path = tmp_path_factory.mktemp("constructs") / "constructs.docx"
    return read(write_docx(path, Book(CONSTRUCTS, styles=CONSTRUCT_STYLES)), ReadOptions())


def test_every_construct_keeps_exactly_the_words_a_reader_sees(constructs: SourceBook) -> None:
    assert layout(constructs) == [(title, None) for title in CONSTRUCT_TITLES]
    starts = [i for i, block in enumerate(CONSTRUCTS) if isinstance(block, tuple) and block[0] == "Heading 1"]
    for part, start, end in zip(constructs.parts, starts, [*starts[1:], len(CONSTRUCTS)]):
        expected = [word for block in CONSTRUCTS[start:end] for word in spoken_pieces(block)]
        assert spoken_words(part.markdown) == expected, part.title
    everything = " ".join(p.markdown for p in constructs.parts)
    for word in CONSTRUCTS_NOT_READ:
        assert word not in everything


def test_fields_show_their_results_never_their_codes(constructs: SourceBook) -> None:
    assert constructs.parts[0].markdown == (
        "# Fields\n\nSee the harbour chart for the tides.\n\nTurn to page 12.\n\nLanterns burn all night.\n\n"
        "The chosen word.\n\nWritten by Ann Smith.\n\nA field result that runs on\n\ninto the next paragraph.\n\n"
        "A claim stands, and so does the harbour.\n")  # the [1] and [2] linked to note bookmarks: marks


def test_moves_and_text_boxes_are_read_once(constructs: SourceBook) -> None:
    assert constructs.parts[1].markdown == "# Changes\n\nThe keeper walked slowly home.\n"
    # one branch of mc:AlternateContent, the text box right after the paragraph that anchors it
    assert constructs.parts[2].markdown == (
        "# Text boxes\n\nBefore the box and after it.\n\nLog entry one.\n\nAn empty choice falls back.\n\n"
        "The fallback box.\n\nAn old box.\n\nRead once.\n")


def test_breaks_tabs_and_hyphens(constructs: SourceBook) -> None:
    # a page break ends a paragraph (in a heading it is a space); a line break keeps the line
    assert constructs.parts[3].markdown == (
        "# Breaks\n\nThe last line of a page\n\nthe first of the next.\n\n## A heading over two pages\n\n"
        "One line  \nanother line.\n\nName value.\n\nAn extraordinary, well-known star shines  \non.\n")


def test_hidden_text_tables_and_content_controls(constructs: SourceBook) -> None:
    assert constructs.parts[4].markdown == "# Hidden\n\nSeen and shown words.\n\nbut this is shown.\n"
    assert constructs.parts[5].markdown == ("# Tables\n\nOuter one\n\nOuter two\n\nInner cell\n\nOuter three\n\n"
                                            "A row in a control\n")
    assert constructs.parts[6].markdown == ("# Controls\n\nA table in a control.\n\nName: to be filled in.\n\n"
                                            "Smart custom bdo dir words.\n\nRuby: 漢字.\n")


def test_what_the_constructs_leave_unread_is_noted(constructs: SourceBook) -> None:
    notes = constructs.notes
    assert "tracked changes read as accepted: 1 insertion kept, 2 deletions dropped" in notes  # moves and a row
    assert "3 runs of hidden text not read" in notes
    assert "2 content controls showing placeholder text not read" in notes
    assert not any("does not know" in note for note in notes)


def test_embedded_documents_and_fields_never_ended_are_noted(tmp_path: Path) -> None:
    book = read_docx(tmp_path, Book([
        paragraph("Heading 1", "One"), paragraph("Normal", "Text."), Raw('<w:altChunk r:id="rIdChunk"/>', ""),
        paragraph("Normal", "Broken", raw(field_char("begin") + field_code(" REF x ")), " field."),
        paragraph("Normal", "LOSTWORD after it.")]))
    assert book.parts[0].markdown == "# One\n\nText.\n\nBroken\n"
    assert "1 embedded document (w:altChunk) not read; open the file in Word and save it again to merge them " \
           "into the text" in book.notes
    assert "1 field never ended: the text after its start is field code, not read; repair the document in a " \
           "word processor" in book.notes


def test_headings_by_outline_level_based_on_styles_and_style_ids(tmp_path: Path) -> None:
    styles = [Style("Chapter Start", base="Heading 1"), Style("Quiet Heading", base="Heading 1", outline_level=9),
              Style("Numbered Chapter", base="Chapter Start")]
    blocks: list[Block] = [
        paragraph("Chapter Start", "One"), paragraph("Normal", "Text one."),
        Raw(f'<w:p><w:pPr><w:outlineLvl w:val="0"/></w:pPr>{run("Two")}</w:p>', "Two"),
        paragraph("Normal", "Text two."),
        paragraph("Quiet Heading", "Not a heading."),
        Raw(f'<w:p><w:pPr><w:pStyle w:val="heading2"/></w:pPr>{run("A section")}</w:p>', "A section"),  # no such style
        paragraph("Normal", "Its text."),
        paragraph("Heading 7", "Deep"),
        paragraph("Numbered Chapter", "Three"), paragraph("Normal", "Text three."),
    ]
    book = read_docx(tmp_path, Book(blocks, styles=styles))
    assert layout(book) == [("One", None), ("Two", None), ("Three", None)]
    assert book.parts[1].markdown == ("# Two\n\nText two.\n\nNot a heading.\n\n## A section\n\nIts text.\n\n"
                                      "###### Deep\n")
    assert layout(read_docx(tmp_path, Book(blocks, styles=styles), split_level=2)) == [
        ("One", None), ("Two", None), ("A section", None), ("Three", None)]
    for part, start, end in zip(book.parts, [0, 2, 8], [2, 8, 10]):
        assert spoken_words(part.markdown) == [w for block in blocks[start:end] for w in spoken_pieces(block)]


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


def test_xml_entities_are_refused_before_anything_is_read(tmp_path: Path) -> None:
    path = write_docx(tmp_path / "bomb.docx", Book([paragraph("Normal", "Text.")]))
    laughs = (b'<?xml version="1.0"?><!DOCTYPE w:document [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>')
    edit_member(path, "word/document.xml", lambda xml: laughs + xml.split(b"?>", 1)[1].replace(b"Text.", b"&lol2;"))
    assert "word/document.xml declares XML entities" in refusal(path)


def test_malformed_xml_is_refused(tmp_path: Path) -> None:
    path = write_docx(tmp_path / "bad.docx", Book([paragraph("Normal", "Text.")]))
    edit_member(path, "word/document.xml", lambda xml: xml.replace(b"</w:body>", b""))
    assert "word/document.xml is not well-formed XML" in refusal(path)


def test_a_main_document_without_a_body_is_refused(tmp_path: Path) -> None:
    path = write_docx(tmp_path / "nobody.docx", Book([paragraph("Normal", "Text.")]))
    edit_member(path, "word/document.xml", lambda xml: re.sub(rb"<w:body>.*</w:body>", b"", xml, flags=re.DOTALL))
    assert "word/document.xml has no document body (w:body)" in refusal(path)


def test_a_strict_open_xml_document_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = write_docx(tmp_path / "strict.docx", Book([paragraph("Normal", "Text.")]))
    edit_member(path, "word/document.xml", lambda xml: xml.replace(
        b'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"',
        b'xmlns:w="http://purl.oclc.org/ooxml/wordprocessingml/main"'))
    assert "word/document.xml is in Strict Open XML, which is not read; save the manuscript as a Word Document" \
        in refusal(path)


def test_a_damaged_note_reference_is_dropped_not_fatal(tmp_path: Path) -> None:
    path = write_docx(tmp_path / "odd.docx", Book([paragraph("Normal", "Text."), paragraph("Normal", "More.")]))
    edit_member(path, "word/document.xml", lambda xml: xml.replace(b"<w:t>Text.</w:t>", b"<w:footnoteReference/>"))
    assert read(path, ReadOptions()).parts[0].markdown == "More.\n"


def test_deep_nesting_is_read_without_recursion_trouble_or_refused(tmp_path: Path) -> None:
    path = write_docx(tmp_path / "deep.docx", Book([paragraph("Normal", "Text.")]))
    nest = 240  # with w:document and w:body, just under the XML parser's 256 levels
    edit_member(path, "word/document.xml", lambda xml: xml.replace(
        b"<w:p>", b"<w:customXml>" * nest + b"<w:p>", 1).replace(b"</w:p>", b"</w:p>" + b"</w:customXml>" * nest, 1))
    assert read(path, ReadOptions()).parts[0].markdown == "Text.\n"
    edit_member(path, "word/document.xml", lambda xml: xml.replace(b"<w:customXml>", b"<w:customXml>" * 2)
                .replace(b"</w:customXml>", b"</w:customXml>" * 2))
    assert "word/document.xml is not well-formed XML (Excessive depth" in refusal(path)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    assert "does not exist" in refusal(tmp_path / "nope.docx")
