"""The silent defects of a take: what the ``drop_sentence``, ``long_silence``, ``cut_short`` and ``clip``
task faults do to an audio task's clip (see :class:`~pipeline.simulator.faults.FaultProfile`).

A defect is planned from the text when its task is created (:func:`plan_defects`: whether it can apply
at all, which sentence, which boundary), so the ledger never lists a defect that did not happen, and
applied to the rendered timeline, before MP3 encoding, when the audio is first needed
(:func:`apply_defects`); the clip and the sentence timings it returns are what the audio and subtitle
downloads serve. Several may hit one clip. They apply in this order, each to the result of the ones
before it:

1. ``drop_sentence``: sentence *i* (never the only one) goes from the audio and from the subtitles. The
   audio removed is the gap before the sentence and the sentence itself (for the first sentence: the
   sentence and the gap after it, so the leading silence stays); the later cues move earlier by as much.
2. ``long_silence``: digital silence of ``long_silence_s`` (the clip's own pauses are digital zero too)
   goes into a boundary between two sentences of what is left, or between two words when one sentence
   is left, never a boundary with a ``<#x#>`` marker in it, at the boundary's quietest point (the middle
   of a silent gap); the later cues move later by as much.
3. ``cut_short``: the audio ends 40-80 % of the way through the speech (and after the inserted silence,
   when there is one), at a point where every 5 ms of the last 50 ms is loud, with no silence after it
   (encoded with ``LAME_MIN_TAIL_CUT_SAMPLES``); the subtitles keep the whole text and their times.
4. ``clip``: the clip is amplified by ``CLIP_GAIN_DB`` and clipped hard at full scale; cues unchanged.

:func:`apply_defects` reports what it did, per defect (the ledger shows it); every position is in
seconds of the delivered audio (a drop's junction may lie past the end of a clip that was also cut).
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.simulator.faults import DEFECT_FAULT_KEYS
from pipeline.simulator.markup import find_pause_markers
from pipeline.simulator.voice import (
    LAME_MIN_TAIL_CUT_SAMPLES,
    LAME_TAIL_CUT_SAMPLES,
    MP3_FRAME_SAMPLES,
    SAMPLE_RATE_HZ,
    TRAILING_SILENCE_S,
    SentenceTiming,
    Speech,
    encode_speech,
    frame_aligned_samples,
    plan_timeline,
)

CLIP_GAIN_DB = 12.0
CUT_RANGE = (0.4, 0.8)  # the cut falls this far through the speech: its last 20-60 % is lost
LOUD_WINDOW_S = 0.05  # ... and the audio before the cut is loud for this long
LOUD_FRAME_S = 0.005  # ... in every frame of this length
LOUD_FRACTION = 0.25  # ... "loud": a frame peak of at least this fraction of the clip's peak (-12 dB)
WORD_GAP_SEARCH_S = 0.03  # a silence between two words goes in the quietest point this close to the gap
_QUIET_WINDOW_SAMPLES = 64  # loudness of a point: mean magnitude over this many samples around it


@dataclass(frozen=True, slots=True)
class DefectPlan:
    """The defects decided for one audio task at its creation; None (or 0): that defect does not apply.

    ``drop_sentence`` is the index of the sentence dropped (in the text's sentences, as the subtitles
    number them) and ``drop_span`` its text range; the silence follows the sentence (``silence_boundary``
    ``"sentence"``) or word (``"word"``) that ends at text offset ``silence_after``; ``cut_at`` places the
    cut from the start (0) to the end (1) of the range it may fall in; ``clip_gain_db`` is the gain.
    """

    drop_sentence: int | None = None
    drop_span: tuple[int, int] | None = None
    silence_after: int | None = None
    silence_boundary: str = ""
    silence_s: float = 0.0
    cut_at: float | None = None
    clip_gain_db: float | None = None

    @property
    def faults(self) -> tuple[str, ...]:
        """The fault keys that apply, in the order they are applied."""
        applies = {
            "drop_sentence": self.drop_sentence is not None,
            "long_silence": self.silence_after is not None,
            "cut_short": self.cut_at is not None,
            "clip": self.clip_gain_db is not None,
        }
        return tuple(key for key in DEFECT_FAULT_KEYS if applies[key])


def plan_defects(
    text: str,
    *,
    drop_sentence: float | None = None,
    long_silence: float | None = None,
    long_silence_s: float = 3.0,
    cut_short: float | None = None,
    clip: bool = False,
) -> DefectPlan:
    """Plan the defects that hit an audio task of ``text``.

    Each of ``drop_sentence``, ``long_silence`` and ``cut_short`` is None when that fault did not hit,
    else a number in [0, 1) drawn for it, which picks the sentence, the boundary or the cut point. A
    defect that cannot apply to ``text`` is left out: ``drop_sentence`` on a single sentence,
    ``long_silence`` with no boundary free of pause markers, and every defect on a text without words.
    """
    sentences, _ = plan_timeline(text, speed=1.0)  # offsets only; the timings are the renderer's business
    if not sentences:
        return DefectPlan()
    plan = DefectPlan(cut_at=cut_short, clip_gain_db=CLIP_GAIN_DB if clip else None)
    drop = None
    if drop_sentence is not None and len(sentences) > 1:
        drop = int(drop_sentence * len(sentences))
        chosen = sentences[drop]
        plan = dataclasses.replace(plan, drop_sentence=drop, drop_span=(chosen.start, chosen.end))
    if long_silence is not None:
        remaining = [s for index, s in enumerate(sentences) if index != drop]
        spots, boundary = _silence_spots(text, remaining)
        if spots:
            after = spots[int(long_silence * len(spots))]
            plan = dataclasses.replace(plan, silence_after=after, silence_boundary=boundary, silence_s=long_silence_s)
    return plan


def _silence_spots(text: str, sentences: list[SentenceTiming]) -> tuple[list[int], str]:
    """Where a silence may go: the text offsets where a sentence (or, with one sentence, a word) ends
    that is followed by another with no pause marker between them."""
    markers = find_pause_markers(text)

    def clear(start: int, end: int) -> bool:
        return not any(start <= marker.start < end for marker in markers)

    if len(sentences) > 1:
        return [a.end for a, b in itertools.pairwise(sentences) if clear(a.end, b.start)], "sentence"
    words = sentences[0].words
    return [w.end for w, v in itertools.pairwise(words) if clear(w.end, v.start)], "word"


def apply_defects(
    samples: np.ndarray, sentences: list[SentenceTiming], text: str, plan: DefectPlan
) -> tuple[Speech, dict[str, dict[str, Any]]]:
    """Apply ``plan`` to a rendered timeline of ``text`` (see :func:`~pipeline.simulator.voice.render`)
    and encode it.

    Returns the clip (its MP3, duration and the sentence timings its subtitles use) and, per defect key
    in the order applied, what was done (positions in seconds of the delivered audio):

    * ``drop_sentence``: ``sentence_index``, ``text``, ``text_begin``, ``text_end`` (the dropped sentence
      as the subtitle file would have shown it), ``at_s`` (where the audio around it now joins),
      ``removed_s`` (audio removed; every later cue moved earlier by this);
    * ``long_silence``: ``at_s`` (where the silence starts), ``duration_s``, ``boundary`` (``"sentence"``
      or ``"word"``), ``text_offset`` (where the sentence or word it follows ends in the text);
    * ``cut_short``: ``at_s`` (where the audio stops), ``cues_end_s`` (where the subtitles say the
      speech ends);
    * ``clip``: ``gain_db``, ``clipped_samples`` (samples at full scale).
    """
    audio = np.array(samples, dtype=np.float32)  # a copy: the caller's timeline stays as rendered
    timeline = [SentenceTiming(s.start, s.end, list(s.words)) for s in sentences]
    details: dict[str, dict[str, Any]] = {}
    positions: dict[str, int] = {}  # each defect's position in samples, moved along by later edits

    if plan.drop_sentence is not None and plan.drop_span is not None:
        index = next((k for k, s in enumerate(timeline) if (s.start, s.end) == plan.drop_span), None)
        if index is not None and len(timeline) > 1:
            audio, removed = _drop_sentence(audio, timeline, index)
            positions["drop_sentence"] = removed[0]
            details["drop_sentence"] = {
                "sentence_index": plan.drop_sentence,
                "text": text[plan.drop_span[0] : plan.drop_span[1]],
                "text_begin": plan.drop_span[0],
                "text_end": plan.drop_span[1],
                "at_s": 0.0,  # filled in at the end
                "removed_s": _seconds(removed[1] - removed[0]),
            }

    silence_end = None
    if plan.silence_after is not None:
        inserted = _insert_silence(audio, timeline, plan)
        if inserted is not None:
            audio, at, length = inserted
            for name, position in positions.items():
                if position >= at:
                    positions[name] = position + length
            positions["long_silence"] = at
            silence_end = at + length
            details["long_silence"] = {
                "at_s": 0.0,
                "duration_s": _seconds(length),
                "boundary": plan.silence_boundary,
                "text_offset": plan.silence_after,
            }

    tail_cut = LAME_TAIL_CUT_SAMPLES
    if plan.cut_at is not None and timeline:
        cut = _cut_point(audio, timeline, plan.cut_at, not_before=silence_end)
        audio = np.concatenate([audio[:cut], np.zeros(LAME_MIN_TAIL_CUT_SAMPLES, dtype=np.float32)])
        tail_cut = LAME_MIN_TAIL_CUT_SAMPLES
        positions["cut_short"] = cut
        details["cut_short"] = {"at_s": 0.0, "cues_end_s": round(timeline[-1].end_s, 6)}
    elif timeline:
        total = frame_aligned_samples(timeline[-1].end_s + TRAILING_SILENCE_S)
        audio = audio[:total] if len(audio) >= total else np.pad(audio, (0, total - len(audio)))

    if plan.clip_gain_db is not None:
        audio = np.clip(audio * np.float32(10 ** (plan.clip_gain_db / 20)), -1.0, 1.0).astype(np.float32)
        details["clip"] = {
            "gain_db": plan.clip_gain_db,
            "clipped_samples": int(np.count_nonzero(np.abs(audio) >= 1.0)),
        }

    for name, position in positions.items():
        details[name]["at_s"] = _seconds(position)
    return encode_speech(audio, timeline, tail_cut_samples=tail_cut), details


def _seconds(samples: int) -> float:
    return round(samples / SAMPLE_RATE_HZ, 6)


def _sample(seconds: float) -> int:
    return round(seconds * SAMPLE_RATE_HZ)


def _shift(sentence: SentenceTiming, samples: int, *, from_word: int = 0) -> None:
    """Move ``sentence``'s words from ``from_word`` on by ``samples`` (negative: earlier)."""
    delta_s = samples / SAMPLE_RATE_HZ
    sentence.words[from_word:] = [
        dataclasses.replace(w, begin_s=w.begin_s + delta_s, end_s=w.end_s + delta_s)
        for w in sentence.words[from_word:]
    ]


