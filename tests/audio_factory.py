"""Test helpers: synthetic chunk audio with known timing, and small manifests and plans.

A synthetic chunk is "speech" made of tone bursts (one per word) separated by silence, with a known
amount of leading and trailing silence, encoded to MP3 at 32 kHz mono (the API's inferred format)
by ffmpeg, plus the matching subtitle JSON in the API's shape. Everything is deterministic.
The dataclasses are built directly so these tests do not depend on the manifest loader.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from pipeline.audio.ffmpeg import find_ffmpeg
from pipeline.models import (
    ApiSettings,
    AudioSettings,
    BookInfo,
    ChapterPlan,
    ChapterSpec,
    Chunk,
    ChunkAudio,
    ChunkingSettings,
    Manifest,
    PauseSettings,
    Pricing,
    Voice,
)
from pipeline.qc import AudioMeasures
from pipeline.request import AudioRequest

CHUNK_RATE_HZ = 32_000
WORD_AMPLITUDE = 0.3
WORD_EDGE_S = 0.004  # a short ramp on each burst, as real speech has no step onsets
VOCAB = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet")


@dataclass(frozen=True)
class WordPlan:
    text: str
    begin_s: float
    end_s: float


@dataclass(frozen=True)
class SentencePlan:
    text: str           # as it appears in the chunk text (no markers)
    begin_s: float
    end_s: float
    words: tuple[WordPlan, ...]
    text_begin: int     # offsets into the chunk text, counting markers
    text_end: int


@dataclass(frozen=True)
class SyntheticChunk:
    """A generated chunk: its text (maybe with markers) and where each sentence/word sounds."""

    text: str
    lead_s: float
    tail_s: float
    duration_s: float
    sentences: tuple[SentencePlan, ...]

    @property
    def speech_s(self) -> float:
        """From the first word's onset to the last word's end."""
        return self.sentences[-1].end_s - self.sentences[0].begin_s


def design_chunk(*, seed: int, sentences: int = 2, words: int = 3, lead_s: float = 0.3, tail_s: float = 0.4,
                 word_s: float = 0.16, gap_s: float = 0.07, sentence_gap_s: float = 0.3,
                 marker_s: float | None = None) -> SyntheticChunk:
    """Plan a chunk: ``sentences`` sentences of ``words`` words; with ``marker_s`` a ``<#x#>`` marker
    sits between the first two sentences and the audio holds that much extra silence there."""
    rng = np.random.default_rng(seed)
    t = lead_s
    parts: list[str] = []
    pos = 0
    plans: list[SentencePlan] = []
    for s in range(sentences):
        if s:
            sep = " "
            t += sentence_gap_s
            if marker_s is not None and s == 1:
                sep = f" <#{marker_s:g}#> "
                t += marker_s
            parts.append(sep)
            pos += len(sep)
        word_plans = []
        names = [VOCAB[int(i)] for i in rng.integers(0, len(VOCAB), words)]
        names[0] = names[0].capitalize()
        sentence_text = " ".join(names) + "."
        begin = t
        for w, name in enumerate(names):
            if w:
                t += gap_s
            word_plans.append(WordPlan(name, round(t, 6), round(t + word_s, 6)))
            t += word_s
        plans.append(SentencePlan(sentence_text, begin, t, tuple(word_plans), pos, pos + len(sentence_text)))
        parts.append(sentence_text)
        pos += len(sentence_text)
    return SyntheticChunk("".join(parts), lead_s, tail_s, t + tail_s, tuple(plans))


def render_chunk(design: SyntheticChunk, *, seed: int, rate_hz: int = CHUNK_RATE_HZ,
                 abrupt: bool = False) -> np.ndarray:
    """The chunk's samples (float, full scale 1.0). ``abrupt`` bursts start and stop at full
    amplitude with no ramp (a cut a stitcher must fade)."""
    n = round(design.duration_s * rate_hz)
    out = np.zeros(n)
    rng = np.random.default_rng(seed + 1000)
    edge = 0 if abrupt else round(WORD_EDGE_S * rate_hz)
    for sentence in design.sentences:
        for word in sentence.words:
            a, b = round(word.begin_s * rate_hz), round(word.end_s * rate_hz)
            freq = float(rng.uniform(180, 320))
            t = np.arange(b - a) / rate_hz
            burst = WORD_AMPLITUDE * np.cos(2 * np.pi * freq * t)
            if edge:
                ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(edge) + 0.5) / edge)
                burst[:edge] *= ramp
                burst[-edge:] *= ramp[::-1]
            out[a:b] = burst
    return out


def encode_mp3(samples: np.ndarray, path: Path, *, rate_hz: int = CHUNK_RATE_HZ, kbps: int = 128) -> Path:
    pcm = np.round(np.clip(samples, -1, 32767 / 32768) * 32768).astype("<i2").tobytes()
    subprocess.run([find_ffmpeg(), "-v", "error", "-y", "-f", "s16le", "-ar", str(rate_hz), "-ac", "1",
                    "-i", "-", "-c:a", "libmp3lame", "-b:a", f"{kbps}k", "-f", "mp3", str(path)],
                   input=pcm, check=True)
    return path


def subtitle_json(design: SyntheticChunk, *, words: bool = True) -> list[dict[str, object]]:
    """The API's subtitle file for ``design``: ms times from the clip start, offsets counting markers."""
    entries = []
    for s in design.sentences:
        entry: dict[str, object] = {
            "text": s.text,
            "pronounce_text": s.text,
            "time_begin": s.begin_s * 1000 + 0.25,  # fractional ms, as MiniMax sends
            "time_end": s.end_s * 1000,
            "text_begin": s.text_begin,
            "text_end": s.text_end,
            "timestamped_words": None,
        }
        if words:
            cursor = s.text_begin
            items = []
            for w in s.words:
                start = design.text.index(w.text, cursor)
                cursor = start + len(w.text)
                items.append({"word": w.text, "word_begin": start, "word_end": cursor, "pronounce_word": w.text,
                              "time_begin": w.begin_s * 1000, "time_end": w.end_s * 1000})
            entry["timestamped_words"] = items
        entries.append(entry)
    return entries


