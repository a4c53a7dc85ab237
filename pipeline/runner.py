"""The library entry points: each composes the stages for one command. Usable without click.

    plan(manifest)            manifest -> chunks -> estimate and changes          (no network)
    run(manifests, ...)       manifest -> chunks -> tasks -> downloads -> chapters -> book
    stitch(manifest, ...)     cached downloads -> chapters -> book                (no network)
    status(manifests)         journal -> per-chapter counts                       (no network)
    retake / use_take         one chunk -> a new take -> its chapter -> book
    list_takes / clean        journal and cache housekeeping                      (no network)
    create_voice              sample -> preview task -> voice registry

Every function that talks to the API gets its connection from ``_api_connection``: the real API
(flags, environment, manifest), or a simulator started in-process for ``--simulate``, whose outputs
go to ``<output>-simulated``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config import ApiKey, RunConfig, resolve_run_config
from pipeline.engine import BookJob, BookResult, Engine, Failure, cache_paths, parse_cache_name, take_paths
from pipeline.errors import ConfigError, CostLimitError, ManifestError, PipelineError
from pipeline.manifest import load_manifest
from pipeline.models import ChapterPlan, ChunkAudio, ChunkState, Manifest, Progress
from pipeline.planning import BookPlan, plan_book
from pipeline.store import Journal, existing_journal, run_lock
from pipeline.voices import VoiceRegistry, check_voices, resolve_voice_name

SIMULATOR_KEY = "sk-simulated-local"
SIMULATE_POLL_INTERVAL_S = 0.2
# The embedded simulator renders fast and fails fast: short task times and retry backoff.
SIMULATE_TASK_BASE_S = 0.2
SIMULATE_TASK_S_PER_CHAR = 0.0005
SIMULATE_BACKOFF_BASE_S = 0.05
SIMULATE_BACKOFF_CAP_S = 1.0
SIMULATE_REQUESTS_PER_MINUTE = 6000.0
MANIFEST_SUFFIXES = (".yaml", ".yml")


def _select(manifest: Manifest, chapter_ids: Sequence[str], origin: Path) -> tuple[str, ...]:
    known = [c.id for c in manifest.chapters]
    for chapter_id in chapter_ids:
        if chapter_id not in known:
            raise ConfigError(f"--chapter {chapter_id}: no such chapter in {origin}; chapters are {', '.join(known)}")
    return tuple(chapter_ids)


def simulated_output(output: Path) -> Path:
    """Where a ``--simulate`` rehearsal writes: beside the real output, never in it.

    Simulated audio must never be taken for paid audio of the same text by a later real run.
    """
    return output.with_name(output.name + "-simulated")


def load(manifest_path: Path, *, simulate: bool = False) -> Manifest:
    """Load and validate a manifest; with ``simulate``, point it at the rehearsal output folder."""
    manifest = load_manifest(manifest_path, voice_resolver=_voice_resolver())
    return dataclasses.replace(manifest, output=simulated_output(manifest.output)) if simulate else manifest


def plan(manifest_path: Path, *, chapter_ids: Sequence[str] = (), simulate: bool = False) -> BookPlan:
    """Validate a manifest and plan its chunks. No network."""
    manifest = load(manifest_path, simulate=simulate)
    return plan_with_journal(manifest, chapter_ids=_select(manifest, chapter_ids, manifest_path))


def plan_with_journal(manifest: Manifest, *, chapter_ids: Sequence[str] = ()) -> BookPlan:
    """Plan against the book's journal: unchanged text keeps its chunks; changes are counted."""
    previous: dict[str, list[tuple[str, str]]] = {}
    rendered: set[str] = set()
    with existing_journal(manifest.output) as journal:
        if journal is not None:
            previous = journal.chapter_plans()
            rendered = journal.rendered_keys()
    return plan_book(manifest, chapter_ids=chapter_ids, previous=previous, rendered=rendered)


