"""The journal: migrations, the transition table, task bookkeeping, WAL concurrency, damaged files."""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import Iterator
from dataclasses import astuple
from pathlib import Path

import pytest

from pipeline import store
from pipeline.errors import StateError, StorageError
from pipeline.layout import JOURNAL_NAME
from pipeline.models import Chunk, ChunkState, Voice
from pipeline.request import AudioRequest
from pipeline.store import MIGRATIONS, TRANSITIONS, ChunkRow, Journal

S = ChunkState


def chunk(n: int, *, chapter: str = "ch01", text: str | None = None) -> Chunk:
    body = text or f"Sentence number {n} of the test chapter."
    request = AudioRequest.for_chunk(body, voice=Voice(model_id="model_1"), language="English", subtitles="sentence")
    return Chunk(chapter_id=chapter, index=n, start=0, end=len(body), text=body, billed_chars=len(body),
                 pause_before_s=0.0, pause_after_s=0.0, request=request)


def K(n: int) -> str:
    return chunk(n).key


def begin(journal: Journal, n: int) -> ChunkRow:
    return journal.begin_submit(K(n), chunk(n).request)


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal.open(tmp_path, clock=Clock()) as opened:
        opened.sync_plan([chunk(n) for n in range(3)])
        yield opened


def raw(folder: Path) -> sqlite3.Connection:
    """A second, independent connection (another process would see the same)."""
    return sqlite3.connect(folder / JOURNAL_NAME, timeout=0.1, isolation_level=None)


def user_version(folder: Path) -> int:
    conn = raw(folder)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def path_to(state: ChunkState) -> list[ChunkState]:
    """The shortest chain of legal transitions from ``pending`` to ``state``."""
    queue: deque[list[ChunkState]] = deque([[S.PENDING]])
    while queue:
        chain = queue.popleft()
        if chain[-1] == state:
            return chain[1:]
        queue.extend(chain + [nxt] for nxt in sorted(TRANSITIONS[chain[-1]]) if nxt not in chain)
    raise AssertionError(f"{state} is unreachable from pending")


# --- migrations -----------------------------------------------------------------------------------

def test_migrates_an_empty_folder_to_the_latest_schema(tmp_path: Path) -> None:
    folder = tmp_path / "new" / "book"
    with Journal.open(folder) as journal:
        assert journal.path == folder / JOURNAL_NAME
    assert user_version(folder) == len(MIGRATIONS)
    conn = raw(folder)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"chunks", "tasks", "events", "voices"} <= tables
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_reopen_is_idempotent_and_keeps_rows(tmp_path: Path) -> None:
    with Journal.open(tmp_path) as journal:
        journal.sync_plan([chunk(1)])
        begin(journal, 1)
        journal.record_task(K(1), "audio_a")
    for _ in range(2):
        with Journal.open(tmp_path, create=False) as journal:
            row = journal.get(K(1))
            assert (row.state, row.task_id, row.attempts) == (S.SUBMITTED, "audio_a", 1)
            assert astuple(journal.billing())[:2] == (1, chunk(1).billed_chars)
    assert user_version(tmp_path) == len(MIGRATIONS)


def test_open_without_create_needs_an_existing_journal(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="has not been run yet"):
        Journal.open(tmp_path / "nothing", create=False)
    assert not (tmp_path / "nothing").exists()


def test_a_journal_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    Journal.open(tmp_path).close()
    conn = raw(tmp_path)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    with pytest.raises(StateError, match="newer version") as caught:
        Journal.open(tmp_path)
    assert str(tmp_path / JOURNAL_NAME) in str(caught.value) and "upgrade" in str(caught.value)
    assert caught.value.exit_code == 2
    assert user_version(tmp_path) == len(MIGRATIONS) + 1, "a refused journal must be left as it was"


