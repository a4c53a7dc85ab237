"""The cover image (issue 13, item 11): decoded and checked at manifest validation rather than trusted by
its magic bytes, and scaled down for the MP3 and M4B tags when it is too large, once per file version,
the user's file untouched (pipeline.audio.tags, pipeline.manifest)."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import numpy as np
import pytest
from audio_factory import encode_mp3
from PIL import Image

from pipeline.audio import ffmpeg, tags
from pipeline.errors import AssemblyError, ManifestError
from pipeline.manifest import load_manifest


def image_bytes(size: tuple[int, int], kind: str = "JPEG", *, mode: str = "RGB", noise: bool = False,
                **save: object) -> bytes:
    if noise:
        rng = np.random.default_rng(7)
        channels = {"RGB": 3, "RGBA": 4}[mode]
        image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8), mode)
    else:
        image = Image.new(mode, size, (30, 90, 160, 255)[: len(mode)] if mode != "1" else 0)
    out = io.BytesIO()
    image.save(out, kind, **save)
    return out.getvalue()


def cover_problem_of(make_manifest, name: str, data: bytes) -> str:
    path = make_manifest(cover=name, sources={name: data})
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    (problem,) = info.value.problems
    cover_line = next(n for n, line in enumerate(path.read_text().splitlines(), 1) if line.startswith("cover:"))
    assert (problem.field, problem.line) == ("cover", cover_line), str(problem)
    assert name in problem.message, "the message names the file"
    return problem.message


def embedded_cover(tmp_path: Path, cover: Path) -> bytes:
    from mutagen.id3 import ID3

    mp3 = encode_mp3(np.zeros(3200) + 0.01, tmp_path / f"{cover.stem}.mp3")
    tags.tag_mp3(mp3, tags.Tags(title="One", album="Book", cover=cover))
    return bytes(ID3(mp3).getall("APIC")[0].data)


@pytest.fixture(autouse=True)
def _fresh_cover_cache() -> None:
    tags._cover_for_tags.cache_clear()


# --- checked at manifest validation ---------------------------------------------------------------

@pytest.mark.parametrize("name, data", [
    ("cover.jpg", image_bytes((600, 900))),
    ("cover.jpeg", image_bytes((60, 90), progressive=True)),
    ("cover.png", image_bytes((600, 900), "PNG")),
    ("cover.png", image_bytes((600, 900), "PNG", mode="RGBA")),
])
def test_a_sound_cover_is_accepted(make_manifest, name: str, data: bytes) -> None:
    manifest = load_manifest(make_manifest(cover=name, sources={name: data}))
    assert manifest.book.cover is not None and manifest.book.cover.name == name


def test_a_truncated_jpeg_is_refused_naming_the_field_and_the_file(make_manifest) -> None:
    good = image_bytes((800, 600), noise=True)
    message = cover_problem_of(make_manifest, "cover.jpg", good[: len(good) // 2])
    assert "damaged or truncated JPEG" in message and "export the cover again" in message


def test_a_jpeg_that_ends_after_its_header_is_refused(make_manifest) -> None:
    message = cover_problem_of(make_manifest, "cover.jpg", image_bytes((800, 600))[:400])
    assert "damaged or truncated JPEG" in message


def test_a_png_with_a_broken_header_is_refused(make_manifest) -> None:
    data = bytearray(image_bytes((100, 100), "PNG"))
    data[20] ^= 0xFF  # inside IHDR: its checksum no longer matches
    message = cover_problem_of(make_manifest, "cover.png", bytes(data))
    assert "PNG" in message and "export the cover again" in message


def test_a_truncated_png_is_refused(make_manifest) -> None:
    data = image_bytes((300, 300), "PNG", noise=True)
    assert "damaged or truncated PNG" in cover_problem_of(make_manifest, "cover.png", data[: len(data) // 2])


def test_magic_bytes_alone_are_not_an_image(make_manifest) -> None:
    message = cover_problem_of(make_manifest, "cover.jpg", b"\xff\xd8\xff\xe0" + b"not really a jpeg" * 20)
    assert "damaged or truncated JPEG" in message


def test_another_format_under_a_jpeg_name_is_refused(make_manifest) -> None:
    message = cover_problem_of(make_manifest, "cover.jpg", image_bytes((40, 40), "GIF"))
    assert "is neither JPEG nor PNG inside" in message


def test_a_decompression_bomb_is_refused_without_decoding_it(make_manifest) -> None:
    bomb = image_bytes((10_000, 10_000), "PNG", mode="1")  # 100 megapixels in a few kilobytes
    assert len(bomb) < 200_000
    message = cover_problem_of(make_manifest, "cover.png", bomb)
    assert "10000 x 10000 pixels, too large" in message and "3000 px" in message


# --- scaled for the tags ---------------------------------------------------------------------------

def test_a_cover_within_the_limits_is_embedded_as_it_is(tmp_path: Path) -> None:
    for name, data in (("small.jpg", image_bytes((1400, 1400))), ("small.png", image_bytes((300, 200), "PNG"))):
        cover = tmp_path / name
        cover.write_bytes(data)
        assert embedded_cover(tmp_path, cover) == data


def test_a_cover_with_too_many_pixels_is_scaled_down_and_the_file_left_alone(tmp_path: Path) -> None:
    cover = tmp_path / "huge.jpg"
    cover.write_bytes(image_bytes((4500, 3000), quality=70))
    before = (cover.read_bytes(), cover.stat().st_mtime_ns)
    embedded = embedded_cover(tmp_path, cover)
    with Image.open(io.BytesIO(embedded)) as image:
        assert image.format == "JPEG" and image.size == (tags.COVER_SCALED_SIDE_PX, 1600)
    assert (cover.read_bytes(), cover.stat().st_mtime_ns) == before


def test_a_cover_file_too_large_is_reencoded_smaller(tmp_path: Path) -> None:
    cover = tmp_path / "heavy.png"
    cover.write_bytes(image_bytes((1800, 1200), "PNG", mode="RGBA", noise=True))
    assert cover.stat().st_size > tags.COVER_MAX_BYTES
    embedded = embedded_cover(tmp_path, cover)
    assert len(embedded) < tags.COVER_MAX_BYTES
    with Image.open(io.BytesIO(embedded)) as image:
        assert image.format == "JPEG" and image.mode == "RGB" and image.size == (1800, 1200)  # never enlarged


def test_transparency_becomes_white_when_scaled(tmp_path: Path) -> None:
    cover = tmp_path / "clear.png"
    Image.new("RGBA", (3200, 3200), (0, 0, 0, 0)).save(cover)
    with Image.open(io.BytesIO(embedded_cover(tmp_path, cover))) as image:
        assert image.getpixel((10, 10)) == (255, 255, 255)


def test_the_scaled_cover_is_made_once_for_all_chapters(tmp_path: Path) -> None:
    cover = tmp_path / "huge.jpg"
    cover.write_bytes(image_bytes((3500, 3500)))
    first = embedded_cover(tmp_path, cover)
    for _ in range(3):  # three more chapters
        assert embedded_cover(tmp_path, cover) == first
    info = tags._cover_for_tags.cache_info()
    assert (info.misses, info.hits) == (1, 3)


def test_a_new_version_of_the_cover_is_scaled_again(tmp_path: Path) -> None:
    cover = tmp_path / "huge.jpg"
    cover.write_bytes(image_bytes((3500, 3500)))
    first = embedded_cover(tmp_path, cover)
    cover.write_bytes(image_bytes((3600, 3200)))
    with Image.open(io.BytesIO(embedded_cover(tmp_path, cover))) as image:
        assert image.size == (2400, 2133)
    assert tags._cover_for_tags.cache_info().misses == 2 and first


def test_the_m4b_cover_is_scaled_too(tmp_path: Path) -> None:
    from mutagen.mp4 import MP4, MP4Cover

    book = tmp_path / "book.m4a"
    subprocess.run([ffmpeg.find_ffmpeg(), "-v", "error", "-y", "-f", "s16le", "-ar", "22050", "-ac", "1",
                    "-i", "-", "-c:a", "aac", "-f", "mp4", str(book)],
                   input=np.zeros(22050, dtype="<i2").tobytes(), check=True)
    cover = tmp_path / "huge.png"
    Image.new("RGB", (3300, 3300), (10, 20, 30)).save(cover)
    tags.tag_mp4(book, tags.Tags(title="Book", album="Book", cover=cover))
    (art,) = MP4(str(book)).tags["covr"]
    assert art.imageformat == MP4Cover.FORMAT_JPEG
    with Image.open(io.BytesIO(bytes(art))) as image:
        assert image.size == (2400, 2400)


def test_a_cover_damaged_after_validation_fails_the_tagging_clearly(tmp_path: Path) -> None:
    cover = tmp_path / "huge.jpg"
    cover.write_bytes(image_bytes((3500, 3500), noise=True)[:50_000])
    mp3 = encode_mp3(np.zeros(3200), tmp_path / "t.mp3")
    with pytest.raises(AssemblyError, match=r"cover image .*huge.jpg cannot be decoded .*fix book.cover"):
        tags.tag_mp3(mp3, tags.Tags(title="x", album="y", cover=cover))
