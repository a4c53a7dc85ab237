"""Cut a chapter's spoken text into API-sized chunks at the best boundaries, losing nothing.

Two public operations:

* :func:`split_sentences` cuts text into sentences whose concatenation is the input, exactly. Pause
  markers are hidden from the boundary finder (sentencex) and mapped back, so a marker glued to a
  sentence end stays with that sentence.
* :func:`plan_chapter` packs sentences into chunks of at most ``max_chars`` code points (markers
  included). A chunk ends, in order of preference, at a scene break (a paragraph made only of a
  pause marker), a paragraph end, a sentence end, clause punctuation, whitespace, or anywhere that is
  not inside a marker or a combining sequence. Chunks never start or end with a marker: a marker on
  an edge becomes silence at the seam (``Chunk.pause_before_s`` / ``pause_after_s``), which the
  stitcher inserts. A scene break on a seam is therefore free to retime (``pauses.scene_break_s``),
  while one inside a chunk is sent to the API and re-billed when it changes.

Packing is tight (the voice fee is charged per task). A backward pass finds the fewest chunks any
cut allows and, for the best kind of cut that reaches the same count (sentence ends, then clause
punctuation; word boundaries may cost up to 5% more, since a cut inside a word is audible), the
latest position each remaining chunk may start at. The forward pass then takes, chunk by chunk, the
best boundary in reach that keeps the rest within those positions, so a preference (a scene break on
the seam, a paragraph end) is honoured only where it costs no task.

After an edit, :func:`stable_spans` keeps every chunk of the previous cut whose text is still there
at a place the packer could have cut (:func:`_is_chunk_edge`), and cuts only the text between them.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import re
import unicodedata
from collections.abc import Sequence

import sentencex

from pipeline.errors import ChunkingError
from pipeline.lexicon.entries import Lexicon
from pipeline.models import API_MAX_CHARS, LANGUAGE_CODES, ChapterSpec, Chunk, ChunkingSettings, PauseSettings
from pipeline.request import AudioRequest
from pipeline.text import MARKER_BODY, MARKER_RE, billed_chars, marker_seconds

_EDGE_HEAD_RE = re.compile(rf"(?:\s|<#{MARKER_BODY}#>)*")
# Sentence and clause punctuation of the API's languages (Latin, CJK, Devanagari danda, Arabic).
_SENTENCE_END_RE = re.compile(r"[.!?。！？．…‼⁇⁈⁉।॥؟۔][\"'”’」』）)\]»›]*\Z")
_CLAUSE_RE = re.compile(r"[,;:，、；：—–)）」』”’،؛]+")
# A scene break as text.to_spoken_text writes it: a paragraph made only of a pause marker (group 1).
# The literal "\n\n" up front lets the regex engine skip ahead (a lookbehind is ten times slower).
_SCENE_BREAK_RE = re.compile(rf"\n\n([ \t]*(?:<#{MARKER_BODY}#>[ \t]*)+)(?=\n\n)")

# The smallest chunk limit the packer accepts: room for the longest marker (<#99.99#>) and a few
# grapheme clusters beside it.
MIN_CHUNK_CHARS = 16

# How fast a narrator reads, for estimates only: about 150 words a minute in Latin scripts, and
# about 4.5 characters a second in CJK scripts.
LATIN_CHARS_PER_S = 14.0
CJK_CHARS_PER_S = 4.5

# Seam kinds, strongest first.
_PARAGRAPH, _SENTENCE = 2, 1
# Kinds of cut, best first: the packer uses the best kind that does not cost a task.
_CUT_SENTENCE, _CUT_CLAUSE, _CUT_WORD, _CUT_ANY = 3, 2, 1, 0
_CJK_CLASS = "\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef\U00020000-\U0003ffff"
# A word boundary: at whitespace, or at a CJK character (each is a word for cutting purposes).
_WORD_EDGE_RE = re.compile(f"[\\s{_CJK_CLASS}]")


def _iso_code(language: str, text: str) -> str:
    if language and language != "auto":
        return LANGUAGE_CODES.get(language, language if len(language) <= 3 else "en")
    sample = text[:4000]
    kana = sum(1 for ch in sample if "\u3040" <= ch <= "\u30ff")
    han = sum(1 for ch in sample if "\u4e00" <= ch <= "\u9fff")
    hangul = sum(1 for ch in sample if "\uac00" <= ch <= "\ud7af")
    letters = sum(1 for ch in sample if ch.isalpha()) or 1
    if kana / letters > 0.05:
        return "ja"
    if hangul / letters > 0.3:
        return "ko"
    if han / letters > 0.3:
        return "zh"
    return "en"


# sentencex never ends a sentence inside brackets or double quotes; one stray "(" therefore hides every
# sentence end up to the next ")" (2,700 characters in the syntok OSPL text). A "sentence" this long
# is looked at again with its brackets and double quotes blanked (same length, so offsets hold).
_LONG_PIECE = 300
_ENCLOSURES = str.maketrans(dict.fromkeys('()[]{}"“”«»「」『』（）', " "))
_OPENERS = "([{“«「『（"


def _resplit_long_pieces(text: str, code: str, ends: list[int]) -> list[int]:
    out: list[int] = []
    start = 0
    for end in ends:
        if end - start > _LONG_PIECE:
            piece = text[start:end].translate(_ENCLOSURES)
            for b in sentencex.get_sentence_boundaries(code, piece)[:-1]:
                cut = start + b["end_index"]
                # a blanked opening bracket or quote belongs to the sentence it opens
                while cut - 1 > start and (text[cut - 1] in _OPENERS
                                           or (text[cut - 1] == '"' and text[cut - 2].isspace())):
                    cut -= 1
                if cut > (out[-1] if out else 0):
                    out.append(cut)
        out.append(end)
        start = end
    return out


def _sentence_ends(text: str, language: str) -> list[int]:
    """Offsets in ``text`` where a new sentence starts (excluding 0, including len(text))."""
    markers = list(MARKER_RE.finditer(text))
    clean = MARKER_RE.sub("", text) if markers else text
    code = _iso_code(language, clean)
    ends = _resplit_long_pieces(clean, code, [b["end_index"] for b in sentencex.get_sentence_boundaries(code, clean)])
    if markers:
        # clean offset -> original offset: add the length of every marker removed before it. A
        # boundary lands on the first character after the markers, so a marker glued to a
        # sentence end stays with that sentence.
        removed_at: list[int] = []   # clean offsets where markers were removed
        removed_len: list[int] = []  # cumulative removed length up to and including that marker
        total = 0
        for m in markers:
            removed_at.append(m.start() - total)
            total += m.end() - m.start()
            removed_len.append(total)
        mapped = []
        for end in ends:
            k = bisect.bisect_right(removed_at, end)
            mapped.append(end + (removed_len[k - 1] if k else 0))
        ends = mapped
    cuts: list[int] = []
    content_seen = False
    for end in ends:
        if not 0 < end < len(text):
            continue
        piece_start = cuts[-1] if cuts else 0
        if not content_seen:
            content_seen = _has_words(text, piece_start, end)
            if not content_seen:
                continue  # leading whitespace and markers join the first sentence
        if cuts and not _has_words(text, piece_start, end):
            cuts[-1] = end  # a piece of only whitespace and markers joins the sentence before it
        else:
            cuts.append(end)
    if cuts and not _has_words(text, cuts[-1], len(text)):
        cuts[-1] = len(text)  # trailing whitespace and markers join the last sentence
    elif not cuts or cuts[-1] != len(text):
        cuts.append(len(text))
    return _join_list_items(text, cuts)


# A list item's label: "1." "12)" "a." with an optional bullet before it ("⁃9.").
_ENUMERATOR = r"(?P<bullet>[\u2043\u2022\u2023\u25e6*-]?)(?P<label>\d{1,3}|[a-z])(?P<punct>[.)])"
_ENUMERATOR_ONLY_RE = re.compile(rf"\s*{_ENUMERATOR}\s*")
_ENUMERATOR_HEAD_RE = re.compile(rf"\s*{_ENUMERATOR}\s")


def _join_list_items(text: str, cuts: list[int]) -> list[int]:
    """Keep list items whole: sentencex reads the full stop of "1." as a sentence end.

    A piece that is only a list label joins the item text after it, and inside a piece that starts
    with a label, the next label of the same sequence ("2." after "1.", "b." after "a.") starts a new
    piece. (The pySBD golden rules on lists; prose rarely has a lone label or a counted sequence.)
    """
    if not any(_ENUMERATOR_HEAD_RE.match(text, a, b) or _ENUMERATOR_ONLY_RE.fullmatch(text, a, b)
               for a, b in zip([0, *cuts[:-1]], cuts, strict=True)):
        return cuts
    return _merge_lone_labels(text, _split_label_sequences(text, _merge_lone_labels(text, cuts)))


def _merge_lone_labels(text: str, cuts: list[int]) -> list[int]:
    merged: list[int] = []
    piece_start = 0
    for end in cuts:
        if end < len(text) and _ENUMERATOR_ONLY_RE.fullmatch(text, piece_start, end):
            continue  # a lone label joins the text after it
        merged.append(end)
        piece_start = end
    return merged


def _split_label_sequences(text: str, cuts: list[int]) -> list[int]:
    split: list[int] = []
    for start, end in zip([0, *cuts[:-1]], cuts, strict=True):
        head = _ENUMERATOR_HEAD_RE.match(text, start, end)
        while head:
            label = head.group("label")
            following = str(int(label) + 1) if label.isdigit() else chr(ord(label) + 1)
            pattern = re.compile(rf"(?<=\s){re.escape(head.group('bullet'))}{re.escape(following)}"
                                 rf"{re.escape(head.group('punct'))}(?=\s|\Z)")
            found = pattern.search(text, head.end(), end)
            if not found or not found.group().strip():
                break
            split.append(found.start())
            head = _ENUMERATOR_HEAD_RE.match(text, found.start(), end)
        split.append(end)
    return split


def _has_words(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` holds anything but whitespace and pause markers."""
    head = _EDGE_HEAD_RE.match(text, start, end)
    return head is None or head.end() < end


