"""`audiobook init`: the book folder it writes, the manifest `plan` accepts as written, the commented-out
skipped parts (one `#` to restore), the report, and what it refuses (issue 13, items 1, 2 and 8).

The folder writer is fed :class:`SourceBook` values built here (no reader involved); the command is run
for real on Markdown files, and `plan` for real on what it wrote."""

from __future__ import annotations

import datetime
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from hypothesis import given
from hypothesis import strategies as st
from import_books import jpeg_bytes, png_bytes

from pipeline.cli import _width, main
from pipeline.errors import ConfigError, SourceFileError
from pipeline.importer import read_book
from pipeline.importer.folder import (
    SAMPLE_VOICE,
    SCHEMA_LINE,
    file_slug,
    write_folder,
    yaml_flow,
    yaml_scalar,
)
from pipeline.importer.model import SourceBook, SourcePart
from pipeline.manifest import json_schema

TODAY = datetime.date(2030, 5, 17)
PNG = png_bytes()
JPEG = jpeg_bytes()


def part(title: str, text: str | None = None, *, skip: str | None = None, origin: str = "test") -> SourcePart:
    body = text if text is not None else f"The chapter called {title} begins here. It has words to read."
    return SourcePart(title=title, markdown=f"# {title}\n\n{body}\n", origin=origin, skip=skip)


def make_book(*parts: SourcePart, **meta: Any) -> SourceBook:
    defaults: dict[str, Any] = {"title": "The Lighthouse", "author": "A. Keeper", "language": "English"}
    return SourceBook(parts=parts or (part("Contents", "One. Two.", skip="table of contents"), part("One"),
                                      part("Two")), **{**defaults, **meta})


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def plan_ids(manifest: Path) -> list[str]:
    result = cli("plan", str(manifest), "--json")
    assert result.exit_code == 0, result.output
    return [c["id"] for c in json.loads(result.stdout)["chapters"]]


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def write_md(path: Path, chapters: dict[str, str], *, front: str = "title: The Lighthouse\nauthor: A. Keeper\n"
             "language: en\n") -> Path:
    body = "".join(f"# {title}\n\n{text}\n\n" for title, text in chapters.items())
    path.write_text(f"---\n{front}---\n\n{body}", encoding="utf-8")
    return path


# --- the folder ----------------------------------------------------------------------------------

def test_a_new_folder_holds_the_manifest_the_schema_every_part_and_the_cover(tmp_path: Path) -> None:
    book = make_book(part("Cover", "", skip="cover"), part("Contents", "One. Two. 第一回.", skip="table of contents"),
                     part("One"), part("第一回 甄士隐梦幻识通灵", "风暴过后的第三天，海面平静得像一面镜子。"),
                     part("Café au lait"), cover=(PNG, "png"))
    folder = tmp_path / "book"
    result = write_folder(book, folder, source_name="book.epub", today=TODAY)
    assert sorted(tree(folder)) == ["book.yaml", "chapters/01-cover.md", "chapters/02-contents.md",
                                    "chapters/03-one.md", "chapters/04-第一回-甄士隐梦幻识通灵.md",
                                    "chapters/05-cafe-au-lait.md", "cover.png", "manifest.schema.json"]
    assert (folder / "cover.png").read_bytes() == PNG
    assert json.loads((folder / "manifest.schema.json").read_text(encoding="utf-8")) == json_schema()
    text = (folder / "book.yaml").read_text(encoding="utf-8")
    assert text.splitlines()[0] == SCHEMA_LINE
    data = yaml.safe_load(text)
    assert {k: data[k] for k in ("title", "author", "language", "cover")} == {
        "title": "The Lighthouse", "author": "A. Keeper", "language": "English", "cover": "cover.png"}
    assert data["chapters"] == [
        {"id": "ch03", "title": "One", "source": "chapters/03-one.md"},
        {"id": "ch04", "title": "第一回 甄士隐梦幻识通灵", "source": "chapters/04-第一回-甄士隐梦幻识通灵.md"},
        {"id": "ch05", "title": "Café au lait", "source": "chapters/05-cafe-au-lait.md"},
    ]
    assert (folder / "chapters/04-第一回-甄士隐梦幻识通灵.md").read_text(encoding="utf-8") == \
        "# 第一回 甄士隐梦幻识通灵\n\n风暴过后的第三天，海面平静得像一面镜子。\n"
    assert [(r.index, r.id, r.chapter, r.skip_reason, r.status) for r in result.rows] == [
        (1, "ch01", False, "cover", "new"), (2, "ch02", False, "table of contents", "new"),
        (3, "ch03", True, None, "new"), (4, "ch04", True, None, "new"), (5, "ch05", True, None, "new")]
    assert not list(tmp_path.glob(".*.part")), "the temporary folder is renamed, not left behind"
    assert plan_ids(folder / "book.yaml") == ["ch03", "ch04", "ch05"]


