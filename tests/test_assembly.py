"""Chapter assembly from generated chunk audio: durations, seams, subtitles, loudness, rebuilds."""

from __future__ import annotations

import json
import os
import tracemalloc
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from audio_factory import (
    BuiltChapter,
    build_chapter,
    decode,
    design_chunk,
    encode_mp3,
    make_manifest,
    onsets,
)

from pipeline import assembly
from pipeline.assembly import ChapterOutput, assemble_chapter
from pipeline.errors import AssemblyError
from pipeline.models import AudioSettings

SR = 44_100
CUE_TOLERANCE_S = 0.050


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, BuiltChapter, ChapterOutput]:
    tmp = tmp_path_factory.mktemp("assembly")
    designs = (
        design_chunk(seed=1, lead_s=0.30, tail_s=0.40),
        design_chunk(seed=2, lead_s=0.12, tail_s=0.55, marker_s=0.6),
        design_chunk(seed=3, lead_s=0.50, tail_s=0.03),  # less trailing silence than trim_keep_s
        design_chunk(seed=4, lead_s=0.02, tail_s=0.30),  # less leading silence than trim_keep_s
    )
    chapter = build_chapter(tmp / "cache", designs=designs, pauses=(0.0, 0.8, 2.0, 0.35), pause_after_s=1.5)
    manifest = make_manifest(tmp)
    out = assemble_chapter(manifest=manifest, plan=chapter.plan, audio=chapter.audio, track=3, total_tracks=7)
    return tmp, chapter, out


def test_outputs_are_named_by_track_and_chapter(built: tuple[Path, BuiltChapter, ChapterOutput]) -> None:
    tmp, _, out = built
    folder = tmp / "out"
    assert out.audio_path == folder / "03-ch1.mp3"
    assert out.srt_path == folder / "03-ch1.srt"
    assert out.vtt_path == folder / "03-ch1.vtt"
    assert out.word_paths == (folder / "03-ch1.words.vtt", folder / "03-ch1.words.json")
    assert all(p.is_file() for p in out.paths)
    assert out.rebuilt
    assert not [p for p in folder.iterdir() if p.name.endswith(".part")]


def test_duration_is_exactly_head_pauses_parts_and_tail(built: tuple[Path, BuiltChapter, ChapterOutput]) -> None:
    _, chapter, out = built
    settings = AudioSettings()
    head, tail = round(settings.head_s * SR), round(settings.tail_s * SR)
    pauses = [round(c.pause_before_s * SR) for c in chapter.plan.chunks]
    assert [s.pause_before for s in out.spans] == pauses
    expected = head + sum(pauses) + sum(s.kept for s in out.spans) + round(1.5 * SR) + tail
    assert out.samples == expected
    assert out.duration_s == pytest.approx(expected / SR)
    assert len(decode(out.audio_path)) == expected  # the MP3 decodes to exactly that many samples
    # spans are contiguous: each chunk starts right after the previous one's kept audio plus its pause
    pos = head
    for span in out.spans:
        assert span.kept_start == pos + span.pause_before
        pos = span.kept_end


def test_each_chunk_keeps_its_speech_plus_the_set_amount_of_silence(
        built: tuple[Path, BuiltChapter, ChapterOutput]) -> None:
    _, chapter, out = built
    keep = AudioSettings().trim_keep_s
    for design, span in zip(chapter.designs, out.spans, strict=True):
        expected = design.speech_s + min(keep, design.lead_s) + min(keep, design.tail_s)
        assert span.kept / SR == pytest.approx(expected, abs=0.004)
        assert span.lead_cut / SR == pytest.approx(max(0.0, design.lead_s - keep), abs=0.004)


