"""Tags and container facts: the only code that uses mutagen, and the cover art (the only code that
uses Pillow).

Writing ID3 tags to chapter MP3s and iTunes-style tags to the M4B, reading chapter marks back, and
the container-level facts (codec, rate, bit rate and its mode) the delivery check reports; the
channel count and rate come from the decoded stream when the caller has them
(:func:`pipeline.audio.ffmpeg.decoded_format`), since an MP4 header can misstate them. A cover is
decoded to the end before it is trusted (:func:`cover_problem`, which the manifest check uses), and
one too large for the tags is embedded scaled down (:data:`COVER_MAX_SIDE_PX`, :data:`COVER_MAX_BYTES`),
the user's file untouched. Mutagen's and Pillow's own errors are translated here into
:class:`AssemblyError`.
"""

from __future__ import annotations

import functools
import io
import warnings
import zlib
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
    # Custom text tags (an ID3 TXXX frame, an iTunes freeform atom), e.g. the AI-narration disclosure.
    extra: tuple[tuple[str, str], ...] = ()


# --------------------------------------------------------------------------------------------------
# Cover art (Pillow)

COVER_MAX_SIDE_PX = 3000  # a cover with a longer side is embedded scaled down ...
COVER_MAX_BYTES = 2_000_000  # ... and so is a larger file: every chapter MP3 carries a copy
COVER_SCALED_SIDE_PX = 2400  # the longest side of a scaled cover: what audiobook stores ask for
COVER_JPEG_QUALITY = 90
COVER_MAX_PIXELS = 50_000_000  # refused beyond this: decoding would take gigabytes (a decompression bomb)
COVER_MAX_FILE_BYTES = 100_000_000  # refused beyond this without reading it
_COVER_MIME = {"JPEG": "image/jpeg", "PNG": "image/png"}
_NOT_JPEG_OR_PNG = "is neither JPEG nor PNG inside; export the cover again as .jpg or .png"
# What Pillow raises for a file it cannot decode: truncated data, broken chunks and checksums, bad
# Huffman tables, a stream that ends early.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, zlib.error)


def _cover_kind(data: bytes) -> str | None:
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    return None


def cover_problem(path: Path) -> str | None:
    """What is wrong with ``path`` as a cover (a phrase to follow the file's name), or None when it
    is a JPEG or PNG that decodes to its last byte. The magic bytes alone are not trusted: a cut-off
    download starts like any good JPEG, and would fail only after the audio was paid for."""
    try:
        size = path.stat().st_size
        if size > COVER_MAX_FILE_BYTES:
            return f"is {size:,} bytes, too large for a cover; export it at most {COVER_MAX_SIDE_PX} px wide"
        data = path.read_bytes()
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    return cover_data_problem(data)


