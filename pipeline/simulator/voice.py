"""The simulator's voice: audio (MP3, 32 kHz mono) and subtitles that agree with it.

Two backends share one timeline model:

* ``synthetic`` (default, always available): a deterministic, voice-like numpy signal. Each word is a
  voiced burst of harmonic syllables (wavetable vowels, a pitch contour falling across the sentence, a
  consonant-like noise onset, raised-cosine envelope); silences between words, longer at clause and
  sentence breaks. Durations follow the text: about 14.5 characters per second for spaced scripts and
  4.5 per CJK/kana/hangul character, divided by ``speed``, plus exactly the ``<#x#>`` pauses, plus
  ``LEADING_SILENCE_S`` before the first word and ``TRAILING_SILENCE_S`` after the last. Silence is
  digital zero, so speech onsets are unambiguous.
* ``espeak``: real speech from espeak-ng, synthesised per spoken segment so sentence times are exact;
  word times are spread over each segment by character count. Two engines give it, with the same
  timing: the ``espeak-ng`` program when it is on PATH (backend ``espeak``), else libespeak-ng from the
  ``espeakng-loader`` wheel, called in process through ctypes (backend ``espeak-library``: one clip at
  a time, as the library is not thread-safe, each from a fresh load of it, so the same text gives the
  same bytes). Either way each segment is spoken at 22050 Hz, trimmed of its own leading and trailing
  silence and resampled to 32 kHz, and the subtitles are computed from the real segment lengths.

Takes: ``VoiceSettings.take`` is which rendering of the same request this is. Take 1 is the voice as
described above, byte for byte. Every later take is a small, deterministic variation seeded by its take
number alone (:func:`take_variation`): the voice 3-7 % higher or lower (the sign alternates from take to
take), its pace 3-6 % faster or slower, its comma and sentence pauses 10-25 % longer or shorter (``<#x#>``
pauses stay exact); espeak gets the same pace and pitch change through its rate and pitch (``-s`` and
``-p`` of the program, ``espeakRATE`` and ``espeakPITCH`` of the library). Subtitles are
computed from the same timeline, so every take's subtitles match its own audio.

Subtitles follow the MiniMax shape described in the reference: a JSON array of sentence entries
``{text, pronounce_text, time_begin, time_end, text_begin, text_end, timestamped_words}``; times in
milliseconds (fractional), offsets into the submitted text (markers counted, end exclusive); ``text`` is
the submitted slice (markers included) and ``pronounce_text`` the same with markers removed. A sentence's
times span its first word's onset to its last word's end.

MP3 alignment: LAME delays its output by 1105 samples (576 + 529) and pads the end, and lameenc writes
no gapless (LAME/Xing) header, so decoders keep that delay. We drop the first 1105 samples (always
leading silence) and the last 576 (always trailing silence) of a timeline whose length is a whole
number of 1152-sample frames: a decoder (ffmpeg) then returns exactly the timeline, sample-aligned. A
clip that must end in sound (the ``cut_short`` fault) drops only the last 47 samples
(``LAME_MIN_TAIL_CUT_SAMPLES``), the most input that still fits the last frame: it then decodes to the
same length with sound up to about 1.5 ms before its end.

:func:`synthesize` renders and encodes in one go; :func:`render` gives the timeline as samples (for the
fault module to edit) and :func:`encode_speech` encodes such a timeline.
"""

from __future__ import annotations

import _ctypes
import ctypes
import functools
import io
import itertools
import math
import os
import shutil
import subprocess
import sys
import threading
import wave
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import lameenc
import numpy as np

from pipeline.simulator.faults import stable_bytes, stable_unit
from pipeline.simulator.markup import Token, TokenKind, strip_pause_markers, tokenize

SAMPLE_RATE_HZ = 32_000
MP3_BITRATE_KBPS = 128
MP3_FRAME_SAMPLES = 1152
LAME_DELAY_SAMPLES = 1105  # encoder delay (576) + decoder delay (529) for MPEG-1 Layer III
LAME_TAIL_CUT_SAMPLES = 576  # keeps the flushed padding frame from adding one frame to the decoded length
LAME_MIN_TAIL_CUT_SAMPLES = MP3_FRAME_SAMPLES - LAME_DELAY_SAMPLES  # 47: any less and LAME adds a frame
LEADING_SILENCE_S = 0.25
TRAILING_SILENCE_S = 0.4
LATIN_CHARS_PER_S = 14.5
SYLLABIC_CHARS_PER_S = 4.5
SYLLABIC_VOICED_FRACTION = 0.8  # the rest of a CJK character's slot is a short gap
COMMA_PAUSE_S = 0.15
STOP_PAUSE_S = 0.35
LATIN_CHARS_PER_SYLLABLE = 3.0
RENDER_BLOCK_SAMPLES = MP3_FRAME_SAMPLES * 512  # ~18 s per block bounds memory for 10,000-char texts
PARALLEL_MIN_SAMPLES = SAMPLE_RATE_HZ * 60  # clips shorter than this encode in one stream
ENCODE_WORKERS = max(1, min(4, os.cpu_count() or 1))
ATTACK_S = 0.012
RELEASE_S = 0.025
CONSONANT_S = 0.03
VOICE_GAIN = 0.3  # peak of a vol=1.0 voice, full scale = 1.0
ESPEAK_SAMPLE_RATE_HZ = 22_050
ESPEAK_WORDS_PER_MINUTE = 175
ESPEAK_PITCH_PER_SEMITONE = 3  # espeak-ng -p runs 0-99; 3 steps is roughly a semitone
TAKE_PITCH_CHANGE = (0.03, 0.07)  # a later take's voice is 3-7 % higher or lower (0.5-1.2 semitones)
TAKE_PACE_CHANGE = (0.03, 0.06)  # ... speaks 3-6 % faster or slower
TAKE_PAUSE_CHANGE = (0.10, 0.25)  # ... and makes its comma and sentence pauses 10-25 % longer or shorter