def _drop_sentence(
    audio: np.ndarray, timeline: list[SentenceTiming], index: int
) -> tuple[np.ndarray, tuple[int, int]]:
    """Remove sentence ``index`` (and the gap before it; for the first, the gap after it) from the audio
    and the timeline; later sentences move earlier. Returns the audio and the range removed."""
    dropped = timeline[index]
    if index == 0:
        start, end = _sample(dropped.begin_s), _sample(timeline[1].begin_s)
    else:
        start, end = _sample(timeline[index - 1].end_s), _sample(dropped.end_s)
    del timeline[index]
    for sentence in timeline[index:]:
        _shift(sentence, start - end)
    return np.concatenate([audio[:start], audio[end:]]), (start, end)


def _insert_silence(
    audio: np.ndarray, timeline: list[SentenceTiming], plan: DefectPlan
) -> tuple[np.ndarray, int, int] | None:
    """Insert the planned silence; returns the audio, where the silence starts and its length (samples),
    or None when the planned boundary is not in the timeline."""
    gap = _silence_gap(timeline, plan)
    if gap is None:
        return None
    low, high, (first_sentence, first_word) = gap
    at = _quietest_point(audio, low, high)
    length = _sample(plan.silence_s)
    _shift(timeline[first_sentence], length, from_word=first_word)
    for sentence in timeline[first_sentence + 1 :]:
        _shift(sentence, length)
    silence = np.zeros(length, dtype=np.float32)
    return np.concatenate([audio[:at], silence, audio[at:]]), at, length


