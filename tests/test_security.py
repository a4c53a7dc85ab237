"""The API key stays secret and goes only to the API origin; downloads fetch only http(s).

The command runs as a subprocess with ``--verbose`` (debug logging and tracebacks on), against the
project's simulator on free loopback ports, with faults on so that retry, ambiguity and error paths
log too. Afterwards every byte it left behind (output folder, journal, stdout, stderr) is searched
for the key.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline.client import SoundCloneClient
from pipeline.config import ApiKey
from pipeline.errors import DownloadError, PipelineError
from pipeline.simulator import FaultProfile, Simulator, SimulatorConfig

KEY = "sk-security-9f8e7d6c5b4a-secret"
MODEL = "model_security"
REPO = Path(__file__).resolve().parent.parent
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy",
                   "all_proxy", "no_proxy")
TEXT = ("The keeper climbed the stair at dusk and lit the lamp. The wick caught at once.\n\n"
        "Below, the tide turned against the rocks, and the ferry's lantern crossed the bay.\n\n"
        "She wrote the pressure in the log: falling. Then she wrote the wind: rising, north-east.\n\n"
        "At midnight the signal from the harbour came twice, then stopped, and did not come again.\n\n"
        "In the morning the gulls were back on the rail, and the sea lay flat and grey to the horizon.\n\n"
        "Nobody came on the ferry that day. She trimmed the wick, polished the glass and waited.\n")


def needles(secret: str) -> list[bytes]:
    """The key as it could land in a file: UTF-8, UTF-16, inside a base64 Authorization value."""
    return [secret.encode(), secret.encode("utf-16-le"), base64.b64encode(secret.encode()),
            base64.b64encode(f"Bearer {secret}".encode())]


def files_containing(folder: Path, secret: str) -> list[Path]:
    found = []
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            if any(needle in data for needle in needles(secret)):
                found.append(path)
    return found


def command_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOUNDCLONE_") and k not in PROXY_VARIABLES}
    env.update(PYTHONUNBUFFERED="1", **extra)
    return env


def audiobook(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], check=False, env=env, cwd=REPO, capture_output=True,
                          timeout=timeout)


@pytest.fixture
def sim() -> Iterator[Simulator]:
    config = SimulatorConfig(api_key=KEY, seed=21, task_base_s=0.02, task_s_per_char=0.0001, preload_voices=(MODEL,))
    with Simulator(config, host="127.0.0.1", port=0, files_port=0) as simulator:
        yield simulator


@pytest.fixture
def manifest(make_manifest: Callable[..., Path]) -> Path:
    return make_manifest(
        title="Secret Book", voice={"model_id": MODEL}, sources={"sec.txt": TEXT}, chunking={"max_chars": 200},
        audio={"m4b": False, "profile": "none"}, chapters=[{"id": "s1", "title": "Dusk", "source": "sec.txt"}],
        api={"poll_interval_s": 0.02, "backoff_base_s": 0.01, "backoff_cap_s": 0.05, "requests_per_minute": 100000,
             "max_attempts": 6})


def test_the_scanner_finds_a_planted_key(tmp_path: Path) -> None:
    (tmp_path / "deep" / "er").mkdir(parents=True)
    (tmp_path / "deep" / "er" / "blob.bin").write_bytes(b"\0\xff" + KEY.encode("utf-16-le") + b"\0")
    (tmp_path / "clean.txt").write_text("nothing to see")
    assert files_containing(tmp_path, KEY) == [tmp_path / "deep" / "er" / "blob.bin"]


def test_verbose_run_leaves_the_key_nowhere(sim: Simulator, manifest: Path, tmp_path: Path) -> None:
    sim.set_faults(FaultProfile.parse(
        "seed=5,429=0.15,5xx=0.1,drop_after_create=0.2,drop_before=0.05,expire=0.2,truncate=0.1,retry_after_s=0"))
    env = command_env(SOUNDCLONE_BASE_URL=sim.base_url, SOUNDCLONE_API_KEY=KEY)
    result = audiobook("-v", "run", str(manifest), env=env)
    output = tmp_path / "build" / "book"
    printed = result.stdout + result.stderr
    assert result.returncode == 0, printed.decode(errors="replace")[-3000:]
    assert b"DEBUG" in result.stderr, "verbose logging was not on: the scan would prove little"
    assert b"INFO pipeline." in result.stderr, "no retry or failed attempt was logged: the faults did not bite"
    assert (output / "journal.sqlite").is_file() and list((output / "cache").rglob("*.mp3"))
    assert (output / "01-s1.mp3").is_file()
    for needle in needles(KEY):
        assert needle not in printed
    assert files_containing(tmp_path, KEY) == []
    ledger = sim.ledger()
    faulted = {status for endpoint in ledger["responses"].values() for status in endpoint} - {"200"}
    assert faulted and set(ledger["files_origin"]["responses"]) - {"200"}, "the faults did not bite"
    assert ledger["files_origin"]["requests_with_authorization"] == 0
    assert ledger["files_origin"]["authorization_seen"] is False


def test_a_refused_key_is_not_printed_either(sim: Simulator, manifest: Path, tmp_path: Path) -> None:
    """Also: plain http by loopback *name* is allowed, and reaches the server (which refuses the key)."""
    wrong = "sk-wrong-0a1b2c3d4e5f-secret"
    env = command_env(SOUNDCLONE_BASE_URL=sim.base_url.replace("127.0.0.1", "localhost"),
                      SOUNDCLONE_API_KEY=wrong)
    result = audiobook("-v", "run", str(manifest), env=env)
    assert result.returncode == 2, result.stderr.decode(errors="replace")
    assert b"Traceback" in result.stderr and b"AuthError" in result.stderr
    for secret in (wrong, KEY):
        for needle in needles(secret):
            assert needle not in result.stdout + result.stderr
        assert files_containing(tmp_path, secret) == []
    ledger = sim.ledger()
    assert ledger["tasks_created"]["total"] == 0
    creates = ledger["responses"]["POST /api/open-api/v1/soundCloning/audios"]
    assert set(creates) == {"401"} and creates["401"] <= 4, "no retry; the batch stops (concurrency 4)"


@pytest.fixture
def trap() -> Iterator[tuple[socket.socket, str]]:
    """A listening loopback socket, set as every proxy: any request the command sends lands here."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.setblocking(False)
        yield listener, f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


