"""The create-audio request of one chunk: exactly the JSON body ``POST /soundCloning/audios`` sends.

One immutable value per chunk holds the whole body (``contentText`` and every option). Everything
that must agree on what a chunk is derives from it, so nothing can drift:

* the engine sends :attr:`AudioRequest.body` as it is;
* the chunk's content key (the cache name and the journal's primary key) is a hash of the body's
  fields that shape the audio, with :data:`KEY_FORMAT`: a new API option added to the body changes
  the key of every chunk, so stale audio is never reused for it;
* the options that only ask for extra outputs (:data:`OUTPUT_FIELDS`: ``subtitleEnable``,
  ``subtitleType``) are left out of the key and recorded with each take instead. A take holds what a
  request needs when it was requested with at least the subtitles the request asks for
  (:meth:`AudioRequest.satisfied_by`): turning subtitles off never pays for a chunk again; turning
  them on renders again, because only a new task returns subtitle timings.

Journals written before this module keyed chunks with :func:`legacy_key` (format 1, subtitles mode
in the key); :meth:`AudioRequest.legacy_keys` lets the journal find those rows, so an old book is not
rendered again.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from pipeline.models import Voice

# Bump when the same body must no longer reuse audio rendered before (a change in how we send it).
KEY_FORMAT = 2
KEY_CHARS = 32

# Fields that ask the API for extra outputs without changing the audio.
OUTPUT_FIELDS = ("subtitleEnable", "subtitleType")
# How much subtitle output each mode asks for: a take requested at a level serves every lower one.
SUBTITLE_LEVELS = {"off": 0, "sentence": 1, "word": 2}


def _subtitle_fields(mode: str) -> dict[str, Any]:
    if mode not in SUBTITLE_LEVELS:
        raise ValueError(f"unknown subtitles mode {mode!r}")
    if mode == "off":
        return {"subtitleEnable": False}
    return {"subtitleEnable": True, **({"subtitleType": "word"} if mode == "word" else {})}


def _digest(payload: object) -> str:
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:KEY_CHARS]


def subtitles_mode(body: dict[str, Any]) -> str:
    """The subtitles mode a create body asks for."""
    if not body.get("subtitleEnable"):
        return "off"
    return "word" if body.get("subtitleType") == "word" else "sentence"


def satisfies(held: str | None, wanted: str) -> bool:
    """Whether a take requested with subtitles ``held`` serves a request for ``wanted``."""
    return held is not None and SUBTITLE_LEVELS.get(held, -1) >= SUBTITLE_LEVELS[wanted]


@dataclass(frozen=True)
class AudioRequest:
    """A create-audio body, frozen as canonical JSON (sorted keys) so it is hashable and immutable."""

    body_json: str

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> AudioRequest:
        if not isinstance(body.get("contentText"), str) or not isinstance(body.get("modelId"), str):
            raise ValueError("a create-audio body needs contentText and modelId")
        return cls(json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")))

    @classmethod
    def for_chunk(cls, text: str, *, voice: Voice, language: str, subtitles: str) -> AudioRequest:
        """The body for ``text`` read with ``voice`` in ``language`` (soundclone-api.md, "Create audio
        task"), asking for ``subtitles`` ("off", "sentence" or "word")."""
        return cls.from_body({
            "modelId": voice.model_id,
            "contentText": text,
            "soundVersion": voice.sound_version,
            "language": language,
            "emotion": voice.emotion,
            "speed": voice.speed,
            "vol": voice.vol,
            "pitch": voice.pitch,
            **_subtitle_fields(subtitles),
        })

    @property
    def body(self) -> dict[str, Any]:
        """A fresh copy of the body to send."""
        body: dict[str, Any] = json.loads(self.body_json)
        return body

    @property
    def text(self) -> str:
        return str(self.body["contentText"])

    @property
    def model_id(self) -> str:
        return str(self.body["modelId"])

    @property
    def subtitles(self) -> str:
        return subtitles_mode(self.body)

    def audio_fields(self) -> dict[str, Any]:
        """The fields that shape the audio (the body without :data:`OUTPUT_FIELDS`)."""
        return {k: v for k, v in self.body.items() if k not in OUTPUT_FIELDS}

    @functools.cached_property
    def key(self) -> str:
        """The content key: a hash of the audio-shaping fields and the key format."""
        return _digest({"format": KEY_FORMAT, "body": self.audio_fields()})

    def satisfied_by(self, held_subtitles: str | None) -> bool:
        """Whether a take requested with subtitles ``held_subtitles`` holds what this request needs."""
        return satisfies(held_subtitles, self.subtitles)

    def with_subtitles(self, mode: str) -> AudioRequest:
        body = {k: v for k, v in self.body.items() if k not in OUTPUT_FIELDS}
        return AudioRequest.from_body({**body, **_subtitle_fields(mode)})

    def legacy_keys(self) -> dict[str, str]:
        """The keys a journal of the first release gave this chunk, by the subtitles mode it was
        rendered with (that release put the mode in the key)."""
        fields = self.audio_fields()
        names = ("modelId", "soundVersion", "emotion", "speed", "vol", "pitch")
        voice: dict[str, Any] = {name: fields[name] for name in names if name in fields}
        return {mode: legacy_key(text=str(fields["contentText"]), voice=voice, language=str(fields.get("language")),
                                 subtitles=mode)
                for mode in SUBTITLE_LEVELS}

    def changed_fields(self, other: AudioRequest) -> list[str]:
        """Names of the audio-shaping fields whose values differ from ``other``'s (sorted)."""
        mine, theirs = self.audio_fields(), other.audio_fields()
        return sorted(name for name in mine.keys() | theirs.keys() if mine.get(name) != theirs.get(name))


def legacy_key(*, text: str, voice: dict[str, Any], language: str, subtitles: str) -> str:
    """The content key of the first release (format 1): text, voice fields, language and subtitles."""
    payload = {"v": 1, "text": text, "voice": voice, "language": language, "subtitles": subtitles}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:32]
