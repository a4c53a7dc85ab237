"""Chapter assembly: cached chunk MP3s and subtitle files -> one chapter MP3 with SRT/VTT, and the
chapter's share of the book (its AAC).

The chapter, in samples at ``AudioSettings.sample_rate_hz`` (44.1 kHz), is::

    head | pause_before[0] | kept[0] | pause_before[1] | kept[1] | ... | kept[n-1] | pause_after[n-1] | tail

* ``head = round(head_s * sr)``, ``tail = round(tail_s * sr)``: room tone only.
* ``pause_before[i] = round(chunk.pause_before_s * sr)``, ``pause_after[n-1] = round(pause_after_s * sr)``:
  exactly the silence the chunker asked for (it already holds the sentence, paragraph or scene-break
  pause and any pause marker carried from the chunk's edge).
* ``kept[i]`` is chunk *i*'s decoded audio (resampled to 44.1 kHz mono) from ``first - keep`` to
  ``last + keep``, clipped to the clip: ``first``/``last`` are the first and one-past-the-last
  sample louder than ``silence_threshold_db`` and ``keep = round(trim_keep_s * sr)``. So each chunk
  keeps up to ``trim_keep_s`` of its own leading and trailing silence (less if it had less).

Hence the silence heard at the seam between chunks *i-1* and *i* is
``trail_kept[i-1] + pause_before[i] + lead_kept[i]`` (normally ``2 * trim_keep_s + pause_before_s``),
and the chapter length is exactly ``head + sum(pause_before) + sum(kept) + pause_after[n-1] + tail``
samples; :class:`ChunkSpan` records every term.

Every kept clip gets a linear fade of ``fade_ms`` at both ends (inside its kept silence, so speech
is untouched unless the TTS clipped it), which removes clicks at every cut.

pydub does the per-chunk work (:mod:`pipeline.audio.segments`), one chunk at a time: each decoded
chunk becomes an ``AudioSegment``, is trimmed to its speech, faded, and written after its inserted
silence; the chapter's gain is pydub's too. There is never a whole-chapter segment.

Memory does not grow with the number of chunks: pass 1 decodes the chunks in batches (one ffmpeg per
batch, the next batches in the background), stitches them one at a time into a raw PCM file beside
the outputs while summing their energy by peak level (:class:`LevelHistogram`); pass 2 reads that
file in 6-second blocks, applies the one gain that puts the whole chapter at ``target_rms_db`` RMS
*after* the look-ahead true-peak limiter at ``true_peak_db`` (the histogram predicts what the limiter
takes away), adds the room tone, and streams the result into one ffmpeg MP3 encode (CBR
``bitrate_kbps``) and, when the book is made, one AAC encode of the same samples
(``.assembly/aac/<id>.aac``, which :mod:`pipeline.export` joins into the M4B by stream copy). RMS is
measured over the whole file, pauses included, as ACX measures it.

Room tone: a deterministic, seamlessly looping pink-ish noise bed at ``room_tone_db`` (default -75
dBFS RMS) is added under the whole chapter after the gain, so pauses, head and tail are never
digital silence (ACX rejects that) while the noise floor stays far under ACX's -60 dB.

Outputs (in ``manifest.output``): ``NN-<id>.mp3`` and, unless subtitles are off, ``NN-<id>.srt`` and
``NN-<id>.vtt``; with word subtitles also ``NN-<id>.words.vtt`` and ``NN-<id>.words.json``. Each is
written to a temporary file in the same folder and renamed into place. A fingerprint of every input
is kept in ``.assembly/chapter-<id>.json``, and the chapter's waveform (peaks, for its review page) in
``.assembly/peaks/<id>.json`` (chunk files are named by size and modification time:
they are content-addressed and only ever replaced whole, so nothing is read to fingerprint them); an
unchanged chapter is not rebuilt.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from pipeline import fsio
from pipeline import subtitles as subs
from pipeline.audio import dsp, ffmpeg, segments, tags
from pipeline.errors import AssemblyError
from pipeline.layout import AAC_DIR, BookLayout
from pipeline.models import ChapterPlan, Chunk, ChunkAudio, Manifest

# Bump when the same inputs would now produce different outputs: forces a rebuild.
ASSEMBLY_FORMAT = 2  # 2: pydub's linear fades; chunk files named by size and mtime
DECODE_AHEAD = 2       # batches of clips decoded concurrently in pass 1
DECODE_BATCH_FILES = 8
DECODE_BATCH_BYTES = 4 << 20
PASS2_BLOCK = 1 << 18  # samples per pass-2 block (multiple of the limiter block)
_ZEROS = np.zeros(1 << 16, dtype=dsp.PCM_DTYPE)


@dataclass(frozen=True)
class ChunkSpan:
    """Where chunk ``index`` landed, in chapter samples (see the module docstring for the terms).

    ``origin`` is where the chunk's untrimmed sample 0 would be (subtitle times count from it);
    ``kept_start``/``kept_end`` bound its kept audio; ``pause_before`` is the silence inserted
    before it and ``decoded`` the length of the whole decoded clip.
    """

    index: int
    pause_before: int
    origin: int
    kept_start: int
    kept_end: int
    decoded: int

    @property
    def kept(self) -> int:
        return self.kept_end - self.kept_start

    @property
    def lead_cut(self) -> int:
        """Samples trimmed off the clip's start."""
        return self.kept_start - self.origin

    @property
    def tail_cut(self) -> int:
        return self.decoded - self.lead_cut - self.kept


