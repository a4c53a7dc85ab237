"""The words of a book a voice is likely to say wrong (``audiobook words``): candidates for lexicon entries.

:func:`find_candidates` reads the chapters' spoken text (pause markers ignored) and returns, best first:

* ``proper-noun``: a word capitalised where case says something, that is no everyday word: capitalised
  mid-sentence more often than written in lower case, or, for a word missing from the frequency list,
  capitalised in most of its occurrences, sentence starts included. A start of a sentence, of a quotation
  or of a line (verse), and a paragraph in title case (a heading, a table of contents) say nothing. A word
  whose lower-case form is an everyday word
  (:data:`NAME_MAX_ZIPF`: "Queen", "King", "William", "London") is left out: every voice says it right.
  German capitalises every noun, and scripts without case have none, so there case marks no names.
* ``rare-word``: a word missing from the chapter language's list of common words (used at least once per
  million words, :data:`COMMON_MIN_ZIPF`); in English an inflection or -ly form of a common word is common
  too ("timidly", "tarts": a voice reads them by rule). Merged case-insensitively; an English possessive
  ('s, s') and a French or Italian elided article (l', d') are not part of the word.
* ``acronym``: two or more capitals ("CIA", "NASA", "CDs", "U.S.A."), counted as spelled. Capitals are a
  shouted word instead, not an acronym, when the book also writes the word in lower case ("NEVER" beside
  "never"; so "US" beside "us" is missed), when it is a common word of five letters or more ("CHAPTER"),
  when it has seven letters or more ("MARMALADE": a voice reads it as a word anyway), or when every
  occurrence stands in a run of three or more words in capitals, or of two common ones ("THE END").
* ``digit-mix``: digits and letters in one token ("5km", "MP3", "B-52", "COVID-19", "1.5m"). Ordinals and
  decades ("3rd", "1990s", "2e", "1er", "5-й") are not candidates; "5-year-old" is its words.
* ``roman-numeral``: a valid numeral in capitals made of I, V and X ("II", "XIV"), or any valid one after a
  heading word ("Chapter L", "CHAPTER I") or a capitalised name ("Louis XIV", "Leo XIII"; of one letter only
  V and X: "Henry V"), or of four letters or more ("MCMXCIX"). The pronoun "I", "MIX" or "CD" standing
  alone (or after "The"), and lower case, are not.
* ``other-script``: a word in a script the chapter's language does not write ("Москва" in English, "iPhone"
  in Chinese, kana in Chinese, Hanja in Korean); capitals among them are also an ``acronym``.

Chinese, Japanese and Thai have no spaces between words, so they get no word list: there the candidates
are the other scripts (Latin words, with their acronyms), digit mixes and roman numerals; and, with
wordfreq installed, each Chinese or Japanese character found in no word of the language's list is a
``rare-word`` (in 红楼梦 these are the names' characters: 钗, 琏, 雯, 蟠). A chapter where more than
:data:`RARE_HAN_MAX_SHARE` of the characters would be rare is not judged so (its text does not match
the list: Traditional characters against wordfreq's Simplified one). Korean, whose words carry their
particles, is judged by script only.

Common words come from wordfreq's "small" lists (the ``words`` extra) when it is installed: 37 of the API's
39 languages (not Afrikaans, nor Thai). Otherwise, and for Afrikaans, from the short built-in lists below
(English, French, German, Spanish, Italian, Portuguese, Dutch, Russian), which say which words are common
but not which are rare: then only capitalised words (names), acronyms, numerals, digit mixes and other
scripts are found; a language with neither list is judged by case and script alone
(:data:`COMMON_WORDS_SOURCE`, :func:`common_words_source`).
"""

from __future__ import annotations

import bisect
import contextlib
import gzip
import importlib.util
import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import NamedTuple

from pipeline.models import LANGUAGE_CODES
from pipeline.text import MARKER_RE, normalize_text

KINDS = ("proper-noun", "rare-word", "acronym", "roman-numeral", "digit-mix", "other-script")
# The order of the list: names and invented words first, then how a voice may read letters and numbers.
_RANK = {"proper-noun": 0, "rare-word": 0, "acronym": 1, "digit-mix": 2, "roman-numeral": 3, "other-script": 4}

# A common word is used at least once per million words (zipf 3: wordfreq's "small" lists stop there).
COMMON_MIN_ZIPF = 3.0
# A capitalised word whose lower-case form is used more than this (about 30 per million words: "queen",
# "william", "london") is an everyday word or a name every voice says right; below it come "alice" (4.3),
# "cheshire" (3.5), "turtle" (3.9).
NAME_MAX_ZIPF = 4.5
# A shouted word, not an acronym: a common word of at least this many letters, or any word of the next.
SHOUTED_COMMON_MIN_LETTERS = 5
SHOUTED_MIN_LETTERS = 7
CAPS_RUN_MIN_WORDS = 3
RARE_HAN_MAX_SHARE = 0.02
SENTENCE_MAX_CHARS = 160

WORDFREQ_INSTALLED = importlib.util.find_spec("wordfreq") is not None
WORDS_EXTRA_HINT = "install the 'words' extra (pip install 'soundclone-audiobook[words]') for wordfreq's lists"


@dataclass(frozen=True)
class Candidate:
    """A word worth a lexicon entry, with where it first occurs."""

    word: str                   # the most frequent spelling ("Gryphon", "CIA", "XIV", "5km", "Москва")
    kinds: tuple[str, ...]      # from KINDS
    count: int                  # occurrences (case-insensitive for words, as spelled for acronyms and numerals)
    chapter: str                # the chapter id of the first occurrence
    sentence: str               # its sentence, whitespace collapsed, at most about SENTENCE_MAX_CHARS
    covered_by: str | None = None  # the lexicon term that already covers it


