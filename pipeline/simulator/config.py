"""The simulator's frozen configuration and its controllable clock."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pipeline.simulator.faults import FaultProfile

DEFAULT_API_KEY = "sk-sim"
DEFAULT_URL_TTL_S = 3 * 24 * 3600.0  # the reference: links last about 3 days on this platform
DEFAULT_TASK_BASE_S = 0.05
DEFAULT_TASK_S_PER_CHAR = 0.00002


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """Everything that shapes the simulator's behaviour; pass it to ``Simulator``.

    Attributes:
        api_key: the one bearer key accepted (``Authorization: Bearer <api_key>``).
        seed: seeds task ids, model ids and (unless the profile sets its own) fault decisions.
        faults: injected faults; change at runtime with ``Simulator.set_faults``.
        task_base_s, task_s_per_char: a task takes ``task_base_s + task_s_per_char * billed chars``
            seconds of simulator clock (queued for the first 30 %, then processing).
        url_ttl_s: lifetime of ``audioUrl`` / ``subtitleFile`` / upload links (default 3 days).
        max_active_tasks: queued + processing tasks allowed per key; a create beyond it gets 429.
        requests_per_minute: API requests allowed per key in any 60 s of simulator clock; beyond: 429.
        balance: credits available (None: unlimited); 1 credit per billed character plus
            ``voice_fee_credits`` per audio task; a create that would overdraw gets 402.
        voice_fee_credits: credits the voice fee of one audio task costs against ``balance``.
        voice: ``synthetic`` (numpy, default), ``espeak`` (real speech from the espeak-ng program on PATH,
            else from libespeak-ng in the ``espeakng-loader`` package) or ``auto`` (``espeak`` when
            either can run, else ``synthetic``).
        preload_voices: model ids registered at start as permanent (activated) voices.
        clock: unix-seconds clock (default ``time.time``); ``Simulator.advance_clock`` adds to it.
        audio_cache_bytes: rendered audio kept in memory (least recently used is dropped first).
    """

    api_key: str = DEFAULT_API_KEY
    seed: int = 0
    faults: FaultProfile = field(default_factory=FaultProfile)
    task_base_s: float = DEFAULT_TASK_BASE_S
    task_s_per_char: float = DEFAULT_TASK_S_PER_CHAR
    url_ttl_s: float = DEFAULT_URL_TTL_S
    max_active_tasks: int | None = None
    requests_per_minute: int | None = None
    balance: float | None = None
    voice_fee_credits: float = 0.0
    voice: str = "synthetic"
    preload_voices: tuple[str, ...] = ()
    clock: Callable[[], float] | None = None
    audio_cache_bytes: int = 256 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.task_base_s < 0 or self.task_s_per_char < 0:
            raise ValueError("task_base_s and task_s_per_char must not be negative")
        if self.url_ttl_s <= 0:
            raise ValueError("url_ttl_s must be positive")
        if self.max_active_tasks is not None and self.max_active_tasks < 1:
            raise ValueError("max_active_tasks must be at least 1 (or None for no limit)")
        if self.requests_per_minute is not None and self.requests_per_minute < 1:
            raise ValueError("requests_per_minute must be at least 1 (or None for no limit)")


class SimulatorClock:
    """A base clock plus an offset that only grows; thread-safe."""

    def __init__(self, base: Callable[[], float] | None = None) -> None:
        self._base = base or time.time
        self._offset_s = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        """Simulator time in unix seconds."""
        with self._lock:
            offset = self._offset_s
        return self._base() + offset

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds`` (must not be negative); return the new time."""
        if seconds < 0:
            raise ValueError(f"the clock only moves forward; got advance of {seconds} s")
        with self._lock:
            self._offset_s += seconds
        return self.now()