def test_silence_at_each_seam_is_kept_edges_plus_the_pause(built: tuple[Path, BuiltChapter, ChapterOutput]) -> None:
    _, chapter, out = built
    x = decode(out.audio_path)
    found = onsets(x, min_gap_s=0.25)
    first_words = [round(s.origin / SR + d.sentences[0].begin_s, 3) for s, d in zip(out.spans, chapter.designs)]
    keep = AudioSettings().trim_keep_s
    for i in range(1, len(chapter.designs)):
        prev, cur = chapter.designs[i - 1], chapter.designs[i]
        gap = min(keep, prev.tail_s) + chapter.plan.chunks[i].pause_before_s + min(keep, cur.lead_s)
        onset = min(found, key=lambda t, f=first_words[i]: abs(t - f))
        last_end = out.spans[i - 1].origin / SR + prev.sentences[-1].end_s
        assert onset - last_end == pytest.approx(gap, abs=0.01)


def test_no_sample_jump_at_any_seam_even_when_the_tts_clipped_its_edges(tmp_path: Path) -> None:
    # Bursts that start and stop at full amplitude with no silence around them: only the fades
    # stand between the cut and a click.
    designs = tuple(design_chunk(seed=s, sentences=1, words=2, lead_s=0.0, tail_s=0.0) for s in range(3))
    chapter = build_chapter(tmp_path / "cache", designs=designs, abrupt=True)
    out = assemble_chapter(manifest=make_manifest(tmp_path), plan=chapter.plan, audio=chapter.audio, track=1,
                           total_tracks=1)
    x = decode(out.audio_path)
    diffs = np.abs(np.diff(x))
    # inside speech a 320 Hz burst at the normalized level changes by < 0.04 per sample
    speech = diffs[out.spans[0].kept_start + 2000: out.spans[0].kept_start + 4000]
    assert speech.max() < 0.04
    for span in out.spans:
        for cut in (span.kept_start, span.kept_end):
            window = diffs[max(0, cut - 220): cut + 220]
            assert window.max() < 0.04, f"jump of {window.max():.3f} at sample {cut}"


def test_seam_check_detects_a_click_without_fades(tmp_path: Path) -> None:
    # The same chapter with fades off must show the jump the test above guards against.
    designs = tuple(design_chunk(seed=s, sentences=1, words=2, lead_s=0.0, tail_s=0.0) for s in range(2))
    chapter = build_chapter(tmp_path / "cache", designs=designs, abrupt=True)
    manifest = make_manifest(tmp_path, audio=AudioSettings(fade_ms=0.0))
    out = assemble_chapter(manifest=manifest, plan=chapter.plan, audio=chapter.audio, track=1, total_tracks=1)
    diffs = np.abs(np.diff(decode(out.audio_path)))
    cut = out.spans[1].kept_start
    assert diffs[cut - 220: cut + 220].max() > 0.1


def test_sentence_cues_start_within_50ms_of_the_speech(built: tuple[Path, BuiltChapter, ChapterOutput]) -> None:
    _, chapter, out = built
    assert out.srt_path is not None and out.vtt_path is not None
    found = onsets(decode(out.audio_path))
    cues = _parse_srt(out.srt_path.read_text(encoding="utf-8"))
    expected_texts = [s.text for d in chapter.designs for s in d.sentences]
    assert [c[2] for c in cues] == expected_texts
    for start, _, text in cues:
        nearest = min(found, key=lambda t, s=start: abs(t - s))
        assert abs(nearest - start) <= CUE_TOLERANCE_S, text
    vtt = out.vtt_path.read_text(encoding="utf-8")
    assert vtt.startswith("WEBVTT\n")
    assert vtt.count(" --> ") == len(cues)


