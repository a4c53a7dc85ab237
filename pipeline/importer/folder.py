"""The book folder ``audiobook init`` writes, and ``init --update``, which merges a revised manuscript into it.

    DIR/book.yaml               the manifest: metadata, a voice, one entry per part (skipped ones
                                commented out, one line each, so deleting one ``#`` restores them)
    DIR/manifest.schema.json    the JSON Schema book.yaml points at (editor completion)
    DIR/chapters/NN-<slug>.md   every part of the source, in reading order, skipped ones too
    DIR/cover.jpg|png           the source's cover, when it has one

Everything is computed in memory from a fully read :class:`~pipeline.importer.model.SourceBook` before
the first byte is written; a new folder is written as a temporary folder and renamed into place, files
in an existing one are replaced atomically one by one, and a file whose bytes would not change is not
touched (it keeps its mtime). Nothing here ever deletes a file: not a chapter file, not audio, not the
journal, not the build folder.

``--update`` (issue 13, item 7) edits book.yaml as text, entry by entry, so that everything outside the
chapter entries stays byte for byte as the user left it (comments, key order, added keys, voice
settings); ruamel.yaml's round-trip parser locates the entries and checks the result. Each part of the
revised source is matched to an existing entry (active or commented out) by this rule:

1. **Same title** (normalised as the classifier does: case, punctuation and spacing ignored): the first
   entry, in manifest order, not matched yet.
2. Otherwise **the same place with similar text**: among the unmatched entries between the entries of
   the nearest matched parts before and after it, the one whose chapter file shares the most
   three-word shingles with the part (Jaccard similarity at least :data:`SIMILAR_TEXT`).
3. Otherwise, when a chapter file that no entry names has the part's slug or similar text, the user
   deleted that entry: it stays deleted (the file is kept up to date).
4. Otherwise the part is **new**: a fresh id (``chNN`` after the highest one used, never reused) and a
   fresh file name; read aloud, or commented out when the classifier skips it.

A matched entry keeps its id, its file name and everything the user wrote in it; an entry the user
commented out (or left commented out) stays commented out, one the user un-commented stays a chapter.
An active entry whose part is gone is commented out with ``# removed from the source on <date>`` (its
chapter file, audio and journal are kept); one removed earlier that comes back is restored. Entries whose
``source`` is not in ``chapters/`` (or that have inline ``text``) are the user's own: never matched,
never removed, kept after the entry they followed.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import json
import os
import re
import shutil
import sys
import textwrap
import unicodedata
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline import fsio
from pipeline.errors import ConfigError, ManifestError, PipelineError, SourceFileError
from pipeline.importer.classify import normalise_title
from pipeline.importer.model import ReadOptions, SourceBook, SourcePart
from pipeline.models import LANGUAGE_AUTO, LANGUAGES_V1, LANGUAGES_V2_ONLY

MANIFEST_NAME = "book.yaml"
SCHEMA_NAME = "manifest.schema.json"
CHAPTERS_DIR = "chapters"
SCHEMA_LINE = f"# yaml-language-server: $schema={SCHEMA_NAME}"
# The simulator registers any voice a manifest names for `run --simulate`; the samples use this one.
SAMPLE_VOICE = "model_sample_narrator"
SLUG_MAX_BYTES = 60          # of a chapter file's slug (the NN- prefix and .md come on top)
FOLDER_SLUG_MAX_BYTES = 80   # of the default book folder's name
SIMILAR_TEXT = 0.5           # Jaccard similarity of three-word shingles that makes two texts "the same part"
SHINGLE_WORDS = 3
STATUSES = ("new", "changed", "unchanged", "removed")
_LANGUAGES = (LANGUAGE_AUTO, *LANGUAGES_V1, *LANGUAGES_V2_ONLY)


@dataclass(frozen=True)
class VoiceChoice:
    """The book's voice in a new manifest: a registry ``name``, a raw ``model_id``, or neither (the
    simulator's sample voice, :data:`SAMPLE_VOICE`)."""

    name: str | None = None
    model_id: str | None = None


@dataclass(frozen=True)
class PartRow:
    """One line of the import report: a part of the source (``index`` is its 1-based place in reading
    order) or, with ``--update``, an entry whose part is gone (``index`` None, status ``removed``).

    ``chapter``: read aloud (an active manifest entry); otherwise ``skip_reason`` says why not.
    ``file``: the chapter file, relative to the book folder. ``status``: one of :data:`STATUSES`
    (a fresh import reports every part ``new``).
    """

    index: int | None
    id: str | None
    title: str
    chars: int
    chapter: bool
    skip_reason: str | None
    file: str
    origin: str | None
    status: str


@dataclass(frozen=True)
class ImportResult:
    """What ``init`` did: the folder, the manifest, the source's metadata, one row per part, notes for
    the user, and the files written (unchanged files are not rewritten)."""

    folder: Path
    manifest: Path
    book: SourceBook
    rows: tuple[PartRow, ...]
    notes: tuple[str, ...]
    written: tuple[Path, ...]
    updated: bool
    cover: str | None = None


# --- names ---------------------------------------------------------------------------------------

_APOSTROPHES = re.compile(r"['’ʼ]")
_NOT_WORD = re.compile(r"[^\w]+", re.UNICODE)


