"""Tasks and voices, with every state derived lazily from the simulator clock.

A task is fully decided when it is created: when it stops being ``queued``, when it finishes, and
whether it will fail. Its status at any moment is then a pure function of the clock, so no background
thread runs and advancing a fake clock moves every task along.

Lifecycle (the reference's "Query task"): ``queued`` for the first ``QUEUED_FRACTION`` of the task's
duration, ``processing`` for the rest, then ``completed`` or ``failed`` (final). Task faults (see
:class:`~pipeline.simulator.faults.FaultProfile`) change what a query *reports*, not this lifecycle,
except ``status_unknown``: such a task stays ``processing`` for good (never final, never refunded).

Takes: a task's ``take`` says which rendering of its request body its audio is (see
:func:`~pipeline.simulator.voice.take_variation`). Take 1 is the audio the simulator has always rendered
for that body. A take is used up once a client has downloaded its audio: the next identical create then
renders the next take. Audio nobody downloaded (a refused request, a failed task, a task whose create
response was lost, a dead or missing link) uses up nothing, so the first audio a client hears of a body
is take 1 however many faults came before it, and a deliberate retake is take 2.

Voices: a modelId exists from the moment its preview task completes (or when registered). Unless
activated it is valid for ``MODEL_LIFETIME_S`` (3 days) after creation; the first audio task using it
that completes makes it permanent (reference: "modelId lifetime").
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from enum import Enum
from typing import Any

from pipeline.simulator.validation import AudioRequest, PreviewRequest

QUEUED_FRACTION = 0.3
MODEL_LIFETIME_S = 3 * 24 * 3600.0


class TaskStatus(Enum):
    """The documented task states; the last two are final."""

    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"


class TaskKind(Enum):
    """Which create endpoint made the task; the value is the task's ``model`` field."""

    PREVIEW = "soundCloningClone"
    AUDIO = "soundCloningAudio"


@dataclass(frozen=True, slots=True)
class Task:
    """A created task and its predetermined fate.

    ``billed_chars`` and ``voice_fee`` are what its creation charged; both are refunded if it fails.
    ``model_id`` is the voice used (audio) or produced (preview). ``request_key`` is the fault module's key
    of the create request (same canonical body, same key); ``take`` is its rendering of that body (1: the
    first). ``faults`` are the task faults in effect (spec keys, e.g. ``("dead_link",)``);
    ``status_alias`` is the word a query reports instead of its final status, ``unknown_status`` the
    word every query reports instead of any status (the task then never finishes).
    """

    id: str
    kind: TaskKind
    api_key: str
    created: float
    started_at: float
    finished_at: float
    fails_with: str | None
    request: PreviewRequest | AudioRequest
    billed_chars: int
    voice_fee: int
    model_id: str
    request_key: str = ""
    take: int = 1
    faults: tuple[str, ...] = ()
    status_alias: str | None = None
    unknown_status: str | None = None

    def status(self, now: float) -> TaskStatus:
        """The task's true status at time ``now`` (simulator clock, unix seconds)."""
        if now < self.started_at:
            return TaskStatus.QUEUED
        if now < self.finished_at or self.unknown_status is not None:
            return TaskStatus.PROCESSING
        return TaskStatus.FAILED if self.fails_with is not None else TaskStatus.COMPLETED

    def reported_status(self, now: float) -> str:
        """The ``status`` a query shows at ``now``: the true one unless a status fault replaces it."""
        if self.unknown_status is not None:
            return self.unknown_status
        status = self.status(now)
        if self.status_alias is not None and status in (TaskStatus.COMPLETED, TaskStatus.FAILED):
            return self.status_alias
        return status.value

    def is_active(self, now: float) -> bool:
        """Queued or processing at ``now`` (a task stuck in an unknown status is active only until it
        would have finished, so it does not hold a ``max_active_tasks`` slot for ever)."""
        return now < self.finished_at

    @property
    def text(self) -> str:
        return self.request.content_text


@dataclass(slots=True)
class Voice:
    """A cloned voice. ``activated_at`` is when it became permanent (None: not yet, or not known yet)."""

    model_id: str
    created_at: float
    activated_at: float | None = None


class TaskStore:
    """All tasks and voices of the simulator; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._tasks: dict[str, Task] = {}
        self._voices: dict[str, Voice] = {}

    def add_task(self, task: Task) -> None:
        with self._lock:
            self._tasks[task.id] = task

    def get_task(self, task_id: str) -> Task | None:
        with self._lock:
            return self._tasks.get(task_id)

    def tasks(self) -> list[Task]:
        """Every task, in creation order."""
        with self._lock:
            return list(self._tasks.values())

    def active_tasks(self, api_key: str, now: float) -> list[Task]:
        """Tasks of ``api_key`` still queued or processing at ``now``."""
        with self._lock:
            return [t for t in self._tasks.values() if t.api_key == api_key and t.is_active(now)]

    def register_voice(self, model_id: str, *, created_at: float, activated: bool) -> Voice:
        """Add (or replace) a voice; ``activated`` makes it permanent from ``created_at``."""
        with self._lock:
            voice = Voice(model_id, created_at, created_at if activated else None)
            self._voices[model_id] = voice
            return voice

    def voice_state(self, model_id: str, now: float) -> str:
        """``"valid"``, ``"expired"`` or ``"unknown"`` for ``model_id`` at ``now``."""
        with self._lock:
            voice = self._voices.get(model_id) or self._voice_from_preview(model_id, now)
            if voice is None:
                return "unknown"
            if voice.activated_at is None:
                voice.activated_at = self._first_completion(model_id, now)
            if voice.activated_at is not None and voice.activated_at <= now:
                return "valid"
            return "valid" if now - voice.created_at <= MODEL_LIFETIME_S else "expired"

    def voices(self, now: float) -> list[dict[str, Any]]:
        """Every known voice with its state at ``now`` (for the ledger and admin views)."""
        with self._lock:
            ids = set(self._voices)
            ids.update(t.model_id for t in self._tasks.values() if t.kind is TaskKind.PREVIEW)
            result = []
            for model_id in sorted(ids):
                state = self.voice_state(model_id, now)
                voice = self._voices.get(model_id)
                if voice is None:
                    continue
                result.append(
                    {
                        "modelId": model_id,
                        "createdAt": voice.created_at,
                        "activated": voice.activated_at is not None and voice.activated_at <= now,
                        "state": state,
                    }
                )
            return result

    def _voice_from_preview(self, model_id: str, now: float) -> Voice | None:
        """A preview's voice exists once the preview completed; remember it from then on."""
        for task in self._tasks.values():
            if (
                task.kind is TaskKind.PREVIEW
                and task.model_id == model_id
                and task.status(now) is TaskStatus.COMPLETED
            ):
                voice = Voice(model_id, task.finished_at)
                self._voices[model_id] = voice
                return voice
        return None

    def _first_completion(self, model_id: str, now: float) -> float | None:
        finished = [
            t.finished_at
            for t in self._tasks.values()
            if t.kind is TaskKind.AUDIO and t.model_id == model_id and t.status(now) is TaskStatus.COMPLETED
        ]
        return min(finished) if finished else None