def test_word_timings_land_on_every_word(built: tuple[Path, BuiltChapter, ChapterOutput]) -> None:
    _, chapter, out = built
    found = onsets(decode(out.audio_path))
    words_json = json.loads(out.word_paths[1].read_text(encoding="utf-8"))
    words = words_json["words"]
    assert [w["text"] for w in words] == [w.text for d in chapter.designs for s in d.sentences for w in s.words]
    assert len(found) == len(words)
    for word, onset in zip(words, found, strict=True):
        assert abs(word["start"] - onset) <= CUE_TOLERANCE_S
        assert word["end"] > word["start"]
    assert words_json["audio"] == "03-ch1.mp3"
    assert {w["sentence"] for w in words} == set(range(len(words_json["sentences"])))
    assert out.word_paths[0].read_text(encoding="utf-8").count(" --> ") == len(words)


def test_pause_markers_never_reach_the_cue_text(built: tuple[Path, BuiltChapter, ChapterOutput]) -> None:
    _, chapter, out = built
    assert any("<#" in c.text for c in chapter.plan.chunks)
    assert out.srt_path is not None
    for path in (out.srt_path, out.vtt_path, *out.word_paths):
        assert path is not None
        assert "<#" not in path.read_text(encoding="utf-8")


def test_loudness_is_normalized_and_room_tone_fills_the_pauses(
        built: tuple[Path, BuiltChapter, ChapterOutput]) -> None:
    _, _, out = built
    x = decode(out.audio_path)
    rms_db = 20 * np.log10(np.sqrt(np.mean(x * x)))
    assert rms_db == pytest.approx(AudioSettings().target_rms_db, abs=0.5)
    head = x[: out.head - 100]
    assert np.count_nonzero(head) > 0.5 * len(head)  # not digital silence
    head_db = 20 * np.log10(np.sqrt(np.mean(head * head)))
    assert -80 < head_db < -70
    pause = x[out.spans[2].kept_start - out.spans[2].pause_before + 2000: out.spans[2].kept_start - 2000]
    assert -80 < 20 * np.log10(np.sqrt(np.mean(pause * pause))) < -70


def test_peaky_speech_is_limited_under_the_true_peak_target(tmp_path: Path) -> None:
    # Short spikes on quiet bursts: reaching -20 dB RMS needs more gain than the peaks allow.
    design = design_chunk(seed=7, sentences=2, words=4, lead_s=0.2, tail_s=0.2)
    from audio_factory import render_chunk

    samples = render_chunk(design, seed=7) * 0.2
    for sentence in design.sentences:
        for word in sentence.words:
            i = round((word.begin_s + 0.05) * 32_000)
            samples[i:i + 6] = 0.9
    mp3 = encode_mp3(samples, tmp_path / "peaky.mp3")
    chapter = build_chapter(tmp_path / "cache", designs=(design,))
    audio = (replace(chapter.audio[0], audio_path=mp3),)
    manifest = make_manifest(tmp_path)
    out = assemble_chapter(manifest=manifest, plan=chapter.plan, audio=audio, track=1, total_tracks=1)
    assert out.gain_db > 10  # the limiter, not a lower gain, kept the peaks down
    x = decode(out.audio_path)
    assert 20 * np.log10(np.abs(x).max()) <= -3.0
    assert 20 * np.log10(np.sqrt(np.mean(x * x))) == pytest.approx(-20, abs=0.5)


def test_unchanged_inputs_are_not_reassembled(tmp_path: Path) -> None:
    chapter = build_chapter(tmp_path / "cache")
    manifest = make_manifest(tmp_path)
    first = assemble_chapter(manifest=manifest, plan=chapter.plan, audio=chapter.audio, track=1, total_tracks=2)
    stamp = first.audio_path.stat().st_mtime_ns
    again = assemble_chapter(manifest=manifest, plan=chapter.plan, audio=chapter.audio, track=1, total_tracks=2)
    assert not again.rebuilt
    assert again.audio_path.stat().st_mtime_ns == stamp
    assert replace(again, rebuilt=True) == first

    forced = assemble_chapter(manifest=manifest, plan=chapter.plan, audio=chapter.audio, track=1, total_tracks=2,
                              force=True)
    assert forced.rebuilt

    louder = make_manifest(tmp_path, audio=AudioSettings(target_rms_db=-19.0))
    assert assemble_chapter(manifest=louder, plan=chapter.plan, audio=chapter.audio, track=1,
                            total_tracks=2).rebuilt

    # a re-downloaded clip with different bytes is a changed input
    chapter.audio[1].audio_path.write_bytes(chapter.audio[1].audio_path.read_bytes() + b"\0")
    assert assemble_chapter(manifest=louder, plan=chapter.plan, audio=chapter.audio, track=1,
                            total_tracks=2).rebuilt

    # a missing output is rebuilt
    first.audio_path.unlink()
    assert assemble_chapter(manifest=louder, plan=chapter.plan, audio=chapter.audio, track=1,
                            total_tracks=2).rebuilt


