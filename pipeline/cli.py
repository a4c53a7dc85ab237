"""The ``audiobook`` command: parse, call one library function, render. No SQL, HTTP or audio here.

Every :class:`~pipeline.errors.PipelineError` is shown as its message with the error's exit code
(2 for usage, manifest and configuration errors; 1 when some work failed); a traceback only with
``--verbose``. Ctrl-C says how to resume and exits 130.
"""

from __future__ import annotations

import json
import math
import sys
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import click

from pipeline import __version__
from pipeline.errors import ConfigError, PipelineError
from pipeline.models import DELIVERY_PROFILES

EXIT_INTERRUPTED = 130


class _FiniteFloat(click.FloatRange):
    """A float range that also refuses nan and infinities (FloatRange lets nan through)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


class _Cli(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PipelineError as exc:
            if ctx.params.get("verbose"):
                traceback.print_exc()
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("\nInterrupted. Nothing finished is lost: run the same command again to resume.",
                       err=True)
            ctx.exit(EXIT_INTERRUPTED)


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Show tracebacks and debug logging.")
@click.version_option(__version__, prog_name="audiobook")
def main(verbose: bool) -> None:
    """Turn a manuscript into a finished audiobook through the SoundClone API.

    Start with `audiobook plan MANIFEST` (no network, no cost), then `audiobook run MANIFEST`.
    `audiobook run MANIFEST --simulate` renders against a local simulator instead of the paid API.
    """
    import logging

    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    # httpx logs every URL at INFO: signed download links are credentials of a kind; keep them out.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _format_seconds(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


@main.command()
@click.argument("manifest", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the full plan, every chunk, as JSON.")
@click.option("--chapter", "chapters", multiple=True, metavar="ID", help="Only these chapters (repeatable).")
def plan(manifest: Path, as_json: bool, chapters: tuple[str, ...]) -> None:
    """Show how MANIFEST will be cut into API tasks and what it will cost. No network.

    Per chapter: chunks (tasks), billed characters (code points, pause markers excluded), estimated
    audio length and cost at the manifest's `pricing`; then totals and the fewest tasks any
    chunker could use.
    """
    from pipeline import runner

    book = runner.plan(runner.load(manifest), chapter_ids=chapters)
    if as_json:
        from pipeline.planning import plan_to_json

        click.echo(json.dumps(plan_to_json(book), ensure_ascii=False, indent=2))
        return
    click.echo(render_plan(book))


def _width(text: str) -> int:
    """Columns ``text`` takes in a terminal (East Asian wide and full-width characters take two)."""
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 0 if unicodedata.combining(ch) else 1
               for ch in text)


def _cell(text: str, width: int) -> str:
    """``text`` cut and padded to ``width`` terminal columns."""
    out, used = "", 0
    for ch in text:
        w = _width(ch)
        if used + w > width:
            break
        out += ch
        used += w
    return out + " " * (width - used)


def _id_width(ids: Iterable[str]) -> int:
    """The chapter id column: 12 wide, up to 20 for longer ids ("opening-credits")."""
    return max(12, min(20, max((len(i) for i in ids), default=0)))


def render_plan(book: Any) -> str:
    from pipeline.planning import chapter_seconds, chapter_tasks

    t = book.totals
    cur = t.currency
    ids = _id_width(c.id for c in book.manifest.chapters)
    rows = [f"{'chapter':<{ids}} {_cell('title', 28)} {'tasks':>5} {'billed chars':>12} {'audio':>8} {'cost':>10}"]
    for cp, tasks, task_chars in chapter_tasks(book):
        cost = book.manifest.pricing.cost(billed_chars=task_chars, tasks=tasks)
        rows.append(f"{_cell(cp.chapter.id, ids)} {_cell(cp.chapter.title, 28)} {tasks:>5} "
                    f"{task_chars:>12,} {_format_seconds(chapter_seconds(cp)):>8} {cost:>10.2f}")
    rows.append(f"{'total':<{ids}} {_cell(book.manifest.book.title, 28)} {t.tasks:>5} {t.billed_chars:>12,} "
                f"{_format_seconds(t.est_audio_s):>8} {t.est_cost:>10.2f} {cur}")
    same = f", {t.chunks - t.tasks} chunk(s) repeat an earlier text and render once" if t.chunks > t.tasks else ""
    rows.append(f"tasks: {t.tasks} (lower bound {t.lower_bound_tasks}{same}); chunk limit "
                f"{book.manifest.chunking.max_chars:,} code points")
    earlier = any(c.reused or c.dropped or c.expired or any(f.reason not in ("", "new") for f in c.chunks)
                  for c in book.changes)
    if earlier:
        rows.append("changes since the last render:")
        for change in book.changes:
            if change.to_render or change.dropped:
                rows.append(f"  {change.chapter_id}: {change.to_render} chunk(s) to render, {change.reused} reused, "
                            f"{change.dropped} dropped; {change.chars:,} characters, {change.cost:.2f} {cur}")
                reasons: dict[str, list[int]] = {}
                for fate in change.chunks:
                    if fate.fate == "render" or (fate.fate == "expired" and book.rerender_expired):
                        reasons.setdefault(fate.reason or "new", []).append(fate.index)
                for reason, indexes in reasons.items():
                    rows.append(f"      chunk(s) {_indexes(indexes)}: {reason}")
            if change.expired:
                rows.append(f"  {change.chapter_id}: {change.expired} chunk(s) expired at the API (their audio is "
                            f"gone): {change.expired_chars:,} characters, {change.expired_cost:.2f} {cur} to render "
                            "again with --rerender-expired")
        if not any(c.to_render or c.dropped or c.expired for c in book.changes):
            rows.append("  none: every chunk is already rendered")
    if book.qc_retake_tasks:
        rows.append(f"worst case with qc.on_fail: retake: up to {book.qc_retake_tasks} more task(s), about "
                    f"{book.qc_retake_cost:.2f} {cur} (only failing takes are retaken, within --max-cost)")
    return "\n".join(rows)


def _indexes(indexes: list[int]) -> str:
    shown = ", ".join(str(i) for i in indexes[:12])
    return shown + (f" and {len(indexes) - 12} more" if len(indexes) > 12 else "")


def _rehearsal_option(func: Any) -> Any:
    return click.option("--simulate", "simulate", is_flag=True,
                        help="Work on the rehearsal output of `run --simulate` (<output>-simulated).")(func)


def _same_book_option(func: Any) -> Any:
    return click.option("--same-book", is_flag=True,
                        help="The output folder was made by this book under another manifest path (renamed or "
                             "moved): take it over. Without it, a folder of another book is refused.")(func)


def _manifest_args(func: Any) -> Any:
    return click.argument("manifests", nargs=-1, required=True, type=click.Path(path_type=Path))(func)


class _ProgressView:
    """Draws the engine's progress events: a tqdm bar on a terminal, plain log lines otherwise."""

    def __init__(self, *, total: int, chapters: int, quiet: bool, books: int = 1) -> None:
        self.tty = sys.stderr.isatty() and not quiet
        self.quiet = quiet
        self.name_books = books > 1  # a shelf: every line says which book it is about
        self.bar: Any = None
        self.chapter_bar: Any = None
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="chunk", desc="chunks  ", file=sys.stderr, dynamic_ncols=True)
            self.chapter_bar = tqdm(total=chapters, unit="chapter", desc="chapters", file=sys.stderr,
                                    dynamic_ncols=True, position=1)

    def __call__(self, event: Any) -> None:
        where = event.chapter_id if event.chunk_index is None else f"{event.chapter_id}#{event.chunk_index}"
        if self.name_books and event.book:
            where = f"{event.book}: {where}"
        if event.kind == "downloaded" and self.bar is not None:
            self.bar.update(1)
            return
        if event.kind in ("stopped", "warning"):
            line = f"{event.kind}: {event.message}"
        elif event.kind in ("chunk-failed", "chapter-failed", "possible-duplicate"):
            line = f"{event.kind}: {where}: {event.message}"
        elif event.kind == "chapter-done":
            if self.chapter_bar is not None:
                self.chapter_bar.update(1)
            if self.quiet:
                return
            line = f"chapter {where} ready: {event.message}"
        elif self.quiet or self.tty:
            return
        else:
            line = f"{event.kind}: {where} {event.message}".rstrip()
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        elif not self.quiet or event.kind != "submitted":
            click.echo(line, err=True)

    def close(self) -> None:
        for bar in (self.chapter_bar, self.bar):
            if bar is not None:
                bar.close()


