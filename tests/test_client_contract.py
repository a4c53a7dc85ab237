"""The client's contract where the API docs are silent (soundclone-api.md, "Unknowns"), at unit level.

What a caller can rely on, whatever the far end does:

* a task status is one of the documented four (synonyms mapped), or :class:`UnknownTaskStatus` at once;
* :func:`pipeline.client.wait_until_final` polls to a final status, and stops at once on anything that
  polling cannot fix;
* a redirect or a page that is not the API's JSON is an :class:`EndpointError` at once, never retried,
  and the API key never goes anywhere but the API origin;
* a billed create is retried only when it surely created nothing;
* an unreachable API is reported within seconds as :class:`ApiUnreachable`, not retried for minutes;
* every httpx exception (and every file-system error) comes out as a :class:`PipelineError`.

The helpers (scripted transport, recording sleep) are those of ``test_client.py``.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_client import (
    BASE,
    FIELDS,
    FILES,
    KEY,
    Recorder,
    Script,
    assert_no_key,
    call,
    create,
    created,
    envelope,
    make_client,
    queried,
    run,
)

from pipeline.client import (
    STATUS_SYNONYMS,
    UNREACHABLE_AFTER_FAILURES,
    UNREACHABLE_AFTER_S,
    SoundCloneClient,
    TaskInfo,
    wait_until_final,
)
from pipeline.config import ApiKey
from pipeline.errors import (
    AmbiguousError,
    ApiUnreachable,
    ConfigError,
    DownloadError,
    EndpointError,
    PipelineError,
    RequestRejected,
    StorageError,
    TransientError,
    UnknownTaskStatus,
)

Action = Callable[[SoundCloneClient], Coroutine[Any, Any, Any]]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TickingSleep(Recorder):
    """An injected ``sleep`` that moves a fake clock on by the time it was asked to wait."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.clock.now += seconds


def query(client: SoundCloneClient) -> Coroutine[Any, Any, TaskInfo]:
    return client.query("audio_1")


# --- 1. statuses ----------------------------------------------------------------------------------

SYNONYMS = {
    "completed": ["completed", "complete", "succeeded", "success", "successful", "finished", "done"],
    "failed": ["failed", "failure", "error", "errored", "cancelled", "canceled"],
    "queued": ["queued", "pending", "waiting", "submitted", "created"],
    "processing": ["processing", "running", "in_progress", "in-progress", "started"],
}


def test_the_synonym_table_is_exactly_the_documented_one() -> None:
    assert dict(STATUS_SYNONYMS) == {raw: status for status, raws in SYNONYMS.items() for raw in raws}


@pytest.mark.parametrize(("raw", "expected"), [
    (variant, status) for status, raws in SYNONYMS.items() for raw in raws
    for variant in (raw, raw.upper(), f"  {raw.capitalize()} \t")
])
def test_status_synonyms_map_onto_the_documented_four(raw: str, expected: str) -> None:
    script = Script(queried("audio_1", raw))
    info = call(script, query)
    assert info.status == expected and info.raw_status == raw
    assert info.final is (expected in ("completed", "failed"))
    assert len(script.requests) == 1


@pytest.mark.parametrize("raw", ["paused", "archived", "expired", "in progress", "completed!", "unknown", "3",
                                 7, True, ["completed"]])
def test_an_unknown_status_raises_at_once(raw: Any) -> None:
    script = Script(queried("audio_42", raw), queried("audio_42", "completed"))
    sleep = Recorder()
    with pytest.raises(UnknownTaskStatus) as caught:
        call(script, lambda c: c.query("audio_42"), sleep)
    message = str(caught.value)
    assert "audio_42" in message and str(raw) in message
    assert "not resubmitted" in message and "rerun polls it again" in message
    assert caught.value.task_id == "audio_42"
    assert len(script.requests) == 1 and sleep.delays == []  # not retried, not polled on


