"""The library entry points: each composes the stages for one command. Usable without click.

    load(path)                YAML -> validated Manifest (the only entry point that takes a path)
    plan(manifest)            manifest -> chunks -> estimate and changes          (no network)
    run(manifests, ...)       manifest -> chunks -> tasks -> downloads -> chapters -> book
    stitch(manifest, ...)     cached downloads -> chapters -> book                (no network)
    status(manifest)          journal -> per-chapter counts and billing           (no network)
    retake / use_take         one chunk -> a new take -> its chapter -> book
    retake_from_review        review marks -> a new take per marked chunk -> chapters -> book
    review(manifest)          journal and chapter builds -> review pages            (no network)
    list_takes / clean        journal and cache housekeeping                      (no network)
    create_voice              sample -> preview task -> voice registry

Entry points take :class:`~pipeline.models.Manifest` values, so a book built in memory (by an
importer, or a library user) runs like one read from a file. Every function that talks to the API
gets its connection from :func:`_api_connection`: the real API (flags, environment, manifest), or a
simulator started in-process for ``--simulate``. A rehearsal's manifest is :func:`rehearsal` of the
real one: it writes to ``<output>-simulated``.

A book's output folder belongs to one book: the journal records the manifest that first ran there,
and every command refuses another manifest's book there (``same_book`` confirms a renamed manifest).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import os
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline import fsio, qc, verdicts
from pipeline.assembly import ChapterOutput
from pipeline.config import ApiKey, RunConfig, resolve_run_config
from pipeline.delivery import report_failures
from pipeline.engine import BookJob, BookResult, Engine, Failure
from pipeline.errors import STOPS_BATCH, ConfigError, CostLimitError, ManifestError, PipelineError, StateError
from pipeline.finishing import ChapterWorkers, chunk_audio, finish_book
from pipeline.housekeeping import CleanResult, TakeInfo, find_chunk
from pipeline.housekeeping import clean as clean_book
from pipeline.housekeeping import list_takes as takes_of
from pipeline.housekeeping import use_take as select_take
from pipeline.layout import BookLayout, name_problems, simulated_twin
from pipeline.manifest import load_manifest
from pipeline.models import ChapterPlan, Chunk, Manifest, Progress
from pipeline.planning import BookPlan, plan_book
from pipeline.review.marks import MarkPlan, plan_marks, read_marks
from pipeline.status import BookStatus, book_status
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
SAY_MAX_CHARS = 500


# --- manifests -----------------------------------------------------------------------------------

def load(manifest_path: Path, *, simulate: bool = False) -> Manifest:
    """Load and validate a manifest (resolving voice names in the registry); with ``simulate``, the
    rehearsal of it."""
    manifest = load_manifest(manifest_path, voice_resolver=resolve_voice_name)
    return rehearsal(manifest) if simulate else manifest


def rehearsal(manifest: Manifest) -> Manifest:
    """The manifest of a ``--simulate`` rehearsal: the same book, written beside the real output."""
    return dataclasses.replace(manifest, output=simulated_twin(manifest.output))


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


def load_all(paths: Sequence[Path], *, simulate: bool = False
             ) -> tuple[list[Manifest], list[tuple[Path, PipelineError]]]:
    """Every manifest of ``paths`` (files, or folders of them); a bad one is set aside, not fatal."""
    manifests: list[Manifest] = []
    rejected: list[tuple[Path, PipelineError]] = []
    for path in expand_manifest_paths(paths):
        try:
            manifests.append(load(path, simulate=simulate))
        except (ManifestError, ConfigError) as error:
            rejected.append((path, error))
    return manifests, rejected


def _select(manifest: Manifest, chapter_ids: Sequence[str]) -> tuple[str, ...]:
    known = [c.id for c in manifest.chapters]
    for chapter_id in chapter_ids:
        if chapter_id not in known:
            raise ConfigError(f"--chapter {chapter_id}: no such chapter in {manifest.path}; chapters are "
                              f"{', '.join(known)}")
    return tuple(chapter_ids)


def _identity(manifest: Manifest) -> str:
    return str(Path(manifest.path).resolve())


def check_owner(journal: Journal, manifest: Manifest, *, same_book: bool = False, claim: bool = False) -> None:
    """Refuse a folder that belongs to another book; with ``claim``, record this one as its owner
    (with ``same_book``, also when another manifest had it: the user says it is this book renamed)."""
    owner = journal.owner()
    me = _identity(manifest)
    if owner is not None and owner.manifest != me and not same_book:
        raise StateError(
            f"the output folder {manifest.output} belongs to the book '{owner.title}' (manifest {owner.manifest}), "
            f"not to '{manifest.book.title}' ({me}): running it here would overwrite that book's chapter files and "
            "mix their billing. Give this manifest its own `output:`; or, if it is that book with its manifest "
            "renamed or moved, rerun with --same-book")
    if claim and (owner is None or owner.manifest != me or owner.title != manifest.book.title):
        journal.claim(manifest=me, title=manifest.book.title)


@contextlib.contextmanager
def _book_journal(manifest: Manifest, *, same_book: bool = False) -> Iterator[Journal | None]:
    """The book's journal for reading (None before the first run), after the owner check."""
    with existing_journal(manifest.output) as journal:
        if journal is not None:
            check_owner(journal, manifest, same_book=same_book)
        yield journal


