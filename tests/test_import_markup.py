"""The (X)HTML -> Markdown converter the EPUB, HTML and DOCX readers share (pipeline.importer.markup).

Every test checks what a listener hears: the words of ``to_spoken_text`` of the Markdown written, against
the words of the source, computed here without the converter.
"""

from __future__ import annotations

import re
from html import escape

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from pipeline.errors import SourceFileError
from pipeline.importer.languages import api_language
from pipeline.importer.markup import (
    element_text,
    escape_markdown,
    html_to_markdown,
    html_to_text,
    parse_html,
    split_sections,
)
from pipeline.text import MARKER_RE, to_spoken_text


def spoken(markdown: str) -> str:
    return to_spoken_text(markdown, markdown=True, scene_break_s=2.0)


def said(text: str) -> list[str]:
    """The words of ``text`` (what the tests expect to hear)."""
    return text.split()


def words(markdown: str) -> list[str]:
    return MARKER_RE.sub(" ", spoken(markdown)).split()


def md(html: str) -> str:
    return html_to_markdown(html, source="test.html")


# --- structure ---------------------------------------------------------------------------------------


def test_headings_paragraphs_and_whitespace_the_html_way() -> None:
    out = md("<h1>Chapter  <em>One</em></h1>\n<p>It was a\n   dark <b>night</b>.</p><h3>A   part</h3><p>Two</p>")
    assert out == "# Chapter One\n\nIt was a dark night.\n\n### A part\n\nTwo\n"


def test_br_keeps_the_line_and_the_words_apart() -> None:
    out = md("<p>Low road, salt road,<br/>carry me over,<br>the marsh has my boots</p>")
    assert out == "Low road, salt road,  \ncarry me over,  \nthe marsh has my boots\n"
    assert words(out) == said("Low road, salt road, carry me over, the marsh has my boots")
    assert words(md("<p>one<br/>two</p>")) == ["one", "two"]


def test_two_brs_start_a_new_paragraph_and_a_line_of_equals_signs_is_not_a_heading() -> None:
    assert md("<p>a<br/><br/>b</p>") == "a\n\nb\n"
    out = md("<p>Total<br/>=====</p>")
    assert words(out) == ["Total", "====="]
    assert "#" not in spoken(out)


def test_scene_breaks_become_one_pause_line_never_at_the_ends() -> None:
    html = ("<hr/><p>Before.</p><hr/><p class='center'>* * *</p><p>After.</p>"
            "<div class='scene-break'></div><p>⁂</p><p>---</p><p>End.</p><p><img src='dinkus.png' alt=''/></p><hr/>")
    assert md(html) == "Before.\n\n***\n\nAfter.\n\n***\n\nEnd.\n"
    assert spoken(md(html)) == "Before.\n\n<#2#>\n\nAfter.\n\n<#2#>\n\nEnd."


def test_an_illustration_is_not_a_scene_break_and_gives_no_words() -> None:
    html = "<p>Before.</p><p><img src='map.png' alt='A map of the marsh'/></p><p>After.</p>"
    assert md(html) == "Before.\n\nAfter.\n"


def test_a_section_break_class_with_words_in_it_keeps_the_words() -> None:
    assert md("<p class='section-break'>Later that day</p>") == "Later that day\n"


def test_lists_tables_blockquotes_become_paragraphs() -> None:
    html = ("<ul><li>first item</li><li>second <i>item</i></li></ul><ol><li>one</li></ol>"
            "<table><tr><th>Name</th><th>Age</th></tr><tr><td>Ann</td><td>9</td></tr></table>"
            "<blockquote><p>Quoted.</p><p>Twice.</p></blockquote><dl><dt>term</dt><dd>meaning</dd></dl>")
    assert md(html) == ("first item\n\nsecond item\n\none\n\nName Age\n\nAnn 9\n\nQuoted.\n\nTwice.\n\n"
                        "term\n\nmeaning\n")


