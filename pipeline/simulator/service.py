"""The SoundClone API's behaviour, independent of sockets: one request in, one response (or fault) out.

The HTTP layer (:mod:`pipeline.simulator.server`) turns each request into an :class:`HttpRequest`, calls
:meth:`SoundCloneService.handle_api` or :meth:`SoundCloneService.handle_file`, and carries out the
returned :class:`HttpResponse`, including its faults (drop the connection, truncate the body).

Order of checks for an API request: fault ``drop_before`` -> fault ``slow`` -> bearer key (401) ->
requests per minute (429) -> fault ``429`` -> fault ``5xx`` -> route and validate (400/404) -> for a
create: max active tasks (429), balance (402), create and bill (its task faults, the plan of its silent
defects and its take decided here), fault ``drop_after_create``.

Order for a files-origin download: fault ``drop_before`` -> fault ``slow`` -> fault ``5xx`` -> signature
(403) -> expiry, task fault ``dead_link`` or fault ``expire`` (403) -> content (404) -> fault ``truncate``.
The content of an audio task hit by a defect fault (``drop_sentence``, ``long_silence``, ``cut_short``,
``clip``) is rendered with the defect applied before encoding; its audio and subtitles agree with each
other and with what the ledger reports (see :mod:`pipeline.simulator.defects`).

Errors use the envelope ``{"code": <status * 100>, "msg": "<field>: <rule>", "data": null}`` (the
reference leaves error codes undocumented; clients must not key on them).
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import urllib.parse
import uuid
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from pipeline.simulator.config import SimulatorClock, SimulatorConfig
from pipeline.simulator.defects import DefectPlan, apply_defects, plan_defects
from pipeline.simulator.faults import (
    COMPLETED_STATUS_ALIASES,
    DEFECT_FAULT_KEYS,
    FAILED_STATUS_ALIASES,
    INJECTED_5XX_STATUSES,
    UNKNOWN_STATUSES,
    FaultInjector,
    FaultProfile,
    stable_bytes,
)
from pipeline.simulator.files import UPLOAD_LIMIT_BYTES, UPLOAD_MIME_TYPES, FileStore, LinkState
from pipeline.simulator.ledger import Ledger
from pipeline.simulator.markup import count_billed_chars
from pipeline.simulator.samples import measure_duration_s, sample_length_problem
from pipeline.simulator.tasks import QUEUED_FRACTION, Task, TaskKind, TaskStatus, TaskStore
from pipeline.simulator.validation import (
    AudioRequest,
    PreviewRequest,
    ValidationError,
    validate_audio_request,
    validate_preview_request,
)
from pipeline.simulator.voice import Speech, VoiceSettings, render, resolve_voice, subtitle_entries, synthesize

API_PREFIX = "/api/open-api/v1"
PREVIEW_PATH = f"{API_PREFIX}/soundCloning/clones"
AUDIO_PATH = f"{API_PREFIX}/soundCloning/audios"
QUERY_PREFIX = f"{API_PREFIX}/audios/"
UPLOAD_PATH = f"{API_PREFIX}/files/upload"
OK_CODE = 20000
RATE_WINDOW_S = 60.0
INJECTED_FAILURE_MESSAGE = "synthesis failed: internal error while generating audio (injected fault)"
LINK_EXPIRED_MESSAGE = "url: the link has expired; query the task again for a fresh URL"


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """A request as received; ``headers`` keys are lower-case."""

    method: str
    path: str
    query: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(slots=True)
class HttpResponse:
    """What to send back. ``drop``: close the connection without a response. ``truncate_at``: send
    the full ``Content-Length`` header but only this many body bytes, then close."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False
    truncate_at: int | None = None

    @property
    def outcome(self) -> str:
        return "dropped" if self.drop else str(self.status)


def envelope(data: Any) -> HttpResponse:
    """A success envelope around ``data``."""
    return _json(200, {"code": OK_CODE, "msg": "ok", "data": data})


