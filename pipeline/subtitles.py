"""Chapter subtitles from the API's per-chunk subtitle files (issue 5, part 3).

Each chunk's subtitle file (soundclone-api.md, "Subtitle file") times its sentences, and with word
subtitles its words, in milliseconds from the start of that chunk's *untrimmed* audio. The
assembly knows where each chunk's untrimmed sample 0 would sit in the chapter (its ``origin``, in
samples, which already accounts for the head room tone, the pauses and the silence trimmed off the
chunk's start) and which part of the chunk survived trimming; a cue's chapter time is

    origin_s + time_ms / 1000, clamped to the kept part of the chunk.

Times are preferred over character offsets; offsets are used only to take the cue *text* from the
manuscript (the chunk's text with ``<#x#>`` pause markers removed), and are tried both counting
markers and not. Pure functions: parsing, placing, rendering. No audio, no file writes.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import AssemblyError
from pipeline.lexicon.entries import Spoken

PAUSE_MARKER_RE = re.compile(r"<#\s*\d+(?:\.\d+)?\s*#>")
_SPACES_RE = re.compile(r"\s+")
TEXT_MATCH_MIN_RATIO = 0.8


def strip_markers(text: str) -> str:
    """``text`` without ``<#x#>`` pause markers, runs of whitespace collapsed to one space."""
    return _SPACES_RE.sub(" ", PAUSE_MARKER_RE.sub(" ", text)).strip()


@dataclass(frozen=True)
class WordTiming:
    text: str
    begin_ms: float
    end_ms: float


@dataclass(frozen=True)
class SentenceTiming:
    """One sentence entry of a chunk's subtitle file, tolerantly parsed."""

    text: str
    begin_ms: float
    end_ms: float
    text_begin: int | None = None
    text_end: int | None = None
    words: tuple[WordTiming, ...] = ()


@dataclass(frozen=True)
class Cue:
    start_s: float
    end_s: float
    text: str


@dataclass(frozen=True)
class ChunkPlacement:
    """Where a chunk's audio sits in the chapter, in samples at ``sample_rate_hz``.

    ``origin`` is the chapter sample that the chunk's untrimmed sample 0 maps to (it may be
    negative for the first chunk when more silence was trimmed than the head room tone lasts);
    ``kept_start`` and ``kept_end`` bound the part of the chapter the chunk's kept audio occupies.
    """

    origin: int
    kept_start: int
    kept_end: int
    sample_rate_hz: int

    def chapter_time_s(self, chunk_ms: float) -> float:
        sample = self.origin + chunk_ms * self.sample_rate_hz / 1000
        sample = min(max(sample, self.kept_start), self.kept_end)
        return sample / self.sample_rate_hz


# --------------------------------------------------------------------------------------------------
# Parsing


def _number(value: object) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _offset(value: object) -> int | None:
    number = _number(value)
    return int(number) if number is not None and number >= 0 else None


def parse_subtitle_json(data: object, *, source: str) -> list[SentenceTiming]:
    """Sentence timings from a decoded subtitle file: a list of entries or ``{"subtitles": [...]}``.

    Entries without usable ``time_begin``/``time_end`` are dropped (nothing can place them);
    ``timestamped_words`` may be null or missing. Raises :class:`AssemblyError` naming ``source``
    when the shape is not a subtitle file at all.
    """
    if isinstance(data, dict):
        for key in ("subtitles", "subtitle", "sentences", "data"):
            if isinstance(data.get(key), list):
                data = data[key]
                break
    if not isinstance(data, list):
        raise AssemblyError(f"{source}: not a subtitle file (expected a JSON array of sentence entries "
                            "or {\"subtitles\": [...]}); delete it so `audiobook run` downloads it again")
    sentences: list[SentenceTiming] = []
    for entry in data:
        if not isinstance(entry, dict):
            continue
        begin = _number(entry.get("time_begin"))
        end = _number(entry.get("time_end"))
        if begin is None or end is None:
            continue
        words: list[WordTiming] = []
        for word in entry.get("timestamped_words") or ():
            if not isinstance(word, dict):
                continue
            w_begin = _number(word.get("time_begin"))
            w_end = _number(word.get("time_end"))
            w_text = strip_markers(str(word.get("word") or word.get("pronounce_word") or ""))
            if w_begin is None or w_end is None or not w_text:
                continue
            words.append(WordTiming(w_text, w_begin, max(w_begin, w_end)))
        sentences.append(SentenceTiming(
            text=str(entry.get("text") or entry.get("pronounce_text") or ""),
            begin_ms=begin,
            end_ms=max(begin, end),
            text_begin=_offset(entry.get("text_begin")),
            text_end=_offset(entry.get("text_end")),
            words=tuple(words),
        ))
    return sentences


