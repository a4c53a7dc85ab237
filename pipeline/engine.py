"""The batch engine: drive every chunk of one or more books through submit, poll and download.

State lives in each book's journal (:mod:`pipeline.store`), never only in memory: the engine reads a
chunk's state, does the next step, and records the result before doing anything else. So a rerun
after a crash picks up exactly where the journal says: downloaded chunks are never sent again,
submitted tasks are polled (not resubmitted), completed tasks are downloaded.

Concurrency: ``concurrency`` workers each own one API task at a time, from create to its final
status; a completed task's download runs beside them so the slot is free at once. Work from several
books is interleaved round-robin so every book progresses. One chunk's failure never stops the
others; an authentication or balance error stops the batch (every other chunk would fail the same
way, and nothing is lost: a rerun resumes).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.chunking import estimate_seconds
from pipeline.client import SUBTITLE_MAX_BYTES, SoundCloneClient, TaskInfo
from pipeline.config import RunConfig
from pipeline.errors import (
    AmbiguousError, ApiError, AssemblyError, AuthError, BalanceError, DownloadError, PipelineError,
    RequestRejected, TransientError,
)
from pipeline.models import ChapterPlan, Chunk, ChunkState, Manifest, Progress
from pipeline.store import Journal

log = logging.getLogger(__name__)

S = ChunkState
CACHE_DIR = "cache"
DOWNLOAD_TRIES = 12  # downloads are free: be persistent
DOWNLOAD_CONCURRENCY = 4
# A download is plausible when its audio lasts at least this share of the rough estimate from the
# text (a truncated file decodes short); generous, since real voices vary widely in pace.
MIN_PLAUSIBLE_SHARE = 0.2
MAX_PLAUSIBLE_FACTOR = 6.0
Sleep = Callable[[float], Awaitable[None]]
MAX_BACKOFF_STEP = 16  # backoff_s(step) at this step is the capped delay


def cache_paths(output: Path, key: str) -> tuple[Path, Path]:
    """Where a chunk's verified audio and subtitle file live (content-addressed by chunk key)."""
    folder = output / CACHE_DIR / key[:2]
    return folder / f"{key}.mp3", folder / f"{key}.json"


def take_paths(output: Path, key: str, take: int) -> tuple[Path, Path]:
    """Where take ``take`` of a chunk lives; take 1 is the first render (:func:`cache_paths`)."""
    audio, subtitles = cache_paths(output, key)
    if take == 1:
        return audio, subtitles
    return audio.with_name(f"{key}.take{take}.mp3"), subtitles.with_name(f"{key}.take{take}.json")


def parse_cache_name(name: str) -> tuple[str, int]:
    """(chunk key, take) of a cache file name written by :func:`take_paths`."""
    key, _, rest = name.partition(".")
    return key, int(rest.split(".")[0][4:]) if rest.startswith("take") else 1


def subtitle_fields(mode: str) -> dict[str, Any]:
    if mode == "off":
        return {"subtitleEnable": False}
    fields: dict[str, Any] = {"subtitleEnable": True}
    if mode == "word":
        fields["subtitleType"] = "word"
    return fields


def request_fields(manifest: Manifest, chunk_chapter_id: str) -> dict[str, Any]:
    """The create-audio fields for a chapter's chunks, besides ``contentText``."""
    chapter = manifest.chapter(chunk_chapter_id)
    fields = {**chapter.voice.api_fields(), "language": chapter.language, **subtitle_fields(manifest.subtitles)}
    return fields


@dataclass
class Failure:
    book: str
    chapter_id: str
    chunk_index: int | None
    reason: str


@dataclass
class BookResult:
    title: str
    output: Path
    chunks: int = 0
    downloaded: int = 0
    tasks_created: int = 0
    chars_billed: int = 0
    possible_duplicates: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)


@dataclass
class BookJob:
    """One book in a batch: its plan, journal and what to do when a chapter's audio is all in."""

    manifest: Manifest
    chapters: Sequence[ChapterPlan]
    journal: Journal
    on_chapter_ready: Callable[[ChapterPlan], Awaitable[list[Path]]]
    result: BookResult = field(init=False)

    def __post_init__(self) -> None:
        self.result = BookResult(title=self.manifest.book.title, output=self.manifest.output)


@dataclass
class _Item:
    job: BookJob
    chunk: Chunk


