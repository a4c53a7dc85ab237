"""`audiobook deliver`: a retailer's package, built from the finished book without any API call.

For a profile (:mod:`pipeline.profiles`) the package is, in the retailer's order and naming:
opening credits, every chapter, closing credits (each a track: n/N), then the retail sample and the
cover. Every file is tagged (title, album, author, narrator, year, track n/N, the cover where the
profile allows it, and an ``AI_NARRATION`` disclosure as a custom tag), measured and held to every
rule of the profile; ``delivery-report.json`` and ``delivery-report.html`` say, per file and per
rule, what was measured, the limit, pass or fail, and the rule's source.

How the files are made, from the chapter files the book already has:

* A chapter the profile takes as it is (its codec, sample rate, bit rate and mode) is copied and
  tagged again: the same audio, bit for bit.
* A chapter longer than the profile's limit is split into parts (``-part1``, ``-part2``) at the
  longest pause between two sentences within reach of the limit (a paragraph's, where there is
  one), found from its subtitle cues and the audio's own silence; each part gets the chapter's room
  tone at the new head and tail, and subtitles timed to it (no sentence lost or repeated).
* The retail sample is cut from a chapter's finished audio at sentence boundaries (the cues), with
  a fade at each end and room tone around it: no credits, no spoken title, no API call.

Cuts and the sample are decoded from the chapter's MP3 and encoded again at the profile's bit
rate; they are decoded in blocks, so a two-hour chapter costs no memory.

The package is built in a temporary folder beside its destination and swapped in only when every
file is written: a second ``deliver`` replaces the folder whole, or leaves the last one as it was.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import delivery, fsio, profiles
from pipeline import subtitles as subs
from pipeline.assembly import ChapterOutput, chapter_cues, existing_chapter
from pipeline.audio import dsp, ffmpeg, tags
from pipeline.errors import AssemblyError, PipelineError
from pipeline.finishing import chunk_audio
from pipeline.layout import BookLayout
from pipeline.manifest import comparable_words, sample_start
from pipeline.models import CLOSING_CREDITS, OPENING_CREDITS, ChapterPlan, ChapterSpec, Manifest

REPORT_JSON = "delivery-report.json"
MARKER = ".audiobook-delivery"   # in every package: the folder deliver may replace (nothing else)
REPORT_HTML = "delivery-report.html"
SUBTITLES_DIR = "subtitles"
AI_TAG = "AI_NARRATION"
FRAME_S = 0.01                 # the resolution of the silence map
CUE_SLACK_S = 0.25             # how far a pause may sit outside the gap between two cues
MIN_SEAM_S = 0.1               # a sentence boundary without this much silence is no place to cut
SPLIT_MARGIN_S = 30.0          # parts stay this far under the profile's limit
SAMPLE_FADE_IN_S = 0.05
SAMPLE_FADE_OUT_S = 0.5
SAMPLE_MARGIN_S = 5.0          # a sample stays this far inside the retailer's range of lengths
NAME_MAX_BYTES = 120
_UNSAFE_NAME = re.compile(r"[^\w \-.,'()&]+", re.UNICODE)


class DeliveryRefused(PipelineError):
    """The package cannot be built as asked (a missing flag or manifest section); nothing was written."""

    exit_code = 2


@dataclass(frozen=True)
class Piece:
    """One delivered audio file: samples ``start``..``stop`` of a chapter file (None: all of it), with
    room tone added where a cut made a new head or tail."""

    role: str                 # "opening credits", "chapter", "closing credits", "retail sample"
    chapter: ChapterSpec
    output: ChapterOutput
    title: str
    name: str
    track: int | None = None
    part: int | None = None
    parts: int = 1
    start: int | None = None
    stop: int | None = None
    head_pad_s: float = 0.0
    tail_pad_s: float = 0.0
    fade_in_s: float = 0.0
    fade_out_s: float = 0.0
    cues: tuple[subs.Cue, ...] = ()      # in the piece's own time

    @property
    def whole(self) -> bool:
        return self.start is None


@dataclass
class FileResult:
    piece: Piece
    report: delivery.FileReport
    subtitles: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return self.report.passed

    def to_json(self) -> dict[str, Any]:
        p = self.piece
        return {"role": p.role, "chapter": p.chapter.id, "title": p.title, "track": p.track, "part": p.part,
                "parts": p.parts, "subtitles": list(self.subtitles), **self.report.to_json()}


@dataclass
class PackageReport:
    profile: profiles.Profile
    folder: Path
    files: list[FileResult] = field(default_factory=list)
    book_checks: list[delivery.Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    ai_confirmed: bool = False

    @property
    def passed(self) -> bool:
        return all(f.passed for f in self.files) and all(
            c.passed for c in self.book_checks if c.severity == delivery.ERROR)

    def failures(self) -> list[str]:
        """Each failed rule: the file (or the book), the rule, what was measured, the limit and the fix."""
        lines = []
        for c in self.book_checks:
            if not c.passed and c.severity == delivery.ERROR:
                lines.append(f"book: {c.failure(': ')}")
        for f in self.files:
            if f.report.error:
                lines.append(f"{f.piece.name}: {f.report.error}")
            for c in f.report.checks:
                if not c.passed and c.severity == delivery.ERROR:
                    lines.append(f"{f.piece.name}: {c.failure()}")
        return lines

    def to_json(self) -> dict[str, Any]:
        p = self.profile
        return {
            "profile": p.name, "retailer": p.retailer, "source": p.source, "passed": self.passed,
            "folder": str(self.folder),
            "policy": {"synthetic_narration": p.ai_policy, "source": p.ai_source,
                       "confirmation_required": p.ai_confirm, "confirmed": self.ai_confirmed},
            "book_checks": [asdict(c) for c in self.book_checks],
            "files": [f.to_json() for f in self.files],
            "notes": self.notes,
            "failures": self.failures(),
        }


# --------------------------------------------------------------------------------------------------
# What goes in the package


def package_folder(manifest: Manifest, p: profiles.Profile, out: Path | None) -> Path:
    return Path(out) if out is not None else BookLayout(manifest.output).delivery(p.name)


def refuse_early(manifest: Manifest, p: profiles.Profile, *, confirm_ai: bool, out: Path | None = None) -> None:
    """What stops a delivery before anything is read or written: the retailer's policy on synthetic
    narration without the confirmation, credits the profile requires but the manifest lacks, and a
    package folder that holds something else."""
    _check_destination(package_folder(manifest, p, out), manifest)
    if p.ai_confirm and not confirm_ai:
        raise DeliveryRefused(
            f"{p.retailer}: {p.ai_policy} ({p.ai_source}). This book is narrated by a synthetic (cloned) voice: "
            f"pass --confirm-ai-narration-allowed to build the {p.name} package once you have that authorisation")
    if p.credits_required and not manifest.has_credits:
        raise DeliveryRefused(
            f"the {p.name} profile requires opening and closing credits as their own files ({p.source}), and "
            f"{manifest.path} has no credits: section. Add one (`credits: {{}}` reads the defaults built from the "
            "title, author and narrator), then `audiobook run` renders just the credits")


def file_name(p: profiles.Profile, *, n: int, title: str, book: str, part: int | None = None, total: int = 0) -> str:
    """A delivered file's name (without extension) by the profile's pattern: safe on every file
    system, its play order first (zero-padded to the number of ``total`` files: names sort as they play)."""
    number = str(n).zfill(max(p.number_width, len(str(total))))
    stem = p.naming.format(n=number, title=_safe(title), book=_safe(book))
    stem = re.sub(r"\s+", " ", stem).strip(" .")
    raw = stem.encode("utf-8")[:NAME_MAX_BYTES]
    stem = raw.decode("utf-8", errors="ignore").rstrip(" .-_") or number
    return f"{stem}-part{part}" if part is not None else stem


def _safe(text: str) -> str:
    return _UNSAFE_NAME.sub("", unicodedata.normalize("NFC", text)).strip()


def _role(chapter: ChapterSpec) -> str:
    return {OPENING_CREDITS: "opening credits", CLOSING_CREDITS: "closing credits"}.get(chapter.kind, "chapter")


# --------------------------------------------------------------------------------------------------
# The silence map and the seams between sentences


MAP_RATE_HZ = 44_100  # the silence map's decode rate: a whole number of samples in a 10 ms frame


def frame_levels(path: Path, *, sample_rate_hz: int = MAP_RATE_HZ) -> np.ndarray:
    """The RMS (linear, full scale 32768) of every 10 ms frame of a file, decoded in blocks."""
    frame = round(sample_rate_hz * FRAME_S)
    out: list[np.ndarray] = []
    carry = np.zeros(0, dtype=np.float64)
    with ffmpeg.stream_pcm(path, sample_rate_hz=sample_rate_hz, label=path.name) as blocks:
        for block in blocks:
            data = np.concatenate([carry, block.astype(np.float64)])
            whole = len(data) - len(data) % frame
            if whole:
                out.append(np.sqrt(np.mean(data[:whole].reshape(-1, frame) ** 2, axis=1)))
            carry = data[whole:]
    if len(carry):
        out.append(np.array([math.sqrt(float(np.mean(carry * carry)))]))
    return np.concatenate(out) if out else np.zeros(0)


@dataclass(frozen=True)
class Seam:
    """The silence between sentence ``after`` and the next one: frames ``quiet_start``..``quiet_end``."""

    after: int                 # index of the cue before it
    quiet_start: int
    quiet_end: int

    @property
    def length(self) -> int:
        return self.quiet_end - self.quiet_start


def seams(cues: Sequence[subs.Cue], quiet: np.ndarray) -> list[Seam]:
    """Each boundary between two cues where the audio is silent long enough to cut: the longest run
    of quiet frames within the gap between the cues (widened by :data:`CUE_SLACK_S`: the API's
    timings are approximate)."""
    found = []
    slack = round(CUE_SLACK_S / FRAME_S)
    for i in range(len(cues) - 1):
        lo = max(0, int(cues[i].end_s / FRAME_S) - slack)
        hi = min(len(quiet), math.ceil(cues[i + 1].start_s / FRAME_S) + slack)
        best = _longest_run(quiet[lo:hi])
        if best is not None and (best[1] - best[0]) * FRAME_S >= MIN_SEAM_S:
            found.append(Seam(i, lo + best[0], lo + best[1]))
    return found


def _longest_run(flags: np.ndarray) -> tuple[int, int] | None:
    if not len(flags) or not flags.any():
        return None
    padded = np.concatenate([[False], flags, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    starts, ends = edges[::2], edges[1::2]
    k = int(np.argmax(ends - starts))
    return int(starts[k]), int(ends[k])


def split_points(duration_s: float, found: Sequence[Seam], *, limit_s: float) -> list[Seam]:
    """Where to cut a chapter of ``duration_s`` so that no part is longer than ``limit_s``: from each
    part's start, the longest pause in the last 40 % of its reach (a paragraph's rather than a
    sentence's), the latest one on a tie. Raises :class:`AssemblyError` when no pause is in reach."""
    cuts: list[Seam] = []
    start = 0.0
    while duration_s - start > limit_s:
        reach = [s for s in found if start + 0.6 * limit_s <= s.quiet_start * FRAME_S <= start + limit_s]
        if not reach:
            reach = [s for s in found if start < s.quiet_start * FRAME_S <= start + limit_s]
        if not reach:
            raise AssemblyError(f"no pause between sentences within {limit_s / 60:.1f} minutes of "
                                f"{start / 60:.1f} min to split the chapter at")
        best = max(reach, key=lambda s: (s.length, s.quiet_start))
        cuts.append(best)
        start = best.quiet_end * FRAME_S
    return cuts


