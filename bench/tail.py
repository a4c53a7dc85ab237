"""Benchmark a whole run against the ideal, and the rebuild after a one-sentence edit ("a short tail").

    python bench/tail.py                                  # 10 chapters of 3 chunks (~3 min of audio each)
    python bench/tail.py --chapters 8 --chunk-chars 500   # a quicker look

A generated book goes through the real library entry point, as the CLI calls it:
``runner.run([runner.load(manifest)], options=RunOptions(base_url=...), env={"SOUNDCLONE_API_KEY": ...})``
(chapter worker processes, the M4B joined by stream copy, the delivery report), against the
project's simulator in a child process (as in ``bench/engine.py``), where every task takes
``task_base_s + task_s_per_char * billed characters``. The defaults give a full 9,999-character task
40 s, the "tens of seconds" a real task takes; the figures hinge on that pace (see below).

1. **The whole run against the ideal.** Timed from the first task created (the simulator's ledger)
   to the finished book (the delivery report written, after the M4B). Baseline: the ideal render
   schedule (the sum of the configured render times over the concurrency, as ``bench/engine.py``
   computes it) plus the encode of the last chapter alone: that chapter assembled once more with
   ``force=True`` (MP3, subtitles and its AAC share of the book) in a scratch folder, once the run is
   over and the machine quiet. Aim: at most 1.3. The tail itself (last download -> finished book) is
   printed with where it goes: chapters still queued for the worker processes, the last build
   (assembly and the delivery measurements of its MP3 and AAC), the join and the report.
2. **Rebuild after a one-sentence edit.** One word of one sentence in one chapter's source is changed
   (same length, so only its chunk changes), and the run is repeated against a fresh simulator with
   near-zero render times (so the figure is the pipeline's own work): one task renders, that chapter
   is rebuilt, the book joined again. Baseline: the encode of that chapter alone (``force=True``, in a
   scratch folder). Aim: at most 3x. The files rewritten are listed: only that chapter's, the M4B
   and the report (plus the journal and the new chunk in the cache) may change.

Timestamps come from light wrappers in this process (the client's downloads, ``ChapterWorkers.build``,
``finish_book``, ``export_book``, ``check_delivery``); nothing in the pipeline is changed. Machine
load from other work inflates everything: the load average is printed, and which ffmpeg ran.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from engine import KEY, WORDS, admin_ledger, greedy_makespan, process_cpu_s, start_simulator, stop
from overlap import ffmpeg_used, write_book

RATIO_AIM = 1.3
REBUILD_AIM = 3.0
AUDIO_CHARS_PER_S = 13.5  # the simulator's synthetic voice, measured
FAST_RENDER_S = 0.05      # the rerun's simulator: renders take next to nothing


@dataclass
class Stamps:
    """Wall-clock stamps of one run, from wrappers around the pipeline's own functions."""

    audio_downloads: list[tuple[float, float]] = field(default_factory=list)  # start, end
    builds: dict[str, list[float]] = field(default_factory=dict)  # chapter id: [submitted, returned]
    rebuilt: list[str] = field(default_factory=list)  # chapters the workers built (not found up to date)
    finish: list[float] = field(default_factory=list)  # finish_book start, end
    export: list[float] = field(default_factory=list)  # export_book start, end
    delivery: list[float] = field(default_factory=list)  # check_delivery start, end


