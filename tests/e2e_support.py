"""Helpers for end-to-end tests: run the real command against a simulator and read its evidence."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from pipeline.simulator import FaultProfile, Simulator, SimulatorConfig

API_KEY = "sk-e2e-secret-7f3a9c"
MODEL = "model_e2e"
REPO = Path(__file__).resolve().parent.parent


def local_simulator(*, seed: int, faults: str = "", task_base_s: float = 0.05,
                    task_s_per_char: float = 0.0002) -> Simulator:
    """A simulator on free loopback ports that knows the tests' key and voice (enter it with ``with``)."""
    config = SimulatorConfig(api_key=API_KEY, seed=seed, task_base_s=task_base_s, task_s_per_char=task_s_per_char,
                             preload_voices=(MODEL,), faults=FaultProfile.parse(faults))
    return Simulator(config, host="127.0.0.1", port=0, files_port=0)


def write_book(folder: Path, title: str, chapters: dict[str, str], **settings: Any) -> Path:
    """A book in ``folder``: one ``<id>.txt`` per chapter and ``book.yaml`` for the tests' voice, fast
    polling, no M4B and no delivery profile; ``settings`` are more (or other) top-level manifest keys."""
    for chapter_id, text in chapters.items():
        (folder / f"{chapter_id}.txt").write_text(text, encoding="utf-8")
    manifest = {
        "title": title, "language": "English", "voice": {"model_id": MODEL}, "subtitles": "sentence",
        "audio": {"m4b": False, "profile": "none"}, "api": {"poll_interval_s": 0.05, "requests_per_minute": 100000},
        **settings,
        "chapters": [{"id": chapter_id, "source": f"{chapter_id}.txt"} for chapter_id in chapters],
    }
    path = folder / "book.yaml"
    path.write_text(yaml.safe_dump(manifest, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def command_env(sim: Simulator) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOUNDCLONE_")}
    env.update(SOUNDCLONE_BASE_URL=sim.base_url, SOUNDCLONE_API_KEY=API_KEY, PYTHONUNBUFFERED="1")
    return env


def audiobook(sim: Simulator, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], env=command_env(sim), cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def chapter_digests(output: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(output.glob("*.mp3"))}


def journal_states(output: Path) -> dict[str, int]:
    path = output / "journal.sqlite"
    if not path.exists():
        return {}
    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute("SELECT state, COUNT(*) FROM chunks GROUP BY state").fetchall())
    except sqlite3.OperationalError:
        return {}
    finally:
        conn.close()


def reported_ambiguous(output: Path) -> list[str]:
    """The chunk key of every possible duplicate charge the journal reported (one per event)."""
    conn = sqlite3.connect(output / "journal.sqlite")
    try:
        return [row[0] for row in conn.execute("SELECT key FROM events WHERE kind = 'possible-duplicate'")]
    finally:
        conn.close()


def reported_ambiguous_keys(output: Path) -> set[str]:
    return set(reported_ambiguous(output))


def chunk_texts_by_key(output: Path) -> dict[str, str]:
    conn = sqlite3.connect(output / "journal.sqlite")
    try:
        return dict(conn.execute("SELECT key, text FROM chunks").fetchall())
    finally:
        conn.close()


def assert_no_unreported_duplicates(sim: Simulator, output: Path) -> None:
    duplicates = sim.ledger()["duplicates"]
    if not duplicates:
        return
    texts = chunk_texts_by_key(output)
    reported_texts = {texts[k] for k in reported_ambiguous_keys(output) if k in texts}
    for duplicate in duplicates:
        assert duplicate["content_text"] in reported_texts, f"billed twice without a report: {duplicate}"




def write_files(folder: Path, files: dict[str, str | bytes | None]) -> None:
    """Write test files under ``folder``: text as UTF-8 as given (no newline translation), bytes as is,
    ``None`` skipped (a file the test wants missing)."""
    for name, content in files.items():
        if content is None:
            continue
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, encoding="utf-8", newline="")