@main.command()
@_manifest_args
@click.option("--chapter", "chapters", multiple=True, metavar="ID", help="Only these chapters (repeatable).")
@click.option("--concurrency", type=click.IntRange(1, 64), help="Tasks in flight at once (default 4).")
@click.option("--poll-interval", type=_FiniteFloat(0.01, 600), metavar="S",
              help="Seconds between polls of a task (default 5).")
@click.option("--max-cost", type=_FiniteFloat(0), metavar="X",
              help="Refuse to start when the estimated cost of what is left exceeds X.")
@click.option("--simulate", is_flag=True, help="Rehearse against a local SoundClone simulator: no key, no cost; "
              "writes to <output>-simulated so simulated audio never mixes with paid audio.")
@click.option("--base-url", metavar="URL", help="API base URL (default: $SOUNDCLONE_BASE_URL, the manifest, "
              "or https://www.jimmyai.cn).")
@click.option("--api-key-file", type=click.Path(path_type=Path, dir_okay=False),
              help="Read the API key from this file instead of $SOUNDCLONE_API_KEY.")
@click.option("--dry-run", is_flag=True, help="Show the plan and what changed since the last render, then stop.")
@click.option("--rerender-expired", is_flag=True, help="Render again, at a new charge, chunks whose audio expired "
              "at the API (a plain rerun cannot recover them); the cost is shown first and counts for --max-cost.")
@_same_book_option
@click.option("-q", "--quiet", is_flag=True, help="Only failures and the summary.")
def run(manifests: tuple[Path, ...], chapters: tuple[str, ...], concurrency: int | None,
        poll_interval: float | None, max_cost: float | None, simulate: bool, base_url: str | None,
        api_key_file: Path | None, dry_run: bool, rerender_expired: bool, same_book: bool, quiet: bool) -> None:
    """Render MANIFEST(S) into chapter files and a book; rerun the same command to resume.

    Several manifests, or a folder of them, run as one batch sharing the concurrency limit fairly.
    Everything is validated and the plan shown before the first paid request. Exit code 0 when every
    chunk and chapter succeeded, 1 when some failed (listed with reasons), 2 for usage or manifest errors.
    """
    from pipeline import runner

    loaded, rejected = runner.load_all(list(manifests))
    for path, error in rejected:
        click.echo(f"{path}: not runnable:\n{error}", err=True)
    if not loaded:
        sys.exit(2)
    options = runner.RunOptions(chapter_ids=chapters, concurrency=concurrency, poll_interval_s=poll_interval,
                                max_cost=max_cost, base_url=base_url, key_file=api_key_file, simulate=simulate,
                                rerender_expired=rerender_expired, same_book=same_book)
    if dry_run:
        books = runner.prepare([runner.rehearsal(m) if simulate else m for m in loaded], chapter_ids=chapters,
                               rerender_expired=rerender_expired, same_book=same_book)
        for book in books:
            click.echo(render_plan(book.plan))
            click.echo(_to_render_line(book))
        sys.exit(2 if rejected else 0)
    view: list[_ProgressView] = []

    def on_ready(books: list[Any]) -> None:
        for book in books:
            if not quiet:
                click.echo(render_plan(book.plan))
            click.echo(_to_render_line(book) + (" (simulated: nothing is charged)" if simulate else ""))
        view.append(_ProgressView(total=sum(b.pending_chunks for b in books),
                                  chapters=sum(len(b.plan.chapters) for b in books), quiet=quiet, books=len(books)))

    try:
        def on_event(event: Any) -> None:
            if view:
                view[0](event)
            else:  # before the plan is shown: warnings only
                click.echo(f"warning: {event.message}", err=True)

        report = runner.run(loaded, options=options, on_event=on_event, on_ready=on_ready)
    finally:
        if view:
            view[0].close()
    report.rejected = rejected
    if report.stopped is not None and click.get_current_context().find_root().params.get("verbose"):
        traceback.print_exception(report.stopped)
    click.echo(render_summary(report, simulated=simulate))
    if report.exit_code:
        sys.exit(report.exit_code)


