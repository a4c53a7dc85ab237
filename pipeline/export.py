"""The whole-book M4B, joined from the chapters' shares by stream copy.

Each chapter's AAC is encoded when the chapter is assembled, from the same samples as its MP3
(:func:`pipeline.assembly.assemble_chapter`), as raw ADTS frames in ``.assembly/aac/<id>.aac``. The
book is those parts one after the other, copied into one MP4 audio track without re-encoding, with a
chapter mark per chapter and the book's tags (title, author, narrator, year, description, cover,
media kind "audiobook"). So after an edit only the edited chapter is encoded again, and joining ten
hours takes seconds.

Chapter *k* starts at the sum of the earlier parts' lengths. An ADTS part decodes to a whole number
of AAC frames (1,024 samples each, the encoder's priming and padding included), so that sum is exact:
read from the frame headers, it is exactly where chapter *k*'s part begins in the book. (Each part
begins with its encoder's priming, about 23 ms, within the chapter's room-tone head.)

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
from pipeline.assembly import ChapterOutput, cover_digest, ensure_book_share, file_identity, read_state
from pipeline.audio import ffmpeg, tags
from pipeline.errors import AssemblyError
from pipeline.layout import BookLayout
from pipeline.models import Manifest

EXPORT_FORMAT = 2  # 2: joined from the chapters' AAC by stream copy


def _fingerprint(manifest: Manifest, parts: Sequence[ChapterOutput]) -> str:
    book = asdict(manifest.book)
    book["cover"] = cover_digest(manifest)
    doc = {
        "format": EXPORT_FORMAT,
        "book": book,
        "sample_rate_hz": manifest.audio.sample_rate_hz,
        "chapters": [{"id": c.chapter_id, "title": c.title, "aac": file_identity(c.aac_path) if c.aac_path else None}
                     for c in parts],
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def book_marks(parts: Sequence[ChapterOutput]) -> list[ffmpeg.ChapterMark]:
    """Where each chapter's part begins and ends in the joined book, in samples."""
    marks = []
    start = 0
    for part in parts:
        end = start + part.aac_frames * ffmpeg.AAC_FRAME_SAMPLES
        marks.append(ffmpeg.ChapterMark(start, end, part.title))
        start = end
    return marks


def export_book(*, manifest: Manifest, chapters: Sequence[ChapterOutput], force: bool = False) -> Path | None:
    """Write the whole-book M4B from the assembled chapters and return its path.

    Returns None (and writes nothing) when ``manifest.audio.m4b`` is off. Chapters are ordered by
    track number; a chapter without its share of the book (built before the book was turned on, or at
    another bit rate) gets it encoded first. Skips the join when the parts, titles, book metadata,
    cover and settings are unchanged since the last export and the file is still there, unless ``force``.
    """
    if not manifest.audio.m4b:
        return None
    if not chapters:
        raise AssemblyError("no chapters to put in the book; assemble the chapters first (`audiobook stitch`)")
    parts = [ensure_book_share(manifest, c) for c in sorted(chapters, key=lambda c: c.track)]
    output = Path(manifest.output)
    layout = BookLayout(output)
    target = layout.book_file(manifest.book.title)
    state_path = layout.book_state
    fsio.ensure_dir(layout.state)
    # left by an interrupted export (the first release also encoded an intermediate .aac.m4a)
    fsio.remove_stale_parts(output, [target.name, f"{target.stem}.aac.m4a"])
    fingerprint = _fingerprint(manifest, parts)
    state = read_state(state_path)
    if (not force and state is not None and state.get("fingerprint") == fingerprint
            and target.is_file() and target.stat().st_size == state.get("size")):
        return target

    sr = manifest.audio.sample_rate_hz
    marks = book_marks(parts)
    with fsio.TempFiles(output) as temps:
        temp_book = temps.new(target.name)
        ffmpeg.mux_chapters([p.aac_path for p in parts if p.aac_path is not None], temp_book, chapters=marks,
                            sample_rate_hz=sr, what=f"join the chapters into {target.name}")
        book = manifest.book
        tags.tag_mp4(temp_book, tags.Tags(
            title=book.title, album=book.title, author=book.author, narrator=book.narrator, year=book.year,
            description=book.description, cover=book.cover))
        temps.commit(temp_book, target)
    chapter_rows = [{"id": c.chapter_id, "title": c.title, "start_s": m.start_sample / sr}
                    for c, m in zip(parts, marks, strict=True)]
    fsio.write_atomic(state_path, json.dumps({"fingerprint": fingerprint, "size": target.stat().st_size,
                                              "chapters": chapter_rows}, indent=1))
    return target
