"""The lexicon: how entries turn display text into spoken text (and back), and how the manifest reads
them, with every problem at once and its file:line."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.errors import ManifestError
from pipeline.lexicon.entries import Entry, Lexicon
from pipeline.manifest import load_manifest
from pipeline.subtitles import SentenceTiming, WordTiming, cue_text, display_words


def spoken(text: str, *entries: Entry) -> str:
    return Lexicon(entries).apply(text).text


@pytest.mark.parametrize("text, expected", [
    ("Quayle waited.", "Kwail waited."),
    ("Mr. Quayle's dog", "Mr. Kwail's dog"),
    ("the quayle", "the kwail"),
    ("two Quayles", "two Kwails"),
    ("Quaylesworth stayed", "Quaylesworth stayed"),  # a whole word only
])
def test_a_word_entry_matches_whole_words_keeping_capital_and_endings(text: str, expected: str) -> None:
    assert spoken(text, Entry("Quayle", "kwail")) == expected


def test_ann_does_not_touch_anna_and_case_sensitive_entries_keep_to_their_case() -> None:
    assert spoken("Ann met Anna.", Entry("Ann", "An")) == "An met Anna."
    assert spoken("The CIA and the cia.", Entry("CIA", "see eye ay", case="sensitive")) == "The see eye ay and the cia."


def test_the_longest_match_wins_and_replacements_never_overlap() -> None:
    entries = (Entry("York", "yawk"), Entry("New York", "noo york", match="phrase"))
    assert spoken("New  York and York.", *entries) == "Noo york and Yawk."


def test_regex_entries_may_use_groups_and_markers_are_never_touched() -> None:
    entry = Entry(r"(\d+)\s?km", r"\1 kilometres", match="regex")
    assert spoken("It was 5km, then 12 km.", entry) == "It was 5 kilometres, then 12 kilometres."
    assert spoken("wait <#1.5#> now", Entry("1.5", "one point five", match="phrase")) == "wait <#1.5#> now"


def test_only_reviewed_entries_apply() -> None:
    assert spoken("Quayle", Entry("Quayle", "Kwail", status="proposed"), Entry("x", "y", status="disabled")) == "Quayle"


@given(st.lists(st.sampled_from(["Quayle", "Ann", "the", "NLB", "Anna", "<#0.5#>", "Quayle's", ",", "."]),
                max_size=30))
def test_every_spoken_span_maps_back_to_whole_display_words(words: list[str]) -> None:
    text = " ".join(words)
    result = Lexicon([Entry("Quayle", "Kwail Bo"), Entry("NLB", "En El Bee", case="sensitive")]).apply(text)
    for r in result.replacements:
        assert result.to_display(*r.spoken) == r.display
        for cut in range(r.spoken[0] + 1, r.spoken[1]):  # a span ending inside a respelling takes it whole
            assert result.to_display(r.spoken[0], cut) == r.display
    assert result.to_display(0, len(result.text)) == (0, len(text))


def test_cues_and_word_cues_show_the_book_words() -> None:
    text = "Mr Quayle sent the NLB a note."
    result = Lexicon([Entry("Quayle", "Kwail"), Entry("NLB", "En El Bee", case="sensitive")]).apply(text)
    sent = result.text
    cue = SentenceTiming(sent, 0, 2000, 0, len(sent))
    assert cue_text(cue, text, result) == text
    no_offsets = SentenceTiming(sent, 0, 2000)  # the API's text, with the respellings put back
    assert cue_text(no_offsets, text, result) == text
    words = [WordTiming(w, i * 100, i * 100 + 90) for i, w in enumerate(sent.rstrip(".").split())]
    shown, _ = display_words(words, result)
    assert [w.text for w in shown] == ["Mr", "Quayle", "sent", "the", "NLB", "a", "note"]
    nlb = shown[4]
    assert (nlb.begin_ms, nlb.end_ms) == (400, 690)  # "En El Bee": one word cue spanning all three


def write(folder: Path, body: str, **files: str) -> Path:
    for name, content in files.items():
        (folder / name).write_text(content, encoding="utf-8")
    path = folder / "book.yaml"
    path.write_text("title: B\nvoice: {model_id: m1}\n" + body, encoding="utf-8")
    return path


def test_the_manifest_reads_inline_entries_files_and_chapter_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, "lexicon:\n  files: [names.yaml, terms.csv]\n  entries:\n    - {term: NLB, say: N L B}\n"
                 "chapters:\n  - id: a\n    text: Quayle and Skerry and NLB.\n"
                 "    lexicon: [{term: Quayle, say: Kwayle}]\n  - id: b\n    text: Quayle.\n",
                 **{"names.yaml": "- {term: Quayle, say: Kwail, note: the keeper}\n",
                    "terms.csv": "term,say,match\nCarrick Skerry,Karrik Skerri,phrase\nSkerry,Skerri,\n"})
    manifest = load_manifest(path)
    assert [e.term for e in manifest.lexicon] == ["NLB", "Quayle", "Carrick Skerry", "Skerry"]
    a, b = manifest.chapters
    assert spoken(a.text, *a.lexicon) == "Kwayle and Skerri and N L B."
    assert spoken(b.text, *b.lexicon) == "Kwail."
    assert next(e for e in manifest.lexicon if e.term == "Skerry").where == f"{tmp_path / 'terms.csv'}:3"


def test_every_lexicon_problem_is_reported_at_once_with_its_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "lexicon:\n  files: [names.yaml, terms.csv, voice.pls, gone.yaml]\n  entries:\n"
                 "    - {term: Quayle, say: Kwail}\n    - {term: '(', say: x, match: regex}\n"
                 "    - {term: Elsie, say: ''}\n    - {term: x, say: y, match: nope}\n"
                 "    - {term: gulls, say: '', status: proposed}\n"
                 "chapters:\n  - id: a\n    text: Hello.\n",
                 **{"names.yaml": "- {term: quayle, say: Kweel}\n", "terms.csv": "word,spoken\nA,B\n",
                    "voice.pls": "<lexicon/>"})
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    problems = [str(p) for p in caught.value.problems]
    book, names, terms = str(path), str(tmp_path / "names.yaml"), str(tmp_path / "terms.csv")
    expected = [
        f"{book}:7: lexicon.entries[1].term: '(' is not a regular expression",
        f"{book}:8: lexicon.entries[2].say: is blank",
        f"{book}:9: lexicon.entries[3].match: 'nope' is not allowed",
        f"{book}:4: lexicon.files[2]: 'voice.pls' is a PLS file; convert it once with `audiobook lexicon import",
        f"{book}:4: lexicon.files[3]: 'gone.yaml' does not exist",
        f"{terms}:1: must start with a header row naming its columns: term,say",
        f"{names}:1: term: 'quayle' is already in the lexicon at {book}:6 with say 'Kwail', here 'Kweel'",
    ]
    for start in expected:
        assert any(p.startswith(start) for p in problems), (start, problems)
    assert len(problems) == len(expected), problems  # the proposed entry without a say is fine


def test_the_chunk_limit_is_the_spoken_texts() -> None:
    from pipeline.chunking import plan_chapter
    from pipeline.models import ChapterSpec, ChunkingSettings, PauseSettings, Voice

    text = " ".join(f"Sentence {n} names Quayle twice: Quayle." for n in range(60))
    entries = (Entry("Quayle", "Kwail-the-keeper-of-the-light"),)
    chapter = ChapterSpec(id="a", title="A", number=1, text=text, voice=Voice(model_id="m1"), language="English",
                          lexicon=entries)
    limit = ChunkingSettings(max_chars=300)
    chunks = plan_chapter(chapter, chunking=limit, pauses=PauseSettings(), subtitles="sentence")
    assert all(len(c.spoken_text) <= 300 for c in chunks) and any(len(c.text) < 200 for c in chunks)
    assert all(c.request.body["contentText"] == c.spoken_text and c.billed_chars == len(c.spoken_text)
               for c in chunks)
    assert "".join(c.text for c in chunks).replace(" ", "") == text.replace(" ", "")  # every word, once


def test_qc_quotes_words_missing_from_the_cues_as_the_book_has_them() -> None:
    from pipeline import qc

    text = "The ferry came. Mr Quayle waved at the NLB boat from the jetty. Then it left."
    result = Lexicon([Entry("Quayle", "Kwail"), Entry("NLB", "En El Bee", case="sensitive")]).apply(text)
    first, _, last = result.text.partition(" Mr Kwail waved at the En El Bee boat from the jetty.")
    timings = [SentenceTiming(first, 0, 900), SentenceTiming(last.strip(), 900, 1800)]  # a sentence dropped
    measured = qc.measure_cues(result.text, timings, result)
    assert measured.longest_gap_words == 12
    assert measured.gap_text == "Mr Quayle waved at the NLB boat from the jetty"
