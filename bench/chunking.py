"""Benchmark the chunker: throughput on a generated multi-megabyte manuscript, and tasks against the
lower bound.

    python bench/chunking.py                  # 5 MB English + 5 MB Chinese, limit 9,999
    python bench/chunking.py --mb 2 --limit 2000

The manuscripts are built from the shared public-domain corpora (../shared/corpora): Alice's chapters
(English) and Hongloumeng's (Chinese), repeated until the target size, with pause markers sprinkled
between sentences and a scene break now and then, reduced to spoken text as the manifest loader does
(that preparation is timed apart). Each chapter is then cut with ``split_spans`` and, separately, with
``plan_chapter`` (which adds the seam pauses and a content key per chunk).

Throughput depends on the machine, so two baselines run on the same text in the same process:

* **sentencex alone**: the boundary finder the chunker builds on, with nothing else (no marker
  hiding, no packing): the floor under any sentence-aware chunker here.
* **regex + greedy**: a plain regex sentence splitter and a greedy packer that cuts an over-long
  sentence at the last space (what one would write in an afternoon; it ignores markers, graphemes
  and paragraph preferences, and can cut a marker in two).

The ratio of the chunker to each baseline is printed with the absolute MB/s (megabytes of UTF-8).
Tasks are compared with the lower bound, the sum over chapters of ceil(chars / limit).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

import sentencex

from pipeline.chunking import _iso_code, lower_bound_tasks, plan_chapter, split_spans
from pipeline.models import API_MAX_CHARS, ChapterSpec, ChunkingSettings, PauseSettings, Voice
from pipeline.text import decode_source, to_spoken_text

# The shared corpora sit beside the checkout; CORPORA=... points elsewhere.
CORPORA = Path(os.environ.get("CORPORA") or ROOT.parent / "shared" / "corpora")
MARKERS = ["<#0.5#>", "<#1#>", "<#1.5#>", "<#2.25#>"]


# --- the manuscripts -----------------------------------------------------------------------------

def _alice_chapters() -> list[str]:
    raw = decode_source((CORPORA / "alice.txt").read_bytes())
    start = re.search(r"^CHAPTER I\.$", raw, flags=re.MULTILINE)
    end = re.search(r"^(?:THE END$|\*\*\* ?END OF TH)", raw, flags=re.MULTILINE)
    body = raw[start.start() if start else 0: end.start() if end else len(raw)]
    return [p for p in re.split(r"^(?=CHAPTER [IVXL]+\.)", body, flags=re.MULTILINE) if p.strip()]


def _hongloumeng_chapters() -> list[str]:
    raw = decode_source((CORPORA / "hongloumeng.txt").read_bytes())
    parts = re.split(r"^(?=第[一二三四五六七八九十百零〇]+回)", raw, flags=re.MULTILINE)
    return [p for p in parts[1:] if p.strip()]


def _decorate(chapter: str, rng: random.Random) -> str:
    """Pause markers after some sentence ends, and a scene break between some paragraphs."""
    chapter = re.sub(r"([.!?。！？．][”\"’]?)([ \n])",
                     lambda m: m.group(1) + (rng.choice(MARKERS) if rng.random() < 0.04 else "") + m.group(2),
                     chapter)
    paragraphs = chapter.split("\n\n")
    for i in range(len(paragraphs) - 1, 0, -1):
        if rng.random() < 0.02:
            paragraphs.insert(i, "* * *")
    return "\n\n".join(paragraphs)


def manuscript(chapters: Sequence[str], megabytes: float, seed: int) -> list[str]:
    """Raw chapter sources, the corpus's chapters repeated (decorated afresh) until ``megabytes``."""
    rng = random.Random(seed)
    out: list[str] = []
    size = 0
    while size < megabytes * 1e6:
        for chapter in chapters:
            text = _decorate(chapter, rng)
            out.append(text)
            size += len(text.encode())
            if size >= megabytes * 1e6:
                break
    return out


# --- baselines -----------------------------------------------------------------------------------

_REGEX_SENTENCE = re.compile(r"(?<=[.!?。！？．])[\"'”’」』）)]*\s*")


def regex_greedy(text: str, limit: int) -> list[tuple[int, int]]:
    """A plain regex sentence splitter and a greedy packer (the afternoon baseline)."""
    ends = [m.end() for m in _REGEX_SENTENCE.finditer(text) if m.end() > m.start() or m.end() == len(text)]
    spans: list[tuple[int, int]] = []
    start = 0
    i = 0
    n = len(text)
    while start < n:
        window = start + limit
        if window >= n:
            spans.append((start, n))
            break
        while i < len(ends) and ends[i] <= window:
            i += 1
        end = ends[i - 1] if i and ends[i - 1] > start else -1
        if end == -1:
            space = text.rfind(" ", start, window)
            end = space + 1 if space > start else window
        spans.append((start, end))
        start = end
    return spans


def sentencex_alone(text: str, language: str) -> int:
    return len(sentencex.get_sentence_boundaries(language, text))


