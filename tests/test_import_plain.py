"""pipeline.importer.plain: Markdown and plain-text manuscripts -> parts (issue 13, items 5 and 6).

Text preservation is checked word for word: the words the project's reader speaks from each part's
Markdown equal the words of that part's lines in the source, found here independently of the reader
(after removing only what item 5 says to remove: the Gutenberg header and footer, rule lines that are
scene breaks, ``[Illustration]`` markers; Gutenberg's ``_italic_`` underscores are emphasis).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.errors import SourceFileError
from pipeline.importer.model import SKIP_REASONS, ReadOptions, SourceBook, SourcePart
from pipeline.importer.plain import read
from pipeline.text import MARKER_RE, to_spoken_text

CORPORA = Path(os.environ.get("CORPORA") or Path(__file__).resolve().parents[2] / "shared" / "corpora")
needs_corpora = pytest.mark.skipif(not CORPORA.is_dir(), reason=f"shared corpora not found at {CORPORA}")

ALICE_TITLES = [
    "Chapter I. Down the Rabbit-Hole", "Chapter II. The Pool of Tears",
    "Chapter III. A Caucus-Race and a Long Tale", "Chapter IV. The Rabbit Sends in a Little Bill",
    "Chapter V. Advice from a Caterpillar", "Chapter VI. Pig and Pepper", "Chapter VII. A Mad Tea-Party",
    "Chapter VIII. The Queen’s Croquet-Ground", "Chapter IX. The Mock Turtle’s Story",
    "Chapter X. The Lobster Quadrille", "Chapter XI. Who Stole the Tarts?", "Chapter XII. Alice’s Evidence",
]

# The header and footer of a current Project Gutenberg file (eBook #11), licence abridged.
GUTENBERG_HEADER = """\
The Project Gutenberg eBook of Alice's Adventures in Wonderland, by Lewis Carroll

This eBook is for the use of anyone anywhere in the United States and
most other parts of the world at no cost and with almost no restrictions
whatsoever. You may copy it, give it away or re-use it under the terms
of the Project Gutenberg License included with this eBook or online at
www.gutenberg.org. If you are not located in the United States, you
will have to check the laws of the country where you are located before
using this eBook.

Title: Alice's Adventures in Wonderland

Author: Lewis Carroll

