"""Bad-input corpus (issue 8, item 1): careless and hostile input never costs a request.

Every case writes a manifest and its sources into ``tmp_path``, runs the real ``run`` command against
one simulator shared by the module, and asserts: the exit code (2 for manifest, usage and configuration
errors), a message naming the place (file, line where there is one, field) with a fix hint, no
traceback, zero requests reaching either simulator origin, and no file written or changed under
``tmp_path`` (so no journal and no output folder).

Cases marked ``subprocess`` run ``python -m pipeline`` as a child process (the real command, end to
end); the rest run the same click command in-process through ``CliRunner`` to keep the file fast.
A positive control proves the zero-request check can fail: the valid base manifest renders and the
ledger moves. A case that shows a product bug is kept as a strict xfail whose reason says where the
bug is; when a message only lacks its fix, a passing twin still guards the rest of the contract.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from e2e_support import write_files

from pipeline.cli import main
from pipeline.simulator import Simulator, SimulatorConfig

REPO = Path(__file__).resolve().parent.parent
API_KEY = "k"
MODEL = "model_x"

# The valid book every case starts from. Line numbers are asserted below: keep them.
BASE = """\
title: Test Book
language: English
output: out
voice:
  model_id: model_x
  speed: 1.0
audio: {m4b: false, profile: none}
api: {poll_interval_s: 0.05, requests_per_minute: 100000, backoff_base_s: 0.02, backoff_cap_s: 0.2}
chapters:
  - id: ch01
    title: One
    source: ch01.txt
  - id: ch02
    source: ch02.txt
