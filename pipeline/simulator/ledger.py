"""What a real account would have been billed, and what the servers saw.

Billing follows the reference ("Billing"): every accepted create request is a billed task; characters
are code points of ``contentText`` without ``<#x#>`` markers (previews too, the built-in line when none
is given); every audio task also pays one voice fee; a failed task is refunded in full. The money side is
derived from the task list and the clock on each read (a task is refunded once it has failed); request
counts and the files-origin ``Authorization`` observation are accumulated as requests arrive.

A **duplicate** is a group of audio tasks with the same modelId, contentText and options that were billed
more than once and not refunded: the waste a client without idempotency guards causes by retrying.

Each task also shows its ``take`` (which rendering of its request body its audio is), the task faults in
effect on it, the status a query reports (which differs from its true ``status`` only under the
``status_alias`` and ``status_unknown`` faults) and, under ``defects``, what each silent defect fault
(``drop_sentence``, ``long_silence``, ``cut_short``, ``clip``) did to its audio, keyed by fault in the
order applied (fields: :func:`pipeline.simulator.defects.apply_defects`); ``task_faults`` lists the
tasks each task fault hit.
"""

from __future__ import annotations

import json
import threading
from collections import Counter, defaultdict
from collections.abc import Mapping
from typing import Any

from pipeline.simulator.faults import TASK_FAULT_KEYS
from pipeline.simulator.tasks import Task, TaskKind, TaskStatus
from pipeline.simulator.validation import AudioRequest


class Ledger:
    """Request counters plus billing views over tasks; thread-safe.

    ``balance`` is in credits (None: unlimited): one billed character costs one credit and one voice fee
    costs ``voice_fee_credits``.
    """

    def __init__(self, *, balance: float | None, voice_fee_credits: float) -> None:
        self._lock = threading.Lock()
        self._balance = balance
        self._voice_fee_credits = voice_fee_credits
        self._requests: Counter[str] = Counter()
        self._responses: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self._file_requests = 0
        self._file_requests_with_auth = 0
        self._file_responses: Counter[str] = Counter()

    def record_request(self, endpoint: str, outcome: str) -> None:
        """Count one API request to ``endpoint`` (e.g. ``"POST /api/open-api/v1/soundCloning/audios"``)
        and its outcome (an HTTP status such as ``"200"``, or ``"dropped"``)."""
        with self._lock:
            self._requests[endpoint] += 1
            self._responses[endpoint][outcome] += 1

    def record_file_request(self, *, had_authorization: bool, outcome: str) -> None:
        """Count one files-origin request; ``had_authorization`` says whether it carried the header."""
        with self._lock:
            self._file_requests += 1
            self._file_requests_with_auth += int(had_authorization)
            self._file_responses[outcome] += 1

    def cost(self, task: Task) -> float:
        """Credits ``task`` charged at creation."""
        return task.billed_chars + task.voice_fee * self._voice_fee_credits

    def remaining_balance(self, tasks: list[Task], now: float) -> float | None:
        """Credits left at ``now`` (None when the balance is unlimited); refunds are added back."""
        if self._balance is None:
            return None
        spent = sum(self.cost(t) for t in tasks if t.status(now) is not TaskStatus.FAILED)
        return self._balance - spent

    def snapshot(
        self, tasks: list[Task], now: float, *, defects: Mapping[str, Mapping[str, Any]] | None = None
    ) -> dict[str, Any]:
        """The ledger as JSON-ready data; keys are documented in ``pipeline/simulator/__init__.py``.

        ``defects`` maps a task id to what its silent defects did (tasks not in it show none).
        """
        defects = defects or {}
        refunded = [t for t in tasks if t.status(now) is TaskStatus.FAILED]
        billed_chars = sum(t.billed_chars for t in tasks)
        refunded_chars = sum(t.billed_chars for t in refunded)
        voice_fees = sum(t.voice_fee for t in tasks)
        refunded_fees = sum(t.voice_fee for t in refunded)
        with self._lock:
            requests = dict(self._requests)
            responses = {endpoint: dict(counts) for endpoint, counts in self._responses.items()}
            files = {
                "requests": self._file_requests,
                "requests_with_authorization": self._file_requests_with_auth,
                "authorization_seen": self._file_requests_with_auth > 0,
                "responses": dict(self._file_responses),
            }
        return {
            "tasks_created": {
                "preview": sum(1 for t in tasks if t.kind is TaskKind.PREVIEW),
                "audio": sum(1 for t in tasks if t.kind is TaskKind.AUDIO),
                "total": len(tasks),
            },
            "billed_chars": billed_chars,
            "voice_fees": voice_fees,
            "refunded_chars": refunded_chars,
            "refunded_voice_fees": refunded_fees,
            "net_billed_chars": billed_chars - refunded_chars,
            "net_voice_fees": voice_fees - refunded_fees,
            "refunds": [
                {"task_id": t.id, "kind": _kind_name(t), "chars": t.billed_chars, "voice_fee": t.voice_fee}
                for t in refunded
            ],
            "duplicates": _duplicates(tasks, now),
            "balance": {
                "initial": self._balance,
                "remaining": self.remaining_balance(tasks, now),
                "voice_fee_credits": self._voice_fee_credits,
            },
            "task_faults": {key: [t.id for t in tasks if key in t.faults] for key in TASK_FAULT_KEYS},
            "requests": requests,
            "responses": responses,
            "files_origin": files,
            "tasks": [
                {
                    "id": t.id,
                    "kind": _kind_name(t),
                    "status": t.status(now).value,
                    "reported_status": t.reported_status(now),
                    "model_id": t.model_id,
                    "billed_chars": t.billed_chars,
                    "voice_fee": t.voice_fee,
                    "created": t.created,
                    "take": t.take,
                    "content_text": t.text,
                    "faults": list(t.faults),
                    "defects": {key: dict(value) for key, value in defects.get(t.id, {}).items()},
                }
                for t in tasks
            ],
        }


def _kind_name(task: Task) -> str:
    return "preview" if task.kind is TaskKind.PREVIEW else "audio"


def _duplicates(tasks: list[Task], now: float) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str, str], list[Task]] = defaultdict(list)
    for task in tasks:
        if (
            task.kind is TaskKind.AUDIO
            and isinstance(task.request, AudioRequest)
            and task.status(now) is not TaskStatus.FAILED
        ):
            options = json.dumps(task.request.options(), sort_keys=True)
            groups[(task.model_id, task.text, options)].append(task)
    duplicates = []
    for (model_id, text, options), members in groups.items():
        if len(members) > 1:
            duplicates.append(
                {
                    "model_id": model_id,
                    "content_text": text,
                    "options": json.loads(options),
                    "task_ids": [t.id for t in members],
                    "times_billed": len(members),
                    "extra_chars": (len(members) - 1) * members[0].billed_chars,
                    "extra_voice_fees": len(members) - 1,
                }
            )
    return duplicates
