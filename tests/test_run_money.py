"""End to end, where the money is: the real `audiobook run` / `status` commands against the simulator.

Each test starts the project's simulator on free loopback ports, runs the real command as a subprocess
(`python -m pipeline ...`) and compares what the command says with what the simulator's ledger says a
real account was billed. The rules under test (soundclone-api.md, "Billing" and "Unknowns"): every
accepted create is a billed task; failed tasks are refunded; a create that may have reached the server
is never blindly repeated and is reported as a possible duplicate charge; audio that is gone at the API
is paid for again only on request, and the cost is shown first; "no new charge" is said only where true.
"""

from __future__ import annotations

import json
import re
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_support import (
    API_KEY,
    MODEL,
    REPO,
    assert_no_unreported_duplicates,
    chunk_texts_by_key,
    command_env,
    journal_states,
    reported_ambiguous,
)

from pipeline.simulator import FaultProfile, Simulator, SimulatorConfig
from pipeline.simulator.faults import UNKNOWN_STATUSES

AUDIO_CREATE = "POST /api/open-api/v1/soundCloning/audios"
AUDIO_PATH = "/api/open-api/v1/soundCloning/audios"
CHAR_FEE_PER_10K = 100.0
VOICE_FEE = 1.0

# Three chapters, four short chunks at max_chars 200 (one: 2, two: 1, three: 1): short, so that the
# simulator's audio and the stitching stay fast.
CHAPTERS = {
    "one": ("The Jetty", "The ferry left at dawn. Elsie stood on the jetty with two cases. The keeper waited at "
            "the top of the steps. He did not wave. She followed him up the path, counting the steps as she went, "
            "and lost count at ninety."),
    "two": ("The Log", "The log went back to 1887. One entry said only: listen."),
    "three": ("The Lamp", "Morning came grey and slow. A gull watched her from the rail."),
}
CHUNKS = 4


