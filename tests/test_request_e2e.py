"""End to end: the create body is one value, from the plan to the journal to the wire (issue 11, item 1).

The real command (``python -m pipeline ...``) runs against the project's simulator on free loopback
ports. The simulator's ledger says what a real account was billed; the raw create bodies it received
are recorded by wrapping its request handler (the ledger keeps counts, not bodies).

The first-release book in ``tests/fixtures/legacy-book`` was rendered by commit 6e26e2a (the last one
before the request-body keys and journal migration 3); see ``make_fixture.py`` there.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from e2e_support import API_KEY, MODEL, audiobook, chapter_digests, command_env

from pipeline.cli import main
from pipeline.simulator import Simulator, SimulatorConfig
from pipeline.store import MIGRATIONS

CREATE_PATH = "/api/open-api/v1/soundCloning/audios"
LEGACY = Path(__file__).resolve().parent / "fixtures" / "legacy-book"
LEGACY_MODEL = "model_legacy"
API_SETTINGS = {"poll_interval_s": 0.02, "backoff_base_s": 0.01, "backoff_cap_s": 0.05,
                "requests_per_minute": 100000}
PRICING = {"char_fee_per_10k": 50.0, "voice_fee_per_task": 0.01, "currency": "EUR"}

CHAPTERS = {
    "one": ("The Jetty", "The ferry left at dawn. Elsie stood on the jetty with two cases, and the keeper "
            "waited at the top of the steps. He did not wave.\n\n\"You'll be the new keeper,\" he said. "
            "It was not a question. She followed him up the path."),
    "two": ("The Log", "The log went back to 1887. One entry said only: listen."),
}


class RecordingSimulator:
    """A simulator and every create-audio body it received, as the bytes arrived (decoded JSON)."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.bodies: list[dict[str, Any]] = []
        handle = sim.service.handle_api

        def recording(request: Any) -> Any:
            if request.method == "POST" and request.path == CREATE_PATH:
                self.bodies.append(json.loads(request.body))
            return handle(request)

        sim.service.handle_api = recording  # type: ignore[method-assign]

    def audio_tasks(self) -> int:
        return int(self.sim.ledger()["tasks_created"]["audio"])


def start_simulator(*models: str) -> Simulator:
    config = SimulatorConfig(api_key=API_KEY, seed=5, task_base_s=0.02, task_s_per_char=0.0,
                             preload_voices=models or (MODEL,))
    return Simulator(config, host="127.0.0.1", port=0, files_port=0)


@pytest.fixture
def sim() -> Iterator[RecordingSimulator]:
    with start_simulator(MODEL) as simulator:
        yield RecordingSimulator(simulator)


def write_book(folder: Path, chapters: dict[str, tuple[str, str]] = CHAPTERS, **top: Any) -> Path:
    entries = []
    for chapter_id, (title, text) in chapters.items():
        (folder / f"{chapter_id}.txt").write_text(text, encoding="utf-8")
        entries.append({"id": chapter_id, "title": title, "source": f"{chapter_id}.txt"})
    manifest: dict[str, Any] = {
        "title": "Request Book", "author": "Tester", "language": "English",
        "voice": {"model_id": MODEL, "speed": 1.25}, "subtitles": "sentence",
        "chunking": {"max_chars": 200},
        "audio": {"m4b": False, "profile": "none"},
        "api": API_SETTINGS, "pricing": PRICING,
        "chapters": entries,
    }
    manifest.update(top)
    path = folder / "book.yaml"
    path.write_text(yaml.safe_dump(manifest, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def edit_manifest(path: Path, **top: Any) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data.update(top)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")


def ok(sim: Simulator, *args: str) -> str:
    result = audiobook(sim, *args)
    assert result.returncode == 0, f"{args}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def plan_json(sim: Simulator, manifest: Path) -> dict[str, Any]:
    """``plan --json``: the same click command, in this process (it reads only; keeps the file fast)."""
    result = CliRunner().invoke(main, ["plan", str(manifest), "--json"], env=command_env(sim))
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))


def status_json(sim: Simulator, manifest: Path) -> dict[str, Any]:
    (book,) = json.loads(ok(sim, "status", str(manifest), "--json"))
    return book


