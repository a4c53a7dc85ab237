"""The ``audiobook`` command: parse, call one library function, render. No SQL, HTTP or audio here.

Every :class:`~pipeline.errors.PipelineError` is shown as its message with the error's exit code
(2 for usage, manifest and configuration errors; 1 when some work failed); a traceback only with
``--verbose``. Ctrl-C says how to resume and exits 130.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Any

import click

from pipeline import __version__
from pipeline.errors import PipelineError

EXIT_INTERRUPTED = 130


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


def _format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
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

    book = runner.plan(manifest, chapter_ids=chapters)
    if as_json:
        from pipeline.planning import plan_to_json

        click.echo(json.dumps(plan_to_json(book), ensure_ascii=False, indent=2))
        return
    click.echo(render_plan(book))


def render_plan(book: Any) -> str:
    t = book.totals
    cur = t.currency
    rows = [f"{'chapter':<12} {'title':<28} {'tasks':>5} {'billed chars':>12} {'audio':>8} {'cost':>10}"]
    for cp in book.chapters:
        from pipeline.planning import chapter_seconds

        cost = book.manifest.pricing.cost(billed_chars=cp.billed_chars, tasks=len(cp.chunks))
        rows.append(f"{cp.chapter.id:<12} {cp.chapter.title[:28]:<28} {len(cp.chunks):>5} "
                    f"{cp.billed_chars:>12,} {_format_seconds(chapter_seconds(cp)):>8} {cost:>10.2f}")
    rows.append(f"{'total':<12} {book.manifest.book.title[:28]:<28} {t.chunks:>5} {t.billed_chars:>12,} "
                f"{_format_seconds(t.est_audio_s):>8} {t.est_cost:>10.2f} {cur}")
    rows.append(f"tasks: {t.chunks} (lower bound {t.lower_bound_tasks}); chunk limit "
                f"{book.manifest.chunking.max_chars:,} code points")
    return "\n".join(rows)


@main.command()
def schema() -> None:
    """Print the manifest's JSON Schema (for editor completion and validation)."""
    from pipeline.manifest import json_schema

    click.echo(json.dumps(json_schema(), ensure_ascii=False, indent=2))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
