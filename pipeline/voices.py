"""Voices: clone one from a sample, and remember it in a registry with its 3-day deadline.

A preview (clone) task turns a 15-60 s voice sample at a public URL into a ``modelId``. That id is
valid for 3 days; the first completed production task makes it permanent (soundclone-api.md,
"modelId lifetime"). The registry records every voice so that ``run`` can refuse a dead voice before
spending and warn about one close to its deadline.

The registry is one JSON file: ``$SOUNDCLONE_VOICES`` if set, else
``$XDG_DATA_HOME/soundclone-audiobook/voices.json`` (``~/.local/share/...`` by default); preview
audio is kept in a ``previews/`` folder beside it. It is written atomically.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pipeline import fsio
from pipeline.errors import ConfigError, PipelineError, VoiceError

ENV_VOICES = "SOUNDCLONE_VOICES"
MODEL_LIFETIME_S = 3 * 24 * 3600
EXPIRY_WARNING_S = 24 * 3600
SAMPLE_MIN_S = 15.0
SAMPLE_MAX_S = 60.0
PREVIEW_TEXT_MAX = 269  # "under 270 characters"
PREVIEW_POLL_INTERVAL_S = 5.0
PREVIEW_TIMEOUT_S = 1800.0
# soundclone-api.md, "Create preview task": the formats a sample may have.
SAMPLE_SUFFIXES = (".mp3", ".ogg", ".wav", ".m4a", ".aac", ".mp4", ".avi", ".mov", ".mkv", ".flv")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_CJK_RE = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uf900-\ufaff\uff00-\uffef]")


@dataclass(frozen=True)
class VoiceRecord:
    name: str
    model_id: str
    created_at: float
    expires_at: float
    activated_at: float | None = None
    sample: str | None = None
    preview_file: str | None = None
    language: str | None = None
    sound_version: str | None = None
    task_id: str | None = None

    def seconds_left(self, now: float) -> float | None:
        """Seconds until the modelId dies; None once it is permanent."""
        return None if self.activated_at else self.expires_at - now


def registry_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get(ENV_VOICES):
        return Path(env[ENV_VOICES]).expanduser()
    base = Path(env.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "soundclone-audiobook" / "voices.json"


class VoiceRegistry:
    """The voices file. Every change rewrites it atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def default(cls) -> VoiceRegistry:
        return cls(registry_path())

    def load(self) -> dict[str, VoiceRecord]:
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return {name: VoiceRecord(**fields) for name, fields in data.get("voices", {}).items()}
        except (ValueError, TypeError, AttributeError) as exc:
            raise VoiceError(f"the voice registry {self.path} is damaged ({exc}); fix or move it aside") from exc

    def save(self, voices: Mapping[str, VoiceRecord]) -> None:
        """Rewrite the registry atomically and durably; the file stays private (mode 0600)."""
        payload = {"version": 1, "voices": {name: asdict(v) for name, v in sorted(voices.items())}}
        fsio.write_atomic(self.path, json.dumps(payload, indent=2, ensure_ascii=False), durable=True,
                          mode=fsio.PRIVATE_FILE_MODE)

    def get(self, name: str) -> VoiceRecord:
        voices = self.load()
        if name not in voices:
            known = ", ".join(sorted(voices)) or "none yet"
            raise VoiceError(f"no voice named '{name}' in {self.path} (known: {known}); "
                             "create one with `audiobook voice create`")
        return voices[name]

    def by_model_id(self, model_id: str) -> VoiceRecord | None:
        return next((v for v in self.load().values() if v.model_id == model_id), None)

    def add(self, record: VoiceRecord) -> None:
        voices = self.load()
        voices[record.name] = record
        self.save(voices)

    def mark_activated(self, model_ids: Iterable[str], *, now: float) -> None:
        wanted = set(model_ids)
        voices = self.load()
        changed = {name: VoiceRecord(**{**asdict(v), "activated_at": now})
                   for name, v in voices.items() if v.model_id in wanted and not v.activated_at}
        if changed:
            self.save({**voices, **changed})


def resolve_voice_name(name: str) -> str | None:
    """The modelId registered under ``name`` (the manifest's ``voice.name``), or None."""
    voices = VoiceRegistry.default().load()
    return voices[name].model_id if name in voices else None


