"""The failure channel (issue 11, item 2): every file-system and journal failure, and every failure of
background work, reaches the run's report as the project's own error; nothing finished is lost.

Faults are real where the machine allows: a file where a folder should be, a tiny ``tmpfs`` that fills
up, a ``tmpfs`` remounted read-only (those two need root or CAP_SYS_ADMIN and are skipped, saying so,
without it). Where a real fault cannot be timed, it is injected at the OS or sqlite boundary only
(``os`` as :mod:`pipeline.fsio` sees it, the journal's ``sqlite3`` connection), never inside our own
modules. End-to-end cases run the real ``python -m pipeline run`` against the project's simulator;
the simulator's ledger says what a real account would have been billed.

The tests in the style of httpx's ``test_httpcore_all_exceptions_mapped`` walk every ``errno`` value,
every ``sqlite3.Error`` subclass and every ``OSError`` subclass, so a new one cannot slip through.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import hashlib
import json
import os
import re
import sqlite3
import subprocess
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from audio_factory import speech_of
from e2e_support import API_KEY, MODEL, audiobook

from pipeline import fsio, runner
from pipeline.cli import render_summary
from pipeline.client import SoundCloneClient
from pipeline.config import ENV_API_KEY, resolve_run_config
from pipeline.engine import BatchResult, BookJob, Engine
from pipeline.errors import AssemblyError, AuthError, BalanceError, PipelineError, StateError, StorageError
from pipeline.layout import BookLayout
from pipeline.models import ChapterPlan, ChunkState, Voice
from pipeline.models import Chunk as PlanChunk
from pipeline.request import AudioRequest
from pipeline.runner import RunOptions
from pipeline.simulator import Simulator, SimulatorConfig
from pipeline.store import Journal

S = ChunkState
API = {"poll_interval_s": 0.02, "backoff_base_s": 0.01, "backoff_cap_s": 0.05, "requests_per_minute": 100000}
WORDS = ["harbour", "lantern", "ferry", "keeper", "jetty", "barometer", "spray", "landing", "ledger", "evening",
         "pressure", "signal", "gull", "tide", "rope", "window", "shutter", "lamp", "wick", "oil", "stair", "rail"]
FILE_FOR_FOLDER = "is a file where a folder should be"


# --- books and runs -------------------------------------------------------------------------------

def paragraph(tag: str, n: int) -> str:
    """About 170 characters, unique per (tag, n): with ``max_chars: 200``, one chunk per paragraph."""
    words = [WORDS[(n * 7 + i * 3 + len(tag)) % len(WORDS)] for i in range(22)]
    return f"{tag.capitalize()} part {n}: the {' '.join(words[:11])}. Then the {' '.join(words[11:])}."


def write_book(folder: Path, chapters: dict[str, int], *, output: Path | None = None) -> Path:
    """A manifest in ``folder`` with ``{chapter_id: number of chunks}``; its output is ``output`` (default
    ``folder/build/book``)."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for chapter_id, count in chapters.items():
        (folder / f"{chapter_id}.txt").write_text("\n\n".join(paragraph(chapter_id, n) for n in range(count)) + "\n",
                                                  encoding="utf-8")
        entries.append({"id": chapter_id, "title": chapter_id.upper(), "source": f"{chapter_id}.txt"})
    manifest: dict[str, Any] = {
        "title": "Failure Channel", "language": "English", "voice": {"model_id": MODEL}, "subtitles": "off",
        "chunking": {"max_chars": 200}, "audio": {"m4b": False, "profile": "none"}, "api": API,
        "chapters": entries,
    }
    if output is not None:
        manifest["output"] = str(output)
    path = folder / "book.yaml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False), encoding="utf-8")
    return path


def start_simulator() -> Simulator:
    config = SimulatorConfig(api_key=API_KEY, seed=7, task_base_s=0.02, task_s_per_char=0.0001,
                             preload_voices=(MODEL,))
    return Simulator(config, host="127.0.0.1", port=0, files_port=0)


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with start_simulator() as simulator:
        yield simulator


def render_first_chapter(sim: Simulator, manifest_path: Path) -> None:
    """Set-up, not under test: render chapter c1 through the library entry point (no interpreter to start)."""
    report = runner.run([runner.load(manifest_path)], options=RunOptions(chapter_ids=("c1",), base_url=sim.base_url),
                        env={ENV_API_KEY: API_KEY})
    assert report.ok, render_summary(report)


def chunk_keys(manifest_path: Path) -> dict[str, list[str]]:
    """``{chapter_id: [chunk key, ...]}`` as the planner cuts the book."""
    plan = runner.plan(runner.load(manifest_path))
    return {cp.chapter.id: [c.key for c in cp.chunks] for cp in plan.chapters}


