"""pipeline.lexicon.words: the candidates ``audiobook words`` lists for lexicon entries."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.lexicon import words
from pipeline.lexicon.words import Candidate, find_candidates

ALICE = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "alice.txt"
needs_wordfreq = pytest.mark.skipif(not words.WORDFREQ_INSTALLED, reason="the 'words' extra (wordfreq) is not installed")
needs_alice = pytest.mark.skipif(not ALICE.is_file(), reason=f"{ALICE} is not there")


def alice_chapters() -> list[tuple[str, str, str]]:
    """The book cut at its CHAPTER headings (the front matter is chapter ch00)."""
    parts = re.split(r"(?m)^(?=CHAPTER [IVXL]+\.\n)", ALICE.read_text(encoding="utf-8"))
    return [(f"ch{i:02d}", part, "English") for i, part in enumerate(parts)]


def by_word(found: list[Candidate]) -> dict[str, Candidate]:
    return {c.word: c for c in found}


@pytest.fixture(params=[True, False], ids=["wordfreq", "built-in"])
def word_lists(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Each test that takes it runs with wordfreq's lists and with the built-in ones."""
    if request.param and not words.WORDFREQ_INSTALLED:
        pytest.skip("the 'words' extra (wordfreq) is not installed")
    monkeypatch.setattr(words, "WORDFREQ_INSTALLED", request.param)
    return bool(request.param)


# --- Alice's Adventures in Wonderland ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def alice() -> list[Candidate]:
    if not ALICE.is_file():
        pytest.skip(f"{ALICE} is not there")
    if not words.WORDFREQ_INSTALLED:
        pytest.skip("the 'words' extra (wordfreq) is not installed")
    return find_candidates(alice_chapters())


def test_alice_names_and_invented_words_come_first(alice: list[Candidate]) -> None:
    top = [c.word for c in alice[:25]]
    for name in ("Alice", "Dinah", "Gryphon", "Hatter", "Dormouse", "Cheshire", "Turtle", "Caterpillar"):
        assert name in top, top
    assert top[0] == "Alice"
    found = by_word(alice)
    assert found["Gryphon"].kinds == ("proper-noun", "rare-word")
    assert found["Alice"].kinds == ("proper-noun",)
    assert found["hookah"].kinds == ("rare-word",)


def test_alice_everyday_words_and_names_a_voice_knows_are_left_out(alice: list[Candidate]) -> None:
    found = {c.word.casefold() for c in alice}
    # sentence starts, everyday words capitalised as titles, and words a voice reads by rule
    for word in ("the", "said", "queen", "king", "william", "i'm", "chapter", "timidly", "tarts"):
        assert word not in found


def test_alice_counts_merge_case_and_possessives(alice: list[Candidate]) -> None:
    found = by_word(alice)
    text = ALICE.read_text(encoding="utf-8")
    assert found["Alice"].count == len(re.findall(r"(?<![A-Za-z])(?:Alice|ALICE)(?![A-Za-z])", text))  # Alice’s, ALICE’S
    assert found["Rabbit"].count == len(re.findall(r"(?<![A-Za-z])rabbit(?![A-Za-z])", text, re.IGNORECASE))
    assert found["Gryphon"].chapter == "ch09"
    assert found["Gryphon"].sentence == "They very soon came upon a Gryphon, lying fast asleep in the sun."


def test_alice_headings_give_roman_numerals_and_no_acronyms(alice: list[Candidate]) -> None:
    found = by_word(alice)
    assert found["XII"].kinds == ("roman-numeral",)
    assert found["XII"].count == 2     # the contents and the heading
    acronyms = {c.word for c in alice if "acronym" in c.kinds}
    assert not {"CHAPTER", "THE", "END", "EAT", "DRINK", "ME", "ALICE", "ORANGE", "MARMALADE"} & acronyms
    assert acronyms <= {"FUL"}   # "beauti—FUL SOUP": a shouted syllable, left for the reader


