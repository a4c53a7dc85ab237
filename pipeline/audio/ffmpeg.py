"""ffmpeg processes: the only code that runs ffmpeg (or points pydub at it).

Finding ffmpeg, decoding a file to mono 16-bit PCM (whole, in batches, or streamed in blocks),
reading the channel count and rate a file decodes to, encoding PCM written to a pipe into MP3 or
AAC, and muxing chapter marks without re-encoding.

Decoding never needs ffprobe: ffmpeg decodes to raw mono 16-bit PCM at a fixed rate
(``-f s16le -ac 1 -ar 44100 -``) and the sample count is the duration. ffmpeg is
``$SOUNDCLONE_FFMPEG`` when set, else ``shutil.which("ffmpeg")``, else the binary the
``imageio-ffmpeg`` package ships, else :class:`AudioToolError` says how to install one.

Foreign errors (``OSError`` from a subprocess, a failing ffmpeg) are translated here into
:class:`AssemblyError` (a file that will not decode) or :class:`AudioToolError` (ffmpeg missing or
failing on our own PCM).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import math
import os
import re
import shutil
import subprocess
import tempfile
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Self

import numpy as np

from pipeline.audio.dsp import BYTES_PER_SAMPLE, PCM_DTYPE
from pipeline.errors import AssemblyError, AudioToolError, PipelineError
from pipeline.fsio import storage_error

DECODE_BLOCK_SAMPLES = 1 << 18  # ~6 s at 44.1 kHz: the unit of every streaming read
STDERR_TAIL_CHARS = 1500
ENV_FFMPEG = "SOUNDCLONE_FFMPEG"

FFMPEG_INSTALL_HINT = (
    "install ffmpeg (e.g. `apt install ffmpeg`, `brew install ffmpeg`) or the bundled build with "
    "`pip install 'soundclone-audiobook[ffmpeg]'` (imageio-ffmpeg)"
)

_ffmpeg_lock = threading.Lock()


# --------------------------------------------------------------------------------------------------
# Finding ffmpeg


@functools.cache
def _locate_ffmpeg(chosen: str | None) -> str:
    if chosen:
        found = shutil.which(chosen)
        if not found:
            raise AudioToolError(f"{ENV_FFMPEG}={chosen} is not an executable ffmpeg; fix or unset it")
        return found
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
    """The ffmpeg executable to use: ``$SOUNDCLONE_FFMPEG``, else PATH, else imageio-ffmpeg's, else
    :class:`AudioToolError`."""
    with _ffmpeg_lock:
        ffmpeg = _locate_ffmpeg(os.environ.get(ENV_FFMPEG) or None)
        _configure_pydub(ffmpeg)
    return ffmpeg


def _tail(text: str | bytes) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = text.strip()
    return text[-STDERR_TAIL_CHARS:] if text else "(no output)"


# What ffmpeg prints when the file system refuses its output (strerror of ENOSPC, EDQUOT, EROFS).
_DISK_ERRORS = {"No space left on device": errno.ENOSPC, "Disk quota exceeded": errno.EDQUOT,
                "Read-only file system": errno.EROFS}


def _failure(what: str, stderr: str, output: Path | None) -> PipelineError:
    """ffmpeg's failure as our error: a full or read-only disk is a storage problem (it stops a batch),
    anything else a tool failure."""
    for text, code in _DISK_ERRORS.items():
        if text in stderr and output is not None:
            return storage_error(OSError(code, text), output, doing=f"write ({what})")
    return AudioToolError(f"ffmpeg failed to {what}: {stderr}")


def _run_ffmpeg(args: list[str], *, what: str, input_bytes: bytes | None = None,
                output: Path | None = None) -> bytes:
    """Run ffmpeg to completion and return its stdout; a failure raises :class:`AudioToolError`."""
    cmd = [find_ffmpeg(), "-hide_banner", *(["-nostdin"] if input_bytes is None else []), "-v", "error", *args]
    try:
        proc = subprocess.run(cmd, input=input_bytes, capture_output=True, check=False)
    except OSError as exc:
        raise AudioToolError(f"could not run ffmpeg ({cmd[0]}) to {what}: {exc}; {FFMPEG_INSTALL_HINT}") from exc
    if proc.returncode != 0:
        raise _failure(what, f"(exit {proc.returncode}) {_tail(proc.stderr)}", output)
    return proc.stdout


_INTEGRATED_RE = re.compile(rb"Integrated loudness:\s*I:\s*(-?[0-9.]+|-inf|nan) LUFS")


def integrated_loudness(path: Path, *, label: str | None = None) -> float:
    """The file's integrated loudness in LUFS (EBU R 128 / ITU-R BS.1770, gated), measured by ffmpeg's
    ``ebur128`` filter while it decodes: streamed, so a two-hour file costs no memory. A silent file
    reads ``-70.0`` (the filter's absolute gate)."""
    cmd = [find_ffmpeg(), "-hide_banner", "-nostdin", "-nostats", "-i", str(path), "-map", "0:a:0",
           "-af", "ebur128=framelog=verbose", "-f", "null", "-"]
    what = f"measure the loudness of {label or path}"
    try:
        proc = subprocess.run(cmd, capture_output=True, check=False)
    except OSError as exc:
        raise AudioToolError(f"could not run ffmpeg ({cmd[0]}) to {what}: {exc}; {FFMPEG_INSTALL_HINT}") from exc
    found = _INTEGRATED_RE.findall(proc.stderr)
    if proc.returncode != 0 or not found:
        raise _failure(what, f"(exit {proc.returncode}) {_tail(proc.stderr)}", None)
    value = float(found[-1])
    return value if math.isfinite(value) else -70.0


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


@dataclass(frozen=True)
class DecodedFormat:
    """What the first audio stream of a file decodes to: its channel count and sample rate."""

    channels: int
    sample_rate_hz: int


DECODED_FORMAT_PROBE_S = 0.1  # decoding this much is enough for ffmpeg to write the WAV header


def decoded_format(path: Path, *, label: str | None = None) -> DecodedFormat:
    """The channel count and sample rate of the first audio stream as ffmpeg decodes it.

    The container's own header is not to be trusted for this: ffmpeg 5.1 (Debian 12's) writes the
    MP4 sample entry of every AAC track as 2 channels (the ISO template value) and the AAC config
    of a mono LC stream does not rule out implicit parametric stereo, so mutagen reports a mono M4B
    as stereo; implicit SBR likewise hides the real rate. So the first ``DECODED_FORMAT_PROBE_S``
    seconds are decoded to WAV on stdout at the stream's native layout and rate (no ``-ac``/``-ar``)
    and the WAV header's ``fmt `` chunk is read. No ffprobe needed.

    Raises :class:`AssemblyError` naming ``label`` (or the file) when it does not decode;
    :class:`AudioToolError` when ffmpeg cannot be run at all.
    """
    what = label or str(path)
    if not Path(path).is_file():
        raise AssemblyError(f"{what}: audio file {path} does not exist")
    cmd = [find_ffmpeg(), "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0",
           "-t", str(DECODED_FORMAT_PROBE_S), "-c:a", "pcm_s16le", "-f", "wav", "-"]
    try:
        proc = subprocess.run(cmd, capture_output=True, check=False)
    except OSError as exc:
        raise AudioToolError(f"could not run ffmpeg ({cmd[0]}): {exc}; {FFMPEG_INSTALL_HINT}") from exc
    if proc.returncode != 0:
        raise AssemblyError(f"{what}: {path} does not decode as audio ({_tail(proc.stderr)})")
    found = _wav_format(proc.stdout)
    if found is None:
        raise AssemblyError(f"{what}: {path} decodes to no audio stream ffmpeg can describe")
    return found


def _wav_format(data: bytes) -> DecodedFormat | None:
    """Channels and rate from the ``fmt `` chunk of a RIFF/WAVE byte string (ffmpeg may put a
    ``LIST`` chunk first; sizes are bogus on a pipe, but only chunks before ``data`` are walked)."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    pos = 12
    while pos + 8 <= len(data):
        chunk_id, size = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        if chunk_id == b"fmt ":
            body = data[pos + 8:pos + 16]
            if len(body) < 8:
                return None
            channels = int.from_bytes(body[2:4], "little")
            rate = int.from_bytes(body[4:8], "little")
            return DecodedFormat(channels, rate) if channels and rate else None
        if chunk_id == b"data":
            return None
        pos += 8 + size + (size & 1)
    return None


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
            raise _failure(f"encode {self.what}", f"(it stopped) {self._stderr()}", self.out_path) from exc
        self.samples_written += len(data)

    def _stderr(self) -> str:
        self._err.seek(0)
        return _tail(self._err.read())

    def close(self) -> None:
        assert self._proc.stdin is not None
        try:
            with contextlib.suppress(BrokenPipeError):
                self._proc.stdin.close()
            code = self._proc.wait()
            if code != 0:
                raise _failure(f"encode {self.what}", f"(exit {code}) {self._stderr()}", self.out_path)
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


def aac_encoder(out_path: Path, *, sample_rate_hz: int, bitrate_kbps: int, what: str,
                container: str = "mp4", coder: str = "twoloop") -> PcmEncoder:
    """AAC-LC (ffmpeg's native encoder) in an MP4 container (whose edit list hides the priming), or
    with ``container="adts"`` as raw ADTS frames: a chapter's share of the book, which
    :func:`mux_chapters` joins to the others by stream copy.

    ``coder`` is the native encoder's ``-aac_coder``: ``twoloop`` (ffmpeg's default) holds the
    average bit rate; ``fast`` encodes speech 2-4 times faster (383 s of speech at 128 kbps: 9.0 s
    against 16.1 s; at 64 kbps 4.0 s against 16.0 s) and sounds the same at audiobook bit rates, but
    its average falls under the nominal rate on sparse audio (tones with silences: 118 of 128 kbps)."""
    if coder not in AAC_CODERS:
        raise ValueError(f"unknown AAC coder {coder!r}")
    return PcmEncoder(out_path, sample_rate_hz=sample_rate_hz,
                      codec_args=["-c:a", "aac", "-aac_coder", coder, "-b:a", f"{bitrate_kbps}k"],
                      container=container, what=what)


AAC_CODERS = ("twoloop", "fast")


AAC_FRAME_SAMPLES = 1024


def adts_frames(path: Path) -> int:
    """How many AAC frames (of :data:`AAC_FRAME_SAMPLES` samples each) an ADTS file holds, read from its
    frame headers; the decoded length is exactly that many frames (priming and padding included)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise AssemblyError(f"cannot read {path}: {exc.strerror or exc}") from exc
    pos = frames = 0
    while pos + 7 <= len(data):
        if data[pos] != 0xFF or (data[pos + 1] & 0xF6) != 0xF0:
            raise AssemblyError(f"{path} is not an ADTS AAC stream (no frame header at byte {pos}); delete it so it "
                                "is encoded again")
        length = ((data[pos + 3] & 0x03) << 11) | (data[pos + 4] << 3) | (data[pos + 5] >> 5)
        if length < 7:
            raise AssemblyError(f"{path}: a damaged ADTS frame at byte {pos}; delete it so it is encoded again")
        frames += 1 + (data[pos + 6] & 0x03)  # raw data blocks in the frame, minus one
        pos += length
    if pos != len(data):
        raise AssemblyError(f"{path} ends inside an AAC frame (truncated); delete it so it is encoded again")
    return frames


@dataclass(frozen=True)
class ChapterMark:
    start_sample: int
    end_sample: int
    title: str


_LINE_BREAK_RE = re.compile(r"\s*(?:\r\n|[\n\r\v\f\x1c-\x1e\x85\u2028\u2029])\s*")


def chapter_title(title: str) -> str:
    """``title`` as a chapter mark holds it: on one line. Each line break, with the blanks around
    it, becomes one space; breaks at either end are dropped; NUL (which no argument can carry) is
    removed. Anything else is kept as it is."""
    title = title.replace("\0", "")
    return " ".join(part for part in _LINE_BREAK_RE.split(title) if part)


def mux_chapters(src: Path | Sequence[Path], dst: Path, *, chapters: list[ChapterMark], sample_rate_hz: int,
                 what: str) -> None:
    r"""Copy the audio of ``src`` (one file, or ADTS parts joined in order) into an M4B at ``dst`` with
    ``chapters`` (no re-encode).

    ffmpeg writes both a QuickTime chapter track and Nero ``chpl`` chapters, so Apple players and
    mutagen/most others see the same marks. Each mark is titled :func:`chapter_title` of its title.

    The marks' times go through an FFMETADATA file, the titles on the command line
    (``-metadata:c:N title=...``, which needs no escaping). ffmpeg's FFMETADATA reader (5.1 and 9.0
    alike) takes a line ending in an escaped backslash (``title=a\\``) for one whose newline is
    escaped: a title ending in ``\`` gained a newline and swallowed the next ``[CHAPTER]`` header,
    so the following mark vanished and its title replaced this one's.
    """
    lines = [";FFMETADATA1"]
    for mark in chapters:
        lines += ["[CHAPTER]", f"TIMEBASE=1/{sample_rate_hz}", f"START={mark.start_sample}",
                  f"END={mark.end_sample}"]
    titles: list[str] = []
    for index, mark in enumerate(chapters):
        titles += [f"-metadata:c:{index}", f"title={chapter_title(mark.title)}"]
    parts = [Path(src)] if isinstance(src, (str, Path)) else [Path(p) for p in src]
    made: list[str] = []
    try:
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".ffmeta", delete=False,
                                         dir=Path(dst).parent) as meta:
            meta.write("\n".join(lines) + "\n")
        made.append(meta.name)
        if len(parts) == 1:
            inputs = ["-i", str(parts[0])]
        else:  # ADTS parts one after the other: the concat demuxer reads them as one stream
            with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".concat", delete=False,
                                             dir=Path(dst).parent) as listing:
                listing.write("".join("file '" + str(p.resolve()).replace("'", "'\\''") + "'\n" for p in parts))
            made.append(listing.name)
            inputs = ["-f", "concat", "-safe", "0", "-i", listing.name]
        _run_ffmpeg(["-y", *inputs, "-i", meta.name, "-map", "0:a", "-map_metadata", "1", "-map_chapters", "1",
                     *titles, "-c", "copy", "-f", "ipod", str(dst)], what=what, output=Path(dst))
    finally:
        for name in made:
            os.unlink(name)
