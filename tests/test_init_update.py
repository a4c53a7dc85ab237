"""`audiobook init --update`: a revised manuscript merged into an existing book folder (issue 13, item 7).

Only the chapter files whose text changed are rewritten; every edit in book.yaml survives; ids are stable
(matched by title, then by place and similar text); new parts get new ids, vanished ones are commented
out with the date; the user's choices about skipped parts stand. End to end: init, render against the
simulator, change one sentence, update, and `plan` shows one chunk to render."""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from e2e_support import API_KEY, MODEL, REPO, audiobook
from test_init import cli, plan_ids

from pipeline.cli import main
from pipeline.errors import ConfigError
from pipeline.importer.folder import ImportResult, write_folder
from pipeline.importer.model import SourceBook, SourcePart
from pipeline.simulator import Simulator, SimulatorConfig

FIRST = datetime.date(2030, 5, 17)
LATER = datetime.date(2030, 6, 1)
OLD_NS = 1_000_000_000 * 10**9  # 2001: a time no write of this test can produce


def part(title: str, text: str | None = None, *, skip: str | None = None) -> SourcePart:
    body = text if text is not None else f"The chapter called {title} begins here. It has words to read, and more."
    return SourcePart(title=title, markdown=f"# {title}\n\n{body}\n", origin="test", skip=skip)


def book(*parts: SourcePart) -> SourceBook:
    return SourceBook(title="The Lighthouse", author="A. Keeper", language="English", parts=parts)


TEXTS = {
    "Contents": "One. Two. Three.",
    "One": "The ferry left at dawn. Elsie stood on the jetty with two cases, and the keeper waited.",
    "Two": "The log went back to 1887. Every night somebody had written the time the light was lit.",
    "Three": "That night the wind rose. The barometer fell by midnight, and the spray reached the windows.",
}


def original() -> SourceBook:
    return book(part("Contents", TEXTS["Contents"], skip="table of contents"),
                *(part(t, TEXTS[t]) for t in ("One", "Two", "Three")))


def imported(tmp_path: Path, source: SourceBook | None = None) -> Path:
    folder = tmp_path / "book"
    write_folder(source or original(), folder, today=FIRST)
    for path in folder.rglob("*"):
        os.utime(path, ns=(OLD_NS, OLD_NS))
    return folder


def update(folder: Path, source: SourceBook) -> ImportResult:
    return write_folder(source, folder, update=True, today=LATER)


def statuses(result: ImportResult) -> list[tuple[str | None, str, str]]:
    return [(r.id, r.title, r.status) for r in result.rows]


def touched(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and p.stat().st_mtime_ns != OLD_NS)


def manifest_text(folder: Path) -> str:
    return (folder / "book.yaml").read_text(encoding="utf-8")


# --- what is rewritten ---------------------------------------------------------------------------

def test_the_same_source_again_writes_nothing(tmp_path: Path) -> None:
    folder = imported(tmp_path)
    before = manifest_text(folder)
    result = update(folder, original())
    assert result.written == ()
    assert touched(folder) == []
    assert manifest_text(folder) == before
    assert statuses(result) == [("ch01", "Contents", "unchanged"), ("ch02", "One", "unchanged"),
                                ("ch03", "Two", "unchanged"), ("ch04", "Three", "unchanged")]


def test_one_changed_sentence_rewrites_one_chapter_file(tmp_path: Path) -> None:
    folder = imported(tmp_path)
    revised = book(part("Contents", TEXTS["Contents"], skip="table of contents"), part("One", TEXTS["One"]),
                   part("Two", TEXTS["Two"].replace("1887", "1888")), part("Three", TEXTS["Three"]))
    result = update(folder, revised)
    assert touched(folder) == ["chapters/03-two.md"]
    assert [p.relative_to(folder).as_posix() for p in result.written] == ["chapters/03-two.md"]
    assert "1888" in (folder / "chapters/03-two.md").read_text(encoding="utf-8")
    assert [s for _, _, s in statuses(result)] == ["unchanged", "unchanged", "changed", "unchanged"]


