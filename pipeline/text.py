"""Source texts: read them safely, validate pause markers, reduce them to what is spoken.

The spoken text of a chapter is its paragraphs joined by blank lines (``"\\n\\n"``), each paragraph's
hard-wrapped lines joined into one, scene breaks (``***``, ``* * *``, ``---``, ``~~~``, a lone ``#``)
turned into a pause marker, and runs of pause markers with nothing spoken between them merged into
one (soundclone-api.md, "Pause markers": the API may reject or ignore two markers in a row). Markdown
is read with a CommonMark parser and reduced to the words it shows (the table above
:func:`_markdown_paragraphs` says what each element is spoken as). Every source is normalised first
(NFC; zero-width spaces, soft hyphens and bidi controls removed: they would be billed, never heard).
"""
from __future__ import annotations

import codecs
import functools
import re
import stat
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from markdown_it import MarkdownIt
    from markdown_it.ruler import RuleOptionsType
    from markdown_it.rules_block import StateBlock
    from markdown_it.rules_inline import StateInline
    from markdown_it.rules_inline.state_inline import Delimiter
    from markdown_it.token import Token

# soundclone-api.md: <#x#>, 0.01 <= x <= 99.99, at most two decimals.
MARKER_BODY = r"\d{1,2}(?:\.\d{1,2})?"  # the seconds inside <#...#>, as the API accepts them
MARKER_RE = re.compile(rf"<#({MARKER_BODY})#>")
PAUSE_MIN_S = 0.01
PAUSE_MAX_S = 99.99
# Anything that looks like an attempt at a marker, valid or not (used to report malformed ones).
_MARKER_ATTEMPT_RE = re.compile(r"<#(.*?)(#>|$|\n)")

_SCENE_BREAK_RE = re.compile(r"^[ \t]*(?:(?:\*[ \t]*){3,}|(?:-[ \t]*){3,}|(?:_[ \t]*){3,}|(?:~[ \t]*){3,}|#)[ \t]*$")
_BINARY_CONTROL_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class TextProblem:
    """A problem in a source text, located by 1-based line and column."""

    line: int | None
    column: int | None
    message: str


class SourceError(Exception):
    """Raised by this module; the manifest loader turns it into a located ``Problem``."""

    def __init__(self, problems: list[TextProblem]) -> None:
        super().__init__("; ".join(p.message for p in problems))
        self.problems = problems


def format_pause(seconds: float) -> str:
    """The marker for a pause, with at most two decimals, clamped to the API's 0.01-99.99 s."""
    value = min(max(round(seconds, 2), PAUSE_MIN_S), PAUSE_MAX_S)
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return f"<#{text}#>"


def decode_source(data: bytes, *, allow_empty: bool = False) -> str:
    """Decode a source file: UTF-8 (a BOM is fine), CRLF and CR become LF.

    Raises ``SourceError`` for binary data, UTF-16, invalid UTF-8 (naming the line and column, in
    characters, of the first bad byte) and, unless ``allow_empty``, text with nothing to read.
    """
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise SourceError([TextProblem(None, None, "is UTF-16 text; re-save it as UTF-8")])
    if b"\x00" in data:
        raise SourceError([TextProblem(None, None, "looks like a binary file (it contains NUL bytes); "
                                       "give a UTF-8 plain text or Markdown file")])
    data = data.removeprefix(codecs.BOM_UTF8)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        head = data[: exc.start].replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        line = head.count(b"\n") + 1
        column = len(head[head.rfind(b"\n") + 1:].decode("utf-8", errors="replace")) + 1
        raise SourceError([TextProblem(line, column, f"is not valid UTF-8 (byte 0x{data[exc.start]:02x}); "
                                       "re-save it as UTF-8")]) from exc
    sample = text[:65536]
    controls = len(_BINARY_CONTROL_RE.findall(sample))
    if sample and controls / len(sample) > 0.01:
        raise SourceError([TextProblem(None, None, "looks like a binary file (many control characters); "
                                       "give a UTF-8 plain text or Markdown file")])
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip() and not allow_empty:
        raise SourceError([TextProblem(None, None, "is empty; write the chapter text in it or remove the chapter")])
    return text


SOURCE_MAX_BYTES = 50_000_000  # a whole book is a few MB; more is not a chapter


def read_source(path: Path) -> str:
    """Read and decode a chapter source file (see :func:`decode_source`).

    Only a regular file of at most :data:`SOURCE_MAX_BYTES` is read: a pipe or a device would hang
    or never end.
    """
    try:
        info = path.stat()
    except FileNotFoundError as exc:
        raise SourceError([TextProblem(None, None, "does not exist; check the path (it is relative to "
                                       "the manifest file)")]) from exc
    except OSError as exc:
        raise SourceError([TextProblem(None, None, f"cannot be read ({exc.strerror})")]) from exc
    if stat.S_ISDIR(info.st_mode):
        raise SourceError([TextProblem(None, None, "is a folder, not a text file; give the chapter's .txt or "
                                       ".md file")])
    if not stat.S_ISREG(info.st_mode):
        raise SourceError([TextProblem(None, None, "is not a regular file (a pipe or a device?); give the "
                                       "chapter's .txt or .md file")])
    if info.st_size > SOURCE_MAX_BYTES:
        raise SourceError([TextProblem(None, None, f"is {info.st_size:,} bytes, over the {SOURCE_MAX_BYTES:,}-byte "
                                       "limit for one chapter; split it into chapters")])
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SourceError([TextProblem(None, None, f"cannot be read ({exc.strerror})")]) from exc
    return decode_source(data)


