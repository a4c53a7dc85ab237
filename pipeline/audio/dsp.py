"""Signal processing on numpy arrays of PCM samples: no processes, no files.

Finding speech, fades, true peak (4x oversampling), the look-ahead limiter, the room-tone bed, the
level measurement of the delivery check and the speech count of a voice sample (both fed with blocks
streamed by :mod:`pipeline.audio.ffmpeg`).
Samples are mono int16 (``PCM_DTYPE``) unless a function says float (full scale 1.0).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.errors import AssemblyError

PCM_DTYPE = np.dtype("<i2")
BYTES_PER_SAMPLE = 2
INT16_FULL_SCALE = 32768.0


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


def measure_pcm(blocks: Iterable[np.ndarray], *, sample_rate_hz: int, silence_threshold_db: float,
                label: str) -> Measurement:
    """Measure a decoded file from its int16 ``blocks`` (as :func:`pipeline.audio.ffmpeg.stream_pcm`
    yields them) without holding it in memory; ``label`` names it in errors.

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
        raise AssemblyError(f"{label}: decodes to no audio")
    # shorter than one window: the whole file is the window
    window_rms = math.sqrt(sum_sq / total if min_window_sq is None else min_window_sq / (2 * hop))
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


SPEECH_FRAME_S = 0.03            # the unit of the speech count
SPEECH_THRESHOLD_DB = -40.0      # a frame quieter than this (RMS, dBFS) is not speech
SPEECH_ABOVE_FLOOR_DB = 10.0     # ... nor one within this much of the file's quietest frames
SPEECH_FLOOR_PERCENTILE = 5.0    # "the quietest frames": this percentile of the frames' RMS


def speech_seconds(blocks: np.ndarray | Iterable[np.ndarray], *, sample_rate_hz: int,
                   threshold_db: float = SPEECH_THRESHOLD_DB,
                   above_floor_db: float = SPEECH_ABOVE_FLOOR_DB) -> float:
    """Seconds of speech in int16 ``blocks`` (one array, or blocks as
    :func:`pipeline.audio.ffmpeg.stream_pcm` yields them): the number of whole 30 ms frames whose
    RMS is above ``threshold_db`` dBFS *and* at least ``above_floor_db`` above the noise floor, times
    30 ms. The floor is the 5th percentile of all frames' RMS, so steady hiss or hum, however loud,
    counts as no speech, while digital silence leaves the absolute threshold in charge.

    Deliberately a plain count (no hang-over across the short dips between words): it errs towards
    too little speech, which costs a user a longer sample, never a paid preview of silence.
    A trailing part-frame is ignored. Memory: one float per frame.
    """
    frame = max(1, round(sample_rate_hz * SPEECH_FRAME_S))
    parts = [blocks] if isinstance(blocks, np.ndarray) else blocks
    carry = np.zeros(0, dtype=np.float64)
    energies: list[np.ndarray] = []
    for block in parts:
        pending = np.concatenate([carry, np.asarray(block, dtype=np.float64)])
        whole = len(pending) - len(pending) % frame
        if whole:
            frames = pending[:whole].reshape(-1, frame)
            energies.append(np.einsum("ij,ij->i", frames, frames) / frame)
        carry = pending[whole:]
    if not energies:
        return 0.0
    mean_sq = np.concatenate(energies)
    floor = 10 ** (SILENCE_DB / 10) * INT16_FULL_SCALE ** 2
    level_db = 10 * np.log10(np.maximum(mean_sq, floor) / INT16_FULL_SCALE ** 2)
    noise_db = float(np.percentile(level_db, SPEECH_FLOOR_PERCENTILE))
    limit_db = max(threshold_db, noise_db + above_floor_db)
    return int(np.count_nonzero(level_db > limit_db)) * frame / sample_rate_hz


def joined(parts: Sequence[Measurement]) -> Measurement:
    """The measurement of ``parts`` played one after the other, from theirs alone: energy and length
    add up, peaks and the noise floor are the extremes, head and tail are the first's and the last's
    (a quietest window straddling two parts is not seen: each part starts and ends in room tone)."""
    if not parts:
        raise ValueError("no parts to join")
    samples = sum(p.samples for p in parts)
    energy = sum(10 ** (p.rms_db / 10) * p.samples for p in parts)
    return Measurement(
        duration_s=sum(p.duration_s for p in parts), samples=samples,
        rms_db=to_db(math.sqrt(energy / samples)) if samples else SILENCE_DB,
        peak_db=max(p.peak_db for p in parts), true_peak_db=max(p.true_peak_db for p in parts),
        noise_floor_db=min(p.noise_floor_db for p in parts), head_silence_s=parts[0].head_silence_s,
        tail_silence_s=parts[-1].tail_silence_s)


WAVEFORM_BINS_PER_S = 4                 # a review page's waveform: bins per second of audio ...
WAVEFORM_MIN_BINS, WAVEFORM_MAX_BINS = 200, 4000  # ... within these bounds


def waveform_bins(duration_s: float) -> int:
    return int(min(WAVEFORM_MAX_BINS, max(WAVEFORM_MIN_BINS, duration_s * WAVEFORM_BINS_PER_S)))


class PeakMeter:
    """The waveform of ``total`` samples: the peak level (0..1) in each of ``bins`` equal spans, from
    int16 blocks fed in order (memory: one float per bin)."""

    def __init__(self, total: int, bins: int) -> None:
        self.total = max(1, total)
        self.peaks = np.zeros(bins)
        self._position = 0

    def add(self, block: np.ndarray) -> None:
        if not len(block):
            return
        bins, start = len(self.peaks), self._position
        first = min(bins - 1, start * bins // self.total)
        last = min(bins - 1, (start + len(block) - 1) * bins // self.total)
        edges = -(-np.arange(first, last + 1) * self.total // bins)  # each bin's first sample (ceiling)
        offsets = np.clip(edges - start, 0, len(block) - 1)
        offsets[0] = 0
        spans = np.maximum.reduceat(np.abs(block.astype(np.int32)), offsets) / INT16_FULL_SCALE
        np.maximum(self.peaks[first:last + 1], spans, out=self.peaks[first:last + 1])
        self._position += len(block)

    def result(self) -> tuple[float, ...]:
        return tuple(round(float(p), 3) for p in self.peaks)


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
    peaks: np.ndarray = np.max(np.abs(rows @ _interp_kernels()), axis=1)
    return peaks


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
    gains: np.ndarray = np.interp(np.arange(n), centres, spread)
    return gains


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