def assert_nothing_arrived(listener: socket.socket) -> None:
    try:
        connection, _ = listener.accept()
    except BlockingIOError:
        return
    connection.close()
    raise AssertionError("the command sent a request")


@pytest.mark.parametrize("how", ["env", "flag"])
def test_plain_http_to_a_remote_host_is_refused_before_any_request(
        manifest: Path, tmp_path: Path, trap: tuple[socket.socket, str], how: str) -> None:
    listener, proxy = trap
    proxies = dict.fromkeys(("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"), proxy)
    if how == "env":
        env = command_env(SOUNDCLONE_BASE_URL="http://example.com", SOUNDCLONE_API_KEY=KEY, **proxies)
        result = audiobook("run", str(manifest), env=env, timeout=60)
    else:
        env = command_env(SOUNDCLONE_API_KEY=KEY, **proxies)
        result = audiobook("run", "--base-url", "http://example.com/", str(manifest), env=env, timeout=60)
    message = result.stderr.decode()
    assert result.returncode == 2, message
    assert "plain http" in message and "example.com" in message and "https" in message
    assert KEY not in message + result.stdout.decode()
    assert_nothing_arrived(listener)
    assert not (tmp_path / "build" / "book" / "journal.sqlite").exists()


# --- downloads fetch only http(s) ---------------------------------------------------------------------

def download_with(api: Callable[[httpx.Request], httpx.Response], url: str, dest: Path,
                  files: httpx.AsyncBaseTransport | None = None) -> Any:
    async def main() -> Any:
        async with SoundCloneClient(base_url="https://api.test", api_key=ApiKey(KEY), requests_per_minute=0,
                                    transport=httpx.MockTransport(api), download_transport=files) as client:
            return await client.download(url, dest)

    return asyncio.run(main())


@pytest.mark.parametrize("scheme", ["file", "data", "ftp"])
def test_a_download_url_with_another_scheme_is_refused(tmp_path: Path, scheme: str) -> None:
    secret = tmp_path / "private.txt"
    secret.write_text("private local data")
    url = {"file": secret.as_uri(), "data": "data:audio/mpeg;base64,cHJpdmF0ZQ==",
           "ftp": "ftp://127.0.0.1/private.txt"}[scheme]
    seen: list[httpx.Request] = []

    def never(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=b"private local data")

    dest = tmp_path / "out.mp3"
    with pytest.raises(DownloadError, match="only http"):
        download_with(never, url, dest, files=httpx.MockTransport(never))
    assert seen == [] and not dest.exists()


class _Redirect(BaseHTTPRequestHandler):
    target = ""

    def do_GET(self) -> None:
        self.send_response(302)
        self.send_header("Location", self.target)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_redirect_to_a_local_file_is_not_followed(tmp_path: Path) -> None:
    secret = tmp_path / "private.txt"
    secret.write_text("private local data")
    handler = type("Redirect", (_Redirect,), {"target": secret.as_uri()})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    dest = tmp_path / "out.mp3"
    try:
        with pytest.raises(PipelineError):
            download_with(lambda request: httpx.Response(500), f"http://127.0.0.1:{server.server_port}/a.mp3", dest,
                          files=httpx.AsyncHTTPTransport())
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert not dest.exists() or b"private" not in dest.read_bytes()