def _to_render_line(book: Any) -> str:
    currency = book.plan.manifest.pricing.currency
    line = (f"to render: {book.pending_chunks} task(s), {book.pending_chars:,} billed characters, "
            f"about {book.pending_cost:.2f} {currency}")
    if book.expired_chunks:
        line += (f"; {book.expired_chunks} expired chunk(s) not rendered (about {book.expired_cost:.2f} {currency} "
                 "with --rerender-expired)")
    return line


def render_summary(report: Any, *, simulated: bool = False) -> str:
    lines = []
    for book in report.books:
        line = (f"{book.title}: {book.downloaded}/{book.chunks} chunks done; {book.tasks_created} task(s) created "
                f"this run ({book.chars_created:,} characters)")
        if book.tasks_refunded:
            line += (f", of which {book.tasks_refunded} failed and are refunded ({book.chars_refunded:,} characters): "
                     f"billed {book.tasks_billed} task(s), {book.chars_billed:,} characters")
        lines.append(line + (" (simulated: nothing is charged)" if simulated else ""))
        if book.unanswered_creates:
            lines.append(f"  {book.unanswered_creates} create request(s) got no answer: each may have created a "
                         "billed task (listed below as possible duplicate charges)")
        for failure in book.failures:
            where = failure.chapter_id if failure.chunk_index is None else \
                f"{failure.chapter_id} chunk {failure.chunk_index}"
            lines.append(f"  FAILED {where}: {failure.reason}")
        if book.qc_retakes:
            lines.append(f"  QC retakes: {book.qc_retakes} fresh take(s) of failing chunks (qc.on_fail: retake)")
        if book.qc_flags:
            lines.append(f"  QC flagged {len(book.qc_flags)} chunk(s), {book.qc_failed} failing (chapter, time in the "
                         "chapter file, checks; `audiobook review` to listen, `audiobook retake` to redo):")
            lines.extend(f"    {flag}" for flag in book.qc_flags)
        if book.expired:
            lines.append(f"  expired at the API: {', '.join(book.expired)}; a plain rerun cannot recover them: "
                         "`audiobook run MANIFEST --rerender-expired` renders them again at a new charge")
        if book.possible_duplicates:
            lines.append(f"  possible duplicate charges: {len(book.possible_duplicates)}")
            lines.extend(f"    {d}" for d in book.possible_duplicates)
        for path in book.outputs:
            lines.append(f"  wrote {path}")
    for path, error in report.rejected:
        lines.append(f"{path}: not run: {str(error).splitlines()[0]}")
    if report.stopped is not None:
        lines.append(f"STOPPED: {report.stopped}")
    lines.append("done" if report.ok else "finished with failures: fix what is listed and rerun the same command")
    return "\n".join(lines)


@main.command()
@_manifest_args
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@_rehearsal_option
def status(manifests: tuple[Path, ...], as_json: bool, simulate: bool) -> None:
    """Show per chapter how many chunks are in each state, failures, and what has been billed.

    Reads the journal only (no network); safe while a run is in progress.
    """
    from pipeline import runner
    from pipeline.status import status_to_json

    loaded, rejected = runner.load_all(list(manifests), simulate=simulate)
    books: list[Any] = []
    errors: list[tuple[Path, str]] = [(path, str(error)) for path, error in rejected]
    for manifest in loaded:
        try:
            books.append(runner.status(manifest))
        except PipelineError as error:  # the folder belongs to another book, or its journal is broken
            errors.append((manifest.path, str(error)))
    if as_json:
        docs = [status_to_json(b) for b in books]
        docs += [{"manifest": str(path), "error": problem} for path, problem in errors]
        click.echo(json.dumps(docs, ensure_ascii=False, indent=2))
        sys.exit(2 if errors else 0)
    for path, problem in errors:
        click.echo(f"{path}: cannot show its status\n{problem}")
    for book in books:
        totals = book.totals
        done = totals.get("downloaded", 0)
        count = sum(totals.values())
        billing = book.billing
        billed = "simulated so far (nothing is charged)" if simulate else "billed so far"
        line = (f"{book.title} ({book.manifest}): {done}/{count} chunks downloaded; {billed}: {billing.tasks} "
                f"task(s), {billing.chars:,} characters")
        if billing.refunded_tasks:
            line += f" (and {billing.refunded_tasks} failed task(s), {billing.refunded_chars:,} characters, refunded)"
        if book.possible_duplicates:
            line += f"; {book.possible_duplicates} possible duplicate charge(s)"
        click.echo(line)
        ids = _id_width(c.id for c in book.chapters)
        for chapter in book.chapters:
            states = ", ".join(f"{n} {s}" for s, n in sorted(chapter.by_state.items()))
            flagged = ", ".join(f"{chapter.qc[v]} QC {v}" for v in ("fail", "warn") if chapter.qc.get(v))
            click.echo(f"  {_cell(chapter.id, ids)} {chapter.chunks:>3} chunks: {states}"
                       + (f"; {flagged}" if flagged else "")
                       + (f" -> {chapter.output.name}" if chapter.output else ""))
            for index, reason in chapter.failures:
                click.echo(f"      chunk {index}: {reason}")
            for item in chapter.chunk_states:
                if item.qc is not None and item.qc["verdict"] != "pass":
                    failed = "; ".join(f"{c['name']}: {c['detail']}" for c in item.qc["checks"] if not c["passed"])
                    click.echo(f"      chunk {item.index} take {item.take}: QC {item.qc['verdict']} ({failed})")
        if book.expired:
            click.echo(f"  expired at the API: {', '.join(book.expired)}. A plain rerun cannot recover them; "
                       f"`audiobook run {book.manifest} --rerender-expired` renders them again at a new charge")
        if book.stale:
            click.echo(f"  {len(book.stale)} file(s) the manifest no longer makes (`audiobook clean` offers them): "
                       + ", ".join(p.name for p in book.stale[:5]) + (" ..." if len(book.stale) > 5 else ""))
    if errors:
        sys.exit(2)


