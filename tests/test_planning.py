"""pipeline.planning: per-chapter chunks, billed characters, tasks, estimates and totals (issue 2, item 7)."""

from __future__ import annotations

import json
import math

import pytest

from pipeline.chunking import lower_bound_tasks
from pipeline.manifest import load_manifest
from pipeline.planning import chapter_seconds, plan_book, plan_to_json
from pipeline.text import billed_chars, marker_seconds, spoken_only

LONG = ("The keeper climbed the stairs. " * 12 + "\n\n") * 6 + "He slept. <#1.5#> Then he woke."
PRICING = {"char_fee_per_10k": 0.5, "voice_fee_per_task": 0.02, "currency": "EUR"}


@pytest.fixture
def book(make_manifest):
    path = make_manifest(chunking={"max_chars": 400}, pricing=PRICING,
                         sources={"ch01.txt": LONG, "ch02.md": "# Two\n\n" + LONG.replace("keeper", "*keeper*")},
                         chapters=[{"id": "ch01", "title": "One", "source": "ch01.txt"},
                                   {"id": "ch02", "title": "Two", "source": "ch02.md", "voice": {"speed": 0.8}},
                                   {"id": "ch03", "text": "Short. <#2#>"}])
    return plan_book(load_manifest(path))


def test_every_chapter_is_planned_in_order_with_its_chunks(book) -> None:
    assert [cp.chapter.id for cp in book.chapters] == ["ch01", "ch02", "ch03"]
    for cp in book.chapters:
        assert all(c.chapter_id == cp.chapter.id for c in cp.chunks)
        assert all(len(c.text) <= 400 for c in cp.chunks)
        assert [c.index for c in cp.chunks] == list(range(len(cp.chunks)))
        joined = " ".join(c.text for c in cp.chunks)
        assert spoken_only(joined).split() == spoken_only(cp.chapter.text).split()


def test_totals_add_up(book) -> None:
    chunks = [c for cp in book.chapters for c in cp.chunks]
    t = book.totals
    assert (t.chapters, t.chunks) == (3, len(chunks))
    assert t.chars == sum(len(c.text) for c in chunks)
    distinct = {c.key: c for c in chunks}  # a repeated paragraph is one task, billed once
    assert t.tasks == len(distinct) < t.chunks
    assert t.billed_chars == sum(billed_chars(c.text) for c in distinct.values())
    assert t.billed_chars < sum(cp.billed_chars for cp in book.chapters)
    assert t.billed_chars < t.chars  # the markers are not billed
    assert t.lower_bound_tasks == lower_bound_tasks([cp.chapter.text for cp in book.chapters], 400)
    assert t.est_cost == pytest.approx(t.billed_chars / 10_000 * 0.5 + t.tasks * 0.02, abs=1e-4)
    assert t.currency == "EUR"
    assert t.est_audio_s == pytest.approx(sum(chapter_seconds(cp) for cp in book.chapters), abs=0.1)


def test_task_count_stays_within_five_percent_of_the_lower_bound(book) -> None:
    assert book.totals.chunks <= math.floor(1.05 * book.totals.lower_bound_tasks) + 1
    for cp in book.chapters:
        assert len(cp.chunks) <= 1.05 * lower_bound_tasks([cp.chapter.text], 400) + 1


def test_estimated_length_counts_speed_and_pauses(book) -> None:
    one, two, three = book.chapters
    assert chapter_seconds(two) > chapter_seconds(one)  # the same words read at 0.8
    (chunk,) = three.chunks
    assert chunk.text == "Short." and chunk.pause_after_s == 2.0
    assert chapter_seconds(three) > 2.0


def test_chunk_keys_follow_the_voice(book) -> None:
    one, two, _ = book.chapters
    assert one.chunks[0].key != two.chunks[0].key  # other text and another speed
    # a repeated paragraph is the same chunk, and renders once
    texts_by_key = {}
    for c in one.chunks:
        assert texts_by_key.setdefault(c.key, c.text) == c.text


def test_identical_text_with_the_same_voice_gets_the_same_key(make_manifest) -> None:
    path = make_manifest(chapters=[{"id": "a", "text": "Same words."}, {"id": "b", "text": "Same words."},
                                   {"id": "c", "text": "Same words.", "voice": {"emotion": "sad"}}])
    a, b, c = plan_book(load_manifest(path)).chapters
    assert a.chunks[0].key == b.chunks[0].key != c.chunks[0].key


def test_only_the_chapters_asked_for(make_manifest) -> None:
    manifest = load_manifest(make_manifest())
    plan = plan_book(manifest, chapter_ids=("ch02",))
    assert [cp.chapter.id for cp in plan.chapters] == ["ch02"]
    assert plan.totals.chapters == 1
    assert plan.chapter("ch02").chapter.title == "Two"
    with pytest.raises(KeyError):
        plan.chapter("ch01")


def test_plan_json_has_the_documented_shape(book) -> None:
    doc = json.loads(json.dumps(plan_to_json(book), ensure_ascii=False))
    assert set(doc) >= {"chapters", "totals"}
    assert {"chapters", "chunks", "tasks", "chars", "billed_chars", "lower_bound_tasks", "est_audio_s",
            "est_cost", "currency"} <= set(doc["totals"])
    seen: set[str] = set()
    for chapter, cp in zip(doc["chapters"], book.chapters, strict=True):
        assert {"id", "title", "chunks", "billed_chars", "tasks", "est_audio_s", "est_cost"} <= set(chapter)
        assert chapter["tasks"] == len({c["key"] for c in chapter["chunks"]} - seen) <= len(cp.chunks)
        seen |= {c["key"] for c in chapter["chunks"]}
        assert chapter["billed_chars"] == sum(c["billed_chars"] for c in chapter["chunks"])
        for item, chunk in zip(chapter["chunks"], cp.chunks, strict=True):
            assert {"index", "key", "text", "chars", "billed_chars", "pause_before", "pause_after"} <= set(item)
            assert item["text"] == chunk.text and item["key"] == chunk.key
            assert item["chars"] == len(chunk.text)
            assert item["pause_before"] == chunk.pause_before_s and item["pause_after"] == chunk.pause_after_s
            assert item.get("markers_s", marker_seconds(chunk.text)) == pytest.approx(marker_seconds(chunk.text))
    assert doc["totals"]["tasks"] == sum(c["tasks"] for c in doc["chapters"])
    distinct = {c["key"]: c["billed_chars"] for chapter in doc["chapters"] for c in chapter["chunks"]}
    assert doc["totals"]["billed_chars"] == sum(distinct.values())
