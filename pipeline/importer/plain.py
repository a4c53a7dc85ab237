"""Markdown and plain-text manuscripts (``.md``, ``.markdown``, ``.txt``) -> a :class:`SourceBook` (issue 13, item 5).

A chapter starts at a heading of ``options.split_level`` (Markdown: ATX ``#`` and setext underlines, never
inside fenced code, HTML comments or the front matter), at a chapter-like line standing alone
(``CHAPTER I.``, ``Chapter Twelve: The End``, ``PART ONE``, ``BOOK II``, ``第一回 ...``, ``第1章``) or at a
line matching ``options.chapter_pattern``. In plain text a bare heading may be followed by its title line
(Project Gutenberg: ``CHAPTER I.`` / ``Down the Rabbit-Hole``). Heading-like lines with no text between them
are a table of contents (one part, skipped), not a dozen empty chapters; a part heading directly above a
chapter heading (``PART ONE`` / ``CHAPTER 1``) opens that chapter. The text before the first chapter is a
part of its own. Every part is classified by :func:`pipeline.importer.classify.skip_reason`.

Project Gutenberg files lose their header and footer, licence included, before anything is read; the
header's ``Title:``, ``Author:``, ``Language:`` and release year become the book's metadata. Markdown
front matter is metadata too and belongs to no part.

A Markdown part keeps the Markdown as written. A plain-text part becomes Markdown that reads the same
words: characters Markdown would interpret are backslash-escaped, Gutenberg's ``_italic_`` stays as
emphasis, a chapter heading becomes a ``#`` heading, a rule line (``* * *``, ``-----``, ``=====``) becomes
one scene break, ``[Illustration]`` markers are dropped (images are not read, as in EPUB), indentation is
dropped (four spaces would make a code block) and hard-wrapped lines stay as they are (the reader joins
them).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pipeline.errors import SourceFileError
from pipeline.importer.archive import file_bytes
from pipeline.importer.classify import is_title_page, skip_reason
from pipeline.importer.languages import api_language, guess_language
from pipeline.importer.model import ReadOptions, SourceBook, SourcePart
from pipeline.models import LANGUAGE_AUTO
from pipeline.text import SOURCE_MAX_BYTES, SourceError, decode_source, to_spoken_text

MARKDOWN_SUFFIXES = (".md", ".markdown")
TEXT_SUFFIXES = (".txt",)
_HEADING_MAX_CHARS = 120  # a chapter heading is a line, not a paragraph
_TITLE_LINE_MAX_CHARS = 100


def read(path: Path, options: ReadOptions) -> SourceBook:
    """Read the Markdown or plain-text manuscript at ``path`` into its metadata and parts.

    Raises :class:`SourceFileError` (one line naming the file) when the file cannot be read, is binary,
    UTF-16 or not valid UTF-8, is empty, or is not a ``.md``, ``.markdown`` or ``.txt`` file.
    """
    suffix = path.suffix.lower()
    if suffix not in MARKDOWN_SUFFIXES + TEXT_SUFFIXES:
        raise SourceFileError(path, "is not a Markdown or plain-text file (.md, .markdown, .txt)")
    text = _decode(path, file_bytes(path, limit=SOURCE_MAX_BYTES, what="a manuscript"))
    if suffix in MARKDOWN_SUFFIXES:
        return _MarkdownReader(path, text, options).book()
    return _TextReader(path, text, options).book()


def _decode(path: Path, data: bytes) -> str:
    try:
        return decode_source(data)
    except SourceError as exc:
        problem = exc.problems[0]
        where = f" (line {problem.line}, column {problem.column})" if problem.line is not None else ""
        raise SourceFileError(path, f"{problem.message}{where}") from exc


# --- chapter-like lines -----------------------------------------------------------------------------------

_UNITS = "one|two|three|four|five|six|seven|eight|nine"
_TEENS = "ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen"
_TENS = "twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety"
_ORD_UNITS = "first|second|third|fourth|fifth|sixth|seventh|eighth|ninth"
_ORD_TEENS = ("tenth|eleventh|twelfth|thirteenth|fourteenth|fifteenth|sixteenth|seventeenth|eighteenth|"
              "nineteenth")
_ORD_TENS = "twentieth|thirtieth|fortieth|fiftieth|sixtieth|seventieth|eightieth|ninetieth"
_WORD_NUMBER = (rf"(?:the\s+)?(?:(?:{_TENS})[-\s](?:{_ORD_UNITS})|{_ORD_TENS}|{_ORD_TEENS}|{_ORD_UNITS})"
                rf"|(?:{_TENS})(?:[-\s](?:{_UNITS}))?|{_TEENS}|{_UNITS}|(?:one\s+)?hundred")
_ROMAN = r"(?=[MDCLXVI])M{0,4}(?:CM|CD|D?C{0,3})(?:XC|XL|L?X{0,3})(?:IX|IV|V?I{0,3})"
_NUMBERED_HEADING = re.compile(
    rf"(?P<kw>chapter|part|book|volume|canto|stave)\s+"
    rf"(?P<num>(?P<digits>[0-9]{{1,4}})|(?P<roman>{_ROMAN})|(?P<word>{_WORD_NUMBER}))"
    r"(?![\w'’-])(?P<rest>.*)", re.IGNORECASE)
_NAMED_HEADING = re.compile(
    r"(?P<kw>prologue|epilogue|preface|foreword|afterword|introduction|appendix)"
    r"(?:\s+(?P<num>(?-i:[A-Z0-9]{1,3})))?(?![\w'’-])(?P<rest>\s*(?:[.:\-–—]\s*.*)?)", re.IGNORECASE)
_CJK_HEADING = re.compile(
    r"(?P<kw>第\s*(?P<num>[0-9０-９〇零一二三四五六七八九十百千两兩]+)\s*(?P<unit>[回章节節卷部篇集幕]))"
    r"(?P<rest>(?:[\s:：、.．·].*)?)")
_REST_SEPARATOR = re.compile(r"\s*[.:;,)\]\-–—]")
_REST_TITLE = re.compile(r"\s+[\"“‘'(\[]?(?=\w)")
_BARE_REST = re.compile(r"[\s.:\-–—]*")
_WRAPPED_LINE = re.compile(r"[\w,;\-–—]\s*$")  # a line that ends mid-sentence runs on into the next


@dataclass(frozen=True)
class _Heading:
    """A chapter-like line: what kind (for "two of a kind in a row is a table of contents"), which
    number (for "the real chapter repeats a contents entry"), its title, and whether it has only a
    number (so that a title line may follow it)."""

    kind: str
    key: str
    title: str
    bare: bool


def _chapter_like(line: str, pattern: re.Pattern[str] | None) -> _Heading | None:
    text = line.strip()
    if not text or len(text) > _HEADING_MAX_CHARS:
        return None
    if pattern is not None and pattern.fullmatch(text):
        return _Heading("pattern", _collapse(text).casefold(), _collapse(text), False)
    if text[0] == "第":
        m = _CJK_HEADING.fullmatch(text)
        if m:
            return _Heading(m["unit"], m["num"], _collapse(text), not m["rest"].strip())
        return None
    m = _NUMBERED_HEADING.fullmatch(text)
    if m:
        rest = m["rest"]
        if rest.strip() and not _REST_SEPARATOR.match(rest) and not _title_start(rest):
            return None  # "Chapter 12 was long": prose, not a heading
        number = m["num"]
        if m["roman"] or (m["word"] and number.isupper()):
            number = number.upper() if m["roman"] else number.title()
        title = f"{_keyword(m['kw'])} {_collapse(number)}{_collapse_rest(rest)}"
        return _Heading(m["kw"].casefold(), number.casefold(), title, bool(_BARE_REST.fullmatch(rest)))
    m = _NAMED_HEADING.fullmatch(text)
    if m:
        number = f" {m['num']}" if m["num"] else ""
        title = f"{_keyword(m['kw'])}{number}{_collapse_rest(m['rest'])}"
        return _Heading(m["kw"].casefold(), (m["num"] or "").casefold(), title,
                        bool(_BARE_REST.fullmatch(m["rest"])))
    return None


def _title_start(rest: str) -> bool:
    m = _REST_TITLE.match(rest)
    return m is not None and rest[m.end()].isupper()


def _keyword(word: str) -> str:
    return word.capitalize() if word.isupper() or word.islower() else word


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _collapse_rest(rest: str) -> str:
    """The part of a heading after its number, with its spacing made single ("I.     Down" -> "I. Down")."""
    if not rest.strip():
        return rest.strip()
    collapsed = _collapse(rest)
    return collapsed if not rest[0].isspace() else f" {collapsed}"


def _with_title_line(title: str, line: str) -> str:
    line = _collapse(line)
    return f"{title} {line}" if title and not title[-1].isalnum() else f"{title}: {line}"


def _is_contents_list(found: Sequence[_Heading | None]) -> bool:
    """Whether lines that are these headings (None: not chapter-like) are a contents list: two of a kind
    at least, and chapter-like lines at least half of them."""
    kinds = [h.kind for h in found if h is not None]
    return len(kinds) >= 2 and len(kinds) != len(set(kinds)) and 2 * len(kinds) >= len(found)


def _is_contents_title(line: str) -> bool:
    text = line.strip()
    return 0 < len(text) <= 40 and skip_reason(text, text) == "table of contents"


# --- from lines to parts ----------------------------------------------------------------------------------

@dataclass
class _Head:
    """Lines ``start``..``end`` (exclusive) of the source open a part (or are a contents entry)."""

    start: int
    end: int
    title: str
    kind: str | None = None  # None: a heading that is not chapter-like (a Markdown "# The Storm")
    key: str | None = None
    toc_title: bool = False
    source_text: str = ""  # the heading as written (plain text: the words of the ``#`` heading)


@dataclass
class _Cut:
    start: int
    title: str | None  # None: from the part's first line
    semantic: tuple[str, ...] = ()
    heads: list[_Head] = field(default_factory=list)


def _cuts(heads: Sequence[_Head], has_text: Sequence[int], lo: int, hi: int) -> list[_Cut]:
    """Where parts start, from the heading-like lines and the prefix counts of lines with text.

    ``has_text[i]`` is how many lines before line ``i`` carry body text (headings excluded).
    """

    def text_between(a: int, b: int) -> bool:
        return has_text[b] - has_text[a] > 0

    runs: list[list[_Head]] = []
    for head in heads:
        if runs and not text_between(runs[-1][-1].end, head.start):
            runs[-1].append(head)
        else:
            runs.append([head])
    cuts: list[_Cut] = []
    if heads and text_between(lo, heads[0].start):
        cuts.append(_Cut(lo, None))
    elif not heads:
        return [_Cut(lo, None)]
    for index, run in enumerate(runs):
        following = runs[index + 1][0].start if index + 1 < len(runs) else hi
        kinds = [h.kind for h in run if h.kind is not None and not h.toc_title]
        is_toc = any(h.toc_title for h in run) or len(kinds) != len(set(kinds))
        if not is_toc:
            cuts.append(_Cut(run[0].start, _joined_title(run), heads=run))
            continue
        last = run[-1]
        earlier_keys = {(h.kind, h.key) for h in run[:-1] if not h.toc_title}
        entries = [h for h in run if not h.toc_title]
        last_is_chapter = (not last.toc_title and text_between(last.end, following)
                           and (len(entries) == 1 or (last.kind, last.key) in earlier_keys))
        toc = run[:-1] if last_is_chapter else run
        title = next((h.title for h in toc if h.toc_title), "Contents")
        cuts.append(_Cut(toc[0].start, title, ("toc",), heads=toc))
        if last_is_chapter:
            cuts.append(_Cut(last.start, last.title, heads=[last]))
        elif entries and text_between(last.end, following):  # a contents list, then an untitled part
            first_text = next(i for i in range(last.end, following) if has_text[i + 1] > has_text[i])
            cuts.append(_Cut(first_text, None))
    return cuts


def _joined_title(run: Sequence[_Head]) -> str:
    title = ""
    for head in run:
        title = head.title if not title else (f"{title} {head.title}" if not title[-1].isalnum()
                                              else f"{title}: {head.title}")
    return title


def _prefix_counts(flags: Sequence[bool]) -> list[int]:
    counts = [0]
    for flag in flags:
        counts.append(counts[-1] + flag)
    return counts


_WORD = re.compile(r"\w")


# --- metadata helpers -------------------------------------------------------------------------------------

_BY_LINE = re.compile(r"by\s+(?P<author>\S.{0,78})", re.IGNORECASE)
_CJK_TITLE_LINE = re.compile(r"《(?P<title>[^》]{1,60})》\s*(?P<author>\S.{0,30})?")


def _title_page(blocks: Sequence[Sequence[str]]) -> tuple[str, str | None] | None:
    """The title and author a front part shows as a title page ("Title" over "by Author", or
    "《书名》作者"), from its first blocks of lines."""
    for index, block in enumerate(blocks[:12]):
        if len(block) == 1 and index > 0:
            m = _BY_LINE.fullmatch(block[0].strip())
            previous = [line.strip() for line in blocks[index - 1]]
            if m and len(previous) <= 3 and sum(map(len, previous)) <= 150:
                return _collapse(" ".join(previous)), _collapse(m["author"])
        if block:
            m = _CJK_TITLE_LINE.fullmatch(block[0].strip())
            if m and len(block) <= 2:
                author = m["author"] or (block[1].strip() if len(block) == 2 else None)
                return m["title"].strip(), author
    return None


def _front_part(markdown_text: str, blocks: Sequence[Sequence[str]], title: str | None,
                author: str | None) -> tuple[str | None, str | None, bool]:
    """For the part before the first chapter: the book's title and author (those known, else what the part
    shows as a title page) and whether the part is a title page."""
    page = _title_page(blocks)
    if page and title is None:
        title, author = page[0], author or page[1]
    shown = ([page] if page else []) + ([(title, author)] if title else [])
    return title, author, any(is_title_page(markdown_text, *names) for names in shown)


def _year(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 1000 <= value <= 2999:
        return value
    if isinstance(value, datetime.date):
        return value.year
    if isinstance(value, str):
        m = re.search(r"\b(1[0-9]{3}|2[0-9]{3})\b", value)
        return int(m.group(1)) if m else None
    return None


def _text_value(value: object) -> str | None:
    if isinstance(value, str) and value.strip():
        return _collapse(value)
    if isinstance(value, list):
        names = [_text_value(v) for v in value]
        joined = ", ".join(n for n in names if n)
        return joined or None
    if isinstance(value, dict):
        return _text_value(value.get("name"))
    return None


def _paragraphs(lines: Sequence[str]) -> list[list[str]]:
    """Runs of non-blank lines."""
    blocks: list[list[str]] = [[]]
    for line in lines:
        if line.strip():
            blocks[-1].append(line)
        elif blocks[-1]:
            blocks.append([])
    return [block for block in blocks if block]


def _first_words(text: str) -> str:
    return _collapse(text)[:80].rstrip() or "Front matter"


def _span(start: int, end: int) -> str:
    return f"line {start + 1}" if end - start <= 1 else f"lines {start + 1}-{end}"


def _book(path: Path, *, parts: list[SourcePart], title: str | None, author: str | None, language: str | None,
          description: str | None, year: int | None, notes: list[str], body: str) -> SourceBook:
    chosen = api_language(language) if language else LANGUAGE_AUTO
    if language and chosen == LANGUAGE_AUTO:
        notes.append(f"the source's language {language!r} is not one the API reads; the book uses 'auto'")
    if not language:
        guess = guess_language(body)
        if guess:
            chosen = guess
            notes.append(f"the source declares no language; {guess} was recognised from the text (set "
                         "`language:` in book.yaml if that is wrong)")
    return SourceBook(title=title or path.stem, parts=tuple(parts), author=author, language=chosen,
                      description=description, year=year, notes=tuple(notes))


# --- plain text -------------------------------------------------------------------------------------------

_GUTENBERG_START = re.compile(r"\s*(?:\*{3}\s*START OF (?:THE|THIS) PROJECT GUTENBERG|\*END\*THE SMALL PRINT)",
                              re.IGNORECASE)
_GUTENBERG_END = re.compile(r"\s*(?:\*{3}\s*END OF (?:THE|THIS) PROJECT GUTENBERG|End of (?:the |this )?Project "
                            r"Gutenberg|\*{3}\s*START:? FULL LICEN[CS]E)", re.IGNORECASE)
_GUTENBERG_FIELD = re.compile(r"(?P<key>Title|Author|Language|Release [Dd]ate|Original publication)\s*:\s*"
                              r"(?P<value>.*)", re.IGNORECASE)
_GUTENBERG_BANNER = re.compile(r".*?Project Gutenberg(?:'s|’s)? E-?(?:Book|Text) of (?P<title>.+?)"
                               r"(?:, by (?P<author>.+))?", re.IGNORECASE)
_RULE_LINE = re.compile(r"[ \t]*(?:(?P<c>[*\-_~=])(?:[ \t]*(?P=c)){2,}|#)[ \t]*")
_ILLUSTRATION_START = re.compile(r"\s*\[Illustrations?\b", re.IGNORECASE)
_ILLUSTRATION = re.compile(r"\[Illustrations?(?:[:.][^\]]*)?\]", re.IGNORECASE)
# Gutenberg marks italics as _words_, also across a line break; such a pair is kept as emphasis.
_ITALIC = re.compile(r"(?<![\w\\])_(?=[^\s_])((?:[^_\n]|\n(?!\n))*?[^\s_\\])_(?!\w)")
_INLINE_SPECIAL = re.compile(r"[\\`*_\[{|~]|<(?!#)|&(?=#?\w+;)")  # "<#1.5#>" stays a pause marker
_LINE_START = re.compile(r"^([#>+\-]|\d{1,9}(?=[.)])|=(?==*[ \t]*$))", re.MULTILINE)
_KEPT_UNDERSCORE = "\x00"  # decode_source refuses NUL bytes, so the text cannot hold one


def _escape(text: str) -> str:
    """Plain ``text`` as Markdown that shows the same characters (Gutenberg italics stay emphasis)."""
    text = _ITALIC.sub(lambda m: f"{_KEPT_UNDERSCORE}{m.group(1)}{_KEPT_UNDERSCORE}", text)
    text = _INLINE_SPECIAL.sub(lambda m: "\\" + m.group(0), text)
    text = _LINE_START.sub(lambda m: f"{m.group(1)}\\" if m.group(1)[0].isdigit() else f"\\{m.group(1)}", text)
    return text.replace(_KEPT_UNDERSCORE, "_")


class _TextReader:
    def __init__(self, path: Path, text: str, options: ReadOptions) -> None:
        self.path = path
        self.lines = text.split("\n")
        self.options = options
        self.notes: list[str] = []
        self.meta: dict[str, str] = {}

    def book(self) -> SourceBook:
        lo, hi = self._gutenberg_body()
        kind = [""] * len(self.lines)  # "" blank, "text", "rule", "picture", "head"
        self._mark_lines(lo, hi, kind)
        heads = self._heads(lo, hi, kind)
        for head in heads:
            for i in range(head.start, head.end):
                kind[i] = "head"
        has_text = _prefix_counts([k == "text" for k in kind])
        cuts = _cuts(heads, has_text, lo, hi)
        pictures = kind.count("picture")
        if pictures:
            self.notes.append(f"{pictures} [Illustration] marker line{'s' if pictures != 1 else ''} dropped "
                              "(images are not read)")
        if not heads:
            self.notes.append("no chapter headings found: the whole text is one part (give --chapter-pattern "
                              "to cut it)")
        title, author = self.meta.get("title"), self.meta.get("author")
        parts = []
        for index, cut in enumerate(cuts):
            end = cuts[index + 1].start if index + 1 < len(cuts) else hi
            markdown = self._markdown(cut, end, kind)
            part_title = cut.title
            semantic = list(cut.semantic)
            if part_title is None:
                first = next((self.lines[i] for i in range(cut.start, end) if kind[i] == "text"), "")
                part_title = _first_words(first)
            if index == 0 and not cut.heads:
                title, author, page = _front_part(markdown, self._blocks(cut.start, end, kind), title, author)
                if page:
                    semantic.append("titlepage")
            parts.append(SourcePart(part_title, markdown, _span(cut.start, end),
                                    skip_reason(part_title, markdown, semantic=semantic)))
        body = "\n".join(self.lines[lo:hi])
        return _book(self.path, parts=parts, title=title, author=author, language=self.meta.get("language"),
                     description=None, year=_year(self.meta.get("release date", "")), notes=self.notes, body=body)

    def _gutenberg_body(self) -> tuple[int, int]:
        lines = self.lines
        hi = next((i for i, line in enumerate(lines) if _GUTENBERG_END.match(line)), len(lines))
        starts = [i for i in range(hi) if _GUTENBERG_START.match(lines[i])]
        lo = starts[-1] + 1 if starts else 0
        if starts:
            self._header_metadata(lines[:lo])
        if starts or hi < len(lines):
            removed = []
            if starts:
                removed.append(f"header ({_span(0, lo)})")
            if hi < len(lines):
                removed.append(f"footer and licence ({_span(hi, len(lines))})")
            self.notes.append(f"Project Gutenberg {' and '.join(removed)} removed: not part of the book")
        return lo, hi

    def _header_metadata(self, header: list[str]) -> None:
        key = None
        for line in header:
            m = _GUTENBERG_FIELD.fullmatch(line.strip())
            if m:
                key = m["key"].casefold()
                self.meta.setdefault(key, m["value"].strip())
                continue
            if key == "title" and line[:1].isspace() and line.strip():
                self.meta["title"] = f"{self.meta['title']} {line.strip()}".strip()
                continue
            key = None
            banner = _GUTENBERG_BANNER.fullmatch(line.strip(" \t*"))
            if banner:
                self.meta.setdefault("banner title", banner["title"].strip())
                if banner["author"]:
                    self.meta.setdefault("banner author", banner["author"].strip())
        for name in ("title", "author"):
            value = self.meta.get(name) or self.meta.get(f"banner {name}")
            if value:
                self.meta[name] = value
            else:
                self.meta.pop(name, None)

    def _mark_lines(self, lo: int, hi: int, kind: list[str]) -> None:
        lines = self.lines
        i = lo
        while i < hi:
            line = lines[i]
            if not line.strip():
                i += 1
                continue
            if _ILLUSTRATION_START.match(line):
                j = i  # an [Illustration: caption] may run over several lines up to its "]"
                while j < hi and "]" not in lines[j] and lines[j].strip():
                    j += 1
                if j < hi and "]" in lines[j] and _ILLUSTRATION.fullmatch(" ".join(lines[i:j + 1]).strip()):
                    for k in range(i, j + 1):
                        kind[k] = "picture"
                    i = j + 1
                    continue
            kind[i] = "rule" if _RULE_LINE.fullmatch(line) else ("text" if _WORD.search(line) else "mark")
            i += 1

    def _heads(self, lo: int, hi: int, kind: list[str]) -> list[_Head]:
        pattern = self.options.chapter_pattern
        heads: list[_Head] = []
        for start, block in self._block_spans(lo, hi, kind):
            found = [_chapter_like(line, pattern) for line in block]
            if len(block) >= 2 and _is_contents_list(found):
                for offset, h in enumerate(found):  # a contents list: one entry per line
                    if h is not None:
                        heads.append(_Head(start + offset, start + offset + 1, h.title, h.kind, h.key,
                                           source_text=block[offset]))
                    else:
                        kind[start + offset] = "mark"
                continue
            if len(block) == 1 and _is_contents_title(block[0]):
                heads.append(_Head(start, start + 1, _collapse(block[0]), toc_title=True, source_text=block[0]))
                continue
            taken: list[_Heading] = []
            for h in found:
                if h is None or any(t.kind == h.kind for t in taken):
                    break
                taken.append(h)
            if taken and len(block) > len(taken) + 1 and not taken[-1].bare \
                    and _WRAPPED_LINE.search(block[len(taken) - 1]):
                continue  # "Chapter 12. That was the end of it, and" runs on: a paragraph of prose
            for offset, h in enumerate(taken):
                head = _Head(start + offset, start + offset + 1, h.title, h.kind, h.key, source_text=block[offset])
                last = offset == len(taken) - 1
                rest = len(block) - len(taken)
                if last and h.bare and rest == 1 and len(block[-1].strip()) <= _TITLE_LINE_MAX_CHARS:
                    head.end += 1
                    head.title = _with_title_line(h.title, block[-1])
                    head.source_text = f"{block[offset].strip()} {block[-1].strip()}"
                heads.append(head)
        return heads

    def _block_spans(self, lo: int, hi: int, kind: list[str]) -> Iterable[tuple[int, list[str]]]:
        """Runs of consecutive lines with text (or marks), each with its first line's index."""
        start = None
        for i in range(lo, hi + 1):
            inside = i < hi and kind[i] in ("text", "mark")
            if inside and start is None:
                start = i
            elif not inside and start is not None:
                yield start, self.lines[start:i]
                start = None

    def _blocks(self, lo: int, hi: int, kind: list[str]) -> list[list[str]]:
        return [block for _, block in self._block_spans(lo, hi, kind)]

    def _markdown(self, cut: _Cut, end: int, kind: list[str]) -> str:
        heads = {h.start: h for h in cut.heads}
        as_heading = "toc" not in cut.semantic
        out: list[str] = []
        block: list[str] = []

        def flush() -> None:
            if block:
                out.append(_escape("\n".join(block)))
                block.clear()

        i = cut.start
        while i < end:
            k = kind[i]
            if i in heads:
                head = heads[i]
                if as_heading or head.toc_title:
                    flush()
                    out.append("# " + _escape(_collapse(head.source_text)).replace("#", "\\#"))
                else:  # a contents entry stays a line of its list
                    block.extend(self.lines[j].strip() for j in range(head.start, head.end))
                i = head.end
                continue
            if k in ("", "picture"):
                flush()
            elif k == "rule":
                flush()
                if not out or out[-1] != "* * *":
                    out.append("* * *")
            else:
                block.append(self.lines[i].strip())
            i += 1
        flush()
        return "\n\n".join(out) + "\n" if out else ""


