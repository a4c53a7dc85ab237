"""QC: check every downloaded take for the silent defects of paid TTS, locally and for free.

The API can mark a task completed whose audio skips a sentence, stops early, holds a long glitch of
silence or clips. Nothing here calls the API: a take is judged from its decoded audio (the decode
that verifies every download anyway, :func:`measure_file`) and the subtitle timings the API returned
with it. Two steps:

1. **Measure** (once per take, stored in the journal as :class:`TakeMeasures`): from the audio, its
   length, where speech starts and ends, the silences in it, the level of its speech and the samples
   at full scale; from the cues, where they end and which of the chunk's words they do not cover.
2. **Judge** (:func:`judge_book`, cheap, whenever a verdict is needed): each measure against the
   ``qc:`` limits of the manifest and, for ``rate`` and ``level``, against the book's and chapter's
   medians. A take's verdict is ``pass``, ``warn`` or ``fail``.

The checks (measured value, limit, and what a failure means):

``truncated`` (fail)  the audio ends before its last cue ends (by more than ``CUE_OVERRUN_S``), or ends
                      inside speech (less than ``MIN_TAIL_SILENCE_S`` of silence after the last sound),
                      or lasts under ``MIN_EXPECTED_SHARE`` of what the text should take at its speed.
``uncovered`` (fail)  a run of more than ``qc.max_uncovered_words`` of the chunk's words (characters
                      for CJK) is missing from the cues' text, compared after case, punctuation and
                      markers are set aside. Not checked without subtitles.
``silence`` (warn)    an internal silence longer than ``qc.max_silence_s`` that no pause marker (its
                      seconds plus the limit) or paragraph break (``PARAGRAPH_ALLOWANCE_S`` more)
                      explains; a fail from ``FAR_OUT`` times the limit.
``clipping`` (fail)   more than ``qc.max_clipped_samples`` samples at or above ``CLIP_LEVEL`` of full scale
                      (clean speech rarely has any: its peaks are sparse).
``rate`` (warn)       characters per second of speech more than ``qc.rate_tolerance`` from the book's
                      median for the same language and speed; a fail from ``FAR_OUT`` times the
                      tolerance. Only chunks of ``RATE_MIN_CHARS`` and ``RATE_MIN_SPEECH_S``.
``level`` (warn)      the speech level more than ``qc.level_tolerance_db`` from the chapter's median;
                      a fail from ``FAR_OUT`` times the tolerance.

Speech and silence are told apart per 20 ms frame, relative to the take itself: a frame is silent
when it is ``SILENCE_BELOW_SPEECH_DB`` under the take's loud frames (their 95th percentile) or near
its noise floor, so a quiet voice or a hissy file is judged on its own terms.
"""

from __future__ import annotations

import difflib
import math
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.audio import dsp
from pipeline.chunking import estimate_seconds
from pipeline.lexicon.entries import Spoken
from pipeline.models import ChapterPlan, Chunk, QcSettings
from pipeline.subtitles import SentenceTiming
from pipeline.text import MARKER_RE, comparable_tokens, marker_seconds

MEASURES_VERSION = 1
PASS, WARN, FAIL = "pass", "warn", "fail"
CHECKS = ("truncated", "uncovered", "silence", "clipping", "rate", "level")

FRAME_S = 0.02
MEASURE_RATE_HZ = 44_100
SPEECH_PERCENTILE = 95.0          # "the take's loud frames"
FLOOR_PERCENTILE = 5.0            # "its noise floor"
SILENCE_BELOW_SPEECH_DB = 35.0
SILENCE_ABOVE_FLOOR_DB = 6.0
SILENCE_CAP_DB = 20.0
SILENCE_MIN_DB = -70.0            # a frame quieter than this is silent whatever the take's levels
KEEP_SILENCE_S = 0.4              # silences at least this long are kept in the measures
CLIP_LEVEL = 0.95                 # a sample at or above this share of full scale (-0.45 dBFS) counts as clipped:
                                  # an MP3 of clipped audio rings just under full scale, it does not sit on it