VOICES = ("synthetic", "espeak", "auto")  # what a configuration names
ESPEAK_PROGRAM_BACKEND = "espeak"  # the espeak-ng program on PATH
ESPEAK_LIBRARY_BACKEND = "espeak-library"  # libespeak-ng from the espeakng-loader wheel, through ctypes
BACKENDS = ("synthetic", ESPEAK_PROGRAM_BACKEND, ESPEAK_LIBRARY_BACKEND)  # what actually speaks
EMOTION_PITCH = {
    "neutral": (1.0, 1.0),
    "happy": (1.1, 1.5),
    "sad": (0.92, 0.6),
    "angry": (1.05, 1.3),
    "fearful": (1.15, 1.4),
    "disgusted": (0.95, 0.9),
    "surprised": (1.2, 1.8),
}  # emotion -> (pitch factor, contour depth factor)
ESPEAK_LANGUAGES = {
    "English": "en", "Chinese": "cmn", "Chinese,Yue": "yue", "Arabic": "ar", "Russian": "ru", "Spanish": "es",
    "French": "fr", "Portuguese": "pt", "German": "de", "Turkish": "tr", "Dutch": "nl", "Ukrainian": "uk",
    "Vietnamese": "vi", "Indonesian": "id", "Japanese": "ja", "Italian": "it", "Korean": "ko", "Thai": "th",
    "Polish": "pl", "Romanian": "ro", "Greek": "el", "Czech": "cs", "Finnish": "fi", "Hindi": "hi",
    "Bulgarian": "bg", "Danish": "da", "Hebrew": "he", "Malay": "ms", "Persian": "fa", "Slovak": "sk",
    "Swedish": "sv", "Croatian": "hr", "Filipino": "tl", "Hungarian": "hu", "Norwegian": "nb",
    "Slovenian": "sl", "Catalan": "ca", "Nynorsk": "nb", "Tamil": "ta", "Afrikaans": "af",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class VoiceSettings:
    """How to speak: the cloned voice and the audio task's options (defaults are the API's), and
    ``take``, which rendering of the same request this is (1: the first; see :func:`take_variation`)."""

    model_id: str
    speed: float = 1.0
    vol: float = 1.0
    pitch: int = 0
    emotion: str = "neutral"
    language: str = "auto"
    take: int = 1

    def __post_init__(self) -> None:
        if self.take < 1:
            raise ValueError(f"take must be 1 or more; got {self.take}")


@dataclass(frozen=True, slots=True)
class TakeVariation:
    """How a take differs from take 1: factors on the voice's pitch, its pace and its punctuation pauses."""

    pitch: float = 1.0
    pace: float = 1.0
    pauses: float = 1.0


def take_variation(take: int) -> TakeVariation:
    """The variation of take ``take``: none for take 1; for later takes, factors drawn from the take
    number alone (so take 2 of any text sounds the same way different). The pitch goes up on even takes
    and down on odd ones, so two consecutive takes differ by at least 6 % in pitch."""
    if take < 1:
        raise ValueError(f"take must be 1 or more; got {take}")
    if take == 1:
        return TakeVariation()

    def change(name: str, bounds: tuple[float, float]) -> float:
        low, high = bounds
        return low + (high - low) * stable_unit("take", name, take)

    pace_sign = 1.0 if stable_unit("take", "pace sign", take) < 0.5 else -1.0
    pause_sign = 1.0 if stable_unit("take", "pause sign", take) < 0.5 else -1.0
    return TakeVariation(
        pitch=1.0 + (1.0 if take % 2 == 0 else -1.0) * change("pitch", TAKE_PITCH_CHANGE),
        pace=1.0 + pace_sign * change("pace", TAKE_PACE_CHANGE),
        pauses=1.0 + pause_sign * change("pauses", TAKE_PAUSE_CHANGE),
    )


@dataclass(frozen=True, slots=True)
class WordTiming:
    """One subtitle word: ``text[start:end]`` spoken from ``begin_s`` to ``end_s``."""

    start: int
    end: int
    begin_s: float
    end_s: float
    syllables: int


@dataclass(slots=True)
class SentenceTiming:
    """One subtitle sentence: ``text[start:end]`` and its words in order."""

    start: int
    end: int
    words: list[WordTiming] = field(default_factory=list)

    @property
    def begin_s(self) -> float:
        return self.words[0].begin_s

    @property
    def end_s(self) -> float:
        return self.words[-1].end_s


@dataclass(frozen=True, slots=True)
class Speech:
    """A finished clip: MP3 bytes, its exact decoded duration and the sentence timings."""

    mp3: bytes
    duration_s: float
    sentences: list[SentenceTiming]


def espeak_available() -> bool:
    """Whether the ``espeak-ng`` program is on PATH (backend ``espeak``)."""
    return shutil.which("espeak-ng") is not None


def espeak_library_problem() -> str | None:
    """Why libespeak-ng from the ``espeakng-loader`` wheel cannot speak here, or None when it can.

    The first call finds the library and data, and loads, initialises, tries and unloads the library
    (once per process); later calls are free.
    """
    loaded = _espeak_library_or_problem()
    return loaded if isinstance(loaded, str) else None


def espeak_library_available() -> bool:
    """Whether libespeak-ng from the ``espeakng-loader`` wheel loads (backend ``espeak-library``)."""
    return espeak_library_problem() is None


def resolve_voice(voice: str) -> str:
    """Map a configured voice (``synthetic``, ``espeak``, ``auto``) to the backend that will run.

    ``espeak`` is real speech from either engine: the ``espeak-ng`` program when it is on PATH (backend
    ``espeak``), else libespeak-ng from the ``espeakng-loader`` wheel (backend ``espeak-library``).
    ``auto`` tries the same two in that order and falls back to ``synthetic``.

    Raises:
        ValueError: an unknown voice, or ``espeak`` when neither engine can run.
    """
    if voice not in VOICES:
        raise ValueError(f"voice must be one of {', '.join(VOICES)}; got {voice!r}")
    if voice == "synthetic":
        return voice
    if espeak_available():
        return ESPEAK_PROGRAM_BACKEND
    problem = espeak_library_problem()
    if problem is None:
        return ESPEAK_LIBRARY_BACKEND
    if voice == "auto":
        return "synthetic"
    raise ValueError(
        "voice 'espeak' needs the espeak-ng program on PATH (apt-get install espeak-ng) or the "
        f"espeakng-loader package (pip install espeakng-loader), and {problem}; or use 'auto'"
    )


def synthesize(text: str, settings: VoiceSettings, *, backend: str = "synthetic") -> Speech:
    """Speak ``text`` (valid markup assumed) and return MP3 bytes with matching sentence timings.

    Deterministic: the same text and settings give the same bytes. ``backend`` is one of ``BACKENDS``
    (see :func:`resolve_voice`). ``settings.take`` above 1 varies the voice slightly (see
    :func:`take_variation`).
    """
    variation = take_variation(settings.take)
    if backend in (ESPEAK_PROGRAM_BACKEND, ESPEAK_LIBRARY_BACKEND):
        return encode_speech(*_render_espeak(text, settings, variation, backend=backend))
    if backend != "synthetic":
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    sentences, total, syllables, starts = _plan_synthetic(text, settings, variation)

    def encode_chunk(bounds: tuple[int, int]) -> bytes:
        begin, end = bounds
        blocks = _render_range(syllables, starts, settings, begin=begin, end=end)
        return encode_mp3(blocks, total_samples=end - begin)

    chunks = _chunk_bounds(sentences, total, workers=ENCODE_WORKERS)
    if len(chunks) == 1:
        mp3 = encode_chunk(chunks[0])
    else:
        # lameenc releases the GIL; independent CBR streams cut in silence concatenate seamlessly
        with ThreadPoolExecutor(max_workers=len(chunks), thread_name_prefix="sim-encode") as pool:
            mp3 = b"".join(pool.map(encode_chunk, chunks))
    return Speech(mp3, total / SAMPLE_RATE_HZ, sentences)


def render(
    text: str, settings: VoiceSettings, *, backend: str = "synthetic"
) -> tuple[np.ndarray, list[SentenceTiming]]:
    """The timeline :func:`synthesize` would encode: float32 samples at ``SAMPLE_RATE_HZ`` (full scale 1.0,
    a whole number of MP3 frames, silent at both ends) and its sentence timings.

    ``encode_speech(*render(...))`` decodes to the same audio as :func:`synthesize` (the synthetic voice's
    long clips are encoded as one stream here, so the MP3 bytes may differ).
    """
    variation = take_variation(settings.take)
    if backend in (ESPEAK_PROGRAM_BACKEND, ESPEAK_LIBRARY_BACKEND):
        return _render_espeak(text, settings, variation, backend=backend)
    if backend != "synthetic":
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    sentences, total, syllables, starts = _plan_synthetic(text, settings, variation)
    blocks = list(_render_range(syllables, starts, settings, begin=0, end=total))
    return np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32), sentences