class _FairQueue:
    """Round-robin over books, in chunk order within a book."""

    def __init__(self, per_book: Sequence[Sequence[_Item]]) -> None:
        self._queues = deque(deque(items) for items in per_book if items)

    def pop(self) -> _Item | None:
        while self._queues:
            queue = self._queues.popleft()
            if queue:
                item = queue.popleft()
                if queue:
                    self._queues.append(queue)
                return item
        return None


class _StopBatch(Exception):
    def __init__(self, error: PipelineError) -> None:
        super().__init__(str(error))
        self.error = error


class Engine:
    """Runs books to completion. ``sleep`` and ``clock`` are injectable for tests."""

    def __init__(self, *, client: SoundCloneClient, config: RunConfig,
                 on_event: Callable[[Progress], None] = lambda event: None,
                 sleep: Sleep = asyncio.sleep, clock: Callable[[], float] = time.monotonic,
                 verify_audio: Callable[[Path], float] | None = None) -> None:
        self.client = client
        self.config = config
        self._emit = on_event
        self._sleep = sleep
        self._clock = clock
        self._verify_audio = verify_audio
        self._downloads = asyncio.Semaphore(DOWNLOAD_CONCURRENCY)
        self._background: set[asyncio.Task[None]] = set()
        self._chapter_waiting: dict[tuple[int, str], set[str]] = {}
        self._stitch_tasks: list[asyncio.Task[None]] = []
        # Observed render speed (seconds of wall time per billed character), to space polls.
        self._render_s_per_char: float | None = None

    # --- the batch -------------------------------------------------------------------------------

    async def run(self, jobs: Sequence[BookJob]) -> list[BookResult]:
        per_book: list[list[_Item]] = []
        for job in jobs:
            items = self._prepare(job)
            per_book.append(items)
        queue = _FairQueue(per_book)
        for job in jobs:
            for plan in job.chapters:
                if not self._chapter_waiting[(id(job), plan.chapter.id)]:
                    self._start_stitch(job, plan)
        workers = [asyncio.create_task(self._worker(queue)) for _ in range(self.config.concurrency)]
        try:
            await asyncio.gather(*workers)
            while self._background:
                await asyncio.gather(*list(self._background))
        except _StopBatch as stop:
            for task in [*workers, *self._background]:
                task.cancel()
            await asyncio.gather(*workers, *self._background, return_exceptions=True)
            raise stop.error from None
        except BaseException:
            for task in [*workers, *self._background, *self._stitch_tasks]:
                task.cancel()
            await asyncio.gather(*workers, *self._background, *self._stitch_tasks, return_exceptions=True)
            raise
        await asyncio.gather(*self._stitch_tasks)
        return [job.result for job in jobs]

    def _prepare(self, job: BookJob) -> list[_Item]:
        """Bring the journal up to date with the plan; return the chunks that still need work."""
        journal = job.journal
        model_ids = {plan.chapter.id: plan.chapter.voice.model_id for plan in job.chapters}
        journal.sync_plan((c for plan in job.chapters for c in plan.chunks), model_ids=model_ids)
        for plan in job.chapters:
            journal.save_chapter_plan(plan.chapter.id, plan.chunks)
        items: list[_Item] = []
        seen: set[str] = set()
        for plan in job.chapters:
            waiting: set[str] = set()
            for chunk in plan.chunks:
                job.result.chunks += 1
                row = journal.get(chunk.key)
                if row.state == S.DOWNLOADED and self._cached(job, chunk.key):
                    job.result.downloaded += 1
                    continue
                waiting.add(chunk.key)
                if chunk.key not in seen:  # the same text twice in a book is rendered once
                    seen.add(chunk.key)
                    items.append(_Item(job, chunk))
            self._chapter_waiting[(id(job), plan.chapter.id)] = waiting
        _remove_partial_files(job.manifest.output / CACHE_DIR)
        return items

    def _cached(self, job: BookJob, key: str) -> bool:
        audio, _ = cache_paths(job.manifest.output, key)
        return audio.is_file() and audio.stat().st_size > 0

    async def _worker(self, queue: _FairQueue) -> None:
        while (item := queue.pop()) is not None:
            try:
                await self._drive(item)
            except (AuthError, BalanceError) as error:
                raise _StopBatch(error) from error
            except PipelineError as error:
                self._fail(item, str(error))

    # --- one chunk -------------------------------------------------------------------------------

    async def _drive(self, item: _Item) -> None:
        journal, key = item.job.journal, item.chunk.key
        row = journal.get(key)
        if row.state == S.DOWNLOADED:  # the cached file went missing: fetch it again, free of charge
            row = journal.transition(key, S.COMPLETED) if row.task_id else journal.transition(key, S.PENDING)
        if row.state == S.FAILED:
            row = journal.transition(key, S.PENDING, attempts=0, error=None)
        if row.state == S.COMPLETED and row.task_id:
            self._start_download(item, row.task_id, None)
            return
        while True:
            row = journal.get(key)
            if row.state in (S.PENDING, S.SUBMITTING):
                if row.state == S.SUBMITTING:
                    # A crash between recording the intent and recording the task id: the task
                    # may exist and be billed. Resubmitting is the only way on; report it.
                    journal.note_ambiguous(key, "resubmitted after an interrupted create (task id unknown)")
                    item.job.result.possible_duplicates.append(
                        f"{item.chunk.chapter_id} chunk {item.chunk.index}: resubmitted after an interrupted create")
                    self._emit(Progress("possible-duplicate", item.chunk.chapter_id, item.chunk.index,
                                        "resubmitting after an interrupted create"))
                task_id = await self._submit(item)
                if task_id is None:
                    return
            else:
                task_id = row.task_id
                assert task_id is not None
            info = await self._poll(item, task_id)
            if info is None:
                return
            if info.status == "completed":
                journal.transition(key, S.COMPLETED)
                self._start_download(item, task_id, info)
                return
            # failed on the server: refunded; resubmit while attempts remain
            row = journal.get(key)
            reason = info.error or "the task failed without a reason"
            if row.attempts >= self.config.max_attempts:
                journal.transition(key, S.FAILED, error=f"task {task_id} failed: {reason}")
                self._fail(item, f"task {task_id} failed after {row.attempts} attempts: {reason}")
                return
            journal.add_event(key, "task-failed", f"task {task_id}: {reason}; resubmitting")
            journal.transition(key, S.PENDING)

    async def _submit(self, item: _Item) -> str | None:
        journal, chunk = item.job.journal, item.chunk
        journal.begin_submit(chunk.key)
        fields = request_fields(item.job.manifest, chunk.chapter_id)

        def on_ambiguous(error: ApiError) -> None:
            journal.note_ambiguous(chunk.key, f"create retried after: {error}")
            item.job.result.possible_duplicates.append(f"{chunk.chapter_id} chunk {chunk.index}: {error}")
            self._emit(Progress("possible-duplicate", chunk.chapter_id, chunk.index, str(error)))

        try:
            task_id = await self._create(item, fields, on_ambiguous)
        except (AuthError, BalanceError):
            journal.abandon_submit(chunk.key)  # nothing was created
            raise
        except RequestRejected as error:
            journal.transition(chunk.key, S.FAILED, error=error.msg or str(error))
            self._fail(item, f"rejected by the API: {error.msg or error}")
            return None
        except AmbiguousError as error:
            journal.note_ambiguous(chunk.key, f"create gave no answer, retries exhausted: {error}")
            item.job.result.possible_duplicates.append(f"{chunk.chapter_id} chunk {chunk.index}: {error}")
            journal.transition(chunk.key, S.FAILED, error=str(error))
            self._fail(item, f"{error} (a rerun resubmits it and reports a possible duplicate charge)")
            return None
        except TransientError as error:
            journal.abandon_submit(chunk.key, error=str(error))
            self._fail(item, f"could not submit: {error}; rerun to retry")
            return None
        journal.record_task(chunk.key, task_id)
        journal.note_voice_used(fields["modelId"])
        item.job.result.tasks_created += 1
        item.job.result.chars_billed += chunk.billed_chars
        self._emit(Progress("submitted", chunk.chapter_id, chunk.index, task_id))
        return task_id

    async def _create(self, item: _Item, fields: dict[str, Any],
                      on_ambiguous: Callable[[ApiError], None]) -> str:
        """Create the task, waiting out a long run of 429s (too many active tasks on the account).

        A 429 created nothing, so waiting costs nothing; failing the chunk would (soundclone-api.md,
        "Unknowns": back off, don't fail the batch). Bounded by ``task_timeout_s``.
        """
        journal, chunk = item.job.journal, item.chunk
        started = self._clock()
        while True:
            try:
                return await self.client.create_audio(text=chunk.text, fields=fields, on_ambiguous=on_ambiguous)
            except TransientError as error:
                if (error.status != 429 or isinstance(error, AmbiguousError)
                        or self._clock() - started > self.config.task_timeout_s):
                    raise
                delay = self.client.backoff_s(MAX_BACKOFF_STEP, error)
            journal.abandon_submit(chunk.key)
            await self._sleep(delay)
            journal.begin_submit(chunk.key)

    async def _poll(self, item: _Item, task_id: str) -> TaskInfo | None:
        """Poll until the task is final; None when it cannot be followed any further this run."""
        chunk, journal = item.chunk, item.job.journal
        started = self._clock()
        first_wait = None
        if self._render_s_per_char is not None:
            # Later tasks: wait for most of the expected render time before the first poll.
            first_wait = 0.8 * self._render_s_per_char * chunk.billed_chars
        try:
            info = await wait_until_final(self.client, task_id, interval_s=self.config.poll_interval_s,
                                          timeout_s=self.config.task_timeout_s, first_wait_s=first_wait,
                                          sleep=self._sleep, clock=self._clock)
        except RequestRejected as error:
            journal.transition(chunk.key, S.FAILED, error=f"task {task_id}: {error.msg or error}")
            self._fail(item, f"task {task_id} cannot be queried: {error.msg or error}")
            return None
        except TransientError as error:
            self._fail(item, f"{error}; rerun to keep polling it (it will not be resubmitted)")
            return None
        journal.record_task_status(task_id, info.status, info.error)
        if info.status == "completed":
            rate = (self._clock() - started) / max(chunk.billed_chars, 1)
            self._render_s_per_char = rate if self._render_s_per_char is None else \
                0.7 * self._render_s_per_char + 0.3 * rate
        return info

    # --- downloads ------------------------------------------------------------------------------

    def _start_download(self, item: _Item, task_id: str, info: TaskInfo | None) -> None:
        task = asyncio.create_task(self._download(item, task_id, info))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _download(self, item: _Item, task_id: str, info: TaskInfo | None) -> None:
        async with self._downloads:
            try:
                await self._download_verified(item, task_id, info)
            except (AuthError, BalanceError) as error:
                raise _StopBatch(error) from error
            except RequestRejected as error:
                # The API does not know the task any more (its links are gone too): only a new
                # render can replace it. Say so; the next run resubmits it.
                item.job.journal.transition(item.chunk.key, S.FAILED, error=f"task {task_id}: {error.msg or error}")
                self._fail(item, f"task {task_id} can no longer be fetched ({error.msg or error}); a rerun "
                                 "renders this chunk again, at a new charge")
                return
            except PipelineError as error:
                self._fail(item, f"task {task_id}: {error}; rerun to download it again (no new charge)")
                return
        self._chunk_done(item)

    async def _download_verified(self, item: _Item, task_id: str, info: TaskInfo | None) -> None:
        chunk, journal = item.chunk, item.job.journal
        audio_path, subtitle_path = cache_paths(item.job.manifest.output, chunk.key)
        duration, has_subs = await self._fetch(item, task_id, info, audio_path, subtitle_path)
        journal.transition(chunk.key, S.DOWNLOADED, audio_path=str(audio_path),
                           subtitle_path=str(subtitle_path) if has_subs else None, duration_s=duration)
        journal.note_voice_activated(item.job.manifest.chapter(chunk.chapter_id).voice.model_id)
        self._emit(Progress("downloaded", chunk.chapter_id, chunk.index, f"{duration:.1f}s"))

    async def _fetch(self, item: _Item, task_id: str, info: TaskInfo | None, audio_path: Path,
                     subtitle_path: Path) -> tuple[float, bool]:
        """Download a completed task's audio (and subtitles) to temporary files, verify, rename into place.

        Returns (audio seconds, whether subtitles were saved). A refused link is queried again for a
        fresh one; network trouble is retried with backoff.
        """
        manifest, chunk, journal = item.job.manifest, item.chunk, item.job.journal
        audio_path.parent.mkdir(parents=True, exist_ok=True)
        want_subtitles = manifest.subtitles != "off"
        last_error: PipelineError | None = None
        for attempt in range(DOWNLOAD_TRIES):
            if info is None or not info.audio_url or attempt > 0 and isinstance(last_error, DownloadError):
                info = await self.client.query(task_id)  # fresh URLs
                if info.status != "completed" or not info.audio_url:
                    raise DownloadError(f"task {task_id} is {info.status} with no audio URL")
            tmp_audio = audio_path.with_name(f".{audio_path.name}.{uuid.uuid4().hex[:8]}.part")
            tmp_subs = subtitle_path.with_name(f".{subtitle_path.name}.{uuid.uuid4().hex[:8]}.part")
            try:
                await self.client.download(info.audio_url, tmp_audio)
                duration = await asyncio.to_thread(self._verify, tmp_audio, chunk, item)
                has_subs = False
                if want_subtitles and info.subtitle_url:
                    await self.client.download(info.subtitle_url, tmp_subs, max_bytes=SUBTITLE_MAX_BYTES)
                    _check_subtitles(tmp_subs, duration)
                    has_subs = True
                elif want_subtitles:
                    journal.add_event(chunk.key, "no-subtitles", f"task {task_id} returned no subtitle file")
                if has_subs:
                    os.replace(tmp_subs, subtitle_path)
                os.replace(tmp_audio, audio_path)
                _fsync_dir(audio_path.parent)
                return duration, has_subs
            except (DownloadError, TransientError) as error:
                last_error = error
                log.info("chunk %s: download attempt %d failed: %s", chunk.key, attempt + 1, error)
                await self._sleep(self.client.backoff_s(attempt, error if isinstance(error, TransientError) else None))
            finally:
                tmp_audio.unlink(missing_ok=True)
                tmp_subs.unlink(missing_ok=True)
        assert last_error is not None
        raise last_error

    # --- retakes --------------------------------------------------------------------------------

    async def render_take(self, job: BookJob, chunk: Chunk) -> int:
        """Render a fresh take of one chunk, keep it beside the earlier ones, and select it.

        Crash-safe like a chunk: the intent is recorded before the create request and the task id
        as soon as it returns; an unfinished take is resumed (polled) rather than paid for again.
        """
        journal, item = job.journal, _Item(job, chunk)
        unfinished = [t for t in journal.takes(chunk.key) if t[1] in ("submitting", "submitted")]
        if unfinished and unfinished[-1][1] == "submitted" and unfinished[-1][2]:
            take, task_id = unfinished[-1][0], unfinished[-1][2]
        else:
            if unfinished:  # interrupted between intent and task id: it may have been billed
                journal.note_ambiguous(chunk.key, "a retake was interrupted before its task id was recorded")
                journal.update_take(chunk.key, unfinished[-1][0], state="abandoned")
            take = journal.begin_take(chunk.key)
            fields = request_fields(job.manifest, chunk.chapter_id)
            task_id = await self.client.create_audio(
                text=chunk.text, fields=fields,
                on_ambiguous=lambda error: journal.note_ambiguous(chunk.key, f"retake create retried: {error}"))
            journal.update_take(chunk.key, take, state="submitted", task_id=task_id)
            job.result.tasks_created += 1
            job.result.chars_billed += chunk.billed_chars
        info = await wait_until_final(self.client, task_id, interval_s=self.config.poll_interval_s,
                                      timeout_s=self.config.task_timeout_s, sleep=self._sleep, clock=self._clock)
        if info.status == "failed":
            journal.update_take(chunk.key, take, state="failed")
            raise DownloadError(f"the retake task {task_id} failed: {info.error or 'no reason given'}; try again")
        audio_path, subtitle_path = take_paths(job.manifest.output, chunk.key, take)
        _, has_subs = await self._fetch(item, task_id, info, audio_path, subtitle_path)
        journal.update_take(chunk.key, take, state="downloaded", audio_path=str(audio_path),
                            subtitle_path=str(subtitle_path) if has_subs else None)
        journal.select_take(chunk.key, take)
        return take

    def _verify(self, path: Path, chunk: Chunk, item: _Item) -> float:
        if self._verify_audio is None:
            from pipeline.audio.ffmpeg import decoded_duration_s
            self._verify_audio = decoded_duration_s
        try:
            duration = self._verify_audio(path)
        except AssemblyError as error:
            raise DownloadError(f"the audio does not decode: {error}") from error
        speed = item.job.manifest.chapter(chunk.chapter_id).voice.speed
        expected = estimate_seconds(chunk.text, speed=speed)
        if duration <= 0 or duration < MIN_PLAUSIBLE_SHARE * expected:
            raise DownloadError(f"the audio lasts {duration:.1f}s, implausibly short for {chunk.billed_chars} "
                                f"characters (about {expected:.0f}s expected); it may be truncated")
        if duration > MAX_PLAUSIBLE_FACTOR * expected + 30:
            raise DownloadError(f"the audio lasts {duration:.1f}s, implausibly long for {chunk.billed_chars} "
                                "characters")
        return duration

    # --- chapters -------------------------------------------------------------------------------

    def _chunk_done(self, item: _Item) -> None:
        job = item.job
        job.result.downloaded += sum(1 for plan in job.chapters for c in plan.chunks if c.key == item.chunk.key)
        for plan in job.chapters:
            waiting = self._chapter_waiting[(id(job), plan.chapter.id)]
            if item.chunk.key in waiting:
                waiting.discard(item.chunk.key)
                if not waiting:
                    self._start_stitch(job, plan)

    def _start_stitch(self, job: BookJob, plan: ChapterPlan) -> None:
        async def stitch() -> None:
            try:
                paths = await job.on_chapter_ready(plan)
            except PipelineError as error:
                job.result.failures.append(Failure(job.manifest.book.title, plan.chapter.id, None,
                                                   f"assembly failed: {error}"))
                self._emit(Progress("chapter-failed", plan.chapter.id, None, str(error)))
                return
            job.result.outputs.extend(paths)
            self._emit(Progress("chapter-done", plan.chapter.id, None, ", ".join(p.name for p in paths)))

        self._stitch_tasks.append(asyncio.create_task(stitch()))

    def _fail(self, item: _Item, reason: str) -> None:
        chunk = item.chunk
        item.job.result.failures.append(Failure(item.job.manifest.book.title, chunk.chapter_id, chunk.index, reason))
        self._emit(Progress("chunk-failed", chunk.chapter_id, chunk.index, reason))


