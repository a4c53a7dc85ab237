"""pipeline.manifest, the YAML side: voice names per chapter, YAML 1.1 words and numbers, merge keys,
the language a chapter really gets, and manifest paths that are not plain files.

The sections follow the five defects fixed together. Most tests failed before that change; the few
that passed (a chapter's model_id winning over its name, a chapter's own language conflict, bool
words, the choices YAML types as text) pin behaviour the change had to keep.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_support import write_files
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import manifest as manifest_module
from pipeline.errors import ManifestError, Problem
from pipeline.manifest import CHAPTER_SCHEMA, MANIFEST_MAX_BYTES, SCHEMA, load_manifest
from pipeline.models import LANGUAGES_V2_ONLY, Manifest, Voice
from pipeline.planning import plan_book

REGISTRY = {"anna": "model_anna", "bella": "model_bella"}


def resolve(name: str) -> str | None:
    return REGISTRY.get(name)


def write(tmp_path: Path, text: str, name: str = "book.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path, **options: Any) -> list[Problem]:
    with pytest.raises(ManifestError) as info:
        load_manifest(path, **options)
    return info.value.problems


def only_problem(path: Path, **options: Any) -> Problem:
    problems = problems_of(path, **options)
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0]


HEAD = "title: Book\nvoice:\n  model_id: m1\n"   # lines 1-3


# --- 1. a chapter's voice.name ---------------------------------------------------------------------

def test_a_chapter_voice_name_is_resolved_for_that_chapter(tmp_path: Path) -> None:
    path = write(tmp_path, "title: Book\nvoice: {model_id: m1, speed: 1.2}\nchapters:\n"
                           "  - id: a\n    text: One.\n"
                           "  - id: b\n    text: Two.\n    voice: {name: anna, emotion: sad}\n"
                           "  - id: c\n    text: Three.\n")
    manifest = load_manifest(path, voice_resolver=resolve)
    assert [c.id for c in manifest.chapters] == ["a", "b", "c"]
    a, b, c = manifest.chapters
    assert b.voice == Voice(model_id="model_anna", speed=1.2, emotion="sad")
    assert a.voice == c.voice == Voice(model_id="m1", speed=1.2)
    assert [p.chapter.id for p in plan_book(manifest).chapters] == ["a", "b", "c"]


def test_an_unknown_chapter_voice_name_is_a_problem_at_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, HEAD + "chapters:\n"          # 4
                                  "  - id: a\n"           # 5
                                  "    text: One.\n"      # 6
                                  "    voice:\n"          # 7
                                  "      emotion: sad\n"  # 8
                                  "      name: ghost\n")  # 9
    problem = only_problem(path, voice_resolver=resolve)
    assert (problem.line, problem.field) == (9, "chapters[0].voice.name")
    assert "no voice named 'ghost'" in problem.message and "`audiobook voice list`" in problem.message


def test_a_chapter_model_id_wins_over_its_name(tmp_path: Path) -> None:
    path = write(tmp_path, HEAD + "chapters:\n  - id: a\n    text: One.\n    voice: {model_id: m2, name: ghost}\n")
    (chapter,) = load_manifest(path, voice_resolver=resolve).chapters
    assert chapter.voice.model_id == "m2"


@pytest.mark.parametrize("text, field, line", [
    (HEAD + "chapters:\n  - id: a\n    text: One.\n    voice: {name: anna}\n", "chapters[0].voice.name", 7),
    ("title: Book\nvoice:\n  name: anna\nchapters:\n  - id: a\n    text: One.\n", "voice.name", 3),
])
def test_a_voice_name_without_a_voice_registry_is_a_problem(tmp_path: Path, text: str, field: str,
                                                            line: int) -> None:
    """Loading without ``voice_resolver`` used to drop the chapter (or trip an assert for the book)."""
    problem = only_problem(write(tmp_path, text))
    assert (problem.line, problem.field) == (line, field)
    assert "no voice registry" in problem.message and "model_id" in problem.message


# The property: no chapter is ever dropped without a problem that names it. Generated manifests mix
# book voices (model_id, a registered or unknown name, neither), chapter overrides (model_id, a
# name, partial keys), v1 and v2-only languages and sound versions; an oracle says which problems
# the manifest has, and where.

identities = st.sampled_from([{}, {"model_id": "model_own"}, {"name": "anna"}, {"name": "bella"},
                              {"name": "ghost"}, {"model_id": "model_own", "name": "ghost"}])
voice_extras = st.fixed_dictionaries({}, optional={"sound_version": st.sampled_from(["v1", "v2"]),
                                                   "emotion": st.sampled_from(["sad", "happy"]),
                                                   "speed": st.sampled_from([0.8, 1.25])})
voices = st.builds(lambda identity, extra: {**identity, **extra}, identities, voice_extras)
languages = st.sampled_from(["auto", "English", "Chinese", "Danish", "Swedish"])
chapter_specs = st.fixed_dictionaries({"source": st.booleans()},
                                      optional={"language": languages, "voice": voices})
book_specs = st.fixed_dictionaries(
    {"voice": voices,
     "chapters": st.lists(chapter_specs, min_size=1, max_size=5)},
    optional={"language": languages})


def _expected(book: dict[str, Any]) -> tuple[list[str], list[Voice]]:
    """The fields a manifest's problems must name (each once), and each chapter's voice."""
    fields: list[str] = []
    book_voice = book["voice"]
    book_model = book_voice.get("model_id") or resolve(book_voice.get("name", ""))
    if not {"model_id", "name"} & set(book_voice):
        fields.append("voice.model_id")
    elif book_model is None:
        fields.append("voice.name")
    book_language, inherited_conflict = book.get("language", "auto"), False
    voices: list[Voice] = []
    for i, chapter in enumerate(book["chapters"]):
        own = chapter.get("voice", {})
        model = own.get("model_id") or (resolve(own["name"]) if "name" in own else book_model)
        if "model_id" not in own and own.get("name") == "ghost":
            fields.append(f"chapters[{i}].voice.name")
        merged = {**book_voice, **own}
        version = merged.get("sound_version", "v1")
        if version == "v1" and chapter.get("language", book_language) in LANGUAGES_V2_ONLY:
            if "language" in chapter or "sound_version" in own:
                fields.append(f"chapters[{i}].voice.sound_version")
            else:
                inherited_conflict = True
        kept = {k: v for k, v in merged.items() if k in ("sound_version", "emotion", "speed")}
        voices.append(Voice(model_id=model or "", **kept))
    if inherited_conflict:
        fields.append("voice.sound_version")
    return fields, voices


def _manifest_yaml(book: dict[str, Any]) -> str:
    data: dict[str, Any] = {"title": "Generated"}
    if "language" in book:
        data["language"] = book["language"]
    data["voice"] = book["voice"]
    chapters = []
    for i, spec in enumerate(book["chapters"]):
        chapter: dict[str, Any] = {"id": f"ch{i:02d}"}
        chapter.update({"source": "ch.txt"} if spec["source"] else {"text": f"Chapter {i} has words."})
        chapter.update({k: spec[k] for k in ("language", "voice") if k in spec})
        chapters.append(chapter)
    data["chapters"] = chapters
    return yaml.safe_dump(data, sort_keys=False)


@settings(max_examples=300, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(book=book_specs)
def test_every_chapter_is_loaded_and_planned_or_named_in_a_problem(tmp_path: Path, book: dict[str, Any]) -> None:
    write_files(tmp_path, {"ch.txt": "A chapter read from its source file.\n"})
    path = write(tmp_path, _manifest_yaml(book))
    ids = [f"ch{i:02d}" for i in range(len(book["chapters"]))]
    fields, voices = _expected(book)
    try:
        manifest = load_manifest(path, voice_resolver=resolve)
    except ManifestError as error:
        # Each problem once, where the oracle puts it: a chapter at fault itself by its chapters[i]
        # path, a book-level setting the chapters inherit by the book's key.
        assert sorted(p.field for p in error.problems) == sorted(fields), [str(p) for p in error.problems]
        return
    assert fields == [], f"loaded, but expected problems at {fields}"
    assert [c.id for c in manifest.chapters] == ids
    assert [c.voice for c in manifest.chapters] == voices
    assert [p.chapter.id for p in plan_book(manifest).chapters] == ids


# --- 2. YAML 1.1 words and numbers -----------------------------------------------------------------

def _choice_fields() -> list[tuple[str, Any]]:
    fields = []
    for prefix, schema in (("", SCHEMA), ("chapters[].", CHAPTER_SCHEMA)):
        for name, spec in schema.items():
            children = spec.children.items() if spec.children else ()
            for key, child in [(name, spec), *((f"{name}.{k}", c) for k, c in children)]:
                if child.kind == "choice":
                    fields.extend((prefix + key, choice) for choice in child.choices)
    return fields


def _with_field(field: str, token: str) -> str:
    """A valid manifest with ``field`` (``audio.profile``, ``chapters[].voice.emotion``) set to ``token``
    as written; the voice is v2 so that every language is allowed."""
    # profile none: a setting is tried on its own, not against a retailer's rules (tests/test_delivery.py)
    sections: dict[str, list[str]] = {"": [], "voice": ["model_id: m1", "sound_version: v2"], "audio": ["profile: none"],
                                      "chapter": ["id: a", "text: Hello there."], "chapter.voice": []}
    parts = field.split(".")
    where = "chapter" if parts[0] == "chapters[]" else ""
    if where:
        parts = parts[1:]
    if len(parts) == 2:
        where = f"{where}.{parts[0]}".strip(".")
    lines = sections.setdefault(where, [])
    lines[:] = [line for line in lines if not line.startswith(parts[-1] + ":")] + [f"{parts[-1]}: {token}"]
    text = "title: Book\n" + "".join(f"{line}\n" for line in sections[""])
    text += "voice:\n" + "".join(f"  {line}\n" for line in sections["voice"])
    for section, lines in sections.items():  # audio:, qc: ...
        if section not in ("", "voice", "chapter", "chapter.voice") and lines:
            text += f"{section}:\n" + "".join(f"  {line}\n" for line in lines)
    text += "chapters:\n  - " + "\n    ".join(sections["chapter"]) + "\n"
    if sections["chapter.voice"]:
        text += "    voice:\n" + "".join(f"      {line}\n" for line in sections["chapter.voice"])
    return text


def _loaded(manifest: Manifest, field: str) -> Any:
    value: Any = manifest
    parts = field.split(".")
    if parts[0] == "chapters[]":
        value, parts = manifest.chapters[0], parts[1:]
    for part in parts:
        value = getattr(value, part)
    return value


@pytest.mark.parametrize("field, choice", _choice_fields(), ids=lambda x: str(x))
def test_every_documented_choice_is_accepted_as_written(tmp_path: Path, field: str, choice: Any) -> None:
    """`subtitles: off` (as the README writes it) was refused: YAML 1.1 reads off as false."""
    manifest = load_manifest(write(tmp_path, _with_field(field, str(choice))))
    loaded = _loaded(manifest, field)
    assert loaded == choice and type(loaded) is type(choice)


def test_choice_words_are_matched_exactly_with_a_hint_for_the_case(tmp_path: Path) -> None:
    problem = only_problem(write(tmp_path, HEAD + "subtitles: OFF\nchapters:\n  - id: a\n    text: Hi.\n"))
    assert (problem.line, problem.field) == (4, "subtitles")
    assert problem.message == "'OFF' is not allowed — did you mean 'off'?"


@pytest.mark.parametrize("field", ["audio.m4b", "chapters[].markdown"])
@pytest.mark.parametrize("token, value", [("true", True), ("false", False), ("yes", True), ("no", False),
                                          ("on", True), ("off", False), ("Yes", True), ("OFF", False)])
def test_bool_fields_keep_accepting_yaml_booleans(tmp_path: Path, field: str, token: str, value: bool) -> None:
    path = write(tmp_path, _with_field(field, token).replace("text: Hello there.", "text: '*Hello* there.'"))
    manifest = load_manifest(path)
    if field == "audio.m4b":
        assert manifest.audio.m4b is value
    else:
        assert manifest.chapters[0].text == ("Hello there." if value else "*Hello* there.")


@pytest.mark.parametrize("line, field, message", [
    ("  emotion: yes", "voice.emotion", "'yes' is not allowed — use one of happy, sad"),
    ("  sound_version: no", "voice.sound_version", "'no' is not allowed — use one of v1, v2"),
    ("  speed: on", "voice.speed", "must be a number >= 0.5 and <= 2, not true/false 'on'"),
    ("  speed: 1e999", "voice.speed", "must be a finite number, not 1e999; give a number >= 0.5 and <= 2"),
    ("  speed: 1.0e+999", "voice.speed", "must be a finite number, not 1.0e+999;"),
    ("  speed: -.Inf", "voice.speed", "must be a finite number, not -.Inf;"),
    ("  pitch: 0x10", "voice.pitch", "0x10 is out of range; must be an integer >= -12 and <= 12"),
    ("  pitch: 020", "voice.pitch", "020 is out of range"),
    ("  pitch: 1.5e0", "voice.pitch", "must be a whole number, not 1.5e0"),
    ("year: 12:30", "year", "not 12:30 (YAML 1.1 reads that as the base-60 number 750); write the number out"),
    ("year: 1_000_000", "year", "1_000_000 is out of range"),
    ("subtitles: on", "subtitles", "'on' is not allowed — use one of off, sentence, word"),
    ("audio: {m4b: 0x1}", "audio.m4b", "must be true or false, not 0x1"),
])
def test_problems_quote_the_value_as_written(tmp_path: Path, line: str, field: str, message: str) -> None:
    """A message showed what YAML 1.1 made of the value (True, 16, inf) or took 12:30 for 750."""
    problem = only_problem(write(tmp_path, HEAD + line + "\nchapters:\n  - id: a\n    text: Hi.\n"))
    assert (problem.line, problem.field) == (4, field)
    assert message in problem.message


def test_a_key_yaml_reads_as_true_is_quoted_as_written(tmp_path: Path) -> None:
    problem = only_problem(write(tmp_path, HEAD + "yes: 1\nchapters:\n  - id: a\n    text: Hi.\n"))
    assert problem.line == 4 and problem.message.startswith("key 'yes' must be a plain word")


def test_numbers_in_exponent_form_are_numbers(tmp_path: Path) -> None:
    """YAML 1.1 reads 125e-2 as text (its floats need a dot); YAML 1.2 and editors read a number."""
    path = write(tmp_path, "title: Book\nyear: 2e3\nvoice: {model_id: m1, speed: 125e-2}\n"
                           "chapters:\n  - id: a\n    text: Hi.\n")
    manifest = load_manifest(path)
    assert manifest.voice.speed == 1.25
    assert manifest.book.year == 2000 and isinstance(manifest.book.year, int)
    problem = only_problem(write(tmp_path, HEAD + "  speed: '125e-2'\nchapters:\n  - id: a\n    text: Hi.\n"))
    assert "not text '125e-2'" in problem.message  # quoted is text, as for every number


# --- 3. merge keys ---------------------------------------------------------------------------------

SHARED = """\
title: Book
voice:
  model_id: m1