def check_markers(text: str) -> list[TextProblem]:
    """Every malformed or out-of-range ``<#x#>`` marker in ``text``, with line and column."""
    problems = []
    for match in _MARKER_ATTEMPT_RE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        column = match.start() - (text.rfind("\n", 0, match.start()) + 1) + 1
        inner, closer = match.group(1), match.group(2)
        if closer != "#>":
            problems.append(TextProblem(line, column, "pause marker '<#' is not closed with '#>'; "
                                        "write it as <#1.5#>"))
            continue
        if not re.fullmatch(r"\d+(?:\.\d+)?", inner):
            problems.append(TextProblem(line, column, f"pause marker '<#{inner}#>' is not a number of "
                                        "seconds; write it as <#1.5#>"))
            continue
        if "." in inner and len(inner.split(".")[1]) > 2:
            problems.append(TextProblem(line, column, f"pause marker '<#{inner}#>' has more than two "
                                        "decimals; round it, e.g. <#1.25#>"))
            continue
        value = float(inner)
        if not PAUSE_MIN_S <= value <= PAUSE_MAX_S:
            problems.append(TextProblem(line, column, f"pause marker '<#{inner}#>' is out of range (a pause "
                                        f"lasts {PAUSE_MIN_S} to {PAUSE_MAX_S} seconds); write it as "
                                        f"{format_pause(value)}"))
            continue
        if not MARKER_RE.fullmatch(match.group(0)):
            # e.g. <#099#>: in range, but the API's form has at most two digits before the point
            problems.append(TextProblem(line, column, f"pause marker '<#{inner}#>' has leading zeros; "
                                        f"write it as {format_pause(value)}"))
    return problems


# --------------------------------------------------------------------------------------------------
# Normalisation: characters that are billed but never heard (issue 13, item 11)

# Removed from every source, Markdown or plain, and from what entities decode to: the zero-width
# space and the word joiner, the byte-order mark (a BOM inside the text, where decoding does not
# look), soft hyphens, and the bidirectional controls (LRM, RLM, ALM; the embeddings and overrides
# U+202A-U+202E; the isolates U+2066-U+2069). The zero-width non-joiner (U+200C) and joiner (U+200D)
# stay: they change how Persian, Indic scripts and emoji sequences are written, and so how they read.
_INVISIBLE_RE = re.compile("[\u00ad\u061c\u200b\u200e\u200f\u202a-\u202e\u2060\u2066-\u2069\ufeff]")


def normalize_text(text: str) -> str:
    """``text`` without the invisible characters above, in Unicode NFC (composed) form."""
    if _INVISIBLE_RE.search(text):
        text = _INVISIBLE_RE.sub("", text)
    if not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    return text


def _is_cjk(ch: str) -> bool:
    code = ord(ch)
    return (0x2E80 <= code <= 0x9FFF or 0xF900 <= code <= 0xFAFF or 0xFF00 <= code <= 0xFFEF
            or 0x20000 <= code <= 0x3FFFF or 0x3000 <= code <= 0x303F)


_WORD_RUN_RE = re.compile(r"\w+", re.UNICODE)


def is_word_char_cjk(ch: str) -> bool:
    """A character that is a word of its own when texts are compared (kana, Han, Hangul syllables):
    QC's cues against a chunk, a sample's starting words, a chapter's title against its heading."""
    return ("\u3040" <= ch <= "\u30ff" or "\u3400" <= ch <= "\u9fff" or "\uac00" <= ch <= "\ud7af"
            or "\uf900" <= ch <= "\ufaff")


def comparable_tokens(text: str) -> list[tuple[str, int, int]]:
    """The comparable words of ``text`` (pause markers left out): (word, start, end), the word NFKC
    normalised and casefolded, the offsets ``text``'s own; a CJK character is a word."""
    def norm(word: str) -> str:
        return unicodedata.normalize("NFKC", word).casefold()

    out: list[tuple[str, int, int]] = []
    blanked = MARKER_RE.sub(lambda m: " " * len(m.group(0)), text)
    for match in _WORD_RUN_RE.finditer(blanked):
        word, start = match.group(0), match.start()
        run_start: int | None = None
        for offset, ch in enumerate(word):
            if is_word_char_cjk(ch):
                if run_start is not None:
                    out.append((norm(text[run_start:start + offset]), run_start, start + offset))
                    run_start = None
                out.append((norm(ch), start + offset, start + offset + 1))
            elif run_start is None:
                run_start = start + offset
        if run_start is not None:
            out.append((norm(text[run_start:match.end()]), run_start, match.end()))
    return out


def _join_lines(lines: list[str]) -> str:
    """Join a paragraph's hard-wrapped lines: a space between words, nothing between CJK characters."""
    out = ""
    for line in lines:
        line = line.strip()
        if not line:
            continue
        if out and not (_is_cjk(out[-1]) and _is_cjk(line[0])):
            out += " "
        out += line
    return out


