"""The audio adapter: the only module that runs ffmpeg or imports pydub (issue 5).

Everything that touches an audio file goes through here: finding ffmpeg, decoding to PCM, encoding
PCM to MP3 or AAC, remuxing chapter markers, reading and writing tags (mutagen), and measuring a
file for the delivery check. The sample-level signal processing the assembly needs (finding speech,
fades, the true-peak limiter, room tone) lives here too, on plain numpy arrays.

Decoding never needs ffprobe: ffmpeg decodes to raw mono 16-bit PCM at a fixed rate
(``-f s16le -ac 1 -ar 44100 -``) and the sample count is the duration. ffmpeg is found as
``shutil.which("ffmpeg")``, else the binary the ``imageio-ffmpeg`` package ships, else
:class:`AudioToolError` says how to install one.

Foreign errors (``OSError`` from a subprocess, mutagen's errors) are translated here, at the
boundary, into :class:`AssemblyError` (a file that will not decode, tag or measure) or
:class:`AudioToolError` (ffmpeg missing or failing on our own PCM).
"""

from __future__ import annotations

import functools
import math
import os
import shutil
import subprocess
import tempfile
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Self

import numpy as np

from pipeline.errors import AssemblyError, AudioToolError

PCM_DTYPE = np.dtype("<i2")
BYTES_PER_SAMPLE = 2
INT16_FULL_SCALE = 32768.0
DECODE_BLOCK_SAMPLES = 1 << 18  # ~6 s at 44.1 kHz: the unit of every streaming read
STDERR_TAIL_CHARS = 1500

FFMPEG_INSTALL_HINT = (
    "install ffmpeg (e.g. `apt install ffmpeg`, `brew install ffmpeg`) or the bundled build with "
    "`pip install 'soundclone-audiobook[ffmpeg]'` (imageio-ffmpeg)"
)

_ffmpeg_lock = threading.Lock()


# --------------------------------------------------------------------------------------------------
# Finding ffmpeg


@functools.cache
def _locate_ffmpeg() -> str:
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg

        bundled = imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as exc:  # ImportError, or RuntimeError when the package has no binary
        raise AudioToolError(f"ffmpeg was not found on PATH and no bundled ffmpeg is available ({exc}); "
                             f"{FFMPEG_INSTALL_HINT}") from exc
    if not bundled or not os.path.isfile(bundled):
        raise AudioToolError(f"ffmpeg was not found on PATH or in imageio-ffmpeg; {FFMPEG_INSTALL_HINT}")
    return str(bundled)


def _configure_pydub(ffmpeg: str) -> None:
    """Point pydub at the same ffmpeg, so nothing in the process ever looks for one (or for ffprobe).

    pydub warns on import (audioop's DeprecationWarning, "couldn't find ffmpeg" when none is on
    PATH, invalid escapes on first compile); the project runs with warnings as errors, so it is
    imported with warnings silenced.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from pydub import AudioSegment
    except ImportError:  # optional for this module: we decode and encode with ffmpeg directly
        return
    AudioSegment.converter = ffmpeg
    AudioSegment.ffmpeg = ffmpeg


def find_ffmpeg() -> str:
    """The ffmpeg executable to use: PATH first, else imageio-ffmpeg's, else :class:`AudioToolError`."""
    with _ffmpeg_lock:
        ffmpeg = _locate_ffmpeg()
        _configure_pydub(ffmpeg)
    return ffmpeg


def _tail(text: str | bytes) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = text.strip()
    return text[-STDERR_TAIL_CHARS:] if text else "(no output)"


def _run_ffmpeg(args: list[str], *, what: str, input_bytes: bytes | None = None) -> bytes:
    """Run ffmpeg to completion and return its stdout; a failure raises :class:`AudioToolError`."""
    cmd = [find_ffmpeg(), "-hide_banner", *(["-nostdin"] if input_bytes is None else []), "-v", "error", *args]
    try:
        proc = subprocess.run(cmd, input=input_bytes, capture_output=True, check=False)
    except OSError as exc:
        raise AudioToolError(f"could not run ffmpeg ({cmd[0]}) to {what}: {exc}; {FFMPEG_INSTALL_HINT}") from exc
    if proc.returncode != 0:
        raise AudioToolError(f"ffmpeg failed to {what} (exit {proc.returncode}): {_tail(proc.stderr)}")
    return proc.stdout


# --------------------------------------------------------------------------------------------------
# Decoding


def _decode_args(path: Path, sample_rate_hz: int) -> list[str]:
    return ["-i", str(path), "-map", "0:a:0", "-f", "s16le", "-acodec", "pcm_s16le", "-ac", "1",
            "-ar", str(sample_rate_hz), "-"]