def _silence_gap(timeline: list[SentenceTiming], plan: DefectPlan) -> tuple[int, int, tuple[int, int]] | None:
    """The samples the planned silence may go between, and the first (sentence, word) after it."""
    for index, sentence in enumerate(timeline):
        if plan.silence_boundary == "sentence":
            if sentence.end == plan.silence_after and index + 1 < len(timeline):
                return _sample(sentence.end_s), _sample(timeline[index + 1].begin_s), (index + 1, 0)
            continue
        for word, (before, after) in enumerate(itertools.pairwise(sentence.words)):
            if before.end == plan.silence_after:
                # espeak's word times are spread over a segment: look a little either side for the pause
                search = _sample(WORD_GAP_SEARCH_S)
                low = max(_sample(before.end_s) - search, _sample(before.begin_s))
                high = min(_sample(after.begin_s) + search, _sample(after.end_s))
                return low, high, (index, word + 1)
    return None


def _quietest_point(audio: np.ndarray, low: int, high: int) -> int:
    """The sample in ``[low, high]`` where the audio is quietest (mean magnitude over a few ms), the one
    nearest the middle among equals: the middle of a silent gap."""
    low, high = max(low, 0), min(max(high, low), len(audio))
    target = (low + high) // 2
    half = _QUIET_WINDOW_SAMPLES // 2
    start, stop = max(low - half, 0), min(high + half, len(audio))
    sums = np.concatenate([[0.0], np.cumsum(np.abs(audio[start:stop]), dtype=np.float64)])
    points = np.arange(low, high + 1)
    left = np.clip(points - half - start, 0, stop - start)
    right = np.clip(points + half - start, 0, stop - start)
    loudness = (sums[right] - sums[left]) / np.maximum(right - left, 1)
    quiet = points[loudness <= loudness.min() + 1e-9]
    return int(quiet[np.argmin(np.abs(quiet - target))])