def cache_digests(output: Path) -> dict[str, str]:
    """sha256 of every cached chunk file, by path relative to the output folder."""
    return {str(path.relative_to(output)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path, _, _ in BookLayout(output).cache_files()}


def journal_rows(output: Path) -> dict[str, Any]:
    with Journal.open(output, create=False) as journal:
        return journal.rows()


def task_ids(sim: Simulator) -> list[str]:
    """The id of every audio task the simulator's account was billed for, in order of creation."""
    return [t["id"] for t in sim.ledger()["tasks"] if t["kind"] == "audio"]


def stopped_line(result: subprocess.CompletedProcess[str]) -> str:
    """The summary's STOPPED line, or the top-level error line (an error before the batch started)."""
    for line in result.stdout.splitlines():
        if line.startswith("STOPPED: "):
            return line
    for line in result.stderr.splitlines():
        if line.startswith("error: "):
            return line
    return ""


def reason_of(line: str, output: Path) -> str:
    """``line`` with the output folder's path taken out (a temporary path may contain any word)."""
    return line.replace(str(output), "<output>")


def assert_clean_failure(result: subprocess.CompletedProcess[str]) -> None:
    """Non-zero exit, a message a user can act on, and no traceback."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    assert stopped_line(result), f"no STOPPED line and no error line:\n{result.stdout}\n{result.stderr}"


def assert_book_complete(result: subprocess.CompletedProcess[str], output: Path, chapters: list[str]) -> None:
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.rstrip().endswith("done"), result.stdout
    for number, chapter_id in enumerate(chapters, start=1):
        assert (output / f"{number:02d}-{chapter_id}.mp3").is_file()
    assert {row.state for row in journal_rows(output).values()} == {S.DOWNLOADED}


def assert_no_new_task_for_recorded_chunks(sim: Simulator, before: list[str], rows_before: dict[str, Any]) -> None:
    """The rerun created a task only for chunks that had none recorded; nothing was paid twice."""
    new = len(task_ids(sim)) - len(before)
    never_submitted = sum(1 for row in rows_before.values() if row.task_id is None)
    assert new == never_submitted, f"{new} new task(s), but only {never_submitted} chunk(s) had no task id"
    assert sim.ledger()["duplicates"] == []


# --- 1. a file where a folder should be -------------------------------------------------------------

def test_a_cache_folder_that_is_a_file_stops_the_run_and_a_rerun_pays_nothing_twice(
        sim: Simulator, tmp_path: Path) -> None:
    chapters = {"c1": 2, "c2": 1}
    manifest = write_book(tmp_path, chapters)
    output = tmp_path / "build" / "book"
    output.mkdir(parents=True)
    (output / "cache").write_text("not a folder\n", encoding="utf-8")

    first = audiobook(sim, "run", str(manifest))
    assert_clean_failure(first)
    line = stopped_line(first)
    assert f"{output / 'cache'} {FILE_FOR_FOLDER}" in line, line
    assert "Move or rename it" in line, "the message says how to fix it"
    tasks = task_ids(sim)
    assert 0 < len(tasks) <= 3 and sim.ledger()["duplicates"] == []
    rows = journal_rows(output)
    recorded = {row.task_id for row in rows.values() if row.task_id}
    assert recorded == set(tasks), "every task the API created is recorded in the journal"
    assert all(row.state in (S.SUBMITTED, S.COMPLETED) for row in rows.values() if row.task_id), \
        "a task paid for is kept, to be polled or downloaded by a rerun"

    (output / "cache").unlink()
    second = audiobook(sim, "run", str(manifest))
    assert_book_complete(second, output, list(chapters))
    assert_no_new_task_for_recorded_chunks(sim, tasks, rows)


def test_a_cache_subfolder_that_is_a_file_mid_book_keeps_what_was_downloaded(sim: Simulator, tmp_path: Path) -> None:
    chapters = {"c1": 1, "c2": 2}
    manifest = write_book(tmp_path, chapters)
    output = tmp_path / "build" / "book"
    keys = chunk_keys(manifest)
    render_first_chapter(sim, manifest)
    downloaded = cache_digests(output)
    assert len(downloaded) == 1
    taken = {key[:2] for key in keys["c1"]}
    victim = next(key for key in keys["c2"] if key[:2] not in taken)
    blocking = output / "cache" / victim[:2]
    blocking.write_text("not a folder\n", encoding="utf-8")

    second = audiobook(sim, "run", str(manifest))
    assert_clean_failure(second)
    line = stopped_line(second)
    assert f"{blocking} {FILE_FOR_FOLDER}" in line and "Move or rename it" in line, line
    assert cache_digests(output) == downloaded, "the audio already downloaded is untouched"
    rows = journal_rows(output)
    assert rows[victim].state == S.COMPLETED and rows[victim].task_id, "its task is paid for and kept"
    tasks = task_ids(sim)
    assert len(tasks) <= 3 and sim.ledger()["duplicates"] == []
    assert {row.task_id for row in rows.values() if row.task_id} == set(tasks), "every paid task is recorded"

    blocking.unlink()
    third = audiobook(sim, "run", str(manifest))
    assert_book_complete(third, output, list(chapters))
    assert_no_new_task_for_recorded_chunks(sim, tasks, rows)
    assert {k: v for k, v in cache_digests(output).items() if k in downloaded} == downloaded


# --- 2. a full disk and a read-only folder (a real tmpfs) -----------------------------------------

@dataclass
class Mount:
    """A tmpfs mounted by the test (unmounted by the ``tmpfs`` fixture's finalizer)."""

    path: Path

    def remount(self, options: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{options}", str(self.path)], check=True, capture_output=True)

    def used_kib(self) -> int:
        stat = os.statvfs(self.path)
        return (stat.f_blocks - stat.f_bfree) * stat.f_frsize // 1024


def _unmount(where: Path) -> None:
    if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)  # busy: detach it at least


@pytest.fixture(scope="module")
def tmpfs(request: pytest.FixtureRequest) -> Callable[[Path, str], Mount]:
    """``tmpfs(folder, size)`` mounts a tmpfs of ``size`` on ``folder`` (unmounted at the end, always);
    skips, saying why, where mounting is not permitted (not root, no CAP_SYS_ADMIN, no mount command)."""

    def mount(where: Path, size: str) -> Mount:
        if not hasattr(os, "geteuid") or os.geteuid() != 0:
            pytest.skip("mounting a tmpfs (full and read-only disks) needs root or CAP_SYS_ADMIN")
        where.mkdir(parents=True, exist_ok=True)
        try:
            done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
                                  capture_output=True, text=True)
        except FileNotFoundError:
            pytest.skip("no `mount` command here: cannot make a full or read-only disk")
        if done.returncode != 0:
            pytest.skip(f"mounting a tmpfs is not permitted here ({done.stderr.strip() or done.returncode}); "
                        "the full and read-only disk tests need root or CAP_SYS_ADMIN")
        request.addfinalizer(lambda: _unmount(where))
        return Mount(where)

    return mount


@dataclass
class DiskScenario:
    """What happened when a book met a bad disk: before, during and after."""

    output: Path
    downloaded: dict[str, str]                 # cache digests before the bad run
    failing: subprocess.CompletedProcess[str]  # the run on the bad disk
    cache_after: dict[str, str]
    journal_before: bytes
    journal_after: bytes
    tasks_before: list[str]                    # task ids billed before the bad run
    tasks_after: list[str]
    rows_after: dict[str, Any] = field(default_factory=dict)
    status: subprocess.CompletedProcess[str] | None = None
    rerun: subprocess.CompletedProcess[str] | None = None
    tasks_final: list[str] = field(default_factory=list)
    victim: str = ""
    margin_kib: int = 0
    audio_bytes: int = 0


CHAPTERS_ON_DISK = {"c1": 1, "c2": 1}


@pytest.fixture(scope="module")
def full_disk(tmpfs: Callable[[Path, str], Mount], tmp_path_factory: pytest.TempPathFactory) -> DiskScenario:
    """c1 is rendered on a roomy tmpfs; the tmpfs is then shrunk to leave room for the journal but not for
    one more chunk's audio, and the whole book is run. Then the disk is grown and the book run again."""
    root = tmp_path_factory.mktemp("small-disk")
    disk = tmpfs(root / "disk", "4m")
    output = disk.path / "book"
    manifest = write_book(root, CHAPTERS_ON_DISK, output=output)
    victim = chunk_keys(manifest)["c2"][0]
    with start_simulator() as sim:
        render_first_chapter(sim, manifest)
        downloaded = cache_digests(output)
        audio_bytes = max(path.stat().st_size for path, _, _ in BookLayout(output).cache_files())
        # Room for the journal's few transactions (about 100 KiB of WAL), not for one more chunk's audio.
        margin_kib = audio_bytes * 4 // 5 // 1024
        disk.remount(f"size={disk.used_kib() + margin_kib}k")
        journal_before = (output / "journal.sqlite").read_bytes()
        tasks_before = task_ids(sim)
        failing = audiobook(sim, "run", str(manifest))
        scenario = DiskScenario(output=output, downloaded=downloaded, failing=failing,
                                cache_after=cache_digests(output), journal_before=journal_before,
                                journal_after=(output / "journal.sqlite").read_bytes(), tasks_before=tasks_before,
                                tasks_after=task_ids(sim), victim=victim, margin_kib=margin_kib,
                                audio_bytes=audio_bytes)
        scenario.status = audiobook(sim, "status", str(manifest))  # reading a book on a full disk
        disk.remount("size=16m")
        scenario.rows_after = journal_rows(output)
        scenario.rerun = audiobook(sim, "run", str(manifest))
        scenario.tasks_final = task_ids(sim)
    return scenario


def test_a_full_disk_stops_the_run_and_loses_nothing(full_disk: DiskScenario) -> None:
    assert full_disk.audio_bytes > full_disk.margin_kib * 1024, "the disk must be too small for one more chunk"
    assert_clean_failure(full_disk.failing)
    assert str(full_disk.output) in stopped_line(full_disk.failing), "the message names where"
    assert full_disk.cache_after == full_disk.downloaded, "audio downloaded before is untouched"
    assert not list(full_disk.output.rglob("*.part")), "no half-written file is left behind"
    row = full_disk.rows_after[full_disk.victim]
    assert row.state in (S.SUBMITTED, S.COMPLETED) and row.task_id, "the paid task of the chunk is kept"
    assert len(full_disk.tasks_after) == len(full_disk.tasks_before) + 1
    assert full_disk.status is not None
    assert full_disk.status.returncode == 0, "the status of a book on a full disk can be read"
    assert full_disk.rerun is not None
    assert_book_complete(full_disk.rerun, full_disk.output, list(CHAPTERS_ON_DISK))
    assert full_disk.tasks_final == full_disk.tasks_after, "the rerun downloads what was paid for, it pays nothing"
    assert cache_digests(full_disk.output).items() >= full_disk.downloaded.items()


def test_a_full_disk_is_named_in_the_summary_with_the_fix(full_disk: DiskScenario) -> None:
    line = stopped_line(full_disk.failing)
    audio, _ = BookLayout(full_disk.output).take_paths(full_disk.victim)
    reason = reason_of(line, full_disk.output)
    assert "the disk is full" in reason and "Free some space" in reason, line
    assert str(audio) in line and ".part" not in line, line


@pytest.fixture(scope="module")
def read_only(tmpfs: Callable[[Path, str], Mount], tmp_path_factory: pytest.TempPathFactory) -> DiskScenario:
    """c1 is rendered on a tmpfs, which is then remounted read-only, and the whole book is run (and its
    status read); then the disk is made writable again and the journal opened."""
    root = tmp_path_factory.mktemp("ro-disk")
    disk = tmpfs(root / "disk", "4m")
    output = disk.path / "book"
    manifest = write_book(root, CHAPTERS_ON_DISK, output=output)
    victim = chunk_keys(manifest)["c2"][0]
    with start_simulator() as sim:
        render_first_chapter(sim, manifest)
        downloaded = cache_digests(output)
        journal_before = (output / "journal.sqlite").read_bytes()
        disk.remount("ro")
        tasks_before = task_ids(sim)
        failing = audiobook(sim, "run", str(manifest))
        scenario = DiskScenario(output=output, downloaded=downloaded, failing=failing,
                                cache_after=cache_digests(output), journal_before=journal_before,
                                journal_after=(output / "journal.sqlite").read_bytes(), tasks_before=tasks_before,
                                tasks_after=task_ids(sim), victim=victim)
        scenario.status = audiobook(sim, "status", str(manifest))  # reading a book on a read-only disk
        disk.remount("rw")
        scenario.rows_after = journal_rows(output)
    return scenario


def test_a_read_only_folder_stops_the_run_and_loses_nothing(read_only: DiskScenario) -> None:
    assert_clean_failure(read_only.failing)
    assert str(read_only.output) in stopped_line(read_only.failing), "the message names where"
    assert read_only.cache_after == read_only.downloaded, "audio downloaded before is untouched"
    assert read_only.journal_after == read_only.journal_before, "the journal is untouched"
    assert read_only.tasks_after == read_only.tasks_before, "nothing is paid for that cannot be kept"
    assert {row.state for key, row in read_only.rows_after.items() if key != read_only.victim} == {S.DOWNLOADED}, \
        "the journal still opens, with everything finished in it"


def test_a_read_only_folder_is_named_in_the_summary_with_the_fix(read_only: DiskScenario) -> None:
    line = stopped_line(read_only.failing)
    reason = reason_of(line, read_only.output)
    assert re.search(r"read-only", reason, re.IGNORECASE) and "writable" in reason, line
    assert "move it aside" not in reason, "never advise dropping the journal: it holds the paid task ids"


def test_status_reads_a_book_on_a_read_only_disk(read_only: DiskScenario) -> None:
    assert read_only.status is not None
    assert read_only.status.returncode == 0, read_only.status.stderr


# --- in-process runs: a fake API (httpx.MockTransport) or the simulator, the real engine and journal ------

AUDIO_BYTES = b"\xff\xfb" * 500


def envelope(data: Any, *, status: int = 200, code: int = 20000, msg: str = "ok") -> httpx.Response:
    return httpx.Response(status, json={"code": code, "msg": msg, "data": data})


class FakeApi:
    """The SoundClone API and its files host for ``httpx.MockTransport``: a create answers a new task id, a
    query says completed with a link. ``refused_links`` lists tasks whose audio link answers 403;
    ``after_refusal`` is the status a query of such a task answers once its link was refused;
    ``create_status`` answers the creates after the first ``creates_ok`` with that status."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str, int]] = []
        self.created: dict[str, str] = {}       # task id -> contentText
        self.refused_links: set[str] = set()
        self.refused: set[str] = set()
        self.after_refusal: int | None = None
        self.create_status: int | None = None
        self.creates_ok = 0

    def api(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            if self.create_status is not None and len(self.created) >= self.creates_ok:
                response = envelope(None, status=self.create_status, code=self.create_status * 100,
                                    msg="refused by the test")
            else:
                task_id = f"audio_{len(self.created) + 1:03d}"
                self.created[task_id] = json.loads(request.content)["contentText"]
                response = envelope({"id": task_id, "status": "queued"})
        else:
            task_id = request.url.path.rsplit("/", 1)[1]
            if self.after_refusal is not None and task_id in self.refused:
                response = envelope(None, status=self.after_refusal, code=self.after_refusal * 100,
                                    msg="refused by the test")
            else:
                response = envelope({"id": task_id, "status": "completed",
                                     "audioUrl": f"https://files.test/audio/{task_id}.mp3"})
        self.log.append((request.method, request.url.path, response.status_code))
        return response

    def files(self, request: httpx.Request) -> httpx.Response:
        task_id = request.url.path.rsplit("/", 1)[1].removesuffix(".mp3")
        if task_id in self.refused_links:
            self.refused.add(task_id)
            response = httpx.Response(403, text="link expired")
        else:
            response = httpx.Response(200, content=AUDIO_BYTES)
        self.log.append((request.method, request.url.path, response.status_code))
        return response

    def creates(self) -> int:
        return sum(1 for method, _, status in self.log if method == "POST" and status == 200)


@dataclass
class EngineRun:
    batch: BatchResult
    plan: Any
    ready: list[str]       # chapters handed to the (stand-in) stitch
    unawaited: list[str]   # "coroutine ... was never awaited": background work that was dropped unseen

    @property
    def report(self) -> runner.RunReport:
        return runner.RunReport(books=self.batch.books, stopped=self.batch.stopped)


def run_engine(manifest_path: Path, fake: FakeApi, *, concurrency: int | None = None,
               on_chapter_ready: Callable[[ChapterPlan], Any] | None = None,
               journal_hook: Callable[[Journal], None] = lambda journal: None) -> EngineRun:
    """The engine as the runner composes it, with a real client (over ``fake``, with instant sleeps) and a
    real journal; a fixed audio length stands in for the ffmpeg decode and ``on_chapter_ready`` (default:
    note the chapter) for assembly; ``journal_hook`` may wrap the journal's connection. Coroutines of
    background work that were never awaited are collected in ``unawaited`` (one test holds that list
    empty); every other warning is re-raised, so warnings stay errors."""
    plan = runner.plan(runner.load(manifest_path))
    config = resolve_run_config(plan.manifest.api, env={ENV_API_KEY: API_KEY}, base_url="https://api.test",
                                concurrency=concurrency)
    ready: list[str] = []

    async def note(chapter_plan: ChapterPlan) -> list[Path]:
        ready.append(chapter_plan.chapter.id)
        return []

    async def no_wait(seconds: float) -> None:
        await asyncio.sleep(0)

    async def main() -> BatchResult:
        with Journal.open(plan.manifest.output) as journal:
            journal_hook(journal)
            async with SoundCloneClient(
                    base_url=config.base_url, api_key=config.api_key, requests_per_minute=0, sleep=no_wait,
                    transport=httpx.MockTransport(fake.api), download_transport=httpx.MockTransport(fake.files),
            ) as client:
                engine = Engine(client=client, config=config, sleep=no_wait, measure_audio=lambda path: speech_of(10.0))
                job = BookJob(manifest=plan.manifest, chapters=plan.chapters, journal=journal,
                              on_chapter_ready=on_chapter_ready or note)
                return await engine.run([job])

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batch = None
        try:
            batch = asyncio.run(main())
        finally:
            if batch is None or batch.stopped is not None:  # cancelled work: free it now, not in a later test
                gc.collect()
    unawaited = [str(w.message) for w in caught if "was never awaited" in str(w.message)]
    for w in caught:
        if "was never awaited" not in str(w.message):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return EngineRun(batch, plan, ready, unawaited)


def assert_downloaded_rows_have_audio(output: Path) -> dict[str, Any]:
    rows = journal_rows(output)
    layout = BookLayout(output)
    for row in rows.values():
        if row.state == S.DOWNLOADED:
            audio, _ = layout.take_paths(row.key)
            assert audio.is_file() and audio.stat().st_size > 0, f"{row.key} is downloaded but its audio is gone"
    return rows


def assert_every_task_recorded(fake: FakeApi, rows: dict[str, Any]) -> None:
    recorded = {row.task_id for row in rows.values() if row.task_id}
    assert recorded == set(fake.created), f"created {sorted(fake.created)}, recorded {sorted(recorded)}"


# --- 3. an OSError at the write boundary, every errno ------------------------------------------------

WRITE_ERRNOS = ["ENOSPC", "EDQUOT", "EROFS", "EACCES", "EPERM", "ENOTDIR", "EISDIR", "ENAMETOOLONG", "EIO", "ESTALE"]


class FailingOs:
    """``os`` as :mod:`pipeline.fsio` sees it, whose ``replace`` succeeds ``ok`` times, then raises ``code``."""

    def __init__(self, code: int, *, ok: int) -> None:
        self.code, self.ok, self.calls = code, ok, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def replace(self, src: Any, dst: Any) -> None:
        self.calls += 1
        if self.calls > self.ok:
            raise OSError(self.code, os.strerror(self.code), str(dst))
        os.replace(src, dst)


@pytest.mark.parametrize("name", WRITE_ERRNOS)
def test_an_oserror_renaming_downloaded_audio_stops_the_batch_as_a_storage_error(
        name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = getattr(errno, name)
    manifest = write_book(tmp_path, {"c1": 3})
    fake = FakeApi()
    monkeypatch.setattr(fsio, "os", FailingOs(code, ok=1))
    run = run_engine(manifest, fake)
    batch, plan, ready = run.batch, run.plan, run.ready
    output = plan.manifest.output
    assert isinstance(batch.stopped, StorageError), batch
    message = str(batch.stopped)
    assert batch.stopped.path is not None and str(batch.stopped.path) in message
    assert Path(str(batch.stopped.path)).is_relative_to(output / "cache"), message
    assert run.report.exit_code != 0
    assert f"STOPPED: {message}" in render_summary(run.report)
    rows = assert_downloaded_rows_have_audio(output)
    assert sum(row.state == S.DOWNLOADED for row in rows.values()) == 1, "the first rename went through"
    assert_every_task_recorded(fake, rows)
    assert not list(output.rglob("*.part")), "a failed rename leaves no temporary file"
    assert ready == []


def test_an_oserror_at_the_write_boundary_through_the_runner(
        sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The library entry point against the simulator, assembly and all: a report, never an exception;
    a rerun loses nothing and pays nothing twice."""
    manifest = write_book(tmp_path, {"c1": 2})
    monkeypatch.setattr(fsio, "os", FailingOs(errno.ENOSPC, ok=1))
    report = runner.run([runner.load(manifest)], options=RunOptions(base_url=sim.base_url),
                        env={ENV_API_KEY: API_KEY})
    output = runner.load(manifest).output
    assert isinstance(report.stopped, StorageError), report
    assert str(report.stopped.path) in str(report.stopped) and "the disk is full" in str(report.stopped)
    assert report.exit_code != 0 and not report.ok
    assert f"STOPPED: {report.stopped}" in render_summary(report)
    assert_downloaded_rows_have_audio(output)
    tasks = task_ids(sim)

    monkeypatch.setattr(fsio, "os", os)
    again = runner.run([runner.load(manifest)], options=RunOptions(base_url=sim.base_url),
                       env={ENV_API_KEY: API_KEY})
    assert again.ok, render_summary(again)
    assert task_ids(sim) == tasks, "the rerun downloads what was paid for, it does not pay again"
    assert (output / "01-c1.mp3").is_file()


def test_a_raw_oserror_from_the_commit_is_routed_by_the_guard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine's guard, not only fsio, translates an OSError that escapes from background work."""
    manifest = write_book(tmp_path, {"c1": 2})
    real_commit = fsio.commit
    calls = 0

    def commit(tmp: Path, target: Path, **kw: Any) -> None:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(target))
        real_commit(tmp, target, **kw)

    monkeypatch.setattr(fsio, "commit", commit)
    run = run_engine(manifest, FakeApi())
    batch, plan = run.batch, run.plan
    assert isinstance(batch.stopped, StorageError), batch
    assert "input/output error" in str(batch.stopped) and str(plan.manifest.output / "cache") in str(batch.stopped)
    assert_downloaded_rows_have_audio(plan.manifest.output)


