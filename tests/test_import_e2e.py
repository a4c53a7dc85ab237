"""`audiobook init` then `audiobook plan`, for real, on one book of every kind the importer reads (issue 13,
"Done when" and item 10): an EPUB with front and back matter and notes, a DOCX, a Project Gutenberg text, the
Chinese classic with its 第…回 headings, an HTML file. Each gives its chapters in reading order with their
titles, the front and back matter commented out with reasons, and a manifest `plan` accepts as written. Then
a one-sentence revision of an EPUB that was rendered: `init --update` rewrites one chapter file and `plan`
shows one chunk to render."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from docx_books import Book, endnote, footnote, paragraph, write_docx
from e2e_support import API_KEY, MODEL, REPO, audiobook
from import_books import SAMPLE_CHAPTERS, EpubSpec, Page, Piece, write_epub
from test_import_plain import GUTENBERG_FOOTER, GUTENBERG_HEADER

from pipeline.simulator import Simulator, SimulatorConfig
from pipeline.text import to_spoken_text

CORPORA = REPO.parent / "shared" / "corpora"
SAMPLE_EPUB = REPO / "sample_texts" / "the-salt-road.epub"
ALICE_CHAPTERS = ["Down the Rabbit-Hole", "The Pool of Tears", "A Caucus-Race and a Long Tale",
                  "The Rabbit Sends in a Little Bill", "Advice from a Caterpillar", "Pig and Pepper",
                  "A Mad Tea-Party", "The Queen’s Croquet-Ground", "The Mock Turtle’s Story",
                  "The Lobster Quadrille", "Who Stole the Tarts?", "Alice’s Evidence"]


@pytest.fixture(scope="module")
def simulator() -> Iterator[Simulator]:
    config = SimulatorConfig(api_key=API_KEY, seed=5, task_base_s=0.02, task_s_per_char=0.0002,
                             preload_voices=(MODEL,))
    with Simulator(config, host="127.0.0.1", port=0, files_port=0) as sim:
        yield sim


def imported(sim: Simulator, source: Path, folder: Path, *extra: str) -> dict:
    voice = () if "--update" in extra else ("--model-id", MODEL)  # an update keeps book.yaml's voice
    made = audiobook(sim, "init", str(source), "--out", str(folder), *voice, "--json", *extra)
    assert made.returncode == 0, made.stdout + made.stderr
    return json.loads(made.stdout)


def planned(sim: Simulator, manifest: Path) -> dict:
    result = audiobook(sim, "plan", str(manifest), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def commented_out(manifest: Path) -> dict[str, str]:
    """title -> reason of every commented-out entry; each must be valid YAML once its one `#` is deleted."""
    found = {}
    for line in manifest.read_text(encoding="utf-8").splitlines():
        match = re.fullmatch(r" # (- \{.*\})  # skipped: (.*)", line)
        if match:
            [entry] = yaml.safe_load(match.group(1))
            found[entry["title"]] = match.group(2)
    return found


def words(text: str) -> list[str]:
    return text.split()


def spoken_words(folder: Path, source: str) -> list[str]:
    return to_spoken_text((folder / source).read_text(encoding="utf-8"), markdown=True, scene_break_s=0).split()


def test_an_epub_with_front_and_back_matter_and_notes(simulator: Simulator, tmp_path: Path) -> None:
    doc = imported(simulator, SAMPLE_EPUB, tmp_path / "salt")
    plan = planned(simulator, tmp_path / "salt" / "book.yaml")
    assert [c["title"] for c in plan["chapters"]] == ["Dedication", *SAMPLE_CHAPTERS, "Afterword"]
    assert commented_out(tmp_path / "salt" / "book.yaml") == {
        "Cover": "cover", "Title Page": "title page", "Copyright": "copyright", "Contents": "table of contents",
        "Notes": "notes", "Index": "index", "Colophon": "colophon"}
    assert (doc["book"]["title"], doc["book"]["author"], doc["book"]["language"]) == \
        ("The Salt Road", "Maren Holt", "English")
    assert (tmp_path / "salt" / "cover.jpg").read_bytes()[:3] == b"\xff\xd8\xff"
    for part in doc["parts"]:
        if part["chapter"]:  # no note numbers, no note text, no alt text in what is read
            words = spoken_words(tmp_path / "salt", part["file"])
            assert not [w for w in words if re.fullmatch(r"\W*\d{1,2}\W*", w)], part["title"]
            assert "↩" not in " ".join(words) and "novel" not in words


def test_a_docx_with_a_title_notes_and_headings(simulator: Simulator, tmp_path: Path) -> None:
    book = Book(title="The Quiet House", author="Ada Author", language="en-US", blocks=[
        paragraph("Title", "The Quiet House"),
        paragraph("Normal", "Copyright © 2020 Ada Author. All rights reserved."),
        paragraph("Heading 1", "One"),
        paragraph("Normal", "The house was quiet", footnote("It was never quiet."), " in the morning."),
        paragraph("Heading 1", "Two"),
        paragraph("Normal", "At noon the clocks", endnote("All of them."), " agreed for once."),
        paragraph("Heading 1", "Notes"),
        paragraph("Normal", "Some notes the author kept."),
    ])
    source = write_docx(tmp_path / "quiet.docx", book)
    doc = imported(simulator, source, tmp_path / "quiet")
    plan = planned(simulator, tmp_path / "quiet" / "book.yaml")
    assert [c["title"] for c in plan["chapters"]] == ["One", "Two"]
    # the part before the first heading: the title and the copyright line
    assert set(commented_out(tmp_path / "quiet" / "book.yaml").values()) == {"title page", "notes"}
    chapters = [p for p in doc["parts"] if p["chapter"]]
    assert spoken_words(tmp_path / "quiet", chapters[0]["file"]) == \
        words("One The house was quiet in the morning.")
    assert spoken_words(tmp_path / "quiet", chapters[1]["file"]) == words("Two At noon the clocks agreed for once.")


def test_a_project_gutenberg_text(simulator: Simulator, tmp_path: Path) -> None:
    alice = (CORPORA / "alice.txt").read_text(encoding="utf-8")
    source = tmp_path / "pg11.txt"
    source.write_text(GUTENBERG_HEADER + alice + GUTENBERG_FOOTER, encoding="utf-8")
    doc = imported(simulator, source, tmp_path / "alice")
    plan = planned(simulator, tmp_path / "alice" / "book.yaml")
    titles = [c["title"] for c in plan["chapters"]]
    assert [re.sub(r"^Chapter [IVX]+\. ", "", t) for t in titles] == ALICE_CHAPTERS
    assert "table of contents" in commented_out(tmp_path / "alice" / "book.yaml").values()
    assert doc["book"]["author"] == "Lewis Carroll" and doc["book"]["language"] == "English"
    every_word = " ".join(" ".join(spoken_words(tmp_path / "alice", p["file"])) for p in doc["parts"])
    assert "Gutenberg" not in every_word and "license" not in every_word.casefold()


def test_the_chinese_classic_with_its_chapter_headings(simulator: Simulator, tmp_path: Path) -> None:
    doc = imported(simulator, CORPORA / "hongloumeng.txt", tmp_path / "hlm")
    plan = planned(simulator, tmp_path / "hlm" / "book.yaml")
    titles = [c["title"] for c in plan["chapters"]]
    assert len(titles) == 120
    assert titles[0].startswith("第一回") and titles[119].startswith("第一二零回")  # as this edition numbers it
    assert doc["book"]["language"] == "Chinese"
    assert all(c["tasks"] >= 1 for c in plan["chapters"])


def test_an_html_book(simulator: Simulator, tmp_path: Path) -> None:
    source = tmp_path / "book.html"
    source.write_bytes("""<!DOCTYPE html><html lang="fr"><head><meta charset="windows-1252">