def encode_speech(
    samples: np.ndarray, sentences: list[SentenceTiming], *, tail_cut_samples: int = LAME_TAIL_CUT_SAMPLES
) -> Speech:
    """Encode a timeline (see :func:`render`) as a finished clip; see :func:`encode_mp3` for
    ``tail_cut_samples``."""
    if len(samples) % MP3_FRAME_SAMPLES:
        raise ValueError(f"a timeline must be whole MP3 frames of {MP3_FRAME_SAMPLES}; got {len(samples)} samples")
    mp3 = encode_mp3(iter([samples]), total_samples=len(samples), tail_cut_samples=tail_cut_samples)
    return Speech(mp3, len(samples) / SAMPLE_RATE_HZ, sentences)


def _plan_synthetic(
    text: str, settings: VoiceSettings, variation: TakeVariation
) -> tuple[list[SentenceTiming], int, list[_Syllable], np.ndarray]:
    """The synthetic voice's sentences, timeline length (samples), syllables and their start samples."""
    # factors of exactly 1.0 for take 1: the same floating-point results, so the same bytes as ever
    sentences, speech_end_s = plan_timeline(
        text, speed=settings.speed * variation.pace, pause_factor=variation.pauses
    )
    total = frame_aligned_samples(speech_end_s + TRAILING_SILENCE_S)
    syllables = _syllables(sentences, settings, text, pitch_factor=variation.pitch)
    starts = np.array([s.start for s in syllables], dtype=np.int64)
    return sentences, total, syllables, starts


def subtitle_entries(text: str, sentences: list[SentenceTiming], *, word_level: bool) -> list[dict[str, Any]]:
    """The subtitle file's JSON array for ``sentences`` of ``text`` (see the module docstring)."""
    entries = []
    for sentence in sentences:
        raw = text[sentence.start : sentence.end]
        words = None
        if word_level:
            words = [
                {
                    "word": text[w.start : w.end],
                    "word_begin": w.start,
                    "word_end": w.end,
                    "pronounce_word": text[w.start : w.end],
                    "time_begin": _ms(w.begin_s),
                    "time_end": _ms(w.end_s),
                }
                for w in sentence.words
            ]
        entries.append(
            {
                "text": raw,
                "pronounce_text": _strip_markers_in(text, sentence),
                "time_begin": _ms(sentence.begin_s),
                "time_end": _ms(sentence.end_s),
                "text_begin": sentence.start,
                "text_end": sentence.end,
                "timestamped_words": words,
            }
        )
    return entries


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


def _strip_markers_in(text: str, sentence: SentenceTiming) -> str:
    return " ".join(strip_pause_markers(text[sentence.start : sentence.end]).split())


# --- timeline -----------------------------------------------------------------------------------------


