"""The journal: one SQLite file per book (``<output>/journal.sqlite``); the only module with SQL.

Every chunk is a row keyed by its content key, whose ``state`` moves only along :data:`TRANSITIONS`.
Each transition is its own committed transaction (WAL, ``synchronous=FULL``), so a crash or
``kill -9`` at any instant leaves a state the next run can resume from:

    pending ──> submitting ──> submitted ──> completed ──> downloaded
       ^            │  │           │  │          │  │          │
       └────────────┘  └──> failed <┘  └─────────┘  └──> expired (its audio is gone at the API)
       ^                     │                                 │
       └─────────────────────┘  (a new run retries failures)   │
                     completed <───────────────────────────────┘ (cached audio lost: download again)

  ``expired`` goes back to ``pending`` only when the user asks for a new, paid render of it
  (``run --rerender-expired``); a plain rerun leaves it alone.

* ``submitting`` is written *before* the create request is sent: a row found in it after a crash
  may or may not have a billed task behind it (the engine reports the resubmission as a possible
  duplicate charge).
* ``submitted`` is written the moment the task id returns, before anything else happens.
* Each row keeps the create body of the task it holds (``body``) and the subtitles mode that body
  asked for (``subtitles``): ``status --json`` shows what was paid for, and the plan knows whether
  the held take serves the current request (:meth:`pipeline.request.AudioRequest.satisfied_by`).
* Rows of a first-release journal are keyed by the old key formula; :meth:`Journal.rows_for` finds
  them by their legacy keys and :meth:`Journal.adopt` re-keys them, so an old book is not rendered
  again.
* Every failed ``sqlite3`` call, read or write, becomes a :class:`StateError` naming the journal.

Schema changes go through :data:`MIGRATIONS`, numbered by ``PRAGMA user_version``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import StateError
from pipeline.fsio import ensure_dir, storage_error
from pipeline.layout import JOURNAL_NAME, LOCK_NAME
from pipeline.models import Chunk, ChunkState
from pipeline.request import SUBTITLE_LEVELS, AudioRequest

BUSY_TIMEOUT_S = 30.0

S = ChunkState
TRANSITIONS: dict[ChunkState, frozenset[ChunkState]] = {
    S.PENDING: frozenset({S.SUBMITTING, S.FAILED}),
    S.SUBMITTING: frozenset({S.SUBMITTED, S.PENDING, S.FAILED}),
    S.SUBMITTED: frozenset({S.COMPLETED, S.PENDING, S.FAILED}),
    S.COMPLETED: frozenset({S.DOWNLOADED, S.PENDING, S.FAILED, S.EXPIRED}),
    S.DOWNLOADED: frozenset({S.COMPLETED, S.PENDING}),
    S.FAILED: frozenset({S.PENDING}),
    S.EXPIRED: frozenset({S.PENDING}),
}

MIGRATIONS: tuple[str, ...] = (
    # 1: chunks, the tasks behind them, an event log, voices seen.
    """
    CREATE TABLE chunks (
        key TEXT PRIMARY KEY,
        chapter_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        text TEXT NOT NULL,
        billed_chars INTEGER NOT NULL,
        model_id TEXT NOT NULL,
        state TEXT NOT NULL,
        task_id TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        audio_path TEXT,
        subtitle_path TEXT,
        duration_s REAL,
        error TEXT,
        ambiguous INTEGER NOT NULL DEFAULT 0,
        updated_at REAL NOT NULL
    );
    CREATE INDEX chunks_state ON chunks(state);
    CREATE TABLE tasks (
        task_id TEXT PRIMARY KEY,
        key TEXT NOT NULL,
        billed_chars INTEGER NOT NULL,
        created_at REAL NOT NULL,
        status TEXT NOT NULL DEFAULT 'submitted',
        error TEXT
    );
    CREATE INDEX tasks_key ON tasks(key);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        key TEXT,
        kind TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE TABLE voices (
        model_id TEXT PRIMARY KEY,
        first_used_at REAL NOT NULL,
        activated_at REAL
    );
    """,
    # 2: the latest plan of each chapter (stable re-chunking after an edit), and retakes.
    """
    CREATE TABLE chapter_plans (
        chapter_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        key TEXT NOT NULL,
        text TEXT NOT NULL,
        PRIMARY KEY (chapter_id, idx)
    );
    CREATE TABLE takes (
        key TEXT NOT NULL,
        take INTEGER NOT NULL,
        state TEXT NOT NULL,
        task_id TEXT,
        audio_path TEXT,
        subtitle_path TEXT,
        created_at REAL NOT NULL,
        PRIMARY KEY (key, take)
    );
    CREATE TABLE selected_takes (
        key TEXT PRIMARY KEY,
        take INTEGER NOT NULL
    );
    """,
    # 3: the request body behind each chunk and take, the subtitles it asked for, retake tasks in
    # the billing, and the book that owns the folder. Old rows keep NULL bodies (legacy keys).
    """
    ALTER TABLE chunks ADD COLUMN body TEXT;
    ALTER TABLE chunks ADD COLUMN subtitles TEXT;
    ALTER TABLE takes ADD COLUMN body TEXT;
    ALTER TABLE takes ADD COLUMN subtitles TEXT;
    ALTER TABLE tasks ADD COLUMN take INTEGER NOT NULL DEFAULT 1;
    CREATE TABLE book (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        manifest TEXT NOT NULL,
        title TEXT NOT NULL,
        claimed_at REAL NOT NULL
    );
    """,
    # 4: the QC of every downloaded take (pipeline.qc): what was measured, and the last verdict; and
    # why each extra take was made (user, qc, review), so automatic retakes are counted.
    """
    CREATE TABLE take_qc (
        key TEXT NOT NULL,
        take INTEGER NOT NULL,
        measures TEXT NOT NULL,
        verdict TEXT,
        checks TEXT,
        updated_at REAL NOT NULL,
        PRIMARY KEY (key, take)
    );
    ALTER TABLE takes ADD COLUMN reason TEXT NOT NULL DEFAULT 'user';
    """,
)




@contextmanager
def existing_journal(folder: Path) -> Iterator[Journal | None]:
    """The book's journal if it has one (never creates it: reading must not write), else None."""
    if not (folder / JOURNAL_NAME).exists():
        yield None
        return
    with Journal.open(folder, readonly=True) as journal:
        yield journal


