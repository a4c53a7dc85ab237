"""QC of a take (pipeline/qc.py): each silent defect is caught from real decoded MP3 and cue files, and
a clean take passes every check."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from pipeline import qc
from pipeline.models import Chunk, QcSettings, Voice
from pipeline.request import AudioRequest
from pipeline.store import Journal
from pipeline.subtitles import parse_subtitle_json
from tests.audio_factory import CHUNK_RATE_HZ, SyntheticChunk, design_chunk, encode_mp3, render_chunk, subtitle_json

SETTINGS = QcSettings()


def chunk_of(text: str, *, index: int = 0, chapter: str = "ch01", speed: float = 1.0) -> Chunk:
    request = AudioRequest.for_chunk(text, voice=Voice(model_id="model_qc", speed=speed), language="English",
                                     subtitles="sentence")
    billed = len(qc.MARKER_RE.sub("", text))
    return Chunk(chapter_id=chapter, index=index, start=0, end=len(text), text=text, billed_chars=billed,
                 pause_before_s=0.0, pause_after_s=0.0, request=request)


def take(tmp_path: Path, design: SyntheticChunk, samples: np.ndarray, cues: list[dict[str, object]] | None = None,
         name: str = "take") -> qc.TakeMeasures:
    """Encode ``samples`` to MP3, decode and measure it as the engine does, with ``cues`` (default: the
    design's own)."""
    path = encode_mp3(samples, tmp_path / f"{name}.mp3")
    audio = qc.measure_file(path)
    timings = parse_subtitle_json(cues if cues is not None else subtitle_json(design, words=False), source="test")
    return qc.measure_take(audio, design.text, timings)


def judged(measures: qc.TakeMeasures, chunk: Chunk, *, medians: qc.Medians | None = None) -> qc.Verdict:
    if medians is None:  # compare with itself: rate and level are on the median
        medians = qc.medians_of([_plan(chunk)], {(chunk.key, 1): measures}, {})
    return qc.evaluate(measures, chunk, SETTINGS, medians)


def _plan(*chunks: Chunk) -> object:
    from pipeline.models import ChapterPlan, ChapterSpec

    spec = ChapterSpec(id=chunks[0].chapter_id, title="t", number=1, text="", language="English",
                       voice=Voice(model_id="model_qc"))
    return ChapterPlan(chapter=spec, chunks=chunks)


@pytest.fixture(scope="module")
def design() -> SyntheticChunk:
    return design_chunk(seed=3, sentences=6, words=6, tail_s=0.5)


def failed(verdict: qc.Verdict) -> dict[str, str]:
    return {c.name: c.severity for c in verdict.failed}


def test_a_clean_take_passes_every_check(tmp_path: Path, design: SyntheticChunk) -> None:
    measures = take(tmp_path, design, render_chunk(design, seed=3))
    verdict = judged(measures, chunk_of(design.text))
    assert verdict.verdict == qc.PASS, [c.detail for c in verdict.failed]
    assert [c.name for c in verdict.checks] == list(qc.CHECKS)
    assert measures.audio.speech_start_s == pytest.approx(design.lead_s, abs=0.03)
    assert measures.audio.tail_silence_s == pytest.approx(design.tail_s, abs=0.06)
    assert measures.cues is not None and measures.cues.uncovered_words == 0


def test_a_cut_take_fails_truncated_where_it_ends(tmp_path: Path, design: SyntheticChunk) -> None:
    samples = render_chunk(design, seed=3)
    word = design.sentences[3].words[2]
    cut = round((word.begin_s + word.end_s) / 2 * CHUNK_RATE_HZ)  # in the middle of a word
    measures = take(tmp_path, design, samples[:cut])
    verdict = judged(measures, chunk_of(design.text))
    check = verdict.check("truncated")
    assert check is not None and not check.passed and verdict.verdict == qc.FAIL
    # the cues run on to the end of the last sentence
    assert check.measured == pytest.approx(design.sentences[-1].end_s - cut / CHUNK_RATE_HZ, abs=0.1)
    assert check.at_s == pytest.approx(cut / CHUNK_RATE_HZ, abs=0.06)


def test_a_cut_take_without_subtitles_fails_because_it_ends_inside_speech(tmp_path: Path,
                                                                          design: SyntheticChunk) -> None:
    samples = render_chunk(design, seed=3)
    word = design.sentences[4].words[1]
    cut = round((word.begin_s + word.end_s) / 2 * CHUNK_RATE_HZ)
    audio = qc.measure_file(encode_mp3(samples[:cut], tmp_path / "cut.mp3"))
    verdict = judged(qc.measure_take(audio, design.text, None), chunk_of(design.text))
    check = verdict.check("truncated")
    assert check is not None and not check.passed and check.measured is not None
    assert check.measured < qc.MIN_TAIL_SILENCE_S
    uncovered = verdict.check("uncovered")
    assert uncovered is not None and uncovered.passed and uncovered.measured is None  # not checked


def test_a_dropped_sentence_fails_uncovered_and_names_it(tmp_path: Path, design: SyntheticChunk) -> None:
    dropped = design.sentences[2]
    samples = render_chunk(design, seed=3)
    a, b = round((dropped.begin_s - 0.15) * CHUNK_RATE_HZ), round((dropped.end_s + 0.15) * CHUNK_RATE_HZ)
    shorter = np.concatenate([samples[:a], samples[b:]])
    shift = (b - a) / CHUNK_RATE_HZ * 1000
    cues = [dict(c) for c in subtitle_json(design, words=False) if c["text"] != dropped.text]
    for cue in cues[2:]:
        cue["time_begin"] = float(cue["time_begin"]) - shift  # type: ignore[arg-type]
        cue["time_end"] = float(cue["time_end"]) - shift  # type: ignore[arg-type]
    verdict = judged(take(tmp_path, design, shorter, cues), chunk_of(design.text))
    check = verdict.check("uncovered")
    assert check is not None and not check.passed and verdict.verdict == qc.FAIL
    assert check.measured == len(dropped.words)
    assert dropped.text.rstrip(".") in check.detail
    assert verdict.check("truncated").passed  # type: ignore[union-attr]


def test_cue_text_is_compared_without_case_punctuation_or_markers() -> None:
    timings = parse_subtitle_json([{"text": "hello, WORLD", "time_begin": 0, "time_end": 900},
                                   {"text": "It's  me!", "time_begin": 900, "time_end": 2000}], source="t")
    measured = qc.measure_cues("Hello world. <#0.5#> It’s me.", timings)
    assert (measured.words, measured.uncovered_words, measured.cues_end_s) == (5, 0, 2.0)


def test_cjk_is_compared_character_by_character() -> None:
    timings = parse_subtitle_json([{"text": "清晨，灯塔", "time_begin": 0, "time_end": 900}], source="t")
    measured = qc.measure_cues("清晨，灯塔很安静。", timings)
    assert (measured.words, measured.longest_gap_words, measured.gap_text) == (7, 3, "很安静")


def test_a_long_unexplained_silence_warns_and_a_marker_explains_one(tmp_path: Path, design: SyntheticChunk) -> None:
    samples = render_chunk(design, seed=3)
    gap_at = design.sentences[1].end_s + 0.1
    at = round(gap_at * CHUNK_RATE_HZ)
    longer = np.concatenate([samples[:at], np.zeros(3 * CHUNK_RATE_HZ), samples[at:]])
    cues = subtitle_json(design, words=False)
    for cue in cues[2:]:
        cue["time_begin"] = float(cue["time_begin"]) + 3000  # type: ignore[arg-type]
        cue["time_end"] = float(cue["time_end"]) + 3000  # type: ignore[arg-type]
    measures = take(tmp_path, design, longer, cues)
    verdict = judged(measures, chunk_of(design.text))
    check = verdict.check("silence")
    assert check is not None and not check.passed and check.severity == qc.WARN
    assert verdict.verdict == qc.WARN, failed(verdict)
    assert check.measured == pytest.approx(3.0 + design.sentences[2].begin_s - design.sentences[1].end_s, abs=0.1)
    assert check.at_s == pytest.approx(design.sentences[1].end_s, abs=0.06)
    # the same audio for a text that asks for the pause: explained
    marked = design.text.replace(design.sentences[2].text, f"<#3#> {design.sentences[2].text}", 1)
    explained = qc.evaluate(measures, chunk_of(marked), SETTINGS, qc.Medians())
    assert explained.check("silence").passed  # type: ignore[union-attr]
    # far out (three times the limit) it fails
    far = dataclasses.replace(SETTINGS, max_silence_s=1.0)
    assert qc.evaluate(measures, chunk_of(design.text), far, qc.Medians()).check("silence").severity == qc.FAIL  # type: ignore[union-attr]


def test_a_clipped_take_fails_clipping(tmp_path: Path, design: SyntheticChunk) -> None:
    loud = np.clip(render_chunk(design, seed=3) * 8.0, -1.0, 1.0)
    verdict = judged(take(tmp_path, design, loud), chunk_of(design.text))
    check = verdict.check("clipping")
    assert check is not None and not check.passed and verdict.verdict == qc.FAIL
    assert check.measured is not None and check.measured > 1000


def test_rate_and_level_compare_with_the_book_and_the_chapter(tmp_path: Path, design: SyntheticChunk) -> None:
    measures = take(tmp_path, design, render_chunk(design, seed=3))
    chunk = chunk_of(design.text)
    rate = qc.speech_rate(measures, chunk)
    assert rate is not None
    normal = qc.Medians(rate={qc.rate_group(chunk): rate}, level={"ch01": measures.audio.speech_rms_db})
    assert qc.evaluate(measures, chunk, SETTINGS, normal).verdict == qc.PASS
    slow = qc.Medians(rate={qc.rate_group(chunk): rate / 1.5}, level={"ch01": measures.audio.speech_rms_db + 4})
    verdict = qc.evaluate(measures, chunk, SETTINGS, slow)
    assert failed(verdict) == {"rate": qc.WARN, "level": qc.WARN}
    assert verdict.check("rate").measured == pytest.approx(0.5, abs=0.01)  # type: ignore[union-attr]
    assert verdict.check("level").measured == pytest.approx(-4.0, abs=0.01)  # type: ignore[union-attr]
    far = qc.Medians(rate={qc.rate_group(chunk): rate / 2}, level={"ch01": measures.audio.speech_rms_db})
    assert failed(qc.evaluate(measures, chunk, SETTINGS, far)) == {"rate": qc.FAIL}
    # another speed is another group: no median, not checked
    other = qc.evaluate(measures, chunk_of(design.text, speed=1.2), SETTINGS, slow)
    assert other.check("rate").measured is None  # type: ignore[union-attr]


def test_the_best_take_has_fewest_failures_then_the_closest_rate() -> None:
    def verdict(failures: int, rate: float) -> qc.Verdict:
        checks = [qc.Check("truncated", 1, 0.25, False, qc.FAIL, "")] * failures
        return qc.Verdict(qc.FAIL if failures else qc.PASS, (*checks, qc.Check("rate", rate, 0.35, True, qc.WARN, "")))

    assert qc.best_take({1: verdict(1, 0.0), 2: verdict(0, 0.3), 3: verdict(0, 0.1)}) == 3
    assert qc.best_take({1: verdict(1, 0.0), 2: verdict(2, 0.0)}) == 1


def test_measures_and_verdicts_live_in_the_journal(tmp_path: Path, design: SyntheticChunk) -> None:
    measures = take(tmp_path, design, render_chunk(design, seed=3))
    assert qc.TakeMeasures.from_json(measures.to_json()) == measures
    assert qc.TakeMeasures.from_json({**measures.to_json(), "version": 0}) is None  # measured again
    chunk = chunk_of(design.text)
    with Journal.open(tmp_path / "book") as journal:
        journal.save_measures(chunk.key, 2, measures.to_json())
        verdict = judged(measures, chunk)
        journal.save_verdicts({(chunk.key, 2): verdict.to_json()})
    with Journal.open(tmp_path / "book", readonly=True) as journal:
        assert qc.TakeMeasures.from_json(journal.measures()[(chunk.key, 2)]) == measures
        assert qc.Verdict.from_json(journal.verdicts()[(chunk.key, 2)]) == verdict
        journal_measures = journal.measures([chunk.key + "x"])
    assert journal_measures == {}
