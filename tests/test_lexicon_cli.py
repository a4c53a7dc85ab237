"""The lexicon commands through the real CLI: PLS in and out, `say` into previews/, `words --add`."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.lexicon.pls import read_pls
from pipeline.manifest import load_manifest

PLS = """<?xml version="1.0" encoding="UTF-8"?>
<lexicon version="1.0" xmlns="http://www.w3.org/2005/01/pronunciation-lexicon" alphabet="ipa" xml:lang="en-GB">
  <lexeme><grapheme>Quayle</grapheme><grapheme>quayle</grapheme><alias>Kwail</alias></lexeme>
  <lexeme><grapheme>NLB</grapheme><alias>N L B</alias></lexeme>
  <lexeme><grapheme>Skerry</grapheme><phoneme>ˈskɛri</phoneme></lexeme>
</lexicon>
"""


def book(folder: Path, lexicon: str = "") -> Path:
    path = folder / "book.yaml"
    path.write_text("title: Cli Book\nvoice: {model_id: model_sample_narrator}\naudio: {m4b: false, profile: none}\n"
                    f"{lexicon}chapters:\n  - id: a\n    text: Mr Quayle met the NLB at Carrick Skerry. Gryphons "
                    "flew over Skerry.\n", encoding="utf-8")
    return path


def test_a_pls_file_becomes_a_lexicon_the_manifest_reads_and_phonemes_are_listed(tmp_path: Path) -> None:
    (tmp_path / "voice.pls").write_text(PLS, encoding="utf-8")
    result = CliRunner().invoke(main, ["lexicon", "import", str(tmp_path / "voice.pls")])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "2 entries" in result.output
    assert "line 5: Skerry: a <phoneme> entry" in result.output  # reported, never dropped silently
    entries = yaml.safe_load((tmp_path / "voice.yaml").read_text(encoding="utf-8"))
    assert [(e["term"], e["say"]) for e in entries] == [("Quayle", "Kwail"), ("NLB", "N L B")]
    again = CliRunner().invoke(main, ["lexicon", "import", str(tmp_path / "voice.pls")])
    assert again.exit_code == 2 and "exists" in again.output  # nothing overwritten
    manifest = load_manifest(book(tmp_path, "lexicon: {files: [voice.yaml]}\n"))
    assert [e.term for e in manifest.lexicon] == ["Quayle", "NLB"]
    exported = CliRunner().invoke(main, ["lexicon", "export", str(tmp_path / "book.yaml"), "--pls", "--out",
                                         str(tmp_path / "out.pls")])
    assert exported.exit_code == 0, exported.output
    assert [(a.graphemes, a.alias) for a in read_pls(tmp_path / "out.pls").aliases] == [
        (("Quayle",), "Kwail"), (("NLB",), "N L B")]


def test_say_renders_one_line_with_the_lexicon_into_previews(tmp_path: Path) -> None:
    path = book(tmp_path, "lexicon: [{term: Quayle, say: Kwail}]\n")
    result = CliRunner().invoke(main, ["say", str(path), "Mr Quayle arrived.", "--simulate"])
    assert result.exit_code == 0, result.output
    assert "sending: Mr Kwail arrived." in result.output and "1 task" in result.output
    (written,) = (tmp_path / "build" / "book-simulated" / "previews").glob("*.mp3")
    assert written.stat().st_size > 1000 and written.name.startswith("mr-quayle-arrived-")


def test_words_lists_candidates_and_adds_the_uncovered_as_proposed(tmp_path: Path) -> None:
    path = book(tmp_path, "lexicon: [{term: Quayle, say: Kwail}]\n")
    result = CliRunner().invoke(main, ["words", str(path), "--json"])
    assert result.exit_code == 0, result.output
    found = {c["word"]: c for c in json.loads(result.output)}
    assert found["Quayle"]["covered_by"] == "Quayle" and found["NLB"]["covered_by"] is None
    assert "acronym" in found["NLB"]["kinds"] and found["Skerry"]["count"] == 2
    added = CliRunner().invoke(main, ["words", str(path), "--add", str(tmp_path / "proposed.yaml")])
    assert added.exit_code == 0, added.output
    proposed = yaml.safe_load((tmp_path / "proposed.yaml").read_text(encoding="utf-8"))
    assert {e["term"] for e in proposed} >= {"NLB", "Skerry"} and "Quayle" not in {e["term"] for e in proposed}
    assert all(e["status"] == "proposed" and e["say"] == "" for e in proposed)
    # the file is a valid lexicon as it is: proposed entries wait for their say and change nothing
    path = book(tmp_path, "lexicon: {files: [proposed.yaml], entries: [{term: Quayle, say: Kwail}]}\n")
    assert load_manifest(path).lexicon