def test_skipped_parts_are_one_commented_line_each_and_deleting_its_hash_restores_the_chapter(tmp_path: Path) -> None:
    book = make_book(part("Title page", "The Lighthouse, by A. Keeper", skip="title page"), part("One"),
                     part("Copyright", "Copyright 2030, all rights reserved.", skip="copyright"), part("Two"),
                     part("Index: A–Z, {all}", "lighthouse, 3; keeper, 5", skip="index"))
    folder = tmp_path / "book"
    write_folder(book, folder, today=TODAY)
    manifest = folder / "book.yaml"
    text = manifest.read_text(encoding="utf-8")
    commented = [line for line in text.splitlines() if "# skipped:" in line]
    assert commented == [
        ' # - {id: ch01, title: Title page, source: chapters/01-title-page.md}  # skipped: title page',
        ' # - {id: ch03, title: Copyright, source: chapters/03-copyright.md}  # skipped: copyright',
        ' # - {id: ch05, title: "Index: A–Z, {all}", source: chapters/05-index-a-z-all.md}  # skipped: index',
    ]
    assert plan_ids(manifest) == ["ch02", "ch04"]
    for line, restored in zip(commented, (["ch01", "ch02", "ch04"], ["ch02", "ch03", "ch04"],
                                          ["ch02", "ch04", "ch05"])):
        manifest.write_text(text.replace(line, line.replace("#", "", 1), 1), encoding="utf-8")
        assert plan_ids(manifest) == restored, line
    manifest.write_text(re.sub(r"(?m)^ # - ", "  - ", text), encoding="utf-8")
    assert plan_ids(manifest) == ["ch01", "ch02", "ch03", "ch04", "ch05"]


def test_metadata_the_source_lacks_is_left_out_and_an_unknown_language_is_auto(tmp_path: Path) -> None:
    book = SourceBook(title="Bare", parts=(part("One"),))
    write_folder(book, tmp_path / "bare", today=TODAY)
    data = yaml.safe_load((tmp_path / "bare/book.yaml").read_text(encoding="utf-8"))
    assert set(data) == {"title", "language", "voice", "chapters"}
    assert data["language"] == "auto"
    full = make_book(part("One"), year=1887, description="A short story.\nTwo lines: with \"quotes\" # and a hash.",
                     cover=(JPEG, "jpeg"), language="Danish")
    write_folder(full, tmp_path / "full", today=TODAY)
    data = yaml.safe_load((tmp_path / "full/book.yaml").read_text(encoding="utf-8"))
    assert data["year"] == 1887 and data["cover"] == "cover.jpg"
    assert data["description"] == "A short story.\nTwo lines: with \"quotes\" # and a hash."
    assert data["voice"] == {"model_id": SAMPLE_VOICE, "sound_version": "v2"}, "Danish is a v2-only language"
    assert plan_ids(tmp_path / "full/book.yaml") == ["ch01"]


def test_a_cover_that_is_not_the_image_it_claims_is_not_written(tmp_path: Path) -> None:
    result = write_folder(make_book(part("One"), cover=(b"GIF89a....", "jpg")), tmp_path / "b", today=TODAY)
    assert not list((tmp_path / "b").glob("cover.*"))
    assert "cover" not in yaml.safe_load((tmp_path / "b/book.yaml").read_text(encoding="utf-8"))
    assert any("cover" in note for note in result.notes)


def test_a_source_with_nothing_to_read_aloud_is_refused_and_nothing_written(tmp_path: Path) -> None:
    book = make_book(part("Contents", "One", skip="table of contents"), part("Index", "a, 1", skip="index"))
    with pytest.raises(SourceFileError, match="nothing to read aloud"):
        write_folder(book, tmp_path / "b", today=TODAY)
    assert not (tmp_path / "b").exists()