def find_candidates(chapters: Sequence[tuple[str, str, str]], *, covered: Callable[[str], str | None] = lambda w: None,
                    min_count: int = 1, limit: int | None = None) -> list[Candidate]:
    """The words of ``chapters`` a voice may say wrong, best first (see the module docstring for the kinds).

    ``chapters``: (chapter id, spoken text, API language name) in reading order; the text is plain (no
    Markdown) and may hold pause markers (``<#1.5#>``); the language is an API name ("English", "Chinese",
    ...), an ISO code, or "auto" (guessed from the script, and for Latin script from the commonest words).
    The order: proper nouns and rare words by count (descending), then acronyms, digit mixes, roman
    numerals and other scripts, each by count; ties by first occurrence. ``covered`` is asked for each
    returned word and gives the lexicon term that covers it, if any. Candidates seen fewer than
    ``min_count`` times are left out; ``limit`` keeps the first so many.
    """
    book = _Book()
    for index, (chapter_id, text, language) in enumerate(chapters):
        book.read(index, chapter_id, text, language)
    found = [c for c in book.candidates() if c.count >= min_count]
    if limit is not None:
        found = found[:max(limit, 0)]
    return [Candidate(c.word, c.kinds, c.count, c.chapter, c.sentence, covered(c.word)) for c in found]


def common_words_source(language: str = "English") -> str:
    """Which list says what is common in ``language`` (an API name or ISO code), for the CLI to show."""
    code = _language_code(language) or "en"
    source = _common_words(code, WORDFREQ_INSTALLED).source
    if source.startswith("wordfreq "):
        import importlib.metadata

        with contextlib.suppress(importlib.metadata.PackageNotFoundError):  # importable, not installed
            source = source.replace("wordfreq ", f"wordfreq {importlib.metadata.version('wordfreq')} ", 1)
    return source


# What the whole book is judged by (per language: common_words_source).
COMMON_WORDS_SOURCE = (
    "wordfreq ('small' lists: words used at least once per million)" if WORDFREQ_INSTALLED else
    f"built-in lists of the commonest words: rare words are not found; {WORDS_EXTRA_HINT}")


# --- languages and scripts -------------------------------------------------------------------------------
_CODE_BY_NAME = {name.casefold(): code for name, code in LANGUAGE_CODES.items()}
_CODES = frozenset(LANGUAGE_CODES.values())
# The API's languages wordfreq names otherwise (Croatian is in its Serbo-Croatian list).
_WORDFREQ_CODES = {"hr": "sh", "tl": "fil", "nn": "nb"}
_SCRIPTS = {
    "ru": {"Cyrillic"}, "uk": {"Cyrillic"}, "bg": {"Cyrillic"}, "mk": {"Cyrillic"}, "sr": {"Cyrillic", "Latin"},
    "el": {"Greek"}, "he": {"Hebrew"}, "ar": {"Arabic"}, "fa": {"Arabic"}, "ur": {"Arabic"},
    "hi": {"Devanagari"}, "bn": {"Bengali"}, "ta": {"Tamil"}, "th": {"Thai"},
    "zh": {"Han"}, "ja": {"Han", "Hiragana", "Katakana"}, "ko": {"Hangul"},
}
_CASED_SCRIPTS = frozenset({"Latin", "Cyrillic", "Greek", "Armenian"})
_NOUNS_CAPITALISED = frozenset({"de", "lb"})   # German capitalises every noun: case marks no names
_UNSPACED = frozenset({"zh", "ja", "th", "ko"})  # no word list applies to their runs of letters
_RARE_CHARACTERS = frozenset({"zh", "ja"})
_ELIDING = frozenset({"fr", "it", "ca"})       # l'homme, dell'anno: the article is not part of the word
_KNOWN_SCRIPTS = frozenset({"Latin", "Cyrillic", "Greek", "Armenian", "Hebrew", "Arabic", "Devanagari",
                            "Bengali", "Tamil", "Thai", "Han", "Hiragana", "Katakana", "Hangul", "Georgian",
                            "Gujarati", "Gurmukhi", "Telugu", "Kannada", "Malayalam", "Sinhala", "Lao",
                            "Khmer", "Myanmar", "Ethiopic", "Tibetan", "Syriac", "Thaana"})


def _language_code(language: str) -> str | None:
    """An API language name or ISO code -> its ISO code, or None ("auto", or not a language we know)."""
    key = language.strip().casefold()
    return _CODE_BY_NAME.get(key) or (key if key in _CODES else None)


@lru_cache(maxsize=8192)
def _script(ch: str) -> str:
    """The script of a letter, from its Unicode name ("Latin", "Cyrillic", "Han", ...)."""
    name = unicodedata.name(ch, "")
    first = name.split(" ", 1)[0]
    if first in ("CJK", "IDEOGRAPHIC"):
        return "Han"
    if first in ("FULLWIDTH", "HALFWIDTH"):
        return next((s for s in ("Latin", "Katakana", "Hangul") if s.upper() in name), "Common")
    if first.startswith("KATAKANA"):
        return "Katakana"
    return first.title()


def _word_script(word: str) -> str:
    for ch in word:
        if ch.isalpha():
            script = _script(ch)
            if script in _KNOWN_SCRIPTS:
                return script
    return "Common"


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_SAMPLE_CHARS = 20_000
_LATIN_HINTS = {
    "en": _words("the and of to that was he she it with his her you for had but"),
    "fr": _words("le la les et des est une que il elle dans pas pour qui au du"),
    "de": _words("der die und das ist nicht ich sie er ein eine zu den mit sich"),
    "es": _words("el la los las y que del se por una con para es lo su"),
    "it": _words("il di che la è per un non una sono del della gli con"),
    "pt": _words("o a os as que do da em um uma não com para é se"),
    "nl": _words("de het een en van ik niet dat is zijn op te met"),
}


