"""Fault soak: a many-chunk book against a simulator with every fault mixed in and a tight rate limit,
killed with SIGKILL several times, then finished. It must complete, equal a clean run's chapters, and
have nothing billed twice that was not reported.

CI runs a 40-chunk book (under a minute); the on-demand variant is `SOAK_CHUNKS=300 pytest
tests/test_soak.py` (or more).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from e2e_support import (
    API_KEY,
    MODEL,
    REPO,
    assert_no_unreported_duplicates,
    audiobook,
    chapter_digests,
    command_env,
    journal_states,
    reported_ambiguous,
)

from pipeline.simulator import FaultProfile, Simulator, SimulatorConfig

CHUNKS = int(os.environ.get("SOAK_CHUNKS", "40"))
CHUNKS_PER_CHAPTER = 12
FAULTS = ("seed={seed},429=0.08,5xx=0.05,drop_before=0.04,drop_after_create=0.04,fail=0.06,truncate=0.05,"
          "slow=0.02,slow_s=0.05,expire=0.05,retry_after_s=0")

WORDS = ["keeper", "lamp", "tide", "storm", "gull", "rope", "window", "stair", "harbour", "lantern", "barometer", "ferry", "pressure", "night", "morning", "island", "current", "signal", "beacon", "weather"]


def sentence(n: int) -> str:
    words = [WORDS[(n * 7 + i * 3) % len(WORDS)] for i in range(8 + n % 5)]
    return f"Entry {n} says the {' '.join(words)}."


def write_book(folder: Path) -> Path:
    """At least CHUNKS chunks of up to 200 characters (tight packing merges some short paragraphs)."""
    chapters = []
    n = 0
    paragraph_count = CHUNKS * 6 // 5
    per_chapter = CHUNKS_PER_CHAPTER * 6 // 5
    for number in range((paragraph_count + per_chapter - 1) // per_chapter):
        paragraphs = []
        for _ in range(min(per_chapter, paragraph_count - number * per_chapter)):
            text = sentence(n)
            n += 1
            while len(text) < 120 and len(text) + 1 + len(sentence(n)) <= 200:
                text += " " + sentence(n)
                n += 1
            paragraphs.append(text)
        (folder / f"ch{number:02d}.txt").write_text("\n\n".join(paragraphs), encoding="utf-8")
        chapters.append({"id": f"ch{number:02d}", "source": f"ch{number:02d}.txt"})
    manifest = {
        "title": "Soak", "voice": {"model_id": MODEL, "speed": 2.0},
        "chunking": {"max_chars": 200, "paragraph_min_fill": 0.3},
        "audio": {"m4b": False, "profile": "none"},
        "api": {"poll_interval_s": 0.05, "requests_per_minute": 3000, "max_attempts": 6, "concurrency": 6,
                "backoff_base_s": 0.02, "backoff_cap_s": 0.3},
        "chapters": chapters,
    }
    path = folder / "book.yaml"
    path.write_text(yaml.safe_dump(manifest), encoding="utf-8")
    return path


def simulator(**faults: object) -> Simulator:
    return Simulator(SimulatorConfig(api_key=API_KEY, seed=5, task_base_s=0.1, task_s_per_char=0.001,
                                     requests_per_minute=2400, max_active_tasks=8, preload_voices=(MODEL,),
                                     **faults),  # type: ignore[arg-type]
                     host="127.0.0.1", port=0, files_port=0)


def test_soak_with_every_fault_and_kills(tmp_path: Path) -> None:
    clean_dir = tmp_path / "clean"
    clean_dir.mkdir()
    with simulator() as sim:
        result = audiobook(sim, "run", str(write_book(clean_dir)), "-q", timeout=600)
        assert result.returncode == 0, result.stdout + result.stderr
        clean_tasks = sim.ledger()["tasks_created"]["audio"]
    assert clean_tasks >= CHUNKS
    reference = chapter_digests(clean_dir / "build" / "book")

    work = tmp_path / "soak"
    work.mkdir()
    manifest = write_book(work)
    output = work / "build" / "book"
    with simulator(faults=FaultProfile.parse(FAULTS.format(seed=9))) as sim:
        kills = 0
        for fraction in (0.1, 0.35, 0.6, 0.85):
            proc = subprocess.Popen([sys.executable, "-m", "pipeline", "run", str(manifest), "-q"], cwd=REPO,
                                    env=command_env(sim), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 300
            while proc.poll() is None and time.monotonic() < deadline:
                if journal_states(output).get("downloaded", 0) >= fraction * clean_tasks:
                    proc.send_signal(signal.SIGKILL)
                    kills += 1
                    break
                time.sleep(0.02)
            proc.wait(timeout=60)
        assert kills >= 3, "the runs finished before they could be interrupted"
        for _ in range(3):  # under this fault mix a chunk may exhaust its tries; a rerun goes on
            final = audiobook(sim, "run", str(manifest), "-q", timeout=600)
            if final.returncode == 0:
                break
        assert final.returncode == 0, final.stdout + final.stderr
        ledger = sim.ledger()
        assert ledger["refunds"] and ledger["responses"], "the fault mix did not bite"
        assert_no_unreported_duplicates(sim, output)
        extra = ledger["tasks_created"]["audio"] - len(ledger["refunds"]) - clean_tasks
        assert extra <= len(reported_ambiguous(output)), (extra, ledger["tasks_created"])
        assert not ledger["files_origin"]["requests_with_authorization"]
    assert chapter_digests(output) == reference
