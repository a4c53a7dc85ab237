"""Retail delivery (issue 16): the profile tables, the manifest's credits, spoken titles and sample,
and the parts of `audiobook deliver` that need no rendered book: names, seams, split points, cuts."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import numpy as np
import pytest
from audio_factory import decode, encode_mp3

from pipeline import delivery, packaging, profiles
from pipeline import subtitles as subs
from pipeline.audio import dsp, ffmpeg, tags
from pipeline.delivery_page import render_html
from pipeline.errors import ManifestError, Problem
from pipeline.manifest import begins_with_title, default_credits, load_manifest
from pipeline.models import AudioSettings, BookInfo

HEAD = "title: The Salt Road\nauthor: Ann Author\nnarrator: Ned Narrator\nvoice: {model_id: m1}\n"  # lines 1-4
CHAPTERS = ("chapters:\n  - id: ch01\n    title: The Harbour\n    text: The boats came in at dawn. The gulls followed.\n"
            "  - id: ch02\n    title: Chapter Two\n    text: \"Chapter two. The market was loud.\"\n")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "book.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def problems(path: Path) -> list[Problem]:
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    return caught.value.problems


# --- the profile tables --------------------------------------------------------------------------

def test_every_named_rule_of_every_profile_is_one_the_checks_make() -> None:
    made = {"RMS", "LUFS", "peak", "noise floor", "sample rate", "channels", "bit rate", "bit rate mode",
            "head room tone", "tail room tone", "length", "format", "tags", "sample length", "opening credits",
            "closing credits", "retail sample", "same channels", "cover", "cover size", "cover square"}
    for p in profiles.PROFILES.values():
        assert set(p.warn) <= made, p.name
        assert set(p.sources) <= made, p.name
        assert p.source and (p.name == "none" or (p.ai_policy and p.ai_source))


def test_the_default_settings_pass_every_profile_and_acx_alone_needs_the_ai_confirmation() -> None:
    settings = AudioSettings()
    for name, rules in profiles.SETTING_RULES.items():
        assert [r.setting for r in rules if r.problem(getattr(settings, r.setting), name)] == [], name
    assert [p.name for p in profiles.PROFILES.values() if p.ai_confirm] == ["acx"]
    acx = {r.setting for r in profiles.SETTING_RULES["acx"]}
    assert acx == {"target_rms_db", "true_peak_db", "room_tone_db", "sample_rate_hz", "bitrate_kbps", "head_s",
                   "tail_s"}
    assert (profiles.Range(0.5, 1.0).clamp(0.2), profiles.Range(0.5, 1.0).clamp(3), profiles.Range(1, None).clamp(7)) \
        == (0.5, 1.0, 7)
    # a rule the retailer only recommends is measured, never refused in the manifest
    assert "head_s" not in {r.setting for r in profiles.SETTING_RULES["google-play"]}


def test_a_profile_in_lufs_is_checked_on_the_measured_lufs() -> None:
    info = tags.StreamInfo("mp3", 44_100, 1, 192.0, "CBR")
    m = dsp.Measurement(60, 60 * 44_100, -20, -4, -3.9, -70, 0.8, 2.0)
    apple = {c.name: c for c in delivery.profile_checks("apple", info, m, lufs=-26.0)}
    assert "RMS" not in apple and not apple["LUFS"].passed and apple["LUFS"].severity == "warning"
    assert apple["LUFS"].source == profiles.EBU_R128
    acx = {c.name: c for c in delivery.profile_checks("acx", info, dataclasses.replace(m, tail_silence_s=0.4))}
    assert not acx["tail room tone"].passed and acx["tail room tone"].fix.startswith("set audio.tail_s")
    assert acx["bit rate"].passed and acx["bit rate"].source == profiles.ACX


def test_integrated_loudness_follows_the_level(tmp_path: Path) -> None:
    t = np.arange(10 * 16_000) / 16_000
    quiet = encode_mp3(0.05 * np.sin(2 * np.pi * 1000 * t), tmp_path / "quiet.mp3")
    loud = encode_mp3(0.5 * np.sin(2 * np.pi * 1000 * t), tmp_path / "loud.mp3")
    a, b = ffmpeg.integrated_loudness(quiet), ffmpeg.integrated_loudness(loud)
    assert b - a == pytest.approx(20.0, abs=0.5)     # ten times the amplitude: 20 LU louder
    assert -30 < b < -5


# --- the manifest: credits, spoken titles, the sample ----------------------------------------------

def test_credits_are_chapters_around_the_book_with_default_text(tmp_path: Path) -> None:
    m = load_manifest(write(tmp_path, HEAD + "subtitle: A Journey\ncredits: {}\n" + CHAPTERS))
    assert [(c.id, c.number, c.kind) for c in m.chapters] == [
        ("opening-credits", 0, "opening-credits"), ("ch01", 1, "chapter"), ("ch02", 2, "chapter"),
        ("closing-credits", 3, "closing-credits")]
    assert m.has_credits and [c.id for c in m.chapters if not c.is_credits] == ["ch01", "ch02"]
    assert m.chapters[0].text == "The Salt Road. A Journey. Written by Ann Author. Narrated by Ned Narrator."
    assert m.chapters[-1].text == "This has been The Salt Road, written by Ann Author, narrated by Ned Narrator. The end."
    assert m.chapters[0].voice == m.voice and m.chapters[0].title == "Opening Credits"


def test_credits_text_a_chinese_default_and_their_problems(tmp_path: Path) -> None:
    m = load_manifest(write(tmp_path, HEAD + "credits: {closing: Thanks for listening.}\n" + CHAPTERS))
    assert m.chapters[-1].text == "Thanks for listening." and m.chapters[0].text.startswith("The Salt Road.")
    zh = default_credits(BookInfo(title="盐路", author="作者甲"), "Chinese")
    assert zh["opening-credits"] == "盐路。作者：作者甲。" and "盐路" in zh["closing-credits"]
    found = problems(write(tmp_path, HEAD + "credits: {opening: \"<#1.0#>\"}\n"
                           + CHAPTERS.replace("id: ch02", "id: opening-credits")))
    assert {p.field for p in found} == {"credits.opening", "chapters[1].id"}
    assert next(p for p in found if p.field == "credits.opening").line == 5


def test_spoken_titles_are_read_once(tmp_path: Path) -> None:
    m = load_manifest(write(tmp_path, HEAD + "speak_chapter_titles: true\npauses: {title_s: 1.2}\n" + CHAPTERS))
    one, two = m.chapters
    assert one.text.startswith("The Harbour.<#1.2#>\n\nThe boats") and one.spoken_title == "The Harbour"
    assert two.text == "Chapter two. The market was loud." and two.spoken_title is None  # it begins with it
    found = problems(write(tmp_path, HEAD + "speak_chapter_titles: true\n"
                           + CHAPTERS.replace("    title: The Harbour\n", "")))
    assert [(p.field, p.line) for p in found] == [("chapters[0].title", 7)]


@pytest.mark.parametrize("title, text, spoken", [
    ("The Log", "The log book lived on a shelf in the watch room.", True),   # a sentence, not a heading
    ("Arrival", "Chapter 1: Arrival\n\nThe ferry left.", False),            # a heading that holds the title
    ("Arrival", "ARRIVAL\n\nThe ferry left.", False),
    ("风暴", "风暴过后的第三天，海面平静。", True),
    ("风暴", "第一章 风暴\n\n海面平静。", False),
])
def test_a_title_is_spoken_unless_the_first_paragraph_is_it(title: str, text: str, spoken: bool) -> None:
    assert begins_with_title(text, title) is not spoken


def test_default_credits_are_read_in_the_book_language_or_asked_for(tmp_path: Path) -> None:
    zh = HEAD.replace("title: The Salt Road", "title: 盐路") + "credits: {}\n" + CHAPTERS.replace(
        "  - id: ch02", "    language: Chinese\n  - id: ch02").replace("    title: Chapter Two\n",
                                                                      "    title: Chapter Two\n    language: Chinese\n")
    m = load_manifest(write(tmp_path, zh))
    assert m.chapters[0].language == "Chinese" and m.chapters[0].text.startswith("盐路。")
    found = problems(write(tmp_path, HEAD + "language: Japanese\ncredits: {opening: はじめ。}\n" + CHAPTERS))
    assert [(p.field, p.line) for p in found] == [("credits", 6)] and "credits.closing in Japanese" in found[0].message


def test_the_sample_chapter_is_found_ignoring_case(tmp_path: Path) -> None:
    assert load_manifest(write(tmp_path, HEAD + "sample: {chapter: CH01}\n" + CHAPTERS)).sample.chapter == "ch01"


def test_a_package_never_replaces_the_book_or_a_foreign_folder(tmp_path: Path) -> None:
    m = load_manifest(write(tmp_path, HEAD + "credits: {}\n" + CHAPTERS))
    acx = profiles.PROFILES["acx"]
    m.output.mkdir(parents=True)
    (m.output / "delivery-report.json").write_text("{}", encoding="utf-8")
    for out in (m.output, m.output.parent, tmp_path):
        with pytest.raises(packaging.DeliveryRefused, match="holds the book"):
            packaging.refuse_early(m, acx, confirm_ai=True, out=out)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(packaging.DeliveryRefused, match=packaging.MARKER):
        packaging.refuse_early(m, acx, confirm_ai=True, out=tmp_path / "pkg")
    (tmp_path / "pkg" / packaging.MARKER).write_text("{}", encoding="utf-8")
    packaging.refuse_early(m, acx, confirm_ai=True, out=tmp_path / "pkg")   # a package deliver made


@pytest.mark.parametrize("sample, field, words", [
    ("{chapter: ch9}", "sample.chapter", "no chapter has the id 'ch9'"),
    ("{chapter: ch01, at: the whales sang}", "sample.at", "is not in chapter 'ch01'"),
    ("{chapter: ch01, at: gulls, start_s: 3}", "sample.start_s", "not both"),
    ("{at: gulls}", "sample.at", "needs sample.chapter"),
    ("{seconds: 10}", "sample.seconds", "out of range"),
])
def test_the_sample_is_checked_before_anything_is_spent(tmp_path: Path, sample: str, field: str, words: str) -> None:
    (found,) = problems(write(tmp_path, HEAD + f"sample: {sample}\n" + CHAPTERS))
    assert found.field == field and words in found.message and found.line == 5


def test_a_sample_from_given_words(tmp_path: Path) -> None:
    m = load_manifest(write(tmp_path, HEAD + "sample: {chapter: ch01, at: \"The GULLS followed\"}\n" + CHAPTERS))
    assert m.sample.chapter == "ch01" and m.sample.seconds == 180


# --- names, seams, split points ----------------------------------------------------------------

def test_names_sort_as_they_play_past_a_hundred_files() -> None:
    acx = profiles.PROFILES["acx"]
    names = [packaging.file_name(acx, n=n, title="Chapter", book="B", total=120) for n in range(1, 121)]
    assert names == sorted(names) and names[0] == "001 - Chapter" and names[-1] == "120 - Chapter"


def test_file_names_keep_the_play_order_and_are_safe() -> None:
    acx = profiles.PROFILES["acx"]
    assert packaging.file_name(acx, n=3, title="Chapter 2: A/B \"test\"?", book="B") == "03 - Chapter 2 AB test"
    assert packaging.file_name(acx, n=12, title="Long", book="B", part=2) == "12 - Long-part2"
    findaway = packaging.file_name(profiles.PROFILES["findaway"], n=1, title="Opening Credits", book="The Salt Road")
    assert findaway == "001_The Salt Road_Opening Credits"
    cjk = packaging.file_name(acx, n=1, title="灯" * 100, book="B")
    assert len(cjk.encode("utf-8")) <= packaging.NAME_MAX_BYTES and cjk.startswith("01 - 灯")


def cue(start: float, end: float, text: str = "x") -> subs.Cue:
    return subs.Cue(start, end, text)


def test_seams_are_the_silences_between_sentences() -> None:
    quiet = np.zeros(1000, dtype=bool)        # 10 s in 10 ms frames
    quiet[300:350] = True                      # 0.5 s pause after the first sentence
    quiet[600:605] = True                      # 50 ms: too short to cut
    quiet[420:440] = True                      # a pause inside the second sentence: not a seam
    found = packaging.seams([cue(0, 3.0), cue(3.5, 6.0), cue(6.05, 10)], quiet)
    assert found == [packaging.Seam(after=0, quiet_start=300, quiet_end=350)]


def test_split_points_keep_every_part_under_the_limit_and_prefer_long_pauses() -> None:
    # a pause every 10 s; a long one (a paragraph's) at 45 s and at 95 s
    found = [packaging.Seam(i, t * 100, t * 100 + (80 if t in (45, 95) else 30)) for i, t in
             enumerate(range(5, 150, 10))] + [packaging.Seam(90, 4500, 4580), packaging.Seam(91, 9500, 9580)]
    cuts = packaging.split_points(150.0, found, limit_s=60.0)
    assert [c.quiet_start for c in cuts] == [4500, 9500]
    edges = [0.0] + [c.quiet_end / 100 for c in cuts] + [150.0]
    assert all(b - a <= 60.0 for a, b in itertools.pairwise(edges))
    with pytest.raises(Exception, match="no pause between sentences"):
        packaging.split_points(150.0, [packaging.Seam(0, 100, 150)], limit_s=60.0)


def test_a_cut_piece_has_the_room_tone_it_was_given(tmp_path: Path) -> None:
    sr = 44_100
    t = np.arange(sr * 3) / sr
    speech = 0.3 * np.sin(2 * np.pi * 300 * t)
    chapter = np.concatenate([np.zeros(sr), speech, np.zeros(sr), speech, np.zeros(sr)])
    source = encode_mp3(chapter, tmp_path / "chapter.mp3", rate_hz=sr, kbps=192)
    piece = packaging.Piece(role="chapter", chapter=None, output=None, title="t", name="part.mp3",
                            start=round(4.5 * sr), stop=round(8 * sr), head_pad_s=0.75, tail_pad_s=2.0,
                            fade_in_s=0.01, fade_out_s=0.5)
    target = tmp_path / "part.mp3"
    packaging.write_piece(source, piece, target, sample_rate_hz=sr, bitrate_kbps=192, room_tone_db=-75)
    out = decode(target)
    assert len(out) / sr == pytest.approx(3.5 + 0.75 + 2.0, abs=0.03)
    with ffmpeg.stream_pcm(target, sample_rate_hz=sr) as blocks:
        m = dsp.measure_pcm(blocks, sample_rate_hz=sr, silence_threshold_db=-50, label="part")
    assert m.head_silence_s == pytest.approx(0.75 + 0.5, abs=0.05)    # the pad, then the chapter's own silence
    pad = out[:round(0.7 * sr)].astype(np.float64)
    assert -78 < 20 * np.log10(np.sqrt(np.mean(pad * pad))) < -72       # room tone, never digital silence
    assert m.tail_silence_s == pytest.approx(2.0, abs=0.05)


def test_refusals_name_the_flag_and_the_section(tmp_path: Path) -> None:
    m = load_manifest(write(tmp_path, HEAD + CHAPTERS))
    with pytest.raises(packaging.DeliveryRefused, match="--confirm-ai-narration-allowed"):
        packaging.refuse_early(m, profiles.PROFILES["acx"], confirm_ai=False)
    with pytest.raises(packaging.DeliveryRefused, match="no credits: section"):
        packaging.refuse_early(m, profiles.PROFILES["acx"], confirm_ai=True)
    packaging.refuse_early(m, profiles.PROFILES["google-play"], confirm_ai=False)  # no credits required


def test_the_html_report_escapes_what_it_shows() -> None:
    check = {"name": "RMS", "measured": "<b>-30</b>", "limit": "-23 to -18 dB", "passed": False,
             "severity": "error", "source": "ACX & co", "fix": "raise it"}
    page = render_html({
        "profile": "acx", "retailer": "ACX", "passed": False, "folder": "/x", "notes": [], "failures": ["a <b>"],
        "policy": {"synthetic_narration": "Only with authorisation.", "source": "acx.com", "confirmed": True,
                   "confirmation_required": True},
        "book_checks": [], "files": [{"file": "01 - A.mp3", "role": "chapter", "track": 1, "passed": False,
                                      "error": None, "measured": {"duration_s": 65.0}, "checks": [check]}]})
    assert "&lt;b&gt;-30&lt;/b&gt;" in page and "ACX &amp; co" in page and "<b>-30</b>" not in page
    assert "Confirmed with --confirm-ai-narration-allowed" in page and "01 - A.mp3" in page and "0:01:05" in page