def test_an_unknown_status_stops_the_poll_loop_at_once() -> None:
    """Before: polled until the task timeout (an hour of queries for a status that never changes)."""
    clock = FakeClock()
    sleep = TickingSleep(clock)
    script = Script(queried("audio_1", "Paused"))
    with pytest.raises(UnknownTaskStatus, match="Paused"):
        call(script, lambda c: wait_until_final(c, "audio_1", interval_s=5, timeout_s=3600, sleep=sleep,
                                                clock=clock), sleep, clock=clock)
    assert len(script.requests) == 1 and sleep.delays == [5]


# --- 2. the poll loop -----------------------------------------------------------------------------

def poll(script: Script, *, clock: FakeClock, sleep: TickingSleep, **kwargs: Any) -> TaskInfo:
    options: dict[str, Any] = {"interval_s": 5.0, "timeout_s": 60.0, **kwargs}
    return call(script, lambda c: wait_until_final(c, "audio_1", sleep=sleep, clock=clock, **options),
                Recorder(), clock=clock, max_tries=1)  # the client's own retries are not under test here


def test_wait_until_final_polls_until_completed() -> None:
    clock = FakeClock()
    sleep = TickingSleep(clock)
    script = Script(queried(status="queued"), queried(status="Running"), queried(status="succeeded",
                                                                                   audioUrl=f"{FILES}/a.mp3"))
    info = poll(script, clock=clock, sleep=sleep)
    assert info.status == "completed" and info.raw_status == "succeeded" and info.audio_url == f"{FILES}/a.mp3"
    assert sleep.delays == [5.0, 5.0, 5.0] and len(script.requests) == 3


def test_wait_until_final_returns_a_failed_task() -> None:
    clock = FakeClock()
    sleep = TickingSleep(clock)
    info = poll(Script(queried(status="cancelled", error="stopped")), clock=clock, sleep=sleep)
    assert info.status == "failed" and info.error == "stopped"


def test_wait_until_final_waits_first_wait_s_when_longer() -> None:
    clock = FakeClock()
    sleep = TickingSleep(clock)
    poll(Script(queried(status="processing"), queried()), clock=clock, sleep=sleep, first_wait_s=42.0)
    assert sleep.delays == [42.0, 5.0]
    clock = FakeClock()
    sleep = TickingSleep(clock)
    poll(Script(queried()), clock=clock, sleep=sleep, first_wait_s=1.0)  # shorter than the interval
    assert sleep.delays == [5.0]


def test_wait_until_final_rides_out_transient_query_errors() -> None:
    clock = FakeClock()
    sleep = TickingSleep(clock)
    script = Script(httpx.Response(503), httpx.ReadTimeout, queried())
    assert poll(script, clock=clock, sleep=sleep).status == "completed"
    assert len(script.requests) == 3


def test_wait_until_final_times_out_saying_how_far_the_task_got() -> None:
    clock = FakeClock()
    sleep = TickingSleep(clock)
    with pytest.raises(TransientError, match="still processing after 60s") as caught:
        poll(Script(queried(status="processing")), clock=clock, sleep=sleep)
    assert caught.value.task_id == "audio_1"
    assert not isinstance(caught.value, AmbiguousError)
    with pytest.raises(TransientError, match="audio_1") as caught:
        poll(Script(httpx.Response(503)), clock=clock, sleep=sleep)
    assert isinstance(caught.value.__cause__, TransientError)


@pytest.mark.parametrize(("answer", "kind"), [
    (httpx.Response(404, json=envelope(code=40400, msg="task not found")), RequestRejected),
    (queried(status="on-hold"), UnknownTaskStatus),
    (httpx.Response(302, headers={"Location": "https://elsewhere.test/"}), EndpointError),
    (httpx.Response(200, text="<html>hi</html>"), EndpointError),
])
def test_wait_until_final_propagates_what_polling_cannot_fix(answer: httpx.Response, kind: type[Exception]) -> None:
    clock = FakeClock()
    sleep = TickingSleep(clock)
    script = Script(answer, queried())
    with pytest.raises(kind):
        poll(script, clock=clock, sleep=sleep)
    assert len(script.requests) == 1