def merge_markers(text: str) -> str:
    """Merge pause markers with nothing spoken between them into one marker at the first's place.

    The sum is capped at the API's maximum pause. A paragraph break the merged markers straddled is
    kept after the merged marker (unless one is already beside it); every marker is written in its
    shortest form.
    """
    matches = list(MARKER_RE.finditer(text))
    out: list[str] = []
    pos = 0
    i = 0
    while i < len(matches):
        first = matches[i]
        total = float(first.group(1))
        j = i
        while j + 1 < len(matches) and not text[matches[j].end(): matches[j + 1].start()].strip():
            j += 1
            total += float(matches[j].group(1))
        before = text[pos: first.start()]
        out.append(before)
        out.append(format_pause(min(total, PAUSE_MAX_S)))
        pos = matches[j].end()
        if j > i and "\n\n" in text[first.end(): matches[j].start()]:
            gap_before = before[len(before.rstrip()):]
            after = text[pos:]
            gap_after = after[: len(after) - len(after.lstrip())]
            if "\n\n" not in gap_before and "\n\n" not in gap_after and after.strip():
                out.append("\n\n")
                pos += len(gap_after)
        i = j + 1
    out.append(text[pos:])
    return "".join(out)


def to_spoken_text(raw: str, *, markdown: bool, scene_break_s: float) -> str:
    """Reduce a decoded source to the chapter's spoken text (see the module docstring).

    ``raw`` is normalised first (:func:`normalize_text`). Plain text is split into paragraphs at
    blank lines and scene-break lines; Markdown is read by :func:`_markdown_paragraphs`.
    """
    raw = normalize_text(raw)
    scene_break = format_pause(min(scene_break_s, PAUSE_MAX_S)) if scene_break_s > 0 else None
    paragraphs = _markdown_paragraphs(raw, scene_break) if markdown else _plain_paragraphs(raw, scene_break)
    return merge_markers(_markers_after_punctuation("\n\n".join(paragraphs)))


def _plain_paragraphs(raw: str, scene_break: str | None) -> list[str]:
    paragraphs: list[str] = []
    current: list[str] = []

    def flush() -> None:
        if current:
            joined = _join_lines(current)
            if joined:
                paragraphs.append(joined)
            current.clear()

    for line in raw.split("\n"):
        if _SCENE_BREAK_RE.match(line):
            flush()
            if scene_break:
                paragraphs.append(scene_break)
            continue
        if not line.strip():
            flush()
            continue
        current.append(line)
    flush()
    return paragraphs


# --------------------------------------------------------------------------------------------------
# The Markdown reader (issue 13, item 11): CommonMark (markdown-it-py, the only module that imports
# it) with tables, strikethrough, footnotes and pandoc attributes, reduced to what a listener hears.
#
# What each element is spoken as:
#   paragraph            its words, hard-wrapped lines joined (a space; nothing between CJK characters)
#   heading (ATX/setext) its words, as a paragraph of its own (at any indentation); a trailing pandoc
#                        {#id .class} dropped; an empty heading nothing
#   emphasis, strong, ~~strike~~, [span]{.attrs}: their words
#   link                 its text; an autolink <http://x> or <me@example.com> as written, without <>;
#                        [text][undefined] and [text](an address with spaces) their text, as before
#   image                nothing (no alt text)
#   `code`               its text; ```fenced``` code: its lines as text, paragraphs at blank lines
#   indented code        off: a novel indents paragraphs, not code, so indented lines are paragraphs
#   HTML                 comments (inline or whole blocks, one line or many) and <script>/<style>
#                        nothing; <br> and block-level tags a word boundary; other known HTML
#                        elements their text; anything else in angle brackets (x<y and y>z) as written
#   footnote reference   removed ([^1] and ^[inline notes])
#   footnote body        read at the end of the chapter, after a scene-break pause, each paragraph
#                        its own, in the order first referenced (unreferenced ones after, as defined)
#   table                each row a paragraph, its cells separated by commas
#   list                 each item a paragraph; an ordered item keeps its number as written ("2. ")
#   blockquote           its paragraphs
#   scene break          ***, * * *, ---, ___, ~~~ (a bare tilde line is a break, not a code fence)
#                        and a lone #, at any indentation: the scene-break pause marker
#   front matter         a leading --- block of YAML keys: nothing
#   pandoc ::: div fence nothing (the contents are read)
#   entities, escapes    decoded (&amp; -> &, \* -> *)
#   pause markers <#x#>  kept as written: no CommonMark construct starts with "<#" (a tag needs a
#                        letter, an autolink a scheme or an @), so the parser leaves them as text
#
# Compatibility with the line-based reader this replaces: a spoken paragraph still ends only at a
# blank source line, a heading, a list item, a scene break, a code fence or a table row; blocks the
# CommonMark grammar separates without a blank line (a paragraph and the blockquote under it, the
# paragraphs of a quote joined by a bare ">", text around a comment line) are run together as
# before, and a * between two letters or digits (2*3*4) is not emphasis. Sources that used none of
# the constructs the old reader got wrong read byte for byte as before (tests/test_markdown_reader.py
# lists every difference; tests/golden/spoken-text.json pins the old reading).

_SCENE_BREAK_BODY_RE = re.compile(r"(?:\*[ \t]*){3,}|(?:-[ \t]*){3,}|(?:_[ \t]*){3,}|(?:~[ \t]*){3,}|#[ \t]*")
# An indented scene-break or heading line, moved to the margin so that it ends the paragraph above it:
# CommonMark reads a line indented four columns past a paragraph as more of it (and would read the
# "#" aloud); the old reader took either at any indentation.
_INDENTED_BREAK_OR_HEADING_RE = re.compile(
    rf"^[ \t]+(?=(?:{_SCENE_BREAK_BODY_RE.pattern})$|#{{1,6}}[ \t]+\S)", re.MULTILINE)
