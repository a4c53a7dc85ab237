"""Pause markers and the tokens of a submitted text.

The reference (`shared/soundclone-api.md`, "Pause markers") documents ``<#x#>`` as a pause of ``x``
seconds, 0.01 <= x <= 99.99 with at most two decimals, and infers from MiniMax that a marker must sit
between two spoken segments. This module is the one place that knows the marker syntax: validation uses
it to reject bad text and the voice uses it to place silences and subtitle offsets.

Offsets are always code-point offsets into the text as submitted (markers included), end exclusive.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import Enum

PAUSE_MIN_S = 0.01
PAUSE_MAX_S = 99.99

# Anything shaped like a marker is checked, so a typo such as ``<#abc#>`` is rejected instead of being
# read aloud; markers never span lines.
_MARKER_SHAPE_RE = re.compile(r"<#([^\n]*?)#>")
_MARKER_VALUE_RE = re.compile(r"\d+(?:\.\d{1,2})?")


class MarkupError(ValueError):
    """A pause marker breaks a rule; ``str(exc)`` says which marker, where, and how to fix it."""


@dataclass(frozen=True, slots=True)
class PauseMarker:
    """One ``<#x#>`` marker: ``text[start:end]`` is the marker, ``seconds`` the pause it asks for."""

    start: int
    end: int
    seconds: float


def is_spoken_char(char: str) -> bool:
    """True for a character that produces speech: a letter or digit in any script."""
    return char.isalnum()


def find_pause_markers(text: str) -> list[PauseMarker]:
    """Return every pause marker of ``text`` in order, checking syntax, range and placement.

    Raises:
        MarkupError: a malformed marker (``<#abc#>``, ``<#1.555#>``), a value outside 0.01-99.99, a
            marker with nothing spoken before it (start of text) or after it (end of text), or two
            markers with nothing spoken between them.
    """
    markers: list[PauseMarker] = []
    for match in _MARKER_SHAPE_RE.finditer(text):
        raw = match.group(0)
        value = match.group(1)
        if not _MARKER_VALUE_RE.fullmatch(value):
            raise MarkupError(
                f"pause marker {raw!r} at offset {match.start()} is malformed: write <#x#> with x a number "
                f"of seconds from {PAUSE_MIN_S} to {PAUSE_MAX_S} with at most two decimals, e.g. <#1.5#>"
            )
        seconds = float(value)
        if not PAUSE_MIN_S <= seconds <= PAUSE_MAX_S:
            raise MarkupError(
                f"pause marker {raw!r} at offset {match.start()} asks for {seconds:g} s: pauses must be "
                f"from {PAUSE_MIN_S} to {PAUSE_MAX_S} seconds"
            )
        markers.append(PauseMarker(match.start(), match.end(), seconds))
    _check_marker_placement(text, markers)
    return markers


def _check_marker_placement(text: str, markers: list[PauseMarker]) -> None:
    """Each marker needs speech on both sides (MiniMax rule, inferred in the reference)."""
    previous_end = 0
    for index, marker in enumerate(markers):
        before = text[previous_end : marker.start]
        if not any(is_spoken_char(c) for c in before):
            where = "at the start of the text" if index == 0 else "right after another marker"
            raise MarkupError(
                f"pause marker {text[marker.start : marker.end]!r} at offset {marker.start} is {where}: a "
                "marker must sit between two spoken words"
            )
        previous_end = marker.end
    if markers:
        last = markers[-1]
        if not any(is_spoken_char(c) for c in text[last.end :]):
            raise MarkupError(
                f"pause marker {text[last.start : last.end]!r} at offset {last.start} is at the end of the "
                "text: a marker must sit between two spoken words"
            )


def strip_pause_markers(text: str) -> str:
    """``text`` without its well-formed pause markers (what is billed and spoken)."""
    return _MARKER_SHAPE_RE.sub(lambda m: "" if _MARKER_VALUE_RE.fullmatch(m.group(1)) else m.group(0), text)