def check_voices(model_ids: Iterable[str], *, now: float, registry: VoiceRegistry | None = None,
                 activated: Callable[[str], bool] = lambda model_id: False) -> list[str]:
    """Refuse a voice known to be dead; return warnings for voices that die within a day.

    ``activated(model_id)`` lets a book's journal vouch for a voice it has already used.
    """
    registry = registry or VoiceRegistry.default()
    voices = registry.load()
    warnings = []
    for model_id in sorted(set(model_ids)):
        record = next((v for v in voices.values() if v.model_id == model_id), None)
        if record is None or record.activated_at or activated(model_id):
            continue
        left = record.expires_at - now
        if left <= 0:
            raise VoiceError(f"voice '{record.name}' ({model_id}) expired {_age(-left)} ago: an unused modelId "
                             "lives 3 days. Clone it again with `audiobook voice create` and update the manifest")
        if left < EXPIRY_WARNING_S:
            warnings.append(f"voice '{record.name}' ({model_id}) expires in {_age(left)} unless a production "
                            "task completes before then")
    return warnings


def _age(seconds: float) -> str:
    hours = seconds / 3600
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"


# --- creating a voice ----------------------------------------------------------------------------

@dataclass(frozen=True)
class VoiceRequest:
    name: str
    file_url: str | None = None
    file: Path | None = None
    text: str | None = None
    language: str | None = None
    sound_version: str | None = None


SAMPLE_DECODE_RATE_HZ = 16_000  # the speech band: plenty for counting speech frames, and cheap


@dataclass(frozen=True)
class SampleMeasure:
    """What is learnt from a local sample before paying: its decoded length and how much of it is
    speech (:func:`pipeline.audio.dsp.speech_seconds`)."""

    duration_s: float
    speech_s: float


def measure_sample(path: Path) -> SampleMeasure:
    """Decode ``path`` in blocks (a long file costs no memory) and measure length and speech."""
    from pipeline.audio.dsp import speech_seconds
    from pipeline.audio.ffmpeg import stream_pcm

    samples = 0

    def counted(blocks: Iterable[Any]) -> Iterable[Any]:
        nonlocal samples
        for block in blocks:
            samples += len(block)
            yield block

    with stream_pcm(path, sample_rate_hz=SAMPLE_DECODE_RATE_HZ, label=f"--file {path}") as blocks:
        speech = speech_seconds(counted(blocks), sample_rate_hz=SAMPLE_DECODE_RATE_HZ)
    return SampleMeasure(duration_s=samples / SAMPLE_DECODE_RATE_HZ, speech_s=speech)