CUE_OVERRUN_S = 0.25
MIN_TAIL_SILENCE_S = 0.06
MIN_EXPECTED_SHARE = 0.5
PARAGRAPH_ALLOWANCE_S = 1.0
FAR_OUT = 3.0                     # a warn check fails from this many times its limit (silence) ...
FAR_OUT_RELATIVE = 2.0            # ... or its tolerance (rate, level)
RATE_MIN_CHARS = 40
RATE_MIN_SPEECH_S = 3.0

_PARAGRAPH_RE = re.compile(r"\n[ \t]*\n")


# --------------------------------------------------------------------------------------------------
# Measuring


@dataclass(frozen=True)
class AudioMeasures:
    """What the decoded audio of a take says (seconds from the take's start)."""

    duration_s: float
    speech_start_s: float
    speech_end_s: float
    speech_s: float                 # frames of speech, in seconds
    speech_rms_db: float            # the level of the speech frames (dBFS)
    clipped_samples: int
    silences: tuple[tuple[float, float], ...] = ()  # internal silences of KEEP_SILENCE_S or more

    @property
    def tail_silence_s(self) -> float:
        return self.duration_s - self.speech_end_s


@dataclass(frozen=True)
class CueMeasures:
    """What the take's subtitle cues say, against the chunk's text."""

    cues_end_s: float
    words: int                       # words (CJK: characters) of the chunk's text
    uncovered_words: int             # of them, not in the cues' text
    longest_gap_words: int           # the longest run of them
    gap_text: str = ""               # that run, as the chunk has it (shortened)
    gap_at_s: float | None = None    # where in the take it would be (the end of the cue before it)


