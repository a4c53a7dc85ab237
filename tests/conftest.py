"""Shared fixtures: a clean environment for every test and a manifest factory.

``make_manifest(**overrides)`` writes a small valid manifest (and its chapter sources) into the
test's ``tmp_path`` and returns the manifest's path; keyword arguments replace top-level keys (``None``
removes one), ``sources`` adds or replaces source files (text or bytes), and ``raw`` writes the
manifest's bytes verbatim (for YAML syntax and encoding tests).

Hypothesis runs under one settings profile, loaded here before any test module builds its own
``@settings(...)`` (which inherit whatever they do not set): ``ci``, derandomised, everywhere unless
``SOAK=1`` picks ``soak``, randomised with ten times the examples.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_support import write_files
from hypothesis import settings

ENV_PREFIX = "SOUNDCLONE_"
KEPT_ENV = {"SOUNDCLONE_FFMPEG"}

# --- Hypothesis profiles ---------------------------------------------------------------------------
# Derandomised by default, in CI and on a laptop alike (Hypothesis picks its own "ci" profile only when
# it detects CI; this one replaces it, built on Hypothesis's defaults, so $CI changes nothing): the
# examples come from each test's source, so a red build fails the same way everywhere. print_blob
# prints a @reproduce_failure line for a failure found by the randomised soak.
settings.register_profile("ci", settings.get_profile("default"), derandomize=True, deadline=None,
                          print_blob=True)
settings.register_profile("soak", settings.get_profile("ci"), derandomize=False,
                          max_examples=10 * settings.get_profile("ci").max_examples)
settings.load_profile("soak" if os.environ.get("SOAK", "") not in ("", "0") else "ci")

DEFAULT_SOURCES: dict[str, str] = {
    "ch01.txt": "The ferry left at dawn. Elsie stood on the jetty.\n\nThe light was still on.\n",
    "ch02.md": "# The Log\n\nShe opened the *log* and read the [first entry](https://example.org).\n",
}


def default_manifest() -> dict[str, Any]:
    """The manifest ``make_manifest()`` writes when given no overrides."""
    return {
        "title": "Test Book",
        "language": "English",
        "voice": {"model_id": "model_test"},
        "chapters": [
            {"id": "ch01", "title": "One", "source": "ch01.txt"},
            {"id": "ch02", "title": "Two", "source": "ch02.md"},
        ],
    }


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's SOUNDCLONE_* settings (API key, base URL, ...); the ffmpeg to test
    with (SOUNDCLONE_FFMPEG, which CI sets to run the audio tests against both builds) is kept."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX) and name not in KEPT_ENV:
            monkeypatch.delenv(name, raising=False)


ManifestFactory = Callable[..., Path]


@pytest.fixture
def make_manifest(tmp_path: Path) -> ManifestFactory:
    """A factory writing a manifest and its sources under ``tmp_path``; returns the manifest path."""

    def factory(*, sources: Mapping[str, str | bytes | None] | None = None, raw: str | bytes | None = None,
                name: str = "book.yaml", **overrides: Any) -> Path:
        write_files(tmp_path, {**DEFAULT_SOURCES, **(sources or {})})
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if raw is not None:
            path.write_bytes(raw if isinstance(raw, bytes) else raw.encode("utf-8"))
            return path
        data = default_manifest()
        for key, value in overrides.items():
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
        path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
        return path

    return factory


# --- segmentation scores in the terminal summary (shown with or without -s) ---------------------

_SCORES_KEY = pytest.StashKey[dict]()


@pytest.fixture
def segmentation_scores(request: pytest.FixtureRequest) -> dict[str, tuple[int, int]]:
    """A dict the segmentation tests fill with ``name -> (matched, total)`` for the summary."""
    return request.config.stash.setdefault(_SCORES_KEY, {})


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Under pytest-xdist, a worker hands its scores to the controller, which prints the summary."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["segmentation_scores"] = session.config.stash.get(_SCORES_KEY, {})


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    scores = getattr(node, "workeroutput", {}).get("segmentation_scores") or {}
    node.config.stash.setdefault(_SCORES_KEY, {}).update({name: tuple(pair) for name, pair in scores.items()})


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    scores = config.stash.get(_SCORES_KEY, {})
    if scores:
        terminalreporter.section("sentence segmentation scores")
        for name, (matched, total) in sorted(scores.items()):
            terminalreporter.write_line(f"{name:<28} {matched:>4}/{total}")
