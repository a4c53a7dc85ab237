"""Every documented field rule of the create endpoints, over real sockets: one valid, several invalid."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from simulator_helpers import API_KEY, AUDIO, PREVIEW, VOICE, FakeClock

from pipeline.simulator import Simulator, SimulatorConfig


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    config = SimulatorConfig(api_key=API_KEY, clock=FakeClock(), preload_voices=(VOICE,))
    with (
        Simulator(config) as sim,
        httpx.Client(
            base_url=sim.base_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10.0
        ) as client,
    ):
        yield client


def audio(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"modelId": VOICE, "contentText": "Hello there, world."}
    body.update(fields)
    return {k: v for k, v in body.items() if v is not _MISSING}


def preview(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"fileUrl": "https://cdn.example.com/voice/sample.mp3"}
    body.update(fields)
    return {k: v for k, v in body.items() if v is not _MISSING}


_MISSING = object()

VALID_AUDIO = [
    audio(),
    audio(speed=0.5), audio(speed=2), audio(speed=1.25), audio(speed=None),
    audio(vol=0.01), audio(vol=10), audio(vol=3),
    audio(pitch=-12), audio(pitch=12), audio(pitch=0),
    *[audio(emotion=e) for e in ("happy", "sad", "angry", "fearful", "disgusted", "surprised", "neutral")],
    audio(soundVersion="v1"), audio(soundVersion="v2"),
    audio(language="English"), audio(language="Chinese,Yue"), audio(language="auto"),
    audio(language="Danish", soundVersion="v2"), audio(language="Hindi", soundVersion="v1"),
    audio(subtitleEnable=True), audio(subtitleEnable=False), audio(subtitleEnable=True, subtitleType="word"),
    audio(contentText="a" * 9_999),
    audio(contentText="你好，世界。"),
    audio(contentText="One <#0.01#> two"), audio(contentText="One <#99.99#> two"),
    audio(contentText="One <#1#> two <#2.5#> three"), audio(contentText="One. <#1.5#> Two."),
]  # fmt: skip

INVALID_AUDIO = [
    ("modelId", audio(modelId=_MISSING)),
    ("modelId", audio(modelId=123)),
    ("modelId", audio(modelId="")),
    ("modelId", audio(modelId="model_nobody_made")),
    ("contentText", audio(contentText=_MISSING)),
    ("contentText", audio(contentText=42)),
    ("contentText", audio(contentText="")),
    ("contentText", audio(contentText="... !!! ---")),
    ("contentText", audio(contentText="a" * 10_000)),
    ("contentText", audio(contentText="a" * 9_992 + " <#1#> b")),  # markers count toward the limit
    ("speed", audio(speed=0.49)), ("speed", audio(speed=2.01)), ("speed", audio(speed="1")),
    ("speed", audio(speed=True)),
    ("vol", audio(vol=0)), ("vol", audio(vol=-1)), ("vol", audio(vol=10.01)), ("vol", audio(vol="x")),
    ("pitch", audio(pitch=1.5)), ("pitch", audio(pitch=13)), ("pitch", audio(pitch=-13)),
    ("pitch", audio(pitch="1")), ("pitch", audio(pitch=True)),
    ("emotion", audio(emotion="excited")), ("emotion", audio(emotion=1)), ("emotion", audio(emotion="Happy")),
    ("soundVersion", audio(soundVersion="v3")), ("soundVersion", audio(soundVersion=2)),
    ("language", audio(language="Klingon")), ("language", audio(language="english")),
    ("language", audio(language="Danish", soundVersion="v1")), ("language", audio(language="Danish")),
    ("language", audio(language=5)),
    ("subtitleEnable", audio(subtitleEnable="yes")), ("subtitleEnable", audio(subtitleEnable=1)),
    ("subtitleType", audio(subtitleType="sentence")), ("subtitleType", audio(subtitleType="WORD")),
    ("contentText", audio(contentText="<#1#> starts with a pause")),
    ("contentText", audio(contentText="  <#1#> starts after spaces")),
    ("contentText", audio(contentText="ends with a pause <#1#>")),
    ("contentText", audio(contentText="ends with a pause <#1#>. ")),
    ("contentText", audio(contentText="two <#1#> <#2#> markers")),
    ("contentText", audio(contentText="two <#1#>, <#2#> markers")),
    ("contentText", audio(contentText="bad <#abc#> marker")),
    ("contentText", audio(contentText="bad <#1.555#> marker")),
    ("contentText", audio(contentText="bad <#0#> marker")),
    ("contentText", audio(contentText="bad <#0.001#> marker")),
    ("contentText", audio(contentText="bad <#100#> marker")),
    ("contentText", audio(contentText="bad <# 1 #> marker")),
    ("contentText", audio(contentText="bad <##> marker")),
    ("contentText", audio(contentText="bad <#.5#> marker")),
]  # fmt: skip

VALID_PREVIEW = [
    preview(),
    *[preview(fileUrl=f"http://example.com/a/sample.{ext}") for ext in
      ("mp3", "ogg", "wav", "m4a", "aac", "mp4", "avi", "mov", "mkv", "flv")],
    preview(fileUrl="https://example.com/SAMPLE.MP3?token=abc"),
    preview(contentText="a" * 269), preview(contentText=None), preview(contentText="Hi <#0.5#> there"),
    preview(soundVersion="v2", language="Afrikaans"), preview(language="auto"),
]  # fmt: skip

INVALID_PREVIEW = [
    ("fileUrl", preview(fileUrl=_MISSING)), ("fileUrl", preview(fileUrl=5)),
    ("fileUrl", preview(fileUrl="ftp://example.com/sample.mp3")), ("fileUrl", preview(fileUrl="sample.mp3")),
    ("fileUrl", preview(fileUrl="https:///sample.mp3")),
    ("fileUrl", preview(fileUrl="https://example.com/声音.mp3")),
    ("fileUrl", preview(fileUrl="https://example.com/%E5%A3%B0%E9%9F%B3.mp3")),
    ("fileUrl", preview(fileUrl="https://example.com/sample.txt")),
    ("fileUrl", preview(fileUrl="https://example.com/sample.flac")),  # upload accepts it, cloning does not
    ("fileUrl", preview(fileUrl="https://example.com/sample")),
    ("contentText", preview(contentText="a" * 270)), ("contentText", preview(contentText=3)),
    ("contentText", preview(contentText="<#1#> hi")), ("contentText", preview(contentText="hi <#x#> there")),
    ("soundVersion", preview(soundVersion="v9")),
    ("language", preview(language="Danish")), ("language", preview(language="Elvish")),
]  # fmt: skip


@pytest.mark.parametrize("body", VALID_AUDIO, ids=lambda b: repr(b)[:60])
def test_valid_audio_request_creates_a_task(http: httpx.Client, body: dict[str, Any]) -> None:
    response = http.post(AUDIO, json=body)
    assert response.status_code == 200, response.text
    payload = response.json()
    assert payload["code"] == 20000 and payload["msg"] == "ok"
    assert payload["data"]["id"].startswith("audio_")
    assert payload["data"]["model"] == "soundCloningAudio"
    assert payload["data"]["status"] == "queued"


@pytest.mark.parametrize(("field", "body"), INVALID_AUDIO, ids=lambda v: repr(v)[:60])
def test_invalid_audio_request_is_rejected_naming_the_field(
    http: httpx.Client, field: str, body: dict[str, Any]
) -> None:
    response = http.post(AUDIO, json=body)
    assert response.status_code == 400, response.text
    payload = response.json()
    assert payload["code"] != 20000 and payload["data"] is None
    assert payload["msg"].startswith(f"{field}:"), payload["msg"]


@pytest.mark.parametrize("body", VALID_PREVIEW, ids=lambda b: repr(b)[:60])
def test_valid_preview_request_creates_a_task(http: httpx.Client, body: dict[str, Any]) -> None:
    response = http.post(PREVIEW, json=body)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["model"] == "soundCloningClone" and data["object"] == "audio" and data["error"] is None


@pytest.mark.parametrize(("field", "body"), INVALID_PREVIEW, ids=lambda v: repr(v)[:60])
def test_invalid_preview_request_is_rejected_naming_the_field(
    http: httpx.Client, field: str, body: dict[str, Any]
) -> None:
    response = http.post(PREVIEW, json=body)
    assert response.status_code == 400, response.text
    assert response.json()["msg"].startswith(f"{field}:"), response.json()["msg"]


@pytest.mark.parametrize("path", [AUDIO, PREVIEW])
@pytest.mark.parametrize("content", [b"[1, 2]", b"{not json", b"", b'"text"'])
def test_a_body_that_is_not_a_json_object_is_rejected(http: httpx.Client, path: str, content: bytes) -> None:
    response = http.post(path, content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["msg"].startswith("body:")


def test_unknown_fields_are_ignored(http: httpx.Client) -> None:
    assert http.post(AUDIO, json=audio(somethingElse=1)).status_code == 200


def test_malformed_marker_message_says_how_to_fix_it(http: httpx.Client) -> None:
    message = http.post(AUDIO, json=audio(contentText="bad <#abc#> marker")).json()["msg"]
    assert "<#abc#>" in message and "0.01" in message and "99.99" in message


def test_unknown_path_and_wrong_method(http: httpx.Client) -> None:
    assert http.get("/api/open-api/v1/nothing").status_code == 404
    assert http.get(AUDIO).status_code == 405
    assert http.post("/api/open-api/v1/audios/audio_x", json={}).status_code == 405