# --- what is kept --------------------------------------------------------------------------------

def test_every_edit_in_book_yaml_survives_an_update_that_adds_and_removes_chapters(tmp_path: Path) -> None:
    folder = imported(tmp_path)
    text = manifest_text(folder)
    text = text.replace("title: The Lighthouse\n", "# my own comment at the top\ntitle: The Lighthouse Keeper\n"
                        "narrator: Jo Reader\n")
    text = text.replace("language: English\n", "")
    text = text.replace("voice:\n", "pricing: {char_fee_per_10k: 0.5, voice_fee_per_task: 0.02}\nvoice:\n  speed: 0.95\n")
    text = text.replace("chapters:\n", "language: English  # moved below the voice\nchapters:\n")
    text = text.replace("    title: Two\n    source: chapters/03-two.md\n",
                        "    title: Two, my title  # renamed by me\n    source: chapters/03-two.md\n"
                        "    voice: {emotion: sad, speed: 0.9}\n")
    text += "subtitles: word  # a key after the chapters\n"
    (folder / "book.yaml").write_text(text, encoding="utf-8")
    assert plan_ids(folder / "book.yaml") == ["ch02", "ch03", "ch04"]
    revised = book(part("Contents", TEXTS["Contents"], skip="table of contents"),
                   part("One", TEXTS["One"] + " She had no umbrella."), part("Two", TEXTS["Two"]),
                   part("Four", "A brand new chapter about the lamp and its long brass handle, polished every day."))
    result = update(folder, revised)
    merged = manifest_text(folder)
    head = text[:text.index("chapters:\n")]
    assert merged.startswith(head), "everything before the chapters list is kept byte for byte"
    assert merged.endswith("subtitles: word  # a key after the chapters\n")
    assert "    title: Two, my title  # renamed by me\n    source: chapters/03-two.md\n" \
           "    voice: {emotion: sad, speed: 0.9}\n" in merged
    assert " # - {id: ch04, title: Three, source: chapters/04-three.md}  # removed from the source on 2030-06-01\n" \
        in merged
    assert "  - id: ch05\n    title: Four\n    source: chapters/04-four.md\n" in merged
    assert (folder / "chapters/04-three.md").exists(), "a removed chapter's file is kept"
    assert statuses(result) == [("ch01", "Contents", "unchanged"), ("ch02", "One", "changed"),
                                ("ch03", "Two, my title", "unchanged"), ("ch05", "Four", "new"),
                                ("ch04", "Three", "removed")]
    assert plan_ids(folder / "book.yaml") == ["ch02", "ch03", "ch05"]
    data = yaml.safe_load(merged)
    assert data["voice"] == {"model_id": "model_sample_narrator", "speed": 0.95}
    assert data["chapters"][1]["voice"] == {"emotion": "sad", "speed": 0.9}
    assert list(data)[:5] == ["title", "narrator", "author", "pricing", "voice"]
    restored = merged.replace(" # - {id: ch04", "  - {id: ch04")
    (folder / "book.yaml").write_text(restored, encoding="utf-8")
    assert plan_ids(folder / "book.yaml") == ["ch02", "ch03", "ch04", "ch05"], "one `#` restores a removed entry"


def test_ids_follow_titles_when_a_chapter_is_inserted_before_them(tmp_path: Path) -> None:
    folder = imported(tmp_path)
    revised = book(part("Contents", TEXTS["Contents"], skip="table of contents"),
                   part("Prologue", "Before all this, there was a storm that nobody in the village forgot."),
                   *(part(t, TEXTS[t]) for t in ("One", "Two", "Three")))
    result = update(folder, revised)
    assert statuses(result) == [("ch01", "Contents", "unchanged"), ("ch05", "Prologue", "new"),
                                ("ch02", "One", "unchanged"), ("ch03", "Two", "unchanged"),
                                ("ch04", "Three", "unchanged")]
    assert result.rows[1].file == "chapters/02-prologue.md"
    assert touched(folder) == ["book.yaml", "chapters/02-prologue.md"]
    assert plan_ids(folder / "book.yaml") == ["ch05", "ch02", "ch03", "ch04"]