def split_sentences(text: str, language: str = "auto") -> list[str]:
    """Cut ``text`` into sentences; ``"".join(result) == text``.

    ``language`` is an API language name ("English", "Chinese", ...), an ISO code, or "auto" (the
    script decides). Whitespace and pause markers after a sentence belong to it.
    """
    if not text:
        return []
    pieces, start = [], 0
    for end in _sentence_ends(text, language):
        pieces.append(text[start:end])
        start = end
    return pieces


def _content_span(text: str, start: int, end: int) -> tuple[int, int]:
    """Shrink [start, end) past whitespace and pause markers on both edges."""
    head = _EDGE_HEAD_RE.match(text, start, end)
    assert head is not None
    content_start = head.end()
    if content_start >= end:
        return end, end
    # Walk back from the end by hand: a candidate end is tried many times per chunk, and the
    # run of whitespace and markers before it is short.
    while end > content_start:
        ch = text[end - 1]
        if ch.isspace():
            end -= 1
        elif ch == ">" and text[end - 2] == "#":
            opening = text.rfind("<#", max(content_start, end - 9), end - 2)
            if opening == -1 or not MARKER_RE.fullmatch(text, opening, end):
                break
            end = opening
        else:
            break
    return content_start, end


def _is_paragraph_end(text: str, end: int) -> bool:
    if end >= len(text):
        return True
    content_start, content_end = _content_span(text, max(0, end - 256), end)
    return "\n\n" in text[content_end:end] if content_end > content_start else "\n\n" in text[max(0, end - 256):end]


