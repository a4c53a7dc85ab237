"""The batch engine: drive every chunk of one or more books through submit, poll and download.

State lives in each book's journal (:mod:`pipeline.store`), never only in memory: the engine reads a
chunk's state, does the next step, and records the result before doing anything else. So a rerun
after a crash picks up exactly where the journal says: downloaded chunks are never sent again,
submitted tasks are polled (not resubmitted), completed tasks are downloaded.

Concurrency: ``concurrency`` workers each own one API task at a time, from create to its final
status; a completed task's download runs beside them so the slot is free at once, and a chapter is
stitched as soon as its audio is in. Work from several books is interleaved round-robin.

The failure channel (arq's lesson: background work reports back). Every background task (worker,
download, stitch) runs under :meth:`Engine._guard`, which routes whatever it raises:

* an error in :data:`pipeline.errors.STOPS_BATCH` (authentication, balance, an endpoint that is not
  the API, an unreachable or unhealthy API, a full or read-only disk, a broken journal) stops the
  batch: no new create is sent, in-flight creates finish and are recorded, everything else is
  cancelled, and :class:`BatchResult.stopped` says why; nothing finished is lost;
* any other :class:`PipelineError` fails its chunk or chapter, and the batch goes on;
* an ``OSError`` is translated (:func:`pipeline.fsio.storage_error`) and stops the batch;
* anything else is a bug: the batch stops and the exception is re-raised when it has wound down.

Money. The intent to create a task is recorded right before the request leaves (after the rate
limiter), and the create runs shielded from cancellation, so a stop or Ctrl-C never loses a task id
that the API returned nor leaves an intent for a request that was never sent. A create whose outcome
is unknown (sent, no usable answer) may have been billed: it is reported as a possible charge and
retried only while the chunk has tries left of ``max_attempts``; several of them in a row stop the
batch. A task whose audio is gone at the API (its link refused, and a fresh query gives no working
one) moves to ``expired``; only ``run --rerender-expired`` pays for it again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline import fsio, qc
from pipeline.chunking import estimate_seconds
from pipeline.client import SUBTITLE_MAX_BYTES, SoundCloneClient, TaskInfo, wait_until_final
from pipeline.config import RunConfig
from pipeline.errors import (
    STOPS_BATCH,
    AmbiguousError,
    ApiUnhealthy,
    AssemblyError,
    DownloadError,
    EndpointError,
    LinkExpired,
    PipelineError,
    RequestRejected,
    TransientError,
    UnknownTaskStatus,
)
from pipeline.layout import BookLayout
from pipeline.models import ChapterPlan, Chunk, ChunkState, Manifest, Progress
from pipeline.request import AudioRequest
from pipeline.store import ChunkRow, Journal
from pipeline.subtitles import SentenceTiming, parse_subtitle_json

log = logging.getLogger(__name__)

S = ChunkState
DOWNLOAD_TRIES = 12  # downloads are free: be persistent with network trouble
DOWNLOAD_CONCURRENCY = 4
# A refused link is queried again for a fresh one (which may be the same link: soundclone-api.md,
# "Unknowns"). The audio is gone at the API when the query gives no link, when one link is refused
# twice, or after this many refusals in all: a few seconds, never minutes.
SAME_LINK_REFUSALS = 2
LINK_REFUSALS_BEFORE_EXPIRED = 4
REFUSED_LINK_PAUSE_S = 0.5
# Audio that downloads but does not verify (truncated, undecodable) is fetched again this many times.
BROKEN_AUDIO_TRIES = 3
# Creates in a row (across the batch) with no usable answer before the batch stops.
UNANSWERED_CREATES_TO_STOP = 3
# A download is plausible when its audio lasts at least this share of the rough estimate from the
# text (a truncated file decodes short); generous, since real voices vary widely in pace.
MIN_PLAUSIBLE_SHARE = 0.2
MAX_PLAUSIBLE_FACTOR = 6.0
Sleep = Callable[[float], Awaitable[None]]
MAX_BACKOFF_STEP = 16  # backoff_s(step) at this step is the capped delay


@dataclass
class Failure:
    book: str
    chapter_id: str
    chunk_index: int | None
    reason: str


@dataclass
class BookResult:
    """What one run did for one book. Characters are billed characters (markers excluded)."""

    title: str
    output: Path
    chunks: int = 0
    downloaded: int = 0
    tasks_created: int = 0
    chars_created: int = 0
    tasks_refunded: int = 0       # tasks that failed at the API this run (the API refunds them)
    chars_refunded: int = 0
    unanswered_creates: int = 0   # creates sent with no usable answer: each may have been billed
    possible_duplicates: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)
    qc_flags: list[str] = field(default_factory=list)  # selected takes judged warn or fail, one line each
    qc_failed: int = 0                                  # of them, judged fail: the run exits 1
    qc_retakes: int = 0                                 # automatic retakes made (qc.on_fail: retake)

    @property
    def tasks_billed(self) -> int:
        return self.tasks_created - self.tasks_refunded

    @property
    def chars_billed(self) -> int:
        return self.chars_created - self.chars_refunded


@dataclass
class BatchResult:
    books: list[BookResult]
    stopped: PipelineError | None = None


@dataclass
class BookJob:
    """One book in a batch: its plan, journal and what to do when a chapter's audio is all in."""

    manifest: Manifest
    chapters: Sequence[ChapterPlan]
    journal: Journal
    on_chapter_ready: Callable[[ChapterPlan], Awaitable[list[Path]]]
    rerender_expired: bool = False
    result: BookResult = field(init=False)

    def __post_init__(self) -> None:
        self.result = BookResult(title=self.manifest.book.title, output=self.manifest.output)

    @property
    def layout(self) -> BookLayout:
        return BookLayout(self.manifest.output)


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


