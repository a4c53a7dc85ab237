"""Benchmark the engine while chapters assemble beside it: downloads must never wait behind assembly.

    python bench/overlap.py                      # 6 chapters of 4 chunks (~8 min of audio a chapter)
    python bench/overlap.py --chapters 3 --chunks-per-chapter 2 --chunk-chars 600   # a quick look

The same generated book is rendered twice against the project's simulator (a child process, a fresh
one for each run, as in ``bench/engine.py``), by :class:`pipeline.engine.Engine` with a real client
and journal:

* **baseline**: chapter assembly replaced by a stub (what ``bench/engine.py`` measures);
* **assembling**: ``on_chapter_ready`` is the runner's own (:func:`pipeline.runner._stitcher` over
  :class:`pipeline.finishing.ChapterWorkers`), so each chapter is built in a worker process (MP3,
  subtitles, its AAC share of the book, the delivery measurements) as soon as its audio is in,
  while the engine polls and downloads the later chapters.

Chunks are long (one paragraph of ``--chunk-chars`` or a little less, ~2 minutes of speech each) so
that a chapter takes seconds to build, and chapters complete from the first wave of tasks on: the
timeline printed shows how many chapters were built, and how many downloads began, while a build was
in flight.

Figures, each run against the other:

* **worst event-loop lag**: how late a 5 ms sleep in a side task wakes up (the loop was blocked, or
  the process starved of CPU). A 5 ms sleep in a side *thread* is printed beside it: when it wakes
  late too, the process was starved (the machine's cores were busy), not the loop blocked. Aim: the
  worst loop lag under 100 ms.
* **completion-to-download**: per task, from the poll that saw it ``completed`` to the start of its
  audio download (the engine downloads at most 4 at a time, each verified by an ffmpeg decode).
  Aim: the worst under 1 s.

Machine load from other work inflates both: the load average is printed, and which ffmpeg ran.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from engine import (
    JOURNAL_CALLS,
    KEY,
    MODEL,
    admin_ledger,
    paragraph,
    percentile,
    start_simulator,
    stop,
    timed_client_class,
)

LOOP_LAG_AIM_MS = 100.0
COMPLETION_TO_DOWNLOAD_AIM_S = 1.0


def chunk_paragraph(rng: random.Random, number: int, *, chars: int) -> str:
    """One paragraph of whole sentences, 75-95 % of ``chars`` long: with ``max_chars = chars`` every
    paragraph is exactly one chunk (the next one never fits beside it)."""
    target = rng.uniform(0.75, 0.95) * chars
    sentences: list[str] = []
    while True:
        sentence = paragraph(rng, number * 100 + len(sentences))
        if sentences and len(" ".join([*sentences, sentence])) > target:
            return " ".join(sentences)
        sentences.append(sentence)


def write_book(folder: Path, *, chapters: int, chunks_per_chapter: int, chunk_chars: int, concurrency: int,
               poll_s: float, subtitles: str = "sentence", m4b: bool = True, profile: str = "acx",
               seed: int = 7, output: Path | None = None) -> Path:
    """A manifest of ``chapters`` chapters, each ``chunks_per_chapter`` paragraphs of one chunk each,
    with source files beside it (``bench/tail.py`` uses it too). The API limits are the benchmark's
    (no rate limit, short backoff); the rest are the manifest's defaults (sentence subtitles, the M4B,
    the ACX check)."""
    import yaml

    rng = random.Random(seed)
    entries = []
    for number in range(1, chapters + 1):
        text = "\n\n".join(chunk_paragraph(rng, number * 1000 + i, chars=chunk_chars)
                           for i in range(chunks_per_chapter)) + "\n"
        (folder / f"ch{number:02d}.txt").write_text(text, encoding="utf-8")
        entries.append({"id": f"ch{number:02d}", "title": f"Chapter {number}", "source": f"ch{number:02d}.txt"})
    manifest = {
        "title": "Tail Bench", "author": "Bench", "language": "English", "voice": {"model_id": MODEL},
        "subtitles": subtitles, "chunking": {"max_chars": chunk_chars}, "audio": {"m4b": m4b, "profile": profile},
        "api": {"concurrency": concurrency, "poll_interval_s": poll_s, "requests_per_minute": 1_000_000,
                "backoff_base_s": 0.01, "backoff_cap_s": 0.1, "max_attempts": 3},
        "chapters": entries,
    }
    if output is not None:
        manifest["output"] = str(output)
    path = folder / "book.yaml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False), encoding="utf-8")
    return path


def ffmpeg_used() -> str:
    """Which ffmpeg the pipeline runs, and why (the lookup order of :func:`pipeline.audio.ffmpeg.find_ffmpeg`)."""
    import shutil

    from pipeline.audio.ffmpeg import ENV_FFMPEG, find_ffmpeg

    path = find_ffmpeg()
    if os.environ.get(ENV_FFMPEG):
        source = f"${ENV_FFMPEG}"
    elif shutil.which("ffmpeg") == path:
        source = "PATH"
    else:
        source = "the imageio-ffmpeg wheel"
    return f"{path} (from {source})"


@dataclass
class Watch:
    """Lag samples, each (wall time of the wake-up, seconds late)."""

    loop: list[tuple[float, float]] = field(default_factory=list)
    thread: list[tuple[float, float]] = field(default_factory=list)


async def watch_loop(samples: list[tuple[float, float]], stopping: asyncio.Event) -> None:
    while not stopping.is_set():
        begin = time.perf_counter()
        await asyncio.sleep(0.005)
        samples.append((time.time(), time.perf_counter() - begin - 0.005))


def watch_thread(samples: list[tuple[float, float]], stopping: threading.Event) -> None:
    while not stopping.is_set():
        begin = time.perf_counter()
        time.sleep(0.005)
        samples.append((time.time(), time.perf_counter() - begin - 0.005))


SLOW_CALL_S = 0.01


def time_blocking_calls(journal, slow: list[tuple[float, float, str]]) -> contextlib.AbstractContextManager[None]:
    """Record the synchronous calls the event loop's thread makes that can block it on the disk: the
    journal's methods (SQLite commits, fsynced) and ``os.fsync`` (a download is fsynced before its
    rename); each call over ``SLOW_CALL_S`` as (wall start, seconds, name)."""
    main = threading.main_thread()
    depth = [0]

    def timed(function, name):
        def call(*args, **kwargs):
            if threading.current_thread() is not main:
                return function(*args, **kwargs)
            depth[0] += 1
            begin, started = time.time(), time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                depth[0] -= 1
                spent = time.perf_counter() - started
                if spent > SLOW_CALL_S and (depth[0] == 0 or name == "os.fsync"):
                    slow.append((begin, spent, name))
        return call

    for name in JOURNAL_CALLS:
        setattr(journal, name, timed(getattr(journal, name), f"journal.{name}"))

    @contextlib.contextmanager
    def fsync_timed():
        original = os.fsync
        os.fsync = timed(original, "os.fsync")
        try:
            yield
        finally:
            os.fsync = original

    return fsync_timed()


@dataclass
class Outcome:
    mode: str
    start: float
    wall_s: float
    last_download: float
    client: object
    watch: Watch
    builds: dict[str, list[float]]  # chapter id: [audio all in (build submitted), build returned]
    failures: list[str]
    slow_calls: list[tuple[float, float, str]]


async def render(plan, config, *, assemble: bool, workers: int | None) -> Outcome:
    from pipeline.engine import BookJob, Engine
    from pipeline.finishing import ChapterWorkers
    from pipeline.runner import RetakeBudget, _stitcher
    from pipeline.store import Journal

    journal = Journal.open(plan.manifest.output)
    slow_calls: list[tuple[float, float, str]] = []
    fsync_timed = time_blocking_calls(journal, slow_calls)
    builds: dict[str, list[float]] = {}
    watch = Watch()
    stopping, thread_stopping = asyncio.Event(), threading.Event()
    watcher = asyncio.create_task(watch_loop(watch.loop, stopping))
    thread = threading.Thread(target=watch_thread, args=(watch.thread, thread_stopping), daemon=True)
    thread.start()
    try:
        with fsync_timed, ChapterWorkers(workers) as pool:
            stitch = None

            async def on_chapter_ready(chapter_plan):
                builds[chapter_plan.chapter.id] = [time.time(), 0.0]
                try:
                    return await stitch(chapter_plan) if assemble else []
                finally:
                    builds[chapter_plan.chapter.id][1] = time.time()

            async with timed_client_class()(base_url=config.base_url, api_key=config.api_key,
                                            timeout_s=config.request_timeout_s,
                                            requests_per_minute=config.requests_per_minute,
                                            backoff_base_s=config.backoff_base_s,
                                            backoff_cap_s=config.backoff_cap_s) as client:
                engine = Engine(client=client, config=config)
                job = BookJob(manifest=plan.manifest, chapters=plan.chapters, journal=journal,
                              on_chapter_ready=on_chapter_ready)
                stitch = _stitcher(job, engine, pool, {}, budget=RetakeBudget(None), on_event=lambda event: None)
                start = time.time()
                (result,) = (await engine.run([job])).books
                wall_s = time.time() - start
        return Outcome("assembling" if assemble else "baseline", start, wall_s, client.last_download_at, client,
                       watch, builds, [f"{f.chapter_id} {f.chunk_index}: {f.reason}" for f in result.failures],
                       slow_calls)
    finally:
        stopping.set()
        thread_stopping.set()
        await watcher
        thread.join()
        journal.close()


def run_once(manifest_path: Path, output: Path, args: argparse.Namespace, *, assemble: bool) -> Outcome:
    import dataclasses

    from pipeline import runner
    from pipeline.config import ENV_API_KEY, resolve_run_config

    manifest = dataclasses.replace(runner.load(manifest_path), output=output)
    plan = runner.plan(manifest)
    simulator, base_url = start_simulator(args, output.parent / f"simulator-{output.name}.log")
    try:
        config = resolve_run_config(plan.manifest.api, env={ENV_API_KEY: KEY}, base_url=base_url)
        outcome = asyncio.run(render(plan, config, assemble=assemble, workers=args.workers))
        outcome.client.ledger = admin_ledger(base_url)  # type: ignore[attr-defined]
        return outcome
    finally:
        stop(simulator)


def in_builds(t: float, builds: dict[str, list[float]]) -> bool:
    return any(begin <= t <= end for begin, end in builds.values())


def thread_lag_around(t: float, lag: float, thread: list[tuple[float, float]]) -> float:
    """The side thread's worst lag over the window of a loop sample (woken at ``t``, ``lag`` late)."""
    begin = t - lag - 0.005
    return max((tl for tt, tl in thread if tt >= begin and tt - tl - 0.005 <= t), default=0.0)


