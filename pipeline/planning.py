"""The plan of a book: every chapter's chunks, what they will bill, and the totals. No network."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.chunking import estimate_seconds, lower_bound_tasks, plan_chapter
from pipeline.models import ChapterPlan, Manifest, PlanTotals
from pipeline.text import marker_seconds


@dataclass(frozen=True)
class ChapterChange:
    """What a run would do to a chapter, against what the journal already holds."""

    chapter_id: str
    reused: int        # chunks whose audio is already paid for
    to_render: int     # chunks that need a new task
    dropped: int       # chunks of the last cut that are no longer used
    chars: int         # billed characters of the chunks to render
    cost: float


@dataclass(frozen=True)
class BookPlan:
    manifest: Manifest
    chapters: tuple[ChapterPlan, ...]
    totals: PlanTotals
    changes: tuple[ChapterChange, ...] = ()

    @property
    def pending(self) -> ChapterChange:
        """The changes of every chapter added up (``chapter_id`` is ``"*"``)."""
        return ChapterChange("*", *(sum(getattr(c, name) for c in self.changes)
                                    for name in ("reused", "to_render", "dropped", "chars", "cost")))

    def chapter(self, chapter_id: str) -> ChapterPlan:
        for plan in self.chapters:
            if plan.chapter.id == chapter_id:
                return plan
        raise KeyError(chapter_id)


def chapter_seconds(plan: ChapterPlan) -> float:
    """Estimated audio length of a chapter: speech, markers and seam pauses."""
    speed = plan.chapter.voice.speed
    return sum(estimate_seconds(c.text, speed=speed) + c.pause_before_s + c.pause_after_s for c in plan.chunks)


def plan_book(manifest: Manifest, *, chapter_ids: Sequence[str] = (),
              previous: Mapping[str, Sequence[tuple[str, str]]] | None = None,
              rendered: Collection[str] = ()) -> BookPlan:
    """Chunk every chapter (or only ``chapter_ids``) and total the estimate.

    ``previous`` is each chapter's last cut from the journal (``[(key, text)]``): unchanged text keeps
    its chunks (see ``chunking.stable_spans``). ``rendered`` are the keys already paid for; with
    them the plan also says what changed (``BookPlan.changes``).
    """
    previous = previous or {}
    selected = [c for c in manifest.chapters if not chapter_ids or c.id in chapter_ids]
    plans = tuple(
        ChapterPlan(chapter=c, chunks=plan_chapter(c, chunking=manifest.chunking, pauses=manifest.pauses,
                                                   subtitles=manifest.subtitles,
                                                   previous=[text for _, text in previous.get(c.id, ())]))
        for c in selected
    )
    chunks = [chunk for p in plans for chunk in p.chunks]
    billed = sum(c.billed_chars for c in chunks)
    totals = PlanTotals(
        chapters=len(plans), chunks=len(chunks), chars=sum(c.chars for c in chunks), billed_chars=billed,
        lower_bound_tasks=lower_bound_tasks([p.chapter.text for p in plans], manifest.chunking.max_chars),
        est_audio_s=round(sum(chapter_seconds(p) for p in plans), 1),
        est_cost=round(manifest.pricing.cost(billed_chars=billed, tasks=len(chunks)), 4),
        currency=manifest.pricing.currency,
    )
    return BookPlan(manifest=manifest, chapters=plans, totals=totals,
                    changes=tuple(_changes(manifest, p, previous.get(p.chapter.id, ()), rendered) for p in plans))


def _changes(manifest: Manifest, plan: ChapterPlan, previous: Sequence[tuple[str, str]],
             rendered: Collection[str]) -> ChapterChange:
    keys = {c.key for c in plan.chunks}
    todo = {c.key: c for c in plan.chunks if c.key not in rendered}  # the same text twice renders once
    chars = sum(c.billed_chars for c in todo.values())
    return ChapterChange(
        chapter_id=plan.chapter.id, reused=len(plan.chunks) - sum(1 for c in plan.chunks if c.key in todo),
        to_render=len(todo), dropped=sum(1 for key, _ in previous if key not in keys), chars=chars,
        cost=round(manifest.pricing.cost(billed_chars=chars, tasks=len(todo)), 4))


def plan_to_json(plan: BookPlan) -> dict[str, Any]:
    """The ``plan --json`` document (its shape is part of the CLI's contract)."""
    pricing = plan.manifest.pricing
    chapters = []
    changes = {c.chapter_id: c for c in plan.changes}
    for cp in plan.chapters:
        billed = cp.billed_chars
        chapters.append({
            "id": cp.chapter.id,
            "title": cp.chapter.title,
            "language": cp.chapter.language,
            "chars": sum(c.chars for c in cp.chunks),
            "billed_chars": billed,
            "tasks": len(cp.chunks),
            "est_audio_s": round(chapter_seconds(cp), 1),
            "est_cost": round(pricing.cost(billed_chars=billed, tasks=len(cp.chunks)), 4),
            "changes": _change_json(changes.get(cp.chapter.id)),
            "chunks": [{
                "index": c.index, "key": c.key, "text": c.text, "chars": c.chars,
                "billed_chars": c.billed_chars, "pause_before": c.pause_before_s,
                "pause_after": c.pause_after_s, "markers_s": round(marker_seconds(c.text), 2),
            } for c in cp.chunks],
        })
    t = plan.totals
    return {
        "title": plan.manifest.book.title,
        "chapters": chapters,
        "totals": {
            "chapters": t.chapters, "chunks": t.chunks, "tasks": t.chunks, "chars": t.chars,
            "billed_chars": t.billed_chars, "lower_bound_tasks": t.lower_bound_tasks,
            "est_audio_s": t.est_audio_s, "est_cost": t.est_cost, "currency": t.currency,
            "changes": _change_json(plan.pending),
        },
    }


def _change_json(change: ChapterChange | None) -> dict[str, Any] | None:
    if change is None:
        return None
    return {"reused": change.reused, "to_render": change.to_render, "dropped": change.dropped,
            "chars": change.chars, "cost": change.cost}