def load_subtitle_file(path: Path, *, label: str) -> list[SentenceTiming]:
    """Read and parse a chunk's subtitle JSON; :class:`AssemblyError` names ``label`` and the file."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AssemblyError(f"{label}: subtitle file {path} cannot be read ({exc}); delete it so "
                            "`audiobook run` downloads it again") from exc
    return parse_subtitle_json(data, source=f"{label}: {path}")


# --------------------------------------------------------------------------------------------------
# Cue text from the manuscript


def _comparable(text: str) -> str:
    return "".join(ch for ch in text.casefold() if ch.isalnum())


def _similar(a: str, b: str) -> float:
    ca, cb = _comparable(a), _comparable(b)
    if not ca or not cb:
        return 0.0
    if ca == cb:
        return 1.0
    return difflib.SequenceMatcher(None, ca, cb, autojunk=False).ratio()


def _with_markers(text: str, offset: int) -> int:
    """The offset in ``text`` of ``offset`` counted in ``text`` with its pause markers removed."""
    removed = 0
    for marker in PAUSE_MARKER_RE.finditer(text):
        if marker.start() > offset + removed:
            break
        removed += marker.end() - marker.start()
    return offset + removed


def _book_words(api_text: str, spoken: Spoken | None) -> str:
    """The API's own text with every respelling the lexicon made put back (the last resort)."""
    if spoken is None:
        return api_text
    for r in sorted(spoken.replacements, key=lambda r: r.spoken[0] - r.spoken[1]):
        said = spoken.text[r.spoken[0]:r.spoken[1]]
        api_text = api_text.replace(said, spoken.display_text[r.display[0]:r.display[1]])
    return api_text


def cue_text(sentence: SentenceTiming, chunk_text: str, spoken: Spoken | None = None) -> str:
    """The sentence's text as the manuscript spells it (the display text), without pause markers.

    The API's offsets index the text as sent: the chunk's spoken text when the lexicon respelled some
    of it (``spoken``), with markers counted or not (both are tried; the one whose slice agrees with
    the API's own ``text`` wins), and that span is mapped back to the chunk's own words. Only when no
    span agrees is the API's text used, with the lexicon's respellings put back.
    """
    api_text = strip_markers(sentence.text)
    sent = chunk_text if spoken is None else spoken.text
    b, e = sentence.text_begin, sentence.text_end
    if b is None or e is None or e <= b:
        return strip_markers(_book_words(api_text, spoken))
    spans = [(b, e), (_with_markers(sent, b), _with_markers(sent, e - 1) + 1)]
    scored = [(_similar(sent[x:y], api_text) if api_text else 1.0, (x, y)) for x, y in spans]
    score, (x, y) = max(scored, key=lambda item: item[0])
    if score < TEXT_MATCH_MIN_RATIO:
        return strip_markers(_book_words(api_text, spoken))
    if spoken is not None:
        x, y = spoken.to_display(x, y)
    return strip_markers(chunk_text[x:y])


def display_words(words: Sequence[WordTiming], spoken: Spoken | None, *, cursor: int = 0
                  ) -> tuple[list[WordTiming], int]:
    """Word timings with the book's words: the words of one respelling (a multi-word ``say``) become
    one word, the display word, spanning them. Words are found in the spoken text in order, from
    ``cursor``; returns them and where the search got to."""
    if spoken is None or not spoken.replacements:
        return list(words), cursor
    out: list[WordTiming] = []
    merged: tuple[object, WordTiming] | None = None
    folded = spoken.text.casefold()
    for word in words:
        at = folded.find(word.text.casefold().strip(), cursor) if word.text.strip() else -1
        if at < 0:
            merged = None
            out.append(word)
            continue
        cursor = at + len(word.text.strip())
        r = spoken.replacement_at(at, cursor)
        if r is None:
            merged = None
            out.append(word)
            continue
        shown = spoken.display_text[r.display[0]:r.display[1]]
        if merged is not None and merged[0] is r:
            out[-1] = WordTiming(shown, merged[1].begin_ms, word.end_ms)
        else:
            out.append(WordTiming(shown, word.begin_ms, word.end_ms))
            merged = (r, word)
    return out, cursor


# --------------------------------------------------------------------------------------------------
# Placing


@dataclass(frozen=True)
class ChunkCues:
    sentences: tuple[Cue, ...]
    words: tuple[Cue, ...]


