"""The SoundClone API client: the only module that imports httpx.

It speaks the documented contract (soundclone-api.md) and is defensive where the docs are silent:
``code`` may be an int or a string, fields may be missing, error codes are never relied on, task
statuses are read through a table of synonyms. Every httpx (and file-system) exception is translated
here into the :mod:`pipeline.errors` tree, ``raise ... from exc``:

* 401/403 -> :class:`AuthError` (stops the batch); insufficient balance (402, or a message that says
  so) -> :class:`BalanceError` (stops the batch); any other 4xx or non-success envelope ->
  :class:`RequestRejected` (fails that chunk, with the server's ``msg``).
* A 3xx answer (redirects are never followed for the API: the key may only go to the API origin), or
  a 2xx answer that is not a JSON envelope (an HTML page) -> :class:`EndpointError` at once, never
  retried: the base URL points somewhere that is not the API.
* A status outside the synonym table (:data:`STATUS_SYNONYMS`) -> :class:`UnknownTaskStatus`.
* 429, 5xx and network errors are retried here with capped exponential backoff and equal jitter,
  honouring ``Retry-After``. A create request is billed and the API has no idempotency, so a create
  is retried only after a failure where it surely created nothing (connection refused, connect or
  pool timeout, 429, 503); any answer that leaves the outcome open (sent without an answer, another
  5xx) is raised at once as :class:`AmbiguousError` and the caller decides.
* Connection failures are counted across every API request of one client: after
  ``unreachable_after_failures`` in a row spanning ``unreachable_after_s`` with no HTTP answer in
  between, :class:`ApiUnreachable` is raised, and then again at once for every later request.

The API key goes only to the API origin. Audio and subtitle downloads use a second client with no
credentials, http(s) URLs only (every redirect hop is checked), at most 5 redirects, and a size cap.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from pipeline.config import ApiKey, RunConfig
from pipeline.errors import (
    AmbiguousError,
    ApiUnreachable,
    AuthError,
    BalanceError,
    ConfigError,
    DownloadError,
    EndpointError,
    RequestRejected,
    TransientError,
    UnknownTaskStatus,
)
from pipeline.fsio import storage_error

log = logging.getLogger(__name__)

SUCCESS_CODE = 20000
CLONE_PATH = "/api/open-api/v1/soundCloning/clones"
AUDIO_PATH = "/api/open-api/v1/soundCloning/audios"
QUERY_PATH = "/api/open-api/v1/audios/{task_id}"
UPLOAD_PATH = "/api/open-api/v1/files/upload"

MAX_REQUEST_TRIES = 8
BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 60.0
RETRY_AFTER_CAP_S = 600.0
AUDIO_MAX_BYTES = 200 * 1024 * 1024
SUBTITLE_MAX_BYTES = 20 * 1024 * 1024
DOWNLOAD_MAX_REDIRECTS = 5
# Connection failures in a row (no HTTP answer in between), over at least this much wall time, after
# which the API counts as unreachable: enough to ride out a blip, short of minutes of silent retries.
UNREACHABLE_AFTER_FAILURES = 4
UNREACHABLE_AFTER_S = 5.0

# The documented statuses are queued -> processing -> completed | failed (soundclone-api.md, "Query
# task"). The docs show no others, but wrapped services report synonyms; anything outside this table
# is refused rather than polled until the task timeout.
QUEUED, PROCESSING, COMPLETED, FAILED = "queued", "processing", "completed", "failed"
FINAL_STATUSES = frozenset({COMPLETED, FAILED})
STATUS_SYNONYMS: Mapping[str, str] = {
    **dict.fromkeys(("completed", "complete", "succeeded", "success", "successful", "finished", "done"),
                    COMPLETED),
    **dict.fromkeys(("failed", "failure", "error", "errored", "cancelled", "canceled"), FAILED),
    **dict.fromkeys(("queued", "pending", "waiting", "submitted", "created"), QUEUED),
    **dict.fromkeys(("processing", "running", "in_progress", "in-progress", "started"), PROCESSING),
}

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


def normalize_status(raw: str) -> str | None:
    """The documented status a reported one stands for (case and surrounding spaces ignored), or None."""
    return STATUS_SYNONYMS.get(raw.strip().lower())


@dataclass(frozen=True)
class TaskInfo:
    """A task as the query endpoint reports it (fields may be missing: they are then None).

    ``status`` is always one of ``queued``, ``processing``, ``completed``, ``failed`` when the info
    comes from :meth:`SoundCloneClient.query`; ``raw_status`` is the value the API actually sent.
    """

    id: str
    status: str
    audio_url: str | None = None
    subtitle_url: str | None = None
    model_id: str | None = None
    error: str | None = None
    raw_status: str | None = None

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES


class RateLimiter:
    """Spaces requests to at most ``per_minute``, shared by every caller of one client."""

    def __init__(self, per_minute: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Sleep = asyncio.sleep) -> None:
        self.interval_s = 60.0 / per_minute if per_minute > 0 else 0.0
        self._clock = clock
        self._sleep = sleep
        self._next_at = 0.0
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        if not self.interval_s:
            return
        async with self._lock:
            now = self._clock()
            wait = self._next_at - now
            self._next_at = max(now, self._next_at) + self.interval_s
        if wait > 0:
            await self._sleep(wait)


def _retry_after_s(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return min(max(float(value), 0.0), RETRY_AFTER_CAP_S)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return min(max(when - time.time(), 0.0), RETRY_AFTER_CAP_S)


def _is_success_code(code: Any) -> bool:
    try:
        return int(str(code).strip()) == SUCCESS_CODE
    except ValueError:
        return False


def _looks_like_balance(msg: str) -> bool:
    lowered = msg.lower()
    return any(word in lowered for word in ("balance", "insufficient", "余额", "欠费", "quota"))


def check_download_url(url: str) -> str:
    """Only http(s) URLs with a host are fetched (never file:, data:, ftp: ...)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DownloadError(f"refusing to download '{url[:80]}': only http(s) URLs are fetched")
    return url


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _root_cause(exc: BaseException) -> BaseException:
    """The lowest-level exception under ``exc`` (an httpx error wraps httpcore's, which wraps an OSError)."""
    seen: set[int] = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        nxt = exc.__cause__ or exc.__context__
        if nxt is None:
            break
        exc = nxt
    return exc