def decode_pcm(path: Path, *, sample_rate_hz: int = 44_100, label: str | None = None) -> np.ndarray:
    """Decode a whole file to mono int16 samples at ``sample_rate_hz`` (ffmpeg resamples).

    Raises :class:`AssemblyError` naming ``label`` (or the file) when it does not decode or holds
    no audio; :class:`AudioToolError` when ffmpeg cannot be run at all.
    """
    what = label or str(path)
    if not Path(path).is_file():
        raise AssemblyError(f"{what}: audio file {path} does not exist; re-run `audiobook run` to fetch it")
    cmd = [find_ffmpeg(), "-nostdin", "-v", "error", *_decode_args(Path(path), sample_rate_hz)]
    try:
        proc = subprocess.run(cmd, capture_output=True, check=False)
    except OSError as exc:
        raise AudioToolError(f"could not run ffmpeg ({cmd[0]}): {exc}; {FFMPEG_INSTALL_HINT}") from exc
    if proc.returncode != 0:
        raise AssemblyError(f"{what}: {path} does not decode as audio ({_tail(proc.stderr)}); delete it "
                            "so `audiobook run` downloads it again")
    usable = len(proc.stdout) - len(proc.stdout) % BYTES_PER_SAMPLE
    if usable == 0:
        raise AssemblyError(f"{what}: {path} decodes to no audio at all; delete it so `audiobook run` "
                            "downloads it again")
    return np.frombuffer(proc.stdout[:usable], dtype=PCM_DTYPE)


def decode_pcm_batch(paths: list[Path], *, sample_rate_hz: int = 44_100, labels: list[str] | None = None,
                     scratch_dir: Path | None = None) -> list[np.ndarray]:
    """Decode several files with one ffmpeg run (one output per input, so each clip is decoded on
    its own exactly as :func:`decode_pcm` would); saves a process start per file.

    The raw outputs go to temporary files in ``scratch_dir`` and are deleted once read. When the
    batch fails, each file is decoded alone so the error names the one that is broken.
    """
    labels = labels or [str(p) for p in paths]
    if len(paths) == 1:
        return [decode_pcm(paths[0], sample_rate_hz=sample_rate_hz, label=labels[0])]
    with tempfile.TemporaryDirectory(dir=scratch_dir, prefix=".decode-") as scratch:
        outs = [Path(scratch) / f"{i}.raw" for i in range(len(paths))]
        args: list[str] = []
        for path in paths:
            args += ["-i", str(path)]
        for i, out in enumerate(outs):
            args += ["-map", f"{i}:a:0", "-f", "s16le", "-acodec", "pcm_s16le", "-ac", "1",
                     "-ar", str(sample_rate_hz), str(out)]
        try:
            if not all(Path(p).is_file() for p in paths):
                raise AudioToolError("missing input")
            _run_ffmpeg(["-y", *args], what="decode chunk audio")
            results = [np.fromfile(out, dtype=PCM_DTYPE) for out in outs]
        except AudioToolError:
            results = []
        if len(results) == len(paths) and all(len(r) for r in results):
            return results
    return [decode_pcm(p, sample_rate_hz=sample_rate_hz, label=label) for p, label in zip(paths, labels, strict=True)]


@contextmanager
def stream_pcm(path: Path, *, sample_rate_hz: int = 44_100, label: str | None = None,
               block_samples: int = DECODE_BLOCK_SAMPLES) -> Iterator[Iterator[np.ndarray]]:
    """Decode ``path`` incrementally: yields an iterator of int16 blocks of ``block_samples``.

    Memory stays at one block however long the file. The decoder's exit status is checked when the
    iterator is exhausted; a file that fails to decode raises :class:`AssemblyError`.
    """
    what = label or str(path)
    if not Path(path).is_file():
        raise AssemblyError(f"{what}: {path} does not exist")
    cmd = [find_ffmpeg(), "-nostdin", "-v", "error", *_decode_args(Path(path), sample_rate_hz)]
    # stderr goes to a file, not a pipe: a damaged file can print more than a pipe holds and
    # deadlock the decoder while we wait on stdout.
    with tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, bufsize=0)
        except OSError as exc:
            raise AudioToolError(f"could not run ffmpeg ({cmd[0]}): {exc}; {FFMPEG_INSTALL_HINT}") from exc
        assert proc.stdout is not None
        block_bytes = block_samples * BYTES_PER_SAMPLE

        def blocks() -> Iterator[np.ndarray]:
            assert proc.stdout is not None
            total = 0
            while True:
                data = _read_exactly(proc.stdout, block_bytes)
                if not data:
                    break
                usable = len(data) - len(data) % BYTES_PER_SAMPLE
                total += usable
                if usable:
                    yield np.frombuffer(data[:usable], dtype=PCM_DTYPE)
                if len(data) < block_bytes:
                    break
            code = proc.wait()
            if code != 0:
                err.seek(0)
                raise AssemblyError(f"{what}: {path} does not decode as audio ({_tail(err.read())})")
            if total == 0:
                raise AssemblyError(f"{what}: {path} decodes to no audio at all")

        try:
            yield blocks()
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.stdout.close()
            proc.wait()