# --- Markdown ---------------------------------------------------------------------------------------------

_FENCE_OPEN = re.compile(r" {0,3}(?P<fence>`{3,}|~{3,})(?P<info>.*)")
_ATX = re.compile(r" {0,3}(?P<marks>#{1,6})(?:[ \t]+(?P<text>.*?))?(?:[ \t]+#+)?[ \t]*")
_SETEXT = re.compile(r" {0,3}(?P<c>=+|-+)[ \t]*")
_THEMATIC = re.compile(r" {0,3}(?P<c>[-*_])(?:[ \t]*(?P=c)){2,}[ \t]*")
_NOT_PLAIN = re.compile(r" {0,3}(?:>|[-+*](?:[ \t]|$)|\d{1,9}[.)](?:[ \t]|$)|<|\|)")
_FRONT_MATTER_KEY = re.compile(r"[\w-]+[ \t]*:")
# What a paragraph that opens with a chapter-like line (or the word "Contents") can start with, markup
# and all: a cheap test before the reader reduces the line to its words.
_MAYBE_HEADING = re.compile(r"[\s*_#\[<]*(?:chapter|part|book|volume|canto|stave|prologue|epilogue|preface|"
                            r"foreword|afterword|introduction|appendix|第|contents|table of contents|"
                            r"目[录錄]|list of)", re.IGNORECASE)


