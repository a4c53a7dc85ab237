"""Subtitle parsing (tolerant), cue text from the manuscript, placement and rendering."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline import subtitles as subs
from pipeline.errors import AssemblyError

CHUNK_TEXT = "Hello there. <#1.5#> General Kenobi!"


def entry(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {"text": "Hello there.", "pronounce_text": "Hello there.", "time_begin": 120.5,
                               "time_end": 900.25, "text_begin": 0, "text_end": 12, "timestamped_words": None}
    base.update(fields)
    return base


def test_parses_the_documented_shape() -> None:
    [s] = subs.parse_subtitle_json([entry()], source="x")
    assert (s.text, s.begin_ms, s.end_ms, s.text_begin, s.text_end, s.words) == (
        "Hello there.", 120.5, 900.25, 0, 12, ())


def test_tolerates_wrapper_integer_times_strings_and_missing_fields() -> None:
    data = {"subtitles": [
        {"text": "Hello there.", "time_begin": 100, "time_end": 800},
        {"text": "General Kenobi!", "time_begin": "1000.5", "time_end": "1900"},
        {"text": "no times"},
        "not an entry",
        {"text": "bad", "time_begin": "soon", "time_end": 5},
    ]}
    parsed = subs.parse_subtitle_json(data, source="x")
    assert [(s.text, s.begin_ms, s.end_ms, s.text_begin) for s in parsed] == [
        ("Hello there.", 100.0, 800.0, None), ("General Kenobi!", 1000.5, 1900.0, None)]


def test_word_timings_are_read_and_markers_dropped() -> None:
    words = [{"word": "Hello", "word_begin": 0, "word_end": 5, "pronounce_word": "hello", "time_begin": 120,
              "time_end": 400},
             {"word": "<#1.5#>", "time_begin": 400, "time_end": 1900},
             {"word": "there.", "time_begin": 450}]  # no end: dropped
    [s] = subs.parse_subtitle_json([entry(timestamped_words=words)], source="x")
    assert s.words == (subs.WordTiming("Hello", 120.0, 400.0),)


def test_not_a_subtitle_file_names_the_source(tmp_path: Path) -> None:
    with pytest.raises(AssemblyError, match="chunk 3: .*not a subtitle file"):
        subs.parse_subtitle_json({"code": 500}, source="chunk 3: f.json")
    bad = tmp_path / "broken.json"
    bad.write_text("{nope", encoding="utf-8")
    with pytest.raises(AssemblyError, match="chunk 4: subtitle file .*broken.json"):
        subs.load_subtitle_file(bad, label="chunk 4")
    ok = tmp_path / "ok.json"
    ok.write_text("\ufeff" + json.dumps([entry()]), encoding="utf-8")  # a BOM is tolerated
    assert len(subs.load_subtitle_file(ok, label="chunk 5")) == 1


def test_strip_markers() -> None:
    assert subs.strip_markers("Wait <#0.5#> for it <# 2 #>.") == "Wait for it ."
    assert subs.strip_markers("  a\n\nb  ") == "a b"


@given(st.lists(st.one_of(st.text(alphabet="ab <#.,", max_size=5),
                          st.decimals(min_value="0.01", max_value="99.99", places=2).map(lambda d: f"<#{d}#>"))))
def test_strip_markers_leaves_no_marker(parts: list[str]) -> None:
    text = subs.strip_markers("".join(parts))
    assert subs.PAUSE_MARKER_RE.search(text) is None
    assert text == text.strip() and "  " not in text


def test_cue_text_prefers_the_manuscript_with_offsets_counting_markers() -> None:
    # offsets 21..36 count the marker; the API's text lost the capital and the "!"
    sentence = subs.SentenceTiming("general kenobi", 0, 1, text_begin=21, text_end=36)
    assert subs.cue_text(sentence, CHUNK_TEXT) == "General Kenobi!"


def test_cue_text_with_offsets_not_counting_markers() -> None:
    stripped = "Hello there.  General Kenobi!"
    begin = stripped.index("General")
    sentence = subs.SentenceTiming("General Kenobi!", 0, 1, text_begin=begin, text_end=begin + 15)
    assert subs.cue_text(sentence, CHUNK_TEXT) == "General Kenobi!"


def test_cue_text_falls_back_to_the_api_text_without_markers() -> None:
    sentence = subs.SentenceTiming("Hello <#1.5#> there.", 0, 1, text_begin=500, text_end=600)
    assert subs.cue_text(sentence, CHUNK_TEXT) == "Hello there."
    no_offsets = subs.SentenceTiming("General Kenobi!", 0, 1)
    assert subs.cue_text(no_offsets, CHUNK_TEXT) == "General Kenobi!"
    only_offsets = subs.SentenceTiming("", 0, 1, text_begin=0, text_end=20)
    assert subs.cue_text(only_offsets, CHUNK_TEXT) == "Hello there."


def test_placement_shifts_by_origin_and_clamps_to_the_kept_audio() -> None:
    place = subs.ChunkPlacement(origin=44_100, kept_start=48_510, kept_end=132_300, sample_rate_hz=44_100)
    assert place.chapter_time_s(500) == pytest.approx(1.5)
    assert place.chapter_time_s(0) == pytest.approx(1.1)      # in the trimmed lead: clamped
    assert place.chapter_time_s(5000) == pytest.approx(3.0)   # past the kept end: clamped
    cues = subs.place_chunk(subs.parse_subtitle_json([entry()], source="x"), chunk_text=CHUNK_TEXT,
                            placement=place)
    assert cues.sentences == (subs.Cue(pytest.approx(1.1205), pytest.approx(1.90025), "Hello there."),)


def test_tidy_cues_trims_overlaps_and_keeps_starts() -> None:
    cues = [subs.Cue(2.0, 3.5, "b"), subs.Cue(0.0, 2.4, "a"), subs.Cue(3.0, 3.0, "c"), subs.Cue(4, 5, "")]
    assert subs.tidy_cues(cues) == [subs.Cue(0.0, 2.0, "a"), subs.Cue(2.0, 3.0, "b"), subs.Cue(3.0, 3.001, "c")]


def test_srt_and_vtt_rendering() -> None:
    cues = [subs.Cue(0.0014, 1.25, "One --> two"), subs.Cue(3725.5, 3726.0, "A <b> & c\nd")]
    assert subs.render_srt(cues) == ("1\n00:00:00,001 --> 00:00:01,250\nOne -> two\n\n"
                                     "2\n01:02:05,500 --> 01:02:06,000\nA <b> & c d\n")
    assert subs.render_vtt(cues) == ("WEBVTT\n\n00:00:00.001 --> 00:00:01.250\nOne -&gt; two\n\n"
                                     "01:02:05.500 --> 01:02:06.000\nA &lt;b&gt; &amp; c d\n")


def test_words_json_links_words_to_sentences() -> None:
    sentences = [subs.Cue(1.0, 2.0, "Hi you."), subs.Cue(2.0, 3.0, "Bye.")]
    words = [subs.Cue(0.999, 1.4, "Hi"), subs.Cue(1.5, 1.9, "you."), subs.Cue(2.1, 2.5, "Bye."),
             subs.Cue(0.1, 0.2, "um")]
    doc = json.loads(subs.render_words_json(chapter_id="c", title="T", audio_file="01-c.mp3",
                                            sentences=sentences, words=sorted(words, key=lambda w: w.start_s)))
    assert [(w["text"], w["sentence"]) for w in doc["words"]] == [("um", None), ("Hi", 0), ("you.", 0),
                                                                   ("Bye.", 1)]
    assert doc["sentences"][1] == {"text": "Bye.", "start": 2.0, "end": 3.0}