def test_a_new_track_number_replaces_the_old_files(tmp_path: Path) -> None:
    chapter = build_chapter(tmp_path / "cache")
    manifest = make_manifest(tmp_path, subtitles="sentence")
    old = assemble_chapter(manifest=manifest, plan=chapter.plan, audio=chapter.audio, track=1, total_tracks=2)
    assert old.word_paths == ()
    new = assemble_chapter(manifest=manifest, plan=chapter.plan, audio=chapter.audio, track=2, total_tracks=2)
    assert new.rebuilt and new.audio_path.name == "02-ch1.mp3"
    assert not old.audio_path.exists() and old.srt_path is not None and not old.srt_path.exists()


def test_a_failure_leaves_no_half_written_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chapter = build_chapter(tmp_path / "cache")
    manifest = make_manifest(tmp_path)
    good = assemble_chapter(manifest=manifest, plan=chapter.plan, audio=chapter.audio, track=1, total_tracks=1)
    before = {p.name: p.read_bytes() for p in good.paths}

    def broken(path: Path, tags: object) -> None:
        raise AssemblyError("simulated crash while tagging")

    monkeypatch.setattr(assembly.tags, "tag_mp3", broken)
    with pytest.raises(AssemblyError, match="simulated"):
        assemble_chapter(manifest=manifest, plan=chapter.plan, audio=chapter.audio, track=1, total_tracks=1,
                         force=True)
    folder = tmp_path / "out"
    assert {p.name: p.read_bytes() for p in good.paths} == before
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and p.is_file()) == []


def test_missing_chunk_audio_names_the_chunk(tmp_path: Path) -> None:
    chapter = build_chapter(tmp_path / "cache")
    with pytest.raises(AssemblyError, match=r"chapter 'ch1'.*chunk\(s\) 1\b.*audiobook run"):
        assemble_chapter(manifest=make_manifest(tmp_path), plan=chapter.plan, audio=chapter.audio[::2], track=1,
                         total_tracks=1)


def test_undecodable_chunk_names_chunk_and_file(tmp_path: Path) -> None:
    chapter = build_chapter(tmp_path / "cache")
    chapter.audio[2].audio_path.write_bytes(b"<html>403 Forbidden</html>")
    with pytest.raises(AssemblyError, match=r"chunk 2.*ch1-2\.mp3.*does not decode"):
        assemble_chapter(manifest=make_manifest(tmp_path), plan=chapter.plan, audio=chapter.audio, track=1,
                         total_tracks=1)


def test_silent_chunk_is_reported(tmp_path: Path) -> None:
    chapter = build_chapter(tmp_path / "cache")
    encode_mp3(np.zeros(32_000), chapter.audio[0].audio_path)
    with pytest.raises(AssemblyError, match=r"chunk 0.*no sound above -50 dBFS"):
        assemble_chapter(manifest=make_manifest(tmp_path), plan=chapter.plan, audio=chapter.audio, track=1,
                         total_tracks=1)


