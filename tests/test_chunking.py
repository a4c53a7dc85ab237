"""pipeline.chunking: the sentence splitter and the chunk packer (issue 2, items 4-6).

The property tests build text from words, sentence and clause punctuation (Latin and CJK), paragraph
breaks, valid pause markers, long unpunctuated runs, combining characters and emoji sequences, and
check the contract of ``plan_chapter``: every chunk within the limit and exactly a slice of the
chapter, no marker cut or on a chunk edge, the seams carrying exactly the pauses that fell on them,
and the whole reproducing the chapter.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from pipeline.chunking import (
    estimate_seconds,
    lower_bound_tasks,
    plan_chapter,
    split_sentences,
    split_spans,
    stable_spans,
)
from pipeline.errors import ChunkingError
from pipeline.models import API_MAX_CHARS, ChapterSpec, ChunkingSettings, PauseSettings, Voice
from pipeline.text import MARKER_RE, billed_chars, decode_source, marker_seconds, spoken_only, to_spoken_text

# The shared corpora sit beside the checkout (<checkout>/../shared/corpora); CORPORA=... points
# elsewhere, as for bench/chunking.py.
CORPORA = Path(os.environ.get("CORPORA") or Path(__file__).resolve().parents[2] / "shared" / "corpora")
needs_corpora = pytest.mark.skipif(not CORPORA.is_dir(), reason=f"shared corpora not found at {CORPORA} "
                                   "(expected beside the checkout; set CORPORA=... to point elsewhere)")
PAUSES = PauseSettings(clause_s=0.15, sentence_s=0.35, paragraph_s=0.8, scene_break_s=2.0)
VOICE = Voice(model_id="model_test")
GAP_RE = re.compile(r"(?:\s|<#\d{1,2}(?:\.\d{1,2})?#>)*")
MARKER_AT_END_RE = re.compile(r"<#\d{1,2}(?:\.\d{1,2})?#>\Z")

# One and a half times the loaded profile's examples (tests/conftest.py): 150 by default, ten times as
# many under SOAK=1; HYPOTHESIS_EXAMPLES=5000 sets it outright. The settings below inherit the rest
# (derandomisation above all) from the profile.
EXAMPLES = int(os.environ.get("HYPOTHESIS_EXAMPLES", 3 * settings.default.max_examples // 2))
PROPERTY_SETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                             suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def make_chapter(text: str, *, language: str = "auto", chapter_id: str = "ch01",
                 voice: Voice = VOICE) -> ChapterSpec:
    return ChapterSpec(id=chapter_id, title=chapter_id, number=1, text=text, voice=voice, language=language)


def plan(text: str, *, max_chars: int = API_MAX_CHARS, language: str = "auto",
         paragraph_min_fill: float = 0.8, pauses: PauseSettings = PAUSES):
    return plan_chapter(make_chapter(text, language=language),
                        chunking=ChunkingSettings(max_chars=max_chars, paragraph_min_fill=paragraph_min_fill),
                        pauses=pauses, subtitles="sentence")


# --- strategies ----------------------------------------------------------------------------------

def _marker(seconds: float) -> str:
    text = f"{seconds:.2f}".rstrip("0").rstrip(".")
    return f"<#{text}#>"


markers = st.integers(min_value=1, max_value=9999).map(lambda hundredths: _marker(hundredths / 100))
latin_words = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=12)
cjk_runs = st.text(alphabet="灯塔看守人风暴过后的第三天海面平静得像一面镜子ひらがなカタカナ", min_size=1, max_size=20)
# Grapheme clusters that must never be cut: a letter with combining marks, emoji ZWJ sequences,
# skin tones, flags, keycaps, a Devanagari syllable with a spacing vowel sign.
clusters = st.sampled_from([
    "e\u0301", "a\u0308\u0323", "n\u0303", "👩\u200d👩\u200d👧\u200d👦", "👍🏽", "🏳️\u200d🌈", "🇫🇷", "🇯🇵🇰🇷",
    "1\ufe0f\u20e3", "कि", "क्षि", "❤️", "한국어",
])
sentence_ends = st.sampled_from([". ", "! ", "? ", "。", "！", "？", "．", ".” ", "?\" ", "…"])
clause_marks = st.sampled_from([", ", "; ", ": ", "，", "、", " — "])
spacing = st.sampled_from([" ", " ", " ", "\n", "\n\n", "\n\n\n", "  "])
long_runs = st.one_of(
    st.integers(min_value=50, max_value=900).map(lambda n: "x" * n),
    st.integers(min_value=20, max_value=300).map(lambda n: " ".join(["word"] * n)),
    st.integers(min_value=50, max_value=900).map(lambda n: "灯" * n),
    st.integers(min_value=10, max_value=200).map(lambda n: "e\u0301" * n),
)
# Brackets and quotes (sentencex will not end a sentence inside them) and list labels.
enclosures = st.sampled_from(["(", ")", "[", "]", "“", "”", '"', "「", "」", "1. ", "2. ", "a. ", "b) ", "⁃9. "])
tokens = st.one_of(
    latin_words, latin_words, latin_words, cjk_runs, clusters, sentence_ends, clause_marks, spacing,
    spacing, markers.map(lambda m: m), markers.map(lambda m: " " + m + " "), long_runs, enclosures,
)
texts = st.lists(tokens, min_size=1, max_size=120).map("".join)
limits = st.sampled_from([40, 64, 100, 200, 333, 1000])


def _is_extending(ch: str) -> bool:
    """A code point that continues the grapheme cluster before it."""
    return (unicodedata.category(ch) in ("Mn", "Mc", "Me") or ch in "\u200d\ufe0e\ufe0f"
            or "\U0001f3fb" <= ch <= "\U0001f3ff" or "\U000e0020" <= ch <= "\U000e007f")


def _seam_structural(gap: str, pause_before: float) -> float:
    return round(pause_before - marker_seconds(gap), 3)


def check_chunks(text: str, chunks, max_chars: int, pauses: PauseSettings = PAUSES) -> None:
    """Every property of a chapter's chunks the chunker promises (see the module docstring)."""
    assert chunks, "a chapter with words has at least one chunk"
    assert [c.index for c in chunks] == list(range(len(chunks)))
    previous_end = 0
    for i, c in enumerate(chunks):
        assert 0 < len(c.text) <= max_chars
        assert c.text == text[c.start:c.end]
        assert c.chars == len(c.text)
        assert c.billed_chars == billed_chars(c.text)
        assert not c.text[0].isspace() and not c.text[-1].isspace()
        assert not MARKER_RE.match(c.text), f"chunk {i} starts with a marker: {c.text[:20]!r}"
        assert not MARKER_AT_END_RE.search(c.text), f"chunk {i} ends with a marker: {c.text[-20:]!r}"
        # every marker fragment in the chunk belongs to a whole marker inside it
        whole = {m.start() for m in MARKER_RE.finditer(c.text)}
        assert {m.start() for m in re.finditer("<#", c.text)} <= whole, f"marker cut in chunk {i}"
        ends = {m.end() for m in MARKER_RE.finditer(c.text)}
        assert {m.end() for m in re.finditer("#>", c.text)} <= ends, f"marker cut in chunk {i}"
        # no grapheme cluster cut: a chunk never starts with a code point that extends the one before
        assert not _is_extending(c.text[0]), f"chunk {i} starts inside a grapheme cluster"
        assert not c.text.endswith("\u200d")
        gap = text[previous_end:c.start]
        assert GAP_RE.fullmatch(gap), f"text lost between chunks {i - 1} and {i}: {gap!r}"
        if i == 0:
            assert c.pause_before_s == pytest.approx(marker_seconds(gap), abs=1e-6)
        else:
            structural = _seam_structural(gap, c.pause_before_s)
            if "\n\n" in gap:
                assert structural == pytest.approx(pauses.paragraph_s)
            elif any(ch.isspace() for ch in gap):  # a seam between words is at least a clause pause
                assert structural in (pytest.approx(pauses.clause_s), pytest.approx(pauses.sentence_s)), gap
            else:
                assert structural in (pytest.approx(0.0), pytest.approx(pauses.clause_s),
                                      pytest.approx(pauses.sentence_s)), (gap, c.pause_before_s)
        if i < len(chunks) - 1:
            assert c.pause_after_s == 0.0
        previous_end = c.end
    tail = text[previous_end:]
    assert GAP_RE.fullmatch(tail)
    assert chunks[-1].pause_after_s == pytest.approx(marker_seconds(tail), abs=1e-6)
    # Chunks and edge pauses reproduce the chapter: every word, and every second of marked pause.
    assert "".join(spoken_only("".join(c.text for c in chunks)).split()) == "".join(spoken_only(text).split())
    carried = sum(marker_seconds(c.text) for c in chunks) + chunks[0].pause_before_s + chunks[-1].pause_after_s
    carried += sum(marker_seconds(text[a.end:b.start]) for a, b in itertools.pairwise(chunks))
    assert carried == pytest.approx(marker_seconds(text), abs=1e-6)