@dataclass(frozen=True)
class _Fetched:
    duration_s: float
    has_subs: bool
    measures: qc.TakeMeasures


class _NotSent(Exception):
    """Raised by ``before_send`` when the batch is stopping: the request is not sent."""


class _BrokenAudio(DownloadError):
    """The task's audio downloads but does not verify, again and again."""


_RETRY = object()  # _submit's answer when an unanswered create may be tried again


def adopt_legacy_rows(job: BookJob) -> int:
    """Re-key the chunks a first-release journal holds under its old key formula (moving their cache
    files first, so a crash in between is harmless); returns how many. Nothing is rendered again."""
    journal, layout = job.journal, job.layout
    requests = [c.request for plan in job.chapters for c in plan.chunks]
    adopted = 0
    for new_key, row in journal.rows_for(requests).items():
        if row.key == new_key:
            continue
        for take in [1, *(t.take for t in journal.takes(row.key))]:
            for old, new in zip(layout.take_paths(row.key, take), layout.take_paths(new_key, take), strict=True):
                if old.exists() and not new.exists():
                    fsio.ensure_dir(new.parent)
                    try:
                        old.replace(new)
                    except OSError as exc:
                        raise fsio.storage_error(exc, new, doing="move cached audio to") from exc
        request = next(r for r in requests if r.key == new_key)
        journal.adopt(row.key, request, subtitles=row.subtitles or request.subtitles)
        adopted += 1
    return adopted


