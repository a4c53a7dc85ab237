"""Finishing a book: cached chunk audio -> chapter files -> the M4B and the delivery report. No network.

A chapter is finished as soon as its audio is in, by :func:`build_chapter`: its MP3 and subtitles,
its share of the M4B (AAC from the same samples) and the delivery measurements of both. During a run
that work goes to :class:`ChapterWorkers`, worker processes, so the engine's event loop (polls and
downloads of later chunks) never waits behind it. :func:`finish_book` then joins the book from the
chapters this run built and the ones built before (an unchanged chapter is neither rebuilt nor read),
and writes the delivery report from the measurements already taken: after the last chapter, the tail
is a stream copy and a report.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from types import TracebackType

from pipeline.assembly import ChapterOutput, assemble_chapter, existing_chapter
from pipeline.errors import AssemblyError, PipelineError
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


def build_chapter(manifest: Manifest, chapter_plan: ChapterPlan, selected: Mapping[str, int], *,
                  force: bool = False) -> ChapterOutput:
    """Assemble one chapter (its files and its share of the book, unless already up to date) and take
    its delivery measurements. Runs in a worker process during a run: everything it needs is in its
    arguments, everything it makes is on disk."""
    from pipeline.delivery import measure

    audio = chunk_audio(manifest, chapter_plan, selected)
    if audio is None:
        raise PipelineError(f"chapter {chapter_plan.chapter.id}: not every chunk is downloaded yet; "
                            "run `audiobook run` first")
    built = assemble_chapter(manifest=manifest, plan=chapter_plan, audio=audio, track=chapter_plan.chapter.number,
                             total_tracks=len(manifest.chapters), force=force)
    measure(built.audio_path, manifest)
    if built.aac_path is not None:
        measure(built.aac_path, manifest)
    return built


def _start_worker(parent: int) -> None:
    """In a worker: yield the CPU to the engine (its downloads and polls must not wait behind a chapter
    encode; the ffmpeg children inherit the niceness), and exit as soon as the process that started it
    is gone (a ``kill -9`` of a run must not leave idle workers behind; a pool's workers do not notice
    on their own)."""
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICENESS)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_S)
        os._exit(0)

    threading.Thread(target=watch, name="leave-with-parent", daemon=True).start()


PARENT_CHECK_S = 0.5
WORKER_NICENESS = 10


def default_workers() -> int:
    """Chapter workers beside the engine: one per core the process may use. They run at a lower
    priority (:data:`WORKER_NICENESS`), so the engine, which needs little CPU but needs it at once,
    is never starved by them, and no core idles while chapters wait."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, cores)


class ChapterWorkers:
    """Worker processes that build chapters off the caller's event loop. Use as a context manager.

    The processes start on first use (``spawn``: nothing of the caller's threads or sockets is
    inherited) and stay for the run; ``workers=0`` builds in the calling process instead (for a
    library user who wants no processes).
    """

    def __init__(self, workers: int | None = None) -> None:
        self._workers = default_workers() if workers is None else workers
        self._pool: Executor | None = None

    def _executor(self) -> Executor | None:
        if self._pool is None and self._workers > 0:
            self._pool = ProcessPoolExecutor(max_workers=self._workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_start_worker, initargs=(os.getpid(),))
        return self._pool

    async def build(self, manifest: Manifest, chapter_plan: ChapterPlan, selected: Mapping[str, int]) -> ChapterOutput:
        pool = self._executor()
        if pool is None:
            return await asyncio.to_thread(build_chapter, manifest, chapter_plan, dict(selected))
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, build_chapter, manifest, chapter_plan,
                                                                    dict(selected))
        except BrokenProcessPool as exc:
            broken, self._pool = self._pool, None  # the next chapter gets fresh workers
            if broken is not None:
                broken.shutdown(wait=False, cancel_futures=True)
            raise AssemblyError(f"chapter {chapter_plan.chapter.id}: its worker process died while building it "
                                "(out of memory, or killed); rerun to build it (nothing is paid again)") from exc

    def build_all(self, manifest: Manifest, chapter_plans: Sequence[ChapterPlan], selected: Mapping[str, int], *,
                  force: bool = False) -> dict[str, ChapterOutput]:
        """Build several chapters at once (``stitch``); the first failure is raised after all have ended."""
        pool = self._executor() if len(chapter_plans) > 1 else None
        if pool is None:
            return {cp.chapter.id: build_chapter(manifest, cp, selected, force=force) for cp in chapter_plans}
        futures = {cp.chapter.id: pool.submit(build_chapter, manifest, cp, dict(selected), force=force)
                   for cp in chapter_plans}
        errors = [f.exception() for f in futures.values() if f.exception() is not None]
        if errors:
            raise errors[0]  # type: ignore[misc]
        return {chapter_id: f.result() for chapter_id, f in futures.items()}

    def __enter__(self) -> ChapterWorkers:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def finish_book(manifest: Manifest, chapters: Sequence[ChapterPlan], *, selected: Mapping[str, int],
                force: bool = False, only: Sequence[str] = (), built: Mapping[str, ChapterOutput] | None = None,
                workers: ChapterWorkers | None = None,
                qc_counts: Mapping[str, Mapping[str, int]] | None = None) -> list[Path]:
    """The chapters' files, and when every chapter of the book is built, the M4B and the delivery report.

    ``built`` holds the chapters this run already built (they are taken as they are); the other
    chapters of ``chapters`` whose audio is in are built here (by ``workers``, several at once), unless
    ``only`` leaves them out; chapters of the book that ``chapters`` does not plan, or ``only`` does not
    name, are taken as they were last built (never rebuilt), so a one-chapter run leaves the rest of
    the book alone. ``qc_counts`` (QC verdicts per chapter) go into the delivery report.
    """
    from pipeline.delivery import check_delivery, write_delivery_report
    from pipeline.export import export_book

    built = dict(built or {})
    planned = {cp.chapter.id: cp for cp in chapters if not only or cp.chapter.id in only}
    to_build = [cp for chapter_id, cp in planned.items() if chapter_id not in built and chunk_audio(
        manifest, cp, selected) is not None]
    if to_build:
        with contextlib.ExitStack() as stack:
            pool = workers if workers is not None else stack.enter_context(ChapterWorkers())
            built.update(pool.build_all(manifest, to_build, selected, force=force))
    outputs: list[ChapterOutput] = []
    for chapter in manifest.chapters:
        done = built.get(chapter.id) if chapter.id in planned else None
        if done is None and chapter.id not in planned:
            done = existing_chapter(manifest, chapter.id)
        if done is not None:
            outputs.append(done)
    files = [o.audio_path for o in outputs]
    parts: list[Path] = []
    if len(outputs) == len(manifest.chapters) and manifest.audio.m4b:
        book_file = export_book(manifest=manifest, chapters=outputs, force=force)
        if book_file is not None:
            files.append(book_file)
            parts = [p for o in outputs if (p := BookLayout(manifest.output).chapter_aac(o.chapter_id)).is_file()]
    if files:
        layout = BookLayout(manifest.output)
        report = check_delivery(manifest=manifest, files=files, book_parts=parts, qc=qc_counts)
        write_delivery_report(report, layout.report)
        files.append(layout.report)
    return files