"""
SOURCES: dict[str, str | bytes] = {
    "ch01.txt": "The ferry left at dawn. Elsie stood on the jetty.\n\nThe light was still on.\n",
    "ch02.txt": "She opened the log and read the first entry.\n",
}
# The first bytes of a real PNG file: a signature, then a header chunk full of NUL bytes.
PNG_BYTES = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489") + b"\x00" * 64

Builder = Callable[[Path], Path]


def book(*edits: tuple[str, str], text: str | None = None,
         sources: Mapping[str, str | bytes | None] | None = None,
         extra: Callable[[Path], object] | None = None) -> Builder:
    """A factory writing ``BASE`` (or ``text``) with ``edits`` (old, new) applied, plus its sources.

    ``sources`` adds or replaces source files (None removes one); ``extra`` may create more files.
    Returns the builder, which returns the manifest path.
    """

    def build(tmp_path: Path) -> Path:
        manifest = BASE if text is None else text
        for old, new in edits:
            assert old in manifest, f"edit target {old!r} not in the manifest"
            manifest = manifest.replace(old, new, 1)
        write_files(tmp_path, {**SOURCES, **(sources or {})})
        if extra is not None:
            extra(tmp_path)
        path = tmp_path / "book.yaml"
        path.write_text(manifest, encoding="utf-8", newline="")
        return path

    return build


def raw_manifest(content: bytes) -> Builder:
    """A manifest of exactly these bytes (with the default sources beside it)."""

    def build(tmp_path: Path) -> Path:
        book()(tmp_path)
        path = tmp_path / "book.yaml"
        path.write_bytes(content)
        return path

    return build


def folder_as_manifest(tmp_path: Path) -> Path:
    path = tmp_path / "manuscript"
    path.mkdir()
    (path / "notes.txt").write_text("not a manifest\n", encoding="utf-8")
    return path


def missing_manifest(tmp_path: Path) -> Path:
    return tmp_path / "no-such-book.yaml"


def huge_manifest(tmp_path: Path) -> Path:
    path = book()(tmp_path)
    filler = "# " + "x" * 98 + "\n"
    path.write_text(BASE + filler * 50_001, encoding="utf-8")
    return path


def alias_bomb() -> str:
    """The "billion laughs": nine levels of nine aliases each expand to 9**9 strings."""
    lines = ['lol0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, 9):
        lines.append(f"lol{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * 9) + "]")
    return BASE + "\n".join(lines) + "\n"


def no_punctuation_paragraph(length: int = 100_000) -> str:
    """One paragraph of ``length`` characters: words and single spaces, no punctuation at all."""
    words = ["keeper", "light", "lamp", "shore", "wind", "stone", "night", "sea", "gull", "rope"]
    out: list[str] = []
    size = 0
    i = 0
    while size < length:
        word = words[i % len(words)] + ("" if i % 7 else "s")
        out.append(word)
        size += len(word) + 1
        i += 1
    return " ".join(out)[:length].rstrip()


@dataclass(frozen=True)
class Case:
    """One bad input: how to build it, how to run it, and what the user must be told."""

    id: str
    build: Builder
    fragments: tuple[str, ...]          # every one must appear in stdout + stderr
    exit_code: int = 2
    args: tuple[str, ...] = ()          # after `run <manifest>`
    env: Mapping[str, str | None] = field(default_factory=dict)  # None removes a variable
    subprocess: bool = False
    xfail: str | None = None            # a product bug: the case fails today (strict)
    timeout_s: float = 120.0            # of the subprocess (a hang is a failure too)


def fifo_source(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "ch02.txt")  # a named pipe nobody writes to: reading it blocks forever


def key_file(content: bytes) -> Callable[[Path], object]:
    return lambda folder: (folder / "api.key").write_bytes(content)


PRICED = ("audio: {", "pricing: {char_fee_per_10k: 1.0}\naudio: {")

LATIN1_SOURCE = b"The first line is plain.\nCaf\xe9 noir, said the keeper.\n"

CASES: list[Case] = [
    # --- YAML syntax ----------------------------------------------------------------------------
    Case("yaml-unclosed-bracket", book(("title: Test Book", "title: [Test Book")),
         ("book.yaml:2:", "is not valid YAML", "while parsing a flow sequence on line 1",
          "check indentation, colons and quotes"), subprocess=True),
    Case("yaml-bad-indentation", book(("  speed: 1.0", "    speed: 1.0")),
         ("book.yaml:6:", "is not valid YAML", "mapping values are not allowed here",
          "check indentation, colons and quotes")),
    Case("yaml-tab-indentation", book(("  model_id: model_x", "\tmodel_id: model_x")),
         ("book.yaml:5:", "is not valid YAML", "'\\t'", "check indentation")),
    # --- wrong types ----------------------------------------------------------------------------
    Case("title-is-a-list", book(("title: Test Book", "title: [Test, Book]")),
         ("book.yaml:1: title:", "must be text, not a list", "quote it")),
    Case("speed-is-a-string", book(("speed: 1.0", "speed: fast")),
         ("book.yaml:6: voice.speed:", "not text 'fast'", "must be a number >= 0.5 and <= 2")),
    Case("chapters-is-a-mapping",
         book(("  - id: ch01\n    title: One\n    source: ch01.txt\n  - id: ch02\n    source: ch02.txt\n",
               "  id: ch01\n  source: ch01.txt\n")),
         ("book.yaml:9: chapters:", "must be a non-empty list of chapters", "each with id and source or text")),
    # --- unknown and misspelt keys --------------------------------------------------------------
    Case("unknown-top-level-key", book(("language: English", "language: English\nfrobnicate: yes")),
         ("book.yaml:3: frobnicate:", "unknown key 'frobnicate'", "known keys: title, author")),
    Case("misspelt-top-level-key", book(("title: Test Book", "titel: Test Book")),
         ("book.yaml:1: titel:", "did you mean 'title'?", "title: is required", "add it")),
    Case("misspelt-voice-key", book(("speed: 1.0", "sped: 1.0")),
         ("book.yaml:6: voice.sped:", "unknown key 'sped'", "did you mean 'speed'?")),
    Case("misspelt-chapter-key", book(("    source: ch02.txt", "    sorce: ch02.txt")),
         ("book.yaml:14: chapters[1].sorce:", "did you mean 'source'?",
          "chapters[1]: needs exactly one of 'source' (a file) or 'text' (inline)")),
    # --- out-of-range voice values --------------------------------------------------------------
    Case("speed-too-low", book(("speed: 1.0", "speed: 0.4")),
         ("book.yaml:6: voice.speed:", "0.4 is out of range", "must be a number >= 0.5 and <= 2"),
         subprocess=True),
    Case("speed-too-high", book(("speed: 1.0", "speed: 2.1")),
         ("book.yaml:6: voice.speed:", "2.1 is out of range", "must be a number >= 0.5 and <= 2")),
    Case("vol-zero", book(("speed: 1.0", "vol: 0")),
         ("book.yaml:6: voice.vol:", "0 is out of range", "must be a number > 0 and <= 10")),
    Case("vol-too-high", book(("speed: 1.0", "vol: 10.5")),
         ("book.yaml:6: voice.vol:", "10.5 is out of range", "must be a number > 0 and <= 10")),
    Case("pitch-too-high", book(("speed: 1.0", "pitch: 13")),
         ("book.yaml:6: voice.pitch:", "13 is out of range", "must be an integer >= -12 and <= 12")),
    Case("pitch-not-whole", book(("speed: 1.0", "pitch: 1.5")),
         ("book.yaml:6: voice.pitch:", "must be a whole number, not 1.5")),
    Case("emotion-misspelt", book(("speed: 1.0", "emotion: angy")),
         ("book.yaml:6: voice.emotion:", "'angy' is not allowed", "did you mean 'angry'?")),
    Case("sound-version-v3", book(("speed: 1.0", "sound_version: v3")),
         ("book.yaml:6: voice.sound_version:", "'v3' is not allowed", "use one of v1, v2")),
    Case("speed-nan", book(("speed: 1.0", "speed: .nan")),
         ("book.yaml:6: voice.speed:", "must be a finite number, not .nan", "give a number >= 0.5 and <= 2")),
    Case("speed-inf", book(("speed: 1.0", "speed: .inf")),
         ("book.yaml:6: voice.speed:", "must be a finite number, not .inf", "give a number >= 0.5 and <= 2")),
    Case("vol-minus-inf", book(("speed: 1.0", "vol: -.inf")),
         ("book.yaml:6: voice.vol:", "must be a finite number, not -.inf", "give a number > 0 and <= 10")),
    # --- language vs sound_version --------------------------------------------------------------
    Case("v2-language-with-v1-book", book(("language: English", "language: Danish")),
         ("book.yaml:4: voice.sound_version:", "language 'Danish' needs sound_version v2",
          "set sound_version: v2 or pick a v1 language")),
    Case("v2-language-with-v1-chapter", book(("    title: One", "    title: One\n    language: Danish")),
         ("book.yaml:10: chapters[0].voice.sound_version:", "language 'Danish' needs sound_version v2",
          "set sound_version: v2")),
    # --- chapter ids ----------------------------------------------------------------------------
    Case("duplicate-chapter-id", book(("id: ch02", "id: ch01")),
         ("book.yaml:13: chapters[1].id:", "'ch01' is already used by chapters[0]", "make it unique")),
    Case("duplicate-chapter-id-ignoring-case", book(("id: ch02", "id: CH01")),
         ("book.yaml:13: chapters[1].id:", "'CH01' is already used by chapters[0]", "ignoring case",
          "make it unique")),
    Case("chapter-id-parent-path", book(("id: ch01", "id: ../x")),
         ("book.yaml:10: chapters[0].id:", "'../x' is not a safe id", "use letters, digits, - and _"),
         subprocess=True),
    Case("chapter-id-absolute-path", book(("id: ch01", "id: /abs")),
         ("book.yaml:10: chapters[0].id:", "'/abs' is not a safe id", "use letters, digits, - and _")),
    Case("chapter-id-with-slash", book(("id: ch01", "id: a/b")),
         ("book.yaml:10: chapters[0].id:", "'a/b' is not a safe id", "use letters, digits, - and _")),
    Case("chapter-id-reserved-con", book(("id: ch01", "id: con")),
         ("book.yaml:10: chapters[0].id:", "'con' is a reserved file name on Windows", "rename it")),
    Case("chapter-id-reserved-NUL", book(("id: ch02", "id: NUL")),
         ("book.yaml:13: chapters[1].id:", "'NUL' is a reserved file name on Windows", "rename it")),
    Case("chapter-id-empty", book(("id: ch01", 'id: ""')),
         ("book.yaml:10: chapters[0].id:", "is blank", "give a value")),
    # --- output and cover -----------------------------------------------------------------------
    Case("output-is-a-file", book(extra=lambda d: (d / "out").write_text("a file\n", encoding="utf-8")),
         ("book.yaml:3: output:", "is a file, not a folder", "choose another output path")),
    Case("cover-missing", book(("title: Test Book", "title: Test Book\ncover: art/cover.jpg")),
         ("book.yaml:2: cover:", "cover.jpg' does not exist", "fix the path (relative to the manifest)")),
    Case("cover-not-jpg-or-png", book(("title: Test Book", "title: Test Book\ncover: cover.gif"),
                                      sources={"cover.gif": b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"}),
         ("book.yaml:2: cover:", "must be a .jpg or .png image")),
    # --- chapter sources ------------------------------------------------------------------------
    Case("source-missing", book(sources={"ch02.txt": None}),
         ("book.yaml:14: chapters[1].source:", "ch02.txt' does not exist", "check the path")),
    Case("source-empty", book(sources={"ch02.txt": ""}),
         ("book.yaml:14: chapters[1].source:", "ch02.txt' is empty", "write the chapter text in it")),
    Case("source-whitespace-only", book(sources={"ch02.txt": "  \n\t\n   \n"}),
         ("book.yaml:14: chapters[1].source:", "ch02.txt' is empty", "write the chapter text in it")),
    Case("source-binary-png", book(sources={"ch02.txt": PNG_BYTES}),
         ("book.yaml:14: chapters[1].source:", "looks like a binary file",
          "give a UTF-8 plain text or Markdown file")),
    Case("source-latin1", book(sources={"ch02.txt": LATIN1_SOURCE}),
         ("ch02.txt:2: chapters[1].source: column 4:", "is not valid UTF-8 (byte 0xe9)", "re-save it as UTF-8"),
         subprocess=True),
    Case("source-is-a-folder", book(("source: ch02.txt", "source: texts"),
                                    extra=lambda d: (d / "texts").mkdir()),
         ("book.yaml:14: chapters[1].source:", "texts' is a folder, not a text file")),
    Case("chapter-with-source-and-text", book(("    source: ch02.txt", "    source: ch02.txt\n    text: Hi.")),
         ("book.yaml:13: chapters[1]:", "needs exactly one of 'source' (a file) or 'text' (inline)",
          "remove one")),
    Case("chapter-with-neither-source-nor-text", book(("    source: ch02.txt\n", "    title: Two\n")),
         ("book.yaml:13: chapters[1]:", "needs exactly one of 'source' (a file) or 'text' (inline)", "add one")),
    # --- pause markers --------------------------------------------------------------------------
    Case("marker-not-a-number", book(sources={"ch02.txt": "First line.\nShe waited <#abc#> and left.\n"}),
         ("ch02.txt:2: chapters[1].source: column 12:", "'<#abc#>' is not a number of seconds",
          "write it as <#1.5#>"), subprocess=True),
    Case("marker-three-decimals", book(sources={"ch02.txt": "She waited <#1.234#> and left.\n"}),
         ("ch02.txt:1: chapters[1].source: column 12:", "has more than two decimals", "round it, e.g. <#1.25#>")),
    Case("marker-zero", book(sources={"ch02.txt": "One.\n\nTwo.\nShe waited <#0#> and left.\n"}),
         ("ch02.txt:4: chapters[1].source: column 12:", "'<#0#>' is out of range", "write it as <#0.01#>")),
    Case("marker-hundred", book(sources={"ch02.txt": "She waited <#100#> and left.\n"}),
         ("ch02.txt:1: chapters[1].source: column 12:", "'<#100#>' is out of range", "write it as <#99.99#>")),
    Case("marker-unclosed", book(sources={"ch02.txt": "First.\nThen <#1.5 and nothing else.\n"}),
         ("ch02.txt:2: chapters[1].source: column 6:", "'<#' is not closed with '#>'", "write it as <#1.5#>")),
    Case("marker-inline-text", book(("    source: ch02.txt", '    text: "She waited <#0#> there."')),
         ("book.yaml:14: chapters[1].text: column 23:", "'<#0#>' is out of range", "write it as <#0.01#>")),
    Case("chapter-only-markers", book(sources={"ch02.txt": "<#1.5#> <#2#>\n\n<#0.5#>\n"}),
         ("book.yaml:14: chapters[1].source:", "has no words to read", "add text")),
    # --- the manifest file itself ---------------------------------------------------------------
    Case("manifest-is-a-list", raw_manifest(b"- title: Test Book\n- chapters: []\n"),
         ("book.yaml:1:", "is a list, but a manifest must be a mapping", "with at least title, voice and chapters")),
    Case("manifest-is-a-scalar", raw_manifest(b"just some words\n"),
         ("book.yaml:1:", "is text, but a manifest must be a mapping", "with at least title, voice and chapters")),
    Case("manifest-empty", raw_manifest(b""),
         ("book.yaml:1:", "is empty, but a manifest must be a mapping", "with at least title, voice and chapters")),
    Case("manifest-only-comments", raw_manifest(b"# title: Test Book\n# voice: {model_id: model_x}\n"),
         ("book.yaml:1:", "is empty, but a manifest must be a mapping", "with at least title, voice and chapters")),
    Case("manifest-not-utf8", raw_manifest(BASE.replace("Test Book", "Caf\xe9 Book").encode("latin-1")),
         ("book.yaml:1: column 11:", "is not valid UTF-8 (byte 0xe9)", "re-save it as UTF-8"), subprocess=True),
    Case("manifest-is-a-folder", folder_as_manifest,
         ("manuscript:", "the folder holds no .yaml manifests")),
    Case("manifest-missing", missing_manifest,
         ("no-such-book.yaml:", "does not exist", "check the path"), subprocess=True),
    Case("manifest-over-5-mb", huge_manifest,
         ("book.yaml:", "over the 5,000,000-byte limit for a manifest", "put chapter texts in source files")),
    Case("manifest-alias-bomb", book(text=alias_bomb()),
         ("book.yaml:", "has more than 200,000 YAML nodes", "aliases that expand hugely count too"),
         subprocess=True),
    # --- flags and environment ------------------------------------------------------------------
    Case("unknown-chapter-flag", book(), ("--chapter ch99:", "no such chapter in", "chapters are ch01, ch02"),
         args=("--chapter", "ch99"), subprocess=True),
    Case("concurrency-zero", book(), ("'--concurrency'", "0 is not in the range 1<=x<=64"),
         args=("--concurrency", "0"), subprocess=True),
    Case("max-cost-negative", book(), ("'--max-cost'", "is not in the range x>=0"), args=("--max-cost", "-1")),
    Case("plain-http-to-remote-host", book(),
         ("SOUNDCLONE_BASE_URL:", "plain http to example.com", "use https"),
         env={"SOUNDCLONE_BASE_URL": "http://example.com"}, subprocess=True),
    Case("no-api-key", book(), ("no API key", "SOUNDCLONE_API_KEY", "--simulate"),
         env={"SOUNDCLONE_API_KEY": None}, subprocess=True),
    # --- cases that found product bugs (fixed; they stay as regression cases) -------------------
    Case("max-cost-nan", book(PRICED), ("'--max-cost'", "nan"), args=("--max-cost", "nan"), subprocess=True),
    Case("poll-interval-nan", book(), ("'--poll-interval'", "nan"), args=("--poll-interval", "nan"),
         subprocess=True),
    Case("api-key-not-ascii", book(), ("SOUNDCLONE_API_KEY", "ASCII"),
         env={"SOUNDCLONE_API_KEY": "k\u2019"}, subprocess=True),
    Case("api-key-with-newline", book(), ("SOUNDCLONE_API_KEY", "newline"),
         env={"SOUNDCLONE_API_KEY": "k\nx"}, subprocess=True),
    Case("api-key-file-not-utf8", book(extra=key_file(b"k\xe9y\n")),
         ("api.key", "UTF-8"), args=("--api-key-file", "{tmp}/api.key"), env={"SOUNDCLONE_API_KEY": None},
         subprocess=True),
    Case("base-url-invalid-ipv6", book(), ("SOUNDCLONE_BASE_URL", "is not an http(s) URL"),
         env={"SOUNDCLONE_BASE_URL": "http://[::1"}, subprocess=True),
    Case("base-url-port-out-of-range", book(), ("SOUNDCLONE_BASE_URL", "port"),
         env={"SOUNDCLONE_BASE_URL": "http://127.0.0.1:99999"}, subprocess=True),
    Case("api-base-url-http-in-manifest", book(("api: {", "api: {base_url: 'http://example.com', ")),
         ("book.yaml:8: api.base_url:", "use https"), env={"SOUNDCLONE_BASE_URL": None}, subprocess=True),
    Case("output-inside-a-file", book(("output: out", "output: ch01.txt/sub")),
         ("book.yaml:3: output:", "choose another output path"), subprocess=True),
    Case("cover-png-that-is-not-an-image", book(("title: Test Book", "title: Test Book\ncover: cover.png"),
                                                sources={"cover.png": "not an image at all\n"}),
         ("book.yaml:2: cover:", "is neither JPEG nor PNG"), subprocess=True),
    Case("source-is-a-folder-fix-hint", book(("source: ch02.txt", "source: texts"),
                                             extra=lambda d: (d / "texts").mkdir()),
         ("book.yaml:14: chapters[1].source:", "is a folder, not a text file;")),
    Case("manifest-is-a-folder-fix-hint", folder_as_manifest,
         ("manuscript: the folder holds no .yaml manifests;",)),
    Case("source-is-a-fifo", book(extra=fifo_source, sources={"ch02.txt": None}),
         ("book.yaml:14: chapters[1].source:", "not a regular file"), subprocess=True, timeout_s=5),
]


# --- running the command ------------------------------------------------------------------------

@dataclass(frozen=True)
class Outcome:
    exit_code: int
    output: str     # stdout and stderr together
    stdout: str


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    config = SimulatorConfig(api_key=API_KEY, preload_voices=(MODEL,), task_base_s=0.05,
                             task_s_per_char=0.0005)
    with Simulator(config, host="127.0.0.1", port=0, files_port=0) as server:
        yield server


@pytest.fixture(scope="module")
def voices_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A voice registry outside every case's folder, so a run never touches the developer's."""
    return tmp_path_factory.mktemp("registry") / "voices.json"