def expand_manifest_paths(paths: Sequence[Path]) -> list[Path]:
    """Manifest files given directly, or every *.yaml / *.yml in a folder given."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix in MANIFEST_SUFFIXES and p.is_file())
            if not found:
                raise ConfigError(f"{path}: the folder holds no .yaml manifests; give a manifest file, or a "
                                  "folder of *.yaml manifests")
            out.extend(found)
        else:
            out.append(path)
    return out


def _voice_resolver() -> Callable[[str], str | None]:
    return resolve_voice_name


# --- run -----------------------------------------------------------------------------------------

@dataclass
class RunReport:
    books: list[BookResult]
    rejected: list[tuple[Path, PipelineError]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.rejected and all(not b.failures and b.downloaded == b.chunks for b in self.books)


@dataclass(frozen=True)
class RunOptions:
    chapter_ids: tuple[str, ...] = ()
    concurrency: int | None = None
    poll_interval_s: float | None = None
    max_cost: float | None = None
    base_url: str | None = None
    key_file: Path | None = None
    simulate: bool = False
    simulator_options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PreparedBook:
    plan: BookPlan
    pending_chunks: int
    pending_chars: int
    pending_cost: float


def prepare(manifest_paths: Sequence[Path], *, chapter_ids: Sequence[str] = (), simulate: bool = False
            ) -> tuple[list[PreparedBook], list[tuple[Path, PipelineError]]]:
    """Validate and plan every manifest; a bad one is set aside, not fatal to the others."""
    books: list[PreparedBook] = []
    rejected: list[tuple[Path, PipelineError]] = []
    for path in expand_manifest_paths(manifest_paths):
        try:
            book = plan(path, chapter_ids=chapter_ids, simulate=simulate)
        except (ManifestError, ConfigError) as error:
            rejected.append((path, error))
            continue
        books.append(_pending(book))
    outputs = [b.plan.manifest.output.resolve() for b in books]
    if len(set(outputs)) != len(outputs):
        raise ConfigError("two manifests write to the same output folder; give each book its own `output:`")
    return books, rejected


def _pending(book: BookPlan) -> PreparedBook:
    """What is still to pay for: chunks with no task created yet (per the journal, if any)."""
    pending = book.pending
    return PreparedBook(plan=book, pending_chunks=pending.to_render, pending_chars=pending.chars,
                        pending_cost=pending.cost)


def check_cost(books: Sequence[PreparedBook], max_cost: float | None) -> None:
    if max_cost is None:
        return
    if not math.isfinite(max_cost) or max_cost < 0:
        raise CostLimitError(f"--max-cost {max_cost}: give a number of {books[0].plan.manifest.pricing.currency if books else 'money'} "
                             "of at least 0")
    total = sum(b.pending_cost for b in books)
    if total > max_cost:
        currency = books[0].plan.manifest.pricing.currency if books else ""
        raise CostLimitError(f"the estimated cost {total:.2f} {currency} exceeds --max-cost {max_cost:.2f}; "
                             "raise the limit, or run fewer chapters with --chapter")


def run(manifest_paths: Sequence[Path], *, options: RunOptions = RunOptions(),
        on_event: Callable[[Progress], None] = lambda event: None,
        on_ready: Callable[[list[PreparedBook], list[tuple[Path, PipelineError]]], None] = lambda b, r: None,
        env: Mapping[str, str] | None = None) -> RunReport:
    """Render the books: validate all, show the plan (``on_ready``), spend, stitch, report."""
    books, rejected = prepare(manifest_paths, chapter_ids=options.chapter_ids, simulate=options.simulate)
    if not books:
        if rejected:
            raise rejected[0][1] if len(rejected) == 1 else ManifestError(
                [p for _, error in rejected for p in getattr(error, "problems", [])])
        raise ConfigError("no manifest given")
    check_cost(books, options.max_cost)
    env = os.environ if env is None else env
    model_ids = {c.voice.model_id for b in books for c in b.plan.manifest.chapters}
    if not options.simulate:  # the simulator's voices are not the account's
        for warning in check_voice_lifetimes(books, model_ids):
            on_event(Progress("warning", message=warning))
    # Every book shares one API account: the first manifest's api: section sets the limits.
    with contextlib.ExitStack() as stack:
        config = stack.enter_context(_api_connection(books, options, env))
        for book in books:  # before anything is shown or spent: one run per book at a time
            stack.enter_context(run_lock(book.plan.manifest.output))
        on_ready(books, rejected)
        results = asyncio.run(_run_books(books, config, on_event, simulated=options.simulate))
    if not options.simulate:
        used = {cp.chapter.voice.model_id for b in books for cp in b.plan.chapters
                if chunk_audio(b.plan.manifest, cp) is not None}
        VoiceRegistry.default().mark_activated(used, now=time.time())
    return RunReport(books=results, rejected=rejected)


def check_voice_lifetimes(books: Sequence[PreparedBook], model_ids: set[str]) -> list[str]:
    """Stop before spending on a voice known to be expired; warnings for those about to expire."""
    activated: set[str] = set()
    for book in books:
        with existing_journal(book.plan.manifest.output) as journal:
            if journal is not None:
                activated |= {m for m in model_ids if journal.voice_activated(m)}
    return check_voices(model_ids, now=time.time(), activated=lambda m: m in activated)


@contextlib.contextmanager
def _api_connection(books: Sequence[PreparedBook], options: RunOptions, env: Mapping[str, str]
                    ) -> Iterator[RunConfig]:
    """The run configuration for the real API (flags, env, manifest), or for a simulator started here
    for ``--simulate``, with its fast timings."""
    api = books[0].plan.manifest.api
    if not options.simulate:
        yield resolve_run_config(api, env=env, base_url=options.base_url, key_file=options.key_file,
                                 concurrency=options.concurrency, poll_interval_s=options.poll_interval_s,
                                 max_cost=options.max_cost)
        return
    from pipeline.simulator import Simulator, SimulatorConfig

    voices = sorted({c.voice.model_id for b in books for c in b.plan.manifest.chapters})
    # Real speech from espeak-ng when the machine has it (a nicer demo), the synthetic voice otherwise.
    settings = {"task_base_s": SIMULATE_TASK_BASE_S, "task_s_per_char": SIMULATE_TASK_S_PER_CHAR, "voice": "auto",
                **options.simulator_options}
    sim_config = SimulatorConfig(api_key=SIMULATOR_KEY, preload_voices=tuple(voices), **settings)
    with Simulator(sim_config, host="127.0.0.1", port=0, files_port=0) as sim:
        config = resolve_run_config(api, env=env, base_url=sim.base_url, api_key=ApiKey(SIMULATOR_KEY),
                                    concurrency=options.concurrency,
                                    poll_interval_s=options.poll_interval_s or SIMULATE_POLL_INTERVAL_S,
                                    max_cost=options.max_cost, backoff_base_s=SIMULATE_BACKOFF_BASE_S,
                                    backoff_cap_s=SIMULATE_BACKOFF_CAP_S)
        yield dataclasses.replace(config, requests_per_minute=SIMULATE_REQUESTS_PER_MINUTE)


async def _run_books(books: Sequence[PreparedBook], config: RunConfig, on_event: Callable[[Progress], None],
                     *, simulated: bool = False) -> list[BookResult]:
    from pipeline.client import SoundCloneClient

    journals = [Journal.open(b.plan.manifest.output) for b in books]
    if simulated:
        for journal in journals:  # the tasks of an earlier simulator died with it
            journal.forget_tasks_in_flight()
    try:
        async with SoundCloneClient.from_config(config) as client:
            engine = Engine(client=client, config=config, on_event=on_event)
            jobs = [BookJob(manifest=b.plan.manifest, chapters=b.plan.chapters, journal=j,
                            on_chapter_ready=_stitcher(b.plan.manifest))
                    for b, j in zip(books, journals)]
            results = await engine.run(jobs)
        for book, result in zip(books, results):
            try:
                selected = tuple(cp.chapter.id for cp in book.plan.chapters)
                every = len(selected) == len(book.plan.manifest.chapters)
                result.outputs = await asyncio.to_thread(finish_book, book.plan.manifest,
                                                         chapter_ids=() if every else selected)
            except PipelineError as error:
                result.failures.append(Failure(book.plan.manifest.book.title, "-", None, str(error)))
        return results
    finally:
        for journal in journals:
            journal.close()


def _stitcher(manifest: Manifest) -> Callable[[ChapterPlan], Any]:
    async def on_chapter_ready(chapter_plan: ChapterPlan) -> list[Path]:
        output = await asyncio.to_thread(assemble, manifest, chapter_plan)
        return [output.audio_path]
    return on_chapter_ready


# --- stitch --------------------------------------------------------------------------------------

def _selected_takes(manifest: Manifest) -> dict[str, int]:
    with existing_journal(manifest.output) as journal:
        return journal.selected_takes() if journal is not None else {}


def chunk_audio(manifest: Manifest, chapter_plan: ChapterPlan) -> list[ChunkAudio] | None:
    """The cached audio of every chunk of a chapter (the selected take of each), or None while any is missing."""
    selected = _selected_takes(manifest)
    out = []
    for chunk in chapter_plan.chunks:
        audio, subtitles = take_paths(manifest.output, chunk.key, selected.get(chunk.key, 1))
        if not audio.is_file():
            return None
        out.append(ChunkAudio(chunk=chunk, audio_path=audio, subtitle_path=subtitles if subtitles.is_file() else None))
    return out


def assemble(manifest: Manifest, chapter_plan: ChapterPlan, *, force: bool = False) -> Any:
    from pipeline.assembly import assemble_chapter

    audio = chunk_audio(manifest, chapter_plan)
    if audio is None:
        raise PipelineError(f"chapter {chapter_plan.chapter.id}: not every chunk is downloaded yet; "
                            "run `audiobook run` first")
    return assemble_chapter(manifest=manifest, plan=chapter_plan, audio=audio, track=chapter_plan.chapter.number,
                            total_tracks=len(manifest.chapters), force=force)


def finish_book(manifest: Manifest, *, force: bool = False, chapter_ids: Sequence[str] = ()) -> list[Path]:
    """Assemble (or confirm) every chapter whose audio is in; when all are, the M4B and the report.

    With ``chapter_ids`` only those chapters are assembled; the others are taken as they were last
    built (never rebuilt), so a one-chapter run leaves the rest of the book alone.
    """
    from pipeline.assembly import existing_chapter
    from pipeline.delivery import check_delivery, write_delivery_report
    from pipeline.export import export_book

    book = plan_with_journal(manifest)
    outputs = []
    for chapter_plan in book.chapters:
        if chapter_ids and chapter_plan.chapter.id not in chapter_ids:
            previous = existing_chapter(manifest, chapter_plan.chapter.id)
            if previous is not None:
                outputs.append(previous)
        elif chunk_audio(manifest, chapter_plan) is not None:
            outputs.append(assemble(manifest, chapter_plan, force=force))
    files = [o.audio_path for o in outputs]
    if len(outputs) == len(book.chapters) and manifest.audio.m4b:
        book_file = export_book(manifest=manifest, chapters=outputs, force=force)
        if book_file is not None:
            files.append(book_file)
    if files:
        report = check_delivery(manifest=manifest, files=files)
        report_path = manifest.output / "delivery-report.json"
        write_delivery_report(report, report_path)
        files.append(report_path)
    return files


def stitch(manifest_path: Path, *, chapter_ids: Sequence[str] = (), force: bool = False,
           simulate: bool = False) -> list[Path]:
    """Re-assemble chapters from the cache, without any API call."""
    manifest = load(manifest_path, simulate=simulate)
    selected = _select(manifest, chapter_ids, manifest_path)
    book = plan_with_journal(manifest, chapter_ids=selected)
    missing = [cp.chapter.id for cp in book.chapters if chunk_audio(manifest, cp) is None]
    if missing:
        raise PipelineError(f"chapters {', '.join(missing)} are not fully downloaded; run `audiobook run "
                            f"{manifest_path}` first (stitch never calls the API)")
    with run_lock(manifest.output):
        return finish_book(manifest, force=force, chapter_ids=selected)


# --- status --------------------------------------------------------------------------------------

@dataclass
class ChapterStatus:
    id: str
    title: str
    chunks: int
    by_state: dict[str, int]
    failures: list[tuple[int, str]]
    output: Path | None


@dataclass
class BookStatus:
    manifest: Path
    title: str
    output: Path
    chapters: list[ChapterStatus]
    tasks_billed: int
    chars_billed: int
    possible_duplicates: int
    error: str | None = None

    @property
    def totals(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for chapter in self.chapters:
            for state, count in chapter.by_state.items():
                out[state] = out.get(state, 0) + count
        return out


def status(manifest_paths: Sequence[Path], *, simulate: bool = False) -> list[BookStatus]:
    """Per book and chapter: chunks by state, failures, billing so far. Safe while a run is going."""
    from pipeline.assembly import chapter_stem

    out = []
    for path in expand_manifest_paths(manifest_paths):
        try:
            book = plan(path, simulate=simulate)
        except (ManifestError, ConfigError) as error:
            out.append(BookStatus(path, path.stem, path.parent, [], 0, 0, 0, error=str(error)))
            continue
        manifest = book.manifest
        rows = {}
        tasks = chars = duplicates = 0
        with existing_journal(manifest.output) as journal:
            if journal is not None:
                rows = journal.rows(c.key for cp in book.chapters for c in cp.chunks)
                tasks, chars = journal.billed()
                duplicates = len(journal.events("possible-duplicate"))
        chapters = []
        for cp in book.chapters:
            by_state: dict[str, int] = {}
            failures = []
            for chunk in cp.chunks:
                row = rows.get(chunk.key)
                state = row.state.value if row else ChunkState.PENDING.value
                by_state[state] = by_state.get(state, 0) + 1
                if row and row.error and row.state in (ChunkState.FAILED, ChunkState.PENDING):
                    failures.append((chunk.index, row.error))
            audio = manifest.output / f"{chapter_stem(cp.chapter.number, cp.chapter.id)}.mp3"
            chapters.append(ChapterStatus(cp.chapter.id, cp.chapter.title, len(cp.chunks), by_state, failures,
                                          audio if audio.exists() else None))
        out.append(BookStatus(path, manifest.book.title, manifest.output, chapters, tasks, chars, duplicates))
    return out


# --- voices --------------------------------------------------------------------------------------

def create_voice(request: Any, *, base_url: str | None = None, key_file: Path | None = None,
                 poll_interval_s: float = 5.0, on_event: Callable[[str], None] = lambda message: None,
                 env: Mapping[str, str] | None = None) -> Any:
    """Check the sample, clone it through the API, register the voice (``audiobook voice create``)."""
    from pipeline.client import SoundCloneClient
    from pipeline.models import ApiSettings
    from pipeline.voices import check_request
    from pipeline.voices import create_voice as clone

    check_request(request)
    config = resolve_run_config(ApiSettings(), env=os.environ if env is None else env, base_url=base_url,
                                key_file=key_file)

    async def go() -> Any:
        async with SoundCloneClient.from_config(config) as client:
            return await clone(client, request, registry=VoiceRegistry.default(), poll_interval_s=poll_interval_s,
                               on_event=on_event)

    return asyncio.run(go())


# --- retakes and housekeeping --------------------------------------------------------------------

def find_chunk(book: BookPlan, chapter_id: str, *, index: int | None = None, words: str | None = None) -> Any:
    """The chunk of a chapter by index, or the one chunk whose text contains ``words``."""
    from pipeline.text import spoken_only

    chunks = book.chapter(chapter_id).chunks
    if index is not None:
        if not 0 <= index < len(chunks):
            raise ConfigError(f"--chunk {index}: chapter {chapter_id} has chunks 0 to {len(chunks) - 1}")
        return chunks[index]
    assert words is not None

    def norm(text: str) -> str:
        return " ".join(spoken_only(text).split()).casefold()

    wanted = norm(words)
    hits = [c for c in chunks if wanted and wanted in norm(c.text)]
    if len(hits) != 1:
        where = "no chunk" if not hits else f"{len(hits)} chunks ({', '.join(str(c.index) for c in hits)})"
        raise ConfigError(f"--at {words!r}: {where} of chapter {chapter_id} contain these words; "
                          "quote more of the sentence, or use --chunk N (see `audiobook takes`)")
    return hits[0]


def retake(manifest_path: Path, *, chapter_id: str, index: int | None = None, words: str | None = None,
           base_url: str | None = None, key_file: Path | None = None, simulate: bool = False,
           env: Mapping[str, str] | None = None) -> tuple[Any, int, list[Path]]:
    """Render a new take of one chunk, select it, re-assemble the chapter and the book."""
    book = plan(manifest_path, chapter_ids=(chapter_id,), simulate=simulate)
    manifest = book.manifest
    chunk = find_chunk(book, chapter_id, index=index, words=words)
    if chunk_audio(manifest, book.chapter(chapter_id)) is None:
        raise PipelineError(f"chapter {chapter_id} is not fully rendered yet; run `audiobook run {manifest_path} "
                            f"--chapter {chapter_id}` first")
    env = os.environ if env is None else env
    prepared = [_pending(book)]
    options = RunOptions(base_url=base_url, key_file=key_file, simulate=simulate)
    with _api_connection(prepared, options, env) as config:

        async def go() -> int:
            from pipeline.client import SoundCloneClient

            with run_lock(manifest.output), Journal.open(manifest.output) as journal:
                async with SoundCloneClient.from_config(config) as client:
                    engine = Engine(client=client, config=config)
                    job = BookJob(manifest=manifest, chapters=book.chapters, journal=journal,
                                  on_chapter_ready=_stitcher(manifest))
                    return await engine.render_take(job, chunk)

        take = asyncio.run(go())
    return chunk, take, finish_book(manifest, chapter_ids=(chapter_id,))


@dataclass(frozen=True)
class TakeInfo:
    chunk_index: int
    take: int
    state: str
    selected: bool
    audio: Path | None
    created_at: float | None


def list_takes(manifest_path: Path, *, chapter_id: str, simulate: bool = False) -> list[TakeInfo]:
    book = plan(manifest_path, chapter_ids=(chapter_id,), simulate=simulate)
    manifest = book.manifest
    out = []
    with Journal.open(manifest.output) as journal:
        selected = journal.selected_takes()
        for chunk in book.chapter(chapter_id).chunks:
            first, _ = cache_paths(manifest.output, chunk.key)
            chosen = selected.get(chunk.key, 1)
            out.append(TakeInfo(chunk.index, 1, "downloaded" if first.is_file() else "missing", chosen == 1,
                                first if first.is_file() else None, None))
            for take, state, _task, audio, created in journal.takes(chunk.key):
                out.append(TakeInfo(chunk.index, take, state, chosen == take, Path(audio) if audio else None,
                                    created))
    return out


def use_take(manifest_path: Path, *, chapter_id: str, index: int, take: int, simulate: bool = False) -> list[Path]:
    """Select take ``take`` of chunk ``index`` and re-assemble; the choice survives later runs."""
    book = plan(manifest_path, chapter_ids=(chapter_id,), simulate=simulate)
    manifest = book.manifest
    chunk = find_chunk(book, chapter_id, index=index)
    audio, _ = take_paths(manifest.output, chunk.key, take)
    if not audio.is_file():
        raise ConfigError(f"chunk {index} of {chapter_id} has no downloaded take {take}; see `audiobook takes`")
    with run_lock(manifest.output):
        with Journal.open(manifest.output) as journal:
            journal.select_take(chunk.key, take)
        return finish_book(manifest, chapter_ids=(chapter_id,))


def clean(manifest_path: Path, *, dry_run: bool = False, simulate: bool = False) -> tuple[list[Path], int]:
    """Remove cached audio no chapter of the current plan uses (never a selected take).

    Returns the files removed (or that would be) and the bytes they hold. Their chunks go back to
    ``pending`` in the journal, so text that comes back is rendered again rather than looked for.
    """
    book = plan(manifest_path, simulate=simulate)
    manifest = book.manifest
    cache = manifest.output / "cache"
    if not cache.is_dir():
        return [], 0
    used = {c.key for cp in book.chapters for c in cp.chunks}
    with run_lock(manifest.output), Journal.open(manifest.output) as journal:
        selected = journal.selected_takes()
        doomed: list[Path] = []
        for path in sorted(cache.glob("*/*")):
            key, take = parse_cache_name(path.name)
            if key in used or selected.get(key) == take:
                continue
            doomed.append(path)
        size = sum(p.stat().st_size for p in doomed)
        if not dry_run:
            rows = journal.rows({parse_cache_name(p.name)[0] for p in doomed})
            for path in doomed:
                path.unlink()
            for key, row in rows.items():
                if row.state == ChunkState.DOWNLOADED and not cache_paths(manifest.output, key)[0].exists():
                    journal.transition(key, ChunkState.PENDING)
    return doomed, size