def test_a_failing_migration_is_rolled_back_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Journal.open(tmp_path).close()
    broken = (*MIGRATIONS, "CREATE TABLE half_done (x INTEGER); CREATE TABLE broken (")
    monkeypatch.setattr(store, "MIGRATIONS", broken)
    with pytest.raises(StateError):
        Journal.open(tmp_path)
    monkeypatch.setattr(store, "MIGRATIONS", MIGRATIONS)
    assert user_version(tmp_path) == len(MIGRATIONS)
    conn = raw(tmp_path)
    try:
        assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'half_done'").fetchone() is None
    finally:
        conn.close()
    Journal.open(tmp_path).close()


@pytest.mark.parametrize("content", [b"this is not a database" * 300, b"SQLite format 3\0" + b"\xff" * 4080],
                         ids=["text", "bad-header"])
def test_a_damaged_file_is_a_state_error_that_says_what_to_do(tmp_path: Path, content: bytes) -> None:
    (tmp_path / JOURNAL_NAME).write_bytes(content)
    with pytest.raises(StateError) as caught:
        Journal.open(tmp_path)
    message = str(caught.value)
    assert str(tmp_path / JOURNAL_NAME) in message
    assert "move it aside" in message and "cache" in message
    assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)


def test_an_output_path_that_is_a_file_is_a_storage_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "book").write_text("not a folder")
    with pytest.raises(StorageError, match=r"book is a file where a folder should be.*another `output`"):
        Journal.open(tmp_path / "book")


def test_a_refused_journal_leaves_no_connection_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[sqlite3.Connection] = []
    real_connect = sqlite3.connect

    def recording(*args: object, **kwargs: object) -> sqlite3.Connection:
        conn = real_connect(*args, **kwargs)  # type: ignore[arg-type]
        opened.append(conn)
        return conn

    monkeypatch.setattr(store.sqlite3, "connect", recording)
    (tmp_path / JOURNAL_NAME).write_bytes(b"garbage" * 1000)
    with pytest.raises(StateError):
        Journal.open(tmp_path)
    assert len(opened) == 1
    leaked = opened[0]
    try:
        leaked.execute("SELECT 1")
    except sqlite3.ProgrammingError:
        return  # closed, as it should be
    leaked.close()
    raise AssertionError("the connection of a refused journal is still open")


# --- transitions ----------------------------------------------------------------------------------

ALLOWED = [(a, b) for a, targets in TRANSITIONS.items() for b in sorted(targets)]
ILLEGAL = [(a, b) for a in S for b in S if a != b and b not in TRANSITIONS[a]]


def test_the_table_covers_every_state_and_forbids_skipping_the_api() -> None:
    assert set(TRANSITIONS) == set(S)
    assert all(targets <= set(S) for targets in TRANSITIONS.values())
    assert S.DOWNLOADED not in TRANSITIONS[S.PENDING] | TRANSITIONS[S.SUBMITTING] | TRANSITIONS[S.FAILED]
    assert S.SUBMITTED not in TRANSITIONS[S.PENDING], "a task id is only recorded after the intent"
    assert ILLEGAL, "a table that allows everything checks nothing"


@pytest.mark.parametrize(("source", "target"), ALLOWED, ids=[f"{a}->{b}" for a, b in ALLOWED])
def test_every_listed_transition_is_allowed(journal: Journal, source: ChunkState, target: ChunkState) -> None:
    for step in path_to(source):
        journal.transition(K(0), step)
    assert journal.get(K(0)).state == source
    row = journal.transition(K(0), target, error="why")
    assert row.state == target and row.error == "why"
    assert journal.get(K(0)).state == target


@pytest.mark.parametrize(("source", "target"), ILLEGAL, ids=[f"{a}->{b}" for a, b in ILLEGAL])
def test_every_other_transition_raises(journal: Journal, source: ChunkState, target: ChunkState) -> None:
    for step in path_to(source):
        journal.transition(K(0), step)
    before = journal.get(K(0))
    with pytest.raises(RuntimeError, match=f"illegal transition {source} -> {target}"):
        journal.transition(K(0), target, task_id="audio_zz")
    assert journal.get(K(0)) == before, "a refused transition must change nothing"