@dataclass(frozen=True)
class ChapterOutput:
    """The files of one assembled chapter and the facts later stages need.

    ``srt_path``/``vtt_path`` are None when subtitles are off; ``word_paths`` holds the
    ``.words.vtt`` and ``.words.json`` files (empty unless word subtitles were requested).
    ``rebuilt`` is False when the outputs were already up to date. ``samples``/``sample_rate_hz``
    give the exact length; ``gain_db`` is the loudness gain applied; ``warnings`` lists things a
    user should know (a chunk without subtitles, say) that did not stop the chapter.
    """

    chapter_id: str
    title: str
    track: int
    audio_path: Path
    srt_path: Path | None
    vtt_path: Path | None
    word_paths: tuple[Path, ...]
    duration_s: float
    rebuilt: bool
    samples: int = 0
    sample_rate_hz: int = 44_100
    gain_db: float = 0.0
    head: int = 0
    tail: int = 0
    pause_after: int = 0
    spans: tuple[ChunkSpan, ...] = field(default=(), repr=False)
    warnings: tuple[str, ...] = ()
    # The chapter's share of the book: its AAC as ADTS frames (joined to the others by stream copy),
    # the bit rate and coder it was encoded with and its length in frames; None when the book is not
    # made. (States written before the coder was recorded were all encoded with ``twoloop``.)
    aac_path: Path | None = None
    aac_bitrate_kbps: int = 0
    aac_frames: int = 0
    aac_coder: str = "twoloop"

    @property
    def paths(self) -> tuple[Path, ...]:
        extra = tuple(p for p in (self.srt_path, self.vtt_path) if p is not None)
        return (self.audio_path, *extra, *self.word_paths)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("audio_path", "srt_path", "vtt_path"):
            data[key] = None if data[key] is None else Path(data[key]).name
        data["aac_path"] = None if self.aac_path is None else self.aac_path.name
        data["word_paths"] = [Path(p).name for p in self.word_paths]
        data["spans"] = [asdict(s) for s in self.spans]
        data.pop("rebuilt")
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any], *, folder: Path, rebuilt: bool) -> ChapterOutput:
        def path(name: str | None) -> Path | None:
            return None if name is None else folder / name

        values = dict(data)
        values["audio_path"] = folder / values["audio_path"]
        values["srt_path"] = path(values.get("srt_path"))
        values["vtt_path"] = path(values.get("vtt_path"))
        values["word_paths"] = tuple(folder / n for n in values.get("word_paths", []))
        values["spans"] = tuple(ChunkSpan(**s) for s in values.get("spans", []))
        values["warnings"] = tuple(values.get("warnings", []))
        aac = values.get("aac_path")
        values["aac_path"] = None if aac is None else BookLayout(folder).state / AAC_DIR / aac
        return cls(rebuilt=rebuilt, **values)


# --------------------------------------------------------------------------------------------------
# Fingerprint and state


def file_digest(path: Path) -> str:
    """``size:sha256`` of a file's bytes."""
    h = hashlib.sha256()
    size = 0
    try:
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
                size += len(block)
    except OSError as exc:
        raise AssemblyError(f"cannot read {path}: {exc}") from exc
    return f"{size}:{h.hexdigest()}"


def cover_digest(manifest: Manifest) -> str | None:
    cover = manifest.book.cover
    if cover is None:
        return None
    if not Path(cover).is_file():
        raise AssemblyError(f"cover image {cover} does not exist; fix book.cover in {manifest.path}")
    return file_digest(cover)