def check_request(request: VoiceRequest, *, measure: Callable[[Path], SampleMeasure] | None = None) -> None:
    """Everything that can be checked before paying for a preview.

    A local ``--file`` is decoded and measured (``measure``, :func:`measure_sample` by default):
    it must last under 60 s, and the speech in it more than 15 s and less than 60 s
    (soundclone-api.md, "Create preview task"); a sample of silence or hiss is refused here rather
    than paid for. A ``--file-url`` cannot be measured without downloading it and is not.
    """
    from pipeline.errors import AudioToolError

    if not NAME_RE.match(request.name):
        raise ConfigError(f"--name '{request.name}': use letters, digits, '.', '-' and '_' (at most 64)")
    if (request.file_url is None) == (request.file is None):
        raise ConfigError("give exactly one of --file-url URL or --file PATH")
    if request.text is not None and not 0 < len(request.text) <= PREVIEW_TEXT_MAX:
        raise ConfigError(f"--text must be 1 to {PREVIEW_TEXT_MAX} characters (it has {len(request.text)})")
    if request.sound_version not in (None, "v1", "v2"):
        raise ConfigError("--sound-version must be v1 or v2")
    if request.file_url is not None:
        parts = urlsplit(request.file_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"--file-url '{request.file_url}' must be a public http(s) URL")
        if _CJK_RE.search(request.file_url):
            raise ConfigError("--file-url must not contain Chinese characters (the API refuses them); "
                              "rename the file or upload it with --file")
        suffix = Path(parts.path).suffix.lower()
        if suffix and suffix not in SAMPLE_SUFFIXES:
            raise ConfigError(f"--file-url: '{suffix}' is not a sample format the API takes "
                              f"({', '.join(SAMPLE_SUFFIXES)})")
        return
    assert request.file is not None
    if not request.file.is_file():
        raise ConfigError(f"--file {request.file}: no such file")
    suffix = request.file.suffix.lower()
    if suffix not in SAMPLE_SUFFIXES:
        raise ConfigError(f"--file {request.file}: '{suffix}' is not a sample format the API takes "
                          f"({', '.join(SAMPLE_SUFFIXES)}); convert it, e.g. to .wav or .mp3")
    try:
        measured = (measure or measure_sample)(request.file)
    except AudioToolError:
        raise  # ffmpeg itself is missing or broken: its message says how to install one
    except PipelineError as exc:
        raise ConfigError(f"--file {request.file}: cannot be decoded as audio ({exc})") from exc
    seconds, speech = measured.duration_s, measured.speech_s
    if not SAMPLE_MIN_S < seconds < SAMPLE_MAX_S:
        raise ConfigError(f"--file {request.file}: the sample lasts {seconds:.1f}s; the API needs more than "
                          f"{SAMPLE_MIN_S:.0f}s and less than {SAMPLE_MAX_S:.0f}s of speech. Trim or extend it")
    if not SAMPLE_MIN_S < speech < SAMPLE_MAX_S:
        from pipeline.audio import dsp

        # one decimal, rounded down: 14.97 s must not read as "15.0s" next to "more than 15s"
        found = int(max(speech, 0.0) * 10) / 10
        raise ConfigError(
            f"--file {request.file}: found {found:.1f}s of speech in {seconds:.1f}s of audio "
            f"({dsp.SPEECH_FRAME_S * 1000:.0f} ms frames louder than {dsp.SPEECH_THRESHOLD_DB:.0f} dBFS and "
            f"{dsp.SPEECH_ABOVE_FLOOR_DB:.0f} dB above the recording's noise floor); the API needs more than "
            f"{SAMPLE_MIN_S:.0f}s and less than {SAMPLE_MAX_S:.0f}s of speech. Use a recording with more "
            "speech and less silence or noise")


async def create_voice(client: Any, request: VoiceRequest, *, registry: VoiceRegistry,
                       poll_interval_s: float = PREVIEW_POLL_INTERVAL_S, clock: Callable[[], float] = time.time,
                       on_event: Callable[[str], None] = lambda message: None) -> VoiceRecord:
    """Upload (if local), create the preview task, poll it, download the preview, register the voice."""
    from pipeline.client import wait_until_final
    from pipeline.errors import RequestRejected, TransientError

    if request.name in registry.load():
        raise ConfigError(f"a voice named '{request.name}' already exists in {registry.path}; choose another --name")
    file_url = request.file_url
    if request.file is not None:
        on_event(f"uploading {request.file.name}")
        file_url = await client.upload(request.file)
    assert file_url is not None
    created = clock()
    task_id = await client.create_preview(file_url=file_url, text=request.text, language=request.language,
                                          sound_version=request.sound_version)
    on_event(f"preview task {task_id} created; waiting for it")
    try:
        info = await wait_until_final(client, task_id, interval_s=poll_interval_s, timeout_s=PREVIEW_TIMEOUT_S)
    except TransientError as error:
        raise VoiceError(f"{error}; query the preview task later") from error
    if info.status == "failed":
        raise RequestRejected(f"the preview task {task_id} failed: {info.error or 'no reason given'}; "
                              "check the sample (15-60 s of clear speech)")
    if not info.model_id:
        raise VoiceError(f"the preview task {task_id} completed without a modelId")
    preview_file = None
    if info.audio_url:
        target = registry.path.parent / "previews" / f"{request.name}.mp3"
        with fsio.atomic_path(target) as tmp:
            await client.download(info.audio_url, tmp)
        preview_file = str(target)
    record = VoiceRecord(
        name=request.name, model_id=info.model_id, created_at=created, expires_at=created + MODEL_LIFETIME_S,
        sample=str(request.file) if request.file else request.file_url, preview_file=preview_file,
        language=request.language, sound_version=request.sound_version, task_id=task_id,
    )
    registry.add(record)
    return record