def write_book(folder: Path, **api: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    chapters = []
    for chapter_id, (title, text) in CHAPTERS.items():
        (folder / f"{chapter_id}.txt").write_text(text, encoding="utf-8")
        chapters.append({"id": chapter_id, "title": title, "source": f"{chapter_id}.txt"})
    manifest = {
        "title": "Money Book", "author": "Tester", "language": "English",
        "voice": {"model_id": MODEL}, "subtitles": "off",
        "chunking": {"max_chars": 200},
        "audio": {"m4b": False, "profile": "none"},
        "pricing": {"char_fee_per_10k": CHAR_FEE_PER_10K, "voice_fee_per_task": VOICE_FEE},
        "api": {"poll_interval_s": 0.02, "requests_per_minute": 100000, "max_attempts": 3,
                "backoff_base_s": 0.01, "backoff_cap_s": 0.05, **api},
        "chapters": chapters,
    }
    path = folder / "book.yaml"
    path.write_text(yaml.safe_dump(manifest, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def sim_config(**overrides: Any) -> SimulatorConfig:
    settings: dict[str, Any] = {"api_key": API_KEY, "seed": 11, "task_base_s": 0.02, "task_s_per_char": 0.0,
                                "preload_voices": (MODEL,)}
    return SimulatorConfig(**(settings | overrides))


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(sim_config(), host="127.0.0.1", port=0, files_port=0) as simulator:
        yield simulator


# --- running the command and reading its evidence ---------------------------------------------------

class Run:
    """One finished command: exit code, output and wall time."""

    def __init__(self, proc: subprocess.CompletedProcess[str], seconds: float) -> None:
        self.code = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.seconds = seconds

    @property
    def text(self) -> str:
        return self.stdout + self.stderr

    def __repr__(self) -> str:  # shown when an assertion on a Run fails
        return f"exit {self.code} after {self.seconds:.1f}s\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


def cli(sim: Simulator, *args: str, timeout: float = 60, **env: str) -> Run:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pipeline", *args], env=command_env(sim) | env, cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)
    return Run(proc, time.monotonic() - started)


def status_json(sim: Simulator, manifest: Path) -> dict[str, Any]:
    result = cli(sim, "status", str(manifest), "--json")
    assert result.code == 0, result
    books: list[dict[str, Any]] = json.loads(result.stdout)
    assert len(books) == 1, books
    return books[0]


def json_states(book: dict[str, Any]) -> dict[str, str]:
    """``"chapter chunk N" -> state`` from a ``status --json`` document."""
    return {f"{c['id']} chunk {s['index']}": s["state"] for c in book["chapters"] for s in c["chunk_states"]}


def _journal(output: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(output / "journal.sqlite")
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def task_chunks(output: Path) -> dict[str, str]:
    """Every task id the journal holds -> the chunk it was created for ("chapter chunk N")."""
    return {task_id: f"{chapter} chunk {idx}" for task_id, chapter, idx in _journal(
        output, "SELECT t.task_id, c.chapter_id, c.idx FROM tasks t JOIN chunks c ON c.key = t.key")}


def chunk_labels(output: Path) -> dict[str, str]:
    """Chunk key -> "chapter chunk N"."""
    return {key: f"{chapter} chunk {idx}" for key, chapter, idx in _journal(
        output, "SELECT key, chapter_id, idx FROM chunks")}


def listed(line_start: str, text: str, end: str) -> set[str]:
    """The comma-separated items after ``line_start`` and before ``end`` on the line that has them."""
    lines = [line for line in text.splitlines() if line.strip().startswith(line_start)]
    assert len(lines) == 1, f"expected one line starting {line_start!r}:\n{text}"
    items = lines[0].strip()[len(line_start):].split(end)[0]
    return {item.strip() for item in items.split(",") if item.strip()}


def creates(sim: Simulator) -> int:
    return int(sim.ledger()["requests"].get(AUDIO_CREATE, 0))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cost(chars: int, tasks: int) -> float:
    return chars / 10_000 * CHAR_FEE_PER_10K + tasks * VOICE_FEE


# --- 1. links that stay dead ------------------------------------------------------------------------

# Seeds whose rate hits some chunks of the book but not all (checked in the test, so a change in the
# fault hashing shows up as a clear failure rather than a vacuous pass).
LINK_FAULTS = {"dead_link": "seed=1,dead_link=0.5", "no_link": "seed=1,no_link=0.5"}


@pytest.mark.parametrize("fault", sorted(LINK_FAULTS))
def test_audio_gone_at_the_api_is_expired_and_only_rerendered_on_request_at_a_shown_cost(
        sim: Simulator, tmp_path: Path, fault: str) -> None:
    manifest = write_book(tmp_path)
    output = tmp_path / "build" / "book"
    sim.set_faults(FaultProfile.parse(LINK_FAULTS[fault]))

    first = cli(sim, "run", str(manifest))
    assert first.code == 1, first
    assert first.seconds < 20, f"links that stay dead must be given up on in seconds: {first!r}"
    ledger = sim.ledger()
    assert ledger["tasks_created"]["audio"] == CHUNKS and ledger["refunds"] == []
    hit = {task_chunks(output)[t] for t in ledger["task_faults"][fault]}
    assert 0 < len(hit) < CHUNKS, f"the seed should hit some chunks, not {sorted(hit)}: pick another seed"

    # The summary: exactly those chunks, a plain rerun cannot recover them, the way out costs money.
    assert listed("expired at the API:", first.stdout, ";") == hit, first
    expired_line = next(line for line in first.stdout.splitlines() if "expired at the API:" in line)
    assert "a plain rerun cannot recover them" in expired_line
    assert "`audiobook run MANIFEST --rerender-expired`" in expired_line and "new charge" in expired_line
    for label in hit:
        failed = [line for line in first.stdout.splitlines() if line.strip().startswith(f"FAILED {label}:")]
        assert len(failed) == 1 and "new charge" in failed[0], first
    assert "no new charge" not in first.text, "expired audio is only replaced by a new, paid task"

    # status (text and JSON) shows `expired` for exactly those chunks.
    text = cli(sim, "status", str(manifest))
    assert text.code == 0, text
    assert listed("expired at the API:", text.stdout, ". A plain rerun") == hit, text
    assert "--rerender-expired" in text.stdout and "new charge" in text.stdout
    book = status_json(sim, manifest)
    states = json_states(book)
    assert {label for label, state in states.items() if state == "expired"} == hit
    assert all(states[label] == "downloaded" for label in set(states) - hit), states
    assert set(book["expired"]) == hit
    expired_chars = sum(s["billed_chars"] for c in book["chapters"] for s in c["chunk_states"]
                        if s["state"] == "expired")

    # A plain rerun (faults gone) cannot recover them and pays for nothing.
    sim.set_faults(FaultProfile())
    tasks_before, requests_before = ledger["tasks_created"]["total"], creates(sim)
    plain = cli(sim, "run", str(manifest))
    assert plain.code == 1, plain
    assert sim.ledger()["tasks_created"]["total"] == tasks_before and creates(sim) == requests_before
    assert listed("expired at the API:", plain.stdout, ";") == hit, plain
    assert "0 task(s) created this run" in plain.stdout

    # --dry-run --rerender-expired shows what it would cost; nothing is sent.
    price = cost(expired_chars, len(hit))
    requests_before = sum(sim.ledger()["requests"].values())
    dry = cli(sim, "run", str(manifest), "--dry-run", "--rerender-expired")
    assert dry.code == 0, dry
    assert f"to render: {len(hit)} task(s), {expired_chars:,} billed characters, about {price:.2f}" in dry.stdout, dry
    assert sum(sim.ledger()["requests"].values()) == requests_before

    # A budget below that cost: refused before any request.
    refused = cli(sim, "run", str(manifest), "--rerender-expired", "--max-cost", f"{price - 0.5:.2f}")
    assert refused.code == 2, refused
    assert "exceeds --max-cost" in refused.stderr and "Traceback" not in refused.stderr
    assert sum(sim.ledger()["requests"].values()) == requests_before, "nothing may be sent over budget"

    # Enough budget: exactly those chunks are rendered again, each one new task.
    again = cli(sim, "run", str(manifest), "--rerender-expired", "--max-cost", f"{price + 0.5:.2f}")
    assert again.code == 0, again
    after = sim.ledger()
    assert after["tasks_created"]["total"] == tasks_before + len(hit)
    assert creates(sim) == CHUNKS + len(hit)
    texts = chunk_texts_by_key(output)
    labels = chunk_labels(output)
    rebought = {labels[k] for k, t in texts.items() if any(d["content_text"] == t for d in after["duplicates"])}
    assert rebought == hit, "only the expired chunks may be paid for twice"
    assert all(d["times_billed"] == 2 for d in after["duplicates"])
    assert journal_states(output) == {"downloaded": CHUNKS}


# --- 2. money reported as billed --------------------------------------------------------------------

BILLED_LINE = re.compile(
    r"(?P<created>\d+) task\(s\) created this run \((?P<chars>[\d,]+) characters\), of which (?P<refunded>\d+) "
    r"failed and are refunded \((?P<refunded_chars>[\d,]+) characters\): billed (?P<billed>\d+) task\(s\), "
    r"(?P<billed_chars>[\d,]+) characters")
STATUS_LINE = re.compile(
    r"billed so far: (?P<billed>\d+) task\(s\), (?P<billed_chars>[\d,]+) characters \(and (?P<refunded>\d+) "
    r"failed task\(s\), (?P<refunded_chars>[\d,]+) characters, refunded\)")


def _number(text: str) -> int:
    return int(text.replace(",", ""))


def assert_status_matches_ledger(sim: Simulator, manifest: Path) -> None:
    ledger = sim.ledger()
    refunded, refunded_chars = len(ledger["refunds"]), ledger["refunded_chars"]
    billed = ledger["tasks_created"]["audio"] - refunded
    book = status_json(sim, manifest)
    assert (book["tasks_billed"], book["chars_billed"], book["tasks_refunded"], book["chars_refunded"]) == \
        (billed, ledger["net_billed_chars"], refunded, refunded_chars), (book, ledger["refunds"])
    assert ledger["net_voice_fees"] == billed
    text = cli(sim, "status", str(manifest))
    match = STATUS_LINE.search(text.stdout)
    assert match, text
    assert {k: _number(v) for k, v in match.groupdict().items()} == {
        "billed": billed, "billed_chars": ledger["net_billed_chars"], "refunded": refunded,
        "refunded_chars": refunded_chars}


def test_created_refunded_and_billed_agree_with_the_ledger(sim: Simulator, tmp_path: Path) -> None:
    manifest = write_book(tmp_path, max_attempts=2)
    sim.set_faults(FaultProfile.parse("seed=4,fail=0.5"))
    first = cli(sim, "run", str(manifest))
    ledger = sim.ledger()
    assert ledger["refunds"], "the fault rate should fail some tasks: pick another seed"
    match = BILLED_LINE.search(first.stdout)
    assert match, first
    said = {k: _number(v) for k, v in match.groupdict().items()}
    refunded = len(ledger["refunds"])
    assert said == {"created": ledger["tasks_created"]["audio"], "chars": ledger["billed_chars"],
                    "refunded": refunded, "refunded_chars": ledger["refunded_chars"],
                    "billed": ledger["tasks_created"]["audio"] - refunded, "billed_chars": ledger["net_billed_chars"]}
    assert said["billed"] == said["created"] - said["refunded"]
    # api.max_attempts: 2 -> no chunk has more than two tasks; a chunk whose two tasks both failed is
    # listed as failed (refunded, a rerun tries again), one whose retry worked is done.
    owner = task_chunks(tmp_path / "build" / "book")
    per_chunk = Counter(owner.values())
    assert max(per_chunk.values()) <= 2 and sum(per_chunk.values()) == ledger["tasks_created"]["audio"]
    refunds = Counter(owner[r["task_id"]] for r in ledger["refunds"])
    twice = {label for label, n in refunds.items() if n == 2}
    assert twice and set(refunds) - twice, f"the seed should fail some chunk twice and another once: {refunds}"
    assert first.code == 1, first
    failed = {line.split(":")[0].strip()[len("FAILED "):] for line in first.stdout.splitlines()
              if line.strip().startswith("FAILED ")}
    assert failed == twice, first
    assert "failed tasks are refunded; a rerun tries again" in first.stdout
    assert f"{CHUNKS - len(twice)}/{CHUNKS} chunks done" in first.stdout
    assert "no new charge" not in first.text
    assert_status_matches_ledger(sim, manifest)

    # A rerun with the faults gone: status stays the account's running total.
    sim.set_faults(FaultProfile())
    second = cli(sim, "run", str(manifest))
    assert second.code == 0, second
    assert_status_matches_ledger(sim, manifest)
    assert sim.ledger()["duplicates"] == []


# --- 3. ambiguous creates ---------------------------------------------------------------------------

def test_unanswered_creates_are_counted_reported_and_stop_the_batch(sim: Simulator, tmp_path: Path) -> None:
    manifest = write_book(tmp_path, max_attempts=2, concurrency=1)
    output = tmp_path / "build" / "book"
    sim.set_faults(FaultProfile.parse("drop_after_create=1.0"))
    first = cli(sim, "run", str(manifest))
    assert first.code != 0, first
    assert first.seconds < 20, first
    ledger = sim.ledger()
    sent = creates(sim)
    # Two tries for the first chunk (max_attempts 2), one for the next: three in a row stop the batch.
    assert sent == 3 == ledger["tasks_created"]["audio"], ledger["requests"]
    per_text = {d["content_text"]: d["times_billed"] for d in ledger["duplicates"]}
    assert max(per_text.values(), default=1) <= 2

    # Every try is counted and reported as a possible duplicate charge, and the stop said once.
    assert f"{sent} create request(s) got no answer" in first.stdout, first
    assert f"possible duplicate charges: {sent}" in first.stdout, first
    assert first.stdout.count("STOPPED:") == 1 and "in a row got no usable answer" in first.stdout
    failed = [line for line in first.stdout.splitlines() if "FAILED" in line]
    assert len(failed) == 1 and "2 create request(s) got no usable answer" in failed[0], \
        "the first chunk ran out of tries; the batch stopped before the rest were tried"
    assert "Traceback" not in first.stderr

    # The journal's events match the tries, chunk by chunk.
    texts = chunk_texts_by_key(output)
    events = Counter(texts[key] for key in reported_ambiguous(output))
    assert sum(events.values()) == sent
    for text, times in per_text.items():
        assert events[text] == times, "each billed copy has its own report"
    assert max(events.values()) <= 2
    assert_no_unreported_duplicates(sim, output)
    assert status_json(sim, manifest)["possible_duplicates"] == sent

    # With the API answering again, a rerun completes; every duplicate the account paid is on record,
    # and every task the account was billed is either known to the journal or listed as possible.
    sim.set_faults(FaultProfile())
    second = cli(sim, "run", str(manifest))
    assert second.code == 0, second
    assert creates(sim) == sent + CHUNKS
    assert_no_unreported_duplicates(sim, output)
    book = status_json(sim, manifest)
    assert book["tasks_billed"] + book["possible_duplicates"] == sim.ledger()["tasks_created"]["audio"]


# --- 4. a base URL that is not the API --------------------------------------------------------------

class _NotTheApi:
    """A tiny HTTP server that answers everything with a redirect to ``target`` or with an HTML page."""

    def __init__(self, mode: str, target: str) -> None:
        self.mode = mode
        self.seen: list[tuple[str, str, bool]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                owner.seen.append((self.command, self.path, self.headers.get("Authorization") is not None))
                if mode == "html":
                    body = b"<!doctype html><html><body><h1>Welcome to JimmyAI</h1></body></html>"
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                else:
                    body = b""
                    self.send_response(int(mode))
                    self.send_header("Location", target + self.path)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_HEAD = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def impostor(sim: Simulator, request: pytest.FixtureRequest) -> Iterator[_NotTheApi]:
    server = _NotTheApi(request.param, sim.base_url)
    request.addfinalizer(server.close)
    yield server


def create_requests(server: _NotTheApi) -> int:
    return sum(1 for method, path, _ in server.seen if method == "POST" and path == AUDIO_PATH)


@pytest.mark.parametrize("impostor", ["301", "307", "html"], indirect=True)
def test_a_base_url_that_is_not_the_api_stops_at_once(sim: Simulator, tmp_path: Path, impostor: _NotTheApi) -> None:
    mode = impostor.mode
    manifest = write_book(tmp_path, concurrency=1)
    output = tmp_path / "build" / "book"
    result = cli(sim, "run", str(manifest), SOUNDCLONE_BASE_URL=impostor.url)
    assert result.code == 2, result
    assert "Traceback" not in result.text
    assert result.seconds < 20, result
    message = [line for line in result.stdout.splitlines() if line.startswith("STOPPED:")]
    assert len(message) == 1 and impostor.url in message[0], result
    assert "FAILED" not in result.stdout, "one message for the batch, not one per chunk"
    if mode == "html":
        assert "HTML page" in message[0]
        # Something behind the URL accepted a create: it may have made a task, and that is said.
        assert "a task may exist and be billed" in message[0]
        assert "possible duplicate charges: 1" in result.stdout and len(reported_ambiguous(output)) == 1
    else:
        assert f"redirect (HTTP {mode})" in message[0]
        assert f"{sim.base_url}{AUDIO_PATH}" in message[0], "the Location is named"
        assert f"--base-url {sim.base_url}" in message[0], "the base URL to use is named"
        assert "possible duplicate" not in result.stdout and reported_ambiguous(output) == []
    # The redirect was not followed: the simulator saw nothing, so the key never went there.
    assert sim.ledger()["requests"] == {}
    assert create_requests(impostor) == 1, impostor.seen
    assert len(impostor.seen) == 1, "no retry, no query: the run stops at the first answer"
    assert API_KEY not in result.text


@pytest.mark.parametrize("impostor", ["307", "html"], indirect=True)
def test_a_base_url_that_is_not_the_api_gets_one_create_at_the_default_concurrency(
        sim: Simulator, tmp_path: Path, impostor: _NotTheApi) -> None:
    manifest = write_book(tmp_path)
    result = cli(sim, "run", str(manifest), SOUNDCLONE_BASE_URL=impostor.url)
    assert result.code == 2, result
    assert sim.ledger()["requests"] == {}
    assert create_requests(impostor) <= 1, impostor.seen
    assert result.stdout.count("possible duplicate charges") <= 1 and "charges: 4" not in result.stdout


# --- 5. after an auth stop ---------------------------------------------------------------------------

def test_a_refused_key_leaves_no_possible_charge_behind(sim: Simulator, tmp_path: Path) -> None:
    manifest = write_book(tmp_path)
    output = tmp_path / "build" / "book"
    wrong = cli(sim, "run", str(manifest), SOUNDCLONE_API_KEY="sk-wrong-key")
    assert wrong.code == 2, wrong
    assert "refused the key" in wrong.text and "sk-wrong-key" not in wrong.text
    assert "Traceback" not in wrong.stderr
    assert sim.ledger()["tasks_created"]["total"] == 0

    right = cli(sim, "run", str(manifest))
    assert right.code == 0, right
    assert "possible duplicate charges" not in right.stdout, "a definite refusal created nothing"
    assert reported_ambiguous(output) == []
    assert status_json(sim, manifest)["possible_duplicates"] == 0
    ledger = sim.ledger()
    assert ledger["duplicates"] == [] and ledger["tasks_created"]["audio"] == CHUNKS


# --- 6. unreachable API ------------------------------------------------------------------------------

def test_an_unreachable_api_stops_the_batch_with_one_message(sim: Simulator, tmp_path: Path) -> None:
    manifest = write_book(tmp_path)
    output = tmp_path / "build" / "book"
    closed = f"http://127.0.0.1:{free_port()}"
    result = cli(sim, "run", str(manifest), SOUNDCLONE_BASE_URL=closed)
    assert result.seconds < 15, result
    assert result.code != 0, result
    assert "Traceback" not in result.text
    assert "possible duplicate" not in result.text and reported_ambiguous(output) == []
    message = [line for line in result.stdout.splitlines() if line.startswith("STOPPED:")]
    assert len(message) == 1 and "cannot reach" in message[0] and "rerun" in message[0], result
    assert "FAILED" not in result.stdout, "one message for the batch, not one per chunk"


# --- 7. unknown statuses -----------------------------------------------------------------------------

def test_an_unknown_status_fails_fast_and_keeps_the_task(sim: Simulator, tmp_path: Path) -> None:
    manifest = write_book(tmp_path)
    output = tmp_path / "build" / "book"
    sim.set_faults(FaultProfile.parse("status_unknown=1.0"))
    first = cli(sim, "run", str(manifest))
    assert first.code == 1, first
    assert first.seconds < 20, "an unknown status must not be polled until the 1-hour task timeout"
    ledger = sim.ledger()
    assert ledger["tasks_created"]["audio"] == CHUNKS == creates(sim), "nothing resubmitted"
    owner = task_chunks(output)
    for task in ledger["tasks"]:
        assert task["reported_status"] in UNKNOWN_STATUSES
        label = owner[task["id"]]
        lines = [line for line in first.stdout.splitlines() if line.strip().startswith(f"FAILED {label}:")]
        assert len(lines) == 1, first
        assert repr(task["reported_status"]) in lines[0] and task["id"] in lines[0]
        assert "kept" in lines[0] and "a rerun polls it again" in lines[0]
    assert "possible duplicate" not in first.stdout

    rerun = cli(sim, "run", str(manifest))
    assert rerun.code == 1, rerun
    assert sim.ledger()["tasks_created"]["total"] == CHUNKS and creates(sim) == CHUNKS, "a rerun only polls"
    assert "0 task(s) created this run" in rerun.stdout


def test_status_synonyms_complete_the_book_with_one_task_per_chunk(sim: Simulator, tmp_path: Path) -> None:
    manifest = write_book(tmp_path)
    sim.set_faults(FaultProfile.parse("status_alias=1.0"))
    result = cli(sim, "run", str(manifest))
    assert result.code == 0, result
    ledger = sim.ledger()
    assert len(ledger["task_faults"]["status_alias"]) == CHUNKS
    assert {t["reported_status"] for t in ledger["tasks"]} <= {"succeeded", "success", "finished", "done"}
    assert ledger["tasks_created"]["audio"] == CHUNKS == creates(sim)
    assert ledger["duplicates"] == [] and ledger["refunds"] == []
    assert status_json(sim, manifest)["totals"] == {"downloaded": CHUNKS}