def place_chunk(sentences: Sequence[SentenceTiming], *, chunk_text: str, placement: ChunkPlacement,
                spoken: Spoken | None = None) -> ChunkCues:
    """Sentence and word cues of one chunk, in chapter seconds, with the book's words (``spoken``: what
    the lexicon sent instead, when it respelled some)."""
    out_sentences: list[Cue] = []
    out_words: list[Cue] = []
    cursor = 0
    for sentence in sentences:
        text = cue_text(sentence, chunk_text, spoken)
        if text:
            out_sentences.append(Cue(placement.chapter_time_s(sentence.begin_ms),
                                     placement.chapter_time_s(sentence.end_ms), text))
        words, cursor = display_words(sentence.words, spoken, cursor=cursor)
        for word in words:
            out_words.append(Cue(placement.chapter_time_s(word.begin_ms),
                                 placement.chapter_time_s(word.end_ms), word.text))
    return ChunkCues(tuple(out_sentences), tuple(out_words))


def fallback_cue(*, chunk_text: str, placement: ChunkPlacement) -> Cue:
    """One cue spanning a chunk's kept audio, for a chunk whose subtitle file is missing."""
    sr = placement.sample_rate_hz
    return Cue(placement.kept_start / sr, placement.kept_end / sr, strip_markers(chunk_text))


def tidy_cues(cues: Iterable[Cue]) -> list[Cue]:
    """Cues in start order, each ending no later than the next one starts, none empty in time.

    Overlaps come from the API's own timings (a sentence's end past the next one's start); the
    earlier cue is shortened, never the later one delayed, so starts stay where the speech starts.
    """
    ordered = sorted((c for c in cues if c.text), key=lambda c: (c.start_s, c.end_s))
    result: list[Cue] = []
    for i, cue in enumerate(ordered):
        end = cue.end_s
        if i + 1 < len(ordered):
            end = min(end, ordered[i + 1].start_s)
        if end <= cue.start_s:
            end = cue.start_s + 0.001
            if i + 1 < len(ordered):
                end = max(cue.start_s, min(end, ordered[i + 1].start_s))
        result.append(Cue(cue.start_s, end, cue.text))
    return result


# --------------------------------------------------------------------------------------------------
# Rendering


def _timestamp(seconds: float, sep: str) -> str:
    ms = max(0, round(seconds * 1000))
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{sep}{millis:03d}"


def _one_line_safe(text: str) -> str:
    # A blank line ends a cue in both formats, and "-->" would read as a timing line.
    return text.replace("\r", " ").replace("\n", " ").replace("-->", "->")


def render_srt(cues: Sequence[Cue]) -> str:
    blocks = [f"{i}\n{_timestamp(c.start_s, ',')} --> {_timestamp(c.end_s, ',')}\n{_one_line_safe(c.text)}\n"
              for i, c in enumerate(cues, start=1)]
    return "\n".join(blocks)


def _vtt_escape(text: str) -> str:
    return _one_line_safe(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render_vtt(cues: Sequence[Cue]) -> str:
    blocks = ["WEBVTT\n"]
    blocks += [f"{_timestamp(c.start_s, '.')} --> {_timestamp(c.end_s, '.')}\n{_vtt_escape(c.text)}\n"
               for c in cues]
    return "\n".join(blocks)


def render_words_json(*, chapter_id: str, title: str, audio_file: str, sentences: Sequence[Cue],
                      words: Sequence[Cue]) -> str:
    """Word timings as JSON: ``{"chapter_id", "title", "audio", "sentences": [{text, start, end}],
    "words": [{text, start, end, sentence}]}``; seconds with millisecond precision; ``sentence`` is
    the index of the sentence cue holding the word's midpoint (the last one starting before it;
    null before the first), so a word timed a hair before its sentence still belongs to it."""
    starts = [s.start_s for s in sentences]
    word_rows = []
    s_index = -1
    for word in words:
        middle = (word.start_s + word.end_s) / 2
        while s_index + 1 < len(starts) and starts[s_index + 1] <= middle:
            s_index += 1
        word_rows.append({"text": word.text, "start": round(word.start_s, 3), "end": round(word.end_s, 3),
                          "sentence": s_index if s_index >= 0 else None})
    doc = {
        "chapter_id": chapter_id,
        "title": title,
        "audio": audio_file,
        "sentences": [{"text": s.text, "start": round(s.start_s, 3), "end": round(s.end_s, 3)} for s in sentences],
        "words": word_rows,
    }
    return json.dumps(doc, ensure_ascii=False, indent=1) + "\n"