class _MarkdownReader:
    def __init__(self, path: Path, text: str, options: ReadOptions) -> None:
        self.path = path
        self.lines = text.split("\n")
        self.options = options
        self.notes: list[str] = []
        self.meta: dict[str, object] = {}

    def book(self) -> SourceBook:
        lo = self._front_matter()
        hi = len(self.lines)
        headings, paragraphs, text_lines = self._scan(lo)
        title = _text_value(self.meta.get("title"))
        if title is None:
            title = next((_spoken(h.title) for h in headings if h.kind == "h1"), None)
        heads = self._heads(headings, paragraphs, title)
        head_lines = {i for h in heads for i in range(h.start, h.end)}
        has_text = _prefix_counts([i in text_lines and i not in head_lines for i in range(len(self.lines))])
        cuts = _cuts(heads, has_text, lo, hi)
        if not heads:
            self.notes.append("no chapter headings found: the whole text is one part (give --split-level or "
                              "--chapter-pattern to cut it)")
        author = _text_value(self.meta.get("author") or self.meta.get("authors") or self.meta.get("creator"))
        parts = []
        for index, cut in enumerate(cuts):
            end = cuts[index + 1].start if index + 1 < len(cuts) else hi
            markdown = "\n".join(self.lines[cut.start:end]).strip("\n")
            markdown = f"{markdown}\n" if markdown else ""
            part_title = cut.title
            semantic = list(cut.semantic)
            if part_title is None:
                first = next((self.lines[i] for i in range(cut.start, end) if i in text_lines), "")
                part_title = _first_words(_spoken(first) or first)
            if index == 0 and not cut.heads:
                title, author, page = _front_part(markdown, _paragraphs(self.lines[cut.start:end]), title, author)
                if page:
                    semantic.append("titlepage")
            parts.append(SourcePart(part_title, markdown, _span(cut.start, end),
                                    skip_reason(part_title, markdown, semantic=semantic)))
        language = self.meta.get("language") or self.meta.get("lang")
        description = _text_value(self.meta.get("description") or self.meta.get("abstract")
                                  or self.meta.get("summary"))
        year = _year(self.meta.get("year") or self.meta.get("date"))
        return _book(self.path, parts=parts, title=title, author=author,
                     language=language if isinstance(language, str) else None, description=description,
                     year=year, notes=self.notes, body="\n".join(self.lines[lo:]))

    def _front_matter(self) -> int:
        """Read the YAML front matter at the top, if any; the index of the first line after it."""
        lines = self.lines
        if not lines or lines[0].rstrip() != "---":
            return 0
        close = next((i for i in range(1, len(lines)) if lines[i].rstrip() in ("---", "...")), None)
        if close is None:
            return 0
        block = "\n".join(lines[1:close])
        try:
            data = yaml.safe_load(block) if block.strip() else {}
        except (yaml.YAMLError, ValueError, TypeError, RecursionError):
            data = None
        if isinstance(data, dict):
            self.meta = {str(k).casefold(): v for k, v in data.items()}
            self.notes.append(f"front matter ({_span(0, close + 1)}) read as the book's metadata, not as text")
            return close + 1
        first = next((line for line in lines[1:close] if line.strip()), "")
        if _FRONT_MATTER_KEY.match(first):
            self.notes.append(f"front matter ({_span(0, close + 1)}) is not valid YAML: ignored, not read aloud")
            return close + 1
        return 0  # a thematic break, not front matter

    def _scan(self, lo: int) -> tuple[list[_Head], list[tuple[int, int]], set[int]]:
        """The headings (kind "h1".."h6"), the top-level plain paragraphs (start, end) and the lines that
        carry text, outside fenced code, HTML comments and indented code."""
        lines = self.lines
        headings: list[_Head] = []
        paragraphs: list[tuple[int, int]] = []
        text_lines: set[int] = set()
        fence: str | None = None
        in_comment = False
        para_start: int | None = None
        para_plain = False

        def end_paragraph(i: int) -> None:
            nonlocal para_start
            if para_start is not None and para_plain:
                paragraphs.append((para_start, i))
            para_start = None

        for i in range(lo, len(lines)):
            line = lines[i]
            if fence is not None:
                if line.strip():
                    text_lines.add(i)
                stripped = line.strip()
                if len(line) - len(line.lstrip(" ")) <= 3 and stripped.startswith(fence) \
                        and set(stripped) == {fence[0]}:
                    fence = None
                continue
            if in_comment:
                text_lines.add(i)
                in_comment = "-->" not in line
                continue
            if not line.strip():
                end_paragraph(i)
                continue
            m = _FENCE_OPEN.fullmatch(line)
            if m and not (m["fence"][0] == "`" and "`" in m["info"]):
                end_paragraph(i)
                fence = m["fence"]
                continue
            if re.match(r" {0,3}<!--", line):
                end_paragraph(i)
                text_lines.add(i)
                in_comment = "-->" not in line.split("<!--", 1)[1]
                continue
            if para_start is None and line.startswith(("    ", "\t")):
                text_lines.add(i)  # indented code
                continue
            m = _ATX.fullmatch(line)
            if m:
                end_paragraph(i)
                text = (m["text"] or "").strip()
                headings.append(_Head(i, i + 1, text, f"h{len(m['marks'])}", source_text=line))
                text_lines.add(i)
                continue
            m = _SETEXT.fullmatch(line)
            if m and para_start is not None and para_plain:
                start = para_start
                para_start = None
                text = " ".join(lines[j].strip() for j in range(start, i))
                headings.append(_Head(start, i + 1, text, "h1" if m["c"][0] == "=" else "h2",
                                      source_text=text))
                continue
            if _THEMATIC.fullmatch(line):
                end_paragraph(i)
                continue
            if para_start is None:
                para_start = i
                para_plain = not _NOT_PLAIN.match(line)
            if _WORD.search(line):
                text_lines.add(i)
        end_paragraph(len(lines))
        return headings, paragraphs, text_lines

    def _heads(self, headings: list[_Head], paragraphs: list[tuple[int, int]], book_title: str | None) -> list[_Head]:
        pattern = self.options.chapter_pattern
        level = self.options.split_level
        heads: list[_Head] = []
        first_heading = True
        for h in headings:
            depth = int(h.kind[1]) if h.kind else 7
            spoken = _spoken(h.title)
            like = _chapter_like(spoken, None)
            if pattern is not None and (pattern.fullmatch(h.source_text.strip()) or pattern.fullmatch(spoken)):
                like = _Heading("pattern", spoken.casefold(), spoken, False)
            elif depth > level:
                first_heading = False
                continue
            if first_heading and depth < level and book_title and _spoken(book_title) == spoken:
                first_heading = False
                continue  # "# The Book" over "## Chapter 1" with --split-level 2: the title page
            first_heading = False
            heads.append(_Head(h.start, h.end, like.title if like else spoken, like.kind if like else None,
                               like.key if like else None, toc_title=_is_contents_title(spoken)))
        for start, end in paragraphs:
            block = self.lines[start:end]
            too_long = len(self.lines[start].strip()) > _HEADING_MAX_CHARS
            if too_long or (pattern is None and not _MAYBE_HEADING.match(block[0])):
                continue
            found = [_chapter_like(line, pattern) or _chapter_like(_spoken(line), pattern) for line in block]
            if len(block) > 2:
                if _is_contents_list(found):  # every line an entry, so that no line counts as text
                    heads.extend(_Head(start + i, start + i + 1, h.title if h else _spoken(block[i]),
                                       h.kind if h else None, h.key if h else None) for i, h in enumerate(found))
                continue
            if len(block) == 1 and _is_contents_title(_spoken(block[0])):
                heads.append(_Head(start, end, _spoken(block[0]), toc_title=True))
                continue
            first = found[0]
            if first is None:
                continue
            if len(block) == 2 and found[1] is not None:  # "PART ONE" over "CHAPTER 1", or two entries
                second = found[1]
                heads.append(_Head(start, start + 1, first.title, first.kind, first.key))
                heads.append(_Head(start + 1, end, second.title, second.kind, second.key))
                continue
            title = first.title
            if len(block) == 2:
                if not first.bare:
                    continue
                title = _with_title_line(first.title, _spoken(block[1]))
            heads.append(_Head(start, end, title, first.kind, first.key))
        heads.sort(key=lambda h: h.start)
        return heads


def _spoken(markdown_text: str) -> str:
    return _collapse(to_spoken_text(markdown_text, markdown=True, scene_break_s=0))