def _read_exactly(stream: IO[bytes], size: int) -> bytes:
    parts: list[bytes] = []
    remaining = size
    while remaining > 0:
        data = stream.read(remaining)
        if not data:
            break
        parts.append(data)
        remaining -= len(data)
    return b"".join(parts)


def decoded_duration_s(path: Path) -> float:
    """Decode the whole file with ffmpeg (no ffprobe) and return its length in seconds.

    Raises :class:`AssemblyError` naming the file when it does not decode or decodes to nothing; the
    engine uses this to verify every download.
    """
    samples = 0
    rate = 44_100
    with stream_pcm(Path(path), sample_rate_hz=rate) as blocks:
        for block in blocks:
            samples += len(block)
    return samples / rate


# --------------------------------------------------------------------------------------------------
# Encoding


class PcmEncoder:
    """An ffmpeg process that encodes mono int16 PCM written to it into ``out_path``.

    ``codec_args`` choose the codec (e.g. ``["-c:a", "libmp3lame", "-b:a", "192k"]``) and
    ``container`` the muxer, given explicitly because the output is a temporary file whose suffix
    says nothing. Use as a context manager; leaving it normally waits for ffmpeg and raises
    :class:`AudioToolError` if it failed.
    """

    def __init__(self, out_path: Path, *, sample_rate_hz: int, codec_args: list[str], container: str,
                 what: str) -> None:
        self.out_path = Path(out_path)
        self.what = what
        self.samples_written = 0
        cmd = [find_ffmpeg(), "-hide_banner", "-v", "error", "-y", "-f", "s16le", "-ar", str(sample_rate_hz),
               "-ac", "1", "-i", "pipe:0", "-map_metadata", "-1", *codec_args, "-f", container,
               str(self.out_path)]
        self._err = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()/abort()
        try:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                          stderr=self._err)
        except OSError as exc:
            self._err.close()
            raise AudioToolError(f"could not run ffmpeg ({cmd[0]}) to {what}: {exc}; "
                                 f"{FFMPEG_INSTALL_HINT}") from exc

    def write(self, samples: np.ndarray) -> None:
        assert self._proc.stdin is not None
        data = np.ascontiguousarray(samples, dtype=PCM_DTYPE)
        try:
            self._proc.stdin.write(data.data)
        except (BrokenPipeError, OSError) as exc:
            self._proc.wait()
            raise AudioToolError(f"ffmpeg stopped while encoding {self.what}: {self._stderr()}") from exc
        self.samples_written += len(data)

    def _stderr(self) -> str:
        self._err.seek(0)
        return _tail(self._err.read())

    def close(self) -> None:
        assert self._proc.stdin is not None
        try:
            try:
                self._proc.stdin.close()
            except BrokenPipeError:
                pass
            code = self._proc.wait()
            if code != 0:
                raise AudioToolError(f"ffmpeg failed to encode {self.what} (exit {code}): {self._stderr()}")
        finally:
            self._err.close()

    def abort(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        try:
            if self._proc.stdin is not None:
                self._proc.stdin.close()
        except OSError:
            pass
        self._proc.wait()
        self._err.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def mp3_encoder(out_path: Path, *, sample_rate_hz: int, bitrate_kbps: int, what: str) -> PcmEncoder:
    """Constant-bit-rate MP3 (libmp3lame's default mode for ``-b:a``), with a LAME/Info header.

    The Info header carries the encoder delay and padding, so decoders (ffmpeg included) return
    exactly the samples we wrote: chapter durations and subtitle times stay sample-exact.
    """
    return PcmEncoder(out_path, sample_rate_hz=sample_rate_hz,
                      codec_args=["-c:a", "libmp3lame", "-b:a", f"{bitrate_kbps}k", "-write_xing", "1"],
                      container="mp3", what=what)


def aac_encoder(out_path: Path, *, sample_rate_hz: int, bitrate_kbps: int, what: str) -> PcmEncoder:
    """AAC-LC in an MP4 container (ffmpeg's native encoder; the edit list hides its priming)."""
    return PcmEncoder(out_path, sample_rate_hz=sample_rate_hz,
                      codec_args=["-c:a", "aac", "-b:a", f"{bitrate_kbps}k"], container="mp4", what=what)


@dataclass(frozen=True)
class ChapterMark:
    start_sample: int
    end_sample: int
    title: str


def _ffmetadata_escape(value: str) -> str:
    out = []
    for ch in value.replace("\r", " ").replace("\n", " "):
        if ch in "=;#\\":
            out.append("\\")
        out.append(ch)
    return "".join(out)


def mux_chapters(src: Path, dst: Path, *, chapters: list[ChapterMark], sample_rate_hz: int, what: str) -> None:
    """Copy the audio of ``src`` into an M4B at ``dst`` with ``chapters`` (no re-encode).

    ffmpeg writes both a QuickTime chapter track and Nero ``chpl`` chapters, so Apple players and
    mutagen/most others see the same marks.
    """
    lines = [";FFMETADATA1"]
    for mark in chapters:
        lines += ["[CHAPTER]", f"TIMEBASE=1/{sample_rate_hz}", f"START={mark.start_sample}",
                  f"END={mark.end_sample}", f"title={_ffmetadata_escape(mark.title)}"]
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".ffmeta", delete=False,
                                     dir=Path(dst).parent) as meta:
        meta.write("\n".join(lines) + "\n")
    try:
        _run_ffmpeg(["-y", "-i", str(src), "-i", meta.name, "-map", "0:a", "-map_metadata", "1",
                     "-map_chapters", "1", "-c", "copy", "-f", "ipod", str(dst)], what=what)
    finally:
        os.unlink(meta.name)