@contextlib.contextmanager
def stamped(stamps: Stamps) -> Iterator[None]:
    """Wrap the client's downloads, the chapter workers' builds and the book's finishing to stamp them
    (in this process: the workers' own work is seen from here, submitted to returned)."""
    from pipeline import delivery, export, runner
    from pipeline.client import SoundCloneClient
    from pipeline.finishing import ChapterWorkers

    originals = [(SoundCloneClient, "download", SoundCloneClient.download),
                 (ChapterWorkers, "build", ChapterWorkers.build), (runner, "finish_book", runner.finish_book),
                 (export, "export_book", export.export_book), (delivery, "check_delivery", delivery.check_delivery)]
    download, build, finish_book = SoundCloneClient.download, ChapterWorkers.build, runner.finish_book
    export_book, check_delivery = export.export_book, delivery.check_delivery

    async def timed_download(self, url, dest, **kwargs):
        begin = time.time()
        written = await download(self, url, dest, **kwargs)
        if Path(kwargs.get("target") or dest).suffix == ".mp3":
            stamps.audio_downloads.append((begin, time.time()))
        return written

    async def timed_build(self, manifest, chapter_plan, selected):
        stamps.builds[chapter_plan.chapter.id] = [time.time(), 0.0]
        try:
            output = await build(self, manifest, chapter_plan, selected)
            if output.rebuilt:
                stamps.rebuilt.append(chapter_plan.chapter.id)
            return output
        finally:
            stamps.builds[chapter_plan.chapter.id][1] = time.time()

    def timer(function, into: list[float]):
        def call(*args, **kwargs):
            into[:] = [time.time(), 0.0]
            try:
                return function(*args, **kwargs)
            finally:
                into[1] = time.time()
        return call

    SoundCloneClient.download = timed_download
    ChapterWorkers.build = timed_build
    runner.finish_book = timer(finish_book, stamps.finish)
    export.export_book = timer(export_book, stamps.export)
    delivery.check_delivery = timer(check_delivery, stamps.delivery)
    try:
        yield
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)


def run_book(manifest_path: Path, base_url: str, stamps: Stamps, *, workers: int | None):
    """One run of the book through the library entry point, as ``audiobook run`` calls it."""
    from pipeline import runner
    from pipeline.config import ENV_API_KEY

    with stamped(stamps):
        report = runner.run([runner.load(manifest_path)],
                            options=runner.RunOptions(base_url=base_url, chapter_workers=workers),
                            env={ENV_API_KEY: KEY})
    if not report.ok:
        failures = [f"{f.chapter_id} {f.chunk_index}: {f.reason}" for b in report.books for f in b.failures]
        sys.exit(f"the run failed (stopped: {report.stopped}):\n  " + "\n  ".join(failures))
    return report


def encode_alone(manifest, chapter_id: str, scratch: Path) -> tuple[float, float]:
    """Assemble one chapter once more (``force=True``: MP3, subtitles and, unless the manifest's M4B is
    off, its AAC share of the book) into ``scratch``, from the book's cached chunk audio; returns
    (seconds, audio seconds). The book's own files are left alone, so a later run sees them as they were."""
    from pipeline import runner
    from pipeline.assembly import assemble_chapter
    from pipeline.finishing import chunk_audio
    from pipeline.store import Journal

    plan = runner.plan(manifest).chapter(chapter_id)
    with Journal.open(manifest.output, create=False) as journal:
        selected = journal.selected_takes()
    audio = chunk_audio(manifest, plan, selected)
    assert audio is not None, f"chapter {chapter_id}: audio missing from the cache"
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir(parents=True)
    begin = time.perf_counter()
    out = assemble_chapter(manifest=dataclasses.replace(manifest, output=scratch), plan=plan, audio=audio,
                           track=plan.chapter.number, total_tracks=len(manifest.chapters), force=True)
    return time.perf_counter() - begin, out.duration_s


def snapshot(folder: Path) -> dict[str, tuple[int, int, int]]:
    """Every file under ``folder``: (inode, mtime ns, size); an atomic rewrite changes the inode."""
    out = {}
    for path in folder.rglob("*"):
        if path.is_file():
            info = path.stat()
            out[str(path.relative_to(folder))] = (info.st_ino, info.st_mtime_ns, info.st_size)
    return out


def edit_one_sentence(source: Path) -> str:
    """Change one word of the second paragraph's first sentence (the first paragraph's, if it is the only
    one) for another of the same length (the chunk boundaries stay where they were: only that chunk's
    text changes). Returns what changed."""
    text = source.read_text(encoding="utf-8")
    paragraphs = text.split("\n\n")
    number = 1 if len(paragraphs) > 1 else 0
    target = paragraphs[number]
    for match in re.finditer(r"\b[a-z]+\b", target):
        word = match.group()
        others = [w for w in WORDS if len(w) == len(word) and w != word]
        if others:
            paragraphs[number] = target[:match.start()] + others[0] + target[match.end():]
            source.write_text("\n\n".join(paragraphs), encoding="utf-8")
            return f"{source.name}: '{word}' -> '{others[0]}' at character {match.start()} of paragraph {number + 1}"
    raise SystemExit(f"{source}: no word to edit")


