"""The audio adapter: finding ffmpeg, decoding without ffprobe, encoding, tags, measurement, DSP."""

from __future__ import annotations

import itertools
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from audio_factory import (
    decode,
    encode_mp3,
    low_noise,
    set_mp4_header_channels,
    speech_like,
    tone_speech,
    write_cover,
)

from pipeline.audio import dsp, ffmpeg, segments, tags
from pipeline.errors import AssemblyError, AudioToolError

SR = 44_100


def measure_file(path: Path, *, sample_rate_hz: int, silence_threshold_db: float) -> dsp.Measurement:
    with ffmpeg.stream_pcm(path, sample_rate_hz=sample_rate_hz) as blocks:
        return dsp.measure_pcm(blocks, sample_rate_hz=sample_rate_hz, silence_threshold_db=silence_threshold_db,
                               label=str(path))


@pytest.fixture
def fresh_ffmpeg_lookup(monkeypatch: pytest.MonkeyPatch):
    """The lookup from scratch, without the SOUNDCLONE_FFMPEG that CI sets for its second run."""
    monkeypatch.delenv(ffmpeg.ENV_FFMPEG, raising=False)
    ffmpeg._locate_ffmpeg.cache_clear()
    yield
    ffmpeg._locate_ffmpeg.cache_clear()