def make_manifest(tmp_path: Path, *, chapters: tuple[ChapterSpec, ...] = (), subtitles: str = "word",
                  audio: AudioSettings | None = None, book: BookInfo | None = None, **overrides: object) -> Manifest:
    manifest = Manifest(
        path=tmp_path / "book.yaml",
        book=book or BookInfo(title="The Test Book", author="Ada Author", narrator="Nia Narrator", year=2024,
                              description="A book of tones."),
        language="English",
        output=tmp_path / "out",
        voice=Voice(model_id="voice-1"),
        subtitles=subtitles,
        pricing=Pricing(),
        chunking=ChunkingSettings(),
        pauses=PauseSettings(),
        audio=audio or AudioSettings(),
        api=ApiSettings(),
        chapters=chapters,
    )
    return replace(manifest, **overrides) if overrides else manifest


@dataclass(frozen=True)
class BuiltChapter:
    plan: ChapterPlan
    audio: tuple[ChunkAudio, ...]
    designs: tuple[SyntheticChunk, ...]


def build_chapter(folder: Path, *, chapter_id: str = "ch1", title: str = "Chapter One", number: int = 1,
                  designs: tuple[SyntheticChunk, ...] | None = None, pauses: tuple[float, ...] | None = None,
                  pause_after_s: float = 0.0, subtitles: bool = True, word_timings: bool = True,
                  abrupt: bool = False, seed: int = 0) -> BuiltChapter:
    """Generate a chapter's chunks (MP3 + subtitle JSON) under ``folder`` and its plan."""
    folder.mkdir(parents=True, exist_ok=True)
    if designs is None:
        designs = tuple(design_chunk(seed=seed + i) for i in range(3))
    if pauses is None:
        pauses = tuple(0.0 if i == 0 else 0.8 for i in range(len(designs)))
    chunks: list[Chunk] = []
    audio: list[ChunkAudio] = []
    offset = 0
    for i, (design, pause) in enumerate(zip(designs, pauses, strict=True)):
        request = AudioRequest.for_chunk(design.text, voice=Voice(model_id=f"model_{chapter_id}_{i}"),
                                         language="English", subtitles="sentence")
        chunk = Chunk(chapter_id=chapter_id, index=i, start=offset, end=offset + len(design.text),
                      text=design.text, billed_chars=len(design.text), pause_before_s=pause,
                      pause_after_s=pause_after_s if i == len(designs) - 1 else 0.0, request=request)
        offset += len(design.text) + 2
        mp3 = encode_mp3(render_chunk(design, seed=seed + i, abrupt=abrupt), folder / f"{chapter_id}-{i}.mp3")
        sub_path = None
        if subtitles:
            sub_path = folder / f"{chapter_id}-{i}.json"
            sub_path.write_text(json.dumps(subtitle_json(design, words=word_timings)), encoding="utf-8")
        chunks.append(chunk)
        audio.append(ChunkAudio(chunk=chunk, audio_path=mp3, subtitle_path=sub_path))
    text = "\n\n".join(d.text for d in designs)
    spec = ChapterSpec(id=chapter_id, title=title, number=number, text=text, voice=Voice(model_id="voice-1"),
                       language="English")
    return BuiltChapter(ChapterPlan(spec, tuple(chunks)), tuple(audio), designs)