def test_transition_rejects_unknown_fields_and_keys(journal: Journal) -> None:
    with pytest.raises(ValueError, match="state_hack"):
        journal.transition(K(0), S.SUBMITTING, state_hack="x")
    with pytest.raises(KeyError):
        journal.transition("nope", S.SUBMITTING)
    assert journal.get(K(0)).state == S.PENDING


def test_each_transition_is_committed_before_it_returns(journal: Journal, tmp_path: Path) -> None:
    other = raw(tmp_path)
    try:
        begin(journal, 1)
        assert other.execute("SELECT state FROM chunks WHERE key = ?", (K(1),)).fetchone() == ("submitting",)
        journal.record_task(K(1), "audio_1")
        assert other.execute("SELECT state, task_id FROM chunks WHERE key = ?", (K(1),)).fetchone() == (
            "submitted", "audio_1")
    finally:
        other.close()


# --- bookkeeping ----------------------------------------------------------------------------------

def test_sync_plan_adds_new_chunks_and_never_resets_existing_ones(journal: Journal) -> None:
    begin(journal, 0)
    journal.sync_plan([chunk(n) for n in range(5)])
    rows = journal.rows()
    assert sorted(rows) == sorted(K(n) for n in range(5))
    assert rows[K(0)].state == S.SUBMITTING and rows[K(0)].attempts == 1
    assert rows[K(4)].state == S.PENDING and rows[K(4)].model_id == "model_1"
    assert set(journal.rows([K(1), K(3), "missing", K(1)])) == {K(1), K(3)}


def test_rows_reads_more_keys_than_one_sql_batch(tmp_path: Path) -> None:
    with Journal.open(tmp_path) as journal:
        journal.sync_plan([chunk(n) for n in range(1203)])
        assert len(journal.rows(K(n) for n in range(1203))) == 1203


def test_begin_submit_counts_attempts_and_clears_the_last_try(journal: Journal) -> None:
    first = begin(journal, 0)
    assert (first.state, first.attempts, first.task_id) == (S.SUBMITTING, 1, None)
    journal.record_task(K(0), "audio_1")
    journal.transition(K(0), S.PENDING, error="task audio_1 failed: boom")
    second = begin(journal, 0)
    assert (second.state, second.attempts, second.task_id, second.error) == (S.SUBMITTING, 2, None, None)
    # a crash after the intent: the next run submits again from `submitting`, counting the try
    assert begin(journal, 0).attempts == 3
    journal.record_task(K(0), "audio_3")
    with pytest.raises(RuntimeError, match="illegal"):
        begin(journal, 0)  # a task in flight is polled, never submitted again
    assert journal.get(K(0)).attempts == 3


def test_record_task_records_the_task_and_the_state(journal: Journal, tmp_path: Path) -> None:
    begin(journal, 2)
    journal.record_task(K(2), "audio_x")
    row = journal.get(K(2))
    assert (row.state, row.task_id) == (S.SUBMITTED, "audio_x")
    assert row.request == chunk(2).request and row.subtitles == "sentence"  # what was paid for
    conn = raw(tmp_path)
    try:
        assert conn.execute("SELECT task_id, key, billed_chars, status FROM tasks").fetchall() == [
            ("audio_x", K(2), chunk(2).billed_chars, "submitted")]
    finally:
        conn.close()
    assert astuple(journal.billing())[:2] == (1, chunk(2).billed_chars)


def test_billed_excludes_failed_tasks_and_counts_each_task_once(journal: Journal) -> None:
    assert astuple(journal.billing())[:2] == (0, 0)
    chars = [chunk(n).billed_chars for n in range(3)]
    for n, task_id in enumerate(["audio_0", "audio_1", "audio_2"]):
        begin(journal, n)
        journal.record_task(K(n), task_id)
    journal.record_task_status("audio_1", "failed", "refunded")
    journal.record_task_status("audio_2", "completed")
    assert astuple(journal.billing())[:2] == (2, chars[0] + chars[2])
    # the failed chunk is resubmitted: a second, billed task
    journal.transition(K(1), S.PENDING)
    begin(journal, 1)
    journal.record_task(K(1), "audio_1b")
    assert astuple(journal.billing())[:2] == (3, sum(chars))
    journal.transition(K(1), S.PENDING)
    begin(journal, 1)
    journal.record_task(K(1), "audio_1")  # a task id seen again is not a new charge, nor un-refunded
    assert astuple(journal.billing())[:2] == (3, sum(chars))
    assert astuple(journal.billing())[2:] == (1, chars[1])  # the refunded task, shown apart