# --------------------------------------------------------------------------------------------------
# Cutting and encoding


def _edge_gain(pos: int, count: int, length: int, fade_in: int, fade_out: int) -> np.ndarray | None:
    """The fade gains of samples ``pos .. pos + count`` of a piece ``length`` long (None: no fade)."""
    if not (fade_in and pos < fade_in) and not (fade_out and pos + count > length - fade_out):
        return None
    idx = np.arange(pos, pos + count, dtype=np.float64)
    gain = np.ones(count)
    if fade_in:
        gain = np.minimum(gain, np.clip(idx / fade_in, 0.0, 1.0))
    if fade_out:
        gain = np.minimum(gain, np.clip((length - idx) / fade_out, 0.0, 1.0))
    return gain


def _range_blocks(blocks: Iterator[np.ndarray], start: int, stop: int) -> Iterator[np.ndarray]:
    """The samples ``start``..``stop`` of a stream of blocks."""
    pos = 0
    for block in blocks:
        lo, hi = max(0, start - pos), min(len(block), stop - pos)
        pos += len(block)
        if lo < hi:
            yield block[lo:hi]
        if pos >= stop:
            return


def write_piece(source: Path, piece: Piece, target: Path, *, sample_rate_hz: int, bitrate_kbps: int,
                room_tone_db: float) -> None:
    """Encode samples ``piece.start``..``piece.stop`` of a chapter file as MP3, faded at its cuts, with
    room tone before and after; decoded and encoded in blocks."""
    assert piece.start is not None and piece.stop is not None
    head = round(piece.head_pad_s * sample_rate_hz)
    tail = round(piece.tail_pad_s * sample_rate_hz)
    length = piece.stop - piece.start
    fade_in = round(piece.fade_in_s * sample_rate_hz)
    fade_out = round(piece.fade_out_s * sample_rate_hz)
    with ffmpeg.stream_pcm(source, sample_rate_hz=sample_rate_hz, label=source.name) as blocks, \
            ffmpeg.mp3_encoder(target, sample_rate_hz=sample_rate_hz, bitrate_kbps=bitrate_kbps,
                               what=piece.name) as encoder:
        if head:
            encoder.write(_tone(0, head, sample_rate_hz, room_tone_db))
        pos = 0
        for block in _range_blocks(blocks, piece.start, piece.stop):
            gain = _edge_gain(pos, len(block), length, fade_in, fade_out)
            if gain is not None:
                mixed = block.astype(np.float64) * gain
                # the faded stretch keeps the room tone under it: never digital silence
                mixed += (1 - gain) * dsp.room_tone(head + pos, len(block), sample_rate_hz=sample_rate_hz,
                                                    level_db=room_tone_db) * dsp.INT16_FULL_SCALE
                block = np.clip(np.round(mixed), -32768, 32767).astype(dsp.PCM_DTYPE)
            encoder.write(block)
            pos += len(block)
        if tail:
            encoder.write(_tone(head + pos, tail, sample_rate_hz, room_tone_db))