def test_a_renamed_chapter_keeps_its_id_when_its_text_is_similar_and_not_otherwise(tmp_path: Path) -> None:
    folder = imported(tmp_path)
    renamed = book(part("Contents", TEXTS["Contents"], skip="table of contents"), part("One", TEXTS["One"]),
                   part("The Logbook", TEXTS["Two"].replace("1887", "1888")), part("Three", TEXTS["Three"]))
    result = update(folder, renamed)
    assert statuses(result)[2] == ("ch03", "Two", "changed")
    assert any("now titles it 'The Logbook'" in n for n in result.notes)
    replaced = book(part("Contents", TEXTS["Contents"], skip="table of contents"), part("One", TEXTS["One"]),
                    part("Other", "Nothing in common with the old chapter: gulls, tides, a broken radio."),
                    part("Three", TEXTS["Three"]))
    result = update(folder, replaced)
    assert statuses(result)[2:] == [("ch05", "Other", "new"), ("ch04", "Three", "unchanged"),
                                    ("ch03", "Two", "removed")]


def test_duplicate_titles_match_in_order(tmp_path: Path) -> None:
    texts = [f"Text number {n} of a book whose chapters have no titles, with words {n} {n} {n}." for n in range(3)]
    folder = imported(tmp_path, book(*(part("Chapter", t) for t in texts)))
    result = update(folder, book(*(part("Chapter", t) for t in [texts[0], texts[1] + " More.", texts[2]])))
    assert statuses(result) == [("ch01", "Chapter", "unchanged"), ("ch02", "Chapter", "changed"),
                                ("ch03", "Chapter", "unchanged")]


def test_a_removed_chapter_that_comes_back_is_restored_and_ids_are_never_reused(tmp_path: Path) -> None:
    folder = imported(tmp_path)
    without_three = book(part("Contents", TEXTS["Contents"], skip="table of contents"),
                         part("One", TEXTS["One"]), part("Two", TEXTS["Two"]))
    update(folder, without_three)
    assert plan_ids(folder / "book.yaml") == ["ch02", "ch03"]
    with_four = book(*without_three.parts, part("Four", "The lamp room at the top, with its brass and its glass."))
    result = update(folder, with_four)
    assert statuses(result)[-1] == ("ch05", "Four", "new"), "ch04 belongs to the removed chapter"
    assert "removed" not in [s for _, _, s in statuses(result)], "an entry removed before is not reported again"
    back = book(*without_three.parts, part("Three", TEXTS["Three"]), with_four.parts[-1])
    result = update(folder, back)
    assert statuses(result)[-2:] == [("ch04", "Three", "new"), ("ch05", "Four", "unchanged")]
    assert any("ch04 (Three) is back" in n for n in result.notes)
    assert plan_ids(folder / "book.yaml") == ["ch02", "ch03", "ch04", "ch05"]