@main.command()
@click.argument("manifest", type=click.Path(path_type=Path))
@click.option("--chapter", "chapters", multiple=True, metavar="ID", help="Only these chapters (repeatable).")
@click.option("--force", is_flag=True,
              help="Re-assemble, and measure every take again for QC, even when nothing changed.")
@_rehearsal_option
@_same_book_option
def stitch(manifest: Path, chapters: tuple[str, ...], force: bool, simulate: bool, same_book: bool) -> None:
    """Re-assemble chapters and the book from cached audio, without any API call.

    Use it after changing pause, loudness or tag settings. Unchanged chapters are skipped. When a
    change needs new audio (an edit, a voice setting, a pause sent inside a chunk), it says which
    chunks and why instead.
    """
    from pipeline import runner

    book = runner.load(manifest, simulate=simulate)
    from pipeline.delivery import report_failures

    written = runner.stitch(book, chapter_ids=chapters, force=force, same_book=same_book)
    for path in written:
        click.echo(f"wrote {path}")
    failed = [line for path in written if path.name == "delivery-report.json" for line in report_failures(path)]
    for line in failed:
        click.echo(f"FAILED delivery: {line}")
    if _echo_qc_flags(runner.qc_flags(book, chapter_ids=chapters)) or failed:
        sys.exit(1)


def _echo_qc_flags(flags: list[Any]) -> int:
    """Print the QC flags (a heading and one line each); returns how many are fails."""
    from pipeline.verdicts import describe

    if flags:
        click.echo(f"QC flagged {len(flags)} chunk(s) (`audiobook review` to listen, `audiobook retake` to redo):")
        for flag in flags:
            click.echo(f"  {describe(flag)}")
    return sum(1 for f in flags if f.verdict.verdict == "fail")


def _chapter_pattern(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    import re

    if value is None:
        return None
    try:
        pattern = re.compile(value)
    except re.error as exc:
        raise click.BadParameter(f"{value!r} is not a valid regular expression ({exc})") from None
    if pattern.fullmatch(""):
        raise click.BadParameter(f"{value!r} matches an empty line, so every blank line would start a chapter")
    return pattern


@main.command()
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), metavar="DIR",
              help="The book folder (default: a folder named after the book's title, beside SOURCE).")
@click.option("--chapter-pattern", callback=_chapter_pattern, metavar="REGEX",
              help="Plain text and Markdown: a line matching REGEX (the whole stripped line) starts a chapter.")
@click.option("--split-level", type=click.IntRange(1, 6), default=1, show_default=True, metavar="N",
              help="The heading level that starts a chapter (2: split at Heading 2 / ## / <h2> instead).")
@click.option("--update", is_flag=True, help="Merge a revised manuscript into the folder: only changed chapter "
              "files are rewritten; ids and every edit in book.yaml are kept.")
@click.option("--force", is_flag=True, help="Rewrite book.yaml and the chapter files of an existing folder "
              "(deletes nothing: audio, the journal and the build folder stay).")
@click.option("--voice", "voice_name", metavar="NAME", help="The book's voice: a voice registry name "
              "(`audiobook voice list`).")
