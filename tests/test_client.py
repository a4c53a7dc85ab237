"""The SoundClone client at unit level: ``httpx.MockTransport`` instead of a network, an injected
``sleep`` that records its delays instead of waiting, a seeded ``rng``.

Each test drives the public methods (``create_audio``, ``query``, ``download``) and checks what the
caller sees: the exception class of :mod:`pipeline.errors`, the status/code/msg it keeps, how many
requests went out and which delays were slept. The newer parts of the contract (status synonyms, the
poll loop, redirects and non-API answers, the unreachable API, every foreign exception mapped) are in
``test_client_contract.py``.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import random
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline.client import (
    AUDIO_PATH,
    QUERY_PATH,
    RETRY_AFTER_CAP_S,
    RateLimiter,
    SoundCloneClient,
    TaskInfo,
    check_download_url,
)
from pipeline.config import ApiKey
from pipeline.errors import (
    AmbiguousError,
    ApiError,
    AuthError,
    BalanceError,
    DownloadError,
    EndpointError,
    PipelineError,
    RequestRejected,
    TransientError,
)

KEY = "sk-unit-7d2b1e99c4f0-secret"
BASE = "https://api.test"
FILES = "https://cdn.test"
FIELDS = {"modelId": "model_1", "soundVersion": "v1"}

Handler = Callable[[httpx.Request], Any]


def envelope(data: Any = None, *, code: Any = 20000, msg: str = "ok") -> dict[str, Any]:
    return {"code": code, "msg": msg, "data": data}


def created(task_id: str = "audio_1") -> httpx.Response:
    return httpx.Response(200, json=envelope({"id": task_id, "object": "audio", "status": "queued"}))


def queried(task_id: str = "audio_1", status: str = "completed", **extra: Any) -> httpx.Response:
    return httpx.Response(200, json=envelope({"id": task_id, "status": status, **extra}))


class Script:
    """A transport handler that answers from a list (one entry per request, the last one repeats).

    An entry is an ``httpx.Response``, an exception class to raise (built with the request), or a
    callable taking the request. Every request is kept in ``requests``.
    """

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        if isinstance(answer, type) and issubclass(answer, Exception):
            raise answer("scripted failure", request=request)
        if callable(answer) and not isinstance(answer, httpx.Response):
            return answer(request)
        return answer


class Recorder:
    """An injected ``sleep``: records each delay and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def run(coro_factory: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return asyncio.run(coro_factory())


def make_client(handler: Handler, sleep: Recorder, *, download: Handler | None = None,
                **kwargs: Any) -> SoundCloneClient:
    options: dict[str, Any] = {"requests_per_minute": 0, "max_tries": 5, "backoff_base_s": 1.0,
                               "backoff_cap_s": 8.0, "rng": random.Random(1234)}
    options.update(kwargs)
    return SoundCloneClient(
        base_url=BASE, api_key=ApiKey(KEY), transport=httpx.MockTransport(handler),
        download_transport=httpx.MockTransport(download) if download else None, sleep=sleep, **options)


def call(handler: Handler, action: Callable[[SoundCloneClient], Coroutine[Any, Any, Any]],
         sleep: Recorder | None = None, **kwargs: Any) -> Any:
    """Build a client, run ``action(client)``, always close the client."""
    sleep = sleep if sleep is not None else Recorder()

    async def main() -> Any:
        async with make_client(handler, sleep, **kwargs) as client:
            return await action(client)

    return run(main)


def create(client: SoundCloneClient) -> Coroutine[Any, Any, str]:
    return client.create_audio({**FIELDS, "contentText": "Hello there."})


def assert_no_key(error: BaseException) -> None:
    for text in (str(error), repr(error), *(str(a) for a in error.args)):
        assert KEY not in text
    if isinstance(error, ApiError):
        assert KEY not in f"{error.msg} {error.code} {error.task_id}"


# --- envelope -----------------------------------------------------------------------------------

@pytest.mark.parametrize("code", [20000, "20000", " 20000 "])
def test_success_code_as_int_or_string(code: Any) -> None:
    script = Script(httpx.Response(200, json=envelope({"id": "audio_9", "status": "queued"}, code=code)))
    assert call(script, create) == "audio_9"
    sent = script.requests[0]
    assert sent.method == "POST" and sent.url.path == AUDIO_PATH
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert json.loads(sent.content) == {**FIELDS, "contentText": "Hello there."}


def test_query_tolerates_missing_and_extra_fields() -> None:
    script = Script(httpx.Response(200, json={"code": "20000", "data": {"status": "Processing", "novel": [1, 2],
                                                                       "created": "soon"}, "extra": True}))
    info = call(script, lambda c: c.query("audio_7"))
    assert info == TaskInfo(id="audio_7", status="processing", raw_status="Processing")
    assert not info.final
    assert script.requests[0].url.path == QUERY_PATH.format(task_id="audio_7")


def test_query_reads_every_documented_field() -> None:
    script = Script(queried("audio_1", "completed", audioUrl=f"{FILES}/a.mp3", subtitleFile=f"{FILES}/a.json",
                            modelId=None, error=None, object="audio", created=1, model="soundCloningAudio"))
    info = call(script, lambda c: c.query("audio_1"))
    assert info == TaskInfo(id="audio_1", status="completed", audio_url=f"{FILES}/a.mp3",
                            subtitle_url=f"{FILES}/a.json", raw_status="completed")
    assert info.final


def test_failed_task_comes_back_as_info_not_error() -> None:
    script = Script(queried("audio_1", "failed", error="voice synthesis failed"))
    info = call(script, lambda c: c.query("audio_1"))
    assert info.status == "failed" and info.final and info.error == "voice synthesis failed"


def test_query_without_status_is_transient() -> None:
    script = Script(httpx.Response(200, json=envelope({"id": "audio_1"})))
    with pytest.raises(TransientError, match="audio_1"):
        call(script, lambda c: c.query("audio_1"))


# --- classification -----------------------------------------------------------------------------

@pytest.mark.parametrize("status", [401, 403])
def test_auth_statuses_raise_auth_error_without_retry(status: int) -> None:
    script = Script(httpx.Response(status, json=envelope(code=status * 100, msg="invalid api key")))
    sleep = Recorder()
    with pytest.raises(AuthError) as caught:
        call(script, create, sleep)
    assert caught.value.status == status and caught.value.msg == "invalid api key"
    assert len(script.requests) == 1 and sleep.delays == []
    assert_no_key(caught.value)


@pytest.mark.parametrize("response", [
    httpx.Response(402, json=envelope(code=40200, msg="payment required")),
    httpx.Response(402, text="no JSON here"),
    httpx.Response(400, json=envelope(code=40000, msg="Insufficient balance, please top up")),
    httpx.Response(200, json=envelope(code=40001, msg="账户余额不足")),
    httpx.Response(200, json=envelope(code="50010", msg="quota exceeded")),
], ids=["402", "402-not-json", "400-balance-msg", "200-chinese-balance-msg", "200-quota"])
def test_balance_errors(response: httpx.Response) -> None:
    script = Script(response)
    with pytest.raises(BalanceError):
        call(script, create)
    assert len(script.requests) == 1


def test_400_is_rejected_with_the_servers_message() -> None:
    script = Script(httpx.Response(400, json=envelope(code=40000, msg="speed: must be from 0.5 to 2")))
    sleep = Recorder()
    with pytest.raises(RequestRejected) as caught:
        call(script, create, sleep)
    error = caught.value
    assert (error.status, error.code, error.msg) == (400, 40000, "speed: must be from 0.5 to 2")
    assert "speed: must be from 0.5 to 2" in str(error) and "400" in str(error)
    assert not isinstance(error, (AuthError, BalanceError, TransientError))
    assert len(script.requests) == 1 and sleep.delays == []


@pytest.mark.parametrize("code", [40000, "40000", None, "oops"])
def test_non_success_envelope_with_http_200_is_rejected(code: Any) -> None:
    script = Script(httpx.Response(200, json=envelope(code=code, msg="contentText: too long")))
    with pytest.raises(RequestRejected) as caught:
        call(script, lambda c: c.query("audio_1"))
    assert caught.value.status == 200 and caught.value.msg == "contentText: too long"
    assert len(script.requests) == 1


def test_404_query_is_rejected_not_retried() -> None:
    script = Script(httpx.Response(404, json=envelope(code=40400, msg="task not found")))
    with pytest.raises(RequestRejected, match="task not found"):
        call(script, lambda c: c.query("audio_x"))
    assert len(script.requests) == 1


def test_success_status_with_a_body_that_is_not_json_is_an_endpoint_error() -> None:
    """Not the API at all (a web page behind a wrong base URL): stop at once, never retry (a retried
    create could pay again if something there did accept it)."""
    garbage = httpx.Response(200, text="<html>gateway</html>")
    script = Script(garbage, created())
    with pytest.raises(EndpointError) as caught:
        call(script, create)
    assert caught.value.may_have_processed is True  # a create: the task may exist
    assert len(script.requests) == 1
    script = Script(garbage, queried())
    with pytest.raises(EndpointError) as caught:
        call(script, lambda c: c.query("audio_1"))
    assert caught.value.may_have_processed is False
    assert len(script.requests) == 1


# --- retries --------------------------------------------------------------------------------------

def test_429_retry_after_seconds_is_honoured() -> None:
    script = Script(httpx.Response(429, headers={"Retry-After": "7"}, json=envelope(code=42900, msg="slow down")),
                    queried())
    sleep = Recorder()
    assert call(script, lambda c: c.query("audio_1"), sleep).status == "completed"
    assert sleep.delays == [7.0]


def test_429_on_a_create_is_retried_without_any_ambiguity() -> None:
    script = Script(httpx.Response(429, headers={"Retry-After": "2"}), created("audio_2"))
    sleep = Recorder()
    assert call(script, create, sleep) == "audio_2"
    assert sleep.delays == [2.0] and len(script.requests) == 2


def test_429_retry_after_http_date_is_honoured() -> None:
    when = datetime.now(UTC) + timedelta(seconds=30)
    script = Script(httpx.Response(429, headers={"Retry-After": format_datetime(when, usegmt=True)}), queried())
    sleep = Recorder()
    call(script, lambda c: c.query("audio_1"), sleep)
    assert len(sleep.delays) == 1
    assert 27.0 <= sleep.delays[0] <= 30.5


@pytest.mark.parametrize(("header", "expected"), [
    ("0", 0.0), ("-5", 0.0), ("99999", RETRY_AFTER_CAP_S),
    (format_datetime(datetime(2000, 1, 1, tzinfo=UTC), usegmt=True), 0.0),
])
def test_retry_after_is_clamped(header: str, expected: float) -> None:
    script = Script(httpx.Response(429, headers={"Retry-After": header}), queried())
    sleep = Recorder()
    call(script, lambda c: c.query("audio_1"), sleep)
    assert sleep.delays == [expected]


def test_unparseable_retry_after_falls_back_to_backoff() -> None:
    script = Script(httpx.Response(429, headers={"Retry-After": "soon-ish"}), queried())
    sleep = Recorder()
    call(script, lambda c: c.query("audio_1"), sleep, backoff_base_s=2.0)
    assert len(sleep.delays) == 1 and 1.0 <= sleep.delays[0] <= 2.0


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_on_a_query_is_retried(status: int) -> None:
    script = Script(httpx.Response(status, json=envelope(code=status * 100, msg="busy")), queried())
    sleep = Recorder()
    assert call(script, lambda c: c.query("audio_1"), sleep).status == "completed"
    assert len(script.requests) == 2 and len(sleep.delays) == 1


def test_503_on_a_create_is_retried_silently() -> None:
    script = Script(httpx.Response(503), created("audio_3"))
    assert call(script, create) == "audio_3"
    assert len(script.requests) == 2


@pytest.mark.parametrize("status", [500, 502, 504])
def test_other_5xx_on_a_create_may_have_billed_so_it_is_raised_not_retried(status: int) -> None:
    script = Script(httpx.Response(status), created("audio_3"))
    sleep = Recorder()
    with pytest.raises(AmbiguousError) as caught:
        call(script, create, sleep)
    assert caught.value.status == status
    assert len(script.requests) == 1 and sleep.delays == []


@pytest.mark.parametrize("failure", [httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout])
def test_connect_errors_are_retried_silently_even_for_creates(failure: type[Exception]) -> None:
    script = Script(failure, failure, created("audio_4"))
    sleep = Recorder()
    assert call(script, create, sleep) == "audio_4"
    assert len(script.requests) == 3 and len(sleep.delays) == 2


@pytest.mark.parametrize("failure", [httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.ReadError,
                                     httpx.WriteTimeout, httpx.WriteError, httpx.CloseError])
def test_create_without_answer_is_raised_as_ambiguous_and_never_retried(failure: type[Exception]) -> None:
    """Sent, no answer: the task may exist and be billed. The client never repeats it; the engine
    decides (and counts the try against the chunk's attempts)."""
    script = Script(failure, created())
    sleep = Recorder()
    with pytest.raises(AmbiguousError) as caught:
        call(script, create, sleep)
    assert len(script.requests) == 1 and sleep.delays == []
    assert isinstance(caught.value.__cause__, failure)
    assert failure.__name__ in str(caught.value)
    assert_no_key(caught.value)


@pytest.mark.parametrize("failure", [httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.ReadError])
def test_query_is_retried_on_read_errors_without_ambiguity(failure: type[Exception]) -> None:
    script = Script(failure, failure, queried())
    assert call(script, lambda c: c.query("audio_1")).status == "completed"
    assert len(script.requests) == 3


def test_query_read_error_on_every_try_is_plain_transient() -> None:
    script = Script(httpx.ReadTimeout)
    with pytest.raises(TransientError) as caught:
        call(script, lambda c: c.query("audio_1"), max_tries=3)
    assert not isinstance(caught.value, AmbiguousError)


def test_retries_are_capped_by_max_tries() -> None:
    script = Script(httpx.Response(502, json=envelope(code=50200, msg="bad gateway")))
    sleep = Recorder()
    with pytest.raises(TransientError) as caught:
        call(script, lambda c: c.query("audio_1"), sleep, max_tries=4)
    assert caught.value.status == 502
    assert len(script.requests) == 4 and len(sleep.delays) == 3


def test_create_preview_follows_the_same_billed_rule() -> None:
    script = Script(httpx.ReadTimeout, created("audio_p"))
    with pytest.raises(AmbiguousError):
        call(script, lambda c: c.create_preview(file_url=f"{FILES}/sample.wav"))
    assert len(script.requests) == 1
    script = Script(httpx.ConnectError, httpx.Response(429), httpx.Response(503), created("audio_p"))
    assert call(script, lambda c: c.create_preview(file_url=f"{FILES}/sample.wav")) == "audio_p"
    assert len(script.requests) == 4


def test_backoff_grows_is_capped_and_jittered() -> None:
    script = Script(httpx.Response(503))
    sleep = Recorder()
    with pytest.raises(TransientError):
        call(script, lambda c: c.query("audio_1"), sleep, max_tries=9, backoff_base_s=0.5, backoff_cap_s=4.0)
    assert len(sleep.delays) == 8
    for attempt, delay in enumerate(sleep.delays):
        ceiling = min(4.0, 0.5 * 2 ** attempt)
        assert 0 < delay <= ceiling, (attempt, delay)
    assert max(sleep.delays) <= 4.0
    capped = sleep.delays[3:]  # 0.5 * 2**3 = 4: every later delay is drawn under the same cap
    assert len(set(capped)) == len(capped), "no jitter: equal delays would synchronise clients"
    assert sleep.delays[0] < 4.0 * 0.5 < max(capped)


def test_backoff_is_deterministic_with_a_seeded_rng() -> None:
    def delays(seed: int) -> list[float]:
        sleep = Recorder()
        with pytest.raises(TransientError):
            call(Script(httpx.Response(500)), lambda c: c.query("audio_1"), sleep, max_tries=5,
                 rng=random.Random(seed))
        return sleep.delays

    assert delays(5) == delays(5)
    assert delays(5) != delays(6)


def test_create_answer_without_task_id_is_ambiguous_and_not_retried() -> None:
    for data in ({}, None, {"id": ""}, {"id": 123}, ["audio_1"]):
        script = Script(httpx.Response(200, json=envelope(data)), created())
        with pytest.raises(AmbiguousError, match="no task id"):
            call(script, create)
        assert len(script.requests) == 1, data


# --- downloads ----------------------------------------------------------------------------------

def download(url: str, dest: Path, *, api: Handler | None = None, files: Handler | None = None,
             max_bytes: int | None = None, sleep: Recorder | None = None) -> int:
    kwargs = {} if max_bytes is None else {"max_bytes": max_bytes}
    return call(api or Script(queried()), lambda c: c.download(url, dest, **kwargs), sleep,
                download=files)


def test_download_sends_no_credentials_to_the_files_host(tmp_path: Path) -> None:
    files = Script(httpx.Response(200, content=b"ID3" + b"\0" * 997))
    assert download(f"{FILES}/audio/a.mp3?sig=abc", tmp_path / "a.mp3", files=files) == 1000
    assert (tmp_path / "a.mp3").read_bytes()[:3] == b"ID3"
    sent = files.requests[0]
    assert "authorization" not in sent.headers
    assert KEY not in str(sent.url) and all(KEY not in v for v in sent.headers.values())


def test_download_without_a_separate_transport_still_sends_no_credentials(tmp_path: Path) -> None:
    """One transport for both origins (the common test setup): only the API requests carry the key."""
    shared = Script(lambda request: queried() if request.url.host == "api.test"
                    else httpx.Response(200, content=b"x" * 10))

    async def both(client: SoundCloneClient) -> None:
        await client.query("audio_1")
        await client.download(f"{FILES}/a.mp3", tmp_path / "a.mp3")
        await client.download(f"{BASE}/files/b.mp3", tmp_path / "b.mp3")  # even the API host gets no key

    call(shared, both)
    api, cdn, same_host = shared.requests
    assert api.headers["authorization"] == f"Bearer {KEY}"
    assert "authorization" not in cdn.headers and "authorization" not in same_host.headers


def test_download_follows_a_redirect_without_credentials(tmp_path: Path) -> None:
    files = Script(httpx.Response(302, headers={"Location": "https://mirror.test/a.mp3"}),
                   httpx.Response(200, content=b"abc"))
    assert download(f"{FILES}/a.mp3", tmp_path / "a.mp3", files=files) == 3
    assert [r.url.host for r in files.requests] == ["cdn.test", "mirror.test"]
    assert all("authorization" not in r.headers for r in files.requests)


@pytest.mark.parametrize("url", [
    "file:///etc/passwd", "data:audio/mpeg;base64,SUQz", "ftp://cdn.test/a.mp3", "gopher://cdn.test/a",
    "http:///no-host.mp3", "/relative/a.mp3", "javascript:alert(1)",
])
def test_download_refuses_other_schemes(tmp_path: Path, url: str) -> None:
    files = Script(httpx.Response(200, content=b"x"))
    with pytest.raises(DownloadError, match="only http"):
        download(url, tmp_path / "a.mp3", files=files)
    assert files.requests == []
    assert not (tmp_path / "a.mp3").exists()
    with pytest.raises(DownloadError):
        check_download_url(url)


def test_declared_size_over_the_cap_is_refused_before_reading(tmp_path: Path) -> None:
    files = Script(httpx.Response(200, headers={"Content-Length": "5000"}, content=b"x" * 5000))
    with pytest.raises(DownloadError, match="cap"):
        download(f"{FILES}/a.mp3", tmp_path / "a.mp3", files=files, max_bytes=4096)


def test_streamed_size_over_the_cap_is_refused(tmp_path: Path) -> None:
    async def endless() -> Any:
        for _ in range(1000):
            yield b"y" * 1024

    files = Script(lambda request: httpx.Response(200, content=endless()))  # chunked: no Content-Length
    with pytest.raises(DownloadError, match="cap"):
        download(f"{FILES}/a.mp3", tmp_path / "a.mp3", files=files, max_bytes=10_000)
    assert not (tmp_path / "a.mp3").exists() or (tmp_path / "a.mp3").stat().st_size <= 10_000


def test_body_exactly_at_the_cap_is_accepted(tmp_path: Path) -> None:
    files = Script(httpx.Response(200, content=b"z" * 4096))
    assert download(f"{FILES}/a.mp3", tmp_path / "a.mp3", files=files, max_bytes=4096) == 4096


def test_short_body_against_content_length_is_transient(tmp_path: Path) -> None:
    files = Script(lambda request: httpx.Response(200, headers={"Content-Length": "1000"},
                                                  stream=httpx.ByteStream(b"x" * 400)))
    with pytest.raises(TransientError) as caught:
        download(f"{FILES}/a.mp3", tmp_path / "a.mp3", files=files)
    assert not isinstance(caught.value, AmbiguousError)
    assert "400" in str(caught.value) and "1000" in str(caught.value)


def test_connection_dropped_mid_body_is_transient(tmp_path: Path) -> None:
    async def broken() -> Any:
        yield b"x" * 100
        raise httpx.RemoteProtocolError("peer closed connection")

    files = Script(lambda request: httpx.Response(200, content=broken()))
    with pytest.raises(TransientError, match="RemoteProtocolError"):
        download(f"{FILES}/a.mp3", tmp_path / "a.mp3", files=files)


def test_empty_download_is_transient(tmp_path: Path) -> None:
    with pytest.raises(TransientError, match="empty"):
        download(f"{FILES}/a.mp3", tmp_path / "a.mp3", files=Script(httpx.Response(200, content=b"")))


@pytest.mark.parametrize(("status", "kind"), [(403, DownloadError), (404, DownloadError), (410, DownloadError),
                                              (500, TransientError), (503, TransientError),
                                              (429, TransientError)])
def test_download_status_classification(tmp_path: Path, status: int, kind: type[Exception]) -> None:
    files = Script(httpx.Response(status, headers={"Retry-After": "3"}, text="Forbidden"))
    with pytest.raises(kind) as caught:
        download(f"{FILES}/a.mp3", tmp_path / "a.mp3", files=files)
    assert str(status) in str(caught.value)
    assert len(files.requests) == 1  # the engine decides what to retry (a 403 means: query for a fresh URL)
    if isinstance(caught.value, TransientError) and status == 429:
        assert caught.value.retry_after_s == 3.0


def test_download_network_error_is_transient(tmp_path: Path) -> None:
    with pytest.raises(TransientError, match="ConnectError"):
        download(f"{FILES}/a.mp3", tmp_path / "a.mp3", files=Script(httpx.ConnectError))


def test_a_gzip_encoded_download_is_decoded_and_accepted(tmp_path: Path) -> None:
    """httpx asks for gzip by default; a CDN then compresses JSON subtitle files. The Content-Length is
    the compressed size: it must not be compared with the decompressed byte count."""
    body = json.dumps([{"text": "The light was still on. " * 20, "time_begin": 0, "time_end": 1500}]).encode()
    packed = gzip.compress(body)
    files = Script(httpx.Response(200, headers={"Content-Encoding": "gzip", "Content-Length": str(len(packed)),
                                                "Content-Type": "application/json"}, content=packed))
    assert download(f"{FILES}/subtitles/a.json", tmp_path / "a.json", files=files) == len(body)
    assert files.requests[0].headers["accept-encoding"] == "identity"  # asked not to compress; it did anyway
    assert (tmp_path / "a.json").read_bytes() == body


# --- the key stays secret -------------------------------------------------------------------------

def every_error(tmp_path: Path) -> Iterator[BaseException]:
    """One of every error the client raises, from scripted answers."""
    cases: list[tuple[Any, Callable[[SoundCloneClient], Coroutine[Any, Any, Any]]]] = [
        (Script(httpx.Response(401, json=envelope(code=40100, msg="bad key"))), create),
        (Script(httpx.Response(402)), create),
        (Script(httpx.Response(400, json=envelope(code=40000, msg="pitch: bad"))), create),
        (Script(httpx.Response(200, json=envelope(code=1, msg="nope"))), lambda c: c.query("audio_1")),
        (Script(httpx.Response(503)), lambda c: c.query("audio_1")),
        (Script(httpx.ReadTimeout), create),
        (Script(httpx.ConnectError), create),
        (Script(httpx.Response(200, json=envelope({}))), create),
        (Script(queried()), lambda c: c.download("file:///x", tmp_path / "x")),
        (Script(httpx.Response(301, headers={"Location": f"https://www.api.test/?key={KEY}"})), create),
        (Script(httpx.Response(200, text=f"<html>{KEY}</html>")), create),
        (Script(queried(status=f"weird {KEY}")), lambda c: c.query("audio_1")),
        (Script(httpx.ConnectError), lambda c: c.query("audio_1")),  # unreachable (thresholds of 1 below)
    ]
    for script, action in cases:
        try:
            call(script, action, max_tries=2, unreachable_after_failures=2, unreachable_after_s=0.0)
        except PipelineError as error:
            yield error
        else:  # pragma: no cover - every case must fail
            raise AssertionError(f"{script.answers} did not raise")


def test_the_key_never_appears_in_errors_or_reprs(tmp_path: Path) -> None:
    errors = list(every_error(tmp_path))
    assert len(errors) == 13
    assert {type(e).__name__ for e in errors} >= {"EndpointError", "UnknownTaskStatus", "ApiUnreachable"}
    for error in errors:
        assert_no_key(error)
    client = make_client(Script(queried()), Recorder())
    try:
        assert KEY not in repr(client) and KEY not in repr(vars(client))
        assert KEY not in repr(client._api.headers)  # httpx masks the Authorization header
    finally:
        run(client.aclose)
    assert KEY not in repr(ApiKey(KEY)) and KEY not in str(ApiKey(KEY)) and KEY not in f"{ApiKey(KEY)}"


def test_a_server_message_that_echoes_the_key_is_redacted() -> None:
    script = Script(httpx.Response(401, json=envelope(code=40100, msg=f"Incorrect API key provided: {KEY}")))
    with pytest.raises(AuthError) as caught:
        call(script, create)
    assert_no_key(caught.value)


# --- the rate limiter ---------------------------------------------------------------------------

class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rate_limiter_spaces_requests_with_an_injected_clock() -> None:
    clock, sleep = FakeClock(), Recorder()
    limiter = RateLimiter(120, clock=clock, sleep=sleep)  # one request every 0.5 s

    async def main() -> None:
        await limiter.acquire()
        await limiter.acquire()
        await limiter.acquire()
        assert sleep.delays == [0.5, 1.0]  # measured from the same instant
        clock.now += 0.75  # time passes in the caller, less than the slots booked (1.5 s)
        await limiter.acquire()
        assert sleep.delays[-1] == pytest.approx(0.75)
        clock.now += 10.0  # idle: no debt carried, no burst either
        await limiter.acquire()
        await limiter.acquire()
        assert sleep.delays[-1] == pytest.approx(0.5) and len(sleep.delays) == 4

    run(main)


def test_rate_limiter_is_shared_by_concurrent_callers() -> None:
    clock, sleep = FakeClock(), Recorder()
    limiter = RateLimiter(60, clock=clock, sleep=sleep)

    async def main() -> None:
        await asyncio.gather(*(limiter.acquire() for _ in range(4)))

    run(main)
    assert sorted(sleep.delays) == [1.0, 2.0, 3.0]


def test_rate_limiter_zero_means_unlimited() -> None:
    sleep = Recorder()
    limiter = RateLimiter(0, clock=FakeClock(), sleep=sleep)

    async def main() -> None:
        for _ in range(5):
            await limiter.acquire()

    run(main)
    assert sleep.delays == []


def test_client_requests_pass_through_the_rate_limiter() -> None:
    script = Script(queried())
    sleep = Recorder()

    async def three(client: SoundCloneClient) -> None:
        for _ in range(3):
            await client.query("audio_1")

    call(script, three, sleep, requests_per_minute=6.0)  # 10 s apart; real clock, so allow its drift
    assert len(sleep.delays) == 2 and all(9.0 < d < 20.5 for d in sleep.delays)
