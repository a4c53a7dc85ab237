"""``simulator``: run the SoundClone API simulator from the command line until Ctrl-C.

Thin by design: parse options into a :class:`SimulatorConfig`, start a :class:`Simulator`, print where it
listens and how to point a client at it, wait.
"""

from __future__ import annotations

import click

from pipeline.simulator.config import (
    DEFAULT_API_KEY,
    DEFAULT_TASK_BASE_S,
    DEFAULT_TASK_S_PER_CHAR,
    DEFAULT_URL_TTL_S,
    SimulatorConfig,
)
from pipeline.simulator.faults import FaultProfile
from pipeline.simulator.server import Simulator
from pipeline.simulator.voice import VOICES

API_KEY_ENV = "SOUNDCLONE_API_KEY"
BASE_URL_ENV = "SOUNDCLONE_BASE_URL"
DEFAULT_PORT = 8700


def _parse_faults(ctx: click.Context, param: click.Parameter, value: str | None) -> FaultProfile:
    try:
        return FaultProfile.parse(value or "")
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from exc


@click.command(
    name="simulator",
    epilog=(
        "Fault spec keys (probabilities 0-1 unless noted): seed, 429, 5xx, drop_before, "
        "drop_after_create, fail, truncate, slow, expire, dead_link (a completed task's links always "
        "403, re-queries return the same dead URLs), no_link (completed without audioUrl or "
        "subtitleFile), status_alias (final status as a synonym: succeeded/success/finished/done, "
        "error/failure), status_unknown (a task that only ever reports an undocumented status), "
        "drop_sentence (an audio task's take lacks one sentence, in audio and subtitles), long_silence "
        "(a silence of long_silence_s inserted at a sentence boundary), cut_short (the audio stops "
        "inside speech while the subtitles claim the whole text), clip (the take is amplified by 12 dB "
        "and clipped), slow_s (seconds), retry_after_s (seconds), long_silence_s (seconds, default 3). "
        "The ledger's tasks[].defects says what each of the last four did. "
        "Example: --faults 'seed=7,429=0.1,5xx=0.05,truncate=0.05,dead_link=0.02'. "
        "Resubmitting an identical create renders a slightly different take. Admin endpoints (no auth): "
        "GET /admin/ledger, POST /admin/voices {modelId, createdAt?, activated?}, "
        "POST /admin/clock {advance_s}, POST /admin/faults {spec}."
    ),
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--port",
    default=DEFAULT_PORT,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="API origin port (0 picks a free one).",
)
@click.option(
    "--files-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Files origin port (audio, subtitles, uploads).  [default: PORT+1, or free if PORT is 0]",
)
@click.option(
    "--api-key",
    envvar=API_KEY_ENV,
    default=DEFAULT_API_KEY,
    show_default=True,
    help=f"Bearer key the simulator accepts (default from ${API_KEY_ENV}).",
)
@click.option(
    "--seed",
    default=0,
    show_default=True,
    type=int,
    help="Seed for task ids, model ids and fault decisions: same seed + same requests = same run.",
)
@click.option(
    "--faults",
    "faults",
    metavar="SPEC",
    callback=_parse_faults,
    default=None,
    help="Inject faults, e.g. 'seed=7,429=0.1,drop_after_create=0.05' (keys below).",
)
@click.option(
    "--voice",
    type=click.Choice(VOICES),
    default="synthetic",
    show_default=True,
    help="Audio backend: numpy 'synthetic' voice, 'espeak' (real speech: the espeak-ng program, else "
    "libespeak-ng from the espeakng-loader package), or 'auto' (espeak when it can run, else synthetic).",
)
@click.option(
    "--register-voice",
    "voices",
    metavar="MODEL_ID",
    multiple=True,
    help="Pre-register a permanent voice so a manifest's modelId works (repeatable).",
)
@click.option(
    "--task-base-s",
    default=DEFAULT_TASK_BASE_S,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds every task takes regardless of length.",
)
@click.option(
    "--task-s-per-char",
    default=DEFAULT_TASK_S_PER_CHAR,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Extra seconds per billed character.",
)
@click.option(
    "--url-ttl-s",
    default=DEFAULT_URL_TTL_S,
    show_default=True,
    type=click.FloatRange(min=1),
    help="Lifetime of audio/subtitle/upload links in seconds (default 3 days).",
)
@click.option(
    "--max-active-tasks",
    type=click.IntRange(min=1),
    default=None,
    help="Queued+processing tasks allowed at once; more get 429.  [default: no limit]",
)
@click.option(
    "--requests-per-minute",
    type=click.IntRange(min=1),
    default=None,
    help="API requests allowed per minute; more get 429.  [default: no limit]",
)
@click.option(
    "--balance",
    type=click.FloatRange(min=0),
    default=None,
    help="Credits on the account (1 per billed character); a create that overdraws gets 402.  "
    "[default: unlimited]",
)
@click.option(
    "--voice-fee-credits",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Credits each audio task's voice fee costs against --balance.",
)
@click.option("--verbose", is_flag=True, help="Log every request to stderr.")
def simulator_command(
    *,
    host: str,
    port: int,
    files_port: int | None,
    api_key: str,
    seed: int,
    faults: FaultProfile,
    voice: str,
    voices: tuple[str, ...],
    task_base_s: float,
    task_s_per_char: float,
    url_ttl_s: float,
    max_active_tasks: int | None,
    requests_per_minute: int | None,
    balance: float | None,
    voice_fee_credits: float,
    verbose: bool,
) -> None:
    """Run a local SoundClone API simulator until Ctrl-C.

    It serves the documented endpoints (create preview/audio task, query task, upload) on --port and
    the audio, subtitle and upload links on a second origin (--files-port), bills a ledger you can read
    at /admin/ledger, and can inject seeded faults. Point the pipeline at it with the environment
    variables it prints.
    """
    if files_port is None:
        files_port = port + 1 if port else 0
    try:
        config = SimulatorConfig(
            api_key=api_key,
            seed=seed,
            faults=faults,
            task_base_s=task_base_s,
            task_s_per_char=task_s_per_char,
            url_ttl_s=url_ttl_s,
            max_active_tasks=max_active_tasks,
            requests_per_minute=requests_per_minute,
            balance=balance,
            voice_fee_credits=voice_fee_credits,
            voice=voice,
            preload_voices=voices,
        )
        simulator = Simulator(config, host=host, port=port, files_port=files_port, verbose=verbose)
        simulator.start()
    except (ValueError, OSError) as exc:
        raise click.ClickException(f"cannot start the simulator: {exc}") from exc
    click.echo(f"SoundClone simulator listening on {simulator.base_url} (files on {simulator.files_url})")
    click.echo("Point a client at it with:")
    click.echo(f"  export {BASE_URL_ENV}={simulator.base_url}")
    click.echo(f"  export {API_KEY_ENV}={api_key}")
    if voices:
        click.echo(f"Registered voices: {', '.join(voices)}")
    click.echo(f"Faults: {simulator.faults.to_spec()}; ledger: {simulator.base_url}/admin/ledger")
    click.echo("Press Ctrl-C to stop.")
    try:
        simulator.serve_forever()
    except KeyboardInterrupt:
        click.echo("Stopped.", err=True)
