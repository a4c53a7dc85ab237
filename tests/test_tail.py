"""The tail of a run: chapters assembled beside the engine, once each, and only what changed.

Real parts throughout: the project's simulator on free loopback ports, the real client and journal,
real ffmpeg, and (where the test is about them) the real spawned chapter worker processes.

* downloads keep starting within a second of a task's completion while a long chapter assembles in a
  worker process, and the engine's event loop never stalls;
* one run assembles each chapter once and joins the M4B once; a rerun with nothing changed writes no
  chapter file, does not join the book again and reads no chunk audio;
* after a one-sentence edit only that chapter (its MP3 and its share of the book) is built again, the
  book is joined again and its chapter marks still sit where the parts begin;
* pydub does the per-chunk work and never holds a whole chapter; only ``pipeline/audio`` uses it.
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline import assembly, fsio, runner
from pipeline.audio import ffmpeg, segments
from pipeline.audio.tags import read_mp4_chapters
from pipeline.client import SoundCloneClient
from pipeline.engine import Engine
from pipeline.finishing import ChapterWorkers
from pipeline.layout import BookLayout
from pipeline.planning import BookPlan
from pipeline.runner import RunOptions, RunReport
from pipeline.simulator import Simulator, SimulatorConfig

KEY = "sk-tail-9d2b41-secret"
MODEL = "model_tail"
ENV = {"SOUNDCLONE_API_KEY": KEY}
API = {"poll_interval_s": 0.02, "backoff_base_s": 0.01, "backoff_cap_s": 0.05, "requests_per_minute": 100000}
AUDIO = {"m4b": True, "profile": "none"}
POLL_PREFIX = "/api/open-api/v1/audios/"
AUDIO_FILES_PREFIX = "/files/audio/"
PIPELINE = Path(__file__).resolve().parent.parent / "pipeline"

WORDS = ["harbour", "lantern", "ferry", "keeper", "jetty", "barometer", "spray", "landing", "ledger", "evening",
         "pressure", "signal", "gull", "tide", "rope", "window", "shutter", "lamp", "wick", "oil", "stair", "rail",
         "compass", "chart"]


def paragraph(tag: str, n: int, words: int = 22) -> str:
    """About 170 characters at 22 words (12 s of simulated speech), about 110 at 14 (8 s); unique per
    (tag, n, words). With max_chars 200 each is a chunk of its own (two never fit in one)."""
    picked = [WORDS[(n * 7 + i * 3 + len(tag)) % len(WORDS)] for i in range(words)]
    half = words // 2
    return f"{tag.capitalize()} part {n}: the {' '.join(picked[:half])}. Then the {' '.join(picked[half:])}."


def chapter_text(tag: str, count: int, words: int = 22) -> str:
    return "\n\n".join(paragraph(tag, n, words) for n in range(count)) + "\n"


@pytest.fixture
def book(make_manifest: Callable[..., Path]) -> Callable[..., Path]:
    """``book(name, {chapter_id: text}, **top)`` writes a manifest; its output is build/<name>."""

    def factory(name: str, chapters: dict[str, str], *, api: dict[str, Any] | None = None, **top: Any) -> Path:
        sources = {f"{name}-{cid}.txt": text for cid, text in chapters.items()}
        return make_manifest(
            name=f"{name}.yaml", title=f"Book {name}", voice={"model_id": MODEL}, sources=sources,
            chunking={"max_chars": 200}, audio=AUDIO, api={**API, **(api or {})},
            chapters=[{"id": cid, "title": cid.upper(), "source": f"{name}-{cid}.txt"} for cid in chapters], **top)

    return factory


def simulator(*, task_base_s: float = 0.02, task_s_per_char: float = 0.0001) -> Simulator:
    config = SimulatorConfig(api_key=KEY, seed=11, task_base_s=task_base_s, task_s_per_char=task_s_per_char,
                             preload_voices=(MODEL,))
    return Simulator(config, host="127.0.0.1", port=0, files_port=0)


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with simulator() as simulated:
        yield simulated


def run_book(sim: Simulator, manifest: Path, **options: Any) -> RunReport:
    report = runner.run([runner.load(manifest)], options=RunOptions(base_url=sim.base_url, **options), env=ENV)
    assert report.ok, report
    assert [f.reason for b in report.books for f in b.failures] == []
    return report


IN_PROCESS = {"chapter_workers": 0}  # RunOptions: chapters are built in this process, where they can be watched


FileStamp = tuple[int, int, int]  # (inode, mtime_ns, size)


def stamp(path: Path) -> FileStamp:
    info = path.stat()
    return info.st_ino, info.st_mtime_ns, info.st_size


class BookFiles:
    """The deliverables of a built book: chapter files, the chapters' AAC parts, the M4B."""

    def __init__(self, plan: BookPlan) -> None:
        manifest = plan.manifest
        self.layout = BookLayout(manifest.output)
        self.chapter_ids = [c.id for c in manifest.chapters]
        self.chapter_files = {c.id: list(self.layout.chapter_files(c.number, c.id, manifest.subtitles).values())
                              for c in manifest.chapters}
        self.aac = {c.id: self.layout.chapter_aac(c.id) for c in manifest.chapters}
        self.m4b = self.layout.book_file(manifest.book.title)
        self.sample_rate_hz = manifest.audio.sample_rate_hz

    def all(self) -> list[Path]:
        return [*(p for ps in self.chapter_files.values() for p in ps), *self.aac.values(), self.m4b]

    def stamps(self) -> dict[Path, FileStamp]:
        return {p: stamp(p) for p in self.all()}