def test_preformatted_text_keeps_its_lines() -> None:
    assert words(md("<pre>line one\nline two</pre>")) == ["line", "one", "line", "two"]
    assert md("<pre>line one\nline two</pre>") == "line one  \nline two\n"


def test_what_is_not_read() -> None:
    html = ("<html><head><title>Not this</title><style>p { x: y }</style><script>var a;</script></head>"
            "<body><p>Kept<img src='a.png' alt='alt text'/> words<ruby>漢<rt>kan</rt></ruby>.</p>"
            "<p hidden=''>hidden</p><svg><text>svg text</text></svg><noscript>noscript</noscript></body></html>")
    assert md(html) == "Kept words漢.\n"


def test_entities_are_decoded() -> None:
    assert words(md("<p>Tom &amp; Jerry &eacute;t&eacute; &#8212; &lt;3</p>")) == ["Tom", "&", "Jerry", "été",
                                                                                   "—", "<3"]


def test_cjk_lines_join_without_a_space() -> None:
    assert md("<p>中文\n段落</p><p>Latin\nwords</p>") == "中文段落\n\nLatin words\n"


# --- notes and page breaks -----------------------------------------------------------------------------


@pytest.mark.parametrize("mark", [
    '<a epub:type="noteref" href="#n1">1</a>',
    '<a role="doc-noteref" href="#n1">1</a>',
    '<sup><a href="#n1">1</a></sup>',
    '<a class="footnote-ref" href="#fn1"><sup>1</sup></a>',
    '<sup><a href="#footnote-1" id="footnote-ref-1">[1]</a></sup>',  # mammoth
    '<sup>[<a href="#n1">1</a>]</sup>',
    '[<a href="#n1">1</a>]',
    '<sup><a href="#n1">1</a>,<a href="#n2">2</a></sup>',
    '<a href="#_ftn1" name="_ftnref1">[1]</a>',  # Word's HTML
    '<a class="sdfootnoteanc" href="#sdfootnote1sym"><sup>1</sup></a>',  # LibreOffice
    '<a href="notes.xhtml#note-3">3</a>',
    '<span epub:type="pagebreak" id="page12">12</span>',
    '<span role="doc-pagebreak" id="p12" title="12"/>',
    '<span class="pagenum"><a id="Page_12">[Pg 12]</a></span>',
    '<span id="page_12"></span>',
])
def test_note_marks_and_page_breaks_vanish_without_touching_the_words(mark: str) -> None:
    html = (f'<p>The rain{mark} fell hard. Then{mark}, it stopped{mark}.</p>'
            '<aside epub:type="footnote" id="n1"><p>A note.</p></aside><div id="n2"></div>')
    assert md(html) == "The rain fell hard. Then, it stopped.\n"


def test_a_link_to_a_note_with_words_in_it_keeps_the_words() -> None:
    html = '<p>See <a href="#n1">the first note</a> below.</p><aside epub:type="footnote" id="n1"><p>x</p></aside>'
    assert md(html) == "See the first note below.\n"


def test_an_ordinary_link_and_a_superscript_are_text() -> None:
    assert md('<p>The <a href="ch2.xhtml#c2">second</a> chapter, x<sup>2</sup>, the 1<sup>st</sup>.</p>') == \
        "The second chapter, x2, the 1st.\n"
    assert md('<p>Chapter <a href="#ch3">3</a> follows.</p><h2 id="ch3">Three</h2>') == \
        "Chapter 3 follows.\n\n## Three\n"