@click.option("--model-id", metavar="ID", help="The book's voice as a raw modelId instead of --voice.")
@click.option("--json", "as_json", is_flag=True, help="Print the parts and what was done as JSON.")
def init(source: Path, out: Path | None, chapter_pattern: Any, split_level: int, update: bool, force: bool,
         voice_name: str | None, model_id: str | None, as_json: bool) -> None:
    """Turn a manuscript (.epub, .docx, .md, .txt, .html) into a book folder that `plan` and `run` accept.

    Writes DIR/book.yaml, DIR/chapters/NN-<slug>.md (every part, in reading order) and the cover.
    Parts that are not read aloud (contents, copyright, index, ...) are written too and listed in
    book.yaml commented out, with the reason: delete the `#` to read one. The source is read completely
    before anything is written; a folder that has a book.yaml is refused without --update or --force.
    """
    from pipeline.importer.folder import VoiceChoice, init_folder
    from pipeline.importer.model import ReadOptions
    from pipeline.voices import resolve_voice_name

    if voice_name is not None and model_id is not None:
        raise click.UsageError("give --voice NAME or --model-id ID, not both")
    if update and force:
        raise click.UsageError("give --update (merge, keeping your edits) or --force (rewrite), not both")
    if update and (voice_name is not None or model_id is not None):
        raise click.UsageError("--update keeps the voice book.yaml has; edit its `voice:` instead of --voice or "
                               "--model-id")
    for flag, value in (("--voice", voice_name), ("--model-id", model_id)):
        if value is not None and not value.strip():
            raise click.UsageError(f"{flag} is blank")
    result = init_folder(source, out=out, options=ReadOptions(split_level=split_level, chapter_pattern=chapter_pattern),
                         voice=VoiceChoice(name=voice_name, model_id=model_id), update=update, force=force,
                         voice_resolver=resolve_voice_name)
    if as_json:
        from pipeline.importer.folder import result_to_json

        click.echo(json.dumps(result_to_json(result), ensure_ascii=False, indent=2))
        return
    click.echo(render_import(result))


def render_import(result: Any) -> str:
    """The ``init`` report: every part in reading order, then the notes, the folder and the next command."""
    import shlex

    rows = result.rows
    number = max([len(str(r.index)) for r in rows if r.index is not None] + [2])
    title_width = min(max([_width(r.title) for r in rows] + [5]), 40)
    read_as = ["chapter" if r.chapter else "skipped (removed from the source)" if r.status == "removed"
               else f"skipped ({r.skip_reason})" for r in rows]
    read_width = min(max([_width(a) for a in read_as] + [7]), 48)
    status = " status   " if result.updated else " "
    lines = [f"{'#':>{number}} {_cell('title', title_width)} {'chars':>9} {_cell('read as', read_width)}{status}file"]
    for row, how in zip(rows, read_as, strict=True):
        index = f"{row.index:0{number}d}" if row.index is not None else "-" * number
        state = f" {row.status:<9}" if result.updated else ""
        lines.append(f"{index:>{number}} {_cell(row.title, title_width)} {row.chars:>9,} {_cell(how, read_width)}"
                     f"{state} {row.file}")
    chapters = sum(1 for r in rows if r.chapter)
    skipped = sum(1 for r in rows if not r.chapter and r.status != "removed")
    summary = f"{chapters} chapter(s), {skipped} part(s) not read aloud"
    if result.updated:
        counts = {s: sum(1 for r in rows if r.status == s) for s in ("changed", "unchanged", "new", "removed")}
        summary += "; " + ", ".join(f"{n} {s}" for s, n in counts.items())
    lines.append(summary)
    lines += [f"note: {note}" for note in result.notes]
    written = len(result.written)
    lines.append(f"folder: {result.folder} ({written} file(s) written)" if written
                 else f"folder: {result.folder} (nothing changed)")
    lines.append(f"next: audiobook plan {shlex.quote(str(result.manifest))}")
    return "\n".join(lines)


@main.command()
@click.argument("manifest", type=click.Path(path_type=Path))
@click.option("--profile", "profile", required=True,
              type=click.Choice(DELIVERY_PROFILES),
              help="The retailer whose rules the package follows (see the README's delivery profiles).")
@click.option("--out", "out", type=click.Path(path_type=Path, file_okay=False),
              help="The package folder (default: <output>/delivery/<profile>); replaced whole when complete.")
@click.option("--confirm-ai-narration-allowed", "confirm_ai", is_flag=True,
              help="You have the retailer's authorisation for synthetic narration (required for acx).")
@_rehearsal_option
@_same_book_option
def deliver(manifest: Path, profile: str, out: Path | None, confirm_ai: bool, simulate: bool,
            same_book: bool) -> None:
    """Build a retailer's package from the finished book, without any API call.

    Opening credits, the chapters (a chapter over the retailer's length limit split into parts with
    its subtitles), closing credits, the retail sample and the cover, named and tagged for the
    retailer; every file is measured against every rule of the profile, and delivery-report.json and
    delivery-report.html say what passed, what failed, and each rule's source. Exits 1 when a rule
    fails.
    """
    from pipeline import runner

    book = runner.load(manifest, simulate=simulate)
    report = runner.deliver(book, profile=profile, out=out, confirm_ai=confirm_ai, same_book=same_book)
    for f in report.files:
        m = f.report.measurement
        length = f" {_format_seconds(m.duration_s)}" if m is not None else ""
        click.echo(f"{'ok  ' if f.passed else 'FAIL'} {f.piece.name}{length} ({f.piece.role})")
    for note in report.notes:
        click.echo(f"note: {note}")
    click.echo(f"wrote {report.folder} ({len(report.files)} audio file(s)); report: "
               f"{report.folder / 'delivery-report.html'}")
    failures = report.failures()
    for line in failures:
        click.echo(f"FAILED {profile}: {line}")
    if failures:
        sys.exit(1)
    click.echo(f"every {profile} rule passed")


@main.command()
@click.argument("manifest", type=click.Path(path_type=Path))
@click.option("--chapter", "chapters", multiple=True, metavar="ID", help="Only these chapters' pages (repeatable).")
@_rehearsal_option
def review(manifest: Path, chapters: tuple[str, ...], simulate: bool) -> None:
    """Write the review pages: review/index.html (the book, QC counts, the delivery check) and one page
    per chapter to listen, see every sentence and what QC flagged, compare takes, and mark what to redo.

    The pages are static files (open them from the file manager: no server, no network); their marks
    export as review-marks.json for `audiobook retake MANIFEST --from-review review-marks.json`.
    """
    from pipeline import runner

    pages = runner.review(runner.load(manifest, simulate=simulate), chapter_ids=chapters)
    click.echo(f"wrote {len(pages) - 1} chapter page(s); open {pages[0].resolve().as_uri()}")
    for page in pages[1:]:
        click.echo(f"  {page}")