def _guess_code(text: str) -> str:
    """The language of ``text`` by its script; for Latin script by its commonest words (English if unsure)."""
    sample = text[:_SAMPLE_CHARS]
    counts: dict[str, int] = {}
    for ch in sample:
        if ch.isalpha():
            script = _script(ch)
            counts[script] = counts.get(script, 0) + 1
    if not counts:
        return "en"
    kana = counts.get("Hiragana", 0) + counts.get("Katakana", 0)
    han = counts.get("Han", 0)
    top = max(counts, key=lambda s: counts[s] + (kana if s == "Han" else 0))
    if top == "Han" or top in ("Hiragana", "Katakana"):
        return "ja" if kana > 0.1 * (han + kana) else "zh"
    if top == "Latin":
        words = re.findall(r"[^\W\d_]+", sample.casefold())
        hits = {code: sum(w in hints for w in words) for code, hints in _LATIN_HINTS.items()}
        best = max(hits, key=lambda c: hits[c])
        return best if hits[best] > 0 else "en"
    if top == "Cyrillic":
        return "uk" if re.search("[їєґ]", sample) else "ru"
    if top == "Arabic":
        return "fa" if re.search("[پچژگ]", sample) else "ar"
    by_script = {"Greek": "el", "Hebrew": "he", "Devanagari": "hi", "Bengali": "bn", "Tamil": "ta",
                 "Thai": "th", "Hangul": "ko"}
    return by_script.get(top, "en")


# --- common words ------------------------------------------------------------------------------------------
_COMMON_MIN_FREQ = 10 ** (COMMON_MIN_ZIPF - 9)
_NAME_MAX_FREQ = 10 ** (NAME_MAX_ZIPF - 9)


@dataclass(frozen=True)
class _CommonWords:
    source: str
    frequencies: Mapping[str, float]   # casefolded word -> share of all words (a built-in word: 1.0)
    complete: bool                     # long enough that a word missing from it is rare

    def common(self, word: str, code: str) -> bool:
        """``word`` is common, or (English) an inflection or -ly/-ness form of a common word."""
        if self.frequencies.get(word, 0.0) >= _COMMON_MIN_FREQ:
            return True
        return code == "en" and any(self.frequencies.get(stem, 0.0) >= _COMMON_MIN_FREQ for stem in _stems(word))

    def everyday(self, word: str) -> bool:
        return self.frequencies.get(word, 0.0) >= _NAME_MAX_FREQ


def _wordfreq_list(code: str) -> dict[str, float] | None:
    """wordfreq's "small" list of ``code`` (word -> frequency), or None when it has none.

    Its data file is read directly: ``import wordfreq`` costs 0.2 s (ftfy and langcodes, which reading a
    list does not need), more than the rest of a book's run. The format is the one ``wordfreq.read_cBpack``
    documents (gzipped msgpack: a header, then one list of words per centibel of frequency, 0 cB first) and
    checks by its header; wordfreq is no longer updated, but on any surprise the public API reads it."""
    wordfreq_code = _WORDFREQ_CODES.get(code, code)
    folder = _wordfreq_data_dir()
    if folder is None:
        return _wordfreq_list_by_api(wordfreq_code)
    try:
        import msgpack

        with gzip.open(folder / f"small_{wordfreq_code}.msgpack.gz", "rb") as stream:
            data = msgpack.load(stream, raw=False)
        if data[0] == {"format": "cB", "version": 1}:
            return {word: 10 ** (-cb / 100) for cb, bucket in enumerate(data[1:]) for word in bucket}
    except FileNotFoundError:
        return None
    except (ImportError, OSError, EOFError, ValueError, TypeError, KeyError, IndexError):
        pass
    return _wordfreq_list_by_api(wordfreq_code)


def _wordfreq_list_by_api(wordfreq_code: str) -> dict[str, float] | None:
    import wordfreq

    if wordfreq_code not in wordfreq.available_languages("small"):
        return None
    return wordfreq.get_frequency_dict(wordfreq_code, "small")


@cache
def _wordfreq_data_dir() -> Path | None:
    """Where wordfreq keeps its lists, found without importing it (None: not a folder we can read)."""
    spec = importlib.util.find_spec("wordfreq")
    locations = list(spec.submodule_search_locations or ()) if spec else []
    folder = Path(locations[0]) / "data" if locations else None
    return folder if folder is not None and folder.is_dir() else None


@cache
def _common_words(code: str, use_wordfreq: bool) -> _CommonWords:
    hint = "wordfreq has no list for it" if use_wordfreq else WORDS_EXTRA_HINT
    frequencies = _wordfreq_list(code) if use_wordfreq else None
    if frequencies is not None:
        return _CommonWords(f"wordfreq ({_WORDFREQ_CODES.get(code, code)}, 'small' list)", frequencies,
                            complete=True)
    built_in = _BUILT_IN_WORDS.get(code)
    if built_in:
        words = built_in.split()
        return _CommonWords(f"built-in list of {len(words)} common words ({code}): rare words are not found; "
                            f"{hint}", dict.fromkeys(words, 1.0), complete=False)
    return _CommonWords(f"no list of common words ({code}): only names, acronyms, numerals and other scripts "
                        f"are found; {hint}", {}, complete=False)


# English endings a voice reads by rule on a word it knows: "timidly", "tarts", "twinkling", "busily".
_ENGLISH_ENDINGS = (("ily", "y"), ("ied", "y"), ("ies", "y"), ("iness", "y"), ("ingly", ""), ("edly", ""),
                    ("bly", "ble"), ("ly", ""), ("ness", ""), ("ing", ""), ("ing", "e"), ("ed", ""), ("ed", "e"),
                    ("es", ""), ("s", ""), ("'s", ""))


def _stems(word: str) -> Iterator[str]:
    for ending, replacement in _ENGLISH_ENDINGS:
        if word.endswith(ending) and len(word) - len(ending) >= 3:
            stem = word[:-len(ending)]
            yield stem + replacement
            if not replacement and ending in ("ing", "ed") and stem[-1] == stem[-2] and stem[-1] not in "aeiou":
                yield stem[:-1]    # "stopped", "running"


@cache
def _common_characters(code: str, use_wordfreq: bool) -> frozenset[str]:
    """The characters of a complete list's common words (Chinese, Japanese); empty for another list."""
    words = _common_words(code, use_wordfreq)
    if not words.complete:
        return frozenset()
    return frozenset("".join(w for w, f in words.frequencies.items() if f >= _COMMON_MIN_FREQ))


