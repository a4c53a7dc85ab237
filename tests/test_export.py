"""The whole-book M4B: the chapters' AAC parts joined by copy, chapter marks that agree with the chapter files, tags."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from audio_factory import build_chapter, decode, make_manifest, write_cover

from pipeline.assembly import ChapterOutput, assemble_chapter
from pipeline.audio.ffmpeg import AAC_FRAME_SAMPLES, decoded_format
from pipeline.audio.tags import read_mp4_chapters, stream_info
from pipeline.export import export_book
from pipeline.layout import BookLayout, slugify
from pipeline.models import AudioSettings, BookInfo, Manifest

SR = 44_100


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory) -> tuple[Manifest, list[ChapterOutput], Path]:
    tmp = tmp_path_factory.mktemp("export")
    cover = write_cover(tmp / "cover.png")
    manifest = make_manifest(tmp, subtitles="sentence",
                             book=BookInfo(title="The Tone Book: Part 1", author="Ada Author", narrator="Nia",
                                           year=2023, description="Tones, mostly.", cover=cover))
    chapters = []
    for k, count in enumerate((2, 3, 1)):
        built = build_chapter(tmp / "cache", chapter_id=f"c{k + 1}", title=f"Chapter {k + 1}: Tones",
                              number=k + 1, designs=None if count == 3 else _designs(count, k), seed=10 * k)
        chapters.append(assemble_chapter(manifest=manifest, plan=built.plan, audio=built.audio, track=k + 1,
                                         total_tracks=3))
    path = export_book(manifest=manifest, chapters=list(reversed(chapters)))  # order comes from the tracks
    assert path is not None
    return manifest, chapters, path


def _designs(count: int, seed: int) -> tuple:
    from audio_factory import design_chunk

    return tuple(design_chunk(seed=100 + seed + i) for i in range(count))


def test_book_is_named_after_the_title(book: tuple[Manifest, list[ChapterOutput], Path]) -> None:
    manifest, _, path = book
    assert path == manifest.output / "the-tone-book-part-1.m4b" == BookLayout(manifest.output).book_file(manifest.book.title)
    assert not [p for p in manifest.output.iterdir() if p.name.endswith(".part")]


def test_chapter_marks_match_the_chapter_files(book: tuple[Manifest, list[ChapterOutput], Path]) -> None:
    """Each mark is where its chapter's part begins (exactly: whole AAC frames), and the chapter's speech
    starts in the book where it starts in its own file, give or take the encoder's 23 ms priming."""
    _, chapters, path = book
    marks = read_mp4_chapters(path)
    assert [t for _, t in marks] == [c.title for c in chapters]
    whole = decode(path)
    start = 0
    for (mark_start, _), chapter in zip(marks, chapters, strict=True):
        assert chapter.aac_frames > 0 and chapter.aac_path is not None and chapter.aac_path.is_file()
        assert mark_start == pytest.approx(start / SR, abs=1 / SR)
        own = decode(chapter.audio_path)
        onset = int(np.argmax(np.abs(own) > 0.05))
        region = whole[start:start + chapter.aac_frames * AAC_FRAME_SAMPLES]
        assert abs(int(np.argmax(np.abs(region) > 0.05)) - (onset + AAC_FRAME_SAMPLES)) < 0.01 * SR
        # a part holds the whole chapter: at most priming plus one frame of padding more
        assert 0 <= chapter.aac_frames * AAC_FRAME_SAMPLES - len(own) <= 2 * AAC_FRAME_SAMPLES + 1
        start += chapter.aac_frames * AAC_FRAME_SAMPLES
    # the book's audio is the parts end to end
    assert len(whole) == pytest.approx(start, abs=2)