# --------------------------------------------------------------------------------------------------
# Tags (mutagen)


@dataclass(frozen=True)
class Tags:
    """What every output file is tagged with. ``track``/``total_tracks`` are None for the book."""

    title: str
    album: str
    author: str | None = None
    narrator: str | None = None
    year: int | None = None
    description: str | None = None
    track: int | None = None
    total_tracks: int | None = None
    cover: Path | None = None


def _cover_bytes(cover: Path) -> tuple[bytes, str]:
    try:
        data = Path(cover).read_bytes()
    except OSError as exc:
        raise AssemblyError(f"cover image {cover} cannot be read ({exc}); fix book.cover in the manifest") from exc
    if data[:3] == b"\xff\xd8\xff":
        return data, "image/jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return data, "image/png"
    raise AssemblyError(f"cover image {cover} is neither JPEG nor PNG; convert it and fix book.cover")


def tag_mp3(path: Path, tags: Tags) -> None:
    """Write ID3v2.3 tags: title, album (book), artist (author), composer and a NARRATOR frame
    (narrator; the convention audiobook players read), track n/N, year, genre, cover art."""
    from mutagen.id3 import (
        APIC,
        COMM,
        ID3,
        TALB,
        TCOM,
        TCON,
        TDRC,
        TIT2,
        TPE1,
        TPE2,
        TRCK,
        TXXX,
    )

    try:
        id3 = ID3()  # saving replaces whatever tag ffmpeg wrote
        id3.add(TIT2(encoding=3, text=tags.title))
        id3.add(TALB(encoding=3, text=tags.album))
        id3.add(TCON(encoding=3, text="Audiobook"))
        if tags.author:
            id3.add(TPE1(encoding=3, text=tags.author))
            id3.add(TPE2(encoding=3, text=tags.author))
        if tags.narrator:
            id3.add(TCOM(encoding=3, text=tags.narrator))
            id3.add(TXXX(encoding=3, desc="NARRATOR", text=tags.narrator))
        if tags.year is not None:
            id3.add(TDRC(encoding=3, text=str(tags.year)))
        if tags.track is not None:
            total = f"/{tags.total_tracks}" if tags.total_tracks else ""
            id3.add(TRCK(encoding=3, text=f"{tags.track}{total}"))
        if tags.description:
            id3.add(COMM(encoding=3, lang="eng", desc="", text=tags.description))
        if tags.cover is not None:
            data, mime = _cover_bytes(tags.cover)
            id3.add(APIC(encoding=3, mime=mime, type=3, desc="Cover", data=data))
        id3.save(str(path), v2_version=3)
    except AssemblyError:
        raise
    except Exception as exc:  # mutagen raises its own MutagenError subclasses and OSError
        raise AssemblyError(f"cannot write tags to {path}: {exc}") from exc