@contextlib.contextmanager
def _writing(manifest: Manifest, *, same_book: bool = False) -> Iterator[Journal]:
    """The run lock and the journal of a book, claimed for ``manifest``."""
    with run_lock(manifest.output), Journal.open(manifest.output) as journal:
        check_owner(journal, manifest, same_book=same_book, claim=True)
        yield journal


# --- plan ----------------------------------------------------------------------------------------

def plan(manifest: Manifest, *, chapter_ids: Sequence[str] = (), rerender_expired: bool = False,
         same_book: bool = False) -> BookPlan:
    """Plan a book against its journal: unchanged text keeps its chunks; changes are counted. No network."""
    selected = _select(manifest, chapter_ids)
    with _book_journal(manifest, same_book=same_book) as journal:
        book = plan_book(manifest, chapter_ids=selected, journal=journal, rerender_expired=rerender_expired)
        return _with_retake_worst_case(book, journal)


def _with_retake_worst_case(book: BookPlan, journal: Journal | None) -> BookPlan:
    """``book`` with the most ``qc.on_fail: retake`` could add: ``qc.max_retakes`` retakes of every chunk
    to render and of every held take that fails QC now (less the retakes it already had)."""
    settings = book.manifest.qc
    if settings.on_fail != "retake" or not settings.max_retakes:
        return book
    fates = {(c.chapter_id, f.index): f for c in book.changes for f in c.chunks}
    book_qc = verdicts.judge(book.manifest, journal, book.chapters) if journal is not None else None
    tasks, chars, seen = 0, 0, set()
    for cp in book.chapters:
        for chunk in cp.chunks:
            if chunk.key in seen:
                continue
            seen.add(chunk.key)
            fate = fates.get((cp.chapter.id, chunk.index))
            if fate is None or fate.fate != "reuse":
                times = settings.max_retakes
            else:
                verdict = book_qc.of(chunk) if book_qc is not None else None
                done = journal.takes_made(chunk.key, "qc") if journal is not None else 0
                times = max(0, settings.max_retakes - done) if verdict is not None and verdict.verdict == qc.FAIL \
                    else 0
            tasks += times
            chars += times * chunk.billed_chars
    cost = round(book.manifest.pricing.cost(billed_chars=chars, tasks=tasks), 4)
    return dataclasses.replace(book, qc_retake_tasks=tasks, qc_retake_cost=cost)


# --- run -----------------------------------------------------------------------------------------