# --- tokens --------------------------------------------------------------------------------------------------
# Scripts written without spaces, and Hangul, as runs of their own (a word token never holds them).
_HAN = ("\u2e80-\u2fdf\u3005-\u3007\u3021-\u3029\u3038-\u303b\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
        "\U00020000-\U0003ffff")
_KANA = "\u3031-\u3035\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f"
_HANGUL = "\u1100-\u11ff\u3130-\u318f\ua960-\ua97f\uac00-\ud7ff\uffa0-\uffdc"
_CJK = _HAN + _KANA + _HANGUL
# Combining marks a word holds (Python's \w has no Mn/Mc: Devanagari's vowel signs, Hebrew points).
_MARKS = ("\u0300-\u036f\u0483-\u0489\u0591-\u05c7\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06ed"
          "\u0900-\u0963\u0966-\u0dff\u0e31\u0e34-\u0e3a\u0e47-\u0e4e\u0eb1\u0eb4-\u0ebc\u0ec8-\u0ecd"
          "\u1ab0-\u1aff\u1dc0-\u1dff\u200c\u200d\u20d0-\u20ff\ufe20-\ufe2f")
_LETTER = f"(?:[^\\W_{_CJK}]|[{_MARKS}])"
_TOKEN_RE = re.compile(
    rf"(?P<dotted>(?<![^\W_])(?:[A-Z]\.){{2,}})"
    rf"|(?P<cjk>[{_CJK}]+)"
    rf"|(?P<word>{_LETTER}+(?:(?:['’\-‐]|(?<=\d)[.,](?=\d)){_LETTER}+)*)"
)
_CJK_RUN_RE = re.compile(f"(?P<Han>[{_HAN}]+)|(?P<Kana>[{_KANA}]+)|(?P<Hangul>[{_HANGUL}]+)")
_ROMAN_RE = re.compile(r"M{0,3}(?:CM|CD|D?C{0,3})(?:XC|XL|L?X{0,3})(?:IX|IV|V?I{0,3})")
# English, French, Spanish and Italian ordinals and decades; Russian ones take a hyphen ("5-й"; "5м" is metres).
_ORDINAL_RE = re.compile(r"\d+(?:st|nd|rd|th|s|'s|’s|e|er|re|ère|ème|eme|es|nde?|º|ª|°|-(?:й|я|е|го|му|м|х|ми|ый|"
                         r"ий|ой|ая|ое|ые))", re.IGNORECASE)
_NUMBER_RE = re.compile(r"[\d.,\-‐]+")
_HEADING_WORDS = _words(
    "chapter book part volume vol act scene section canto appendix letter lesson psalm stave chapitre livre tome "
    "partie kapitel teil buch band capítulo capitulo libro parte tomo capitolo глава часть том книга")
_ABBREVIATIONS = _words("mr mrs ms dr st prof sr jr mme mlle messrs rev hon capt col gen lt sgt vol ch no fig "
                        "pp vs")
_OPENERS = frozenset("“‘«„‚「『（([{¿¡‹")
_STRAIGHT_QUOTES = frozenset("\"'")
_SKIPPED = frozenset("”’»」』）)]}›—–―-*_")
_SENTENCE_ENDS = frozenset(".!?…。！？．:")
# A sentence ends at its punctuation, at a blank line, or where an indented line starts (verse, a list).
_SENTENCE_END_RE = re.compile(r"[.!?…]+[\"'”’»」』）)\]]*(?=\s)|[。！？．]+[\"'”’»」』）)\]]*"
                              r"|\n[^\S\n]*\n|\n(?=[^\S\n])")


def _is_initial(text: str, start: int) -> bool:
    """Whether the word at ``start`` opens a sentence, a quotation or a line (its capital says nothing)."""
    i = start - 1
    while i >= 0:
        ch = text[i]
        if ch == "\n":
            return True
        if ch.isspace() or ch in _SKIPPED:
            i -= 1
            continue
        if ch in _OPENERS or (ch in _STRAIGHT_QUOTES and (i == 0 or text[i - 1].isspace())):
            return True
        break
    if i < 0:
        return True
    return text[i] in _SENTENCE_ENDS and not _ends_abbreviation(text, i)


def _ends_abbreviation(text: str, dot: int) -> bool:
    """Whether the character at ``dot`` is the full stop of an abbreviation ("Mr.") or an initial ("J.")."""
    if text[dot] != ".":
        return False
    j = dot
    while j > 0 and text[j - 1].isalpha():
        j -= 1
    before = text[j:dot]
    return before.casefold() in _ABBREVIATIONS or (len(before) == 1 and before.isupper())


_PARAGRAPH_RE = re.compile(r"(?m)^[^\S\n]*\S.*(?:\n[^\S\n]*\S.*)*")
_LETTERS_RE = re.compile(r"[^\W\d_]+")
_HEADING_MAX_CHARS = 1_500
# Short words a title leaves in lower case ("Advice from a Caterpillar", "Pig and Pepper").
_TITLE_SMALL_WORDS = _words("and but for nor the from into onto upon with over per via von van der den des del "
                            "les las los une und")


def _headings(text: str) -> list[tuple[int, int]]:
    """The spans of the paragraphs written in title case (a heading, a table of contents): there a
    capital says nothing either."""
    spans = []
    for paragraph in _PARAGRAPH_RE.finditer(text):
        body = paragraph.group().rstrip()
        if len(body) > _HEADING_MAX_CHARS or body.endswith("."):   # a sentence, not a title
            continue
        words = [w for w in _LETTERS_RE.findall(body) if len(w) >= 3]
        capitalised = sum(w[0].isupper() for w in words)
        if (capitalised >= 2 and words[0][0].isupper()
                and all(w[0].isupper() or w.casefold() in _TITLE_SMALL_WORDS for w in words)):
            spans.append(paragraph.span())
    return spans


