"""Gather what the review pages show from a book's journal and chapter builds, and write the pages.

``review/index.html`` is the book; ``review/NN-<id>.html`` one chapter, holding only that chapter's
data (its sentences with their cue times, its chunks with their QC verdicts and takes, its waveform).
Every link is relative to ``review/``: the chapter file and the takes in ``cache/`` are linked, never
copied, so the pages open from ``file://`` beside the book. No network, no API call.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline import fsio, verdicts
from pipeline.assembly import ChapterOutput, chapter_cues, existing_chapter, read_state, save_waveform, saved_waveform
from pipeline.audio import dsp, ffmpeg
from pipeline.finishing import chunk_audio
from pipeline.layout import SIMULATED_SUFFIX, BookLayout
from pipeline.models import ChapterPlan, Manifest
from pipeline.planning import BookPlan
from pipeline.review import model, render
from pipeline.store import Journal
from pipeline.text import spoken_only

PEAKS_RATE_HZ = 8000  # a chapter built before waveforms were kept is decoded at this rate for one


def book_key(manifest: Manifest) -> str:
    """Names the book in the browser's local storage (a rehearsal's marks are its own)."""
    return hashlib.sha256(str(Path(manifest.output).resolve()).encode("utf-8")).hexdigest()[:16]


def _relative(path: Path, review: Path) -> str:
    """``path`` as a link from a page in ``review`` (both in the book's folder)."""
    return Path(os.path.relpath(path, review)).as_posix()


def waveform(output: ChapterOutput, layout: BookLayout) -> tuple[float, ...]:
    """Peak level (0..1) per bin of the chapter file: as its build kept it, else decoded once (a
    chapter built before waveforms were kept) and kept from then on."""
    path = layout.chapter_peaks(output.chapter_id)
    kept = saved_waveform(path, output.audio_path)
    if kept is not None:
        return kept
    meter = dsp.PeakMeter(max(1, round(output.duration_s * PEAKS_RATE_HZ)), dsp.waveform_bins(output.duration_s))
    with ffmpeg.stream_pcm(output.audio_path, sample_rate_hz=PEAKS_RATE_HZ,
                           label=f"chapter {output.chapter_id}") as blocks:
        for block in blocks:
            meter.add(block)
    peaks = meter.result()
    save_waveform(path, output.audio_path, peaks)
    return peaks


@dataclass(frozen=True)
class _Chapter:
    plan: ChapterPlan
    output: ChapterOutput | None
    page: Path
    note: str


def _chapters(manifest: Manifest, book: BookPlan, journal: Journal | None) -> list[_Chapter]:
    layout = BookLayout(manifest.output)
    selected = journal.selected_takes() if journal is not None else {}
    out = []
    for cp in book.chapters:
        page = layout.review_page(cp.chapter.number, cp.chapter.id)
        output = existing_chapter(manifest, cp.chapter.id)
        note = ""
        if output is None or chunk_audio(manifest, cp, selected) is None:
            output, note = None, f"not built yet: run `audiobook run {manifest.path}`"
        elif {s.index for s in output.spans} != {c.index for c in cp.chunks}:
            output, note = None, f"built from other text: run `audiobook run {manifest.path}` to bring it up to date"
        out.append(_Chapter(cp, output, page, note))
    return out


def _chapter_view(manifest: Manifest, chapter: _Chapter, book_qc: verdicts.BookQc, journal: Journal,
                  pages: Sequence[_Chapter], number: int) -> model.ChapterReview:
    layout = BookLayout(manifest.output)
    output, cp = chapter.output, chapter.plan
    assert output is not None
    sr = output.sample_rate_hz
    review = layout.review
    spans = {s.index: s for s in output.spans}
    takes: dict[str, list[verdicts.TakeFile]] = {}
    for take in verdicts.downloaded_takes(manifest, journal, [cp]):
        takes.setdefault(take.chunk.key, []).append(take)
    chunks = []
    for chunk in cp.chunks:
        span = spans[chunk.index]
        verdict = book_qc.of(chunk)
        chosen = book_qc.selected.get(chunk.key, 1)
        checks = tuple(model.QcCheck(
            name=c.name, measured=c.measured, limit=c.limit, passed=c.passed, severity=c.severity, detail=c.detail,
            at_s=verdicts.chunk_time_s(output, chunk.index, c.at_s) if c.at_s is not None else None,
            until_s=verdicts.chunk_time_s(output, chunk.index, c.until_s) if c.until_s is not None else None,
        ) for c in (verdict.checks if verdict else ()))
        views = tuple(model.TakeView(take=t.take, audio=_relative(t.audio, review), selected=t.take == chosen,
                                     verdict=(v.verdict if (v := book_qc.verdicts.get((chunk.key, t.take))) else None))
                      for t in takes.get(chunk.key, ()))
        chunks.append(model.ChunkView(index=chunk.index, key=chunk.key, start_s=span.kept_start / sr,
                                      end_s=span.kept_end / sr, verdict=verdict.verdict if verdict else None,
                                      checks=checks, takes=views))
    sentences = _sentences(manifest, cp, output, book_qc.selected)
    position = [p.page.name for p in pages]
    here = position.index(chapter.page.name)
    return model.ChapterReview(
        book=manifest.book.title, book_key=book_key(manifest), chapter_id=cp.chapter.id, number=number,
        title=cp.chapter.title, audio=_relative(output.audio_path, review), duration_s=output.duration_s,
        chunks=tuple(chunks), sentences=sentences, peaks=waveform(output, layout), page=chapter.page.name,
        previous_page=position[here - 1] if here > 0 else None,
        next_page=position[here + 1] if here + 1 < len(position) else None,
        simulated=_simulated(manifest))


def _sentences(manifest: Manifest, cp: ChapterPlan, output: ChapterOutput,
               selected: Mapping[str, int]) -> tuple[model.SentenceView, ...]:
    """The chapter's sentences as its subtitles time them (the display text), each in its chunk."""
    sr = output.sample_rate_hz
    spans = sorted(output.spans, key=lambda s: s.kept_start)
    audio = chunk_audio(manifest, cp, selected) if manifest.subtitles != "off" else None
    cues = chapter_cues(manifest, audio, output.spans).sentences if audio is not None else []

    def chunk_at(seconds: float) -> int:
        index = spans[0].index
        for span in spans:
            if span.kept_start / sr <= seconds + 1e-6:
                index = span.index
        return index

    if not cues:  # subtitles off: one line per chunk, its spoken text
        by_index = {s.index: s for s in output.spans}
        return tuple(model.SentenceView(chunk=c.index, start_s=by_index[c.index].kept_start / sr,
                                        end_s=by_index[c.index].kept_end / sr,
                                        text=" ".join(spoken_only(c.text).split())) for c in cp.chunks)
    return tuple(model.SentenceView(chunk=chunk_at(c.start_s), start_s=c.start_s, end_s=c.end_s, text=c.text)
                 for c in cues)


def _simulated(manifest: Manifest) -> bool:
    return Path(manifest.output).name.endswith(SIMULATED_SUFFIX)


def _delivery(layout: BookLayout) -> tuple[str | None, bool | None, tuple[model.DeliveryLine, ...]]:
    report: dict[str, Any] | None = read_state(layout.report)
    if report is None:
        return None, None, ()
    lines = []
    for item in report.get("files", []):
        for check in item.get("checks", []):  # every rule checked (the page counts them, lists the failed)
            if check.get("severity") != "info":
                lines.append(model.DeliveryLine(file=str(item.get("file")), rule=str(check.get("name")),
                                                measured=str(check.get("measured")), limit=str(check.get("limit")),
                                                passed=bool(check.get("passed", True))))
        if item.get("error"):
            lines.append(model.DeliveryLine(str(item.get("file")), "readable", str(item["error"]), "", False))
    return report.get("profile"), bool(report.get("passed")), tuple(lines)


def write_review(manifest: Manifest, book: BookPlan, journal: Journal | None, *,
                 chapter_ids: Sequence[str] = ()) -> list[Path]:
    """Write the index page and the page of every built chapter (of ``chapter_ids`` only, when given);
    returns the pages written, the index first."""
    layout = BookLayout(manifest.output)
    chapters = _chapters(manifest, book, journal)
    book_qc = verdicts.judge(manifest, journal, book.chapters) if journal is not None else None
    built = [c for c in chapters if c.output is not None]
    written = []
    summaries = []
    for chapter in chapters:
        cp = chapter.plan
        counts = book_qc.counts(cp) if book_qc is not None else {"unchecked": len(cp.chunks)}
        summaries.append(model.ChapterSummary(
            chapter_id=cp.chapter.id, number=cp.chapter.number, title=cp.chapter.title,
            page=chapter.page.name if chapter.output is not None else None,
            duration_s=chapter.output.duration_s if chapter.output is not None else None,
            verdicts=counts, note=chapter.note))
    profile, passed, lines = _delivery(layout)
    index = model.BookReview(book=manifest.book.title, book_key=book_key(manifest), author=manifest.book.author or "",
                             chapters=tuple(summaries), delivery_profile=profile, delivery_passed=passed,
                             delivery=lines, simulated=_simulated(manifest))
    fsio.ensure_dir(layout.review)
    index_path = layout.review / "index.html"
    fsio.write_atomic(index_path, render.render_index(index))
    written.append(index_path)
    for chapter in built:
        if chapter_ids and chapter.plan.chapter.id not in chapter_ids:
            continue
        assert journal is not None and book_qc is not None
        view = _chapter_view(manifest, chapter, book_qc, journal, built, chapter.plan.chapter.number)
        fsio.write_atomic(chapter.page, render.render_chapter(view))
        written.append(chapter.page)
    return written