def _has_words(text: str) -> bool:
    return bool(spoken_only(text).strip())


# --- properties ----------------------------------------------------------------------------------

@PROPERTY_SETTINGS
@given(text=texts, max_chars=limits)
def test_chunks_keep_every_promise_on_arbitrary_text(text: str, max_chars: int) -> None:
    if not _has_words(text):
        with pytest.raises(ChunkingError):
            plan(text, max_chars=max_chars)
        return
    check_chunks(text, plan(text, max_chars=max_chars), max_chars)


@PROPERTY_SETTINGS
@given(paragraphs=st.lists(st.lists(tokens, min_size=1, max_size=30).map("".join), min_size=1, max_size=8),
       max_chars=limits, scene_break_s=st.sampled_from([0.0, 2.0]))
def test_chunks_keep_every_promise_on_spoken_markdown(paragraphs: list[str], max_chars: int,
                                                      scene_break_s: float) -> None:
    """The same promises on text as the manifest produces it: merged markers, joined lines."""
    raw = "\n\n***\n\n".join(paragraphs)
    text = to_spoken_text(raw, markdown=True, scene_break_s=scene_break_s)
    note(f"spoken text: {text!a}")
    if not _has_words(text):
        return
    chunks = plan(text, max_chars=max_chars)
    check_chunks(text, chunks, max_chars)
    for c in chunks:  # merged: never two markers with only whitespace between them
        assert not re.search(r"#>\s*<#", c.text)