<title>Le Phare</title><meta name="author" content="Jeanne Auteur"></head><body>
<h1>Table des matières</h1><nav role="doc-toc"><ol><li>Un</li><li>Deux</li></ol></nav>
<h1>Un</h1><p>Le phare était éteint depuis l’été.<sup><a href="#n1" role="doc-noteref">1</a></sup></p>
<h1>Deux</h1><p>Élise ralluma la lampe.</p>
<aside role="doc-footnote" id="n1"><p>Une note.</p></aside></body></html>""".encode("cp1252"))
    doc = imported(simulator, source, tmp_path / "phare")
    plan = planned(simulator, tmp_path / "phare" / "book.yaml")
    assert [c["title"] for c in plan["chapters"]] == ["Un", "Deux"]
    assert doc["book"]["language"] == "French" and doc["book"]["author"] == "Jeanne Auteur"
    chapters = [p for p in doc["parts"] if p["chapter"]]
    assert spoken_words(tmp_path / "phare", chapters[0]["file"]) == words("Un Le phare était éteint depuis l’été.")


def _revision_book(ledger: str) -> EpubSpec:
    def chapter(number: int, title: str, text: str) -> Page:
        return Page(f"ch{number}.xhtml", (Piece(f"<h1>{title}</h1><p>{text}</p>", toc=title),))

    return EpubSpec(title="The Ferry", pages=(
        Page("copyright.xhtml", (Piece("<p>Copyright © 2024 Ada Test. All rights reserved.</p>", toc="Copyright"),),
             body_type="copyright-page"),
        chapter(1, "Dawn", "The ferry left at dawn. Elsie stood on the jetty with two cases."),
        chapter(2, "The Ledger", ledger),
        chapter(3, "Night", "That night the wind rose. The spray reached the windows of the fourth landing."),
    ))


def test_a_revised_epub_updates_one_chapter_file_and_plan_shows_one_chunk(simulator: Simulator,
                                                                          tmp_path: Path) -> None:
    ledger = "The ledger went back to 1887. Every night somebody had written the time the light was lit."
    source = write_epub(tmp_path / "ferry.epub", _revision_book(ledger))
    folder = tmp_path / "ferry"
    imported(simulator, source, folder)
    manifest = folder / "book.yaml"
    with manifest.open("a", encoding="utf-8") as fh:  # the user's settings: no book, quick polls
        fh.write("audio: {m4b: false, profile: none}\napi: {poll_interval_s: 0.05, requests_per_minute: 100000}\n")
    rendered = audiobook(simulator, "run", str(manifest), "-q")
    assert rendered.returncode == 0, rendered.stdout + rendered.stderr
    before = {p.name: p.stat().st_mtime_ns for p in (folder / "chapters").iterdir()}

    write_epub(source, _revision_book(ledger.replace("the time the light", "the hour the lamp")))
    merged = imported(simulator, source, folder, "--update")
    assert [(p["title"], p["status"]) for p in merged["parts"]] == [
        ("Copyright", "unchanged"), ("Dawn", "unchanged"), ("The Ledger", "changed"), ("Night", "unchanged")]
    assert merged["written"] == ["chapters/03-the-ledger.md"]
    after = {p.name: p.stat().st_mtime_ns for p in (folder / "chapters").iterdir()}
    assert [name for name in after if after[name] != before[name]] == ["03-the-ledger.md"]

    plan = planned(simulator, manifest)
    assert plan["totals"]["changes"]["to_render"] == 1
    [chunk] = [chunk for c in plan["chapters"] for chunk in c["chunks"] if chunk["fate"] == "render"]
    assert "the hour the lamp" in chunk["text"]