@pytest.mark.parametrize("body", [
    '<aside epub:type="footnote" id="fn1"><p>Body.</p></aside>',
    '<aside epub:type="endnote" id="fn1"><p>Body.</p></aside>',
    '<div role="doc-footnote" id="fn1"><p>Body.</p></div>',
    '<aside id="fn1"><p>Body.</p></aside>',
    '<aside class="note"><p>Body.</p></aside>',
    '<section class="footnotes" role="doc-endnotes"><hr/><ol><li id="fn1"><p>Body. '
    '<a href="#fnref1" class="footnote-back">↩</a></p></li></ol></section>',  # pandoc
    '<ol><li id="footnote-1"><p>Body. <a href="#footnote-ref-1">↑</a></p></li></ol>',  # mammoth
    '<div id="ftn1"><p>Body.</p></div>',  # Word
    '<div id="sdfootnote1"><p>Body.</p></div>',  # LibreOffice
    '<p>Text<span epub:type="footnote" id="fn1">Body.</span> goes on.</p>',
])
def test_note_bodies_are_not_read_inline(body: str) -> None:
    out = md(f"<p>Story.</p>{body}<p>More story.</p>")
    assert "Body" not in out
    assert words(out)[:1] == ["Story."]
    assert words(out)[-2:] == ["More", "story."]


def test_a_note_before_the_text_does_not_make_a_notes_section() -> None:
    sections = split_sections(parse_html('<aside epub:type="footnote" id="n0"><p>Early note.</p></aside>'
                                         '<h1>Chapter</h1><p>Text.</p>', source="x"))
    assert [(s.markdown, s.semantic, s.notes_only) for s in sections] == [("# Chapter\n\nText.\n", (), False)]


def test_a_tree_of_nothing_but_notes_gives_the_notes() -> None:
    sections = split_sections(parse_html('<section epub:type="endnotes"><h1>Notes</h1><ol><li id="n1" '
                                         'epub:type="endnote"><p>One.</p></li></ol></section>', source="x"))
    assert [(s.markdown, s.notes_only) for s in sections] == [("# Notes\n\nOne.\n", True)]


# --- escaping ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "*stars* and **bold**", "_under_ and __twice__", "`code` here", "[link](http://x) and [ref][1]",
    "![image](x.png)", "<b>tag</b> and <me@example.com>", "x<y and y>z", "# not a heading", "1. not a list",
    "2) nor this", "- nor this", "+ nor this", "> not a quote", "a \\ backslash \\* and \\", "&amp; &copy; &#169;",
    "~~struck~~", "| a | b |", "{#id} attrs", "[^1] footnote", "<#1.5#> not a pause", "x<#y", "--- a", "*** b",
    "line ends with two spaces  ", "<!-- comment -->", "\\<#1#>", "***bold italic***", "1986. A good year",
])
def test_markdown_special_characters_are_text(text: str) -> None:
    out = md(f"<p>{escape(text)}</p>")
    assert words(out) == text.replace("<#", "< #").split()
    assert not MARKER_RE.search(spoken(out))


def test_escape_markdown_is_minimal_for_prose() -> None:
    assert escape_markdown("It was a dark night; she said “no”.") == "It was a dark night; she said “no”."
    assert escape_markdown("AT&T and R&D") == "AT&T and R&D"
    assert escape_markdown("1. a") == "1\\. a"
    assert escape_markdown("<#2#>") == "\\< \\#2\\#\\>"


_SPECIALS = "*_`[]<>#~|\\&;!()-+.=:{}^$\"'/@0123456789"


@given(st.text(alphabet=st.sampled_from(list(_SPECIALS) + list("abcXYZ é中") + [" ", " ", "\n", "\t"]),
               min_size=1, max_size=40))
def test_any_text_survives_word_for_word(text: str) -> None:
    if not re.search(r"\w", text):
        return  # a paragraph of nothing but symbols may be a scene break (tested above)
    out = md(f"<p>{escape(text)}</p>")
    assert words(out) == text.replace("<#", "< #").split()
    assert not MARKER_RE.search(spoken(out))


@given(st.lists(st.text(alphabet=st.sampled_from(list(_SPECIALS) + list("abc ")), min_size=1, max_size=12),
                min_size=2, max_size=4))
def test_any_verse_survives_word_for_word(lines: list[str]) -> None:
    if not all(re.search(r"\w", line) for line in lines):
        return
    out = md("<p>" + "<br/>".join(escape(line) for line in lines) + "</p>")
    assert words(out) == " ".join(line.replace("<#", "< #") for line in lines).split()