def _case(word: str) -> str:
    """"lower", "upper" (two letters or more in capitals, or an acronym's plural "CDs"), "title" (a capital
    first or inside: "Alice", "iPhone", "McKay"), or "none" (a script without case)."""
    if word.lower() == word.upper():
        return "none"
    if word.islower():
        return "lower"
    if word.isupper() or (len(word) > 2 and word.endswith("s") and word[:-1].isupper()):
        return "upper" if sum(ch.isalpha() for ch in word) >= 2 else "title"
    return "title"


# --- the tally ------------------------------------------------------------------------------------------------
@dataclass
class _Seen:
    count: int = 0
    first: tuple[int, int] = (0, 0)   # chapter index, offset
    in_caps_run: int = 0


@dataclass
class _Tally:
    spellings: dict[str, _Seen] = field(default_factory=dict)
    lower: int = 0
    title_mid: int = 0
    title_initial: int = 0
    foreign: int = 0
    codes: set[str] = field(default_factory=set)

    def add(self, spelling: str, position: tuple[int, int]) -> None:
        seen = self.spellings.get(spelling)
        if seen is None:
            seen = self.spellings[spelling] = _Seen(first=position)
        seen.count += 1


@dataclass(frozen=True)
class _Found:
    word: str
    kinds: tuple[str, ...]
    count: int
    first: tuple[int, int]
    chapter: str
    sentence: str


@dataclass
class _Chapter:
    chapter_id: str
    text: str                          # normalised, markers blanked (offsets are into this)
    ends: list[int] | None = None      # sentence ends, found when a first occurrence needs its sentence

    def sentence(self, start: int, end: int) -> str:
        if self.ends is None:
            self.ends = [m.end() for m in _SENTENCE_END_RE.finditer(self.text)
                         if not _ends_abbreviation(self.text, m.start())]
        i = bisect.bisect_right(self.ends, start)
        first = self.ends[i - 1] if i else 0
        last = self.ends[i] if i < len(self.ends) else len(self.text)
        return _excerpt(self.text, first, last, start, end)


def _excerpt(text: str, first: int, last: int, start: int, end: int) -> str:
    """The sentence ``text[first:last]`` around the word at ``start:end``, whitespace collapsed, cut to
    about SENTENCE_MAX_CHARS around the word when longer (an ellipsis marks a cut)."""
    whole = " ".join(text[first:last].split())
    if len(whole) <= SENTENCE_MAX_CHARS:
        return whole
    room = max(SENTENCE_MAX_CHARS - (end - start), 20) // 2
    left, right = max(first, start - room), min(last, end + room)
    if left > first:
        space = text.find(" ", left, start)
        left = space + 1 if space != -1 else left
    if right < last:
        space = text.rfind(" ", end, right)
        right = space if space != -1 else right
    body = " ".join(text[left:right].split())
    return ("…" if left > first else "") + body + ("…" if right < last else "")


class _Book:
    """The tallies of every chapter read so far."""

    def __init__(self) -> None:
        self.chapters: list[_Chapter] = []
        self.words: dict[str, _Tally] = {}          # casefolded word -> its occurrences
        self.dotted: dict[str, _Tally] = {}         # "U.S.A."
        self.digits: dict[str, _Tally] = {}         # casefolded digit mix
        self.roman: dict[str, _Tally] = {}          # numeral as spelled
        self.characters: dict[str, _Tally] = {}     # rare Chinese or Japanese characters
        self.lists: dict[str, _CommonWords] = {}

    def read(self, index: int, chapter_id: str, text: str, language: str) -> None:
        text = MARKER_RE.sub(lambda m: " " * len(m.group()), normalize_text(text))
        self.chapters.append(_Chapter(chapter_id, text))
        code = _language_code(language) or _guess_code(text)
        scripts = _SCRIPTS.get(code, {"Latin"})
        if code not in _UNSPACED or code in _RARE_CHARACTERS:
            self.lists.setdefault(code, _common_words(code, WORDFREQ_INSTALLED))
        common_han = _common_characters(code, WORDFREQ_INSTALLED) if code in _RARE_CHARACTERS else frozenset()
        # Words are counted here and added to the book's tallies once, at the end of the chapter.
        counts: dict[tuple[str, str, str], int] = {}   # (key, spelling, how: see _Book._add) -> occurrences
        firsts: dict[tuple[str, str], int] = {}        # (key, spelling) -> first offset
        caps_run: list[tuple[str, str, int]] = []      # words in capitals in a row: key, spelling, offset
        han_total, rare_han = 0, list[tuple[str, int]]()
        known: dict[str, tuple[_Piece, ...]] = {}      # a token -> its pieces (most tokens recur)
        headings = _headings(text)
        heading_starts = [start for start, _ in headings]
        previous = ""

        def count(key: str, spelling: str, how: str, offset: int) -> None:
            counts[key, spelling, how] = counts.get((key, spelling, how), 0) + 1
            firsts.setdefault((key, spelling), offset)

        def flush_caps() -> None:
            shouted = len(caps_run) >= CAPS_RUN_MIN_WORDS or (len(caps_run) >= 2 and all(
                not key or self.lists[code].common(key, code) for key, _, _ in caps_run))   # "THE END"
            how = "caps-run" if shouted else "caps"
            for key, spelling, offset in caps_run:
                if key:
                    count(key, spelling, how, offset)
            caps_run.clear()

        def in_heading(offset: int) -> bool:
            i = bisect.bisect_right(heading_starts, offset) - 1
            return i >= 0 and offset < headings[i][1]

        for match in _TOKEN_RE.finditer(text):
            group, token, start = match.lastgroup, match.group(), match.start()
            if group == "word":
                pieces = known.get(token)
                if pieces is None:
                    pieces = known[token] = _classify(token, code, scripts)
                for piece in pieces:
                    offset = start + piece.offset
                    role = piece.role
                    if piece.numeral and _is_roman(piece.text, previous):
                        role = "roman"
                    if role == "caps":
                        caps_run.append((piece.key, piece.text, offset))
                        previous = piece.text
                        continue
                    if caps_run:
                        flush_caps()
                    if role == "native":
                        how = piece.case
                        if how == "title":
                            how = "initial" if _is_initial(text, offset) or in_heading(offset) else "mid"
                        count(piece.key, piece.text, how, offset)
                    elif role == "foreign":
                        count(piece.key, piece.text, "foreign", offset)
                    elif role == "digit":
                        self.digits.setdefault(piece.key, _Tally()).add(piece.text, (index, offset))
                    elif role == "roman":
                        self.roman.setdefault(piece.text, _Tally()).add(piece.text, (index, offset))
                    previous = piece.text
                continue
            if caps_run:
                flush_caps()
            if group == "dotted":
                self.dotted.setdefault(token, _Tally()).add(token, (index, start))
            else:
                for run in _CJK_RUN_RE.finditer(token):
                    script, letters, offset = run.lastgroup or "", run.group(), start + run.start()
                    if script == "Kana":
                        script = "Hiragana" if "Hiragana" in scripts else "Katakana"
                    if script not in scripts:
                        count(_casefold(letters, code), letters, "foreign", offset)
                    elif script == "Han" and common_han:
                        han_total += len(letters)
                        for ch in set(letters) - common_han:
                            rare_han.extend((ch, offset + i) for i, c in enumerate(letters) if c == ch)
            previous = token
        flush_caps()
        for (key, spelling, how), n in counts.items():
            self._add(key, spelling, how, n, code, (index, firsts[key, spelling]))
        if rare_han and len(rare_han) <= RARE_HAN_MAX_SHARE * han_total:
            for ch, offset in rare_han:
                self.characters.setdefault(ch, _Tally()).add(ch, (index, offset))

    def _add(self, key: str, spelling: str, how: str, n: int, code: str, first: tuple[int, int]) -> None:
        """Add ``n`` occurrences of a word: ``how`` it was written says "lower" (case), "mid" or "initial"
        (capitalised mid-sentence, or where a capital says nothing), "caps" or "caps-run" (in capitals,
        alone or in a run of capitals), "none" (a script without case) or "foreign" (another script)."""
        tally = self.words.get(key)
        if tally is None:
            tally = self.words[key] = _Tally()
        tally.codes.add(code)
        seen = tally.spellings.get(spelling)
        if seen is None:
            seen = tally.spellings[spelling] = _Seen(first=first)
        seen.count += n
        if how == "lower":
            tally.lower += n
        elif how == "mid":
            tally.title_mid += n
        elif how == "initial":
            tally.title_initial += n
        elif how == "caps-run":
            seen.in_caps_run += n
        elif how == "foreign":
            tally.foreign += n

    def candidates(self) -> list[_Found]:
        return sorted(_candidates(self), key=lambda f: (min(_RANK[k] for k in f.kinds), -f.count, f.first))