def _tone(start: int, count: int, sample_rate_hz: int, level_db: float) -> np.ndarray:
    tone = dsp.room_tone(start, count, sample_rate_hz=sample_rate_hz, level_db=level_db) * dsp.INT16_FULL_SCALE
    return np.clip(np.round(tone), -32768, 32767).astype(dsp.PCM_DTYPE)


# --------------------------------------------------------------------------------------------------
# Planning the package


@dataclass
class _Chapter:
    spec: ChapterSpec
    output: ChapterOutput
    plan: ChapterPlan | None
    cues: list[subs.Cue] | None = None
    quiet: np.ndarray | None = None


def _cues(manifest: Manifest, ch: _Chapter, selected: dict[str, int]) -> list[subs.Cue]:
    """The chapter's sentence cues (chapter seconds), as its subtitles have them; one per chunk when
    the takes have no timings."""
    if ch.cues is None:
        audio = chunk_audio(manifest, ch.plan, selected) if ch.plan is not None else None
        if audio is None or len(audio) != len(ch.output.spans):
            raise AssemblyError(f"chapter {ch.spec.id!r}: its chunk audio is not all in the cache; run "
                                f"`audiobook stitch {manifest.path}` first")
        ch.cues = chapter_cues(replace(manifest, subtitles="sentence"), audio, ch.output.spans).sentences
    return ch.cues