def blocked_ms(o: Outcome, samples: list[tuple[float, float]]) -> float:
    """The worst loop lag not explained by the whole process waiting for a core: a loop sample's lag
    minus the side thread's lag over the same window (the thread needs only a core and, every 5 ms,
    the interpreter lock; a loop busy or blocked in Python code delays only the loop)."""
    return 1000 * max((lag - thread_lag_around(t, lag, o.watch.thread) for t, lag in samples), default=0.0)


def downloads_in_progress(o: Outcome, t: float) -> int:
    """Tasks whose files were downloading (first file begun, last not yet in) at ``t``."""
    spans = o.client.download_spans  # type: ignore[attr-defined]
    return sum(1 for task, began in o.client.download_started.items()  # type: ignore[attr-defined]
               if began <= t < max(end for _, end in spans.get(task, [(0.0, began)])))


def summarize(o: Outcome) -> dict[str, float]:
    from pipeline.engine import DOWNLOAD_CONCURRENCY

    waits = o.client.completion_to_download()  # type: ignore[attr-defined]
    window = [(t, lag) for t, lag in o.watch.loop if t <= o.last_download]  # while downloads remain
    during = [(t, lag) for t, lag in window if in_builds(t, o.builds)]
    loop = [lag for _, lag in window]
    starts = list(o.client.download_started.values())  # type: ignore[attr-defined]
    long_waits = [task for task, wait in waits.items() if wait > 0.25]
    behind_downloads = [task for task in long_waits
                        if downloads_in_progress(o, o.client.completed_at[task]) >= DOWNLOAD_CONCURRENCY]  # type: ignore[attr-defined]
    files = [end - begin for spans in o.client.download_spans.values() for begin, end in spans]  # type: ignore[attr-defined]
    return {
        "loop_lag_max_ms": 1000 * max(loop), "loop_lag_p99_ms": 1000 * percentile(loop, 0.99),
        "loop_lag_max_during_builds_ms": 1000 * max((lag for _, lag in during), default=0.0),
        "loop_blocked_max_ms": blocked_ms(o, window),
        "thread_lag_max_ms": 1000 * max((lag for t, lag in o.watch.thread if t <= o.last_download), default=0.0),
        "loop_lag_max_after_downloads_ms": 1000 * max((lag for t, lag in o.watch.loop if t > o.last_download),
                                                      default=0.0),
        "c2d_mean_s": sum(waits.values()) / len(waits), "c2d_p95_s": percentile(list(waits.values()), 0.95),
        "c2d_max_s": max(waits.values()),
        "waits_over_250ms": len(long_waits), "waits_behind_downloads": len(behind_downloads),
        "file_download_mean_s": sum(files) / len(files),
        "downloads": len(starts),
        "downloads_during_builds": sum(1 for t in starts if in_builds(t, o.builds)),
        "chapters_built_before_last_download": sum(1 for _, end in o.builds.values() if end <= o.last_download),
        "to_last_download_s": o.last_download - o.start, "wall_s": o.wall_s,
    }


