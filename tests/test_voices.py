"""Voices against the simulator: create from URL and from a local file, a rejected sample, expiry with the
clock injected, activation on first use, and `run` refusing an expired voice."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from audio_factory import encode_mp3, low_noise, speech_like, tone_speech

from pipeline.errors import ConfigError, VoiceError
from pipeline.simulator import Simulator, SimulatorConfig
from pipeline.voices import (
    MODEL_LIFETIME_S,
    SampleMeasure,
    VoiceRecord,
    VoiceRegistry,
    VoiceRequest,
    check_request,
    check_voices,
    measure_sample,
)

API_KEY = "sk-voices-test"
REPO = Path(__file__).resolve().parent.parent


def write_wav(path: Path, seconds: float, rate: int = 16000) -> Path:
    t = np.arange(int(rate * seconds)) / rate
    signal = 0.3 * np.sin(2 * np.pi * 170 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((signal * 32767).astype(np.int16).tobytes())
    return path


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(SimulatorConfig(api_key=API_KEY, task_base_s=0.02, task_s_per_char=0.0), host="127.0.0.1",
                   port=0, files_port=0) as simulator:
        yield simulator


def cli(sim: Simulator, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOUNDCLONE_")}
    env.update(SOUNDCLONE_BASE_URL=sim.base_url, SOUNDCLONE_API_KEY=API_KEY,
               SOUNDCLONE_VOICES=str(tmp_path / "registry" / "voices.json"))
    return subprocess.run([sys.executable, "-m", "pipeline", *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)


def test_create_from_a_local_file_uploads_registers_and_prints_manifest_lines(sim: Simulator, tmp_path: Path) -> None:
    sample = write_wav(tmp_path / "anna.wav", 20)
    result = cli(sim, tmp_path, "voice", "create", "--file", str(sample), "--name", "anna", "--poll-interval", "0.05")
    assert result.returncode == 0, result.stderr
    record = VoiceRegistry(tmp_path / "registry" / "voices.json").get("anna")
    assert record.model_id in result.stdout and "name: anna" in result.stdout
    assert record.activated_at is None and record.expires_at - record.created_at == MODEL_LIFETIME_S
    assert record.preview_file and Path(record.preview_file).stat().st_size > 0
    ledger = sim.ledger()
    assert ledger["requests"].get("POST /api/open-api/v1/files/upload") == 1
    assert ledger["tasks_created"]["preview"] == 1
    listed = cli(sim, tmp_path, "voice", "list")
    assert "anna" in listed.stdout and "h left" in listed.stdout
    shown = cli(sim, tmp_path, "voice", "show", "anna")
    assert f"model_id: {record.model_id}" in shown.stdout


def test_create_from_a_url(sim: Simulator, tmp_path: Path) -> None:
    result = cli(sim, tmp_path, "voice", "create", "--file-url", "https://samples.example.org/bob.mp3",
                 "--name", "bob", "--text", "Hello there, this is Bob.", "--poll-interval", "0.05")
    assert result.returncode == 0, result.stderr
    assert VoiceRegistry(tmp_path / "registry" / "voices.json").get("bob").sample.endswith("bob.mp3")


def test_a_sample_of_the_wrong_length_is_refused_before_paying(sim: Simulator, tmp_path: Path) -> None:
    sample = write_wav(tmp_path / "short.wav", 5)
    result = cli(sim, tmp_path, "voice", "create", "--file", str(sample), "--name", "short")
    assert result.returncode == 2
    assert "5.0s" in result.stderr and "more than 15s" in result.stderr and "Traceback" not in result.stderr
    assert sum(sim.ledger()["requests"].values()) == 0


@pytest.mark.parametrize("request_, fragment", [
    (VoiceRequest(name="x", file_url="ftp://host/a.mp3"), "http(s)"),
    (VoiceRequest(name="x", file_url="https://host/声音.mp3"), "Chinese"),
    (VoiceRequest(name="x", file_url="https://host/a.txt"), "not a sample format"),
    (VoiceRequest(name="x"), "exactly one"),
    (VoiceRequest(name="../x", file_url="https://host/a.mp3"), "--name"),
    (VoiceRequest(name="x", file_url="https://host/a.mp3", text="y" * 300), "--text"),
])
def test_sample_checks(request_: VoiceRequest, fragment: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        check_request(request_, measure=lambda path: SampleMeasure(duration_s=20.0, speech_s=18.0))
    assert fragment in str(info.value)


# --- speech in a local sample, measured before paying ----------------------------------------------

SAMPLE_RATE_HZ = 32_000


def _samples() -> dict[str, np.ndarray]:
    silence = np.zeros(20 * SAMPLE_RATE_HZ)
    return {
        "silence": np.zeros(30 * SAMPLE_RATE_HZ),
        "low noise": low_noise(30, level_db=-50, rate_hz=SAMPLE_RATE_HZ),
        "loud hiss": low_noise(30, level_db=-25, rate_hz=SAMPLE_RATE_HZ, seed=1),
        "tone padded": np.concatenate([tone_speech(10, rate_hz=SAMPLE_RATE_HZ), silence]),
    }


@pytest.mark.parametrize("kind, found", [("silence", "0.0"), ("low noise", "0.0"), ("loud hiss", "0.0"),
                                         ("tone padded", "10.0")])
def test_a_sample_without_enough_speech_is_refused(tmp_path: Path, kind: str, found: str) -> None:
    sample = encode_mp3(_samples()[kind], tmp_path / "sample.mp3", rate_hz=SAMPLE_RATE_HZ)
    with pytest.raises(ConfigError) as info:
        check_request(VoiceRequest(name="x", file=sample))
    message = str(info.value)
    assert f"found {found}s of speech in 30.0s of audio" in message
    assert "more than 15s and less than 60s of speech" in message and "sample.mp3" in message


def test_twenty_seconds_of_speech_are_accepted(tmp_path: Path) -> None:
    sample = encode_mp3(speech_like(20, rate_hz=SAMPLE_RATE_HZ), tmp_path / "talk.mp3", rate_hz=SAMPLE_RATE_HZ)
    measured = measure_sample(sample)
    assert measured.duration_s == pytest.approx(20.0, abs=0.01)
    assert 16.0 < measured.speech_s < 18.5
    check_request(VoiceRequest(name="x", file=sample))  # no error


@pytest.mark.parametrize("measured, fragment", [
    (SampleMeasure(duration_s=30.0, speech_s=12.34), "found 12.3s of speech in 30.0s"),
    (SampleMeasure(duration_s=30.0, speech_s=14.99), "found 14.9s of speech"),  # never shown as 15.0
    (SampleMeasure(duration_s=30.0, speech_s=15.0), "found 15.0s of speech"),   # "more than": 15 is out
    (SampleMeasure(duration_s=61.0, speech_s=50.0), "lasts 61.0s"),             # the total still counts
    (SampleMeasure(duration_s=12.0, speech_s=12.0), "lasts 12.0s"),
])
def test_sample_rules_with_an_injected_measure(tmp_path: Path, measured: SampleMeasure, fragment: str) -> None:
    sample = tmp_path / "s.wav"
    sample.write_bytes(b"not read: the measure is injected")
    with pytest.raises(ConfigError, match=fragment):
        check_request(VoiceRequest(name="x", file=sample), measure=lambda path: measured)
    check_request(VoiceRequest(name="x", file=sample),
                  measure=lambda path: SampleMeasure(duration_s=59.9, speech_s=15.01))


def test_a_silent_sample_is_refused_by_the_cli_before_any_request(sim: Simulator, tmp_path: Path) -> None:
    sample = encode_mp3(np.zeros(30 * SAMPLE_RATE_HZ), tmp_path / "quiet.mp3", rate_hz=SAMPLE_RATE_HZ)
    result = cli(sim, tmp_path, "voice", "create", "--file", str(sample), "--name", "quiet")
    assert result.returncode == 2, result.stderr
    assert "found 0.0s of speech" in result.stderr and "Traceback" not in result.stderr
    assert sum(sim.ledger()["requests"].values()) == 0


def test_expiry_with_an_injected_clock(tmp_path: Path) -> None:
    registry = VoiceRegistry(tmp_path / "voices.json")
    registry.add(VoiceRecord(name="old", model_id="model_old", created_at=1000.0, expires_at=1000.0 + MODEL_LIFETIME_S))
    assert check_voices({"model_old"}, now=2000.0, registry=registry) == []
    warnings = check_voices({"model_old"}, now=1000.0 + MODEL_LIFETIME_S - 3600, registry=registry)
    assert len(warnings) == 1 and "expires in 1.0 h" in warnings[0]
    with pytest.raises(VoiceError, match="expired"):
        check_voices({"model_old"}, now=1000.0 + MODEL_LIFETIME_S + 1, registry=registry)
    # a journal that already used it vouches for it
    assert check_voices({"model_old"}, now=1e12, registry=registry, activated=lambda m: True) == []
    registry.mark_activated({"model_old"}, now=5000.0)
    assert check_voices({"model_old"}, now=1e12, registry=registry) == []


def _book(tmp_path: Path, voice: dict[str, str]) -> Path:
    (tmp_path / "one.txt").write_text("The keeper lit the lamp. The sea was calm.", encoding="utf-8")
    manifest = {"title": "Voices", "voice": voice, "audio": {"m4b": False, "profile": "none"},
                "api": {"poll_interval_s": 0.05}, "chapters": [{"id": "one", "source": "one.txt"}]}
    path = tmp_path / "book.yaml"
    path.write_text(yaml.safe_dump(manifest), encoding="utf-8")
    return path


def test_run_refuses_an_expired_voice_and_activates_a_live_one_on_first_use(sim: Simulator, tmp_path: Path) -> None:
    registry = VoiceRegistry(tmp_path / "registry" / "voices.json")
    now = time.time()
    registry.add(VoiceRecord(name="dead", model_id="model_dead", created_at=now - MODEL_LIFETIME_S - 60,
                             expires_at=now - 60))
    dead = cli(sim, tmp_path, "run", str(_book(tmp_path, {"name": "dead"})))
    assert dead.returncode == 2 and "expired" in dead.stderr
    assert sum(sim.ledger()["requests"].values()) == 0

    sample = write_wav(tmp_path / "live.wav", 20)
    assert cli(sim, tmp_path, "voice", "create", "--file", str(sample), "--name", "live",
               "--poll-interval", "0.05").returncode == 0
    result = cli(sim, tmp_path, "run", str(_book(tmp_path, {"name": "live"})))
    assert result.returncode == 0, result.stdout + result.stderr
    assert registry.get("live").activated_at is not None
    server_view = {v["modelId"]: v for v in sim.ledger()["voices"]}
    assert server_view[registry.get("live").model_id]["activated"] is True  # the server agrees
