"""``audiobook plan`` end to end: exit codes, output, no network, golden chunking of the sample book.

Golden files live in tests/golden/; regenerate them on purpose with ``UPDATE_GOLDEN=1 pytest
tests/test_cli_plan.py`` and review the diff.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import main

REPO = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"
# Fields that describe the journal's state rather than the cut: left out of the golden files.
VOLATILE = {"changes", "qc_retakes_worst_case"}


@pytest.fixture
def sample_book(tmp_path: Path) -> Path:
    """The sample manifests and texts copied to a fresh folder, so no journal of an earlier run is read."""
    shutil.copytree(REPO / "manifests", tmp_path / "manifests")
    shutil.copytree(REPO / "sample_texts", tmp_path / "sample_texts")
    return tmp_path


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("plan must not touch the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def test_plan_prints_chapters_and_totals(sample_book: Path, no_network) -> None:
    result = invoke("plan", str(sample_book / "manifests" / "sample.yaml"))
    assert result.exit_code == 0, result.output
    for chapter_id in ("ch01", "ch02", "ch03", "ch04"):
        assert chapter_id in result.output
    assert "total" in result.output and "lower bound" in result.output and "USD" in result.output


def test_plan_json_is_the_documented_document(sample_book: Path, no_network) -> None:
    result = invoke("plan", "--json", str(sample_book / "manifests" / "sample.yaml"))
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert [c["id"] for c in doc["chapters"]] == ["ch01", "ch02", "ch03", "ch04"]
    chunk = doc["chapters"][0]["chunks"][0]
    assert {"index", "key", "text", "chars", "billed_chars", "pause_before", "pause_after"} <= set(chunk)
    assert doc["totals"]["tasks"] <= 1.05 * doc["totals"]["lower_bound_tasks"] + 1


def test_plan_one_chapter(sample_book: Path) -> None:
    result = invoke("plan", "--json", "--chapter", "ch03", str(sample_book / "manifests" / "sample.yaml"))
    assert result.exit_code == 0
    assert [c["id"] for c in json.loads(result.stdout)["chapters"]] == ["ch03"]


def test_unknown_chapter_is_a_usage_error_listing_the_chapters(sample_book: Path) -> None:
    result = invoke("plan", "--chapter", "ch99", str(sample_book / "manifests" / "sample.yaml"))
    assert result.exit_code == 2
    assert "ch99" in result.stderr and "ch01, ch02, ch03, ch04" in result.stderr


def test_bad_manifest_exits_2_with_every_problem_and_no_traceback(make_manifest) -> None:
    path = make_manifest(voice={"model_id": "m", "emotoin": "sad", "speed": 9})
    result = invoke("plan", str(path))
    assert result.exit_code == 2
    assert "2 problems in the manifest" in result.stderr
    assert "did you mean 'emotion'" in result.stderr and "voice.speed" in result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""


def test_verbose_shows_the_traceback(make_manifest) -> None:
    result = invoke("--verbose", "plan", str(make_manifest(title=None)))
    assert result.exit_code == 2
    assert "Traceback" in result.stderr and "ManifestError" in result.stderr


@pytest.mark.parametrize("name", ["nope.yaml", "."])
def test_missing_manifest_or_folder(tmp_path: Path, name: str, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("plan", name)
    assert result.exit_code == 2 and "error:" in result.stderr and "Traceback" not in result.output


def test_schema_command_prints_json(no_network) -> None:
    result = invoke("schema")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["type"] == "object"


# --- golden chunking ----------------------------------------------------------------------------

def _without_volatile(value):
    if isinstance(value, dict):
        return {k: _without_volatile(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_without_volatile(v) for v in value]
    return value


@pytest.mark.parametrize("name", ["sample", "sample-zh"])
def test_sample_chunking_matches_the_golden_file(sample_book: Path, name: str) -> None:
    result = invoke("plan", "--json", str(sample_book / "manifests" / f"{name}.yaml"))
    assert result.exit_code == 0, result.output
    got = _without_volatile(json.loads(result.stdout))
    golden = GOLDEN / f"plan-{name}.json"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(json.dumps(got, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        pytest.skip(f"rewrote {golden.name}")
    assert golden.exists(), f"{golden} is missing: run UPDATE_GOLDEN=1 pytest {Path(__file__).name}"
    expected = json.loads(golden.read_text(encoding="utf-8"))
    assert got == expected, f"the cut of {name} changed; if on purpose, UPDATE_GOLDEN=1 and review the diff"


# --- the real command -------------------------------------------------------------------------

def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOUNDCLONE_")}
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60, check=False)


def test_python_m_pipeline_plan_in_a_real_process(sample_book: Path, make_manifest) -> None:
    ok = _run(["plan", "manifests/sample.yaml"], sample_book)
    assert ok.returncode == 0, ok.stderr
    assert "The Lighthouse Keeper" in ok.stdout and ok.stderr == ""

    bad = make_manifest(language="Klingon")
    failed = _run(["plan", str(bad)], sample_book)
    assert failed.returncode == 2
    assert "language" in failed.stderr and "Traceback" not in failed.stderr + failed.stdout

    verbose = _run(["-v", "plan", str(bad)], sample_book)
    assert verbose.returncode == 2 and "Traceback" in verbose.stderr