def plan_timeline(
    text: str, *, speed: float, pause_factor: float = 1.0
) -> tuple[list[SentenceTiming], float]:
    """Place every word of ``text`` on the synthetic voice's timeline.

    ``pause_factor`` stretches the comma and sentence pauses (not ``<#x#>`` pauses). Returns the sentences
    (each with at least one word) and the time the last word ends, in seconds.
    """
    latin_slot_s = 1.0 / (LATIN_CHARS_PER_S * speed)
    syllabic_slot_s = 1.0 / (SYLLABIC_CHARS_PER_S * speed)
    cursor = LEADING_SILENCE_S
    speech_end = cursor
    sentences = _group_sentences(tokenize(text), text)
    for sentence, tokens in sentences:
        for token in tokens:
            if token.kind is TokenKind.WORD:
                letters = sum(1 for c in text[token.start : token.end] if c.isalnum())
                duration = max(letters, 1) * latin_slot_s
                syllables = max(1, round(letters / LATIN_CHARS_PER_SYLLABLE))
                sentence.words.append(
                    WordTiming(token.start, token.end, cursor, cursor + duration, syllables)
                )
                cursor += duration
                speech_end = cursor
            elif token.kind is TokenKind.SYLLABLE_CHAR:
                voiced = syllabic_slot_s * SYLLABIC_VOICED_FRACTION
                sentence.words.append(WordTiming(token.start, token.end, cursor, cursor + voiced, 1))
                speech_end = cursor + voiced
                cursor += syllabic_slot_s
            else:
                cursor += _silence_s(token, latin_slot_s=latin_slot_s, speed=speed, pause_factor=pause_factor)
    return [s for s, _ in sentences], speech_end


def _silence_s(token: Token, *, latin_slot_s: float, speed: float, pause_factor: float) -> float:
    if token.kind is TokenKind.PAUSE:
        return token.seconds  # exactly what the marker asks for, never scaled by speed or take
    if token.kind is TokenKind.SPACE:
        return latin_slot_s
    if token.kind is TokenKind.COMMA:
        return COMMA_PAUSE_S / speed * pause_factor
    if token.kind is TokenKind.STOP:
        return STOP_PAUSE_S / speed * pause_factor
    return 0.0


def _group_sentences(tokens: list[Token], text: str) -> list[tuple[SentenceTiming, list[Token]]]:
    """Split tokens into sentences; every token lands in exactly one group so time adds up.

    A sentence ends after a run of stops (plus closing quotes/brackets right after it), at a line break,
    or at the end of the text. Its text range starts at its first visible token and ends after its last
    visible one, so surrounding spaces and between-sentence pause markers are outside it.
    """
    groups: list[tuple[SentenceTiming, list[Token]]] = []
    current: list[Token] = []
    pending: list[Token] = []  # silent tokens before the first sentence (e.g. a leading line break)

    def close() -> None:
        has_words = any(t.kind in (TokenKind.WORD, TokenKind.SYLLABLE_CHAR) for t in current)
        if has_words:
            visible = [t for t in current if t.kind not in (TokenKind.SPACE, TokenKind.PAUSE)]
            groups.append((SentenceTiming(visible[0].start, visible[-1].end), pending + current))
            pending.clear()
        elif groups:
            groups[-1][1].extend(current)  # silent leftovers still take time
        else:
            pending.extend(current)
        current.clear()

    index = 0
    while index < len(tokens):
        token = tokens[index]
        current.append(token)
        index += 1
        if token.kind is TokenKind.STOP:
            while index < len(tokens) and tokens[index].kind in (TokenKind.STOP, TokenKind.OTHER):
                current.append(tokens[index])
                index += 1
            if _ends_sentence(tokens, index, current, text):
                close()
        elif token.kind is TokenKind.SPACE and "\n" in text[token.start : token.end]:
            close()
    if current:
        close()
    return groups


# Words whose period is not a sentence end, as a TTS front end would know them.
_ABBREVIATIONS = frozenset({"mr", "mrs", "ms", "dr", "st", "prof", "jr", "sr", "vs", "etc", "e.g", "i.e",
                            "a.m", "p.m", "no", "fig", "mt", "capt", "col", "gen", "lt", "sgt", "rev"})


def _ends_sentence(tokens: list[Token], after: int, sentence: list[Token], text: str) -> bool:
    """Whether the stop run just read ends the sentence: not after an abbreviation or an initial,
    and not when the text goes on in lower case, with a digit or with a comma."""
    words = [t for t in sentence if t.kind is TokenKind.WORD]
    stop = next(t for t in reversed(sentence) if t.kind is TokenKind.STOP)
    if text[stop.start] == "." and words and words[-1].end == stop.start:
        word = text[words[-1].start:words[-1].end].lower()
        if word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
            return False
    for token in tokens[after:]:
        if token.kind in (TokenKind.SPACE, TokenKind.OTHER, TokenKind.PAUSE):
            if token.kind is TokenKind.SPACE and "\n" in text[token.start:token.end]:
                return True
            continue
        if token.kind is TokenKind.COMMA:
            return False
        if token.kind is TokenKind.WORD:
            first = text[token.start]
            return not (first.islower() or first.isdigit())
        return True
    return True


def frame_aligned_samples(seconds: float) -> int:
    """Samples in the shortest whole number of MP3 frames (at least two) that holds ``seconds``."""
    frames = math.ceil(seconds * SAMPLE_RATE_HZ / MP3_FRAME_SAMPLES)
    return max(frames, 2) * MP3_FRAME_SAMPLES


# --- synthetic rendering ------------------------------------------------------------------------------

_TABLE_SIZE = 2048  # a power of two: indices wrap with a bit mask
_NOISE_TABLE_SAMPLES = 1 << 17
_REFERENCE_F0_HZ = 140.0
_VOWEL_FORMANTS_HZ = (
    (730, 1090, 2440),
    (530, 1840, 2480),
    (270, 2290, 3010),
    (570, 840, 2410),
    (300, 870, 2240),
)