@PROPERTY_SETTINGS
@given(text=texts, language=st.sampled_from(["auto", "English", "Chinese", "Japanese", "en", "zh", "ja"]))
def test_split_sentences_is_exact(text: str, language: str) -> None:
    pieces = split_sentences(text, language)
    assert "".join(pieces) == text
    assert all(pieces)
    # no boundary inside a marker
    offset = 0
    inside = {i for m in MARKER_RE.finditer(text) for i in range(m.start() + 1, m.end())}
    for piece in pieces[:-1]:
        offset += len(piece)
        assert offset not in inside
    # only the first piece may be whitespace and markers alone (a text with no words)
    assert all(_has_words(p) for p in pieces[1:])


words_text = st.lists(st.one_of(latin_words, latin_words, latin_words, sentence_ends, clause_marks,
                                st.just(" "), st.just(" "), st.just("\n\n"), markers.map(lambda m: " " + m + " ")),
                      min_size=50, max_size=600).map("".join)


@settings(max_examples=max(20, EXAMPLES // 2), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=words_text, max_chars=st.sampled_from([200, 500, 1000]))
def test_task_count_stays_near_the_lower_bound(text: str, max_chars: int) -> None:
    if not _has_words(text):
        return
    chunks = plan(text, max_chars=max_chars)
    bound = lower_bound_tasks([text], max_chars)
    assert len(chunks) <= 1.05 * bound + 1


def _outside_markers(text: str, pos: int) -> int:
    """``pos``, or the start of the marker it falls inside (an edit never cuts a marker: the manifest
    refuses broken markers before the chunker sees them)."""
    for m in MARKER_RE.finditer(text):
        if m.start() < pos < m.end():
            return m.start()
    return pos


@PROPERTY_SETTINGS
@given(text=words_text, edit=st.tuples(st.floats(0, 1), st.floats(0, 1), st.sampled_from(["", "New words. ", "x"])),
       max_chars=st.sampled_from([200, 500]))
def test_a_recut_after_an_edit_keeps_every_promise(text: str, edit: tuple[float, float, str], max_chars: int) -> None:
    """plan_chapter(previous=...) (stable_spans) keeps unchanged chunks; the result obeys the same rules."""
    if not _has_words(text):
        return
    before = plan(text, max_chars=max_chars)
    a, b = sorted(_outside_markers(text, int(f * len(text))) for f in edit[:2])
    edited = text[:a] + edit[2] + text[b:]
    if not _has_words(edited):
        return
    after = plan_chapter(make_chapter(edited), chunking=ChunkingSettings(max_chars=max_chars), pauses=PAUSES,
                         subtitles="sentence", previous=[c.text for c in before])
    check_chunks(edited, after, max_chars)
    untouched = [c for c in before if c.end < a]
    assert [c.key for c in after[:len(untouched)]] == [c.key for c in untouched]


def _cut_between_words(text: str, pos: int) -> bool:
    """For ``words_text``: whether a chunk edge at ``pos`` is at whitespace or after CJK punctuation
    (one of the packer's boundaries, not a cut inside a word forced to save a task)."""
    return pos in (0, len(text)) or text[pos - 1].isspace() or text[pos].isspace() or text[pos - 1] in "。！？．，、"


@PROPERTY_SETTINGS
@given(text=words_text, limits=st.sampled_from([(100, 500), (200, 1000)]))
def test_a_recut_of_unchanged_text_keeps_every_chunk_cut_between_words(text: str, limits: tuple[int, int]) -> None:
    """Whatever limit made the previous cut, a re-cut of the same text keeps all of it when every
    chunk edge is a boundary, also a "。" or "，" glued to the next word."""
    if not _has_words(text):
        return
    small, large = limits
    before = plan(text, max_chars=small)
    after = plan_chapter(make_chapter(text), chunking=ChunkingSettings(max_chars=large), pauses=PAUSES,
                         subtitles="sentence", previous=[c.text for c in before])
    check_chunks(text, after, large)
    if all(_cut_between_words(text, c.start) and _cut_between_words(text, c.end) for c in before):
        assert [(c.start, c.end) for c in after] == [(c.start, c.end) for c in before]


@settings(max_examples=max(20, EXAMPLES // 2), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(paragraphs=st.lists(words_text, min_size=2, max_size=4), max_chars=st.sampled_from([100, 200, 500, 1000]))
def test_scene_breaks_on_seams_cost_no_task(paragraphs: list[str], max_chars: int) -> None:
    """Preferring a seam at a scene break keeps the task count within the lower-bound rule."""
    text = to_spoken_text("\n\n* * *\n\n".join(paragraphs), markdown=False, scene_break_s=2.0)
    if not _has_words(text):
        return
    chunks = plan(text, max_chars=max_chars)
    check_chunks(text, chunks, max_chars)
    assert len(chunks) <= 1.05 * lower_bound_tasks([text], max_chars) + 1


# --- deterministic behaviour ---------------------------------------------------------------------

def test_short_chapter_is_one_chunk_with_edge_markers_as_pauses() -> None:
    text = "<#1.5#> Hello there. How are you?\n\n<#2#>"
    (chunk,) = plan(text)
    assert chunk.text == "Hello there. How are you?"
    assert chunk.pause_before_s == 1.5
    assert chunk.pause_after_s == 2.0
    assert chunk.billed_chars == len("Hello there. How are you?")


def test_chunk_prefers_a_paragraph_end_when_full_enough() -> None:
    first = "One sentence here. " * 9 + "Paragraph ends."          # 186 chars
    second = "Another sentence. " * 3                                # continues the text
    text = first + "\n\n" + second.strip()
    chunks = plan(text, max_chars=200)
    assert chunks[0].text == first
    assert chunks[1].pause_before_s == PAUSES.paragraph_s


def test_chunk_prefers_a_sentence_end_to_a_cut_inside_a_sentence() -> None:
    text = ("Alpha beta gamma delta. " * 8).strip()   # 191 chars of 23-char sentences
    chunks = plan(text, max_chars=100)
    for c in chunks:
        assert c.text.endswith(".")
    assert all(c.pause_before_s == PAUSES.sentence_s for c in chunks[1:])


def test_marker_on_a_seam_becomes_silence_not_text() -> None:
    text = "First sentence is here. <#3#> Second sentence is here."
    chunks = plan(text, max_chars=30)
    assert [c.text for c in chunks] == ["First sentence is here.", "Second sentence is here."]
    assert chunks[1].pause_before_s == pytest.approx(PAUSES.sentence_s + 3)


def test_marker_glued_to_a_sentence_end_stays_with_it_inside_a_chunk() -> None:
    text = "One.<#1#> Two. Three."
    (chunk,) = plan(text)
    assert chunk.text == text
    assert split_sentences(text) == ["One.<#1#> ", "Two. ", "Three."]


# "The lamp was lit at dusk." three times (77 characters), a scene break, then six sentences of
# "Morning came grey and cold." (167): at 200 characters a chunk, the packer without the scene-break
# preference filled the first chunk to the last sentence end in reach, with the marker inside it.
SCENE = ("The lamp was lit at dusk. " * 3).strip() + "\n\n* * *\n\n" + ("Morning came grey and cold. " * 6).strip()


def test_a_scene_break_falls_on_a_seam_when_that_costs_no_task() -> None:
    text = to_spoken_text(SCENE, markdown=False, scene_break_s=2.0)
    chunks = plan(text, max_chars=200)
    assert [c.text for c in chunks] == [text[:text.index("\n")], text[text.index("Morning"):]]
    assert chunks[1].pause_before_s == pytest.approx(PAUSES.paragraph_s + 2.0)
    # as many tasks as when the break is blank space of the same length (no preference to honour)
    assert len(plan(text.replace("<#2#>", "     "), max_chars=200)) == len(chunks) == 2
    # on the seam, the scene break's length is stitched silence: retiming it re-bills nothing
    retimed = to_spoken_text(SCENE, markdown=False, scene_break_s=3.5)
    assert [c.key for c in plan(retimed, max_chars=200)] == [c.key for c in chunks]


def test_a_scene_break_stays_inside_a_chunk_when_a_seam_there_would_cost_a_task() -> None:
    raw = SCENE + " Morning came grey and cold." * 3   # 253 + 84: three chunks if cut at the break
    text = to_spoken_text(raw, markdown=False, scene_break_s=2.0)
    chunks = plan(text, max_chars=200)
    assert len(chunks) == 2
    assert "<#2#>" in chunks[0].text


def test_overlong_sentence_is_cut_at_clause_punctuation_first() -> None:
    text = "word " * 30 + "clause ends here, " + "more words " * 10 + "and the end."
    (first, *_rest) = plan(text, max_chars=200)
    assert first.text.endswith("here,")


def test_overlong_sentence_without_clauses_is_cut_at_whitespace() -> None:
    text = " ".join(["word"] * 100) + "."
    chunks = plan(text, max_chars=64)
    assert all(re.fullmatch(r"word(?: word)*\.?", c.text) for c in chunks)
    assert all(c.pause_before_s == PAUSES.clause_s for c in chunks[1:])


def test_unbroken_run_is_cut_anywhere_but_inside_a_marker() -> None:
    text = "x" * 95 + "<#12.5#>" + "y" * 95
    chunks = plan(text, max_chars=100)
    check_chunks(text, chunks, 100)
    assert all(c.pause_before_s == 0.0 or "<#" not in c.text for c in chunks)


@pytest.mark.parametrize("cluster", ["e\u0301\u0323", "👩\u200d👩\u200d👧\u200d👦", "👍🏽", "🇫🇷", "कि", "1\ufe0f\u20e3",
                                     "🏴\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f"])
def test_unbroken_run_is_never_cut_inside_a_grapheme_cluster(cluster: str) -> None:
    text = cluster * (300 // len(cluster) + 1)
    for limit in (40, 41, 42, 43, 44, 45):
        chunks = plan(text, max_chars=limit)
        check_chunks(text, chunks, limit)
        for c in chunks:
            assert len(c.text) % len(cluster) == 0, (limit, c.text)


def test_cjk_sentences_are_cut_at_full_stops() -> None:
    sentence = "风暴过后的第三天海面平静得像一面镜子。"
    text = sentence * 30
    chunks = plan(text, max_chars=200, language="Chinese")
    assert all(c.text.endswith("。") for c in chunks)
    assert len(chunks) == math.ceil(len(text) / (200 // len(sentence) * len(sentence)))


def test_cjk_overlong_sentence_is_cut_at_a_comma() -> None:
    text = ("海面平静得像一面镜子，" * 40) + "完。"
    chunks = plan(text, max_chars=100, language="Chinese")
    check_chunks(text, chunks, 100)
    assert all(c.text.endswith("，") for c in chunks[:-1])
    assert all(c.pause_before_s == PAUSES.clause_s for c in chunks[1:])


@pytest.mark.parametrize("text, language, limit, structural", [
    ("नमस्ते आप कैसे हैं। " * 20, "Hindi", 60, PAUSES.sentence_s),          # the danda ends a sentence
    ("مرحبا كيف حالك؟ " * 20, "Arabic", 50, PAUSES.sentence_s),
    ("灯塔\u3000" * 60, "Chinese", 50, PAUSES.clause_s),                     # an ideographic space
    ("灯" * 300, "Chinese", 50, 0.0),                                       # between two characters
    ("word, " * 60, "English", 50, PAUSES.clause_s),
])
def test_seam_pause_follows_the_kind_of_cut(text: str, language: str, limit: int, structural: float) -> None:
    chunks = plan(text.strip(), max_chars=limit, language=language)
    assert len(chunks) > 2
    assert {c.pause_before_s for c in chunks[1:]} == {structural}


@pytest.mark.parametrize("text", ["", "   \n\n ", "<#1#>", " <#2#> \n\n <#3#> "])
def test_chapter_without_words_is_a_chunking_error(text: str) -> None:
    with pytest.raises(ChunkingError, match="nothing to read"):
        plan(text)


@pytest.mark.parametrize("limit", [API_MAX_CHARS + 1, 10_000, 0, 15])
def test_a_limit_above_the_api_or_too_small_for_a_marker_is_refused(limit: int) -> None:
    with pytest.raises(ValueError, match="max_chars"):
        split_spans("Some words.", language="English", chunking=ChunkingSettings(max_chars=limit))


def test_limit_is_respected_at_the_api_maximum_exactly() -> None:
    text = ("a" * 9998 + ". ") * 3
    chunks = plan(text.strip())
    assert [len(c.text) for c in chunks] == [9999, 9999, 9999]


def test_chunks_never_span_chapters(make_manifest) -> None:
    from pipeline.manifest import load_manifest
    from pipeline.planning import plan_book

    long_text = "A sentence of some length. " * 30
    path = make_manifest(chunking={"max_chars": 200}, sources={"ch01.txt": long_text, "ch02.md": long_text})
    book = plan_book(load_manifest(path))
    for chapter_plan in book.chapters:
        for c in chapter_plan.chunks:
            assert c.chapter_id == chapter_plan.chapter.id
            assert c.text == chapter_plan.chapter.text[c.start:c.end]


# --- keys ----------------------------------------------------------------------------------------

def test_chunk_key_does_not_depend_on_position_or_chunking_settings() -> None:
    text = "Same words. " * 5
    a = plan(text.strip(), max_chars=1000)
    b = plan("Other start. " + text.strip(), max_chars=1000)
    assert a[0].key != b[0].key
    c = plan(text.strip(), max_chars=2000)
    assert a[0].key == c[0].key
    # the key is a pure function of content: the same in a fresh chapter with another id
    other = plan_chapter(make_chapter(text.strip(), chapter_id="zz"), chunking=ChunkingSettings(),
                         pauses=PAUSES, subtitles="sentence")
    assert other[0].key == a[0].key


# Hongloumeng, chapter 1 (../shared/corpora/hongloumeng.txt, public domain): sentences end in "．" and
# clauses in "，" with no space after either, so most seams fall between two characters.
HONGLOUMENG_LINES = (
    "第一回  甄士隐梦幻识通灵\u3000贾雨村风尘怀闺秀\n\n"
    "列位看官：你道此书从何而来？说起根由虽近荒唐，细按则深有趣味．待在下将此来历注明，方使阅者了然不惑．\n\n"
    "原来女娲氏炼石补天之时，于大荒山无稽崖练成高经十二丈，方经二十四丈顽石三万六千五百零一块．"
    "娲皇氏只用了三万六千五百块，只单单剩了一块未用，便弃在此山青埂峰下．谁知此石自经煅炼之后，灵性已通，"
    "因见众石俱得补天，独自己无材不堪入选，遂自怨自叹，日夜悲号惭愧．\n\n"
    "一日，正当嗟悼之际，俄见一僧一道远远而来，生得骨骼不凡，丰神迥异，说说笑笑来至峰下，坐于石边高谈快论．"
    "先是说些云山雾海神仙玄幻之事，后便说到红尘中荣华富贵．此石听了，不觉打动凡心，也想要到人间去享一享这荣华富贵，"
    "但自恨粗蠢，不得已，便口吐人言，向那僧道说道：“大师，弟子蠢物，不能见礼了．适闻二位谈那人世间荣耀繁华，心切慕之．"
)


@pytest.mark.parametrize("max_chars", [40, 64, 100])
@pytest.mark.parametrize("replacement", ["", "巨", "巨石巨石巨石巨石"])   # shorter, as long, longer
def test_an_edit_in_one_cjk_sentence_re_cuts_only_its_chunk(max_chars: int, replacement: str) -> None:
    before = plan(HONGLOUMENG_LINES, max_chars=max_chars, language="Chinese")
    assert sum(1 for a, b in itertools.pairwise(before) if a.end == b.start) >= 3  # seams with no space
    edited_index = len(before) // 2
    hit = before[edited_index]
    at = hit.start + len(hit.text) // 2
    edited = HONGLOUMENG_LINES[:at] + replacement + HONGLOUMENG_LINES[at + 2:]
    after = plan_chapter(make_chapter(edited, language="Chinese"), chunking=ChunkingSettings(max_chars=max_chars),
                         pauses=PAUSES, subtitles="sentence", previous=[c.text for c in before])
    check_chunks(edited, after, max_chars)
    keys = [c.key for c in after]
    kept_before = [c.key for c in before[:edited_index]]
    kept_after = [c.key for c in before[edited_index + 1:]]
    assert keys[:len(kept_before)] == kept_before
    assert keys[len(keys) - len(kept_after):] == kept_after
    assert len(keys) - len(kept_before) - len(kept_after) in (1, 2)  # the edited chunk, split if too long


def test_a_kept_chunk_may_follow_cjk_punctuation_but_never_sits_inside_a_latin_word() -> None:
    chunking = ChunkingSettings(max_chars=100)
    text = "第一句．第二句，第三句．"
    assert (4, 8) in stable_spans(text, ["第二句，"], language="Chinese", chunking=chunking)
    text = "Nothing other than the truth."
    assert stable_spans(text, ["the"], language="English", chunking=chunking) == [
        (0, text.index(" the")), (text.index("the "), text.index("the ") + 3), (text.index("truth"), len(text))]


# --- sentence splitter ---------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("Hello there. How are you?", ["Hello there. ", "How are you?"]),
    ("Dr. Smith went to Washington. He arrived at 5 p.m. on Friday.",
     ["Dr. Smith went to Washington. ", "He arrived at 5 p.m. on Friday."]),
    ("今日は晴れです。明日は雨でしょう！本当ですか？", ["今日は晴れです。", "明日は雨でしょう！", "本当ですか？"]),
    ("此开卷第一回也．作者自云：因曾历过一番梦幻之后．", ["此开卷第一回也．", "作者自云：因曾历过一番梦幻之后．"]),
    ("Hello there.<#1.5#> How are you?", ["Hello there.<#1.5#> ", "How are you?"]),
    ("  \n\nLeading. Trailing.  \n", ["  \n\nLeading. ", "Trailing.  \n"]),
    ("Hello.\n\nWorld.", ["Hello.\n\n", "World."]),
    ("", []),
    ("   ", ["   "]),
])
def test_split_sentences_examples(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


def test_split_sentences_hides_markers_from_the_boundary_finder() -> None:
    # A marker between the full stop and the next word must not hide the boundary.
    assert split_sentences("It was late.<#2#>The end came.") == ["It was late.<#2#>", "The end came."]


def test_split_sentences_language_names_and_codes_agree() -> None:
    text = "第一句。第二句！"
    assert split_sentences(text, "Chinese") == split_sentences(text, "zh") == split_sentences(text)


# --- estimates and bounds ------------------------------------------------------------------------

def test_lower_bound_tasks_sums_ceilings_per_chapter() -> None:
    assert lower_bound_tasks(["a" * 10, "b" * 11, "  ", ""], 10) == 1 + 2
    assert lower_bound_tasks([], 10) == 0


def test_estimate_seconds_counts_markers_and_speed() -> None:
    assert estimate_seconds("<#2.5#>", speed=1.0) == pytest.approx(2.5)
    slow = estimate_seconds("word " * 100, speed=0.5)
    fast = estimate_seconds("word " * 100, speed=1.0)
    assert slow == pytest.approx(2 * fast)
    assert estimate_seconds("灯" * 45, speed=1.0) > estimate_seconds("a" * 45, speed=1.0)


# --- real manuscripts ----------------------------------------------------------------------------

def _alice_chapters() -> list[str]:
    raw = decode_source((CORPORA / "alice.txt").read_bytes())
    # The book runs from the first chapter heading at a line start (the contents list is indented)
    # to "THE END" or the Gutenberg footer, whichever this copy has.
    start = re.search(r"^CHAPTER I\.$", raw, flags=re.MULTILINE)
    end = re.search(r"^(?:THE END$|\*\*\* ?END OF TH)", raw, flags=re.MULTILINE)
    assert start is not None
    body = raw[start.start(): end.start() if end else len(raw)]
    parts = re.split(r"^(?=CHAPTER [IVXL]+\.)", body, flags=re.MULTILINE)
    return [to_spoken_text(p, markdown=False, scene_break_s=2.0) for p in parts if p.strip()]


def _hongloumeng_chapters() -> list[str]:
    raw = decode_source((CORPORA / "hongloumeng.txt").read_bytes())
    parts = re.split(r"^(?=第[一二三四五六七八九十百零〇]+回)", raw, flags=re.MULTILINE)
    return [to_spoken_text(p, markdown=False, scene_break_s=2.0) for p in parts[1:] if p.strip()]


@needs_corpora
@pytest.mark.parametrize("corpus, language", [("alice", "English"), ("hongloumeng", "Chinese")])
def test_real_manuscripts_pack_within_five_percent_of_the_lower_bound(corpus: str, language: str) -> None:
    chapters = _alice_chapters() if corpus == "alice" else _hongloumeng_chapters()
    assert len(chapters) == (12 if corpus == "alice" else 120)
    tasks = 0
    for i, text in enumerate(chapters):
        chunks = plan_chapter(make_chapter(text, language=language, chapter_id=f"c{i}"),
                              chunking=ChunkingSettings(), pauses=PAUSES, subtitles="sentence")
        assert all(len(c.text) <= API_MAX_CHARS for c in chunks)
        tasks += len(chunks)
    bound = lower_bound_tasks(chapters, API_MAX_CHARS)
    assert tasks <= 1.05 * bound, (tasks, bound)


@needs_corpora
@pytest.mark.parametrize("max_chars", [500, 2000])
def test_real_manuscripts_keep_every_promise_at_small_limits(max_chars: int) -> None:
    for text in _alice_chapters()[:3] + _hongloumeng_chapters()[:3]:
        spans = split_spans(text, language="auto", chunking=ChunkingSettings(max_chars=max_chars))
        assert all(0 < end - start <= max_chars for start, end in spans)
        chunks = plan(text, max_chars=max_chars)
        check_chunks(text, chunks, max_chars)
        assert len(chunks) <= 1.05 * lower_bound_tasks([text], max_chars) + 1


def test_decoded_crlf_source_chunks_like_lf() -> None:
    lf = decode_source(b"One line.\nTwo line.\n\nThree.")
    crlf = decode_source(b"One line.\r\nTwo line.\r\n\r\nThree.")
    assert lf == crlf