def test_alice_order_is_by_kind_then_count_then_first_occurrence(alice: list[Candidate]) -> None:
    rank = {"proper-noun": 0, "rare-word": 0, "acronym": 1, "digit-mix": 2, "roman-numeral": 3, "other-script": 4}
    keys = [(min(rank[k] for k in c.kinds), -c.count) for c in alice]
    assert keys == sorted(keys)


@needs_alice
@needs_wordfreq
def test_alice_runs_well_under_a_second_cold() -> None:
    """A fresh interpreter: the module's import and the frequency list's load are part of the time."""
    script = (
        "import json, re, sys, time\n"
        "started = time.perf_counter()\n"
        "from pipeline.lexicon.words import find_candidates\n"
        "text = open(sys.argv[1], encoding='utf-8').read()\n"
        "found = find_candidates([('alice', text, 'English')])\n"
        "print(json.dumps([time.perf_counter() - started, [c.word for c in found[:10]]]))\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(ALICE)], capture_output=True, text=True, check=True)
    elapsed, top = json.loads(result.stdout)
    assert "Alice" in top
    assert elapsed < 1.0, f"{elapsed:.2f} s"


# --- the brief's cases ------------------------------------------------------------------------------------------
def test_english_text_with_acronym_numeral_unit_and_cyrillic(word_lists: bool) -> None:
    text = ("The CIA agent ran 5km through Москва before dawn. Louis XIV never ran, and the CIA knew it. "
            "Then he walked another 5km.")
    found = find_candidates([("c1", text, "English")])
    assert [(c.word, c.kinds, c.count) for c in found] == [
        ("CIA", ("acronym",), 2),
        ("5km", ("digit-mix",), 2),
        ("XIV", ("roman-numeral",), 1),
        ("Москва", ("other-script",), 1),
    ]
    assert found[0].sentence == "The CIA agent ran 5km through Москва before dawn."
    assert found[0].chapter == "c1"


def test_chinese_text_with_a_latin_brand_and_5g(word_lists: bool) -> None:
    text = "华为发布了新款Mate手机，支持5G网络。苹果公司的iPhone也很受欢迎，CEO说5G是未来。"
    found = by_word(find_candidates([("zh1", text, "Chinese")]))
    assert found["5G"].kinds == ("digit-mix",)
    assert found["5G"].count == 2
    assert found["5G"].sentence == "华为发布了新款Mate手机，支持5G网络。"
    assert found["Mate"].kinds == ("other-script",)
    assert found["iPhone"].kinds == ("other-script",)
    assert found["CEO"].kinds == ("acronym", "other-script")
    assert set(found) == {"5G", "Mate", "iPhone", "CEO"}   # no Chinese word is judged without a word list


def test_covered_candidates_report_their_term(word_lists: bool) -> None:
    text = "The Gryphon slept. Then Alice woke the Gryphon, and the Gryphon’s eyes opened."
    asked: list[str] = []

    def covered(word: str) -> str | None:
        asked.append(word)
        return "gryphon" if word.casefold() == "gryphon" else None

    found = by_word(find_candidates([("c1", text, "English")], covered=covered))
    assert found["Gryphon"].covered_by == "gryphon"
    assert found["Gryphon"].count == 3
    assert found["Alice"].covered_by is None
    assert sorted(asked) == sorted(found)    # asked once for each candidate returned


def test_min_count_and_limit(word_lists: bool) -> None:
    text = "Mabel met Dinah. Dinah met Mabel and Dinah laughed. Then the BBC came."
    assert [(c.word, c.count) for c in find_candidates([("c1", text, "English")])] == [
        ("Dinah", 3), ("Mabel", 2), ("BBC", 1)]
    assert [c.word for c in find_candidates([("c1", text, "English")], min_count=2)] == ["Dinah", "Mabel"]
    assert [c.word for c in find_candidates([("c1", text, "English")], min_count=3)] == ["Dinah"]
    assert [c.word for c in find_candidates([("c1", text, "English")], limit=1)] == ["Dinah"]
    assert find_candidates([("c1", text, "English")], limit=0) == []


# --- the rules --------------------------------------------------------------------------------------------------
def test_shouted_common_words_are_not_acronyms(word_lists: bool) -> None:
    text = "She would never go. NEVER, she said. The NASA team and the UN met. THE END"
    found = by_word(find_candidates([("c1", text, "English")]))
    assert "NEVER" not in found and "END" not in found and "THE" not in found
    assert found["NASA"].kinds == ("acronym",)
    assert found["UN"].kinds == ("acronym",)


def test_acronyms_are_counted_as_spelled() -> None:
    text = "The U.S.A. and the USA; the CDs and a CD."
    found = by_word(find_candidates([("c1", text, "English")]))
    assert (found["U.S.A."].count, found["USA"].count, found["CDs"].count, found["CD"].count) == (1, 1, 1, 1)
    assert all(c.kinds == ("acronym",) for c in found.values())


def test_roman_numerals_need_a_numeral_s_place() -> None:
    text = ("I think so. Chapter V begins. Part II ends. Henry VIII and Pope Leo X met in MCMXCIX. "
            "We mix and dim. The CD and DC.")
    found = by_word(find_candidates([("c1", text, "English")]))
    numerals = {w for w, c in found.items() if c.kinds == ("roman-numeral",)}
    assert numerals == {"V", "II", "VIII", "X", "MCMXCIX"}
    assert found["CD"].kinds == ("acronym",) and found["DC"].kinds == ("acronym",)


def test_digit_mixes_but_not_ordinals_or_numbers() -> None:
    text = ("The B-52 and an MP3 player, a 5-year-old on the 3rd floor in the 1990s, COVID-19, 1,200 people, "
            "1.5m tall, at 10am, on the 21st, in 1865.")
    found = find_candidates([("c1", text, "English")])
    assert [c.word for c in found if c.kinds == ("digit-mix",)] == ["B-52", "MP3", "COVID-19", "1.5m", "10am"]
    assert not {"3rd", "1990s", "21st", "5-year-old", "year", "old"} & {c.word for c in found}


def test_pause_markers_are_ignored() -> None:
    text = "The Gryphon<#1.5#> slept.<#0.5#>\n\n<#2#>\n\nThe Gryphon woke."
    (gryphon,) = find_candidates([("c1", text, "English")])
    assert gryphon.word == "Gryphon"
    assert gryphon.count == 2
    assert gryphon.sentence == "The Gryphon slept."


def test_a_long_sentence_is_cut_around_the_word() -> None:
    text = ("Once upon a time, " * 12) + "a Gryphon\nslept   in the sun" + (", and so on" * 12) + "."
    (gryphon,) = find_candidates([("c1", text, "English")])
    assert len(gryphon.sentence) <= words.SENTENCE_MAX_CHARS + 2
    assert gryphon.sentence.startswith("…") and gryphon.sentence.endswith("…")
    assert "a Gryphon slept in the sun" in gryphon.sentence


def test_sentence_starts_quotations_and_lines_say_nothing(word_lists: bool) -> None:
    text = ("Presently she came. “Perhaps,” said Mabel, “Perhaps not.”\n"
            "Twinkle, twinkle, little bat!\nHow I wonder what you’re at!\n\n"
            "Mr. Dodgson wrote it.")
    found = by_word(find_candidates([("c1", text, "English")]))
    assert "Mabel" in found and "Dodgson" in found   # after "Mr." is not a sentence start
    assert not {"Presently", "Perhaps", "Twinkle", "How"} & set(found)


def test_other_scripts_in_a_russian_chapter_and_auto(word_lists: bool) -> None:
    text = "Пётр II жил в Москве. Он любил NASA и iPhone. США далеко."
    for language in ("Russian", "auto"):
        found = by_word(find_candidates([("ru", text, language)]))
        assert found["II"].kinds == ("roman-numeral",)
        assert found["NASA"].kinds == ("acronym", "other-script")
        assert found["iPhone"].kinds == ("other-script",)
        assert found["США"].kinds == ("acronym",)
        assert ("Москве" in found) is not word_lists   # a name; with wordfreq, one every voice knows


def test_german_capitals_mark_no_names(word_lists: bool) -> None:
    text = "Der Hund lief über die Straße. Am Abend kam der Hund nach Hause."
    assert find_candidates([("de", text, "German")]) == []


def test_chapters_in_two_languages_each_judged_by_their_own(word_lists: bool) -> None:
    found = by_word(find_candidates([("en", "Tea with Sergei in London.", "English"),
                                     ("ru", "Сергей пил чай с Alice. Сергей и Москва.", "Russian")]))
    assert found["Alice"].kinds == ("other-script",) and found["Alice"].chapter == "ru"
    assert "proper-noun" in found["Sergei"].kinds and found["Sergei"].chapter == "en"
    assert "Сергей" not in found    # at home in the Russian chapter, and only at sentence starts
    assert ("London" in found) is not word_lists


@needs_wordfreq
def test_rare_chinese_characters_are_candidates() -> None:
    common = "今天天气很好，我们一起去公园散步，看见很多人在那里唱歌跳舞，大家都非常开心。" * 3
    found = by_word(find_candidates([("zh", common + "贾琏笑道：“你来了。”", "Chinese")]))
    assert found["琏"].kinds == ("rare-word",)
    assert found["琏"].sentence == "贾琏笑道：“你来了。”"
    assert "贾" not in found


@needs_wordfreq
def test_rare_words_need_wordfreq(monkeypatch: pytest.MonkeyPatch) -> None:
    text = "She smoked a hookah beside the Gryphon."
    assert {c.word: c.kinds for c in find_candidates([("c1", text, "English")])} == {
        "hookah": ("rare-word",), "Gryphon": ("proper-noun", "rare-word")}
    monkeypatch.setattr(words, "WORDFREQ_INSTALLED", False)
    assert {c.word: c.kinds for c in find_candidates([("c1", text, "English")])} == {"Gryphon": ("proper-noun",)}


# --- the common-word source ----------------------------------------------------------------------------------------
def test_the_source_says_which_lists_are_in_use(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = "wordfreq" if words.WORDFREQ_INSTALLED else "'words' extra"
    assert expected in words.COMMON_WORDS_SOURCE
    monkeypatch.setattr(words, "WORDFREQ_INSTALLED", False)
    assert "built-in list" in words.common_words_source("English")
    assert "'words' extra" in words.common_words_source("English")
    assert "no list" in words.common_words_source("Swedish")


@needs_wordfreq
def test_the_source_names_wordfreq_and_the_built_in_lists_it_lacks() -> None:
    assert re.match(r"wordfreq \d", words.common_words_source("English"))
    assert "wordfreq has no list" in words.common_words_source("Afrikaans")
    assert "(sh," in words.common_words_source("Croatian")


@needs_wordfreq
@pytest.mark.parametrize("code", ["en", "ru", "zh"])
def test_the_direct_read_of_wordfreq_data_matches_its_api(code: str) -> None:
    """The module reads wordfreq's data files itself (importing wordfreq costs 0.2 s): same lists."""
    import wordfreq

    assert words._wordfreq_list(code) == pytest.approx(wordfreq.get_frequency_dict(code, "small"))


@needs_wordfreq
def test_the_public_api_reads_the_list_when_the_data_folder_is_not_found(monkeypatch: pytest.MonkeyPatch) -> None:
    import wordfreq

    monkeypatch.setattr(words, "_wordfreq_data_dir", lambda: None)
    assert words._wordfreq_list("en") == wordfreq.get_frequency_dict("en", "small")
    assert words._wordfreq_list("af") is None


def test_french_elided_articles_are_not_part_of_the_word(word_lists: bool) -> None:
    text = "Le roi parla à d'Artagnan. Puis d'Artagnan partit avec l'homme."
    found = by_word(find_candidates([("fr", text, "French")]))
    assert "proper-noun" in found["Artagnan"].kinds
    assert found["Artagnan"].count == 2
    assert "homme" not in found and "l'homme" not in found


def test_russian_units_are_digit_mixes_and_ordinals_are_not() -> None:
    found = by_word(find_candidates([("ru", "Он прошёл 5км и пришёл 5-й. Потом ещё 10м.", "Russian")]))
    assert set(found) == {"5км", "10м"}
    assert all(c.kinds == ("digit-mix",) for c in found.values())