@dataclass
class RunReport:
    books: list[BookResult]
    stopped: PipelineError | None = None
    rejected: list[tuple[Path, PipelineError]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (self.stopped is None and not self.rejected
                and all(not b.failures and b.downloaded == b.chunks and not b.qc_failed for b in self.books))

    @property
    def exit_code(self) -> int:
        if self.stopped is not None:
            return max(self.stopped.exit_code, 1)
        return 0 if self.ok else 1


@dataclass(frozen=True)
class RunOptions:
    chapter_ids: tuple[str, ...] = ()
    concurrency: int | None = None
    poll_interval_s: float | None = None
    max_cost: float | None = None
    base_url: str | None = None
    key_file: Path | None = None
    simulate: bool = False
    rerender_expired: bool = False
    same_book: bool = False
    # worker processes that build chapters beside the engine (None: one per core, at a lower priority;
    # 0: none, in this process)
    chapter_workers: int | None = None
    simulator_options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PreparedBook:
    plan: BookPlan
    pending_chunks: int
    pending_chars: int
    pending_cost: float
    expired_chunks: int = 0
    expired_cost: float = 0.0


def prepare(manifests: Sequence[Manifest], *, chapter_ids: Sequence[str] = (), rerender_expired: bool = False,
            same_book: bool = False) -> list[PreparedBook]:
    """Plan every book and check everything that can be checked before the first paid request."""
    outputs = [m.output.resolve() for m in manifests]
    if len(set(outputs)) != len(outputs):
        raise ConfigError("two manifests write to the same output folder; give each book its own `output:`")
    books = []
    for manifest in manifests:
        problems = name_problems(manifest)
        if problems:
            raise ConfigError(f"{manifest.path}: " + "; ".join(problems))
        book = plan(manifest, chapter_ids=chapter_ids, rerender_expired=rerender_expired, same_book=same_book)
        pending = book.pending
        books.append(PreparedBook(plan=book, pending_chunks=pending.to_render, pending_chars=pending.chars,
                                  pending_cost=pending.cost, expired_chunks=pending.expired,
                                  expired_cost=pending.expired_cost))
    return books


def money(value: float, limit: float) -> tuple[str, str]:
    """``value`` and ``limit`` with enough decimals (2 to 6) that two different amounts never print the
    same ("0.80 exceeds 0.80")."""
    for places in range(2, 7):
        shown = f"{value:.{places}f}", f"{limit:.{places}f}"
        if shown[0] != shown[1]:
            return shown
    return repr(value), repr(limit)


def check_cost(books: Sequence[PreparedBook], max_cost: float | None) -> None:
    if max_cost is None:
        return
    currency = books[0].plan.manifest.pricing.currency if books else ""
    if not math.isfinite(max_cost) or max_cost < 0:
        raise CostLimitError(f"--max-cost {max_cost}: give an amount of {currency or 'money'} of at least 0")
    total = round(sum(b.pending_cost for b in books), 6)  # 0.01 + 0.05 must not exceed 0.06
    if total > max_cost:
        shown, limit = money(total, max_cost)
        raise CostLimitError(f"the estimated cost {shown} {currency} exceeds --max-cost {limit}; raise the limit, "
                             "or run fewer chapters with --chapter")


def run(manifests: Sequence[Manifest], *, options: RunOptions = RunOptions(),
        on_event: Callable[[Progress], None] = lambda event: None,
        on_ready: Callable[[list[PreparedBook]], None] = lambda books: None,
        env: Mapping[str, str] | None = None) -> RunReport:
    """Render the books: check all, show the plan (``on_ready``), spend, stitch, report."""
    if not manifests:
        raise ConfigError("no manifest given")
    if options.simulate:
        manifests = [rehearsal(m) for m in manifests]
    books = prepare(manifests, chapter_ids=options.chapter_ids, rerender_expired=options.rerender_expired,
                    same_book=options.same_book)
    check_cost(books, options.max_cost)
    env = os.environ if env is None else env
    model_ids = {c.voice.model_id for b in books for c in b.plan.manifest.chapters}
    if not options.simulate:  # the simulator's voices are not the account's
        for warning in check_voice_lifetimes(books, model_ids):
            on_event(Progress("warning", message=warning))
    # Every book shares one API account: the first manifest's api: section sets the limits.
    with contextlib.ExitStack() as stack:
        config = stack.enter_context(_api_connection(books, options, env))
        journals = [stack.enter_context(_writing(b.plan.manifest, same_book=options.same_book)) for b in books]
        on_ready(books)
        report = asyncio.run(_run_books(books, journals, config, on_event, options=options))
    if not options.simulate:
        used = {c.request.model_id for r, b in zip(report.books, books, strict=True) if r.downloaded
                for cp in b.plan.chapters for c in cp.chunks}
        VoiceRegistry.default().mark_activated(used, now=time.time())
    return report


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
    # Real speech from espeak-ng (the program, else the `voice` extra's library), the synthetic voice otherwise.
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


async def _run_books(books: Sequence[PreparedBook], journals: Sequence[Journal], config: RunConfig,
                     on_event: Callable[[Progress], None], *, options: RunOptions) -> RunReport:
    from pipeline.client import SoundCloneClient

    if options.simulate:
        for journal in journals:  # the tasks of an earlier simulator died with it
            journal.forget_tasks_in_flight()
    built: list[dict[str, ChapterOutput]] = [{} for _ in books]
    budget = RetakeBudget.for_run(books, options.max_cost)
    with ChapterWorkers(options.chapter_workers) as workers:
        async with SoundCloneClient.from_config(config) as client:
            engine = Engine(client=client, config=config, on_event=on_event)
            jobs = [BookJob(manifest=b.plan.manifest, chapters=b.plan.chapters, journal=j,
                            on_chapter_ready=_assembled_afterwards, rerender_expired=options.rerender_expired)
                    for b, j in zip(books, journals, strict=True)]
            for job, done in zip(jobs, built, strict=True):
                job.on_chapter_ready = _stitcher(job, engine, workers, done, budget=budget, on_event=on_event)
            batch = await engine.run(jobs)
        for book, journal, result, done in zip(books, journals, batch.books, built, strict=True):
            # stored only when the batch ran through (a stop may be a full disk or a broken journal, whose
            # error the summary already carries)
            try:
                book_qc = verdicts.judge(book.plan.manifest, journal, book.plan.chapters,
                                         store=batch.stopped is None)
            except StateError:
                if batch.stopped is None:
                    raise
                continue
            if batch.stopped is None:
                try:
                    result.outputs = await asyncio.to_thread(
                        finish_book, book.plan.manifest, book.plan.chapters, selected=journal.selected_takes(),
                        only=options.chapter_ids, built=done, workers=workers,
                        qc_counts=book_qc.counts_by_chapter(book.plan.chapters))
                except PipelineError as error:
                    result.failures.append(Failure(book.plan.manifest.book.title, "-", None, str(error)))
                report = BookLayout(book.plan.manifest.output).report
                if report in result.outputs:  # a delivery check that fails fails the run, rule by rule
                    result.failures.extend(Failure(book.plan.manifest.book.title, "delivery", None, line)
                                           for line in report_failures(report))
            for flag in verdicts.flags(book.plan.manifest, book.plan.chapters, book_qc, done):
                result.qc_flags.append(verdicts.describe(flag))
                result.qc_failed += flag.verdict.verdict == qc.FAIL
    return RunReport(books=batch.books, stopped=batch.stopped)


def _stitcher(job: BookJob, engine: Engine, workers: ChapterWorkers, built: dict[str, ChapterOutput], *,
              budget: RetakeBudget, on_event: Callable[[Progress], None]
              ) -> Callable[[ChapterPlan], Awaitable[list[Path]]]:
    """As soon as a chapter's audio is in: judge its takes (and with ``qc.on_fail: retake`` retake the
    failing ones, keeping the best take), then build it in a worker process; keep what was built for
    the book at the end of the run (so no chapter is assembled twice)."""
    manifest, journal = job.manifest, job.journal

    async def on_chapter_ready(chapter_plan: ChapterPlan) -> list[Path]:
        await _measure_missing(manifest, journal, [chapter_plan])
        if manifest.qc.on_fail == "retake" and not engine.stopping:
            await _qc_retakes(engine, job, chapter_plan, budget, on_event)
        output = await workers.build(manifest, chapter_plan, journal.selected_takes())
        built[chapter_plan.chapter.id] = output
        return [output.audio_path]
    return on_chapter_ready


async def _measure_missing(manifest: Manifest, journal: Journal, chapters: Sequence[ChapterPlan]) -> None:
    """Measure the takes the engine did not (decoding in a thread; the journal is written here only)."""
    todo = verdicts.unmeasured(manifest, journal, chapters)
    if todo:
        verdicts.save_measures(journal, await asyncio.to_thread(verdicts.measure_all, todo))


@dataclass
class RetakeBudget:
    """What automatic retakes may still spend under ``--max-cost`` (None: no limit)."""

    left: float | None

    @classmethod
    def for_run(cls, books: Sequence[PreparedBook], max_cost: float | None) -> RetakeBudget:
        return cls(None if max_cost is None else max_cost - sum(b.pending_cost for b in books))

    def allows(self, cost: float) -> bool:
        if self.left is None:
            return True
        if cost > self.left + 1e-9:
            return False
        self.left -= cost
        return True


async def _qc_retakes(engine: Engine, job: BookJob, chapter_plan: ChapterPlan, budget: RetakeBudget,
                      on_event: Callable[[Progress], None]) -> None:
    """Retake every chunk of the chapter whose selected take fails QC, at most ``qc.max_retakes`` times
    each and within the budget, then select the best take of each (every take is kept)."""
    manifest, journal = job.manifest, job.journal
    settings, pricing = manifest.qc, manifest.pricing
    for _ in range(settings.max_retakes):
        book_qc = verdicts.judge(manifest, journal, job.chapters)
        failing = [c for c in chapter_plan.chunks if (v := book_qc.of(c)) is not None and v.verdict == qc.FAIL
                   and journal.takes_made(c.key, "qc") < settings.max_retakes]
        chosen = []
        for chunk in failing:
            checks = ", ".join(c.name for c in book_qc.of(chunk).failed)  # type: ignore[union-attr]
            cost = pricing.cost(billed_chars=chunk.billed_chars, tasks=1)
            if not budget.allows(cost):
                on_event(Progress("warning", chunk.chapter_id, chunk.index,
                                  f"{chunk.chapter_id} chunk {chunk.index} fails QC ({checks}) but a retake "
                                  f"(about {cost:.2f} {pricing.currency}) would exceed --max-cost: not retaken",
                                  book=job.result.title))
                continue
            on_event(Progress("warning", chunk.chapter_id, chunk.index,
                              f"{chunk.chapter_id} chunk {chunk.index} fails QC ({checks}): rendering a fresh take "
                              f"(qc.on_fail: retake), about {cost:.2f} {pricing.currency}", book=job.result.title))
            chosen.append(chunk)
        if not chosen:
            return
        results = await asyncio.gather(*(engine.render_take(job, c, reason="qc", select=False) for c in chosen),
                                       return_exceptions=True)
        for chunk, result in zip(chosen, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, PipelineError):
                    raise result
                on_event(Progress("warning", chunk.chapter_id, chunk.index,
                                  f"the QC retake of {chunk.chapter_id} chunk {chunk.index} failed: {result}; its "
                                  "first take is kept", book=job.result.title))
            else:
                job.result.qc_retakes += 1
        await _measure_missing(manifest, journal, [chapter_plan])
        book_qc = verdicts.judge(manifest, journal, job.chapters)
        for chunk in chosen:
            takes = book_qc.takes_of(chunk)
            if takes:
                journal.select_take(chunk.key, qc.best_take(takes))


# --- stitch --------------------------------------------------------------------------------------

def stitch(manifest: Manifest, *, chapter_ids: Sequence[str] = (), force: bool = False,
           same_book: bool = False) -> list[Path]:
    """Re-assemble chapters from the cache, without any API call."""
    book = plan(manifest, chapter_ids=chapter_ids, same_book=same_book)
    with _writing(manifest, same_book=same_book) as journal:
        selected = journal.selected_takes()
        missing = [cp for cp in book.chapters if chunk_audio(manifest, cp, selected) is None]
        if missing:
            raise PipelineError(_not_rendered(book, missing))
        # QC: every take measured (again, with force: the checks may have changed) and judged
        verdicts.measure_missing(manifest, journal, book.chapters, force=force)
        book_qc = verdicts.judge(manifest, journal, book.chapters, store=True)
        return finish_book(manifest, book.chapters, selected=selected, force=force, only=tuple(chapter_ids),
                           qc_counts=book_qc.counts_by_chapter(book.chapters))


def deliver(manifest: Manifest, *, profile: str, out: Path | None = None, confirm_ai: bool = False,
            same_book: bool = False) -> Any:
    """Build a retailer's package (:mod:`pipeline.packaging`) from the finished book, without any API
    call: whatever is out of date is stitched from the cache first, and a chunk with no audio stops it."""
    from pipeline import packaging, profiles

    try:
        chosen = profiles.profile(profile)
    except KeyError as exc:
        raise ConfigError(f"{exc.args[0]} (--profile)") from None
    packaging.refuse_early(manifest, chosen, confirm_ai=confirm_ai, out=out)
    stitch(manifest, same_book=same_book)
    book = plan(manifest, same_book=same_book)
    qc_fails = [verdicts.describe(f) for f in qc_flags(manifest) if f.verdict.verdict == "fail"]
    with _writing(manifest, same_book=same_book) as journal:
        return packaging.deliver_book(manifest, book.chapters, journal.selected_takes(), profile=chosen, out=out,
                                      confirm_ai=confirm_ai, qc_fails=qc_fails)


def qc_flags(manifest: Manifest, *, chapter_ids: Sequence[str] = ()) -> list[verdicts.Flag]:
    """The selected takes QC judges warn or fail (reads only)."""
    book = plan(manifest, chapter_ids=chapter_ids)
    with _book_journal(manifest) as journal:
        if journal is None:
            return []
        return verdicts.flags(manifest, book.chapters, verdicts.judge(manifest, journal, book.chapters))


def _not_rendered(book: BookPlan, missing: Sequence[ChapterPlan]) -> str:
    """Why chapters cannot be stitched: which chunks need a render, and the setting or edit behind it."""
    fates = {c.chapter_id: c for c in book.changes}
    lines = []
    for cp in missing:
        change = fates.get(cp.chapter.id)
        reasons: dict[str, list[int]] = {}
        for fate in change.chunks if change else ():
            if fate.fate != "reuse":
                reasons.setdefault(fate.reason or fate.fate, []).append(fate.index)
        detail = "; ".join(f"chunk(s) {', '.join(map(str, idx))}: {why}" for why, idx in reasons.items())
        lines.append(f"  {cp.chapter.id}: {detail or 'audio missing from the cache'}")
    pending = book.pending
    cost = f"{pending.cost:.2f} {book.manifest.pricing.currency}"
    return (f"{len(missing)} chapter(s) have chunks with no audio for the current settings, so stitch (which never "
            "calls the API) cannot build them:\n" + "\n".join(lines) +
            f"\nrun `audiobook run {book.manifest.path}` to render them ({pending.to_render} task(s), about {cost}), "
            "or undo the change")


# --- status --------------------------------------------------------------------------------------

def status(manifest: Manifest) -> BookStatus:
    """Per chapter: chunks by state, failures, the request body of every chunk; billing so far.
    Reads only: safe while a run is going."""
    with _book_journal(manifest) as journal:
        book = plan_book(manifest, journal=journal)
        return book_status(book, journal)


# --- review --------------------------------------------------------------------------------------

def review(manifest: Manifest, *, chapter_ids: Sequence[str] = ()) -> list[Path]:
    """Write the review pages (``review/index.html`` and one per built chapter); reads the journal only."""
    from pipeline.review.collect import write_review

    selected = _select(manifest, chapter_ids)
    book = plan(manifest)
    with _book_journal(manifest) as journal:
        if journal is None:
            raise StateError(f"{manifest.output} has no journal yet: run `audiobook run {manifest.path}` first")
        return write_review(manifest, book, journal, chapter_ids=selected)


# --- the lexicon ---------------------------------------------------------------------------------

def lexicon_words(manifest: Manifest, *, chapter_ids: Sequence[str] = (), min_count: int = 1) -> list[Any]:
    """Candidates for the lexicon (``audiobook words``): the words of the book a voice may get wrong,
    each with the entry that covers it, if any (proposed entries count). Reads only."""
    from pipeline.lexicon.entries import Lexicon
    from pipeline.lexicon.words import find_candidates

    selected = set(_select(manifest, chapter_ids))
    chapters = [c for c in manifest.chapters if not selected or c.id in selected]
    every = {e.key(): e for c in manifest.chapters for e in c.lexicon}
    every.update({e.key(): e for e in manifest.lexicon})
    matchers = [(e, Lexicon([dataclasses.replace(e, status="reviewed", say=e.say or "-")])) for e in every.values()]

    def covered(word: str) -> str | None:
        return next((e.term for e, lx in matchers if lx.apply(word).replacements), None)

    return find_candidates([(c.id, c.text, c.language) for c in chapters], covered=covered, min_count=min_count)


def lexicon_pls(manifest: Manifest) -> tuple[str, list[str]]:
    """The book's reviewed lexicon (book-wide and every chapter's own entries) as PLS text, and what PLS
    cannot hold."""
    from pipeline.lexicon.files import to_pls
    from pipeline.models import LANGUAGE_CODES

    entries = {e.key(): e for e in manifest.lexicon}
    for chapter in manifest.chapters:
        entries.update({e.key(): e for e in chapter.lexicon if e.key() not in entries})
    return to_pls(entries.values(), language=LANGUAGE_CODES.get(manifest.language, "en"))


@dataclass(frozen=True)
class SayPlan:
    text: str
    spoken_text: str
    chars: int
    cost: float
    currency: str
    target: Path


def plan_say(manifest: Manifest, text: str, *, simulate: bool = False) -> SayPlan:
    """What `audiobook say` will send, for how much, and where the audio goes (``previews/``)."""
    from pipeline.lexicon.entries import Lexicon
    from pipeline.request import AudioRequest
    from pipeline.text import billed_chars

    if simulate:
        manifest = rehearsal(manifest)
    line = " ".join(text.split())
    if not line:
        raise ConfigError("give the line to say, e.g. audiobook say book.yaml \"Mr Quayle arrived.\"")
    if len(line) > SAY_MAX_CHARS:
        raise ConfigError(f"the line is {len(line):,} characters; `say` auditions a short line (at most "
                          f"{SAY_MAX_CHARS}): put longer text in a chapter")
    spoken = Lexicon(manifest.lexicon).apply(line).text
    request = AudioRequest.for_chunk(spoken, voice=manifest.voice, language=manifest.language, subtitles="off")
    chars = billed_chars(spoken)
    target = BookLayout(manifest.output).preview(line, request.key)
    return SayPlan(line, spoken, chars, round(manifest.pricing.cost(billed_chars=chars, tasks=1), 4),
                   manifest.pricing.currency, target)


def say(manifest: Manifest, text: str, *, options: RunOptions = RunOptions(),
        env: Mapping[str, str] | None = None) -> SayPlan:
    """Render one short line with the book's voice and lexicon into ``previews/`` (one task)."""
    from pipeline.client import SoundCloneClient, wait_until_final
    from pipeline.request import AudioRequest

    planned = plan_say(manifest, text, simulate=options.simulate)
    if options.max_cost is not None and planned.cost > options.max_cost:
        shown, limit = money(planned.cost, options.max_cost)
        raise CostLimitError(f"the line would cost about {shown} {planned.currency}, over --max-cost {limit}")
    if options.simulate:
        manifest = rehearsal(manifest)
    request = AudioRequest.for_chunk(planned.spoken_text, voice=manifest.voice, language=manifest.language,
                                     subtitles="off")
    book = plan(manifest, same_book=options.same_book)
    prepared = [PreparedBook(plan=book, pending_chunks=1, pending_chars=planned.chars, pending_cost=planned.cost)]
    with _writing(manifest, same_book=options.same_book) as journal, \
            _api_connection(prepared, options, os.environ if env is None else env) as config:

        async def go() -> None:
            async with SoundCloneClient.from_config(config) as client:
                def before_send() -> None:
                    journal.add_event(request.key, "say", f"creating a preview task: {planned.text!r}")

                task_id = await client.create_audio(request.body, before_send=before_send)
                journal.add_event(request.key, "say", f"preview task {task_id}: {planned.text!r}")
                info = await wait_until_final(client, task_id, interval_s=config.poll_interval_s,
                                              timeout_s=config.task_timeout_s)
                if info.status != "completed" or not info.audio_url:
                    raise PipelineError(f"the preview task {task_id} ended {info.status}: {info.error or 'no audio'} "
                                        "(a failed task is refunded); try again")
                with fsio.TempFiles(fsio.ensure_dir(planned.target.parent)) as temps:
                    tmp = temps.new(planned.target.name)
                    await client.download(info.audio_url, tmp, target=planned.target)
                    temps.commit(tmp, planned.target)

        asyncio.run(go())
    return planned


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

def retake(manifest: Manifest, *, chapter_id: str, index: int | None = None, words: str | None = None,
           options: RunOptions = RunOptions(), env: Mapping[str, str] | None = None) -> tuple[Chunk, int, list[Path]]:
    """Render a new take of one chunk, select it, re-assemble the chapter and the book."""
    if options.simulate:
        manifest = rehearsal(manifest)
    book = plan(manifest, chapter_ids=(chapter_id,), same_book=options.same_book)
    chunk = find_chunk(book, chapter_id, index=index, words=words)
    with _writing(manifest, same_book=options.same_book) as journal:
        if chunk_audio(manifest, book.chapter(chapter_id), journal.selected_takes()) is None:
            raise PipelineError(f"chapter {chapter_id} is not fully rendered yet; run `audiobook run {manifest.path} "
                                f"--chapter {chapter_id}` first")
        (take,) = _render_takes(book, journal, [chunk], options=options, env=env, reason="user")
        if isinstance(take, PipelineError):
            raise take
        files = finish_book(manifest, book.chapters, selected=journal.selected_takes(), only=(chapter_id,))
    return chunk, take, files


def _render_takes(book: BookPlan, journal: Journal, chunks: Sequence[Chunk], *, options: RunOptions,
                  env: Mapping[str, str] | None, reason: str) -> list[int | PipelineError]:
    """A fresh take of each of ``chunks`` (one task each, at once up to the concurrency), each selected
    when it arrives; per chunk the take number, or the error that stopped it (the others go on)."""
    prepared = [PreparedBook(plan=book, pending_chunks=len(chunks), pending_chars=sum(c.billed_chars for c in chunks),
                             pending_cost=0.0)]
    with _api_connection(prepared, options, os.environ if env is None else env) as config:

        async def go() -> list[int | PipelineError]:
            from pipeline.client import SoundCloneClient

            async with SoundCloneClient.from_config(config) as client:
                engine = Engine(client=client, config=config)
                job = BookJob(manifest=book.manifest, chapters=book.chapters, journal=journal,
                              on_chapter_ready=_assembled_afterwards)
                slots = asyncio.Semaphore(config.concurrency)

                async def one(chunk: Chunk) -> int | PipelineError:
                    async with slots:
                        try:
                            return await engine.render_take(job, chunk, reason=reason)
                        except STOPS_BATCH:
                            raise
                        except PipelineError as error:
                            return error

                return list(await asyncio.gather(*(one(c) for c in chunks)))

        return asyncio.run(go())


@dataclass(frozen=True)
class ReviewRetakes:
    """What ``retake --from-review`` did (or, with ``dry_run``, would do)."""

    marks: MarkPlan
    tasks: int
    chars: int
    cost: float
    currency: str
    takes: dict[str, int | PipelineError] = field(default_factory=dict)  # chunk key -> new take, or why not
    files: list[Path] = field(default_factory=list)
    flags: list[verdicts.Flag] = field(default_factory=list)  # the new takes QC flags


def retake_from_review(manifest: Manifest, marks_file: Path, *, dry_run: bool = False,
                       options: RunOptions = RunOptions(), env: Mapping[str, str] | None = None) -> ReviewRetakes:
    """One fresh take of every chunk the review marks name (several marks in a chunk: one take), each
    selected, then the chapters and the book re-assembled; marks whose chunk changed are refused."""
    marked_book, marks = read_marks(marks_file)
    if options.simulate:
        manifest = rehearsal(manifest)
    book = plan(manifest, same_book=options.same_book)
    mark_plan = plan_marks(marked_book, marks, book.chapters, title=manifest.book.title)
    chunks = [m.chunk for m in mark_plan.chunks]
    chars = sum(c.billed_chars for c in chunks)
    cost = round(manifest.pricing.cost(billed_chars=chars, tasks=len(chunks)), 4)
    result = ReviewRetakes(mark_plan, len(chunks), chars, cost, manifest.pricing.currency)
    if options.max_cost is not None and cost > options.max_cost:
        shown, limit = money(cost, options.max_cost)
        raise CostLimitError(f"the retakes would cost about {shown} {result.currency}, over --max-cost {limit}; "
                             "raise the limit or mark fewer chunks")
    if dry_run or not chunks:
        return result
    with _writing(manifest, same_book=options.same_book) as journal:
        selected = journal.selected_takes()
        unrendered = {cp.chapter.id for cp in book.chapters for c in chunks if c.chapter_id == cp.chapter.id
                      and chunk_audio(manifest, cp, selected) is None}
        if unrendered:
            raise PipelineError(f"chapter(s) {', '.join(sorted(unrendered))} are not fully rendered yet; run "
                                f"`audiobook run {manifest.path}` first, then review them")
        done = _render_takes(book, journal, chunks, options=options, env=env, reason="review")
        result.takes.update({c.key: t for c, t in zip(chunks, done, strict=True)})
        touched = tuple(dict.fromkeys(c.chapter_id for c in chunks))
        result.files.extend(finish_book(manifest, book.chapters, selected=journal.selected_takes(), only=touched))
        new = {c.key for c, t in zip(chunks, done, strict=True) if isinstance(t, int)}
        book_qc = verdicts.judge(manifest, journal, book.chapters, store=True)
        result.flags.extend(f for f in verdicts.flags(manifest, book.chapters, book_qc) if f.key in new)
    return result


async def _assembled_afterwards(chapter_plan: ChapterPlan) -> list[Path]:
    """A retake renders one chunk; its chapter is assembled after it, with the book."""
    return []


def list_takes(manifest: Manifest, *, chapter_id: str) -> list[TakeInfo]:
    book = plan(manifest, chapter_ids=(chapter_id,))
    with _book_journal(manifest) as journal:
        if journal is None:
            raise StateError(f"{manifest.output} has no journal yet: run `audiobook run {manifest.path}` first")
        return takes_of(book, journal, chapter_id=chapter_id)


def use_take(manifest: Manifest, *, chapter_id: str, index: int, take: int, same_book: bool = False) -> list[Path]:
    """Select take ``take`` of chunk ``index`` and re-assemble; the choice survives later runs."""
    book = plan(manifest, chapter_ids=(chapter_id,), same_book=same_book)
    with _writing(manifest, same_book=same_book) as journal:
        select_take(book, journal, chapter_id=chapter_id, index=index, take=take)
        return finish_book(manifest, book.chapters, selected=journal.selected_takes(), only=(chapter_id,))


def clean(manifest: Manifest, *, dry_run: bool = False, same_book: bool = False) -> CleanResult:
    """Remove cached audio no chapter uses (never a selected take) and outputs the manifest no longer makes."""
    book = plan(manifest, same_book=same_book)
    if not BookLayout(manifest.output).journal.exists():
        return CleanResult(cache=[], outputs=[], size=0)
    if dry_run:
        with _book_journal(manifest, same_book=same_book) as journal:
            assert journal is not None
            return clean_book(book, journal, dry_run=True)
    with _writing(manifest, same_book=same_book) as journal:
        return clean_book(book, journal)
