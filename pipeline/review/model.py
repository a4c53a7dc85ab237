"""What a review page shows: plain data, gathered by :mod:`pipeline.review.collect` from the journal
and the chapter builds, drawn by :mod:`pipeline.review.render`. Every time is in seconds of the
chapter file (chunk takes: seconds of the take's own file); every path is relative to the
``review/`` folder, so the pages work opened from ``file://``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class QcCheck:
    """One QC check of a take: what was measured against which limit (``measured`` is None when the
    check could not run, e.g. no subtitles; ``detail`` says so in words)."""

    name: str                 # truncated | uncovered | silence | clipping | rate | level
    measured: float | None
    limit: float | None
    passed: bool
    severity: str             # "fail" or "warn": what a failure of this check means for the take
    detail: str               # one line for people: "3.2 s of silence at 0:41 (limit 1.5 s)"
    at_s: float | None = None  # where in the chapter it is, when the check knows (a silence, a cut)
    until_s: float | None = None


@dataclass(frozen=True)
class TakeView:
    take: int                 # 1, 2, ...
    audio: str                # relative path to the take's MP3 (in the book's cache)
    selected: bool
    verdict: str | None       # pass | warn | fail, None when not checked


@dataclass(frozen=True)
class ChunkView:
    index: int
    key: str                  # the chunk key (review marks carry it; a retake refuses a stale one)
    start_s: float            # the chunk's span in the chapter file
    end_s: float
    verdict: str | None       # of the selected take: pass | warn | fail, None when not checked
    checks: tuple[QcCheck, ...] = ()
    takes: tuple[TakeView, ...] = ()


@dataclass(frozen=True)
class SentenceView:
    chunk: int                # index of the chunk it is in
    start_s: float
    end_s: float
    text: str                 # the display text, as in the subtitles


@dataclass(frozen=True)
class ChapterReview:
    book: str                 # the book's title (the marks file's "book")
    book_key: str             # identifies the book in the browser's local storage
    chapter_id: str
    number: int
    title: str
    audio: str                # relative path to the chapter MP3
    duration_s: float
    chunks: tuple[ChunkView, ...]
    sentences: tuple[SentenceView, ...]
    peaks: tuple[float, ...]  # the waveform: peak level 0..1 per bin, bins evenly spread over the chapter
    page: str                 # this page's file name, e.g. "01-intro.html"
    index_page: str = "index.html"
    previous_page: str | None = None
    next_page: str | None = None
    simulated: bool = False   # a rehearsal: the audio is the simulator's, not the voice's


@dataclass(frozen=True)
class ChapterSummary:
    chapter_id: str
    number: int
    title: str
    page: str | None          # None: the chapter is not built yet (no page)
    duration_s: float | None
    verdicts: dict[str, int] = field(default_factory=dict)  # {"pass": n, "warn": n, "fail": n, "unchecked": n}
    note: str = ""            # e.g. "not built yet: run `audiobook run`"


@dataclass(frozen=True)
class DeliveryLine:
    file: str
    rule: str
    measured: str
    limit: str
    passed: bool


@dataclass(frozen=True)
class BookReview:
    book: str
    book_key: str
    author: str
    chapters: tuple[ChapterSummary, ...]
    delivery_profile: str | None
    delivery_passed: bool | None  # None: no delivery report yet
    delivery: tuple[DeliveryLine, ...] = ()
    simulated: bool = False       # a rehearsal: the audio is the simulator's, not the voice's
