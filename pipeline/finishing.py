"""Finishing a book: cached chunk audio -> chapter files -> the M4B and the delivery report. No network.

The engine calls :func:`assemble` for each chapter as soon as its audio is in; :func:`finish_book`
then confirms every chapter (an unchanged one is not rebuilt), exports the book and checks delivery.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from pipeline.assembly import ChapterOutput, assemble_chapter, existing_chapter
from pipeline.errors import PipelineError
from pipeline.layout import BookLayout
from pipeline.models import ChapterPlan, ChunkAudio, Manifest


def chunk_audio(manifest: Manifest, chapter_plan: ChapterPlan, selected: Mapping[str, int]) -> list[ChunkAudio] | None:
    """The cached audio of every chunk of a chapter (the selected take of each), or None while any is
    missing."""
    layout = BookLayout(manifest.output)
    out = []
    for chunk in chapter_plan.chunks:
        audio, subtitles = layout.take_paths(chunk.key, selected.get(chunk.key, 1))
        if not audio.is_file():
            return None
        out.append(ChunkAudio(chunk=chunk, audio_path=audio, subtitle_path=subtitles if subtitles.is_file() else None))
    return out


def assemble(manifest: Manifest, chapter_plan: ChapterPlan, selected: Mapping[str, int], *,
             force: bool = False) -> ChapterOutput:
    audio = chunk_audio(manifest, chapter_plan, selected)
    if audio is None:
        raise PipelineError(f"chapter {chapter_plan.chapter.id}: not every chunk is downloaded yet; "
                            "run `audiobook run` first")
    return assemble_chapter(manifest=manifest, plan=chapter_plan, audio=audio, track=chapter_plan.chapter.number,
                            total_tracks=len(manifest.chapters), force=force)


def finish_book(manifest: Manifest, chapters: Sequence[ChapterPlan], *, selected: Mapping[str, int],
                force: bool = False, only: Sequence[str] = ()) -> list[Path]:
    """Assemble (or confirm) the chapters of ``chapters`` whose audio is in; when every chapter of the
    book is built, the M4B and the delivery report.

    Chapters of the book that ``chapters`` leaves out, or that ``only`` does not name, are taken as
    they were last built (never rebuilt), so a one-chapter run leaves the rest of the book alone.
    """
    from pipeline.delivery import check_delivery, write_delivery_report
    from pipeline.export import export_book

    layout = BookLayout(manifest.output)
    planned = {cp.chapter.id: cp for cp in chapters if not only or cp.chapter.id in only}
    outputs: list[ChapterOutput] = []
    for chapter in manifest.chapters:
        chapter_plan = planned.get(chapter.id)
        if chapter_plan is None:
            previous = existing_chapter(manifest, chapter.id)
            if previous is not None:
                outputs.append(previous)
        elif chunk_audio(manifest, chapter_plan, selected) is not None:
            outputs.append(assemble(manifest, chapter_plan, selected, force=force))
    files = [o.audio_path for o in outputs]
    if len(outputs) == len(manifest.chapters) and manifest.audio.m4b:
        book_file = export_book(manifest=manifest, chapters=outputs, force=force)
        if book_file is not None:
            files.append(book_file)
    if files:
        report = check_delivery(manifest=manifest, files=files)
        write_delivery_report(report, layout.report)
        files.append(layout.report)
    return files