def tag_mp4(path: Path, tags: Tags) -> None:
    """Write iTunes-style MP4 tags (title, album, artist, composer = narrator, year, description,
    media kind = audiobook, cover). Chapter atoms written by ffmpeg are left untouched."""
    from mutagen.mp4 import MP4, MP4Cover

    try:
        mp4 = MP4(str(path))
        if mp4.tags is None:
            mp4.add_tags()
        assert mp4.tags is not None
        mp4.tags["©nam"] = [tags.title]
        mp4.tags["©alb"] = [tags.album]
        mp4.tags["©gen"] = ["Audiobook"]
        mp4.tags["stik"] = [2]  # media kind: audiobook
        if tags.author:
            mp4.tags["©ART"] = [tags.author]
            mp4.tags["aART"] = [tags.author]
        if tags.narrator:
            mp4.tags["©wrt"] = [tags.narrator]
            mp4.tags["----:com.apple.iTunes:NARRATOR"] = [tags.narrator.encode("utf-8")]
        if tags.year is not None:
            mp4.tags["©day"] = [str(tags.year)]
        if tags.description:
            mp4.tags["desc"] = [tags.description]
            mp4.tags["©cmt"] = [tags.description]
        if tags.cover is not None:
            data, mime = _cover_bytes(tags.cover)
            fmt = MP4Cover.FORMAT_JPEG if mime == "image/jpeg" else MP4Cover.FORMAT_PNG
            mp4.tags["covr"] = [MP4Cover(data, imageformat=fmt)]
        mp4.save()
    except AssemblyError:
        raise
    except Exception as exc:
        raise AssemblyError(f"cannot write tags to {path}: {exc}") from exc


def read_mp4_chapters(path: Path) -> list[tuple[float, str]]:
    """(start seconds, title) of each chapter mark in an MP4/M4B file."""
    from mutagen.mp4 import MP4

    try:
        mp4 = MP4(str(path))
    except Exception as exc:
        raise AssemblyError(f"cannot read {path} as MP4: {exc}") from exc
    return [(float(c.start), str(c.title)) for c in (mp4.chapters or [])]


# --------------------------------------------------------------------------------------------------
# File facts and measurement (delivery check)


@dataclass(frozen=True)
class StreamInfo:
    """Container-level facts of a file: ``codec`` ('mp3', 'aac', ...), ``bitrate_mode`` ('CBR',
    'VBR', 'ABR' or 'unknown')."""

    codec: str
    sample_rate_hz: int
    channels: int
    bitrate_kbps: float
    bitrate_mode: str