chapters:
  - id: a
    text: One.
    voice: &whisper {model_id: m2, vol: 0.5, emotion: fearful}
  - id: b
    text: Two.
    voice: &loud {vol: 2.0, pitch: 3}
  - id: c
    text: Three.
    voice:
      <<: *whisper
      emotion: sad
  - id: d
    text: Four.
    voice:
      <<: [*whisper, *loud]
  - id: e
    text: Five.
    voice: *whisper
"""


def test_merge_keys_share_voice_settings_and_explicit_keys_win(tmp_path: Path) -> None:
    a, b, c, d, e = load_manifest(write(tmp_path, SHARED)).chapters
    assert c.voice == Voice(model_id="m2", vol=0.5, emotion="sad")
    assert d.voice == Voice(model_id="m2", vol=0.5, emotion="fearful", pitch=3)  # the first listed wins
    assert e.voice == a.voice == Voice(model_id="m2", vol=0.5, emotion="fearful")
    assert b.voice == Voice(model_id="m1", vol=2.0, pitch=3)


def test_a_mapping_read_twice_after_merging_has_no_false_repeats(tmp_path: Path) -> None:
    """The merging rewrites shared nodes: reading one again must still know which keys it wrote."""
    path = write(tmp_path, HEAD + "chapters:\n"
                                  "  - id: a\n    text: One.\n    voice: &base {model_id: m2, speed: 1.5}\n"
                                  "  - id: b\n    text: Two.\n    voice: &v\n      <<: *base\n      speed: 1.2\n"
                                  "  - id: c\n    text: Three.\n    voice: *v\n")
    speeds = [c.voice.speed for c in load_manifest(path).chapters]
    assert speeds == [1.5, 1.2, 1.2]


def test_merge_keys_keep_repeats_and_line_numbers_right(tmp_path: Path) -> None:
    path = write(tmp_path, HEAD + (
        "chapters:\n"                                        # 4
        "  - id: a\n"                                        # 5
        "    text: One.\n"                                   # 6
        "    voice: &shared {model_id: m2, speed: 5}\n"      # 7  speed out of range here
        "  - id: b\n"                                        # 8
        "    text: Two.\n"                                   # 9
        "    voice:\n"                                       # 10
        "      <<: *shared\n"                                # 11
        "      speed: 1.0\n"                                 # 12 overrides the bad speed
        "      emotion: sad\n"                               # 13
        "      emotion: happy\n"                             # 14 a real repeat
        "  - id: c\n"                                        # 15
        "    text: Three.\n"                                 # 16
        "    voice:\n"                                       # 17
        "      <<: *shared\n"                                # 18
        "      pitch: 40\n"                                  # 19
    ))
    problems = problems_of(path)
    assert [(p.line, p.field) for p in problems] == [
        (14, "chapters[1].voice.emotion"),  # repeats are found while reading, before the values
        (7, "chapters[0].voice.speed"), (7, "chapters[2].voice.speed"), (19, "chapters[2].voice.pitch"),
    ], [str(p) for p in problems]
    assert "appears twice" in problems[0].message


def test_a_merge_of_something_not_a_mapping_is_explained(tmp_path: Path) -> None:
    problem = only_problem(write(tmp_path, "title: Book\nvoice:\n  <<: 5\n  model_id: m1\n"))
    assert problem.line == 3 and "not valid YAML" in problem.message and "<<: *name" in problem.message


# --- 4. the language a chapter really gets ---------------------------------------------------------

DANISH_V1 = "title: Book\nlanguage: Danish\nvoice:\n  model_id: m1\n  sound_version: v1\nchapters:\n"  # 1-6


@pytest.mark.parametrize("override", ["    voice: {sound_version: v2}\n", "    language: English\n"])
def test_a_v1_book_in_a_v2_language_is_fine_when_every_chapter_overrides(tmp_path: Path, override: str) -> None:
    path = write(tmp_path, DANISH_V1 + "  - id: a\n    text: Hej.\n" + override + "  - id: b\n    text: Hi.\n"
                 + override)
    assert [c.id for c in load_manifest(path).chapters] == ["a", "b"]


def test_a_conflict_every_chapter_inherits_is_reported_once_at_the_book(tmp_path: Path) -> None:
    path = write(tmp_path, DANISH_V1 + "  - id: a\n    text: Hej.\n    voice: {emotion: sad}\n"
                                       "  - id: b\n    text: Hi.\n    voice: {sound_version: v2}\n"
                                       "  - id: c\n    text: Hey.\n")
    problem = only_problem(path)
    assert (problem.line, problem.field) == (5, "voice.sound_version")
    assert "language 'Danish' needs sound_version v2" in problem.message


def test_a_conflict_a_chapter_makes_is_reported_at_that_chapter(tmp_path: Path) -> None:
    path = write(tmp_path, "title: Book\nlanguage: Danish\nvoice: {model_id: m1, sound_version: v2}\nchapters:\n"
                           "  - id: a\n    text: Hej.\n"                                   # 5-6
                           "  - id: b\n    text: Hi.\n    voice:\n      sound_version: v1\n"  # 7-10
                           "  - id: c\n    text: Hej.\n    language: Swedish\n"            # 11-13
                           "    voice: {sound_version: v1}\n")                             # 14
    problems = problems_of(path)
    assert [(p.line, p.field) for p in problems] == [(10, "chapters[1].voice.sound_version"),
                                                     (14, "chapters[2].voice.sound_version")]
    assert "'Danish'" in problems[0].message and "'Swedish'" in problems[1].message


def test_a_refused_language_is_not_judged_again(tmp_path: Path) -> None:
    problem = only_problem(write(tmp_path, "title: Book\nlanguage: Danish\nvoice: {model_id: m1, sound_version: v3}\n"
                                           "chapters:\n  - id: a\n    text: Hi.\n"))
    assert problem.field == "voice.sound_version" and "'v3' is not allowed" in problem.message


# --- 5. manifest paths that are not plain files, and an output with no name ------------------------

@pytest.mark.timeout(10)
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_named_pipe_as_manifest_is_refused_without_waiting(tmp_path: Path) -> None:
    fifo = tmp_path / "book.yaml"
    os.mkfifo(fifo)  # nobody writes: reading it would block forever
    problem = only_problem(fifo)
    assert problem.message.startswith("is not a regular file (a pipe or a device?)")


@pytest.mark.timeout(10)
@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero here")
def test_a_device_as_manifest_is_refused_without_reading_it() -> None:
    problem = only_problem(Path("/dev/zero"))  # its size says 0, and it never ends
    assert problem.message.startswith("is not a regular file (a pipe or a device?)")


def test_at_most_the_limit_is_read_whatever_the_size_says(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Some regular files (in /proc, or one still growing) hold more than their size says."""
    path = write(tmp_path, "title: x\n" + "# padding\n" * (MANIFEST_MAX_BYTES // 10 + 1))
    real_stat, real_fstat = os.stat, os.fstat

    def small(info: os.stat_result) -> os.stat_result:
        return os.stat_result((*info[:6], 100, *info[7:10]))

    with monkeypatch.context() as patch:
        patch.setattr(manifest_module.os, "stat",
                      lambda p, *a, **k: small(real_stat(p, *a, **k)) if str(p) == str(path) else real_stat(p, *a, **k))
        patch.setattr(manifest_module.os, "fstat", lambda fd: small(real_fstat(fd)))
        problem = only_problem(path)
    assert problem.message.startswith(f"is over the {MANIFEST_MAX_BYTES:,}-byte limit")


def test_an_unreadable_manifest_is_a_problem_not_a_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, HEAD + "chapters:\n  - id: a\n    text: Hi.\n")

    def refused(*args: Any, **kwargs: Any) -> int:
        raise PermissionError(13, "Permission denied")

    with monkeypatch.context() as patch:
        patch.setattr(manifest_module.os, "open", refused)
        problem = only_problem(path)
    assert problem.message == "cannot be read (Permission denied); check the path and its permissions"


@pytest.mark.parametrize("output", ["/", "/.."])
def test_a_file_system_root_as_output_is_a_problem(tmp_path: Path, output: str) -> None:
    path = write(tmp_path, f"title: Book\noutput: '{output}'\nvoice: {{model_id: m1}}\n"
                           "chapters:\n  - id: a\n    text: Hi.\n")
    problem = only_problem(path)
    assert (problem.line, problem.field) == (2, "output")
    assert "root" in problem.message and "<output>-simulated" in problem.message and "give a folder" in problem.message