@contextmanager
def run_lock(folder: Path) -> Iterator[None]:
    """Hold the book's run lock: two runs of one book at once would each submit the same chunks.

    An OS lock (``flock``) on ``<output>/.run.lock``: it is released when the process ends, however it
    ends, so a ``kill -9`` never leaves a stale lock. Reading (``status``) needs no lock.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on POSIX: no lock, as before
        yield
        return
    ensure_dir(folder)
    path = folder / LOCK_NAME
    try:
        handle = path.open("a+")
    except OSError as exc:
        raise storage_error(exc, path, doing="create the lock file") from exc
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise StateError(f"another audiobook command ({holder}) is working on {folder}; wait for it to "
                             "finish (see `audiobook status`) or stop it, then rerun") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _unwritable(folder: Path) -> bool:
    """Whether ``folder`` is on a read-only file system or not writable for this user."""
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return True
    except OSError:
        return False
    return not os.access(folder, os.W_OK)


def _open_error(path: Path, exc: sqlite3.Error) -> StateError:
    """Why a journal would not open, with the fix; never advise moving away a journal that is merely
    unwritable (it holds the ids of paid tasks)."""
    folder = path.parent
    text = str(exc)
    if _unwritable(folder):
        return StateError(f"the journal {path} cannot be opened for writing: {folder} is read-only (or not writable "
                          "for this user). Make it writable, then rerun the same command")
    if "not a database" in text or "malformed" in text:
        return StateError(f"the journal {path} is damaged ({text}). Keep a copy, move it aside and rerun: finished "
                          "audio in cache/ is kept, but tasks still rendering are forgotten and paid for again")
    return StateError(f"the journal {path} cannot be opened ({text}); check that {folder} is a writable folder "
                      "with free space, then rerun")


@dataclass(frozen=True)
class ChunkRow:
    key: str
    chapter_id: str
    idx: int
    text: str
    billed_chars: int
    model_id: str
    state: ChunkState
    task_id: str | None
    attempts: int
    audio_path: str | None
    subtitle_path: str | None
    duration_s: float | None
    error: str | None
    ambiguous: int
    updated_at: float
    body: str | None = None
    subtitles: str | None = None

    @property
    def request(self) -> AudioRequest | None:
        """The create body behind this row (None for a row of a first-release journal)."""
        return AudioRequest(self.body) if self.body else None


@dataclass(frozen=True)
class TakeRow:
    key: str
    take: int
    state: str
    task_id: str | None
    audio_path: str | None
    subtitle_path: str | None
    created_at: float
    body: str | None
    subtitles: str | None


@dataclass(frozen=True)
class Billing:
    """What the API billed for this book: tasks that were created and did not fail, and apart from
    them the failed tasks the API refunds (soundclone-api.md, "Billing")."""

    tasks: int
    chars: int
    refunded_tasks: int
    refunded_chars: int


@dataclass(frozen=True)
class Owner:
    """The book a folder belongs to: the manifest it was first run from, and that book's title."""

    manifest: str
    title: str


