"""Run every benchmark and print one table of figures, each against a baseline measured in the same run.

    python bench/run.py            # the full set (several minutes: a 2-hour chapter is assembled)
    python bench/run.py --quick    # smaller cases, for a look in a few minutes

Each benchmark is its own script (``bench/chunking.py``, ``bench/engine.py``, ``bench/overlap.py``,
``bench/assembly.py``, ``bench/tail.py``, ``bench/importing.py``, ``bench/qc.py``, ``bench/deliver.py``), run
here as a child process with ``--json`` so that its peak memory is its own; their full printouts are kept
above the table. See ``bench/README.md`` for how to read the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent


def run_bench(script: str, args: list[str]) -> dict[str, Any] | None:
    with tempfile.TemporaryDirectory(prefix="bench-run-") as temp:
        out = Path(temp) / "figures.json"
        started = time.perf_counter()
        print(f"\n=== {script} {' '.join(args)}", flush=True)
        proc = subprocess.run([sys.executable, str(BENCH / script), *args, "--json", str(out)], check=False)
        print(f"=== {script}: {time.perf_counter() - started:.0f} s, exit {proc.returncode}", flush=True)
        if proc.returncode != 0 or not out.exists():
            return None
        figures: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
        return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller cases (figures are less representative)")
    args = parser.parse_args()
    quick = args.quick

    chunking = run_bench("chunking.py", ["--mb", "1"] if quick else [])
    engine = run_bench("engine.py", ["--chunks", "60"] if quick else [])
    overlap = run_bench("overlap.py", ["--chapters", "3", "--chunks-per-chapter", "2", "--chunk-chars", "800"]
                        if quick else [])
    assembly = run_bench("assembly.py", ["--minutes", "20", "--chunks", "40"] if quick else [])
    tail = run_bench("tail.py", ["--chapters", "8", "--chunks-per-chapter", "1", "--chunk-chars", "600"]
                     if quick else [])
    importing = run_bench("importing.py", ["--mb", "0.5"] if quick else [])
    quality = run_bench("qc.py", ["--minutes", "5", "--chunks", "10"] if quick else [])
    # quick: a 25-minute chapter against the limit scaled with it (120 min x 25 / 130, rounded: 23)
    package = run_bench("deliver.py", ["--minutes", "25", "--limit", "23"] if quick else [])

    rows: list[tuple[str, str, str, str]] = []

    def row(name: str, value: str, baseline: str, aim: str) -> None:
        rows.append((name, value, baseline, aim))

    if chunking:
        row("chunker throughput", f"{chunking['mb_per_s']:.1f} MB/s", f"{chunking['baseline_mb_per_s']:.1f} MB/s "
            f"({chunking['baseline']})", "> 5 MB/s")
        row("tasks / lower bound", f"{chunking['tasks_ratio']:.3f}", f"{chunking['lower_bound']:,} tasks", "<= 1.05")
    else:
        row("chunker", "FAILED", "", "")
    if engine:
        row("engine wall time / ideal", f"{engine['ratio']:.3f}", f"ideal {engine['ideal_s']:.1f} s "
            f"({engine['chunks']} chunks, concurrency {engine['concurrency']})", "<= 1.10")
        row("API requests per chunk", f"{engine['requests_per_chunk']:.2f}", "1 create + >= 1 query", "")
        row("client CPU per chunk", f"{engine['client_cpu_ms_per_chunk']:.1f} ms", "", "")
    else:
        row("engine", "FAILED", "", "")
    if overlap:
        base = overlap["baseline"]
        row("loop lag while chapters build, worst", f"{overlap['loop_lag_max_ms']:.0f} ms "
            f"({overlap['loop_blocked_max_ms']:.0f} ms not starvation)",
            f"stub assembly {base['loop_lag_max_ms']:.0f} ms "
            f"({overlap['downloads_during_builds']} downloads during builds)", "< 100 ms")
        row("completion-to-download, worst", f"{overlap['c2d_max_s']:.2f} s",
            f"stub assembly {base['c2d_max_s']:.2f} s", "< 1 s")
    else:
        row("overlap", "FAILED", "", "")
    if assembly:
        encodes = "MP3+AAC" if assembly.get("m4b") else "MP3"
        row("assembly time / plain ffmpeg", f"{assembly['ratio']:.2f}", f"ffmpeg decode+{encodes} "
            f"{assembly['baseline_s']:.1f} s ({assembly['audio_min']:.0f} min, {assembly['chunks']} chunks)", "<= 1.5")
        row("peak memory, largest case", f"{assembly['peak_rss_mb']:.0f} MB",
            f"ffmpeg {assembly['baseline_peak_rss_mb']:.0f} MB", "< 300 MB")
    else:
        row("assembly", "FAILED", "", "")
    if tail:
        row("first task -> finished book / ideal", f"{tail['ratio']:.2f} ({tail['run_s']:.1f} s)",
            f"ideal {tail['ideal_s']:.1f} s + last chapter {tail['encode_last_s']:.1f} s ({tail['chapters']} chapters)",
            "<= 1.3")
        row("tail: last download -> finished book", f"{tail['tail_s']:.1f} s",
            f"last chapter encoded alone {tail['encode_last_s']:.1f} s", "")
        row("  the simulator's CPU during that run", f"{tail['simulator_cpu_s']:.1f} s",
            f"of {tail['run_s'] * (os.cpu_count() or 1):.0f} core-seconds", "")
        row("rerun after a one-sentence edit", f"{tail['rebuild_ratio']:.2f} ({tail['rerun_s']:.1f} s)",
            f"the chapter encoded alone {tail['rebuild_encode_s']:.1f} s", "<= 3")
        row("  files rewritten beyond that chapter+book", f"{tail['other_files_rewritten']}",
            f"{tail['tasks_rerendered']} task, {tail['chapters_rebuilt']} chapter rebuilt", "0")
    else:
        row("tail", "FAILED", "", "")
    if importing:
        for name, book in importing["books"].items():
            row(f"import, {name} ({book['written_mb']:.1f} MB of text)", f"{book['import_s']:.2f} s, "
                f"{book['peak_rss_mb']:.0f} MB", f"read + write the bytes {book['baseline_s']:.2f} s", "< 2 s")
    else:
        row("importing", "FAILED", "", "")
    if quality:
        row("QC of every take / assembly", f"{quality['share']:.1%} ({quality['qc_s']:.2f} s)",
            f"assembly {quality['assembly_s']:.1f} s ({quality['audio_min']:.0f} min); QC from scratch "
            f"{quality['scratch_s']:.1f} s", "< 5 %")
    else:
        row("QC", "FAILED", "", "")
    if package:
        longest = max(package["part_min"])
        row("deliver acx / plain ffmpeg", f"{package['ratio']:.2f} ({package['deliver_s']:.1f} s)",
            f"ffmpeg decode+MP3 {package['baseline_s']:.1f} s ({package['audio_min']:.0f} min -> {package['parts']} "
            f"parts, longest {longest:.1f} < {package['limit_min']:g} min)", "<= 2.5")
        row("  deliver peak memory", f"{package['peak_rss_mb']:.0f} MB",
            f"ffmpeg {package['baseline_peak_rss_mb']:.0f} MB", "")
    else:
        row("deliver", "FAILED", "", "")

    widths = [max(len(r[i]) for r in [("figure", "measured", "baseline (same run)", "aim"), *rows]) for i in range(4)]
    print()
    for line in [("figure", "measured", "baseline (same run)", "aim"), *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load average now {os.getloadavg()[0]:.1f}")
    scripts = {"chunking": chunking, "engine": engine, "overlap": overlap, "assembly": assembly, "tail": tail,
               "importing": importing, "qc": quality, "deliver": package}
    print("load average at the end of each script: " + ", ".join(
        f"{name} {figures['load_average']:.1f}" for name, figures in scripts.items()
        if figures and "load_average" in figures))
    used = next((f["ffmpeg"] for f in (tail, overlap, package) if f and "ffmpeg" in f), None)
    if used:
        print(f"ffmpeg: {used}")
    if not (chunking and engine and overlap and assembly and tail and importing and quality and package):
        sys.exit(1)


if __name__ == "__main__":
    main()