def _is_extend(ch: str) -> bool:
    """Whether ``ch`` continues the grapheme cluster before it (UAX #29 Extend, SpacingMark, ZWJ)."""
    if ch < "\u0300":
        return False
    return (unicodedata.category(ch) in ("Mn", "Mc", "Me") or ch == "\u200d"
            or "\U0001f3fb" <= ch <= "\U0001f3ff"         # emoji skin-tone modifiers
            or "\U000e0020" <= ch <= "\U000e007f"         # emoji tag sequences (subdivision flags)
            or "\udc00" <= ch <= "\udfff")                # the low half of a surrogate pair


def _is_regional_indicator(ch: str) -> bool:
    return "\U0001f1e6" <= ch <= "\U0001f1ff"


def _hangul_kind(ch: str) -> str:
    code = ord(ch)
    if 0x1100 <= code <= 0x115F or 0xA960 <= code <= 0xA97F:
        return "L"
    if 0x1160 <= code <= 0x11A7 or 0xD7B0 <= code <= 0xD7C6:
        return "V"
    if 0x11A8 <= code <= 0x11FF or 0xD7CB <= code <= 0xD7FB:
        return "T"
    if 0xAC00 <= code <= 0xD7A3:
        return "LV" if (code - 0xAC00) % 28 == 0 else "LVT"
    return ""


