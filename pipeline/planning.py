"""The plan of a book: every chapter's chunks, what they will bill, and the totals. No network."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.chunking import estimate_seconds, lower_bound_tasks, plan_chapter
from pipeline.models import ChapterPlan, Chunk, ChunkState, Manifest, PlanTotals
from pipeline.store import ChunkRow, Journal
from pipeline.text import marker_seconds, spoken_only

# Body field -> the manifest setting that sets it (to say why a chunk renders again).
_SETTING_OF_FIELD = {"modelId": "voice.model_id (or voice.name)", "soundVersion": "voice.sound_version",
                     "emotion": "voice.emotion", "speed": "voice.speed", "vol": "voice.vol", "pitch": "voice.pitch",
                     "language": "language"}

REUSE, RENDER, EXPIRED = "reuse", "render", "expired"


@dataclass(frozen=True)
class ChunkFate:
    """What a run does with one chunk, and why."""

    index: int
    key: str
    fate: str          # REUSE, RENDER or EXPIRED (needs `run --rerender-expired`)
    reason: str        # for RENDER and EXPIRED: why the held audio (if any) does not serve
    billed_chars: int
    state: str         # the journal state ("pending" when the journal has no row)


@dataclass(frozen=True)
class ChapterChange:
    """What a run would do to a chapter, against what the journal already holds."""

    chapter_id: str
    reused: int        # chunks whose audio is already paid for
    to_render: int     # chunks that need a new task
    dropped: int       # chunks of the last cut that are no longer used
    chars: int         # billed characters of the chunks to render
    cost: float
    expired: int = 0   # chunks whose audio is gone at the API (rendered again only on request)
    expired_chars: int = 0
    expired_cost: float = 0.0
    chunks: tuple[ChunkFate, ...] = ()


@dataclass(frozen=True)
class BookPlan:
    manifest: Manifest
    chapters: tuple[ChapterPlan, ...]
    totals: PlanTotals
    changes: tuple[ChapterChange, ...] = ()
    rerender_expired: bool = False
    # With ``qc.on_fail: retake``, the most the automatic retakes may add: every chunk to render, and
    # every held take that fails QC now, retaken ``qc.max_retakes`` times (see runner.plan).
    qc_retake_tasks: int = 0
    qc_retake_cost: float = 0.0

    @property
    def pending(self) -> ChapterChange:
        """The changes of every chapter added up (``chapter_id`` is ``"*"``)."""
        return ChapterChange("*", *(sum(getattr(c, name) for c in self.changes)
                                    for name in ("reused", "to_render", "dropped", "chars", "cost", "expired",
                                                 "expired_chars", "expired_cost")))

    def chapter(self, chapter_id: str) -> ChapterPlan:
        for plan in self.chapters:
            if plan.chapter.id == chapter_id:
                return plan
        raise KeyError(chapter_id)


def chapter_seconds(plan: ChapterPlan) -> float:
    """Estimated audio length of a chapter: speech, markers and seam pauses."""
    speed = plan.chapter.voice.speed
    return sum(estimate_seconds(c.text, speed=speed) + c.pause_before_s + c.pause_after_s for c in plan.chunks)


def plan_book(manifest: Manifest, *, chapter_ids: Sequence[str] = (), journal: Journal | None = None,
              rerender_expired: bool = False) -> BookPlan:
    """Chunk every chapter (or only ``chapter_ids``) and total the estimate.

    With the book's ``journal`` (read only), each chapter's last cut anchors the new one (unchanged
    text keeps its chunks, see ``chunking.stable_spans``) and the plan says, chunk by chunk, what is
    reused, what renders and why (``BookPlan.changes``). Chunks whose audio expired at the API are
    counted apart, and as to render only with ``rerender_expired``.
    """
    previous = journal.chapter_plans() if journal is not None else {}
    selected = [c for c in manifest.chapters if not chapter_ids or c.id in chapter_ids]
    plans = tuple(
        ChapterPlan(chapter=c, chunks=plan_chapter(c, chunking=manifest.chunking, pauses=manifest.pauses,
                                                   subtitles=manifest.subtitles,
                                                   previous=[text for _, text in previous.get(c.id, ())]))
        for c in selected
    )
    chunks = [chunk for p in plans for chunk in p.chunks]
    distinct = list({c.key: c for c in chunks}.values())
    billed = sum(c.billed_chars for c in distinct)
    totals = PlanTotals(
        chapters=len(plans), chunks=len(chunks), chars=sum(c.chars for c in chunks), billed_chars=billed,
        lower_bound_tasks=lower_bound_tasks([p.chapter.text for p in plans], manifest.chunking.max_chars),
        est_audio_s=round(sum(chapter_seconds(p) for p in plans), 1),
        est_cost=round(manifest.pricing.cost(billed_chars=billed, tasks=len(distinct)), 4),
        currency=manifest.pricing.currency, tasks=len(distinct),
    )
    rows: dict[str, ChunkRow] = {}
    old_rows: dict[str, ChunkRow] = {}
    if journal is not None:
        rows = journal.rows_for(c.request for c in chunks)
        old_rows = journal.rows(key for cut in previous.values() for key, _ in cut)
    seen: set[str] = set()  # the same text twice in a book renders once, and is priced once
    changes = []
    for p in plans:
        fates = [_fate(c, rows.get(c.key), seen, previous.get(p.chapter.id, ()), old_rows) for c in p.chunks]
        changes.append(_change(manifest, p, fates, previous.get(p.chapter.id, ()), rerender_expired))
    return BookPlan(manifest=manifest, chapters=plans, totals=totals, changes=tuple(changes),
                    rerender_expired=rerender_expired)


def _fate(chunk: Chunk, row: ChunkRow | None, seen: set[str], previous: Sequence[tuple[str, str]],
          old_rows: Mapping[str, ChunkRow]) -> ChunkFate:
    def fate(kind: str, reason: str = "") -> ChunkFate:
        return ChunkFate(chunk.index, chunk.key, kind, reason, chunk.billed_chars,
                         row.state.value if row is not None else ChunkState.PENDING.value)

    if chunk.key in seen:
        return fate(REUSE, "the same text earlier in the book")
    seen.add(chunk.key)
    if row is None or row.state == ChunkState.PENDING:
        return fate(RENDER, _why_new(chunk, previous, old_rows))
    if row.state == ChunkState.EXPIRED:
        return fate(EXPIRED, row.error or "its audio is gone at the API")
    if row.state == ChunkState.FAILED:
        return fate(RENDER, f"it failed before: {row.error}" if row.error else "it failed before")
    if row.state == ChunkState.SUBMITTING:
        return fate(RENDER, "a create was interrupted before its task id was recorded")
    if not chunk.request.satisfied_by(row.subtitles):
        return fate(RENDER, f"subtitles: {chunk.request.subtitles} is requested and the held take was rendered "
                            f"with subtitles {row.subtitles or 'unknown'} (only a new task returns timings)")
    return fate(REUSE)


def _why_new(chunk: Chunk, previous: Sequence[tuple[str, str]], old_rows: Mapping[str, ChunkRow]) -> str:
    """Why a chunk with no audio yet needs a task: its text is new, or a setting changed."""
    if not previous:
        return "new"
    for key, text in previous:
        row = old_rows.get(key)
        old_request = row.request if row is not None else None
        if text == chunk.text and old_request is not None:
            fields = chunk.request.changed_fields(old_request)
            # the same words of the book sent otherwise: the lexicon respells them differently now
            lexicon = ["lexicon change"] if "contentText" in fields else []
            settings = sorted({_SETTING_OF_FIELD.get(f, f) for f in fields if f != "contentText"})
            reasons = [*lexicon, *([f"{', '.join(settings)} changed"] if settings else [])]
            return "; ".join(reasons) if reasons else "new"
    stripped = spoken_only(chunk.text)
    if any(spoken_only(text) == stripped for _, text in previous):
        return ("a pause inside the chunk's text changed (pauses.scene_break_s, or a <#x#> marker); pauses "
                "sent inside a chunk are part of what the API renders")
    return "text changed"


def _change(manifest: Manifest, plan: ChapterPlan, fates: Sequence[ChunkFate], previous: Sequence[tuple[str, str]],
            rerender_expired: bool) -> ChapterChange:
    keys = {c.key for c in plan.chunks}
    render = [f for f in fates if f.fate == RENDER or (rerender_expired and f.fate == EXPIRED)]
    expired = [f for f in fates if f.fate == EXPIRED and not rerender_expired]
    chars = sum(f.billed_chars for f in render)
    expired_chars = sum(f.billed_chars for f in expired)
    cost = manifest.pricing.cost
    return ChapterChange(
        chapter_id=plan.chapter.id, reused=sum(1 for f in fates if f.fate == REUSE), to_render=len(render),
        dropped=sum(1 for key, _ in previous if key not in keys), chars=chars,
        cost=round(cost(billed_chars=chars, tasks=len(render)), 4), expired=len(expired),
        expired_chars=expired_chars, expired_cost=round(cost(billed_chars=expired_chars, tasks=len(expired)), 4),
        chunks=tuple(fates))


def chapter_tasks(plan: BookPlan) -> list[tuple[ChapterPlan, int, int]]:
    """Each chapter with the tasks it needs and their billed characters: a chunk whose text (with the
    same voice) came earlier in the book renders once, so it is priced where it first appears."""
    seen: set[str] = set()
    out = []
    for cp in plan.chapters:
        new = [c for c in {c.key: c for c in cp.chunks}.values() if c.key not in seen]
        seen.update(c.key for c in new)
        out.append((cp, len(new), sum(c.billed_chars for c in new)))
    return out


def plan_to_json(plan: BookPlan) -> dict[str, Any]:
    """The ``plan --json`` document (its shape is part of the CLI's contract)."""
    pricing = plan.manifest.pricing
    chapters = []
    changes = {c.chapter_id: c for c in plan.changes}
    fates = {(c.chapter_id, f.index): f for c in plan.changes for f in c.chunks}
    for cp, tasks, task_chars in chapter_tasks(plan):
        chapters.append({
            "id": cp.chapter.id,
            "title": cp.chapter.title,
            "language": cp.chapter.language,
            "chars": sum(c.chars for c in cp.chunks),
            "billed_chars": cp.billed_chars,
            "tasks": tasks,
            "est_audio_s": round(chapter_seconds(cp), 1),
            "est_cost": round(pricing.cost(billed_chars=task_chars, tasks=tasks), 4),
            "changes": _change_json(changes.get(cp.chapter.id)),
            "chunks": [{
                "index": c.index, "key": c.key, "text": c.text, "spoken_text": c.spoken_text, "chars": c.chars,
                "billed_chars": c.billed_chars, "pause_before": c.pause_before_s,
                "pause_after": c.pause_after_s, "markers_s": round(marker_seconds(c.text), 2),
                **_fate_json(fates.get((cp.chapter.id, c.index))), "request": c.request.body,
            } for c in cp.chunks],
        })
    t = plan.totals
    return {
        "title": plan.manifest.book.title,
        "chapters": chapters,
        "totals": {
            "chapters": t.chapters, "chunks": t.chunks, "tasks": t.tasks, "chars": t.chars,
            "billed_chars": t.billed_chars, "lower_bound_tasks": t.lower_bound_tasks,
            "est_audio_s": t.est_audio_s, "est_cost": t.est_cost, "currency": t.currency,
            "changes": _change_json(plan.pending),
            "qc_retakes_worst_case": {"tasks": plan.qc_retake_tasks, "cost": plan.qc_retake_cost},
        },
    }


def _change_json(change: ChapterChange | None) -> dict[str, Any] | None:
    if change is None:
        return None
    return {"reused": change.reused, "to_render": change.to_render, "dropped": change.dropped,
            "chars": change.chars, "cost": change.cost, "expired": change.expired,
            "expired_chars": change.expired_chars, "expired_cost": change.expired_cost}


def _fate_json(fate: ChunkFate | None) -> dict[str, Any]:
    if fate is None:
        return {}
    return {"state": fate.state, "fate": fate.fate, **({"reason": fate.reason} if fate.reason else {})}
