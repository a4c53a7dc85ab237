"""The benchmarks still run (at a tiny size): a change of the library's API must not leave `bench/` broken.

The figures themselves are not checked here (timings belong in `bench/`, not in tests); each script must
exit 0 and print its headline figure, and `--json` must give the numbers `bench/run.py` tabulates.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CORPORA = REPO.parent / "shared" / "corpora"


def bench(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, str(REPO / "bench" / script), *args], cwd=REPO, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result


@pytest.mark.skipif(not CORPORA.is_dir(), reason=f"the shared corpora are not at {CORPORA}")
def test_chunking_benchmark_runs(tmp_path: Path) -> None:
    figures_file = tmp_path / "figures.json"
    assert "split_spans throughput" in bench("chunking.py", "--mb", "0.1", "--runs", "1",
                                             "--json", str(figures_file)).stdout
    figures = json.loads(figures_file.read_text(encoding="utf-8"))
    assert figures["mb_per_s"] > 0 and figures["tasks_ratio"] >= 1.0


def test_engine_benchmark_runs(tmp_path: Path) -> None:
    out = bench("engine.py", "--chunks", "8", "--json", str(tmp_path / "engine.json")).stdout
    assert "API requests per chunk" in out and "client CPU per chunk" in out
    assert json.loads((tmp_path / "engine.json").read_text(encoding="utf-8"))


def test_assembly_benchmark_runs(tmp_path: Path) -> None:
    out = bench("assembly.py", "--minutes", "1", "--chunks", "4", "--json", str(tmp_path / "assembly.json")).stdout
    assert "wall-time ratio assemble/baseline" in out
    assert json.loads((tmp_path / "assembly.json").read_text(encoding="utf-8"))


def test_overlap_benchmark_runs(tmp_path: Path) -> None:
    out = bench("overlap.py", "--chapters", "2", "--chunks-per-chapter", "1", "--chunk-chars", "300",
                "--task-base-s", "0.2", "--task-s-per-char", "0", "--json", str(tmp_path / "overlap.json")).stdout
    assert "worst event-loop lag while chapters assemble" in out and "ffmpeg:" in out
    figures = json.loads((tmp_path / "overlap.json").read_text(encoding="utf-8"))
    assert figures["loop_lag_max_ms"] >= 0 and figures["c2d_max_s"] >= 0 and "baseline" in figures


def test_tail_benchmark_runs(tmp_path: Path) -> None:
    out = bench("tail.py", "--chapters", "2", "--chunks-per-chapter", "1", "--chunk-chars", "200",
                "--task-base-s", "0.1", "--task-s-per-char", "0", "--poll", "0.05",
                "--json", str(tmp_path / "tail.json")).stdout
    assert "first task -> finished book" in out and "rerun after the edit" in out
    figures = json.loads((tmp_path / "tail.json").read_text(encoding="utf-8"))
    assert figures["ratio"] > 0 and figures["tasks_rerendered"] == 1 and figures["other_files_rewritten"] == 0


def test_importing_benchmark_runs(tmp_path: Path) -> None:
    out = bench("importing.py", "--mb", "0.05", "--json", str(tmp_path / "importing.json")).stdout
    assert "slowest import" in out
    figures = json.loads((tmp_path / "importing.json").read_text(encoding="utf-8"))
    assert set(figures["books"]) == {"plain text", "EPUB", "DOCX"}
    assert all(book["import_s"] > 0 and book["parts"] > 1 for book in figures["books"].values())


def test_qc_benchmark_runs(tmp_path: Path) -> None:
    out = bench("qc.py", "--minutes", "1", "--chunks", "4", "--json", str(tmp_path / "qc.json")).stdout
    assert "QC added to the verify decode" in out
    figures = json.loads((tmp_path / "qc.json").read_text(encoding="utf-8"))
    assert figures["assembly_s"] > 0 and 0 < figures["qc_s"] < figures["scratch_s"]
    assert figures["verdicts"]["pass"] == 4  # clean generated speech passes every check