# --- 1. status --json shows the body the API received ----------------------------------------------

def test_status_json_shows_every_chunks_request_exactly_as_the_api_received_it(
        sim: RecordingSimulator, tmp_path: Path) -> None:
    manifest = write_book(tmp_path)
    planned = plan_json(sim.sim, manifest)
    ok(sim.sim, "run", str(manifest))

    received = {body["contentText"]: body for body in sim.bodies}
    assert len(received) == len(sim.bodies) == sim.audio_tasks() == planned["totals"]["tasks"]
    status = status_json(sim.sim, manifest)
    shown = [state for chapter in status["chapters"] for state in chapter["chunk_states"]]
    assert len(shown) == len(sim.bodies)
    for state in shown:
        request = state["request"]
        assert request == received[request["contentText"]], state["key"]
        assert request["modelId"] == MODEL and request["speed"] == 1.25 and request["subtitleEnable"] is True
        assert state["state"] == "downloaded"
    # ... and the plan showed the very same bodies before anything was sent
    planned_requests = [c["request"] for chapter in planned["chapters"] for c in chapter["chunks"]]
    assert planned_requests == [s["request"] for s in shown]


# --- 2. subtitles are an output option, not part of the audio -----------------------------------------

def test_subtitles_off_costs_nothing_and_turning_them_on_renders_again_keeping_the_old_take(
        sim: RecordingSimulator, tmp_path: Path) -> None:
    manifest = write_book(tmp_path, subtitles="off")
    ok(sim.sim, "run", str(manifest))
    output = tmp_path / "build" / "book"
    first = sim.audio_tasks()
    assert first == 3 and not list(output.glob("*.srt"))
    assert all(body["subtitleEnable"] is False for body in sim.bodies)
    paid = {p.name: p.read_bytes() for p in (output / "cache").glob("*/*.mp3")}
    assert len(paid) == first

    # off -> sentence: every chunk renders again (only a new task returns timings), and says why
    edit_manifest(manifest, subtitles="sentence")
    plan = plan_json(sim.sim, manifest)
    changes = plan["totals"]["changes"]
    assert changes["to_render"] == first and changes["reused"] == 0
    assert changes["cost"] == pytest.approx(changes["chars"] / 10_000 * 50.0 + first * 0.01) and changes["cost"] > 0
    for chapter in plan["chapters"]:
        for chunk in chapter["chunks"]:
            assert chunk["fate"] == "render" and "subtitles" in chunk["reason"], chunk

    ok(sim.sim, "run", str(manifest))
    assert sim.audio_tasks() == 2 * first
    assert all(body["subtitleEnable"] is True for body in sim.bodies[first:])
    for stem in ("01-one", "02-two"):
        assert (output / f"{stem}.srt").read_text(encoding="utf-8").strip(), stem
    takes = ok(sim.sim, "takes", str(manifest), "--chapter", "one")
    lines = [line for line in takes.splitlines() if line.strip()]
    # chunk 0 and 1 each: the new render in use, the earlier (subtitle-less) audio kept as take 2
    assert sum(1 for line in lines if line.startswith("*") and "take 1: downloaded" in line) == 2, takes
    kept = [line for line in lines if "take 2: downloaded" in line]
    assert len(kept) == 2 and all(not line.startswith("*") for line in kept), takes
    for line in kept:  # the very audio paid for first, kept beside the new take 1
        take2 = Path(line.split()[-1])
        assert take2.read_bytes() == paid[take2.name.replace(".take2", "")], line

    # sentence -> off: the held takes have more than is asked; nothing is paid for
    edit_manifest(manifest, subtitles="off")
    plan = plan_json(sim.sim, manifest)
    assert plan["totals"]["changes"]["to_render"] == 0 and plan["totals"]["changes"]["cost"] == 0
    ok(sim.sim, "run", str(manifest))
    assert sim.audio_tasks() == 2 * first, "turning subtitles off must not create a task"
    edit_manifest(manifest, subtitles="sentence")
    assert plan_json(sim.sim, manifest)["totals"]["changes"]["to_render"] == 0