Release Date: January, 1991 [eBook #11]
[Most recently updated: October 12, 2020]

Language: English

Character set encoding: UTF-8

Produced by: Arthur DiBianca and David Widger

*** START OF THE PROJECT GUTENBERG EBOOK ALICE'S ADVENTURES IN WONDERLAND ***

"""
GUTENBERG_FOOTER = """

*** END OF THE PROJECT GUTENBERG EBOOK ALICE'S ADVENTURES IN WONDERLAND ***

Updated editions will replace the previous one--the old editions will
be renamed.

START: FULL LICENSE

THE FULL PROJECT GUTENBERG LICENSE
PLEASE READ THIS BEFORE YOU DISTRIBUTE OR USE THIS WORK

To protect the Project Gutenberg-tm mission of promoting the free
distribution of electronic works, by using or distributing this work
(or any other work associated in any way with the phrase "Project
Gutenberg"), you agree to comply with all the terms of the Full
Project Gutenberg-tm License available with this file or online at
www.gutenberg.org/license.

Section 1. General Terms of Use and Redistributing Project
Gutenberg-tm electronic works

CHAPTER 1. This line looks like a chapter heading and must never be read.

1.A. By reading or using any part of this Project Gutenberg-tm
electronic work, you indicate that you have read, understand, agree to
and accept all the terms of this license and intellectual property
(trademark/copyright) agreement.
"""
# An early-1990s file: the small print comes first and ends the header.
OLD_GUTENBERG_HEADER = """\
**The Project Gutenberg Etext of Alice in Wonderland, by Lewis Carroll**

Copyright laws are changing all over the world, be sure to check
the laws for your country before redistributing these files!!!

**Welcome To The World of Free Plain Vanilla Electronic Texts**

***START**THE SMALL PRINT!**FOR PUBLIC DOMAIN ETEXTS**START***
Why is this "Small Print!" statement here?  You know: lawyers.
They tell us you might sue us if there is something wrong with
your copy of this etext, even if you got it for free from
someone other than us, and even if what's wrong is not our
fault.
*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*

"""
OLD_GUTENBERG_FOOTER = """

End of the Project Gutenberg Etext of Alice in Wonderland

This and all associated files of various formats will be found in
the Project Gutenberg archive; the lawyers insist on this line.
"""


# --- helpers ----------------------------------------------------------------------------------------------

def spoken_words(markdown: str) -> list[str]:
    """The words the project's reader speaks from ``markdown``; an underscore of emphasis left by a
    reader that does not take emphasis across a line break is not a word."""
    text = MARKER_RE.sub(" ", to_spoken_text(markdown, markdown=True, scene_break_s=2.0))
    return [w for w in (word.replace("_", "") for word in text.split()) if w]


def words_of(lines: list[str]) -> list[str]:
    """The words of source lines: rule lines (scene breaks) and [Illustration] lines carry none;
    Gutenberg's _italic_ underscores are emphasis."""
    kept = [line for line in lines
            if not re.fullmatch(r"\s*(?:\*\s*){3,}", line) and line.strip() != "[Illustration]"]
    return [w for w in (word.replace("_", "") for word in " ".join(kept).split()) if w]


def part_lines(part: SourcePart, lines: list[str], offset: int = 0) -> list[str]:
    m = re.fullmatch(r"lines? (\d+)(?:-(\d+))?", part.origin)
    assert m, part.origin
    first, last = int(m[1]), int(m[2] or m[1])
    return lines[first - 1 - offset:last - offset]


def write(tmp_path: Path, name: str, data: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


def read_text(tmp_path: Path, text: str, *, name: str = "book.txt", **options: object) -> SourceBook:
    return read(write(tmp_path, name, text), ReadOptions(**options))  # type: ignore[arg-type]


def chapters(book: SourceBook) -> list[SourcePart]:
    return [p for p in book.parts if p.skip is None]


def layout(book: SourceBook) -> list[tuple[str, str | None]]:
    return [(p.title, p.skip) for p in book.parts]


# --- Alice (Project Gutenberg) ----------------------------------------------------------------------------

@needs_corpora
def test_alice_has_twelve_chapters_in_order_with_their_titles_and_a_skipped_contents() -> None:
    book = read(CORPORA / "alice.txt", ReadOptions())
    assert layout(book) == [("Alice’s Adventures in Wonderland", "title page"), ("Contents", "table of contents"),
                            *((title, None) for title in ALICE_TITLES)]
    assert (book.title, book.author, book.language) == ("Alice’s Adventures in Wonderland", "Lewis Carroll", "English")
    assert all(p.skip in SKIP_REASONS for p in book.parts if p.skip)
    assert chapters(book)[0].markdown.startswith("# CHAPTER I. Down the Rabbit-Hole\n\nAlice was beginning to get")
    assert chapters(book)[-1].markdown.endswith("remembering her own child-life, and the happy summer\ndays.\n\n"
                                                "THE END\n")


@needs_corpora
def test_alice_keeps_every_word_of_every_part() -> None:
    lines = (CORPORA / "alice.txt").read_text(encoding="utf-8").split("\n")
    starts = [i for i, line in enumerate(lines) if re.fullmatch(r"CHAPTER [IVX]+\.", line)]
    assert len(starts) == 12
    book = read(CORPORA / "alice.txt", ReadOptions())
    for part, start, end in zip(chapters(book), starts, [*starts[1:], len(lines)]):
        assert spoken_words(part.markdown) == words_of(lines[start:end]), part.title
    contents = book.parts[1]
    assert spoken_words(contents.markdown) == words_of(lines[lines.index("Contents"):starts[0]])
    everything = [w for p in book.parts for w in spoken_words(p.markdown)]
    assert everything == words_of(lines)


@needs_corpora
@pytest.mark.parametrize("variant", ["current", "old"])
def test_a_gutenberg_header_and_footer_are_removed_and_never_read(tmp_path: Path, variant: str) -> None:
    alice = (CORPORA / "alice.txt").read_text(encoding="utf-8")
    header, footer = (GUTENBERG_HEADER, GUTENBERG_FOOTER) if variant == "current" else \
        (OLD_GUTENBERG_HEADER, OLD_GUTENBERG_FOOTER)
    source = write(tmp_path, "pg11.txt", ("\ufeff" + header + alice + footer).replace("\n", "\r\n").encode("utf-8"))
    book = read(source, ReadOptions())
    plain = read(CORPORA / "alice.txt", ReadOptions())
    assert layout(book) == layout(plain)
    assert [p.markdown for p in book.parts] == [p.markdown for p in plain.parts]
    for part in book.parts:
        assert not re.search(r"gutenberg|licen[cs]e|small print|lawyers", part.markdown, re.IGNORECASE), part.title
    if variant == "current":
        assert (book.title, book.author, book.language, book.year) == (
            "Alice's Adventures in Wonderland", "Lewis Carroll", "English", 1991)
    else:
        assert (book.title, book.author) == ("Alice in Wonderland", "Lewis Carroll")
    assert any("Project Gutenberg header" in note and "footer and licence" in note for note in book.notes)


def test_gutenberg_metadata_maps_the_language_and_joins_a_wrapped_title(tmp_path: Path) -> None:
    text = ("Title: Die Verwandlung\n       Eine Erzählung\n\nAuthor: Franz Kafka\n\nRelease date: August 16, 2005 "
            "[eBook #5200]\n\nLanguage: German\n\n*** START OF THIS PROJECT GUTENBERG EBOOK DIE VERWANDLUNG ***\n\n"
            "I\n\nAls Gregor Samsa eines Morgens aus unruhigen Träumen erwachte.\n\n"
            "*** END OF THIS PROJECT GUTENBERG EBOOK DIE VERWANDLUNG ***\n\nLicence text.\n")
    book = read_text(tmp_path, text)
    assert (book.title, book.author, book.language, book.year) == (
        "Die Verwandlung Eine Erzählung", "Franz Kafka", "German", 2005)
    assert [p.markdown for p in book.parts] == ["I\n\nAls Gregor Samsa eines Morgens aus unruhigen Träumen erwachte.\n"]


# --- Hongloumeng (Chinese chapter headings) ---------------------------------------------------------------

@needs_corpora
def test_hongloumeng_has_its_120_chapters_with_their_titles_and_every_word() -> None:
    source = CORPORA / "hongloumeng.txt"
    lines = source.read_text(encoding="utf-8").replace("\r\n", "\n").split("\n")
    starts = [i for i, line in enumerate(lines) if re.match(r"第[一二三四五六七八九十零百]+回[ \u3000]", line)]
    assert len(starts) == 120
    book = read(source, ReadOptions())
    assert (book.title, book.author, book.language) == ("红楼梦", "曹雪芹", "Chinese")
    assert layout(book) == [("《红楼梦》曹雪芹", "title page"), *((" ".join(lines[i].split()), None) for i in starts)]
    titles = [p.title for p in chapters(book)]
    assert titles[0] == "第一回 甄士隐梦幻识通灵 贾雨村风尘怀闺秀"
    assert titles[9] == "第十回 金寡妇贪利权受辱 张太医论病细穷源"
    assert titles[115] == "第一一六回 得通灵幻境悟仙缘 送慈柩故乡全孝道"
    assert titles[-1] == "第一二零回 甄士隐详说太虚情 贾雨村归结红楼梦"
    for part, start, end in zip(chapters(book), starts, [*starts[1:], len(lines)]):
        assert spoken_words(part.markdown) == words_of(lines[start:end]), part.title
    # A paragraph that opens with "第四回中..." or "第三十八回林..." is prose, not a heading.
    assert "\n\n第四回中既将薛家母子在荣府内寄居等事略已表明" in chapters(book)[4].markdown


# --- chapter headings in plain text -----------------------------------------------------------------------

def test_chapter_like_lines_start_chapters_and_prose_mentions_do_not(tmp_path: Path) -> None:
    text = ("Chapter 12\n\nChapter 12 was long, she said.\nCHAPTER 3 is\nwhere it ends.\n\n"
            "Chapter Twelve: The End\n\nIt ended.\n\nBOOK II\n\nA new book.\n\n"
            "PART ONE\nCHAPTER 1\n\nThe part begins.\n\n"
            "第1章\n\n开始．\n\n第十二章 风起\n\n风起了．\n\nChapter the Last\n\nNot a heading.\n")
    book = read_text(tmp_path, text)
    assert layout(book) == [("Chapter 12", None), ("Chapter Twelve: The End", None), ("Book II", None),
                            ("Part One: Chapter 1", None), ("第1章", None), ("第十二章 风起", None)]
    assert book.parts[0].markdown == "# Chapter 12\n\nChapter 12 was long, she said.\nCHAPTER 3 is\nwhere it ends.\n"
    assert book.parts[3].markdown == "# PART ONE\n\n# CHAPTER 1\n\nThe part begins.\n"
    assert book.parts[-1].markdown == "# 第十二章 风起\n\n风起了．\n\nChapter the Last\n\nNot a heading.\n"
    assert all(p.origin.startswith("line") for p in book.parts)


def test_a_bare_heading_takes_its_title_line(tmp_path: Path) -> None:
    text = "CHAPTER I.\nDown the Rabbit-Hole\n\nAlice was tired.\n\nChapter 2\nThe Pool of Tears\n\nShe cried.\n"
    book = read_text(tmp_path, text)
    assert layout(book) == [("Chapter I. Down the Rabbit-Hole", None), ("Chapter 2: The Pool of Tears", None)]
    assert book.parts[1].markdown == "# Chapter 2 The Pool of Tears\n\nShe cried.\n"


def test_a_heading_run_with_no_text_between_is_one_contents_part(tmp_path: Path) -> None:
    text = ("A Book\n\nby Some One\n\n"
            "Chapter 1. Morning\n\nChapter 2. Noon\n\nChapter 3. Night\n\n"
            "Chapter 1. Morning\n\nThe sun rose.\n\nChapter 2. Noon\n\nIt was hot.\n\nChapter 3. Night\n\nDark.\n")
    book = read_text(tmp_path, text)
    assert layout(book) == [("A Book", "title page"), ("Contents", "table of contents"), ("Chapter 1. Morning", None),
                            ("Chapter 2. Noon", None), ("Chapter 3. Night", None)]
    assert (book.title, book.author) == ("A Book", "Some One")
    assert book.parts[1].markdown == "Chapter 1. Morning\n\nChapter 2. Noon\n\nChapter 3. Night\n"


def test_a_contents_list_followed_by_untitled_text_keeps_that_text_as_its_own_part(tmp_path: Path) -> None:
    text = ("CONTENTS\n\nChapter 1\nChapter 2\n\nA word before we begin, read aloud.\n\n"
            "Chapter 1\n\nOne.\n\nChapter 2\n\nTwo.\n")
    book = read_text(tmp_path, text)
    assert layout(book) == [("CONTENTS", "table of contents"), ("A word before we begin, read aloud.", None),
                            ("Chapter 1", None), ("Chapter 2", None)]


def test_the_chapter_pattern_starts_chapters_too(tmp_path: Path) -> None:
    text = "Opening words.\n\n§ 1\n\nFirst.\n\n§ 2 — Later\n\nSecond.\n"
    book = read_text(tmp_path, text, chapter_pattern=re.compile(r"§ \d+(?: — .+)?"))
    assert layout(book) == [("Opening words.", None), ("§ 1", None), ("§ 2 — Later", None)]


def test_a_text_without_headings_is_one_part_and_says_so(tmp_path: Path) -> None:
    book = read_text(tmp_path, "Just one story.\nOn two lines.\n", name="story.txt")
    assert layout(book) == [("Just one story.", None)]
    assert book.title == "story"
    assert any("no chapter headings" in note for note in book.notes)


def test_plain_text_becomes_markdown_that_reads_the_same_words(tmp_path: Path) -> None:
    body = ("# not a heading\n1. not a list\n2) nor this\n- a dash\n+ a plus\n> not a quote\n"
            "*stars* and **bold**, snake_case_name, `ticks`, [brackets](x) and ![bang](y)\n"
            "<tag> <me@example.com> x<y and y>z, a \\ backslash, \\* escaped, a | b | c\n"
            "{#id} and ~~strike~~ and [^1] and <!-- not a comment --> and Fish &amp; chips &#169;\n"
            "    indented four spaces\n\tand a tab\n"
            "\nHe said _very_ and _took a\nwatch_ and “_Everybody_” and _Un_important.\n")
    book = read_text(tmp_path, "Chapter 1\n\n" + body)
    (part,) = book.parts
    assert part.markdown.startswith("# Chapter 1\n\n\\# not a heading\n1\\. not a list\n2\\) nor this\n"
                                    "\\- a dash\n\\+ a plus\n\\> not a quote\n"
                                    "\\*stars\\* and \\*\\*bold\\*\\*, snake\\_case\\_name")
    assert "_very_" in part.markdown and "_took a\nwatch_" in part.markdown and "“_Everybody_”" in part.markdown
    assert "\nindented four spaces\nand a tab\n" in part.markdown
    assert spoken_words(part.markdown) == words_of(["Chapter 1", *body.split("\n")])


def test_an_entity_is_escaped_so_it_is_read_as_written(tmp_path: Path) -> None:
    book = read_text(tmp_path, "Fish &amp; chips &#169; & co.\n")
    assert book.parts[0].markdown == "Fish \\&amp; chips \\&#169; & co.\n"


def test_a_pause_marker_in_plain_text_stays_a_pause_marker(tmp_path: Path) -> None:
    (part,) = read_text(tmp_path, "Wait.<#1.5#> Then <b> go.\n").parts
    assert part.markdown == "Wait.<#1.5#> Then \\<b> go.\n"
    assert to_spoken_text(part.markdown, markdown=True, scene_break_s=2.0) == "Wait.<#1.5#> Then <b> go."


def test_rule_lines_become_one_scene_break_and_illustrations_are_dropped(tmp_path: Path) -> None:
    text = ("Chapter 1\n\nBefore.\n\n*      *      *\n\n    *      *      *\n\n*      *      *\n\nAfter.\n\n-----\n\n"
            "[Illustration: A caption\nover two lines]\n\nEnd.\n")
    (part,) = read_text(tmp_path, text).parts
    assert part.markdown == "# Chapter 1\n\nBefore.\n\n* * *\n\nAfter.\n\n* * *\n\nEnd.\n"
    assert to_spoken_text(part.markdown, markdown=True, scene_break_s=2.0) == "Chapter 1\n\nBefore.\n\n<#2#>\n\n" \
        "After.\n\n<#2#>\n\nEnd."


def test_front_matter_in_plain_text_is_a_part_classified_like_any_other(tmp_path: Path) -> None:
    text = ("Copyright © 2020 Some One. All rights reserved. ISBN 978-3-16-148410-0\n\n"
            "Chapter 1\n\nStory.\n")
    book = read_text(tmp_path, text)
    assert layout(book) == [("Copyright © 2020 Some One. All rights reserved. ISBN 978-3-16-148410-0", "copyright"),
                            ("Chapter 1", None)]


def test_a_language_is_recognised_only_when_the_text_makes_it_certain(tmp_path: Path) -> None:
    assert read_text(tmp_path, "Xyzzy plugh quux.\n").language == "auto"
    assert read_text(tmp_path, "こんにちは、世界。これは日本語の文章です。\n").language == "Japanese"
    assert read_text(tmp_path, "这是一个中文句子．\n").language == "Chinese"


@pytest.mark.parametrize(("declared", "expected"), [
    ("English", "English"), ("german", "German"), ("en-GB", "English"), ("zh-Hans", "Chinese"),
    ("Chinese,Yue", "Chinese,Yue"), ("English, French", "English"), ("Klingon", "auto"),
])
def test_a_declared_language_maps_to_an_api_name(tmp_path: Path, declared: str, expected: str) -> None:
    book = read_text(tmp_path, f"---\nlanguage: {declared}\n---\n\n# One\n\nText.\n", name="b.md")
    assert book.language == expected
    assert (expected == "auto") == any("not one the API reads" in note for note in book.notes)
    gutenberg = read_text(tmp_path, f"Language: {declared}\n\n*** START OF THE PROJECT GUTENBERG EBOOK X ***\n\n"
                                    "Text.\n")
    assert gutenberg.language == expected


# --- Markdown ---------------------------------------------------------------------------------------------

MARKDOWN_BOOK = """\
---
title: The Lighthouse
author: [Ann Smith, Bo Lee]
language: en-GB
date: 2021-03-04
description: A short book.
---

For the keepers.

# Chapter One

The ferry left at *dawn*.

```
# not a heading
```

~~~text
# nor this
~~~

<!--
# an editor's note, not a heading
-->

Chapter Two
===========

The second chapter.

## A section

    # indented code, not a heading

More.

# Contents

A list of chapters.

CHAPTER III.
The Storm

Rain fell.
"""


def test_markdown_chapters_start_at_headings_outside_code_and_comments(tmp_path: Path) -> None:
    book = read_text(tmp_path, MARKDOWN_BOOK, name="light.md")
    assert layout(book) == [("For the keepers.", None), ("Chapter One", None), ("Chapter Two", None),
                            ("Contents", "table of contents"), ("Chapter III. The Storm", None)]
    assert (book.title, book.author, book.language, book.year, book.description) == (
        "The Lighthouse", "Ann Smith, Bo Lee", "English", 2021, "A short book.")
    lines = MARKDOWN_BOOK.split("\n")
    # The Markdown is kept as written: each part is its lines of the source, and together they are the
    # whole file but its front matter.
    for part in book.parts:
        assert part.markdown == "\n".join(part_lines(part, lines)).strip("\n") + "\n"
    assert "".join(p.markdown for p in book.parts).split() == "\n".join(lines[7:]).split()
    assert not any("title:" in p.markdown for p in book.parts)
    assert any("front matter" in note for note in book.notes)


def test_markdown_split_level_two_cuts_at_the_level_below(tmp_path: Path) -> None:
    text = "# The Book\n\n## One\n\nFirst.\n\n## Two\n\nSecond.\n\n### Detail\n\nStill two.\n"
    book = read_text(tmp_path, text, name="b.md", split_level=2)
    assert book.title == "The Book"
    assert layout(book) == [("The Book", "title page"), ("One", None), ("Two", None)]
    assert read_text(tmp_path, text, name="b.md").parts == (SourcePart("The Book", text, "lines 1-14"),)


def test_markdown_title_comes_from_the_first_heading_else_the_file_name(tmp_path: Path) -> None:
    assert read_text(tmp_path, "Intro.\n\n# First\n\nText.\n", name="x.md").title == "First"
    assert read_text(tmp_path, "Just text.\n", name="my-novel.md").title == "my-novel"


def test_broken_front_matter_is_not_read_aloud(tmp_path: Path) -> None:
    book = read_text(tmp_path, "---\ntitle: [unclosed\nauthor: x\n---\n\n# One\n\nText.\n", name="b.md")
    assert layout(book) == [("One", None)]
    assert book.parts[0].markdown == "# One\n\nText.\n"
    assert any("not valid YAML" in note for note in book.notes)
    date = read_text(tmp_path, "---\ndate: 2020-13-45\n---\n\n# One\n\nText.\n", name="c.md")
    assert layout(date) == [("One", None)] and date.year is None


def test_a_thematic_break_at_the_top_is_not_front_matter(tmp_path: Path) -> None:
    text = "---\n\nA scene.\n\n---\n\nAnother.\n"
    book = read_text(tmp_path, text, name="b.md")
    assert [p.markdown for p in book.parts] == [text]


def test_setext_dashes_under_a_list_item_are_a_rule_not_a_heading(tmp_path: Path) -> None:
    text = "# One\n\n- an item\n---\n\n> a quote\n---\n\nText.\n"
    assert layout(read_text(tmp_path, text, name="b.md")) == [("One", None)]


@needs_corpora
def test_alice_as_markdown_has_the_same_parts(tmp_path: Path) -> None:
    text = (CORPORA / "alice.txt").read_text(encoding="utf-8")
    book = read_text(tmp_path, text, name="alice.md")
    # Markdown is kept as written, "[Illustration]" and all: it names the front part.
    assert layout(book) == [("[Illustration]", "title page"), *layout(read(CORPORA / "alice.txt", ReadOptions()))[1:]]
    assert book.title == "Alice’s Adventures in Wonderland"


def test_a_markdown_contents_paragraph_is_one_skipped_part(tmp_path: Path) -> None:
    text = ("Chapter 1. Morning\nChapter 2. Noon\nEpilogue\n\n"
            "# Chapter 1. Morning\n\nSun.\n\n# Chapter 2. Noon\n\nHot.\n")
    book = read_text(tmp_path, text, name="b.md")
    assert layout(book) == [("Contents", "table of contents"), ("Chapter 1. Morning", None), ("Chapter 2. Noon", None)]


def test_markdown_chapter_like_paragraphs_and_pattern(tmp_path: Path) -> None:
    text = "**CHAPTER I.**\n\nOne.\n\nChapter 2 was hard, and\nit went on.\n\n## Scene 3\n\nThree.\n"
    book = read_text(tmp_path, text, name="b.md", chapter_pattern=re.compile(r"## Scene \d+"))
    assert layout(book) == [("Chapter I.", None), ("Scene 3", None)]


# --- bad files --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("data", "expected"), [
    (b"PK\x03\x04\x00\x00binary", "binary"),
    ("Hello there".encode("utf-16"), "UTF-16"),
    (b"Good line\nbad \xff byte\n", "not valid UTF-8 (byte 0xff); re-save it as UTF-8 (line 2, column 5)"),
    (b"   \n\n", "empty"),
])
@pytest.mark.parametrize("name", ["book.txt", "book.md"])
def test_undecodable_files_are_refused_with_one_line_naming_the_file(tmp_path: Path, data: bytes, expected: str,
                                                                      name: str) -> None:
    path = write(tmp_path, name, data)
    with pytest.raises(SourceFileError) as info:
        read(path, ReadOptions())
    message = str(info.value)
    assert message.startswith(f"{path}: ") and expected in message and "\n" not in message


def test_missing_folders_and_other_suffixes_are_refused(tmp_path: Path) -> None:
    for path, expected in [(tmp_path / "nope.txt", "does not exist"), (_folder(tmp_path / "folder.txt"), "is a folder"),
                           (write(tmp_path, "x.rtf", "{\\rtf1}"), "not a Markdown or plain-text file")]:
        with pytest.raises(SourceFileError, match=re.escape(expected)):
            read(path, ReadOptions())


def _folder(path: Path) -> Path:
    path.mkdir()
    return path


_LINES = st.sampled_from(["", "", "Text here.", "CHAPTER I.", "Chapter 2", "Contents", "# Heading", "## Sub",
                          "=====", "-----", "---", "```", "~~~", "<!--", "-->", "* * *", "title: x", "第一回 风",
                          "    code", "- item", "> quote", "_it_ and *b*", "[Illustration]", "by Someone",
                          "*** START OF THE PROJECT GUTENBERG EBOOK X ***", "*** END OF THE PROJECT GUTENBERG EBOOK",
                          "Title: T", "Language: fr"])


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.one_of(_LINES, st.text(max_size=12)), min_size=1, max_size=30),
       suffix=st.sampled_from([".txt", ".md"]))
def test_any_text_gives_a_book_or_a_source_file_error(tmp_path: Path, lines: list[str], suffix: str) -> None:
    path = write(tmp_path, f"fuzz{suffix}", "\n".join(lines).encode("utf-8", "surrogatepass"))
    try:
        book = read(path, ReadOptions())
    except SourceFileError:
        return
    assert book.parts and all(p.skip is None or p.skip in SKIP_REASONS for p in book.parts)
    if suffix == ".md":  # kept as written: every line is in a part, but the front matter's
        kept = "".join(p.markdown for p in book.parts).split()
        whole = path.read_text(encoding="utf-8").split()
        assert kept == whole[len(whole) - len(kept):]
        assert kept == whole or any("front matter" in note for note in book.notes)