async def wait_until_final(client: SoundCloneClient, task_id: str, *, interval_s: float, timeout_s: float,
                           sleep: Sleep = asyncio.sleep, clock: Callable[[], float] = time.monotonic,
                           first_wait_s: float | None = None) -> TaskInfo:
    """Poll a task every ``interval_s`` (the first time after ``first_wait_s``, if longer) until it is
    completed or failed.

    A query that fails transiently is tried again; after ``timeout_s`` a :class:`TransientError` says
    how far the task got. :class:`RequestRejected` (the API does not know the task) propagates.
    """
    started = clock()
    await sleep(max(interval_s, first_wait_s or 0.0))
    while True:
        try:
            info = await client.query(task_id)
        except TransientError as error:
            if clock() - started > timeout_s:
                raise TransientError(f"task {task_id}: {error}", task_id=task_id) from error
        else:
            if info.final:
                return info
            if clock() - started > timeout_s:
                raise TransientError(f"task {task_id} still {info.status} after {timeout_s:.0f}s", task_id=task_id)
        await sleep(interval_s)


def _check_subtitles(path: Path, duration_s: float) -> None:
    """The subtitle file must be one the stitcher can read, with times that fit the audio."""
    from pipeline.subtitles import parse_subtitle_json

    try:
        sentences = parse_subtitle_json(json.loads(path.read_text(encoding="utf-8")), source="the subtitle file")
    except (ValueError, UnicodeDecodeError) as exc:
        raise DownloadError(f"the subtitle file is not valid JSON ({exc})") from exc
    except AssemblyError as exc:
        raise DownloadError(str(exc)) from exc
    last_s = max((s.end_ms for s in sentences), default=0.0) / 1000.0
    if last_s > duration_s + 1.0:
        raise DownloadError(f"the subtitles run to {last_s:.1f}s but the audio lasts {duration_s:.1f}s; "
                            "the audio may be truncated")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_partial_files(cache: Path) -> None:
    """Temporary download files left by an interrupted run."""
    if cache.is_dir():
        for part in cache.glob("*/.*.part"):  # never a rename target: safe to delete
            part.unlink(missing_ok=True)