@dataclass(frozen=True)
class TakeMeasures:
    audio: AudioMeasures
    cues: CueMeasures | None         # None: the take has no subtitles

    def to_json(self) -> dict[str, Any]:
        return {"version": MEASURES_VERSION, "audio": asdict(self.audio),
                "cues": None if self.cues is None else asdict(self.cues)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TakeMeasures | None:
        """The measures stored by :meth:`to_json`; None when they are of another version (measure again)."""
        if data.get("version") != MEASURES_VERSION:
            return None
        audio = dict(data["audio"])
        audio["silences"] = tuple((float(a), float(b)) for a, b in audio.get("silences", ()))
        cues = data.get("cues")
        return cls(AudioMeasures(**audio), None if cues is None else CueMeasures(**cues))


class AudioMeter:
    """Measures int16 blocks as they stream past (one float per 20 ms frame is kept)."""

    def __init__(self, sample_rate_hz: int) -> None:
        self.sample_rate_hz = sample_rate_hz
        self._frame = max(1, round(sample_rate_hz * FRAME_S))
        self._energies: list[np.ndarray] = []
        self._carry = np.zeros(0, dtype=np.float64)
        self._samples = 0
        self._clipped = 0
        self._clip = int(CLIP_LEVEL * dsp.INT16_FULL_SCALE)

    def feed(self, block: np.ndarray) -> None:
        self._samples += len(block)
        self._clipped += int(np.count_nonzero((block >= self._clip) | (block <= -self._clip)))
        pending = np.concatenate([self._carry, block.astype(np.float64)]) if len(self._carry) else \
            block.astype(np.float64)
        whole = len(pending) - len(pending) % self._frame
        if whole:
            frames = pending[:whole].reshape(-1, self._frame)
            self._energies.append(np.einsum("ij,ij->i", frames, frames) / self._frame)
        self._carry = pending[whole:]

    @property
    def duration_s(self) -> float:
        return self._samples / self.sample_rate_hz

    def result(self) -> AudioMeasures:
        energies = list(self._energies)
        if len(self._carry):
            energies.append(np.array([float(np.mean(self._carry * self._carry))]))
        duration = self.duration_s
        if not energies:
            return AudioMeasures(duration, 0.0, 0.0, 0.0, dsp.SILENCE_DB, self._clipped)
        mean_sq = np.concatenate(energies)
        floor_sq = 10 ** (dsp.SILENCE_DB / 10) * dsp.INT16_FULL_SCALE ** 2
        level = 10 * np.log10(np.maximum(mean_sq, floor_sq) / dsp.INT16_FULL_SCALE ** 2)
        loud = float(np.percentile(level, SPEECH_PERCENTILE))
        floor = float(np.percentile(level, FLOOR_PERCENTILE))
        # under the loud frames, above the floor (hiss is not speech), never within 20 dB of the speech
        threshold = max(SILENCE_MIN_DB, loud - SILENCE_BELOW_SPEECH_DB,
                        min(floor + SILENCE_ABOVE_FLOOR_DB, loud - SILENCE_CAP_DB))
        speech = level > threshold
        frame_s = self._frame / self.sample_rate_hz
        if not speech.any():
            return AudioMeasures(duration, 0.0, 0.0, 0.0, dsp.SILENCE_DB, self._clipped)
        first = int(np.argmax(speech))
        last = len(speech) - int(np.argmax(speech[::-1]))  # one past the last speech frame
        speech_sq = float(np.mean(mean_sq[speech]))
        silences = []
        inner = speech[first:last]
        # runs of silent frames inside the speech
        edges = np.flatnonzero(np.diff(np.concatenate([[1], inner.astype(np.int8), [1]])))
        for start, stop in zip(edges[::2], edges[1::2], strict=True):
            if (stop - start) * frame_s >= KEEP_SILENCE_S:
                silences.append((round((first + start) * frame_s, 3), round((first + stop) * frame_s, 3)))
        return AudioMeasures(
            duration_s=round(duration, 4), speech_start_s=round(first * frame_s, 3),
            speech_end_s=round(min(duration, last * frame_s), 3),
            speech_s=round(int(np.count_nonzero(speech)) * frame_s, 3),
            speech_rms_db=round(dsp.to_db(math.sqrt(speech_sq) / dsp.INT16_FULL_SCALE), 2),
            clipped_samples=self._clipped, silences=tuple(silences))


def measure_file(path: Path, *, label: str | None = None) -> AudioMeasures:
    """Decode a take (streamed, at 44.1 kHz) and measure it; raises :class:`AssemblyError` when it does
    not decode (the engine's check of every download)."""
    from pipeline.audio import ffmpeg

    meter = AudioMeter(MEASURE_RATE_HZ)
    with ffmpeg.stream_pcm(Path(path), sample_rate_hz=meter.sample_rate_hz, label=label) as blocks:
        for block in blocks:
            meter.feed(block)
    return meter.result()


def measure_cues(chunk_text: str, timings: Sequence[SentenceTiming], spoken: Spoken | None = None) -> CueMeasures:
    """Which of the words sent (``chunk_text``) the cues' text covers, in order, and where the cues end;
    a run of missing words is quoted as the book has it (``spoken``: the lexicon's respellings)."""
    wanted = comparable_tokens(chunk_text)
    said: list[str] = []
    said_at: list[float] = []  # end time of the cue each said word is in
    for timing in timings:
        text = timing.text
        if not text.strip() and timing.text_begin is not None and timing.text_end is not None:
            text = chunk_text[timing.text_begin:timing.text_end]
        for word, _, _ in comparable_tokens(text):
            said.append(word)
            said_at.append(timing.end_ms / 1000.0)
    cues_end = max((t.end_ms for t in timings), default=0.0) / 1000.0
    matcher = difflib.SequenceMatcher(None, [w for w, _, _ in wanted], said, autojunk=False)
    covered = np.zeros(len(wanted), dtype=bool)
    for block in matcher.get_matching_blocks():
        covered[block.a:block.a + block.size] = True
    missing = int(np.count_nonzero(~covered))
    longest, gap_start = 0, 0
    run_start = None
    for i, ok in enumerate([*covered.tolist(), True]):
        if not ok and run_start is None:
            run_start = i
        elif ok and run_start is not None:
            if i - run_start > longest:
                longest, gap_start = i - run_start, run_start
            run_start = None
    gap_text, gap_at = "", None
    if longest:
        first, last = wanted[gap_start], wanted[gap_start + longest - 1]
        span = (first[1], last[2]) if spoken is None else spoken.to_display(first[1], last[2])
        gap_text = _shorten(MARKER_RE.sub(" ", (chunk_text if spoken is None else spoken.display_text)[slice(*span)]))
        # the said word matched just before the gap: the gap would follow its cue
        before = [b for b in matcher.get_matching_blocks() if b.size and b.a + b.size <= gap_start]
        gap_at = said_at[before[-1].b + before[-1].size - 1] if before else 0.0
    return CueMeasures(cues_end_s=round(cues_end, 3), words=len(wanted), uncovered_words=missing,
                       longest_gap_words=longest, gap_text=gap_text, gap_at_s=gap_at)


def _shorten(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def measure_take(audio: AudioMeasures, chunk_text: str, timings: Sequence[SentenceTiming] | None,
                 spoken: Spoken | None = None) -> TakeMeasures:
    return TakeMeasures(audio, None if timings is None else measure_cues(chunk_text, timings, spoken))


# --------------------------------------------------------------------------------------------------
# Judging


@dataclass(frozen=True)
class Check:
    name: str
    measured: float | None
    limit: float | None
    passed: bool
    severity: str            # what it means when it does not pass: fail or warn
    detail: str
    at_s: float | None = None    # seconds into the take
    until_s: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None or k in ("measured", "limit")}


@dataclass(frozen=True)
class Verdict:
    verdict: str
    checks: tuple[Check, ...] = ()

    @property
    def failed(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if not c.passed)

    @property
    def failures(self) -> int:
        return sum(1 for c in self.checks if not c.passed and c.severity == FAIL)

    def check(self, name: str) -> Check | None:
        return next((c for c in self.checks if c.name == name), None)

    def to_json(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "checks": [c.to_json() for c in self.checks]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Verdict:
        return cls(str(data["verdict"]), tuple(Check(**c) for c in data.get("checks", ())))


@dataclass(frozen=True)
class Medians:
    """What ``rate`` and ``level`` compare with: chars/s per (language, speed), speech dB per chapter."""

    rate: Mapping[tuple[str, float], float] = field(default_factory=dict)
    level: Mapping[str, float] = field(default_factory=dict)


def _clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 60}:{whole % 60:02d}.{int((seconds - whole) * 10)}"


def rate_group(chunk: Chunk) -> tuple[str, float]:
    body = chunk.request.body
    return str(body.get("language") or "auto"), float(body.get("speed") or 1.0)


def speech_rate(measures: TakeMeasures, chunk: Chunk) -> float | None:
    """Characters per second of speech (marker pauses left out), or None for a chunk too short to tell."""
    audio = measures.audio
    span = audio.speech_end_s - audio.speech_start_s - marker_seconds(chunk.text)
    if chunk.billed_chars < RATE_MIN_CHARS or audio.speech_s < RATE_MIN_SPEECH_S or span <= 0:
        return None
    return chunk.billed_chars / span


def _truncated(m: TakeMeasures, chunk: Chunk) -> Check:
    audio = m.audio
    speed = float(chunk.request.body.get("speed") or 1.0)
    expected = estimate_seconds(chunk.text, speed=speed)
    if m.cues is not None and m.cues.cues_end_s - audio.duration_s > CUE_OVERRUN_S:
        over = m.cues.cues_end_s - audio.duration_s
        return Check("truncated", round(over, 3), CUE_OVERRUN_S, False, FAIL,
                     f"the audio ends at {_clock(audio.duration_s)} but its subtitles run to "
                     f"{_clock(m.cues.cues_end_s)} ({over:.1f} s more)", at_s=audio.duration_s)
    if audio.speech_s > 0 and audio.tail_silence_s < MIN_TAIL_SILENCE_S:
        return Check("truncated", round(audio.tail_silence_s, 3), MIN_TAIL_SILENCE_S, False, FAIL,
                     "the audio ends inside speech (no silence after the last sound): it was cut off",
                     at_s=audio.duration_s)
    share = audio.duration_s / expected if expected > 0 else 1.0
    if share < MIN_EXPECTED_SHARE:
        return Check("truncated", round(share, 3), MIN_EXPECTED_SHARE, False, FAIL,
                     f"the audio lasts {audio.duration_s:.1f} s, {share:.0%} of the about {expected:.0f} s its "
                     f"{chunk.billed_chars} characters take", at_s=audio.duration_s)
    overrun = 0.0 if m.cues is None else round(max(0.0, m.cues.cues_end_s - audio.duration_s), 3)
    return Check("truncated", overrun, CUE_OVERRUN_S, True, FAIL,
                 f"ends {audio.tail_silence_s:.2f} s after the last sound, at {share:.0%} of the expected length")


def _uncovered(m: TakeMeasures, settings: QcSettings) -> Check:
    limit = settings.max_uncovered_words
    if m.cues is None:
        return Check("uncovered", None, limit, True, FAIL, "not checked: the take has no subtitle timings")
    cues = m.cues
    if cues.longest_gap_words > limit:
        return Check("uncovered", cues.longest_gap_words, limit, False, FAIL,
                     f"{cues.longest_gap_words} words in a row are missing from the timings "
                     f"({cues.uncovered_words} of {cues.words} in all): \u201c{cues.gap_text}\u201d",
                     at_s=cues.gap_at_s)
    return Check("uncovered", cues.longest_gap_words, limit, True, FAIL,
                 f"{cues.words - cues.uncovered_words} of {cues.words} words timed")


def _silence(m: TakeMeasures, chunk: Chunk, settings: QcSettings) -> Check:
    limit = settings.max_silence_s
    markers = sorted(float(x.group(1)) for x in MARKER_RE.finditer(chunk.text))
    paragraphs = len(_PARAGRAPH_RE.findall(chunk.text))
    worst: tuple[float, float] | None = None
    for start, end in sorted(m.audio.silences, key=lambda s: s[0] - s[1]):  # longest first
        length = end - start
        if length <= limit:
            continue
        fits = [x for x in markers if x + limit >= length]
        if fits:
            markers.remove(fits[0])
            continue
        if paragraphs and length <= limit + PARAGRAPH_ALLOWANCE_S:
            paragraphs -= 1
            continue
        if worst is None or length > worst[1] - worst[0]:
            worst = (start, end)
    longest = max((e - s for s, e in m.audio.silences), default=0.0)
    if worst is None:
        return Check("silence", round(longest, 3), limit, True, WARN,
                     f"longest pause {longest:.1f} s" + (" (explained by the text)" if longest > limit else ""))
    length = worst[1] - worst[0]
    severity = FAIL if length >= FAR_OUT * limit else WARN
    return Check("silence", round(length, 3), limit, False, severity,
                 f"{length:.1f} s of silence at {_clock(worst[0])} that no pause marker or paragraph explains",
                 at_s=worst[0], until_s=worst[1])


def _clipping(m: TakeMeasures, settings: QcSettings) -> Check:
    count, limit = m.audio.clipped_samples, settings.max_clipped_samples
    detail = f"{count} samples at or near full scale" + (" (it clips: distorted)" if count > limit else "")
    return Check("clipping", count, limit, count <= limit, FAIL, detail)


def _relative(name: str, measured: float | None, tolerance: float, detail: str) -> Check:
    if measured is None:
        return Check(name, None, tolerance, True, WARN, detail)
    off = abs(measured)
    passed = off <= tolerance
    severity = FAIL if off > FAR_OUT_RELATIVE * tolerance else WARN
    return Check(name, round(measured, 3), tolerance, passed, severity, detail)


def _rate(m: TakeMeasures, chunk: Chunk, settings: QcSettings, medians: Medians) -> Check:
    rate = speech_rate(m, chunk)
    median = medians.rate.get(rate_group(chunk))
    if rate is None or not median:
        return _relative("rate", None, settings.rate_tolerance, "not checked: too short to tell")
    off = rate / median - 1
    return _relative("rate", off, settings.rate_tolerance,
                     f"{rate:.1f} characters/s against the book's median {median:.1f} ({off:+.0%})")


def _level(m: TakeMeasures, chunk: Chunk, settings: QcSettings, medians: Medians) -> Check:
    median = medians.level.get(chunk.chapter_id)
    if median is None or m.audio.speech_s <= 0:
        return _relative("level", None, settings.level_tolerance_db, "not checked: no speech to measure")
    off = m.audio.speech_rms_db - median
    return _relative("level", off, settings.level_tolerance_db,
                     f"speech at {m.audio.speech_rms_db:.1f} dBFS against the chapter's median {median:.1f} "
                     f"({off:+.1f} dB)")


def evaluate(measures: TakeMeasures, chunk: Chunk, settings: QcSettings, medians: Medians) -> Verdict:
    """The verdict of one take of ``chunk``."""
    checks = (_truncated(measures, chunk), _uncovered(measures, settings), _silence(measures, chunk, settings),
              _clipping(measures, settings), _rate(measures, chunk, settings, medians),
              _level(measures, chunk, settings, medians))
    failed = [c for c in checks if not c.passed]
    verdict = FAIL if any(c.severity == FAIL for c in failed) else WARN if failed else PASS
    return Verdict(verdict, checks)


def _sound(m: TakeMeasures, chunk: Chunk, settings: QcSettings) -> bool:
    """Whether a take passes the checks that need no median (a clipped or cut take would drag them)."""
    return all(c.passed for c in (_truncated(m, chunk), _uncovered(m, settings), _clipping(m, settings)))


def medians_of(chapters: Iterable[ChapterPlan], measures: Mapping[tuple[str, int], TakeMeasures],
               selected: Mapping[str, int], settings: QcSettings | None = None) -> Medians:
    """The book's median speech rate per (language, speed) and each chapter's median speech level,
    over the selected take of every chunk that has been measured and is sound (passes ``truncated``,
    ``uncovered`` and ``clipping``), so defective takes do not move the medians."""
    settings = settings or QcSettings()
    rates: dict[tuple[str, float], list[float]] = {}
    levels: dict[str, list[float]] = {}
    for plan in chapters:
        for chunk in plan.chunks:
            m = measures.get((chunk.key, selected.get(chunk.key, 1)))
            if m is None or not _sound(m, chunk, settings):
                continue
            rate = speech_rate(m, chunk)
            if rate is not None:
                rates.setdefault(rate_group(chunk), []).append(rate)
            if m.audio.speech_s > 0:
                levels.setdefault(chunk.chapter_id, []).append(m.audio.speech_rms_db)
    return Medians(rate={k: statistics.median(v) for k, v in rates.items()},
                   level={k: statistics.median(v) for k, v in levels.items()})


def judge_book(chapters: Sequence[ChapterPlan], measures: Mapping[tuple[str, int], TakeMeasures],
               selected: Mapping[str, int], settings: QcSettings,
               medians: Medians | None = None) -> dict[tuple[str, int], Verdict]:
    """The verdict of every measured take of the chunks of ``chapters``, keyed by (chunk key, take)."""
    medians = medians or medians_of(chapters, measures, selected, settings)
    takes: dict[str, list[int]] = {}
    for key, take in measures:
        takes.setdefault(key, []).append(take)
    out: dict[tuple[str, int], Verdict] = {}
    for plan in chapters:
        for chunk in plan.chunks:
            for take in takes.get(chunk.key, ()):
                out.setdefault((chunk.key, take), evaluate(measures[(chunk.key, take)], chunk, settings, medians))
    return out


def best_take(verdicts: Mapping[int, Verdict]) -> int:
    """The take to keep among ``{take: verdict}``: fewest failed fail-checks, then the rate closest to
    the median, then the latest."""
    def rank(take: int) -> tuple[int, float, int]:
        verdict = verdicts[take]
        rate = verdict.check("rate")
        off = abs(rate.measured) if rate is not None and rate.measured is not None else 0.0
        return verdict.failures, off, -take

    return min(verdicts, key=rank)