# A line of nothing but (Unicode) white space is blank, as it always was: CommonMark counts only
# spaces and tabs, so an ideographic space (U+3000) alone on a line would otherwise join paragraphs.
_WHITESPACE_LINE_RE = re.compile(r"^[^\S\n]+$", re.MULTILINE)
_DIV_FENCE_RE = re.compile(r":{3,}[ \t]*(?:\{[^{}\n]*\}|[^\s{}:]+)?[ \t]*:*[ \t]*")
_FENCE_OPENING_RE = re.compile(r"(?:`{3,}|~{3,}).*")
_SETEXT_EQUALS_RE = re.compile(r"[ \t]*=+[ \t]*")
_COMMENT_OPENING_RE = re.compile(r"[ \t>]*<!--(?!.*-->)")
_LEADING_COMMENT_RE = re.compile(r"[ \t]*(<!--(?:(?!-->).)*-->)[ \t]*\S")
# A link reference definition ([id]: url) on a paragraph's second or later line (a footnote, [^1]:, is
# not one): CommonMark cannot end a paragraph with one, so it reads it as text.
_LINK_DEFINITION_RE = re.compile(r"[ \t]{0,3}\[(?!\^)[^\]\n]+\]:[ \t]*\S.*")
_FRONT_MATTER_MAX_LINES = 200
_FRONT_MATTER_KEY_RE = re.compile(r"[A-Za-z_][\w-]*[ \t]*:(?:[ \t].*)?")
_FRONT_MATTER_LINE_RE = re.compile(r"[A-Za-z_][\w-]*[ \t]*:(?:[ \t].*)?|[ \t]+\S.*|-(?:[ \t].*)?|#.*|[ \t]*")
_HEADING_ATTRIBUTES_RE = re.compile(
    r"[ \t]*\{[ \t]*(?:(?:[#.][^\s{}]+|[^\s{}=\"']+=(?:\"[^\"]*\"|'[^']*'|[^\s{}\"']+)|-)[ \t]*)+\}[ \t]*$")
_HTML_COMMENT_RE = re.compile(r"<!--.*?-->", re.DOTALL)
_UNPARSED_LINK_RE = re.compile(r"(!?)\[([^\]]+)\](?:\([^)]*\)|\[[^\]]*\])")
_HTML_RAW_TEXT_RE = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>", re.DOTALL | re.IGNORECASE)
_HTML_TAG_NAME_RE = re.compile(r"</?([A-Za-z][A-Za-z0-9-]*)")
_BLANK_LINE_SPLIT_RE = re.compile(r"\n[^\S\n]*\n")
# Block-level elements: a tag of one between two words is a word boundary, as <br> is.
_HTML_BOUNDARY_TAGS = frozenset((
    "address", "article", "aside", "blockquote", "body", "br", "caption", "center", "dd", "details", "dialog",
    "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6",
    "head", "header", "hr", "html", "legend", "li", "main", "menu", "nav", "ol", "p", "pre", "section",
    "summary", "table", "tbody", "td", "tfoot", "th", "thead", "title", "tr", "ul",
))
# Every other HTML element: its tags are dropped, its text read. A "tag" with another name (<y and y>,
# <Enter>) is not HTML but text, and is read as written.
_HTML_ELEMENTS = _HTML_BOUNDARY_TAGS | frozenset((
    "a", "abbr", "acronym", "area", "audio", "b", "base", "basefont", "bdi", "bdo", "big", "button", "canvas",
    "cite", "code", "col", "colgroup", "data", "datalist", "del", "dfn", "dir", "em", "embed", "font", "frame",
    "frameset", "i", "iframe", "img", "input", "ins", "kbd", "label", "link", "map", "mark", "meta", "meter",
    "noframes", "noscript", "object", "optgroup", "option", "output", "param", "picture", "progress", "q", "rb",
    "rp", "rt", "rtc", "ruby", "s", "samp", "script", "search", "select", "slot", "small", "source", "span",
    "strike", "strong", "style", "sub", "sup", "svg", "template", "textarea", "time", "tt", "track", "u", "var",
    "video", "wbr",
))
_MARKDOWN_MAX_NESTING = 100  # markdown-it skips whatever lies deeper than this; the preset says 20
_MAX_REPAIRS = 50


def _scene_break_rule(state: StateBlock, start_line: int, end_line: int, silent: bool) -> bool:
    begin, end = state.bMarks[start_line] + state.tShift[start_line], state.eMarks[start_line]
    if begin >= end or state.src[begin] not in "*-_~#" or not _SCENE_BREAK_BODY_RE.fullmatch(state.src, begin, end):
        return False
    if not silent:
        token = state.push("scene_break", "hr", 0)
        token.map = [start_line, start_line + 1]
    state.line = start_line + 1
    return True


def _div_fence_rule(state: StateBlock, start_line: int, end_line: int, silent: bool) -> bool:
    begin, end = state.bMarks[start_line] + state.tShift[start_line], state.eMarks[start_line]
    if not state.src.startswith(":::", begin) or not _DIV_FENCE_RE.fullmatch(state.src, begin, end):
        return False
    if not silent:
        state.push("div_fence", "div", 0).map = [start_line, start_line + 1]
    state.line = start_line + 1
    return True


_BLOCK_START_CHARS = frozenset("*-_~#:`>+[<|=0123456789")
_TABLE_DELIMITER_START_CHARS = frozenset("|-:")