def test_soundclone_ffmpeg_wins_over_path(fresh_ffmpeg_lookup: None, monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    chosen, on_path = tmp_path / "my-ffmpeg", tmp_path / "ffmpeg"
    monkeypatch.setattr(shutil, "which", lambda name: {str(chosen): str(chosen), "ffmpeg": str(on_path)}.get(name))
    monkeypatch.setenv(ffmpeg.ENV_FFMPEG, str(chosen))
    assert ffmpeg.find_ffmpeg() == str(chosen)
    ffmpeg._locate_ffmpeg.cache_clear()
    monkeypatch.setenv(ffmpeg.ENV_FFMPEG, str(tmp_path / "missing"))
    with pytest.raises(AudioToolError, match="SOUNDCLONE_FFMPEG=.*missing is not an executable ffmpeg"):
        ffmpeg.find_ffmpeg()


def test_ffmpeg_from_path_first(fresh_ffmpeg_lookup: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "ffmpeg"
    monkeypatch.setattr(shutil, "which", lambda name: str(fake) if name == "ffmpeg" else None)
    assert ffmpeg.find_ffmpeg() == str(fake)
    from pydub import AudioSegment

    assert AudioSegment.converter == str(fake)


def test_ffmpeg_falls_back_to_imageio(fresh_ffmpeg_lookup: None, monkeypatch: pytest.MonkeyPatch) -> None:
    import imageio_ffmpeg

    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert ffmpeg.find_ffmpeg() == imageio_ffmpeg.get_ffmpeg_exe()


def test_missing_ffmpeg_says_how_to_install(fresh_ffmpeg_lookup: None, monkeypatch: pytest.MonkeyPatch) -> None:
    import imageio_ffmpeg

    def no_binary() -> str:
        raise RuntimeError("no ffmpeg exe could be found")

    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(imageio_ffmpeg, "get_ffmpeg_exe", no_binary)
    with pytest.raises(AudioToolError, match=r"install ffmpeg.*imageio-ffmpeg"):
        ffmpeg.find_ffmpeg()


def test_missing_imageio_package_says_how_to_install(fresh_ffmpeg_lookup: None,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # import fails
    with pytest.raises(AudioToolError, match="soundclone-audiobook\\[ffmpeg\\]"):
        ffmpeg.find_ffmpeg()


def test_decoded_duration_needs_no_ffprobe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mp3 = encode_mp3(np.zeros(48_000) + 0.01, tmp_path / "a.mp3")  # 1.5 s at 32 kHz
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name: None if name == "ffprobe" else real_which(name))
    assert ffmpeg.decoded_duration_s(mp3) == pytest.approx(1.5, abs=0.001)


@pytest.mark.parametrize("content", [b"", b"<html>Access denied</html>", b"\xff\xfb" * 10])
def test_undecodable_files_raise_assembly_error_naming_the_file(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(content)
    with pytest.raises(AssemblyError, match="bad.mp3"):
        ffmpeg.decoded_duration_s(bad)


def test_missing_file_raises_assembly_error(tmp_path: Path) -> None:
    with pytest.raises(AssemblyError, match="nope.mp3.*does not exist"):
        ffmpeg.decoded_duration_s(tmp_path / "nope.mp3")


def test_decode_resamples_to_44k_mono(tmp_path: Path) -> None:
    mp3 = encode_mp3(0.5 * np.sin(2 * np.pi * 440 * np.arange(32_000) / 32_000), tmp_path / "s.mp3")
    pcm = ffmpeg.decode_pcm(mp3, sample_rate_hz=SR)
    assert pcm.dtype == np.int16 and len(pcm) == SR
    spectrum = np.abs(np.fft.rfft(pcm.astype(float)))
    assert np.argmax(spectrum) == pytest.approx(440, abs=2)  # 1 s long: bin == Hz


def test_encoded_mp3_is_cbr_192_and_sample_exact(tmp_path: Path) -> None:
    out = tmp_path / "o.mp3"
    samples = (np.sin(np.arange(SR * 2) / 10) * 8000).astype(np.int16)
    with ffmpeg.mp3_encoder(out, sample_rate_hz=SR, bitrate_kbps=192, what="test") as enc:
        enc.write(samples[:30_000])
        enc.write(samples[30_000:])
    assert enc.samples_written == len(samples)
    info = tags.stream_info(out)
    assert (info.codec, info.sample_rate_hz, info.channels, info.bitrate_mode) == ("mp3", SR, 1, "CBR")
    assert info.bitrate_kbps == pytest.approx(192, abs=0.5)
    assert tags.scan_mp3_bitrates(out) == {192}
    assert len(decode(out)) == len(samples)


def test_encoder_failure_is_an_audio_tool_error(tmp_path: Path) -> None:
    target = tmp_path / "no-such-dir" / "o.mp3"
    with pytest.raises(AudioToolError, match="ffmpeg"), \
            ffmpeg.mp3_encoder(target, sample_rate_hz=SR, bitrate_kbps=192, what="test") as enc:
        enc.write(np.zeros(SR, dtype=np.int16))


def test_mp3_tags_round_trip(tmp_path: Path) -> None:
    from mutagen.id3 import ID3

    mp3 = encode_mp3(np.zeros(3200) + 0.01, tmp_path / "t.mp3")
    cover = write_cover(tmp_path / "cover.png")
    tags.tag_mp3(mp3, tags.Tags(title="Chapter 2", album="Book", author="Au Thor", narrator="Nar Rator",
                                  year=1999, track=2, total_tracks=9, cover=cover, description="About"))
    id3 = ID3(mp3)
    assert str(id3["TIT2"]) == "Chapter 2" and str(id3["TALB"]) == "Book"
    assert str(id3["TPE1"]) == "Au Thor" and str(id3["TCOM"]) == "Nar Rator"
    assert str(id3["TXXX:NARRATOR"]) == "Nar Rator"
    assert str(id3["TRCK"]) == "2/9" and str(id3["TDRC"]) == "1999"
    assert id3.getall("APIC")[0].data == cover.read_bytes()
    assert id3.version[:2] == (2, 3)


def test_cover_must_be_jpeg_or_png(tmp_path: Path) -> None:
    mp3 = encode_mp3(np.zeros(3200), tmp_path / "t.mp3")
    cover = tmp_path / "cover.gif"
    cover.write_bytes(b"GIF89a....")
    with pytest.raises(AssemblyError, match="cover.gif.*JPEG nor PNG"):
        tags.tag_mp3(mp3, tags.Tags(title="x", album="y", cover=cover))


def test_measure_file(tmp_path: Path) -> None:
    # 1 s room tone, 1 s of a -6 dBFS-peak sine, 2 s room tone
    n = 4 * SR
    x = dsp.room_tone(0, n, sample_rate_hz=SR, level_db=-70)
    x[SR:2 * SR] += 0.5 * np.sin(2 * np.pi * 300 * np.arange(SR) / SR)
    out = tmp_path / "m.mp3"
    with ffmpeg.mp3_encoder(out, sample_rate_hz=SR, bitrate_kbps=192, what="test") as enc:
        enc.write(np.round(x * 32768).astype(np.int16))
    m = measure_file(out, sample_rate_hz=SR, silence_threshold_db=-50)
    assert m.duration_s == pytest.approx(4.0)
    y = decode(out)
    assert m.rms_db == pytest.approx(10 * np.log10(np.mean(y * y)), abs=0.01)
    assert m.peak_db == pytest.approx(20 * np.log10(np.abs(y).max()), abs=0.01)
    # LAME at 192 kbps returns a steady tone about 0.26 dB quieter than it went in
    assert m.rms_db == pytest.approx(10 * np.log10((0.5 ** 2 / 2) / 4), abs=0.4)
    assert m.true_peak_db >= m.peak_db
    assert m.noise_floor_db == pytest.approx(-70, abs=1.5)
    assert m.head_silence_s == pytest.approx(1.0, abs=0.011)
    assert m.tail_silence_s == pytest.approx(2.0, abs=0.011)


def test_measure_digital_silence_reads_as_floor(tmp_path: Path) -> None:
    out = tmp_path / "z.mp3"
    with ffmpeg.mp3_encoder(out, sample_rate_hz=SR, bitrate_kbps=192, what="test") as enc:
        enc.write(np.zeros(SR, dtype=np.int16))
    m = measure_file(out, sample_rate_hz=SR, silence_threshold_db=-50)
    assert m.noise_floor_db == dsp.SILENCE_DB and m.rms_db == dsp.SILENCE_DB
    assert m.head_silence_s == m.tail_silence_s == pytest.approx(1.0)


def test_speech_bounds_and_fades() -> None:
    x = np.zeros(1000, dtype=np.int16)
    x[300:600] = 10_000
    assert dsp.speech_bounds(x, threshold_db=-50) == (300, 600)
    assert dsp.speech_bounds(np.full(100, 50, dtype=np.int16), threshold_db=-50) is None
    # a fade of 100 samples at both ends (2.27 ms at 44.1 kHz, not a whole millisecond): length kept exactly
    clip = segments.faded(segments.from_samples(np.full(1000, 20_000, dtype=np.int16), sample_rate_hz=SR), 100)
    faded = segments.samples_of(clip)
    assert len(faded) == 1000
    assert abs(int(faded[0])) < 300 and abs(int(faded[-1])) < 300
    assert np.abs(np.diff(faded.astype(int))).max() < 700  # no step anywhere
    assert faded[500] == 20_000


def test_pydub_segments_are_sample_exact_and_gain_keeps_headroom() -> None:
    assert segments.silence(4410, sample_rate_hz=SR).frame_count() == 4410
    whole = segments.from_samples(np.arange(1000, dtype=np.int16), sample_rate_hz=SR)
    assert segments.samples_of(segments.trimmed(whole, 123, 457)).tolist() == list(range(123, 457))
    loud = segments.gained(np.full(10, 30_000, dtype=np.int16), 6.0, sample_rate_hz=SR)
    assert loud[0] == pytest.approx(30_000 / 32768 * 10 ** (6 / 20), rel=1e-3)  # over full scale: not clipped


def test_true_peak_sees_between_samples() -> None:
    n = np.arange(4000)
    x = np.sin(2 * np.pi * 0.25 * n + np.pi / 4)  # samples at +-0.707, the wave reaches 1.0
    assert np.abs(x).max() == pytest.approx(0.7071, abs=1e-3)
    assert dsp.true_peak_abs(x) == pytest.approx(1.0, abs=0.02)


def test_limiter_keeps_true_peak_under_the_ceiling_without_steps() -> None:
    rng = np.random.default_rng(3)
    x = 0.2 * np.sin(2 * np.pi * 200 * np.arange(SR) / SR)
    spikes = rng.integers(1000, SR - 1000, 20)
    for s in spikes:
        x[s:s + 4] = rng.uniform(0.8, 1.5)
    ceiling = 10 ** (-3.5 / 20)
    gains = dsp.limiter_gains(x, ceiling=ceiling)
    assert gains.max() <= 1.0 and gains.min() > 0
    y = x * gains
    assert dsp.true_peak_abs(y) <= ceiling * 1.001
    assert np.abs(np.diff(gains)).max() < 0.02  # ramps, never a jump
    untouched = np.ones(len(x), dtype=bool)
    for s in spikes:
        untouched[max(0, s - 1000):s + 1000] = False
    assert np.allclose(gains[untouched], 1.0)


def test_limiter_leaves_quiet_audio_alone() -> None:
    x = 0.1 * np.sin(np.arange(10_000) / 7)
    assert np.array_equal(dsp.limiter_gains(x, ceiling=0.5), np.ones(len(x)))


def test_room_tone_is_deterministic_quiet_and_seamless() -> None:
    loop = dsp.ROOM_TONE_LOOP
    a = dsp.room_tone(0, loop + 1000, sample_rate_hz=SR, level_db=-75)
    b = dsp.room_tone(loop - 500, 1000, sample_rate_hz=SR, level_db=-75)
    assert np.array_equal(a[loop - 500: loop + 500], b)
    assert 20 * np.log10(np.sqrt(np.mean(a * a))) == pytest.approx(-75, abs=0.1)
    typical = np.abs(np.diff(a[:loop])).max()
    assert abs(a[loop] - a[loop - 1]) <= typical  # the wrap-around is no jump
    assert np.count_nonzero(np.round(a * 32768)) > 0.5 * len(a)  # survives 16-bit: not digital silence


def test_batch_decode_matches_single_decodes_and_names_a_broken_file(tmp_path: Path) -> None:
    files = [encode_mp3(0.2 * np.sin(np.arange(16_000 * (i + 1)) / (5 + i)), tmp_path / f"{i}.mp3")
             for i in range(3)]
    batch = ffmpeg.decode_pcm_batch(files, scratch_dir=tmp_path)
    assert [len(b) for b in batch] == [round(44_100 * 0.5 * (i + 1)) for i in range(3)]
    for path, samples in zip(files, batch, strict=True):
        assert np.array_equal(samples, ffmpeg.decode_pcm(path))
    files[1].write_bytes(b"garbage")
    with pytest.raises(AssemblyError, match="chunk one: .*1.mp3"):
        ffmpeg.decode_pcm_batch(files, labels=["chunk zero", "chunk one", "chunk two"], scratch_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0.mp3", "1.mp3", "2.mp3"]  # scratch cleaned up


# --- channels and rate from the decoded stream (ffmpeg 5.1 writes every MP4 AAC entry as stereo) ---


def _mono_m4b(tmp_path: Path, *, seconds: float = 1.0) -> Path:
    """A mono M4B made the way the project makes the book: AAC from a pipe, then chapter marks."""
    aac = tmp_path / "book.aac.m4a"
    with ffmpeg.aac_encoder(aac, sample_rate_hz=SR, bitrate_kbps=64, what="test") as enc:
        enc.write((np.sin(np.arange(round(SR * seconds)) / 9) * 6000).astype(np.int16))
    book = tmp_path / "book.m4b"
    ffmpeg.mux_chapters(aac, book, chapters=[ffmpeg.ChapterMark(0, round(SR * seconds), "One")],
                        sample_rate_hz=SR, what="test")
    return book


def test_a_mono_m4b_is_mono_even_when_its_header_says_stereo(tmp_path: Path) -> None:
    book = set_mp4_header_channels(_mono_m4b(tmp_path), 2)  # what Debian 12's ffmpeg 5.1 writes
    assert tags.stream_info(book).channels == 2  # the container alone is fooled
    decoded = ffmpeg.decoded_format(book)
    assert decoded == ffmpeg.DecodedFormat(channels=1, sample_rate_hz=SR)
    info = tags.stream_info(book, decoded=decoded)
    assert (info.codec, info.sample_rate_hz, info.channels) == ("aac", SR, 1)
    assert info.bitrate_kbps > 0  # the rest still comes from the container


def test_the_project_s_own_m4b_decodes_as_mono(tmp_path: Path) -> None:
    # whichever ffmpeg wrote it (CI runs this with the system's and with imageio-ffmpeg's)
    book = _mono_m4b(tmp_path)
    assert tags.stream_info(book, decoded=ffmpeg.decoded_format(book)).channels == 1


def test_decoded_format_reports_native_layout_and_rate(tmp_path: Path) -> None:
    mp3 = encode_mp3(np.zeros(16_000) + 0.01, tmp_path / "m.mp3")  # 32 kHz mono
    assert ffmpeg.decoded_format(mp3) == ffmpeg.DecodedFormat(channels=1, sample_rate_hz=32_000)
    stereo = tmp_path / "s.m4a"
    pcm = (np.sin(np.arange(48_000) / 7) * 5000).astype("<i2")
    subprocess.run([ffmpeg.find_ffmpeg(), "-v", "error", "-y", "-f", "s16le", "-ar", "24000", "-ac", "2",
                    "-i", "-", "-c:a", "aac", "-f", "mp4", str(stereo)], input=pcm.tobytes(), check=True)
    assert ffmpeg.decoded_format(stereo) == ffmpeg.DecodedFormat(channels=2, sample_rate_hz=24_000)
    info = tags.stream_info(stereo, decoded=ffmpeg.decoded_format(stereo))
    assert (info.channels, info.sample_rate_hz) == (2, 24_000)


@pytest.mark.parametrize("content", [b"", b"<html>Access denied</html>"])
def test_decoded_format_of_a_broken_file_names_it(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.m4b"
    bad.write_bytes(content)
    with pytest.raises(AssemblyError, match="bad.m4b"):
        ffmpeg.decoded_format(bad)
    with pytest.raises(AssemblyError, match="nope.m4b.*does not exist"):
        ffmpeg.decoded_format(tmp_path / "nope.m4b")


def test_wav_header_parser_skips_a_list_chunk() -> None:
    fmt = b"fmt " + (16).to_bytes(4, "little") + bytes.fromhex("0100 0100 803e0000 007d0000 0200 1000")
    listing = b"LIST" + (5).to_bytes(4, "little") + b"INFOx" + b"\0"  # odd size: one pad byte
    data = b"RIFF" + b"\xff" * 4 + b"WAVE" + listing + fmt + b"data" + b"\xff" * 4
    assert ffmpeg._wav_format(data) == ffmpeg.DecodedFormat(channels=1, sample_rate_hz=16_000)
    assert ffmpeg._wav_format(b"RIFF\0\0\0\0WAVEdata\0\0\0\0") is None
    assert ffmpeg._wav_format(b"not a wav") is None


# --- chapter titles survive the mux exactly --------------------------------------------------------

CHAPTER_TITLES = [
    ("Ends with a backslash \\", "Ends with a backslash \\"),   # the one that swallowed the next mark
    ("Next after the backslash", "Next after the backslash"),
    ("\\", "\\"),
    ("Two backslashes \\\\", "Two backslashes \\\\"),
    ("a=b; c#d = e", "a=b; c#d = e"),
    ("#hash first", "#hash first"),
    (";semicolon first", ";semicolon first"),
    ("[CHAPTER]", "[CHAPTER]"),
    ("Line one\nline two", "Line one line two"),
    ("Windows\r\nline \n\n end\n", "Windows line end"),
    ("Backslash then newline \\\nafter", "Backslash then newline \\ after"),
    ("第一章：灯塔守护者", "第一章：灯塔守护者"),
    ("Mid\\dle and C:\\path\\", "Mid\\dle and C:\\path\\"),
    ("Last \\", "Last \\"),
]


def test_chapter_titles_read_back_exactly(tmp_path: Path) -> None:
    step = SR // 10
    aac = tmp_path / "b.aac.m4a"
    with ffmpeg.aac_encoder(aac, sample_rate_hz=SR, bitrate_kbps=64, what="test") as enc:
        enc.write((np.sin(np.arange(step * len(CHAPTER_TITLES)) / 9) * 6000).astype(np.int16))
    marks = [ffmpeg.ChapterMark(i * step, (i + 1) * step, title) for i, (title, _) in enumerate(CHAPTER_TITLES)]
    book = tmp_path / "b.m4b"
    ffmpeg.mux_chapters(aac, book, chapters=marks, sample_rate_hz=SR, what="test")
    read = tags.read_mp4_chapters(book)
    assert [title for _, title in read] == [want for _, want in CHAPTER_TITLES]
    assert [start for start, _ in read] == pytest.approx([i * 0.1 for i in range(len(CHAPTER_TITLES))], abs=0.001)
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".ffmeta"]  # the metadata file is cleaned up


@pytest.mark.parametrize("title, want", [
    ("plain", "plain"), ("  spaced  ", "  spaced  "), ("a\u2028b", "a b"), ("nul\0here", "nulhere"),
    ("\n\nlead", "lead"), ("tab\tkept", "tab\tkept"),
])
def test_chapter_title_is_one_line(title: str, want: str) -> None:
    assert ffmpeg.chapter_title(title) == want


# --- counting speech (voice samples) -----------------------------------------------------------------


def _pcm(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x, -1, 32767 / 32768) * 32768).astype(np.int16)


def test_speech_seconds_counts_only_speech_frames() -> None:
    rate = 16_000
    assert dsp.speech_seconds(np.zeros(30 * rate, dtype=np.int16), sample_rate_hz=rate) == 0.0
    assert dsp.speech_seconds(_pcm(low_noise(30, level_db=-50, rate_hz=rate)), sample_rate_hz=rate) == 0.0
    # hiss above the absolute threshold is still not speech: it is not above its own floor
    assert dsp.speech_seconds(_pcm(low_noise(30, level_db=-25, rate_hz=rate)), sample_rate_hz=rate) == 0.0
    padded = np.concatenate([_pcm(tone_speech(10, rate_hz=rate)), np.zeros(20 * rate, dtype=np.int16)])
    assert dsp.speech_seconds(padded, sample_rate_hz=rate) == pytest.approx(10.0, abs=0.031)
    # speech over hiss: the pauses are the floor, the syllables are 10 dB and more above it
    voiced = _pcm(speech_like(20, rate_hz=rate) + low_noise(20, level_db=-45, rate_hz=rate))
    assert 16.0 < dsp.speech_seconds(voiced, sample_rate_hz=rate) < 18.5
    assert dsp.speech_seconds(np.zeros(0, dtype=np.int16), sample_rate_hz=rate) == 0.0


def test_speech_seconds_is_the_same_streamed_in_odd_blocks() -> None:
    rate = 16_000
    x = _pcm(speech_like(12, rate_hz=rate, seed=4))
    whole = dsp.speech_seconds(x, sample_rate_hz=rate)
    cuts = [0, 1, 479, 5000, 5001, 77_777, len(x)]
    blocks = (x[a:b] for a, b in itertools.pairwise(cuts))
    assert dsp.speech_seconds(blocks, sample_rate_hz=rate) == whole > 0


@pytest.mark.parametrize("total, bins, block", [(1000, 7, 33), (123_457, 200, 4096), (44_100 * 90, 360, 1 << 18)])
def test_the_waveform_is_the_peak_of_each_span_however_the_blocks_fall(total: int, bins: int, block: int) -> None:
    data = np.random.default_rng(total).integers(-32768, 32768, total).astype(dsp.PCM_DTYPE)
    meter = dsp.PeakMeter(total, bins)
    for start in range(0, total, block):
        meter.add(data[start:start + block])
    spans = np.array_split(np.abs(data.astype(np.int32)), [-(-b * total // bins) for b in range(1, bins)])
    assert meter.result() == tuple(round(float(s.max()) / 32768, 3) for s in spans)
    assert dsp.waveform_bins(10) == dsp.WAVEFORM_MIN_BINS and dsp.waveform_bins(10 * 3600) == dsp.WAVEFORM_MAX_BINS
