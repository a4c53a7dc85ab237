"""Benchmark `audiobook deliver --profile acx` on a chapter over ACX's two-hour limit, against a plain
ffmpeg decode and MP3 encode of the same chapter.

    python bench/deliver.py                          # a 130-minute chapter: split into parts under 120 min
    python bench/deliver.py --minutes 25 --limit 23  # scaled down: the limit scaled with the chapter

Builds a book once, without the API, as ``audiobook stitch`` would leave it: chunk MP3s (32 kHz mono
128 kbps, ~36 s each: sentences of 8 words timed as ``bench/assembly.py`` times them, with their
sentence subtitle files, but each word speech-like syllables rather than a steady tone, see
``render_speech``) in the book's cache where ``chunk_audio`` finds take 1; the opening credits, the
long chapter and the closing credits stitched by ``finishing.build_chapter`` (their state is where
``existing_chapter`` finds it); a 2400 px cover. Then runs, each in a fresh process so peak memory
is its own:

* ``packaging.deliver_book`` (what ``runner.deliver`` calls once the book is built) with the chapter
  plans, ``selected={}`` (take 1 everywhere), the ``acx`` profile and ``confirm_ai=True``, into a
  scratch folder: the credits copied and tagged, the chapter split at pauses into parts under the
  limit (its silence map decoded, each part cut, encoded at 192 kbps CBR, tagged and measured, with
  subtitles timed to it), the retail sample cut and encoded, the report written; and
* the baseline: ``ffmpeg`` decoding the chapter's MP3 and encoding it once to MP3 at 192 kbps CBR
  (44.1 kHz mono), the irreducible cost of re-encoding the parts.

Prints the chapter's length, each part's length (every part must be under the limit: the script
exits 1 otherwise), wall time and peak resident memory (the process's own and its largest ffmpeg
child, from ``getrusage``; on Linux a child's peak starts at its parent's resident size when it was
spawned, so the child column is never below the process's own) of both sides, their ratio, and
where deliver's time went and how much audio it decoded. ``--limit``
below 120 runs ``dataclasses.replace(PROFILES["acx"], max_file_minutes=N)``: the split and the
report's per-file "length" rule follow it, and the script checks the parts against it too.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from overlap import ffmpeg_used

VARIANTS = 8          # distinct generated clips of the chapter, copied round-robin to its chunks
CHUNK_S = 36.0        # the default chunk length (bench/assembly.py: 200 chunks for 2 hours)
CHAPTER_ID = "long-chapter"
COVER_PX = 2400       # ACX's minimum


# --------------------------------------------------------------------------------------------------
# The book


def book(workdir: Path) -> tuple[Any, list[Any]]:
    """The manifest and chapter plans of the generated book (from ``chunks.json``): opening credits,
    the long chapter, closing credits; every chunk a distinct request (its own key in the cache)."""
    from audio_factory import make_manifest

    from pipeline.models import (
        CLOSING_CREDITS,
        OPENING_CREDITS,
        AudioSettings,
        BookInfo,
        ChapterPlan,
        ChapterSpec,
        Chunk,
        Voice,
    )
    from pipeline.request import AudioRequest

    rows = json.loads((workdir / "chunks.json").read_text(encoding="utf-8"))["rows"]
    parts = [(OPENING_CREDITS, "Opening Credits", 0, OPENING_CREDITS), (CHAPTER_ID, "Chapter One", 1, "chapter"),
             (CLOSING_CREDITS, "Closing Credits", 2, CLOSING_CREDITS)]
    specs, plans = [], []
    for chapter_id, title, number, kind in parts:
        mine = [r for r in rows if r["chapter"] == chapter_id]
        chunks = []
        offset = 0
        for i, row in enumerate(mine):
            text = row["text"]
            request = AudioRequest.for_chunk(text, voice=Voice(model_id=f"{chapter_id}-{i}"), language="English",
                                             subtitles="sentence")
            chunks.append(Chunk(chapter_id=chapter_id, index=i, start=offset, end=offset + len(text), text=text,
                                billed_chars=len(text), pause_before_s=0.0 if i == 0 else 0.8, pause_after_s=0.0,
                                request=request))
            offset += len(text) + 2
        spec = ChapterSpec(id=chapter_id, title=title, number=number, text="\n\n".join(r["text"] for r in mine),
                           voice=Voice(model_id="voice-1"), language="English", kind=kind)
        specs.append(spec)
        plans.append(ChapterPlan(spec, tuple(chunks)))
    info = BookInfo(title="The Long Bench Book", author="Ada Author", narrator="Nia Narrator", year=2026,
                    description="A book of tones with a chapter over two hours.", cover=workdir / "cover.jpg")
    manifest = make_manifest(workdir, chapters=tuple(specs), subtitles="sentence", book=info,
                             audio=AudioSettings(m4b=False), has_credits=True)
    return manifest, plans


def render_speech(design: Any, *, seed: int) -> Any:
    """A chunk's samples (float, 32 kHz): speech-like syllables (``audio_factory.speech_like``) where the
    design's words are, silence between them. Not ``render_chunk``'s steady tones: the true-peak
    measurement of every new file interpolates around each sample within 6 dB of its block's peak,
    which is most samples of a steady tone (about 3.5 times the cost on speech-like sound)."""
    import numpy as np
    from audio_factory import CHUNK_RATE_HZ, WORD_EDGE_S, speech_like

    rate = CHUNK_RATE_HZ
    speech = speech_like(design.duration_s, rate_hz=rate, seed=seed)
    out = np.zeros(len(speech))
    edge = round(WORD_EDGE_S * rate)
    ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(edge) + 0.5) / edge)
    for sentence in design.sentences:
        for word in sentence.words:
            a, b = round(word.begin_s * rate), round(word.end_s * rate)
            burst = speech[a:b].copy()
            burst[:edge] *= ramp
            burst[-edge:] *= ramp[::-1]
            out[a:b] = burst
    return out


def generate(workdir: Path, *, minutes: float, chunks: int) -> None:
    """The chunk audio and subtitles in the book's cache (take 1 of every chunk), and the cover."""
    import numpy as np
    from audio_factory import design_chunk, encode_mp3, subtitle_json
    from PIL import Image

    from pipeline.layout import BookLayout

    chunk_s = minutes * 60 / chunks
    # sentences of 8 words: 8 * 0.16 + 7 * 0.07 = 1.77 s, plus 0.3 s between sentences (as bench/assembly.py)
    sentences = max(1, round((chunk_s - 0.5) / 2.07))
    clips: dict[str, list[tuple[Any, Path, Path]]] = {}
    variants = {CHAPTER_ID: (range(VARIANTS), sentences), "opening-credits": ([100], 3), "closing-credits": ([101], 3)}
    for chapter_id, (seeds, count) in variants.items():
        for seed in seeds:
            design = design_chunk(seed=seed, sentences=count, words=8, lead_s=0.25, tail_s=0.25)
            samples = render_speech(design, seed=seed)
            samples += np.random.default_rng(seed).normal(0, 0.0005, len(samples))  # a little hiss
            mp3 = encode_mp3(samples, workdir / f"variant-{seed}.mp3")
            sub = workdir / f"variant-{seed}.json"
            sub.write_text(json.dumps(subtitle_json(design, words=False)), encoding="utf-8")
            clips.setdefault(chapter_id, []).append((design, mp3, sub))
    rows = [{"chapter": "opening-credits", "clip": 0, "text": clips["opening-credits"][0][0].text}]
    rows += [{"chapter": CHAPTER_ID, "clip": i % VARIANTS, "text": clips[CHAPTER_ID][i % VARIANTS][0].text}
             for i in range(chunks)]
    rows.append({"chapter": "closing-credits", "clip": 0, "text": clips["closing-credits"][0][0].text})
    (workdir / "chunks.json").write_text(json.dumps({"minutes": minutes, "chunks": chunks, "rows": rows}),
                                         encoding="utf-8")
    manifest, plans = book(workdir)
    layout = BookLayout(manifest.output)
    for plan in plans:
        mine = [r for r in rows if r["chapter"] == plan.chapter.id]
        for chunk, row in zip(plan.chunks, mine, strict=True):
            _, mp3, sub = clips[plan.chapter.id][row["clip"]]
            audio, subtitles = layout.take_paths(chunk.key, 1)
            audio.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(mp3, audio)
            shutil.copyfile(sub, subtitles)
    # a square cover of ACX's minimum size (a gradient with some grain: a JPEG of realistic weight)
    y, x = np.mgrid[0:COVER_PX, 0:COVER_PX]
    grain = np.random.default_rng(7).integers(0, 24, (COVER_PX, COVER_PX))
    pixels = np.stack([(x * 255 // COVER_PX + grain) % 256, (y * 255 // COVER_PX + grain) % 256,
                       np.full_like(x, 96)], axis=-1).astype(np.uint8)
    Image.fromarray(pixels, "RGB").save(workdir / "cover.jpg", "JPEG", quality=90)


def build(workdir: Path) -> dict[str, float]:
    """Stitch every chapter as ``audiobook stitch`` does (chapter files, subtitles, state, measurements);
    up-to-date chapters are left as they are. Returns each chapter's length in seconds."""
    from pipeline.finishing import build_chapter

    manifest, plans = book(workdir)
    return {plan.chapter.id: build_chapter(manifest, plan, {}).duration_s for plan in plans}


# --------------------------------------------------------------------------------------------------
# The two sides, each in its own process


def acx_profile(limit_min: float) -> Any:
    from pipeline import profiles

    acx = profiles.PROFILES["acx"]
    return acx if limit_min == acx.max_file_minutes else dataclasses.replace(acx, max_file_minutes=limit_min)


def instrument() -> tuple[dict[str, float], dict[str, float]]:
    """Wrap the stages of a delivery to see where its time goes: (seconds per stage, seconds of audio
    decoded per file). Nothing of what they do changes."""
    from pipeline import packaging
    from pipeline.audio import dsp, ffmpeg

    spent = {"silence map (decode the chapter)": 0.0, "cut + encode (parts and sample)": 0.0,
             "measure each new file (decode it)": 0.0}
    decoded: dict[str, float] = {}

    def timed(module: Any, name: str, stage: str) -> None:
        real: Callable[..., Any] = getattr(module, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return real(*args, **kwargs)
            finally:
                spent[stage] += time.perf_counter() - start

        setattr(module, name, wrapper)

    timed(packaging, "frame_levels", "silence map (decode the chapter)")
    timed(packaging, "write_piece", "cut + encode (parts and sample)")
    timed(dsp, "measure_pcm", "measure each new file (decode it)")
    real_stream: Callable[..., Any] = ffmpeg.stream_pcm

    @contextlib.contextmanager
    def counting_stream(path: Path, **kwargs: Any) -> Iterator[Iterator[Any]]:
        rate = kwargs.get("sample_rate_hz", 44_100)

        with real_stream(path, **kwargs) as blocks:
            def counted() -> Iterator[Any]:
                for block in blocks:
                    decoded[Path(path).name] = decoded.get(Path(path).name, 0.0) + len(block) / rate
                    yield block

            yield counted()

    ffmpeg.stream_pcm = counting_stream
    return spent, decoded


def run_deliver(workdir: Path, *, limit_min: float) -> dict[str, Any]:
    from pipeline import packaging

    manifest, plans = book(workdir)
    out = workdir / "package"
    shutil.rmtree(out, ignore_errors=True)
    spent, decoded = instrument()
    start = time.perf_counter()
    report = packaging.deliver_book(manifest, plans, {}, profile=acx_profile(limit_min), out=out, confirm_ai=True)
    seconds = time.perf_counter() - start
    files = [{"name": f.piece.name, "role": f.piece.role, "chapter": f.piece.chapter.id, "part": f.piece.part,
              "duration_s": f.report.measurement.duration_s if f.report.measurement is not None else None,
              "passed": f.passed, "subtitles": list(f.subtitles)} for f in report.files]
    return {"seconds": seconds, "files": files, "passed": report.passed, "failures": report.failures(),
            "notes": report.notes, "folder": str(report.folder), "stages": spent, "decoded_s": decoded}


def run_baseline(workdir: Path) -> dict[str, Any]:
    from pipeline.assembly import existing_chapter
    from pipeline.audio.ffmpeg import find_ffmpeg

    manifest, _ = book(workdir)
    chapter = existing_chapter(manifest, CHAPTER_ID)
    assert chapter is not None
    audio = manifest.audio
    start = time.perf_counter()
    # -vn: the chapter's MP3 holds the cover as an attached picture, which ffmpeg would otherwise re-encode
    subprocess.run([find_ffmpeg(), "-v", "error", "-y", "-i", str(chapter.audio_path), "-vn", "-ac", "1",
                    "-ar", str(audio.sample_rate_hz), "-c:a", "libmp3lame", "-b:a", "192k", "-write_xing", "1",
                    str(workdir / "baseline.mp3")], check=True)
    return {"seconds": time.perf_counter() - start}


def run_setup(workdir: Path, *, minutes: float, chunks: int) -> dict[str, Any]:
    """Generate the book (unless ``workdir`` holds it at this size) and stitch it."""
    meta = workdir / "chunks.json"
    old = json.loads(meta.read_text(encoding="utf-8")) if meta.is_file() else {}
    generated = None
    if (old.get("minutes"), old.get("chunks")) != (minutes, chunks):
        shutil.rmtree(workdir / "out", ignore_errors=True)
        start = time.perf_counter()
        generate(workdir, minutes=minutes, chunks=chunks)
        generated = time.perf_counter() - start
    start = time.perf_counter()
    lengths = build(workdir)
    return {"generated_s": generated, "stitched_s": time.perf_counter() - start, "lengths": lengths}


def child(kind: str, workdir: Path, *, limit_min: float, minutes: float, chunks: int) -> None:
    if kind == "setup":
        print(json.dumps(run_setup(workdir, minutes=minutes, chunks=chunks)))
        return
    result = run_deliver(workdir, limit_min=limit_min) if kind == "deliver" else run_baseline(workdir)
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    result["rss_self_mb"] = me.ru_maxrss / 1024
    result["rss_children_mb"] = kids.ru_maxrss / 1024
    result["cpu_s"] = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
    print(json.dumps(result))


def measure(kind: str, workdir: Path, *, limit_min: float, extra: Sequence[str] = ()) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--child", kind, "--workdir", str(workdir),
                           "--limit", str(limit_min), *extra], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"{kind} failed:\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def srt_texts(path: Path) -> list[str]:
    """The cue texts of an SRT file, in order."""
    texts = []
    for block in path.read_text(encoding="utf-8").strip().split("\n\n"):
        lines = block.splitlines()
        if len(lines) >= 3:
            texts.append(" ".join(lines[2:]))
    return texts


# --------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=130.0, help="the long chapter's length (default 130)")
    parser.add_argument("--chunks", type=int, help=f"its number of chunks (default: one per {CHUNK_S:g} s)")
    parser.add_argument("--limit", type=float, default=120.0,
                        help="the longest file in minutes (default 120, ACX's; lower it with --minutes to scale down)")
    parser.add_argument("--workdir", type=Path, help="reuse or keep the generated book here")
    parser.add_argument("--json", dest="json_out", type=Path, help="also write the figures here (for bench/run.py)")
    parser.add_argument("--child", choices=("setup", "deliver", "baseline"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    chunks = args.chunks or max(1, round(args.minutes * 60 / CHUNK_S))
    if args.child:
        child(args.child, args.workdir, limit_min=args.limit, minutes=args.minutes, chunks=chunks)
        return

    temp = None
    workdir = args.workdir
    if workdir is None:
        temp = tempfile.TemporaryDirectory(prefix="bench-deliver-")
        workdir = Path(temp.name)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        # the book is made in a child process too: a child's peak RSS on Linux starts from its parent's
        # at the fork (it is carried across exec), so this process stays small
        setup = measure("setup", workdir, limit_min=args.limit, extra=["--minutes", str(args.minutes),
                                                                        "--chunks", str(chunks)])
        if setup["generated_s"] is not None:
            print(f"generated {chunks} chunks ({args.minutes:g} min) and the credits in {setup['generated_s']:.1f} s")
        print(f"stitched the book (credits, chapter; reused when up to date) in {setup['stitched_s']:.1f} s")
        chapter_s = setup["lengths"][CHAPTER_ID]
        limit_s = args.limit * 60
        if chapter_s <= limit_s:
            sys.exit(f"the chapter is {chapter_s / 60:.1f} min, not over the {args.limit:g}-minute limit: nothing to "
                     "split; raise --minutes or lower --limit")

        base = measure("baseline", workdir, limit_min=args.limit)
        dlv = measure("deliver", workdir, limit_min=args.limit)

        parts = [f for f in dlv["files"] if f["chapter"] == CHAPTER_ID and f["role"] == "chapter"]
        sample = next((f for f in dlv["files"] if f["role"] == "retail sample"), None)
        over = [f for f in parts if f["duration_s"] is None or f["duration_s"] >= limit_s]
        profile = "acx" if args.limit == 120 else f"acx with max_file_minutes={args.limit:g}"
        print(f"profile: {profile}; chapter: {chapter_s / 60:.1f} min ({chapter_s:.1f} s) of audio from {chunks} "
              f"chunks, plus opening and closing credits")
        print(f"parts: {len(parts)} (each must be under {args.limit:g} min)")
        for f in parts:
            length = f["duration_s"]
            print(f"  {f['name']:44}{length / 60:8.2f} min{'' if length < limit_s else '  OVER THE LIMIT'}")
        if sample is not None:
            print(f"retail sample: {sample['name']}, {sample['duration_s']:.1f} s")
        else:
            print("retail sample: NONE")
        # the parts' subtitles hold every sentence of the chapter's, once, in order
        package = Path(dlv["folder"])
        manifest, _ = book(workdir)
        from pipeline.assembly import existing_chapter

        chapter = existing_chapter(manifest, CHAPTER_ID)
        assert chapter is not None and chapter.srt_path is not None
        whole = srt_texts(chapter.srt_path)
        split = [t for f in parts for s in f["subtitles"] if s.endswith(".srt") for t in srt_texts(package / s)]
        print(f"subtitle cues: chapter {len(whole)}, its parts {len(split)} "
              f"({'the same sentences, in order' if split == whole else 'DIFFERENT from the chapter'})")
        print(f"delivery report: {'passed' if dlv['passed'] else 'FAILED'}, {len(dlv['files'])} files")
        for line in dlv["failures"]:
            print(f"  {line}")
        for line in dlv["notes"]:
            print(f"  note: {line}")

        print(f"{'':34}{'wall s':>9}{'CPU s':>9}{'peak RSS MB (self)':>20}{'(largest child)':>17}")
        for name, r in (("ffmpeg decode+MP3 192k CBR", base), ("deliver_book (acx)", dlv)):
            print(f"{name:34}{r['seconds']:9.1f}{r['cpu_s']:9.1f}{r['rss_self_mb']:20.0f}{r['rss_children_mb']:17.0f}")
        ratio = dlv["seconds"] / base["seconds"]
        print(f"wall-time ratio deliver/baseline: {ratio:.2f}; CPU-time ratio {dlv['cpu_s'] / base['cpu_s']:.2f}")
        print("where deliver's time went:")
        staged = 0.0
        for stage, seconds in dlv["stages"].items():
            staged += seconds
            print(f"  {stage:44}{seconds:8.1f} s")
        print(f"  {'the rest (copies, tags, probes, report)':44}{dlv['seconds'] - staged:8.1f} s")
        print("audio decoded by deliver (minutes, per file):")
        for name, seconds in dlv["decoded_s"].items():
            print(f"  {name:44}{seconds / 60:8.1f} min")
        total_decoded = sum(dlv["decoded_s"].values())
        print(f"  {'in all':44}{total_decoded / 60:8.1f} min ({total_decoded / chapter_s:.2f}x the chapter)")
        print(f"machine load average during the run: {os.getloadavg()[0]:.1f} "
              f"on {os.cpu_count()} cores (other work on the machine inflates wall time)")
        print(f"ffmpeg: {ffmpeg_used()}")
        if args.json_out:
            args.json_out.write_text(json.dumps({
                "chunks": chunks, "audio_min": chapter_s / 60, "limit_min": args.limit, "parts": len(parts),
                "part_min": [f["duration_s"] / 60 for f in parts],
                "sample_s": sample["duration_s"] if sample is not None else None,
                "deliver_s": dlv["seconds"], "baseline_s": base["seconds"], "ratio": ratio,
                "peak_rss_mb": max(dlv["rss_self_mb"], dlv["rss_children_mb"]),
                "baseline_peak_rss_mb": max(base["rss_self_mb"], base["rss_children_mb"]),
                "report_passed": dlv["passed"], "subtitles_match": split == whole,
                "load_average": os.getloadavg()[0], "ffmpeg": ffmpeg_used(),
            }), encoding="utf-8")
        if over or len(parts) < 2:
            sys.exit(f"{len(over)} part(s) not under {args.limit:g} min" if over else "the chapter was not split")
    finally:
        if temp is not None:
            temp.cleanup()


if __name__ == "__main__":
    main()