def _terminator_chain(rules: list[Callable[[StateBlock, int, int, bool], bool]],
                      ) -> Callable[[StateBlock, int, int, bool], bool]:
    """The rules of one interruption chain as a single rule that first looks at the line's first
    character: only a line that can start a block is handed to the rules themselves."""

    def interrupts(state: StateBlock, line: int, end_line: int, silent: bool) -> bool:
        pos = state.bMarks[line] + state.tShift[line]
        if pos < state.eMarks[line] and state.src[pos] not in _BLOCK_START_CHARS:
            following = line + 1  # a table's header row may start with anything
            if following >= end_line:
                return False
            pos = state.bMarks[following] + state.tShift[following]
            if pos >= state.eMarks[following] or state.src[pos] not in _TABLE_DELIMITER_START_CHARS:
                return False
        return any(rule(state, line, end_line, silent) for rule in rules)

    return interrupts


def _code_span_rule(original: Callable[[StateInline, bool], bool]) -> Callable[[StateInline, bool], bool]:
    """markdown-it's code span, keeping the span's text as written: its line breaks (so that CJK
    lines join without a space, like every other line) and its edge spaces (as the old reader did)."""

    def rule(state: StateInline, silent: bool) -> bool:
        start, count = state.pos, len(state.tokens)
        if not original(state, silent):
            return False
        if not silent and len(state.tokens) > count and state.tokens[-1].type == "code_inline":
            token = state.tokens[-1]
            token.content = state.src[start + len(token.markup): state.pos - len(token.markup)]
        return True

    return rule


def _emphasis_rule(delimiter: type[Delimiter]) -> Callable[[StateInline, bool], bool]:
    """markdown-it's emphasis delimiters, except that a ``*`` or ``***`` between two letters or
    digits follows the rule CommonMark gives ``_``: it neither opens nor closes. So ``2*3*4`` stays
    as written, as it always did, and so do the ``*`` and ``***`` standing for missing or censored
    characters in CJK e-texts (二*名字, 奉***命), while ``**`` works anywhere (``**重要**的``)."""

    def rule(state: StateInline, silent: bool) -> bool:
        marker = state.src[state.pos]
        if silent or marker not in "_*":
            return False
        scanned = state.scanDelims(state.pos, marker == "*")
        if marker == "*" and scanned.length != 2:
            scanned = state.scanDelims(state.pos, False)
        for _ in range(scanned.length):
            state.push("text", "", 0).content = marker
            state.delimiters.append(delimiter(marker=ord(marker), length=scanned.length, token=len(state.tokens) - 1,
                                              end=-1, open=scanned.can_open, close=scanned.can_close))
        state.pos += scanned.length
        return True

    return rule


@functools.cache
def _markdown_parser() -> MarkdownIt:
    from markdown_it import MarkdownIt
    from markdown_it.rules_inline import backtick
    from markdown_it.rules_inline.state_inline import Delimiter
    from mdit_py_plugins.attrs import attrs_plugin
    from mdit_py_plugins.footnote import footnote_plugin

    md = MarkdownIt("commonmark", {"html": True, "maxNesting": _MARKDOWN_MAX_NESTING})
    md.enable(["table", "strikethrough"]).disable("code")
    md.use(footnote_plugin, move_to_end=False, always_match_refs=True)
    md.use(attrs_plugin, spans=True)
    interrupts: RuleOptionsType = {"alt": ["paragraph", "reference", "blockquote", "list"]}
    md.block.ruler.before("table", "scene_break", _scene_break_rule, interrupts)
    md.block.ruler.before("table", "div_fence", _div_fence_rule, interrupts)
    md.inline.ruler.at("backticks", _code_span_rule(backtick))
    md.inline.ruler.at("emphasis", _emphasis_rule(Delimiter))
    # Speed: a paragraph asks every block rule, at each of its lines, whether that line interrupts
    # it; in hard-wrapped prose that is most of the parsing time. A line can only start a block with
    # one of a few characters (or, for a table, over a delimiter row), so the other lines are
    # answered at once. The rule chains are final here: nothing changes the parser after this.
    ruler = md.block.ruler
    ruler.getRules("")  # compiles the chains
    chains = ruler.__cache__ or {}
    for name, rules in list(chains.items()):
        if name:
            chains[name] = [_terminator_chain(rules)]
    return md


def _without_front_matter(text: str) -> str:
    """``text`` without a leading YAML front-matter block: ``---`` on the first line, then ``key:``
    lines (with indented, ``- item`` and comment lines), closed by ``---`` or ``...``. Anything else
    (a chapter that opens with a scene break, say) is left alone."""
    first_end = text.find("\n")
    if first_end < 0 or text[:first_end].rstrip(" \t") != "---":
        return text
    pos, keys = first_end + 1, False
    for _ in range(_FRONT_MATTER_MAX_LINES):
        end = text.find("\n", pos)
        line = text[pos:] if end < 0 else text[pos:end]
        if keys and line.rstrip(" \t") in ("---", "..."):
            return "" if end < 0 else text[end + 1:]
        if not keys and line.strip() and not _FRONT_MATTER_KEY_RE.fullmatch(line):
            return text
        if keys and not _FRONT_MATTER_LINE_RE.fullmatch(line):
            return text
        keys = keys or bool(line.strip())
        if end < 0:
            return text
        pos = end + 1
    return text


