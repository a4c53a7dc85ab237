"""pydub: the per-chunk stitching work, on ``AudioSegment`` values (the only module that uses pydub's audio).

A chapter is stitched one chunk at a time (never a whole-chapter segment, never ``+`` over a growing
chapter): each chunk's decoded samples become a segment, which is trimmed to its speech, faded at
both cuts and given its inserted silence here; the chapter's loudness gain is applied here too, block
by block, as the chapter streams to its encoder. Everything is sample-exact: pydub slices by
milliseconds, so cuts use ``get_sample_slice``, silence is built from a sample count, and each fade
runs on the exact frames it covers (:func:`faded`).

Decoding itself is ffmpeg's (:func:`pipeline.audio.ffmpeg.decode_pcm_batch`): pydub's own decoder would
need ffprobe and its resampler (``audioop.ratecv``) aliases; the decoded, resampled samples become a
segment with :func:`from_samples`.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from pipeline.audio.dsp import INT16_FULL_SCALE, PCM_DTYPE

with warnings.catch_warnings():  # pydub warns on import (audioop, ffmpeg lookup); warnings are errors here
    warnings.simplefilter("ignore")
    from pydub import AudioSegment

SAMPLE_WIDTH = 2
GAIN_WIDTH = 4  # the gain is applied in 32-bit samples: headroom above int16 full scale for the limiter
_INT32 = np.dtype("<i4")


def from_samples(samples: np.ndarray, *, sample_rate_hz: int) -> Any:
    """A mono 16-bit segment holding ``samples`` (int16)."""
    data = np.ascontiguousarray(samples, dtype=PCM_DTYPE).tobytes()
    return AudioSegment(data=data, sample_width=SAMPLE_WIDTH, frame_rate=sample_rate_hz, channels=1)


def silence(count: int, *, sample_rate_hz: int) -> Any:
    """Exactly ``count`` samples of digital silence (the room tone goes under it later)."""
    return AudioSegment(data=bytes(count * SAMPLE_WIDTH), sample_width=SAMPLE_WIDTH, frame_rate=sample_rate_hz,
                        channels=1)


def trimmed(segment: Any, start: int, stop: int) -> Any:
    """Samples ``start`` to ``stop`` of ``segment`` (sample-exact)."""
    return segment.get_sample_slice(start, stop)


def faded(segment: Any, fade_samples: int) -> Any:
    """``segment`` with pydub's linear fade-in and fade-out over ``fade_samples`` each (at most half its
    length), sample-exact."""
    total = int(segment.frame_count())
    n = min(fade_samples, total // 2)
    if n <= 0:
        return segment
    # pydub counts fades in milliseconds; on a segment of exactly n frames relabelled as lasting 1 ms,
    # a 1 ms fade covers exactly those frames (frame_rate is only what pydub converts milliseconds by)
    head = _relabel(trimmed(segment, 0, n), n * 1000).fade_in(1)
    tail = _relabel(trimmed(segment, total - n, total), n * 1000).fade_out(1)
    data = head.raw_data + trimmed(segment, n, total - n).raw_data + tail.raw_data
    return AudioSegment(data=data, sample_width=segment.sample_width, frame_rate=segment.frame_rate, channels=1)


def _relabel(segment: Any, frame_rate: int) -> Any:
    """The same samples, with another nominal rate (no resampling)."""
    return AudioSegment(data=segment.raw_data, sample_width=segment.sample_width, frame_rate=frame_rate, channels=1)


def samples_of(segment: Any) -> np.ndarray:
    """The int16 samples of a 16-bit mono segment (a read-only view of its data)."""
    return np.frombuffer(segment.raw_data, dtype=PCM_DTYPE)


def gained(samples: np.ndarray, gain_db: float, *, sample_rate_hz: int) -> np.ndarray:
    """``samples`` (int16) with ``gain_db`` applied, as floats at full scale 1.0 (not clipped: the
    true-peak limiter comes next)."""
    wide = np.ascontiguousarray(samples, dtype=PCM_DTYPE).astype(_INT32)
    segment = AudioSegment(data=wide.tobytes(), sample_width=GAIN_WIDTH, frame_rate=sample_rate_hz, channels=1)
    out: np.ndarray = np.frombuffer(segment.apply_gain(gain_db).raw_data, dtype=_INT32) / INT16_FULL_SCALE
    return out