# --- 1. downloads keep flowing while a long chapter assembles ------------------------------------

class StampingTransport(httpx.AsyncBaseTransport):
    """A real transport that notes, on the test's monotonic clock, when a poll first answers that a task
    is completed (API origin) and when the download of a task's audio starts (files origin)."""

    def __init__(self, completed: dict[str, float], downloads: dict[str, float]) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._completed = completed
        self._downloads = downloads

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "GET" and path.startswith(AUDIO_FILES_PREFIX):
            self._downloads.setdefault(path[len(AUDIO_FILES_PREFIX):].removesuffix(".mp3"), time.monotonic())
        response = await self._inner.handle_async_request(request)
        if not (request.method == "GET" and path.startswith(POLL_PREFIX)):
            return response
        raw = b"".join([part async for part in response.aiter_raw()])
        await response.aclose()
        answered = time.monotonic()
        data = httpx.Response(response.status_code, headers=response.headers, content=raw).json().get("data")
        if isinstance(data, dict) and data.get("status") == "completed":
            self._completed.setdefault(path[len(POLL_PREFIX):], answered)
        return httpx.Response(response.status_code, headers=response.headers, content=raw,
                              extensions=response.extensions)

    async def aclose(self) -> None:
        await self._inner.aclose()


TICK_S = 0.005
MAX_LOOP_LAG_S = 0.2


class Ticker:
    """A thread sleeping ``TICK_S`` in a loop beside the event loop: the control. When the whole process
    is starved (a loaded machine, a C call holding the GIL), it is late too; when only the event loop is
    held (blocking work on it), it is not."""

    def __init__(self) -> None:
        self.ticks: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tick-control", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            before = time.monotonic()
            time.sleep(TICK_S)
            self.ticks.append((before, time.monotonic()))

    def __enter__(self) -> Ticker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def loop_stalls(loop_ticks: list[tuple[float, float]], thread_ticks: list[tuple[float, float]]
                ) -> list[tuple[float, float]]:
    """(loop lag, control lag) of every event-loop wake-up later than ``MAX_LOOP_LAG_S`` while the control
    thread, over the same span, was never late by even half of it: the loop alone was held."""
    stalls = []
    for start, end in loop_ticks:
        lag = end - start - TICK_S
        if lag <= MAX_LOOP_LAG_S:
            continue
        control = max((e - s - TICK_S for s, e in thread_ticks if s < end and e > start), default=0.0)
        if control < lag / 2:
            stalls.append((round(lag, 3), round(control, 3)))
    return stalls


