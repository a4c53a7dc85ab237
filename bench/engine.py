"""Benchmark the batch engine (submit / poll / download) against the simulator's render times.

    python bench/engine.py                   # 300 chunks, concurrency 8, renders of 0.55-0.6 s
    python bench/engine.py --chunks 60       # a quick look
    python bench/engine.py --poll 0.05 --subtitles sentence

A generated book (one-sentence paragraphs, packed into 170-200 character chunks, 50 paragraphs per
chapter) is rendered by :class:`pipeline.engine.Engine` with a real client and journal against the
project's simulator, where every task takes ``task_base_s + task_s_per_char * billed characters``.

What is measured, and where:

* The simulator runs in a **child process** (``python -m pipeline.simulator``), so its work (HTTP
  serving, speech synthesis, MP3 encoding) is neither counted as client CPU nor run on the client's
  interpreter lock. It still shares the machine's cores.
* **Wall time** runs from ``Engine.run`` start until every chunk is downloaded and verified (the journal
  is then checked: every chunk ``downloaded``). Chapter assembly is replaced by a stub: it is
  benchmarked by ``bench/assembly.py``. Planning and opening the journal are timed apart.
* **Ideal** is the sum of the configured render times of the actual chunks divided by the
  concurrency: no engine can finish sooner. The greedy schedule of the same tasks, in queue order,
  on ``concurrency`` slots with zero overhead is printed too (the packing loss of the last wave).
* **Requests per chunk** come from the simulator's ledger (API requests by endpoint; files-origin
  downloads apart).
* **Client CPU per chunk** is ``time.process_time()`` of this process (event loop, httpx, JSON, SQLite,
  and the verification threads), plus, apart, the CPU of the ffmpeg processes that decode each
  download to verify it (``RUSAGE_CHILDREN``, read before the simulator child is reaped; the
  simulator's own CPU is read after it is reaped and printed for scale).
* **Where the time goes**: the client's stamps (wall clock) against the simulator's task creation
  times split each task's overhead into request latency and poll lag; from the poll that saw a task
  completed to the start of its audio download (downloads beside the workers, at most 4 at a time,
  each verified by an ffmpeg decode); the journal's methods are timed as the engine calls them on
  the event loop; a 5 ms sleep in a side task measures event-loop lag. With real chapter assembly
  beside the engine, see ``bench/overlap.py``. Machine load from other work inflates everything: the
  load average is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

KEY = "sk-bench-engine"
MODEL = "model_bench"
CHUNKS_PER_CHAPTER = 50
WORDS = [
    'the', 'keeper', 'climbed', 'stair', 'dusk', 'lit', 'lamp', 'wick', 'caught', 'tide', 'turned', 'rocks',
    'ferry', 'lantern', 'crossed', 'bay', 'pressure', 'falling', 'wind', 'rising', 'north', 'east', 'signal',
    'harbour', 'twice', 'stopped', 'morning', 'gulls', 'rail', 'sea', 'flat', 'grey', 'horizon', 'nobody',
    'came', 'trimmed', 'polished', 'glass', 'waited', 'log', 'entry', 'barometer', 'spray', 'window'
]


def paragraph(rng: random.Random, number: int) -> str:
    """One sentence of 166-199 characters. (The packer may still cut a sentence at a space to save a
    task, so the book is grown until it packs into the chunk count asked for.)"""
    target = rng.randint(165, 190)
    words = [f"Entry {number}"]
    while len(" ".join(words)) < target:
        words.append(rng.choice(WORDS))
    return " ".join(words) + "."


def write_book(folder: Path, *, paragraphs: int, concurrency: int, poll_s: float, subtitles: str) -> Path:
    import yaml

    rng = random.Random(7)
    chapters = []
    for start in range(0, paragraphs, CHUNKS_PER_CHAPTER):
        count = min(CHUNKS_PER_CHAPTER, paragraphs - start)
        number = len(chapters) + 1
        text = "\n\n".join(paragraph(rng, start + i) for i in range(count)) + "\n"
        (folder / f"ch{number:02d}.txt").write_text(text, encoding="utf-8")
        chapters.append({"id": f"ch{number:02d}", "title": f"Chapter {number}", "source": f"ch{number:02d}.txt"})
    manifest = {
        "title": "Engine Bench", "language": "English", "voice": {"model_id": MODEL}, "subtitles": subtitles,
        "chunking": {"max_chars": 200}, "audio": {"m4b": False, "profile": "none"},
        "api": {"concurrency": concurrency, "poll_interval_s": poll_s, "requests_per_minute": 1_000_000,
                "backoff_base_s": 0.01, "backoff_cap_s": 0.1, "max_attempts": 3},
        "chapters": chapters,
    }
    path = folder / "bench.yaml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False), encoding="utf-8")
    return path


def start_simulator(args: argparse.Namespace, log: Path) -> tuple[subprocess.Popen[str], str]:
    command = [sys.executable, "-m", "pipeline.simulator", "--port", "0", "--api-key", KEY, "--seed", "1",
               "--register-voice", MODEL, "--task-base-s", str(args.task_base_s),
               "--task-s-per-char", str(args.task_s_per_char)]
    with log.open("w") as errors:
        proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=errors, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if "listening on" in line:
            base_url = line.split("listening on", 1)[1].split()[0]
            return proc, base_url
    proc.wait()
    sys.exit(f"the simulator did not start:\n{log.read_text()}")


def process_cpu_s(pid: int) -> float:
    """CPU seconds a process has used, with its waited-for children (Linux ``/proc``; 0.0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime stime cutime cstime


def stop(simulator: subprocess.Popen[str]) -> None:
    if simulator.poll() is None:
        simulator.terminate()
        simulator.wait(timeout=30)
    if simulator.stdout is not None:
        simulator.stdout.close()


def admin_ledger(base_url: str) -> dict:
    with urllib.request.urlopen(f"{base_url}/admin/ledger", timeout=30) as response:
        return json.loads(response.read())["data"]


def greedy_makespan(durations: list[float], slots: int) -> float:
    free = [0.0] * slots
    for duration in durations:  # in queue order, each task to the slot that frees first
        free.sort()
        free[0] += duration
    return max(free)


def timed_client_class():
    """A client that timestamps creates, the first answer ``completed`` per task, and downloads: the
    start of each task's first audio download (``download_started``, found by the audio link the
    completed answer gave), the span of every file downloaded for a task (audio, subtitles) and the
    end of the last download of any file."""
    from pipeline.client import SoundCloneClient

    class TimedClient(SoundCloneClient):
        def __init__(self, **kwargs) -> None:
            super().__init__(**kwargs)
            self.creates: dict[str, tuple[float, float, int]] = {}  # task id: start, end, characters
            self.completed_at: dict[str, float] = {}
            self.download_started: dict[str, float] = {}
            self.download_spans: dict[str, list[tuple[float, float]]] = {}  # task id: each file's start, end
            self._task_of_link: dict[str, str] = {}
            self._audio_links: set[str] = set()
            self.last_download_at = 0.0

        async def create_audio(self, body, **kwargs):
            start = time.time()
            task_id = await super().create_audio(body, **kwargs)
            self.creates[task_id] = (start, time.time(), len(body["contentText"]))  # no markers in the bench text
            return task_id

        async def query(self, task_id: str):
            info = await super().query(task_id)
            if info.status == "completed":
                self.completed_at.setdefault(task_id, time.time())
                for link in (info.audio_url, info.subtitle_url):
                    if link:
                        self._task_of_link[link] = task_id
                if info.audio_url:
                    self._audio_links.add(info.audio_url)
            return info

        async def download(self, url, *args, **kwargs):
            task_id = self._task_of_link.get(url)
            start = time.time()
            if task_id is not None and url in self._audio_links:
                self.download_started.setdefault(task_id, start)
            written = await super().download(url, *args, **kwargs)
            self.last_download_at = time.time()
            if task_id is not None:
                self.download_spans.setdefault(task_id, []).append((start, self.last_download_at))
            return written

        def completion_to_download(self) -> dict[str, float]:
            """Per task: from the poll that saw it completed to the start of its audio download."""
            return {t: self.download_started[t] - seen for t, seen in self.completed_at.items()
                    if t in self.download_started}

    return TimedClient


JOURNAL_CALLS = ("sync_plan", "get", "rows", "transition", "begin_submit", "record_task", "record_task_status",
                 "note_ambiguous", "add_event", "note_voice_used", "note_voice_activated")


def time_journal_calls(journal, spent: dict[str, list[float]]) -> None:
    """Wrap the journal's methods on this instance to time the calls the engine makes (outermost
    calls only: ``record_task`` calls ``transition`` and ``get`` itself)."""
    depth = [0]
    for name in JOURNAL_CALLS:
        method = getattr(journal, name)

        def timed(*args, _method=method, _name=name, **kwargs):
            depth[0] += 1
            begin = time.perf_counter()
            try:
                return _method(*args, **kwargs)
            finally:
                depth[0] -= 1
                if depth[0] == 0:
                    spent.setdefault(_name, []).append(time.perf_counter() - begin)

        setattr(journal, name, timed)


async def watch_loop(lags: list[float], stop: asyncio.Event) -> None:
    """How late a 5 ms sleep wakes up: the time the event loop was blocked (or starved of CPU)."""
    while not stop.is_set():
        begin = time.perf_counter()
        await asyncio.sleep(0.005)
        lags.append(time.perf_counter() - begin - 0.005)


async def render(plan, config, base_url: str, journal_spent: dict[str, list[float]],
                 loop_lags: list[float]):
    from pipeline.engine import BookJob, Engine
    from pipeline.store import Journal

    journal = Journal.open(plan.manifest.output)
    time_journal_calls(journal, journal_spent)

    async def no_assembly(chapter_plan):
        return []

    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_loop(loop_lags, stop))
    try:
        async with timed_client_class()(base_url=base_url, api_key=config.api_key,
                                        timeout_s=config.request_timeout_s,
                                        requests_per_minute=config.requests_per_minute,
                                        backoff_base_s=config.backoff_base_s,
                                        backoff_cap_s=config.backoff_cap_s) as client:
            engine = Engine(client=client, config=config)
            job = BookJob(manifest=plan.manifest, chapters=plan.chapters, journal=journal,
                          on_chapter_ready=no_assembly)
            start = time.time()
            (result,) = (await engine.run([job])).books
            return result, start, time.time() - start, client
    finally:
        stop.set()
        await watcher
        journal.close()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=300, help="chunks in the book (default 300)")
    parser.add_argument("--concurrency", type=int, default=8, help="tasks in flight (default 8)")
    parser.add_argument("--poll", type=float, default=0.02, help="poll interval in seconds (default 0.02)")
    parser.add_argument("--task-base-s", type=float, default=0.3, help="render time of every task (default 0.3)")
    parser.add_argument("--task-s-per-char", type=float, default=0.0015,
                        help="extra render time per billed character (default 0.0015: 0.55-0.6 s a task "
                             "for 170-200 character chunks)")
    parser.add_argument("--subtitles", choices=("off", "sentence", "word"), default="off",
                        help="subtitles requested and downloaded (default off)")
    parser.add_argument("--workdir", type=Path, help="keep the book, journal and cache here")
    parser.add_argument("--json", dest="json_out", type=Path, help="also write the figures here (for bench/run.py)")
    args = parser.parse_args()

    from pipeline import runner
    from pipeline.config import ENV_API_KEY, resolve_run_config
    from pipeline.models import ChunkState
    from pipeline.store import Journal

    temp = None
    workdir = args.workdir
    if workdir is None:
        temp = tempfile.TemporaryDirectory(prefix="bench-engine-")
        workdir = Path(temp.name)
    workdir.mkdir(parents=True, exist_ok=True)
    simulator = None
    try:
        paragraphs = args.chunks
        for _ in range(8):  # grow the text until it packs into the chunk count asked for
            manifest = write_book(workdir, paragraphs=paragraphs, concurrency=args.concurrency, poll_s=args.poll,
                                  subtitles=args.subtitles)
            started = time.perf_counter()
            plan = runner.plan(runner.load(manifest))
            planning_s = time.perf_counter() - started
            chunks = [c for cp in plan.chapters for c in cp.chunks]
            if len(chunks) >= args.chunks:
                break
            paragraphs += args.chunks - len(chunks)
        if len(chunks) != args.chunks:
            print(f"note: the text packed into {len(chunks)} chunks (asked for {args.chunks})")
        simulator, base_url = start_simulator(args, workdir / "simulator.log")
        config = resolve_run_config(plan.manifest.api, env={ENV_API_KEY: KEY}, base_url=base_url)

        cpu0, kids0 = time.process_time(), resource.getrusage(resource.RUSAGE_CHILDREN)
        journal_spent: dict[str, list[float]] = {}
        loop_lags: list[float] = []
        result, start, wall_s, client = asyncio.run(render(plan, config, base_url, journal_spent, loop_lags))
        client_requests = client.requests_sent
        cpu1, kids1 = time.process_time(), resource.getrusage(resource.RUSAGE_CHILDREN)
        ledger = admin_ledger(base_url)
        stop(simulator)  # reaped now, so its CPU shows in RUSAGE_CHILDREN
        kids2 = resource.getrusage(resource.RUSAGE_CHILDREN)
        simulator_cpu_s = (kids2.ru_utime + kids2.ru_stime) - (kids1.ru_utime + kids1.ru_stime)

        with Journal.open(plan.manifest.output, create=False) as journal:
            states = [row.state for row in journal.rows().values()]
        downloaded = sum(1 for s in states if s == ChunkState.DOWNLOADED)
        n = len(chunks)
        renders = [args.task_base_s + args.task_s_per_char * c.billed_chars for c in chunks]
        ideal_s = sum(renders) / args.concurrency
        schedule_s = greedy_makespan(renders, args.concurrency)
        api_requests = sum(ledger["requests"].values())
        creates = ledger["requests"].get("POST /api/open-api/v1/soundCloning/audios", 0)
        queries = ledger["requests"].get("GET /api/open-api/v1/audios/{id}", 0)
        files = ledger["files_origin"]["requests"]
        client_cpu_s = cpu1 - cpu0
        ffmpeg_cpu_s = (kids1.ru_utime + kids1.ru_stime) - (kids0.ru_utime + kids0.ru_stime)

        print(f"book: {n} chunks in {len(plan.chapters)} chapters, {sum(c.billed_chars for c in chunks):,} billed "
              f"characters ({min(c.billed_chars for c in chunks)}-{max(c.billed_chars for c in chunks)} a chunk); "
              f"concurrency {args.concurrency}, poll {args.poll:g} s, subtitles {args.subtitles}")
        print(f"render times: {min(renders):.2f}-{max(renders):.2f} s a task, {sum(renders):.1f} s in all")
        print(f"downloaded (journal): {downloaded}/{n}; failures: {len(result.failures)}; "
              f"tasks created: {ledger['tasks_created']['audio']}")
        print(f"wall time to the last download: {wall_s:6.2f} s   (planning {planning_s:.2f} s apart)")
        print(f"ideal (sum / concurrency):      {ideal_s:6.2f} s   ratio {wall_s / ideal_s:.3f} (aim <= 1.1)")
        print(f"greedy schedule, no overhead:   {schedule_s:6.2f} s   ratio {wall_s / schedule_s:.3f}")
        # Where the time goes, per task, on the machine's wall clock (client stamps vs simulator task times).
        sim_tasks = {t["id"]: t for t in ledger["tasks"]}
        if len(client.completed_at) == n and set(client.creates) <= set(sim_tasks):
            sent, answered, lag, busy_s = [], [], [], 0.0
            for task_id, (begin, end, chars) in client.creates.items():
                created = sim_tasks[task_id]["created"]
                finished = created + args.task_base_s + args.task_s_per_char * chars
                sent.append(created - begin)
                answered.append(end - created)
                lag.append(client.completed_at[task_id] - finished)
                busy_s += client.completed_at[task_id] - begin
            last_completion = max(client.completed_at.values()) - start
            idle = args.concurrency * last_completion - busy_s

            def stats(values: list[float]) -> str:
                return f"mean {1000 * sum(values) / n:4.0f} ms, p95 {1000 * percentile(values, 0.95):4.0f} ms"

            print(f"where the time goes: last completion seen at {last_completion:.2f} s, last download at "
                  f"{client.last_download_at - start:.2f} s (download tail "
                  f"{client.last_download_at - start - last_completion:.2f} s)")
            print(f"  create request until the server has the task:  {stats(sent)}")
            print(f"  server's answer until the client has the id:   {stats(answered)}")
            print(f"  task finished until a poll sees it completed:  {stats(lag)}")
            waits = list(client.completion_to_download().values())
            if waits:
                print(f"  poll saw it completed until its download began: mean {1000 * sum(waits) / len(waits):4.0f} "
                      f"ms, p95 {1000 * percentile(waits, 0.95):4.0f} ms, max {1000 * max(waits):4.0f} ms "
                      "(at most 4 downloads at a time)")
            print(f"  slots idle outside those (ramp-up, journal, the last wave): {idle:.1f} slot-s "
                  f"= {idle / args.concurrency:.2f} s of wall time")
        journal_s = sum(sum(v) for v in journal_spent.values())
        top = sorted(journal_spent.items(), key=lambda kv: -sum(kv[1]))[:3]
        print(f"  journal calls on the event loop: {journal_s:.2f} s in all, {1000 * journal_s / n:.1f} ms a chunk "
              f"({', '.join(f'{name} {1000 * sum(v) / len(v):.1f} ms x{len(v)}' for name, v in top)})")
        print(f"  event loop lag (a 5 ms sleep waking late): p50 {1000 * percentile(loop_lags, 0.5):.1f} ms, "
              f"p95 {1000 * percentile(loop_lags, 0.95):.1f} ms, max {1000 * max(loop_lags):.0f} ms")
        print(f"API requests per chunk: {api_requests / n:.2f} ({creates / n:.2f} create, {queries / n:.2f} query; "
              f"client counted {client_requests / n:.2f} incl. downloads); downloads per chunk {files / n:.2f}")
        print(f"client CPU per chunk: {1000 * client_cpu_s / n:.1f} ms in this process "
              f"(+ {1000 * ffmpeg_cpu_s / n:.1f} ms of ffmpeg verification); "
              f"{client_cpu_s / wall_s:.0%} of one core; the simulator used {simulator_cpu_s / n * 1000:.1f} ms "
              "a chunk (serving, synthesis, MP3 encoding)")
        print(f"machine load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
              "(other work on the machine inflates wall time)")
        if args.json_out:
            args.json_out.write_text(json.dumps({
                "chunks": n, "concurrency": args.concurrency, "wall_s": wall_s, "ideal_s": ideal_s,
                "ratio": wall_s / ideal_s, "requests_per_chunk": api_requests / n,
                "client_cpu_ms_per_chunk": 1000 * client_cpu_s / n, "load_average": os.getloadavg()[0],
                "loop_lag_max_ms": 1000 * max(loop_lags),
                "completion_to_download_max_s": max(client.completion_to_download().values(), default=0.0),
            }), encoding="utf-8")
        if downloaded != n or result.failures:
            sys.exit(1)
    finally:
        if simulator is not None:
            stop(simulator)
        if temp is not None:
            temp.cleanup()


if __name__ == "__main__":
    main()