def test_wait_until_final_has_the_engines_signature() -> None:
    params = inspect.signature(wait_until_final).parameters
    assert list(params) == ["client", "task_id", "interval_s", "timeout_s", "sleep", "clock", "first_wait_s"]
    assert all(params[name].kind is inspect.Parameter.KEYWORD_ONLY for name in list(params)[2:])
    assert inspect.iscoroutinefunction(wait_until_final)


# --- 3. redirects and answers that are not the API's ----------------------------------------------

def api_call(handler: Any, action: Action, *, base_url: str, sleep: Recorder | None = None) -> Any:
    """Like ``call`` but against another base URL."""
    async def main() -> Any:
        async with SoundCloneClient(base_url=base_url, api_key=ApiKey(KEY), transport=httpx.MockTransport(handler),
                                    sleep=sleep or Recorder(), requests_per_minute=0, max_tries=5) as client:
            return await action(client)

    return run(main)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("action", [create, query], ids=["create", "query"])
def test_a_redirect_from_the_api_is_an_endpoint_error_and_is_not_followed(status: int, action: Action) -> None:
    script = Script(lambda request: httpx.Response(
        status, headers={"Location": str(request.url).replace("://www.", "://")}), created(), queried())
    sleep = Recorder()
    with pytest.raises(EndpointError) as caught:
        api_call(script, action, base_url="https://www.api.test", sleep=sleep)
    error = caught.value
    sent = str(script.requests[0].url)
    assert sent in str(error) and sent.replace("://www.", "://") in str(error)  # the URL and the Location
    assert "use --base-url https://api.test " in str(error) and "SOUNDCLONE_BASE_URL" in str(error)
    assert error.url == sent and error.may_have_processed is False
    assert len(script.requests) == 1 and sleep.delays == []  # never followed, never retried
    assert isinstance(error, ConfigError) and not isinstance(error, TransientError)
    assert_no_key(error)


def test_a_redirect_to_https_suggests_the_https_base_url_and_keeps_a_base_path() -> None:
    script = Script(lambda request: httpx.Response(
        301, headers={"Location": str(request.url).replace("http://", "https://")}))
    with pytest.raises(EndpointError, match=r"use --base-url https://api\.test/proxy "):
        api_call(script, query, base_url="http://api.test/proxy")
    assert len(script.requests) == 1


@pytest.mark.parametrize("location", ["/login?next=/api", "https://sso.test/authorize", "http://[broken"])
def test_a_redirect_elsewhere_names_the_location_without_a_base_url_suggestion(location: str) -> None:
    script = Script(httpx.Response(302, headers={"Location": location}))
    with pytest.raises(EndpointError) as caught:
        call(script, create)
    assert location in str(caught.value) and "use --base-url" not in str(caught.value)
    assert "check --base-url / SOUNDCLONE_BASE_URL" in str(caught.value)
    assert [r.url.host for r in script.requests] == ["api.test"]


@pytest.mark.parametrize("status", [300, 304, 399])
def test_any_3xx_even_without_a_location_is_an_endpoint_error(status: int) -> None:
    script = Script(httpx.Response(status), queried())
    with pytest.raises(EndpointError, match=f"HTTP {status}"):
        call(script, query)
    assert len(script.requests) == 1


def test_the_key_never_follows_a_redirect_even_on_one_shared_transport() -> None:
    shared = Script(lambda request: httpx.Response(307, headers={"Location": "https://evil.test/steal"})
                    if request.url.host == "api.test" else httpx.Response(200, json=envelope({"id": "x"})))
    with pytest.raises(EndpointError, match="evil.test/steal"):
        call(shared, create)
    assert [r.url.host for r in shared.requests] == ["api.test"]