class _Piece(NamedTuple):
    text: str
    offset: int          # in its token
    role: str            # "digit", "foreign", "caps" (capitals, or a single capital), "native", "skip"
    key: str             # the tally key ("" for a single letter: it only lengthens a run of capitals)
    case: str
    numeral: bool        # spelled as a roman numeral (whether it is one depends on the word before)


def _classify(token: str, code: str, scripts: set[str]) -> tuple[_Piece, ...]:
    """The pieces of a word token and what each is, apart from its place in the text."""
    pieces = []
    for text, offset in _pieces(token, 0, code):
        numeral = text.isascii() and text.isupper() and _ROMAN_RE.fullmatch(text) is not None
        case = _case(text)
        if _has_digit(text):
            role, key = "digit", text.casefold()
        elif _word_script(text) not in scripts:
            role, key = "foreign", _casefold(text, code)
        elif case == "upper" or (len(text) == 1 and text.isupper()):
            role, key = "caps", (_casefold(text, code) if len(text) > 1 else "")
        elif len(text) == 1:
            role, key = "skip", ""
        else:
            role, key = "native", _casefold(text, code)
        pieces.append(_Piece(text, offset, role, key, case, numeral))
    return tuple(pieces)


_DIGIT_RE = re.compile(r"\d")


def _has_digit(text: str) -> bool:
    return _DIGIT_RE.search(text) is not None


def _pieces(token: str, start: int, code: str) -> Iterator[tuple[str, int]]:
    """The words and digit mixes of one token, with their offsets: the parts of a hyphenated word apart
    ("Rabbit-Hole", "5-year-old"), but a code whole ("B-52", "COVID-19", "R2-D2"); an English possessive
    and a French or Italian elided article dropped; numbers and ordinals ("3rd", "1990s") dropped."""
    if _has_digit(token):
        if _NUMBER_RE.fullmatch(token) or _ORDINAL_RE.fullmatch(token):
            return
        parts = re.split("[-‐]", token)
        mixed = [p for p in parts if _has_digit(p) and not _NUMBER_RE.fullmatch(p) and not _ORDINAL_RE.fullmatch(p)]
        words = [p for p in parts if not _has_digit(p)]
        if mixed or (words and all(p.isupper() or len(p) <= 2 for p in words)):
            yield _strip_possessive(token, code), start
            return
    offset = start
    for part in re.split("([-‐])", token):
        if part not in ("-", "‐") and not _has_digit(part):
            elided = _elided(part) if code in _ELIDING else 0
            yield _strip_possessive(part[elided:], code), offset + elided
        offset += len(part)


def _elided(word: str) -> int:
    """The length of an elided article or preposition in front of ``word`` ("l'", "dell'"), else 0."""
    for apostrophe in "'’":
        head, sep, rest = word.partition(apostrophe)
        if sep and rest and len(head) <= 5 and head.islower():
            return len(head) + 1
    return 0


def _strip_possessive(word: str, code: str) -> str:
    if code != "en":
        return word
    for ending in ("'s", "’s", "'S", "’S"):
        if word.endswith(ending) and len(word) > len(ending) + 1:
            return word[:-len(ending)]
    return word[:-1] if word.endswith(("'", "’")) else word


