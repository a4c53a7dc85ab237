"""Source texts: read them safely, validate pause markers, reduce Markdown to what is spoken.

The spoken text of a chapter is its paragraphs joined by blank lines (``"\\n\\n"``), each paragraph's
hard-wrapped lines joined into one, Markdown syntax reduced to the words it shows, scene breaks
(``***``, ``* * *``, ``---``, a lone ``#``) turned into a pause marker, and runs of pause markers with
nothing spoken between them merged into one (soundclone-api.md, "Pause markers": the API may reject
or ignore two markers in a row).
"""

from __future__ import annotations

import codecs
import re
import stat
from dataclasses import dataclass
from pathlib import Path

# soundclone-api.md: <#x#>, 0.01 <= x <= 99.99, at most two decimals.
MARKER_BODY = r"\d{1,2}(?:\.\d{1,2})?"  # the seconds inside <#...#>, as the API accepts them
MARKER_RE = re.compile(rf"<#({MARKER_BODY})#>")
PAUSE_MIN_S = 0.01
PAUSE_MAX_S = 99.99
# Anything that looks like an attempt at a marker, valid or not (used to report malformed ones).
_MARKER_ATTEMPT_RE = re.compile(r"<#(.*?)(#>|$|\n)")

_SCENE_BREAK_RE = re.compile(r"^[ \t]*(?:(?:\*[ \t]*){3,}|(?:-[ \t]*){3,}|(?:_[ \t]*){3,}|(?:~[ \t]*){3,}|#)[ \t]*$")
_BINARY_CONTROL = set(range(9)) | {11, 12} | set(range(14, 32)) | {127}


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
    controls = sum(1 for ch in sample if ord(ch) in _BINARY_CONTROL)
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


# Markdown reduction: what a listener should hear of the syntax is its text.
_MD_INLINE = [
    (re.compile(r"<!--.*?-->", re.DOTALL), ""),
    (re.compile(r"!\[([^\]]*)\]\([^)]*\)"), ""),                       # images are not read
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),                     # [text](url)
    (re.compile(r"\[([^\]]+)\]\[[^\]]*\]"), r"\1"),                    # [text][ref]
    (re.compile(r"<(?!#)/?[A-Za-z][^<>]*>"), ""),                      # HTML tags, never <#x#>
    (re.compile(r"`([^`]+)`"), r"\1"),
    (re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1"), r"\2"),
    (re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])"), r"\1"),
    (re.compile(r"(?<![\w_])_(?=\S)([^_\n]+?)(?<=\S)_(?![\w_])"), r"\1"),
    (re.compile(r"~~(?=\S)(.+?)(?<=\S)~~"), r"\1"),
]
_MD_ESCAPABLE = "\\`*_{}[]()#+-.!>~|<"
_MD_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!>~|<])")
_ESCAPE_BASE = 0xF0000  # a private-use plane stands in for escaped characters while rules run
_MD_ESCAPED = re.compile(f"[{chr(_ESCAPE_BASE)}-{chr(_ESCAPE_BASE + len(_MD_ESCAPABLE) - 1)}]")
_MD_LINE_PREFIX = re.compile(r"^[ \t]*(?:>[ \t]?)*(?:#{1,6}[ \t]+|[-*+][ \t]+(?=\S))?")
_MD_HEADING_TAIL = re.compile(r"[ \t]+#+[ \t]*$")
_MD_LINK_DEF = re.compile(r"^[ \t]*\[[^\]]+\]:[ \t]+\S+.*$")
_MD_FENCE = re.compile(r"^[ \t]*(```|~~~)")
_MD_ATX_HEADING = re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+\S")
_MD_SETEXT_UNDERLINE = re.compile(r"^[ \t]{0,3}(?:=+|-+)[ \t]*$")
_MD_LIST_ITEM = re.compile(r"^[ \t]{0,3}(?:[-*+]|\d{1,9}[.)])[ \t]+\S")


def _is_cjk(ch: str) -> bool:
    code = ord(ch)
    return (0x2E80 <= code <= 0x9FFF or 0xF900 <= code <= 0xFAFF or 0xFF00 <= code <= 0xFFEF
            or 0x20000 <= code <= 0x3FFFF or 0x3000 <= code <= 0x303F)


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


def _reduce_markdown_line(line: str) -> str:
    if _MD_LINK_DEF.match(line):
        return ""
    is_heading = bool(re.match(r"^[ \t]*#{1,6}[ \t]+", line))
    line = _MD_LINE_PREFIX.sub("", line, count=1)
    if is_heading:
        line = _MD_HEADING_TAIL.sub("", line)
    # A backslash-escaped character is literal: hide it from the emphasis and link rules.
    line = _MD_ESCAPE.sub(lambda m: chr(_ESCAPE_BASE + _MD_ESCAPABLE.index(m.group(1))), line)
    for pattern, repl in _MD_INLINE:
        line = pattern.sub(repl, line)
    return _MD_ESCAPED.sub(lambda m: _MD_ESCAPABLE[ord(m.group()) - _ESCAPE_BASE], line)


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
    """Reduce a decoded source to the chapter's spoken text (see the module docstring)."""
    paragraphs: list[str] = []
    current: list[str] = []
    in_fence = False

    def flush() -> None:
        if current:
            joined = _join_lines(current)
            if joined:
                paragraphs.append(joined)
            current.clear()

    for line in raw.split("\n"):
        if markdown and _MD_FENCE.match(line):
            in_fence = not in_fence
            flush()
            continue
        if markdown and not in_fence and current and _MD_SETEXT_UNDERLINE.match(line):
            flush()  # the lines above were a heading ("Title" over "=====" or "-----")
            continue
        if not in_fence and _SCENE_BREAK_RE.match(line):
            flush()
            if scene_break_s > 0:
                paragraphs.append(format_pause(min(scene_break_s, PAUSE_MAX_S)))
            continue
        if not line.strip():
            flush()
            continue
        if markdown and not in_fence:
            heading = bool(_MD_ATX_HEADING.match(line))
            if heading or _MD_LIST_ITEM.match(line):
                flush()  # a heading or a list item is a block of its own, never run into the text
            current.append(_reduce_markdown_line(line))
            if heading:
                flush()
            continue
        current.append(line)
    flush()
    text = "\n\n".join(paragraphs)
    return merge_markers(_markers_after_punctuation(text))


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
    import unicodedata

    plain = unicodedata.normalize("NFKC", spoken_only(text)).translate(_TYPOGRAPHY)
    plain = plain.replace("\u2026", "...").casefold()
    plain = re.sub(r"\s*-+\s*", "-", plain)
    return " ".join(plain.split())