def test_the_users_choices_about_skipped_and_deleted_entries_stand(tmp_path: Path) -> None:
    folder = imported(tmp_path)
    text = manifest_text(folder)
    text = text.replace(" # - {id: ch01", "  - {id: ch01")  # the user reads the contents aloud after all
    text = text.replace("  - id: ch03\n    title: Two\n    source: chapters/03-two.md\n",  # an editor's Ctrl+/
                        "  # - id: ch03\n  #   title: Two\n  #   source: chapters/03-two.md\n")
    text = text.replace("  - id: ch04\n    title: Three\n    source: chapters/04-three.md\n", "")  # deleted
    text += ("  - id: intro\n    title: Read by\n    text: This audiobook is read by Jo.\n"
             "  - id: credits\n    source: ../credits.md\n")
    (tmp_path / "credits.md").write_text("Credits: the reader thanks the keeper.\n", encoding="utf-8")
    (folder / "book.yaml").write_text(text, encoding="utf-8")
    assert plan_ids(folder / "book.yaml") == ["ch01", "ch02", "intro", "credits"]
    revised = book(part("Contents", TEXTS["Contents"] + " Four.", skip="table of contents"),
                   *(part(t, TEXTS[t] + " Revised.") for t in ("One", "Two", "Three")))
    result = update(folder, revised)
    assert [(r.id, r.chapter, r.skip_reason, r.status) for r in result.rows] == [
        ("ch01", True, None, "changed"), ("ch02", True, None, "changed"),
        ("ch03", False, "commented out in book.yaml", "changed"),
        (None, False, "not in book.yaml (its entry was deleted)", "changed")]
    assert plan_ids(folder / "book.yaml") == ["ch01", "ch02", "intro", "credits"]
    assert "  # - id: ch03\n  #   title: Two\n  #   source: chapters/03-two.md\n" in manifest_text(folder)
    assert "Revised." in (folder / "chapters/04-three.md").read_text(encoding="utf-8")


# --- what is refused -----------------------------------------------------------------------------

@pytest.mark.parametrize("edit, message", [
    (lambda t: re.sub(r"(?s)chapters:\n.*", "chapters: [{id: ch02, source: chapters/02-one.md}]\n", t),
     "must be a block list"),
    (lambda t: t.replace("voice:\n", "voice: [\n"), "book.yaml:"),
    (lambda t: "", "no `chapters:` list"),
])
def test_a_manifest_the_merge_cannot_read_is_refused_and_nothing_written(tmp_path: Path, edit: object,
                                                                         message: str) -> None:
    folder = imported(tmp_path)
    assert callable(edit)
    (folder / "book.yaml").write_text(edit(manifest_text(folder)), encoding="utf-8")
    os.utime(folder / "book.yaml", ns=(OLD_NS, OLD_NS))
    with pytest.raises(ConfigError, match=re.escape(message)):
        update(folder, book(part("One", "All new text for the first chapter, nothing like before.")))
    assert touched(folder) == []