_MP3_BITRATES = {  # kbps by (MPEG-1?, index) for layer III
    True: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    False: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def scan_mp3_bitrates(path: Path, *, max_frames: int = 1_000_000) -> set[int]:
    """The set of frame bit rates (kbps) of an MP3's audio frames, read from the frame headers.

    mutagen only knows the mode when an Xing/Info/VBRI header says so; this settles it for files
    without one (one distinct rate: CBR). The first frame is skipped when it is an Info/Xing frame.
    """
    data = Path(path).read_bytes()
    pos = 0
    if data[:3] == b"ID3" and len(data) >= 10:
        size = (data[6] << 21) | (data[7] << 14) | (data[8] << 7) | data[9]
        pos = 10 + size + (10 if data[5] & 0x10 else 0)
    rates: set[int] = set()
    frames = 0
    end = len(data) - 4
    while pos < end and frames < max_frames:
        if data[pos] != 0xFF or (data[pos + 1] & 0xE0) != 0xE0:
            pos += 1
            continue
        b1, b2 = data[pos + 1], data[pos + 2]
        version = (b1 >> 3) & 3  # 3: MPEG-1, 2: MPEG-2, 0: MPEG-2.5
        layer = (b1 >> 1) & 3
        br_index = b2 >> 4
        sr_index = (b2 >> 2) & 3
        if version == 1 or layer != 1 or br_index in (0, 15) or sr_index == 3:
            pos += 1
            continue
        mpeg1 = version == 3
        kbps = _MP3_BITRATES[mpeg1][br_index]
        rate = _MP3_RATES[version][sr_index]
        length = (144 if mpeg1 else 72) * kbps * 1000 // rate + ((b2 >> 1) & 1)
        frame = data[pos:pos + length]
        if not (b"Xing" in frame[:64] or b"Info" in frame[:64]):
            rates.add(kbps)
        frames += 1
        pos += max(length, 1)
    return rates


def stream_info(path: Path) -> StreamInfo:
    """Codec, sample rate, channels and bit rate (mode) from the container, via mutagen."""
    import mutagen
    from mutagen.mp3 import MP3, BitrateMode

    try:
        f = mutagen.File(str(path))
    except Exception as exc:
        raise AssemblyError(f"cannot read {path}: {exc}") from exc
    if f is None or getattr(f, "info", None) is None:
        raise AssemblyError(f"{path} is not an audio file mutagen recognises")
    info = f.info
    rate = int(getattr(info, "sample_rate", 0) or 0)
    channels = int(getattr(info, "channels", 0) or 0)
    kbps = float(getattr(info, "bitrate", 0) or 0) / 1000
    if isinstance(f, MP3):
        mode = {BitrateMode.CBR: "CBR", BitrateMode.VBR: "VBR", BitrateMode.ABR: "ABR"}.get(
            info.bitrate_mode, "unknown")
        if mode == "unknown":
            rates = scan_mp3_bitrates(Path(path))
            mode = "CBR" if len(rates) == 1 else ("VBR" if rates else "unknown")
        return StreamInfo("mp3", rate, channels, kbps, mode)
    codec = str(getattr(info, "codec", "") or type(f).__name__).lower()
    if codec.startswith("mp4a"):
        codec = "aac"
    return StreamInfo(codec, rate, channels, kbps, "unknown")


@dataclass(frozen=True)
class Measurement:
    """Levels of a decoded file. dB are dBFS with a full-scale square wave at 0 dB (a full-scale sine
    measures -3 dB RMS, as in ACX's own check); ``-inf`` never appears: digital silence reads as
    ``SILENCE_DB``."""

    duration_s: float
    samples: int
    rms_db: float
    peak_db: float
    true_peak_db: float
    noise_floor_db: float
    head_silence_s: float
    tail_silence_s: float


SILENCE_DB = -120.0
NOISE_FLOOR_WINDOW_S = 0.5  # ACX measures the noise floor as the RMS of the quietest half second
LEVEL_FRAME_S = 0.01        # head/tail silence resolution


def to_db(linear: float) -> float:
    return 20 * math.log10(linear) if linear > 10 ** (SILENCE_DB / 20) else SILENCE_DB


def measure_file(path: Path, *, sample_rate_hz: int, silence_threshold_db: float,
                 label: str | None = None) -> Measurement:
    """Decode ``path`` in blocks and measure it without holding it in memory.

    ``head_silence_s``/``tail_silence_s`` run from the file's edges to the first/last 10 ms frame
    whose RMS exceeds ``silence_threshold_db``; ``noise_floor_db`` is the RMS of the quietest 0.5 s
    window (windows start every 0.25 s).
    """
    frame = max(1, round(sample_rate_hz * LEVEL_FRAME_S))
    hop = frame * max(1, round(NOISE_FLOOR_WINDOW_S / 2 / LEVEL_FRAME_S))  # a window is two hops
    threshold = 10 ** (silence_threshold_db / 20) * INT16_FULL_SCALE
    total = 0
    sum_sq = 0.0
    peak = 0
    true_peak = 0.0
    first_loud: int | None = None
    last_loud: int | None = None
    min_window_sq: float | None = None
    last_hop_sq: float | None = None
    carry = np.zeros(0, dtype=PCM_DTYPE)
    prev_tail = np.zeros(0, dtype=np.float64)

    def scan_frames(part: np.ndarray, pos: int) -> None:
        nonlocal first_loud, last_loud
        whole = len(part) - len(part) % frame
        rms = np.sqrt(np.mean(part[:whole].astype(np.float64).reshape(-1, frame) ** 2, axis=1))
        if whole < len(part):
            rest = part[whole:].astype(np.float64)
            rms = np.append(rms, math.sqrt(float(np.mean(rest * rest))))
        loud = np.flatnonzero(rms > threshold)
        if len(loud):
            if first_loud is None:
                first_loud = pos + int(loud[0]) * frame
            last_loud = min(pos + len(part), pos + (int(loud[-1]) + 1) * frame)

    with stream_pcm(Path(path), sample_rate_hz=sample_rate_hz, label=label,
                    block_samples=DECODE_BLOCK_SAMPLES) as blocks:
        for raw in blocks:
            block64 = raw.astype(np.float64)
            sum_sq += float(np.dot(block64, block64))
            peak = max(peak, int(np.max(np.abs(raw.astype(np.int32)))))
            ctx = np.concatenate([prev_tail, block64])
            true_peak = max(true_peak, true_peak_abs(ctx, hot_from=len(prev_tail)))
            prev_tail = block64[-TRUE_PEAK_HALF_TAPS * 2:]
            pending = np.concatenate([carry, raw]) if len(carry) else raw
            usable = len(pending) - len(pending) % hop
            if usable:
                part = pending[:usable]
                scan_frames(part, total - len(carry))
                hops = part.astype(np.float64).reshape(-1, hop)
                energies = np.einsum("ij,ij->i", hops, hops)
                seq = energies if last_hop_sq is None else np.concatenate([[last_hop_sq], energies])
                if len(seq) >= 2:
                    low = float((seq[:-1] + seq[1:]).min())
                    min_window_sq = low if min_window_sq is None else min(min_window_sq, low)
                last_hop_sq = float(energies[-1])
            carry = pending[usable:].copy()
            total += len(raw)
    if len(carry):
        scan_frames(carry, total - len(carry))
    if total == 0:
        raise AssemblyError(f"{label or path}: decodes to no audio")
    if min_window_sq is None:  # shorter than one window: the whole file is the window
        window_rms = math.sqrt(sum_sq / total)
    else:
        window_rms = math.sqrt(min_window_sq / (2 * hop))
    head = (first_loud if first_loud is not None else total) / sample_rate_hz
    tail = (total - last_loud if last_loud is not None else total) / sample_rate_hz
    return Measurement(
        duration_s=total / sample_rate_hz,
        samples=total,
        rms_db=to_db(math.sqrt(sum_sq / total) / INT16_FULL_SCALE),
        peak_db=to_db(peak / INT16_FULL_SCALE),
        true_peak_db=to_db(max(true_peak, peak) / INT16_FULL_SCALE),
        noise_floor_db=to_db(window_rms / INT16_FULL_SCALE),
        head_silence_s=head,
        tail_silence_s=tail,
    )


# --------------------------------------------------------------------------------------------------
# Signal processing on numpy arrays


def speech_bounds(samples: np.ndarray, *, threshold_db: float) -> tuple[int, int] | None:
    """``(first, end)``: index of the first sample whose magnitude exceeds ``threshold_db`` and one
    past the last; None when no sample does (a silent clip)."""
    limit = int(10 ** (threshold_db / 20) * INT16_FULL_SCALE)
    loud = (samples > limit) | (samples < -limit)
    if not loud.any():
        return None
    first = int(np.argmax(loud))
    last = len(loud) - int(np.argmax(loud[::-1]))
    return first, last


def fade_curve(length: int) -> np.ndarray:
    """A raised-cosine ramp from 0 to (almost) 1 over ``length`` samples: no corner at either end."""
    if length <= 0:
        return np.zeros(0, dtype=np.float64)
    t = (np.arange(length, dtype=np.float64) + 0.5) / length
    return 0.5 - 0.5 * np.cos(np.pi * t)


def apply_fades(samples: np.ndarray, fade_samples: int) -> np.ndarray:
    """A copy of int16 ``samples`` with a fade-in and fade-out of ``fade_samples`` each (at most half
    the clip)."""
    out = samples.copy()
    n = min(fade_samples, len(out) // 2)
    if n > 0:
        ramp = fade_curve(n)
        out[:n] = np.round(out[:n] * ramp).astype(PCM_DTYPE)
        out[-n:] = np.round(out[-n:] * ramp[::-1]).astype(PCM_DTYPE)
    return out


# True peak: 4x oversampling by windowed-sinc interpolation (the method of ITU-R BS.1770-4 Annex 2,
# with our own 16-tap Kaiser-windowed kernel) at the fractional positions 1/4, 2/4, 3/4.
TRUE_PEAK_HALF_TAPS = 8


@functools.cache
def _interp_kernels() -> np.ndarray:
    taps = np.arange(-TRUE_PEAK_HALF_TAPS + 1, TRUE_PEAK_HALF_TAPS + 1)  # -7..8 relative to n
    kernels = []
    for frac in (0.25, 0.5, 0.75):
        d = frac - taps
        w = np.kaiser(2 * TRUE_PEAK_HALF_TAPS + 1, 6.0)
        # evaluate the window at the continuous positions by interpolation
        win = np.interp(d, np.arange(-TRUE_PEAK_HALF_TAPS, TRUE_PEAK_HALF_TAPS + 1), w)
        k = np.sinc(d) * win
        kernels.append(k / k.sum())
    return np.stack(kernels, axis=1)  # (16 taps, 3 fractions)


def inter_sample_peaks(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """The largest magnitude of the band-limited signal between samples ``idx`` and ``idx + 1``
    (at quarter positions), for each index in ``idx``; samples outside ``x`` count as zero."""
    if len(idx) == 0:
        return np.zeros(0, dtype=np.float64)
    pad = TRUE_PEAK_HALF_TAPS
    padded = np.concatenate([np.zeros(pad), np.asarray(x, dtype=np.float64), np.zeros(pad)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * pad)
    # window j covers padded[j : j + 16] = x[j - 8 : j + 8]; interpolation between n and n+1 uses
    # taps x[n-7 .. n+8], i.e. window n + 1.
    rows = windows[np.asarray(idx) + 1]
    return np.max(np.abs(rows @ _interp_kernels()), axis=1)


def true_peak_abs(x: np.ndarray, *, hot_from: int = 0) -> float:
    """The true peak (magnitude, same units as ``x``) of ``x[hot_from:]``, with ``x[:hot_from]``
    as context. Only samples within 6 dB of the block's sample peak are interpolated around
    (an inter-sample peak more than 6 dB above its neighbours needs a pathological signal)."""
    seg = np.abs(np.asarray(x[hot_from:], dtype=np.float64))
    if len(seg) == 0:
        return 0.0
    sample_peak = float(seg.max())
    if sample_peak == 0:
        return 0.0
    hot = np.flatnonzero(seg >= sample_peak / 2) + hot_from
    cand = np.unique(np.concatenate([hot - 1, hot]))
    cand = cand[(cand >= 0) & (cand < len(x))]
    return max(sample_peak, float(inter_sample_peaks(x, cand).max(initial=0.0)))


LIMITER_BLOCK = 128        # samples per gain step (2.9 ms at 44.1 kHz)
LIMITER_SPREAD = 2         # the gain of a block also covers this many blocks either side
LIMITER_CONTEXT = LIMITER_BLOCK * (LIMITER_SPREAD + 2)


def limiter_gains(x: np.ndarray, *, ceiling: float) -> np.ndarray:
    """Per-sample gains (<= 1) that keep the true peak of ``x * gains`` at or under ``ceiling``.

    ``x`` is float, full scale 1.0, and should begin and end with ``LIMITER_CONTEXT`` samples of
    context (gains near the ends lack look-ahead). Each 128-sample block gets the gain that brings
    its own true peak to the ceiling; a block's gain is the minimum over itself and two blocks
    either side (look-ahead and hold); gains are interpolated linearly between block centres, so a
    sample's gain never exceeds its own block's requirement and the gain never steps (no clicks).
    """
    n = len(x)
    if n == 0:
        return np.ones(0)
    nb = -(-n // LIMITER_BLOCK)
    padded = np.zeros(nb * LIMITER_BLOCK)
    padded[:n] = np.abs(x)
    block_peak = padded.reshape(nb, LIMITER_BLOCK).max(axis=1)
    if float(block_peak.max()) < ceiling * 0.5:  # nothing can reach the ceiling, even between samples
        return np.ones(n)
    hot = np.flatnonzero(np.abs(x) >= ceiling * 0.5)
    cand = np.unique(np.concatenate([hot - 1, hot]))
    cand = cand[(cand >= 0) & (cand < n)]
    if len(cand):
        inter = inter_sample_peaks(x, cand)
        np.maximum.at(block_peak, cand // LIMITER_BLOCK, inter)
        # an inter-sample peak just past a block's end also concerns the next block
        nxt = np.minimum((cand + 1) // LIMITER_BLOCK, nb - 1)
        np.maximum.at(block_peak, nxt, inter)
    need = np.minimum(1.0, ceiling / np.maximum(block_peak, 1e-12))
    spread = need.copy()
    for shift in range(1, LIMITER_SPREAD + 1):
        spread[shift:] = np.minimum(spread[shift:], need[:-shift])
        spread[:-shift] = np.minimum(spread[:-shift], need[shift:])
    if float(spread.min()) >= 1.0:
        return np.ones(n)
    centres = np.arange(nb) * LIMITER_BLOCK + (LIMITER_BLOCK - 1) / 2
    return np.interp(np.arange(n), centres, spread)


ROOM_TONE_LOOP = 1 << 18   # samples; the loop is periodic by construction (circular filtering)
ROOM_TONE_SEED = 0x5EED_70E


@functools.lru_cache(maxsize=4)
def room_tone_loop(*, sample_rate_hz: int, level_db: float) -> np.ndarray:
    """A deterministic, seamlessly looping bed of quiet 'room tone' at ``level_db`` dBFS RMS.

    ACX rejects pure digital silence between words and wants a noise floor under -60 dB; a real
    room is never silent. This is white noise shaped in the frequency domain to a gentle pink
    (-3 dB/octave) tilt between 80 Hz and 8 kHz (steep roll-off outside), like quiet room air,
    scaled to ``level_db``. Filtering the FFT of one period makes the loop exactly periodic, so
    tiling it has no seam.
    """
    rng = np.random.default_rng(ROOM_TONE_SEED)
    white = rng.standard_normal(ROOM_TONE_LOOP)
    spectrum = np.fft.rfft(white)
    freqs = np.fft.rfftfreq(ROOM_TONE_LOOP, d=1 / sample_rate_hz)
    f = np.maximum(freqs, 1.0)
    shape = 1 / np.sqrt(f / 1000.0)
    shape *= 1 / (1 + (80.0 / f) ** 4)          # high-pass around 80 Hz
    shape *= 1 / (1 + (f / 8000.0) ** 4)        # low-pass around 8 kHz
    shape[0] = 0.0
    tone = np.fft.irfft(spectrum * shape, n=ROOM_TONE_LOOP)
    tone *= 10 ** (level_db / 20) / np.sqrt(np.mean(tone * tone))
    tone.setflags(write=False)
    return tone


def room_tone(start: int, count: int, *, sample_rate_hz: int, level_db: float) -> np.ndarray:
    """Samples ``start .. start + count`` of the endless room-tone bed (float, full scale 1.0)."""
    loop = room_tone_loop(sample_rate_hz=sample_rate_hz, level_db=level_db)
    idx = (np.arange(start, start + count) % ROOM_TONE_LOOP)
    return loop[idx]
