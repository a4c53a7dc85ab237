"""Lexicon entries and how they turn what the book says (the display text) into what the voice is
sent (the spoken text).

An entry: ``term`` -> ``say``, matched as a whole ``word`` (default: "Ann" leaves "Anna" alone), a
``phrase`` (whole words, any run of spaces between them) or a ``regex`` (``say`` may use its groups,
``\\1``), ``case``-``insensitive`` by default (an initial capital in the text is kept: "quayle" ->
"kwail", "Quayle" -> "Kwail"; and a word or phrase keeps an English plural or possessive ending:
"Quayle's" -> "Kwail's"). Only ``reviewed`` entries apply; ``proposed`` ones are listed (``audiobook
words``) but change nothing until reviewed, ``disabled`` ones are kept for the record.

Application (:meth:`Lexicon.apply`): every match of every entry is found, the longest win and no two
overlap (at equal length the earlier one), and pause markers are never touched. The result,
:class:`Spoken`, keeps where each replacement sits in both texts, so a span of the spoken text (a cue
the API timed) maps back to the words of the book (:meth:`Spoken.to_display`).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

from pipeline.text import MARKER_RE

MATCHES = ("word", "phrase", "regex")
CASES = ("insensitive", "sensitive")
STATUSES = ("reviewed", "proposed", "disabled")
# English plural and possessive endings a word or phrase keeps: Quayle's, Quayles, Quayles', Quayle’s
_ENDING = r"(?P<ending>(?:['’]s|s['’]|es|s|['’])?)"


@dataclass(frozen=True)
class Entry:
    term: str
    say: str
    match: str = "word"
    case: str = "insensitive"
    status: str = "reviewed"
    note: str = ""
    where: str = ""          # "file:line" it was read from, for messages

    @property
    def applies(self) -> bool:
        return self.status == "reviewed"

    def pattern(self) -> re.Pattern[str]:
        """The compiled pattern (raises ``re.error`` for a bad regex)."""
        flags = re.IGNORECASE if self.case == "insensitive" else 0
        if self.match == "regex":
            return re.compile(self.term, flags)
        words = [re.escape(w) for w in self.term.split()]
        body = r"\s+".join(words)
        return re.compile(rf"(?<!\w){body}{_ENDING}(?!\w)", flags)

    def key(self) -> str:
        """What makes two entries the same term (a chapter's entry overrides the book's)."""
        term = " ".join(self.term.split()) if self.match != "regex" else self.term
        return f"{self.match}:{term.casefold() if self.case == 'insensitive' else term}"


@dataclass(frozen=True)
class Replacement:
    display: tuple[int, int]
    spoken: tuple[int, int]
    entry: Entry


@dataclass(frozen=True)
class Spoken:
    """The spoken text of a display text, and where they differ."""

    display_text: str
    text: str
    replacements: tuple[Replacement, ...] = ()

    @cached_property
    def _starts(self) -> list[int]:
        return [r.spoken[0] for r in self.replacements]

    def to_display_offset(self, offset: int, *, end: bool = False) -> int:
        """The display offset of spoken ``offset`` (inside a replacement: its start, or with ``end``
        its end, so a span never cuts a replaced word in two)."""
        i = bisect.bisect_right(self._starts, offset) - 1
        if i < 0:
            return offset
        r = self.replacements[i]
        if offset < r.spoken[1] or (end and offset == r.spoken[1]):
            return r.display[1] if end and offset > r.spoken[0] else r.display[0]
        return r.display[1] + (offset - r.spoken[1])

    def to_display(self, start: int, end: int) -> tuple[int, int]:
        """The display span of the spoken span ``start:end``."""
        return self.to_display_offset(start), self.to_display_offset(end, end=True)

    def replacement_at(self, start: int, end: int) -> Replacement | None:
        """The replacement the spoken span ``start:end`` lies in, if any."""
        i = bisect.bisect_right(self._starts, start) - 1
        if i >= 0 and self.replacements[i].spoken[0] <= start and end <= self.replacements[i].spoken[1]:
            return self.replacements[i]
        return None


def _spoken_form(entry: Entry, found: re.Match[str]) -> str:
    if entry.match == "regex":
        return found.expand(entry.say)
    say = entry.say + (found.group("ending") or "")
    if entry.case == "insensitive":
        matched = found.group(0)
        if matched[:1].isupper() and say[:1].islower():
            say = say[:1].upper() + say[1:]
    return say


class Lexicon:
    """The entries that apply to one chapter (reviewed ones), compiled once."""

    def __init__(self, entries: Iterable[Entry] = ()) -> None:
        self.entries = tuple(e for e in entries if e.applies)
        # (entry, pattern, a word it cannot match without, or None for a regex): a substring test in C
        # skips most entries for most chunks, so a big lexicon costs little
        self._patterns = [(e, e.pattern(), None if e.match == "regex" else max(e.term.split(), key=len))
                          for e in self.entries]

    def __bool__(self) -> bool:
        return bool(self.entries)

    def apply(self, text: str) -> Spoken:
        if not self._patterns:
            return Spoken(text, text)
        markers = [(m.start(), m.end()) for m in MARKER_RE.finditer(text)]
        folded = text.casefold()
        found: list[tuple[int, int, Entry, str]] = []
        for entry, pattern, word in self._patterns:
            if word is not None and (word.casefold() not in folded if entry.case == "insensitive"
                                     else word not in text):
                continue
            for match in pattern.finditer(text):
                start, end = match.span()
                if end == start or any(a < end and start < b for a, b in markers):
                    continue
                found.append((start, end, entry, _spoken_form(entry, match)))
        if not found:
            return Spoken(text, text)
        found.sort(key=lambda f: (f[0] - f[1], f[0]))  # longest first, then the earliest
        taken: list[tuple[int, int, Entry, str]] = []
        for item in found:
            if all(item[1] <= t[0] or t[1] <= item[0] for t in taken):
                taken.append(item)
        taken.sort()
        parts: list[str] = []
        replacements: list[Replacement] = []
        position = shift = 0
        for start, end, entry, say in taken:
            parts.append(text[position:start])
            spoken_start = start + shift
            parts.append(say)
            replacements.append(Replacement((start, end), (spoken_start, spoken_start + len(say)), entry))
            shift += len(say) - (end - start)
            position = end
        parts.append(text[position:])
        return Spoken(text, "".join(parts), tuple(replacements))


def merged(book: Sequence[Entry], chapter: Sequence[Entry]) -> tuple[Entry, ...]:
    """A chapter's entries: the book's, with the chapter's added and overriding the same term."""
    own = {e.key() for e in chapter}
    return (*(e for e in book if e.key() not in own), *chapter)