@main.group()
def lexicon() -> None:
    """Bring a pronunciation lexicon in from a PLS file, or take the book's out as one."""


@lexicon.command("import")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), metavar="FILE",
              help="The YAML lexicon to write (default: SOURCE with .yaml).")
@click.option("--force", is_flag=True, help="Replace FILE if it exists.")
def lexicon_import(source: Path, out: Path | None, force: bool) -> None:
    """Turn a W3C PLS file (ElevenLabs, Azure, Polly) into a YAML lexicon for `lexicon: {files: [...]}`.

    Aliases become entries; phoneme entries cannot be used by this API (it takes text only) and are
    listed, each with its line, for you to respell.
    """
    from pipeline.fsio import write_atomic
    from pipeline.lexicon.files import from_pls, yaml_text
    from pipeline.lexicon.pls import read_pls

    target = out or source.with_suffix(".yaml")
    if target.exists() and not force:
        raise ConfigError(f"{target} exists; give another --out, or --force to replace it")
    imported = from_pls(read_pls(source), source=source.name)
    write_atomic(target, yaml_text(imported.entries, heading=f"imported from {source.name} by "
                                   "`audiobook lexicon import`; list this file under lexicon: files:"))
    click.echo(f"wrote {target}: {len(imported.entries)} entr{'y' if len(imported.entries) == 1 else 'ies'}")
    if imported.skipped:
        click.echo(f"{len(imported.skipped)} lexeme(s) not imported (add a respelling with say for each):")
        for line in imported.skipped:
            click.echo(f"  {line}")


@lexicon.command("export")
@click.argument("manifest", type=click.Path(path_type=Path))
@click.option("--pls", "as_pls", is_flag=True, required=True, help="Write W3C PLS (the only format for now).")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), metavar="FILE",
              help="Write here instead of to standard output.")
def lexicon_export(manifest: Path, as_pls: bool, out: Path | None) -> None:
    """Write the book's reviewed lexicon as a W3C PLS file (aliases), for other tools."""
    from pipeline import runner
    from pipeline.fsio import write_atomic

    text, left_out = runner.lexicon_pls(runner.load(manifest))
    for line in left_out:
        click.echo(f"not exported: {line}", err=True)
    if out is None:
        click.echo(text, nl=False)
    else:
        write_atomic(out, text)
        click.echo(f"wrote {out}", err=True)


@main.command()
@click.argument("manifest", type=click.Path(path_type=Path))
@click.option("--chapter", "chapters", multiple=True, metavar="ID", help="Only these chapters (repeatable).")
@click.option("--min-count", type=click.IntRange(1), default=1, show_default=True,
              help="Only words that occur at least this often.")
@click.option("--json", "as_json", is_flag=True, help="Print the candidates as JSON.")
@click.option("--add", "add_to", type=click.Path(path_type=Path, dir_okay=False), metavar="FILE",
              help="Append the uncovered candidates to this YAML lexicon as proposed entries to fill in.")
def words(manifest: Path, chapters: tuple[str, ...], min_count: int, as_json: bool, add_to: Path | None) -> None:
    """List the words a voice may get wrong: names and other words a common-word list lacks, acronyms,
    roman numerals, digit-letter mixes, words in another script; each with its count, where it first
    occurs, and the lexicon entry that covers it. No network."""
    from pipeline import runner
    from pipeline.lexicon.files import append_proposed
    from pipeline.lexicon.words import common_words_source

    book = runner.load(manifest)
    found = runner.lexicon_words(book, chapter_ids=chapters, min_count=min_count)
    if as_json:
        click.echo(json.dumps([{"word": c.word, "kinds": list(c.kinds), "count": c.count, "chapter": c.chapter,
                                "sentence": c.sentence, "covered_by": c.covered_by} for c in found],
                              ensure_ascii=False, indent=2))
    else:
        click.echo(f"{len(found)} candidate(s) (common words: {common_words_source(book.language)}):")
        for c in found:
            cover = f"covered by '{c.covered_by}'" if c.covered_by else "not in the lexicon"
            click.echo(f"  {_cell(c.word, 20)} {c.count:>5}  {', '.join(c.kinds):<22} {cover}; first in "
                       f"{c.chapter}: {c.sentence}")
    if add_to is not None:
        added = append_proposed(add_to, [(c.word, f"{', '.join(c.kinds)}; {c.count}x, first in {c.chapter}")
                                         for c in found if c.covered_by is None])
        click.echo(f"added {added} proposed entr{'y' if added == 1 else 'ies'} to {add_to}: fill in each say and "
                   "set status: reviewed (list the file under lexicon: files: in the manifest)", err=True)


@main.command()
@click.argument("manifest", type=click.Path(path_type=Path))
@click.argument("line")
@click.option("--simulate", is_flag=True, help="Against a local simulator: no key, no cost.")
@click.option("--max-cost", type=_FiniteFloat(0), metavar="X", help="Refuse when the line would cost more.")
@click.option("--base-url", metavar="URL", help="API base URL (default: $SOUNDCLONE_BASE_URL, the manifest, ...).")
@click.option("--api-key-file", type=click.Path(path_type=Path, dir_okay=False),
              help="Read the API key from this file.")