def test_update_needs_a_book_yaml_and_reports_through_the_command(tmp_path: Path) -> None:
    source = tmp_path / "book.md"
    source.write_text("---\ntitle: T\n---\n\n# One\n\nThe ferry left at dawn.\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["init", str(source), "--out", str(tmp_path / "none"), "--update"])
    assert result.exit_code == 2 and "has no book.yaml to update" in result.stderr
    assert not (tmp_path / "none").exists()
    assert cli("init", str(source), "--out", str(tmp_path / "b")).exit_code == 0
    source.write_text("---\ntitle: T\n---\n\n# One\n\nThe ferry left at noon.\n\n# Two\n\nNew.\n", encoding="utf-8")
    result = cli("init", str(source), "--out", str(tmp_path / "b"), "--update")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["#", "title", "chars", "read", "as", "status", "file"]
    assert lines[1].split()[-2:] == ["changed", "chapters/01-one.md"]
    assert lines[2].split()[-2:] == ["new", "chapters/02-two.md"]
    assert "2 chapter(s), 0 part(s) not read aloud; 1 changed, 0 unchanged, 1 new, 0 removed" in result.stdout
    doc = json.loads(cli("init", str(source), "--out", str(tmp_path / "b"), "--update", "--json").stdout)
    assert doc["updated"] is True and doc["written"] == []
    assert [(p["id"], p["status"]) for p in doc["parts"]] == [("ch01", "unchanged"), ("ch02", "unchanged")]


# --- end to end: a one-sentence revision renders one chunk ------------------------------------------

@pytest.fixture
def simulator() -> Iterator[Simulator]:
    config = SimulatorConfig(api_key=API_KEY, seed=5, task_base_s=0.05, task_s_per_char=0.0005,
                             preload_voices=(MODEL,))
    with Simulator(config, host="127.0.0.1", port=0, files_port=0) as sim:
        yield sim


CHAPTERS = {
    "Arrival": "The ferry left at dawn. Elsie stood on the jetty with two cases.",
    "The Log": "The log went back to 1887. Every night somebody had written the time the light was lit.",
    "The Long Night": "That night the wind rose. The spray reached the windows of the fourth landing.",
}


def write_source(path: Path, chapters: dict[str, str]) -> None:
    body = "".join(f"# {title}\n\n{text}\n\n" for title, text in chapters.items())
    path.write_text(f"---\ntitle: The Lighthouse Keeper\nlanguage: en\n---\n\n{body}", encoding="utf-8")


def test_a_one_sentence_revision_rewrites_one_file_and_plan_shows_one_chunk(simulator: Simulator,
                                                                            tmp_path: Path) -> None:
    source = tmp_path / "manuscript.md"
    write_source(source, CHAPTERS)
    folder = tmp_path / "keeper"
    made = audiobook(simulator, "init", str(source), "--out", str(folder), "--model-id", MODEL)
    assert made.returncode == 0, made.stderr
    manifest = folder / "book.yaml"
    with manifest.open("a", encoding="utf-8") as fh:  # the user's own settings, after the chapters
        fh.write("audio: {m4b: false, profile: none}\npricing: {char_fee_per_10k: 5.0, voice_fee_per_task: 0.02}\n"
                 "api: {poll_interval_s: 0.05, requests_per_minute: 100000}\n")
    rendered = audiobook(simulator, "run", str(manifest), "-q")
    assert rendered.returncode == 0, rendered.stdout + rendered.stderr
    for path in (folder / "chapters").iterdir():
        os.utime(path, ns=(OLD_NS, OLD_NS))

    write_source(source, {**CHAPTERS, "The Log": CHAPTERS["The Log"].replace("time the light", "hour the lamp")})
    merged = audiobook(simulator, "init", str(source), "--out", str(folder), "--update", "--json")
    assert merged.returncode == 0, merged.stderr
    doc = json.loads(merged.stdout)
    assert [(p["id"], p["status"]) for p in doc["parts"]] == [("ch01", "unchanged"), ("ch02", "changed"),
                                                              ("ch03", "unchanged")]
    assert doc["written"] == ["chapters/02-the-log.md"]
    assert [p.name for p in (folder / "chapters").iterdir() if p.stat().st_mtime_ns != OLD_NS] == ["02-the-log.md"]
    assert manifest.read_text(encoding="utf-8").endswith("api: {poll_interval_s: 0.05, requests_per_minute: 100000}\n")

    planned = audiobook(simulator, "plan", str(manifest), "--json")
    assert planned.returncode == 0, planned.stderr
    plan = json.loads(planned.stdout)
    assert {c["id"]: c["changes"]["to_render"] for c in plan["chapters"]} == {"ch01": 0, "ch02": 1, "ch03": 0}
    assert plan["totals"]["changes"]["to_render"] == 1
    ch02 = plan["chapters"][1]["changes"]
    assert ch02["cost"] == plan["totals"]["changes"]["cost"] == pytest.approx(0.02 + 5.0 * ch02["chars"] / 10_000)
    changed = [chunk for c in plan["chapters"] for chunk in c["chunks"] if chunk["fate"] == "render"]
    assert len(changed) == 1 and "hour the lamp" in changed[0]["text"]


def test_a_fresh_folder_renders_on_the_simulator_right_away(tmp_path: Path) -> None:
    source = tmp_path / "manuscript.md"
    write_source(source, {"Arrival": "The ferry left at dawn."})
    made = CliRunner().invoke(main, ["init", str(source), "--out", str(tmp_path / "b")])
    assert made.exit_code == 0, made.output
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOUNDCLONE_") or k == "SOUNDCLONE_FFMPEG"}
    rendered = subprocess.run([sys.executable, "-m", "pipeline", "run", str(tmp_path / "b" / "book.yaml"), "--simulate",
                               "-q"], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert rendered.returncode == 0, rendered.stdout + rendered.stderr
    assert (tmp_path / "b/build/book-simulated/01-ch01.mp3").stat().st_size > 0