_COLUMNS = ("key, chapter_id, idx, text, billed_chars, model_id, state, task_id, attempts, audio_path, "
            "subtitle_path, duration_s, error, ambiguous, updated_at, body, subtitles")
_TAKE_COLUMNS = "key, take, state, task_id, audio_path, subtitle_path, created_at, body, subtitles"
# Tables whose rows name a chunk key (re-keyed together when a legacy row is adopted).
_KEYED_TABLES = ("chunks", "tasks", "events", "chapter_plans", "takes", "selected_takes", "take_qc")


def _row(values: tuple[object, ...]) -> ChunkRow:
    row = ChunkRow(*values)  # type: ignore[arg-type]
    return ChunkRow(**{**row.__dict__, "state": ChunkState(row.state)})


class Journal:
    """A book's journal. Open with :meth:`open`; all methods commit before they return."""

    def __init__(self, conn: sqlite3.Connection, path: Path, clock: Callable[[], float]) -> None:
        self._conn = conn
        self.path = path
        self._clock = clock

    @classmethod
    def open(cls, folder: Path, *, clock: Callable[[], float] = time.time, create: bool = True,
             readonly: bool = False) -> Journal:
        """Open (and, unless ``readonly``, create and migrate) the journal in ``folder``.

        A ``readonly`` journal is for readers (``status``, ``plan``): when the folder cannot be
        written (a read-only disk) it is opened immutable, so reading still works.
        """
        path = folder / JOURNAL_NAME
        if (not create or readonly) and not path.exists():
            raise StateError(f"no journal at {path}: this book has not been run yet")
        if not readonly:
            ensure_dir(folder)
        try:
            return cls._connect(path, clock)
        except sqlite3.Error as exc:
            if readonly and _unwritable(folder):
                return cls._connect_immutable(path, clock)
            raise _open_error(path, exc) from exc

    @classmethod
    def _connect(cls, path: Path, clock: Callable[[], float]) -> Journal:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA foreign_keys=ON")
            journal = cls(conn, path, clock)
            journal._migrate()
        except BaseException:
            conn.close()
            raise
        return journal

    @classmethod
    def _connect_immutable(cls, path: Path, clock: Callable[[], float]) -> Journal:
        try:
            conn = sqlite3.connect(f"{path.resolve().as_uri()}?immutable=1", uri=True, isolation_level=None,
                                   check_same_thread=False)
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.Error as exc:
            raise _open_error(path, exc) from exc
        if version != len(MIGRATIONS):
            conn.close()
            raise StateError(f"the journal {path} is from another version (schema {version}) and its folder cannot be "
                             "written, so it cannot be brought up to date; make the folder writable and rerun")
        return cls(conn, path, clock)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """One transaction. ``durable`` commits are fsynced (they must survive a power cut: the intent to
        create a billed task, and its id); the others survive a crash or ``kill -9`` (WAL), and on a
        power cut fall back to a state the engine resumes from at no cost (e.g. download again).
        """
        try:
            self._conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                # also when COMMIT itself failed: SQLITE_BUSY leaves the transaction open
                if self._conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self._conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise self._error(exc, "written") from exc

    def _read(self, query: str, args: Iterable[object] = ()) -> list[Any]:
        """Run a read query; a failure is a :class:`StateError` like a failed write."""
        try:
            return self._conn.execute(query, tuple(args)).fetchall()
        except sqlite3.Error as exc:
            raise self._error(exc, "read") from exc

    def _error(self, exc: sqlite3.Error, doing: str) -> StateError:
        text = str(exc)
        if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
            return StateError(f"the journal {self.path} is busy ({text}); another process holds it. Wait for "
                              "it, then rerun")
        if "disk is full" in text or "full" in text.split():
            return StateError(f"the journal {self.path} cannot be {doing}: the disk is full. Free space, then "
                              "rerun (nothing finished is lost)")
        if "readonly" in text or "read-only" in text:
            return StateError(f"the journal {self.path} cannot be {doing}: the folder is read-only. Make it "
                              "writable, or choose another `output`")
        return StateError(f"the journal {self.path} cannot be {doing} ({text}); if it is damaged, move it aside "
                          "and rerun (finished audio in cache/ is kept)")

    def _migrate(self) -> None:
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise StateError(f"the journal {self.path} was written by a newer version of audiobook "
                             f"(schema {version}); upgrade soundclone-audiobook")
        for number in range(version, len(MIGRATIONS)):
            with self._tx() as conn:
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number + 1}")

    # --- the owner of the folder ---------------------------------------------------------------

    def owner(self) -> Owner | None:
        found = self._read("SELECT manifest, title FROM book WHERE id = 1")
        return Owner(*found[0]) if found else None

    def claim(self, *, manifest: str, title: str) -> None:
        """Record (or move) the folder's ownership to ``manifest``."""
        with self._tx() as conn:
            conn.execute("INSERT INTO book (id, manifest, title, claimed_at) VALUES (1, ?, ?, ?) "
                         "ON CONFLICT(id) DO UPDATE SET manifest = excluded.manifest, title = excluded.title",
                         (manifest, title, self._clock()))

    # --- chunks ---------------------------------------------------------------------------------

    def sync_plan(self, chunks: Iterable[Chunk]) -> None:
        """Make sure every planned chunk has a row (new ones start ``pending``, with the body they will
        send)."""
        now = self._clock()
        with self._tx() as conn:
            conn.executemany(
                "INSERT INTO chunks (key, chapter_id, idx, text, billed_chars, model_id, state, updated_at, body) "
                "VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?) ON CONFLICT(key) DO NOTHING",
                [(c.key, c.chapter_id, c.index, c.text, c.billed_chars, c.request.model_id, now, c.request.body_json)
                 for c in chunks],
            )

    def get(self, key: str) -> ChunkRow:
        found = self._read(f"SELECT {_COLUMNS} FROM chunks WHERE key = ?", (key,))
        if not found:
            raise KeyError(key)
        return _row(found[0])

    def rows(self, keys: Iterable[str] | None = None) -> dict[str, ChunkRow]:
        if keys is None:
            return {r.key: r for r in map(_row, self._read(f"SELECT {_COLUMNS} FROM chunks"))}
        wanted = list(dict.fromkeys(keys))
        out: dict[str, ChunkRow] = {}
        for start in range(0, len(wanted), 500):
            batch = wanted[start:start + 500]
            marks = ",".join("?" * len(batch))
            for values in self._read(f"SELECT {_COLUMNS} FROM chunks WHERE key IN ({marks})", batch):
                row = _row(values)
                out[row.key] = row
        return out

    def rows_for(self, requests: Iterable[AudioRequest]) -> dict[str, ChunkRow]:
        """The row behind each request, by its key: the row under the request's own key, else a
        first-release row under one of its legacy keys (returned with ``subtitles`` set to the mode
        that key stood for; adopt it with :meth:`adopt` before writing). Reads only."""
        requests = list({r.key: r for r in requests}.values())
        found = self.rows(r.key for r in requests)
        missing = [r for r in requests if r.key not in found]
        if not missing:
            return found
        legacy = {old: (r, mode) for r in missing for mode, old in r.legacy_keys().items()}
        adopted: dict[str, ChunkRow] = {}
        for old_key, row in self.rows(legacy).items():
            request, mode = legacy[old_key]
            if row.body is not None:
                continue  # a current row that merely shares the key space: not a legacy one
            best = adopted.get(request.key)  # rendered in several modes: the richest take serves most
            if best is None or SUBTITLE_LEVELS[mode] > SUBTITLE_LEVELS[best.subtitles or "off"]:
                adopted[request.key] = ChunkRow(**{**row.__dict__, "subtitles": mode})
        return {**found, **adopted}

    def adopt(self, old_key: str, request: AudioRequest, *, subtitles: str) -> None:
        """Re-key a first-release row (and everything that names it) to ``request.key`` and record
        the body it was rendered with. The caller moves the cache files first (idempotently)."""
        new_key = request.key
        with self._tx(durable=True) as conn:
            if conn.execute("SELECT 1 FROM chunks WHERE key = ?", (new_key,)).fetchone():
                return
            for table in _KEYED_TABLES:
                conn.execute(f"UPDATE {table} SET key = ? WHERE key = ?", (new_key, old_key))
            conn.execute("UPDATE chunks SET body = ?, subtitles = ? WHERE key = ?",
                         (request.with_subtitles(subtitles).body_json, subtitles, new_key))
            conn.execute("INSERT INTO events (at, key, kind, detail) VALUES (?, ?, 'adopted', ?)",
                         (self._clock(), new_key, f"first-release key {old_key}"))

    def transition(self, key: str, to: ChunkState, *, durable: bool = False, **fields: object) -> ChunkRow:
        """Move ``key`` to ``to`` (checked against :data:`TRANSITIONS`) and set ``fields``."""
        allowed = {"task_id", "attempts", "audio_path", "subtitle_path", "duration_s", "error", "body", "subtitles"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"unknown chunk fields {sorted(unknown)}")
        with self._tx(durable=durable) as conn:
            found = conn.execute("SELECT state FROM chunks WHERE key = ?", (key,)).fetchone()
            if found is None:
                raise KeyError(key)
            current = ChunkState(found[0])
            if to != current and to not in TRANSITIONS[current]:
                raise RuntimeError(f"chunk {key}: illegal transition {current} -> {to}")
            sets = ", ".join(f"{name} = ?" for name in fields)
            conn.execute(f"UPDATE chunks SET state = ?, updated_at = ?{', ' + sets if sets else ''} WHERE key = ?",
                         (to.value, self._clock(), *fields.values(), key))
        return self.get(key)

    def begin_submit(self, key: str, request: AudioRequest) -> ChunkRow:
        """Record the intent to create a task with ``request`` (right before the request is sent)."""
        row = self.get(key)
        return self.transition(key, S.SUBMITTING, durable=True, attempts=row.attempts + 1, error=None, task_id=None,
                               body=request.body_json, subtitles=request.subtitles)

    def abandon_submit(self, key: str, error: str | None = None) -> ChunkRow:
        """The create surely created nothing (refused, or never sent): back to ``pending``, attempt not counted."""
        row = self.get(key)
        return self.transition(key, S.PENDING, attempts=max(0, row.attempts - 1), error=error)

    def record_task(self, key: str, task_id: str, *, take: int = 1) -> None:
        """Record a task id the moment the API returns it (take 1 moves the chunk to ``submitted``)."""
        with self._tx(durable=True) as conn:
            found = conn.execute("SELECT billed_chars, state FROM chunks WHERE key = ?", (key,)).fetchone()
            if found is None:
                raise KeyError(key)
            if take == 1 and ChunkState(found[1]) not in (S.SUBMITTING, S.SUBMITTED):
                raise RuntimeError(f"chunk {key}: a task id arrived in state {found[1]}")
            conn.execute("INSERT OR IGNORE INTO tasks (task_id, key, billed_chars, created_at, take) "
                         "VALUES (?, ?, ?, ?, ?)", (task_id, key, found[0], self._clock(), take))
            if take == 1:
                conn.execute("UPDATE chunks SET state = 'submitted', task_id = ?, updated_at = ? WHERE key = ?",
                             (task_id, self._clock(), key))
            else:
                conn.execute("UPDATE takes SET state = 'submitted', task_id = ? WHERE key = ? AND take = ?",
                             (task_id, key, take))

    def record_task_status(self, task_id: str, status: str, error: str | None = None) -> None:
        """A task's last known status; a ``failed`` one stays failed (the API refunded it)."""
        with self._tx() as conn:
            conn.execute("UPDATE tasks SET status = ?, error = ? WHERE task_id = ? AND status != 'failed'",
                         (status, error, task_id))

    def forget_tasks_in_flight(self) -> int:
        """Send every chunk whose task is unfinished or undownloaded back to ``pending``.

        Only for a rehearsal on a fresh simulator, which cannot know an earlier one's tasks.
        """
        with self._tx() as conn:
            cursor = conn.execute("UPDATE chunks SET state = 'pending', task_id = NULL, updated_at = ? "
                                  "WHERE state IN ('submitting', 'submitted', 'completed', 'expired')",
                                  (self._clock(),))
            conn.execute("UPDATE takes SET state = 'abandoned' WHERE state IN ('submitting', 'submitted')")
        return cursor.rowcount

    def note_ambiguous(self, key: str, detail: str) -> None:
        """A create for ``key`` may have been billed without us learning its task id."""
        with self._tx() as conn:
            conn.execute("UPDATE chunks SET ambiguous = ambiguous + 1 WHERE key = ?", (key,))
            conn.execute("INSERT INTO events (at, key, kind, detail) VALUES (?, ?, 'possible-duplicate', ?)",
                         (self._clock(), key, detail))

    def add_event(self, key: str | None, kind: str, detail: str) -> None:
        with self._tx() as conn:
            conn.execute("INSERT INTO events (at, key, kind, detail) VALUES (?, ?, ?, ?)",
                         (self._clock(), key, kind, detail))

    def events(self, kind: str | None = None) -> list[tuple[float, str | None, str, str]]:
        query = "SELECT at, key, kind, detail FROM events"
        args: tuple[str, ...] = ()
        if kind:
            query += " WHERE kind = ?"
            args = (kind,)
        return [(float(at), key, str(kind_), str(detail)) for at, key, kind_, detail in
                self._read(query + " ORDER BY id", args)]

    def billing(self) -> Billing:
        """Tasks and characters billed (created, not failed) and refunded (failed), retakes included."""
        found = self._read(
            "SELECT COALESCE(SUM(status != 'failed'), 0), COALESCE(SUM(CASE WHEN status != 'failed' "
            "THEN billed_chars END), 0), COALESCE(SUM(status = 'failed'), 0), COALESCE(SUM(CASE WHEN "
            "status = 'failed' THEN billed_chars END), 0) FROM tasks")
        return Billing(*(int(v) for v in found[0]))

    # --- chapter plans -------------------------------------------------------------------------

    def save_chapter_plan(self, chapter_id: str, chunks: Iterable[Chunk]) -> None:
        """Remember the chunks a chapter was last cut into (the anchors for the next edit)."""
        with self._tx() as conn:
            conn.execute("DELETE FROM chapter_plans WHERE chapter_id = ?", (chapter_id,))
            conn.executemany("INSERT INTO chapter_plans (chapter_id, idx, key, text) VALUES (?, ?, ?, ?)",
                             [(chapter_id, c.index, c.key, c.text) for c in chunks])

    def chapter_plans(self) -> dict[str, list[tuple[str, str]]]:
        """Every chapter's last plan: ``{chapter_id: [(key, text), ...]}`` in chunk order."""
        out: dict[str, list[tuple[str, str]]] = {}
        for chapter_id, key, text in self._read(
                "SELECT chapter_id, key, text FROM chapter_plans ORDER BY chapter_id, idx"):
            out.setdefault(chapter_id, []).append((key, text))
        return out

    # --- takes ----------------------------------------------------------------------------------

    def begin_take(self, key: str, request: AudioRequest, *, reason: str = "user") -> int:
        """Record the intent to render a new take of ``key`` (``reason``: user, qc or review); returns
        its take number (2, 3, ...)."""
        with self._tx(durable=True) as conn:
            (last,) = conn.execute("SELECT COALESCE(MAX(take), 1) FROM takes WHERE key = ?", (key,)).fetchone()
            take = int(last) + 1
            conn.execute("INSERT INTO takes (key, take, state, created_at, body, subtitles, reason) "
                         "VALUES (?, ?, 'submitting', ?, ?, ?, ?)",
                         (key, take, self._clock(), request.body_json, request.subtitles, reason))
        return take

    def takes_made(self, key: str, reason: str) -> int:
        """How many extra takes of ``key`` were begun for ``reason`` (refused creates left out)."""
        found = self._read("SELECT COUNT(*) FROM takes WHERE key = ? AND reason = ? AND state != 'refused'",
                           (key, reason))
        return int(found[0][0])

    def update_take(self, key: str, take: int, *, state: str, **fields: object) -> None:
        allowed = {"task_id", "audio_path", "subtitle_path"}
        if set(fields) - allowed:
            raise ValueError(f"unknown take fields {sorted(set(fields) - allowed)}")
        sets = "".join(f", {name} = ?" for name in fields)
        with self._tx(durable=state == "submitted") as conn:
            conn.execute(f"UPDATE takes SET state = ?{sets} WHERE key = ? AND take = ?",
                         (state, *fields.values(), key, take))

    def takes(self, key: str) -> list[TakeRow]:
        """The extra takes of ``key`` (take 2 on; take 1 is the chunk row itself), in order."""
        return [TakeRow(*values) for values in self._read(
            f"SELECT {_TAKE_COLUMNS} FROM takes WHERE key = ? ORDER BY take", (key,))]

    def archive_first_take(self, key: str, *, take: int, audio_path: str | None, subtitle_path: str | None) -> None:
        """Keep the chunk's current audio as take ``take`` (its files already moved to ``audio_path``
        and ``subtitle_path``) and send the chunk back to ``pending`` for a new render. Used when the
        held take lacks outputs the request now needs (subtitles)."""
        row = self.get(key)
        with self._tx(durable=True) as conn:
            conn.execute("INSERT INTO takes (key, take, state, task_id, audio_path, subtitle_path, created_at, "
                         "body, subtitles) VALUES (?, ?, 'downloaded', ?, ?, ?, ?, ?, ?)",
                         (key, take, row.task_id, audio_path, subtitle_path, row.updated_at, row.body, row.subtitles))
            conn.execute("UPDATE tasks SET take = ? WHERE key = ? AND take = 1", (take, key))
            conn.execute("UPDATE take_qc SET take = ? WHERE key = ? AND take = 1", (take, key))
            conn.execute("DELETE FROM selected_takes WHERE key = ?", (key,))
            conn.execute("UPDATE chunks SET state = 'pending', task_id = NULL, audio_path = NULL, "
                         "subtitle_path = NULL, attempts = 0, updated_at = ? WHERE key = ?", (self._clock(), key))

    def select_take(self, key: str, take: int) -> None:
        with self._tx() as conn:
            conn.execute("INSERT INTO selected_takes (key, take) VALUES (?, ?) "
                         "ON CONFLICT(key) DO UPDATE SET take = excluded.take", (key, take))

    def selected_takes(self) -> dict[str, int]:
        return {key: int(take) for key, take in self._read("SELECT key, take FROM selected_takes")}

    # --- QC -------------------------------------------------------------------------------------

    def save_measures(self, key: str, take: int, measures: Mapping[str, Any]) -> None:
        """Store what QC measured of take ``take`` of ``key`` (its verdict is judged later)."""
        with self._tx() as conn:
            conn.execute("INSERT INTO take_qc (key, take, measures, updated_at) VALUES (?, ?, ?, ?) "
                         "ON CONFLICT(key, take) DO UPDATE SET measures = excluded.measures, verdict = NULL, "
                         "checks = NULL, updated_at = excluded.updated_at",
                         (key, take, json.dumps(measures, sort_keys=True), self._clock()))

    def measures(self, keys: Iterable[str] | None = None) -> dict[tuple[str, int], dict[str, Any]]:
        """The stored QC measures, by (key, take); of ``keys`` only when given."""
        rows = self._read("SELECT key, take, measures FROM take_qc")
        wanted = None if keys is None else set(keys)
        return {(key, int(take)): json.loads(data) for key, take, data in rows if wanted is None or key in wanted}

    def save_verdicts(self, verdicts: Mapping[tuple[str, int], Mapping[str, Any]]) -> None:
        """Store the verdicts judged from the measures (``{"verdict": ..., "checks": [...]}``)."""
        with self._tx() as conn:
            conn.executemany("UPDATE take_qc SET verdict = ?, checks = ?, updated_at = ? WHERE key = ? AND take = ?",
                             [(v["verdict"], json.dumps(v["checks"], sort_keys=True), self._clock(), key, take)
                              for (key, take), v in verdicts.items()])

    def verdicts(self) -> dict[tuple[str, int], dict[str, Any]]:
        """The stored verdicts, by (key, take) (takes measured but not yet judged are left out)."""
        return {(key, int(take)): {"verdict": verdict, "checks": json.loads(checks)} for key, take, verdict, checks
                in self._read("SELECT key, take, verdict, checks FROM take_qc WHERE verdict IS NOT NULL")}

    # --- voices ---------------------------------------------------------------------------------

    def note_voice_used(self, model_id: str) -> None:
        with self._tx() as conn:
            conn.execute("INSERT OR IGNORE INTO voices (model_id, first_used_at) VALUES (?, ?)",
                         (model_id, self._clock()))

    def note_voice_activated(self, model_id: str) -> None:
        with self._tx() as conn:
            conn.execute("INSERT OR IGNORE INTO voices (model_id, first_used_at) VALUES (?, ?)",
                         (model_id, self._clock()))
            conn.execute("UPDATE voices SET activated_at = COALESCE(activated_at, ?) WHERE model_id = ?",
                         (self._clock(), model_id))

    def voice_activated(self, model_id: str) -> bool:
        found = self._read("SELECT activated_at FROM voices WHERE model_id = ?", (model_id,))
        return bool(found and found[0][0])
