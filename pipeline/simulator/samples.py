"""How long an uploaded voice sample lasts, so a preview can enforce the 15-60 s rule.

WAV is measured with the stdlib; other formats with the ffmpeg that ``imageio_ffmpeg`` ships, when it is
installed. When neither can tell, the duration is unknown and the sample is accepted, as the simulator
cannot fetch URLs from the internet either.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import tempfile
import wave

SAMPLE_MIN_S = 15.0  # the reference: the speech must last more than 15 s ...
SAMPLE_MAX_S = 60.0  # ... and less than 60 s
_FFMPEG_TIME_RE = re.compile(r"time=(\d+):(\d+):(\d+(?:\.\d+)?)")
_FFMPEG_TIMEOUT_S = 30.0


def measure_duration_s(data: bytes, *, extension: str) -> float | None:
    """Seconds of media in ``data`` (a file with ``extension``), or None when it cannot be measured."""
    if extension == "wav":
        try:
            with wave.open(io.BytesIO(data)) as reader:
                return float(reader.getnframes()) / float(reader.getframerate())
        except (wave.Error, EOFError):
            pass
    return _measure_with_ffmpeg(data, extension=extension)


def _measure_with_ffmpeg(data: bytes, *, extension: str) -> float | None:
    try:
        import imageio_ffmpeg  # optional: only the test extra installs it
    except ImportError:
        return None
    executable = imageio_ffmpeg.get_ffmpeg_exe()
    # a real file, not a pipe: mp4/mov keep their index at the end and cannot be read from a pipe
    handle, path = tempfile.mkstemp(suffix=f".{extension}")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        completed = subprocess.run(
            [executable, "-hide_banner", "-nostdin", "-i", path, "-vn", "-f", "null", "-"],
            capture_output=True,
            timeout=_FFMPEG_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    finally:
        os.unlink(path)
    matches = _FFMPEG_TIME_RE.findall(completed.stderr.decode(errors="replace"))
    if completed.returncode != 0 or not matches:
        return None
    hours, minutes, seconds = matches[-1]
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def sample_length_problem(duration_s: float | None) -> str | None:
    """Why a sample of ``duration_s`` cannot be cloned, or None when it can (or is unmeasured)."""
    if duration_s is None or SAMPLE_MIN_S < duration_s < SAMPLE_MAX_S:
        return None
    return (
        f"fileUrl: the sample lasts {duration_s:.1f} s; the speech in it must last more than "
        f"{SAMPLE_MIN_S:g} s and less than {SAMPLE_MAX_S:g} s"
    )