def _is_grapheme_boundary(text: str, pos: int) -> bool:
    """Whether a cut at ``pos`` keeps every user-perceived character whole (a practical UAX #29 subset:
    combining and spacing marks, ZWJ emoji sequences, skin tones, flags, tags, keycaps, Hangul jamo,
    CR LF and surrogate pairs)."""
    if pos <= 0 or pos >= len(text):
        return True
    ch, prev = text[pos], text[pos - 1]
    if _is_extend(ch) or ch in "\ufe0e\ufe0f" or prev == "\u200d" or (prev == "\r" and ch == "\n"):
        return False
    if _is_regional_indicator(ch) and _is_regional_indicator(prev):
        run = 0  # flags pair up from the start of a run of regional indicators
        while pos - run - 1 >= 0 and _is_regional_indicator(text[pos - run - 1]):
            run += 1
        return run % 2 == 0
    if prev >= "\u1100" and ch >= "\u1100":
        before, after = _hangul_kind(prev), _hangul_kind(ch)
        if before and after and (
                (before == "L" and after in ("L", "V", "LV", "LVT"))
                or (before in ("LV", "V") and after in ("V", "T"))
                or (before in ("LVT", "T") and after == "T")):
            return False
    return True


def _inside_marker(text: str, pos: int) -> int:
    """The start of the pause marker ``pos`` falls strictly inside, or -1."""
    marker_open = text.rfind("<#", max(0, pos - 9), pos + 1)
    if marker_open != -1:
        m = MARKER_RE.match(text, marker_open)
        if m and m.start() < pos < m.end():
            return m.start()
    return -1


def _safe_cut(text: str, pos: int, lowest: int) -> int:
    """The nearest position in [lowest, pos] that is neither inside a marker nor inside a grapheme
    cluster; ``lowest - 1`` when there is none."""
    while pos >= lowest:
        marker_start = _inside_marker(text, pos)
        if marker_start != -1:
            pos = marker_start
            continue
        if _is_grapheme_boundary(text, pos):
            return pos
        pos -= 1
    return lowest - 1


def _content_start(text: str, pos: int) -> int:
    """The first position at or after ``pos`` that is not whitespace or a pause marker."""
    head = _EDGE_HEAD_RE.match(text, pos)
    assert head is not None
    return head.end()


def _is_clean_cut(text: str, pos: int) -> bool:
    return _inside_marker(text, pos) == -1 and _is_grapheme_boundary(text, pos)


def _earliest_cut(text: str, lo: int, hi: int, kind: int, cuts: list[int]) -> int:
    """The first cut of exactly ``kind`` in [lo, hi), or -1."""
    if kind == _CUT_SENTENCE:
        i = bisect.bisect_left(cuts, lo)
        return cuts[i] if i < len(cuts) and cuts[i] < hi else -1
    if kind == _CUT_CLAUSE:
        for m in _CLAUSE_RE.finditer(text, lo, hi):
            if m.end() < hi and _is_clean_cut(text, m.end()):
                return m.end()
        return -1
    if kind == _CUT_WORD:
        for m in _WORD_EDGE_RE.finditer(text, lo, hi):
            if _is_clean_cut(text, m.start()):
                return m.start()
        return -1
    for pos in range(lo, hi):
        if _is_clean_cut(text, pos):
            return pos
    return -1