def test_an_edit_rebuilds_one_part_and_joins_the_rest_by_copy(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path, subtitles="off")
    chapters = []
    for k in range(3):
        built = build_chapter(tmp_path / "cache", chapter_id=f"c{k}", title=f"C{k}", number=k + 1, seed=7 * k,
                              designs=_designs(1, k))
        chapters.append(assemble_chapter(manifest=manifest, plan=built.plan, audio=built.audio, track=k + 1,
                                         total_tracks=3))
    export_book(manifest=manifest, chapters=chapters)
    stamps = {c.chapter_id: c.aac_path.stat().st_mtime_ns for c in chapters if c.aac_path}
    edited = build_chapter(tmp_path / "cache2", chapter_id="c1", title="C1", number=2, seed=99, designs=_designs(1, 9))
    chapters[1] = assemble_chapter(manifest=manifest, plan=edited.plan, audio=edited.audio, track=2, total_tracks=3)
    path = export_book(manifest=manifest, chapters=chapters)
    assert path is not None and len(read_mp4_chapters(path)) == 3
    after = {c.chapter_id: c.aac_path.stat().st_mtime_ns for c in chapters if c.aac_path}
    assert after["c0"] == stamps["c0"] and after["c2"] == stamps["c2"] and after["c1"] != stamps["c1"]


def test_book_is_aac_and_tagged(book: tuple[Manifest, list[ChapterOutput], Path]) -> None:
    from mutagen.mp4 import MP4

    manifest, _, path = book
    info = stream_info(path, decoded=decoded_format(path))
    assert (info.codec, info.sample_rate_hz, info.channels) == ("aac", SR, 1)
    tags = MP4(path).tags
    assert tags is not None
    assert tags["©nam"] == ["The Tone Book: Part 1"] and tags["©ART"] == ["Ada Author"]
    assert tags["©wrt"] == ["Nia"] and tags["©day"] == ["2023"] and tags["desc"] == ["Tones, mostly."]
    assert tags["stik"] == [2]
    assert manifest.book.cover is not None
    assert bytes(tags["covr"][0]) == manifest.book.cover.read_bytes()


def test_unchanged_book_is_not_reencoded(book: tuple[Manifest, list[ChapterOutput], Path]) -> None:
    manifest, chapters, path = book
    stamp = path.stat().st_mtime_ns
    assert export_book(manifest=manifest, chapters=chapters) == path
    assert path.stat().st_mtime_ns == stamp
    retitled = [replace(chapters[0], title="Prologue"), *chapters[1:]]
    assert export_book(manifest=manifest, chapters=retitled) == path
    assert path.stat().st_mtime_ns != stamp
    assert read_mp4_chapters(path)[0][1] == "Prologue"
    export_book(manifest=manifest, chapters=chapters, force=True)
    assert read_mp4_chapters(path)[0][1] == chapters[0].title


def test_no_book_when_m4b_is_off(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path, audio=AudioSettings(m4b=False))
    assert export_book(manifest=manifest, chapters=[]) is None
    assert not manifest.output.exists()


def test_slugify() -> None:
    assert slugify("The Tone Book: Part 1") == "the-tone-book-part-1"
    assert slugify("红楼梦 (上)") == "红楼梦-上"
    assert slugify("???") == "audiobook"


def test_a_profile_with_a_bit_rate_floor_re_encodes_only_the_book_parts(tmp_path: Path) -> None:
    """The default book parts use the fast AAC coder; switching to Google Play (a 128 kbps floor the fast
    coder may miss) re-encodes each chapter's AAC part with twoloop, once, and leaves its MP3 alone."""
    manifest = make_manifest(tmp_path, subtitles="off")
    built = build_chapter(tmp_path / "cache", subtitles=False)

    def assemble(m: Manifest) -> ChapterOutput:
        return assemble_chapter(manifest=m, plan=built.plan, audio=built.audio, track=1, total_tracks=1)

    first = assemble(manifest)
    assert first.rebuilt and first.aac_coder == "fast" and first.aac_path is not None
    mp3_stamp, aac_stamp = first.audio_path.stat().st_mtime_ns, first.aac_path.stat().st_mtime_ns
    gp = replace(manifest, audio=replace(manifest.audio, profile="google-play"))
    second = assemble(gp)
    assert not second.rebuilt and second.aac_coder == "twoloop" and second.aac_path == first.aac_path
    assert second.audio_path.stat().st_mtime_ns == mp3_stamp
    assert second.aac_path.stat().st_mtime_ns != aac_stamp
    again = assemble(gp)  # the state remembers the coder: nothing is encoded again
    assert again.aac_coder == "twoloop" and again.aac_path is not None
    assert again.aac_path.stat().st_mtime_ns == second.aac_path.stat().st_mtime_ns
