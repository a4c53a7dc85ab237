"""The SoundClone API client: the only module that imports httpx.

It speaks the documented contract (soundclone-api.md) and is defensive where the docs are silent:
``code`` may be an int or a string, fields may be missing, error codes are never relied on.
Failures become the :mod:`pipeline.errors` tree:

* 401/403 -> :class:`AuthError` (stops the batch); insufficient balance (402, or a message that says
  so) -> :class:`BalanceError` (stops the batch); any other 4xx or non-success envelope ->
  :class:`RequestRejected` (fails that chunk, with the server's ``msg``).
* 429, 5xx and network errors are retried here with capped exponential backoff and equal jitter,
  honouring ``Retry-After``. A create request (which is billed) is retried after an error that may
  have reached the server only with ``on_ambiguous`` called first, so the engine can record a
  possible duplicate charge; errors where the request surely never left (connection refused,
  connect timeout) are retried silently.

The API key goes only to the API origin. Audio and subtitle downloads use a second client with no
credentials, http(s) URLs only, and a size cap.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from pipeline.config import ApiKey, RunConfig
from pipeline.errors import (
    AmbiguousError, ApiError, AuthError, BalanceError, DownloadError, RequestRejected, TransientError,
)

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

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class TaskInfo:
    """A task as the query endpoint reports it (fields may be missing: they are then None)."""

    id: str
    status: str
    audio_url: str | None = None
    subtitle_url: str | None = None
    model_id: str | None = None
    error: str | None = None

    @property
    def final(self) -> bool:
        return self.status in ("completed", "failed")


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


class SoundCloneClient:
    """Async client for the four SoundClone endpoints plus file upload and downloads.

    ``transport`` replaces the network (``httpx.MockTransport`` in unit tests); ``sleep`` and ``rng``
    make backoff instant and deterministic in tests.
    """

    def __init__(self, *, base_url: str, api_key: ApiKey, timeout_s: float = 60.0,
                 requests_per_minute: float = 60.0, transport: httpx.AsyncBaseTransport | None = None,
                 download_transport: httpx.AsyncBaseTransport | None = None, sleep: Sleep = asyncio.sleep,
                 rng: random.Random | None = None, max_tries: int = MAX_REQUEST_TRIES,
                 backoff_base_s: float = BACKOFF_BASE_S, backoff_cap_s: float = BACKOFF_CAP_S) -> None:
        self.base_url = base_url.rstrip("/")
        self._key = api_key
        self._api_host = urlsplit(self.base_url).netloc
        timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 15.0))
        limits = httpx.Limits(max_connections=32, max_keepalive_connections=16)
        self._api = httpx.AsyncClient(
            base_url=self.base_url, timeout=timeout, limits=limits, transport=transport,
            headers={"Authorization": f"Bearer {api_key.reveal()}", "User-Agent": "soundclone-audiobook"},
            follow_redirects=False,
        )
        # No credentials, ever: these URLs point at a storage host (soundclone-api.md, "Unknowns").
        # Audio is compressed already; asking for identity also keeps Content-Length comparable.
        self._files = httpx.AsyncClient(timeout=timeout, limits=limits, transport=download_transport or transport,
                                        headers={"User-Agent": "soundclone-audiobook", "Accept-Encoding": "identity"},
                                        follow_redirects=True, max_redirects=5)
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._limiter = RateLimiter(requests_per_minute, sleep=sleep)
        self._max_tries = max_tries
        self._backoff_base_s = backoff_base_s
        self._backoff_cap_s = backoff_cap_s
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

    async def create_audio(self, *, text: str, fields: dict[str, Any],
                           on_ambiguous: Callable[[ApiError], None] | None = None) -> str:
        """Create a production task; returns its task id. ``fields`` are the other request fields."""
        data = await self._call("POST", AUDIO_PATH, json={**fields, "contentText": text}, billed=True,
                                on_ambiguous=on_ambiguous)
        return self._task_id(data)

    async def create_preview(self, *, file_url: str, text: str | None = None, sound_version: str | None = None,
                             language: str | None = None,
                             on_ambiguous: Callable[[ApiError], None] | None = None) -> str:
        body: dict[str, Any] = {"fileUrl": file_url}
        if text:
            body["contentText"] = text
        if sound_version:
            body["soundVersion"] = sound_version
        if language:
            body["language"] = language
        data = await self._call("POST", CLONE_PATH, json=body, billed=True, on_ambiguous=on_ambiguous)
        return self._task_id(data)

    async def query(self, task_id: str) -> TaskInfo:
        data = await self._call("GET", QUERY_PATH.format(task_id=task_id), billed=False)
        if not isinstance(data, dict):
            raise TransientError(f"task {task_id}: the query answer has no data object", task_id=task_id)
        status = str(data.get("status") or "").strip().lower()
        if not status:
            raise TransientError(f"task {task_id}: the query answer has no status", task_id=task_id)
        error = data.get("error")
        return TaskInfo(
            id=str(data.get("id") or task_id), status=status,
            audio_url=data.get("audioUrl") or None, subtitle_url=data.get("subtitleFile") or None,
            model_id=data.get("modelId") or None,
            error=(error if isinstance(error, str) else (str(error) if error else None)),
        )

    async def upload(self, path: Path) -> str:
        """Upload a local file; returns its public URL (usable as a preview ``fileUrl``)."""
        with path.open("rb") as fh:
            data = await self._call("POST", UPLOAD_PATH, files={"file": (path.name, fh)}, billed=False)
        url = data.get("url") if isinstance(data, dict) else None
        if not isinstance(url, str) or not url:
            raise RequestRejected(f"upload of {path.name}: the answer has no url")
        return url

    async def download(self, url: str, dest: Path, *, max_bytes: int = AUDIO_MAX_BYTES) -> int:
        """Stream ``url`` into ``dest`` (created or replaced); returns the byte count.

        Raises :class:`DownloadError` for refused (4xx) or over-size downloads, and
        :class:`TransientError` for network trouble and incomplete bodies (both are safe to retry:
        a GET is never billed).
        """
        check_download_url(url)
        if urlsplit(url).netloc == self._api_host:
            log.debug("download from the API host; sent without credentials")
        # Not rate-limited: the files host is not the API (soundclone-api.md, "Unknowns").
        self.requests_sent += 1
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
        except httpx.HTTPError as exc:
            raise TransientError(f"download failed: {type(exc).__name__}") from exc
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
        return self._rng.uniform(0.5, 1.0) * min(self._backoff_cap_s, self._backoff_base_s * 2 ** attempt)

    async def _call(self, method: str, path: str, *, billed: bool,
                    on_ambiguous: Callable[[ApiError], None] | None = None, **kwargs: Any) -> Any:
        for attempt in range(self._max_tries):
            try:
                return await self._once(method, path, billed=billed, **kwargs)
            except TransientError as error:
                if attempt + 1 >= self._max_tries:
                    raise
                if billed and isinstance(error, AmbiguousError):
                    if on_ambiguous is None:
                        raise  # the caller did not agree to risk a duplicate charge
                    on_ambiguous(error)
                delay = self.backoff_s(attempt, error)
                log.info("%s %s: %s; retrying in %.1fs", method, path, error, delay)
                await self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _once(self, method: str, path: str, *, billed: bool, **kwargs: Any) -> Any:
        await self._limiter.acquire()
        self.requests_sent += 1
        where = f"{method} {path}"
        try:
            response = await self._api.request(method, path, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # The request never left this machine: safe to retry, even a create.
            raise TransientError(f"{where}: cannot connect ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            # Sent, but no answer: the server may have acted on it.
            cls = AmbiguousError if billed else TransientError
            raise cls(f"{where}: no answer ({type(exc).__name__}); the request may have been processed") from exc
        return self._parse(response, where=where, billed=billed)

    def _parse(self, response: httpx.Response, *, where: str, billed: bool) -> Any:
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None
        envelope = body if isinstance(body, dict) else {}
        code = envelope.get("code")
        msg = str(envelope.get("msg") or envelope.get("message") or "").strip()
        secret = self._key.reveal()
        if secret and secret in msg:  # a server that echoes the key must not make us print it
            msg = msg.replace(secret, "***")
        detail = f"HTTP {status}" + (f", code {code}" if code is not None else "") + (f": {msg}" if msg else "")
        kw: dict[str, Any] = {"status": status, "code": code, "msg": msg or None}
        if status == 429:
            raise TransientError(f"{where}: rate limited ({detail})", retry_after_s=_retry_after_s(response), **kw)
        if status >= 500:
            # A billed create that failed on the server side may still have created the task.
            cls = AmbiguousError if billed and status != 503 else TransientError
            raise cls(f"{where}: server error ({detail})", retry_after_s=_retry_after_s(response), **kw)
        if status in (401, 403):
            raise AuthError(f"{where}: the API refused the key ({detail}); check SOUNDCLONE_API_KEY", **kw)
        if status == 402 or (status >= 400 and _looks_like_balance(msg)):
            raise BalanceError(f"{where}: insufficient balance ({detail}); top up the account, then rerun", **kw)
        if status >= 400:
            raise RequestRejected(f"{where}: rejected ({detail})", **kw)
        if body is None:
            if billed:
                raise AmbiguousError(f"{where}: HTTP {status} with a body that is not JSON; the task may exist",
                                     **kw)
            raise TransientError(f"{where}: HTTP {status} with a body that is not JSON", **kw)
        if not _is_success_code(code):
            if _looks_like_balance(msg):
                raise BalanceError(f"{where}: insufficient balance ({detail}); top up the account, then rerun", **kw)
            raise RequestRejected(f"{where}: rejected ({detail})", **kw)
        return envelope.get("data")