def test_the_plan_table_says_why_every_chunk_renders_again_after_subtitles_are_turned_on(
        sim: RecordingSimulator, tmp_path: Path) -> None:
    manifest = write_book(tmp_path, {"two": CHAPTERS["two"]}, subtitles="off")
    ok(sim.sim, "run", str(manifest))
    edit_manifest(manifest, subtitles="sentence")
    cost = plan_json(sim.sim, manifest)["totals"]["changes"]["cost"]
    table = ok(sim.sim, "plan", str(manifest))
    assert "1 chunk(s) to render" in table and "subtitles: sentence is requested" in table, table
    assert f"{cost:.2f} EUR" in table.split("changes since the last render")[-1], table


# --- 3. a first-release journal resumes ------------------------------------------------------------

def copy_legacy_book(tmp_path: Path) -> tuple[Path, Path]:
    for name in ("book.yaml", "one.txt", "two.txt"):
        shutil.copy(LEGACY / name, tmp_path / name)
    output = tmp_path / "build" / "book"
    shutil.copytree(LEGACY / "book", output)
    return tmp_path / "book.yaml", output


def journal_facts(output: Path, *, in_place: bool = False
                  ) -> tuple[int, dict[str, tuple[str, str | None, str | None]], list[str]]:
    """user_version, chunk rows (state, body, subtitles) by key, and the keys of the chapter plans.
    ``in_place`` reads the committed fixture without writing anything beside it."""
    path = output / "journal.sqlite"
    conn = sqlite3.connect(f"file:{path}?immutable=1", uri=True) if in_place else sqlite3.connect(path)
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        columns = {row[1] for row in conn.execute("PRAGMA table_info(chunks)")}
        rows = {key: (state, body, subtitles) for key, state, body, subtitles in conn.execute(
            "SELECT key, state, body, subtitles FROM chunks")} if "body" in columns else \
            {key: (state, None, None) for key, state in conn.execute("SELECT key, state FROM chunks")}
        plan_keys = [key for (key,) in conn.execute("SELECT key FROM chapter_plans ORDER BY chapter_id, idx")]
        return version, rows, plan_keys
    finally:
        conn.close()


def test_the_legacy_fixture_is_a_first_release_book() -> None:
    version, rows, plan_keys = journal_facts(LEGACY / "book", in_place=True)
    assert version == 2 and len(rows) == 3 and sorted(plan_keys) == sorted(rows)
    assert all(state == "downloaded" for state, _, _ in rows.values())
    cached = {p.stem for p in (LEGACY / "book" / "cache").glob("*/*.mp3")}
    assert cached == set(rows)
    size = sum(p.stat().st_size for p in LEGACY.rglob("*") if p.is_file())
    assert size < 600_000, f"the fixture grew to {size} bytes"