def _markdown_paragraphs(raw: str, scene_break: str | None) -> list[str]:
    text = _INDENTED_BREAK_OR_HEADING_RE.sub("", _WHITESPACE_LINE_RE.sub("", _without_front_matter(raw)))
    md = _markdown_parser()
    for _ in range(_MAX_REPAIRS + 1):  # one repair pass fixes all it sees; each reveals few more
        env: dict[str, Any] = {}
        tokens = md.parse(text, env)
        repaired = _repair_unclosed(text, tokens)
        if repaired is None or repaired == text:
            break
        text = repaired
    lines = text.split("\n")
    reader = _SpokenMarkdown(md, env, lines, scene_break)
    reader.read(tokens, reader.blocks)
    return reader.paragraphs()


def _repair_unclosed(text: str, tokens: Sequence[Token]) -> str | None:
    """The source repaired where CommonMark would read it otherwise than its writer (and the old
    reader) meant, or None when there is nothing to repair.

    A code fence or an HTML comment that is never closed runs to the end of the document: the rest
    of the chapter would be read as code, or not read at all. An unclosed fence's opening line is
    dropped (the rest is read as Markdown); an unclosed comment ends at the next blank line (an
    editor's note is not read, the chapter is). A link reference definition on the line under a
    paragraph would be read aloud as part of it: it moves to the end. A comment in front of a line's
    text makes the line an HTML block: the comment goes, the line stays text.
    """
    lines: list[str] | None = None
    definitions: list[str] = []
    for token in tokens:
        if token.map is None:
            continue
        first, last = token.map
        if token.type == "inline" and "]:" in token.content:
            for n, line in enumerate(token.content.split("\n")):
                if n and _LINK_DEFINITION_RE.fullmatch(line) and not _markdown_parser().parse(line):
                    lines = lines or text.split("\n")
                    at = lines[first + n].find(line.strip())
                    if at >= 0:
                        lines[first + n] = lines[first + n][:at] + "<!---->"  # nothing, not a blank line
                        definitions.append(line.strip())
        elif token.type == "fence":
            content_lines = token.content.count("\n") + (bool(token.content) and not token.content.endswith("\n"))
            if last - first != content_lines + 2:  # no closing fence line
                lines = lines or text.split("\n")
                lines[first] = _FENCE_OPENING_RE.sub("", lines[first], count=1)
        elif token.type == "html_block" and token.content.lstrip().startswith("<!--"):
            if "-->" not in token.content:  # the comment ends with its paragraph, at the next blank line
                lines = lines or text.split("\n")
                _close_comments(lines, first)
            elif last - first == 1 and (comment := _LEADING_COMMENT_RE.match(token.content)):
                # "<!-- note --> Text": the line is text with a comment in front, as it was to the old
                # reader, and may be part of a paragraph or a heading; to CommonMark it is an HTML block.
                lines = lines or text.split("\n")
                lines[first] = lines[first].replace(comment.group(1), "", 1)
    if lines is None:
        return None
    return "\n".join(lines) + "".join(f"\n\n{definition}" for definition in definitions)


def _close_comments(lines: list[str], first: int) -> None:
    """Close the unclosed comment opening on ``lines[first]`` at the end of its paragraph, and, when no
    ``-->`` follows anywhere, every later one too (it swallowed them: closing them now saves a parse
    for each)."""
    every = not any("-->" in line for line in lines[first + 1:])
    n = first
    while n < len(lines):
        end = next((k for k in range(n + 1, len(lines)) if not lines[k].strip()), len(lines))
        lines[end - 1] += "-->"
        if not every:
            return
        n = next((k for k in range(end, len(lines)) if _COMMENT_OPENING_RE.match(lines[k])), len(lines))


@dataclass(slots=True)
class _Block:
    """Spoken lines of one block, the source lines ``[start, end)`` it came from, and whether it runs
    into the block before / after it when no blank line separates them."""

    lines: list[str]
    start: int
    end: int
    joins_before: bool
    joins_after: bool


