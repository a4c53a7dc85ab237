"""Real sockets for the simulated service: an API origin and a separate files origin.

Both are stdlib ``ThreadingHTTPServer`` instances speaking HTTP/1.1 with keep-alive, each on its own
port, each served by its own thread. Stopping closes every open connection (so handler threads blocked
on an idle keep-alive socket wake up), interrupts slow-response delays, and joins every thread: nothing
is left open to trigger a ``ResourceWarning``.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import traceback
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

from pipeline.simulator.config import SimulatorConfig
from pipeline.simulator.faults import FaultProfile
from pipeline.simulator.files import UPLOAD_LIMIT_BYTES
from pipeline.simulator.service import HttpRequest, HttpResponse, SoundCloneService, error

IDLE_CONNECTION_TIMEOUT_S = 60.0  # an idle keep-alive connection is closed after this
MAX_BODY_BYTES = UPLOAD_LIMIT_BYTES + 1024 * 1024  # the upload limit plus multipart overhead
_WILDCARD_HOSTS = ("", "0.0.0.0", "::")


class _OriginServer(ThreadingHTTPServer):
    """One origin; remembers its open connections so that ``close_connections`` can end them."""

    daemon_threads = True
    block_on_close = True  # server_close() joins every handler thread
    # socketserver's default backlog of 5 resets connections when a client opens many at once
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], service: SoundCloneService, *, files: bool, verbose: bool):
        self.service = service
        self.files = files
        self.verbose = verbose
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        """Shut down every open connection; their handler threads then finish on their own."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the peer
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that hangs up mid-response is normal here (fault tests do it on purpose)
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        if self.verbose:
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "SoundCloneSimulator/1.0"
    timeout = IDLE_CONNECTION_TIMEOUT_S
    # headers and body go out in separate writes; with Nagle on, delayed ACKs add ~40 ms per response
    disable_nagle_algorithm = True
    server: _OriginServer

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    def _handle(self) -> None:
        body = self._read_body()
        if body is None:
            return
        split = urllib.parse.urlsplit(self.path)
        request = HttpRequest(
            method=self.command,
            path=urllib.parse.unquote(split.path),
            query=split.query,
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
        )
        service = self.server.service
        try:
            response = service.handle_file(request) if self.server.files else service.handle_api(request)
        except Exception as exc:  # noqa: BLE001 (a simulator bug must still answer, and say what broke)
            if self.server.verbose:
                traceback.print_exc()
            response = error(500, f"internal: simulator error {type(exc).__name__}: {exc}")
        self._send(response)

    def _read_body(self) -> bytes | None:
        """The request body (Content-Length or chunked); None when a 4xx was already sent."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self._send(error(400, "Content-Length: must be an integer"), close=True)
            return None
        if length > MAX_BODY_BYTES:
            self._send(error(413, f"body: larger than {MAX_BODY_BYTES} bytes"), close=True)
            return None
        return self.rfile.read(length) if length else b""

    def _read_chunked(self) -> bytes | None:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            total += size
            if total > MAX_BODY_BYTES:
                self._send(error(413, f"body: larger than {MAX_BODY_BYTES} bytes"), close=True)
                return None
            parts.append(self.rfile.read(size))
            self.rfile.readline(8)

    def _send(self, response: HttpResponse, *, close: bool = False) -> None:
        if response.drop:
            self.close_connection = True  # no status line, no headers: the socket just closes
            return
        body = response.body
        truncated = response.truncate_at is not None
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        if close or truncated:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body[: response.truncate_at] if truncated else body)
        self.wfile.flush()


class Simulator:
    """The SoundClone API simulator on two loopback ports; a context manager.

    ``Simulator(config, host="127.0.0.1", port=0, files_port=0)``: port 0 picks a free port. After
    :meth:`start` (or entering the ``with`` block) ``base_url`` is the API origin to use as the client's
    base URL and ``files_url`` the origin that serves audio, subtitles and uploads.
    """

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        files_port: int = 0,
        verbose: bool = False,
    ) -> None:
        self.config = config or SimulatorConfig()
        self._host = host
        self._port = port
        self._files_port = files_port
        self._verbose = verbose
        self._stopping = threading.Event()
        self.service = SoundCloneService(self.config, sleep=self._interruptible_sleep)
        self._servers: list[_OriginServer] = []
        self._threads: list[threading.Thread] = []

    # --- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind both ports and serve in background threads; returns self.

        Raises:
            OSError: a port is taken.
            RuntimeError: already started.
        """
        if self._servers:
            raise RuntimeError("the simulator is already running")
        self._stopping.clear()
        api = _OriginServer((self._host, self._port), self.service, files=False, verbose=self._verbose)
        try:
            files = _OriginServer(
                (self._host, self._files_port), self.service, files=True, verbose=self._verbose
            )
        except OSError:
            api.server_close()
            raise
        self._servers = [api, files]
        self.service.files_base_url = self.files_url
        for server, name in ((api, "sim-api"), (files, "sim-files")):
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=name)
            thread.daemon = True
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop serving, close every connection and join every thread. Safe to call twice."""
        self._stopping.set()
        for server in self._servers:
            server.shutdown()
        for server in self._servers:
            server.close_connections()
            server.server_close()
        for thread in self._threads:
            thread.join()
        self._servers = []
        self._threads = []

    def serve_forever(self) -> None:
        """Block until interrupted (Ctrl-C), then stop. Starts the simulator if needed."""
        if not self._servers:
            self.start()
        try:
            self._stopping.wait()
        finally:
            self.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- addresses ------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The API origin, e.g. ``http://127.0.0.1:8700`` (the client's base URL)."""
        return self._url(0)

    @property
    def files_url(self) -> str:
        """The files origin that serves ``audioUrl``, ``subtitleFile`` and upload links."""
        return self._url(1)

    def _url(self, index: int) -> str:
        if not self._servers:
            raise RuntimeError("the simulator is not running: call start() or use it as a context manager")
        address = self._servers[index].server_address
        host, port = str(address[0]), int(address[1])
        if host in _WILDCARD_HOSTS:
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}"

    # --- controls -------------------------------------------------------------------------------------

    def register_voice(
        self, model_id: str, *, activated: bool = False, created_at: float | None = None
    ) -> dict[str, Any]:
        """Make ``model_id`` usable by audio tasks, as if its preview completed at ``created_at``
        (default: now). Unless ``activated``, it expires 3 days later if no audio task completes."""
        return self.service.register_voice(model_id, activated=activated, created_at=created_at)

    def advance_clock(self, seconds: float) -> float:
        """Move the simulator clock forward by ``seconds``; returns the new time (unix seconds)."""
        return self.service.clock.advance(seconds)

    def now(self) -> float:
        """The simulator clock (unix seconds)."""
        return self.service.clock.now()

    @property
    def faults(self) -> FaultProfile:
        """The fault profile in force (seed filled in)."""
        return self.service.faults

    def set_faults(self, profile: FaultProfile) -> None:
        """Replace the fault profile for every later request."""
        self.service.set_faults(profile)

    def ledger(self) -> dict[str, Any]:
        """What the account was billed and what the servers saw; see :mod:`pipeline.simulator`."""
        return self.service.ledger()

    def _interruptible_sleep(self, seconds: float) -> None:
        self._stopping.wait(seconds)