class Engine:
    """Runs books to completion. ``sleep`` and ``clock`` are injectable for tests."""

    def __init__(self, *, client: SoundCloneClient, config: RunConfig,
                 on_event: Callable[[Progress], None] = lambda event: None,
                 sleep: Sleep = asyncio.sleep, clock: Callable[[], float] = time.monotonic,
                 measure_audio: Callable[[Path], qc.AudioMeasures] = qc.measure_file) -> None:
        self.client = client
        self.config = config
        self._on_event = on_event
        self._sleep = sleep
        self._clock = clock
        self._measure_audio = measure_audio
        self._downloads = asyncio.Semaphore(DOWNLOAD_CONCURRENCY)
        self._tasks: set[asyncio.Task[None]] = set()
        self._creates: set[asyncio.Future[Any]] = set()
        self._chapter_waiting: dict[tuple[int, str], set[str]] = {}
        self._stopped: PipelineError | None = None
        self._bugs: list[BaseException] = []
        self._unanswered_in_a_row = 0
        # The batch's first create goes alone: a base URL that is not the API (a redirect, a web page)
        # must stop the batch after one request, not one per worker.
        self._first_create_done = asyncio.Event()
        self._first_create_started = False
        # Observed render speed (seconds of wall time per billed character), to space polls.
        self._render_s_per_char: float | None = None

    # --- the batch -------------------------------------------------------------------------------

    async def run(self, jobs: Sequence[BookJob]) -> BatchResult:
        per_book = [self._prepare(job) for job in jobs]
        queue = _FairQueue(per_book)
        for job in jobs:
            for plan in job.chapters:
                if not self._chapter_waiting[(id(job), plan.chapter.id)]:
                    self._start_stitch(job, plan)
        for _ in range(self.config.concurrency):
            self._spawn(lambda: self._worker(queue), what="run the batch")
        try:
            while self._tasks:
                await asyncio.wait(list(self._tasks))
            await self._settle_creates()
        except BaseException:
            self._cancel_all()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._settle_creates()
            raise
        if self._bugs:
            raise self._bugs[0]
        return BatchResult([job.result for job in jobs], self._stopped)

    def _prepare(self, job: BookJob) -> list[_Item]:
        """Bring the journal up to date with the plan; return the chunks that still need work."""
        journal = job.journal
        adopt_legacy_rows(job)
        journal.sync_plan(c for plan in job.chapters for c in plan.chunks)
        for plan in job.chapters:
            journal.save_chapter_plan(plan.chapter.id, plan.chunks)
        items: list[_Item] = []
        seen: set[str] = set()
        rows = journal.rows(c.key for plan in job.chapters for c in plan.chunks)
        for plan in job.chapters:
            waiting: set[str] = set()
            for chunk in plan.chunks:
                job.result.chunks += 1
                row = rows[chunk.key]
                if row.state == S.DOWNLOADED and self._cached(job, chunk.key) \
                        and chunk.request.satisfied_by(row.subtitles):
                    job.result.downloaded += 1
                    continue
                waiting.add(chunk.key)
                if chunk.key in seen:  # the same text twice in a book is rendered once
                    continue
                seen.add(chunk.key)
                if row.state == S.EXPIRED and not job.rerender_expired:
                    self._report_expired(_Item(job, chunk), row.error or "its audio is gone at the API")
                    continue
                items.append(_Item(job, chunk))
            self._chapter_waiting[(id(job), plan.chapter.id)] = waiting
        for folder in (job.layout.cache.glob("*") if job.layout.cache.is_dir() else ()):
            fsio.remove_stale_parts(folder)
        return items

    def _cached(self, job: BookJob, key: str) -> bool:
        audio, _ = job.layout.take_paths(key)
        return audio.is_file() and audio.stat().st_size > 0

    def _spawn(self, work: Callable[[], Coroutine[Any, Any, None]], *, what: str, item: _Item | None = None,
               job: BookJob | None = None, chapter_id: str | None = None) -> None:
        """Run ``work()`` in the background under :meth:`_guard`. The coroutine is made only when the
        task starts, so work cancelled before it began leaves nothing un-awaited behind."""
        task = asyncio.create_task(self._guard(work, what=what, item=item, job=job, chapter_id=chapter_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guard(self, work: Callable[[], Coroutine[Any, Any, None]], *, what: str, item: _Item | None,
                     job: BookJob | None, chapter_id: str | None) -> None:
        """Run background work; route whatever it raises (see the module docstring)."""
        try:
            await work()
        except asyncio.CancelledError:
            raise
        except STOPS_BATCH as error:
            self._stop(error)
        except PipelineError as error:
            if item is not None:
                self._fail(item, str(error))
            elif job is not None:
                self._fail_chapter(job, chapter_id or "-", str(error))
            else:
                self._stop(error)
        except OSError as error:
            owner = item.job if item is not None else job
            where = error.filename or (owner.layout.root if owner is not None else Path.cwd())
            self._stop(fsio.storage_error(error, where, doing=what))
        except Exception as error:  # noqa: BLE001 - a bug: stop, wind down, and re-raise it at the end
            self._bugs.append(error)
            self._stop(None)

    def _stop(self, error: PipelineError | None) -> None:
        if self._stopped is None and error is not None:
            self._stopped = error
            self._emit(Progress("stopped", message=str(error)))
        self._cancel_all()

    def _cancel_all(self) -> None:
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()

    @property
    def stopping(self) -> bool:
        return self._stopped is not None or bool(self._bugs)

    async def _settle_creates(self) -> None:
        """Wait for creates still on the wire, so their outcome is recorded (shielded from cancel)."""
        while self._creates:
            await asyncio.gather(*list(self._creates), return_exceptions=True)

    async def _worker(self, queue: _FairQueue) -> None:
        while not self.stopping and (item := queue.pop()) is not None:
            try:
                await self._drive(item)
            except STOPS_BATCH:
                raise
            except PipelineError as error:
                self._fail(item, str(error))

    # --- one chunk -------------------------------------------------------------------------------

    async def _drive(self, item: _Item) -> None:
        journal, key = item.job.journal, item.chunk.key
        row = journal.get(key)
        if row.state == S.DOWNLOADED and not item.chunk.request.satisfied_by(row.subtitles):
            self._archive_first_take(item, row)
            row = journal.get(key)
        elif row.state == S.DOWNLOADED:  # the cached file went missing: fetch it again, free of charge
            row = journal.transition(key, S.COMPLETED) if row.task_id else journal.transition(key, S.PENDING)
        if row.state in (S.FAILED, S.EXPIRED):
            if row.state == S.EXPIRED:
                journal.add_event(key, "rerender-expired", "rendered again at a new charge (--rerender-expired)")
            row = journal.transition(key, S.PENDING, attempts=0, error=None)
        if row.state == S.COMPLETED and row.task_id:
            self._start_download(item, row.task_id, None)
            return
        attempt = 0
        while not self.stopping:
            row = journal.get(key)
            if row.state in (S.PENDING, S.SUBMITTING):
                if row.state == S.SUBMITTING:
                    # A crash between recording the intent and recording the task id: the task
                    # may exist and be billed. Resubmitting is the only way on; report it.
                    self._possible_charge(item, "resubmitted after an interrupted create (its task id was "
                                                "never recorded)")
                    journal.transition(key, S.PENDING)
                outcome = await self._submit(item)
                if outcome is None:
                    return
                if outcome is _RETRY:
                    await self._sleep(self.client.backoff_s(attempt))
                    attempt += 1
                    continue
                task_id = str(outcome)
            else:
                assert row.task_id is not None
                task_id = row.task_id
            info = await self._poll(item, task_id)
            if info is None:
                return
            if info.status == "completed":
                journal.transition(key, S.COMPLETED)
                self._start_download(item, task_id, info)
                return
            # failed on the server: refunded; resubmit while attempts remain
            self._refunded(item)
            row = journal.get(key)
            reason = info.error or "the task failed without a reason"
            if row.attempts >= self.config.max_attempts:
                journal.transition(key, S.FAILED, error=f"task {task_id} failed: {reason}")
                self._fail(item, f"task {task_id} failed after {row.attempts} attempt(s): {reason} (failed tasks "
                                 "are refunded; a rerun tries again)")
                return
            journal.add_event(key, "task-failed", f"task {task_id}: {reason}; resubmitting")
            journal.transition(key, S.PENDING)

    def _archive_first_take(self, item: _Item, row: ChunkRow) -> None:
        """The held take lacks outputs the request now needs (subtitles): keep its audio as a numbered
        take and render the chunk again."""
        journal, layout, key = item.job.journal, item.job.layout, item.chunk.key
        take = max([1, *(t.take for t in journal.takes(key))]) + 1
        kept: list[Path | None] = []
        for old, new in zip(layout.take_paths(key), layout.take_paths(key, take), strict=True):
            if old.exists():
                try:
                    old.replace(new)
                except OSError as exc:
                    raise fsio.storage_error(exc, new, doing="keep the earlier take as") from exc
                kept.append(new)
            else:
                kept.append(None)
        audio, subtitles = kept
        journal.archive_first_take(key, take=take, audio_path=str(audio) if audio else None,
                                   subtitle_path=str(subtitles) if subtitles else None)
        journal.add_event(key, "rerender", f"subtitles {item.chunk.request.subtitles} requested; the earlier audio "
                                           f"is kept as take {take}")

    async def _submit(self, item: _Item) -> object:
        """Create the chunk's task. Returns the task id, :data:`_RETRY` (an unanswered create that may
        be tried again), or None (the chunk failed, or the batch is stopping)."""
        create = asyncio.ensure_future(self._create_and_record(item))
        self._creates.add(create)
        create.add_done_callback(self._creates.discard)
        try:
            return await asyncio.shield(create)
        except asyncio.CancelledError:
            # The request may be on the wire: let it finish, so a task id the API returns is recorded.
            await asyncio.gather(create, return_exceptions=True)
            raise

    async def _create_and_record(self, item: _Item) -> object:
        if not self._first_create_done.is_set():
            if self._first_create_started:
                await self._first_create_done.wait()
                if self.stopping:
                    return None
            else:
                self._first_create_started = True
        try:
            return await self._create_once_answered(item)
        except STOPS_BATCH as error:
            self._stop(error)  # before the creates waiting for this first answer can go
            raise
        finally:
            self._first_create_done.set()

    async def _create_once_answered(self, item: _Item) -> object:
        journal, chunk = item.job.journal, item.chunk
        request = chunk.request
        intent = False

        def before_send() -> None:
            nonlocal intent
            if self.stopping:
                raise _NotSent()
            if not intent:
                journal.begin_submit(chunk.key, request)
                intent = True

        def abandon(error: str | None = None) -> None:
            nonlocal intent
            if intent:
                journal.abandon_submit(chunk.key, error=error)
                intent = False

        started = self._clock()
        while True:
            try:
                task_id = await self.client.create_audio(request.body, before_send=before_send)
                break
            except _NotSent:
                abandon()
                return None
            except TransientError as error:
                if error.status == 429 and not isinstance(error, AmbiguousError) \
                        and self._clock() - started <= self.config.task_timeout_s:
                    # Too many active tasks on the account: a 429 created nothing, so waiting costs
                    # nothing, and failing the chunk would (soundclone-api.md, "Unknowns").
                    abandon()
                    await self._sleep(self.client.backoff_s(MAX_BACKOFF_STEP, error))
                    continue
                if isinstance(error, AmbiguousError):
                    return self._unanswered_create(item, error)
                abandon(error=str(error))
                self._fail(item, f"could not submit: {error}; nothing was created, rerun to try again")
                return None
            except EndpointError as error:
                if error.may_have_processed and intent:
                    self._possible_charge(item, str(error))
                    journal.transition(chunk.key, S.PENDING)
                    intent = False
                abandon()
                raise
            except RequestRejected as error:
                journal.transition(chunk.key, S.FAILED, error=error.msg or str(error))
                self._fail(item, f"rejected by the API: {error.msg or error}")
                return None
            except BaseException:
                abandon()  # a definite refusal (key, balance) or a stop: nothing was created
                raise
        self._unanswered_in_a_row = 0
        item.job.result.tasks_created += 1  # created and billed, whatever happens to the journal next
        item.job.result.chars_created += chunk.billed_chars
        try:
            journal.record_task(chunk.key, task_id)
        except PipelineError as error:
            item.job.result.possible_duplicates.append(
                f"{chunk.chapter_id} chunk {chunk.index}: task {task_id} was created (and billed) but the journal "
                f"could not record it ({error}); a rerun does not know it and renders the chunk again")
            raise
        journal.note_voice_used(request.model_id)
        self._emit(Progress("submitted", chunk.chapter_id, chunk.index, task_id, book=item.job.result.title))
        return task_id

    def _unanswered_create(self, item: _Item, error: AmbiguousError) -> object:
        """A create was sent and no usable answer came: it may have created (and billed) a task."""
        journal, chunk = item.job.journal, item.chunk
        item.job.result.unanswered_creates += 1
        self._possible_charge(item, str(error))
        row = journal.transition(chunk.key, S.PENDING)  # the try stays counted in ``attempts``
        self._unanswered_in_a_row += 1
        if self._unanswered_in_a_row >= UNANSWERED_CREATES_TO_STOP:
            raise ApiUnhealthy(f"{self._unanswered_in_a_row} create requests in a row got no usable answer (the "
                               f"last: {error}); each may have created a billed task, so the batch stops rather "
                               "than pay for retries. Wait until the API answers again, then rerun the same command "
                               "(the possible charges are listed)")
        if row.attempts >= self.config.max_attempts:
            journal.transition(chunk.key, S.FAILED, error=f"{row.attempts} create request(s) got no answer")
            self._fail(item, f"{row.attempts} create request(s) got no usable answer (each may have been billed; "
                             f"api.max_attempts is {self.config.max_attempts}): {error}. A rerun tries again")
            return None
        return _RETRY

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
            self._fail(item, f"task {task_id} cannot be queried: {error.msg or error}; a rerun renders the chunk "
                             "again, at a new charge")
            return None
        except UnknownTaskStatus as error:
            self._fail(item, str(error))  # it says the task is kept and a rerun polls it again
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
        self._spawn(lambda: self._download(item, task_id, info), what="download chunk audio", item=item)

    async def _download(self, item: _Item, task_id: str, info: TaskInfo | None) -> None:
        journal, chunk = item.job.journal, item.chunk
        async with self._downloads:
            try:
                audio_path, subtitle_path = item.job.layout.take_paths(chunk.key)
                fetched = await self._fetch(item, task_id, info, audio_path, subtitle_path)
            except LinkExpired as error:
                journal.transition(chunk.key, S.EXPIRED, error=str(error))
                self._report_expired(item, str(error))
                return
            except _BrokenAudio as error:
                journal.transition(chunk.key, S.FAILED, error=str(error))
                self._fail(item, f"task {task_id}: {error}; a rerun renders the chunk again, at a new charge")
                return
            except STOPS_BATCH:
                raise
            except PipelineError as error:
                self._fail(item, f"task {task_id}: {error}; rerun to download it again (the task is paid for and "
                                 "its link still works: no new charge)")
                return
        journal.save_measures(chunk.key, 1, fetched.measures.to_json())
        journal.transition(chunk.key, S.DOWNLOADED, audio_path=str(audio_path),
                           subtitle_path=str(subtitle_path) if fetched.has_subs else None,
                           duration_s=fetched.duration_s)
        journal.note_voice_activated(chunk.request.model_id)
        self._emit(Progress("downloaded", chunk.chapter_id, chunk.index, f"{fetched.duration_s:.1f}s",
                            book=item.job.result.title))
        self._chunk_done(item)

    async def _fresh_info(self, task_id: str, refused: Counter[str]) -> TaskInfo:
        """Query a completed task for its links; :class:`LinkExpired` when none works any more."""
        try:
            info = await self.client.query(task_id)
        except RequestRejected as error:
            raise LinkExpired(f"the API no longer knows task {task_id} ({error.msg or error}), so its audio is "
                              "gone") from error
        if info.status != "completed":
            raise DownloadError(f"task {task_id} is {info.status} now, not completed")
        if not info.audio_url:
            raise LinkExpired(f"task {task_id} is completed but the API gives no audio link any more")
        if refused[info.audio_url] >= SAME_LINK_REFUSALS:
            raise LinkExpired(f"the audio link of task {task_id} was refused {refused[info.audio_url]} times, and a "
                              "fresh query gives the same link back")
        return info

    async def _fetch(self, item: _Item, task_id: str, info: TaskInfo | None, audio_path: Path,
                     subtitle_path: Path) -> _Fetched:
        """Download a completed task's audio (and subtitles) to temporary files, verify and measure them
        (:mod:`pipeline.qc`), rename into place.

        A refused link is queried again for a fresh one (:class:`LinkExpired` when that fails); network
        trouble is retried with backoff; audio that does not decode is fetched again a few times (then
        :class:`_BrokenAudio`). Audio that decodes but is implausibly short is fetched again too, and
        kept on the last try: it is paid for, and QC judges it (``truncated``).
        """
        chunk, journal = item.chunk, item.job.journal
        want_subtitles = chunk.request.subtitles != "off"
        refused: Counter[str] = Counter()
        refused_subtitles: set[str] = set()
        broken = 0
        last_error: PipelineError | None = None
        for attempt in range(DOWNLOAD_TRIES):
            if info is None or not info.audio_url:
                info = await self._fresh_info(task_id, refused)
            audio_url = info.audio_url
            assert audio_url is not None
            with fsio.TempFiles(audio_path.parent) as temps:
                tmp_audio, tmp_subs = temps.new(audio_path.name), temps.new(subtitle_path.name)
                try:
                    try:
                        await self.client.download(audio_url, tmp_audio, target=audio_path)
                    except DownloadError:
                        refused[audio_url] += 1
                        if refused.total() >= LINK_REFUSALS_BEFORE_EXPIRED:
                            raise LinkExpired(f"every audio link of task {task_id} is refused ({refused.total()} "
                                              "refusals)") from None
                        info = None
                        await self._sleep(REFUSED_LINK_PAUSE_S)
                        continue
                    audio = await asyncio.to_thread(self._verify, tmp_audio, chunk,
                                                    keep_short=broken + 1 >= BROKEN_AUDIO_TRIES)
                    has_subs = False
                    timings: list[SentenceTiming] | None = None
                    if want_subtitles and info.subtitle_url and info.subtitle_url not in refused_subtitles:
                        try:
                            await self.client.download(info.subtitle_url, tmp_subs, max_bytes=SUBTITLE_MAX_BYTES,
                                                       target=subtitle_path)
                        except DownloadError as error:
                            # The audio is in hand and paid for: keep it, without timings.
                            refused_subtitles.add(info.subtitle_url)
                            journal.add_event(chunk.key, "no-subtitles", f"task {task_id}: subtitle link refused "
                                                                         f"({error}); the audio is kept without them")
                        else:
                            timings = _check_subtitles(tmp_subs)
                            has_subs = True
                    elif want_subtitles:
                        journal.add_event(chunk.key, "no-subtitles", f"task {task_id} returned no subtitle file")
                    # the text against the cues: tens of ms for a long chunk, so off the loop (and before
                    # the files go into place: nothing may wait between that and the journal's record)
                    measures = await asyncio.to_thread(qc.measure_take, audio, chunk.spoken_text, timings, chunk.spoken)
                    if has_subs:
                        temps.commit(tmp_subs, subtitle_path, durable=True)
                    temps.commit(tmp_audio, audio_path, durable=True)
                    return _Fetched(audio.duration_s, has_subs, measures)
                except _BrokenAudio as error:
                    broken += 1
                    last_error = error
                    if broken >= BROKEN_AUDIO_TRIES:
                        raise
                    log.info("chunk %s: download attempt %d did not verify: %s", chunk.key, attempt + 1, error)
                    await self._sleep(self.client.backoff_s(attempt))
                except TransientError as error:
                    last_error = error
                    log.info("chunk %s: download attempt %d failed: %s", chunk.key, attempt + 1, error)
                    await self._sleep(self.client.backoff_s(attempt, error))
        assert last_error is not None
        raise last_error

    # --- retakes --------------------------------------------------------------------------------

    async def render_take(self, job: BookJob, chunk: Chunk, *, reason: str = "user", select: bool = True) -> int:
        """Render a fresh take of one chunk, keep it beside the earlier ones, and (unless not ``select``)
        select it. ``reason`` (user, qc, review) is recorded with the take.

        Crash-safe like a chunk: the intent is recorded right before the create request and the task
        id as soon as it returns; an unfinished take is resumed (polled) rather than paid for again.
        """
        journal, item = job.journal, _Item(job, chunk)
        unfinished = [t for t in journal.takes(chunk.key) if t.state in ("submitting", "submitted")]
        if unfinished and unfinished[-1].state == "submitted" and unfinished[-1].task_id:
            take, task_id = unfinished[-1].take, unfinished[-1].task_id
        else:
            if unfinished:  # interrupted between intent and task id: it may have been billed
                self._possible_charge(item, "a retake was interrupted before its task id was recorded")
                journal.update_take(chunk.key, unfinished[-1].take, state="abandoned")
            take, task_id = await self._create_take(item, chunk.request, reason=reason)
        info = await wait_until_final(self.client, task_id, interval_s=self.config.poll_interval_s,
                                      timeout_s=self.config.task_timeout_s, sleep=self._sleep, clock=self._clock)
        journal.record_task_status(task_id, info.status, info.error)
        if info.status == "failed":
            self._refunded(item)
            journal.update_take(chunk.key, take, state="failed")
            raise DownloadError(f"the retake task {task_id} failed: {info.error or 'no reason given'} (failed tasks "
                                "are refunded); try again")
        audio_path, subtitle_path = job.layout.take_paths(chunk.key, take)
        try:
            fetched = await self._fetch(item, task_id, info, audio_path, subtitle_path)
        except LinkExpired as error:
            journal.update_take(chunk.key, take, state="expired")
            raise DownloadError(f"the retake task {task_id} completed, but {error}; run the retake again (a new "
                                "charge)") from error
        journal.save_measures(chunk.key, take, fetched.measures.to_json())
        journal.update_take(chunk.key, take, state="downloaded", audio_path=str(audio_path),
                            subtitle_path=str(subtitle_path) if fetched.has_subs else None)
        if select:
            journal.select_take(chunk.key, take)
        return take

    async def _create_take(self, item: _Item, request: AudioRequest, *, reason: str) -> tuple[int, str]:
        journal, chunk = item.job.journal, item.chunk
        take = 0

        def before_send() -> None:
            nonlocal take
            if not take:
                take = journal.begin_take(chunk.key, request, reason=reason)

        async def create() -> str:
            try:
                return await self.client.create_audio(request.body, before_send=before_send)
            except AmbiguousError as error:
                self._possible_charge(item, f"retake create: {error}")
                if take:
                    journal.update_take(chunk.key, take, state="abandoned")
                raise
            except BaseException:
                if take:
                    journal.update_take(chunk.key, take, state="refused")
                raise

        future = asyncio.ensure_future(create())
        try:
            task_id = await asyncio.shield(future)
        except asyncio.CancelledError:
            await asyncio.gather(future, return_exceptions=True)
            raise
        journal.record_task(chunk.key, task_id, take=take)
        item.job.result.tasks_created += 1
        item.job.result.chars_created += chunk.billed_chars
        return take, task_id

    def _verify(self, path: Path, chunk: Chunk, *, keep_short: bool = False) -> qc.AudioMeasures:
        """Decode and measure a download (one decode serves both); :class:`_BrokenAudio` when it does not
        decode, is implausibly long, or (unless ``keep_short``) implausibly short."""
        try:
            audio = self._measure_audio(path)
        except AssemblyError as error:
            raise _BrokenAudio(f"the audio does not decode: {error}") from error
        duration = audio.duration_s
        speed = float(chunk.request.body.get("speed") or 1.0)
        expected = estimate_seconds(chunk.text, speed=speed)
        if duration <= 0 or (duration < MIN_PLAUSIBLE_SHARE * expected and not keep_short):
            raise _BrokenAudio(f"the audio lasts {duration:.1f}s, implausibly short for {chunk.billed_chars} "
                               f"characters (about {expected:.0f}s expected); it may be truncated")
        if duration > MAX_PLAUSIBLE_FACTOR * expected + 30:
            raise _BrokenAudio(f"the audio lasts {duration:.1f}s, implausibly long for {chunk.billed_chars} "
                               "characters")
        return audio

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
            paths = await job.on_chapter_ready(plan)
            job.result.outputs.extend(paths)
            self._emit(Progress("chapter-done", plan.chapter.id, None, ", ".join(p.name for p in paths),
                                book=job.result.title))

        self._spawn(stitch, what=f"assemble chapter {plan.chapter.id}", job=job, chapter_id=plan.chapter.id)

    # --- reporting ------------------------------------------------------------------------------

    def _emit(self, event: Progress) -> None:
        self._on_event(event)

    def _fail(self, item: _Item, reason: str) -> None:
        chunk = item.chunk
        item.job.result.failures.append(Failure(item.job.manifest.book.title, chunk.chapter_id, chunk.index, reason))
        self._emit(Progress("chunk-failed", chunk.chapter_id, chunk.index, reason, book=item.job.result.title))

    def _fail_chapter(self, job: BookJob, chapter_id: str, reason: str) -> None:
        job.result.failures.append(Failure(job.manifest.book.title, chapter_id, None, f"assembly failed: {reason}"))
        self._emit(Progress("chapter-failed", chapter_id, None, reason, book=job.result.title))

    def _report_expired(self, item: _Item, reason: str) -> None:
        chunk = item.chunk
        item.job.result.expired.append(f"{chunk.chapter_id} chunk {chunk.index}")
        self._fail(item, f"expired: {reason}. A plain rerun cannot recover it; `audiobook run "
                         f"{item.job.manifest.path} --rerender-expired` renders it again, at a new charge "
                         "(shown before anything is paid)")

    def _possible_charge(self, item: _Item, detail: str) -> None:
        chunk = item.chunk
        item.job.journal.note_ambiguous(chunk.key, detail)
        item.job.result.possible_duplicates.append(f"{chunk.chapter_id} chunk {chunk.index}: {detail}")
        self._emit(Progress("possible-duplicate", chunk.chapter_id, chunk.index, detail, book=item.job.result.title))

    def _refunded(self, item: _Item) -> None:
        item.job.result.tasks_refunded += 1
        item.job.result.chars_refunded += item.chunk.billed_chars


def _check_subtitles(path: Path) -> list[SentenceTiming]:
    """The subtitle file must be one the stitcher can read; its timings. (Timings that run past the
    audio are QC's ``truncated``: the audio is kept and judged, not fetched again.)"""
    try:
        return parse_subtitle_json(json.loads(path.read_text(encoding="utf-8")), source="the subtitle file")
    except (ValueError, UnicodeDecodeError) as exc:
        raise _BrokenAudio(f"the subtitle file is not valid JSON ({exc})") from exc
    except AssemblyError as exc:
        raise _BrokenAudio(str(exc)) from exc