def blocking_call_in(o: Outcome, t: float, lag: float) -> str:
    """The slowest recorded blocking call overlapping a loop sample's window, if any."""
    begin = t - lag - 0.005
    calls = [(spent, name) for start, spent, name in o.slow_calls if start < t and start + spent > begin]
    if not calls:
        return ""
    spent, name = max(calls)
    return f", {name} {1000 * spent:.0f} ms"


def worst_moments(o: Outcome, count: int = 4) -> list[str]:
    worst = sorted(((t, lag) for t, lag in o.watch.loop if t <= o.last_download), key=lambda s: -s[1])[:count]
    return [f"{1000 * lag:.0f} ms at {t - o.start:.1f} s (side thread "
            f"{1000 * thread_lag_around(t, lag, o.watch.thread):.0f} ms{blocking_call_in(o, t, lag)}"
            f"{', building' if in_builds(t, o.builds) else ''})" for t, lag in worst]


def slow_call_summary(o: Outcome) -> str:
    calls = [(spent, name) for start, spent, name in o.slow_calls if start <= o.last_download]
    if not calls:
        return f"none over {1000 * SLOW_CALL_S:.0f} ms"
    by_name: dict[str, list[float]] = {}
    for spent, name in calls:
        by_name.setdefault(name, []).append(spent)
    return ", ".join(f"{name} x{len(v)} (worst {1000 * max(v):.0f} ms)"
                     for name, v in sorted(by_name.items(), key=lambda kv: -max(kv[1])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chapters", type=int, default=5, help="chapters in the book (default 5)")
    parser.add_argument("--chunks-per-chapter", type=int, default=3, help="chunks in each chapter (default 3)")
    parser.add_argument("--chunk-chars", type=int, default=1000,
                        help="max_chars; each chunk is one paragraph of 75-95 %% of it (default 1000: about a "
                             "minute of speech a chunk)")
    parser.add_argument("--concurrency", type=int, default=4, help="tasks in flight (default 4, the manifest's)")
    parser.add_argument("--poll", type=float, default=0.05, help="poll interval in seconds (default 0.05)")
    parser.add_argument("--task-base-s", type=float, default=0.3, help="render time of every task (default 0.3)")
    parser.add_argument("--task-s-per-char", type=float, default=0.005,
                        help="extra render time per billed character (default 0.005: 4-5 s a task)")
    parser.add_argument("--workers", type=int, default=None,
                        help="chapter worker processes (default: the runner's, one per core at a lower priority)")
    parser.add_argument("--workdir", type=Path, help="keep the books, journals and caches here")
    parser.add_argument("--json", dest="json_out", type=Path, help="also write the figures here (for bench/run.py)")
    args = parser.parse_args()

    from pipeline import runner
    from pipeline.finishing import default_workers

    temp = None
    workdir = args.workdir
    if workdir is None:
        temp = tempfile.TemporaryDirectory(prefix="bench-overlap-")
        workdir = Path(temp.name)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        manifest_path = write_book(workdir, chapters=args.chapters, chunks_per_chapter=args.chunks_per_chapter,
                                   chunk_chars=args.chunk_chars, concurrency=args.concurrency, poll_s=args.poll)
        plan = runner.plan(runner.load(manifest_path))
        chunks = [c for cp in plan.chapters for c in cp.chunks]
        audio_min = sum(c.billed_chars for c in chunks) / 13.5 / 60 / len(plan.chapters)  # the simulator's pace
        print(f"book: {len(plan.chapters)} chapters, {len(chunks)} chunks "
              f"({min(c.billed_chars for c in chunks)}-{max(c.billed_chars for c in chunks)} characters), about "
              f"{audio_min:.1f} min of audio a chapter; concurrency {args.concurrency}, poll {args.poll:g} s; "
              f"render {args.task_base_s:g} s + {args.task_s_per_char:g} s a character; chapter workers "
              f"{args.workers if args.workers is not None else default_workers()}")
        print(f"ffmpeg: {ffmpeg_used()}")
        outcomes = [run_once(manifest_path, workdir / "baseline", args, assemble=False),
                    run_once(manifest_path, workdir / "assembling", args, assemble=True)]
        figures = {o.mode: summarize(o) for o in outcomes}
        failed = [f for o in outcomes for f in o.failures]

        assembling = outcomes[1]
        print("\nchapter builds while the engine runs (s from the engine's start; last download at "
              f"{assembling.last_download - assembling.start:.1f} s):")
        for chapter_id, (begin, end) in assembling.builds.items():
            print(f"  {chapter_id}: audio in at {begin - assembling.start:5.1f}, built at "
                  f"{end - assembling.start:5.1f} ({end - begin:4.1f} s"
                  f"{', after the last download' if end > assembling.last_download else ''})")

        print(f"\n{'':36}{'baseline (stub)':>16}{'assembling':>14}")
        rows = [
            ("worst event-loop lag", "loop_lag_max_ms", "{:.0f} ms"),
            ("  p99", "loop_lag_p99_ms", "{:.1f} ms"),
            ("  worst while a chapter builds", "loop_lag_max_during_builds_ms", "{:.0f} ms"),
            ("  worst not from CPU starvation", "loop_blocked_max_ms", "{:.0f} ms"),
            ("worst side-thread lag (starvation)", "thread_lag_max_ms", "{:.0f} ms"),
            ("completion-to-download, mean", "c2d_mean_s", "{:.3f} s"),
            ("  p95", "c2d_p95_s", "{:.3f} s"),
            ("  worst", "c2d_max_s", "{:.3f} s"),
            ("  waits over 0.25 s", "waits_over_250ms", "{:.0f}"),
            ("  of them behind 4 downloads", "waits_behind_downloads", "{:.0f}"),
            ("one file's download, mean", "file_download_mean_s", "{:.3f} s"),
            ("downloads begun while building", "downloads_during_builds", "{:.0f}"),
            ("chapters built by the last download", "chapters_built_before_last_download", "{:.0f}"),
            ("engine start to last download", "to_last_download_s", "{:.1f} s"),
            ("engine start to its end (builds)", "wall_s", "{:.1f} s"),
            ("worst loop lag after downloads", "loop_lag_max_after_downloads_ms", "{:.0f} ms"),
        ]
        print("(loop figures over the downloads: engine start to the last download)")
        for label, key, shape in rows:
            print(f"{label:36}{shape.format(figures['baseline'][key]):>16}{shape.format(figures['assembling'][key]):>14}")
        for o in outcomes:
            print(f"worst loop lags ({o.mode}): " + "; ".join(worst_moments(o)))
            print(f"  blocking calls on the loop's thread over {1000 * SLOW_CALL_S:.0f} ms ({o.mode}): "
                  f"{slow_call_summary(o)}")
        fig = figures["assembling"]
        base = figures["baseline"]
        print(f"\nworst event-loop lag while chapters assemble: {fig['loop_lag_max_ms']:.0f} ms (aim < "
              f"{LOOP_LAG_AIM_MS:.0f} ms; {fig['loop_blocked_max_ms']:.0f} ms of it not CPU starvation; baseline "
              f"without assembly {base['loop_lag_max_ms']:.0f} ms)")
        print(f"worst completion-to-download while chapters assemble: {fig['c2d_max_s']:.2f} s (aim < "
              f"{COMPLETION_TO_DOWNLOAD_AIM_S:.0f} s; baseline without assembly {base['c2d_max_s']:.2f} s)")
        if fig["downloads_during_builds"] == 0:
            print("note: no download began while a chapter was building: the figures say nothing about overlap "
                  "(give longer renders or more chapters)")
        if failed:
            print("failures:\n  " + "\n  ".join(failed))
        print(f"machine load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
              "(other work on the machine inflates lag)")
        if args.json_out:
            args.json_out.write_text(json.dumps({
                "chapters": len(plan.chapters), "chunks": len(chunks), "audio_min_per_chapter": audio_min,
                **fig, "baseline": figures["baseline"], "load_average": os.getloadavg()[0],
                "ffmpeg": ffmpeg_used(),
            }), encoding="utf-8")
        if failed:
            sys.exit(1)
    finally:
        if temp is not None:
            temp.cleanup()


if __name__ == "__main__":
    main()
