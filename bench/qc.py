"""Benchmark QC of every take against the assembly of the same chapter (issue 14: under 5 %).

    python bench/qc.py                  # a 20-minute chapter of 40 chunks
    python bench/qc.py --minutes 60 --chunks 100

Generates the chunk MP3s and subtitle files as ``bench/assembly.py`` does, then times, in one process:

* ``assemble_chapter`` of the chapter (the baseline);
* QC as the engine runs it: each download is decoded once anyway, to verify it; QC adds the analysis
  of those decoded blocks (:class:`pipeline.qc.AudioMeter`), the comparison of the cues with the text
  and the verdicts of the book. This is the figure held to the aim;
* QC from scratch (:func:`pipeline.verdicts.measure`: decode and analyse every take again), what
  ``stitch --force`` and a journal from before QC pay, and the verify decode alone, for scale.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent), str(BENCH.parent / "tests"), str(BENCH)]

from assembly import bench_manifest, generate  # bench/assembly.py


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=20.0, help="chapter length (default 20)")
    parser.add_argument("--chunks", type=int, default=40, help="number of chunks (default 40)")
    parser.add_argument("--json", dest="json_out", type=Path, help="also write the figures here (for bench/run.py)")
    args = parser.parse_args()

    from pipeline import qc, verdicts
    from pipeline.assembly import assemble_chapter
    from pipeline.audio import ffmpeg
    from pipeline.models import ChapterPlan, ChapterSpec, Chunk, ChunkAudio, Voice
    from pipeline.request import AudioRequest
    from pipeline.subtitles import load_subtitle_file

    with tempfile.TemporaryDirectory(prefix="bench-qc-") as temp:
        workdir = Path(temp)
        generate(workdir, minutes=args.minutes, chunks=args.chunks)
        rows = json.loads((workdir / "chunks.json").read_text(encoding="utf-8"))
        chunks, audio = [], []
        for row in rows:
            i, text = row["index"], row["text"]
            request = AudioRequest.for_chunk(text, voice=Voice(model_id=f"model_{i}"), language="English",
                                             subtitles="sentence")
            chunks.append(Chunk(chapter_id="bench", index=i, start=0, end=len(text), text=text,
                                billed_chars=len(text), pause_before_s=0.0 if i == 0 else 0.8, pause_after_s=0.0,
                                request=request))
            audio.append(ChunkAudio(chunks[-1], workdir / f"chunk-{i:03d}.mp3", workdir / f"chunk-{i:03d}.json"))
        plan = ChapterPlan(ChapterSpec(id="bench", title="Bench", number=1, text="", voice=Voice(model_id="v"),
                                       language="English"), tuple(chunks))
        manifest = bench_manifest(workdir, m4b=True)

        start = time.perf_counter()
        built = assemble_chapter(manifest=manifest, plan=plan, audio=audio, track=1, total_tracks=1, force=True)
        assembly_s = time.perf_counter() - start

        # QC as the engine runs it: the verify decode is paid anyway; time what QC adds to it
        decode_s = analysis_s = feed_s = 0.0
        measures = {}
        for item in audio:
            meter = qc.AudioMeter(qc.MEASURE_RATE_HZ)
            t0 = time.perf_counter()
            with ffmpeg.stream_pcm(item.audio_path, sample_rate_hz=meter.sample_rate_hz) as blocks:
                for block in blocks:
                    t1 = time.perf_counter()
                    meter.feed(block)
                    feed_s += time.perf_counter() - t1
            decode_s += time.perf_counter() - t0
            t1 = time.perf_counter()
            assert item.subtitle_path is not None
            timings = load_subtitle_file(item.subtitle_path, label="bench")
            measures[(item.chunk.key, 1)] = qc.measure_take(meter.result(), item.chunk.text, timings)
            analysis_s += time.perf_counter() - t1
        decode_s -= feed_s  # the decode's own time (the analysis of its blocks ran inside it)
        analysis_s += feed_s
        t1 = time.perf_counter()
        judged = qc.judge_book([plan], measures, {}, manifest.qc)
        analysis_s += time.perf_counter() - t1
        verdict_counts = {v: sum(1 for x in judged.values() if x.verdict == v) for v in (qc.PASS, qc.WARN, qc.FAIL)}

        start = time.perf_counter()
        for item in audio:
            verdicts.measure(verdicts.TakeFile(item.chunk, 1, item.audio_path, item.subtitle_path))
        scratch_s = time.perf_counter() - start

    share = analysis_s / assembly_s
    print(f"chapter: {built.duration_s / 60:.1f} min of audio from {args.chunks} chunks; verdicts {verdict_counts}")
    print(f"{'':44}{'seconds':>9}{'of assembly':>13}")
    print(f"{'assemble_chapter (MP3 + AAC share)':44}{assembly_s:9.2f}{'':>13}")
    print(f"{'QC added to the verify decode (the aim)':44}{analysis_s:9.3f}{share:13.1%}")
    print(f"{'QC from scratch (decode + analyse)':44}{scratch_s:9.2f}{scratch_s / assembly_s:13.1%}")
    print(f"{'  the verify decode alone (paid anyway)':44}{decode_s:9.2f}{decode_s / assembly_s:13.1%}")
    print(f"aim: QC under 5 % of the assembly time: {'met' if share < 0.05 else 'MISSED'}")
    print(f"machine load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    if args.json_out:
        args.json_out.write_text(json.dumps({
            "chunks": args.chunks, "audio_min": built.duration_s / 60, "assembly_s": assembly_s, "qc_s": analysis_s,
            "share": share, "scratch_s": scratch_s, "decode_s": decode_s, "verdicts": verdict_counts,
            "load_average": os.getloadavg()[0]}), encoding="utf-8")


if __name__ == "__main__":
    main()
