"""Upload a voice sample, clone it with a preview task, then speak with the new modelId."""

from __future__ import annotations

import io
import wave

import numpy as np
from simulator_helpers import UPLOAD, Api, decode_mp3

from pipeline.simulator import Simulator
from pipeline.simulator.voice import encode_mp3


def wav_bytes(seconds: float, *, rate: int = 16_000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    pcm = (0.2 * np.sin(2 * np.pi * 180 * t) * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(pcm.tobytes())
    return buffer.getvalue()


def upload(api: Api, name: str, data: bytes) -> dict:
    response = api.http.post(UPLOAD, files={"file": (name, data)})
    assert response.status_code == 200, response.text
    return response.json()["data"]


def test_upload_returns_a_public_url_on_the_files_origin(sim: Simulator, api: Api) -> None:
    data = wav_bytes(20)
    uploaded = upload(api, "声音 sample.wav", data)
    assert set(uploaded) == {"url", "filename", "size", "mime_type"}
    assert uploaded["filename"] == "声音 sample.wav" and uploaded["size"] == len(data)
    assert uploaded["mime_type"] == "audio/wav"
    assert uploaded["url"].startswith(sim.files_url + "/") and uploaded["url"].split("?")[0].endswith(".wav")
    assert api.files.get(uploaded["url"]).content == data  # public: no API key needed


def test_preview_of_an_uploaded_sample_gives_a_usable_model_id(sim: Simulator, api: Api) -> None:
    uploaded = upload(api, "me.wav", wav_bytes(20))
    created = api.create_preview(uploaded["url"], contentText="Does this sound like me?").json()["data"]
    assert created["model"] == "soundCloningClone" and created["status"] == "queued"
    done = api.finish(created["id"])
    assert done["status"] == "completed" and done["modelId"].startswith("model_")
    samples, rate, _ = decode_mp3(api.files.get(done["audioUrl"]).content)
    assert rate == 32_000 and len(samples) / rate > 1.0
    speak = api.http.post(
        "/api/open-api/v1/soundCloning/audios", json={"modelId": done["modelId"], "contentText": "It works."}
    )
    assert speak.status_code == 200
    assert {v["modelId"] for v in sim.ledger()["voices"]} >= {done["modelId"]}


def test_model_id_of_an_unfinished_preview_is_not_usable_yet(sim: Simulator, api: Api) -> None:
    created = api.create_preview(upload(api, "me.wav", wav_bytes(20))["url"]).json()["data"]
    (task,) = sim.ledger()["tasks"]  # the ledger knows the voice the preview will produce
    body = {"modelId": task["model_id"], "contentText": "Too early."}
    early = api.http.post("/api/open-api/v1/soundCloning/audios", json=body)
    assert early.status_code == 400 and early.json()["msg"].startswith("modelId:")
    assert api.finish(created["id"])["modelId"] == task["model_id"]
    assert api.http.post("/api/open-api/v1/soundCloning/audios", json=body).status_code == 200


def test_a_too_short_sample_fails_the_preview_and_is_refunded(sim: Simulator, api: Api) -> None:
    uploaded = upload(api, "short.wav", wav_bytes(5))
    done = api.finish(api.create_preview(uploaded["url"]).json()["data"]["id"])
    assert done["status"] == "failed" and done["error"].startswith("fileUrl:") and "15" in done["error"]
    assert sim.ledger()["refunds"][0]["task_id"] == done["id"]


def test_a_too_long_mp3_sample_is_measured_with_ffmpeg(sim: Simulator, api: Api) -> None:
    total = 32_000 * 61 // 1152 * 1152 + 1152
    mp3 = encode_mp3(iter([np.zeros(total, dtype=np.float32)]), total_samples=total)
    uploaded = upload(api, "long.mp3", mp3)
    done = api.finish(api.create_preview(uploaded["url"]).json()["data"]["id"])
    assert done["status"] == "failed" and "60" in done["error"]


def test_upload_rejects_other_types_and_missing_file(api: Api) -> None:
    response = api.http.post(UPLOAD, files={"file": ("notes.txt", b"hello")})
    assert response.status_code == 400 and response.json()["msg"].startswith("file:")
    response = api.http.post(UPLOAD, files={"other": ("a.wav", b"x")})
    assert response.status_code == 400 and response.json()["msg"].startswith("file:")
    response = api.http.post(UPLOAD, json={"file": "a.wav"})
    assert response.status_code == 400 and response.json()["msg"].startswith("file:")