def test_the_voice_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = tmp_path / "voices.json"
    registry.write_text(json.dumps({"version": 1, "voices": {"anna": {
        "name": "anna", "model_id": "model_anna", "created_at": 0.0, "expires_at": 4e9}}}), encoding="utf-8")
    monkeypatch.setenv("SOUNDCLONE_VOICES", str(registry))
    source = write_md(tmp_path / "book.md", {"One": "The ferry left at dawn."})
    voices = {"default": (), "name": ("--voice", "anna"), "model": ("--model-id", "model_x"),
              "unknown": ("--voice", "bert")}
    for label, flags in voices.items():
        result = cli("init", str(source), "--out", str(tmp_path / label), *flags)
        assert result.exit_code == 0, result.output
        text = (tmp_path / label / "book.yaml").read_text(encoding="utf-8")
        voice = yaml.safe_load(text)["voice"]
        assert voice == {"default": {"model_id": SAMPLE_VOICE}, "name": {"name": "anna"},
                         "model": {"model_id": "model_x"}, "unknown": {"name": "bert"}}[label]
        if label == "default":
            line = next(line for line in text.splitlines() if SAMPLE_VOICE in line)
            assert "audiobook voice create" in line and "name:" in line, "the line says how to set a real voice"
            assert f"sample voice {SAMPLE_VOICE}" in result.stdout
        if label == "unknown":
            assert "voice 'bert' is not in the voice registry" in result.stdout
            assert cli("plan", str(tmp_path / label / "book.yaml")).exit_code == 2
        else:
            assert plan_ids(tmp_path / label / "book.yaml") == ["ch01"]


# --- names and YAML text -------------------------------------------------------------------------

@pytest.mark.parametrize("title, slug", [
    ("Chapter 1: The Jetty", "chapter-1-the-jetty"), ("Alice's Adventures", "alices-adventures"),
    ("Ça va, Élodie?", "ca-va-elodie"), ("第十二章 风暴", "第十二章-风暴"), ("한국어 제목", "한국어-제목"),
    ("???", "chapter"), ("", "chapter"), ("  CON  ", "con"), ("a/b\\c:d*e", "a-b-c-d-e"),
])
def test_file_slug(title: str, slug: str) -> None:
    assert file_slug(title) == slug


def test_a_long_cjk_title_gives_a_bounded_name_cut_at_a_character() -> None:
    slug = file_slug("风" * 200)
    assert 0 < len(slug.encode("utf-8")) <= 60 and set(slug) == {"风"}


@given(st.text(min_size=1, max_size=40))
def test_any_title_survives_the_manifest_in_block_and_flow_style(title: str) -> None:
    assert yaml.safe_load(f"title: {yaml_scalar(title)}\n") == {"title": title}
    line = f"- {yaml_flow({'id': 'ch01', 'title': title, 'n': 3, 'ok': True})}  # skipped: index\n"
    assert yaml.safe_load(line) == [{"id": "ch01", "title": title, "n": 3, "ok": True}]
    from ruamel.yaml import YAML

    assert YAML(typ="rt").load(line)[0]["title"] == title


@pytest.mark.parametrize("word", ["yes", "No", "on", "OFF", "null", "~", "true", "y", "1887", "-", "- x",
                                  "a: b", "a #b", "[x]", "x ", " x", "é", "&x", "*x", "!x", "%x", "@x", "`x"])
def test_scalars_yaml_would_retype_or_misread_are_quoted(word: str) -> None:
    assert yaml.safe_load(f"k: {yaml_scalar(word)}") == {"k": word}


# --- the command ---------------------------------------------------------------------------------

def test_the_default_folder_is_named_after_the_title_beside_the_source(tmp_path: Path) -> None:
    source = write_md(tmp_path / "manuscript.md", {"One": "The ferry left at dawn.", "Two": "The log."})
    result = cli("init", str(source))
    assert result.exit_code == 0, result.output
    folder = tmp_path / "the-lighthouse"
    assert (folder / "book.yaml").is_file()
    assert f"next: audiobook plan {folder / 'book.yaml'}" in result.stdout
    assert plan_ids(folder / "book.yaml") == ["ch01", "ch02"]


def test_the_report_lists_every_part_in_reading_order_and_cjk_titles_align(tmp_path: Path) -> None:
    source = write_md(tmp_path / "book.md", {"Contents": "1. One\n2. 第一回", "One": "The ferry left at dawn.",
                                             "第一回 甄士隐梦幻识通灵": "风暴过后的第三天，海面平静得像一面镜子。"})
    result = cli("init", str(source), "--out", str(tmp_path / "b"))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["#", "title", "chars", "read", "as", "file"]
    table = lines[1:4]
    assert [line.split()[0] for line in table] == ["01", "02", "03"]
    assert "skipped (table of contents)" in table[0] and "chapters/01-contents.md" in table[0]
    assert " chapter " in table[1] and table[2].rstrip().endswith("chapters/03-第一回-甄士隐梦幻识通灵.md")
    chars_end = {_width(m.group(0)) for line in table if (m := re.match(r"^\S+ .*? +[\d,]+(?= )", line))}
    assert len(chars_end) == 1, f"the chars column must end at one terminal column:\n{result.stdout}"
    assert lines[-2] == f"folder: {tmp_path / 'b'} (5 file(s) written)"
    assert lines[-1] == f"next: audiobook plan {tmp_path / 'b' / 'book.yaml'}"


