"""pipeline.manifest: YAML in, a validated Manifest out, or every problem at once (issue 2, item 3).

Each rule family has a test asserting that the problem names the file, the line and the field and
says how to fix it.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pipeline.errors import ManifestError, Problem
from pipeline.manifest import MANIFEST_MAX_BYTES, MANIFEST_MAX_NODES, load_manifest
from pipeline.models import API_MAX_CHARS, ChunkingSettings, PauseSettings, Voice

REPO = Path(__file__).resolve().parent.parent


def problems_of(path: Path) -> list[Problem]:
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    error = info.value
    assert error.exit_code == 2
    assert str(error).startswith(f"{len(error.problems)} problem")
    return error.problems


def only_problem(path: Path) -> Problem:
    (problem,) = problems_of(path)
    return problem


def find(problems: list[Problem], field: str) -> Problem:
    matching = [p for p in problems if p.field == field]
    assert matching, f"no problem for {field}: {[str(p) for p in problems]}"
    return matching[0]


def write(tmp_path: Path, text: str, name: str = "book.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


HEAD = "title: Book\nvoice:\n  model_id: m1\n"   # lines 1-3
CHAPTER = "chapters:\n  - id: ch01\n    text: Hello there.\n"


# --- a valid manifest ----------------------------------------------------------------------------

def test_defaults_fill_a_minimal_manifest(make_manifest) -> None:
    manifest = load_manifest(make_manifest())
    assert manifest.book.title == "Test Book"
    assert manifest.voice == Voice(model_id="model_test")
    assert manifest.chunking == ChunkingSettings()
    assert manifest.chunking.max_chars == API_MAX_CHARS
    assert manifest.pauses == PauseSettings()
    assert manifest.subtitles == "sentence"
    assert [c.id for c in manifest.chapters] == ["ch01", "ch02"]
    assert [c.number for c in manifest.chapters] == [1, 2]


def test_paths_are_relative_to_the_manifest_not_the_working_directory(make_manifest, tmp_path, monkeypatch) -> None:
    path = make_manifest(name="books/one/book.yaml", sources={"books/one/text/a.txt": "Words here."},
                         chapters=[{"id": "a", "source": "text/a.txt"}])
    monkeypatch.chdir(REPO)
    manifest = load_manifest(path)
    assert manifest.chapters[0].text == "Words here."
    assert manifest.chapters[0].source == path.parent / "text" / "a.txt"
    assert manifest.output.name == "book" and manifest.output.parent.name == "build"


def test_chapter_voice_overrides_merge_over_the_book_voice(make_manifest) -> None:
    path = make_manifest(voice={"model_id": "m1", "speed": 1.2, "emotion": "happy"},
                         chapters=[{"id": "a", "text": "One."},
                                   {"id": "b", "text": "Two.", "voice": {"emotion": "sad"}},
                                   {"id": "c", "text": "Three.", "voice": {"model_id": "m2", "pitch": -3}}])
    a, b, c = load_manifest(path).chapters
    assert a.voice == Voice(model_id="m1", speed=1.2, emotion="happy")
    assert b.voice == Voice(model_id="m1", speed=1.2, emotion="sad")
    assert c.voice == Voice(model_id="m2", speed=1.2, emotion="happy", pitch=-3)
    assert a.title == "a"


def test_markdown_follows_the_extension_unless_set(make_manifest) -> None:
    path = make_manifest(sources={"a.md": "*Hi* there.", "b.txt": "*Hi* there."},
                         chapters=[{"id": "a", "source": "a.md"}, {"id": "b", "source": "b.txt"},
                                   {"id": "c", "source": "b.txt", "markdown": True},
                                   {"id": "d", "text": "*Hi* there."}])
    assert [c.text for c in load_manifest(path).chapters] == ["Hi there.", "*Hi* there.", "Hi there.",
                                                               "*Hi* there."]


def test_bom_and_crlf_are_fine_in_sources_and_manifest(make_manifest, tmp_path) -> None:
    path = make_manifest(sources={"ch01.txt": b"\xef\xbb\xbfFirst line\r\nwrapped.\r\n\r\nSecond.\r\n"})
    raw = path.read_bytes().replace(b"\n", b"\r\n")
    path.write_bytes(b"\xef\xbb\xbf" + raw)
    manifest = load_manifest(path)
    assert manifest.chapters[0].text == "First line wrapped.\n\nSecond."


@pytest.mark.parametrize("name", ["sample.yaml", "sample-zh.yaml"])
def test_the_sample_manifests_load(name: str) -> None:
    manifest = load_manifest(REPO / "manifests" / name)
    assert manifest.chapters and all(c.text for c in manifest.chapters)


# --- every problem at once -----------------------------------------------------------------------

def test_every_problem_is_reported_at_once_with_file_line_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, HEAD + (
        "  emotoin: happy\n"          # 4
        "  speed: 3\n"                # 5
        "language: Klingon\n"         # 6
        "chapters:\n"                 # 7
        "  - id: ch01\n"              # 8
        "    source: missing.txt\n"   # 9
        "  - id: CH01\n"              # 10
        "    text: Hi.\n"             # 11
    ))
    problems = problems_of(path)
    assert [(p.line, p.field) for p in problems] == [
        (4, "voice.emotoin"), (5, "voice.speed"), (6, "language"), (9, "chapters[0].source"), (10, "chapters[1].id"),
    ]
    assert all(p.file == str(path) for p in problems)
    assert str(problems[0]) == f"{path}:4: voice.emotoin: unknown key 'emotoin' — did you mean 'emotion'?"


# --- types and ranges of voice fields --------------------------------------------------------------

@pytest.mark.parametrize("line, fix", [
    ("speed: 3", "0.5 and <= 2"), ("speed: 0.4", "0.5 and <= 2"), ("speed: fast", "a number"),
    ("speed: true", "a number"), ("vol: 0", "> 0 and <= 10"), ("vol: 10.5", "> 0 and <= 10"),
    ("pitch: 1.5", "whole number"), ("pitch: 13", ">= -12 and <= 12"), ("pitch: -13", ">= -12 and <= 12"),
    ("pitch: '1'", "an integer"), ("emotion: happyy", "did you mean 'happy'"),
    ("emotion: bored", "use one of happy, sad"), ("sound_version: v3", "use one of v1, v2"),
    ("model_id: 42", "quote it"), ("model_id: ''", "give a value"), ("model_id:", "give text"),
])
def test_voice_fields_have_the_api_types_and_ranges(tmp_path: Path, line: str, fix: str) -> None:
    head = "title: Book\nvoice:\n" if line.startswith("model_id") else HEAD
    problems = problems_of(write(tmp_path, head + f"  {line}\n" + CHAPTER))
    problem = problems[0]
    assert problem.line == head.count("\n") + 1
    assert problem.field == "voice." + line.split(":")[0]
    assert fix in problem.message


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", ".NaN"])
def test_nan_and_infinity_are_refused(tmp_path: Path, value: str) -> None:
    problem = only_problem(write(tmp_path, HEAD + f"  speed: {value}\n" + CHAPTER))
    assert (problem.line, problem.field) == (4, "voice.speed")
    assert "finite" in problem.message or "whole" in problem.message
    problem = only_problem(write(tmp_path, HEAD + f"pauses: {{sentence_s: {value}}}\n" + CHAPTER))
    assert problem.field == "pauses.sentence_s" and "finite" in problem.message


def test_chapter_voice_overrides_are_checked_too(tmp_path: Path) -> None:
    path = write(tmp_path, HEAD + "chapters:\n  - id: a\n    text: Hi.\n    voice: {pitch: 99, speedd: 1}\n")
    problems = problems_of(path)
    assert {p.field for p in problems} == {"chapters[0].voice.pitch", "chapters[0].voice.speedd"}
    assert all(p.line == 7 for p in problems)
    assert "did you mean 'speed'" in find(problems, "chapters[0].voice.speedd").message


def test_settings_sections_are_range_checked(tmp_path: Path) -> None:
    path = write(tmp_path, HEAD + "chunking: {max_chars: 20000}\npauses: {paragraph_s: -1}\n" + CHAPTER)
    problems = problems_of(path)
    assert "<= 9999" in find(problems, "chunking.max_chars").message
    assert ">= 0" in find(problems, "pauses.paragraph_s").message


# --- languages -----------------------------------------------------------------------------------

def test_v2_only_language_with_v1_is_refused(tmp_path: Path) -> None:
    problem = only_problem(write(tmp_path, HEAD + "language: Danish\n" + CHAPTER))
    assert (problem.line, problem.field) == (2, "voice.sound_version")
    assert "sound_version: v2" in problem.message
    load_manifest(write(tmp_path, HEAD + "  sound_version: v2\nlanguage: Danish\n" + CHAPTER))


def test_v2_only_language_on_one_chapter_is_refused_there(tmp_path: Path) -> None:
    path = write(tmp_path, HEAD + "chapters:\n  - id: a\n    text: Hej.\n    language: Swedish\n"
                                  "  - id: b\n    text: Hi.\n")
    problem = only_problem(path)
    assert problem.field == "chapters[0].voice.sound_version" and "v2" in problem.message
    assert problem.line == 5


def test_unknown_language_suggests_the_closest(tmp_path: Path) -> None:
    problem = only_problem(write(tmp_path, HEAD + "language: Englsh\n" + CHAPTER))
    assert (problem.line, problem.field) == (4, "language")
    assert "did you mean 'English'" in problem.message


# --- chapter ids ---------------------------------------------------------------------------------

@pytest.mark.parametrize("chapter_id", ["../evil", "a/b", "a\\\\b", "with space", "-lead", "_lead", ".hidden",
                                        "x" * 65, "ch:1", "ÄÖ"])
def test_unsafe_chapter_ids_are_refused(tmp_path: Path, chapter_id: str) -> None:
    problem = only_problem(write(tmp_path, HEAD + f'chapters:\n  - id: "{chapter_id}"\n    text: Hi.\n'))
    assert (problem.line, problem.field) == (5, "chapters[0].id")
    assert "e.g. ch01" in problem.message


@pytest.mark.parametrize("chapter_id", ["con", "NUL", "Com1", "lpt9", "aux", "prn"])
def test_reserved_file_names_are_refused(tmp_path: Path, chapter_id: str) -> None:
    problem = only_problem(write(tmp_path, HEAD + f"chapters:\n  - id: {chapter_id}\n    text: Hi.\n"))
    assert problem.field == "chapters[0].id" and "reserved" in problem.message and "rename" in problem.message


def test_duplicate_chapter_ids_ignoring_case(tmp_path: Path) -> None:
    path = write(tmp_path, HEAD + "chapters:\n  - id: intro\n    text: A.\n  - id: Intro\n    text: B.\n")
    problem = only_problem(path)
    assert (problem.line, problem.field) == (7, "chapters[1].id")
    assert "chapters[0]" in problem.message and "make it unique" in problem.message


def test_a_chapter_needs_exactly_one_of_source_and_text(make_manifest) -> None:
    problems = problems_of(make_manifest(chapters=[{"id": "a", "source": "ch01.txt", "text": "x"}, {"id": "b"}]))
    assert [p.field for p in problems] == ["chapters[0]", "chapters[1]"]
    assert "remove one" in problems[0].message and "add one" in problems[1].message


def test_chapters_must_be_a_non_empty_list(make_manifest) -> None:
    for chapters in ([], {"id": "a"}, "ch01"):
        problem = only_problem(make_manifest(chapters=chapters))
        assert problem.field == "chapters" and "non-empty list" in problem.message


@pytest.mark.parametrize("missing", ["title", "voice", "chapters"])
def test_required_keys(make_manifest, missing: str) -> None:
    problems = problems_of(make_manifest(**{missing: None}))
    assert any(p.field.startswith(missing) and "required" in p.message for p in problems)


# --- sources -------------------------------------------------------------------------------------

def test_missing_source_names_the_manifest_line(make_manifest) -> None:
    problem = only_problem(make_manifest(sources={"ch01.txt": None}))
    assert problem.field == "chapters[0].source"
    assert problem.line is not None and "does not exist" in problem.message and "relative to" in problem.message


@pytest.mark.parametrize("content, needle", [
    (b"", "is empty"), (b"  \n\n\t", "is empty"), (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
    ("Hi".encode("utf-16"), "UTF-16"), (b"<#1#>\n\n***", "no words"),
])
def test_unreadable_sources_are_named(make_manifest, content: bytes, needle: str) -> None:
    problem = only_problem(make_manifest(sources={"ch01.txt": content}))
    assert problem.field == "chapters[0].source"
    assert needle in problem.message


def test_non_utf8_source_names_the_source_line_and_column(make_manifest, tmp_path) -> None:
    problem = only_problem(make_manifest(sources={"ch01.txt": b"Line one.\nCaf" + b"\xe9 au lait.\n"}))
    assert problem.file == str(tmp_path / "ch01.txt")
    assert problem.line == 2 and "column 4" in problem.message
    assert "re-save it as UTF-8" in problem.message


def test_a_folder_as_source(make_manifest, tmp_path) -> None:
    (tmp_path / "folder").mkdir()
    problem = only_problem(make_manifest(chapters=[{"id": "a", "source": "folder"}]))
    assert "is a folder" in problem.message


def test_bad_pause_markers_in_a_source_are_located_in_the_source(make_manifest, tmp_path) -> None:
    problems = problems_of(make_manifest(sources={"ch01.txt": "Fine.\n\nA <#1.234#> pause and <#0#>."}))
    assert [(p.file, p.line) for p in problems] == [(str(tmp_path / "ch01.txt"), 3)] * 2
    assert "column 3" in problems[0].message and "column 23" in problems[1].message


def test_bad_pause_markers_in_inline_text_are_located_in_the_manifest(tmp_path: Path) -> None:
    path = write(tmp_path, HEAD + (
        "chapters:\n"                              # 4
        "  - id: a\n"                              # 5
        '    text: "Bad <#1.234#> marker"\n'       # 6
        "  - id: b\n"                              # 7
        "    text: |\n"                            # 8
        "      Fine line.\n"                       # 9
        "      Another <#abc#> here.\n"            # 10
        "  - id: c\n"                              # 11
        "    text: >\n"                            # 12
        "      Folded line one\n"                  # 13
        "      folded two <#0#> end.\n"            # 14
    ))
    problems = problems_of(path)
    assert [(p.file, p.line, p.field) for p in problems] == [
        (str(path), 6, "chapters[0].text"), (str(path), 10, "chapters[1].text"), (str(path), 14, "chapters[2].text")]
    assert [p.message.split(":")[0] for p in problems] == ["column 16", "column 15", "column 18"]


# --- the manifest file itself --------------------------------------------------------------------

@pytest.mark.parametrize("text, what", [("- a\n- b\n", "is a list"), ("", "is empty"), ("# just a comment\n", "is empty"),
                                        ("just a string\n", "is text"), ("42\n", "is a number")])
def test_a_manifest_that_is_not_a_mapping(tmp_path: Path, text: str, what: str) -> None:
    problem = only_problem(write(tmp_path, text))
    assert what in problem.message and "must be a mapping" in problem.message


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    problem = only_problem(write(tmp_path, "title: x\nvoice: {model_id: m\nchapters: []\n"))
    assert problem.line == 3 and "line 2" in problem.message
    assert "not valid YAML" in problem.message and "check indentation" in problem.message
    problem = only_problem(write(tmp_path, "title: x\n  bad: indent\n"))
    assert problem.line == 2


def test_duplicate_and_non_text_keys(tmp_path: Path) -> None:
    problems = problems_of(write(tmp_path, HEAD + "title: Again\n1: x\n" + CHAPTER))
    assert (problems[0].line, problems[0].field) == (4, "title") and "keep one" in problems[0].message
    assert problems[1].line == 5 and "plain word" in problems[1].message


def test_unknown_keys_suggest_the_closest_or_list_the_known(tmp_path: Path) -> None:
    problems = problems_of(write(tmp_path, HEAD + "titel: x\nzzz: 1\n" + CHAPTER))
    assert "did you mean 'title'" in find(problems, "titel").message
    assert "known keys: title, author" in find(problems, "zzz").message


def test_output_folder_that_is_a_file(make_manifest, tmp_path) -> None:
    (tmp_path / "out").write_text("not a folder")
    problem = only_problem(make_manifest(output="out"))
    assert problem.field == "output" and "is a file" in problem.message and "choose another" in problem.message


def test_cover_must_exist_and_be_an_image(make_manifest, tmp_path) -> None:
    assert "does not exist" in only_problem(make_manifest(cover="cover.jpg")).message
    (tmp_path / "cover.gif").write_bytes(b"GIF89a")
    assert ".jpg or .png" in only_problem(make_manifest(cover="cover.gif")).message


def test_missing_or_folder_manifest(tmp_path: Path) -> None:
    assert "does not exist" in only_problem(tmp_path / "nope.yaml").message
    assert "is a folder" in only_problem(tmp_path).message


def test_a_huge_manifest_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = write(tmp_path, "title: x\n" + "# padding\n" * (MANIFEST_MAX_BYTES // 10 + 1))
    started = time.perf_counter()
    problem = only_problem(path)
    assert time.perf_counter() - started < 1.0
    assert "byte" in problem.message and "limit" in problem.message


def test_an_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]  # 10**10 nodes
    path = write(tmp_path, "\n".join(lines) + "\ntitle: bomb\n")
    started = time.perf_counter()
    problem = only_problem(path)
    assert time.perf_counter() - started < 1.0
    assert f"{MANIFEST_MAX_NODES:,} YAML nodes" in problem.message


def test_a_self_referencing_alias_and_deep_nesting_are_refused(tmp_path: Path) -> None:
    assert "refers to itself" in only_problem(write(tmp_path, "title: &a [*a]\n")).message
    assert "nested too deeply" in only_problem(write(tmp_path, "title: " + "[" * 3000 + "]" * 3000 + "\n")).message


def test_invalid_utf8_manifest_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "book.yaml"
    path.write_bytes(b"title: ok\nauthor: Caf\xe9\n")
    problem = only_problem(path)
    assert problem.line == 2 and "column 12" in problem.message and "UTF-8" in problem.message
