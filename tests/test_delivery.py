"""The delivery check: assembled chapters pass ACX; bad files fail with the reason; the report."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from audio_factory import build_chapter, encode_mp3, make_manifest

from pipeline.assembly import ChapterOutput, assemble_chapter
from pipeline.delivery import check_delivery, write_delivery_report
from pipeline.errors import AssemblyError
from pipeline.export import export_book
from pipeline.layout import REPORT_NAME
from pipeline.models import AudioSettings, Manifest


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Manifest, ChapterOutput, Path, Path]:
    tmp = tmp_path_factory.mktemp("delivery")
    manifest = make_manifest(tmp, subtitles="off")
    built = build_chapter(tmp / "cache", subtitles=False)
    chapter = assemble_chapter(manifest=manifest, plan=built.plan, audio=built.audio, track=1, total_tracks=1)
    book = export_book(manifest=manifest, chapters=[chapter])
    assert book is not None
    # a file no distributor would take: loud, no room tone at the edges, 32 kHz, 128 kbps
    loud = encode_mp3(0.9 * np.sin(2 * np.pi * 220 * np.arange(64_000) / 32_000), tmp / "loud.mp3")
    return manifest, chapter, book, loud


def test_assembled_chapter_passes_acx(outputs: tuple[Manifest, ChapterOutput, Path, Path]) -> None:
    manifest, chapter, book, _ = outputs
    report = check_delivery(manifest=manifest, files=[chapter.audio_path, book])
    assert report.profile == "acx"
    assert report.passed, report.render_table()
    [mp3, m4b] = report.files
    names = {c.name for c in mp3.checks}
    assert {"RMS", "peak", "noise floor", "sample rate", "bit rate", "bit rate mode", "head room tone",
            "tail room tone", "length"} <= names
    assert mp3.measurement is not None and mp3.info is not None
    assert mp3.info.bitrate_mode == "CBR" and mp3.info.sample_rate_hz == 44_100
    assert mp3.measurement.duration_s == pytest.approx(chapter.duration_s, abs=0.001)
    assert 0.5 <= mp3.measurement.head_silence_s <= 1.0 and 1.0 <= mp3.measurement.tail_silence_s <= 5.0
    assert mp3.measurement.noise_floor_db < -60
    assert next(c for c in m4b.checks if c.name == "format").severity == "info"


def test_a_bad_file_fails_with_each_reason(outputs: tuple[Manifest, ChapterOutput, Path, Path]) -> None:
    manifest, chapter, _, loud = outputs
    report = check_delivery(manifest=manifest, files=[chapter.audio_path, loud])
    assert not report.passed
    failed = {c.name for c in report.files[1].checks if not c.passed}
    assert failed == {"RMS", "peak", "noise floor", "sample rate", "bit rate", "head room tone",
                      "tail room tone"}
    table = report.render_table()
    assert "loud.mp3" in table and "FAIL" in table and "FAILED" in table
    assert "loud.mp3: error: bit rate 128 kbps (wanted at least 192 kbps)" in table


def test_google_play_only_warns_on_loudness(outputs: tuple[Manifest, ChapterOutput, Path, Path],
                                            tmp_path: Path) -> None:
    manifest, chapter, _, loud = outputs
    assert chapter.aac_coder == "fast"  # the default profile's book parts: the fast coder
    # A Google Play book's parts hold the 128 kbps floor: its chapters' AAC is encoded with twoloop.
    gp = replace(manifest, output=tmp_path / "gp", audio=replace(manifest.audio, profile="google-play"))
    built = build_chapter(tmp_path / "cache", subtitles=False)
    gp_chapter = assemble_chapter(manifest=gp, plan=built.plan, audio=built.audio, track=1, total_tracks=1)
    assert gp_chapter.aac_coder == "twoloop"
    book = export_book(manifest=gp, chapters=[gp_chapter])
    assert book is not None
    report = check_delivery(manifest=gp, files=[gp_chapter.audio_path, book, loud])
    loud_report = report.files[2]
    assert not loud_report.passed  # 32 kHz is under Google's 44.1 kHz minimum
    assert {c.name for c in loud_report.checks if not c.passed and c.severity == "error"} == {"sample rate"}
    assert {c.name for c in loud_report.checks if not c.passed and c.severity == "warning"} >= {"RMS", "peak"}
    assert report.files[0].passed and report.files[1].passed


def test_profile_none_only_measures(outputs: tuple[Manifest, ChapterOutput, Path, Path]) -> None:
    manifest, _, _, loud = outputs
    none = replace(manifest, audio=replace(manifest.audio, profile="none"))
    report = check_delivery(manifest=none, files=[loud])
    assert report.passed and report.files[0].checks == ()
    assert report.files[0].measurement is not None


def test_unreadable_file_is_reported_not_raised(outputs: tuple[Manifest, ChapterOutput, Path, Path],
                                               tmp_path: Path) -> None:
    manifest, chapter, _, _ = outputs
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(b"not audio at all")
    report = check_delivery(manifest=manifest, files=[junk, chapter.audio_path])
    assert not report.passed and report.files[1].passed
    assert report.files[0].error and "junk.mp3" in report.render_table()


def test_unknown_profile(outputs: tuple[Manifest, ChapterOutput, Path, Path]) -> None:
    manifest, chapter, _, _ = outputs
    odd = replace(manifest, audio=AudioSettings(profile="spotify"))
    with pytest.raises(AssemblyError, match="unknown delivery profile 'spotify'.*acx, findaway, google-play, kobo, apple, none"):
        check_delivery(manifest=odd, files=[chapter.audio_path])


def test_report_json_is_written_atomically(outputs: tuple[Manifest, ChapterOutput, Path, Path]) -> None:
    manifest, chapter, book, _ = outputs
    report = check_delivery(manifest=manifest, files=[chapter.audio_path, book])
    path = write_delivery_report(report, manifest.output / REPORT_NAME)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["profile"] == "acx" and data["passed"] is True
    assert [f["file"] for f in data["files"]] == ["01-ch1.mp3", book.name]
    first = data["files"][0]
    assert set(first["measured"]) >= {"duration_s", "rms_db", "peak_db", "noise_floor_db", "head_silence_s",
                                      "tail_silence_s"}
    assert first["stream"]["bitrate_mode"] == "CBR"
    assert not [p for p in manifest.output.iterdir() if p.name.endswith(".part")]


def test_a_failed_report_names_every_failed_rule(outputs: tuple[Manifest, ChapterOutput, Path, Path],
                                                 tmp_path: Path) -> None:
    from pipeline.delivery import report_failures

    manifest, chapter, _, loud = outputs
    path = write_delivery_report(check_delivery(manifest=manifest, files=[chapter.audio_path, loud]),
                                 tmp_path / REPORT_NAME)
    lines = report_failures(path)
    assert len(lines) == 7 and all(line.startswith("loud.mp3: ") for line in lines)
    assert ("loud.mp3: bit rate 128 kbps (the acx profile wants at least 192 kbps); set audio.bitrate_kbps to one "
            "the profile takes, then `audiobook stitch`") in lines
    good = write_delivery_report(check_delivery(manifest=manifest, files=[chapter.audio_path]), tmp_path / "ok.json")
    assert report_failures(good) == [] and report_failures(tmp_path / "missing.json") == []


@pytest.mark.parametrize("audio, problem", [
    ("{target_rms_db: -30}", "audio.target_rms_db: -30 breaks the acx rule “RMS -23 to -18 dB”"),
    ("{sample_rate_hz: 22050}", "audio.sample_rate_hz: 22050 breaks the acx rule “a sample rate of 44100 Hz”"),
    ("{head_s: 0}", "audio.head_s: 0 breaks the acx rule “0.5 to 1 s of room tone at the head”"),
    ("{profile: google-play, bitrate_kbps: 96}", "audio.bitrate_kbps: 96 breaks the google-play rule"),
])
def test_settings_a_profile_must_reject_are_refused_before_anything_is_spent(tmp_path: Path, audio: str,
                                                                            problem: str) -> None:
    from pipeline.errors import ManifestError
    from pipeline.manifest import load_manifest

    path = tmp_path / "book.yaml"
    path.write_text(f"title: B\nvoice: {{model_id: m1}}\naudio: {audio}\nchapters:\n  - id: a\n    text: Hi.\n",
                    encoding="utf-8")
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    (found,) = caught.value.problems
    assert found.line == 3 and str(found).split(": ", 1)[1].startswith(problem), str(found)
    assert "ACX Audio Submission Requirements" in str(found) or "Google Play" in str(found)
    path.write_text(path.read_text(encoding="utf-8").replace("audio: {", "audio: {profile: none, ").replace(
        "profile: none, profile: google-play, ", "profile: none, "), encoding="utf-8")
    load_manifest(path)  # the same settings for no retailer are fine


def test_a_chapter_over_the_length_limit_only_warns_in_the_book_folder(
        outputs: tuple[Manifest, ChapterOutput, Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline import profiles

    manifest, chapter, _, _ = outputs
    short = replace(profiles.PROFILES["acx"], max_file_minutes=0.01)  # the chapter is far over it
    monkeypatch.setitem(profiles.PROFILES, "acx", short)
    report = check_delivery(manifest=manifest, files=[chapter.audio_path])
    (length,) = [c for c in report.files[0].checks if c.name == "length"]
    assert not length.passed and length.severity == "warning" and "audiobook deliver" in length.fix
    assert report.passed  # `audiobook deliver` splits it; the run does not fail for it