@_same_book_option
def say(manifest: Path, line: str, simulate: bool, max_cost: float | None, base_url: str | None,
        api_key_file: Path | None, same_book: bool) -> None:
    """Render LINE with the book's voice and lexicon into previews/ (one task, its cost shown first),
    to audition a respelling."""
    from pipeline import runner

    book = runner.load(manifest)
    planned = runner.plan_say(book, line, simulate=simulate)
    paid = " (simulated: nothing is charged)" if simulate else ""
    click.echo(f"sending: {planned.spoken_text}")
    click.echo(f"1 task, {planned.chars} billed characters, about {planned.cost:.2f} {planned.currency}{paid}")
    options = runner.RunOptions(base_url=base_url, key_file=api_key_file, simulate=simulate, same_book=same_book,
                                max_cost=max_cost)
    done = runner.say(book, line, options=options)
    click.echo(f"wrote {done.target}")


@main.command()
def schema() -> None:
    """Print the manifest's JSON Schema (for editor completion and validation)."""
    from pipeline.manifest import json_schema

    click.echo(json.dumps(json_schema(), ensure_ascii=False, indent=2))


@main.command()
@click.argument("manifest", type=click.Path(path_type=Path))
@click.option("--chapter", "chapter", metavar="ID", help="The chapter (with --chunk or --at).")
@click.option("--chunk", "index", type=int, metavar="N", help="The chunk's index (see `audiobook takes`).")
@click.option("--at", "words", metavar="WORDS", help="Words from the sentence to retake; they pick the chunk.")
@click.option("--from-review", "marks_file", type=click.Path(path_type=Path, dir_okay=False), metavar="FILE",
              help="Retake every chunk marked \"redo\" on the review pages (their exported review-marks.json).")
@click.option("--dry-run", is_flag=True, help="With --from-review: show the tasks and cost, then stop.")
@click.option("--max-cost", type=_FiniteFloat(0), metavar="X", help="Refuse when the retakes would cost more.")
@click.option("--simulate", is_flag=True, help="Against a local simulator (for rehearsals).")
@click.option("--base-url", metavar="URL", help="API base URL (default: $SOUNDCLONE_BASE_URL, the manifest, ...).")
@click.option("--api-key-file", type=click.Path(path_type=Path, dir_okay=False),
              help="Read the API key from this file.")
@_same_book_option
def retake(manifest: Path, chapter: str | None, index: int | None, words: str | None, marks_file: Path | None,
           dry_run: bool, max_cost: float | None, simulate: bool, base_url: str | None, api_key_file: Path | None,
           same_book: bool) -> None:
    """Render a fresh take of a chunk (one new task), keep the earlier takes, use the new one.

    Either one chunk (--chapter with --chunk or --at), or every chunk marked on the review pages
    (--from-review FILE: one take per marked chunk, the tasks and cost shown first). The chapters
    and the book are re-assembled. `audiobook takes` lists takes and switches back.
    """
    from pipeline import runner

    options = runner.RunOptions(base_url=base_url, key_file=api_key_file, simulate=simulate, same_book=same_book,
                                max_cost=max_cost)
    if marks_file is not None:
        if chapter is not None or index is not None or words is not None:
            raise click.UsageError("--from-review picks the chunks itself: leave out --chapter, --chunk and --at")
        _retake_from_review(runner, manifest, marks_file, dry_run=dry_run, options=options)
        return
    if dry_run:
        raise click.UsageError("--dry-run goes with --from-review")
    if chapter is None or (index is None) == (words is None):
        raise click.UsageError("give --chapter ID with exactly one of --chunk N or --at \"words in the sentence\", "
                               "or --from-review FILE")
    chunk, take, files = runner.retake(runner.load(manifest), chapter_id=chapter, index=index, words=words,
                                       options=options)
    click.echo(f"chunk {chunk.index} of {chapter}: take {take} rendered and selected")
    for path in files:
        click.echo(f"wrote {path}")


def _retake_from_review(runner: Any, manifest: Path, marks_file: Path, *, dry_run: bool, options: Any) -> None:
    from pipeline.verdicts import describe

    book = runner.load(manifest)
    result = runner.retake_from_review(book, marks_file, dry_run=True, options=options)
    plan = result.marks
    for refused in plan.refused:
        click.echo(f"refused: {refused.describe()}", err=True)
    for marked in plan.chunks:
        notes = "; ".join(m.note for m in marked.marks if m.note)
        click.echo(f"  {marked.chunk.chapter_id} chunk {marked.chunk.index}: {len(marked.marks)} mark(s), "
                   f"{marked.chunk.billed_chars:,} characters" + (f"; notes: {notes}" if notes else ""))
    paid = " (simulated: nothing is charged)" if options.simulate else ""
    click.echo(f"to render: {result.tasks} retake task(s), {result.chars:,} billed characters, about "
               f"{result.cost:.2f} {result.currency}{paid}")
    if not dry_run and result.tasks:
        result = runner.retake_from_review(book, marks_file, options=options)
        failed = 0
        for marked in plan.chunks:
            take = result.takes.get(marked.chunk.key)
            where = f"{marked.chunk.chapter_id} chunk {marked.chunk.index}"
            if isinstance(take, int):
                click.echo(f"{where}: take {take} rendered and selected")
            else:
                failed += 1
                click.echo(f"{where}: FAILED: {take}", err=True)
        for path in result.files:
            click.echo(f"wrote {path}")
        for flag in result.flags:
            click.echo(f"QC: {describe(flag)}")
        if failed or any(f.verdict.verdict == "fail" for f in result.flags):
            sys.exit(1)
    if plan.refused:
        click.echo(f"{len(plan.refused)} mark(s) refused (listed above); the others were "
                   + ("planned" if dry_run else "rendered"), err=True)
        sys.exit(1)


