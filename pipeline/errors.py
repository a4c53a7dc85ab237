"""The one exception tree of the pipeline.

Every error a user can cause or meet is a :class:`PipelineError`; its message says what went wrong,
where (file, line, field; chapter and chunk; task id; HTTP status) and how to fix it. The CLI prints
the message and exits non-zero; a traceback is shown only with ``--verbose``. Programming errors stay
``ValueError`` / ``RuntimeError`` / ``AssertionError``.

    PipelineError
    ├── ManifestError          the manifest or a source text is invalid (carries every problem found)
    ├── ChunkingError          text that cannot be cut into valid API chunks
    ├── ConfigError            missing API key, bad base URL, unusable flag or environment value
    │   └── EndpointError      the base URL answers, but not as the API (a redirect, a page that is
    │                          not JSON); stops the batch
    ├── VoiceError             unknown, expired or unusable voice
    ├── CostLimitError         the estimate exceeds --max-cost
    ├── ApiError               the API answered with an error (status, code, msg kept)
    │   ├── AuthError          401/403: the key is wrong; stops the batch
    │   ├── BalanceError       insufficient balance; stops the batch
    │   ├── RequestRejected    a validation error: fails that chunk only
    │   ├── UnknownTaskStatus  a task reports a status the client does not know: fails that chunk
    │   ├── ApiUnreachable     the API cannot be reached at all (repeated connection failures); stops
    │   ├── ApiUnhealthy       several creates in a row got no usable answer; stops (retries cost money)
    │   └── TransientError     429, 5xx, network: retried with backoff
    │       └── AmbiguousError the request may have reached the server (a create may have been billed)
    ├── DownloadError          an audio or subtitle download failed or did not verify
    │   └── LinkExpired        a completed task's audio is gone at the API (its links stay dead)
    ├── AssemblyError          stitching, encoding or tagging a chapter failed
    ├── AudioToolError         ffmpeg is missing or failed
    ├── SourceFileError        a manuscript given to `init` cannot be imported (corrupt, hostile, not
    │                          what its name says); names the file and what is wrong; nothing written
    ├── StorageError           the file system refused a write or read (read-only, full, a file where a
    │                          folder should be); names the path and the fix; stops the batch
    └── StateError             the journal is unreadable, locked, from a newer version, or the output
                               folder belongs to another book

Errors that stop a batch (every later chunk would meet them too) are listed in
:data:`STOPS_BATCH`; the others fail one chunk or chapter and the batch goes on.
"""

from __future__ import annotations

from dataclasses import dataclass


class PipelineError(Exception):
    """Root of every error the pipeline reports to a user."""

    exit_code: int = 1


class ConfigError(PipelineError):
    exit_code = 2


@dataclass(frozen=True)
class Problem:
    """One validation problem: where it is and what to do about it."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}"


class ManifestError(PipelineError):
    """The manifest (or a text it names) is invalid. ``problems`` lists every one found."""

    exit_code = 2

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} in the manifest:"
        super().__init__("\n".join([head, *(f"  {p}" for p in self.problems)]))


class ChunkingError(PipelineError):
    exit_code = 2


class VoiceError(PipelineError):
    exit_code = 2


class CostLimitError(PipelineError):
    exit_code = 2


class ApiError(PipelineError):
    """The API answered with an error. ``status`` is the HTTP status (None when no response came)."""

    def __init__(self, message: str, *, status: int | None = None, code: object = None,
                 msg: str | None = None, task_id: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.msg = msg
        self.task_id = task_id


class AuthError(ApiError):
    exit_code = 2


class BalanceError(ApiError):
    exit_code = 2


class RequestRejected(ApiError):
    pass


class TransientError(ApiError):
    """Retry may help. ``retry_after_s`` carries the server's ``Retry-After`` when it sent one."""

    def __init__(self, message: str, *, retry_after_s: float | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after_s = retry_after_s


class AmbiguousError(TransientError):
    """The request was sent and no answer came: the server may have acted on it."""


class DownloadError(PipelineError):
    pass


class AssemblyError(PipelineError):
    pass


class AudioToolError(PipelineError):
    exit_code = 2


class StateError(PipelineError):
    exit_code = 2


class EndpointError(ConfigError):
    """The base URL answers, but not as the SoundClone API: a redirect (never followed for the API: the
    key may not go to the redirect's target) or a body that is not the API's JSON envelope.

    ``may_have_processed`` is True when the answer came with a success status to a create request:
    something behind the URL accepted it, so a task may exist.
    """

    def __init__(self, message: str, *, url: str, may_have_processed: bool = False) -> None:
        super().__init__(message)
        self.url = url
        self.may_have_processed = may_have_processed


class UnknownTaskStatus(ApiError):
    """A task reports a status that is neither a known final one nor a known in-progress one."""


class ApiUnreachable(ApiError):
    """Repeated connection failures with no answer in between: the API (or the network) is down."""


class ApiUnhealthy(ApiError):
    """Several create requests in a row got no usable answer: retrying them could pay for each."""


class LinkExpired(DownloadError):
    """A completed task's audio cannot be fetched any more: its link is refused and a fresh query
    gives no working one. Only a new (paid) task replaces it."""


class SourceFileError(PipelineError):
    """A manuscript given to ``audiobook init`` cannot be imported. The message is one line: the file,
    what is wrong with it (a corrupt archive, a zip bomb, an unsafe member name, XML entities, a DOCX
    that is not one) and, where there is one, the fix."""

    exit_code = 2

    def __init__(self, path: object, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


class StorageError(PipelineError):
    """The file system refused an operation on ``path``; the message says what and how to fix it."""

    def __init__(self, message: str, *, path: object = None) -> None:
        super().__init__(message)
        self.path = path


# Errors after which every later chunk would fail the same way: the engine stops the batch (nothing
# finished is lost; a rerun resumes).
STOPS_BATCH: tuple[type[PipelineError], ...] = (
    AuthError, BalanceError, EndpointError, ApiUnreachable, ApiUnhealthy, StorageError, StateError,
)
