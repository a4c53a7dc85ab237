"""The whole-book M4B (issue 5, part 4).

The chapter MP3s are decoded one after another and streamed into a single AAC encode (the book is
encoded once, never per chapter and then joined), counting samples as they pass: chapter *k* starts
at the sum of the decoded lengths of chapters 1..k-1, which is exactly where it starts in the audio.
The chapter marks (titles from the manifest) are then muxed in without re-encoding, and the file is
tagged (title, author, narrator, year, description, cover, media kind "audiobook").

The book goes to ``<output>/<slug of the book title>.m4b`` through a temporary file and a rename; a
fingerprint of its inputs in ``.assembly/book.json`` skips the work when nothing changed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from pipeline import fsio
from pipeline.assembly import ChapterOutput, cover_digest, file_digest, read_state
from pipeline.audio import ffmpeg, tags
from pipeline.errors import AssemblyError
from pipeline.layout import BookLayout
from pipeline.models import Manifest

EXPORT_FORMAT = 1


def _fingerprint(manifest: Manifest, chapters: Sequence[ChapterOutput]) -> str:
    book = asdict(manifest.book)
    book["cover"] = cover_digest(manifest)
    doc = {
        "format": EXPORT_FORMAT,
        "book": book,
        "sample_rate_hz": manifest.audio.sample_rate_hz,
        "bitrate_kbps": manifest.audio.m4b_bitrate_kbps,
        "chapters": [{"id": c.chapter_id, "title": c.title, "audio": file_digest(c.audio_path)} for c in chapters],
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def export_book(*, manifest: Manifest, chapters: Sequence[ChapterOutput], force: bool = False) -> Path | None:
    """Write the whole-book M4B from the assembled chapters and return its path.

    Returns None (and writes nothing) when ``manifest.audio.m4b`` is off. Chapters are ordered by
    track number. Skips the encode when the chapter files, titles, book metadata, cover and settings
    are unchanged since the last export and the file is still there, unless ``force``.
    """
    if not manifest.audio.m4b:
        return None
    if not chapters:
        raise AssemblyError("no chapters to put in the book; assemble the chapters first (`audiobook stitch`)")
    ordered = sorted(chapters, key=lambda c: c.track)
    output = Path(manifest.output)
    layout = BookLayout(output)
    target = layout.book_file(manifest.book.title)
    state_path = layout.book_state
    fsio.ensure_dir(layout.state)
    aac_name = f"{target.stem}.aac.m4a"
    fsio.remove_stale_parts(output, [aac_name, target.name])  # left by an interrupted export
    fingerprint = _fingerprint(manifest, ordered)
    state = read_state(state_path)
    if (not force and state is not None and state.get("fingerprint") == fingerprint
            and target.is_file() and target.stat().st_size == state.get("size")):
        return target

    sr = manifest.audio.sample_rate_hz
    marks: list[ffmpeg.ChapterMark] = []
    with fsio.TempFiles(output) as temps:
        aac = temps.new(aac_name)
        with ffmpeg.aac_encoder(aac, sample_rate_hz=sr, bitrate_kbps=manifest.audio.m4b_bitrate_kbps,
                                what=f"the book {target.name}") as encoder:
            for chapter in ordered:
                start = encoder.samples_written
                label = f"chapter {chapter.chapter_id!r}"
                with ffmpeg.stream_pcm(chapter.audio_path, sample_rate_hz=sr, label=label) as blocks:
                    for block in blocks:
                        encoder.write(block)
                marks.append(ffmpeg.ChapterMark(start, encoder.samples_written, chapter.title))
        temp_book = temps.new(target.name)
        ffmpeg.mux_chapters(aac, temp_book, chapters=marks, sample_rate_hz=sr,
                            what=f"add chapter marks to {target.name}")
        book = manifest.book
        tags.tag_mp4(temp_book, tags.Tags(
            title=book.title, album=book.title, author=book.author, narrator=book.narrator, year=book.year,
            description=book.description, cover=book.cover))
        temps.commit(temp_book, target)
    chapter_rows = [{"id": c.chapter_id, "title": c.title, "start_s": m.start_sample / sr}
                    for c, m in zip(ordered, marks, strict=True)]
    fsio.write_atomic(state_path, json.dumps({"fingerprint": fingerprint, "size": target.stat().st_size,
                                              "chapters": chapter_rows}, indent=1))
    return target
