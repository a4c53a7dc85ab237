"""Pause markers and tokens: billed characters, placement rules, tokens covering the text."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.simulator.markup import (
    MarkupError,
    TokenKind,
    count_billed_chars,
    find_pause_markers,
    strip_pause_markers,
    tokenize,
)

words = st.text(alphabet=st.sampled_from("abcxyz你好 ,."), min_size=1, max_size=12).filter(
    lambda s: any(c.isalnum() for c in s)
)
pauses = st.decimals(min_value="0.01", max_value="99.99", places=2).map(lambda d: f"<#{d.normalize():f}#>")


@given(st.lists(words, min_size=1, max_size=6), st.data())
def test_billed_characters_exclude_exactly_the_markers(parts: list[str], data: st.DataObject) -> None:
    markers = [data.draw(pauses) for _ in parts[1:]]
    text = parts[0] + "".join(m + p for m, p in zip(markers, parts[1:], strict=True))
    assert len(find_pause_markers(text)) == len(markers)
    assert count_billed_chars(text) == len("".join(parts))
    assert strip_pause_markers(text) == "".join(parts)
    tokens = tokenize(text)
    assert tokens[0].start == 0 and tokens[-1].end == len(text)
    assert all(a.end == b.start for a, b in itertools.pairwise(tokens))
    assert sum(t.kind is TokenKind.PAUSE for t in tokens) == len(markers)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("a <#0.01#> b", 0.01), ("a <#99.99#> b", 99.99), ("a<#1#>b", 1.0), ("a <#2.5#> b", 2.5), ("a <#07.10#> b", 7.1)],
)  # fmt: skip
def test_valid_markers(text: str, seconds: float) -> None:
    (marker,) = find_pause_markers(text)
    assert marker.seconds == seconds and text[marker.start : marker.end].startswith("<#")


@pytest.mark.parametrize(
    ("text", "needle"),
    [("<#1#> a", "start"), ("a <#1#>", "end"), ("a <#1#> <#1#> b", "another marker"), ("a <#1,5#> b", "malformed"),
     ("a <#1.234#> b", "malformed"), ("a <#-1#> b", "malformed"), ("a <#0.00#> b", "0.01"), ("a <#123#> b", "99.99")],
)  # fmt: skip
def test_invalid_markers_say_what_is_wrong(text: str, needle: str) -> None:
    with pytest.raises(MarkupError, match=needle):
        find_pause_markers(text)


def test_words_keep_apostrophes_hyphens_and_decimals() -> None:
    text = "Don't stop: well-known 3.14 and 10,000 things."
    assert [text[t.start : t.end] for t in tokenize(text) if t.kind is TokenKind.WORD] == [
        "Don't", "stop", "well-known", "3.14", "and", "10,000", "things",
    ]  # fmt: skip


def test_cjk_characters_are_one_token_each() -> None:
    kinds = [t.kind for t in tokenize("你好。")]
    assert kinds == [TokenKind.SYLLABLE_CHAR, TokenKind.SYLLABLE_CHAR, TokenKind.STOP]
