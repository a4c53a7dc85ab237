"""Seeded fault injection that does not depend on thread interleaving.

Every decision is a pure function of ``(seed, fault kind, request key, occurrence)``: the request key is
stable for "the same request" (``POST <path> <sha256 of the canonical JSON body>``, ``GET <path>`` for a
task query or a file download) and the occurrence counts how many times that key has been seen. A
client that sends the same requests therefore meets the same faults however its threads interleave,
and a retry (occurrence + 1) gets a fresh, equally deterministic draw. There is no shared RNG stream.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import TypeVar

# Spec key -> FaultProfile attribute. The keys are what `FaultProfile.parse` accepts.
_RATE_KEYS = {
    "429": "rate_429",
    "5xx": "rate_5xx",
    "drop_before": "drop_before",
    "drop_after_create": "drop_after_create",
    "fail": "fail",
    "truncate": "truncate",
    "slow": "slow",
    "expire": "expire",
    "dead_link": "dead_link",
    "no_link": "no_link",
    "status_alias": "status_alias",
    "status_unknown": "status_unknown",
    "drop_sentence": "drop_sentence",
    "long_silence": "long_silence",
    "cut_short": "cut_short",
    "clip": "clip",
}
_VALUE_KEYS = {"seed": "seed", "slow_s": "slow_s", "retry_after_s": "retry_after_s", "long_silence_s": "long_silence_s"}
_FLOAT_VALUE_KEYS = ("slow_s", "long_silence_s")
# Task faults: decided once per created task (from the create request's key and occurrence) and kept
# for every later query and download of that task, so the task behaves consistently.
# The silent defects of an audio task's take, in the order they are applied (see pipeline.simulator.defects).
DEFECT_FAULT_KEYS = ("drop_sentence", "long_silence", "cut_short", "clip")
TASK_FAULT_KEYS = ("fail", "dead_link", "no_link", "status_alias", "status_unknown", *DEFECT_FAULT_KEYS)
LONG_SILENCE_MAX_S = 600.0
INJECTED_5XX_STATUSES = (500, 502, 503)
COMPLETED_STATUS_ALIASES = ("succeeded", "success", "finished", "done")
FAILED_STATUS_ALIASES = ("error", "failure")
UNKNOWN_STATUSES = ("paused_by_operator", "suspended", "awaiting_review")

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class FaultProfile:
    """Probabilities (0-1) of each injected fault, plus the seed that makes them reproducible.

    Spec keys accepted by :meth:`parse` (comma-separated ``key=value``; whitespace ignored):

    ==================== ===================================================================================
    ``seed``             integer seed for fault decisions; default: the simulator's ``SimulatorConfig.seed``
    ``429``              API request answered 429 with ``Retry-After`` (any API endpoint; nothing created)
    ``5xx``              API request or file download answered 500, 502 or 503 (nothing created)
    ``drop_before``      API request or download: connection closed with no response (nothing created)
    ``drop_after_create`` create request: the task is created and billed, then the connection is closed
                         with no response (the ambiguous case a client must not blindly retry)
    ``fail``             created task ends ``failed`` (and is refunded) instead of ``completed``
    ``truncate``         download sends the full ``Content-Length`` but only part of the body, then closes
    ``slow``             API request or download is delayed by ``slow_s`` seconds before it is handled
    ``expire``           download of a URL that has not expired is refused with 403 as if it had
    ``dead_link``        task fault: a completed task's ``audioUrl`` and ``subtitleFile`` are dead for good:
                         every download of them gets 403 ("expired"), and every query returns the very
                         same URLs as the first one that showed them, never fresh ones
    ``no_link``          task fault: the query of the completed task says ``completed`` but has no
                         ``audioUrl`` and no ``subtitleFile`` (as if purged); a preview keeps its ``modelId``
    ``status_alias``     task fault: the final status is reported with a synonym, one of
                         ``COMPLETED_STATUS_ALIASES`` for completed or ``FAILED_STATUS_ALIASES`` for failed
                         (picked per task); links, ``modelId`` and ``error`` stay as usual
    ``status_unknown``   task fault: every query returns one of ``UNKNOWN_STATUSES`` (picked per task),
                         forever; the task never completes or fails, is not refunded, activates no voice,
                         and stops holding a ``max_active_tasks`` slot when it would have finished
    ``drop_sentence``    task fault, audio tasks: one sentence (never the only one) is missing from the audio
                         and from the subtitle file; the later cues move earlier by the audio removed, so
                         the cues match the audio and only the text is short
    ``long_silence``     task fault, audio tasks: ``long_silence_s`` of digital silence (as quiet as the
                         clip's own pauses) inserted at a sentence boundary, or between two words when the
                         text has one sentence, never next to a ``<#x#>`` marker; the later cues move later
                         by as much (the cues are honest, the silence is unexplained)
    ``cut_short``        task fault, audio tasks: the audio stops inside loud speech, 40-80 % of the way
                         through it (the last 20-60 % is lost), with no silence after the cut; the subtitle
                         file still has the whole text with its original times
    ``clip``             task fault, audio tasks: the clip is amplified by 12 dB and clipped hard at full
                         scale before encoding (many samples sit at full scale; decoded, the MP3's plateaus
                         ripple within about 0.5 dB of it); cues unchanged
    ``slow_s``           delay of a slow response in seconds (default 2.0)
    ``retry_after_s``    ``Retry-After`` seconds sent with an injected 429 (default 1)
    ``long_silence_s``   seconds of silence the ``long_silence`` fault inserts (default 3.0, at most 600)
    ==================== ===================================================================================

    Task faults (``fail`` and the eight above) are decided once, when a create request makes its task, from
    the seed, that request's key and occurrence (so a retake, the next occurrence, gets a fresh draw);
    several may hit one task: ``status_unknown`` overrides the others, ``fail`` makes the link faults moot,
    ``no_link`` overrides ``dead_link``, and ``status_alias`` combines with either link fault. The four
    defects (``drop_sentence``, ``long_silence``, ``cut_short``, ``clip``) hit audio tasks only, and only
    ones whose audio can be downloaded (not under ``fail``, ``status_unknown``, ``no_link`` or
    ``dead_link``); they combine, applied in that order to the PCM before it is encoded (see
    :mod:`pipeline.simulator.defects`). A defect that cannot apply to the text (``drop_sentence`` on one
    sentence, ``long_silence`` with no boundary free of markers) is not recorded. The ledger lists each
    task's effective task faults, and the details of its defects.

    Example: ``FaultProfile.parse("seed=7,429=0.1,5xx=0.05,drop_before=0.05,fail=0.05")``.
    ``FaultProfile()`` injects nothing.
    """

    seed: int | None = None
    rate_429: float = 0.0
    rate_5xx: float = 0.0
    drop_before: float = 0.0
    drop_after_create: float = 0.0
    fail: float = 0.0
    truncate: float = 0.0
    slow: float = 0.0
    expire: float = 0.0
    dead_link: float = 0.0
    no_link: float = 0.0
    status_alias: float = 0.0
    status_unknown: float = 0.0
    drop_sentence: float = 0.0
    long_silence: float = 0.0
    cut_short: float = 0.0
    clip: float = 0.0
    slow_s: float = 2.0
    retry_after_s: int = 1
    long_silence_s: float = 3.0

    def __post_init__(self) -> None:
        for key, attribute in _RATE_KEYS.items():
            rate = getattr(self, attribute)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"fault rate {key}={rate} must be from 0 to 1")
        if self.slow_s < 0:
            raise ValueError(f"slow_s={self.slow_s} must not be negative")
        if self.retry_after_s < 0:
            raise ValueError(f"retry_after_s={self.retry_after_s} must not be negative")
        if not 0.0 < self.long_silence_s <= LONG_SILENCE_MAX_S:
            raise ValueError(f"long_silence_s={self.long_silence_s} must be above 0 and at most {LONG_SILENCE_MAX_S:g}")

    @classmethod
    def parse(cls, spec: str) -> FaultProfile:
        """Build a profile from a spec such as ``"seed=7,429=0.1,truncate=0.05"``.

        An empty spec or ``"none"`` gives a profile that injects nothing.

        Raises:
            ValueError: an unknown key, a malformed pair or a value out of range; the message lists the
                accepted keys.
        """
        values: dict[str, object] = {}
        text = spec.strip()
        if text.lower() in ("", "none", "off"):
            return cls()
        accepted = ", ".join([*_RATE_KEYS, *_VALUE_KEYS])
        for pair in text.split(","):
            pair = pair.strip()
            if not pair:
                continue
            key, sep, raw = pair.partition("=")
            key, raw = key.strip(), raw.strip()
            if not sep or not raw:
                raise ValueError(f"fault spec item {pair!r} is not key=value; accepted keys: {accepted}")
            try:
                if key in _RATE_KEYS:
                    values[_RATE_KEYS[key]] = float(raw)
                elif key in _FLOAT_VALUE_KEYS:
                    values[key] = float(raw)
                elif key in ("seed", "retry_after_s"):
                    values[key] = int(raw)
                else:
                    raise ValueError(f"unknown fault key {key!r}; accepted keys: {accepted}")
            except ValueError as exc:
                if "unknown fault key" in str(exc):
                    raise
                raise ValueError(f"fault spec item {pair!r} has a bad value: {exc}") from exc
        return cls(**values)  # type: ignore[arg-type]

    def to_spec(self) -> str:
        """The spec that :meth:`parse` turns back into this profile (defaults left out)."""
        default = FaultProfile()
        parts = []
        if self.seed is not None:
            parts.append(f"seed={self.seed}")
        for key, attribute in [*_RATE_KEYS.items(), *list(_VALUE_KEYS.items())[1:]]:
            value = getattr(self, attribute)
            if value != getattr(default, attribute):
                parts.append(f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}")
        return ",".join(parts) or "none"

    def with_seed(self, seed: int) -> FaultProfile:
        """This profile with ``seed`` filled in when the spec did not set one."""
        return self if self.seed is not None else replace(self, seed=seed)

    def as_dict(self) -> dict[str, object]:
        """The profile as JSON-ready values, keyed by attribute name."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def stable_unit(*parts: object) -> float:
    """A number in [0, 1) that depends only on ``parts`` (sha256 of their text form)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def stable_bytes(*parts: object, size: int = 16) -> bytes:
    """``size`` bytes that depend only on ``parts``: seeds ids and audio deterministically."""
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()[:size]


class FaultInjector:
    """Decides faults for requests; thread-safe; the profile can be swapped at runtime."""

    def __init__(self, profile: FaultProfile, *, default_seed: int) -> None:
        self._lock = threading.Lock()
        self._default_seed = default_seed
        self._profile = profile.with_seed(default_seed)
        self._occurrences: Counter[str] = Counter()

    @property
    def profile(self) -> FaultProfile:
        """The profile in force, with its seed filled in."""
        return self._profile

    def set_profile(self, profile: FaultProfile) -> None:
        """Use ``profile`` for every later decision; occurrence counts carry on."""
        with self._lock:
            self._profile = profile.with_seed(self._default_seed)

    def next_occurrence(self, key: str) -> int:
        """Count one more request with ``key`` and return its 0-based occurrence number."""
        with self._lock:
            occurrence = self._occurrences[key]
            self._occurrences[key] = occurrence + 1
            return occurrence

    def decide(self, kind: str, key: str, occurrence: int) -> bool:
        """Whether fault ``kind`` (a spec key such as ``"429"``) hits this occurrence of ``key``."""
        profile = self._profile
        rate = float(getattr(profile, _RATE_KEYS[kind]))
        if rate <= 0.0:
            return False
        return stable_unit(profile.seed, kind, key, occurrence) < rate

    def choose(self, kind: str, key: str, occurrence: int, options: Sequence[_T]) -> _T:
        """A deterministic pick among ``options`` for this occurrence (e.g. which 5xx status)."""
        index = int(stable_unit(self._profile.seed, kind, "choice", key, occurrence) * len(options))
        return options[index]

    def fraction(self, kind: str, key: str, occurrence: int) -> float:
        """A deterministic number in [0, 1) for sizing a fault (e.g. how much of a body to send)."""
        return stable_unit(self._profile.seed, kind, "fraction", key, occurrence)
