"""Tags and container facts: the only code that uses mutagen.

Writing ID3 tags to chapter MP3s and iTunes-style tags to the M4B, reading chapter marks back, and
the container-level facts (codec, rate, bit rate and its mode) the delivery check reports; the
channel count and rate come from the decoded stream when the caller has them
(:func:`pipeline.audio.ffmpeg.decoded_format`), since an MP4 header can misstate them. Mutagen's
own errors are translated here into :class:`AssemblyError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import AssemblyError

if TYPE_CHECKING:
    from pipeline.audio.ffmpeg import DecodedFormat


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
        box: Any = mp4.tags  # mutagen's MP4Tags (untyped)
        box["©nam"] = [tags.title]
        box["©alb"] = [tags.album]
        box["©gen"] = ["Audiobook"]
        box["stik"] = [2]  # media kind: audiobook
        if tags.author:
            box["©ART"] = [tags.author]
            box["aART"] = [tags.author]
        if tags.narrator:
            box["©wrt"] = [tags.narrator]
            box["----:com.apple.iTunes:NARRATOR"] = [tags.narrator.encode("utf-8")]
        if tags.year is not None:
            box["©day"] = [str(tags.year)]
        if tags.description:
            box["desc"] = [tags.description]
            box["©cmt"] = [tags.description]
        if tags.cover is not None:
            data, mime = _cover_bytes(tags.cover)
            fmt = MP4Cover.FORMAT_JPEG if mime == "image/jpeg" else MP4Cover.FORMAT_PNG
            box["covr"] = [MP4Cover(data, imageformat=fmt)]
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
    """Stream facts of a file: ``codec`` ('mp3', 'aac', ...), ``bitrate_mode`` ('CBR', 'VBR',
    'ABR' or 'unknown'); ``sample_rate_hz`` and ``channels`` as decoded (see :func:`stream_info`)."""

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


def stream_info(path: Path, *, decoded: DecodedFormat | None = None) -> StreamInfo:
    """Codec, bit rate and its mode from the container (mutagen), with the sample rate and channel
    count of ``decoded`` (what :func:`pipeline.audio.ffmpeg.decoded_format` found), else the
    container's.

    Pass ``decoded``: without it the channels and rate are whatever the header says, and the MP4
    sample entry is not reliable (ffmpeg 5.1 writes 2 channels for every AAC track, so a mono M4B
    reads as stereo). This function never runs ffmpeg itself.
    """
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
    if decoded is not None:
        rate, channels = decoded.sample_rate_hz, decoded.channels
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