@pytest.mark.parametrize("subtitles", ["sentence", "off"])
def test_a_first_release_journal_resumes_without_rendering_anything(tmp_path: Path, subtitles: str) -> None:
    manifest, output = copy_legacy_book(tmp_path)
    if subtitles != "sentence":
        edit_manifest(manifest, subtitles=subtitles)
    _, legacy_rows, _ = journal_facts(output)
    with start_simulator(LEGACY_MODEL) as simulator:
        sim = RecordingSimulator(simulator)
        plan = plan_json(simulator, manifest)
        changes = plan["totals"]["changes"]
        assert (changes["to_render"], changes["reused"], changes["cost"]) == (0, 3, 0), changes
        assert all(c["fate"] == "reuse" for ch in plan["chapters"] for c in ch["chunks"])
        new_keys = {c["key"] for ch in plan["chapters"] for c in ch["chunks"]}
        assert not new_keys & set(legacy_rows), "the new key scheme gives new keys"

        out = ok(simulator, "run", str(manifest))
        assert sim.audio_tasks() == 0 and sim.bodies == [], out
        assert "0 task(s) created this run" in out
        assert sorted(chapter_digests(output)) == ["01-one.mp3", "02-two.mp3"]
        assert (output / "legacy-book.m4b").is_file()

        version, rows, plan_keys = journal_facts(output)
        assert version == len(MIGRATIONS)
        conn = sqlite3.connect(output / "journal.sqlite")
        try:  # the takes of a journal from before QC are measured and judged from the cache, for free
            judged = dict(conn.execute("SELECT key, verdict FROM take_qc WHERE take = 1").fetchall())
        finally:
            conn.close()
        assert set(judged) == new_keys and set(judged.values()) <= {"pass", "warn", "fail"}
        assert set(rows) == new_keys and set(plan_keys) == new_keys
        requests = {c["key"]: c["request"] for ch in plan["chapters"] for c in ch["chunks"]}
        for key, (state, body, held) in rows.items():
            assert state == "downloaded" and held == "sentence", key
            assert body is not None
            sent = json.loads(body)
            # what the first release sent: this manifest's audio fields, with sentence subtitles
            assert sent["subtitleEnable"] is True
            assert {k: v for k, v in sent.items() if not k.startswith("subtitle")} == \
                   {k: v for k, v in requests[key].items() if not k.startswith("subtitle")}
        for key in new_keys:
            assert (output / "cache" / key[:2] / f"{key}.mp3").is_file(), key

        if subtitles != "sentence":
            return
        digests = chapter_digests(output)
        stamps = {p.name: p.stat().st_mtime_ns for p in output.glob("*.m*")}
        again = ok(simulator, "run", str(manifest))
        assert "0 task(s) created this run" in again
        assert sim.audio_tasks() == 0
        assert chapter_digests(output) == digests
        assert {p.name: p.stat().st_mtime_ns for p in output.glob("*.m*")} == stamps, "a second run rebuilt files"
        status = status_json(simulator, manifest)
        assert status["totals"] == {"downloaded": 3}
        assert (status["tasks_billed"], status["chars_billed"]) == (3, 229), "the first release's billing is kept"
        assert all(s["request"]["subtitleEnable"] is True for ch in status["chapters"] for s in ch["chunk_states"])


# --- 4. the same text in two chapters is one task -------------------------------------------------

SHARED = ("The bell rang twice across the water, and then the island was silent again, as silent as it had "
          "been on the first night.")
TWICE = {"one": ("First", f"{SHARED}\n\nElsie counted the steps up to the lamp room, one hundred and twelve of "
                          "them, and wrote the number in the log."),
         "two": ("Second", f"{SHARED}\n\nThe keeper wound the clock before the light, as he had done every "
                           "evening for thirty years.")}


def test_the_same_text_in_two_chapters_is_priced_as_one_task_and_rendered_once(
        sim: RecordingSimulator, tmp_path: Path) -> None:
    manifest = write_book(tmp_path, TWICE)
    plan = plan_json(sim.sim, manifest)
    chunks = [c for ch in plan["chapters"] for c in ch["chunks"]]
    assert len(chunks) == 4 and len({c["key"] for c in chunks}) == 3, [c["text"] for c in chunks]
    distinct_chars = sum({c["key"]: c["billed_chars"] for c in chunks}.values())
    changes = plan["totals"]["changes"]
    assert changes["to_render"] == 3 and changes["chars"] == distinct_chars
    assert changes["cost"] == pytest.approx(distinct_chars / 10_000 * 50.0 + 3 * 0.01)

    ok(sim.sim, "run", str(manifest))
    assert sim.audio_tasks() == 3
    assert [b["contentText"] for b in sim.bodies].count(SHARED) == 1
    output = tmp_path / "build" / "book"
    assert sorted(chapter_digests(output)) == ["01-one.mp3", "02-two.mp3"]
    status = status_json(sim.sim, manifest)
    assert status["tasks_billed"] == 3 and status["totals"] == {"downloaded": 4}


def test_plan_totals_price_the_same_text_in_two_chapters_once(sim: RecordingSimulator, tmp_path: Path) -> None:
    manifest = write_book(tmp_path, TWICE)
    plan = plan_json(sim.sim, manifest)
    chunks = [c for ch in plan["chapters"] for c in ch["chunks"]]
    distinct = {c["key"]: c["billed_chars"] for c in chunks}
    totals = plan["totals"]
    assert totals["tasks"] == len(distinct) == totals["changes"]["to_render"]
    assert totals["est_cost"] == pytest.approx(totals["changes"]["cost"])