def file_slug(title: str, *, fallback: str = "chapter", max_bytes: int = SLUG_MAX_BYTES) -> str:
    """A file-name part from ``title``: lower case, accents off Latin letters ("Café" -> "cafe"), runs of
    anything but letters and digits -> "-", other scripts kept as they are ("第一回" stays), at most
    ``max_bytes`` bytes of UTF-8 (cut at a character); ``fallback`` when nothing is left."""
    kept: list[str] = []
    for ch in unicodedata.normalize("NFKD", _APOSTROPHES.sub("", title)):
        if unicodedata.combining(ch) and kept and kept[-1].isascii():
            continue  # an accent on a Latin letter
        kept.append(ch)
    text = unicodedata.normalize("NFC", "".join(kept)).casefold()
    slug = _NOT_WORD.sub("-", text).strip("-_")
    encoded = slug.encode("utf-8")
    if len(encoded) > max_bytes:
        slug = encoded[:max_bytes].decode("utf-8", errors="ignore").rstrip("-_")
    return slug or fallback


def default_folder(source: Path, book: SourceBook) -> Path:
    """Where ``init`` writes when no ``--out`` is given: a folder named after the title, beside SOURCE."""
    stem = file_slug(source.stem, fallback="audiobook", max_bytes=FOLDER_SLUG_MAX_BYTES)
    return source.parent / file_slug(book.title, fallback=stem, max_bytes=FOLDER_SLUG_MAX_BYTES)


# --- YAML text -----------------------------------------------------------------------------------

# A plain (unquoted) scalar that means the same text to YAML 1.1 and 1.2, in block and in flow context.
_PLAIN = re.compile(r"[^\W\d_][\w .'’!?()&/–—-]*")
_YAML_WORDS = {"y", "n", "yes", "no", "true", "false", "on", "off", "null", "~"}
_PRINTABLE = re.compile("[\t\n\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]")