# --- 4. every foreign exception is mapped ----------------------------------------------------------

@pytest.mark.parametrize("code", sorted(errno.errorcode), ids=lambda code: errno.errorcode[code])
def test_every_errno_becomes_a_storage_error_naming_the_path(code: int, tmp_path: Path) -> None:
    path = tmp_path / "book" / "cache" / "ab" / "ab12.mp3"
    for raised in (OSError(code, os.strerror(code), str(path)), OSError(code, os.strerror(code))):
        error = fsio.storage_error(raised, path, doing="write")
        assert isinstance(error, StorageError) and not isinstance(error, OSError)
        assert error.path == path
        assert f"cannot write {path}" in str(error), str(error)
        assert str(error).strip() != f"cannot write {path}:", "the message says what went wrong"


def test_an_oserror_without_an_errno_still_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "x.mp3"
    error = fsio.storage_error(OSError("something odd"), path, doing="write")
    assert isinstance(error, StorageError) and str(path) in str(error) and "something odd" in str(error)


@pytest.mark.parametrize(("name", "says"), [
    ("ENOSPC", "the disk is full"), ("EDQUOT", "the disk is full"), ("EROFS", "read-only"),
    ("EACCES", "permission denied"), ("EPERM", "permission denied"), ("EISDIR", "a folder where a file should be"),
    ("ENAMETOOLONG", "too long"), ("EIO", "input/output error"),
])
def test_the_common_errnos_say_what_and_how_to_fix(name: str, says: str, tmp_path: Path) -> None:
    code = getattr(errno, name)
    error = fsio.storage_error(OSError(code, os.strerror(code)), tmp_path / "x.mp3", doing="write")
    assert says in str(error), str(error)
    assert re.search(r"\. [A-Z]", str(error)), f"no fix after the reason: {error}"


