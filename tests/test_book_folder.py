"""End to end: an output folder belongs to one book, and `clean` removes only what the manifest no longer
makes (issue 11, item 6).

The real command (``python -m pipeline ...``) runs against the project's simulator on free loopback
ports; the simulator's ledger says whether anything was requested or billed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from e2e_support import API_KEY, MODEL, audiobook, command_env

from pipeline.cli import main
from pipeline.simulator import Simulator, SimulatorConfig

API_SETTINGS = {"poll_interval_s": 0.02, "backoff_base_s": 0.01, "backoff_cap_s": 0.05,
                "requests_per_minute": 100000}
TEXTS = {
    "one": "The ferry left at dawn. Elsie stood on the jetty with two cases, and the keeper waited at the top "
           "of the steps.",
    "two": "The log went back to 1887. One entry said only: listen.",
    "three": "That night the wind rose, and the spray reached the windows of the fourth landing.",
}


@pytest.fixture
def sim() -> Iterator[Simulator]:
    config = SimulatorConfig(api_key=API_KEY, seed=9, task_base_s=0.02, task_s_per_char=0.0,
                             preload_voices=(MODEL,))
    with Simulator(config, host="127.0.0.1", port=0, files_port=0) as simulator:
        yield simulator


def write_book(path: Path, *, title: str, chapters: tuple[str, ...] = ("one", "two"), output: str | None = None,
               texts: dict[str, str] = TEXTS, **top: Any) -> Path:
    folder = path.parent
    for chapter_id in chapters:
        (folder / f"{chapter_id}.txt").write_text(texts[chapter_id], encoding="utf-8")
    manifest: dict[str, Any] = {
        "title": title, "author": "Tester", "language": "English", "voice": {"model_id": MODEL},
        "subtitles": "sentence", "chunking": {"max_chars": 200},
        "audio": {"m4b": False, "profile": "none"}, "api": API_SETTINGS,
        "chapters": [{"id": c, "title": c.title(), "source": f"{c}.txt"} for c in chapters],
        **({"output": output} if output else {}), **top,
    }
    path.write_text(yaml.safe_dump(manifest, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (but the lock) by its relative path -> sha256 of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".run.lock"}


def requests(sim: Simulator) -> int:
    return sum(sim.ledger()["requests"].values())


def audio_tasks(sim: Simulator) -> int:
    return int(sim.ledger()["tasks_created"]["audio"])


def status_json(sim: Simulator, manifest: Path, *, refused: bool = False) -> list[dict[str, Any]]:
    """``status --json``: the same click command, in this process (it reads only; keeps the file fast).
    A refused book is a document with an ``error`` (its exit code is not checked here)."""
    result = CliRunner().invoke(main, ["status", str(manifest), "--json"], env=command_env(sim))
    assert result.exit_code in ((0, 2) if refused else (0,)), result.output
    return list(json.loads(result.stdout))


def ok(sim: Simulator, *args: str) -> str:
    result = audiobook(sim, *args)
    assert result.returncode == 0, f"{args}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


# --- two books, one folder ---------------------------------------------------------------------------

def test_a_second_book_in_the_same_output_folder_is_refused_before_any_request(
        sim: Simulator, tmp_path: Path) -> None:
    first = write_book(tmp_path / "lighthouse.yaml", title="The Lighthouse", output="shared")
    second = write_book(tmp_path / "harbour.yaml", title="The Harbour", output="shared",
                        texts={**TEXTS, "one": "A different book entirely, about a harbour and its boats."})
    ok(sim, "run", str(first))
    folder = tmp_path / "shared"
    before = snapshot(folder)
    assert {"01-one.mp3", "02-two.mp3"} <= set(before)
    asked = requests(sim)

    refused = audiobook(sim, "run", str(second))
    assert refused.returncode == 2, refused.stdout + refused.stderr
    message = refused.stderr
    assert "The Lighthouse" in message and "The Harbour" in message, message
    assert "lighthouse.yaml" in message and "harbour.yaml" in message, message
    assert "--same-book" in message and "output:" in message, message
    assert "Traceback" not in message
    assert requests(sim) == asked, "the refused book sent a request"
    assert snapshot(folder) == before, "the refused book changed the first book's folder"

    status = audiobook(sim, "status", str(second))
    assert status.returncode == 2
    assert "belongs to the book 'The Lighthouse'" in status.stdout + status.stderr, status.stdout
    status_doc = status_json(sim, second, refused=True)
    assert "belongs to the book" in status_doc[0]["error"]

    cleaned = audiobook(sim, "clean", str(second))
    assert cleaned.returncode == 2, cleaned.stdout + cleaned.stderr
    assert "belongs to the book" in cleaned.stderr
    assert snapshot(folder) == before, "clean of another book deleted files"

    # the same book, its manifest renamed: refused until the user says it is the same book
    renamed = first.rename(tmp_path / "lighthouse-2nd-edition.yaml")
    again = audiobook(sim, "run", str(renamed))
    assert again.returncode == 2 and "--same-book" in again.stderr, again.stdout + again.stderr
    assert requests(sim) == asked
    tasks = audio_tasks(sim)
    out = ok(sim, "run", str(renamed), "--same-book")
    assert "0 task(s) created this run" in out
    assert audio_tasks(sim) == tasks
    assert {k: v for k, v in snapshot(folder).items() if k.endswith(".mp3")} == \
           {k: v for k, v in before.items() if k.endswith(".mp3")}
    # ... and from then on the new name owns the folder without the flag
    ok(sim, "status", str(renamed))
    assert "0 task(s) created this run" in ok(sim, "run", str(renamed))


# --- files the manifest no longer makes --------------------------------------------------------------

def test_files_the_manifest_no_longer_makes_stay_until_clean_removes_exactly_them(
        sim: Simulator, tmp_path: Path) -> None:
    manifest = tmp_path / "book.yaml"
    write_book(manifest, title="Old Title", chapters=("one", "two", "three"),
               audio={"m4b": True, "profile": "none"})
    ok(sim, "run", str(manifest))
    output = tmp_path / "build" / "book"
    old_book = output / "old-title.m4b"
    three = [output / f"03-three{suffix}" for suffix in (".mp3", ".srt", ".vtt")]
    assert old_book.is_file() and all(p.is_file() for p in three)
    # a retake selected in a chapter that stays: both of its takes are paid audio still in use
    ok(sim, "retake", str(manifest), "--chapter", "one", "--chunk", "0")
    used_cache = {p for p in (output / "cache").glob("*/*") if p.is_file()}
    kept_before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in [old_book, *three]}

    # chapter three removed, the book renamed: the old files stay (they are paid work) ...
    write_book(manifest, title="New Title", chapters=("one", "two"), audio={"m4b": True, "profile": "none"})
    tasks = audio_tasks(sim)
    ok(sim, "run", str(manifest))
    assert audio_tasks(sim) == tasks
    new_book = output / "new-title.m4b"
    assert new_book.is_file()
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in kept_before} == kept_before
    # ... and with the M4B turned off, the current title's M4B stays too
    write_book(manifest, title="New Title", chapters=("one", "two"), audio={"m4b": False, "profile": "none"})
    ok(sim, "run", str(manifest))
    assert new_book.is_file() and audio_tasks(sim) == tasks

    stale_outputs = {old_book, new_book, *three}
    (doc,) = status_json(sim, manifest)
    listed = {Path(p) for p in doc["stale_files"]}
    assert stale_outputs <= listed, listed
    state = output / ".assembly"
    # build state of what is gone: chapter three's (its state and waveform), the chapters' shares of a
    # book that is no longer made, and the measurements of files that are stale
    parts = {state / "aac" / f"{c}.aac" for c in ("one", "two", "three")}
    measured = {state / "measurements" / f"{p.name}.json" for p in (*stale_outputs, *parts)}
    assert listed - stale_outputs == {state / "chapter-three.json", state / "peaks" / "three.json", *parts,
                                      *(m for m in measured if m.exists())}, listed
    status = ok(sim, "status", str(manifest))
    assert f"{len(listed)} file(s) the manifest no longer makes (`audiobook clean` offers them)" in status, status
    for path in stale_outputs:  # the deliverables come first among the five it names
        assert path.name in status, (path.name, status)

    keys = {s["key"] for chapter in doc["chapters"] for s in chapter["chunk_states"]}
    three_cache = {p for p in used_cache if p.name.split(".")[0] not in keys}
    assert three_cache, "chapter three's cached audio should be unused now"

    before = snapshot(output)
    dry = ok(sim, "clean", str(manifest), "--dry-run")
    assert snapshot(output) == before, "clean --dry-run deleted something"
    for path in listed:
        assert f"would remove {path} (no longer made by the manifest)" in dry, dry
    for path in three_cache:
        assert f"would remove {path}" in dry, dry

    out = ok(sim, "clean", str(manifest))
    removed = {Path(line.split()[1]) for line in out.splitlines() if line.startswith("removed ")}
    assert removed == listed | three_cache, out
    after = snapshot(output)
    assert set(before) - set(after) == {str(p.relative_to(output)) for p in removed}
    for path in used_cache - three_cache:
        assert path.is_file(), f"clean removed paid audio still in use: {path}"
    assert any(".take2." in p.name for p in used_cache - three_cache)
    assert {"01-one.mp3", "02-two.mp3", "journal.sqlite"} <= set(after)
    # nothing was lost that a run would have to pay for again
    assert "0 task(s) created this run" in ok(sim, "run", str(manifest))
    assert audio_tasks(sim) == tasks