def test_downloads_start_within_a_second_of_completion_while_a_long_chapter_assembles(
        book: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> None:
    # Chapter "long" (5 chunks, a minute of audio) completes first: the fair queue takes a book's chunks
    # in order, one task at a time here. The short chapters' tasks (4 chunks of 0.5 s renders) complete
    # one by one while it assembles in the worker process.
    manifest = book("tail", {"long": chapter_text("long", 5), "b": chapter_text("bravo", 3, words=14),
                             "c": chapter_text("charlie", 3, words=14)}, subtitles="off", api={"concurrency": 1})
    completed: dict[str, float] = {}
    downloads: dict[str, float] = {}
    builds: dict[str, tuple[float, float]] = {}
    loop_ticks: list[tuple[float, float]] = []
    thread_ticks: list[tuple[float, float]] = []

    from_config = SoundCloneClient.from_config

    def stamping_client(config: Any, **overrides: Any) -> SoundCloneClient:
        transport = StampingTransport(completed, downloads)
        return from_config(config, transport=transport, download_transport=transport, **overrides)

    monkeypatch.setattr(SoundCloneClient, "from_config", stamping_client)

    build = ChapterWorkers.build

    async def timed_build(self: ChapterWorkers, manifest: Any, chapter_plan: Any, selected: Any) -> Any:
        started = time.monotonic()
        try:
            return await build(self, manifest, chapter_plan, selected)
        finally:
            builds[chapter_plan.chapter.id] = (started, time.monotonic())

    monkeypatch.setattr(ChapterWorkers, "build", timed_build)

    engine_run = Engine.run

    async def monitored_run(self: Engine, jobs: Any) -> Any:
        async def monitor() -> None:
            while True:
                before = time.monotonic()
                await asyncio.sleep(TICK_S)
                loop_ticks.append((before, time.monotonic()))

        watcher = asyncio.create_task(monitor())
        with Ticker() as thread:
            try:
                return await engine_run(self, jobs)
            finally:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
                thread_ticks.extend(thread.ticks)

    monkeypatch.setattr(Engine, "run", monitored_run)

    with simulator(task_base_s=0.5, task_s_per_char=0.0001) as sim:
        run_book(sim, manifest)

    assert set(builds) == {"long", "b", "c"}
    start, end = builds["long"]
    window = end - start
    chunks = len({c.key for cp in runner.plan(runner.load(manifest)).chapters for c in cp.chunks})
    assert set(completed) == set(downloads) and len(completed) == chunks, (chunks, completed, downloads)
    delays = {task: downloads[task] - at for task, at in completed.items()}
    inside = {task: delay for task, delay in delays.items() if start <= completed[task] <= end}
    started_inside = [task for task, at in downloads.items() if start <= at <= end]
    stalls = loop_stalls(loop_ticks, thread_ticks)
    worst_lag = max(woke - slept - TICK_S for slept, woke in loop_ticks)
    print(f"\nassembly window of 'long': {window:.2f} s; completions inside it: {len(inside)}, downloads started "
          f"inside it: {len(started_inside)}; completion-to-download delays inside it (s): "
          f"{sorted(round(d, 3) for d in inside.values())}; worst over the run: {max(delays.values()):.3f} s; "
          f"event-loop lag: worst {worst_lag * 1000:.1f} ms over {len(loop_ticks)} wake-ups, "
          f"{len(stalls)} stall(s) of the loop alone")
    assert window > 2.0, f"the long chapter assembled in {window:.2f} s: too short to test anything"
    assert len(started_inside) >= 2, f"only {len(started_inside)} download(s) started during the assembly"
    assert len(inside) >= 2, f"only {len(inside)} task(s) completed during the assembly"
    slow = {task: round(delay, 3) for task, delay in inside.items() if not 0 <= delay < 1.0}
    assert not slow, f"downloads waited behind the chapter assembly: {slow}"
    assert stalls == [], f"the event loop stalled while the process ran on: {stalls}"


# --- 2. once per run, and nothing on a rerun ----------------------------------------------------

class Recorder:
    """Counts, in this process, what a run writes and reads."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.commits: list[Path] = []
        self.assembled: list[tuple[str, bool]] = []
        self.digested: list[Path] = []
        self.decoded: list[Path] = []
        commit, assemble, digest, decode = (fsio.commit, assembly.assemble_chapter, assembly.file_digest,
                                            ffmpeg.decode_pcm_batch)

        def counting_commit(tmp: Path, target: Path, **kwargs: Any) -> None:
            self.commits.append(Path(target))
            commit(tmp, target, **kwargs)

        def counting_assemble(**kwargs: Any) -> Any:
            out = assemble(**kwargs)
            self.assembled.append((kwargs["plan"].chapter.id, out.rebuilt))
            return out

        def counting_digest(path: Path) -> str:
            self.digested.append(Path(path))
            return digest(path)

        def counting_decode(paths: list[Path], **kwargs: Any) -> Any:
            self.decoded.extend(Path(p) for p in paths)
            return decode(paths, **kwargs)

        monkeypatch.setattr(fsio, "commit", counting_commit)
        monkeypatch.setattr("pipeline.finishing.assemble_chapter", counting_assemble)
        monkeypatch.setattr(assembly, "file_digest", counting_digest)
        monkeypatch.setattr(ffmpeg, "decode_pcm_batch", counting_decode)

    def reset(self) -> None:
        for seen in (self.commits, self.assembled, self.digested, self.decoded):
            seen.clear()

    def writes(self, path: Path) -> int:
        return self.commits.count(path)


def test_each_chapter_is_assembled_once_per_run_and_a_rerun_writes_nothing(
        sim: Simulator, book: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Chapters are built in this process (``ChapterWorkers(workers=0)``) so that every assembly, every
    file committed into place, every fingerprint digest and every chunk decode can be counted."""
    manifest = book("once", {"a": chapter_text("alpha", 2, words=14), "b": chapter_text("bravo", 2, words=14),
                             "c": chapter_text("charlie", 2, words=14)})
    seen = Recorder(monkeypatch)
    plan = runner.plan(runner.load(manifest))
    files = BookFiles(plan)
    cache = files.layout.cache

    run_book(sim, manifest, **IN_PROCESS)
    assert sorted(seen.assembled) == [("a", True), ("b", True), ("c", True)], seen.assembled
    for chapter_id in files.chapter_ids:
        for path in files.chapter_files[chapter_id]:
            assert seen.writes(path) == 1, f"{path.name} written {seen.writes(path)} times in one run"
        part = files.aac[chapter_id]
        assert seen.writes(part) == 1, f"{part.name} written {seen.writes(part)} times in one run"
    assert seen.writes(files.m4b) == 1, f"the M4B was joined {seen.writes(files.m4b)} times in one run"
    assert not [p for p in seen.digested if cache in p.parents], "the fingerprint read chunk audio"
    assert set(seen.decoded) == set(cache.glob("*/*.mp3")), "each chunk is decoded for its chapter"
    assert len(seen.decoded) == 6, "each chunk is decoded once"

    before = files.stamps()
    book_bytes = hashlib.sha256(files.m4b.read_bytes()).hexdigest()
    tasks = sim.ledger()["tasks_created"]["audio"]
    seen.reset()
    run_book(sim, manifest, **IN_PROCESS)
    assert sim.ledger()["tasks_created"]["audio"] == tasks
    assert sorted(seen.assembled) == [("a", False), ("b", False), ("c", False)], \
        f"a rerun with nothing changed rebuilt chapters: {seen.assembled}"
    rewritten = sorted(p.name for p in set(seen.commits) & set(files.all()))
    assert rewritten == [], f"a rerun with nothing changed wrote {rewritten}"
    assert files.stamps() == before, "a chapter file, an AAC part or the M4B changed on a rerun"
    assert hashlib.sha256(files.m4b.read_bytes()).hexdigest() == book_bytes
    chunk_reads = [p for p in seen.digested if cache in p.parents]
    assert chunk_reads == [], f"the fingerprint check read chunk audio: {chunk_reads}"
    assert seen.decoded == [], f"a rerun decoded chunk audio: {seen.decoded}"


# --- 3. a one-sentence edit ------------------------------------------------------------------------

def test_a_one_sentence_edit_rebuilds_only_its_chapter_and_rejoins_the_book(
        sim: Simulator, book: Callable[..., Path]) -> None:
    """Through the real worker processes; what was rewritten is read from inode and mtime (every output
    is renamed into place, so a rewrite always changes them)."""
    chapters = {"a": chapter_text("alpha", 2, words=14), "b": chapter_text("bravo", 2, words=14),
                "c": chapter_text("charlie", 2, words=14)}
    manifest = book("edit", chapters)
    files = BookFiles(runner.plan(runner.load(manifest)))
    run_book(sim, manifest)  # real worker processes
    before = files.stamps()
    tasks = sim.ledger()["tasks_created"]["audio"]

    source = manifest.parent / "edit-b.txt"
    text = source.read_text(encoding="utf-8")
    edited = text.replace("Then the", "Then at last the", 2).replace("Then at last the", "Then the", 1)
    assert edited != text and edited.count("Then at last the") == 1
    source.write_text(edited, encoding="utf-8")
    run_book(sim, manifest)
    assert sim.ledger()["tasks_created"]["audio"] == tasks + 1, "only the edited chunk is rendered again"

    after = files.stamps()
    changed = sorted(str(p.relative_to(files.layout.root)) for p in before if before[p] != after[p])
    expected = sorted([*(str(p.relative_to(files.layout.root)) for p in files.chapter_files["b"]),
                       str(files.aac["b"].relative_to(files.layout.root)), files.m4b.name])
    assert changed == expected, f"rewritten: {changed}; expected only chapter b, its AAC part and the book"

    parts = [files.aac[c] for c in files.chapter_ids]
    frames = [ffmpeg.adts_frames(p) for p in parts]
    starts = [sum(frames[:i]) * ffmpeg.AAC_FRAME_SAMPLES / files.sample_rate_hz for i in range(len(frames))]
    marks = read_mp4_chapters(files.m4b)
    assert [title for _, title in marks] == ["A", "B", "C"]
    print(f"\nchapter marks {marks}; the parts begin at {starts} s")
    assert [at for at, _ in marks] == pytest.approx(starts, abs=1e-6), \
        f"chapter marks {marks} do not start where the parts begin {starts}"
    state = json.loads(files.layout.book_state.read_text(encoding="utf-8"))
    assert [row["start_s"] for row in state["chapters"]] == pytest.approx(starts, abs=1e-9)


# --- 4. pydub per chunk, never a whole chapter ------------------------------------------------------

def test_pydub_does_the_per_chunk_work_and_never_holds_a_whole_chapter(
        sim: Simulator, book: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ``AudioSegment`` made while a run assembles a chapter of 3 chunks (12 s each, longer than
    the 6 s blocks the gain is applied in), in this process: one per chunk's decoded audio, one per
    trimmed and faded clip, pauses and gain blocks, none as long as the chapter."""
    manifest_path = book("segments", {"s1": chapter_text("sierra", 3)}, subtitles="off")
    frames: list[int] = []
    segment_class = vars(segments)["AudioSegment"]  # pydub's class, as the audio adapter imported it
    init = segment_class.__init__

    def recording_init(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        frames.append(int(self.frame_count()))

    with monkeypatch.context() as patch:
        patch.setattr(segment_class, "__init__", recording_init)
        run_book(sim, manifest_path, **IN_PROCESS)
    built = assembly.existing_chapter(runner.load(manifest_path), "s1")
    assert built is not None and len(built.spans) == 3

    for span in built.spans:
        assert span.decoded in frames, f"chunk {span.index}: no segment of its decoded audio ({span.decoded})"
        assert span.kept in frames, f"chunk {span.index}: no segment of its trimmed, faded clip ({span.kept})"
    bound = max(span.decoded + span.pause_before for span in built.spans)
    print(f"\n{len(frames)} segments; largest {max(frames)} samples; longest chunk + pause {bound}; chapter "
          f"{built.samples} samples")
    assert max(frames) <= bound, f"a segment of {max(frames)} samples: more than any chunk ({bound})"
    assert built.samples > 2 * bound, "the chapter must be much longer than a chunk for this to mean anything"


def _uses_pydub(node: ast.Name | ast.Attribute | ast.Import | ast.ImportFrom) -> bool:
    if isinstance(node, ast.Name):
        return node.id == "AudioSegment"
    if isinstance(node, ast.Attribute):
        return node.attr == "AudioSegment"
    if isinstance(node, ast.ImportFrom):
        return (node.module or "").split(".")[0] == "pydub"
    return any(alias.name.split(".")[0] == "pydub" for alias in node.names)


def test_only_the_audio_adapter_uses_pydub() -> None:
    """No code outside ``pipeline/audio`` names ``AudioSegment`` or imports pydub (docstrings may talk
    about them: a plain grep also finds ``pipeline/assembly.py``'s module docstring)."""
    users: dict[str, list[int]] = {}
    for path in sorted(PIPELINE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Name | ast.Attribute | ast.Import | ast.ImportFrom) and _uses_pydub(node):
                users.setdefault(str(path.relative_to(PIPELINE.parent)), []).append(node.lineno)
    assert users, "the scan found no use of pydub at all: it is not looking at the right files"
    outside = {name: lines for name, lines in users.items() if not name.startswith(f"pipeline{os.sep}audio{os.sep}")}
    assert outside == {}, f"pydub used outside pipeline/audio: {outside}"
    assert f"pipeline{os.sep}audio{os.sep}segments.py" in users


def _children(pid: int) -> set[int]:
    """Processes whose parent is ``pid`` (read from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry.name))
    return found


def _cmdline(pid: int) -> str:
    """A process's command line, or "" when it has already gone (children come and go while we look)."""
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to see the worker processes")
def test_chapter_workers_leave_when_a_run_is_killed(sim: Simulator, book: Callable[..., Path]) -> None:
    """A ``kill -9`` of a run must not leave idle chapter workers behind (a pool's workers do not notice
    their parent is gone on their own)."""
    import signal
    import subprocess
    import sys

    from e2e_support import command_env

    manifest = book("killed", {"a": chapter_text("alpha", 1), "b": chapter_text("bravo", 6)},
                    api={"concurrency": 1})
    env = {**command_env(sim), "SOUNDCLONE_API_KEY": KEY}
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "run", str(manifest)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        workers: set[int] = set()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            workers = {p for p in _children(proc.pid) if "spawn_main" in _cmdline(p)} if _alive(proc.pid) else set()
            if workers:
                break
            time.sleep(0.05)
        assert workers, "the run never started a chapter worker"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(_alive(p) for p in workers):
            time.sleep(0.1)
        assert not [p for p in workers if _alive(p)], "chapter workers outlived the killed run"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def test_chapter_workers_run_below_the_engines_priority() -> None:
    """The workers (and the ffmpeg children they start) are niced, so a chapter encode on every core
    never delays the engine's polls and downloads."""
    import concurrent.futures
    import multiprocessing

    from pipeline.finishing import WORKER_NICENESS, _start_worker

    mine = os.nice(0)
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                                initializer=_start_worker, initargs=(os.getpid(),)) as pool:
        theirs = pool.submit(os.nice, 0).result(timeout=60)
    assert theirs == min(mine + WORKER_NICENESS, 19)
    assert os.nice(0) == mine  # the run itself keeps its priority