@pytest.mark.parametrize("code", [errno.ENOTDIR, errno.EEXIST])
def test_a_file_where_a_folder_should_be_is_named(code: int, tmp_path: Path) -> None:
    (tmp_path / "cache").write_text("x", encoding="utf-8")
    target = tmp_path / "cache" / "ab" / "ab12.mp3"
    error = fsio.storage_error(OSError(code, os.strerror(code)), target, doing="write")
    assert f"{tmp_path / 'cache'} {FILE_FOR_FOLDER}" in str(error), str(error)


def sqlite_errors() -> list[type[sqlite3.Error]]:
    found: list[type[sqlite3.Error]] = []
    todo: list[type[sqlite3.Error]] = [sqlite3.Error]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return sorted(set(found), key=lambda cls: cls.__qualname__)


class FaultyConnection:
    """The journal's sqlite3 connection, raising ``error`` from every statement ``fails`` picks."""

    def __init__(self, conn: sqlite3.Connection, error: BaseException, fails: Callable[[str], bool]) -> None:
        self._conn, self._raise, self._fails = conn, error, fails
        self.raised = 0

    def _check(self, sql: str) -> None:
        if self._fails(sql):
            self.raised += 1
            raise self._raise

    def execute(self, sql: str, *args: Any) -> Any:
        self._check(sql)
        return self._conn.execute(sql, *args)

    def executemany(self, sql: str, *args: Any) -> Any:
        self._check(sql)
        return self._conn.executemany(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def _control(sql: str) -> bool:
    return sql.lstrip().upper().startswith(("PRAGMA", "BEGIN", "COMMIT", "ROLLBACK"))


def store_chunk(n: int) -> PlanChunk:
    text = f"Sentence number {n} of the journal test."
    request = AudioRequest.for_chunk(text, voice=Voice(model_id="model_1"), language="English", subtitles="off")
    return PlanChunk(chapter_id="ch01", index=n, start=0, end=len(text), text=text, billed_chars=len(text),
                     pause_before_s=0.0, pause_after_s=0.0, request=request)


JOURNAL_READS: dict[str, Callable[[Journal, PlanChunk], Any]] = {
    "get": lambda j, c: j.get(c.key),
    "rows": lambda j, c: j.rows(),
    "rows(keys)": lambda j, c: j.rows([c.key]),
    "rows_for": lambda j, c: j.rows_for([c.request]),
    "billing": lambda j, c: j.billing(),
    "events": lambda j, c: j.events(),
    "chapter_plans": lambda j, c: j.chapter_plans(),
    "selected_takes": lambda j, c: j.selected_takes(),
    "takes": lambda j, c: j.takes(c.key),
    "owner": lambda j, c: j.owner(),
    "voice_activated": lambda j, c: j.voice_activated("model_1"),
}
JOURNAL_WRITES: dict[str, Callable[[Journal, PlanChunk], Any]] = {
    "transition": lambda j, c: j.transition(c.key, S.SUBMITTING),
    "sync_plan": lambda j, c: j.sync_plan([store_chunk(9)]),
    "record_task": lambda j, c: j.record_task(c.key, "audio_x"),
    "begin_submit": lambda j, c: j.begin_submit(c.key, c.request),
    "record_task_status": lambda j, c: j.record_task_status("audio_x", "completed"),
    "claim": lambda j, c: j.claim(manifest="/m.yaml", title="T"),
    "add_event": lambda j, c: j.add_event(c.key, "note", "x"),
    "note_ambiguous": lambda j, c: j.note_ambiguous(c.key, "x"),
    "save_chapter_plan": lambda j, c: j.save_chapter_plan("ch01", [c]),
    "select_take": lambda j, c: j.select_take(c.key, 1),
    "note_voice_activated": lambda j, c: j.note_voice_activated("model_1"),
    "begin_take": lambda j, c: j.begin_take(c.key, c.request),
    "forget_tasks_in_flight": lambda j, c: j.forget_tasks_in_flight(),
}


@pytest.fixture
def plain_journal(tmp_path: Path) -> Iterator[tuple[Journal, PlanChunk]]:
    with Journal.open(tmp_path / "book") as journal:
        first = store_chunk(1)
        journal.sync_plan([first])
        yield journal, first


@pytest.mark.parametrize("operation", [*JOURNAL_READS, *JOURNAL_WRITES])
def test_every_sqlite_error_from_the_journal_becomes_a_state_error(
        operation: str, plain_journal: tuple[Journal, PlanChunk]) -> None:
    journal, chunk = plain_journal
    call = JOURNAL_READS.get(operation) or JOURNAL_WRITES[operation]
    real = journal._conn
    before = real.execute("SELECT * FROM chunks").fetchall()
    escaped = []
    for cls in sqlite_errors():
        faulty = FaultyConnection(real, cls(f"injected {cls.__name__}"), lambda sql: not _control(sql))
        journal._conn = faulty  # type: ignore[assignment]
        try:
            call(journal, chunk)
        except StateError as error:
            if str(journal.path) not in str(error) or not isinstance(error.__cause__, cls):
                escaped.append(f"{cls.__name__}: {error!r}")
        except BaseException as error:  # noqa: BLE001 - exactly what the test looks for
            escaped.append(f"{cls.__name__} escaped as {type(error).__name__}: {error}")
        else:
            escaped.append(f"{cls.__name__}: no error at all (the fault was {'hit' if faulty.raised else 'missed'})")
        finally:
            journal._conn = real
    assert escaped == []
    assert real.execute("SELECT * FROM chunks").fetchall() == before, "a failed write changes nothing"
    assert not real.in_transaction, "a failed write leaves no transaction open"
    journal.add_event(None, "after", "the journal still works")


@pytest.mark.parametrize(("statement", "failure", "says"), [
    pytest.param("BEGIN", "database or disk is full", "the disk is full", id="begin-full"),
    pytest.param("BEGIN", "database is locked", "busy", id="begin-busy"),
    # SQLite documents that a COMMIT failing with SQLITE_BUSY leaves the transaction active (a COMMIT failing
    # with SQLITE_FULL is rolled back by SQLite itself): the proxy fails it before it runs, as BUSY would.
    pytest.param("COMMIT", "database is locked", "busy", id="commit-busy"),
])
def test_a_journal_write_that_fails_to_begin_or_commit_is_a_state_error_and_the_journal_recovers(
        statement: str, failure: str, says: str, plain_journal: tuple[Journal, PlanChunk]) -> None:
    journal, chunk = plain_journal
    real = journal._conn
    journal._conn = FaultyConnection(real, sqlite3.OperationalError(failure),  # type: ignore[assignment]
                                     lambda sql: sql.lstrip().upper().startswith(statement))
    with pytest.raises(StateError, match=says) as raised:
        journal.transition(chunk.key, S.SUBMITTING)
    assert str(journal.path) in str(raised.value)
    journal._conn = real
    assert not real.in_transaction, "the failed write left its transaction open on the journal's connection"
    assert journal.get(chunk.key).state == S.PENDING, "nothing of the failed write is kept"
    journal.transition(chunk.key, S.SUBMITTING)
    assert journal.get(chunk.key).state == S.SUBMITTING


# --- 5. background work reports back ---------------------------------------------------------------

@pytest.mark.parametrize(("status", "raised"), [(401, AuthError), (402, BalanceError)])
def test_a_refusal_inside_a_download_stops_the_batch_like_one_on_create(
        status: int, raised: type[PipelineError], tmp_path: Path) -> None:
    """The link of the first task is refused (403) and the fresh query for a new link answers ``status``:
    the download, running beside the workers, stops the batch; creates still succeed, so nothing else would."""
    manifest = write_book(tmp_path, {"c1": 4})
    fake = FakeApi()
    fake.refused_links, fake.after_refusal = {"audio_001"}, status
    run = run_engine(manifest, fake, concurrency=1)
    batch, plan, ready = run.batch, run.plan, run.ready
    assert isinstance(batch.stopped, raised), batch
    refusal = next(i for i, (_, path, code) in enumerate(fake.log) if code == status)
    assert fake.log[refusal][1].endswith("/audio_001"), fake.log
    assert [entry for entry in fake.log[refusal:] if entry[0] == "POST"] == [], "nothing is created after the stop"
    assert fake.creates() < 4, f"the stop came too late to matter: {fake.log}"
    first = plan.chapters[0].chunks[0]
    rows = journal_rows(plan.manifest.output)
    assert (rows[first.key].state, rows[first.key].task_id) == (S.COMPLETED, "audio_001"), "the paid task is kept"
    assert_every_task_recorded(fake, rows)
    assert ready == []

    # a rerun with the key (or the balance) fixed downloads the task at no new charge
    created = dict(fake.created)
    fake.refused_links, fake.after_refusal = set(), None
    run = run_engine(manifest, fake, concurrency=1)
    again, ready = run.batch, run.ready
    assert again.stopped is None and again.books[0].failures == [], again
    assert again.books[0].downloaded == 4 and ready == ["c1"]
    assert list(fake.created.values()).count(first.text) == 1, "the refused chunk was not paid for again"
    assert again.books[0].tasks_created == 4 - len(created)


def test_a_refusal_on_create_stops_the_batch(tmp_path: Path) -> None:
    """The reference the download case is held to."""
    manifest = write_book(tmp_path, {"c1": 4})
    fake = FakeApi()
    fake.create_status, fake.creates_ok = 401, 1
    run = run_engine(manifest, fake, concurrency=1)
    batch, plan = run.batch, run.plan
    assert isinstance(batch.stopped, AuthError), batch
    refusal = next(i for i, entry in enumerate(fake.log) if entry[2] == 401)
    assert [entry for entry in fake.log[refusal + 1:] if entry[0] == "POST"] == []
    assert_every_task_recorded(fake, journal_rows(plan.manifest.output))


def stitch_failing(chapter_id: str, error: BaseException, ready: list[str]) -> Callable[[ChapterPlan], Any]:
    async def on_chapter_ready(chapter_plan: ChapterPlan) -> list[Path]:
        await asyncio.sleep(0)
        if chapter_plan.chapter.id == chapter_id:
            raise error
        ready.append(chapter_plan.chapter.id)
        return []

    return on_chapter_ready


def os_errors() -> list[type[OSError]]:
    found: list[type[OSError]] = []
    todo: list[type[OSError]] = [OSError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return sorted(set(found), key=lambda cls: f"{cls.__module__}.{cls.__qualname__}")


def test_an_unexpected_oserror_in_a_stitch_stops_the_batch_as_a_storage_error(tmp_path: Path) -> None:
    manifest = write_book(tmp_path, {"c1": 1, "c2": 1})
    output = tmp_path / "build" / "book"
    target = output / "01-c1.mp3"
    ready: list[str] = []
    run = run_engine(manifest, FakeApi(), concurrency=1, on_chapter_ready=stitch_failing(
        "c1", OSError(errno.EIO, os.strerror(errno.EIO), str(target)), ready))
    batch = run.batch
    assert isinstance(batch.stopped, StorageError), batch
    assert str(target) in str(batch.stopped) and "assemble chapter c1" in str(batch.stopped), str(batch.stopped)
    assert run.report.exit_code != 0
    assert_downloaded_rows_have_audio(output)


def test_no_background_work_is_dropped_unawaited_when_the_batch_stops(tmp_path: Path) -> None:
    manifest = write_book(tmp_path, {"c1": 1, "c2": 1})
    target = tmp_path / "build" / "book" / "01-c1.mp3"
    run = run_engine(manifest, FakeApi(), concurrency=1, on_chapter_ready=stitch_failing(
        "c1", OSError(errno.EIO, os.strerror(errno.EIO), str(target)), []))
    assert isinstance(run.batch.stopped, StorageError), run.batch
    assert run.unawaited == []


def make_os_error(cls: type[OSError], path: Path) -> OSError:
    """An instance of ``cls`` carrying errno EIO and ``path``, whatever its own constructor wants."""
    try:
        return cls(errno.EIO, "injected", str(path))
    except TypeError:
        error = cls.__new__(cls)
        OSError.__init__(error, errno.EIO, "injected", str(path))
        return error


def test_every_oserror_subclass_from_background_work_is_mapped(tmp_path: Path) -> None:
    """httpx's test_httpcore_all_exceptions_mapped, for the engine's guard: whatever ``OSError`` a stitch
    raises (every subclass loaded in this process: the standard library's and any package's), the batch
    stops with a :class:`StorageError` naming the path; none escapes as a bug. One real engine run per
    subclass, over a book whose audio is already in, so that each run is only the stitch."""
    manifest = write_book(tmp_path, {"c1": 1})
    assert run_engine(manifest, FakeApi()).batch.stopped is None
    plan = runner.plan(runner.load(manifest))
    config = resolve_run_config(plan.manifest.api, env={ENV_API_KEY: API_KEY}, base_url="https://api.test")
    classes = os_errors()
    assert len(classes) > 15, "the walk found the standard library's OSError subclasses"

    async def main() -> list[str]:
        unmapped = []
        fake = FakeApi()
        with Journal.open(plan.manifest.output) as journal:
            async with SoundCloneClient(base_url=config.base_url, api_key=config.api_key, requests_per_minute=0,
                                        transport=httpx.MockTransport(fake.api),
                                        download_transport=httpx.MockTransport(fake.files)) as client:
                for cls in classes:
                    target = plan.manifest.output / f"01-c1.{cls.__name__}.mp3"
                    engine = Engine(client=client, config=config, measure_audio=lambda path: speech_of(10.0))
                    job = BookJob(manifest=plan.manifest, chapters=plan.chapters, journal=journal,
                                  on_chapter_ready=stitch_failing("c1", make_os_error(cls, target), []))
                    name = f"{cls.__module__}.{cls.__qualname__}"
                    try:
                        batch = await engine.run([job])
                    except BaseException as escaped:  # noqa: BLE001 - exactly what the test looks for
                        unmapped.append(f"{name} escaped: {escaped!r}")
                        continue
                    if not isinstance(batch.stopped, StorageError) or str(target) not in str(batch.stopped):
                        unmapped.append(f"{name}: stopped={batch.stopped!r}")
        assert fake.log == [], "the book was complete: nothing was asked of the API"
        return unmapped

    assert asyncio.run(main()) == []


def test_a_pipeline_error_in_a_stitch_fails_that_chapter_and_the_others_finish(tmp_path: Path) -> None:
    manifest = write_book(tmp_path, {"c1": 1, "c2": 1, "c3": 1})
    ready: list[str] = []
    run = run_engine(manifest, FakeApi(), on_chapter_ready=stitch_failing(
        "c2", AssemblyError("ffmpeg stopped while encoding chapter 'c2'"), ready))
    batch = run.batch
    assert batch.stopped is None
    (result,) = batch.books
    assert [(f.chapter_id, f.chunk_index) for f in result.failures] == [("c2", None)]
    assert "assembly failed" in result.failures[0].reason and "ffmpeg stopped" in result.failures[0].reason
    assert sorted(ready) == ["c1", "c3"] and result.downloaded == 3
    assert run.report.exit_code == 1
    assert "FAILED c2: assembly failed" in render_summary(run.report)


def test_a_bug_in_a_stitch_is_raised_once_the_batch_has_wound_down(tmp_path: Path) -> None:
    manifest = write_book(tmp_path, {"c1": 1, "c2": 1})
    with pytest.raises(RuntimeError, match="a bug"):
        run_engine(manifest, FakeApi(), concurrency=1,
                   on_chapter_ready=stitch_failing("c1", RuntimeError("a bug"), []))
    assert_downloaded_rows_have_audio(tmp_path / "build" / "book")


def test_a_task_id_the_journal_cannot_record_is_still_counted_and_named(tmp_path: Path) -> None:
    manifest = write_book(tmp_path, {"c1": 2})
    fake = FakeApi()

    def full_disk_on_record(journal: Journal) -> None:
        journal._conn = FaultyConnection(  # type: ignore[assignment]
            journal._conn, sqlite3.OperationalError("database or disk is full"),
            lambda sql: sql.lstrip().startswith("INSERT OR IGNORE INTO tasks"))

    run = run_engine(manifest, fake, concurrency=1, journal_hook=full_disk_on_record)
    batch, plan = run.batch, run.plan
    assert isinstance(batch.stopped, StateError) and "the disk is full" in str(batch.stopped), batch
    assert str(plan.manifest.output / "journal.sqlite") in str(batch.stopped)
    assert fake.creates() == 1
    (result,) = batch.books
    summary = render_summary(run.report)
    assert result.tasks_created == fake.creates(), summary
    assert "audio_001" in summary, summary
