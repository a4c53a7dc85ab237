"""The engine against the project's simulator, in process, on free loopback ports.

Most tests drive :class:`~pipeline.engine.Engine` directly with a real client and journal, a stub in
place of chapter assembly and a cheap MP3 length reader in place of the ffmpeg decode, so that they
exercise submit / poll / download and the journal without the audio stages. The rerun test goes
through :func:`pipeline.runner.run`, assembly included, as a user would. The simulator's ledger says
what a real account would have been billed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from audio_factory import speech_of
from mutagen.mp3 import MP3

from pipeline import runner
from pipeline.client import SoundCloneClient
from pipeline.config import ENV_API_KEY, resolve_run_config
from pipeline.engine import BookJob, BookResult, Engine, _FairQueue, _Item
from pipeline.layout import BookLayout
from pipeline.models import ChapterPlan, ChunkState, Progress
from pipeline.planning import BookPlan
from pipeline.runner import RunOptions
from pipeline.simulator import FaultProfile, Simulator, SimulatorConfig
from pipeline.store import Journal

KEY = "sk-engine-5e0c1f-secret"
MODEL = "model_engine"
API = {"poll_interval_s": 0.02, "backoff_base_s": 0.01, "backoff_cap_s": 0.05, "requests_per_minute": 100000}
AUDIO = {"m4b": False, "profile": "none"}
AUDIO_CREATE = "POST /api/open-api/v1/soundCloning/audios"
QUERY = "GET /api/open-api/v1/audios/{id}"

WORDS = ["harbour", "lantern", "ferry", "keeper", "jetty", "barometer", "spray", "landing", "ledger", "evening", "pressure", "signal", "gull", "tide", "rope", "window", "shutter", "lamp", "wick", "oil", "stair", "rail", "compass", "chart"]


def paragraph(tag: str, n: int) -> str:
    """About 170 characters, unique per (tag, n): with max_chars 200, one chunk per paragraph."""
    words = [WORDS[(n * 7 + i * 3 + len(tag)) % len(WORDS)] for i in range(22)]
    return f"{tag.capitalize()} part {n}: the {' '.join(words[:11])}. Then the {' '.join(words[11:])}."


def chapter_text(tag: str, count: int) -> str:
    return "\n\n".join(paragraph(tag, n) for n in range(count)) + "\n"


@pytest.fixture
def sim() -> Iterator[Simulator]:
    config = SimulatorConfig(api_key=KEY, seed=3, task_base_s=0.02, task_s_per_char=0.0001, preload_voices=(MODEL,))
    with Simulator(config, host="127.0.0.1", port=0, files_port=0) as simulator:
        yield simulator


@pytest.fixture
def book(make_manifest: Callable[..., Path]) -> Callable[..., Path]:
    """``book(name, {chapter_id: text}, api=..., **top)`` writes a manifest; its output is build/<name>."""

    def factory(name: str, chapters: dict[str, str], *, api: dict[str, Any] | None = None, **top: Any) -> Path:
        sources = {f"{name}-{cid}.txt": text for cid, text in chapters.items()}
        return make_manifest(
            name=f"{name}.yaml", title=f"Book {name}", voice={"model_id": MODEL}, sources=sources,
            chunking={"max_chars": 200}, audio=AUDIO, api={**API, **(api or {})},
            chapters=[{"id": cid, "title": cid.upper(), "source": f"{name}-{cid}.txt"} for cid in chapters], **top)

    return factory


def mp3_seconds(path: Path) -> float:
    return float(MP3(path).info.length)


class Watch(httpx.AsyncBaseTransport):
    """A real transport that logs (method, path, status) and may react to each response."""

    def __init__(self, log: list[tuple[str, str, int]],
                 react: Callable[[httpx.Request, httpx.Response], None] | None = None) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._log = log
        self._react = react

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        self._log.append((request.method, request.url.path, response.status_code))
        if self._react is not None:
            self._react(request, response)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


class Outcome:
    def __init__(self, results: list[BookResult], plans: list[BookPlan], ready: list[str],
                 events: list[Progress]) -> None:
        self.results, self.plans, self.ready, self.events = results, plans, ready, events

    def rows(self, index: int = 0) -> dict[str, Any]:
        with Journal.open(self.plans[index].manifest.output, create=False) as journal:
            return journal.rows()


def run_engine(sim: Simulator, manifests: Sequence[Path], *, concurrency: int | None = None,
               on_event: Callable[[Progress], None] | None = None, transport: httpx.AsyncBaseTransport | None = None,
               download_transport: httpx.AsyncBaseTransport | None = None) -> Outcome:
    plans = [runner.plan(runner.load(path)) for path in manifests]
    config = resolve_run_config(plans[0].manifest.api, env={ENV_API_KEY: KEY}, base_url=sim.base_url,
                                concurrency=concurrency)
    ready: list[str] = []
    events: list[Progress] = []

    def emit(event: Progress) -> None:
        events.append(event)
        if on_event is not None:
            on_event(event)

    async def on_chapter_ready(plan: ChapterPlan) -> list[Path]:
        ready.append(plan.chapter.id)
        return []

    async def main() -> list[BookResult]:
        journals = [Journal.open(plan.manifest.output) for plan in plans]
        try:
            async with SoundCloneClient(base_url=config.base_url, api_key=config.api_key,
                                        requests_per_minute=config.requests_per_minute,
                                        backoff_base_s=config.backoff_base_s, backoff_cap_s=config.backoff_cap_s,
                                        transport=transport, download_transport=download_transport) as client:
                engine = Engine(client=client, config=config, on_event=emit, measure_audio=lambda path: speech_of(mp3_seconds(path)))
                jobs = [BookJob(manifest=plan.manifest, chapters=plan.chapters, journal=journal,
                                on_chapter_ready=on_chapter_ready) for plan, journal in zip(plans, journals)]
                return (await engine.run(jobs)).books
        finally:
            for journal in journals:
                journal.close()

    return Outcome(asyncio.run(main()), plans, ready, events)


def audio_tasks(sim: Simulator) -> int:
    return int(sim.ledger()["tasks_created"]["audio"])


# --- tests ----------------------------------------------------------------------------------------

def test_fair_queue_interleaves_two_books(sim: Simulator, book: Callable[..., Path]) -> None:
    first = book("first", {"a1": chapter_text("alpha", 3)})
    second = book("second", {"b1": chapter_text("bravo", 2), "b2": chapter_text("charlie", 2)})
    outcome = run_engine(sim, [first, second], concurrency=1)
    submitted = [e.chapter_id for e in outcome.events if e.kind == "submitted"]
    order = ["A" if chapter.startswith("a") else "B" for chapter in submitted]
    assert order == ["A", "B", "A", "B", "A", "B", "B"], submitted
    assert submitted[1::2][:3] == ["b1", "b1", "b2"], "within a book, chunks go in order"
    assert [(r.chunks, r.downloaded, r.tasks_created, r.failures) for r in outcome.results] == [
        (3, 3, 3, []), (4, 4, 4, [])]
    assert sorted(outcome.ready) == ["a1", "b1", "b2"]


def test_fair_queue_unit_round_robin_with_uneven_books() -> None:
    items = [[_Item(job=name, chunk=n) for n in range(count)]  # type: ignore[arg-type]
             for name, count in (("a", 1), ("b", 3), ("c", 0), ("d", 2))]
    queue = _FairQueue(items)
    popped = []
    while (item := queue.pop()) is not None:
        popped.append(f"{item.job}{item.chunk}")
    assert popped == ["a0", "b0", "d0", "b1", "d1", "b2"]
    assert queue.pop() is None


def test_concurrency_is_never_exceeded(book: Callable[..., Path]) -> None:
    """With the server allowing exactly `concurrency` active tasks, a client that exceeds it meets 429."""
    config = SimulatorConfig(api_key=KEY, seed=5, task_base_s=0.03, task_s_per_char=0.0001,
                             preload_voices=(MODEL,), max_active_tasks=2)
    with Simulator(config, host="127.0.0.1", port=0, files_port=0) as limited:
        outcome = run_engine(limited, [book("busy", {"c1": chapter_text("delta", 6)})], concurrency=2)
        ledger = limited.ledger()
    assert outcome.results[0].downloaded == 6 and not outcome.results[0].failures
    assert "429" not in ledger["responses"][AUDIO_CREATE], ledger["responses"]
    assert ledger["tasks_created"]["audio"] == 6


def test_server_side_failure_is_resubmitted_up_to_max_attempts_then_reported(
        sim: Simulator, book: Callable[..., Path]) -> None:
    manifest = book("failing", {"f1": chapter_text("echo", 1), "f2": chapter_text("foxtrot", 1)},
                    api={"max_attempts": 3})
    sim.set_faults(FaultProfile.parse("fail=1.0"))
    outcome = run_engine(sim, [manifest], concurrency=2)
    result = outcome.results[0]
    ledger = sim.ledger()
    assert ledger["tasks_created"]["audio"] == 6, "3 attempts for each of the 2 chunks, no more"
    assert len(ledger["refunds"]) == 6 and ledger["net_billed_chars"] == 0
    assert sorted(f.chapter_id for f in result.failures) == ["f1", "f2"]
    for failure in result.failures:
        assert failure.chunk_index == 0 and "after 3 attempt(s)" in failure.reason and "task audio_" in failure.reason
    rows = outcome.rows()
    assert {(r.state, r.attempts) for r in rows.values()} == {(ChunkState.FAILED, 3)}
    assert result.downloaded == 0 and outcome.ready == []
    with Journal.open(outcome.plans[0].manifest.output, create=False) as journal:
        assert journal.billing().tasks == 0 and journal.billing().refunded_tasks == 6, "failed tasks are refunded"
        assert len(journal.events("task-failed")) == 4  # two resubmissions per chunk

    # a new run retries the failures from a fresh count
    sim.set_faults(FaultProfile())
    again = run_engine(sim, [manifest])
    assert again.results[0].failures == [] and again.results[0].downloaded == 2
    assert audio_tasks(sim) == 8
    assert {(r.state, r.attempts) for r in again.rows().values()} == {(ChunkState.DOWNLOADED, 1)}


def test_a_failed_task_is_resubmitted_and_the_chunk_completes(sim: Simulator, book: Callable[..., Path]) -> None:
    manifest = book("flaky", {"g1": chapter_text("golf", 1)}, api={"max_attempts": 2})
    sim.set_faults(FaultProfile.parse("fail=1.0"))

    def heal(event: Progress) -> None:  # the first task is already doomed; the next one is not
        if event.kind == "submitted":
            sim.set_faults(FaultProfile())

    outcome = run_engine(sim, [manifest], on_event=heal)
    assert outcome.results[0].failures == [] and outcome.results[0].downloaded == 1
    assert audio_tasks(sim) == 2 and len(sim.ledger()["refunds"]) == 1
    (row,) = outcome.rows().values()
    assert (row.state, row.attempts) == (ChunkState.DOWNLOADED, 2)
    assert outcome.ready == ["g1"]


def test_an_expired_download_url_is_queried_again(sim: Simulator, book: Callable[..., Path]) -> None:
    manifest = book("expiring", {"h1": chapter_text("hotel", 2)})
    sim.set_faults(FaultProfile.parse("expire=1.0"))
    log: list[tuple[str, str, int]] = []

    def renew(request: httpx.Request, response: httpx.Response) -> None:
        if response.status_code == 403:
            sim.set_faults(FaultProfile())  # the next link works

    outcome = run_engine(sim, [manifest], transport=Watch(log), download_transport=Watch(log, renew))
    result = outcome.results[0]
    assert result.failures == [] and result.downloaded == 2
    assert audio_tasks(sim) == 2, "an expired link is never a reason to pay again"
    refused = next(i for i, (_, path, status) in enumerate(log) if status == 403)
    assert log[refused][1].startswith("/files/audio/")
    task_id = log[refused][1].rsplit("/", 1)[1].removesuffix(".mp3")
    later = log[refused + 1:]
    fetched = next(i for i, (_, path, status) in enumerate(later) if path == log[refused][1] and status == 200)
    assert ("GET", f"/api/open-api/v1/audios/{task_id}", 200) in later[:fetched], \
        f"no fresh query between the refusal and the next download: {log}"
    assert all(r.state == ChunkState.DOWNLOADED for r in outcome.rows().values())


def test_the_same_text_twice_is_submitted_once(sim: Simulator, book: Callable[..., Path]) -> None:
    refrain = paragraph("india", 0)
    manifest = book("repeat", {"r1": f"{refrain}\n\n{paragraph('juliet', 1)}\n\n{refrain}\n", "r2": refrain + "\n"})
    plan = runner.plan(runner.load(manifest))
    keys = [c.key for cp in plan.chapters for c in cp.chunks]
    assert len(keys) == 4 and len(set(keys)) == 2, "the test needs one text in three places"
    outcome = run_engine(sim, [manifest])
    result = outcome.results[0]
    assert (result.chunks, result.downloaded, result.tasks_created, result.failures) == (4, 4, 2, [])
    assert audio_tasks(sim) == 2
    assert sim.ledger()["duplicates"] == []
    assert sorted(outcome.ready) == ["r1", "r2"], "both chapters are complete from the one download"


def test_a_deleted_cache_file_is_downloaded_again_without_a_new_task(
        sim: Simulator, book: Callable[..., Path]) -> None:
    manifest = book("rerun", {"k1": chapter_text("kilo", 2), "k2": chapter_text("lima", 1)}, subtitles="off")
    env = {ENV_API_KEY: KEY}
    first = runner.run([runner.load(manifest)], options=RunOptions(base_url=sim.base_url), env=env)
    assert first.ok, first
    tasks = audio_tasks(sim)
    assert tasks == 3
    downloads = sim.ledger()["files_origin"]["requests"]
    plan = runner.plan(runner.load(manifest))
    output = plan.manifest.output
    victim = plan.chapters[0].chunks[1]
    audio, _ = BookLayout(output).take_paths(victim.key)
    assert audio.is_file()
    audio.unlink()

    second = runner.run([runner.load(manifest)], options=RunOptions(base_url=sim.base_url), env=env)
    assert second.ok, second
    result = second.books[0]
    assert (result.tasks_created, result.chars_billed, result.downloaded) == (0, 0, 3)
    ledger = sim.ledger()
    assert ledger["tasks_created"]["audio"] == tasks, "a lost file is fetched again, not paid for again"
    assert ledger["files_origin"]["requests"] == downloads + 1
    assert ledger["requests"][QUERY] >= 4  # one fresh query for the link of the lost file
    assert audio.is_file() and audio.stat().st_size > 0
    with Journal.open(output, create=False) as journal:
        row = journal.get(victim.key)
        assert row.state == ChunkState.DOWNLOADED and row.attempts == 1
        assert journal.billing().tasks == tasks
    assert (output / "01-k1.mp3").is_file() and (output / "02-k2.mp3").is_file()


def test_a_rerun_with_everything_cached_sends_nothing(sim: Simulator, book: Callable[..., Path]) -> None:
    manifest = book("done", {"m1": chapter_text("mike", 2)}, subtitles="off")
    run_engine(sim, [manifest])
    before = sim.ledger()
    again = run_engine(sim, [manifest])
    after = sim.ledger()
    assert (again.results[0].downloaded, again.results[0].tasks_created) == (2, 0)
    assert after["requests"] == before["requests"] and after["files_origin"] == before["files_origin"]
    assert again.ready == ["m1"], "a complete chapter is still handed to assembly (which skips unchanged work)"


# --- a sustained active-task limit ----------------------------------------------------------------

def test_a_long_run_of_429_on_create_is_waited_out_not_failed(book: Callable[..., Path]) -> None:
    """soundclone-api.md, "Unknowns": a 429 when too many tasks are active means back off, don't fail the batch.
    Nothing was created by a 429, so waiting costs nothing; here the server refuses 12 creates in a row
    (a limit of active tasks held by someone else's long renders), then accepts."""
    manifest = book("limited", {"l1": chapter_text("lima", 1)}, subtitles="off")
    plan = runner.plan(runner.load(manifest))
    creates = 0

    def api(request: httpx.Request) -> httpx.Response:
        nonlocal creates
        if request.method == "POST":
            creates += 1
            if creates <= 12:
                return httpx.Response(429, json={"code": 42900, "msg": "too many active tasks", "data": None})
            return httpx.Response(200, json={"code": 20000, "msg": "ok", "data": {"id": "audio_ok", "status": "queued"}})
        return httpx.Response(200, json={"code": 20000, "msg": "ok", "data": {
            "id": "audio_ok", "status": "completed", "audioUrl": "https://cdn.test/audio_ok.mp3"}})

    async def instant(seconds: float) -> None:
        await asyncio.sleep(0)

    async def main() -> BookResult:
        config = resolve_run_config(plan.manifest.api, env={ENV_API_KEY: KEY}, base_url="https://api.test")
        with Journal.open(plan.manifest.output) as journal:
            async with SoundCloneClient(base_url=config.base_url, api_key=config.api_key, requests_per_minute=0,
                                        transport=httpx.MockTransport(api), sleep=instant,
                                        download_transport=httpx.MockTransport(
                                            lambda request: httpx.Response(200, content=b"\xff\xfb" * 500))
                                        ) as client:
                engine = Engine(client=client, config=config, sleep=instant, measure_audio=lambda path: speech_of(10.0))

                async def ready(chapter_plan: ChapterPlan) -> list[Path]:
                    return []

                (result,) = (await engine.run([BookJob(manifest=plan.manifest, chapters=plan.chapters,
                                                       journal=journal, on_chapter_ready=ready)])).books
                return result

    result = asyncio.run(main())
    assert [f.reason for f in result.failures] == []
    assert creates == 13 and result.downloaded == 1