def error(status: int, message: str, *, headers: dict[str, str] | None = None) -> HttpResponse:
    """An error envelope: ``code`` is ``status * 100`` (e.g. 40000 for a 400)."""
    response = _json(status, {"code": status * 100, "msg": message, "data": None})
    response.headers.update(headers or {})
    return response


def _json(status: int, payload: Any) -> HttpResponse:
    return HttpResponse(status, json.dumps(payload, ensure_ascii=False).encode())


@dataclass(frozen=True, slots=True)
class _TaskFaults:
    """What the task faults decided for one create (see ``SoundCloneService._task_faults``)."""

    keys: tuple[str, ...] = ()
    fails_with: str | None = None
    status_alias: str | None = None
    unknown_status: str | None = None
    defects: DefectPlan | None = None


class _Reject(Exception):
    """Internal: stop handling and answer with ``response``."""

    def __init__(self, response: HttpResponse) -> None:
        super().__init__(response.status)
        self.response = response


class SoundCloneService:
    """The simulated account: tasks, voices, files, ledger, limits and faults.

    ``sleep`` performs a slow-response delay (the server passes one that a shutdown interrupts);
    ``files_base_url`` must be set before links are issued.
    """

    def __init__(self, config: SimulatorConfig, *, sleep: Callable[[float], None]) -> None:
        self.config = config
        self.clock = SimulatorClock(config.clock)
        self.files_base_url = ""
        self._sleep = sleep
        self._backend = resolve_voice(config.voice)
        self._faults = FaultInjector(config.faults, default_seed=config.seed)
        self._tasks = TaskStore()
        self._files = FileStore(ttl_s=config.url_ttl_s)
        self._ledger = Ledger(balance=config.balance, voice_fee_credits=config.voice_fee_credits)
        self._lock = threading.RLock()  # serialises the check-then-create of limits and balance
        self._request_times: dict[str, deque[float]] = {}
        self._media = _MediaCache(limit_bytes=config.audio_cache_bytes)
        self._heard_takes: Counter[str] = Counter()  # request key -> highest take whose audio was downloaded
        self._dead_links: dict[str, dict[str, str]] = {}  # task id -> the links it shows for ever
        self._defect_plans: dict[str, DefectPlan] = {}  # task id -> its silent defects, decided at creation
        self._defect_details: dict[str, dict[str, dict[str, Any]]] = {}  # task id -> what they did, once rendered
        now = self.clock.now()
        for model_id in config.preload_voices:
            self._tasks.register_voice(model_id, created_at=now, activated=True)

    # --- controls used by the Simulator and the admin endpoints --------------------------------------

    @property
    def faults(self) -> FaultProfile:
        return self._faults.profile

    def set_faults(self, profile: FaultProfile) -> None:
        """Use ``profile`` for all later requests."""
        self._faults.set_profile(profile)

    def register_voice(self, model_id: str, *, activated: bool, created_at: float | None) -> dict[str, Any]:
        """Make ``model_id`` a known voice created at ``created_at`` (default: now)."""
        if not model_id:
            raise ValueError("modelId must not be empty")
        created = self.clock.now() if created_at is None else created_at
        self._tasks.register_voice(model_id, created_at=created, activated=activated)
        return {"modelId": model_id, "createdAt": created, "activated": activated}

    def ledger(self) -> dict[str, Any]:
        """The ledger at the current simulator time (see :mod:`pipeline.simulator.ledger`)."""
        now = self.clock.now()
        tasks = self._tasks.tasks()
        # a defect's details (the seconds where it sits) come from the rendered audio: render it if needed
        defects = {task.id: self._defects_of(task) for task in tasks if task.id in self._defect_plans}
        snapshot = self._ledger.snapshot(tasks, now, defects=defects)
        snapshot["voices"] = self._tasks.voices(now)
        snapshot["now"] = now
        snapshot["faults"] = self._faults.profile.to_spec()
        return snapshot

    # --- API origin -----------------------------------------------------------------------------------

    def handle_api(self, request: HttpRequest) -> HttpResponse:
        """Answer one request to the API origin (including ``/admin``)."""
        if request.path.startswith("/admin/") or request.path == "/admin":
            return self._handle_admin(request)
        endpoint = _endpoint_label(request)
        try:
            response = self._handle_api(request, endpoint)
        except _Reject as reject:
            response = reject.response
        except ValidationError as exc:
            response = error(400, str(exc))
        self._ledger.record_request(endpoint, response.outcome)
        return response

    def _handle_api(self, request: HttpRequest, endpoint: str) -> HttpResponse:
        route = _route(request)
        key = f"{endpoint} {_request_fingerprint(request, route)}"
        occurrence = self._faults.next_occurrence(key)
        if self._faults.decide("drop_before", key, occurrence):
            return HttpResponse(0, drop=True)
        if self._faults.decide("slow", key, occurrence):
            self._sleep(self._faults.profile.slow_s)
        self._check_auth(request)
        self._check_request_rate()
        if self._faults.decide("429", key, occurrence):
            retry = self._faults.profile.retry_after_s
            return error(
                429,
                f"rate limited: too many requests, retry after {retry} s (injected fault)",
                headers={"Retry-After": str(retry)},
            )
        if self._faults.decide("5xx", key, occurrence):
            status = self._faults.choose("5xx", key, occurrence, INJECTED_5XX_STATUSES)
            return error(status, f"server error {status}: please retry later (injected fault)")
        if route == "not_found":
            return error(404, f"path: no endpoint {request.path}")
        if route == "method":
            return error(405, f"method: {request.method} is not allowed on {request.path}")
        if route == "query":
            return self._query(request.path[len(QUERY_PREFIX) :])
        if route == "upload":
            return self._upload(request)
        body = _parse_json(request.body)
        if route == "preview":
            task = self._create(key, occurrence, validate_preview_request(body))
        else:
            task = self._create(key, occurrence, validate_audio_request(body))
        if self._faults.decide("drop_after_create", key, occurrence):
            return HttpResponse(0, drop=True)  # created and billed, but the client never hears of it
        return envelope(self._task_view(task, self.clock.now(), created=True))

    def _check_auth(self, request: HttpRequest) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if not header:
            raise _Reject(error(401, "Authorization: missing header; send 'Authorization: Bearer <API key>'"))
        if scheme.lower() != "bearer" or not token.strip():
            raise _Reject(error(401, "Authorization: must be 'Bearer <API key>'"))
        if token.strip() != self.config.api_key:
            raise _Reject(error(401, "Authorization: invalid API key"))

    def _check_request_rate(self) -> None:
        limit = self.config.requests_per_minute
        if limit is None:
            return
        now = self.clock.now()
        with self._lock:
            times = self._request_times.setdefault(self.config.api_key, deque())
            while times and times[0] <= now - RATE_WINDOW_S:
                times.popleft()
            if len(times) >= limit:
                retry = max(1, math.ceil(times[0] + RATE_WINDOW_S - now))
                raise _Reject(
                    error(
                        429,
                        f"rate limited: more than {limit} requests per minute; retry after {retry} s",
                        headers={"Retry-After": str(retry)},
                    )
                )
            times.append(now)

    def _create(self, key: str, occurrence: int, request: PreviewRequest | AudioRequest) -> Task:
        seed = self.config.seed
        task_id = f"audio_{uuid.UUID(bytes=stable_bytes(seed, 'task', key, occurrence), version=4)}"
        chars = count_billed_chars(request.content_text)
        fails_with = None
        if isinstance(request, PreviewRequest):
            # may run ffmpeg: measured before taking the lock
            fails_with = self._sample_problem(request.file_url, self.clock.now())
        with self._lock:
            now = self.clock.now()
            if isinstance(request, AudioRequest):
                self._check_model(request.model_id, now)
                kind, model_id, voice_fee = TaskKind.AUDIO, request.model_id, 1
            else:
                kind, voice_fee = TaskKind.PREVIEW, 0
                model_id = f"model_{stable_bytes(seed, 'model', task_id, size=8).hex()}"
            self._check_active_limit(now)
            decided = self._task_faults(key, occurrence, fails_with, request)
            duration = self.config.task_base_s + self.config.task_s_per_char * chars
            task = Task(
                id=task_id,
                kind=kind,
                api_key=self.config.api_key,
                created=now,
                started_at=now + QUEUED_FRACTION * duration,
                finished_at=now + duration,
                fails_with=decided.fails_with,
                request=request,
                billed_chars=chars,
                voice_fee=voice_fee,
                model_id=model_id,
                request_key=key,
                take=self._heard_takes[key] + 1,
                faults=decided.keys,
                status_alias=decided.status_alias,
                unknown_status=decided.unknown_status,
            )
            remaining = self._ledger.remaining_balance(self._tasks.tasks(), now)
            if remaining is not None and self._ledger.cost(task) > remaining:
                raise _Reject(
                    error(
                        402,
                        f"balance: insufficient balance: this task costs {self._ledger.cost(task):g} credits "
                        f"({chars} characters + voice fee), {remaining:g} left",
                    )
                )
            self._tasks.add_task(task)
            if decided.defects is not None:
                self._defect_plans[task.id] = decided.defects
            return task

    def _task_faults(
        self, key: str, occurrence: int, fails_with: str | None, request: PreviewRequest | AudioRequest
    ) -> _TaskFaults:
        """The task faults that hit this create, decided once for the task's whole life; see
        ``FaultProfile``. Silent defects hit only an audio task whose audio can be downloaded."""
        decide = self._faults.decide
        if decide("status_unknown", key, occurrence):
            unknown = self._faults.choose("status_unknown", key, occurrence, UNKNOWN_STATUSES)
            return _TaskFaults(("status_unknown",), unknown_status=unknown)  # never finishes: the rest is moot
        faults: list[str] = []
        if fails_with is None and decide("fail", key, occurrence):
            fails_with = INJECTED_FAILURE_MESSAGE
            faults.append("fail")
        if fails_with is None:
            if decide("no_link", key, occurrence):
                faults.append("no_link")
            elif decide("dead_link", key, occurrence):
                faults.append("dead_link")
        alias = None
        if decide("status_alias", key, occurrence):
            aliases = COMPLETED_STATUS_ALIASES if fails_with is None else FAILED_STATUS_ALIASES
            alias = self._faults.choose("status_alias", key, occurrence, aliases)
            faults.append("status_alias")
        defects = None
        if isinstance(request, AudioRequest) and not {"fail", "no_link", "dead_link"} & set(faults):
            hit = {kind: self._faults.fraction(kind, key, occurrence)
                   for kind in DEFECT_FAULT_KEYS if decide(kind, key, occurrence)}  # fmt: skip
            if hit:
                defects = plan_defects(
                    request.content_text,
                    drop_sentence=hit.get("drop_sentence"),
                    long_silence=hit.get("long_silence"),
                    long_silence_s=self._faults.profile.long_silence_s,
                    cut_short=hit.get("cut_short"),
                    clip="clip" in hit,
                )
                faults.extend(defects.faults)
        if defects is not None and not defects.faults:
            defects = None  # every defect that hit was one the text cannot have
        return _TaskFaults(tuple(faults), fails_with, alias, None, defects)

    def _check_model(self, model_id: str, now: float) -> None:
        state = self._tasks.voice_state(model_id, now)
        if state == "unknown":
            raise ValidationError(
                "modelId", f"unknown model id {model_id!r}: use the modelId of a completed preview"
            )
        if state == "expired":
            raise ValidationError(
                "modelId",
                f"model id {model_id!r} has expired: a voice not used by a completed audio task within 3 days "
                "of its preview is deleted; clone it again",
            )

    def _check_active_limit(self, now: float) -> None:
        limit = self.config.max_active_tasks
        if limit is None:
            return
        active = self._tasks.active_tasks(self.config.api_key, now)
        if len(active) >= limit:
            retry = max(1, math.ceil(min(t.finished_at for t in active) - now))
            raise _Reject(
                error(
                    429,
                    f"rate limited: {len(active)} tasks already queued or processing (limit {limit}); "
                    f"retry after {retry} s",
                    headers={"Retry-After": str(retry)},
                )
            )

    def _sample_problem(self, file_url: str, now: float) -> str | None:
        """Why the preview's sample cannot be cloned (only knowable for this simulator's uploads)."""
        if not self.files_base_url or not file_url.startswith(self.files_base_url + "/files/uploads/"):
            return None  # an outside URL: the simulator has no internet, so it trusts the sample
        parsed = urllib.parse.urlsplit(file_url)
        upload = self._files.get_upload(parsed.path.rsplit("/", 1)[-1])
        if upload is None:
            return "fileUrl: could not download the sample (404 not found)"
        if self._files.check(parsed.path, parsed.query, now=now) is not LinkState.VALID:
            return "fileUrl: could not download the sample (403: the link is invalid or expired)"
        extension = upload.name.rsplit(".", 1)[-1]
        return sample_length_problem(measure_duration_s(upload.data, extension=extension))

    def _query(self, task_id: str) -> HttpResponse:
        task = self._tasks.get_task(task_id)
        if task is None:
            return error(404, f"id: no task {task_id!r}")
        return envelope(self._task_view(task, self.clock.now()))

    def _task_view(self, task: Task, now: float, *, created: bool = False) -> dict[str, Any]:
        """The task's ``data`` as a query (or, ``created``, the create response) shows it at ``now``."""
        status = task.status(now)
        # status_unknown hits queries only: the create response keeps its documented shape ("queued")
        reported = status.value if created and task.unknown_status else task.reported_status(now)
        view: dict[str, Any] = {
            "id": task.id,
            "object": "audio",
            "created": int(task.created),
            "model": task.kind.value,
            "status": reported,
            "error": task.fails_with if status is TaskStatus.FAILED else None,
        }
        if status is TaskStatus.COMPLETED:
            if task.kind is TaskKind.PREVIEW:
                view["modelId"] = task.model_id
                self._tasks.voice_state(task.model_id, now)  # the voice now exists
            if "no_link" not in task.faults:  # no_link: completed, but the audio is gone
                view.update(self._links(task, now))
        return view

    def _links(self, task: Task, now: float) -> dict[str, str]:
        """``audioUrl`` (and ``subtitleFile``) for a completed task: freshly signed, except that a
        ``dead_link`` task shows the links of its first completed view for ever."""
        if "dead_link" in task.faults:
            with self._lock:
                frozen = self._dead_links.get(task.id)
                if frozen is None:
                    frozen = self._dead_links[task.id] = self._fresh_links(task, now)
                return dict(frozen)
        return self._fresh_links(task, now)

    def _fresh_links(self, task: Task, now: float) -> dict[str, str]:
        links = {"audioUrl": self._link(f"/files/audio/{task.id}.mp3", now)}
        if isinstance(task.request, AudioRequest) and task.request.subtitle_enable:
            links["subtitleFile"] = self._link(f"/files/subtitles/{task.id}.json", now)
        return links

    def _link(self, path: str, now: float) -> str:
        return self.files_base_url + self._files.sign(path, now=now)

    def _upload(self, request: HttpRequest) -> HttpResponse:
        if len(request.body) > UPLOAD_LIMIT_BYTES + 64 * 1024:
            return error(413, f"file: uploads are limited to {UPLOAD_LIMIT_BYTES // (1024 * 1024)} MB")
        filename, data = _parse_multipart_file(request)
        if len(data) > UPLOAD_LIMIT_BYTES:
            return error(413, f"file: uploads are limited to {UPLOAD_LIMIT_BYTES // (1024 * 1024)} MB")
        extension = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
        if extension not in UPLOAD_MIME_TYPES:
            raise ValidationError(
                "file", f"type {extension!r} is not accepted; use one of {', '.join(UPLOAD_MIME_TYPES)}"
            )
        upload = self._files.add_upload(filename=filename, extension=extension, data=data)
        url = self._link(f"/files/uploads/{upload.name}", self.clock.now())
        return envelope({"url": url, "filename": filename, "size": len(data), "mime_type": upload.mime_type})

    # --- files origin ---------------------------------------------------------------------------------

    def handle_file(self, request: HttpRequest) -> HttpResponse:
        """Answer one request to the files origin; no API key is needed, and its presence is recorded."""
        response = self._handle_file(request)
        self._ledger.record_file_request(
            had_authorization="authorization" in request.headers, outcome=response.outcome
        )
        return response

    def _handle_file(self, request: HttpRequest) -> HttpResponse:
        if request.method not in ("GET", "HEAD"):
            return error(405, f"method: {request.method} is not allowed on the files origin")
        key = f"GET {request.path}"
        occurrence = self._faults.next_occurrence(key)
        if self._faults.decide("drop_before", key, occurrence):
            return HttpResponse(0, drop=True)
        if self._faults.decide("slow", key, occurrence):
            self._sleep(self._faults.profile.slow_s)
        if self._faults.decide("5xx", key, occurrence):
            status = self._faults.choose("5xx", key, occurrence, INJECTED_5XX_STATUSES)
            return error(status, f"server error {status}: please retry later (injected fault)")
        now = self.clock.now()
        state = self._files.check(request.path, request.query, now=now)
        if state is LinkState.INVALID:
            return error(403, "url: the link's signature is missing or invalid")
        if (
            state is LinkState.EXPIRED
            or self._is_dead_link(request.path)
            or self._faults.decide("expire", key, occurrence)
        ):
            return error(403, LINK_EXPIRED_MESSAGE)
        found = self._file_content(request.path, now)
        if found is None:
            return error(404, f"url: no file at {request.path}")
        content, content_type = found
        if request.method == "GET" and request.path.startswith("/files/audio/"):
            self._hear(request.path)  # a HEAD hears nothing
        response = HttpResponse(200, content, content_type=content_type)
        if content and self._faults.decide("truncate", key, occurrence):
            response.truncate_at = int(self._faults.fraction("truncate", key, occurrence) * len(content))
        return response

    def _hear(self, path: str) -> None:
        """A client downloaded this task's audio: its take is used up (the next identical create renders
        the next one)."""
        task = self._tasks.get_task(path.rsplit("/", 1)[-1].rpartition(".")[0])
        if task is not None:
            with self._lock:
                key = task.request_key
                self._heard_takes[key] = max(self._heard_takes[key], task.take)

    def _is_dead_link(self, path: str) -> bool:
        """Whether ``path`` is the audio or subtitles of a task hit by the ``dead_link`` fault."""
        folder, _, name = path.removeprefix("/files/").partition("/")
        if folder not in ("audio", "subtitles"):
            return False
        task = self._tasks.get_task(name.rpartition(".")[0])
        return task is not None and "dead_link" in task.faults

    def _file_content(self, path: str, now: float) -> tuple[bytes, str] | None:
        folder, _, name = path.removeprefix("/files/").partition("/")
        if folder == "uploads":
            upload = self._files.get_upload(name)
            return None if upload is None else (upload.data, upload.mime_type)
        task_id, _, extension = name.rpartition(".")
        task = self._tasks.get_task(task_id)
        if task is None or task.status(now) is not TaskStatus.COMPLETED:
            return None
        if folder == "audio" and extension == "mp3":
            return self._speech(task).mp3, "audio/mpeg"
        if folder == "subtitles" and extension == "json" and isinstance(task.request, AudioRequest):
            if not task.request.subtitle_enable:
                return None
            word_level = task.request.subtitle_type == "word"
            entries = subtitle_entries(task.text, self._speech(task).sentences, word_level=word_level)
            return json.dumps(entries, ensure_ascii=False).encode(), "application/json"
        return None

    def _speech(self, task: Task) -> Speech:
        request = task.request
        if isinstance(request, AudioRequest):
            settings = VoiceSettings(
                model_id=task.model_id,
                speed=request.speed,
                vol=request.vol,
                pitch=request.pitch,
                emotion=request.emotion,
                language=request.language,
                take=task.take,
            )
        else:
            settings = VoiceSettings(model_id=task.model_id, language=request.language, take=task.take)
        plan = self._defect_plans.get(task.id)
        if plan is None:
            return self._media.get(task.id, lambda: synthesize(task.text, settings, backend=self._backend))

        def render_with_defects() -> Speech:
            samples, sentences = render(task.text, settings, backend=self._backend)
            speech, details = apply_defects(samples, sentences, task.text, plan)
            with self._lock:
                self._defect_details[task.id] = details
            return speech

        return self._media.get(task.id, render_with_defects)

    def _defects_of(self, task: Task) -> dict[str, dict[str, Any]]:
        """What ``task``'s silent defects did (see :func:`~pipeline.simulator.defects.apply_defects`),
        rendering its audio first if no download has yet."""
        with self._lock:
            details = self._defect_details.get(task.id)
        if details is None:
            self._speech(task)
            with self._lock:
                details = self._defect_details[task.id]
        return details

    # --- admin ----------------------------------------------------------------------------------------

    def _handle_admin(self, request: HttpRequest) -> HttpResponse:
        route = (request.method, request.path.rstrip("/"))
        try:
            if route == ("GET", "/admin/ledger"):
                return envelope(self.ledger())
            if route == ("GET", "/admin/health"):
                return envelope({"status": "ok", "now": self.clock.now()})
            if route == ("GET", "/admin/faults"):
                return envelope({"spec": self.faults.to_spec(), "profile": self.faults.as_dict()})
            if route[1] not in ("/admin/voices", "/admin/clock", "/admin/faults"):
                return error(404, f"path: no admin endpoint {request.path}")
            if request.method != "POST":
                return error(405, f"method: {request.method} is not allowed on {request.path}")
            body = _parse_json(request.body)
            if not isinstance(body, dict):
                raise ValidationError("body", "must be a JSON object")
            if route[1] == "/admin/voices":
                return envelope(self._admin_voice(body))
            if route[1] == "/admin/clock":
                advance = body.get("advance_s")
                if isinstance(advance, bool) or not isinstance(advance, int | float) or advance < 0:
                    raise ValidationError("advance_s", f"must be a number of seconds >= 0; got {advance!r}")
                return envelope({"now": self.clock.advance(float(advance))})
            spec = body.get("spec")
            if not isinstance(spec, str):
                raise ValidationError("spec", f"must be a fault spec string such as '429=0.1'; got {spec!r}")
            try:
                profile = FaultProfile.parse(spec)
            except ValueError as exc:
                raise ValidationError("spec", str(exc)) from exc
            self.set_faults(profile)
            return envelope({"spec": self.faults.to_spec(), "profile": self.faults.as_dict()})
        except ValidationError as exc:
            return error(400, str(exc))
        except _Reject as reject:
            return reject.response

    def _admin_voice(self, body: dict[str, Any]) -> dict[str, Any]:
        model_id = body.get("modelId")
        if not isinstance(model_id, str) or not model_id:
            raise ValidationError("modelId", f"must be a non-empty string; got {model_id!r}")
        created_at = body.get("createdAt")
        if created_at is not None and (
            isinstance(created_at, bool) or not isinstance(created_at, int | float)
        ):
            raise ValidationError("createdAt", f"must be unix seconds; got {created_at!r}")
        activated = body.get("activated", False)
        if not isinstance(activated, bool):
            raise ValidationError("activated", f"must be a boolean; got {activated!r}")
        return self.register_voice(
            model_id, activated=activated, created_at=None if created_at is None else float(created_at)
        )


