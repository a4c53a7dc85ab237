"""Takes and the cache: find a chunk by its words, list and pick takes, clean what no chapter uses.

No network. The writing operations here run under the book's run lock (the runner takes it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import ConfigError
from pipeline.fsio import unlink_quietly
from pipeline.layout import BookLayout
from pipeline.models import Chunk, ChunkState
from pipeline.planning import BookPlan
from pipeline.store import Journal
from pipeline.text import match_form


def find_chunk(book: BookPlan, chapter_id: str, *, index: int | None = None, words: str | None = None) -> Chunk:
    """The chunk of a chapter by index, or the one chunk whose text contains ``words``.

    Words match the manuscript whatever their typography: straight or curly quotes, ``...`` or
    ``…``, any dash or a hyphen, any spacing, any case.
    """
    chunks = book.chapter(chapter_id).chunks
    if index is not None:
        if not 0 <= index < len(chunks):
            raise ConfigError(f"--chunk {index}: chapter {chapter_id} has chunks 0 to {len(chunks) - 1}")
        return chunks[index]
    assert words is not None
    wanted = match_form(words)
    hits = [c for c in chunks if wanted and wanted in match_form(c.text)]
    if len(hits) != 1:
        where = "no chunk" if not hits else f"{len(hits)} chunks ({', '.join(str(c.index) for c in hits)})"
        raise ConfigError(f"--at {words!r}: {where} of chapter {chapter_id} contain these words; "
                          "quote more of the sentence, or use --chunk N (see `audiobook takes`)")
    return hits[0]


@dataclass(frozen=True)
class TakeInfo:
    chunk_index: int
    take: int
    state: str
    selected: bool
    audio: Path | None
    created_at: float | None


def list_takes(book: BookPlan, journal: Journal, *, chapter_id: str) -> list[TakeInfo]:
    layout = BookLayout(book.manifest.output)
    selected = journal.selected_takes()
    out = []
    for chunk in book.chapter(chapter_id).chunks:
        first, _ = layout.take_paths(chunk.key)
        chosen = selected.get(chunk.key, 1)
        out.append(TakeInfo(chunk.index, 1, "downloaded" if first.is_file() else "missing", chosen == 1,
                            first if first.is_file() else None, None))
        for take in journal.takes(chunk.key):
            out.append(TakeInfo(chunk.index, take.take, take.state, chosen == take.take,
                                Path(take.audio_path) if take.audio_path else None, take.created_at))
    return out


def use_take(book: BookPlan, journal: Journal, *, chapter_id: str, index: int, take: int) -> Chunk:
    """Select take ``take`` of chunk ``index``; the choice survives later runs."""
    chunk = find_chunk(book, chapter_id, index=index)
    audio, _ = BookLayout(book.manifest.output).take_paths(chunk.key, take)
    if not audio.is_file():
        raise ConfigError(f"chunk {index} of {chapter_id} has no downloaded take {take}; see `audiobook takes`")
    journal.select_take(chunk.key, take)
    return chunk


@dataclass(frozen=True)
class CleanResult:
    cache: list[Path]     # cached takes no chapter of the plan uses (never a selected take)
    outputs: list[Path]   # deliverables the manifest no longer makes (removed chapters, old titles)
    size: int             # bytes they hold (held, before removal)

    @property
    def files(self) -> list[Path]:
        return [*self.cache, *self.outputs]


def clean(book: BookPlan, journal: Journal, *, dry_run: bool = False) -> CleanResult:
    """Remove cached audio no chapter of the current plan uses (never a selected take) and the output
    files the manifest no longer makes. Chunks that lose their audio go back to ``pending`` in the
    journal, so text that comes back is rendered again rather than looked for."""
    layout = BookLayout(book.manifest.output)
    used = {c.key for cp in book.chapters for c in cp.chunks}
    selected = journal.selected_takes()
    doomed = [(path, key) for path, key, take in layout.cache_files() if key not in used and selected.get(key) != take]
    outputs = layout.stale_outputs(book.manifest)
    files = [path for path, _ in doomed] + outputs
    result = CleanResult(cache=[path for path, _ in doomed], outputs=outputs,
                         size=sum(p.stat().st_size for p in files))
    if dry_run:
        return result
    rows = journal.rows({key for _, key in doomed})
    for path in files:
        unlink_quietly(path)
    for key, row in rows.items():
        if row.state == ChunkState.DOWNLOADED and not layout.take_paths(key)[0].exists():
            journal.transition(key, ChunkState.PENDING)
    return result