def count_billed_chars(text: str) -> int:
    """Code points billed for ``text``: every code point except those of ``<#x#>`` markers."""
    return len(strip_pause_markers(text))


# --- tokens -------------------------------------------------------------------------------------------


class TokenKind(Enum):
    """What a run of the text is, as far as speaking it goes."""

    WORD = "word"  # a run of letters/digits in a spaced script (Latin, Cyrillic, Arabic, Thai...)
    SYLLABLE_CHAR = "syllable_char"  # one CJK ideograph, kana or hangul syllable: a word of its own
    SPACE = "space"  # a run of whitespace
    COMMA = "comma"  # a clause break: , ; : and their CJK forms
    STOP = "stop"  # a sentence end: . ! ? and their CJK forms
    OTHER = "other"  # quotes, brackets, dashes, symbols: silent and timeless
    PAUSE = "pause"  # a <#x#> marker


@dataclass(frozen=True, slots=True)
class Token:
    """``text[start:end]`` read as ``kind``; ``seconds`` is set for pauses only."""

    kind: TokenKind
    start: int
    end: int
    seconds: float = 0.0


_COMMA_CHARS = frozenset(",;:\u3001\uff0c\uff1b\uff1a\u060c")
_STOP_CHARS = frozenset(".!?\u2026\u3002\uff01\uff1f\u203c\u2047\u2048\u2049\u061f\u0964")
_WORD_JOINERS = frozenset("'\u2019-")


def is_syllabic_char(char: str) -> bool:
    """True for CJK ideographs, kana and hangul: one spoken syllable and one subtitle word each."""
    code = ord(char)
    return (
        0x4E00 <= code <= 0x9FFF
        or 0x3400 <= code <= 0x4DBF
        or 0x20000 <= code <= 0x2FFFF
        or 0xF900 <= code <= 0xFAFF
        or 0x3040 <= code <= 0x30FF
        or 0xAC00 <= code <= 0xD7AF
        or 0x31F0 <= code <= 0x31FF
    )


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into tokens covering it end to end; markers must already be valid.

    A word keeps internal apostrophes and hyphens (``don't``, ``well-known``); a stop followed directly
    by a letter or digit (``3.14``, ``e.g``) is part of the word, not a sentence end.
    """
    markers = {m.start: m for m in find_pause_markers(text)}
    tokens: list[Token] = []
    i = 0
    n = len(text)
    while i < n:
        marker = markers.get(i)
        if marker is not None:
            tokens.append(Token(TokenKind.PAUSE, marker.start, marker.end, marker.seconds))
            i = marker.end
            continue
        char = text[i]
        if is_syllabic_char(char):
            tokens.append(Token(TokenKind.SYLLABLE_CHAR, i, i + 1))
            i += 1
        elif char.isalnum() or _is_combining(char):
            j = i + 1
            while j < n:
                c = text[j]
                if is_syllabic_char(c):
                    break
                if c.isalnum() or _is_combining(c):
                    j += 1
                elif (
                    (c in _WORD_JOINERS or c in ".,")
                    and j + 1 < n
                    and text[j + 1].isalnum()
                    and not (is_syllabic_char(text[j + 1]))
                ):
                    # "don't", "well-known", "3.14", "10,000" read as one word
                    j += 2
                else:
                    break
            tokens.append(Token(TokenKind.WORD, i, j))
            i = j
        elif char.isspace():
            j = i + 1
            while j < n and text[j].isspace() and j not in markers:
                j += 1
            tokens.append(Token(TokenKind.SPACE, i, j))
            i = j
        elif char in _STOP_CHARS:
            tokens.append(Token(TokenKind.STOP, i, i + 1))
            i += 1
        elif char in _COMMA_CHARS:
            tokens.append(Token(TokenKind.COMMA, i, i + 1))
            i += 1
        else:
            tokens.append(Token(TokenKind.OTHER, i, i + 1))
            i += 1
    return tokens


def _is_combining(char: str) -> bool:
    """Combining marks (Devanagari, Thai vowels, accents) belong to the word they follow."""
    return unicodedata.category(char).startswith("M")