def _quiet(manifest: Manifest, ch: _Chapter) -> np.ndarray:
    if ch.quiet is None:
        levels = frame_levels(ch.output.audio_path)
        ch.quiet = levels <= 10 ** (manifest.audio.silence_threshold_db / 20) * dsp.INT16_FULL_SCALE
    return ch.quiet


def _speech_edges(seam: Seam, sr: int, keep_s: float) -> tuple[int, int]:
    """(end of the part before, start of the part after) in samples: the speech either side of the
    seam's silence, with ``keep_s`` of that silence kept on each side."""
    quiet_start, quiet_end = round(seam.quiet_start * FRAME_S * sr), round(seam.quiet_end * FRAME_S * sr)
    keep = min(round(keep_s * sr), (quiet_end - quiet_start) // 2)
    return quiet_start + keep, quiet_end - keep


def _shifted(cues: Sequence[subs.Cue], offset_s: float, length_s: float) -> tuple[subs.Cue, ...]:
    out = []
    for c in cues:
        start, end = max(0.0, c.start_s - offset_s), min(length_s, c.end_s - offset_s)
        if end > start:
            out.append(subs.Cue(start, end, c.text))
    return tuple(out)


def _parts(manifest: Manifest, ch: _Chapter, selected: dict[str, int], p: profiles.Profile, *, head_s: float,
           tail_s: float) -> list[Piece] | None:
    """The chapter cut into parts under the profile's limit, or None when it fits whole."""
    limit = p.max_file_minutes * 60 if p.max_file_minutes is not None else None
    out = ch.output
    if limit is None or out.duration_s <= limit:
        return None
    cues = _cues(manifest, ch, selected)
    usable = limit - head_s - tail_s - SPLIT_MARGIN_S
    try:
        cuts = split_points(out.duration_s, seams(cues, _quiet(manifest, ch)), limit_s=usable)
    except AssemblyError as exc:
        raise AssemblyError(f"chapter {ch.spec.id!r} ({out.duration_s / 60:.1f} min) is over the {p.name} limit of "
                            f"{p.max_file_minutes:g} min, and there is {exc}; split it in the manifest (two chapters) "
                            "or put a paragraph break where it may be cut") from None
    sr = out.sample_rate_hz
    bounds = [(0, None)] + [_speech_edges(s, sr, manifest.audio.trim_keep_s) for s in cuts] + [(None, out.samples)]
    pieces = []
    total = len(cuts) + 1
    for k in range(total):
        start = 0 if k == 0 else bounds[k][1]
        stop = out.samples if k == total - 1 else bounds[k + 1][0]
        assert start is not None and stop is not None
        pad_head = 0.0 if k == 0 else head_s
        pad_tail = 0.0 if k == total - 1 else tail_s
        offset = start / sr - pad_head
        length = (stop - start) / sr + pad_head + pad_tail
        first = 0 if k == 0 else cuts[k - 1].after + 1
        last = len(cues) if k == total - 1 else cuts[k].after + 1
        pieces.append(Piece(
            role=_role(ch.spec), chapter=ch.spec, output=out, title=f"{ch.spec.title} (part {k + 1} of {total})",
            name="", part=k + 1, parts=total, start=start, stop=stop, head_pad_s=pad_head, tail_pad_s=pad_tail,
            fade_in_s=manifest.audio.fade_ms / 1000 if k else 0.0,
            fade_out_s=manifest.audio.fade_ms / 1000 if k < total - 1 else 0.0,
            cues=_shifted(cues[first:last], offset, length)))
    return pieces


def _sample_piece(manifest: Manifest, chapters: Sequence[_Chapter], selected: dict[str, int],
                  p: profiles.Profile, *, head_s: float, tail_s: float) -> tuple[Piece | None, list[str]]:
    """The retail sample: about ``sample.seconds`` of one chapter from a sentence's start to a
    sentence's end, with its title (when spoken) left out."""
    settings = manifest.sample
    story = [c for c in chapters if not c.spec.is_credits]
    notes: list[str] = []
    if settings.chapter is not None:
        pick = next((c for c in story if c.spec.id == settings.chapter), None)
    else:
        long_enough = [c for c in story if c.output.duration_s >= settings.seconds + 10]
        pick = long_enough[0] if long_enough else max(story, key=lambda c: c.output.duration_s, default=None)
        if pick is not None and not long_enough:
            notes.append(f"no chapter is {settings.seconds:.0f} s long: the sample is from the longest, "
                         f"{pick.spec.id}")
    if pick is None:
        return None, notes
    cues = _cues(manifest, pick, selected)
    if not cues:
        return None, [f"chapter {pick.spec.id} has no sentences to cut a sample from"]
    first = 0
    if settings.at is not None:
        wanted = sample_start(pick.spec.text, settings.at) or 0
        first = _cue_of_word(cues, wanted)
    elif settings.start_s is not None:
        first = next((i for i, c in enumerate(cues) if c.start_s >= settings.start_s), len(cues) - 1)
    elif len(cues) > 1 and comparable_words(cues[0].text) == comparable_words(pick.spec.title):
        first = 1  # the title, spoken or the text's own heading, is not the story
    # about the seconds asked for, kept a little inside the retailer's range (it ends at a sentence end)
    low = p.sample_seconds.low or 0.0
    high = p.sample_seconds.high or float("inf")
    want = min(max(settings.seconds, low + SAMPLE_MARGIN_S), high - SAMPLE_MARGIN_S)
    start_s = cues[first].start_s

    def length(j: int) -> float:
        return cues[j].end_s - start_s + head_s + tail_s

    last = first
    while last + 1 < len(cues) and length(last + 1) <= want:
        last += 1
    while length(last) < low + SAMPLE_MARGIN_S and last + 1 < len(cues) and length(last + 1) <= high:
        last += 1
    out = pick.output
    sr = out.sample_rate_hz
    quiet = _quiet(manifest, pick)
    found = {s.after: s for s in seams(cues, quiet)}
    keep = manifest.audio.trim_keep_s
    before = found.get(first - 1)
    after = found.get(last)
    start = _speech_edges(before, sr, keep)[1] if before is not None else round(max(0.0, start_s - keep) * sr)
    stop = _speech_edges(after, sr, keep)[0] if after is not None else min(out.samples,
                                                                           round((cues[last].end_s + keep) * sr))
    if first == 0:
        start = 0  # the chapter's own head of room tone
    if last == len(cues) - 1:
        stop = out.samples
    return Piece(role="retail sample", chapter=pick.spec, output=out, title=f"{manifest.book.title} (retail sample)",
                 name="", start=start, stop=stop, head_pad_s=head_s if start else 0.0,
                 tail_pad_s=tail_s if stop < out.samples else 0.0,
                 fade_in_s=SAMPLE_FADE_IN_S, fade_out_s=SAMPLE_FADE_OUT_S), notes


def _cue_of_word(cues: Sequence[subs.Cue], index: int) -> int:
    """The cue holding the chapter's word number ``index`` (counting the cues' words)."""
    seen = 0
    for i, c in enumerate(cues):
        seen += len(comparable_words(c.text))
        if seen > index:
            return i
    return len(cues) - 1


# --------------------------------------------------------------------------------------------------
# The whole delivery


def deliver_book(manifest: Manifest, chapter_plans: Sequence[ChapterPlan], selected: dict[str, int], *,
                 profile: profiles.Profile, out: Path | None = None, confirm_ai: bool = False,
                 qc_fails: Sequence[str] = ()) -> PackageReport:
    """Build the package of ``profile`` for a book whose chapters are all built (see
    :func:`pipeline.runner.deliver`, which builds what is out of date first) into ``out`` (default
    ``<output>/delivery/<profile>``); returns its report, also written there as JSON and HTML.
    ``qc_fails`` are the selected takes QC fails (one line each): a book that holds one fails the
    delivery, for a take that drops or cuts words would ship a book that differs from its text."""
    p = profile
    refuse_early(manifest, p, confirm_ai=confirm_ai, out=out)
    folder = package_folder(manifest, p, out)
    plans = {cp.chapter.id: cp for cp in chapter_plans}
    chapters = []
    for spec in manifest.chapters:
        built = existing_chapter(manifest, spec.id)
        if built is None:
            raise AssemblyError(f"chapter {spec.id!r} has no finished file; run `audiobook run {manifest.path}` "
                                "(or `audiobook stitch`) first")
        chapters.append(_Chapter(spec, built, plans.get(spec.id)))
    audio = manifest.audio
    # the room tone a cut gets: the book's, kept inside the profile's range
    head_s = p.head_s.clamp(audio.head_s) if p.head_s else audio.head_s
    tail_s = p.tail_s.clamp(audio.tail_s) if p.tail_s else audio.tail_s
    # never re-encoded up: a chapter at a lower bit rate than the retailer's fails its rule, with the fix
    bitrate = audio.bitrate_kbps
    report = PackageReport(profile=p, folder=folder, ai_confirmed=confirm_ai)

    pieces: list[Piece] = []
    for ch in chapters:
        split = _parts(manifest, ch, selected, p, head_s=head_s, tail_s=tail_s)
        pieces += split or [Piece(role=_role(ch.spec), chapter=ch.spec, output=ch.output, title=ch.spec.title,
                                  name="")]
    total = len(pieces)
    named = []
    for n, piece in enumerate(pieces, start=1):
        name = file_name(p, n=n, title=piece.chapter.title, book=manifest.book.title, part=piece.part,
                         total=total) + ".mp3"
        named.append(replace(piece, name=name, track=n))
    sample, notes = _sample_piece(manifest, chapters, selected, p, head_s=head_s, tail_s=tail_s)
    report.notes += notes
    if sample is not None:
        named.append(replace(sample, name=f"{_safe(p.sample_name) or 'Retail Sample'}.mp3"))

    _tidy(folder)
    work = fsio.part_path(folder)
    fsio.ensure_dir(work)
    try:
        for piece in named:
            report.files.append(_make_file(manifest, piece, work, p, bitrate=bitrate, total=total,
                                           by_chapter={c.spec.id: c for c in chapters}, selected=selected))
        report.book_checks = _book_checks(manifest, p, report, work)
        report.book_checks.append(delivery.Check(
            "QC", f"{len(qc_fails)} take(s) fail" + (f": {'; '.join(qc_fails[:5])}" if qc_fails else ""),
            "no failing take", not qc_fails, delivery.ERROR, "soundclone-audiobook QC (pipeline/qc.py)",
            "listen with `audiobook review` and redo them with `audiobook retake`, then deliver again"))
        _write_report(report, work)
        fsio.write_atomic(work / MARKER, json.dumps({"profile": p.name, "book": manifest.book.title}) + "\n",
                          durable=True)
        fsio.fsync_dir(work)
        _swap(work, folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report


def _check_destination(folder: Path, manifest: Manifest) -> None:
    """A folder ``deliver`` may replace: new, empty, or a package it made (its marker file is there);
    never the book's output folder, the manifest's, or a folder holding either."""
    if folder.exists() and not folder.is_dir():
        raise DeliveryRefused(f"{folder} is a file; give --out a folder")
    target = folder.resolve()
    for kept in (Path(manifest.output).resolve(), manifest.path.resolve().parent):
        if target == kept or target in kept.parents:
            raise DeliveryRefused(f"{folder} holds the book ({kept}); deliver replaces its folder whole, so give "
                                  "--out a folder of its own, such as the default <output>/delivery/<profile>")
    if folder.is_dir() and any(folder.iterdir()) and not (folder / MARKER).is_file():
        raise DeliveryRefused(f"{folder} holds files that are not a package deliver made (no {MARKER}); deliver "
                              "replaces its folder whole, so give --out a new or empty folder")


def _old(folder: Path) -> Path:
    return folder.with_name(f".{folder.name}.old")


def _tidy(folder: Path) -> None:
    """What a killed ``deliver`` left beside ``folder``: its half-built package goes, and a last package
    moved aside but not yet replaced comes back."""
    if folder.parent.is_dir():
        for stale in folder.parent.glob(f".{folder.name}.*{fsio.PART_SUFFIX}"):
            shutil.rmtree(stale, ignore_errors=True)
    if _old(folder).is_dir() and not folder.exists():
        os.replace(_old(folder), folder)


def _swap(work: Path, folder: Path) -> None:
    """Put the finished package in place of the last one: the old folder moves aside, the new one in,
    then the old one goes. A crash in between leaves the old package under ``.<name>.old``, which the
    next ``deliver`` puts back before it starts."""
    old = _old(folder)
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        os.replace(folder, old)
    os.replace(work, folder)
    fsio.fsync_dir(folder.parent)
    shutil.rmtree(old, ignore_errors=True)


def _tags_for(manifest: Manifest, piece: Piece, p: profiles.Profile, total: int) -> tags.Tags:
    book = manifest.book
    disclosure = (f"synthetic narration: a cloned voice rendered by the SoundClone API"
                  f"{f' (narrator credited: {book.narrator})' if book.narrator else ''}")
    return tags.Tags(title=piece.title, album=book.title, author=book.author, narrator=book.narrator, year=book.year,
                     description=book.description, track=piece.track, total_tracks=total if piece.track else None,
                     cover=book.cover if p.cover_in_tags else None, extra=((AI_TAG, disclosure),))


def _make_file(manifest: Manifest, piece: Piece, work: Path, p: profiles.Profile, *, bitrate: int, total: int,
               by_chapter: dict[str, _Chapter], selected: dict[str, int]) -> FileResult:
    target = work / piece.name
    source = piece.output.audio_path
    measurement = None
    if piece.whole:
        tmp = fsio.part_path(target)
        shutil.copyfile(source, tmp)
        tags.tag_mp3(tmp, _tags_for(manifest, piece, p, total))
        fsio.commit(tmp, target, durable=True)
        # the same audio as the chapter file: its measurement (taken when it was built) holds
        measurement = delivery.measure(source, manifest)[1]
    else:
        tmp = fsio.part_path(target)
        write_piece(source, piece, tmp, sample_rate_hz=piece.output.sample_rate_hz, bitrate_kbps=bitrate,
                    room_tone_db=manifest.audio.room_tone_db)
        tags.tag_mp3(tmp, _tags_for(manifest, piece, p, total))
        fsio.commit(tmp, target, durable=True)
    info = tags.stream_info(target, decoded=ffmpeg.decoded_format(target))
    if measurement is None:
        with ffmpeg.stream_pcm(target, sample_rate_hz=piece.output.sample_rate_hz) as blocks:
            measurement = dsp.measure_pcm(blocks, sample_rate_hz=piece.output.sample_rate_hz,
                                          silence_threshold_db=manifest.audio.silence_threshold_db,
                                          label=piece.name)
    lufs = ffmpeg.integrated_loudness(target) if p.loudness_unit == profiles.LUFS else None
    checks = delivery.profile_checks(p, info, measurement, lufs=lufs)
    checks += _tag_checks(target, p, track=piece.track is not None)
    if piece.role == "retail sample":
        required = p.sample_required
        checks.append(delivery.Check(
            "sample length", f"{measurement.duration_s:.0f} s", p.sample_seconds.describe("s"),
            p.sample_seconds.holds(measurement.duration_s), p.severity_of("sample length") if required
            else delivery.WARNING, p.source_of("sample length") if required
            else f"{p.retailer} asks for no sample: the usual 1-5 minutes, as advice",
            "set sample.seconds (and sample.chapter for a longer chapter)"))
    written = _write_subtitles(manifest, piece, work, by_chapter, selected)
    return FileResult(piece, delivery.FileReport(target, info, measurement, tuple(checks)), written)


TAG_FIXES = {"author": "set author: in the manifest", "narrator": "set narrator: in the manifest",
             "title": "give the chapter a title", "album": "set title: in the manifest",
             "track": "(written by deliver)"}


def _tag_checks(path: Path, p: profiles.Profile, *, track: bool) -> list[delivery.Check]:
    """The profile's required tags, read back from the file (the sample is no track: it has no number)."""
    wanted = [t for t in p.required_tags if track or t != "track"]
    if not wanted:
        return []
    found = tags.read_mp3_tags(path)
    missing = [t for t in wanted if not found.get(t)]
    return [delivery.Check("tags", "missing " + ", ".join(missing) if missing else "all present",
                           ", ".join(wanted), not missing, p.severity_of("tags"), p.source_of("tags"),
                           "; ".join(TAG_FIXES.get(t, "") for t in missing))]


def _write_subtitles(manifest: Manifest, piece: Piece, work: Path, by_chapter: dict[str, _Chapter],
                     selected: dict[str, int]) -> tuple[str, ...]:
    """The piece's subtitles beside the package, in ``subtitles/``: the chapter's own files for a
    whole chapter, cues timed to the part for a part; none for the sample or without subtitles."""
    if manifest.subtitles == "off" or piece.role == "retail sample":
        return ()
    folder = fsio.ensure_dir(work / SUBTITLES_DIR)
    stem = Path(piece.name).stem
    written = []
    if piece.whole:
        for src in (piece.output.srt_path, piece.output.vtt_path, *piece.output.word_paths):
            if src is not None and src.is_file():
                suffix = ".words" + src.suffix if src.name.endswith(".words" + src.suffix) else src.suffix
                shutil.copyfile(src, folder / f"{stem}{suffix}")
                written.append(f"{SUBTITLES_DIR}/{stem}{suffix}")
        return tuple(written)
    for suffix, render in ((".srt", subs.render_srt), (".vtt", subs.render_vtt)):
        fsio.write_atomic(folder / f"{stem}{suffix}", render(list(piece.cues)))
        written.append(f"{SUBTITLES_DIR}/{stem}{suffix}")
    return tuple(written)


def _book_checks(manifest: Manifest, p: profiles.Profile, report: PackageReport, work: Path) -> list[delivery.Check]:
    checks: list[delivery.Check] = []
    roles = [f.piece.role for f in report.files]

    def rule(name: str, measured: str, limit: str, ok: bool, fix: str) -> None:
        checks.append(delivery.Check(name, measured, limit, ok, p.severity_of(name), p.source_of(name), fix))

    if p.credits_required:
        for role in ("opening credits", "closing credits"):
            rule(role, "present" if role in roles else "missing", "its own file", role in roles,
                 "add a credits: section to the manifest and `audiobook run`")
    if p.sample_required:
        rule("retail sample", "present" if "retail sample" in roles else "missing",
             f"a sample of {p.sample_seconds.describe('s')}", "retail sample" in roles,
             "give sample.chapter in the manifest")
    if p.same_channels:
        channels = {f.report.info.channels for f in report.files if f.report.info is not None}
        rule("same channels", ", ".join(str(c) for c in sorted(channels)), "every file mono, or every file stereo",
             len(channels) <= 1, "rebuild every chapter with `audiobook stitch --force`")
    if manifest.book.cover is not None:
        _copy_cover(manifest.book.cover, work / p.cover_name)
    if p.cover_min_px is not None or p.cover_square:
        checks += _cover_checks(manifest, p)
    return checks


def _copy_cover(cover: Path, target: Path) -> None:
    """The cover as the profile names it: a JPEG copied as it is, a PNG converted when a .jpg is wanted."""
    from PIL import Image

    with Image.open(cover) as image:
        if image.format == "JPEG" or target.suffix.lower() != ".jpg":
            shutil.copyfile(cover, target if image.format == "JPEG" else target.with_suffix(cover.suffix.lower()))
        else:
            image.convert("RGB").save(target, "JPEG", quality=92)


def _cover_checks(manifest: Manifest, p: profiles.Profile) -> list[delivery.Check]:
    from PIL import Image

    cover = manifest.book.cover
    fix = "set cover: in the manifest to a square JPEG or PNG"
    if cover is None:
        wanted = "a square cover" + (f" of at least {p.cover_min_px} px" if p.cover_min_px else "")
        return [delivery.Check("cover", "none", wanted, False,
                               p.severity_of("cover"), p.source_of("cover"), fix)]
    with Image.open(cover) as image:
        width, height = image.size
    checks = []
    if p.cover_min_px is not None:
        checks.append(delivery.Check("cover size", f"{width} x {height} px", f"at least {p.cover_min_px} px a side",
                                     min(width, height) >= p.cover_min_px, p.severity_of("cover size"),
                                     p.source_of("cover size"), f"export the cover at {p.cover_min_px} px or more"))
    if p.cover_square:
        checks.append(delivery.Check("cover square", f"{width} x {height} px", "square (1:1)", width == height,
                                     p.severity_of("cover square"), p.source_of("cover square"),
                                     "crop the cover to a square"))
    return checks


def _write_report(report: PackageReport, folder: Path) -> None:
    from pipeline.delivery_page import render_html

    data = report.to_json()
    fsio.write_atomic(folder / REPORT_JSON, json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    fsio.write_atomic(folder / REPORT_HTML, render_html(data))
