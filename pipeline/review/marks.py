"""The review marks an editor exports from the review pages (``review-marks.json``), read back for
``audiobook retake --from-review``::

    {"book": TITLE, "marks": [{"chapter": ID, "chunk": INDEX, "key": CHUNK_KEY, "sentence": TEXT, "note": TEXT}]}

Every mark is checked against the book as it is now: a mark whose chunk ``key`` no longer matches
(the text changed since the page was made) is refused, by name, and so is one for a chapter or chunk
the book no longer has. Several marks in one chunk make one retake.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError
from pipeline.models import ChapterPlan, Chunk

MARKS_FILE = "review-marks.json"
MAX_BYTES = 16 << 20


@dataclass(frozen=True)
class Mark:
    chapter: str
    chunk: int
    key: str
    sentence: str
    note: str


@dataclass(frozen=True)
class MarkedChunk:
    chunk: Chunk
    marks: tuple[Mark, ...]


@dataclass(frozen=True)
class Refused:
    mark: Mark
    reason: str

    def describe(self) -> str:
        sentence = self.mark.sentence if len(self.mark.sentence) <= 60 else self.mark.sentence[:59] + "…"
        return f"{self.mark.chapter} chunk {self.mark.chunk} (\u201c{sentence}\u201d): {self.reason}"


@dataclass(frozen=True)
class MarkPlan:
    book: str
    chunks: tuple[MarkedChunk, ...]
    refused: tuple[Refused, ...] = field(default=())


def read_marks(path: Path) -> tuple[str, list[Mark]]:
    """The book title and the marks of a marks file; :class:`ConfigError` naming the file, the mark and
    the field for anything malformed (nothing is rendered then)."""
    try:
        if path.stat().st_size > MAX_BYTES:
            raise ConfigError(f"{path}: {path.stat().st_size:,} bytes is too big for a review marks file")
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file; export it from a review page (the \u201cexport marks\u201d "
                          f"button saves {MARKS_FILE})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read ({exc})") from exc
    except ValueError as exc:
        raise ConfigError(f"{path}: is not JSON ({exc}); export it again from the review page") from exc
    if not isinstance(data, dict) or not isinstance(data.get("marks"), list):
        raise ConfigError(f'{path}: expected {{"book": TITLE, "marks": [...]}}, the file the review page exports')
    book = data.get("book")
    if not isinstance(book, str):
        raise ConfigError(f'{path}: "book" must be the book\'s title (text)')
    marks, problems = [], []
    for number, raw in enumerate(data["marks"]):
        where = f"{path}: marks[{number}]"
        if not isinstance(raw, dict):
            problems.append(f"{where}: must be an object")
            continue
        problems.extend(f"{where}.{name}: {why}" for name, why in _field_problems(raw))
        if not any(True for _ in _field_problems(raw)):
            marks.append(Mark(raw["chapter"], raw["chunk"], raw["key"], raw.get("sentence") or "",
                              raw.get("note") or ""))
    if problems:
        raise ConfigError("the review marks file has problems; nothing was rendered:\n  " + "\n  ".join(problems))
    return book, marks


def _field_problems(raw: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for name, kind in (("chapter", str), ("key", str)):
        if not isinstance(raw.get(name), kind) or not raw[name]:
            out.append((name, "must be non-empty text"))
    chunk = raw.get("chunk")
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 0:
        out.append(("chunk", f"must be a chunk index (an integer >= 0); got {chunk!r}"))
    for name in ("sentence", "note"):
        if raw.get(name) is not None and not isinstance(raw[name], str):
            out.append((name, "must be text"))
    return out


def plan_marks(marked_book: str, marks: Sequence[Mark], chapters: Sequence[ChapterPlan], *, title: str) -> MarkPlan:
    """Match the marks of the book titled ``marked_book`` to the chunks of ``chapters`` (the book titled
    ``title``, as planned now): one entry per marked chunk, and the marks refused, with the reason."""
    by_chapter = {cp.chapter.id: cp for cp in chapters}
    grouped: dict[str, tuple[Chunk, list[Mark]]] = {}
    refused: list[Refused] = []
    for mark in marks:
        if marked_book != title:
            refused.append(Refused(mark, f"the marks are for the book \u201c{marked_book}\u201d, not "
                                         f"\u201c{title}\u201d"))
            continue
        cp = by_chapter.get(mark.chapter)
        if cp is None:
            refused.append(Refused(mark, f"the book has no chapter {mark.chapter!r} (any more)"))
            continue
        chunk = next((c for c in cp.chunks if c.index == mark.chunk), None)
        if chunk is None or chunk.key != mark.key:
            found = next((c for c in cp.chunks if c.key == mark.key), None)
            if found is not None:
                chunk = found  # the chunk moved (an edit earlier in the chapter): its text is unchanged
            else:
                refused.append(Refused(mark, "the chunk's text or voice settings changed since the review page was "
                                             "made (its key no longer matches); `audiobook run` renders changed text, "
                                             "then review it again"))
                continue
        grouped.setdefault(chunk.key, (chunk, []))[1].append(mark)
    chunks = tuple(MarkedChunk(chunk, tuple(found)) for chunk, found in grouped.values())
    return MarkPlan(book=title, chunks=chunks, refused=tuple(refused))