def _body_kind(response: httpx.Response, body: Any) -> str:
    """What a 2xx answer that is not the API's envelope is, in words, for the error message."""
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if not response.content.strip():
        return "an empty body"
    if "html" in content_type or response.content.lstrip()[:1] == b"<":
        return "an HTML page"
    if isinstance(body, dict):
        return "a JSON object without the API's code/msg/data envelope"
    if body is not None:
        return f"a JSON {type(body).__name__} instead of an object"
    return f"a body that is not JSON ({content_type or 'no content type'})"


def _is_envelope(body: Any) -> bool:
    """The documented envelope is ``{"code", "msg", "data"}``; any of those keys makes it the API's."""
    return isinstance(body, dict) and any(k in body for k in ("code", "msg", "message", "data"))


class SoundCloneClient:
    """Async client for the four SoundClone endpoints plus file upload and downloads.

    ``transport`` replaces the network (``httpx.MockTransport`` in unit tests); ``sleep``, ``clock``
    and ``rng`` make backoff and the unreachable-API check instant and deterministic in tests.
    ``requests_sent`` counts every HTTP request handed to the network (each try, each redirect hop of a
    download), answered or not.
    """

    def __init__(self, *, base_url: str, api_key: ApiKey, timeout_s: float = 60.0,
                 requests_per_minute: float = 60.0, transport: httpx.AsyncBaseTransport | None = None,
                 download_transport: httpx.AsyncBaseTransport | None = None, sleep: Sleep = asyncio.sleep,
                 clock: Clock = time.monotonic, rng: random.Random | None = None,
                 max_tries: int = MAX_REQUEST_TRIES, backoff_base_s: float = BACKOFF_BASE_S,
                 backoff_cap_s: float = BACKOFF_CAP_S,
                 unreachable_after_failures: int = UNREACHABLE_AFTER_FAILURES,
                 unreachable_after_s: float = UNREACHABLE_AFTER_S) -> None:
        self.base_url = base_url.rstrip("/")
        self._key = api_key
        self._api_host = urlsplit(self.base_url).netloc
        timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 15.0))
        limits = httpx.Limits(max_connections=32, max_keepalive_connections=16)
        # Redirects are never followed for the API: the key would go along to wherever they point.
        self._api = httpx.AsyncClient(
            base_url=self.base_url, timeout=timeout, limits=limits, transport=transport,
            headers={"Authorization": f"Bearer {api_key.reveal()}", "User-Agent": "soundclone-audiobook"},
            follow_redirects=False,
            event_hooks={"request": [self._count_request], "response": [self._api_answered]},
        )
        # No credentials, ever: these URLs point at a storage host (soundclone-api.md, "Unknowns"), which
        # may redirect (storage hosts do); every hop is checked like the first URL.
        # Audio is compressed already; asking for identity also keeps Content-Length comparable.
        self._files = httpx.AsyncClient(timeout=timeout, limits=limits, transport=download_transport or transport,
                                        headers={"User-Agent": "soundclone-audiobook", "Accept-Encoding": "identity"},
                                        follow_redirects=True, max_redirects=DOWNLOAD_MAX_REDIRECTS,
                                        event_hooks={"request": [self._check_hop, self._count_request]})
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self._limiter = RateLimiter(requests_per_minute, clock=clock, sleep=sleep)
        self._max_tries = max_tries
        self._backoff_base_s = backoff_base_s
        self._backoff_cap_s = backoff_cap_s
        self._unreachable_after_failures = unreachable_after_failures
        self._unreachable_after_s = unreachable_after_s
        self._connect_failures = 0  # in a row, across every API request of this client
        self._failing_since = 0.0  # when the first request of that run of failures was started
        self._unreachable: str | None = None  # the message, once the API is declared unreachable
        self.requests_sent = 0

    @classmethod
    def from_config(cls, config: RunConfig, **overrides: Any) -> SoundCloneClient:
        """A client with the timeouts, rate cap and backoff of a resolved run configuration."""
        settings: dict[str, Any] = {
            "base_url": config.base_url, "api_key": config.api_key, "timeout_s": config.request_timeout_s,
            "requests_per_minute": config.requests_per_minute, "backoff_base_s": config.backoff_base_s,
            "backoff_cap_s": config.backoff_cap_s, **overrides}
        return cls(**settings)

    async def aclose(self) -> None:
        await self._api.aclose()
        await self._files.aclose()

    async def __aenter__(self) -> SoundCloneClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- the endpoints --------------------------------------------------------------------------

    async def create_audio(self, body: Mapping[str, Any], *, before_send: Callable[[], None] | None = None) -> str:
        """Create a production task with the create-audio ``body`` (sent as it is, see
        :mod:`pipeline.request`); returns its task id.

        ``before_send`` is called right before each try leaves (after the rate limiter): the caller
        records its intent there, or raises to keep the request from being sent. Billed: retried only
        after failures where nothing was created (see :meth:`_call`); an :class:`AmbiguousError`
        means a task may exist and be billed, and is the caller's to decide.
        """
        data = await self._call("POST", AUDIO_PATH, json=dict(body), billed=True, before_send=before_send)
        return self._task_id(data)

    async def create_preview(self, *, file_url: str, text: str | None = None, sound_version: str | None = None,
                             language: str | None = None) -> str:
        """Create a preview (clone) task; returns its task id. Billed, retried like :meth:`create_audio`."""
        body: dict[str, Any] = {"fileUrl": file_url}
        if text:
            body["contentText"] = text
        if sound_version:
            body["soundVersion"] = sound_version
        if language:
            body["language"] = language
        data = await self._call("POST", CLONE_PATH, json=body, billed=True)
        return self._task_id(data)

    async def query(self, task_id: str) -> TaskInfo:
        """The task's state, its status mapped onto the documented four (:data:`STATUS_SYNONYMS`).

        Raises :class:`UnknownTaskStatus` for any other status, :class:`TransientError` for an answer
        without a status or data object.
        """
        data = await self._call("GET", QUERY_PATH.format(task_id=quote(task_id, safe="")), billed=False)
        if not isinstance(data, dict):
            raise TransientError(f"task {task_id}: the query answer has no data object", task_id=task_id)
        raw = data.get("status")
        raw_status = raw if isinstance(raw, str) else ("" if raw is None else str(raw))
        if not raw_status.strip():
            raise TransientError(f"task {task_id}: the query answer has no status", task_id=task_id)
        status = normalize_status(raw_status)
        if status is None:
            shown = _clip(self._redact(raw_status), 80)
            raise UnknownTaskStatus(
                f"task {task_id} reports status {shown!r}, which this client does not know; the task is kept, "
                "not resubmitted (it may still finish, billed once): a rerun polls it again",
                msg=shown, task_id=task_id)
        error = data.get("error")
        return TaskInfo(
            id=str(data.get("id") or task_id), status=status,
            audio_url=data.get("audioUrl") or None, subtitle_url=data.get("subtitleFile") or None,
            model_id=data.get("modelId") or None,
            error=(error if isinstance(error, str) else (str(error) if error else None)),
            raw_status=raw_status,
        )

    async def upload(self, path: Path) -> str:
        """Upload a local file; returns its public URL (usable as a preview ``fileUrl``)."""
        try:
            with path.open("rb") as fh:
                data = await self._call("POST", UPLOAD_PATH, files={"file": (path.name, fh)}, billed=False)
        except OSError as exc:
            raise storage_error(exc, path, doing="read for upload") from exc
        url = data.get("url") if isinstance(data, dict) else None
        if not isinstance(url, str) or not url:
            raise RequestRejected(f"upload of {path.name}: the answer has no url")
        return url

    async def download(self, url: str, dest: Path, *, max_bytes: int = AUDIO_MAX_BYTES,
                       target: Path | None = None) -> int:
        """Stream ``url`` into ``dest`` (created or replaced); returns the byte count. ``target`` is the
        file ``dest`` will become (a temporary ``dest`` is renamed into it): errors name it.

        Redirects are followed (at most :data:`DOWNLOAD_MAX_REDIRECTS`, each hop http(s) only, never
        with credentials). Raises :class:`DownloadError` for refused (4xx), over-size or redirect-looping
        downloads, :class:`TransientError` for network trouble and incomplete bodies (both are safe to
        retry: a GET is never billed), :class:`StorageError` when ``dest`` cannot be written, and
        :class:`ApiUnreachable` once this client has declared the API unreachable.
        """
        check_download_url(url)
        self._raise_if_unreachable()
        if urlsplit(url).netloc == self._api_host:
            log.debug("download from the API host; sent without credentials")
        # Not rate-limited: the files host is not the API (soundclone-api.md, "Unknowns").
        written = 0
        try:
            async with self._files.stream("GET", url) as response:
                if response.status_code >= 500 or response.status_code == 429:
                    raise TransientError(f"download answered HTTP {response.status_code}",
                                         status=response.status_code, retry_after_s=_retry_after_s(response))
                if response.status_code >= 400:
                    raise DownloadError(f"download refused with HTTP {response.status_code} "
                                        "(the link may have expired; the task is queried again for a fresh one)")
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > max_bytes:
                    raise DownloadError(f"download is {int(declared):,} bytes, over the {max_bytes:,}-byte cap")
                with dest.open("wb") as fh:
                    async for block in response.aiter_bytes(1 << 16):
                        written += len(block)
                        if written > max_bytes:
                            raise DownloadError(f"download exceeded the {max_bytes:,}-byte cap")
                        fh.write(block)
                    fh.flush()
                    os.fsync(fh.fileno())
                # Content-Length counts the bytes on the wire, so it is compared only when nothing was
                # decoded (we ask for identity; a compressed body that is cut short fails to decode).
                encoded = response.headers.get("content-encoding", "identity").lower() not in ("", "identity")
                if not encoded and declared and declared.isdigit() and written != int(declared):
                    raise TransientError(f"download ended after {written} of {declared} bytes")
        except httpx.TooManyRedirects as exc:
            raise DownloadError(f"download redirected more than {DOWNLOAD_MAX_REDIRECTS} times "
                                "(the link may have expired; the task is queried again for a fresh one)") from exc
        except httpx.HTTPError as exc:
            raise TransientError(f"download failed: {type(exc).__name__}") from exc
        except httpx.InvalidURL as exc:
            raise DownloadError(f"refusing to download '{url[:80]}': not a valid URL ({exc})") from exc
        except OSError as exc:
            raise storage_error(exc, target or dest, doing="save the download as") from exc
        if written == 0:
            raise TransientError("download was empty")
        return written

    # --- the machinery -------------------------------------------------------------------------

    @staticmethod
    def _task_id(data: Any) -> str:
        task_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(task_id, str) or not task_id:
            # The task may exist and be billed; we cannot tell which. Never retried blindly.
            raise AmbiguousError("the create answer has no task id; the task may exist and be billed")
        return task_id

    def backoff_s(self, attempt: int, error: TransientError | None = None) -> float:
        """How long to wait before retry number ``attempt`` (0-based): Retry-After, else jittered backoff."""
        if error is not None and error.retry_after_s is not None:
            return error.retry_after_s
        return float(self._rng.uniform(0.5, 1.0) * min(self._backoff_cap_s, self._backoff_base_s * 2 ** attempt))

    async def _call(self, method: str, path: str, *, billed: bool, before_send: Callable[[], None] | None = None,
                    **kwargs: Any) -> Any:
        """Send one API request, retrying :class:`TransientError` up to ``max_tries`` with backoff.

        ``billed`` (a create) changes the retry rule: an :class:`AmbiguousError` (the request may have
        created a task: sent without an answer, a 5xx other than 503) is raised at once, since the API
        has no idempotency; only failures where nothing was created are retried. Every other error
        (rejected, auth, balance, endpoint, unreachable) is raised at once.
        """
        for attempt in range(self._max_tries):
            try:
                return await self._once(method, path, billed=billed, before_send=before_send, **kwargs)
            except TransientError as error:
                if attempt + 1 >= self._max_tries:
                    if self._connect_failures >= max(self._max_tries, self._unreachable_after_failures):
                        # every try of this request failed to connect, however quick the backoff: the
                        # API is unreachable, not one request unlucky
                        self._declare_unreachable(error.__cause__ or error)
                        raise ApiUnreachable(self._unreachable or str(error)) from (error.__cause__ or error)
                    raise
                if billed and isinstance(error, AmbiguousError):
                    raise  # retrying could pay twice; the caller counts it against the chunk's attempts
                delay = self.backoff_s(attempt, error)
                log.info("%s %s: %s; retrying in %.1fs", method, path, error, delay)
                await self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _once(self, method: str, path: str, *, billed: bool, before_send: Callable[[], None] | None = None,
                    **kwargs: Any) -> Any:
        self._raise_if_unreachable()
        await self._limiter.acquire()
        self._raise_if_unreachable()  # another request may have found the API unreachable meanwhile
        if before_send is not None:
            before_send()
        where = f"{method} {path}"
        started = self._clock()
        try:
            response = await self._api.request(method, path, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            # The request never left this machine: safe to retry, even a create.
            self._note_connect_failure(exc, started)
            raise TransientError(f"{where}: cannot connect ({type(exc).__name__})") from exc
        except httpx.PoolTimeout as exc:
            # No connection came free in time: never sent. Not counted towards "unreachable" (the
            # pool may just be busy), nor as an answer.
            raise TransientError(f"{where}: no free connection ({type(exc).__name__})") from exc
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise ConfigError(f"{where}: cannot send to {self.base_url} ({type(exc).__name__}: {exc}); "
                              "check --base-url / SOUNDCLONE_BASE_URL") from exc
        except httpx.TransportError as exc:
            # Sent, but no answer: the server may have acted on it.
            cls = AmbiguousError if billed else TransientError
            raise cls(f"{where}: no answer ({type(exc).__name__}); the request may have been processed") from exc
        except httpx.HTTPError as exc:
            # An answer came but could not be read (a body that does not decode): it may have been processed.
            cls = AmbiguousError if billed else TransientError
            raise cls(f"{where}: unreadable answer ({type(exc).__name__}); the request may have been processed"
                      ) from exc
        return self._parse(response, where=where, billed=billed)

    # --- requests, answers, reachability --------------------------------------------------------

    async def _count_request(self, request: httpx.Request) -> None:
        self.requests_sent += 1

    async def _check_hop(self, request: httpx.Request) -> None:
        """Every download request, the redirect hops included, goes only to an http(s) URL."""
        check_download_url(str(request.url))

    async def _api_answered(self, response: httpx.Response) -> None:
        """Runs for every HTTP answer from the API, before httpx looks at a redirect."""
        self._connect_failures = 0  # any answer at all, even a 5xx: the API is reachable
        if 300 <= response.status_code < 400:
            raise self._redirect_error(response)

    def _redirect_error(self, response: httpx.Response) -> EndpointError:
        request = response.request
        url = str(request.url)
        location = self._redact(response.headers.get("location", "").strip())
        what = f"{request.method} {url} was answered with a redirect (HTTP {response.status_code})"
        if not location:
            return EndpointError(f"{what} without a Location; redirects are not the API's answers. Check "
                                 "--base-url / SOUNDCLONE_BASE_URL", url=url, may_have_processed=False)
        advice = "check --base-url / SOUNDCLONE_BASE_URL"
        try:
            target = request.url.join(location)
        except httpx.InvalidURL:
            target = None
        if (target is not None and target.host and (target.scheme, target.netloc) != (request.url.scheme,
                                                                                       request.url.netloc)
                and (target.raw_path == request.url.raw_path)):
            base_path = urlsplit(self.base_url).path.rstrip("/")
            advice = (f"use --base-url {target.scheme}://{target.netloc.decode('ascii')}{base_path} "
                      "(or set SOUNDCLONE_BASE_URL)")
        return EndpointError(
            f"{what} to {_clip(location)}; the client does not follow redirects for the API, since the API "
            f"key may only go to the API origin: {advice}", url=url, may_have_processed=False)

    def _note_connect_failure(self, exc: BaseException, started: float) -> None:
        """Count one more connection failure in a row; declare the API unreachable past the thresholds."""
        if self._connect_failures == 0:
            self._failing_since = started
        else:
            self._failing_since = min(self._failing_since, started)
        self._connect_failures += 1
        span_s = self._clock() - self._failing_since
        if self._unreachable is None and (self._connect_failures >= self._unreachable_after_failures
                                          and span_s >= self._unreachable_after_s):
            self._declare_unreachable(exc)
        if self._unreachable is not None:
            raise ApiUnreachable(self._unreachable) from exc

    def _declare_unreachable(self, exc: BaseException) -> None:
        span_s = self._clock() - self._failing_since
        root = _root_cause(exc)
        last = f"{type(exc).__name__}: {exc}" if root is exc else \
            f"{type(exc).__name__} ({type(root).__name__}: {root})"
        self._unreachable = (
            f"cannot reach the SoundClone API at {self._api_host}: {self._connect_failures} connection "
            f"attempts in a row failed over {span_s:.1f}s (last error: {_clip(last)}); check the network, "
            "--base-url or SOUNDCLONE_BASE_URL, then rerun the same command (nothing is lost)")

    def _raise_if_unreachable(self) -> None:
        if self._unreachable is not None:
            raise ApiUnreachable(self._unreachable)

    def _redact(self, text: str) -> str:
        secret = self._key.reveal()
        return text.replace(secret, "***") if secret and secret in text else text

    def _parse(self, response: httpx.Response, *, where: str, billed: bool) -> Any:
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None
        if 200 <= status < 300 and not _is_envelope(body):
            url = str(response.request.url)
            billed_note = ("; it accepted a create request, so a task may exist and be billed: check the "
                           "account before rerunning") if billed else ""
            raise EndpointError(
                f"{response.request.method} {url} answered with {_body_kind(response, body)} (HTTP {status}), "
                f"not the API's JSON; check --base-url / SOUNDCLONE_BASE_URL{billed_note}",
                url=url, may_have_processed=billed)
        envelope = body if isinstance(body, dict) else {}
        code = envelope.get("code")
        msg = self._redact(str(envelope.get("msg") or envelope.get("message") or "").strip())
        detail = f"HTTP {status}" + (f", code {code}" if code is not None else "") + (f": {msg}" if msg else "")
        kw: dict[str, Any] = {"status": status, "code": code, "msg": msg or None}
        if status == 429:
            raise TransientError(f"{where}: rate limited ({detail})", retry_after_s=_retry_after_s(response), **kw)
        if status >= 500:
            # A billed create that failed on the server side may still have created the task; a 503
            # (unavailable) turned it away before any work.
            cls = AmbiguousError if billed and status != 503 else TransientError
            raise cls(f"{where}: server error ({detail})", retry_after_s=_retry_after_s(response), **kw)
        if status in (401, 403):
            raise AuthError(f"{where}: the API refused the key ({detail}); check SOUNDCLONE_API_KEY", **kw)
        if status == 402 or (status >= 400 and _looks_like_balance(msg)):
            raise BalanceError(f"{where}: insufficient balance ({detail}); top up the account, then rerun", **kw)
        if status >= 400:
            raise RequestRejected(f"{where}: rejected ({detail})", **kw)
        if status >= 300:  # pragma: no cover - refused by _api_answered before httpx returns it
            raise self._redirect_error(response)
        if not _is_success_code(code):
            if _looks_like_balance(msg):
                raise BalanceError(f"{where}: insufficient balance ({detail}); top up the account, then rerun", **kw)
            raise RequestRejected(f"{where}: rejected ({detail})", **kw)
        return envelope.get("data")


async def wait_until_final(client: SoundCloneClient, task_id: str, *, interval_s: float, timeout_s: float,
                           sleep: Sleep = asyncio.sleep, clock: Clock = time.monotonic,
                           first_wait_s: float | None = None) -> TaskInfo:
    """Poll a task every ``interval_s`` (the first time after ``first_wait_s``, if longer) until it is
    completed or failed, and return that :class:`TaskInfo`.

    A query that fails with a :class:`TransientError` is tried again at the next interval; after
    ``timeout_s`` a :class:`TransientError` says how far the task got. Every other error propagates at
    once: :class:`RequestRejected` (the API does not know the task), :class:`UnknownTaskStatus`,
    :class:`ApiUnreachable`, :class:`EndpointError`, :class:`AuthError` ...
    """
    started = clock()
    await sleep(max(interval_s, first_wait_s or 0.0))
    while True:
        try:
            info = await client.query(task_id)
        except TransientError as error:
            if clock() - started > timeout_s:
                raise TransientError(f"task {task_id}: {error}", task_id=task_id) from error
        else:
            if info.final:
                return info
            if clock() - started > timeout_s:
                raise TransientError(f"task {task_id} still {info.status} after {timeout_s:.0f}s", task_id=task_id)
        await sleep(interval_s)