# --- measuring -----------------------------------------------------------------------------------

def best_of(runs: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def bench(label: str, chapters: list[str], language: str, limit: int, runs: int) -> dict[str, float]:
    texts = chapters
    megabytes = sum(len(t.encode()) for t in texts) / 1e6
    chars = sum(len(t) for t in texts)
    chunking = ChunkingSettings(max_chars=limit)
    pauses = PauseSettings()
    specs = [ChapterSpec(id=f"c{i}", title=f"c{i}", number=i + 1, text=t, voice=Voice(model_id="m"),
                         language=language) for i, t in enumerate(texts)]
    iso = _iso_code(language, texts[0])

    spans_s = best_of(runs, lambda: [split_spans(t, language=language, chunking=chunking) for t in texts])
    plan_s = best_of(runs, lambda: [plan_chapter(c, chunking=chunking, pauses=pauses, subtitles="sentence")
                                    for c in specs])
    sentencex_s = best_of(runs, lambda: [sentencex_alone(t, iso) for t in texts])
    regex_s = best_of(runs, lambda: [regex_greedy(t, limit) for t in texts])

    tasks = sum(len(split_spans(t, language=language, chunking=chunking)) for t in texts)
    regex_tasks = sum(len(regex_greedy(t, limit)) for t in texts)
    bound = lower_bound_tasks(texts, limit)
    longest = max(end - start for t in texts for start, end in split_spans(t, language=language, chunking=chunking))

    print(f"\n{label}: {len(texts)} chapters, {megabytes:.2f} MB UTF-8, {chars:,} code points, limit {limit:,}")
    print(f"  {'':<22}{'seconds':>9}{'MB/s':>9}{'Mchar/s':>9}")
    for name, seconds in (("split_spans", spans_s), ("plan_chapter", plan_s), ("sentencex alone", sentencex_s),
                          ("regex + greedy", regex_s)):
        print(f"  {name:<22}{seconds:>9.3f}{megabytes / seconds:>9.2f}{chars / seconds / 1e6:>9.2f}")
    print(f"  split_spans vs sentencex alone: {sentencex_s / spans_s:.2f}x its speed; vs regex + greedy: "
          f"{regex_s / spans_s:.2f}x")
    print(f"  tasks {tasks:,}, lower bound {bound:,} ({(tasks / bound - 1) * 100:+.2f}%); "
          f"regex + greedy {regex_tasks:,} ({(regex_tasks / bound - 1) * 100:+.2f}%); longest chunk {longest:,}")
    return {"mb_s": megabytes / spans_s, "tasks": tasks, "bound": bound, "sentencex_mb_s": megabytes / sentencex_s}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=5.0, help="size of each manuscript in MB (default 5)")
    parser.add_argument("--limit", type=int, default=API_MAX_CHARS, help="chunk limit in code points (default 9999)")
    parser.add_argument("--runs", type=int, default=2, help="timed runs of each; the best is shown (default 2)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", dest="json_out", type=Path, help="also write the figures here (for bench/run.py)")
    args = parser.parse_args(argv)
    if not CORPORA.is_dir():
        print(f"corpora not found at {CORPORA}; set CORPORA=...", file=sys.stderr)
        return 2
    started = time.perf_counter()
    results = []
    for label, source, language in (("English (Alice, repeated)", _alice_chapters(), "English"),
                                    ("Chinese (Hongloumeng, repeated)", _hongloumeng_chapters(), "Chinese")):
        raw = manuscript(source, args.mb, args.seed)
        prep = time.perf_counter()
        chapters = [to_spoken_text(r, markdown=False, scene_break_s=2.0) for r in raw]
        prep_s = time.perf_counter() - prep
        print(f"\n[{label}] spoken-text preparation: {prep_s:.2f} s "
              f"({sum(len(r.encode()) for r in raw) / 1e6 / prep_s:.1f} MB/s)")
        results.append(bench(label, chapters, language, args.limit, args.runs))
    rates = ", ".join(f"{r['mb_s']:.2f} MB/s" for r in results)
    print(f"\nsplit_spans throughput: {rates} "
          f"(aim: over 5 MB/s); geometric mean {statistics.geometric_mean([r['mb_s'] for r in results]):.2f}")
    tasks, bound = sum(r["tasks"] for r in results), sum(r["bound"] for r in results)
    print(f"tasks {tasks:,} against the lower bound {bound:,}: {(tasks / bound - 1) * 100:+.2f}% "
          f"(aim: within 5%, i.e. at most {math.floor(bound * 1.05):,})")
    print(f"total time {time.perf_counter() - started:.1f} s")
    if args.json_out:
        args.json_out.write_text(json.dumps({
            "mb_per_s": min(r["mb_s"] for r in results), "baseline": "sentencex alone",
            "baseline_mb_per_s": min(r["sentencex_mb_s"] for r in results),
            "tasks_ratio": tasks / bound, "lower_bound": bound,
        }), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