def file_identity(path: Path) -> str:
    """``size:mtime_ns`` of a file. Chunk audio is content-addressed and only ever replaced whole (an
    atomic rename), so this names its content without reading it."""
    try:
        info = path.stat()
    except OSError as exc:
        raise AssemblyError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return f"{info.st_size}:{info.st_mtime_ns}"


# Audio settings that do not shape a chapter's own files (the book's AAC has its own bit rate; the
# profile only judges the files).
_NOT_CHAPTER_SETTINGS = ("m4b", "m4b_bitrate_kbps", "profile")


def _fingerprint(*, manifest: Manifest, plan: ChapterPlan, audio: Sequence[ChunkAudio], track: int,
                 total_tracks: int) -> str:
    book = asdict(manifest.book)
    book["cover"] = cover_digest(manifest)
    chapter = plan.chapter
    settings = {k: v for k, v in asdict(manifest.audio).items() if k not in _NOT_CHAPTER_SETTINGS}
    doc = {
        "format": ASSEMBLY_FORMAT,
        "chapter": {"id": chapter.id, "title": chapter.title, "number": chapter.number},
        "track": track,
        "total_tracks": total_tracks,
        "subtitles": manifest.subtitles,
        "audio": settings,
        "book": book,
        "chunks": [
            {
                "index": a.chunk.index,
                "key": a.chunk.key,
                "text": hashlib.sha256(a.chunk.text.encode("utf-8")).hexdigest(),
                "pause_before_s": a.chunk.pause_before_s,
                "pause_after_s": a.chunk.pause_after_s,
                "audio": file_identity(a.audio_path),
                "subtitles": file_identity(a.subtitle_path)
                if a.subtitle_path is not None and manifest.subtitles != "off" else None,
            }
            for a in audio
        ],
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def save_waveform(path: Path, audio_path: Path, peaks: Sequence[float]) -> None:
    """Keep a chapter file's waveform (for its review page), named by the file's identity."""
    fsio.write_atomic(fsio.ensure_dir(path.parent) / path.name,
                      json.dumps({"file": file_identity(audio_path), "peaks": list(peaks)}))


def saved_waveform(path: Path, audio_path: Path) -> tuple[float, ...] | None:
    """The waveform :func:`save_waveform` kept, while the chapter file is the one it was taken of."""
    state = read_state(path)
    if state is None or state.get("file") != file_identity(audio_path) or not isinstance(state.get("peaks"), list):
        return None
    return tuple(float(p) for p in state["peaks"])


def read_state(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _outputs_intact(state: dict[str, Any], folder: Path) -> bool:
    files = state.get("files")
    if not isinstance(files, dict) or not files:
        return False
    for name, size in files.items():
        try:
            if (folder / name).stat().st_size != size:
                return False
        except OSError:
            return False
    return True


def existing_chapter(manifest: Manifest, chapter_id: str) -> ChapterOutput | None:
    """The outputs of a chapter's last build, if they are intact (without checking its inputs)."""
    output = Path(manifest.output)
    state = read_state(BookLayout(output).chapter_state(chapter_id))
    if state is None or not _outputs_intact(state, output) or "output" not in state:
        return None
    return ChapterOutput.from_json(state["output"], folder=output, rebuilt=False)


# --------------------------------------------------------------------------------------------------
# Pass 1: decode, trim, fade, append


@dataclass
class _Pass1:
    spans: list[ChunkSpan]
    samples: int
    sum_sq: float
    head: int
    tail: int
    pause_after: int
    levels: LevelHistogram


PEAK_BIN_DB = 0.1
PEAK_FLOOR_DB = -120.0
PEAK_BINS = int(-PEAK_FLOOR_DB / PEAK_BIN_DB) + 1
MAX_LIMITER_PUSH_DB = 12.0  # never raise the gain more than this above the unlimited one


class LevelHistogram:
    """Energy of the chapter by the peak level around it, to predict what the limiter takes away.

    The chapter is cut into the limiter's blocks (aligned to the chapter start); each block's energy
    is added to the bin of the highest sample peak among it and ``LIMITER_SPREAD`` blocks either
    side (the blocks whose peaks set its gain). For a gain G the limiter turns a block whose peak
    would exceed the ceiling down by the excess, so the chapter's RMS after limiting is predictable
    from this fixed-size table, and pass 1 can pick the gain that lands on the target *after*
    limiting instead of undershooting it.
    """

    def __init__(self) -> None:
        self.energy = np.zeros(PEAK_BINS)

    def add(self, samples: np.ndarray, *, position: int) -> float:
        """Account for int16 ``samples`` starting at chapter sample ``position``; returns their
        energy (sum of squares, int16 units). Works on int16 and float32 copies only: this runs on
        every sample of the chapter."""
        block = dsp.LIMITER_BLOCK
        lead = position % block
        n = lead + len(samples)
        padded = np.zeros(-(-n // block) * block, dtype=dsp.PCM_DTYPE)
        padded[lead:n] = samples
        blocks = padded.reshape(-1, block)
        peaks = np.maximum(blocks.max(axis=1).astype(np.float64), -blocks.min(axis=1).astype(np.float64))
        spread = peaks.copy()
        for shift in range(1, dsp.LIMITER_SPREAD + 1):
            spread[shift:] = np.maximum(spread[shift:], peaks[:-shift])
            spread[:-shift] = np.maximum(spread[:-shift], peaks[shift:])
        as_float = blocks.astype(np.float32)
        energy = np.einsum("ij,ij->i", as_float, as_float).astype(np.float64)
        scale = 1 / dsp.INT16_FULL_SCALE
        level = 20 * np.log10(np.maximum(spread * scale, 10 ** (PEAK_FLOOR_DB / 20)))
        bins = np.clip(np.round((level - PEAK_FLOOR_DB) / PEAK_BIN_DB).astype(np.int64), 0, PEAK_BINS - 1)
        self.energy += np.bincount(bins, weights=energy * scale * scale, minlength=PEAK_BINS)
        return float(energy.sum())

    def rms_after(self, gain_db: float, *, ceiling_db: float, samples: int) -> float:
        """Predicted RMS (dB) of the chapter after ``gain_db`` and limiting at ``ceiling_db``."""
        peak_db = PEAK_FLOOR_DB + np.arange(PEAK_BINS) * PEAK_BIN_DB
        cut = np.minimum(0.0, ceiling_db - (peak_db + gain_db))
        total = float(np.sum(self.energy * 10 ** ((gain_db + cut) / 10)))
        return 10 * math.log10(max(total / samples, 1e-30))

    def gain_for(self, target_db: float, *, ceiling_db: float, samples: int) -> float:
        """The gain (dB) whose limited result has ``target_db`` RMS, pushing the limiter at most
        ``MAX_LIMITER_PUSH_DB`` past the plain gain (a chapter of nothing but peaks cannot get
        louder by limiting harder)."""
        plain = target_db - self.rms_after(0.0, ceiling_db=math.inf, samples=samples)
        low, high = plain, plain + MAX_LIMITER_PUSH_DB
        if self.rms_after(low, ceiling_db=ceiling_db, samples=samples) >= target_db - 0.01:
            return low
        if self.rms_after(high, ceiling_db=ceiling_db, samples=samples) <= target_db:
            return high
        for _ in range(40):
            middle = (low + high) / 2
            if self.rms_after(middle, ceiling_db=ceiling_db, samples=samples) < target_db:
                low = middle
            else:
                high = middle
        return (low + high) / 2


def _chunk_label(chunk: Chunk) -> str:
    return f"chapter {chunk.chapter_id!r}, chunk {chunk.index}"


def _write_zeros(f: BinaryIO, count: int) -> None:
    while count > 0:
        n = min(count, len(_ZEROS))
        f.write(_ZEROS[:n].data)
        count -= n


def _decode_batches(audio: Sequence[ChunkAudio]) -> list[list[ChunkAudio]]:
    """Consecutive clips grouped for one ffmpeg run each: at most DECODE_BATCH_FILES clips and
    DECODE_BATCH_BYTES of MP3 (about 4 minutes at 128 kbps, ~20 MB decoded) per batch."""
    batches: list[list[ChunkAudio]] = []
    size = 0
    for item in audio:
        try:
            item_size = item.audio_path.stat().st_size
        except OSError:
            item_size = 0  # the decoder reports the missing file
        if not batches or len(batches[-1]) >= DECODE_BATCH_FILES or size + item_size > DECODE_BATCH_BYTES:
            batches.append([])
            size = 0
        batches[-1].append(item)
        size += item_size
    return batches


def _first_pass(manifest: Manifest, audio: Sequence[ChunkAudio], pcm: BinaryIO, pcm_folder: Path) -> _Pass1:
    settings = manifest.audio
    sr = settings.sample_rate_hz
    keep = max(0, round(settings.trim_keep_s * sr))
    fade = max(0, round(settings.fade_ms / 1000 * sr))
    head = max(0, round(settings.head_s * sr))
    tail = max(0, round(settings.tail_s * sr))
    pause_after = max(0, round(audio[-1].chunk.pause_after_s * sr))

    def decode(batch: list[ChunkAudio]) -> list[np.ndarray]:
        return ffmpeg.decode_pcm_batch([a.audio_path for a in batch], sample_rate_hz=sr,
                                         labels=[_chunk_label(a.chunk) for a in batch],
                                         scratch_dir=pcm_folder)

    spans: list[ChunkSpan] = []
    sum_sq = 0.0
    levels = LevelHistogram()
    _write_zeros(pcm, head)
    pos = head
    # Decoding dominates this pass. Clips are decoded in batches (one ffmpeg per batch, see
    # _decode_batches), DECODE_AHEAD batches at a time in the background while the current clip is
    # processed; memory holds at most DECODE_AHEAD + 1 batches, whatever the chapter's length.
    batches = _decode_batches(audio)
    with ThreadPoolExecutor(max_workers=DECODE_AHEAD) as pool:
        pending: deque[Future[list[np.ndarray]]] = deque(pool.submit(decode, b) for b in batches[:DECODE_AHEAD])
        next_batch = DECODE_AHEAD
        decoded: deque[np.ndarray] = deque()
        for item in audio:
            if not decoded:
                decoded.extend(pending.popleft().result())
                if next_batch < len(batches):
                    pending.append(pool.submit(decode, batches[next_batch]))
                    next_batch += 1
            samples = decoded.popleft()
            bounds = dsp.speech_bounds(samples, threshold_db=settings.silence_threshold_db)
            if bounds is None:
                raise AssemblyError(
                    f"{_chunk_label(item.chunk)}: {item.audio_path} holds no sound above "
                    f"{settings.silence_threshold_db:g} dBFS; the synthesis probably failed. Delete the "
                    "file so `audiobook run` synthesizes it again, or lower audio.silence_threshold_db")
            first, end = bounds
            start, stop = max(0, first - keep), min(len(samples), end + keep)
            # pydub does the per-chunk work: the chunk as a segment, trimmed to its speech, faded at
            # both cuts, after its inserted silence; one chunk at a time, straight into the PCM file
            clip = segments.faded(segments.trimmed(segments.from_samples(samples, sample_rate_hz=sr), start, stop),
                                  fade)
            pause = max(0, round(item.chunk.pause_before_s * sr))
            pcm.write(segments.silence(pause, sample_rate_hz=sr).raw_data)
            pos += pause
            pcm.write(clip.raw_data)
            kept = segments.samples_of(clip)
            for s in range(0, len(kept), 1 << 20):  # bounded temporaries even for a very long clip
                sum_sq += levels.add(kept[s:s + (1 << 20)], position=pos + s)
            spans.append(ChunkSpan(index=item.chunk.index, pause_before=pause, origin=pos - start,
                                   kept_start=pos, kept_end=pos + len(kept), decoded=len(samples)))
            pos += len(kept)
            del samples, kept, clip
    _write_zeros(pcm, pause_after + tail)
    pos += pause_after + tail
    return _Pass1(spans=spans, samples=pos, sum_sq=sum_sq, head=head, tail=tail, pause_after=pause_after,
                  levels=levels)


# --------------------------------------------------------------------------------------------------
# Pass 2: gain, limiter, room tone, encode


def _read_samples(f: BinaryIO, start: int, stop: int) -> np.ndarray:
    f.seek(start * dsp.BYTES_PER_SAMPLE)
    data = f.read((stop - start) * dsp.BYTES_PER_SAMPLE)
    return np.frombuffer(data, dtype=dsp.PCM_DTYPE)


def render_chapter_pcm(pcm: BinaryIO, *, total: int, gain: float, ceiling: float, sample_rate_hz: int,
                       room_tone_db: float) -> Iterator[np.ndarray]:
    """Blocks of the finished chapter (int16): ``pcm`` times ``gain`` (applied by pydub), true-peak
    limited to ``ceiling`` (full scale 1.0), plus room tone. Reads at most one block plus context at a
    time."""
    ctx = dsp.LIMITER_CONTEXT
    gain_db = 20 * math.log10(gain)
    for start in range(0, total, PASS2_BLOCK):
        stop = min(total, start + PASS2_BLOCK)
        lo, hi = max(0, start - ctx), min(total, stop + ctx)
        x = segments.gained(_read_samples(pcm, lo, hi), gain_db, sample_rate_hz=sample_rate_hz)
        x *= dsp.limiter_gains(x, ceiling=ceiling)
        y = x[start - lo:stop - lo]
        y += dsp.room_tone(start, stop - start, sample_rate_hz=sample_rate_hz, level_db=room_tone_db)
        y *= dsp.INT16_FULL_SCALE
        np.round(y, out=y)
        np.clip(y, -dsp.INT16_FULL_SCALE, dsp.INT16_FULL_SCALE - 1, out=y)
        yield y.astype(dsp.PCM_DTYPE)


# --------------------------------------------------------------------------------------------------
# Subtitles


@dataclass
class _Cues:
    sentences: list[subs.Cue]
    words: list[subs.Cue]
    warnings: list[str]


def chapter_cues(manifest: Manifest, audio: Sequence[ChunkAudio], spans: Sequence[ChunkSpan]) -> _Cues:
    sr = manifest.audio.sample_rate_hz
    sentences: list[subs.Cue] = []
    words: list[subs.Cue] = []
    warnings: list[str] = []
    for item, span in zip(audio, spans, strict=True):
        placement = subs.ChunkPlacement(origin=span.origin, kept_start=span.kept_start,
                                        kept_end=span.kept_end, sample_rate_hz=sr)
        label = _chunk_label(item.chunk)
        if item.subtitle_path is None:
            warnings.append(f"{label}: no subtitle file; one cue spans the whole chunk. Re-run "
                            "`audiobook run` with subtitles on to fetch it")
            sentences.append(subs.fallback_cue(chunk_text=item.chunk.text, placement=placement))
            continue
        timings = subs.load_subtitle_file(item.subtitle_path, label=label)
        placed = subs.place_chunk(timings, chunk_text=item.chunk.text, placement=placement, spoken=item.chunk.spoken)
        if not placed.sentences:
            warnings.append(f"{label}: subtitle file {item.subtitle_path} has no timed sentences; one cue "
                            "spans the whole chunk")
            sentences.append(subs.fallback_cue(chunk_text=item.chunk.text, placement=placement))
        sentences.extend(placed.sentences)
        if manifest.subtitles == "word" and not placed.words:
            warnings.append(f"{label}: subtitle file {item.subtitle_path} has no word timings")
        words.extend(placed.words)
    return _Cues(subs.tidy_cues(sentences), subs.tidy_cues(words), warnings)


# --------------------------------------------------------------------------------------------------
# The entry point


def _check_inputs(plan: ChapterPlan, audio: Sequence[ChunkAudio]) -> list[ChunkAudio]:
    chapter_id = plan.chapter.id
    if not plan.chunks:
        raise AssemblyError(f"chapter {chapter_id!r} has no chunks to assemble; check its text in the manifest")
    by_index = {a.chunk.index: a for a in audio}
    ordered: list[ChunkAudio] = []
    missing: list[str] = []
    for chunk in sorted(plan.chunks, key=lambda c: c.index):
        item = by_index.get(chunk.index)
        if item is None or item.chunk.key != chunk.key:
            missing.append(str(chunk.index))
            continue
        # the plan's chunk is the truth for text and pauses; the audio entry supplies the files
        ordered.append(ChunkAudio(chunk=chunk, audio_path=item.audio_path, subtitle_path=item.subtitle_path))
    if missing:
        raise AssemblyError(f"chapter {chapter_id!r}: no downloaded audio for chunk(s) {', '.join(missing)}; "
                            "run `audiobook run` to synthesize them before stitching")
    return ordered


def _write_state(path: Path, fingerprint: str, files: dict[str, int], result: ChapterOutput) -> None:
    fsio.write_atomic(path, json.dumps({"fingerprint": fingerprint, "files": files, "output": result.to_json()},
                                       indent=1, default=str))


def book_aac_coder(manifest: Manifest) -> str:
    """The AAC coder of the book's chapter parts: ``fast`` (most of a chapter's build is its AAC), but
    ``twoloop`` for a delivery profile that sets a floor on the M4B's bit rate (Google Play's 128 kbps),
    which the fast coder's average may miss."""
    return "twoloop" if manifest.audio.profile == "google-play" else "fast"


def _aac_intact(chapter: ChapterOutput, bitrate_kbps: int, coder: str) -> bool:
    return (chapter.aac_path is not None and chapter.aac_bitrate_kbps == bitrate_kbps and chapter.aac_frames > 0
            and chapter.aac_coder == coder and chapter.aac_path.is_file())


def _encode_book_share(chapter: ChapterOutput, target: Path, *, bitrate_kbps: int, coder: str) -> ChapterOutput:
    """Encode a built chapter's share of the book from its MP3 (when the book was turned on, or its bit
    rate changed, after the chapter was built)."""
    sr = chapter.sample_rate_hz
    with fsio.TempFiles(fsio.ensure_dir(target.parent)) as temps:
        tmp = temps.new(target.name)
        with ffmpeg.aac_encoder(tmp, sample_rate_hz=sr, bitrate_kbps=bitrate_kbps, coder=coder,
                                what=f"chapter {chapter.chapter_id!r} for the book", container="adts") as encoder, \
                ffmpeg.stream_pcm(chapter.audio_path, sample_rate_hz=sr,
                                  label=f"chapter {chapter.chapter_id!r}") as blocks:
            for block in blocks:
                encoder.write(block)
        frames = ffmpeg.adts_frames(tmp)
        temps.commit(tmp, target)
    return dataclasses.replace(chapter, aac_path=target, aac_bitrate_kbps=bitrate_kbps, aac_frames=frames,
                               aac_coder=coder)


def ensure_book_share(manifest: Manifest, chapter: ChapterOutput) -> ChapterOutput:
    """``chapter`` with its share of the book (its AAC at the manifest's M4B bit rate), encoding it from
    the chapter's MP3 only when it is missing or of another bit rate; the chapter's state remembers it."""
    bitrate, coder = manifest.audio.m4b_bitrate_kbps, book_aac_coder(manifest)
    if _aac_intact(chapter, bitrate, coder):
        return chapter
    layout = BookLayout(Path(manifest.output))
    done = _encode_book_share(chapter, layout.chapter_aac(chapter.chapter_id), bitrate_kbps=bitrate, coder=coder)
    state_path = layout.chapter_state(chapter.chapter_id)
    state = read_state(state_path)
    if state is not None and isinstance(state.get("files"), dict):
        _write_state(state_path, str(state.get("fingerprint")), state["files"], done)
    return done


def _tags(manifest: Manifest, plan: ChapterPlan, track: int, total_tracks: int) -> tags.Tags:
    """The chapter's tags; its track is its place in the book's files, the credits included (the file
    number of opening credits is 00, its track 1)."""
    book = manifest.book
    ids = [c.id for c in manifest.chapters]
    track = ids.index(plan.chapter.id) + 1 if plan.chapter.id in ids else track
    return tags.Tags(title=plan.chapter.title, album=book.title, author=book.author,
                         narrator=book.narrator, year=book.year,
                         description=book.description, track=track, total_tracks=total_tracks,
                         cover=book.cover)


def assemble_chapter(*, manifest: Manifest, plan: ChapterPlan, audio: Sequence[ChunkAudio], track: int,
                     total_tracks: int, force: bool = False) -> ChapterOutput:
    """Stitch a chapter's cached chunk audio into ``NN-<id>.mp3`` plus its subtitle files and, when the
    book is made (``audio.m4b``), its share of the book: the same samples encoded once more, as AAC.

    ``audio`` must hold a downloaded clip for every chunk of ``plan`` (matched by index and key).
    Returns the existing outputs untouched (``rebuilt=False``) when the fingerprint of every input
    (chunk keys, text and pauses, the identity of the audio and subtitle files, audio settings, tags,
    track numbering) matches the last build and the files are intact, unless ``force``; its AAC is
    encoded then only if it is missing or of another bit rate. Raises :class:`AssemblyError` (bad or
    missing input) or :class:`AudioToolError` (ffmpeg).
    """
    chapter = plan.chapter
    items = _check_inputs(plan, audio)
    output = Path(manifest.output)
    layout = BookLayout(output)
    fsio.ensure_dir(layout.state)
    state_path = layout.chapter_state(chapter.id)
    fingerprint = _fingerprint(manifest=manifest, plan=plan, audio=items, track=track, total_tracks=total_tracks)
    old_state = read_state(state_path)
    aac_kbps = manifest.audio.m4b_bitrate_kbps if manifest.audio.m4b else 0
    aac_coder = book_aac_coder(manifest)
    if (not force and old_state is not None and old_state.get("fingerprint") == fingerprint
            and _outputs_intact(old_state, output)):
        done = ChapterOutput.from_json(old_state["output"], folder=output, rebuilt=False)
        if not aac_kbps:  # the book is not made (any more): the chapter has no share of it
            done = dataclasses.replace(done, aac_path=None, aac_bitrate_kbps=0, aac_frames=0)
        elif not _aac_intact(done, aac_kbps, aac_coder):
            done = _encode_book_share(done, layout.chapter_aac(chapter.id), bitrate_kbps=aac_kbps, coder=aac_coder)
            _write_state(state_path, fingerprint, old_state["files"], done)
        return done

    settings = manifest.audio
    sr = settings.sample_rate_hz
    final = layout.chapter_files(track, chapter.id, manifest.subtitles)
    stem = final["mp3"].stem

    fsio.remove_stale_parts(output, [f"{stem}.pcm", *(p.name for p in final.values())])
    fsio.remove_stale_parts(layout.chapter_aac(chapter.id).parent, [layout.chapter_aac(chapter.id).name])
    with fsio.TempFiles(output) as temps_made:
        pcm_path = temps_made.new(f"{stem}.pcm")
        with open(pcm_path, "w+b") as pcm:
            first = _first_pass(manifest, items, pcm, output)
            pcm.flush()
            rms = math.sqrt(first.sum_sq / first.samples) / dsp.INT16_FULL_SCALE
            if rms <= 0:
                raise AssemblyError(f"chapter {chapter.id!r} is silent after trimming; check its chunk audio")
            gain = 10 ** (first.levels.gain_for(settings.target_rms_db, ceiling_db=settings.true_peak_db,
                                                samples=first.samples) / 20)
            ceiling = 10 ** (settings.true_peak_db / 20)
            temp_mp3 = temps_made.new(final["mp3"].name)
            aac_path = layout.chapter_aac(chapter.id)
            temp_aac = temps_made.new(aac_path.name, folder=aac_path.parent) if aac_kbps else None
            waveform = dsp.PeakMeter(first.samples, dsp.waveform_bins(first.samples / sr))
            with contextlib.ExitStack() as encoders:
                mp3 = encoders.enter_context(ffmpeg.mp3_encoder(
                    temp_mp3, sample_rate_hz=sr, bitrate_kbps=settings.bitrate_kbps, what=f"chapter {chapter.id!r}"))
                aac = None if temp_aac is None else encoders.enter_context(ffmpeg.aac_encoder(
                    temp_aac, sample_rate_hz=sr, bitrate_kbps=aac_kbps, what=f"chapter {chapter.id!r} for the book",
                    container="adts", coder=aac_coder))
                for block in render_chapter_pcm(pcm, total=first.samples, gain=gain, ceiling=ceiling,
                                                sample_rate_hz=sr, room_tone_db=settings.room_tone_db):
                    mp3.write(block)
                    waveform.add(block)
                    if aac is not None:
                        aac.write(block)
        fsio.unlink_quietly(pcm_path)
        tags.tag_mp3(temp_mp3, _tags(manifest, plan, track, total_tracks))

        temps = {"mp3": temp_mp3}
        warnings: list[str] = []
        if manifest.subtitles != "off":
            cues = chapter_cues(manifest, items, first.spans)
            warnings = cues.warnings
            texts = {"srt": subs.render_srt(cues.sentences), "vtt": subs.render_vtt(cues.sentences)}
            if manifest.subtitles == "word":
                texts["words.vtt"] = subs.render_vtt(cues.words)
                texts["words.json"] = subs.render_words_json(
                    chapter_id=chapter.id, title=chapter.title, audio_file=final["mp3"].name,
                    sentences=cues.sentences, words=cues.words)
            for kind, text in texts.items():
                tmp = temps_made.new(final[kind].name)
                tmp.write_text(text, encoding="utf-8")
                temps[kind] = tmp
        for kind, tmp in temps.items():
            temps_made.commit(tmp, final[kind])
        save_waveform(layout.chapter_peaks(chapter.id), final["mp3"], waveform.result())
        aac_frames = 0
        if temp_aac is not None:
            aac_frames = ffmpeg.adts_frames(temp_aac)
            temps_made.commit(temp_aac, aac_path)

    result = ChapterOutput(
        chapter_id=chapter.id, title=chapter.title, track=track, audio_path=final["mp3"],
        srt_path=final.get("srt"), vtt_path=final.get("vtt"),
        word_paths=tuple(p for k, p in final.items() if k.startswith("words.")),
        duration_s=first.samples / sr, rebuilt=True, samples=first.samples, sample_rate_hz=sr,
        gain_db=20 * math.log10(gain), head=first.head, tail=first.tail, pause_after=first.pause_after,
        spans=tuple(first.spans), warnings=tuple(warnings),
        aac_path=aac_path if aac_frames else None, aac_bitrate_kbps=aac_kbps if aac_frames else 0,
        aac_frames=aac_frames, aac_coder=aac_coder,
    )
    files = {p.name: p.stat().st_size for p in final.values()}
    _write_state(state_path, fingerprint, files, result)
    # Outputs of an earlier build under other names (the track number changed, subtitles turned off)
    if old_state is not None and isinstance(old_state.get("files"), dict):
        for name in old_state["files"]:
            if name not in files and "/" not in name and name.startswith(tuple("0123456789")):
                fsio.unlink_quietly(output / name)
    return result