@functools.cache
def _vowel_tables() -> np.ndarray:
    """One period of each vowel: harmonics weighted by three formant resonances and a spectral tilt."""
    phase = np.arange(_TABLE_SIZE) / _TABLE_SIZE
    tables = np.zeros((len(_VOWEL_FORMANTS_HZ), _TABLE_SIZE), dtype=np.float32)
    for index, formants in enumerate(_VOWEL_FORMANTS_HZ):
        wave_ = np.zeros(_TABLE_SIZE)
        for k in range(1, 25):
            freq = k * _REFERENCE_F0_HZ
            gain = sum(1.0 / (1.0 + ((freq - f) / 90.0) ** 2) for f in formants) + 0.05
            wave_ += gain / k**0.6 * np.sin(2 * np.pi * k * phase + 0.3 * k)
        tables[index] = wave_ / np.max(np.abs(wave_))
    return tables


@dataclass(frozen=True, slots=True)
class _Syllable:
    start: int
    end: int
    f0_hz: float
    vowel: int
    consonant: bool
    noise_offset: int


def _syllables(
    sentences: list[SentenceTiming], settings: VoiceSettings, seed_text: str, *, pitch_factor: float
) -> list[_Syllable]:
    emotion_factor, depth = EMOTION_PITCH.get(settings.emotion, (1.0, 1.0))
    base_f0 = (
        (95.0 + 120.0 * stable_unit("f0", settings.model_id)) * emotion_factor * 2.0 ** (settings.pitch / 12)
    ) * pitch_factor
    text_key = stable_bytes("text", seed_text).hex()  # hash the (long) text once, not per syllable
    result = []
    for sentence in sentences:
        span = max(sentence.end_s - sentence.begin_s, 1e-6)
        for word in sentence.words:
            step = (word.end_s - word.begin_s) / word.syllables
            for k in range(word.syllables):
                begin = word.begin_s + k * step
                position = (begin - sentence.begin_s) / span  # 0 at sentence start, 1 at its end
                jitter = stable_unit("syllable", text_key, word.start, k)
                declination = 1.0 + depth * (0.1 - 0.2 * position) + depth * 0.06 * (jitter - 0.5)
                result.append(
                    _Syllable(
                        start=round(begin * SAMPLE_RATE_HZ),
                        end=round((begin + step) * SAMPLE_RATE_HZ),
                        f0_hz=base_f0 * declination,
                        vowel=int(jitter * 997) % len(_VOWEL_FORMANTS_HZ),
                        consonant=k == 0 or jitter > 0.5,
                        noise_offset=int(jitter * (_NOISE_TABLE_SAMPLES - SAMPLE_RATE_HZ)),
                    )
                )
    return result