def _route(request: HttpRequest) -> str:
    """Which API endpoint the request is for: ``preview``, ``audio``, ``query``, ``upload``,
    ``method`` (known path, wrong method) or ``not_found``."""
    path, method = request.path, request.method
    routes = {
        PREVIEW_PATH: ("POST", "preview"),
        AUDIO_PATH: ("POST", "audio"),
        UPLOAD_PATH: ("POST", "upload"),
    }
    if path in routes:
        allowed, name = routes[path]
        return name if method == allowed else "method"
    if path.startswith(QUERY_PREFIX) and "/" not in path[len(QUERY_PREFIX) :] and path != QUERY_PREFIX:
        return "query" if method in ("GET", "HEAD") else "method"
    return "not_found"


def _endpoint_label(request: HttpRequest) -> str:
    """The ledger's name for an endpoint: ``"<METHOD> <path template>"``."""
    if request.path.startswith(QUERY_PREFIX):
        return f"{request.method} {QUERY_PREFIX}{{id}}"
    if request.path in (PREVIEW_PATH, AUDIO_PATH, UPLOAD_PATH):
        return f"{request.method} {request.path}"
    return f"{request.method} (unknown path)"


def _request_fingerprint(request: HttpRequest, route: str) -> str:
    """Stable identity of "the same request" for fault decisions and task ids (see faults module)."""
    if route == "query":
        return request.path
    if route == "upload":
        try:
            _, data = _parse_multipart_file(request)
            return hashlib.sha256(data).hexdigest()  # the multipart boundary is random per request
        except ValidationError:
            pass
    try:
        canonical = json.dumps(json.loads(request.body), sort_keys=True, ensure_ascii=False).encode()
    except (ValueError, UnicodeDecodeError):
        canonical = request.body
    return hashlib.sha256(canonical).hexdigest()