_ABJADS = frozenset({"ar", "fa", "ur", "he"})


def _casefold(word: str, code: str) -> str:
    """The key a frequency list spells ``word`` by: wordfreq case-folds (Turkish with its dotted and
    dotless i), writes the apostrophe straight, and drops the vowel points of abjads."""
    if code in ("tr", "az"):
        word = word.replace("İ", "i").replace("I", "ı")
    elif code in _ABJADS:
        word = "".join(ch for ch in word if unicodedata.category(ch) != "Mn" and ch != "\u0640")
    return word.replace("’", "'").casefold()


_NOT_NAMES = _words("the a an this that these those my his her its our their your no every each some any")


def _is_roman(word: str, previous: str) -> bool:
    """Whether ``word`` (a valid numeral in capitals) is a numeral after the word ``previous``."""
    if not word.isascii() or not word.isupper() or not _ROMAN_RE.fullmatch(word):
        return False
    if previous.casefold() in _HEADING_WORDS:
        return True
    after_name = (previous.isalpha() and previous[:1].isupper() and previous[1:].islower()
                  and previous.casefold() not in _NOT_NAMES)
    if len(word) == 1:   # "Henry V", "Pius X"; never the pronoun "I", nor "Vitamin C"
        return after_name and word in "VX"
    return after_name or set(word) <= set("IVX") or len(word) >= 4


def _is_shouted(spelling: str, seen: _Seen, tally: _Tally, common: bool) -> bool:
    """Whether ``spelling`` (in capitals) is a word in capitals rather than an acronym."""
    letters = sum(ch.isalpha() for ch in spelling)
    return (tally.lower + tally.title_mid + tally.title_initial > 0
            or (common and letters >= SHOUTED_COMMON_MIN_LETTERS)
            or letters >= SHOUTED_MIN_LETTERS
            or seen.in_caps_run == seen.count)


# --- the candidates -----------------------------------------------------------------------------------------
def _candidates(book: _Book) -> Iterator[_Found]:
    for key, tally in book.words.items():
        spellings = dict(tally.spellings)
        top = _top_spelling(spellings)
        if tally.foreign * 2 > sum(s.count for s in spellings.values()):
            kinds: tuple[str, ...] = ("acronym", "other-script") if _case(top) == "upper" else ("other-script",)
            yield _found(book, top, kinds, spellings)
            continue
        lists = [(code, book.lists[code]) for code in tally.codes if code in book.lists]
        common = any(words.common(key, code) for code, words in lists)
        everyday = any(words.everyday(key) for _, words in lists)
        complete = any(words.complete for _, words in lists)
        for spelling, seen in list(spellings.items()):
            if _case(spelling) == "upper" and not _is_shouted(spelling, seen, tally, common):
                yield _found(book, spelling, ("acronym",), {spelling: seen})
                del spellings[spelling]
        if not spellings:
            continue
        capitalised = tally.title_mid + tally.title_initial
        informative = _word_script(key) in _CASED_SCRIPTS and not tally.codes <= _NOUNS_CAPITALISED
        proper = False
        if informative and not everyday:
            if complete and not common:   # capitalised in most occurrences, sentence starts included
                proper = capitalised > tally.lower and (tally.title_mid > 0 or tally.lower == 0)
            else:                         # a common word, or no list to say: capitalised mid-sentence
                proper = tally.title_mid > tally.lower
        rare = complete and not common
        kinds = (("proper-noun",) if proper else ()) + (("rare-word",) if rare else ())
        if kinds:
            yield _found(book, _top_spelling(spellings), kinds, spellings)
    for table, kind in ((book.dotted, "acronym"), (book.digits, "digit-mix"), (book.roman, "roman-numeral"),
                        (book.characters, "rare-word")):
        for tally in table.values():
            yield _found(book, _top_spelling(tally.spellings), (kind,), tally.spellings)


def _top_spelling(spellings: Mapping[str, _Seen]) -> str:
    return min(spellings, key=lambda s: (-spellings[s].count, spellings[s].first))


def _found(book: _Book, word: str, kinds: tuple[str, ...], spellings: Mapping[str, _Seen]) -> _Found:
    spelled, seen = min(spellings.items(), key=lambda item: item[1].first)
    chapter = book.chapters[seen.first[0]]
    sentence = chapter.sentence(seen.first[1], seen.first[1] + len(spelled))
    return _Found(word, kinds, sum(s.count for s in spellings.values()), seen.first, chapter.chapter_id, sentence)


