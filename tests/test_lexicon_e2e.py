"""End to end: a book with a lexicon, rendered by the real command against the simulator. The voice is
sent the respellings (the simulator's ledger shows what it received); the subtitles, word cues and
review page show the book's words; changing one entry re-renders exactly the chunks that hold it,
and `plan` listed them, with their cost, first."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import e2e_support
import pytest
from e2e_support import audiobook, local_simulator

from pipeline.simulator import Simulator

CHAPTERS = {
    "one": "Mr Quayle met the ferry at dawn. The keeper did not wave.\n\n"
           "Quayle's dog barked at the gulls. Nobody else came down the steps.",
    "two": "The log went back a hundred years. Most entries were short.\n\n"
           "The NLB sent letters twice a year. Nobody answered them.",
    "three": "The wind rose in the night. By morning the glass had fallen again.",
}


def write_book(folder: Path, *, quayle: str = "Kwail") -> Path:
    (folder / "names.csv").write_text(f"term,say,note\nQuayle,{quayle},the keeper\n", encoding="utf-8")
    return e2e_support.write_book(folder, "Lexicon Book", CHAPTERS, subtitles="word", chunking={"max_chars": 200},
                                  lexicon={"files": ["names.csv"], "entries": [
                                      {"term": "NLB", "say": "En El Bee", "case": "sensitive"},
                                      {"term": "gulls", "say": "gullz", "status": "proposed"}]})


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    with local_simulator(seed=4) as sim:
        yield sim


def sent_texts(sim: Simulator) -> list[str]:
    return [t["content_text"] for t in sim.ledger()["tasks"] if t["kind"] == "audio"]


def test_the_voice_hears_the_respellings_the_book_keeps_its_words_and_an_entry_change_renders_its_chunks(tmp_path: Path, simulator: Simulator) -> None:
    book = write_book(tmp_path)
    result = audiobook(simulator, "run", str(book))
    assert result.returncode == 0, result.stdout + result.stderr
    sent = " ".join(sent_texts(simulator))
    assert "Mr Kwail met" in sent and "Kwail's dog" in sent and "The En El Bee sent" in sent
    assert "Quayle" not in sent and "NLB" not in sent
    assert "gulls" in sent  # a proposed entry changes nothing
    output = tmp_path / "build" / "book"
    srt = (output / "01-one.srt").read_text(encoding="utf-8") + (output / "02-two.srt").read_text(encoding="utf-8")
    assert "Mr Quayle met the ferry at dawn." in srt and "Quayle's dog barked" in srt and "The NLB sent" in srt
    assert "Kwail" not in srt and "En El Bee" not in srt
    words = json.loads((output / "02-two.words.json").read_text(encoding="utf-8"))["words"]
    spoken_words = [w["text"] for w in words]
    assert "NLB" in spoken_words and not {"En", "El", "Bee"} & set(spoken_words)  # three words sent, one shown
    # billed characters are the spoken text's
    plan = json.loads(audiobook(simulator, "plan", str(book), "--json").stdout)
    chunks = [c for ch in plan["chapters"] for c in ch["chunks"]]
    assert all(c["billed_chars"] == len(c["spoken_text"]) for c in chunks)
    assert sum(c["billed_chars"] for c in chunks) == simulator.ledger()["billed_chars"]
    # the review page shows the book's words too
    assert audiobook(simulator, "review", str(book)).returncode == 0
    page = (output / "review" / "01-one.html").read_text(encoding="utf-8")
    assert "Mr Quayle met the ferry" in page and "Kwail" not in page
    check_changing_one_entry_renders_exactly_the_chunks_that_hold_it(tmp_path, simulator)


def check_changing_one_entry_renders_exactly_the_chunks_that_hold_it(tmp_path: Path, simulator: Simulator) -> None:
    book = tmp_path / "book.yaml"
    before = sent_texts(simulator)
    write_book(tmp_path, quayle="Kway-el")
    dry = audiobook(simulator, "run", str(book), "--dry-run")
    holding = [t for t in before if "Kwail" in t]
    assert holding and len(holding) < len(before)
    assert len(re.findall(r"chunk\(s\) [\d, ]+: lexicon change", dry.stdout)) == 1, dry.stdout
    assert f"to render: {len(holding)} task(s)" in dry.stdout
    plan = json.loads(audiobook(simulator, "plan", str(book), "--json").stdout)
    listed = [c for ch in plan["chapters"] for c in ch["chunks"] if c.get("fate") == "render"]
    assert {c["reason"] for c in listed} == {"lexicon change"}
    assert sorted(c["spoken_text"] for c in listed) == sorted(t.replace("Kwail", "Kway-el") for t in holding)
    assert audiobook(simulator, "run", str(book)).returncode == 0
    new = sent_texts(simulator)[len(before):]
    assert sorted(new) == sorted(t.replace("Kwail", "Kway-el") for t in holding)  # exactly those, once each