def decode(path: Path, rate_hz: int = 44_100) -> np.ndarray:
    """A file's samples as float (full scale 1.0), decoded by ffmpeg."""
    raw = subprocess.run([find_ffmpeg(), "-v", "error", "-i", str(path), "-f", "s16le", "-ac", "1",
                          "-ar", str(rate_hz), "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, dtype="<i2").astype(np.float64) / 32768


def onsets(samples: np.ndarray, *, rate_hz: int = 44_100, threshold: float = 0.03,
           min_gap_s: float = 0.05) -> list[float]:
    """Times (s) where sound rises above ``threshold`` after at least ``min_gap_s`` below it."""
    loud = np.abs(samples) > threshold
    idx = np.flatnonzero(loud)
    if len(idx) == 0:
        return []
    gaps = np.flatnonzero(np.diff(idx) > min_gap_s * rate_hz)
    starts = np.concatenate([[idx[0]], idx[gaps + 1]])
    return [float(s) / rate_hz for s in starts]


def tone_speech(seconds: float, *, rate_hz: int = CHUNK_RATE_HZ) -> np.ndarray:
    """Steady tone-like "speech" (float): a 200 Hz tone, amplitude-modulated at 4 Hz but never
    quieter than -30 dBFS, so every 30 ms frame of it counts as speech."""
    t = np.arange(round(seconds * rate_hz)) / rate_hz
    return 0.3 * np.sin(2 * np.pi * 200 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))


def speech_like(seconds: float, *, rate_hz: int = CHUNK_RATE_HZ, seed: int = 0) -> np.ndarray:
    """Deterministic speech-like sound (float): voiced "syllables" of 120-280 ms (a pitch of
    110-260 Hz with three harmonics, levels varying over 12 dB, 20 ms ramps), mostly back to back,
    with short gaps (0-40 ms) and a 250 ms pause between "phrases" of 6-10 syllables. About 85% of
    its 30 ms frames are speech."""
    rng = np.random.default_rng(seed)
    n = round(seconds * rate_hz)
    out = np.zeros(n)
    pos = 0
    syllables_left = int(rng.integers(6, 11))
    edge = round(0.02 * rate_hz)
    ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(edge) + 0.5) / edge)
    while pos < n:
        length = min(n - pos, round(float(rng.uniform(0.12, 0.28)) * rate_hz))
        t = np.arange(length) / rate_hz
        f0 = float(rng.uniform(110, 260))
        voice = sum(np.sin(2 * np.pi * f0 * k * t + float(rng.uniform(0, 6.3))) / k for k in range(1, 4))
        syllable = float(rng.uniform(0.08, 0.32)) * voice / 1.8
        if length > 2 * edge:
            syllable[:edge] *= ramp
            syllable[-edge:] *= ramp[::-1]
        out[pos:pos + length] = syllable
        pos += length
        syllables_left -= 1
        if syllables_left == 0:
            pos += round(0.25 * rate_hz)
            syllables_left = int(rng.integers(6, 11))
        else:
            pos += round(float(rng.uniform(0.0, 0.04)) * rate_hz)
    return out


def low_noise(seconds: float, *, level_db: float, rate_hz: int = CHUNK_RATE_HZ, seed: int = 0) -> np.ndarray:
    """White noise (float) at ``level_db`` dBFS RMS: hiss, not speech, however loud."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal(round(seconds * rate_hz)) * 10 ** (level_db / 20)


def set_mp4_header_channels(path: Path, channels: int) -> Path:
    """Overwrite the channel count in the ``mp4a`` sample entry of an MP4 file in place, as
    ffmpeg 5.1 writes it (always 2), so a test sees that header whichever ffmpeg made the file."""
    data = bytearray(path.read_bytes())
    entry = data.find(b"mp4a", data.find(b"stsd"))
    assert entry > 0, f"{path} has no mp4a sample entry"
    # after the type: 6 reserved, 2 data_ref_index, 8 reserved, then channelcount (big-endian)
    data[entry + 20:entry + 22] = channels.to_bytes(2, "big")
    path.write_bytes(bytes(data))
    return path


def write_cover(path: Path) -> Path:
    """A tiny valid PNG (1x1 pixel)."""
    path.write_bytes(bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201e2217bc00000000049454e44ae426082"))
    return path


def speech_of(duration_s: float) -> AudioMeasures:
    """QC's measures of clean speech filling ``duration_s``: for engine tests that fake the decode."""
    end = max(0.0, duration_s - 0.2)
    return AudioMeasures(duration_s, min(0.1, end), end, max(0.0, end - 0.1), -20.0, 0)
