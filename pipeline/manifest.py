"""The manifest: YAML in, a validated :class:`~pipeline.models.Manifest` out, or every problem at once.

The schema is the table :data:`SCHEMA` below. The validator, the JSON Schema shipped for editors
(``audiobook schema``) and the README's reference are all generated from, or checked against, it.
Paths in a manifest are relative to the manifest file.
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import io
import math
import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline import profiles
from pipeline import text as texts
from pipeline.audio.tags import cover_problem
from pipeline.config import check_base_url
from pipeline.errors import ConfigError, ManifestError, Problem
from pipeline.lexicon import entries as lexicon
from pipeline.models import (
    API_MAX_CHARS,
    CLOSING_CREDITS,
    CREDIT_KINDS,
    DELIVERY_PROFILES,
    EMOTIONS,
    LANGUAGE_AUTO,
    LANGUAGES_V1,
    LANGUAGES_V2_ONLY,
    OPENING_CREDITS,
    SOUND_VERSIONS,
    SUBTITLE_MODES,
    ApiSettings,
    AudioSettings,
    BookInfo,
    ChapterSpec,
    ChunkingSettings,
    Manifest,
    PauseSettings,
    Pricing,
    QcSettings,
    SampleSettings,
    Voice,
)

MANIFEST_MAX_BYTES = 5_000_000
MANIFEST_MAX_NODES = 200_000
CHAPTER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
# Names Windows will not create as files, whatever the extension.
RESERVED_NAMES = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)),
                  *(f"lpt{i}" for i in range(1, 10))}
LANGUAGES = (LANGUAGE_AUTO, *LANGUAGES_V1, *LANGUAGES_V2_ONLY)
MARKDOWN_SUFFIXES = {".md", ".markdown", ".mdown", ".mkd"}
COVER_SUFFIXES = {".jpg", ".jpeg", ".png"}


@dataclass(frozen=True)
class Field:
    """One manifest key: its type, rule, default and the one-line doc the README shows."""

    kind: str                      # str | int | number | bool | choice | path | url | section | chapters
    doc: str
    default: Any = None
    required: bool = False
    choices: tuple[Any, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    children: Mapping[str, Field] | None = None

    def rule(self) -> str:
        if self.kind == "choice":
            return "one of " + ", ".join(str(c) for c in self.choices)
        if self.minimum is not None or self.maximum is not None:
            low = "" if self.minimum is None else f"{'>' if self.exclusive_minimum else '>='} {self.minimum:g}"
            high = "" if self.maximum is None else f"<= {self.maximum:g}"
            return f"{'an integer' if self.kind == 'int' else 'a number'} {' and '.join(p for p in (low, high) if p)}"
        return {"str": "text", "int": "an integer", "number": "a number", "bool": "true or false",
                "path": "a file path", "url": "an http(s) URL"}.get(self.kind, self.kind)


def _voice_fields() -> dict[str, Field]:
    d = Voice(model_id="")
    return {
        "model_id": Field("str", "the cloned voice's modelId (from `audiobook voice create`)",
                          required=False),
        "name": Field("str", "a voice registry name instead of model_id (see `audiobook voice list`)"),
        "sound_version": Field("choice", "API soundVersion: v1 (24 languages) or v2 (40)", d.sound_version,
                               choices=SOUND_VERSIONS),
        "emotion": Field("choice", "delivery emotion", d.emotion, choices=EMOTIONS),
        "speed": Field("number", "reading speed", d.speed, minimum=0.5, maximum=2.0),
        "vol": Field("number", "volume", d.vol, minimum=0.0, maximum=10.0, exclusive_minimum=True),
        "pitch": Field("int", "pitch in semitones", d.pitch, minimum=-12, maximum=12),
    }


_A, _P, _C, _K, _R, _Q, _S = (AudioSettings(), PauseSettings(), ChunkingSettings(), ApiSettings(), Pricing(),
                              QcSettings(), SampleSettings())
QC_POLICIES = ("flag", "retake")

SCHEMA: dict[str, Field] = {
    "title": Field("str", "book title", required=True),
    "author": Field("str", "author (tags, M4B)"),
    "narrator": Field("str", "narrator (tags, M4B)"),
    "year": Field("int", "publication year (tags)", minimum=0, maximum=9999),
    "description": Field("str", "blurb for the M4B"),
    "subtitle": Field("str", "book subtitle (the default opening credits)"),
    "cover": Field("path", "cover image, JPEG or PNG (tags, M4B)"),
    "language": Field("choice", "API language name, or auto", LANGUAGE_AUTO, choices=LANGUAGES),
    "output": Field("path", "output folder (default: build/<manifest name> beside the manifest)"),
    "subtitles": Field("choice", "subtitle timings to request: off, sentence or word", "sentence",
                       choices=SUBTITLE_MODES),
    "voice": Field("section", "book-wide voice; any chapter may override any key", required=True,
                   children=_voice_fields()),
    "pricing": Field("section", "your unit prices (the API publishes none)", children={
        "char_fee_per_10k": Field("number", "price per 10,000 billed characters", _R.char_fee_per_10k, minimum=0),
        "voice_fee_per_task": Field("number", "flat price per production task", _R.voice_fee_per_task, minimum=0),
        "currency": Field("str", "currency label for estimates", _R.currency),
    }),
    "chunking": Field("section", "how chapters are cut into API tasks", children={
        "max_chars": Field("int", "most code points per task, markers included (API limit 9,999)",
                           _C.max_chars, minimum=200, maximum=API_MAX_CHARS),
        "paragraph_min_fill": Field("number", "end a chunk at a paragraph end when at least this full",
                                    _C.paragraph_min_fill, minimum=0, maximum=1),
    }),
    "pauses": Field("section", "silence in seconds at chunk seams and scene breaks", children={
        "clause_s": Field("number", "seam inside an over-long sentence", _P.clause_s, minimum=0, maximum=99.99),
        "sentence_s": Field("number", "seam between sentences", _P.sentence_s, minimum=0, maximum=99.99),
        "paragraph_s": Field("number", "seam between paragraphs", _P.paragraph_s, minimum=0, maximum=99.99),
        "scene_break_s": Field("number", "a scene break line (***, * * *, ---, #)", _P.scene_break_s,
                               minimum=0, maximum=99.99),
        "title_s": Field("number", "after a spoken chapter title (speak_chapter_titles)", _P.title_s,
                         minimum=0, maximum=99.99),
    }),
    "audio": Field("section", "chapter files and the book", children={
        "sample_rate_hz": Field("choice", "output sample rate", _A.sample_rate_hz, choices=(22050, 44100, 48000)),
        "bitrate_kbps": Field("choice", "MP3 constant bit rate", _A.bitrate_kbps,
                              choices=(64, 96, 128, 160, 192, 256, 320)),
        "head_s": Field("number", "room tone before the chapter", _A.head_s, minimum=0, maximum=30),
        "tail_s": Field("number", "room tone after the chapter", _A.tail_s, minimum=0, maximum=30),
        "trim_keep_s": Field("number", "silence each chunk keeps at its edges after trimming",
                             _A.trim_keep_s, minimum=0, maximum=5),
        "fade_ms": Field("number", "fade at every cut", _A.fade_ms, minimum=0, maximum=500),
        "silence_threshold_db": Field("number", "level below which audio counts as silence",
                                      _A.silence_threshold_db, minimum=-100, maximum=-10),
        "target_rms_db": Field("number", "loudness target (RMS, dBFS)", _A.target_rms_db,
                               minimum=-40, maximum=-6),
        "true_peak_db": Field("number", "true-peak ceiling (dBTP)", _A.true_peak_db, minimum=-20, maximum=0),
        "profile": Field("choice", "delivery check profile", _A.profile, choices=DELIVERY_PROFILES),
        "m4b": Field("bool", "also write the whole book as a chaptered M4B", _A.m4b),
        "m4b_bitrate_kbps": Field("choice", "AAC bit rate of the M4B", _A.m4b_bitrate_kbps,
                                  choices=(64, 96, 128, 160, 192, 256)),
        "room_tone_db": Field("number", "level of the room tone under pauses, head and tail (dBFS RMS)",
                              _A.room_tone_db, minimum=-100, maximum=-50),
    }),
    "qc": Field("section", "the check of every downloaded take (see `pipeline/qc.py`)", children={
        "on_fail": Field("choice", "a failing take: flag it (the run exits 1), or retake it automatically",
                         _Q.on_fail, choices=QC_POLICIES),
        "max_retakes": Field("int", "automatic retakes per chunk with on_fail: retake", _Q.max_retakes,
                             minimum=0, maximum=5),
        "max_silence_s": Field("number", "longest internal silence no pause marker or paragraph explains",
                               _Q.max_silence_s, minimum=0.2, maximum=60),
        "rate_tolerance": Field("number", "characters per second may differ this much (0.35: 35 %) from the "
                                "book's median for the same language and speed", _Q.rate_tolerance,
                                minimum=0.05, maximum=5),
        "level_tolerance_db": Field("number", "a chunk's speech level may differ this much from the chapter's "
                                    "median (dB)", _Q.level_tolerance_db, minimum=0.5, maximum=40),
        "max_clipped_samples": Field("int", "samples at or near full scale (-0.45 dBFS) a take may hold",
                                     _Q.max_clipped_samples, minimum=0, maximum=100000),
        "max_uncovered_words": Field("int", "longest run of the chunk's words its subtitle cues may miss",
                                     _Q.max_uncovered_words, minimum=0, maximum=1000),
    }),
    "api": Field("section", "SoundClone API settings", children={
        "base_url": Field("url", "API base URL (env SOUNDCLONE_BASE_URL wins; default https://www.jimmyai.cn)"),
        "concurrency": Field("int", "tasks in flight at once", _K.concurrency, minimum=1, maximum=64),
        "poll_interval_s": Field("number", "seconds between polls of a task", _K.poll_interval_s,
                                 minimum=0.01, maximum=600),
        "requests_per_minute": Field("number", "cap on API requests per minute", _K.requests_per_minute,
                                     minimum=0, exclusive_minimum=True),
        "max_attempts": Field("int", "tries per chunk before it is reported failed", _K.max_attempts,
                              minimum=1, maximum=20),
        "request_timeout_s": Field("number", "timeout of one HTTP request", _K.request_timeout_s,
                                   minimum=0, exclusive_minimum=True),
        "task_timeout_s": Field("number", "give up on a task that takes longer than this", _K.task_timeout_s,
                                minimum=0, exclusive_minimum=True),
        "backoff_base_s": Field("number", "first retry delay after a 429, 5xx or network error (doubles, "
                                "with jitter; Retry-After wins)", _K.backoff_base_s, minimum=0, maximum=600),
        "backoff_cap_s": Field("number", "longest retry delay", _K.backoff_cap_s, minimum=0, maximum=3600),
    }),
    "speak_chapter_titles": Field("bool", "begin each chapter file with its title spoken, then a pause (not when "
                                  "the chapter text already begins with it)", False),
    "credits": Field("section", "opening and closing credits, rendered as their own files (an empty credits: {} "
                     "uses the defaults built from title, subtitle, author and narrator)", children={
        "opening": Field("str", "the opening credits' text (default: '<title>. <subtitle>. Written by <author>. "
                         "Narrated by <narrator>.')"),
        "closing": Field("str", "the closing credits' text (default: 'This has been <title>, written by <author>, "
                         "narrated by <narrator>. The end.')"),
    }),
    "sample": Field("section", "the retail sample `audiobook deliver` cuts from the finished audio (no API call)",
                    children={
        "chapter": Field("str", "the chapter id to take it from (default: the first chapter long enough)"),
        "at": Field("str", "words of the chapter to start from (default: its first sentence)"),
        "start_s": Field("number", "or the second of the chapter file to start from (the next sentence)",
                         minimum=0),
        "seconds": Field("number", "about how long (it ends at a sentence end)", _S.seconds, minimum=30,
                         maximum=600),
    }),
    "lexicon": Field("lexicon", "pronunciations: respellings sent to the voice instead of the book's words, as a "
                     "list of entries or {files: [names.yaml, terms.csv], entries: [...]} (see The lexicon)"),
    "chapters": Field("chapters", "the chapters, in reading order", required=True),
}

CHAPTER_SCHEMA: dict[str, Field] = {
    "id": Field("str", "unique id: letters, digits, - and _ (names the output files)", required=True),
    "title": Field("str", "chapter title (tags, M4B chapter marks; default: the id)"),
    "source": Field("path", "text or Markdown file (.md) with the chapter"),
    "text": Field("str", "the chapter text inline, instead of source"),
    "markdown": Field("bool", "treat the text as Markdown (default: by the source's extension)"),
    "language": Field("choice", "override the book language", choices=LANGUAGES),
    "voice": Field("section", "override any book voice key", children=_voice_fields()),
    "lexicon": Field("lexicon", "this chapter's lexicon: added to the book's, overriding the same term"),
}

LEXICON_ENTRY_SCHEMA: dict[str, Field] = {
    "term": Field("str", "the word or phrase as the book has it (a regular expression with match: regex)",
                  required=True),
    "say": Field("str", "what the voice is sent instead (a respelling)", required=True),
    "match": Field("choice", "word (whole words), phrase (whole words, any spacing) or regex", "word",
                   choices=lexicon.MATCHES),
    "case": Field("choice", "insensitive keeps an initial capital and -s/'s endings", "insensitive",
                  choices=lexicon.CASES),
    "status": Field("choice", "only reviewed entries are applied", "reviewed", choices=lexicon.STATUSES),
    "note": Field("str", "for the people who keep the lexicon"),
}
LEXICON_FILE_SUFFIXES = (".yaml", ".yml", ".csv")


# --- YAML with line numbers --------------------------------------------------------------------

class _Reader:
    """Turns a YAML node tree into Python values, remembering the line of every path.

    It also keeps every scalar's token as written (``off``, ``0x10``, ``12:30``), because YAML 1.1
    types some words and numbers in ways a reader does not expect (``off`` is false, ``12:30`` is
    750): the validator judges and quotes the token, not only the value PyYAML made of it.
    """

    def __init__(self, file: str, problems: list[Problem]) -> None:
        self.file = file
        self.problems = problems
        self.lines: dict[tuple[Any, ...], int] = {}
        # Where a scalar's text starts: a block scalar (| or >) starts on the line after its key.
        self.text_lines: dict[tuple[Any, ...], int] = {}
        self.nodes = 0
        self.constructor = yaml.SafeLoader("")
        # The manifest's text and where each scalar sits in it (start, end offsets), to point at a
        # problem inside an inline chapter text by the file's own line and column.
        self.source = ""
        self.spans: dict[tuple[Any, ...], tuple[int, int]] = {}
        # Each scalar's text as written (quotes and escapes resolved), and which were plain (unquoted).
        self.tokens: dict[tuple[Any, ...], str] = {}
        self.plain: set[tuple[Any, ...]] = set()
        # A merge source's pairs as its mapping means them, by node id (an anchor may be merged often).
        self.effective: dict[int, list[tuple[str, tuple[yaml.Node, yaml.Node]]]] = {}

    def read(self, node: yaml.Node, path: tuple[Any, ...]) -> Any:
        self.nodes += 1
        if self.nodes > MANIFEST_MAX_NODES:
            raise _TooBig()
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            written: dict[str, tuple[yaml.Node, yaml.Node]] = {}
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE_TAG:
                    continue
                key = self.constructor.construct_object(key_node) if isinstance(key_node, yaml.ScalarNode) \
                    else None
                if not isinstance(key, str):
                    shown = _as_written(key, key_node.value) if isinstance(key_node, yaml.ScalarNode) else repr(key)
                    self.problems.append(Problem(self.file, key_node.start_mark.line + 1, _dotted(path),
                                                 f"key {shown} must be a plain word; quote it or rename it"))
                    continue
                if key in written:
                    self.problems.append(Problem(self.file, key_node.start_mark.line + 1, _dotted(path + (key,)),
                                                 "appears twice; keep one"))
                    continue
                written[key] = (key_node, value_node)
            # What merge keys (<<) bring gives way to the mapping's own keys, without a repeat.
            merged: dict[str, tuple[yaml.Node, yaml.Node]] = {}
            for key, pair in self._merged(node):
                if key not in written and key not in merged:
                    merged[key] = pair
            result: dict[Any, Any] = {}
            for key, (key_node, value_node) in {**merged, **written}.items():
                self.lines[path + (key,)] = key_node.start_mark.line + 1
                result[key] = self.read(value_node, path + (key,))
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.read(item, path + (i,)) for i, item in enumerate(node.value)]
        block = isinstance(node, yaml.ScalarNode) and node.style in ("|", ">")
        self.text_lines[path] = node.start_mark.line + 1 + (1 if block else 0)
        self.spans[path] = (node.start_mark.index, node.end_mark.index)
        if isinstance(node, yaml.ScalarNode):
            self.tokens[path] = node.value
            if node.style is None:
                self.plain.add(path)
        if node.tag == _MERGE_TAG:
            return node.value  # a bare << where a value belongs is just text
        return self.constructor.construct_object(node)

    def _merged(self, node: yaml.MappingNode) -> list[tuple[str, tuple[yaml.Node, yaml.Node]]]:
        """The pairs a mapping's merge keys (``<<: *a``, ``<<: [*a, *b]``) bring, in the order that
        decides: an earlier source wins over a later one (yaml.org/type/merge.html); the mapping's
        own keys win over all (:meth:`read` sees to that).

        Not PyYAML's ``flatten_mapping``: it rewrites shared nodes in place, and PyYAML 6.0.4 picks
        between sources by the identity of key strings, so the winner varies (yaml/pyyaml#953).
        """
        out: list[tuple[str, tuple[yaml.Node, yaml.Node]]] = []
        for key_node, value_node in node.value:
            if key_node.tag != _MERGE_TAG:
                continue
            sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for source in sources:
                if not isinstance(source, yaml.MappingNode):
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark,
                        f"expected a mapping or list of mappings for merging, but found {source.id}",
                        source.start_mark)
                out.extend(self._effective(source))
        return out

    def _effective(self, node: yaml.MappingNode) -> list[tuple[str, tuple[yaml.Node, yaml.Node]]]:
        """A merge source's pairs as that mapping means them: its own keys (the first of a repeated
        one, as :meth:`read` keeps), then what its own merge keys bring. A repeated or non-text key
        in it is reported where it is written, not again at every mapping that merges it."""
        if id(node) not in self.effective:
            pairs: dict[str, tuple[yaml.Node, yaml.Node]] = {}
            for key_node, value_node in node.value:
                key = self.constructor.construct_object(key_node) \
                    if isinstance(key_node, yaml.ScalarNode) and key_node.tag != _MERGE_TAG else None
                if isinstance(key, str) and key not in pairs:
                    pairs[key] = (key_node, value_node)
            for key, pair in self._merged(node):
                pairs.setdefault(key, pair)
            self.effective[id(node)] = list(pairs.items())
        return self.effective[id(node)]


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _as_written(value: Any, token: str | None) -> str:
    """A scalar as a message shows it: the user's own token (``0x10``, ``yes``), not the value
    YAML 1.1 made of it (16, True); numbers bare, anything else quoted."""
    if token is None:
        return repr(value)
    return token if isinstance(value, (int, float)) and not isinstance(value, bool) else repr(token)


class _TooBig(Exception):
    pass


class _SelfReference(Exception):
    pass


def _check_size(root: yaml.Node) -> None:
    """Count the nodes the document expands to, aliases included, without expanding it.

    Sizes are memoised per node, so a "billion laughs" alias bomb is measured in a few thousand steps
    and rejected before the reader would walk it; an alias inside its own anchor is refused.
    """
    sizes: dict[int, int] = {}
    active: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in sizes:
            continue
        if isinstance(node, yaml.ScalarNode):
            sizes[key] = 1
            continue
        children = [part for pair in node.value for part in pair] if isinstance(node, yaml.MappingNode) \
            else list(node.value)
        if children_done:
            active.discard(key)
            total = 1 + sum(sizes[id(child)] for child in children)
            if total > MANIFEST_MAX_NODES:
                raise _TooBig()
            sizes[key] = total
            continue
        if key in active:
            raise _SelfReference()
        active.add(key)
        stack.append((node, True))
        for child in children:
            if id(child) in active:
                raise _SelfReference()
            if id(child) not in sizes:
                stack.append((child, False))


def _dotted(path: tuple[Any, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# --- validation ----------------------------------------------------------------------------------

class _Validator:
    def __init__(self, file: str, reader: _Reader) -> None:
        self.file = file
        self.reader = reader
        self.problems = reader.problems

    def line(self, path: tuple[Any, ...]) -> int | None:
        while path:
            if path in self.reader.lines:
                return self.reader.lines[path]
            path = path[:-1]
        return self.reader.lines.get((), None)

    def add(self, path: tuple[Any, ...], message: str) -> None:
        self.problems.append(Problem(self.file, self.line(path), _dotted(path), message))

    def section(self, value: Any, schema: Mapping[str, Field], path: tuple[Any, ...]) -> dict[str, Any]:
        """Check a mapping against ``schema``; returns only the valid values (defaults not filled)."""
        if not isinstance(value, dict):
            self.add(path, f"must be a mapping of keys, not {_type_name(value)}")
            return {}
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key not in schema:
                hint = difflib.get_close_matches(key, schema, n=1)
                fix = f"did you mean '{hint[0]}'?" if hint else f"known keys: {', '.join(schema)}"
                self.add(path + (key,), f"unknown key '{key}' — {fix}")
                continue
            checked = self.value(item, schema[key], path + (key,))
            if checked is not _INVALID:
                out[key] = checked
        for key, spec in schema.items():
            if spec.required and key not in value:
                self.add(path + (key,), f"is required ({spec.doc}); add it")
        return out

    def value(self, value: Any, spec: Field, path: tuple[Any, ...]) -> Any:
        kind = spec.kind
        if kind == "section":
            assert spec.children is not None
            return self.section(value, spec.children, path)
        if kind in ("chapters", "lexicon"):
            return value  # checked by load_manifest, which needs the whole picture
        if value is None:
            self.add(path, f"is empty; give {spec.rule()} or remove the key")
            return _INVALID
        if kind in ("str", "path", "url"):
            if not isinstance(value, str):
                self.add(path, f"must be text, not {_type_name(value)}; quote it")
                return _INVALID
            if not value.strip():
                self.add(path, "is blank; give a value" + ("" if spec.required else " or remove the key"))
                return _INVALID
            if kind == "url":
                try:
                    check_base_url(value, origin="")
                except ConfigError as error:
                    self.add(path, str(error).lstrip(": "))
                    return _INVALID
            return value
        token = self.reader.tokens.get(path)
        if kind == "bool":
            if not isinstance(value, bool):
                self.add(path, f"must be true or false, not {_as_written(value, token)}")
                return _INVALID
            return value
        if kind == "choice":
            if value in spec.choices and not isinstance(value, bool):
                return spec.choices[spec.choices.index(value)]
            # YAML 1.1 reads off, on, yes and no as true/false: the word as written is what counts.
            by_word = {str(c): c for c in spec.choices}
            if token is not None and token in by_word:
                return by_word[token]
            word = str(value) if token is None else token
            hint = [w for w in by_word if w.lower() == word.lower()] \
                or difflib.get_close_matches(word, list(by_word), n=1)
            fix = f"did you mean '{hint[0]}'?" if hint else f"use {spec.rule()}"
            self.add(path, f"{_as_written(value, token)} is not allowed — {fix}")
            return _INVALID
        # int | number
        if isinstance(value, str) and token is not None and path in self.reader.plain \
                and _EXPONENT_NUMBER.fullmatch(token):
            value = float(token)  # 1e3: a number to YAML 1.2 and to editors, text to YAML 1.1
        shown = _as_written(value, token)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.add(path, f"must be {spec.rule()}, not {_type_name(value)} {shown}")
            return _INVALID
        if token is not None and ":" in token:
            self.add(path, f"must be {spec.rule()}, not {token} (YAML 1.1 reads that as the base-60 number "
                           f"{value:g}); write the number out")
            return _INVALID
        if kind == "int" and not (isinstance(value, int) or float(value).is_integer()):
            self.add(path, f"must be a whole number, not {shown}")
            return _INVALID
        if not math.isfinite(value):
            self.add(path, f"must be a finite number, not {shown}; give {spec.rule()}")
            return _INVALID
        too_low = spec.minimum is not None and (value <= spec.minimum if spec.exclusive_minimum
                                                 else value < spec.minimum)
        too_high = spec.maximum is not None and value > spec.maximum
        if too_low or too_high:
            self.add(path, f"{shown} is out of range; must be {spec.rule()}")
            return _INVALID
        return int(value) if kind == "int" else float(value)


_INVALID = object()
# A number in exponent form without a decimal point (1e3, 2E-1): YAML 1.1 leaves it text.
_EXPONENT_NUMBER = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)[eE][-+]?[0-9]+")


def _type_name(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "text", bool: "true/false", int: "a number",
            float: "a number", type(None): "empty"}.get(type(value), type(value).__name__)


def _resolve(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path)


_VOICE_SETTINGS = {f.name for f in dataclasses.fields(Voice)} - {"model_id"}


class _VoiceNames:
    """Looks up ``voice.name`` in the voice registry (``voice_resolver``), each name once."""

    def __init__(self, v: _Validator, resolver: Callable[[str], str | None] | None) -> None:
        self.v = v
        self.resolver = resolver
        self.found: dict[str, str | None] = {}

    def model_id(self, name: str, path: tuple[Any, ...]) -> str | None:
        """The modelId registered as ``name``; None, with a problem at ``path``, when there is none."""
        if self.resolver is None:
            self.v.add(path, f"cannot look up '{name}': no voice registry was given to load_manifest "
                             "(voice_resolver); give voice.model_id instead (see `audiobook voice list`)")
            return None
        if name not in self.found:
            self.found[name] = self.resolver(name)
        if self.found[name] is None:
            self.v.add(path, f"no voice named '{name}' in the voice registry; see `audiobook voice list` "
                             "or give voice.model_id")
        return self.found[name]


def _model_id(v: _Validator, voice: dict[str, Any], raw: Any, path: tuple[Any, ...],
              names: _VoiceNames) -> str | None:
    """The modelId a voice section names: its ``model_id`` (which wins), else its ``name`` looked up in
    the voice registry. None, with a problem at ``path``, when it names no voice; None and no new
    problem when what it gave was refused already (``raw`` is the section as written)."""
    if "model_id" in voice:
        return str(voice["model_id"])
    if "name" in voice:
        return names.model_id(voice["name"], path + ("name",))
    if isinstance(raw, dict) and "model_id" not in raw and "name" not in raw:
        v.add(path + ("model_id",), "is required: set voice.model_id (or voice.name from the voice registry)")
    return None


def _as_given(raw: Any, checked: Mapping[str, Any], key: str, inherited: str | None) -> str | None:
    """A setting's effective value: ``checked[key]`` when the mapping ``raw`` sets it, else ``inherited``;
    None when it was set but refused (so it is not judged again)."""
    if isinstance(raw, dict) and key in raw:
        return checked.get(key)
    return inherited


def _check_language(v: _Validator, path: tuple[Any, ...], language: str | None, sound_version: str | None) -> None:
    if sound_version == "v1" and language in LANGUAGES_V2_ONLY:
        v.add(path, f"language '{language}' needs sound_version v2; set sound_version: v2 or pick a v1 language")


def _parse_yaml(raw_text: str, display: str, problems: list[Problem], *, what: str) -> tuple[_Reader, Any]:
    """YAML text -> (its reader, with every path's line, and the data); :class:`ManifestError` for text
    that is not YAML or too big to be ``what``."""
    reader = _Reader(display, problems)
    reader.source = raw_text
    try:
        node = yaml.compose(raw_text, Loader=yaml.SafeLoader)
        if node is not None:
            _check_size(node)
        data = reader.read(node, ()) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        context = ""
        if exc.context and exc.context_mark and exc.problem_mark and exc.context_mark.line != exc.problem_mark.line:
            context = f" ({exc.context} on line {exc.context_mark.line + 1})"
        problem = str(exc.problem or "")
        hint = ("YAML does not allow tabs for indentation; indent with spaces" if "\t" in problem or "tab" in problem
                else "'<<: *name' merges a mapping marked &name (or a list of them, <<: [*a, *b])"
                if "for merging" in problem else "check indentation, colons and quotes near this line")
        raise ManifestError([Problem(display, line, "", f"is not valid YAML: {exc.problem or exc}{context}; "
                                     f"{hint}")]) from None
    except yaml.YAMLError as exc:
        raise ManifestError([Problem(display, None, "", f"is not valid YAML: {exc}")]) from None
    except _TooBig:
        raise ManifestError([Problem(display, None, "", f"has more than {MANIFEST_MAX_NODES:,} YAML nodes; "
                                     f"is it {what}? (aliases that expand hugely count too)")]) from None
    except _SelfReference:
        raise ManifestError([Problem(display, None, "", "has an alias that refers to itself (*name inside "
                                     "&name); write the value out")]) from None
    except RecursionError:
        raise ManifestError([Problem(display, None, "", f"is nested too deeply to be {what}; check the "
                                     "brackets and indentation")]) from None
    return reader, data


def load_manifest(path: Path, *, voice_resolver: Callable[[str], str | None] | None = None) -> Manifest:
    """Read and validate a manifest, its chapter sources and their pause markers.

    Raises :class:`ManifestError` listing every problem found, each with file, line, field and fix.
    ``voice_resolver(name) -> model_id | None`` resolves ``voice.name`` (the voice registry), for the
    book and for every chapter that names its own voice; without one, a name is a problem.
    """
    display = str(path)
    problems: list[Problem] = []
    raw_text = _read_text(path, display)
    reader, data = _parse_yaml(raw_text, display, problems, what="a manifest")
    v = _Validator(display, reader)
    if not isinstance(data, dict):
        what = "empty" if data is None else f"{_type_name(data)}"
        raise ManifestError(problems + [Problem(display, 1, "", f"is {what}, but a manifest must be a mapping "
                                                "with at least title, voice and chapters")])
    top = v.section(data, SCHEMA, ())
    base = path.parent
    language = top.get("language", LANGUAGE_AUTO)
    book_voice = top.get("voice", {})
    voice_name = book_voice.get("name")
    names = _VoiceNames(v, voice_resolver)
    book_model_id = _model_id(v, book_voice, data.get("voice"), ("voice",), names) if "voice" in data else None

    cover = None
    if "cover" in top:
        cover = _resolve(base, top["cover"])
        if not cover.is_file():
            v.add(("cover",), f"file '{cover}' does not exist; fix the path (relative to the manifest)")
        elif cover.suffix.lower() not in COVER_SUFFIXES:
            v.add(("cover",), "must be a .jpg or .png image")
        elif (cover_fault := cover_problem(cover)) is not None:
            # decoded to the end, not trusted by its first bytes: a bad cover would fail after paying
            v.add(("cover",), f"'{cover}' {cover_fault}")
    output = (_resolve(base, top["output"]) if "output" in top else base / "build" / path.stem).resolve()
    blocking = next((p for p in (output, *output.parents) if p.exists()), None)
    if not output.name:
        v.add(("output",), f"'{output}' is a file system root; a book needs a folder of its own (and a rehearsal "
                           "writes beside it as <output>-simulated, which a root cannot have); give a folder "
                           "such as build/book")
    elif blocking is not None and not blocking.is_dir():
        v.add(("output",), f"'{blocking}' is a file, not a folder, so the output folder '{output}' cannot be "
                           "made there; choose another output path")

    _check_profile(v, top.get("audio", {}))
    pauses = PauseSettings(**top.get("pauses", {}))
    subtitles = top.get("subtitles", "sentence")
    book_language = _as_given(data, top, "language", LANGUAGE_AUTO)
    book_version = _as_given(data.get("voice"), book_voice, "sound_version", "v1")
    book_lexicon = _load_lexicon(v, data.get("lexicon"), ("lexicon",), base=base)
    chapters, inherited = _load_chapters(
        v, data.get("chapters"), base=base, language=language, book_voice=book_voice,
        book_model_id=book_model_id, book_language=book_language, book_version=book_version, names=names,
        pauses=pauses, book_lexicon=book_lexicon,
        speak_titles=top.get("speak_chapter_titles", False)) if "chapters" in data else ((), True)
    if inherited:
        # Reported once, here: every chapter that keeps the book's language and sound_version meets it.
        _check_language(v, ("voice", "sound_version"), book_language, book_version)
    book = BookInfo(title=top.get("title", ""), subtitle=top.get("subtitle"), author=top.get("author"),
                    narrator=top.get("narrator"), year=top.get("year"), description=top.get("description"),
                    cover=cover)
    sample = _sample(v, top.get("sample", {}), chapters, data.get("sample"))
    if problems:
        raise ManifestError(problems)
    assert book_model_id is not None
    book_voice_model = Voice(model_id=book_model_id,
                             **{k: val for k, val in book_voice.items() if k in _VOICE_SETTINGS})
    if "credits" in data:
        chapters = _with_credits(v, top.get("credits", {}), chapters, book=book, voice=book_voice_model,
                                 language=_credits_language(language, book, chapters), lexicon=book_lexicon,
                                 pauses=pauses)
        if problems:
            raise ManifestError(problems)
    return Manifest(
        path=path,
        book=book,
        language=language, output=output, voice=book_voice_model, subtitles=subtitles,
        pricing=Pricing(**top.get("pricing", {})),
        chunking=ChunkingSettings(**top.get("chunking", {})),
        pauses=pauses,
        audio=AudioSettings(**top.get("audio", {})),
        api=ApiSettings(**top.get("api", {})),
        qc=QcSettings(**top.get("qc", {})),
        lexicon=book_lexicon,
        chapters=chapters,
        voice_name=voice_name,
        sample=sample,
        has_credits="credits" in data,
    )


CREDIT_TITLES = {OPENING_CREDITS: "Opening Credits", CLOSING_CREDITS: "Closing Credits"}


def _sentence(text: str) -> str:
    """``text`` ending as a sentence does (a full stop added unless it has its own)."""
    text = text.strip()
    return text if text[-1:] in ".!?…。！？" else text + ("。" if _cjk(text) else ".")


def _cjk(text: str) -> bool:
    return any(texts.is_word_char_cjk(ch) for ch in text)


def default_credits(book: BookInfo, language: str) -> dict[str, str]:
    """The credits a ``credits: {}`` section reads: title, subtitle, author and narrator (the parts the
    manifest gives), in Chinese for a Chinese book and in English otherwise."""
    if language.startswith("Chinese"):
        opening = [book.title, book.subtitle, book.author and f"作者：{book.author}",
                   book.narrator and f"演播：{book.narrator}"]
        ending = [f"《{book.title}》到此结束", "谢谢收听"]
        return {OPENING_CREDITS: "".join(_sentence(p) for p in opening if p),
                CLOSING_CREDITS: "".join(_sentence(p) for p in ending)}
    opening = [book.title, book.subtitle, book.author and f"Written by {book.author}",
               book.narrator and f"Narrated by {book.narrator}"]
    by = ", ".join(p for p in (book.author and f"written by {book.author}",
                               book.narrator and f"narrated by {book.narrator}") if p)
    closing = f"This has been {book.title.strip().rstrip('.')}{', ' + by if by else ''}. The end."
    return {OPENING_CREDITS: " ".join(_sentence(p) for p in opening if p), CLOSING_CREDITS: closing}


DEFAULT_CREDITS_LANGUAGES = ("English", "Chinese")


def _credits_language(language: str, book: BookInfo, chapters: tuple[ChapterSpec, ...]) -> str:
    """The language the credits are read in: the book's; with ``auto``, the chapters' when they agree,
    else Chinese for a title in Chinese characters (the default credits are English or Chinese)."""
    if language != LANGUAGE_AUTO:
        return language
    found = {c.language for c in chapters} - {LANGUAGE_AUTO}
    if len(found) == 1:
        return found.pop()
    return "Chinese" if _cjk(book.title) and not re.search("[\u3040-\u30ff\uac00-\ud7af]", book.title) \
        else LANGUAGE_AUTO


def _with_credits(v: _Validator, section: dict[str, Any], chapters: tuple[ChapterSpec, ...], *, book: BookInfo,
                  voice: Voice, language: str, lexicon: tuple[lexicon.Entry, ...],
                  pauses: PauseSettings) -> tuple[ChapterSpec, ...]:
    """The chapters with the opening credits before them and the closing credits after, both read by the
    book's voice in the book's language (file numbers 00 and N+1, so the chapters keep theirs)."""
    defaults = default_credits(book, language)
    own = [key for key in ("opening", "closing") if key not in section]
    if own and language not in (LANGUAGE_AUTO, *DEFAULT_CREDITS_LANGUAGES) and not language.startswith("Chinese"):
        v.add(("credits",), f"the default credits are written in English or Chinese, and this book is read in "
                            f"{language}: give credits.{' and credits.'.join(own)} in {language}")
    for chapter in chapters:
        if chapter.id.lower() in CREDIT_KINDS:
            index = chapter.number - 1
            v.add(("chapters", index, "id"), f"'{chapter.id}' is the id of the credits the credits: section adds; "
                                             "rename the chapter")
    made = {}
    for kind, key in ((OPENING_CREDITS, "opening"), (CLOSING_CREDITS, "closing")):
        raw = section.get(key, defaults[kind])
        marker_problems = texts.check_markers(raw)
        for p in marker_problems:
            v.add(("credits", key), f"column {p.column}: {p.message}")
        spoken = texts.to_spoken_text(raw, markdown=False, scene_break_s=pauses.scene_break_s)
        if not marker_problems and not texts.spoken_only(spoken).strip():
            v.add(("credits", key), "has no words to read; give the credits' text or remove the key for the default")
        made[kind] = ChapterSpec(id=kind, title=CREDIT_TITLES[kind],
                                 number=0 if kind == OPENING_CREDITS else len(chapters) + 1, text=spoken,
                                 voice=voice, language=language, lexicon=lexicon, kind=kind)
    return (made[OPENING_CREDITS], *chapters, made[CLOSING_CREDITS])


def _sample(v: _Validator, section: dict[str, Any], chapters: tuple[ChapterSpec, ...], raw: Any) -> SampleSettings:
    """The ``sample:`` section, its chapter and starting words found now (not after the book is paid for)."""
    settings = SampleSettings(**section)
    if isinstance(raw, dict) and "at" in raw and "start_s" in raw:
        v.add(("sample", "start_s"), "give at (words to start from) or start_s, not both; remove one")
    if settings.chapter is not None and chapters:
        found = [c for c in chapters if c.id.lower() == settings.chapter.lower()]
        if not found:
            hint = difflib.get_close_matches(settings.chapter, [c.id for c in chapters], n=1)
            v.add(("sample", "chapter"), f"no chapter has the id '{settings.chapter}'; "
                  + (f"did you mean '{hint[0]}'?" if hint else "give the id of one of the chapters"))
        elif settings.at is not None and sample_start(found[0].text, settings.at) is None:
            v.add(("sample", "at"), f"'{settings.at}' is not in chapter '{settings.chapter}'; copy a few words from "
                                    "the sentence the sample should start with")
        else:
            settings = dataclasses.replace(settings, chapter=found[0].id)
    elif settings.at is not None and chapters:
        v.add(("sample", "at"), "needs sample.chapter: the chapter whose words these are")
    return settings


def comparable_words(text: str) -> list[str]:
    """Words to compare, ignoring case, punctuation and markers (each CJK character a word), as QC
    compares cues with a chunk (:func:`pipeline.text.comparable_tokens`)."""
    return [word for word, _, _ in texts.comparable_tokens(text)]


def _find(words: list[str], wanted: list[str]) -> int | None:
    """Where the run ``wanted`` first starts in ``words``; None when it is not there (or is empty)."""
    if not wanted:
        return None
    return next((i for i in range(len(words) - len(wanted) + 1) if words[i:i + len(wanted)] == wanted), None)


def sample_start(text: str, at: str) -> int | None:
    """How many words of ``text`` come before the words ``at`` (compared as words, ignoring case,
    punctuation and markers); None when they are not in it."""
    return _find(comparable_words(text), comparable_words(at))


HEADING_EXTRA_WORDS = 4  # "Chapter 12: The Storm" still counts as the heading "The Storm"


def begins_with_title(text: str, title: str) -> bool:
    """Whether the chapter's first paragraph is its title: the title's words, alone or within a short
    heading ("Chapter 1: Arrival" for "Arrival"); a first sentence that merely starts with the same
    words ("The log book lived..." for "The Log") is not."""
    first, wanted = comparable_words(texts.spoken_only(text).strip().split("\n\n", 1)[0]), comparable_words(title)
    return len(first) <= len(wanted) + HEADING_EXTRA_WORDS and _find(first, wanted) is not None


def _with_spoken_title(title: str, text: str, pause_s: float) -> tuple[str, str | None]:
    """(text, spoken title): the title read first, then ``pause_s`` of silence, unless the text already
    begins with it (:func:`begins_with_title`), so no title is read twice."""
    if not comparable_words(title) or begins_with_title(text, title):
        return text, None
    pause = texts.format_pause(min(pause_s, texts.PAUSE_MAX_S)) if pause_s > 0 else ""
    return f"{_sentence(title)}{pause}\n\n{text}", title


def _read_text(path: Path, display: str) -> str:
    """The manifest's text. Only a regular file is read, and at most MANIFEST_MAX_BYTES of it.

    A named pipe would block until some writer came, and a device such as /dev/zero never ends (its
    size says 0): both are refused before opening, and again on the open file (opened without
    waiting), in case the path changed in between. The read stops one byte past the limit whatever
    the size said.
    """

    def refuse(message: str) -> ManifestError:
        return ManifestError([Problem(display, None, "", message)])

    def check(info: os.stat_result) -> None:
        if stat.S_ISDIR(info.st_mode):
            raise refuse("is a folder; give a manifest .yaml file")
        if not stat.S_ISREG(info.st_mode):
            raise refuse("is not a regular file (a pipe or a device?); give a manifest .yaml file")
        if info.st_size > MANIFEST_MAX_BYTES:
            raise refuse(f"is {info.st_size:,} bytes, over the {MANIFEST_MAX_BYTES:,}-byte limit for a manifest; "
                         "put chapter texts in source files")

    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
    try:
        check(path.stat())
        with os.fdopen(os.open(path, flags), "rb") as fh:
            check(os.fstat(fh.fileno()))
            data = fh.read(MANIFEST_MAX_BYTES + 1)
    except (FileNotFoundError, NotADirectoryError):
        raise refuse("does not exist; check the path") from None
    except OSError as exc:
        raise refuse(f"cannot be read ({exc.strerror}); check the path and its permissions") from None
    if len(data) > MANIFEST_MAX_BYTES:
        raise refuse(f"is over the {MANIFEST_MAX_BYTES:,}-byte limit for a manifest; put chapter texts in source "
                     "files")
    try:
        return texts.decode_source(data, allow_empty=True)
    except texts.SourceError as exc:
        raise ManifestError([Problem(display, p.line, "", f"column {p.column}: {p.message}" if p.column
                                     else p.message) for p in exc.problems]) from None


def _check_profile(v: _Validator, audio: dict[str, Any]) -> None:
    """Settings the chosen delivery profile must reject are refused now, not measured after paying."""
    settings = AudioSettings(**audio)
    for rule in profiles.SETTING_RULES.get(settings.profile, ()):
        problem = rule.problem(getattr(settings, rule.setting), settings.profile)
        if problem is not None:
            v.add(("audio", rule.setting if rule.setting in audio else "profile"),
                  problem if rule.setting in audio else f"the default audio.{rule.setting} {problem}")


def _load_lexicon(v: _Validator, raw: Any, path: tuple[Any, ...], *, base: Path) -> tuple[lexicon.Entry, ...]:
    """A lexicon as the manifest gives it (a list of entries, or ``{files, entries}``), its files read;
    every problem is added to ``v`` with the file and line it is on."""
    if raw is None:
        return ()
    inline: Any = raw
    files: Any = []
    if isinstance(raw, dict):
        for key in raw:
            if key not in ("files", "entries"):
                v.add(path + (key,), f"unknown key '{key}' — a lexicon has files (a list of YAML or CSV files) "
                                     "and entries (a list of {term, say})")
        files, inline = raw.get("files", []), raw.get("entries", [])
        inline_path = path + ("entries",)
    else:
        inline_path = path
    found: list[lexicon.Entry] = []
    if not isinstance(inline, list):
        v.add(inline_path, "must be a list of entries, each {term: ..., say: ...}")
        inline = []
    for index, item in enumerate(inline):
        entry = _lexicon_entry(v, item, inline_path + (index,))
        if entry is not None:
            found.append(entry)
    if not isinstance(files, list):
        v.add(path + ("files",), "must be a list of files (YAML lists of entries, or CSV with a header term,say)")
        files = []
    for index, name in enumerate(files):
        where = path + ("files", index)
        if not isinstance(name, str) or not name.strip():
            v.add(where, "must be a file name")
            continue
        file = _resolve(base, name)
        if file.suffix.lower() == ".pls":
            v.add(where, f"'{name}' is a PLS file; convert it once with `audiobook lexicon import {name}` "
                         "(aliases become entries, phonemes are reported)")
        elif file.suffix.lower() not in LEXICON_FILE_SUFFIXES:
            v.add(where, f"'{name}' is not a lexicon file; give a .yaml list of entries or a .csv with a "
                         "header term,say")
        elif not file.is_file():
            v.add(where, f"'{name}' does not exist (looked for {file}); check the path")
        else:
            found.extend(_lexicon_file(v, file))
    seen: dict[str, lexicon.Entry] = {}
    for entry in found:
        first = seen.setdefault(entry.key(), entry)
        if first is not entry and first.say != entry.say and first.say and entry.say:
            v.problems.append(_problem_at(entry.where, "term", f"'{entry.term}' is already in the lexicon at "
                                          f"{first.where} with say '{first.say}', here '{entry.say}'; keep one"))
    return tuple(found)


def _problem_at(where: str, field: str, message: str) -> Problem:
    file, _, line = where.rpartition(":")
    return Problem(file or where, int(line) if line.isdigit() else None, field, message)


def _lexicon_entry(v: _Validator, item: Any, path: tuple[Any, ...]) -> lexicon.Entry | None:
    # a proposed entry may wait for its say (`audiobook words --add` writes them so): it applies to nothing
    unsaid = isinstance(item, dict) and item.get("status") == "proposed" and not str(item.get("say") or "").strip()
    checked = v.section({**item, "say": "-"} if unsaid else item, LEXICON_ENTRY_SCHEMA, path)
    if not isinstance(item, dict) or "term" not in checked or "say" not in checked:
        return None
    if unsaid:
        checked["say"] = ""
    entry = lexicon.Entry(**checked, where=f"{v.file}:{v.line(path)}")
    try:
        entry.pattern()
    except re.error as exc:
        v.add(path + ("term",), f"'{entry.term}' is not a regular expression Python can compile ({exc}); fix it "
                                "or use match: word")
        return None
    return entry


def _lexicon_file(v: _Validator, file: Path) -> list[lexicon.Entry]:
    """The entries of one lexicon file (YAML list or CSV), problems added to ``v`` under that file."""
    display = str(file)
    try:
        text = _read_text(file, display)
    except ManifestError as error:
        v.problems.extend(error.problems)
        return []
    data: Any
    if file.suffix.lower() == ".csv":
        reader = _Reader(display, v.problems)
        rows = list(csv.reader(io.StringIO(text)))
        header = [h.strip().lower() for h in rows[0]] if rows else []
        if "term" not in header or "say" not in header:
            v.problems.append(Problem(display, 1, "", "must start with a header row naming its columns: term,say "
                                      f"(and optionally {', '.join(list(LEXICON_ENTRY_SCHEMA)[2:])})"))
            return []
        data = []
        for number, row in enumerate(rows[1:], start=2):
            if not any(cell.strip() for cell in row):
                continue
            reader.lines[(len(data),)] = number
            data.append({name: cell.strip() for name, cell in zip(header, row, strict=False) if name
                         and (cell.strip() or name in ("term", "say"))})
    else:
        try:
            reader, data = _parse_yaml(text, display, v.problems, what="a lexicon")
        except ManifestError as error:
            v.problems.extend(error.problems)
            return []
        if not isinstance(data, list):
            v.problems.append(Problem(display, 1, "", "must be a YAML list of entries, each {term: ..., say: ...}"))
            return []
    inner = _Validator(display, reader)
    return [e for index, item in enumerate(data) if (e := _lexicon_entry(inner, item, (index,))) is not None]


def _load_chapters(v: _Validator, raw: Any, *, base: Path, language: str, book_voice: dict[str, Any],
                   book_model_id: str | None, book_language: str | None, book_version: str | None,
                   names: _VoiceNames, pauses: PauseSettings, book_lexicon: tuple[lexicon.Entry, ...] = (),
                   speak_titles: bool = False) -> tuple[tuple[ChapterSpec, ...], bool]:
    """The chapters, and whether any keeps the book's language and sound_version (or none can be
    read), so that the book-level pair must be valid too."""
    if not isinstance(raw, list) or not raw:
        v.add(("chapters",), "must be a non-empty list of chapters (each with id and source or text)")
        return (), True
    chapters: list[ChapterSpec] = []
    seen: dict[str, int] = {}
    inherited = False
    for index, item in enumerate(raw):
        path = ("chapters", index)
        entry = v.section(item, CHAPTER_SCHEMA, path)
        if not isinstance(item, dict):
            continue
        chapter_id = entry.get("id")
        if isinstance(chapter_id, str):
            if not CHAPTER_ID_RE.match(chapter_id):
                v.add(path + ("id",), f"'{chapter_id}' is not a safe id; use letters, digits, - and _ "
                                      "(at most 64, starting with a letter or digit), e.g. ch01")
                chapter_id = None
            elif chapter_id.lower() in RESERVED_NAMES:
                v.add(path + ("id",), f"'{chapter_id}' is a reserved file name on Windows; rename it")
                chapter_id = None
            elif chapter_id.lower() in seen:
                v.add(path + ("id",), f"'{chapter_id}' is already used by chapters[{seen[chapter_id.lower()]}] "
                                      "(ids are compared ignoring case); make it unique")
                chapter_id = None
            else:
                seen[chapter_id.lower()] = index
        elif "id" in item and not isinstance(item.get("id"), str):
            pass  # reported by the type check
        has_source, has_text = "source" in item, "text" in item
        if has_source == has_text:
            v.add(path, "needs exactly one of 'source' (a file) or 'text' (inline); "
                        + ("remove one" if has_source else "add one"))
        chapter_language = entry.get("language", language)
        raw_voice, override = item.get("voice"), entry.get("voice", {})
        written = raw_voice if isinstance(raw_voice, dict) else {}
        # A chapter's own voice (model_id or name) replaces the book's; other keys merge over the book's.
        model_id = _model_id(v, override, raw_voice, path + ("voice",), names) \
            if "model_id" in written or "name" in written else book_model_id
        if "language" in item or "sound_version" in written:
            _check_language(v, path + ("voice", "sound_version"), _as_given(item, entry, "language", book_language),
                            _as_given(raw_voice, override, "sound_version", book_version))
        else:
            inherited = True
        spoken = _chapter_text(v, entry, path, base=base, pauses=pauses)
        own_lexicon = _load_lexicon(v, item.get("lexicon"), path + ("lexicon",), base=base)
        if chapter_id is None or spoken is None or model_id is None:
            continue  # each of these has its problem already
        settings = {k: val for k, val in {**book_voice, **override}.items() if k in _VOICE_SETTINGS}
        spoken_title = None
        if speak_titles:
            if "title" not in entry:
                v.add(path + ("title",), "is needed to speak the chapter's title (speak_chapter_titles: true); "
                                         "give the chapter a title")
                continue
            spoken, spoken_title = _with_spoken_title(entry["title"], spoken, pauses.title_s)
        chapters.append(ChapterSpec(
            id=chapter_id, title=entry.get("title", chapter_id), number=len(chapters) + 1, text=spoken,
            voice=Voice(model_id=model_id, **settings), language=chapter_language,
            source=_resolve(base, entry["source"]) if "source" in entry else None,
            lexicon=lexicon.merged(book_lexicon, own_lexicon), spoken_title=spoken_title,
        ))
    return tuple(chapters), inherited


def _chapter_text(v: _Validator, entry: dict[str, Any], path: tuple[Any, ...], *, base: Path,
                  pauses: PauseSettings) -> str | None:
    if "source" in entry:
        source = _resolve(base, entry["source"])
        where, field_path = str(source), path + ("source",)
        try:
            raw = texts.read_source(source)
        except texts.SourceError as exc:
            for p in exc.problems:
                if p.line is None:
                    v.add(field_path, f"'{source}' {p.message}")
                else:
                    v.problems.append(Problem(where, p.line, _dotted(field_path), f"column {p.column}: {p.message}"))
            return None
        markdown = entry.get("markdown", source.suffix.lower() in MARKDOWN_SUFFIXES)
        line_offset = 0
    elif "text" in entry:
        raw = entry["text"].replace("\r\n", "\n")
        where, field_path = v.file, path + ("text",)
        markdown = entry.get("markdown", False)
        line_offset = v.reader.text_lines.get(field_path, 1) - 1
    else:
        return None
    marker_problems = texts.check_markers(raw)
    located = _locate_in_manifest(v.reader, field_path, marker_problems) if "text" in entry else None
    for i, p in enumerate(marker_problems):
        line, column = located[i] if located else ((p.line or 0) + line_offset, p.column)
        v.problems.append(Problem(where, line, _dotted(field_path), f"column {column}: {p.message}"))
    if marker_problems:
        return None
    spoken = texts.to_spoken_text(raw, markdown=markdown, scene_break_s=pauses.scene_break_s)
    if not texts.spoken_only(spoken).strip():
        v.add(field_path, "has no words to read (only pause markers or markup); add text")
        return None
    return spoken


def _locate_in_manifest(reader: _Reader, path: tuple[Any, ...],
                        problems: list[texts.TextProblem]) -> list[tuple[int, int]] | None:
    """File line and column of each marker problem in an inline text, found in the manifest's own
    text (quoting and folding move them within the value); None when the two do not line up."""
    span = reader.spans.get(path)
    if span is None or not problems:
        return None
    start, end = span
    in_file = texts.check_markers(reader.source[start:end])
    if [p.message for p in in_file] != [p.message for p in problems]:
        return None
    first_line = reader.source.count("\n", 0, start) + 1
    first_column = start - (reader.source.rfind("\n", 0, start) + 1)
    return [(first_line + (p.line or 1) - 1, (p.column or 1) + (first_column if p.line == 1 else 0))
            for p in in_file]


def json_schema() -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) of the manifest, for editor completion."""

    def convert(spec: Field) -> dict[str, Any]:
        out: dict[str, Any] = {"description": spec.doc}
        if spec.kind == "section":
            assert spec.children is not None
            out.update(section(spec.children))
        elif spec.kind == "chapters":
            out.update({"type": "array", "minItems": 1, "items": {
                **section(CHAPTER_SCHEMA),
                "oneOf": [{"required": ["source"]}, {"required": ["text"]}],
            }})
        elif spec.kind == "lexicon":
            entries = {"type": "array", "items": section(LEXICON_ENTRY_SCHEMA)}
            out["oneOf"] = [entries, {"type": "object", "additionalProperties": False, "properties": {
                "files": {"type": "array", "items": {"type": "string", "minLength": 1},
                          "description": "YAML lists of entries, or CSV files with a header term,say"},
                "entries": entries}}]
        elif spec.kind == "choice":
            out["enum"] = list(spec.choices)
        elif spec.kind in ("int", "number"):
            out["type"] = "integer" if spec.kind == "int" else "number"
            if spec.minimum is not None:
                out["exclusiveMinimum" if spec.exclusive_minimum else "minimum"] = spec.minimum
            if spec.maximum is not None:
                out["maximum"] = spec.maximum
        elif spec.kind == "bool":
            out["type"] = "boolean"
        else:
            out["type"] = "string"
            out["minLength"] = 1
            if spec.kind == "url":
                out["pattern"] = "^https?://"
        if spec.default is not None and spec.kind != "section":
            out["default"] = spec.default
        return out

    def section(fields: Mapping[str, Field]) -> dict[str, Any]:
        return {
            "type": "object",
            "additionalProperties": False,
            "properties": {name: convert(f) for name, f in fields.items()},
            **({"required": [n for n, f in fields.items() if f.required]}
               if any(f.required for f in fields.values()) else {}),
        }

    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema",
              "title": "soundclone-audiobook manifest", **section(SCHEMA)}
    chapter_item = schema["properties"]["chapters"]["items"]
    chapter_item["properties"]["id"]["pattern"] = CHAPTER_ID_RE.pattern
    return schema