def test_subtitles_off_writes_audio_only(tmp_path: Path) -> None:
    chapter = build_chapter(tmp_path / "cache", subtitles=False)
    out = assemble_chapter(manifest=make_manifest(tmp_path, subtitles="off"), plan=chapter.plan,
                           audio=chapter.audio, track=1, total_tracks=1)
    assert out.srt_path is None and out.vtt_path is None and out.word_paths == ()
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")) == ["01-ch1.mp3"]


def test_a_chunk_without_its_subtitle_file_gets_one_cue_and_a_warning(tmp_path: Path) -> None:
    chapter = build_chapter(tmp_path / "cache")
    audio = (chapter.audio[0], replace(chapter.audio[1], subtitle_path=None), chapter.audio[2])
    out = assemble_chapter(manifest=make_manifest(tmp_path, subtitles="sentence"), plan=chapter.plan,
                           audio=audio, track=1, total_tracks=1)
    assert len(out.warnings) == 1 and "chunk 1" in out.warnings[0]
    assert out.srt_path is not None
    cues = _parse_srt(out.srt_path.read_text(encoding="utf-8"))
    assert len(cues) == 2 + 1 + 2
    assert cues[2][2] == chapter.designs[1].text


def test_memory_does_not_grow_with_the_number_of_chunks(tmp_path: Path) -> None:
    def peak_bytes(count: int) -> int:
        designs = tuple(design_chunk(seed=s, sentences=1, words=2) for s in range(count))
        chapter = build_chapter(tmp_path / f"cache{count}", chapter_id=f"c{count}", designs=designs)
        manifest = make_manifest(tmp_path)
        tracemalloc.start()
        try:
            assemble_chapter(manifest=manifest, plan=chapter.plan, audio=chapter.audio, track=1, total_tracks=1)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    few, many = peak_bytes(2), peak_bytes(16)
    assert many < few * 1.5 + 1_000_000


def _parse_srt(text: str) -> list[tuple[float, float, str]]:
    cues = []
    for block in text.strip().split("\n\n"):
        lines = block.splitlines()
        start, end = (_seconds(t) for t in lines[1].split(" --> "))
        cues.append((start, end, "\n".join(lines[2:])))
    return cues


def _seconds(stamp: str) -> float:
    hms, ms = stamp.replace(".", ",").split(",")
    h, m, s = (int(v) for v in hms.split(":"))
    return h * 3600 + m * 60 + s + int(ms) / 1000


def test_output_folder_holds_only_outputs_and_state(built: tuple[Path, BuiltChapter, ChapterOutput]) -> None:
    tmp, _, _ = built
    names = sorted(os.listdir(tmp / "out"))
    assert names == [".assembly", "03-ch1.mp3", "03-ch1.srt", "03-ch1.vtt", "03-ch1.words.json",
                     "03-ch1.words.vtt"]


def test_leftovers_of_a_killed_build_are_cleaned_up(tmp_path: Path) -> None:
    chapter = build_chapter(tmp_path / "cache")
    folder = tmp_path / "out"
    folder.mkdir()
    stale = [folder / ".01-ch1.mp3.abc123.part", folder / ".01-ch1.pcm.xyz.part"]
    for path in stale:
        path.write_bytes(b"half")
    other = folder / ".02-ch2.mp3.abc.part"  # another chapter's build may be running: not ours to touch
    other.write_bytes(b"busy")
    assemble_chapter(manifest=make_manifest(tmp_path), plan=chapter.plan, audio=chapter.audio, track=1,
                     total_tracks=1)
    assert not any(p.exists() for p in stale) and other.exists()


def test_missing_cover_names_the_manifest_field(tmp_path: Path) -> None:
    from pipeline.models import BookInfo

    chapter = build_chapter(tmp_path / "cache")
    manifest = make_manifest(tmp_path, book=BookInfo(title="T", cover=tmp_path / "gone.jpg"))
    with pytest.raises(AssemblyError, match=r"gone.jpg does not exist; fix book.cover"):
        assemble_chapter(manifest=manifest, plan=chapter.plan, audio=chapter.audio, track=1, total_tracks=1)
