"""Run configuration: precedence flag > environment > manifest > default, the key, safe base URLs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pipeline.config import (
    ENV_API_KEY,
    ENV_API_KEY_FILE,
    ENV_BASE_URL,
    ApiKey,
    RunConfig,
    check_base_url,
    is_loopback,
    read_api_key,
    resolve_run_config,
)
from pipeline.errors import ConfigError
from pipeline.manifest import load_manifest
from pipeline.models import API_BASE_URL, ApiSettings

KEY = "sk-config-4b1d9e0a77-secret"
FLAG_URL = "https://flag.example"
ENV_URL = "https://env.example"
MANIFEST_URL = "https://manifest.example"


DEFAULT_API = ApiSettings()


def resolve(api: ApiSettings = DEFAULT_API, env: dict[str, str] | None = None, **flags: object) -> RunConfig:
    return resolve_run_config(api, env={ENV_API_KEY: KEY, **(env or {})}, **flags)  # type: ignore[arg-type]


# --- precedence -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("flag", "env", "manifest", "expected"), [
    (FLAG_URL, ENV_URL, MANIFEST_URL, FLAG_URL),
    (None, ENV_URL, MANIFEST_URL, ENV_URL),
    (None, None, MANIFEST_URL, MANIFEST_URL),
    (None, None, None, API_BASE_URL),
    (FLAG_URL, None, MANIFEST_URL, FLAG_URL),
    (FLAG_URL, ENV_URL, None, FLAG_URL),
    (None, "", MANIFEST_URL, MANIFEST_URL),  # an empty variable is no setting
])
def test_base_url_precedence(flag: str | None, env: str | None, manifest: str | None, expected: str) -> None:
    config = resolve(ApiSettings(base_url=manifest), env={} if env is None else {ENV_BASE_URL: env},
                     base_url=flag)
    assert config.base_url == expected


def test_base_url_from_a_loaded_manifest_and_the_process_environment(
        make_manifest, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = load_manifest(make_manifest(api={"base_url": MANIFEST_URL + "/", "concurrency": 7}))
    monkeypatch.setenv(ENV_API_KEY, KEY)
    config = resolve_run_config(manifest.api)  # env=None: os.environ
    assert (config.base_url, config.concurrency) == (MANIFEST_URL, 7)
    monkeypatch.setenv(ENV_BASE_URL, ENV_URL)
    assert resolve_run_config(manifest.api).base_url == ENV_URL
    assert resolve_run_config(manifest.api, base_url=FLAG_URL).base_url == FLAG_URL


def test_a_bad_url_at_a_lower_level_does_not_matter_when_a_higher_one_is_set() -> None:
    config = resolve(ApiSettings(base_url="http://manifest.example"), env={ENV_BASE_URL: ENV_URL})
    assert config.base_url == ENV_URL


def test_flags_override_the_manifest_and_the_manifest_overrides_defaults() -> None:
    api = ApiSettings(concurrency=6, poll_interval_s=2.5, requests_per_minute=30, max_attempts=5,
                      request_timeout_s=9, task_timeout_s=99, backoff_base_s=0.5, backoff_cap_s=5)
    from_manifest = resolve(api)
    assert (from_manifest.concurrency, from_manifest.poll_interval_s, from_manifest.requests_per_minute,
            from_manifest.max_attempts, from_manifest.request_timeout_s, from_manifest.task_timeout_s,
            from_manifest.backoff_base_s, from_manifest.backoff_cap_s) == (6, 2.5, 30, 5, 9, 99, 0.5, 5)
    flagged = resolve(api, concurrency=2, poll_interval_s=0.1, max_cost=12.5, backoff_base_s=0.0,
                      backoff_cap_s=0.2)
    assert (flagged.concurrency, flagged.poll_interval_s, flagged.max_cost) == (2, 0.1, 12.5)
    assert (flagged.backoff_base_s, flagged.backoff_cap_s) == (0.0, 0.2)  # 0 is a value, not "unset"
    defaults = resolve()
    assert (defaults.concurrency, defaults.poll_interval_s, defaults.max_cost) == (
        ApiSettings().concurrency, ApiSettings().poll_interval_s, None)


@pytest.mark.parametrize("flags", [{"concurrency": 0}, {"concurrency": -1}, {"poll_interval_s": 0},
                                   {"poll_interval_s": -0.5}])
def test_bad_flags_are_config_errors(flags: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match="--concurrency|--poll-interval") as caught:
        resolve(**flags)
    assert caught.value.exit_code == 2


def test_run_config_is_frozen() -> None:
    config = resolve()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.base_url = "https://other.example"  # type: ignore[misc]


# --- the key --------------------------------------------------------------------------------------

def test_key_from_the_environment_is_stripped() -> None:
    assert read_api_key(env={ENV_API_KEY: f"  {KEY}\n"}).reveal() == KEY


def test_key_from_a_key_file_flag_wins_over_the_environment(tmp_path: Path) -> None:
    key_file = tmp_path / "key.txt"
    key_file.write_text("sk-from-file\n", encoding="utf-8")
    assert read_api_key(env={ENV_API_KEY: KEY}, key_file=key_file).reveal() == "sk-from-file"
    config = resolve_run_config(ApiSettings(), env={ENV_API_KEY: KEY}, key_file=key_file)
    assert config.api_key == ApiKey("sk-from-file")


def test_key_from_the_key_file_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "key.txt").write_text(f"{KEY}\r\n", encoding="utf-8")
    assert read_api_key(env={ENV_API_KEY_FILE: str(tmp_path / "key.txt")}).reveal() == KEY
    monkeypatch.setenv("HOME", str(tmp_path))
    assert read_api_key(env={ENV_API_KEY_FILE: "~/key.txt"}).reveal() == KEY
    # the key itself, when set, wins over the file variable
    assert read_api_key(env={ENV_API_KEY: "sk-direct", ENV_API_KEY_FILE: "~/key.txt"}).reveal() == "sk-direct"


def test_an_explicit_key_wins_over_everything(tmp_path: Path) -> None:
    config = resolve_run_config(ApiSettings(), env={ENV_API_KEY: KEY}, api_key=ApiKey("sk-explicit"),
                                key_file=tmp_path / "missing")
    assert config.api_key.reveal() == "sk-explicit"


@pytest.mark.parametrize("env", [{}, {ENV_API_KEY: "   "}, {ENV_API_KEY: "", ENV_API_KEY_FILE: ""}])
def test_missing_key_says_how_to_set_one_or_simulate(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_run_config(ApiSettings(), env=env)
    message = str(caught.value)
    assert "--simulate" in message and ENV_API_KEY in message and "--api-key-file" in message
    assert caught.value.exit_code == 2


def test_unreadable_or_empty_key_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the API key file .*missing.txt"):
        read_api_key(env={}, key_file=tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text(" \n", encoding="utf-8")
    with pytest.raises(ConfigError, match="empty"):
        read_api_key(env={ENV_API_KEY_FILE: str(tmp_path / "empty.txt")})
    with pytest.raises(ConfigError, match="cannot read"):
        read_api_key(env={}, key_file=tmp_path)  # a folder


def test_the_key_never_prints(tmp_path: Path) -> None:
    key = ApiKey(KEY)
    config = resolve_run_config(ApiSettings(), env={ENV_API_KEY: KEY})
    for text in (repr(key), str(key), f"{key}", f"{key!r}", repr(config), str(config),
                 repr(dataclasses.asdict(config)), repr(dataclasses.replace(config, concurrency=1))):
        assert KEY not in text, text
    assert "***" in repr(config)
    assert config.api_key.reveal() == KEY  # still usable by the client
    assert key == ApiKey(KEY) and key != ApiKey("other") and hash(key) == hash(ApiKey(KEY))


# --- base URL safety ------------------------------------------------------------------------------

@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8700", "http://localhost:8700/", "http://[::1]:8700", "http://127.0.0.53",
    "HTTP://LOCALHOST:1", "https://www.jimmyai.cn", "https://10.1.2.3:8443",
])
def test_accepted_base_urls(url: str) -> None:
    assert check_base_url(url, origin="--base-url") == url.rstrip("/")
    assert resolve(base_url=url).base_url == url.rstrip("/")


@pytest.mark.parametrize("url", [
    "http://example.com", "http://www.jimmyai.cn", "http://10.0.0.7:8700", "http://0.0.0.0:8700",
    "http://localhost.example.com", "http://127.0.0.1.nip.io", "http://[2001:db8::1]/",
])
def test_plain_http_is_refused_for_other_hosts(url: str) -> None:
    with pytest.raises(ConfigError, match="plain http") as caught:
        resolve(base_url=url)
    assert "https" in str(caught.value) and caught.value.exit_code == 2
    with pytest.raises(ConfigError, match=ENV_BASE_URL):
        resolve(env={ENV_BASE_URL: url})
    with pytest.raises(ConfigError, match="manifest api.base_url"):
        resolve(ApiSettings(base_url=url))


@pytest.mark.parametrize("url", ["ftp://www.jimmyai.cn", "file:///tmp/api", "www.jimmyai.cn", "https://",
                                 "ws://127.0.0.1:8700", "data:text/plain,hi", "//www.jimmyai.cn"])
def test_non_http_schemes_are_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="not an http"):
        resolve(base_url=url)


def test_refusals_happen_before_the_key_is_read() -> None:
    """A bad URL is reported even when no key is set (and the key error does not mask it)."""
    with pytest.raises(ConfigError, match="plain http"):
        resolve_run_config(ApiSettings(), env={ENV_BASE_URL: "http://example.com"})


@pytest.mark.parametrize(("host", "loopback"), [
    ("localhost", True), ("127.0.0.1", True), ("127.255.0.1", True), ("::1", True), ("[::1]", True),
    ("0.0.0.0", False), ("example.com", False), ("192.168.1.1", False), ("", False),
])
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
