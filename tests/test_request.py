"""pipeline.request: one immutable value per chunk holds the create body; the key and the reuse rule
derive from it (issue 11, item 1)."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.models import Voice
from pipeline.request import KEY_FORMAT, OUTPUT_FIELDS, AudioRequest, legacy_key, satisfies

VOICE = Voice(model_id="model_test")


def request(text: str = "Hello.", *, voice: Voice = VOICE, language: str = "English",
            subtitles: str = "sentence") -> AudioRequest:
    return AudioRequest.for_chunk(text, voice=voice, language=language, subtitles=subtitles)


def test_the_body_is_exactly_what_the_api_documents() -> None:
    body = request(voice=Voice(model_id="m1", sound_version="v2", emotion="sad", speed=1.2, vol=2.0, pitch=-3),
                   subtitles="word").body
    assert body == {"modelId": "m1", "contentText": "Hello.", "soundVersion": "v2", "language": "English",
                    "emotion": "sad", "speed": 1.2, "vol": 2.0, "pitch": -3, "subtitleEnable": True,
                    "subtitleType": "word"}
    assert request(subtitles="sentence").body["subtitleEnable"] is True
    assert "subtitleType" not in request(subtitles="sentence").body
    assert request(subtitles="off").body["subtitleEnable"] is False


def test_the_value_is_immutable_and_hands_out_copies() -> None:
    value = request()
    value.body["contentText"] = "tampered"
    assert value.text == "Hello."
    with pytest.raises(AttributeError):
        value.body_json = "{}"  # type: ignore[misc]


def test_key_is_stable_and_covers_every_field_that_shapes_the_audio() -> None:
    base = request().key
    assert base == request(voice=Voice(model_id="model_test")).key
    assert re.fullmatch(r"[0-9a-f]{32}", base)
    variants = [
        request("Hello!"),
        request(voice=Voice(model_id="other")),
        request(voice=Voice(model_id="model_test", speed=1.1)),
        request(voice=Voice(model_id="model_test", emotion="sad")),
        request(voice=Voice(model_id="model_test", pitch=1)),
        request(voice=Voice(model_id="model_test", vol=2.0)),
        request(voice=Voice(model_id="model_test", sound_version="v2")),
        request(language="auto"),
    ]
    assert len({base, *(v.key for v in variants)}) == len(variants) + 1


def test_subtitle_options_are_not_in_the_key() -> None:
    keys = {request(subtitles=mode).key for mode in ("off", "sentence", "word")}
    assert len(keys) == 1


def test_a_new_api_option_in_the_body_changes_the_key_by_construction() -> None:
    body = request().body
    assert AudioRequest.from_body({**body, "newOption": 1}).key != request().key
    # and an option that only asks for outputs would be listed in OUTPUT_FIELDS
    assert set(OUTPUT_FIELDS) == {"subtitleEnable", "subtitleType"}


def test_the_key_format_is_part_of_the_key() -> None:
    body = request().audio_fields()
    digest = __import__("hashlib").sha256(json.dumps({"format": KEY_FORMAT, "body": body}, sort_keys=True,
                                                     ensure_ascii=False, separators=(",", ":")).encode())
    assert request().key == digest.hexdigest()[:32]


@pytest.mark.parametrize(("held", "wanted", "served"), [
    ("word", "word", True), ("word", "sentence", True), ("word", "off", True),
    ("sentence", "word", False), ("sentence", "sentence", True), ("sentence", "off", True),
    ("off", "sentence", False), ("off", "off", True), (None, "off", False),
])
def test_a_take_serves_a_request_that_needs_no_more_than_it_holds(held: str | None, wanted: str,
                                                                   served: bool) -> None:
    assert satisfies(held, wanted) is served
    assert request(subtitles=wanted).satisfied_by(held) is served


def test_legacy_keys_are_the_first_releases_formula() -> None:
    # the first release: sha256 of {"v": 1, text, voice.api_fields(), language, subtitles}[:32]
    voice = {"modelId": "model_test", "soundVersion": "v1", "emotion": "neutral", "speed": 1.0, "vol": 1.0,
             "pitch": 0}
    payload = {"v": 1, "text": "Hello.", "voice": voice, "language": "English", "subtitles": "sentence"}
    expected = __import__("hashlib").sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode())
    assert request().legacy_keys()["sentence"] == expected.hexdigest()[:32]
    assert legacy_key(text="Hello.", voice=voice, language="English", subtitles="sentence") == \
        expected.hexdigest()[:32]
    assert len(set(request().legacy_keys().values())) == 3


def test_changed_fields_name_what_differs() -> None:
    slow = request(voice=Voice(model_id="model_test", speed=0.8), subtitles="word")
    assert slow.changed_fields(request()) == ["speed"]
    assert request("Other.").changed_fields(request()) == ["contentText"]


@given(st.text(min_size=1, max_size=40), st.sampled_from(["off", "sentence", "word"]))
def test_round_trip_through_the_journal_keeps_the_key(text: str, mode: str) -> None:
    value = request(text, subtitles=mode)
    again = AudioRequest(value.body_json)
    assert again == value and again.key == value.key and again.subtitles == mode
    assert value.with_subtitles("off").key == value.key