def _latest_starts(text: str, limit: int, first: int, last: int, kind: int, cuts: list[int]) -> list[int]:
    """``starts[k]``: the earliest position from which the rest of the text fits in ``k`` chunks when
    chunks end at cuts of ``kind`` or better (a window without one falls back to the next kind).

    Packing backwards from the end, each chunk reaching as far back as it can, gives the fewest chunks
    those cuts allow (``len(starts) - 1``); a forward cut that leaves the rest at or after
    ``starts[k]`` with ``k`` chunks to go never raises that count.
    """
    starts = [last]
    end = last
    while end - limit > first:
        lo = end - limit
        candidates = [c for k in range(kind, _CUT_SENTENCE + 1)
                      if (c := _earliest_cut(text, lo, end, k, cuts)) != -1]
        fallback = kind
        while not candidates and fallback > _CUT_ANY:
            fallback -= 1
            candidates = [c for c in [_earliest_cut(text, lo, end, fallback, cuts)] if c != -1]
        start = min(candidates) if candidates else _forced_start(text, lo)
        starts.append(start)
        end = _content_span(text, first, start)[1]
    starts.append(first)
    return starts


def _forced_start(text: str, lo: int) -> int:
    """Where a chunk must start when its whole window is one grapheme cluster: never inside a marker."""
    marker_start = _inside_marker(text, lo)
    return lo if marker_start == -1 else MARKER_RE.match(text, marker_start).end()  # type: ignore[union-attr]


def _is_word_cut(text: str, pos: int) -> bool:
    """Whether ``pos`` (inside the text) is a clean cut next to whitespace or a CJK character."""
    return ((_WORD_EDGE_RE.match(text, pos - 1) is not None or _WORD_EDGE_RE.match(text, pos) is not None)
            and _is_clean_cut(text, pos))


def _follows_sentence_end(text: str, pos: int) -> bool:
    """Whether sentence punctuation (and any closing quotes or brackets) ends just before ``pos``."""
    return _SENTENCE_END_RE.search(text, max(0, pos - 8), pos) is not None


def _follows_clause_mark(text: str, pos: int) -> bool:
    """Whether clause punctuation stands just before ``pos``."""
    return pos > 0 and _CLAUSE_RE.match(text, pos - 1, pos) is not None


def _touches_marker(text: str, pos: int) -> bool:
    """Whether a pause marker starts or ends at ``pos``."""
    if MARKER_RE.match(text, pos):
        return True
    opening = text.rfind("<#", max(0, pos - 9), pos)
    return opening != -1 and MARKER_RE.fullmatch(text, opening, pos) is not None


def _is_chunk_edge(text: str, pos: int) -> bool:
    """Whether a chunk may start or end at ``pos``: wherever the packer cuts other than by force.

    That is the text's edges, and any clean cut (never inside a marker or a grapheme cluster) at
    a word boundary (whitespace, a CJK character), a marker's edge, or after sentence or clause
    punctuation ("。" or "，" glued to the next character, as CJK text is written). A position inside
    a Latin word ("the" inside "other") is not an edge: the packer cuts there only by force, when no
    boundary keeps the task count, and a previous chunk found there is a coincidence, not that cut.
    """
    if pos <= 0 or pos >= len(text):
        return True
    return _is_word_cut(text, pos) or (_is_clean_cut(text, pos) and (
        _touches_marker(text, pos) or _follows_clause_mark(text, pos) or _follows_sentence_end(text, pos)))


def _last_word_cut(text: str, lo: int, hi: int) -> int:
    """The last clean cut in (lo, hi] next to whitespace or between CJK characters, or -1."""
    pos = hi
    while pos > lo:
        if pos >= len(text) or _is_word_cut(text, pos):
            return pos
        pos -= 1
    return -1