NOT_THE_API = [
    pytest.param(httpx.Response(200, text="<!doctype html><html><body>Welcome</body></html>",
                                headers={"Content-Type": "text/html; charset=utf-8"}), "an HTML page", id="html"),
    pytest.param(httpx.Response(200, text="<html>no content type</html>"), "an HTML page", id="html-untyped"),
    pytest.param(httpx.Response(200), "an empty body", id="empty"),
    pytest.param(httpx.Response(204), "an empty body", id="204"),
    pytest.param(httpx.Response(200, text="OK"), "not JSON", id="text"),
    pytest.param(httpx.Response(200, json=[{"id": "audio_1"}]), "JSON list", id="json-list"),
    pytest.param(httpx.Response(200, json="audio_1"), "JSON str", id="json-string"),
    pytest.param(httpx.Response(201, json={"status": "ok", "id": "audio_1"}), "envelope", id="json-no-envelope"),
]


@pytest.mark.parametrize(("answer", "kind"), NOT_THE_API)
def test_a_2xx_that_is_not_the_api_json_is_an_endpoint_error(answer: httpx.Response, kind: str) -> None:
    for action, billed in ((create, True), (query, False)):
        script = Script(answer, created(), queried())
        sleep = Recorder()
        with pytest.raises(EndpointError) as caught:
            call(script, action, sleep)
        error = caught.value
        assert kind in str(error)
        assert "not the API's JSON; check --base-url / SOUNDCLONE_BASE_URL" in str(error)
        assert str(script.requests[0].url) in str(error) and error.url == str(script.requests[0].url)
        assert error.may_have_processed is billed
        assert ("may exist and be billed" in str(error)) is billed
        assert len(script.requests) == 1 and sleep.delays == []


def test_an_upload_answered_with_a_page_is_an_endpoint_error_not_billed(tmp_path: Path) -> None:
    sample = tmp_path / "sample.wav"
    sample.write_bytes(b"RIFF....")
    script = Script(httpx.Response(200, text="<html>login</html>"))
    with pytest.raises(EndpointError) as caught:
        call(script, lambda c: c.upload(sample))
    assert caught.value.may_have_processed is False and len(script.requests) == 1


def test_error_statuses_with_a_page_keep_their_classification() -> None:
    """Only a success status with a foreign body means "not the API"; a 5xx page from a proxy is still
    a server error (retried for a query), a 404 page still a rejection."""
    script = Script(httpx.Response(502, text="<html>Bad Gateway</html>"), queried())
    assert call(script, query).status == "completed"
    with pytest.raises(RequestRejected):
        call(Script(httpx.Response(404, text="<html>Not Found</html>")), query)


# --- 4. a billed create is never retried after an ambiguous outcome --------------------------------

def test_create_sends_the_body_as_given_and_calls_before_send_right_before_each_try() -> None:
    import json

    events: list[str] = []
    answers = Script(httpx.ConnectError, httpx.Response(429, json=envelope(None)), created())

    def handler(request: httpx.Request) -> httpx.Response:
        events.append("sent")
        return answers(request)

    body = {**FIELDS, "contentText": "Hi.", "subtitleEnable": False}
    task_id = call(handler, lambda c: c.create_audio(body, before_send=lambda: events.append("intent")))
    assert task_id == "audio_1"
    assert events == ["intent", "sent"] * 3, "the intent is recorded before every try, and only then sent"
    assert json.loads(answers.requests[-1].content) == body


def test_before_send_can_keep_a_create_from_being_sent() -> None:
    script = Script(created())

    def refuse() -> None:
        raise RuntimeError("stopping")

    with pytest.raises(RuntimeError, match="stopping"):
        call(script, lambda c: c.create_audio({**FIELDS, "contentText": "Hi."}, before_send=refuse))
    assert script.requests == []


@pytest.mark.parametrize("answer", [httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.Response(500),
                                    httpx.Response(502), httpx.Response(200, json=envelope({"status": "queued"}))],
                         ids=["read-timeout", "remote-protocol", "500", "502", "no-task-id"])