def command_env(sim: Simulator, voices_file: Path, overrides: Mapping[str, str | None]) -> dict[str, str | None]:
    env: dict[str, str | None] = {"SOUNDCLONE_BASE_URL": sim.base_url, "SOUNDCLONE_API_KEY": API_KEY,
                                  "SOUNDCLONE_VOICES": str(voices_file)}
    env.update(overrides)
    return env


def invoke(args: list[str], env: Mapping[str, str | None], *, in_subprocess: bool,
           timeout_s: float = 120.0) -> Outcome:
    if in_subprocess:
        full = {k: v for k, v in os.environ.items() if not k.startswith("SOUNDCLONE_")}
        full.update({k: v for k, v in env.items() if v is not None})
        full["PYTHONUNBUFFERED"] = "1"
        try:
            done = subprocess.run([sys.executable, "-m", "pipeline", *args], check=False, env=full,
                                  cwd=REPO, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return Outcome(-1, f"(killed: no answer within {timeout_s} s)", "")
        return Outcome(done.returncode, done.stdout + done.stderr, done.stdout)
    result = CliRunner().invoke(main, args, env=dict(env))
    output = result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        # What a user would have seen: an uncaught exception is a traceback.
        assert result.exc_info is not None
        output += "Traceback (most recent call last):\n" + "".join(traceback.format_exception(*result.exc_info))
    return Outcome(result.exit_code, output, result.stdout)


def requests_seen(sim: Simulator) -> dict[str, Any]:
    ledger = sim.ledger()
    return {"api": dict(ledger["requests"]), "files": ledger["files_origin"]["requests"],
            "tasks": ledger["tasks_created"]["total"]}


def tree(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``folder``: relative path -> (size, mtime in ns)."""
    return {str(p.relative_to(folder)): (p.stat().st_size if p.is_file() else -1, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


# --- the corpus ---------------------------------------------------------------------------------

def _params() -> list[Any]:
    return [pytest.param(case, id=case.id,
                         marks=[pytest.mark.xfail(strict=True, raises=AssertionError, reason=case.xfail)]
                         if case.xfail else [])
            for case in CASES]


def test_the_corpus_is_large_and_ids_are_unique() -> None:
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", _params())
def test_bad_input_is_refused_before_any_request(case: Case, sim: Simulator, voices_file: Path,
                                                 tmp_path: Path) -> None:
    target = case.build(tmp_path)
    before_files = tree(tmp_path)
    before_requests = requests_seen(sim)

    args = [arg.replace("{tmp}", str(tmp_path)) for arg in case.args]
    outcome = invoke(["run", str(target), *args], command_env(sim, voices_file, case.env),
                     in_subprocess=case.subprocess, timeout_s=case.timeout_s)

    assert "Traceback" not in outcome.output, outcome.output
    assert requests_seen(sim) == before_requests, f"a request reached the server:\n{outcome.output}"
    assert not list(tmp_path.rglob("journal.sqlite")), outcome.output
    assert tree(tmp_path) == before_files, f"something was written:\n{outcome.output}"
    assert outcome.exit_code == case.exit_code, outcome.output
    missing = [f for f in case.fragments if f not in outcome.output]
    assert not missing, f"message lacks {missing}:\n{outcome.output}"


# --- controls -----------------------------------------------------------------------------------

def test_positive_control_the_base_manifest_renders_and_is_counted(sim: Simulator, voices_file: Path,
                                                                   tmp_path: Path) -> None:
    """Without this, "zero requests" could be a ledger that never moves."""
    manifest = book()(tmp_path)
    before = requests_seen(sim)
    outcome = invoke(["run", str(manifest)], command_env(sim, voices_file, {}), in_subprocess=True)
    assert outcome.exit_code == 0, outcome.output
    after = requests_seen(sim)
    assert after != before
    assert after["tasks"] > before["tasks"]
    assert (tmp_path / "out" / "journal.sqlite").is_file()
    assert (tmp_path / "out" / "01-ch01.mp3").is_file()


def test_a_100000_character_paragraph_without_punctuation_plans_within_the_limit(
        sim: Simulator, voices_file: Path, tmp_path: Path) -> None:
    """Careless but valid: one huge unpunctuated paragraph must be cut at spaces, never over the limit."""
    paragraph = no_punctuation_paragraph()
    assert len(paragraph) >= 99_990 and not any(ch in paragraph for ch in ".,;:!?-")
    manifest = book(sources={"ch02.txt": paragraph + "\n"})(tmp_path)
    before = requests_seen(sim)
    outcome = invoke(["plan", str(manifest), "--json"], command_env(sim, voices_file, {}), in_subprocess=True)
    assert outcome.exit_code == 0, outcome.output[-2000:]
    assert requests_seen(sim) == before
    plan = json.loads(outcome.stdout)
    (chapter,) = [c for c in plan["chapters"] if c["id"] == "ch02"]
    chunks = chapter["chunks"]
    assert len(chunks) >= 11
    assert all(0 < len(c["text"]) <= 9999 and c["chars"] <= 9999 for c in chunks)
    assert " ".join(c["text"] for c in chunks).split() == paragraph.split(), "words lost or split"
    assert not (tmp_path / "out").exists()
