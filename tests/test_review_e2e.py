"""End to end: a book rendered on the simulator, its review pages written by `audiobook review`, marks
made in headless Chromium and exported, and `audiobook retake --from-review` rendering exactly the
marked chunks (the simulator's ledger counts the tasks)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import e2e_support
import pytest
from e2e_support import audiobook, local_simulator

from pipeline.review.marks import plan_marks, read_marks
from pipeline.simulator import Simulator

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
CHROMEDRIVER = shutil.which("chromedriver")

TEXT = ("The ferry left the harbour at dawn with the mail. Elsie stood at the rail and watched the island.\n\n"
        "The keeper was waiting at the top of the steps. He took her cases without a word.\n\n"
        "The lighthouse stood at the far end of the island. Inside, the stairs wound up the wall.\n\n"
        "Her room was on the fourth landing. That night the wind rose and the glass fell.")


def write_book(folder: Path) -> Path:
    return e2e_support.write_book(folder, "Review Book", {"one": TEXT},
                                  chunking={"max_chars": 200, "paragraph_min_fill": 0.2})


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    with local_simulator(seed=2) as sim:
        yield sim


def audio_tasks(sim: Simulator) -> list[str]:
    return [t["id"] for t in sim.ledger()["tasks"] if t["kind"] == "audio"]


def export_marks(page: str, downloads: Path, rows: list[int]) -> dict[str, object]:
    """Open ``page`` in headless Chromium, toggle "redo" on sentence ``rows`` (one note), export."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM or ""
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--mute-audio", "--allow-file-access-from-files"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        driver.get(page)
        sentences = driver.find_elements(By.CSS_SELECTOR, ".s")
        for n, row in enumerate(rows):
            sentences[row].find_element(By.CSS_SELECTOR, "input.redo").click()
            if n == 0:
                sentences[row].find_element(By.CSS_SELECTOR, "input.note").send_keys("too fast")
        driver.find_element(By.ID, "export-marks").click()
        target = downloads / "review-marks.json"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if target.exists() and not list(downloads.glob("*.crdownload")) and target.read_text().strip():
                return json.loads(target.read_text(encoding="utf-8"))
            time.sleep(0.05)
        raise AssertionError("the page exported no review-marks.json")
    finally:
        driver.quit()


@pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                    reason="needs headless Chromium and chromedriver on PATH (apt install chromium chromium-driver)")
def test_marks_made_on_the_review_page_retake_exactly_those_chunks(tmp_path: Path, simulator: Simulator) -> None:
    book = write_book(tmp_path)
    assert audiobook(simulator, "run", str(book)).returncode == 0
    output = tmp_path / "build" / "book"
    result = audiobook(simulator, "review", str(book))
    assert result.returncode == 0, result.stderr
    page = output / "review" / "01-one.html"
    assert page.is_file() and (output / "review" / "index.html").is_file()
    # the waveform was taken while the chapter was built, not by decoding it again
    from pipeline.assembly import saved_waveform
    peaks = saved_waveform(output / ".assembly" / "peaks" / "one.json", output / "01-one.mp3")
    assert peaks is not None and len(peaks) >= 200 and max(peaks) > 0.1
    # the page holds the chapter's own sentences, as its subtitles have them
    srt = (output / "01-one.srt").read_text(encoding="utf-8")
    cues = [block.split("\n", 2)[2].replace("\n", " ") for block in srt.strip().split("\n\n")]
    data = json.loads(page.read_text(encoding="utf-8").split('id="review-data">', 1)[1].split("</script>", 1)[0])
    assert [s["text"] for s in data["sentences"]] == cues

    with sqlite3.connect(output / "journal.sqlite") as conn:
        chunks = {idx: key for key, idx in conn.execute("SELECT key, idx FROM chunks")}
    assert len(chunks) >= 2
    sentence_chunks = [s["chunk"] for s in data["sentences"]]
    # two sentences of the first chunk and one of the last: two retakes
    rows = [0, 1, len(sentence_chunks) - 1]
    assert sentence_chunks[0] == sentence_chunks[1] != sentence_chunks[-1]
    marks = export_marks(page.as_uri(), tmp_path, rows)
    assert marks["book"] == "Review Book"
    assert [(m["chapter"], m["chunk"], m["key"]) for m in marks["marks"]] == [  # type: ignore[union-attr]
        ("one", sentence_chunks[r], chunks[sentence_chunks[r]]) for r in rows]
    assert marks["marks"][0]["note"] == "too fast"  # type: ignore[index]
    marks_file = tmp_path / "review-marks.json"

    before = audio_tasks(simulator)
    dry = audiobook(simulator, "retake", str(book), "--from-review", str(marks_file), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "to render: 2 retake task(s)" in dry.stdout and "notes: too fast" in dry.stdout
    assert audio_tasks(simulator) == before  # the dry run sent nothing

    done = audiobook(simulator, "retake", str(book), "--from-review", str(marks_file))
    assert done.returncode == 0, done.stdout + done.stderr
    new = [t for t in audio_tasks(simulator) if t not in before]
    assert len(new) == 2
    retaken = {sentence_chunks[0], sentence_chunks[-1]}
    with sqlite3.connect(output / "journal.sqlite") as conn:
        takes = {(key, take, reason) for key, take, reason in conn.execute("SELECT key, take, reason FROM takes")}
        selected = dict(conn.execute("SELECT key, take FROM selected_takes").fetchall())
    assert takes == {(chunks[i], 2, "review") for i in retaken}
    assert selected == {chunks[i]: 2 for i in retaken}


def test_marks_whose_chunk_changed_are_refused_by_name(tmp_path: Path) -> None:
    from pipeline import runner

    book = write_book(tmp_path)
    manifest = runner.load(book)
    chapters = runner.plan(manifest).chapters
    first, second = chapters[0].chunks[0], chapters[0].chunks[1]
    marks_file = tmp_path / "marks.json"
    marks_file.write_text(json.dumps({"book": "Review Book", "marks": [
        {"chapter": "one", "chunk": first.index, "key": first.key, "sentence": "The ferry", "note": ""},
        {"chapter": "one", "chunk": first.index, "key": first.key, "sentence": "Elsie stood", "note": "x"},
        {"chapter": "one", "chunk": second.index, "key": "0" * 32, "sentence": "The keeper was", "note": ""},
        {"chapter": "gone", "chunk": 0, "key": first.key, "sentence": "?", "note": ""},
    ]}), encoding="utf-8")
    title, marks = read_marks(marks_file)
    plan = plan_marks(title, marks, chapters, title=manifest.book.title)
    assert [(m.chunk.index, len(m.marks)) for m in plan.chunks] == [(first.index, 2)]  # one take for two marks
    refused = [r.describe() for r in plan.refused]
    assert len(refused) == 2
    assert refused[0].startswith(f"one chunk {second.index} (“The keeper was”): the chunk's text")
    assert refused[1].startswith("gone chunk 0")
    # the command says so, renders nothing for them, and exits 1 (the dry run sends nothing at all)
    from click.testing import CliRunner

    from pipeline.cli import main

    result = CliRunner().invoke(main, ["retake", str(book), "--from-review", str(marks_file), "--dry-run"])
    assert result.exit_code == 1
    assert "refused: one chunk" in result.output and "to render: 1 retake task(s)" in result.output


@pytest.mark.parametrize("content, message", [
    ("not json", "is not JSON"),
    ('{"marks": []}', '"book" must be'),
    ('{"book": "B", "marks": [{"chapter": "one", "chunk": -1, "key": "k"}]}', "marks[0].chunk: must be a chunk index"),
    ('[]', "expected"),
])
def test_a_malformed_marks_file_is_refused_naming_the_field(tmp_path: Path, content: str, message: str) -> None:
    from click.testing import CliRunner

    from pipeline.cli import main

    book = write_book(tmp_path)
    marks_file = tmp_path / "marks.json"
    marks_file.write_text(content, encoding="utf-8")
    result = CliRunner().invoke(main, ["retake", str(book), "--from-review", str(marks_file)])
    assert result.exit_code == 2, result.output
    assert message in result.output and str(marks_file) in result.output
    assert "Traceback" not in result.output