def cover_data_problem(data: bytes) -> str | None:
    """:func:`cover_problem` for a cover's bytes (a cover found inside a manuscript, before it is written)."""
    from PIL import Image, UnidentifiedImageError

    if len(data) > COVER_MAX_FILE_BYTES:
        return f"is {len(data):,} bytes, too large for a cover; export it at most {COVER_MAX_SIDE_PX} px wide"
    kind = _cover_kind(data)
    if kind is None:
        return _NOT_JPEG_OR_PNG
    try:
        with warnings.catch_warnings():
            # the size is checked here, against a lower limit than Pillow's, before anything is decoded
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > COVER_MAX_PIXELS:
                    return _too_large(width, height)
                if image.format == "JPEG":  # decode at 1/8 scale: every byte is still read, 64 times faster
                    image.draft("RGB", (max(1, width // 8), max(1, height // 8)))
                image.load()
            if kind == "PNG":
                with Image.open(io.BytesIO(data)) as image:
                    image.verify()  # the chunk checksums
    except Image.DecompressionBombError:
        return _too_large(None, None)
    except UnidentifiedImageError:
        return f"starts like a {kind} but is not one Pillow can read; export the cover again as .jpg or .png"
    except _DECODE_ERRORS as exc:
        return f"is a damaged or truncated {kind} file ({exc}); export the cover again as .jpg or .png"
    return None


def _too_large(width: int | None, height: int | None) -> str:
    size = f"{width} x {height} pixels" if width and height else "too many pixels"
    return (f"is {size}, too large to decode safely (at most {COVER_MAX_PIXELS // 1_000_000} megapixels); "
            f"scale it to at most {COVER_MAX_SIDE_PX} px on its longest side")


def _cover_bytes(cover: Path) -> tuple[bytes, str]:
    """The cover as embedded in the tags, and its MIME type: the file itself, or when it is larger than
    :data:`COVER_MAX_SIDE_PX` or :data:`COVER_MAX_BYTES`, a JPEG scaled to
    :data:`COVER_SCALED_SIDE_PX`. Kept per file version, so a book's chapters scale it once."""
    try:
        info = Path(cover).stat()
    except OSError as exc:
        raise AssemblyError(f"cover image {cover} cannot be read ({exc}); fix book.cover in the manifest") from exc
    return _cover_for_tags(str(Path(cover).resolve()), info.st_size, info.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _cover_for_tags(path: str, size: int, mtime_ns: int) -> tuple[bytes, str]:
    """:func:`_cover_bytes` for the file at ``path`` as it is: ``size`` and ``mtime_ns`` are only the
    cache key, so that a cover replaced during a run is read again."""
    from PIL import Image, ImageOps

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise AssemblyError(f"cover image {path} cannot be read ({exc}); fix book.cover in the manifest") from exc
    kind = _cover_kind(data)
    if kind is None:
        raise AssemblyError(f"cover image {path} is neither JPEG nor PNG; convert it and fix book.cover")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size is checked here
            with Image.open(io.BytesIO(data)) as image:
                if len(data) <= COVER_MAX_BYTES and max(image.size) <= COVER_MAX_SIDE_PX:
                    return data, _COVER_MIME[kind]
                if image.size[0] * image.size[1] > COVER_MAX_PIXELS:
                    raise AssemblyError(f"cover image {path} {_too_large(*image.size)}; fix book.cover")
                if image.format == "JPEG":
                    image.draft("RGB", (COVER_SCALED_SIDE_PX, COVER_SCALED_SIDE_PX))
                scaled = ImageOps.exif_transpose(image)  # the orientation tag does not survive re-encoding
                if scaled.mode in ("RGBA", "LA", "PA") or (scaled.mode == "P" and "transparency" in scaled.info):
                    scaled = scaled.convert("RGBA")
                    backdrop = Image.new("RGBA", scaled.size, (255, 255, 255, 255))
                    scaled = Image.alpha_composite(backdrop, scaled)
                scaled = scaled.convert("RGB")
                scaled.thumbnail((COVER_SCALED_SIDE_PX, COVER_SCALED_SIDE_PX), Image.Resampling.LANCZOS)
                out = io.BytesIO()
                scaled.save(out, "JPEG", quality=COVER_JPEG_QUALITY, optimize=True)
    except (Image.DecompressionBombError, *_DECODE_ERRORS) as exc:
        raise AssemblyError(f"cover image {path} cannot be decoded ({exc}); export it again as .jpg or .png "
                            "and fix book.cover") from exc
    return out.getvalue(), "image/jpeg"


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
        for name, value in tags.extra:
            id3.add(TXXX(encoding=3, desc=name, text=value))
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
        for name, value in tags.extra:
            box[f"----:com.apple.iTunes:{name}"] = [value.encode("utf-8")]
        if tags.cover is not None:
            data, mime = _cover_bytes(tags.cover)
            fmt = MP4Cover.FORMAT_JPEG if mime == "image/jpeg" else MP4Cover.FORMAT_PNG
            box["covr"] = [MP4Cover(data, imageformat=fmt)]
        mp4.save()
    except AssemblyError:
        raise
    except Exception as exc:
        raise AssemblyError(f"cannot write tags to {path}: {exc}") from exc


def read_mp3_tags(path: Path) -> dict[str, str]:
    """The tags of an MP3 as :func:`tag_mp3` writes them, by the names of :class:`Tags` (``track`` as
    "n/N"; custom frames by their own names): what a delivery check reads back."""
    from mutagen.id3 import ID3, ID3NoHeaderError

    try:
        id3 = ID3(str(path))
    except ID3NoHeaderError:
        return {}
    except Exception as exc:
        raise AssemblyError(f"cannot read the tags of {path}: {exc}") from exc
    frames = {"title": "TIT2", "album": "TALB", "author": "TPE1", "year": "TDRC", "track": "TRCK",
              "description": "COMM::eng"}
    found = {name: str(id3[frame].text[0]) for name, frame in frames.items() if frame in id3 and id3[frame].text}
    for frame in id3.getall("TXXX"):
        if frame.text:
            found["narrator" if frame.desc == "NARRATOR" else frame.desc] = str(frame.text[0])
    if id3.getall("APIC"):
        found["cover"] = id3.getall("APIC")[0].mime
    return found


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