def classify(changed: list[str], *, chapter_id: str, track: int) -> dict[str, list[str]]:
    """Sort rewritten paths: the edited chapter's files, the book, the report, bookkeeping, and the rest
    (which should be empty: another chapter's files rewritten means work done twice)."""
    stem = f"{track:02d}-{chapter_id}"
    groups: dict[str, list[str]] = {"edited chapter": [], "book": [], "report": [], "journal and cache": [],
                                    "other (should be none)": []}
    for name in changed:
        base = Path(name).name
        if name.startswith(stem + ".") or base in (f"chapter-{chapter_id}.json", f"{chapter_id}.aac") \
                or (base.startswith((f"{stem}.", f"{chapter_id}.aac.")) and "measurements" in name) \
                or (base == f"{chapter_id}.json" and "peaks" in name):
            groups["edited chapter"].append(name)
        elif name.endswith(".m4b") or base == "book.json":
            groups["book"].append(name)
        elif base == "delivery-report.json":
            groups["report"].append(name)
        elif name.startswith("cache/") or base.startswith("journal.sqlite") or base == ".run.lock":
            groups["journal and cache"].append(name)
        else:
            groups["other (should be none)"].append(name)
    return groups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chapters", type=int, default=10, help="chapters in the book (default 10)")
    parser.add_argument("--chunks-per-chapter", type=int, default=3, help="chunks in each chapter (default 3)")
    parser.add_argument("--chunk-chars", type=int, default=1000,
                        help="max_chars; each chunk is one paragraph of 75-95 %% of it (default 1000: about a "
                             "minute of speech a chunk)")
    parser.add_argument("--concurrency", type=int, default=4, help="tasks in flight (default 4, the manifest's)")
    parser.add_argument("--poll", type=float, default=0.2,
                        help="poll interval in seconds (default 0.2, as for --simulate)")
    parser.add_argument("--task-base-s", type=float, default=0.5, help="render time of every task (default 0.5)")
    parser.add_argument("--task-s-per-char", type=float, default=0.004,
                        help="extra render time per billed character (default 0.004: 40 s for a full task)")
    parser.add_argument("--workers", type=int, default=None,
                        help="chapter worker processes (RunOptions.chapter_workers; default: the runner's, one per "
                             "core at a lower priority)")
    parser.add_argument("--edit-chapter", type=int, help="the chapter edited for the rebuild (default: the middle one)")
    parser.add_argument("--workdir", type=Path, help="keep the book, journal and cache here")
    parser.add_argument("--json", dest="json_out", type=Path, help="also write the figures here (for bench/run.py)")
    args = parser.parse_args()

    from pipeline import runner
    from pipeline.finishing import default_workers
    from pipeline.layout import BookLayout
    from pipeline.voices import ENV_VOICES

    workers = default_workers() if args.workers is None else args.workers
    temp = None
    workdir = args.workdir
    if workdir is None:
        temp = tempfile.TemporaryDirectory(prefix="bench-tail-")
        workdir = Path(temp.name)
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ[ENV_VOICES] = str(workdir / "voices.json")  # never the user's voice registry
    simulator = None
    try:
        output = workdir / "book"
        manifest_path = write_book(workdir, chapters=args.chapters, chunks_per_chapter=args.chunks_per_chapter,
                                   chunk_chars=args.chunk_chars, concurrency=args.concurrency, poll_s=args.poll,
                                   output=output)
        manifest = runner.load(manifest_path)
        chunks = [c for cp in runner.plan(manifest).chapters for c in cp.chunks]
        audio_min = sum(c.billed_chars for c in chunks) / AUDIO_CHARS_PER_S / 60
        print(f"book: {len(manifest.chapters)} chapters, {len(chunks)} chunks ({min(c.billed_chars for c in chunks)}-"
              f"{max(c.billed_chars for c in chunks)} characters), about {audio_min:.0f} min of audio; concurrency "
              f"{args.concurrency}, poll {args.poll:g} s; render {args.task_base_s:g} s + {args.task_s_per_char:g} s "
              f"a character; sentence subtitles, M4B, ACX check; chapter workers {workers}")
        print(f"ffmpeg: {ffmpeg_used()}")

        # --- 1. the whole run --------------------------------------------------------------------
        simulator, base_url = start_simulator(args, workdir / "simulator.log")
        stamps = Stamps()
        called = time.time()
        run_book(manifest_path, base_url, stamps, workers=args.workers)
        returned = time.time()
        ledger = admin_ledger(base_url)
        simulator_cpu_s = process_cpu_s(simulator.pid)
        stop(simulator)
        simulator = None

        layout = BookLayout(output)
        book_file = next(output.glob("*.m4b"))
        finished = layout.report.stat().st_mtime
        tasks = [t for t in ledger["tasks"] if t["kind"] == "audio"]
        first_created = min(t["created"] for t in tasks)
        renders = [args.task_base_s + args.task_s_per_char * t["billed_chars"] for t in tasks]
        ideal_s = sum(renders) / args.concurrency
        schedule_s = greedy_makespan(renders, args.concurrency)
        last_completion = max(t["created"] + r for t, r in zip(tasks, renders, strict=True))
        last_download = max(end for _, end in stamps.audio_downloads)
        last_chapter = max(stamps.builds, key=lambda c: stamps.builds[c][0])
        run_s = finished - first_created
        encode_s, last_audio_s = encode_alone(manifest, last_chapter, workdir / "scratch")
        ratio = run_s / (ideal_s + encode_s)
        tail_s = finished - last_download

        def at(t: float) -> str:
            return f"{t - first_created:6.1f} s"

        print(f"\n1. the whole run: {len(tasks)} tasks, M4B {book_file.name} ({book_file.stat().st_size / 1e6:.1f} MB)")
        print(f"  run() called {first_created - called:.1f} s before the first task; returned "
              f"{returned - finished:.2f} s after the report")
        print(f"  first task created          {at(first_created)}")
        print(f"  last task completed (sim)   {at(last_completion)}   (ideal {ideal_s:.1f} s, greedy schedule "
              f"{schedule_s:.1f} s)")
        print(f"  last audio download landed  {at(last_download)}")
        worker_free = first_created
        for chapter_id, (submitted, built) in sorted(stamps.builds.items(), key=lambda kv: kv[1][0]):
            began = max(submitted, worker_free) if workers == 1 else submitted
            worker_free = built
            queued = f", queued {began - submitted:4.1f} s" if workers == 1 else ""
            print(f"  {chapter_id}: audio in {at(submitted)}, built {at(built)} ({built - submitted:4.1f} s{queued})")
        if stamps.finish:
            print(f"  finish_book                 {at(stamps.finish[0])} -> {at(stamps.finish[1])} (join "
                  f"{stamps.export[1] - stamps.export[0]:.2f} s, delivery report "
                  f"{stamps.delivery[1] - stamps.delivery[0]:.2f} s)")
        print(f"  book finished (report)      {at(finished)}")
        last_build = stamps.builds[last_chapter]
        print(f"  the tail, last download -> finished book: {tail_s:.1f} s = the last chapter's audio in "
              f"{last_build[0] - last_download:+.1f} s, its build (queue, assembly, measurements) "
              f"{last_build[1] - last_build[0]:.1f} s, then {finished - last_build[1]:.1f} s to the report")
        rendered_per_s = audio_min * 60 / ideal_s
        assembled_per_s = last_audio_s / encode_s
        without_aac_s, _ = encode_alone(dataclasses.replace(manifest, audio=dataclasses.replace(
            manifest.audio, m4b=False)), last_chapter, workdir / "scratch")
        print(f"  the last chapter encoded alone: {encode_s:.1f} s; without its AAC share of the book (M4B off) "
              f"{without_aac_s:.1f} s")
        print(f"  pace: the API delivers {rendered_per_s:.0f} s of audio a second (ideal); a chapter encode does "
              f"{assembled_per_s:.0f} s of audio a second, on {max(workers, 1)} worker process(es)"
              f"{': chapters queue for the workers' if assembled_per_s * max(workers, 1) < rendered_per_s else ''}")
        print(f"first task -> finished book: {run_s:.1f} s; ideal {ideal_s:.1f} s + the last chapter ({last_chapter}, "
              f"{last_audio_s / 60:.1f} min) encoded alone {encode_s:.1f} s = {ideal_s + encode_s:.1f} s; "
              f"ratio {ratio:.2f} (aim <= {RATIO_AIM})")
        print(f"  the simulator used {simulator_cpu_s:.1f} s of CPU on this machine's {os.cpu_count()} cores during "
              f"the run ({run_s * (os.cpu_count() or 1):.0f} core-seconds in all): the chapter workers, at a lower "
              "priority, get what it and the engine leave; a remote API's renders cost this machine nothing")

        # --- 2. a one-sentence edit ----------------------------------------------------------------
        edit_number = args.edit_chapter or (len(manifest.chapters) + 1) // 2
        chapter = manifest.chapters[edit_number - 1]
        assert chapter.source is not None
        what = edit_one_sentence(Path(chapter.source))
        edited = runner.load(manifest_path)
        pending = runner.plan(edited).pending
        before = snapshot(output)
        fast = SimpleNamespace(task_base_s=FAST_RENDER_S, task_s_per_char=0.0)
        simulator, base_url = start_simulator(fast, workdir / "simulator-rerun.log")
        rerun_stamps = Stamps()
        begin = time.time()
        run_book(manifest_path, base_url, rerun_stamps, workers=args.workers)
        rerun_s = time.time() - begin
        rerun_ledger = admin_ledger(base_url)
        stop(simulator)
        simulator = None
        after = snapshot(output)
        changed = sorted(name for name in after if before.get(name) != after[name])
        removed = sorted(name for name in before if name not in after)
        groups = classify(changed, chapter_id=chapter.id, track=chapter.number)
        rebuilt = sorted(rerun_stamps.rebuilt)
        rebuild_encode_s, rebuilt_audio_s = encode_alone(edited, chapter.id, workdir / "scratch")
        rebuild_ratio = rerun_s / rebuild_encode_s

        print(f"\n2. after a one-sentence edit ({what}): the plan renders {pending.to_render} chunk(s)")
        rerun_tasks = [t for t in rerun_ledger["tasks"] if t["kind"] == "audio"]
        print(f"  tasks rendered again: {len(rerun_tasks)} (each {FAST_RENDER_S:g} s at the simulator); chapters sent "
              f"to the workers: {len(rerun_stamps.builds)}, rebuilt: {', '.join(rebuilt) or 'none'} (the others "
              "were found up to date)")
        if rerun_tasks and rerun_stamps.builds:
            created = min(t["created"] for t in rerun_tasks)
            submitted, built = rerun_stamps.builds.get(chapter.id, (0.0, 0.0))
            print(f"  run() -> first task {created - begin:.2f} s; its audio in {submitted - begin:.2f} s; chapter "
                  f"built {built - begin:.2f} s ({built - submitted:.2f} s in the worker, process start included); "
                  f"finish_book {rerun_stamps.finish[1] - rerun_stamps.finish[0]:.2f} s (join "
                  f"{rerun_stamps.export[1] - rerun_stamps.export[0]:.2f} s, report "
                  f"{rerun_stamps.delivery[1] - rerun_stamps.delivery[0]:.2f} s); run() returned {rerun_s:.2f} s")
        print("  files rewritten:")
        for group, names in groups.items():
            print(f"    {group}: {', '.join(names) if names else '-'}")
        if removed:
            print(f"    removed: {', '.join(removed)}")
        print(f"rerun after the edit: {rerun_s:.1f} s; the chapter ({chapter.id}, {rebuilt_audio_s / 60:.1f} min) "
              f"encoded alone {rebuild_encode_s:.1f} s; ratio {rebuild_ratio:.2f} (aim <= {REBUILD_AIM:g})")
        print(f"machine load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
              "(other work on the machine inflates wall time)")
        if args.json_out:
            args.json_out.write_text(json.dumps({
                "chapters": len(manifest.chapters), "chunks": len(chunks), "audio_min": audio_min,
                "concurrency": args.concurrency, "workers": workers, "run_s": run_s, "ideal_s": ideal_s,
                "encode_last_s": encode_s, "simulator_cpu_s": simulator_cpu_s,
                "ratio": ratio, "tail_s": tail_s, "encode_last_without_aac_s": without_aac_s, "rerun_s": rerun_s,
                "rebuild_encode_s": rebuild_encode_s,
                "rebuild_ratio": rebuild_ratio, "tasks_rerendered": len(rerun_tasks),
                "chapters_rebuilt": len(rebuilt), "other_files_rewritten": len(groups["other (should be none)"]),
                "load_average": os.getloadavg()[0], "ffmpeg": ffmpeg_used(),
            }), encoding="utf-8")
    finally:
        if simulator is not None:
            stop(simulator)
        if temp is not None:
            temp.cleanup()


if __name__ == "__main__":
    main()
