"""Helpers for the simulator tests: a fake clock, a small API client, MP3 decoding and onset detection."""

from __future__ import annotations

import subprocess
import threading
from typing import Any

import httpx
import imageio_ffmpeg
import numpy as np
import pytest

from pipeline.simulator import Simulator
from pipeline.simulator.voice import (
    ESPEAK_LIBRARY_BACKEND,
    ESPEAK_PROGRAM_BACKEND,
    espeak_available,
    espeak_library_problem,
)

# Both engines of real speech, each skipped (with the reason shown by -ra) only when it cannot run here.
ESPEAK_ENGINES = [
    pytest.param(
        ESPEAK_PROGRAM_BACKEND,
        marks=pytest.mark.skipif(not espeak_available(), reason="the espeak-ng program is not on PATH"),
    ),
    pytest.param(
        ESPEAK_LIBRARY_BACKEND,
        marks=pytest.mark.skipif(
            espeak_library_problem() is not None,
            reason=f"libespeak-ng from espeakng-loader cannot load: {espeak_library_problem()}",
        ),
    ),
]

API_KEY = "sk-test"
PREVIEW = "/api/open-api/v1/soundCloning/clones"
AUDIO = "/api/open-api/v1/soundCloning/audios"
QUERY = "/api/open-api/v1/audios/"
UPLOAD = "/api/open-api/v1/files/upload"
VOICE = "model_test"
T0 = 1_800_000_000.0  # a fixed start for the fake clock (unix seconds)


class FakeClock:
    """A clock that moves only when told; thread-safe enough for reads from handler threads."""

    def __init__(self, start: float = T0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


class Api:
    """A tiny client over httpx for the tests: bearer key, envelope helpers, task polling."""

    def __init__(self, sim: Simulator, *, api_key: str = API_KEY) -> None:
        self.sim = sim
        self.http = httpx.Client(
            base_url=sim.base_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=10.0
        )
        self.files = httpx.Client(timeout=10.0)  # no Authorization: the files origin must not need it

    def close(self) -> None:
        self.http.close()
        self.files.close()

    def create_audio(self, text: str = "Hello world.", **fields: Any) -> httpx.Response:
        return self.http.post(AUDIO, json={"modelId": VOICE, "contentText": text, **fields})

    def create_preview(
        self, file_url: str = "https://example.com/sample.mp3", **fields: Any
    ) -> httpx.Response:
        return self.http.post(PREVIEW, json={"fileUrl": file_url, **fields})

    def query(self, task_id: str) -> httpx.Response:
        return self.http.get(QUERY + task_id)

    def task(self, task_id: str) -> dict[str, Any]:
        response = self.query(task_id)
        assert response.status_code == 200, response.text
        return response.json()["data"]

    def finish(self, task_id: str) -> dict[str, Any]:
        """Advance the simulator clock until the task is final; return its data."""
        for _ in range(100):
            data = self.task(task_id)
            if data["status"] in ("completed", "failed"):
                return data
            self.sim.advance_clock(1.0)
        raise AssertionError(f"task {task_id} never finished")

    def submit_and_finish(self, text: str = "Hello world.", **fields: Any) -> dict[str, Any]:
        response = self.create_audio(text, **fields)
        assert response.status_code == 200, response.text
        return self.finish(response.json()["data"]["id"])


def decode_mp3(data: bytes) -> tuple[np.ndarray, int, int]:
    """Decode MP3 bytes with ffmpeg to float samples; also return the stream's sample rate and channels."""
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    pcm = subprocess.run(
        [ffmpeg, "-v", "error", "-i", "pipe:0", "-f", "s16le", "-acodec", "pcm_s16le", "pipe:1"],
        input=data,
        capture_output=True,
        check=True,
    ).stdout
    # ffmpeg with no output file exits 1 after printing the stream info we want
    probe = subprocess.run(
        [ffmpeg, "-hide_banner", "-i", "pipe:0"], input=data, capture_output=True, check=False
    ).stderr
    text = probe.decode(errors="replace")
    rate = int(text.split(" Hz")[0].rsplit(" ", 1)[-1])
    channels = 1 if "mono" in text else 2
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0, rate, channels


def speech_regions(
    samples: np.ndarray, rate: int, *, threshold_db: float = -45.0
) -> list[tuple[float, float]]:
    """(start, end) seconds of runs louder than ``threshold_db`` (5 ms frames), gaps under 20 ms merged."""
    frame = rate // 200
    frames = samples[: len(samples) // frame * frame].reshape(-1, frame)
    loud = np.abs(frames).max(axis=1) > 10 ** (threshold_db / 20)
    regions: list[tuple[float, float]] = []
    index = 0
    while index < len(loud):
        if loud[index]:
            end = index
            while end < len(loud) and loud[end]:
                end += 1
            start_s, end_s = index * frame / rate, end * frame / rate
            if regions and start_s - regions[-1][1] < 0.02:
                regions[-1] = (regions[-1][0], end_s)
            else:
                regions.append((start_s, end_s))
            index = end
        else:
            index += 1
    return regions