def _parse_json(body: bytes) -> Any:
    if not body.strip():
        raise _Reject(error(400, "body: must be a JSON object; got an empty body"))
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _Reject(error(400, f"body: invalid JSON: {exc}")) from exc


def _parse_multipart_file(request: HttpRequest) -> tuple[str, bytes]:
    """The ``file`` field of a multipart/form-data body: (filename, content)."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise ValidationError("file", f"send multipart/form-data with a 'file' field; got {content_type!r}")
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + request.body
    )
    if not message.is_multipart():
        raise ValidationError("file", "could not parse the multipart body")
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "file":
            filename = part.get_filename() or ""
            payload = part.get_payload(decode=True)
            data = payload if isinstance(payload, bytes) else b""
            if not filename:
                raise ValidationError("file", "the 'file' part needs a filename")
            return filename, data
    raise ValidationError("file", "is required: send the file in a multipart field named 'file'")


class _MediaCache:
    """Rendered speech per task, least recently used dropped first; renders each task once at a time."""

    def __init__(self, *, limit_bytes: int) -> None:
        self._limit = limit_bytes
        self._lock = threading.Lock()
        self._items: OrderedDict[str, Speech] = OrderedDict()
        self._size = 0
        self._rendering: dict[str, threading.Lock] = {}

    def get(self, key: str, render: Callable[[], Speech]) -> Speech:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            task_lock = self._rendering.setdefault(key, threading.Lock())
        with task_lock:
            with self._lock:
                if key in self._items:
                    return self._items[key]
            speech = render()  # outside the cache lock: other downloads keep flowing
            with self._lock:
                self._items[key] = speech
                self._size += len(speech.mp3)
                while self._size > self._limit and len(self._items) > 1:
                    _, dropped = self._items.popitem(last=False)
                    self._size -= len(dropped.mp3)
                self._rendering.pop(key, None)
            return speech
