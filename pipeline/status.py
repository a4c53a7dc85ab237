"""The status of a book, read from its journal: chunks by state, what was paid for, what failed. No network.

Safe while a run is going (the journal is read, never written).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline import verdicts
from pipeline.layout import BookLayout
from pipeline.models import ChunkState
from pipeline.planning import BookPlan
from pipeline.store import Billing, Journal


@dataclass(frozen=True)
class ChunkStatus:
    index: int
    key: str
    state: str
    take: int
    billed_chars: int
    request: dict[str, Any]      # the body of the task held (or of the one to send, while pending)
    error: str | None = None
    qc: dict[str, Any] | None = None  # the QC verdict of the selected take (None: not downloaded or measured)


@dataclass
class ChapterStatus:
    id: str
    title: str
    chunks: int
    by_state: dict[str, int]
    failures: list[tuple[int, str]]
    output: Path | None
    chunk_states: list[ChunkStatus] = field(default_factory=list)
    qc: dict[str, int] = field(default_factory=dict)  # selected takes per verdict, and "unchecked"


@dataclass
class BookStatus:
    manifest: Path
    title: str
    output: Path
    chapters: list[ChapterStatus]
    billing: Billing
    possible_duplicates: int
    expired: list[str] = field(default_factory=list)
    stale: list[Path] = field(default_factory=list)
    error: str | None = None

    @property
    def totals(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for chapter in self.chapters:
            for state, count in chapter.by_state.items():
                out[state] = out.get(state, 0) + count
        return out


NO_BILLING = Billing(0, 0, 0, 0)


def book_status(plan: BookPlan, journal: Journal | None) -> BookStatus:
    """Per chapter: chunks by state, failures and expired chunks with reasons, the request body of every
    chunk; for the book: what the API billed and refunded, possible duplicate charges, stale files."""
    manifest = plan.manifest
    layout = BookLayout(manifest.output)
    rows = journal.rows_for(c.request for cp in plan.chapters for c in cp.chunks) if journal is not None else {}
    selected = journal.selected_takes() if journal is not None else {}
    book_qc = verdicts.judge(manifest, journal, plan.chapters) if journal is not None else None
    chapters = []
    expired = []
    for cp in plan.chapters:
        by_state: dict[str, int] = {}
        failures = []
        states = []
        for chunk in cp.chunks:
            row = rows.get(chunk.key)
            state = row.state.value if row else ChunkState.PENDING.value
            by_state[state] = by_state.get(state, 0) + 1
            if row and row.error and row.state in (ChunkState.FAILED, ChunkState.PENDING, ChunkState.EXPIRED):
                failures.append((chunk.index, row.error))
            if row and row.state == ChunkState.EXPIRED:
                expired.append(f"{cp.chapter.id} chunk {chunk.index}")
            held = row.request if row is not None else None
            verdict = book_qc.of(chunk) if book_qc is not None else None
            states.append(ChunkStatus(index=chunk.index, key=chunk.key, state=state,
                                      take=selected.get(chunk.key, 1), billed_chars=chunk.billed_chars,
                                      request=(held or chunk.request).body, error=row.error if row else None,
                                      qc=verdict.to_json() if verdict is not None else None))
        audio = layout.chapter_files(cp.chapter.number, cp.chapter.id, "off")["mp3"]
        counts = book_qc.counts(cp) if book_qc is not None else {"unchecked": len(cp.chunks)}
        chapters.append(ChapterStatus(cp.chapter.id, cp.chapter.title, len(cp.chunks), by_state, failures,
                                      audio if audio.exists() else None, states, counts))
    return BookStatus(
        manifest=manifest.path, title=manifest.book.title, output=manifest.output, chapters=chapters,
        billing=journal.billing() if journal is not None else NO_BILLING,
        possible_duplicates=len(journal.events("possible-duplicate")) if journal is not None else 0,
        expired=expired, stale=layout.stale_outputs(manifest))


def status_to_json(book: BookStatus) -> dict[str, Any]:
    """The ``status --json`` document of one book (its shape is part of the CLI's contract)."""
    b = book.billing
    return {
        "manifest": str(book.manifest), "title": book.title, "output": str(book.output), "error": book.error,
        "tasks_billed": b.tasks, "chars_billed": b.chars, "tasks_refunded": b.refunded_tasks,
        "chars_refunded": b.refunded_chars, "possible_duplicates": book.possible_duplicates,
        "expired": book.expired, "stale_files": [str(p) for p in book.stale], "totals": book.totals,
        "chapters": [{
            "id": c.id, "title": c.title, "chunks": c.chunks, "states": c.by_state,
            "failures": [{"index": i, "reason": r} for i, r in c.failures],
            "output": str(c.output) if c.output else None,
            "qc": c.qc,
            "chunk_states": [{"index": s.index, "key": s.key, "state": s.state, "take": s.take,
                              "billed_chars": s.billed_chars, "request": s.request, "error": s.error, "qc": s.qc}
                             for s in c.chunk_states],
        } for c in book.chapters],
    }