def _last_clause_end(text: str, lo: int, hi: int) -> int:
    """The end of the last clause punctuation in [lo, hi) that is a clean cut, or -1."""
    ends = [m.end() for m in _CLAUSE_RE.finditer(text, lo, hi)]
    for end in reversed(ends):
        if _is_clean_cut(text, end):
            return end
    return -1


def _forced_cut(text: str, start: int, limit_end: int) -> int:
    """A cut for a chunk whose whole window is one grapheme cluster (a letter under hundreds of
    combining marks): cutting inside the cluster is unavoidable, cutting inside a marker is not."""
    marker_start = _inside_marker(text, limit_end)
    return marker_start if marker_start > start else limit_end


def _choose_cut(text: str, start: int, limit: int, cuts: list[int], kinds: list[int], *,
                scenes: tuple[list[int], list[int]], next_start_min: int, paragraph_min_fill: float) -> int:
    """The end of the chunk that begins at ``start`` (a content start).

    ``scenes`` is the scene breaks' chunk ends (the content end before each) and cuts (the end of
    the marker paragraph), both ascending. Candidates, best first: the last scene break in reach,
    however full the chunk; the last paragraph end at least ``paragraph_min_fill`` full; the last
    sentence end at least half full; in the window's second half, past the last sentence end, the
    last clause punctuation, then the last word boundary; the last sentence end; the last clause
    punctuation; the last word boundary; the last clean position. The first candidate that leaves
    the next chunk starting at or after ``next_start_min`` wins: that keeps the chapter at the fewest
    tasks its packing allows.
    """
    window_end = min(start + limit, len(text))

    def feasible(cut: int) -> bool:
        return cut > start and _content_start(text, cut) >= next_start_min

    scene_ends, scene_cuts = scenes
    if scene_ends:
        # A scene break on the seam is stitched silence; inside a chunk it is billed text, re-billed
        # whenever pauses.scene_break_s changes. Only the latest in reach can be feasible if any is:
        # an earlier one starts the next chunk earlier.
        i = bisect.bisect_right(scene_ends, start + limit) - 1
        if i >= 0 and scene_ends[i] > start and feasible(scene_cuts[i]):
            return scene_cuts[i]
    lo = bisect.bisect_right(cuts, start)
    # Sentence ends within the window fit; later ones fit while only whitespace and markers (which
    # the chunk sheds at its edge) reach past the window.
    hi = bisect.bisect_right(cuts, window_end, lo)
    while hi < len(cuts) and _content_span(text, start, cuts[hi])[1] <= start + limit:
        hi += 1
    last_sentence = cuts[hi - 1] if hi > lo else -1
    if last_sentence != -1:
        for i in range(hi - 1, lo - 1, -1):
            if kinds[i] == _PARAGRAPH and cuts[i] - start >= paragraph_min_fill * limit:
                if feasible(cuts[i]):
                    return cuts[i]
                break
        if last_sentence - start >= 0.5 * limit and feasible(last_sentence):
            return last_sentence
    if hi < len(cuts):
        # The next sentence end is out of reach: cut inside the (over-long) sentence that follows.
        zone = max(last_sentence, start + limit // 2)
        for candidate in (_last_clause_end(text, zone, window_end), _last_word_cut(text, zone, window_end)):
            if feasible(candidate):
                return candidate
    for candidate in (last_sentence, _last_clause_end(text, start, window_end),
                      _last_word_cut(text, start, window_end)):
        if feasible(candidate):
            return candidate
    safe = _safe_cut(text, window_end, start + 1)
    return safe if safe > start else _forced_cut(text, start, window_end)


def _scene_breaks(text: str) -> tuple[list[int], list[int]]:
    """The scene breaks of ``text`` as (chunk ends, cuts): for each, the end of the content before it
    and the end of its marker paragraph (see :func:`_choose_cut`)."""
    ends: list[int] = []
    cuts: list[int] = []
    for m in _SCENE_BREAK_RE.finditer(text):
        if _has_words(text, 0, m.start(1)) and _has_words(text, m.end(1), len(text)):  # not on an edge
            ends.append(_content_span(text, 0, m.start(1))[1])
            cuts.append(m.end(1))
    return ends, cuts


def _pack(text: str, limit: int, cuts: list[int], kinds: list[int], *,
          paragraph_min_fill: float) -> list[tuple[int, int]]:
    first, last = _content_span(text, 0, len(text))
    if last <= first:
        return []
    # The fewest chunks any cut allows, then the best kind of cut that still reaches it. Cutting
    # inside a word is audible, so word boundaries may cost up to 5% more tasks (the bound).
    starts = _latest_starts(text, limit, first, last, _CUT_ANY, cuts)
    fewest = len(starts) - 1
    for kind, allowed in ((_CUT_SENTENCE, fewest), (_CUT_CLAUSE, fewest), (_CUT_WORD, fewest + fewest // 20)):
        candidate = _latest_starts(text, limit, first, last, kind, cuts)
        if len(candidate) - 1 <= allowed:
            starts = candidate
            break
    scenes = _scene_breaks(text) if "<#" in text else ([], [])
    spans: list[tuple[int, int]] = []
    start = first
    remaining = len(starts) - 1
    while start < last:
        remaining -= 1
        end = _choose_cut(text, start, limit, cuts, kinds, scenes=scenes,
                          next_start_min=starts[max(remaining, 0)], paragraph_min_fill=paragraph_min_fill)
        content_start, content_end = _content_span(text, start, end)
        if content_end <= content_start:  # pragma: no cover - every candidate is past ``start``
            raise RuntimeError(f"empty chunk at offset {start}")
        spans.append((content_start, content_end))
        start = _content_start(text, end)
    return spans


def _seam_pause(text: str, gap_start: int, gap_end: int, pauses: PauseSettings) -> float:
    gap = text[gap_start:gap_end]
    structural = (pauses.paragraph_s if "\n\n" in gap
                  else pauses.sentence_s if _follows_sentence_end(text, gap_start)
                  else pauses.clause_s if any(ch.isspace() for ch in gap) or _follows_clause_mark(text, gap_start)
                  else 0.0)
    return round(structural + marker_seconds(gap), 3)


def split_spans(text: str, *, language: str, chunking: ChunkingSettings) -> list[tuple[int, int]]:
    """Content spans ``[(start, end)]`` of the chunks ``text`` is cut into (see the module docstring)."""
    limit = chunking.max_chars
    if not MIN_CHUNK_CHARS <= limit <= API_MAX_CHARS:
        # the manifest refuses these; a caller building settings by hand must not exceed the API
        raise ValueError(f"max_chars must be {MIN_CHUNK_CHARS} to {API_MAX_CHARS}, not {limit}")
    ends = _sentence_ends(text, language)
    kinds = [_PARAGRAPH if _is_paragraph_end(text, e) else _SENTENCE for e in ends]
    return _pack(text, limit, ends, kinds, paragraph_min_fill=chunking.paragraph_min_fill)


def stable_spans(text: str, previous: Sequence[str], *, language: str,
                 chunking: ChunkingSettings) -> list[tuple[int, int]]:
    """Content spans for ``text`` that keep every chunk of the previous cut that is still there.

    After an edit, the previous chunks whose text still appears (in order, starting and ending where
    the packer itself could cut: :func:`_is_chunk_edge`, so also right after a "。" or "，" with no
    space) are kept as they were, so their audio stays valid; only the text between them is cut
    afresh. A one-sentence edit therefore changes one chunk (two if it no longer fits the limit),
    wherever it is. Packing stays tight because the kept chunks were packed tightly.
    """
    anchors: list[tuple[int, int]] = []
    cursor = 0
    for old in previous:
        if not old or len(old) > chunking.max_chars:
            continue
        found = text.find(old, cursor)
        while found != -1 and not (_is_chunk_edge(text, found) and _is_chunk_edge(text, found + len(old))):
            found = text.find(old, found + 1)
        if found == -1:
            continue
        anchors.append((found, found + len(old)))
        cursor = found + len(old)
    spans: list[tuple[int, int]] = []
    region_start = 0
    for anchor_start, anchor_end in [*anchors, (len(text), len(text))]:
        region = text[region_start:anchor_start]
        if region.strip():
            spans.extend((region_start + a, region_start + b)
                         for a, b in split_spans(region, language=language, chunking=chunking))
        if anchor_end > anchor_start:
            spans.append((anchor_start, anchor_end))
        region_start = anchor_end
    return spans


LEXICON_RECUTS = 8      # cuts tried before a lengthening respelling leaves every chunk under the limit
MIN_RECUT_CHARS = 100


def plan_chapter(chapter: ChapterSpec, *, chunking: ChunkingSettings, pauses: PauseSettings,
                 subtitles: str, previous: Sequence[str] = ()) -> tuple[Chunk, ...]:
    """Cut one chapter into chunks (see the module docstring for the rules).

    ``previous`` is the chapter's last cut (chunk texts in order), when there was one: see
    :func:`stable_spans`.
    """
    text = chapter.text
    lexicon = Lexicon(chapter.lexicon)
    limit = chunking
    for _ in range(LEXICON_RECUTS):
        spans = (stable_spans(text, previous, language=chapter.language, chunking=limit) if previous
                 else split_spans(text, language=chapter.language, chunking=limit))
        # the limit is the spoken text's: a respelling that lengthens a chunk past it cuts it again, with
        # the limit shrunk by the longest chunk's growth
        said = {(a, b): lexicon.apply(text[a:b]) for a, b in spans}
        longest = max((len(spoken.text) for spoken in said.values()), default=0)
        if longest <= chunking.max_chars or not lexicon:
            break
        shrunk = limit.max_chars * chunking.max_chars // longest - 1
        limit = dataclasses.replace(limit, max_chars=max(MIN_RECUT_CHARS, min(shrunk, limit.max_chars - 1)))
    else:
        raise ChunkingError(f"chapter '{chapter.id}': the lexicon's respellings make a chunk longer than "
                            f"chunking.max_chars ({chunking.max_chars:,}) however it is cut; shorten the respellings "
                            "(say) or check for an entry that matches far too much")
    if not spans:
        raise ChunkingError(f"chapter '{chapter.id}' has nothing to read: it holds only pause markers "
                            "or whitespace; add text or remove the chapter")
    chunks = []
    previous_end = 0
    for index, (start, end) in enumerate(spans):
        body = text[start:end]
        spoken = said[(start, end)]
        if index == 0:
            before = round(marker_seconds(text[:start]), 3)
        else:
            before = _seam_pause(text, previous_end, start, pauses)
        after = round(marker_seconds(text[end:]), 3) if index == len(spans) - 1 else 0.0
        chunks.append(Chunk(
            chapter_id=chapter.id, index=index, start=start, end=end, text=body,
            billed_chars=billed_chars(spoken.text), pause_before_s=before, pause_after_s=after,
            request=AudioRequest.for_chunk(spoken.text, voice=chapter.voice, language=chapter.language,
                                           subtitles=subtitles),
            spoken=spoken if spoken.replacements else None,
        ))
        previous_end = end
    return tuple(chunks)


def lower_bound_tasks(texts: Sequence[str], limit: int) -> int:
    """The fewest tasks any chunker could use: sum over chapters of ceil(chars / limit)."""
    return sum(math.ceil(len(t.strip()) / limit) for t in texts if t.strip())


def estimate_seconds(text: str, *, speed: float) -> float:
    """A rough spoken duration of ``text`` (markers included as their pauses)."""
    spoken = MARKER_RE.sub("", text)
    cjk = sum(1 for ch in spoken if "\u3040" <= ch <= "\u9fff" or "\uac00" <= ch <= "\ud7af")
    other = len(spoken) - cjk
    return (cjk / CJK_CHARS_PER_S + other / LATIN_CHARS_PER_S) / speed + marker_seconds(text)
