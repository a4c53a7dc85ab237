"""End to end: the real `audiobook run` command, over real sockets, against the project's simulator.

The simulator runs in this test process on free loopback ports; the command runs as a subprocess
(so it can be killed with SIGKILL) pointed at it through SOUNDCLONE_BASE_URL / SOUNDCLONE_API_KEY.
Its ledger says what a real account would have been billed.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
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
    reported_ambiguous_keys,
)

from pipeline.simulator import FaultProfile, Simulator, SimulatorConfig

CHAPTERS = {
    "one": ("The Jetty", "The ferry left at dawn. Elsie stood on the jetty with two cases. "
            "The keeper waited at the top of the steps.<#0.5#> He did not wave.\n\n"
            "\"You'll be the new keeper,\" he said. It was not a question. She followed him up the path, "
            "counting the steps as she went, and lost count at ninety.\n\n***\n\n"
            "That night the wind rose. The barometer fell to 968 hPa by midnight, and the spray reached "
            "the windows of the fourth landing."),
    "two": ("The Log", "The log went back to 1887. Every night somebody had written the time the light was "
            "lit, the weather, and anything else worth a line. Most entries were short. Some were long. "
            "One said only: listen.\n\nShe read it every evening. She began to write in it herself, "
            "first the pressure and the wind, then other things. The keeper never asked what."),
    "three": ("灯塔", "风暴过后的第三天，海面平静得像一面镜子。她走到灯塔顶上，看着太阳慢慢升起。"
              "“你昨晚听见了吗？”老人问她。“听见了。”她说。"),
}


def write_book(folder: Path, *, max_chars: int = 200, subtitles: str = "sentence") -> Path:
    chapters = []
    for chapter_id, (title, text) in CHAPTERS.items():
        (folder / f"{chapter_id}.txt").write_text(text, encoding="utf-8")
        entry = {"id": chapter_id, "title": title, "source": f"{chapter_id}.txt"}
        if chapter_id == "three":
            entry["language"] = "Chinese"
        chapters.append(entry)
    manifest = {
        "title": "E2E Book", "author": "Tester", "language": "English",
        "voice": {"model_id": MODEL}, "subtitles": subtitles,
        "chunking": {"max_chars": max_chars},
        "audio": {"m4b": False, "profile": "none"},
        "api": {"poll_interval_s": 0.05, "requests_per_minute": 100000, "max_attempts": 4,
                "backoff_base_s": 0.02, "backoff_cap_s": 0.2},
        "chapters": chapters,
    }
    path = folder / "book.yaml"
    path.write_text(yaml.safe_dump(manifest, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    config = SimulatorConfig(api_key=API_KEY, seed=11, task_base_s=0.05, task_s_per_char=0.0005,
                             preload_voices=(MODEL,))
    with Simulator(config, host="127.0.0.1", port=0, files_port=0) as sim:
        yield sim


def test_clean_run_renders_every_chapter_and_a_rerun_costs_nothing(simulator: Simulator, tmp_path: Path) -> None:
    manifest = write_book(tmp_path)
    result = audiobook(simulator, "run", str(manifest))
    assert result.returncode == 0, result.stdout + result.stderr
    output = tmp_path / "build" / "book"
    assert sorted(chapter_digests(output)) == ["01-one.mp3", "02-two.mp3", "03-three.mp3"]
    assert (output / "01-one.srt").read_text(encoding="utf-8").strip()
    ledger = simulator.ledger()
    tasks = ledger["tasks_created"]["audio"]
    plan = subprocess.run([sys.executable, "-m", "pipeline", "plan", str(manifest), "--json"], cwd=REPO,
                          capture_output=True, text=True, check=True)
    import json
    assert tasks == json.loads(plan.stdout)["totals"]["tasks"]
    assert ledger["duplicates"] == []

    again = audiobook(simulator, "run", str(manifest))
    assert again.returncode == 0, again.stderr
    assert simulator.ledger()["tasks_created"]["audio"] == tasks, "a rerun must not submit anything"
    assert "0 task(s) created this run" in again.stdout

    status = audiobook(simulator, "status", str(manifest), "--json")
    data = json.loads(status.stdout)[0]
    assert data["totals"] == {"downloaded": tasks}
    assert API_KEY not in result.stdout + result.stderr + again.stdout + again.stderr + status.stdout


def test_fault_mix_still_completes_every_chapter(simulator: Simulator, tmp_path: Path) -> None:
    clean_dir = tmp_path / "clean"
    clean_dir.mkdir()
    clean = audiobook(simulator, "run", str(write_book(clean_dir)))
    assert clean.returncode == 0, clean.stderr
    reference = chapter_digests(clean_dir / "build" / "book")

    with Simulator(SimulatorConfig(api_key=API_KEY, seed=11, task_base_s=0.05, task_s_per_char=0.0005,
                                   preload_voices=(MODEL,)),
                   host="127.0.0.1", port=0, files_port=0) as sim:
        sim.set_faults(FaultProfile.parse(
            "seed=4,429=0.1,5xx=0.08,drop_before=0.05,drop_after_create=0.1,fail=0.3,truncate=0.1,expire=0.1,"
            "retry_after_s=0"))
        faulty_dir = tmp_path / "faulty"
        faulty_dir.mkdir()
        manifest = write_book(faulty_dir)
        result = audiobook(sim, "run", str(manifest))
        output = faulty_dir / "build" / "book"
        if result.returncode != 0:  # a chunk may exhaust its tries under this mix: the rerun finishes it
            result = audiobook(sim, "run", str(manifest))
        assert result.returncode == 0, result.stdout + result.stderr
        ledger = sim.ledger()
        responses = ledger["responses"]
        seen = {str(status) for endpoint in responses.values() for status in endpoint}
        assert {"429", "dropped"} <= seen, f"the fault mix did not bite: {responses}"
        assert ledger["refunds"], "no task failed: the fault mix did not bite"
        assert_no_unreported_duplicates(sim, output)
        assert not ledger["files_origin"]["requests_with_authorization"]
    assert chapter_digests(output) == reference


def test_sigkill_at_several_points_then_rerun_matches_a_clean_run(simulator: Simulator, tmp_path: Path) -> None:
    clean_dir = tmp_path / "clean"
    clean_dir.mkdir()
    assert audiobook(simulator, "run", str(write_book(clean_dir))).returncode == 0
    reference = chapter_digests(clean_dir / "build" / "book")
    clean_tasks = simulator.ledger()["tasks_created"]["audio"]

    with Simulator(SimulatorConfig(api_key=API_KEY, seed=11, task_base_s=0.3, task_s_per_char=0.002,
                                   preload_voices=(MODEL,)),
                   host="127.0.0.1", port=0, files_port=0) as sim:
        work = tmp_path / "killed"
        work.mkdir()
        manifest = write_book(work)
        output = work / "build" / "book"
        # Kill when the journal first shows each of these milestones.
        milestones = [("submitted", 1), ("submitted", 3), ("downloaded", 2), ("downloaded", 6)]
        kills = 0
        for state, count in milestones:
            proc = subprocess.Popen([sys.executable, "-m", "pipeline", "run", str(manifest)], cwd=REPO,
                                    env=command_env(sim), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 60
            while proc.poll() is None and time.monotonic() < deadline:
                states = journal_states(output)
                if states.get(state, 0) + (states.get("downloaded", 0) if state == "submitted" else 0) >= count:
                    proc.send_signal(signal.SIGKILL)
                    kills += 1
                    break
                time.sleep(0.01)
            proc.wait(timeout=30)
        assert kills >= 2, "the run finished before it could be interrupted"
        final = audiobook(sim, "run", str(manifest))
        assert final.returncode == 0, final.stdout + final.stderr
        assert_no_unreported_duplicates(sim, output)
        ledger = sim.ledger()
        extra = ledger["tasks_created"]["audio"] - clean_tasks
        assert extra <= len(reported_ambiguous(output)), ledger["tasks_created"]
    assert chapter_digests(output) == reference


def test_interrupted_create_is_resubmitted_and_reported(simulator: Simulator, tmp_path: Path) -> None:
    """A journal row left in `submitting` (crash between intent and task id) is resubmitted, and said so."""
    manifest = write_book(tmp_path)
    assert audiobook(simulator, "run", str(manifest), "--chapter", "two").returncode == 0
    output = tmp_path / "build" / "book"
    conn = sqlite3.connect(output / "journal.sqlite")
    with conn:
        key = conn.execute("SELECT key FROM chunks WHERE chapter_id = 'two' ORDER BY idx LIMIT 1").fetchone()[0]
        conn.execute("UPDATE chunks SET state = 'submitting', task_id = NULL WHERE key = ?", (key,))
    conn.close()
    (output / "cache" / key[:2] / f"{key}.mp3").unlink()
    result = audiobook(simulator, "run", str(manifest), "--chapter", "two")
    assert result.returncode == 0, result.stderr
    assert "possible duplicate charges: 1" in result.stdout
    assert key in reported_ambiguous_keys(output)


def test_rejected_chunk_fails_alone_with_the_servers_message(simulator: Simulator, tmp_path: Path) -> None:
    manifest = write_book(tmp_path)
    data = yaml.safe_load(manifest.read_text(encoding="utf-8"))
    data["chapters"][1]["voice"] = {"model_id": "model_unknown"}
    manifest.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    result = audiobook(simulator, "run", str(manifest))
    assert result.returncode == 1
    assert "FAILED two chunk 0" in result.stdout and "modelId" in result.stdout
    output = tmp_path / "build" / "book"
    assert (output / "01-one.mp3").exists() and (output / "03-three.mp3").exists()
    assert not (output / "02-two.mp3").exists()
    assert "Traceback" not in result.stderr


def test_bad_key_stops_the_batch_before_anything_is_billed(simulator: Simulator, tmp_path: Path) -> None:
    manifest = write_book(tmp_path)
    env = command_env(simulator) | {"SOUNDCLONE_API_KEY": "sk-wrong"}
    result = subprocess.run([sys.executable, "-m", "pipeline", "run", str(manifest)], env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "refused the key" in result.stderr and "sk-wrong" not in result.stderr
    assert simulator.ledger()["tasks_created"]["total"] == 0


def test_max_cost_refuses_before_any_request(simulator: Simulator, tmp_path: Path) -> None:
    manifest = write_book(tmp_path)
    data = yaml.safe_load(manifest.read_text(encoding="utf-8"))
    data["pricing"] = {"char_fee_per_10k": 100.0, "voice_fee_per_task": 1.0}
    manifest.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    result = audiobook(simulator, "run", str(manifest), "--max-cost", "1")
    assert result.returncode == 2
    assert "exceeds --max-cost" in result.stderr
    assert sum(simulator.ledger()["requests"].values()) == 0


def test_several_books_share_one_batch_and_a_bad_manifest_does_not_stop_the_others(
        simulator: Simulator, tmp_path: Path) -> None:
    shelf = tmp_path / "shelf"
    for name in ("a", "b"):
        folder = shelf / name
        folder.mkdir(parents=True)
        book = write_book(folder)
        book.rename(shelf / f"{name}.yaml")
        text = (shelf / f"{name}.yaml").read_text(encoding="utf-8")
        (shelf / f"{name}.yaml").write_text(text.replace("source: ", f"source: {name}/")
                                            .replace("title: E2E Book", f"title: Book {name}\noutput: out-{name}"),
                                            encoding="utf-8")
    (shelf / "broken.yaml").write_text("title: [unclosed\n", encoding="utf-8")
    result = audiobook(simulator, "run", str(shelf))
    assert result.returncode == 1, result.stdout + result.stderr  # the broken one is reported
    assert "broken.yaml" in result.stdout + result.stderr
    for name in ("a", "b"):
        assert len(list((shelf / f"out-{name}").glob("*.mp3"))) == 3
    status = audiobook(simulator, "status", str(shelf))
    assert "Book a" in status.stdout and "Book b" in status.stdout and "broken.yaml" in status.stdout


def test_a_second_run_of_the_same_book_is_refused_while_the_first_works(tmp_path: Path) -> None:
    """Two runs of one book at once would each submit the same chunks: the second must refuse."""
    with Simulator(SimulatorConfig(api_key=API_KEY, task_base_s=1.0, preload_voices=(MODEL,)),
                   host="127.0.0.1", port=0, files_port=0) as sim:
        manifest = write_book(tmp_path)
        first = subprocess.Popen([sys.executable, "-m", "pipeline", "run", str(manifest)], cwd=REPO,
                                 env=command_env(sim), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            output = tmp_path / "build" / "book"
            deadline = time.monotonic() + 60
            while not journal_states(output).get("submitted") and time.monotonic() < deadline:
                time.sleep(0.02)
            second = audiobook(sim, "run", str(manifest))
            assert second.returncode == 2, second.stdout + second.stderr
            assert "another audiobook command (pid" in second.stderr and "Traceback" not in second.stderr
            status = audiobook(sim, "status", str(manifest))
            assert status.returncode == 0, "status reads without the lock"
        finally:
            first.wait(timeout=120)
        assert first.returncode == 0
        assert sim.ledger()["duplicates"] == []