@main.command()
@click.argument("manifest", type=click.Path(path_type=Path))
@click.option("--chapter", "chapter", required=True, metavar="ID", help="The chapter.")
@click.option("--chunk", "index", type=int, metavar="N", help="With --use: the chunk.")
@click.option("--use", "take", type=int, metavar="T", help="Select take T of chunk N and re-assemble.")
@_rehearsal_option
@_same_book_option
def takes(manifest: Path, chapter: str, index: int | None, take: int | None, simulate: bool, same_book: bool) -> None:
    """List the takes of a chapter's chunks (* marks the one in use); --chunk N --use T picks one."""
    from pipeline import runner

    book = runner.load(manifest, simulate=simulate)
    if take is not None:
        if index is None:
            raise click.UsageError("--use needs --chunk N")
        for path in runner.use_take(book, chapter_id=chapter, index=index, take=take, same_book=same_book):
            click.echo(f"wrote {path}")
        return
    for info in runner.list_takes(book, chapter_id=chapter):
        if index is not None and info.chunk_index != index:
            continue
        mark = "*" if info.selected else " "
        click.echo(f"{mark} chunk {info.chunk_index:>3} take {info.take}: {info.state}"
                   + (f"  {info.audio}" if info.audio else ""))


@main.command()
@click.argument("manifest", type=click.Path(path_type=Path))
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@_rehearsal_option
@_same_book_option
def clean(manifest: Path, dry_run: bool, simulate: bool, same_book: bool) -> None:
    """Remove cached chunk audio no chapter uses any more (never a selected take), and output files the
    manifest no longer makes (a removed chapter's files, the M4B under an old title)."""
    from pipeline import runner

    result = runner.clean(runner.load(manifest, simulate=simulate), dry_run=dry_run, same_book=same_book)
    verb = "would remove" if dry_run else "removed"
    for path in result.cache:
        click.echo(f"{verb} {path}")
    for path in result.outputs:
        click.echo(f"{verb} {path} (no longer made by the manifest)")
    click.echo(f"{len(result.files)} file(s), {result.size / 1e6:.1f} MB {'would be ' if dry_run else ''}freed")


@main.group()
def voice() -> None:
    """Clone voices and track their 3-day modelId deadline (the voice registry).

    The registry is $SOUNDCLONE_VOICES, else $XDG_DATA_HOME/soundclone-audiobook/voices.json.
    A manifest may then say `voice: {name: NAME}` instead of a raw model_id.
    """


@voice.command("create")
@click.option("--file-url", metavar="URL", help="Public http(s) URL of a 15-60 s voice sample.")
@click.option("--file", "file", type=click.Path(path_type=Path, dir_okay=False),
              help="A local sample: checked, then uploaded through the API's upload endpoint.")
@click.option("--text", metavar="LINE", help="The preview line (under 270 characters; default: the API's).")
@click.option("--language", metavar="L", help="Sample language (an API language name; default auto).")
@click.option("--sound-version", type=click.Choice(["v1", "v2"]), help="v1 (24 languages) or v2 (40).")
@click.option("--name", required=True, help="Registry name for the voice, used as `voice: {name: ...}`.")
@click.option("--base-url", metavar="URL", help="API base URL (default: $SOUNDCLONE_BASE_URL or the public API).")
@click.option("--api-key-file", type=click.Path(path_type=Path, dir_okay=False),
              help="Read the API key from this file instead of $SOUNDCLONE_API_KEY.")
@click.option("--poll-interval", type=_FiniteFloat(0.01, 600), default=5.0, show_default=True, metavar="S",
              help="Seconds between polls of the preview task.")
def voice_create(file_url: str | None, file: Path | None, text: str | None, language: str | None,
                 sound_version: str | None, name: str, base_url: str | None, api_key_file: Path | None,
                 poll_interval: float) -> None:
    """Clone a voice from a sample; print its modelId and the manifest lines to use it.

    The sample's format (and, for a local file, its 15-60 s length) is checked before anything is paid.
    """
    from pipeline import runner
    from pipeline.voices import VoiceRequest

    request = VoiceRequest(name=name, file_url=file_url, file=file, text=text, language=language,
                           sound_version=sound_version)
    record = runner.create_voice(request, base_url=base_url, key_file=api_key_file, poll_interval_s=poll_interval,
                                 on_event=lambda message: click.echo(message, err=True))
    click.echo(f"voice '{record.name}': modelId {record.model_id}")
    if record.preview_file:
        click.echo(f"preview: {record.preview_file}")
    click.echo("It expires in 3 days unless a production task uses it. Use it in a manifest with:\n"
               f"voice:\n  name: {record.name}\n# or\nvoice:\n  model_id: {record.model_id}")


@voice.command("list")
def voice_list() -> None:
    """List registered voices with the time left before an unused one expires."""
    import time

    from pipeline.voices import VoiceRegistry

    registry = VoiceRegistry.default()
    voices = registry.load()
    if not voices:
        click.echo(f"no voices in {registry.path}; create one with `audiobook voice create`")
        return
    now = time.time()
    for record in voices.values():
        left = record.seconds_left(now)
        state = "permanent" if left is None else ("EXPIRED" if left <= 0 else f"{left / 3600:.1f} h left")
        click.echo(f"{record.name:<20} {record.model_id:<40} {state}")


@voice.command("show")
@click.argument("name")
def voice_show(name: str) -> None:
    """Show everything the registry knows about voice NAME."""
    import dataclasses

    from pipeline.voices import VoiceRegistry

    record = VoiceRegistry.default().get(name)
    for key, value in dataclasses.asdict(record).items():
        click.echo(f"{key}: {value}")


def _attach_simulator() -> None:
    from pipeline.simulator.command import simulator_command

    main.add_command(simulator_command)


_attach_simulator()

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
