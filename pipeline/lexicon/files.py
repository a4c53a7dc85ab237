"""Lexicon files as the commands write them: a PLS file turned into a YAML lexicon (``audiobook lexicon
import``), the book's lexicon as PLS (``export --pls``), and proposed entries appended for the words
``audiobook words --add`` found. The manifest reads such files (:mod:`pipeline.manifest`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from pipeline import fsio
from pipeline.lexicon.entries import Entry
from pipeline.lexicon.pls import PlsLexicon, write_pls


@dataclass(frozen=True)
class Imported:
    entries: list[dict[str, str]]
    skipped: list[str]          # one line each: what was not imported, where and why


def from_pls(lexicon: PlsLexicon, *, source: str) -> Imported:
    """Entries for the aliases of a PLS lexicon. PLS graphemes are case-sensitive: two spellings of one
    word with the same alias become one case-insensitive entry; with different aliases, each keeps
    its case (``case: sensitive``)."""
    by_word: dict[str, list[tuple[str, str, int]]] = {}
    for alias in lexicon.aliases:
        for grapheme in alias.graphemes:
            by_word.setdefault(grapheme.casefold(), []).append((grapheme, alias.alias, alias.line))
    entries: list[dict[str, str]] = []
    for spellings in by_word.values():
        says = {say for _, say, _ in spellings}
        match = "phrase" if " " in spellings[0][0] else "word"
        if len(says) == 1:
            grapheme, say, line = spellings[0]
            entries.append({"term": grapheme, "say": say, "match": match, "note": f"from {source} line {line}"})
        else:
            entries.extend({"term": grapheme, "say": say, "match": match, "case": "sensitive",
                            "note": f"from {source} line {line}"} for grapheme, say, line in spellings)
    skipped = [f"line {s.line}: {' / '.join(s.graphemes) or '(no grapheme)'}: {s.reason}" for s in lexicon.skipped]
    return Imported(entries, skipped)


def to_pls(entries: Iterable[Entry], *, language: str) -> tuple[str, list[str]]:
    """The reviewed word and phrase entries as PLS text, and the entries PLS cannot hold (regex ones)."""
    pairs, left_out = [], []
    for entry in entries:
        if not entry.applies:
            continue
        if entry.match == "regex":
            left_out.append(f"{entry.where}: '{entry.term}' is a regex entry; PLS holds words and phrases only")
            continue
        pairs.append((entry.term, entry.say))
    return write_pls(pairs, language=language), left_out


def yaml_text(entries: Sequence[dict[str, str]], *, heading: str) -> str:
    lines = [f"# {line}" if line else "#" for line in heading.splitlines()]
    body = yaml.safe_dump(entries, allow_unicode=True, sort_keys=False, width=1000) if entries else "[]\n"
    return "\n".join(lines) + "\n" + body


def append_proposed(path: Path, words: Sequence[tuple[str, str]]) -> int:
    """Append ``(word, note)`` pairs to a YAML lexicon file as ``proposed`` entries with an empty ``say``
    for the user to fill in (creating the file); returns how many were added."""
    if not words:
        return 0
    existing = path.read_text(encoding="utf-8") if path.is_file() else "# proposed by `audiobook words --add`: " \
        "fill in each say, then set status: reviewed\n"
    if existing.strip().endswith("[]"):
        existing = existing.rstrip()[:-2]
    added = yaml.safe_dump([{"term": w, "say": "", "status": "proposed", "note": note} for w, note in words],
                           allow_unicode=True, sort_keys=False, width=1000)
    fsio.write_atomic(path, existing.rstrip("\n") + "\n" + added if existing.strip() else added)
    return len(words)