def test_possible_duplicates_are_counted_and_logged(journal: Journal) -> None:
    journal.note_ambiguous(K(1), "create retried after: ReadTimeout")
    journal.note_ambiguous(K(1), "resubmitted after an interrupted create")
    journal.add_event(K(2), "task-failed", "boom")
    assert journal.get(K(1)).ambiguous == 2
    events = journal.events("possible-duplicate")
    assert [(key, detail) for _, key, _, detail in events] == [
        (K(1), "create retried after: ReadTimeout"), (K(1), "resubmitted after an interrupted create")]
    assert len(journal.events()) == 3
    times = [at for at, *_ in journal.events()]
    assert times == sorted(times)


def test_voice_activation_is_recorded_once(journal: Journal) -> None:
    journal.note_voice_used("model_1")
    assert not journal.voice_activated("model_1") and not journal.voice_activated("model_unknown")
    journal.note_voice_activated("model_1")
    assert journal.voice_activated("model_1")
    journal.note_voice_activated("model_2")  # never seen before: recorded and activated at once
    assert journal.voice_activated("model_2")


# --- concurrency ------------------------------------------------------------------------------

def test_a_reader_is_not_blocked_while_a_writer_holds_the_journal(
        journal: Journal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "BUSY_TIMEOUT_S", 0.5)
    writer = raw(tmp_path)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("UPDATE chunks SET state = 'failed' WHERE key = ?", (K(0),))
        # `audiobook status` opens its own journal while `run` writes: it must read, not wait
        with Journal.open(tmp_path, create=False) as reader:
            assert reader.get(K(0)).state == S.PENDING  # sees the last committed state
            assert len(reader.rows()) == 3 and astuple(reader.billing())[:2] == (0, 0)
        assert journal.get(K(0)).state == S.PENDING
        writer.execute("COMMIT")
        assert journal.get(K(0)).state == S.FAILED
    finally:
        writer.close()


def test_a_second_writer_gets_a_state_error_not_a_hang(
        journal: Journal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "BUSY_TIMEOUT_S", 0.2)
    with Journal.open(tmp_path) as second:
        writer = raw(tmp_path)
        try:
            writer.execute("BEGIN IMMEDIATE")
            with pytest.raises(StateError, match="busy"):
                begin(second, 0)
            writer.execute("ROLLBACK")
        finally:
            writer.close()
        assert begin(second, 0).state == S.SUBMITTING


# --- first-release rows ------------------------------------------------------------------------

def _legacy_row(folder: Path, key: str, text: str, state: str = "downloaded") -> None:
    conn = raw(folder)
    try:
        conn.execute("INSERT INTO chunks (key, chapter_id, idx, text, billed_chars, model_id, state, updated_at) "
                     "VALUES (?, 'ch01', 0, ?, ?, 'model_1', ?, 0)", (key, text, len(text), state))
    finally:
        conn.close()


def test_rows_for_finds_a_first_release_row_by_its_legacy_key_and_prefers_the_richest_take(tmp_path: Path) -> None:
    wanted = chunk(7).request
    legacy = wanted.legacy_keys()
    with Journal.open(tmp_path) as journal:
        _legacy_row(tmp_path, legacy["off"], wanted.text)
        _legacy_row(tmp_path, legacy["word"], wanted.text)
        found = journal.rows_for([wanted])
        assert found[wanted.key].key == legacy["word"] and found[wanted.key].subtitles == "word"
        journal.adopt(legacy["word"], wanted, subtitles="word")
        row = journal.get(wanted.key)
        assert row.request == wanted.with_subtitles("word") and row.subtitles == "word"
        assert journal.rows_for([wanted])[wanted.key].key == wanted.key  # adopted: found under its own key
