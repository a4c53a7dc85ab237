"""The files origin's URLs and blobs: uploaded samples, and expiring signed links.

Links look like ``<files_url>/files/audio/<task id>.mp3?expires=<unix s>&sig=<hex>``. The signature is an
HMAC of the path and expiry with a per-simulator secret, so a link cannot be extended by editing it and no
API key is ever needed (or wanted) on this origin (reference: "where the URLs point").
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import urllib.parse
import uuid
from dataclasses import dataclass
from enum import Enum

UPLOAD_LIMIT_BYTES = 100 * 1024 * 1024
UPLOAD_MIME_TYPES = {
    "mp3": "audio/mpeg",
    "wav": "audio/wav",
    "aac": "audio/aac",
    "m4a": "audio/mp4",
    "flac": "audio/flac",
    "ogg": "audio/ogg",
    "mp4": "video/mp4",
    "mov": "video/quicktime",
    "avi": "video/x-msvideo",
    "webm": "video/webm",
    "mkv": "video/x-matroska",
    "m4v": "video/x-m4v",
    "flv": "video/x-flv",
}


class LinkState(Enum):
    """Outcome of checking a signed link."""

    VALID = "valid"
    EXPIRED = "expired"
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class Upload:
    """An uploaded file as stored: served at ``/files/uploads/<name>``."""

    name: str
    filename: str
    mime_type: str
    data: bytes


class FileStore:
    """Uploaded blobs plus link signing; thread-safe."""

    def __init__(self, *, ttl_s: float) -> None:
        self._secret = secrets.token_bytes(32)
        self._ttl_s = ttl_s
        self._lock = threading.Lock()
        self._uploads: dict[str, Upload] = {}

    def add_upload(self, *, filename: str, extension: str, data: bytes) -> Upload:
        """Store an upload under a fresh ASCII name (the original filename may hold any script)."""
        upload = Upload(f"{uuid.uuid4().hex}.{extension}", filename, UPLOAD_MIME_TYPES[extension], data)
        with self._lock:
            self._uploads[upload.name] = upload
        return upload

    def get_upload(self, name: str) -> Upload | None:
        with self._lock:
            return self._uploads.get(name)

    def sign(self, path: str, *, now: float) -> str:
        """``path`` with an expiry ``ttl_s`` after ``now`` and its signature as the query string."""
        expires = int(now + self._ttl_s)
        return f"{path}?expires={expires}&sig={self._signature(path, expires)}"

    def check(self, path: str, query: str, *, now: float) -> LinkState:
        """Whether the link ``path?query`` is genuine and unexpired at ``now``."""
        params = urllib.parse.parse_qs(query)
        try:
            expires = int(params["expires"][0])
            signature = params["sig"][0]
        except (KeyError, IndexError, ValueError):
            return LinkState.INVALID
        if not hmac.compare_digest(signature, self._signature(path, expires)):
            return LinkState.INVALID
        return LinkState.VALID if now <= expires else LinkState.EXPIRED

    def _signature(self, path: str, expires: int) -> str:
        return hmac.new(self._secret, f"{path}\n{expires}".encode(), hashlib.sha256).hexdigest()[:32]
