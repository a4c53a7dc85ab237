"""The review pages' HTML without a browser: the inlined data cannot break out of its element, a
chapter page grows with its own chapter only, links are encoded, times read h:mm:ss. What the
pages do in a browser is tests/test_review_page.py's."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from html.parser import HTMLParser

import pytest

from pipeline.review.model import BookReview, ChapterReview, ChapterSummary, ChunkView, SentenceView
from pipeline.review.render import format_clock, render_chapter, render_index

HOSTILE = '</script><script>alert("x")</script> <!-- </SCRIPT > & \u2028 東京 🎧'


def make_chapter(sentences: int, *, text: str = "Sentence number {n} of the chapter.", **overrides: object) -> ChapterReview:
    chunks = tuple(ChunkView(i, f"key-{i}", i * 10.0, (i + 1) * 10.0, "pass") for i in range(max(1, sentences // 4)))
    views = tuple(SentenceView(min(n // 4, len(chunks) - 1), n * 2.5, n * 2.5 + 2.0, text.format(n=n))
                  for n in range(sentences))
    fields: dict[str, object] = {
        "book": "Book", "book_key": "bk", "chapter_id": "c1", "number": 1, "title": "One",
        "audio": "../chapters/01-one.mp3", "duration_s": max(10.0, sentences * 2.5), "chunks": chunks,
        "sentences": views, "peaks": (0.5,) * 200, "page": "01-one.html",
    }
    fields.update(overrides)
    return ChapterReview(**fields)  # type: ignore[arg-type]


class ScriptData(HTMLParser):
    """The text of each <script> element, as a browser's parser splits them."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self._open: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self._open = dict(attrs)
            self.scripts.append((self._open, ""))

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._open = None


def test_data_cannot_break_out_of_its_script_element() -> None:
    page = render_chapter(make_chapter(3, text=HOSTILE + " {n}", title=HOSTILE, book=HOSTILE))
    parser = ScriptData()
    parser.feed(page)
    assert [attrs.get("type") for attrs, _ in parser.scripts] == ["application/json", None]  # nothing injected
    data = json.loads(parser.scripts[0][1])
    assert data["book"] == HOSTILE
    assert [s["text"] for s in data["sentences"]] == [f"{HOSTILE} {n}" for n in range(3)]
    assert re.search(r"(?i)</script|<!--", parser.scripts[0][1]) is None
    assert page.lower().count("</script") == 2  # the two elements' own end tags, not the text's
    assert "&lt;/script&gt;&lt;script&gt;alert(&quot;x&quot;)" in page  # the text itself, escaped in the HTML


def test_a_chapter_page_grows_with_its_chapter_only() -> None:
    sizes = [len(render_chapter(make_chapter(n)).encode()) for n in (0, 100, 200)]
    per_sentence = (sizes[2] - sizes[1]) / 100
    assert abs((sizes[1] - sizes[0]) / 100 - per_sentence) < 0.05 * per_sentence  # linear in its sentences
    assert per_sentence < 1200
    assert sizes[0] < 40_000  # the inlined CSS, JS and frame
    page = render_chapter(make_chapter(4, next_page="02-two.html", previous_page=None))
    assert "02-two.html" in page and "Book index" in page  # its neighbours only as links


def test_links_are_percent_encoded_and_pages_name_no_network_url() -> None:
    chapter = make_chapter(2, audio="../chapters/01 one #1?.mp3")
    page = render_chapter(chapter)
    assert 'src="../chapters/01%20one%20%231%3F.mp3"' in page
    index = render_index(BookReview("Book", "bk", "", (ChapterSummary("c1", 1, "One", "01 one.html", 5.0),),
                                    None, None))
    assert 'href="01%20one.html"' in index
    for html in (page, index):
        assert re.search(r"(?i)\b(https?|wss?|ftp):", html) is None


@pytest.mark.parametrize(("seconds", "shown"), [
    (0, "0:00"), (59.99, "0:59"), (61, "1:01"), (3599.4, "59:59"), (3600, "1:00:00"), (3725.4, "1:02:05"),
    (-3, "0:00"), (float("nan"), "0:00"),
])
def test_format_clock(seconds: float, shown: str) -> None:
    assert format_clock(seconds) == shown


def test_a_sentence_outside_every_chunk_is_shown_but_cannot_be_marked() -> None:
    chapter = make_chapter(4)
    stray = SentenceView(99, 30.0, 31.0, "A stray sentence.")
    page = render_chapter(replace(chapter, sentences=(*chapter.sentences, stray)))
    row = re.search(r'<div class="s" id="s-4"[^>]*>.*?</div>', page)
    assert row is not None and "A stray sentence." in row.group(0)
    assert 'class="redo"' not in row.group(0)  # a mark needs its chunk's key: marks.py refuses an empty one
    assert page.count('class="redo"') == 4