class _SpokenMarkdown:
    """Walks markdown-it's tokens and collects the spoken blocks (see the table above)."""

    def __init__(self, md: MarkdownIt, env: dict[str, Any], lines: list[str], scene_break: str | None) -> None:
        self.md = md
        self.env = env
        self.lines = lines
        self.scene_break = scene_break
        self.blocks: list[_Block] = []
        self.notes: dict[str, list[_Block]] = {}  # footnote label -> its body, in definition order
        self.note_refs: list[str] = []  # labels (^id for an inline note) in the order first referenced
        self.item_fresh = False  # inside a list item that has no spoken block yet
        self.item_prefix = ""  # the ordered-list number(s) its first block starts with

    # -- blocks ------------------------------------------------------------------------------------

    def add(self, into: list[_Block], lines: list[str], where: list[int] | None, *, joins: bool) -> None:
        start, end = where if where else (-1, -1)
        joins_before = joins and not self.item_fresh
        if self.item_fresh:
            if self.item_prefix and lines:
                lines[0] = self.item_prefix + lines[0]
            self.item_fresh, self.item_prefix = False, ""
        into.append(_Block(lines, start, end, joins_before and where is not None, joins and where is not None))

    def add_break(self, into: list[_Block], where: list[int] | None) -> None:
        start, end = where if where else (-1, -1)
        into.append(_Block([self.scene_break] if self.scene_break else [], start, end, False, False))

    def read(self, tokens: Sequence[Token], into: list[_Block]) -> None:
        i, count = 0, len(tokens)
        while i < count:
            token = tokens[i]
            kind = token.type
            if kind == "paragraph_open":
                self.paragraph(tokens[i + 1], into)
                i += 3
                continue
            if kind == "heading_open":
                heading = _HEADING_ATTRIBUTES_RE.sub("", _join_lines(self.inline_lines(tokens[i + 1])))
                self.add(into, [heading], token.map, joins=False)
                i += 3
                continue
            if kind == "list_item_open":
                self.item_fresh = True
                if token.markup in (".", ")"):
                    self.item_prefix += self.ordered_prefix(token)
            elif kind == "list_item_close":
                self.item_fresh, self.item_prefix = False, ""
            elif kind in ("fence", "code_block"):
                for part in _BLANK_LINE_SPLIT_RE.split(token.content):
                    self.add(into, part.split("\n"), token.map, joins=False)
            elif kind == "html_block":
                self.html_block(token, into)
            elif kind in ("scene_break", "hr"):
                self.add_break(into, token.map)
            elif kind == "table_open":
                i = self.table(tokens, i, into)
            elif kind == "footnote_reference_open":
                end = i + 1
                while end < count and tokens[end].type != "footnote_reference_close":
                    end += 1
                body = self.notes.setdefault(str(token.meta.get("label", "")), [])
                self.read(tokens[i + 1: end], body)
                i = end
            i += 1

    def paragraph(self, inline: Token, into: list[_Block]) -> None:
        lines = self.inline_lines(inline)
        if "=" not in inline.content:
            self.add(into, lines, inline.map, joins=True)
            return
        # A line of "=" that CommonMark reads as more of a lazy paragraph (under a list item, say)
        # was a heading underline to the old reader, which ended the paragraph there and read no "=".
        start = 0
        for n, line in enumerate(lines):
            if n and _SETEXT_EQUALS_RE.fullmatch(line):
                self.add(into, lines[start:n], inline.map, joins=not start)
                into[-1].joins_after = False
                start = n + 1
        if start < len(lines):
            self.add(into, lines[start:], inline.map, joins=not start)
            into[-1].joins_before = into[-1].joins_before and not start

    def ordered_prefix(self, item: Token) -> str:
        """An ordered item's number and delimiter, and the white space after them, as written."""
        marker = item.info + item.markup
        line = self.lines[item.map[0]] if item.map else ""
        at = line.find(marker)
        rest = line[at + len(marker):] if at >= 0 else ""
        spacing = rest[: len(rest) - len(rest.lstrip(" \t"))]
        return marker + (spacing if rest.strip() else " ")

    def html_block(self, token: Token, into: list[_Block]) -> None:
        content = _HTML_RAW_TEXT_RE.sub("", _HTML_COMMENT_RE.sub("", token.content))
        parts = [part for part in _BLANK_LINE_SPLIT_RE.split(content) if part.strip()]
        for n, part in enumerate(parts):
            self.add(into, self.inline_lines(self.md.parseInline(part, self.env)[0]), token.map, joins=True)
            if n:
                into[-1].joins_before = False
            if n < len(parts) - 1:
                into[-1].joins_after = False

    def table(self, tokens: Sequence[Token], i: int, into: list[_Block]) -> int:
        """Each row a block of its own, its cells' text separated by commas; returns table_close's index."""
        cells: list[str] = []
        row_map: list[int] | None = None
        while tokens[i].type != "table_close":
            token = tokens[i]
            if token.type == "tr_open":
                cells, row_map = [], token.map
            elif token.type == "inline":
                cell = _join_lines(self.inline_lines(token))
                if cell:
                    cells.append(cell)
            elif token.type == "tr_close":
                row = ""
                for cell in cells:
                    if row:
                        row += _cell_separator(row[-1], cell[0])
                    row += cell
                self.add(into, [row], row_map, joins=False)
            i += 1
        return i

    # -- inline ------------------------------------------------------------------------------------

    def inline_lines(self, inline: Token) -> list[str]:
        """The spoken lines of an inline token: its text split where the source broke the line."""
        children = inline.children or []
        lines: list[str] = []
        parts: list[str] = []
        for i, token in enumerate(children):
            kind = token.type
            if kind == "text":
                content = token.content
                if "](" in content or "][" in content:
                    content = _unparsed_links(content, inline.content)
                parts.append(content)
            elif kind in ("softbreak", "hardbreak"):
                lines.append("".join(parts))
                parts = []
            elif kind == "code_inline" or (kind == "html_inline" and _html_is_text(token.content)):
                first, *rest = token.content.split("\n")
                parts.append(first)
                for piece in rest:
                    lines.append("".join(parts))
                    parts = [piece]
            elif kind == "html_inline":
                name = _html_tag_name(token.content)
                if name in _HTML_BOUNDARY_TAGS and not _space_before(parts) and not _space_after(children, i):
                    lines.append("".join(parts))
                    parts = []
            elif kind == "footnote_ref":
                self.note_ref(token)
                if _space_before(parts) and _space_after(children, i, or_punctuation=True):
                    parts = ["".join(parts).rstrip()]
        lines.append("".join(parts))
        return lines

    def note_ref(self, token: Token) -> None:
        if "label" in token.meta:
            key = str(token.meta["label"])
        else:  # an inline note, ^[text]: the plugin keeps its tokens in the env
            from markdown_it.token import Token

            note_id = int(token.meta["id"])
            body = Token("inline", "", 0)
            body.children = self.env.get("footnotes", {}).get("list", {}).get(note_id, {}).get("tokens", [])
            key = f"^{note_id}"
            self.notes[key] = [_Block(self.inline_lines(body), -1, -1, False, False)]
        if key not in self.note_refs:
            self.note_refs.append(key)

    # -- result ------------------------------------------------------------------------------------

    def paragraphs(self) -> list[str]:
        blocks = self.blocks
        referenced = [key for key in self.note_refs if key in self.notes]
        unreferenced = [key for key in self.notes if key not in referenced]
        notes = [block for key in [*referenced, *unreferenced] for block in self.notes[key]]
        if any(line.strip() for block in notes for line in block.lines):
            blocks = [*blocks, _Block([self.scene_break] if self.scene_break else [], -1, -1, False, False)]
            for block in notes:
                block.joins_before = block.joins_after = False
                blocks.append(block)
        out: list[str] = []
        lines: list[str] = []
        previous: _Block | None = None
        for block in blocks:
            if (previous is not None and previous.joins_after and block.joins_before
                    and not self.blank_between(previous.end, block.start)):
                lines.extend(block.lines)
                previous = _Block(lines, previous.start, max(previous.end, block.end), True, block.joins_after)
                continue
            _append_paragraph(out, lines)
            lines, previous = list(block.lines), block
        _append_paragraph(out, lines)
        return out

    def blank_between(self, end: int, start: int) -> bool:
        return any(not self.lines[n].strip() for n in range(end, start))


