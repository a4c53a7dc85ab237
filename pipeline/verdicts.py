"""A book's QC against its journal: measure the takes that lack measures, judge every take, keep the
verdicts, and say where the flagged ones sit in the chapter files. No network (see :mod:`pipeline.qc`
for the checks themselves).

The engine measures each take as it downloads it. What it has not measured (takes of a journal from
before QC, a crash between download and record) is measured here from the cached file, so every
downloaded take gets a verdict; ``stitch --force`` measures every take again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline import qc
from pipeline.assembly import ChapterOutput, existing_chapter
from pipeline.errors import AssemblyError
from pipeline.layout import BookLayout
from pipeline.models import ChapterPlan, Chunk, ChunkState, Manifest
from pipeline.store import Journal
from pipeline.subtitles import load_subtitle_file


@dataclass(frozen=True)
class TakeFile:
    chunk: Chunk
    take: int
    audio: Path
    subtitles: Path | None


def downloaded_takes(manifest: Manifest, journal: Journal, chapters: Sequence[ChapterPlan]) -> list[TakeFile]:
    """Every downloaded take (whose file is in the cache) of the chunks of ``chapters``."""
    layout = BookLayout(manifest.output)
    chunks = [c for cp in chapters for c in cp.chunks]
    rows = journal.rows(c.key for c in chunks)
    out: list[TakeFile] = []
    for chunk in {c.key: c for c in chunks}.values():
        takes = [t.take for t in journal.takes(chunk.key) if t.state == "downloaded"]
        row = rows.get(chunk.key)
        if row is not None and row.state == ChunkState.DOWNLOADED:
            takes.insert(0, 1)
        for take in takes:
            audio, subtitles = layout.take_paths(chunk.key, take)
            if audio.is_file():
                out.append(TakeFile(chunk, take, audio, subtitles if subtitles.is_file() else None))
    return out


def measure(take: TakeFile) -> qc.TakeMeasures:
    """Decode and measure one cached take (raises :class:`AssemblyError` when it does not decode)."""
    label = f"chapter {take.chunk.chapter_id} chunk {take.chunk.index} take {take.take}"
    audio = qc.measure_file(take.audio, label=label)
    timings = None if take.subtitles is None else load_subtitle_file(take.subtitles, label=label)
    return qc.measure_take(audio, take.chunk.spoken_text, timings, take.chunk.spoken)


def load_measures(journal: Journal, keys: Sequence[str] | None = None) -> dict[tuple[str, int], qc.TakeMeasures]:
    out = {}
    for where, data in journal.measures(keys).items():
        measures = qc.TakeMeasures.from_json(data)
        if measures is not None:
            out[where] = measures
    return out


def unmeasured(manifest: Manifest, journal: Journal, chapters: Sequence[ChapterPlan], *,
               force: bool = False) -> list[TakeFile]:
    """The downloaded takes of ``chapters`` with no (current) measures; every one with ``force``."""
    takes = downloaded_takes(manifest, journal, chapters)
    if force:
        return takes
    have = set(load_measures(journal, [t.chunk.key for t in takes]))
    return [t for t in takes if (t.chunk.key, t.take) not in have]


def measure_all(takes: Sequence[TakeFile]) -> list[tuple[TakeFile, qc.TakeMeasures]]:
    """Measure each take (no journal access: safe in a thread). A take that no longer decodes is left
    out (its chapter's build reports it)."""
    out = []
    for take in takes:
        try:
            out.append((take, measure(take)))
        except AssemblyError:
            continue
    return out


def save_measures(journal: Journal, measured: Sequence[tuple[TakeFile, qc.TakeMeasures]]) -> None:
    for take, measures in measured:
        journal.save_measures(take.chunk.key, take.take, measures.to_json())


def measure_missing(manifest: Manifest, journal: Journal, chapters: Sequence[ChapterPlan], *,
                    force: bool = False) -> int:
    """Measure (and store) what :func:`unmeasured` lists; returns how many takes were measured."""
    measured = measure_all(unmeasured(manifest, journal, chapters, force=force))
    save_measures(journal, measured)
    return len(measured)


@dataclass(frozen=True)
class Flag:
    """A selected take whose verdict is warn or fail, placed in its chapter file."""

    chapter_id: str
    index: int
    key: str
    take: int
    verdict: qc.Verdict
    at_s: float | None           # where the chunk (or the flagged spot in it) is in the chapter file

    @property
    def checks(self) -> tuple[qc.Check, ...]:
        return self.verdict.failed


@dataclass(frozen=True)
class BookQc:
    verdicts: Mapping[tuple[str, int], qc.Verdict]   # every measured take
    selected: Mapping[str, int]

    def of(self, chunk: Chunk) -> qc.Verdict | None:
        """The verdict of the selected take of ``chunk`` (None: not measured)."""
        return self.verdicts.get((chunk.key, self.selected.get(chunk.key, 1)))

    def takes_of(self, chunk: Chunk) -> dict[int, qc.Verdict]:
        return {take: v for (key, take), v in self.verdicts.items() if key == chunk.key}

    def counts_by_chapter(self, chapters: Sequence[ChapterPlan]) -> dict[str, dict[str, int]]:
        return {cp.chapter.id: self.counts(cp) for cp in chapters}

    def counts(self, plan: ChapterPlan) -> dict[str, int]:
        out = {qc.PASS: 0, qc.WARN: 0, qc.FAIL: 0, "unchecked": 0}
        for chunk in plan.chunks:
            verdict = self.of(chunk)
            out[verdict.verdict if verdict else "unchecked"] += 1
        return out


def judge(manifest: Manifest, journal: Journal, chapters: Sequence[ChapterPlan], *, store: bool = False) -> BookQc:
    """The verdict of every measured take of ``chapters`` (medians over their selected takes); with
    ``store`` the verdicts are written to the journal."""
    keys = [c.key for cp in chapters for c in cp.chunks]
    measures = load_measures(journal, keys)
    selected = journal.selected_takes()
    verdicts = qc.judge_book(chapters, measures, selected, manifest.qc)
    if store:
        journal.save_verdicts({where: v.to_json() for where, v in verdicts.items()})
    return BookQc(verdicts, selected)


def chunk_time_s(output: ChapterOutput | None, index: int, take_s: float | None) -> float | None:
    """Where second ``take_s`` of chunk ``index`` (its kept start when None) is in the chapter file."""
    if output is None:
        return None
    span = next((s for s in output.spans if s.index == index), None)
    if span is None:
        return None
    sr = output.sample_rate_hz
    if take_s is None:
        return span.kept_start / sr
    return min(max(span.origin + take_s * sr, span.kept_start), span.kept_end) / sr


def flags(manifest: Manifest, chapters: Sequence[ChapterPlan], book_qc: BookQc,
          built: Mapping[str, ChapterOutput] | None = None) -> list[Flag]:
    """The selected takes judged warn or fail, in reading order, each placed in its chapter file."""
    out = []
    for cp in chapters:
        output = (built or {}).get(cp.chapter.id) or existing_chapter(manifest, cp.chapter.id)
        for chunk in cp.chunks:
            verdict = book_qc.of(chunk)
            if verdict is None or verdict.verdict == qc.PASS:
                continue
            spot = next((c.at_s for c in verdict.failed if c.at_s is not None), None)
            out.append(Flag(cp.chapter.id, chunk.index, chunk.key, book_qc.selected.get(chunk.key, 1), verdict,
                            chunk_time_s(output, chunk.index, spot)))
    return out


def hms(seconds: float | None) -> str:
    if seconds is None:
        return "--:--:--"
    whole = int(seconds)
    return f"{whole // 3600:02d}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def describe(flag: Flag) -> str:
    """One line per flagged chunk: chapter, time, verdict and each failed check with its value."""
    checks = "; ".join(f"{c.name}: {c.detail}" for c in flag.checks)
    take = f" take {flag.take}" if flag.take != 1 else ""
    return f"{flag.chapter_id} {hms(flag.at_s)} chunk {flag.index}{take}: {flag.verdict.verdict.upper()} ({checks})"