def yaml_scalar(value: Any) -> str:
    """``value`` as a YAML scalar: plain when that is safe, else double-quoted with escapes."""
    if isinstance(value, bool) or type(value).__name__ == "ScalarBoolean":  # ruamel's anchored booleans are ints
        return "true" if value else "false"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        return repr(float(value))
    if value is None:
        return "null"
    text = str(value)
    if _PLAIN.fullmatch(text) and text == text.rstrip() and text.casefold() not in _YAML_WORDS:
        return text
    quoted = json.dumps(text, ensure_ascii=False)  # a JSON string is a YAML double-quoted scalar ...
    return "".join(ch if _PRINTABLE.fullmatch(ch) or ch in '"\\' else  # ... once YAML's unprintables are escaped
                   (f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08x}") for ch in quoted)


def yaml_flow(value: Any) -> str:
    """``value`` (mappings, lists and scalars) as one line of YAML flow style."""
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{yaml_scalar(k)}: {yaml_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(yaml_flow(v) for v in value) + "]"
    return yaml_scalar(value)


def _commented_entry(entry: Mapping[str, Any], *, dash: int, reason: str) -> str:
    """A chapter entry commented out on one line so that deleting its one ``#`` restores it: the ``#``
    stands one column before the dash of the active entries, followed by a space."""
    prefix = " " * (dash - 1) + "# " if dash else "#"
    return f"{prefix}- {yaml_flow(entry)}  # {reason}\n"


def _active_entry(entry: Mapping[str, Any], *, dash: int, indent: int) -> list[str]:
    first, *rest = entry.items()
    lines = [f"{' ' * dash}- {yaml_scalar(first[0])}: {yaml_flow(first[1])}\n"]
    lines += [f"{' ' * indent}{yaml_scalar(key)}: {yaml_flow(value)}\n" for key, value in rest]
    return lines


# --- a fresh import ------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Planned:
    """A part with the entry and file ``init`` gives it."""

    index: int
    part: SourcePart
    id: str
    title: str
    file: str

    @property
    def entry(self) -> dict[str, str]:
        return {"id": self.id, "title": self.title, "source": self.file}


def _number_width(count: int) -> int:
    return max(2, len(str(count)))


def _title(part: SourcePart, index: int) -> str:
    return " ".join(part.title.split()) or f"Part {index}"


def _chapter_bytes(part: SourcePart) -> bytes:
    return (part.markdown.strip("\n") + "\n").encode("utf-8")


def _plan_fresh(book: SourceBook) -> list[_Planned]:
    width = _number_width(len(book.parts))
    planned = []
    for index, part in enumerate(book.parts, start=1):
        title = _title(part, index)
        planned.append(_Planned(index, part, f"ch{index:0{width}d}", title,
                                f"{CHAPTERS_DIR}/{index:0{width}d}-{file_slug(title)}.md"))
    return planned


def _cover_file(book: SourceBook, notes: list[str]) -> tuple[str, bytes] | None:
    """The cover's file name and bytes, when the source has a JPEG or PNG one."""
    if book.cover is None:
        return None
    from pipeline.audio.tags import cover_data_problem

    data, kind = book.cover
    kind = {"jpeg": "jpg"}.get(kind.lower(), kind.lower())
    problem = cover_data_problem(data) if kind in ("jpg", "png") else f"is not a JPEG or PNG image ({kind})"
    if problem is None and not data.startswith(b"\xff\xd8\xff" if kind == "jpg" else b"\x89PNG"):
        problem = f"is not the {kind.upper()} image its name says"
    if problem is not None:
        notes.append(f"the source's cover {problem}; no cover was written: add `cover: FILE.jpg` to book.yaml "
                     "yourself")
        return None
    return f"cover.{kind}", data


def _metadata(book: SourceBook, notes: list[str]) -> dict[str, Any]:
    """The book-level keys a new manifest carries (only those the source has, and valid)."""
    out: dict[str, Any] = {"title": " ".join(book.title.split())}
    if book.author and book.author.strip():
        out["author"] = " ".join(book.author.split())
    if book.year is not None:
        if 0 <= book.year <= 9999:
            out["year"] = book.year
        else:
            notes.append(f"the source's year {book.year} is not a year the manifest takes (0-9999); left out")
    if book.description and book.description.strip():
        out["description"] = book.description.strip()
    if book.language in _LANGUAGES:
        out["language"] = book.language
    else:
        notes.append(f"the source's language {book.language!r} is not an API language name; `language: auto` "
                     "written (set it in book.yaml)")
        out["language"] = LANGUAGE_AUTO
    return out


def render_manifest(book: SourceBook, planned: Sequence[_Planned], *, voice: VoiceChoice, cover: str | None,
                    source_name: str, today: datetime.date, notes: list[str]) -> str:
    """The text of a new book.yaml: valid as written, with short commented hints."""
    meta = _metadata(book, notes)
    source_name = "".join(ch if ch.isprintable() else "?" for ch in source_name)  # it goes into a comment line
    lines = [SCHEMA_LINE,
             f"# Made by `audiobook init` from {source_name} on {today.isoformat()}. Check it: "
             "audiobook plan book.yaml",
             "# A revised manuscript: `audiobook init NEW-FILE --out THIS-FOLDER --update` updates the chapters",
             "# and keeps your edits here. Reference: `audiobook schema`, or the README's manifest table."]
    if not meta["title"]:
        meta["title"] = Path(source_name).stem or "Untitled"
    lines.append(f"title: {yaml_scalar(meta['title'])}")
    if "author" in meta:
        lines.append(f"author: {yaml_scalar(meta['author'])}")
    lines.append("# narrator: Your Name  # for the tags and the M4B")
    for key in ("year", "description"):
        if key in meta:
            lines.append(f"{key}: {yaml_scalar(meta[key])}")
    language = meta["language"]
    lines.append(f"language: {yaml_scalar(language)}" + ("  # the source does not say: set it (English, "
                                                         "Chinese, ...) if you know it" if language == LANGUAGE_AUTO
                                                         else ""))
    if cover:
        lines.append(f"cover: {cover}")
    lines.append("voice:")
    if voice.name:
        lines.append(f"  name: {yaml_scalar(voice.name)}  # from the voice registry (`audiobook voice list`)")
    elif voice.model_id:
        lines.append(f"  model_id: {yaml_scalar(voice.model_id)}")
    else:
        lines.append(f"  model_id: {SAMPLE_VOICE}  # the simulator's voice (`run --simulate`); a real one: "
                     "`audiobook voice create ... --name anna`, then `name: anna` here")
    if language in LANGUAGES_V2_ONLY:
        lines.append(f"  sound_version: v2  # {language} is read by v2 only")
    lines += ["  # speed: 1.0  # and emotion, vol, pitch; a chapter's own `voice:` may override any of them",
              "# subtitles: sentence  # off, sentence (the default) or word",
              "# pricing: {char_fee_per_10k: 0.50, voice_fee_per_task: 0.02, currency: USD}  # your prices: plan "
              "shows the cost",
              "# output: build/book  # where the audio goes (this is the default)",
              "chapters:"]
    if any(p.part.skip for p in planned):
        lines.append("  # Parts marked `skipped` are not read aloud; delete the `#` before one to read it.")
    text = "\n".join(lines) + "\n"
    for p in planned:
        if p.part.skip:
            text += _commented_entry(p.entry, dash=2, reason=f"skipped: {p.part.skip}")
        else:
            text += "".join(_active_entry(p.entry, dash=2, indent=4))
    return text


def _fresh(book: SourceBook, *, voice: VoiceChoice, source_name: str, today: datetime.date,
           notes: list[str]) -> tuple[dict[str, bytes], list[PartRow], str | None]:
    planned = _plan_fresh(book)
    if not any(p.part.skip is None for p in planned):
        reasons = sorted({p.part.skip or "" for p in planned})
        raise SourceFileError(source_name, f"has nothing to read aloud: all {len(planned)} part(s) were skipped "
                                           f"({', '.join(reasons)}); check the file, or --chapter-pattern")
    cover = _cover_file(book, notes)
    files = {p.file: _chapter_bytes(p.part) for p in planned}
    if cover:
        files[cover[0]] = cover[1]
    files[MANIFEST_NAME] = render_manifest(book, planned, voice=voice, cover=cover[0] if cover else None,
                                           source_name=source_name, today=today, notes=notes).encode("utf-8")
    rows = [PartRow(p.index, p.id, p.title, p.part.chars, p.part.skip is None, p.part.skip, p.file, p.part.origin,
                    "new") for p in planned]
    return files, rows, cover[0] if cover else None


# --- the existing manifest, as units of text -----------------------------------------------------

@dataclass
class _Unit:
    """A run of lines in the chapters list: one entry (active or commented out) with the comment lines
    just before it, or loose comment and blank lines."""

    lines: list[str]
    kind: str                     # active | commented | loose
    entry: dict[str, Any] | None = None
    marker: str | None = None     # for commented entries: skipped | removed | None (commented out by the user)
    reason: str | None = None     # the text after "skipped: "
    lead: list[str] = dataclasses.field(default_factory=list)
    own: bool = False             # an entry whose source is in chapters/ (matched against the parts)
    old_index: int = -1

    @property
    def title(self) -> str:
        assert self.entry is not None
        return str(self.entry.get("title") or self.entry.get("id"))

    @property
    def source(self) -> str | None:
        value = (self.entry or {}).get("source")
        return value if isinstance(value, str) else None


_MARK = re.compile(r"^.*\s#\s*(skipped|removed from the source)\b:?\s*(.*?)\s*$")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _is_blank(line: str) -> bool:
    return not line.strip()


def _is_comment(line: str) -> bool:
    return line.lstrip(" ").startswith("#")


def _uncomment(line: str) -> str:
    """The line without its first ``#`` and one space after it (as an editor comments lines out)."""
    rest = line[_indent(line) + 1:]
    return rest[1:] if rest.startswith(" ") else rest


def _commented_unit(lines: list[str], start: int, limit: int) -> tuple[int, dict[str, Any]] | None:
    """A commented-out entry starting at ``lines[start]``: (its end, its mapping), or None."""
    first = _uncomment(lines[start]).rstrip("\n")
    if not re.match(r"\s*-(\s|$)", first):
        return None
    dash = _indent(first)
    end = start + 1
    while end < limit and _is_comment(lines[end]) and not _is_blank(_uncomment(lines[end])) \
            and _indent(_uncomment(lines[end])) > dash:
        end += 1
    body = textwrap.dedent("".join(_uncomment(line).rstrip("\n") + "\n" for line in lines[start:end]))
    try:
        value = yaml.safe_load(body)
    except yaml.YAMLError:
        return None
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict) \
            and isinstance(value[0].get("id"), str):
        return end, value[0]
    return None


@dataclass
class _Existing:
    """book.yaml split for merging: the text before and after the chapters list, and the list as units."""

    head: list[str]
    units: list[_Unit]
    tail: list[str]
    dash: int
    indent: int
    data: Any


def _load_rt(text: str, display: str) -> Any:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    try:
        return YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{display}:{mark.line + 1}" if mark is not None else display
        raise ConfigError(f"{where}: is not valid YAML ({exc.problem or exc}); fix it, then run init --update "
                          "again") from None
    except YAMLError as exc:
        raise ConfigError(f"{display}: is not valid YAML ({exc}); fix it, then run init --update again") from None


def _split_existing(text: str, display: str, chapters_dir: Path) -> _Existing:
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    data = _load_rt(text, display)
    refuse = f"{display}: cannot merge the revised manuscript: "
    if not isinstance(data, CommentedMap) or "chapters" not in data:
        raise ConfigError(refuse + "it has no `chapters:` list; fix it, or re-import with --force (which "
                          "rewrites book.yaml without your edits)")
    chapters = data["chapters"] if data["chapters"] is not None else CommentedSeq()
    if not isinstance(chapters, CommentedSeq) or chapters.fa.flow_style():
        raise ConfigError(refuse + "`chapters` must be a block list (one `- id: ...` entry per chapter, as init "
                          "writes it); rewrite it so, or re-import with --force")
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    key_line = data.lc.key("chapters")[0]
    if _indent(lines[key_line]) != 0:
        raise ConfigError(refuse + "`chapters:` must start its line")
    later = [position[0] for position in data.lc.data.values() if position[0] > key_line]
    end = min(later) if later else len(lines)
    starts: dict[int, int] = {}  # line -> item index
    dash, indent = 2, 4
    for i in range(len(chapters)):
        line, column = chapters.lc.item(i)
        item_dash = lines[line].find("-")
        if not (key_line < line < end) or lines[line][:item_dash].strip() or lines[line][item_dash] != "-":
            raise ConfigError(refuse + f"chapters[{i}] (line {line + 1}) is not a `- ...` entry on its own line; "
                              "rewrite it so")
        if i == 0:
            dash, indent = item_dash, column
        elif item_dash != dash:
            raise ConfigError(refuse + f"chapters[{i}] (line {line + 1}) is indented unlike chapters[0]")
        starts[line] = i
    units: list[_Unit] = []
    loose: list[str] = []
    i = key_line + 1
    while i < end:
        line = lines[i]
        if i in starts:
            stop = i + 1
            while stop < end and stop not in starts and (_is_blank(lines[stop]) or _indent(lines[stop]) > dash):
                stop += 1
            item = chapters[starts[i]]
            entry = dict(item) if isinstance(item, CommentedMap) and isinstance(item.get("id"), str) else None
            units.append(_Unit(lines[i:stop], "active", entry, lead=loose))
            loose, i = [], stop
            continue
        if _is_comment(line) and _indent(line) <= dash:
            found = _commented_unit(lines, i, end)
            if found is not None:
                stop, entry = found
                while stop < end and _is_blank(lines[stop]):
                    stop += 1
                mark = _MARK.match(lines[i].rstrip("\n"))
                marker = None if mark is None else ("skipped" if mark.group(1) == "skipped" else "removed")
                units.append(_Unit(lines[i:stop], "commented", entry, marker, mark.group(2) if mark else None,
                                   lead=loose))
                loose, i = [], stop
                continue
        elif not _is_blank(line) and not _is_comment(line):
            raise ConfigError(refuse + f"line {i + 1} in the chapters list is not part of an entry; fix it")
        loose.append(line)
        i += 1
    if loose:
        units.append(_Unit(loose, "loose"))
    own_dir = chapters_dir.resolve()
    for index, unit in enumerate(u for u in units if u.entry is not None):
        unit.old_index = index
        source = unit.source
        unit.own = source is not None and "text" not in (unit.entry or {}) \
            and (chapters_dir.parent / source).resolve().parent == own_dir
    return _Existing(lines[:key_line + 1], units, lines[end:], dash, indent, data)


# --- matching a revised source against the manifest ----------------------------------------------

_LEADING_HEADING = re.compile(r"\A\s*#{1,6}[ \t][^\n]*\n")  # the title, which differs by definition
_TOKEN = re.compile(r"[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0003ffff]|\w+")


def _shingles(text: str) -> frozenset[tuple[str, ...]]:
    words = _TOKEN.findall(_LEADING_HEADING.sub("", text, count=1).casefold())
    if len(words) <= SHINGLE_WORDS:
        return frozenset({tuple(words)} if words else ())
    return frozenset(tuple(words[i:i + SHINGLE_WORDS]) for i in range(len(words) - SHINGLE_WORDS + 1))


def _jaccard(a: frozenset[tuple[str, ...]], b: frozenset[tuple[str, ...]]) -> float:
    if not a or not b:
        return 1.0 if a == b else 0.0
    return len(a & b) / len(a | b)


def text_similarity(a: str, b: str) -> float:
    """Jaccard similarity of the two texts' three-word shingles (a CJK character counts as a word): near 1
    for a chapter and its revision, near 0 for two chapters of one book."""
    return _jaccard(_shingles(a), _shingles(b))


def _read_bytes(path: Path) -> bytes | None:
    """The file's bytes, or None when there is no such file."""
    try:
        return path.read_bytes()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    except OSError as exc:
        raise fsio.storage_error(exc, path, doing="read") from exc


def _match(parts: Sequence[SourcePart], entries: Sequence[_Unit],
           shingles_of: Callable[[_Unit], frozenset[tuple[str, ...]]]) -> list[_Unit | None]:
    """For each part, the entry it continues (rules 1 and 2 of the module docstring), or None."""
    matched: list[_Unit | None] = [None] * len(parts)
    taken: set[int] = set()
    for i, part in enumerate(parts):
        name = normalise_title(_title(part, i + 1))
        entry = next((e for e in entries if e.old_index not in taken and normalise_title(e.title) == name), None)
        if entry is not None:
            matched[i] = entry
            taken.add(entry.old_index)
    for i, part in enumerate(parts):
        if matched[i] is not None:
            continue
        before = next(((j, m.old_index) for j in range(i - 1, -1, -1) if (m := matched[j]) is not None), (-1, -1))
        after = next((m.old_index for m in matched[i + 1:] if m is not None), sys.maxsize)
        expected = before[1] + i - before[0]  # the old place this part would have with nothing moved
        part_shingles = _shingles(part.markdown)
        scored = [(_jaccard(part_shingles, shingles_of(e)), -abs(e.old_index - expected), e) for e in entries
                  if e.old_index not in taken and before[1] < e.old_index < after]
        scored = [s for s in scored if s[0] >= SIMILAR_TEXT]
        if scored:
            best = max(scored, key=lambda s: s[:2])[2]
            matched[i] = best
            taken.add(best.old_index)
    return matched


def _arranged(units: Sequence[_Unit], placed: Sequence[_Unit]) -> list[_Unit]:
    """The chapters list's units: the placed ones in reading order, each followed by the units that
    followed it before (loose comments, the user's own entries, removed entries)."""
    placed_ids = {id(u) for u in placed}
    closing = [units[-1]] if units and units[-1].kind == "loose" else []  # what ends the list stays at its end
    units = units[:len(units) - len(closing)]
    leading: list[_Unit] = []
    follow: dict[int, list[_Unit]] = {}
    last: _Unit | None = None
    for unit in units:
        if id(unit) in placed_ids:
            last = unit
        else:
            (follow.setdefault(id(last), []) if last is not None else leading).append(unit)
    return [*leading, *(u for p in placed for u in (p, *follow.get(id(p), ()))), *closing]


class _Merge:
    """One ``--update``: the existing folder and manifest, the revised book, and what changes."""

    def __init__(self, book: SourceBook, folder: Path, *, today: datetime.date, notes: list[str]) -> None:
        self.book = book
        self.folder = folder
        self.today = today
        self.notes = notes
        self.manifest = folder / MANIFEST_NAME
        self.existing = _split_existing(_read_manifest_text(self.manifest), str(self.manifest), folder / CHAPTERS_DIR)
        self.entries = [u for u in self.existing.units if u.entry is not None]
        self.files: dict[str, bytes] = {}
        self.rows: list[PartRow] = []
        self._shingles: dict[int, frozenset[tuple[str, ...]]] = {}
        self.ids = {str(u.entry["id"]).casefold() for u in self.entries if u.entry is not None}
        numbers = [m.group(1) for i in self.ids if (m := re.fullmatch(r"ch(\d+)", i))]
        self.next_number = max((int(n) for n in numbers), default=0) + 1
        self.width = max(_number_width(len(book.parts)), *(len(n) for n in numbers), 2)
        self.named = {(folder / u.source).resolve() for u in self.entries if u.source}
        chapters = folder / CHAPTERS_DIR
        self.orphans = sorted(p for p in chapters.glob("*.md") if p.resolve() not in self.named) \
            if chapters.is_dir() else []
        self.taken_files = {str(p) for p in self.named} | {str(p.resolve()) for p in self.orphans}

    def shingles_of(self, unit: _Unit) -> frozenset[tuple[str, ...]]:
        if unit.old_index not in self._shingles:
            data = _read_bytes(self.folder / (unit.source or ""))
            self._shingles[unit.old_index] = _shingles(data.decode("utf-8", "replace") if data else "")
        return self._shingles[unit.old_index]

    def run(self) -> tuple[dict[str, bytes], list[PartRow], str | None]:
        own = [u for u in self.entries if u.own]
        placed: list[_Unit] = []
        for index, (part, unit) in enumerate(zip(self.book.parts, _match(self.book.parts, own, self.shingles_of),
                                                 strict=True), start=1):
            if unit is None:
                if self._deleted_by_user(index, part):
                    continue
                unit = self._new(index, part)
            else:
                self._continued(index, part, unit)
            placed.append(unit)
        placed_ids = {id(u) for u in placed}
        for unit in own:
            if id(unit) not in placed_ids and not (unit.kind == "commented" and unit.marker == "removed"):
                self._removed(unit)
        arranged = _arranged(self.existing.units, placed)
        text = "".join(self.existing.head) + "".join(line for u in arranged for line in u.lead + u.lines) \
            + "".join(self.existing.tail)
        _check_merged(text, str(self.manifest), [str((u.entry or {}).get("id")) for u in arranged
                                                 if u.kind == "active"])
        self.files[MANIFEST_NAME] = text.encode("utf-8")
        _metadata_notes(self.book, self.existing.data, self.notes)
        return self.files, self.rows, self._cover()

    def _status(self, relative: str, payload: bytes) -> str:
        """``unchanged`` when the file already holds ``payload``; else ``changed``, and it is to be written."""
        if _read_bytes(self.folder / relative) == payload:
            return "unchanged"
        self.files[relative] = payload
        return "changed"

    def _deleted_by_user(self, index: int, part: SourcePart) -> bool:
        """Rule 3: a chapter file no entry names is this part's (same slug or similar text)."""
        title = _title(part, index)
        part_shingles = _shingles(part.markdown)
        for orphan in self.orphans:
            same_name = re.sub(r"^\d+-", "", orphan.stem) == file_slug(title)
            if same_name or _jaccard(part_shingles, _shingles((_read_bytes(orphan) or b"").decode(
                    "utf-8", "replace"))) >= SIMILAR_TEXT:
                self.orphans.remove(orphan)
                relative = orphan.relative_to(self.folder).as_posix()
                status = self._status(relative, _chapter_bytes(part))
                self.rows.append(PartRow(index, None, title, part.chars, False, "not in book.yaml (its entry was "
                                         "deleted)", relative, part.origin, status))
                return True
        return False

    def _new(self, index: int, part: SourcePart) -> _Unit:
        """Rule 4: a new entry with a fresh id and file."""
        while f"ch{self.next_number:0{self.width}d}" in self.ids:
            self.next_number += 1
        new_id = f"ch{self.next_number:0{self.width}d}"
        self.ids.add(new_id)
        title = _title(part, index)
        relative = self._new_file(index, title)
        entry = {"id": new_id, "title": title, "source": relative}
        dash, indent = self.existing.dash, self.existing.indent
        if part.skip:
            unit = _Unit([_commented_entry(entry, dash=dash, reason=f"skipped: {part.skip}")], "commented", entry,
                         "skipped", part.skip)
        else:
            unit = _Unit(_active_entry(entry, dash=dash, indent=indent), "active", entry)
        self.files[relative] = _chapter_bytes(part)
        self.rows.append(PartRow(index, new_id, title, part.chars, part.skip is None, part.skip, relative,
                                 part.origin, "new"))
        return unit

    def _new_file(self, index: int, title: str) -> str:
        slug = file_slug(title)
        for n in itertools.count(1):
            relative = f"{CHAPTERS_DIR}/{index:0{self.width}d}-{slug}{'' if n == 1 else f'-{n}'}.md"
            resolved = str((self.folder / relative).resolve())
            if resolved not in self.taken_files and not (self.folder / relative).exists():
                self.taken_files.add(resolved)
                return relative
        raise AssertionError("unreachable")

    def _continued(self, index: int, part: SourcePart, unit: _Unit) -> None:
        """A matched entry: its file follows the source; its entry stays as the user left it (one this
        command commented out as removed comes back)."""
        assert unit.source is not None and unit.entry is not None
        status = self._status(unit.source, _chapter_bytes(part))
        entry_id = str(unit.entry["id"])
        if unit.kind == "commented" and unit.marker == "removed":
            unit.lines = _active_entry(unit.entry, dash=self.existing.dash, indent=self.existing.indent)
            unit.kind, unit.marker, status = "active", None, "new"
            self.notes.append(f"{entry_id} ({unit.title}) is back in the source: its entry is restored")
        active = unit.kind == "active"
        reason = None if active else (unit.reason or part.skip) if unit.marker == "skipped" \
            else "commented out in book.yaml"
        self.rows.append(PartRow(index, entry_id, unit.title, part.chars, active, reason, unit.source, part.origin,
                                 status))
        title = _title(part, index)
        if normalise_title(unit.title) != normalise_title(title):
            self.notes.append(f"{entry_id}: the source now titles it {title!r}; book.yaml keeps {unit.title!r}")

    def _removed(self, unit: _Unit) -> None:
        """An entry whose part is gone: commented out, dated; its file (and audio) kept."""
        assert unit.entry is not None
        reason = f"removed from the source on {self.today.isoformat()}"
        if unit.kind == "active" or unit.marker == "skipped":
            unit.lines = [_commented_entry(unit.entry, dash=self.existing.dash, reason=reason)]
            unit.kind, unit.marker = "commented", "removed"
        data = _read_bytes(self.folder / (unit.source or ""))
        chars = len(data.decode("utf-8", "replace")) if data else 0
        self.rows.append(PartRow(None, str(unit.entry["id"]), unit.title, chars, False, reason, unit.source or "",
                                 None, "removed"))

    def _cover(self) -> str | None:
        cover = _cover_file(self.book, self.notes)
        if cover is None:
            return None
        name, data = cover
        self.files[name] = data
        current = self.existing.data.get("cover")
        if current != name:
            had = "no cover" if current is None else f"cover: {current}"
            self.notes.append(f"the source's cover is in {name}; book.yaml has {had}: set `cover: {name}` to use it")
        return name


def _read_manifest_text(path: Path) -> str:
    data = _read_bytes(path)
    if data is None:
        raise ConfigError(f"{path}: is gone; nothing to update (run init without --update to make the folder)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: is not UTF-8 text ({exc.reason}); fix it, or re-import with --force") from None


def _check_merged(text: str, display: str, expected: list[str]) -> None:
    """The merged manifest parses and lists exactly the active entries expected, in order."""
    if not expected:
        raise ConfigError(f"{display}: after the update no chapter would be read aloud (every part of the revised "
                          "source is skipped or commented out); nothing written")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{display}: merging the revised manuscript would make invalid YAML ({exc}); nothing "
                          "written. Move anchors (&name) out of chapter entries, or re-import with --force") from None
    got = [str(c.get("id")) if isinstance(c, dict) else None for c in (data or {}).get("chapters") or []]
    if got != expected:
        raise ConfigError(f"{display}: merging the revised manuscript would list chapters {got} instead of "
                          f"{expected}; nothing written. Re-import with --force, or edit book.yaml by hand")