# --- sections, plain text, languages ----------------------------------------------------------------------


def test_split_sections_cuts_at_chosen_elements() -> None:
    root = parse_html('<body epub:type="bodymatter"><p>Front.</p><section epub:type="chapter" id="a"><h1>A</h1>'
                      '<p>Text a.</p></section><section id="b"><h2><a id="x"></a>B</h2><p>Text b.</p></section>'
                      '</body>', source="x")
    sections = split_sections(root, starts=lambda e: e.get("id") in ("a", "x"))
    assert [s.markdown for s in sections] == ["Front.\n", "# A\n\nText a.\n", "## B\n\nText b.\n"]
    assert [s.heading for s in sections] == [None, "A", "B"]
    assert sections[1].semantic == ("bodymatter", "chapter")
    assert "a" in sections[1].ids and "x" in sections[2].ids


def test_split_sections_cut_at_the_very_start_gives_one_section() -> None:
    root = parse_html('<body><section id="a"><h1>A</h1><p>Text.</p></section></body>', source="x")
    sections = split_sections(root, starts=lambda e: e.get("id") == "a")
    assert len(sections) == 1
    assert sections[0].start is not None and sections[0].start.get("id") == "a"


def test_element_text_is_a_plain_label() -> None:
    root = parse_html("<a href='x'>Chapter 1<br/>The <em>*Beginning*</em><img src='x.png' alt='no'/></a>", source="x")
    assert element_text(root) == "Chapter 1 The *Beginning*"
    assert html_to_text("<p>A <b>bold</b> claim.</p><p>Second.</p>", source="x") == "A bold claim. Second."


def test_deep_nesting_does_not_overflow() -> None:
    root = etree.Element("div")
    node = root
    for _ in range(5_000):  # far past Python's recursion limit (parsers stop at 256 levels)
        node = etree.SubElement(node, "span")
    node.text = "deep"
    assert split_sections(root)[0].markdown == "deep\n"


def test_nesting_deeper_than_the_parser_reads_is_refused_not_truncated() -> None:
    assert html_to_markdown("<div>" * 200 + "deep" + "</div>" * 200, source="x") == "deep\n"
    with pytest.raises(SourceFileError, match=r"x.html: nests elements more than 256 levels deep"):
        html_to_markdown("<div>" * 300 + "deep" + "</div>" * 300, source="x.html")


def test_entity_declarations_in_html_are_refused() -> None:
    with pytest.raises(SourceFileError, match=r"x.html: declares entities"):
        html_to_markdown('<!DOCTYPE html [<!ENTITY a "aaaa">]><p>&a;</p>', source="x.html")


def test_bytes_must_be_utf8() -> None:
    assert html_to_markdown("<p>été</p>".encode(), source="x") == "été\n"
    with pytest.raises(SourceFileError, match=r"x: is not valid UTF-8 HTML \(byte 0xe9"):
        html_to_markdown("<p>été</p>".encode("latin-1"), source="x")


@pytest.mark.parametrize("tag, name", [("en", "English"), ("en-GB", "English"), ("EN_us", "English"),
                                       ("zh-CN", "Chinese"), ("zh-Hant-TW", "Chinese"), ("yue", "Chinese,Yue"),
                                       ("zh-yue", "Chinese,Yue"), ("fre", "French"), ("deu", "German"),
                                       ("nb", "Norwegian"), ("no", "Norwegian"), ("nn", "Nynorsk"),
                                       ("pt-BR", "Portuguese"), ("xx", "auto"), ("", "auto"), (None, "auto"),
                                       ("la", "auto"), ("English", "English"), ("german", "German"),
                                       ("English, French", "English"), ("Chinese,Yue", "Chinese,Yue"),
                                       ("Latin", "auto")])
def test_api_language(tag: str | None, name: str) -> None:
    assert api_language(tag) == name
