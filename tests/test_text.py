"""pipeline.text: decoding sources, validating pause markers, Markdown to spoken text (issue 2, item 4)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.text import (
    MARKER_RE,
    SourceError,
    billed_chars,
    check_markers,
    decode_source,
    format_pause,
    marker_seconds,
    merge_markers,
    read_source,
    spoken_only,
    to_spoken_text,
)


def spoken(raw: str, *, markdown: bool = True, scene_break_s: float = 2.0) -> str:
    return to_spoken_text(raw, markdown=markdown, scene_break_s=scene_break_s)


def problem_of(data: bytes):
    with pytest.raises(SourceError) as info:
        decode_source(data)
    (problem,) = info.value.problems
    return problem


# --- decoding ------------------------------------------------------------------------------------

def test_utf8_with_bom_and_crlf_is_fine() -> None:
    assert decode_source(b"\xef\xbb\xbfFirst line.\r\nSecond line.\r\n") == "First line.\nSecond line.\n"


def test_old_mac_line_ends_become_newlines() -> None:
    assert decode_source(b"One.\rTwo.\r") == "One.\nTwo.\n"


def test_nul_bytes_mean_binary_even_far_into_the_file() -> None:
    assert "binary" in problem_of(b"PK\x03\x04\x00\x00").message
    assert "binary" in problem_of(b"a" * 100_000 + b"\x00").message


def test_many_control_characters_mean_binary() -> None:
    assert "binary" in problem_of(bytes(range(1, 32)) * 10).message


def test_utf16_is_named_with_a_fix() -> None:
    problem = problem_of("Hello".encode("utf-16"))
    assert "UTF-16" in problem.message and "UTF-8" in problem.message


def test_invalid_utf8_names_line_and_character_column() -> None:
    problem = problem_of("line one\nnaïve \u00e9t\u00e9 ".encode() + b"\xff rest\n")
    assert (problem.line, problem.column) == (2, 11)
    assert "0xff" in problem.message and "re-save it as UTF-8" in problem.message


def test_invalid_utf8_column_ignores_the_bom_and_counts_cr_lines() -> None:
    problem = problem_of(b"\xef\xbb\xbfab\xfe")
    assert (problem.line, problem.column) == (1, 3)
    assert "0xfe" in problem.message
    problem = problem_of(b"one\r\ntwo\rthr\xc3")
    assert (problem.line, problem.column) == (3, 4)


@pytest.mark.parametrize("data", [b"", b"   \n\r\n\t  ", b"\xef\xbb\xbf"])
def test_empty_text_is_an_error_unless_allowed(data: bytes) -> None:
    assert "empty" in problem_of(data).message
    assert decode_source(data, allow_empty=True).strip() == ""


def test_read_source_reports_missing_and_folder(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        read_source(tmp_path / "nope.txt")
    with pytest.raises(SourceError, match="is a folder"):
        read_source(tmp_path)
    (tmp_path / "ok.md").write_bytes(b"# Hi\r\n")
    assert read_source(tmp_path / "ok.md") == "# Hi\n"


# --- markers -------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["<#0.01#>", "<#99.99#>", "<#1#>", "<#1.5#>", "<#01.50#>", "a<#2#>b<#3.25#>c",
                                  "no markers # at all >", "#> alone"])
def test_valid_markers_have_no_problems(text: str) -> None:
    assert check_markers(text) == []


@pytest.mark.parametrize("text, needle", [
    ("<#1.5", "not closed"),
    ("<#1.5\n#>", "not closed"),
    ("<#abc#>", "not a number"),
    ("<# 1 #>", "not a number"),
    ("<#1.#>", "not a number"),
    ("<#.5#>", "not a number"),
    ("<#1.234#>", "more than two decimals"),
    ("<#0#>", "out of range"),
    ("<#0.00#>", "out of range"),
    ("<#100#>", "out of range"),
    ("<#099#>", "leading zeros"),
])
def test_malformed_markers_are_named_with_a_fix(text: str, needle: str) -> None:
    (problem,) = check_markers(text)
    assert needle in problem.message
    assert re.search(r"<#\d", problem.message.split(";")[-1]), "the message shows a correct marker"


def test_every_malformed_marker_is_located_by_line_and_column() -> None:
    text = "Fine <#1#> here.\nBad <#1.234#> and <#x#>\n\n  <#100#>"
    assert [(p.line, p.column) for p in check_markers(text)] == [(2, 5), (2, 19), (4, 3)]


@pytest.mark.parametrize("seconds, marker", [
    (1, "<#1#>"), (1.5, "<#1.5#>"), (1.25, "<#1.25#>"), (2.0, "<#2#>"), (0.001, "<#0.01#>"),
    (0, "<#0.01#>"), (99.999, "<#99.99#>"), (250, "<#99.99#>"), (1.005, "<#1#>"), (10.1, "<#10.1#>"),
])
def test_format_pause_is_always_a_valid_marker(seconds: float, marker: str) -> None:
    assert format_pause(seconds) == marker
    assert check_markers(marker) == [] and MARKER_RE.fullmatch(marker)


@pytest.mark.parametrize("text, merged", [
    ("a <#1#> <#2#> b", "a <#3#> b"),
    ("a<#1#><#2.5#>b", "a<#3.5#>b"),
    ("a <#1#>\n\n<#2#> b", "a <#3#>\n\nb"),
    ("P1.\n\n<#2#>\n\n<#2#>\n\nP2.", "P1.\n\n<#4#>\n\nP2."),
    ("P1.\n\n<#2#>\n\n<#2#>", "P1.\n\n<#4#>"),
    ("a <#60#> <#60#> b", "a <#99.99#> b"),
    ("a <#1#> b <#2#> c", "a <#1#> b <#2#> c"),
    ("a <#1.50#> b", "a <#1.5#> b"),
    ("no markers", "no markers"),
])
def test_merge_markers(text: str, merged: str) -> None:
    assert merge_markers(text) == merged


def test_billing_and_marker_helpers() -> None:
    text = "Hello <#1.5#> world<#2#>"
    assert billed_chars(text) == len("Hello  world")
    assert marker_seconds(text) == pytest.approx(3.5)
    assert spoken_only(text) == "Hello  world"


# --- spoken text ---------------------------------------------------------------------------------

def test_paragraphs_at_blank_lines_and_hard_wraps_joined() -> None:
    raw = "The ferry left\nat dawn.\n\n\n  She waited  \n  on the jetty.\n"
    assert spoken(raw, markdown=False) == "The ferry left at dawn.\n\nShe waited on the jetty."


def test_cjk_lines_join_without_a_space() -> None:
    assert spoken("风暴过后，\n海面平静。\nThe end", markdown=False) == "风暴过后，海面平静。 The end"


@pytest.mark.parametrize("raw, expected", [
    ("# Arrival\n\nText.", "Arrival\n\nText."),
    ("## The Log ##\nText follows at once.", "The Log\n\nText follows at once."),
    ("Arrival\n=======\nText.", "Arrival\n\nText."),
    ("Arrival\n---\nText.", "Arrival\n\nText."),
    ("She was *tired* and **cold** and _wet_ and __late__ and ~~gone~~.",
     "She was tired and cold and wet and late and gone."),
    ("Read [the letter](https://example.org) and [the log][log].\n\n[log]: https://example.org/log",
     "Read the letter and the log."),
    ("A picture ![a lighthouse](light.png) of it.", "A picture  of it."),
    ("Use `code` and <b>bold</b> and <!-- a note --> text.", "Use code and bold and  text."),
    (r"Escaped \*stars\* and 2 \* 3.", "Escaped *stars* and 2 * 3."),
    ("> Quoted line one\n> quoted line two", "Quoted line one quoted line two"),
    ("- first\n- second\n  continued\n* third", "first\n\nsecond continued\n\nthird"),
    ("snake_case_name and 2*3*4 stay", "snake_case_name and 2*3*4 stay"),
    ("```\ncode line\n```\nAfter.", "code line\n\nAfter."),
    ("Wait <#1.5#> for *it*.", "Wait <#1.5#> for it."),
])
def test_markdown_is_reduced_to_its_spoken_text(raw: str, expected: str) -> None:
    assert spoken(raw) == expected


@pytest.mark.parametrize("line, markdown", [
    ("***", True), ("* * *", True), ("---", True), ("- - -", True), ("___", True), ("#", True),
    ("  *  *  *  ", True), ("***", False), ("~~~", False), ("#", False),
])
def test_scene_breaks_become_a_configurable_pause(line: str, markdown: bool) -> None:
    raw = f"Before.\n\n{line}\n\nAfter."
    assert spoken(raw, markdown=markdown, scene_break_s=2.5) == "Before.\n\n<#2.5#>\n\nAfter."
    assert spoken(raw, markdown=markdown, scene_break_s=0) == "Before.\n\nAfter."


def test_scene_break_at_the_chapter_edges_and_next_to_a_marker_merge() -> None:
    assert spoken("***\n\nText.\n\n***") == "<#2#>\n\nText.\n\n<#2#>"
    assert spoken("Text. <#1#>\n\n***\n\n<#0.5#> More.") == "Text. <#3.5#>\n\nMore."


def test_plain_text_keeps_markdown_characters() -> None:
    assert spoken("She was *tired* and # fine.\nTitle\n=====", markdown=False) == \
        "She was *tired* and # fine. Title ====="


# --- properties ----------------------------------------------------------------------------------

markers = st.integers(min_value=1, max_value=9999).map(lambda h: format_pause(h / 100))
pieces = st.one_of(
    st.text(alphabet="abcdefgh XYZ.,!?", min_size=1, max_size=15),
    st.sampled_from(["\n", "\n\n", "\n\n\n", "   ", "风暴过后", "。", "*", "_", "#", "***", "\n***\n", "- ", "1. "]),
    markers, markers.map(lambda m: f" {m} "),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.lists(pieces, max_size=60).map("".join), markdown=st.booleans(),
       scene_break_s=st.sampled_from([0.0, 2.0, 150.0]))
def test_spoken_text_is_well_formed(raw: str, markdown: bool, scene_break_s: float) -> None:
    text = to_spoken_text(raw, markdown=markdown, scene_break_s=scene_break_s)
    assert check_markers(text) == []  # every marker valid, in range
    assert not re.search(r"#>\s*<#", text), "consecutive markers are merged"
    assert "\n\n\n" not in text
    for paragraph in text.split("\n\n") if text else []:
        assert paragraph and paragraph == paragraph.strip()
        assert "\n" not in paragraph
    assert marker_seconds(text) <= marker_seconds(raw) + 1e-6 or scene_break_s > 0


@settings(max_examples=200, deadline=None)
@given(words=st.lists(st.text(alphabet="abcdefghij", min_size=1, max_size=8), min_size=1, max_size=40),
       seps=st.lists(st.sampled_from([" ", "\n", "\n\n", "  \n  "]), min_size=40, max_size=40))
def test_plain_text_keeps_every_word_in_order(words: list[str], seps: list[str]) -> None:
    raw = "".join(w + s for w, s in zip(words, seps, strict=False))
    assert spoken(raw, markdown=False).split() == words


def test_a_marker_before_closing_punctuation_moves_after_it() -> None:
    """`said<#1#>."` leaves nothing spoken after the marker in its sentence: the pause goes after."""
    assert to_spoken_text('He said<#1#>." Then we left.', markdown=False, scene_break_s=2.0) == \
        'He said."<#1#> Then we left.'
    assert to_spoken_text("a <#1#> b", markdown=False, scene_break_s=2.0) == "a <#1#> b"
    assert to_spoken_text("a<#1#>, b", markdown=False, scene_break_s=2.0) == "a,<#1#> b"