def test_a_billed_create_raises_an_ambiguous_outcome_after_one_request(answer: Any) -> None:
    script = Script(answer, created())
    sleep = Recorder()
    with pytest.raises(AmbiguousError):
        call(script, create, sleep)
    assert len(script.requests) == 1 and sleep.delays == []


def test_a_billed_create_is_retried_only_where_nothing_was_created() -> None:
    script = Script(httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.Response(429),
                    httpx.Response(503), created("audio_ok"))
    sleep = Recorder()
    assert call(script, create, sleep, max_tries=8) == "audio_ok"
    assert len(script.requests) == 6 and len(sleep.delays) == 5


def test_requests_that_are_not_billed_keep_their_retries(tmp_path: Path) -> None:
    sample = tmp_path / "sample.wav"
    sample.write_bytes(b"RIFF....")
    upload_ok = httpx.Response(200, json=envelope({"url": f"{FILES}/up/sample.wav"}))
    script = Script(httpx.ReadTimeout, httpx.Response(500), upload_ok)
    assert call(script, lambda c: c.upload(sample)) == f"{FILES}/up/sample.wav"
    assert len(script.requests) == 3
    script = Script(httpx.ReadTimeout, httpx.Response(502), httpx.RemoteProtocolError, queried())
    assert call(script, query).status == "completed"
    assert len(script.requests) == 4


# --- 5. an unreachable API stops quickly -------------------------------------------------------------

DONE_ADVICE = "check the network, --base-url or SOUNDCLONE_BASE_URL, then rerun the same command (nothing is lost)"


def refused(request: httpx.Request) -> httpx.Response:
    try:
        raise ConnectionRefusedError(111, "Connection refused")
    except OSError as exc:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request) from exc


def no_such_host(request: httpx.Request) -> httpx.Response:
    try:
        raise socket.gaierror(-2, "Name or service not known")
    except OSError as exc:
        raise httpx.ConnectError("[Errno -2] Name or service not known", request=request) from exc


@pytest.mark.parametrize(("failure", "low_level"), [(refused, "ConnectionRefusedError"),
                                                     (no_such_host, "gaierror"),
                                                     (httpx.ConnectTimeout, "ConnectTimeout")])
def test_an_unreachable_api_is_reported_within_seconds(tmp_path: Path, failure: Any, low_level: str) -> None:
    clock = FakeClock()
    sleep = TickingSleep(clock)
    script = Script(failure)
    files = Script(httpx.Response(200, content=b"abc"))

    async def main() -> None:
        async with make_client(script, sleep, download=files, clock=clock, max_tries=8,
                               backoff_base_s=2.0) as client:
            with pytest.raises(ApiUnreachable) as caught:
                await client.query("audio_1")
            message = str(caught.value)
            assert "api.test" in message and low_level in message and DONE_ADVICE in message
            assert f"{UNREACHABLE_AFTER_FAILURES} connection attempts in a row" in message
            assert len(script.requests) == UNREACHABLE_AFTER_FAILURES
            assert sum(sleep.delays) >= UNREACHABLE_AFTER_S  # wall time, by the injected clock
            assert len(sleep.delays) == UNREACHABLE_AFTER_FAILURES - 1
            assert_no_key(caught.value)
            # every later request of this client: the same error, at once, without a request or a sleep
            before = (len(script.requests), len(sleep.delays), client.requests_sent)
            for action in (lambda: client.query("audio_2"), lambda: client.create_audio({**FIELDS, "contentText": "Hi."}),
                           lambda: client.create_preview(file_url=f"{FILES}/s.wav"),
                           lambda: client.download(f"{FILES}/a.mp3", tmp_path / "a.mp3")):
                with pytest.raises(ApiUnreachable) as again:
                    await action()
                assert str(again.value) == message
            assert (len(script.requests), len(sleep.delays), client.requests_sent) == before
            assert files.requests == []

    run(main)