def _cut_point(audio: np.ndarray, timeline: list[SentenceTiming], cut_at: float, *, not_before: int | None) -> int:
    """Where ``cut_short`` ends the audio: a point ``LAME_MIN_TAIL_CUT_SAMPLES`` before a frame boundary
    (so the clip ends in sound), 40-80 % of the way through the speech and after ``not_before``, nearest
    the drawn target among the points whose last 50 ms are loud (the loudest such point if none is)."""
    begin, end = _sample(timeline[0].begin_s), _sample(timeline[-1].end_s)
    low, high = begin + CUT_RANGE[0] * (end - begin), begin + CUT_RANGE[1] * (end - begin)
    window, frame = _sample(LOUD_WINDOW_S), _sample(LOUD_FRAME_S)
    if not_before is not None:
        low = max(low, not_before + window)
        if low > high:  # the silence sits late in the speech: cut anywhere in the speech after it
            high = max(low, end)
    target = low + cut_at * (high - low)
    first = max(int(np.ceil((max(low, window) + LAME_MIN_TAIL_CUT_SAMPLES) / MP3_FRAME_SAMPLES)), 1)
    last = int(np.floor((high + LAME_MIN_TAIL_CUT_SAMPLES) / MP3_FRAME_SAMPLES))
    candidates = [k * MP3_FRAME_SAMPLES - LAME_MIN_TAIL_CUT_SAMPLES for k in range(first, last + 1)]
    if not candidates:  # a range narrower than one frame: the frame-aligned point nearest the target
        nearest = max(round((target + LAME_MIN_TAIL_CUT_SAMPLES) / MP3_FRAME_SAMPLES), 1)
        candidates = [nearest * MP3_FRAME_SAMPLES - LAME_MIN_TAIL_CUT_SAMPLES]
    candidates.sort(key=lambda c: (abs(c - target), c))
    peak = float(np.abs(audio).max()) or 1.0

    def loudness(cut: int) -> float:
        """The quietest 5 ms frame's peak in the 50 ms before ``cut``, relative to the clip's peak."""
        before = audio[max(cut - window, 0) : cut]
        usable = len(before) // frame * frame
        if usable == 0:
            return 0.0
        return float(np.abs(before[len(before) - usable :]).reshape(-1, frame).max(axis=1).min()) / peak

    for cut in candidates:
        if loudness(cut) >= LOUD_FRACTION:
            return cut
    return max(candidates, key=loudness)