# --- built-in lists (used without wordfreq, and for the languages it lacks) ----------------------------------
# The commonest words, written out by hand, and the words books capitalise that are not names to respell
# (titles, forms of address, days and months): enough to keep "The", "I'm", "Mr" and "Monday" off the list.
_BUILT_IN_WORDS = {
    "en": """
        the of and to a in that is was he for it with as his on be at by i this had not are but from or have an
        they which one you were her all she there would their we him been has when who will more no if out so said
        what up its about into than them can only other new some could time these two may then do first any my now
        such like our over man me even most made after also did many before must through back years where much your
        way well down should because each just those people how too little good very make world still own see men
        work long get here between both life being under never day same another know while last might us great old
        year off come since against go came right used take three himself few house use during without again place
        around however home small found thought went say part once high upon every does got left number course war
        until always away something fact though water less put think almost hand enough far took head yet better set
        told nothing night end why called eyes find going look asked later knew next give young let room side given
        present several order rather second face among often things looked early white become large need big four
        within felt along saw best ever least light thing seemed family want mind country others done turned although
        open certain kind began different door thus help means whole matter perhaps itself name hands show whether
        five gave either feet across taken past quite anything seen having death body word half really am words
        already themselves tell together shall money keep sure probably free seems real behind cannot question air
        making brought whose heard became boy reason change close turn love true full seem else herself myself voice
        yes oh ah ok okay hello dear please thank thanks sorry sir madam miss mr mrs ms dr mister lord lady king queen
        prince princess captain doctor father mother uncle aunt god heaven christmas english french german american
        british european monday tuesday wednesday thursday friday saturday sunday january february april june july
        august september october november december i'm i've i'll i'd you're you've you'll you'd he's she's it's we're
        we've we'll they're they've they'll that's there's here's what's who's let's don't doesn't didn't isn't aren't
        wasn't weren't haven't hasn't hadn't won't wouldn't can't couldn't shouldn't mustn't o'clock six seven eight
        nine ten hundred thousand girl woman child children friend street town city morning evening
    """,
    "fr": """
        le la les un une des du de et à au aux en dans par pour sur avec sans sous chez entre vers que qui quoi dont où
        ne pas plus jamais rien personne il elle ils elles on je tu nous vous me te se moi toi lui leur leurs son sa ses
        mon ma mes ton ta tes notre nos votre vos ce cet cette ces ça cela ceci est était être été avoir avait a ont
        fait faire dit dire va aller vient peut pouvoir veut sait voir oui non mais ou donc or ni car si comme quand
        très bien tout tous toute toutes aussi encore alors puis après avant ici là monsieur madame mademoiselle dieu
        seigneur roi reine lundi mardi mercredi jeudi vendredi samedi dimanche janvier février mars avril mai juin
        juillet août septembre octobre novembre décembre français anglais
    """,
    "de": """
        der die das den dem des ein eine einen einem einer eines und oder aber denn doch sondern nicht kein keine ich
        du er sie es wir ihr mich dich sich uns euch mir dir ihm ihn ihnen mein dein sein unser euer ist war sind waren
        bin bist haben hat hatte hatten wird werden wurde kann können muss müssen will wollen soll sollen darf
        mag in im an am auf aus bei mit nach von vor zu zum zur über unter durch für gegen ohne um bis als wie wenn
        dass ob weil so auch noch schon nur sehr dann da hier dort ja nein nichts alles etwas man herr frau fräulein
        gott könig königin montag dienstag mittwoch donnerstag freitag samstag sonntag januar februar märz april mai
        juni juli august september oktober november dezember deutsch englisch
    """,
    "es": """
        el la los las un una unos unas lo de del a al en con por para sin sobre entre hasta desde y e o u ni pero sino
        que quien quién qué cual cuál donde dónde cuando cuándo como cómo no sí ya muy más menos también tan tanto yo
        tú él ella nosotros vosotros ellos ellas usted ustedes me te se nos os le les mi mis tu tus su sus nuestro
        nuestra este esta esto estos estas ese esa eso aquel es era fue ser son está estaba estar ha había haber hay
        tiene tener hace hacer dijo decir puede poder todo todos toda todas aquí allí ahora entonces bien señor señora
        señorita don doña dios rey reina lunes martes miércoles jueves viernes sábado domingo enero febrero marzo
        abril mayo junio julio agosto septiembre octubre noviembre diciembre español inglés
    """,
    "it": """
        il lo la i gli le un uno una di del della dei degli delle a al alla ai agli alle da dal dalla in nel nella
        con su sul sulla per tra fra e ed o ma se che chi cui non né più molto anche ancora già poi ora qui là io tu
        lui lei noi voi loro mi ti si ci vi mio mia tuo tua suo sua nostro vostro questo questa quello quella è
        era sono essere stato ha aveva avere fatto fare detto dire può come quando dove perché tutto tutti bene
        signore signora signorina dio re regina lunedì martedì mercoledì giovedì venerdì sabato domenica gennaio
        febbraio marzo aprile maggio giugno luglio agosto settembre ottobre novembre dicembre italiano inglese
    """,
    "pt": """
        o a os as um uma uns umas de do da dos das em no na nos nas por pelo pela para com sem sobre entre até e ou
        mas nem que quem qual onde quando como não sim já muito mais menos também tão eu tu ele ela nós vós eles elas
        você vocês me te se lhe lhes meu minha teu tua seu sua nosso nossa este esta isto esse essa isso aquele é
        era foi ser são está estava estar tem tinha ter há fez fazer disse dizer pode poder tudo todos toda todas aqui
        ali agora então bem senhor senhora dona deus rei rainha segunda terça quarta quinta sexta sábado domingo
        janeiro fevereiro março abril maio junho julho agosto setembro outubro novembro dezembro português inglês
    """,
    "nl": """
        de het een en of maar want dat die dit deze wat wie waar wanneer hoe niet geen ook nog al wel zo dan toen
        hier daar ik jij je u hij zij ze wij we jullie mij me hem haar ons hun mijn jouw zijn onze uw is was waren ben
        bent hebben heeft had hadden wordt worden werd kan kunnen moet moeten wil willen zal zou in op aan uit bij met
        naar van voor tot over onder door om te ja nee niets alles iets men meneer mevrouw juffrouw god koning
        koningin maandag dinsdag woensdag donderdag vrijdag zaterdag zondag januari februari maart april mei juni juli
        augustus september oktober november december nederlands engels
    """,
    "ru": """
        и в во не на я он она оно они мы вы ты что как а но да нет то это этот эта эти тот та те с со к ко по за из
        от до о об у же ли бы был была было были быть есть будет его её ее их им ему ей мне меня мой моя моё мои твой
        свой наш ваш сам сама себя весь вся всё все так там тут здесь где когда кто чем чтобы если или уже ещё еще
        только очень может можно сказал сказала господин госпожа бог царь понедельник вторник среда четверг пятница
        суббота воскресенье январь февраль март апрель май июнь июль август сентябрь октябрь ноябрь декабрь
    """,
    # wordfreq has no Afrikaans list
    "af": """
        die en van in is dat nie het om te op vir met by aan as sy hy ek jy ons julle hulle my haar hom was wat wie
        waar wanneer hoe maar of ook nog al so dan daar hier een twee drie baie kan sal moet wil word gaan kom
        sê ja nee niks alles iets meneer mevrou juffrou god koning koningin maandag dinsdag woensdag donderdag vrydag
        saterdag sondag januarie februarie maart april mei junie julie augustus september oktober november desember
    """,
}