def test_json_prints_the_same_report(tmp_path: Path) -> None:
    source = write_md(tmp_path / "book.md", {"Contents": "1. One", "One": "The ferry left at dawn."})
    result = cli("init", str(source), "--out", str(tmp_path / "b"), "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc) == {"folder", "manifest", "updated", "book", "parts", "written", "notes", "next"}
    assert doc["book"] == {"title": "The Lighthouse", "author": "A. Keeper", "language": "English",
                           "description": None, "year": None, "cover": None}
    assert [{k: p[k] for k in ("index", "id", "title", "chapter", "skip_reason", "file", "status")}
            for p in doc["parts"]] == [
        {"index": 1, "id": "ch01", "title": "Contents", "chapter": False, "skip_reason": "table of contents",
         "file": "chapters/01-contents.md", "status": "new"},
        {"index": 2, "id": "ch02", "title": "One", "chapter": True, "skip_reason": None,
         "file": "chapters/02-one.md", "status": "new"}]
    assert all(isinstance(p["chars"], int) and p["chars"] > 0 and p["origin"] for p in doc["parts"])
    assert sorted(doc["written"]) == ["book.yaml", "chapters/01-contents.md", "chapters/02-one.md",
                                      "manifest.schema.json"]
    assert doc["next"] == f"audiobook plan {tmp_path / 'b' / 'book.yaml'}"


def test_a_folder_with_a_book_yaml_is_refused_without_update_or_force(tmp_path: Path) -> None:
    source = write_md(tmp_path / "book.md", {"One": "The ferry left at dawn."})
    folder = tmp_path / "b"
    assert cli("init", str(source), "--out", str(folder)).exit_code == 0
    (folder / "book.yaml").write_text((folder / "book.yaml").read_text(encoding="utf-8") + "# mine\n",
                                      encoding="utf-8")
    before = tree(folder)
    write_md(source, {"One": "The ferry left at noon.", "Two": "More."})
    result = cli("init", str(source), "--out", str(folder))
    assert result.exit_code == 2
    assert "already exists" in result.stderr and "--update" in result.stderr and "--force" in result.stderr
    assert tree(folder) == before


def test_force_rewrites_the_generated_files_and_deletes_nothing(tmp_path: Path) -> None:
    source = write_md(tmp_path / "book.md", {"One": "The ferry left at dawn.", "Two": "The log."})
    folder = tmp_path / "b"
    assert cli("init", str(source), "--out", str(folder)).exit_code == 0
    build = {"build/book/journal.sqlite": b"journal", "build/book/01-ch01.mp3": b"ID3audio",
             "build/book/cache/ab/abcd.mp3": b"ID3chunk", "notes.txt": b"mine"}
    for name, data in build.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    (folder / "book.yaml").write_text("title: edited\n", encoding="utf-8")
    write_md(source, {"One": "The ferry left at noon.", "Three": "New."})
    result = cli("init", str(source), "--out", str(folder), "--force")
    assert result.exit_code == 0, result.output
    assert {name: (folder / name).read_bytes() for name in build} == build
    assert (folder / "chapters/02-two.md").exists(), "a chapter file of the old import is kept"
    assert "kept 1 chapter file(s)" in result.stdout
    assert (folder / "chapters/01-one.md").read_text(encoding="utf-8") == "# One\n\nThe ferry left at noon.\n"
    (folder / "build/book/journal.sqlite").unlink()  # a fake one: plan would open it
    assert plan_ids(folder / "book.yaml") == ["ch01", "ch02"]
    assert yaml.safe_load((folder / "book.yaml").read_text(encoding="utf-8"))["chapters"][1]["title"] == "Three"


def snapshot(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


@pytest.mark.parametrize("name, content, message", [
    ("book.pdf", b"%PDF-1.4", "is a .pdf file, which `audiobook init` cannot read; give one of .epub, .docx"),
    ("book", b"text", "a file without an extension"),
    ("missing.md", None, "does not exist"),
    ("folder.md", "dir", "is a folder"),
    ("binary.txt", b"\x00\x01\x02\xff\xfe" * 100, "binary.txt"),
    ("latin1.md", "Caf\xe9 au lait, na\xefve.".encode("latin-1"), "latin1.md"),
])
def test_a_source_that_cannot_be_read_is_one_line_exit_2_and_nothing_written(
        tmp_path: Path, name: str, content: bytes | str | None, message: str) -> None:
    source = tmp_path / name
    if content == "dir":
        source.mkdir()
    elif isinstance(content, bytes):
        source.write_bytes(content)
    before = snapshot(tmp_path)
    result = CliRunner().invoke(main, ["init", str(source), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"error: {source}"), result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("flags, message", [
    (("--chapter-pattern", "CHAPTER (["), "'CHAPTER ([' is not a valid regular expression"),
    (("--chapter-pattern", "x*"), "matches an empty line"),
    (("--voice", "anna", "--model-id", "m"), "--voice NAME or --model-id ID, not both"),
    (("--split-level", "7"), "7 is not in the range 1<=x<=6"),
    (("--split-level", "0"), "0 is not in the range 1<=x<=6"),
    (("--update", "--force"), "not both"),
    (("--update", "--voice", "anna"), "--update keeps the voice"),
    (("--model-id", " "), "--model-id is blank"),
])
def test_bad_flags_are_usage_errors_and_nothing_is_written(tmp_path: Path, flags: tuple[str, ...],
                                                           message: str) -> None:
    source = write_md(tmp_path / "book.md", {"One": "The ferry left at dawn."})
    result = CliRunner().invoke(main, ["init", str(source), "--out", str(tmp_path / "out"), *flags])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert not (tmp_path / "out").exists()


def test_chapter_pattern_and_split_level_reach_the_reader(tmp_path: Path) -> None:
    source = tmp_path / "book.md"
    source.write_text("---\ntitle: T\n---\n\n# Part One\n\n## First\n\nThe ferry left.\n\n## Second\n\nThe log.\n\n"
                      "SCENE 3\n\nA third one.\n", encoding="utf-8")
    result = cli("init", str(source), "--out", str(tmp_path / "a"), "--split-level", "2", "--chapter-pattern",
                 r"SCENE \d+", "--json")
    assert result.exit_code == 0, result.output
    titles = [p["title"] for p in json.loads(result.stdout)["parts"] if p["chapter"]]
    assert titles[-2:] == ["Second", "SCENE 3"] and titles[-3].endswith("First"), titles


def test_the_folder_is_made_atomically_and_read_book_names_the_supported_kinds(tmp_path: Path) -> None:
    with pytest.raises(SourceFileError, match=r"\.epub, \.docx, \.md, \.markdown, \.txt, \.html, \.htm, \.xhtml"):
        read_book(tmp_path / "x.odt")
    source = write_md(tmp_path / "book.md", {"One": "The ferry left at dawn."})
    (tmp_path / "blocked").write_text("a file where the folder should be", encoding="utf-8")
    result = CliRunner().invoke(main, ["init", str(source), "--out", str(tmp_path / "blocked" / "b")])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".part")]
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        write_folder(make_book(), tmp_path / "blocked")


def test_a_writable_folder_without_book_yaml_is_used_as_it_is(tmp_path: Path) -> None:
    folder = tmp_path / "b"
    (folder / "build").mkdir(parents=True)
    (folder / "build" / "keep.mp3").write_bytes(b"ID3")
    write_folder(make_book(), folder, today=TODAY)
    assert (folder / "build" / "keep.mp3").read_bytes() == b"ID3"
    assert plan_ids(folder / "book.yaml") == ["ch02", "ch03"]
    assert os.stat(folder / "book.yaml").st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("data", [png_bytes()[:40], jpeg_bytes()[:-30], b"\x89PNG\r\n\x1a\n" + b"\x00" * 64],
                         ids=["truncated png", "truncated jpeg", "png magic, no image"])
def test_a_damaged_cover_in_the_source_is_left_out_with_a_note_and_the_manifest_stays_valid(
        tmp_path: Path, data: bytes) -> None:
    result = write_folder(make_book(cover=(data, "png" if data.startswith(b"\x89") else "jpg")), tmp_path / "b",
                          today=TODAY)
    assert not list((tmp_path / "b").glob("cover.*"))
    assert any("cover" in note and "no cover was written" in note for note in result.notes)
    assert "cover" not in yaml.safe_load((tmp_path / "b/book.yaml").read_text(encoding="utf-8"))
    assert plan_ids(tmp_path / "b/book.yaml") == ["ch02", "ch03"]
