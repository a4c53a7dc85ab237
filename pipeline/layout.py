"""The output folder of a book: the one place that names its files.

    <output>/
      journal.sqlite               the crash-safe journal (store)
      .run.lock                    held while a command works on the book
      cache/xx/<key>.mp3, .json    verified chunk audio and subtitle timings; retakes <key>.takeN.*
      NN-<id>.mp3 .srt .vtt        chapter N (and .words.vtt, .words.json with word subtitles)
      <title slug>.m4b             the whole book
      delivery-report.json         the delivery check
      review/index.html, NN-<id>.html  the review pages (`audiobook review`)
      delivery/<profile>/          a retailer's package (`audiobook deliver`), with its own report
      previews/<line>-<key>.mp3    lines rendered by `audiobook say`
      .assembly/                   build state: chapter-<id>.json, aac/<id>.aac (each chapter's share of
                                   the M4B), book.json, measurements/

A ``--simulate`` rehearsal writes the same layout into the twin folder ``<output>-simulated``.

:class:`BookLayout` knows every file a book owns, so ``clean`` can offer the ones a manifest no
longer makes (a removed chapter, an old title's M4B), and :func:`name_problems` predicts every
output name before the first paid request (names are bounded in bytes: file systems count bytes,
and a CJK title triples in UTF-8).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.models import Manifest

JOURNAL_NAME = "journal.sqlite"
LOCK_NAME = ".run.lock"
CACHE_DIR = "cache"
STATE_DIR = ".assembly"
AAC_DIR = "aac"  # in the state folder: each chapter's share of the book, as ADTS AAC
REPORT_NAME = "delivery-report.json"
BOOK_STATE_NAME = "book.json"
MEASUREMENTS_DIR = "measurements"
REVIEW_DIR = "review"
DELIVERY_DIR = "delivery"
PREVIEWS_DIR = "previews"
PEAKS_DIR = "peaks"  # in the state folder: each chapter's waveform for its review page
SIMULATED_SUFFIX = "-simulated"
BOOK_SUFFIX = ".m4b"

# Most file systems allow 255 bytes per name. Temporary names add ".", ".<8 hex>.part" and, for the
# book's intermediate AAC file, ".aac.m4a": keep our own names well under that.
NAME_MAX_BYTES = 255
TEMP_OVERHEAD_BYTES = 1 + 9 + 5 + 8
SLUG_MAX_BYTES = 180
PATH_MAX_BYTES = 4000

CHAPTER_SUFFIXES = {"off": (".mp3",), "sentence": (".mp3", ".srt", ".vtt"),
                    "word": (".mp3", ".srt", ".vtt", ".words.vtt", ".words.json")}
ALL_CHAPTER_SUFFIXES = CHAPTER_SUFFIXES["word"]
_CHAPTER_FILE_RE = re.compile(r"^(\d{2,})-([A-Za-z0-9][A-Za-z0-9_-]*)(\.words\.vtt|\.words\.json|\.mp3|\.srt|\.vtt)$")
_CACHE_NAME_RE = re.compile(r"^([0-9a-f]{32})(?:\.take(\d+))?\.(mp3|json)$")
_SLUG_RE = re.compile(r"[^\w]+", re.UNICODE)


def slugify(title: str, *, max_bytes: int = SLUG_MAX_BYTES) -> str:
    """A file-name-safe slug: lower case, runs of anything but letters and digits (any script) -> '-',
    at most ``max_bytes`` bytes of UTF-8 (cut at a character, never inside one)."""
    slug = _SLUG_RE.sub("-", title.casefold()).strip("-_")
    encoded = slug.encode("utf-8")
    if len(encoded) > max_bytes:
        slug = encoded[:max_bytes].decode("utf-8", errors="ignore").rstrip("-_")
    return slug or "audiobook"


def chapter_stem(track: int, chapter_id: str) -> str:
    return f"{track:02d}-{chapter_id}"


def simulated_twin(output: Path) -> Path:
    """Where a ``--simulate`` rehearsal of a book in ``output`` writes: beside it, never in it, so
    simulated audio is never taken for paid audio of the same text."""
    if not output.name:
        raise ValueError(f"{output} has no folder name to put a rehearsal beside")
    return output.with_name(output.name + SIMULATED_SUFFIX)


def parse_cache_name(name: str) -> tuple[str, int] | None:
    """(chunk key, take) of a cache file name :meth:`BookLayout.take_paths` writes, or None."""
    found = _CACHE_NAME_RE.match(name)
    if not found:
        return None
    return found.group(1), int(found.group(2) or 1)


@dataclass(frozen=True)
class BookLayout:
    """Every path of one book's output folder."""

    root: Path

    @property
    def journal(self) -> Path:
        return self.root / JOURNAL_NAME

    @property
    def lock(self) -> Path:
        return self.root / LOCK_NAME

    @property
    def cache(self) -> Path:
        return self.root / CACHE_DIR

    @property
    def state(self) -> Path:
        return self.root / STATE_DIR

    @property
    def report(self) -> Path:
        return self.root / REPORT_NAME

    @property
    def book_state(self) -> Path:
        return self.state / BOOK_STATE_NAME

    def measurement(self, name: str) -> Path:
        """Where the delivery check keeps its measurement of the output file ``name``."""
        return self.state / MEASUREMENTS_DIR / f"{name}.json"

    def chapter_state(self, chapter_id: str) -> Path:
        return self.state / f"chapter-{chapter_id}.json"

    def chapter_aac(self, chapter_id: str) -> Path:
        """The chapter's share of the M4B: its AAC, joined to the others by stream copy."""
        return self.state / AAC_DIR / f"{chapter_id}.aac"

    def preview(self, line: str, key: str) -> Path:
        """Where `audiobook say` puts the audio of ``line`` sent as the request with ``key``."""
        return self.root / PREVIEWS_DIR / f"{slugify(line, max_bytes=60)}-{key[:8]}.mp3"

    def delivery(self, profile: str) -> Path:
        """Where `audiobook deliver --profile` builds a retailer's package."""
        return self.root / DELIVERY_DIR / profile

    @property
    def review(self) -> Path:
        return self.root / REVIEW_DIR

    def review_page(self, track: int, chapter_id: str) -> Path:
        return self.review / f"{chapter_stem(track, chapter_id)}.html"

    def chapter_peaks(self, chapter_id: str) -> Path:
        """The waveform of a chapter's file, kept for its review page."""
        return self.state / PEAKS_DIR / f"{chapter_id}.json"

    def take_paths(self, key: str, take: int = 1) -> tuple[Path, Path]:
        """Where take ``take`` of a chunk keeps its verified audio and subtitle timings (take 1 is the
        first render, content-addressed by the chunk key)."""
        folder = self.cache / key[:2]
        stem = key if take == 1 else f"{key}.take{take}"
        return folder / f"{stem}.mp3", folder / f"{stem}.json"

    def cache_files(self) -> Iterator[tuple[Path, str, int]]:
        """Every cached take file: (path, key, take)."""
        if not self.cache.is_dir():
            return
        for path in sorted(self.cache.glob("*/*")):
            parsed = parse_cache_name(path.name)
            if parsed is not None and path.is_file():
                yield path, *parsed

    def chapter_files(self, track: int, chapter_id: str, subtitles: str) -> dict[str, Path]:
        """The files of chapter ``track`` by kind ("mp3", "srt", "vtt", "words.vtt", "words.json")."""
        stem = chapter_stem(track, chapter_id)
        return {suffix[1:]: self.root / f"{stem}{suffix}" for suffix in CHAPTER_SUFFIXES[subtitles]}

    def book_file(self, title: str) -> Path:
        return self.root / f"{slugify(title)}{BOOK_SUFFIX}"

    def owned_outputs(self, manifest: Manifest) -> set[Path]:
        """The deliverables the manifest makes here now (chapter files, the book, the report)."""
        owned = {self.report}
        for chapter in manifest.chapters:
            owned |= set(self.chapter_files(chapter.number, chapter.id, manifest.subtitles).values())
        if manifest.audio.m4b:
            owned.add(self.book_file(manifest.book.title))
        return owned

    def stale_outputs(self, manifest: Manifest) -> list[Path]:
        """Files in the folder that this layout writes but the manifest no longer makes: a removed or
        renumbered chapter's files, the book under an old title or with M4B turned off, subtitle files
        after subtitles were turned off, and build state of chapters that are gone."""
        if not self.root.is_dir():
            return []
        owned = self.owned_outputs(manifest)
        stale = [p for p in sorted(self.root.iterdir())
                 if p.is_file() and p not in owned and (_CHAPTER_FILE_RE.match(p.name) or p.suffix == BOOK_SUFFIX)]
        if self.state.is_dir():
            wanted = {self.chapter_state(c.id) for c in manifest.chapters}
            stale += [p for p in sorted(self.state.glob("chapter-*.json")) if p not in wanted]
            parts = {self.chapter_aac(c.id) for c in manifest.chapters} if manifest.audio.m4b else set()
            stale += [p for p in sorted((self.state / AAC_DIR).glob("*.aac")) if p not in parts]
            peaks = {self.chapter_peaks(c.id) for c in manifest.chapters}
            stale += [p for p in sorted((self.state / PEAKS_DIR).glob("*.json")) if p not in peaks]
            measured = {p.name for p in owned | parts}
            stale += [p for p in sorted((self.state / MEASUREMENTS_DIR).glob("*.json"))
                      if p.name.removesuffix(".json") not in measured]
        return stale


def output_names(manifest: Manifest) -> Iterable[str]:
    layout = BookLayout(manifest.output)
    for chapter in manifest.chapters:
        for suffix in ALL_CHAPTER_SUFFIXES:
            yield f"{chapter_stem(chapter.number, chapter.id)}{suffix}"
    yield layout.book_file(manifest.book.title).name
    yield layout.chapter_state(max((c.id for c in manifest.chapters), key=len, default="x")).name


def name_problems(manifest: Manifest) -> list[str]:
    """What would make an output name impossible on a usual file system (checked before paying)."""
    problems = []
    root = len(str(manifest.output).encode("utf-8"))
    for name in output_names(manifest):
        size = len(name.encode("utf-8"))
        if size + TEMP_OVERHEAD_BYTES > NAME_MAX_BYTES:
            problems.append(f"the output file name '{name[:40]}...' is {size} bytes, over what file systems allow "
                            f"({NAME_MAX_BYTES - TEMP_OVERHEAD_BYTES}); shorten it")
        if root + 1 + len(CACHE_DIR) + 40 + size > PATH_MAX_BYTES:
            problems.append(f"the output folder path {manifest.output} is too long ({root} bytes); choose a "
                            "shorter `output`")
            break
    return problems
