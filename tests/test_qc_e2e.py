"""End to end: the simulator injects the silent defects (a dropped sentence, audio cut short, a long
silence, clipping) into some takes; the real `audiobook run` must mark exactly those chunks (fail, or
warn for a silence), no clean one, and with `qc.on_fail: retake` replace every failing take.

The simulator's ledger is the evidence: it says which task had which defect; the journal says which
task each chunk's selected take came from.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_support import MODEL, audiobook, local_simulator

from pipeline.simulator import Simulator

SENTENCES = [
    "The ferry left the harbour at dawn with the mail and two passengers.",
    "Elsie stood at the rail and watched the island grow out of the mist.",
    "The keeper was waiting at the top of the steps with a lantern.",
    "He took her cases without a word and started up the path.",
    "The lighthouse stood at the far end, white against the grey sky.",
    "Inside, the stairs wound up the wall in a tight spiral of iron.",
    "Her room was on the fourth landing, with a window facing the sea.",
    "That night the wind rose and the barometer fell steadily until midnight.",
]
FAIL_DEFECTS = {"drop_sentence", "cut_short", "clip"}
DEFECTS = "seed={seed},drop_sentence=0.08,cut_short=0.08,long_silence=0.1,clip=0.08"


def write_book(folder: Path, *, qc: dict[str, Any] | None = None) -> Path:
    chapters = []
    for number in range(1, 4):
        text = "\n\n".join(" ".join(SENTENCES[(number + i) % len(SENTENCES):] + SENTENCES[:(number + i) % len(SENTENCES)])
                           [:900] for i in range(3))
        (folder / f"ch{number}.txt").write_text(text, encoding="utf-8")
        chapters.append({"id": f"ch{number}", "title": f"Chapter {number}", "source": f"ch{number}.txt"})
    manifest: dict[str, Any] = {
        "title": "QC Book", "language": "English", "voice": {"model_id": MODEL}, "subtitles": "sentence",
        "chunking": {"max_chars": 400}, "audio": {"m4b": False, "profile": "none"},
        "api": {"poll_interval_s": 0.05, "requests_per_minute": 100000, "backoff_base_s": 0.02,
                "backoff_cap_s": 0.2},
        "chapters": chapters,
    }
    if qc is not None:
        manifest["qc"] = qc
    path = folder / "book.yaml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    with local_simulator(seed=5, faults=DEFECTS.format(seed=1)) as sim:
        yield sim


def selected_tasks(output: Path) -> dict[str, str]:
    """chunk key -> the task id of its selected take."""
    conn = sqlite3.connect(output / "journal.sqlite")
    try:
        first = dict(conn.execute("SELECT key, task_id FROM chunks WHERE state = 'downloaded'").fetchall())
        takes = {(k, t): task for k, t, task in conn.execute("SELECT key, take, task_id FROM takes")}
        selected = dict(conn.execute("SELECT key, take FROM selected_takes").fetchall())
    finally:
        conn.close()
    return {key: takes[(key, selected[key])] if selected.get(key, 1) != 1 else task for key, task in first.items()}


def defects_by_task(sim: Simulator) -> dict[str, set[str]]:
    return {t["id"]: set(t["defects"]) for t in sim.ledger()["tasks"] if t["kind"] == "audio"}


def expected_verdict(defects: set[str]) -> str:
    return "fail" if defects & FAIL_DEFECTS else "warn" if defects else "pass"


def chunk_states(folder: Path, sim: Simulator) -> list[dict[str, Any]]:
    result = audiobook(sim, "status", str(folder / "book.yaml"), "--json")
    assert result.returncode == 0, result.stderr
    return [s for c in json.loads(result.stdout)[0]["chapters"] for s in c["chunk_states"]]


def test_qc_marks_exactly_the_defective_takes_and_stitch_force_measures_again(tmp_path: Path, simulator: Simulator) -> None:
    book = write_book(tmp_path)
    result = audiobook(simulator, "run", str(book))
    output = tmp_path / "build" / "book"
    by_task = defects_by_task(simulator)
    tasks = selected_tasks(output)
    states = chunk_states(tmp_path, simulator)
    hit = {expected_verdict(by_task[tasks[s["key"]]]) for s in states}
    assert {"pass", "warn", "fail"} <= hit, f"the seed should give every kind of take: {hit}"
    for state in states:
        defects = by_task[tasks[state["key"]]]
        qc = state["qc"]
        assert qc is not None, state
        failed = {c["name"] for c in qc["checks"] if not c["passed"]}
        assert qc["verdict"] == expected_verdict(defects), (state["index"], defects, qc)
        if "drop_sentence" in defects:
            assert "uncovered" in failed
        if "cut_short" in defects:
            assert "truncated" in failed
        if "clip" in defects:
            assert "clipping" in failed
        if "long_silence" in defects:
            assert "silence" in failed
        assert all({"name", "measured", "limit", "passed"} <= set(c) for c in qc["checks"])
    # a selected fail take fails the run, and the summary lists every flagged chunk with its place
    assert result.returncode == 1, result.stdout + result.stderr
    flagged = [s for s in states if s["qc"]["verdict"] != "pass"]
    assert f"QC flagged {len(flagged)} chunk(s)" in result.stdout
    for state in flagged:
        assert f"chunk {state['index']}: {state['qc']['verdict'].upper()}" in result.stdout
    report = json.loads((output / "delivery-report.json").read_text(encoding="utf-8"))
    assert sum(c["fail"] for c in report["qc"].values()) == sum(s["qc"]["verdict"] == "fail" for s in states)
    check_stitch_force_measures_every_take_again(book, output, simulator)


def test_retake_policy_replaces_every_failing_take(tmp_path: Path, simulator: Simulator) -> None:
    book = write_book(tmp_path, qc={"on_fail": "retake", "max_retakes": 2})
    dry = audiobook(simulator, "run", str(book), "--dry-run")
    assert "worst case with qc.on_fail: retake" in dry.stdout
    result = audiobook(simulator, "run", str(book))
    output = tmp_path / "build" / "book"
    by_task = defects_by_task(simulator)
    tasks = selected_tasks(output)
    states = chunk_states(tmp_path, simulator)
    first_takes = {t for t, d in by_task.items() if d & FAIL_DEFECTS}
    assert first_takes, "the seed should give failing takes"
    for state in states:
        assert not by_task[tasks[state["key"]]] & FAIL_DEFECTS, state  # no defective take in the chapters
        assert state["qc"]["verdict"] in ("pass", "warn")
    assert "QC retakes:" in result.stdout
    assert result.returncode == 0, result.stdout + result.stderr
    # every take is kept, and no take was made for a warning
    conn = sqlite3.connect(output / "journal.sqlite")
    try:
        retaken = {k for (k,) in conn.execute("SELECT key FROM takes WHERE reason = 'qc'")}
    finally:
        conn.close()
    first = dict(sqlite3.connect(output / "journal.sqlite").execute("SELECT key, task_id FROM chunks").fetchall())
    for key in retaken:
        assert by_task[first[key]] & FAIL_DEFECTS, "a take was retaken that did not fail"



def check_stitch_force_measures_every_take_again(book: Path, output: Path, simulator: Simulator) -> None:
    """Stored measures are trusted by stitch; --force measures every take again."""
    before = {s["key"]: s["qc"]["verdict"] for s in chunk_states(book.parent, simulator)}
    clean = next(key for key, verdict in before.items() if verdict == "pass")
    status = json.loads(audiobook(simulator, "status", str(book), "--json").stdout)[0]
    chapter = next(c["id"] for c in status["chapters"] if any(s["key"] == clean for s in c["chunk_states"]))
    with sqlite3.connect(output / "journal.sqlite") as conn:  # measures that lie: the take "clips"
        (data,) = conn.execute("SELECT measures FROM take_qc WHERE key = ? AND take = 1", (clean,)).fetchone()
        lie = json.loads(data)
        lie["audio"]["clipped_samples"] = 99999
        conn.execute("UPDATE take_qc SET measures = ? WHERE key = ? AND take = 1", (json.dumps(lie), clean))
    stitched = audiobook(simulator, "stitch", str(book), "--chapter", chapter)
    assert stitched.returncode == 1 and "clipping" in stitched.stdout  # stored measures are trusted ...
    assert {s["key"]: s["qc"]["verdict"] for s in chunk_states(book.parent, simulator)}[clean] == "fail"
    forced = audiobook(simulator, "stitch", str(book), "--chapter", chapter, "--force")  # ... until --force
    assert forced.returncode in (0, 1) and "clipping:" not in forced.stdout
    assert {s["key"]: s["qc"]["verdict"] for s in chunk_states(book.parent, simulator)} == before