def _metadata_notes(book: SourceBook, data: Any, notes: list[str]) -> None:
    differ = []
    for key, value in (("title", book.title), ("author", book.author), ("year", book.year),
                       ("language", book.language if book.language != LANGUAGE_AUTO else None)):
        if value not in (None, "") and data.get(key) != value:
            differ.append(f"{key} {value!r}")
    if differ:
        notes.append("the revised source says " + ", ".join(differ) + "; book.yaml keeps its own (edit it to "
                     "change them)")


# --- writing -------------------------------------------------------------------------------------

def _schema_bytes() -> bytes:
    from pipeline.manifest import json_schema

    return (json.dumps(json_schema(), ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def _write_new_folder(folder: Path, files: Mapping[str, bytes]) -> list[Path]:
    """Write ``files`` into a temporary folder beside ``folder`` and rename it into place."""
    fsio.ensure_dir(folder.parent)
    tmp = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}{fsio.PART_SUFFIX}")
    try:
        for relative, data in files.items():
            target = tmp / relative
            fsio.ensure_dir(target.parent)
            try:
                target.write_bytes(data)
            except OSError as exc:
                raise fsio.storage_error(exc, folder / relative, doing="write") from exc
        try:
            os.rename(tmp, folder)
        except OSError as exc:
            raise fsio.storage_error(exc, folder, doing="create the folder") from exc
        fsio.fsync_dir(folder.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)  # our own temporary folder, never the user's
    return [folder / relative for relative in files]


def _write_changed(folder: Path, files: Mapping[str, bytes]) -> list[Path]:
    """Replace, atomically one by one, the files whose bytes differ; book.yaml last."""
    written = []
    for relative in sorted(files, key=lambda r: r == MANIFEST_NAME):
        target = folder / relative
        if _read_bytes(target) != files[relative]:
            fsio.write_atomic(target, files[relative])
            written.append(target)
    return written


def write_folder(book: SourceBook, folder: Path, *, voice: VoiceChoice = VoiceChoice(), update: bool = False,
                 force: bool = False, source_name: str = "the manuscript", today: datetime.date | None = None,
                 voice_resolver: Callable[[str], str | None] | None = None) -> ImportResult:
    """Write (or, with ``update``, merge) the book folder ``folder`` for ``book``.

    Refuses a folder that already has a book.yaml unless ``update`` or ``force`` (which rewrites the
    generated files and never deletes any file). ``voice_resolver`` checks a ``voice.name`` against the
    voice registry (an unknown name is a note: `plan` refuses the manifest until the voice exists).
    ``today`` dates the "removed from the source" comments. Raises :class:`ConfigError` for a refused
    folder or an unmergeable book.yaml; nothing is written then.
    """
    if update and force:
        raise ConfigError("--update and --force exclude each other: --update merges into book.yaml, --force "
                          "rewrites it")
    if update and (voice.name or voice.model_id):
        raise ConfigError("--voice and --model-id set the voice of a new book.yaml; --update keeps the voice "
                          "book.yaml has: edit its `voice:` instead")
    today = today or datetime.date.today()
    manifest = folder / MANIFEST_NAME
    exists = manifest.exists() or manifest.is_symlink()
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{folder}: is a file, not a folder; give another --out")
    if exists and not (update or force):
        raise ConfigError(f"{manifest} already exists: nothing written. Use --update to merge the revised "
                          "manuscript into it (your edits are kept), or --force to rewrite it")
    if update and not exists:
        raise ConfigError(f"{folder}: has no {MANIFEST_NAME} to update; check --out, or run init without --update "
                          "to make the folder")
    notes = list(book.notes)
    if update:
        files, rows, cover = _Merge(book, folder, today=today, notes=notes).run()
    else:
        files, rows, cover = _fresh(book, voice=voice, source_name=source_name, today=today, notes=notes)
        if voice.name:
            _check_voice_name(voice.name, voice_resolver, notes)
        elif not voice.model_id:
            notes.append(f"voice: the simulator's sample voice {SAMPLE_VOICE} (`audiobook run "
                         f"{_shown(manifest)} --simulate` works now); set your own in book.yaml before a paid run")
    files[SCHEMA_NAME] = _schema_bytes()
    if force and (folder / CHAPTERS_DIR).is_dir():
        kept = sorted(p.name for p in (folder / CHAPTERS_DIR).glob("*.md") if f"{CHAPTERS_DIR}/{p.name}" not in files)
        if kept:
            notes.append(f"kept {len(kept)} chapter file(s) the new book.yaml does not name (--force deletes "
                         f"nothing): {', '.join(kept[:5])}{' ...' if len(kept) > 5 else ''}")
    written = _write_changed(folder, files) if folder.exists() else _write_new_folder(folder, files)
    notes += _validate(manifest, voice_resolver)
    return ImportResult(folder=folder, manifest=manifest, book=book, rows=tuple(rows), notes=tuple(notes),
                        written=tuple(written), updated=update, cover=cover)


def _shown(path: Path) -> str:
    import shlex

    return shlex.quote(str(path))


def _check_voice_name(name: str, resolver: Callable[[str], str | None] | None, notes: list[str]) -> None:
    if resolver is None:
        return
    try:
        found = resolver(name)
    except PipelineError as exc:  # a damaged registry
        notes.append(f"could not check voice {name!r}: {exc}")
        return
    if found is None:
        notes.append(f"voice {name!r} is not in the voice registry yet: `audiobook plan` refuses book.yaml until "
                     f"it is (`audiobook voice create --file SAMPLE --name {name}`), or set voice.model_id")


def _validate(manifest: Path, resolver: Callable[[str], str | None] | None) -> list[str]:
    """What `plan` would refuse in the manifest just written (nothing, normally), as notes."""
    from pipeline.manifest import load_manifest

    try:
        load_manifest(manifest, voice_resolver=resolver or (lambda name: name))
    except ManifestError as exc:
        return [f"`audiobook plan` will refuse it: {p}" for p in exc.problems if "voice registry" not in p.message]
    return []


def init_folder(source: Path, *, out: Path | None = None, options: ReadOptions | None = None,
                voice: VoiceChoice = VoiceChoice(), update: bool = False, force: bool = False,
                today: datetime.date | None = None,
                voice_resolver: Callable[[str], str | None] | None = None) -> ImportResult:
    """``audiobook init``: read ``source`` completely, then write the book folder (``out``, default
    :func:`default_folder`). See :func:`write_folder`."""
    from pipeline.importer import read_book

    if update and force:
        raise ConfigError("--update and --force exclude each other")
    book = read_book(source, options)
    folder = out if out is not None else default_folder(source, book)
    return write_folder(book, folder, voice=voice, update=update, force=force, source_name=source.name,
                        today=today, voice_resolver=voice_resolver)


def result_to_json(result: ImportResult) -> dict[str, Any]:
    """The ``init --json`` document (its shape is part of the CLI's contract)."""
    book = result.book
    return {
        "folder": str(result.folder),
        "manifest": str(result.manifest),
        "updated": result.updated,
        "book": {"title": book.title, "author": book.author, "language": book.language,
                 "description": book.description, "year": book.year, "cover": result.cover},
        "parts": [dataclasses.asdict(row) for row in result.rows],
        "written": [p.relative_to(result.folder).as_posix() for p in result.written],
        "notes": list(result.notes),
        "next": f"audiobook plan {_shown(result.manifest)}",
    }