def _append_paragraph(out: list[str], lines: list[str]) -> None:
    text = normalize_text(_join_lines(lines)).strip() if lines else ""
    if text:
        out.append(text)


def _unparsed_links(text: str, source: str) -> str:
    """``text`` with what CommonMark left as text but the writer meant as a link or an image reduced
    as the old reader did: ``[words](my file.png)`` (a space in the address) and ``[words][undefined]``
    are read as their words, such an image not at all. Brackets the source escaped stay."""

    def words(match: re.Match[str]) -> str:
        if not re.search(r"(?<!\\)" + re.escape(match.group(0)), source):
            return match.group(0)  # escaped in the source (\[...] or [...\]): literal brackets
        return "" if match.group(0).startswith("!") else match.group(2)

    return _UNPARSED_LINK_RE.sub(words, text)


def _cell_separator(before: str, after: str) -> str:
    if unicodedata.category(before).startswith("P"):
        return "" if _is_cjk(before) and _is_cjk(after) else " "
    return "，" if _is_cjk(before) and _is_cjk(after) else ", "


def _html_tag_name(tag: str) -> str:
    match = _HTML_TAG_NAME_RE.match(tag)
    return match.group(1).lower() if match else ""


def _html_is_text(tag: str) -> bool:
    """Whether an inline "tag" is really text (``<y and y>``), read as written."""
    if tag.startswith(("<!", "<?")):  # comments, declarations, CDATA, processing instructions
        return False
    name = _html_tag_name(tag)
    return name not in _HTML_ELEMENTS and "-" not in name  # a custom element's name has a hyphen


def _space_before(parts: list[str]) -> bool:
    for part in reversed(parts):
        if part:
            return part[-1].isspace()
    return True


def _space_after(children: Sequence[Token], i: int, *, or_punctuation: bool = False) -> bool:
    """Whether what follows inline token ``i`` starts with white space (or, with ``or_punctuation``,
    punctuation), a line break, or nothing at all."""
    for token in children[i + 1:]:
        if token.type in ("softbreak", "hardbreak"):
            return True
        if token.type in ("text", "code_inline") and token.content:
            first = token.content[0]
            return first.isspace() or (or_punctuation and unicodedata.category(first).startswith("P"))
    return True


# A marker glued before closing punctuation ("said<#1#>.") has nothing spoken after it in its
# sentence; the API may reject or ignore it (soundclone-api.md, "Pause markers"). The pause belongs
# after the punctuation.
_MARKER_BEFORE_PUNCTUATION_RE = re.compile(rf"(<#{MARKER_BODY}#>)([^\w\s<]+)(?=\s|$)")


def _markers_after_punctuation(text: str) -> str:
    return _MARKER_BEFORE_PUNCTUATION_RE.sub(r"\2\1", text)


def billed_chars(text: str) -> int:
    """Code points the API bills for: everything but pause markers (soundclone-api.md, "Billing")."""
    return len(text) - sum(len(m.group(0)) for m in MARKER_RE.finditer(text))


def marker_seconds(text: str) -> float:
    """The seconds of pause the markers in ``text`` add up to (a float, 0.0 without markers)."""
    return sum((float(m.group(1)) for m in MARKER_RE.finditer(text)), 0.0)


def spoken_only(text: str) -> str:
    """The text with pause markers removed (for cues and display)."""
    return MARKER_RE.sub("", text)


# Typographic variants a user types differently from the manuscript: curly and straight quotes,
# an ellipsis character and three dots, the dashes and a hyphen, any run of spaces.
_TYPOGRAPHY = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "`": "'", "\u00b4": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"', "\u00ab": '"', "\u00bb": '"',
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2015": "-", "\u2212": "-",
    "\u00a0": " ", "\u2009": " ", "\u202f": " ", "\u3000": " ",
})


def match_form(text: str) -> str:
    """``text`` reduced for matching what a user typed against the manuscript: pause markers removed,
    NFKC, quotes, dashes and ellipses made plain, case folded, whitespace collapsed (also around
    dashes, which manuscripts set both with and without spaces)."""
    plain = unicodedata.normalize("NFKC", spoken_only(text)).translate(_TYPOGRAPHY)
    plain = plain.replace("\u2026", "...").casefold()
    plain = re.sub(r"\s*-+\s*", "-", plain)
    return " ".join(plain.split())