def test_a_refused_loopback_port_through_the_real_transport() -> None:
    """No mock: a closed port on this machine, the real httpx transport, the real low-level error."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    clock = FakeClock()
    sleep = TickingSleep(clock)

    async def main() -> None:
        async with SoundCloneClient(base_url=f"http://127.0.0.1:{port}", api_key=ApiKey(KEY), sleep=sleep,
                                    clock=clock, requests_per_minute=0, backoff_base_s=2.0) as client:
            with pytest.raises(ApiUnreachable) as caught:
                await client.query("audio_1")
            assert f"127.0.0.1:{port}" in str(caught.value) and "ConnectionRefusedError" in str(caught.value)
            assert client.requests_sent == UNREACHABLE_AFTER_FAILURES

    run(main)


def test_a_billed_create_against_an_unreachable_api_stops_too() -> None:
    clock = FakeClock()
    sleep = TickingSleep(clock)
    script = Script(refused)
    with pytest.raises(ApiUnreachable):
        call(script, create, sleep, clock=clock, max_tries=8, backoff_base_s=2.0)
    assert len(script.requests) == UNREACHABLE_AFTER_FAILURES


def test_quick_failures_need_the_time_span_too_and_the_count_spans_requests() -> None:
    """Failures at the same instant are not yet "unreachable" (a blip) while a request still has tries left
    and an answer comes; once requests run out of tries with no connection at all, the API is unreachable
    (the time-span rule is covered above, with a ticking clock)."""
    clock = FakeClock()
    sleep = Recorder()  # the clock stands still
    script = Script(refused, refused, refused, queried(), refused)

    async def main() -> None:
        async with make_client(script, sleep, clock=clock, max_tries=5) as client:
            assert (await client.query("audio_1")).status == "completed"  # 3 quick failures, then an answer
            script.answers = [refused]
            results = await asyncio.gather(*(client.query(f"audio_{i}") for i in range(2)), return_exceptions=True)
            assert all(type(r) is ApiUnreachable for r in results), results  # 5 tries each, none connected
    run(main)


def test_a_request_whose_every_try_fails_to_connect_is_unreachable_however_quick() -> None:
    clock = FakeClock()
    script = Script(refused)
    with pytest.raises(ApiUnreachable, match="cannot reach the SoundClone API"):
        call(script, create, Recorder(), clock=clock, max_tries=6)
    assert len(script.requests) == 6


def test_any_http_answer_resets_the_count() -> None:
    clock = FakeClock()
    sleep = TickingSleep(clock)
    script = Script(refused, refused, refused, httpx.Response(500), refused, refused, refused,
                    httpx.Response(429, headers={"Retry-After": "30"}), refused, refused, refused, queried())
    assert call(script, query, sleep, clock=clock, max_tries=12, backoff_base_s=4.0).status == "completed"
    assert len(script.requests) == 12 and sum(sleep.delays) > 10 * UNREACHABLE_AFTER_S


def test_pool_timeouts_neither_count_nor_reset() -> None:
    clock = FakeClock()
    sleep = TickingSleep(clock)
    script = Script(refused, refused, httpx.PoolTimeout, httpx.PoolTimeout, httpx.PoolTimeout, refused, refused)
    with pytest.raises(ApiUnreachable, match="4 connection attempts"):
        call(script, query, sleep, clock=clock, max_tries=10, backoff_base_s=2.0)
    assert len(script.requests) == 7


def test_the_thresholds_are_constructor_parameters() -> None:
    defaults = inspect.signature(SoundCloneClient).parameters
    assert defaults["unreachable_after_failures"].default == UNREACHABLE_AFTER_FAILURES == 4
    assert defaults["unreachable_after_s"].default == UNREACHABLE_AFTER_S == 5.0
    clock = FakeClock()
    script = Script(refused)
    with pytest.raises(ApiUnreachable, match="2 connection attempts in a row failed over 0.0s"):
        call(script, query, Recorder(), clock=clock, unreachable_after_failures=2, unreachable_after_s=0.0)
    assert len(script.requests) == 2


def test_download_connection_failures_are_not_the_api_being_unreachable(tmp_path: Path) -> None:
    """A storage host that cannot be reached is one dead link (the engine asks for a fresh one), not the API."""
    files = Script(refused)

    async def main() -> None:
        async with make_client(Script(queried()), Recorder(), download=files, unreachable_after_failures=1,
                               unreachable_after_s=0.0) as client:
            for _ in range(3):
                with pytest.raises(TransientError) as caught:
                    await client.download(f"{FILES}/a.mp3", tmp_path / "a.mp3")
                assert not isinstance(caught.value, ApiUnreachable)
            assert (await client.query("audio_1")).status == "completed"

    run(main)


# --- 6 and 7. download redirects; counting requests -------------------------------------------------

def hops(count: int, final: httpx.Response) -> Script:
    return Script(*(httpx.Response(302, headers={"Location": f"https://mirror{i}.test/a.mp3"}) for i in range(count)),
                  final)


def test_a_download_follows_at_most_five_redirects_without_credentials(tmp_path: Path) -> None:
    files = hops(5, httpx.Response(200, content=b"abc"))
    assert call(Script(queried()), lambda c: c.download(f"{FILES}/a.mp3", tmp_path / "a.mp3"),
                download=files) == 3
    assert len(files.requests) == 6 and all("authorization" not in r.headers for r in files.requests)
    files = hops(6, httpx.Response(200, content=b"abc"))
    with pytest.raises(DownloadError, match="more than 5 times"):
        call(Script(queried()), lambda c: c.download(f"{FILES}/a.mp3", tmp_path / "b.mp3"), download=files)
    assert len(files.requests) == 6


@pytest.mark.parametrize("location", ["file:///etc/passwd", "ftp://mirror.test/a.mp3"])
def test_a_download_redirect_to_another_scheme_is_refused(tmp_path: Path, location: str) -> None:
    files = Script(httpx.Response(302, headers={"Location": location}), httpx.Response(200, content=b"x"))

    async def main(client: SoundCloneClient) -> int:
        with pytest.raises(DownloadError, match="only http"):
            await client.download(f"{FILES}/a.mp3", tmp_path / "a.mp3")
        return client.requests_sent

    assert call(Script(queried()), main, download=files) == 1  # the refused hop was never sent
    assert len(files.requests) == 1


def test_requests_sent_counts_every_request_actually_sent(tmp_path: Path) -> None:
    api = Script(httpx.Response(503), httpx.ReadTimeout, queried())
    files = Script(httpx.Response(302, headers={"Location": "https://mirror.test/a.mp3"}),
                   httpx.Response(200, content=b"abc"))

    async def main() -> None:
        async with make_client(api, Recorder(), download=files) as client:
            await client.query("audio_1")
            assert client.requests_sent == 3  # each try
            await client.download(f"{FILES}/a.mp3", tmp_path / "a.mp3")
            assert client.requests_sent == 5  # and each redirect hop
            with pytest.raises(DownloadError):
                await client.download("file:///etc/passwd", tmp_path / "b.mp3")
            assert client.requests_sent == 5  # refused before sending: not counted

    run(main)
    assert len(api.requests) + len(files.requests) == 5


# --- every foreign exception is mapped --------------------------------------------------------------

def subclasses(cls: type[BaseException]) -> set[type[BaseException]]:
    found: set[type[BaseException]] = set()
    for sub in cls.__subclasses__():
        found |= {sub, *subclasses(sub)}
    return found


TRANSPORT_ERRORS: list[type[BaseException]] = sorted({httpx.TransportError, *subclasses(httpx.TransportError)}, key=lambda c: c.__name__)
# Also the rest of httpx's tree a transport (or httpx itself) can raise while sending.
OTHER_HTTPX_ERRORS: list[type[BaseException]] = sorted({*subclasses(httpx.HTTPError), httpx.InvalidURL} - set(TRANSPORT_ERRORS),
                            key=lambda c: c.__name__)
NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol,
              httpx.InvalidURL)


def exc_name(exc_class: Any) -> str:
    return str(exc_class.__name__)


def raiser(exc_class: type[BaseException]) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        if issubclass(exc_class, httpx.HTTPStatusError):
            raise exc_class("foreign", request=request, response=httpx.Response(500, request=request))
        if issubclass(exc_class, httpx.RequestError):
            raise exc_class("foreign", request=request)
        raise exc_class("foreign")

    return handler


def test_the_walk_finds_httpx_exception_tree() -> None:
    names = {c.__name__ for c in TRANSPORT_ERRORS}
    assert {"ConnectError", "ConnectTimeout", "ReadTimeout", "WriteTimeout", "PoolTimeout", "ReadError",
            "WriteError", "CloseError", "ProxyError", "UnsupportedProtocol", "LocalProtocolError",
            "RemoteProtocolError", "TimeoutException", "NetworkError", "ProtocolError"} <= names
    assert {"DecodingError", "TooManyRedirects", "HTTPStatusError"} <= {c.__name__ for c in OTHER_HTTPX_ERRORS}


@pytest.mark.parametrize("exc_class", TRANSPORT_ERRORS + OTHER_HTTPX_ERRORS, ids=exc_name)
def test_every_foreign_exception_is_mapped(tmp_path: Path, exc_class: type[Exception]) -> None:
    actions: dict[str, Action] = {
        "query": query, "create_audio": create,
        "download": lambda c: c.download(f"{FILES}/a.mp3", tmp_path / "a.mp3"),
    }
    for name, action in actions.items():
        api = Script(raiser(exc_class)) if name != "download" else Script(queried())
        files = Script(raiser(exc_class))
        sleep = Recorder()
        error: PipelineError | None = None
        try:
            call(api, action, sleep, download=files)
        except PipelineError as mapped:
            error = mapped
        except BaseException as foreign:  # pragma: no cover - the failure this test exists for
            raise AssertionError(f"{name}: {exc_class.__name__} escaped as {type(foreign).__name__}") from foreign
        assert error is not None, f"{name}: {exc_class.__name__} did not raise"
        assert not isinstance(error, httpx.HTTPError | httpx.InvalidURL)
        assert isinstance(error.__cause__, exc_class), (name, error.__cause__)
        assert_no_key(error)
        if name == "create_audio" and not issubclass(exc_class, NEVER_SENT):
            # sent, maybe processed, no usable answer: said so, and never a silent retry
            assert type(error) is AmbiguousError, (exc_class, error)
            assert len(api.requests) == 1 and sleep.delays == []
        if name == "download":
            assert len(files.requests) == 1  # the engine decides about retrying downloads


@pytest.mark.parametrize("exc_class", [httpx.UnsupportedProtocol, httpx.InvalidURL], ids=exc_name)
def test_a_request_that_cannot_be_sent_is_a_config_error_at_once(exc_class: type[Exception]) -> None:
    script = Script(raiser(exc_class))
    with pytest.raises(ConfigError, match="base-url"):
        call(script, create)
    assert len(script.requests) == 1


def test_file_system_errors_are_mapped(tmp_path: Path) -> None:
    files = Script(httpx.Response(200, content=b"abc"))
    with pytest.raises(StorageError, match="no-such-folder") as caught:
        call(Script(queried()), lambda c: c.download(f"{FILES}/a.mp3", tmp_path / "no-such-folder" / "a.mp3"),
             download=files)
    assert isinstance(caught.value.__cause__, OSError)
    with pytest.raises(StorageError, match="missing.wav"):
        call(Script(queried()), lambda c: c.upload(tmp_path / "missing.wav"))


def test_task_ids_cannot_steer_the_query_path() -> None:
    script = Script(queried("../../soundCloning/audios"))
    call(script, lambda c: c.query("../../soundCloning/audios"))
    assert script.requests[0].url.raw_path == b"/api/open-api/v1/audios/..%2F..%2FsoundCloning%2Faudios"
    assert script.requests[0].url.host == BASE.removeprefix("https://")
    assert KEY not in str(script.requests[0].url)
