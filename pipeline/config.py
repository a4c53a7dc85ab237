"""Run configuration: a frozen value resolved once, with precedence flag > environment > manifest > default.

The API key is wrapped in :class:`ApiKey`, whose ``repr`` and ``str`` never show it; only the client
calls :meth:`ApiKey.reveal`, to build the Authorization header for the API host.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from pipeline.errors import ConfigError
from pipeline.models import API_BASE_URL, ApiSettings

ENV_API_KEY = "SOUNDCLONE_API_KEY"
ENV_API_KEY_FILE = "SOUNDCLONE_API_KEY_FILE"
ENV_BASE_URL = "SOUNDCLONE_BASE_URL"


class ApiKey:
    """A secret that does not print itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "ApiKey(***)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ApiKey) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, kw_only=True)
class RunConfig(ApiSettings):
    """The manifest's ``api:`` settings with flags and environment applied, plus what only a run has:
    the resolved base URL, the key and the cost limit."""

    base_url: str
    api_key: ApiKey
    max_cost: float | None = None


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_base_url(url: str, *, origin: str) -> str:
    """Accept an https URL, or plain http only for a loopback host (a local simulator)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        raise ConfigError(f"{origin}: '{url}' is not an http(s) URL ({str(exc).lower()}); "
                          f"use e.g. {API_BASE_URL}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in url.strip()):
        raise ConfigError(f"{origin}: '{url}' is not an http(s) URL; use e.g. {API_BASE_URL}")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ConfigError(f"{origin}: plain http to {parts.hostname} would send the API key unencrypted; "
                          "use https (plain http is allowed only for 127.0.0.1 / localhost)")
    return url.rstrip("/")


def read_api_key(*, env: Mapping[str, str], key_file: Path | None = None) -> ApiKey:
    """The key from ``key_file`` (flag), else ``SOUNDCLONE_API_KEY``, else ``SOUNDCLONE_API_KEY_FILE``."""
    path = key_file
    if path is None and env.get(ENV_API_KEY, "").strip():
        return _checked_key(env[ENV_API_KEY].strip(), origin=ENV_API_KEY)
    if path is None and env.get(ENV_API_KEY_FILE):
        path = Path(env[ENV_API_KEY_FILE]).expanduser()
    if path is None:
        raise ConfigError(f"no API key: set {ENV_API_KEY} (or {ENV_API_KEY_FILE}, or --api-key-file), "
                          "or rehearse with --simulate")
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the API key file {path}: {exc.strerror}; check the path, or set "
                          f"{ENV_API_KEY}") from exc
    except UnicodeDecodeError:
        raise ConfigError(f"the API key file {path} is not text (not UTF-8); put only the key in it") from None
    if not value:
        raise ConfigError(f"the API key file {path} is empty; put the key in it")
    return _checked_key(value, origin=f"the API key file {path}")


def _checked_key(value: str, *, origin: str) -> ApiKey:
    """A key must fit in an HTTP header: printable ASCII, no spaces (never echo it back)."""
    if not all(33 <= ord(ch) <= 126 for ch in value):
        raise ConfigError(f"{origin}: the API key holds spaces, a newline or non-ASCII characters; "
                          "copy the key again exactly as the console shows it")
    return ApiKey(value)


def resolve_run_config(api: ApiSettings, *, env: Mapping[str, str] | None = None,
                       base_url: str | None = None, api_key: ApiKey | None = None,
                       key_file: Path | None = None, concurrency: int | None = None,
                       poll_interval_s: float | None = None, max_cost: float | None = None,
                       backoff_base_s: float | None = None, backoff_cap_s: float | None = None) -> RunConfig:
    """Merge flags (the keyword arguments), environment and the manifest's ``api:`` section."""
    env = os.environ if env is None else env
    if base_url is not None:
        url = check_base_url(base_url, origin="--base-url")
    elif env.get(ENV_BASE_URL):
        url = check_base_url(env[ENV_BASE_URL], origin=ENV_BASE_URL)
    elif api.base_url:
        url = check_base_url(api.base_url, origin="manifest api.base_url")
    else:
        url = API_BASE_URL
    if concurrency is not None and concurrency < 1:
        raise ConfigError("--concurrency must be at least 1")
    if poll_interval_s is not None and poll_interval_s <= 0:
        raise ConfigError("--poll-interval must be a positive number of seconds")
    flags = {"concurrency": concurrency, "poll_interval_s": poll_interval_s, "backoff_base_s": backoff_base_s,
             "backoff_cap_s": backoff_cap_s}
    settings = {**dataclasses.asdict(api), **{k: v for k, v in flags.items() if v is not None}, "base_url": url}
    return RunConfig(**settings,
                     api_key=api_key if api_key is not None else read_api_key(env=env, key_file=key_file),
                     max_cost=max_cost)
