"""Benchmark chapter assembly against a plain ffmpeg decode-and-encode of the same audio (issue 5).

    python bench/assembly.py                 # a 2-hour chapter of 200 chunks (~36 s each)
    python bench/assembly.py --minutes 10    # scaled down: same chunk count, shorter chunks

Generates the chunk MP3s (32 kHz mono 128 kbps, speech-like tone bursts, plus sentence subtitle
files) once into a temporary folder, then runs, each in a fresh process so peak memory is its own:

* ``assemble_chapter`` (decode, trim, fade, pauses, loudness, limiter, room tone, one MP3 encode,
  tags, SRT/VTT), and
* the baseline: ``ffmpeg -f concat`` of the same MP3s, decoded once and encoded to what assembly
  encodes: the chapter MP3 at the manifest's bit rate and, as the book is on by default, the chapter's
  AAC share of the M4B (ADTS at the M4B bit rate). With ``--no-m4b`` both sides encode the MP3 only.

Prints wall time and peak resident memory (the process's own and its largest ffmpeg child, from
``getrusage``) for both, and the time ratio (aim: at most 1.5).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

VARIANTS = 8  # distinct generated clips, copied round-robin to every chunk


def generate(workdir: Path, *, minutes: float, chunks: int) -> None:
    import numpy as np
    from audio_factory import design_chunk, encode_mp3, render_chunk, subtitle_json

    chunk_s = minutes * 60 / chunks
    # sentences of 8 words: 8 * 0.16 + 7 * 0.07 = 1.77 s, plus 0.3 s between sentences
    sentences = max(1, round((chunk_s - 0.5) / 2.07))
    clips = []
    for v in range(VARIANTS):
        design = design_chunk(seed=v, sentences=sentences, words=8, lead_s=0.25, tail_s=0.25)
        samples = render_chunk(design, seed=v)
        samples += np.random.default_rng(v).normal(0, 0.0005, len(samples))  # a little hiss
        mp3 = encode_mp3(samples, workdir / f"variant-{v}.mp3")
        sub = workdir / f"variant-{v}.json"
        sub.write_text(json.dumps(subtitle_json(design, words=False)), encoding="utf-8")
        clips.append((design, mp3, sub))
    rows = []
    for i in range(chunks):
        design, mp3, sub = clips[i % VARIANTS]
        shutil.copyfile(mp3, workdir / f"chunk-{i:03d}.mp3")
        shutil.copyfile(sub, workdir / f"chunk-{i:03d}.json")
        rows.append({"index": i, "text": design.text})
    (workdir / "chunks.json").write_text(json.dumps(rows), encoding="utf-8")


def bench_manifest(workdir: Path, *, m4b: bool) -> Any:
    from audio_factory import make_manifest

    from pipeline.models import AudioSettings

    return make_manifest(workdir / "assembly", subtitles="sentence", audio=AudioSettings(m4b=m4b))


def run_assembly(workdir: Path, *, m4b: bool) -> dict[str, float]:

    from pipeline.assembly import assemble_chapter
    from pipeline.models import ChapterPlan, ChapterSpec, Chunk, ChunkAudio, Voice
    from pipeline.request import AudioRequest

    rows = json.loads((workdir / "chunks.json").read_text(encoding="utf-8"))
    chunks = []
    audio = []
    for row in rows:
        i = row["index"]
        chunk = Chunk(chapter_id="bench", index=i, start=0, end=len(row["text"]), text=row["text"],
                      billed_chars=len(row["text"]), pause_before_s=0.0 if i == 0 else 0.8, pause_after_s=0.0,
                      request=AudioRequest.for_chunk(row["text"], voice=Voice(model_id=f"v{i}"), language="English",
                                                     subtitles="sentence"))
        chunks.append(chunk)
        audio.append(ChunkAudio(chunk, workdir / f"chunk-{i:03d}.mp3", workdir / f"chunk-{i:03d}.json"))
    spec = ChapterSpec(id="bench", title="Bench", number=1, text="", voice=Voice(model_id="v"), language="English")
    manifest = bench_manifest(workdir, m4b=m4b)
    start = time.perf_counter()
    out = assemble_chapter(manifest=manifest, plan=ChapterPlan(spec, tuple(chunks)), audio=audio, track=1,
                           total_tracks=1, force=True)
    return {"seconds": time.perf_counter() - start, "audio_s": out.duration_s}


def run_baseline(workdir: Path, *, m4b: bool) -> dict[str, float]:
    from pipeline.audio.ffmpeg import find_ffmpeg

    audio = bench_manifest(workdir, m4b=m4b).audio
    files = sorted(workdir.glob("chunk-*.mp3"))
    listing = workdir / "concat.txt"
    listing.write_text("".join(f"file '{f}'\n" for f in files), encoding="utf-8")
    outputs = ["-ac", "1", "-ar", str(audio.sample_rate_hz), "-c:a", "libmp3lame", "-b:a", f"{audio.bitrate_kbps}k",
               str(workdir / "baseline.mp3")]
    if m4b:  # with the AAC coder assembly uses for this profile
        from pipeline.assembly import book_aac_coder

        coder = book_aac_coder(bench_manifest(workdir, m4b=m4b))
        outputs += ["-ac", "1", "-ar", str(audio.sample_rate_hz), "-c:a", "aac", "-aac_coder", coder,
                    "-b:a", f"{audio.m4b_bitrate_kbps}k", "-f", "adts", str(workdir / "baseline.aac")]
    start = time.perf_counter()
    subprocess.run([find_ffmpeg(), "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing), *outputs],
                   check=True)
    return {"seconds": time.perf_counter() - start}


def child(kind: str, workdir: Path, *, m4b: bool) -> None:
    result = run_assembly(workdir, m4b=m4b) if kind == "assembly" else run_baseline(workdir, m4b=m4b)
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    result["rss_self_mb"] = me.ru_maxrss / 1024
    result["rss_children_mb"] = kids.ru_maxrss / 1024
    result["cpu_s"] = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
    print(json.dumps(result))


def measure(kind: str, workdir: Path, *, m4b: bool) -> dict[str, float]:
    proc = subprocess.run([sys.executable, __file__, "--child", kind, "--workdir", str(workdir),
                           *([] if m4b else ["--no-m4b"])],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"{kind} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=120.0, help="chapter length (default 120)")
    parser.add_argument("--chunks", type=int, default=200, help="number of chunks (default 200)")
    parser.add_argument("--workdir", type=Path, help="reuse or keep the generated audio here")
    parser.add_argument("--json", dest="json_out", type=Path, help="also write the figures here (for bench/run.py)")
    parser.add_argument("--no-m4b", dest="m4b", action="store_false",
                        help="no book: assembly and baseline encode the chapter MP3 only")
    parser.add_argument("--child", choices=("assembly", "baseline"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.workdir, m4b=args.m4b)
        return

    temp = None
    workdir = args.workdir
    if workdir is None:
        temp = tempfile.TemporaryDirectory(prefix="bench-assembly-")
        workdir = Path(temp.name)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        if not (workdir / "chunks.json").is_file() or len(list(workdir.glob("chunk-*.mp3"))) != args.chunks:
            start = time.perf_counter()
            generate(workdir, minutes=args.minutes, chunks=args.chunks)
            print(f"generated {args.chunks} chunks ({args.minutes:g} min) in {time.perf_counter() - start:.1f} s")
        base = measure("baseline", workdir, m4b=args.m4b)
        asm = measure("assembly", workdir, m4b=args.m4b)
        print(f"chapter: {asm['audio_s'] / 60:.1f} min of audio from {args.chunks} chunks")
        encodes = "MP3+AAC" if args.m4b else "MP3"
        print(f"both sides encode the chapter's {encodes}"
              f"{' (its MP3 and its AAC share of the M4B)' if args.m4b else ' (--no-m4b)'}")
        print(f"{'':24}{'wall s':>9}{'CPU s':>9}{'peak RSS MB (self)':>20}{'(largest child)':>17}")
        for name, r in ((f"ffmpeg decode+{encodes}", base), ("assemble_chapter", asm)):
            print(f"{name:24}{r['seconds']:9.1f}{r['cpu_s']:9.1f}{r['rss_self_mb']:20.0f}"
                  f"{r['rss_children_mb']:17.0f}")
        print(f"wall-time ratio assemble/baseline: {asm['seconds'] / base['seconds']:.2f} (aim <= 1.5); "
              f"CPU-time ratio {asm['cpu_s'] / base['cpu_s']:.2f}")
        print(f"machine load average during the run: {os.getloadavg()[0]:.1f} "
              f"on {os.cpu_count()} cores (other work on the machine inflates wall time)")
        if args.json_out:
            args.json_out.write_text(json.dumps({
                "chunks": args.chunks, "m4b": args.m4b, "audio_min": asm["audio_s"] / 60, "assembly_s": asm["seconds"],
                "baseline_s": base["seconds"], "ratio": asm["seconds"] / base["seconds"],
                "peak_rss_mb": max(asm["rss_self_mb"], asm["rss_children_mb"]),
                "baseline_peak_rss_mb": max(base["rss_self_mb"], base["rss_children_mb"]),
                "load_average": os.getloadavg()[0],
            }), encoding="utf-8")
    finally:
        if temp is not None:
            temp.cleanup()


if __name__ == "__main__":
    main()