@functools.lru_cache(maxsize=4096)
def _envelope(length: int) -> np.ndarray:
    """Raised-cosine attack and release around a gently arched body (cached: lengths repeat)."""
    t = np.arange(length, dtype=np.float32)
    attack = max(1, min(int(ATTACK_S * SAMPLE_RATE_HZ), length // 2))
    release = max(1, min(int(RELEASE_S * SAMPLE_RATE_HZ), length // 2))
    env = 0.8 + 0.2 * np.sin(np.pi * t / length)
    env[:attack] *= 0.5 - 0.5 * np.cos(np.pi * t[:attack] / attack)
    env[length - release :] *= 0.5 + 0.5 * np.cos(np.pi * (t[:release] + 1) / release)
    return env


def _render_range(
    syllables: list[_Syllable], starts: np.ndarray, settings: VoiceSettings, *, begin: int, end: int
) -> Iterator[np.ndarray]:
    """Yield float32 blocks covering timeline samples ``[begin, end)``, looping over syllables only.

    Each syllable's phase restarts at zero: its envelope is zero at both edges, so no click results and
    every block is independent of the ones before it (which lets chunks render in parallel).
    """
    tables = _vowel_tables()
    noise = _noise_table()
    gain = np.float32(VOICE_GAIN * settings.vol)
    consonant_len = int(CONSONANT_S * SAMPLE_RATE_HZ)
    consonant_shape = np.hanning(consonant_len).astype(np.float32) * np.float32(0.35)
    ramp = np.arange(RENDER_BLOCK_SAMPLES, dtype=np.float32)
    first = max(int(np.searchsorted(starts, begin, side="right")) - 1, 0)
    for block_start in range(begin, end, RENDER_BLOCK_SAMPLES):
        block_end = min(block_start + RENDER_BLOCK_SAMPLES, end)
        out = np.zeros(block_end - block_start, dtype=np.float32)
        for position in range(first, len(syllables)):
            syllable = syllables[position]
            if syllable.start >= block_end:
                break
            if syllable.end <= block_start:
                first = position + 1
                continue
            lo, hi = max(syllable.start, block_start), min(syllable.end, block_end)
            env = _envelope(syllable.end - syllable.start)[lo - syllable.start : hi - syllable.start]
            step = np.float32(syllable.f0_hz * _TABLE_SIZE / SAMPLE_RATE_HZ)
            offset = lo - syllable.start
            index = ((ramp[: hi - lo] + np.float32(offset)) * step).astype(np.int32) & (_TABLE_SIZE - 1)
            piece = tables[syllable.vowel][index]
            if (
                syllable.consonant
                and offset < consonant_len
                and syllable.end - syllable.start > 2 * consonant_len
            ):
                c_hi = min(consonant_len, hi - syllable.start)
                noise_at = syllable.noise_offset + offset
                piece[: c_hi - offset] += (
                    noise[noise_at : noise_at + c_hi - offset] * consonant_shape[offset:c_hi]
                )
            out[lo - block_start : hi - block_start] = piece * env
        out *= gain
        np.clip(out, -1.0, 1.0, out=out)
        yield out


@functools.cache
def _noise_table() -> np.ndarray:
    """Fixed, seeded breath noise (differenced white noise: a hiss) that syllables sample from."""
    rng = np.random.default_rng(20240611)
    return np.diff(rng.standard_normal(_NOISE_TABLE_SAMPLES + 1)).astype(np.float32) * np.float32(0.7)


def _chunk_bounds(sentences: list[SentenceTiming], total: int, *, workers: int) -> list[tuple[int, int]]:
    """Split ``[0, total)`` at frame-aligned points inside sentence gaps for parallel encoding.

    A cut at sample P needs silence for ``LAME_TAIL_CUT_SAMPLES`` before it and ``LAME_DELAY_SAMPLES``
    after it (those samples are dropped by each chunk's encoder) plus a margin for envelopes.
    """
    if workers < 2 or total < PARALLEL_MIN_SAMPLES:
        return [(0, total)]
    margin = 64
    cuts = []
    for left, right in itertools.pairwise(sentences):
        cut = math.ceil((left.end_s * SAMPLE_RATE_HZ + LAME_TAIL_CUT_SAMPLES + margin) / MP3_FRAME_SAMPLES)
        cut *= MP3_FRAME_SAMPLES
        if cut + LAME_DELAY_SAMPLES + margin <= right.begin_s * SAMPLE_RATE_HZ:
            cuts.append(cut)
    chosen: list[int] = []
    for k in range(1, workers):
        target = total * k / workers
        best = min(cuts, key=lambda c: abs(c - target), default=None)
        if best is not None and best not in chosen and 0 < best < total:
            chosen.append(best)
    points = [0, *sorted(chosen), total]
    return list(itertools.pairwise(points))


# --- encoding -----------------------------------------------------------------------------------------


def encode_mp3(
    blocks: Iterator[np.ndarray], *, total_samples: int, tail_cut_samples: int = LAME_TAIL_CUT_SAMPLES
) -> bytes:
    """Encode float blocks (``total_samples`` in all, frame-aligned) to CBR MP3 that decodes aligned.

    The first ``LAME_DELAY_SAMPLES`` and last ``tail_cut_samples`` samples are dropped (they must be
    silence) so that a decoder's output lines up sample for sample with the timeline. The default cut
    (``LAME_TAIL_CUT_SAMPLES``) leaves the decoded end silent; ``LAME_MIN_TAIL_CUT_SAMPLES``, the least
    that keeps the decoded length, lets a clip end in sound.
    """
    if not LAME_MIN_TAIL_CUT_SAMPLES <= tail_cut_samples <= LAME_TAIL_CUT_SAMPLES:
        raise ValueError(
            f"tail_cut_samples must be from {LAME_MIN_TAIL_CUT_SAMPLES} to {LAME_TAIL_CUT_SAMPLES}; "
            f"got {tail_cut_samples}"
        )
    encoder = lameenc.Encoder()
    encoder.set_bit_rate(MP3_BITRATE_KBPS)
    encoder.set_in_sample_rate(SAMPLE_RATE_HZ)
    encoder.set_channels(1)
    encoder.set_quality(7)  # LAME's fastest good setting; quality matters little for a test voice
    encoder.silence()
    keep_from, keep_to = LAME_DELAY_SAMPLES, total_samples - tail_cut_samples
    chunks = []
    position = 0
    for block in blocks:
        lo, hi = max(keep_from - position, 0), min(keep_to - position, len(block))
        position += len(block)
        if hi > lo:
            pcm = np.round(block[lo:hi] * np.float32(32767.0)).astype("<i2")
            chunks.append(encoder.encode(pcm.tobytes()))
    chunks.append(encoder.flush())
    return b"".join(chunks)


# --- espeak -------------------------------------------------------------------------------------------


def _render_espeak(
    text: str, settings: VoiceSettings, variation: TakeVariation, *, backend: str
) -> tuple[np.ndarray, list[SentenceTiming]]:
    """Real speech: espeak-ng per spoken segment (sentence, or part between pause markers), from the
    program or the library (``backend``); the timeline is built the same way for both."""
    sentences = [s for s, _ in _group_sentences(tokenize(text), text)]
    pauses = [t for t in tokenize(text) if t.kind is TokenKind.PAUSE]
    segments = [_segments_between_pauses(text, sentence, pauses) for sentence in sentences]
    spoken = iter(
        _speak_segments([text[a:b] for group in segments for a, b, _ in group], settings, variation, backend=backend)
    )
    pieces: list[np.ndarray] = [np.zeros(int(LEADING_SILENCE_S * SAMPLE_RATE_HZ), dtype=np.float32)]
    cursor = len(pieces[0])
    previous_end_offset = 0
    for sentence, group in zip(sentences, segments, strict=True):
        # pauses between sentences, then the gap a sentence break takes
        between = sum(p.seconds for p in pauses if previous_end_offset <= p.start < sentence.start)
        if previous_end_offset:
            gap = int((STOP_PAUSE_S / settings.speed * variation.pauses + between) * SAMPLE_RATE_HZ)
            pieces.append(np.zeros(gap, dtype=np.float32))
            cursor += gap
        words: list[WordTiming] = []
        for seg_start, seg_end, pause_after in group:
            audio = next(spoken)
            begin = cursor
            pieces.append(audio)
            cursor += len(audio)
            words.extend(
                _spread_words(text, seg_start, seg_end, begin / SAMPLE_RATE_HZ, cursor / SAMPLE_RATE_HZ)
            )
            if pause_after:
                silence = round(pause_after * SAMPLE_RATE_HZ)
                pieces.append(np.zeros(silence, dtype=np.float32))
                cursor += silence
        sentence.words.extend(words)
        previous_end_offset = sentence.end
    sentences = [s for s in sentences if s.words]
    total = frame_aligned_samples(cursor / SAMPLE_RATE_HZ + TRAILING_SILENCE_S)
    pieces.append(np.zeros(total - cursor, dtype=np.float32))
    signal = np.concatenate(pieces) * np.float32(min(settings.vol, 3.0))
    np.clip(signal, -1.0, 1.0, out=signal)
    return signal, sentences


def _segments_between_pauses(
    text: str, sentence: SentenceTiming, pauses: list[Token]
) -> list[tuple[int, int, float]]:
    inner = [p for p in pauses if sentence.start <= p.start < sentence.end]
    segments = []
    start = sentence.start
    for pause in inner:
        segments.append((start, pause.start, pause.seconds))
        start = pause.end
    segments.append((start, sentence.end, 0.0))
    return [(a, b, p) for a, b, p in segments if any(c.isalnum() for c in text[a:b])]


def _spread_words(text: str, start: int, end: int, begin_s: float, end_s: float) -> list[WordTiming]:
    """Word times inside one espeak segment, proportional to their letters (espeak gives no marks)."""
    tokens = [t for t in tokenize(text[start:end]) if t.kind in (TokenKind.WORD, TokenKind.SYLLABLE_CHAR)]
    weights = [max(1, t.end - t.start) for t in tokens]
    total = sum(weights) or 1
    words = []
    cursor = begin_s
    for token, weight in zip(tokens, weights, strict=True):
        duration = (end_s - begin_s) * weight / total
        words.append(WordTiming(start + token.start, start + token.end, cursor, cursor + duration, 1))
        cursor += duration
    return words


def espeak_command(segment: str, settings: VoiceSettings, variation: TakeVariation) -> list[str]:
    """The espeak-ng command line that speaks ``segment``: voice, rate (``-s``) and pitch (``-p``)."""
    voice, words_per_minute, pitch = _espeak_voice(settings, variation)
    rate_and_pitch = ["-s", str(words_per_minute), "-p", str(pitch)]
    return ["espeak-ng", "--stdout", "-v", voice, *rate_and_pitch, "--", segment]


def _espeak_voice(settings: VoiceSettings, variation: TakeVariation) -> tuple[str, int, int]:
    """What both engines are told: the voice name, the rate (words per minute) and the pitch (0-99)."""
    voice = ESPEAK_LANGUAGES.get(settings.language, "en")
    words_per_minute = round(ESPEAK_WORDS_PER_MINUTE * settings.speed * variation.pace)
    take_steps = 12 * ESPEAK_PITCH_PER_SEMITONE * math.log2(variation.pitch)  # 0.0 for take 1
    pitch = int(
        min(
            99,
            max(
                0,
                50
                + ESPEAK_PITCH_PER_SEMITONE * settings.pitch
                + 30 * (stable_unit("f0", settings.model_id) - 0.5)
                + take_steps,
            ),
        )
    )
    return voice, words_per_minute, pitch


def _speak_segments(
    segments: list[str], settings: VoiceSettings, variation: TakeVariation, *, backend: str
) -> list[np.ndarray]:
    """Each segment spoken by espeak-ng (the program, or the library), trimmed of its own silence and
    resampled to 32 kHz: float32 samples, one array per segment."""
    if backend == ESPEAK_LIBRARY_BACKEND:
        voice, words_per_minute, pitch = _espeak_voice(settings, variation)
        files = _espeak_library_files()  # before taking the lock: the first look takes it too
        with _ESPEAK_LIBRARY_LOCK, _EspeakLibrarySession(files) as library:
            raw = [
                (library.speak(segment, voice=voice, words_per_minute=words_per_minute, pitch=pitch), library.rate_hz)
                for segment in segments
            ]
    else:
        raw = [_espeak_program_pcm(segment, settings, variation) for segment in segments]
    return [_trimmed_and_resampled(pcm, rate) for pcm, rate in raw]


def _espeak_program_pcm(segment: str, settings: VoiceSettings, variation: TakeVariation) -> tuple[np.ndarray, int]:
    """``segment`` spoken by the espeak-ng program: its int16 samples and their rate."""
    completed = subprocess.run(
        espeak_command(segment, settings, variation), capture_output=True, check=True, timeout=60
    )
    with wave.open(io.BytesIO(completed.stdout)) as reader:
        rate = reader.getframerate()
        return np.frombuffer(reader.readframes(reader.getnframes()), dtype="<i2"), rate


def _trimmed_and_resampled(pcm: np.ndarray, rate: int) -> np.ndarray:
    """int16 speech without its leading and trailing silence, as float32 at ``SAMPLE_RATE_HZ``."""
    frames = pcm.astype(np.float32) / 32768.0
    loud = np.flatnonzero(np.abs(frames) > 0.01)
    if len(loud):
        frames = frames[loud[0] : loud[-1] + 1]
    if rate != SAMPLE_RATE_HZ and len(frames):
        positions = np.arange(int(len(frames) * SAMPLE_RATE_HZ / rate)) * rate / SAMPLE_RATE_HZ
        frames = np.interp(positions, np.arange(len(frames)), frames).astype(np.float32)
    return frames


# --- libespeak-ng through ctypes ----------------------------------------------------------------------
# The declarations of espeak-ng's speak_lib.h, the stable API the program is built on. The library keeps
# its voice, parameters, callback and synthesis state in globals: it is not thread-safe, so every use of
# it holds _ESPEAK_LIBRARY_LOCK. Some of that state outlives espeak_Terminate (the pitch flutter's index
# is a function-level static, and espeak_Initialize seeds its noise from the clock), so a library kept
# loaded speaks the same text slightly differently each time. Each clip therefore loads the library,
# initialises it, speaks its segments and unloads it again (about 3 ms): every clip starts from the
# pristine state, as every run of the program does, and the same text gives the same bytes.

_AUDIO_OUTPUT_SYNCHRONOUS = 2  # espeak_Synth returns when all audio has gone through the callback
_ESPEAK_INITIALIZE_DONT_EXIT = 0x8000  # report a missing data path instead of calling exit()
_POS_CHARACTER = 1
_ESPEAK_CHARS_UTF8 = 0x1
_ESPEAK_PHONEMES = 0x100
_ESPEAK_ENDPAUSE = 0x1000
_ESPEAK_SYNTH_FLAGS = _ESPEAK_CHARS_UTF8 | _ESPEAK_PHONEMES | _ESPEAK_ENDPAUSE  # as the program reads text
_ESPEAK_RATE = 1
_ESPEAK_PITCH = 3
_ESPEAK_NOISE_SEED = 1
_EE_OK = 0
_EE_NOT_FOUND = 2
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
_ESPEAK_LIBRARY_LOCK = threading.Lock()


class _EspeakLibrarySession:
    """One load of libespeak-ng (a context manager): loaded and initialised in synchronous mode on entry,
    terminated and unloaded on exit. Enter it holding ``_ESPEAK_LIBRARY_LOCK``.

    Raises (on entry):
        RuntimeError: the library does not load, lacks the API, or does not initialise.
    """

    def __init__(self, files: tuple[str, bytes]) -> None:
        self._library_path, self._data_path = files
        self._library: ctypes.CDLL | None = None
        self._chunks: list[bytes] = []
        self._callback = _SYNTH_CALLBACK(self._collect)  # referenced while the library holds its pointer
        self.rate_hz = 0

    def __enter__(self) -> _EspeakLibrarySession:
        try:
            library = ctypes.CDLL(self._library_path)
        except OSError as exc:
            raise RuntimeError(f"libespeak-ng does not load from {self._library_path}: {exc}") from exc
        self._library = library
        try:
            _declare_espeak_api(library)
            rate_hz = library.espeak_Initialize(
                _AUDIO_OUTPUT_SYNCHRONOUS, 0, self._data_path, _ESPEAK_INITIALIZE_DONT_EXIT
            )
            if rate_hz <= 0:
                raise RuntimeError(
                    f"libespeak-ng did not initialise with its data at {os.fsdecode(self._data_path)} "
                    f"(error {rate_hz})"
                )
        except BaseException:
            self._unload()
            raise
        self.rate_hz = rate_hz
        if hasattr(library, "espeak_ng_SetRandSeed"):  # espeak-ng 1.52 and later
            library.espeak_ng_SetRandSeed(ctypes.c_long(_ESPEAK_NOISE_SEED))
        library.espeak_SetSynthCallback(self._callback)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._library is not None:
            self._library.espeak_Terminate()
        self._unload()

    def _unload(self) -> None:
        library, self._library = self._library, None
        if library is None:
            return
        if sys.platform == "win32":
            _ctypes.FreeLibrary(library._handle)
        else:
            _ctypes.dlclose(library._handle)

    def _collect(self, wav: ctypes._Pointer[ctypes.c_short], count: int, events: int | None) -> int:
        if wav and count > 0:
            self._chunks.append(ctypes.string_at(wav, count * ctypes.sizeof(ctypes.c_short)))
        return 0  # go on

    def speak(self, segment: str, *, voice: str, words_per_minute: int, pitch: int) -> np.ndarray:
        """``segment`` spoken by ``voice`` at ``words_per_minute`` and ``pitch`` (as the program's
        ``-v``, ``-s`` and ``-p``): int16 samples at ``rate_hz``.

        Raises:
            RuntimeError: the library refused a call (an unknown voice, for one).
        """
        library = self._library
        if library is None:
            raise RuntimeError("libespeak-ng is not loaded: use the session as a context manager")
        text = segment.encode()
        self._chunks.clear()
        try:
            code = library.espeak_SetVoiceByName(voice.encode())
            if code == _EE_NOT_FOUND:
                raise RuntimeError(f"libespeak-ng has no voice {voice!r}")
            _check_espeak("espeak_SetVoiceByName", code)
            _check_espeak("espeak_SetParameter", library.espeak_SetParameter(_ESPEAK_RATE, words_per_minute, 0))
            _check_espeak("espeak_SetParameter", library.espeak_SetParameter(_ESPEAK_PITCH, pitch, 0))
            _check_espeak(
                "espeak_Synth",
                library.espeak_Synth(text, len(text) + 1, 0, _POS_CHARACTER, 0, _ESPEAK_SYNTH_FLAGS, None, None),
            )
            _check_espeak("espeak_Synchronize", library.espeak_Synchronize())
            return np.frombuffer(b"".join(self._chunks), dtype=np.int16)
        finally:
            self._chunks.clear()


def _declare_espeak_api(library: ctypes.CDLL) -> None:
    """Argument and result types of the calls used (speak_lib.h); AttributeError when one is missing."""
    try:
        library.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        library.espeak_Initialize.restype = ctypes.c_int
        library.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
        library.espeak_SetSynthCallback.restype = None
        library.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        library.espeak_SetVoiceByName.restype = ctypes.c_int
        library.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        library.espeak_SetParameter.restype = ctypes.c_int
        library.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
            ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p,
        ]  # fmt: skip
        library.espeak_Synth.restype = ctypes.c_int
        library.espeak_Synchronize.argtypes = []
        library.espeak_Synchronize.restype = ctypes.c_int
        library.espeak_Terminate.argtypes = []
        library.espeak_Terminate.restype = ctypes.c_int
    except AttributeError as exc:
        raise RuntimeError(f"the library from espeakng-loader lacks the espeak-ng API: {exc}") from exc
    if hasattr(library, "espeak_ng_SetRandSeed"):
        library.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        library.espeak_ng_SetRandSeed.restype = ctypes.c_int


def _check_espeak(call: str, code: int) -> None:
    if code != _EE_OK:
        raise RuntimeError(f"libespeak-ng: {call} failed with error {code}")


def _espeak_library_files() -> tuple[str, bytes]:
    """The library and data paths the espeakng-loader wheel provides.

    Raises:
        RuntimeError: the library cannot speak here; the message says why.
    """
    found = _espeak_library_or_problem()
    if isinstance(found, str):
        raise RuntimeError(f"the espeak-library voice cannot speak: {found}")
    return found


@functools.cache
def _espeak_library_or_problem() -> tuple[str, bytes] | str:
    """Find the wheel's library and data and check that they load, speak and unload (once per process):
    their paths, or why they cannot be used."""
    try:
        import espeakng_loader  # optional at run time: without it the simulator speaks another way
    except ImportError:
        return "the espeakng-loader package is not installed (pip install espeakng-loader)"
    try:
        files = (str(espeakng_loader.get_library_path()), os.fsencode(espeakng_loader.get_data_path()))
    except (OSError, RuntimeError) as exc:
        return f"espeakng-loader cannot provide libespeak-ng: {exc}"
    try:
        with _ESPEAK_LIBRARY_LOCK, _EspeakLibrarySession(files) as library:
            library.speak("ok", voice="en", words_per_minute=ESPEAK_WORDS_PER_MINUTE, pitch=50)
    except RuntimeError as exc:
        return str(exc)
    return files
