"""Field rules of the create endpoints, as documented in `shared/soundclone-api.md`.

Each ``validate_*`` function takes the decoded JSON body and returns a normalised, frozen request (all
defaults filled in) or raises :class:`ValidationError` naming the field and the rule it broke. Checks
that need server state (does the modelId exist, has it expired) live in the service, not here.

``null`` for an optional field means "use the default"; for a required field it is an error. Types are
strict, as JSON sees them: ``pitch`` must be an integer (``2.0`` is rejected), booleans are not numbers,
``subtitleEnable`` must be ``true``/``false``. Language names are case-sensitive, as documented.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

from pipeline.simulator.markup import MarkupError, find_pause_markers, is_spoken_char

AUDIO_TEXT_LIMIT_CHARS = 10_000  # contentText must be under this many code points, markers included
PREVIEW_TEXT_LIMIT_CHARS = 270  # preview contentText must be under this many code points
SPEED_MIN, SPEED_MAX = 0.5, 2.0
VOL_MAX = 10.0
PITCH_MIN, PITCH_MAX = -12, 12

EMOTIONS = ("happy", "sad", "angry", "fearful", "disgusted", "surprised", "neutral")
SOUND_VERSIONS = ("v1", "v2")
LANGUAGES_V1 = (
    "Chinese", "Chinese,Yue", "English", "Arabic", "Russian", "Spanish", "French", "Portuguese", "German",
    "Turkish", "Dutch", "Ukrainian", "Vietnamese", "Indonesian", "Japanese", "Italian", "Korean", "Thai",
    "Polish", "Romanian", "Greek", "Czech", "Finnish", "Hindi",
)  # fmt: skip
LANGUAGES_V2_ONLY = (
    "Bulgarian", "Danish", "Hebrew", "Malay", "Persian", "Slovak", "Swedish", "Croatian", "Filipino",
    "Hungarian", "Norwegian", "Slovenian", "Catalan", "Nynorsk", "Tamil", "Afrikaans",
)  # fmt: skip
LANGUAGE_AUTO = "auto"
SAMPLE_EXTENSIONS = ("mp3", "ogg", "wav", "m4a", "aac", "mp4", "avi", "mov", "mkv", "flv")
SUBTITLE_TYPES = ("word",)

# Built-in preview line: the reference says one is used (and billed) when contentText is omitted.
DEFAULT_PREVIEW_TEXT = "Hello! This is a short preview of your cloned voice. I hope it sounds just like you."

_CHINESE_RE = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff]")


class ValidationError(ValueError):
    """A request field breaks a documented rule. ``field`` names it; ``str(exc)`` starts with it."""

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field}: {rule}")
        self.field = field


@dataclass(frozen=True, slots=True)
class PreviewRequest:
    """A valid preview (clone) request with defaults filled in."""

    file_url: str
    content_text: str
    content_text_given: bool
    sound_version: str
    language: str


@dataclass(frozen=True, slots=True)
class AudioRequest:
    """A valid audio request with defaults filled in; ``options`` is everything but model and text."""

    model_id: str
    content_text: str
    sound_version: str
    language: str
    emotion: str
    speed: float
    vol: float
    pitch: int
    subtitle_enable: bool
    subtitle_type: str | None

    def options(self) -> dict[str, Any]:
        """The request's options, normalised, for grouping identical submissions."""
        return {
            "soundVersion": self.sound_version,
            "language": self.language,
            "emotion": self.emotion,
            "speed": self.speed,
            "vol": self.vol,
            "pitch": self.pitch,
            "subtitleEnable": self.subtitle_enable,
            "subtitleType": self.subtitle_type,
        }


def validate_preview_request(body: Any) -> PreviewRequest:
    """Check a ``soundCloning/clones`` body against every documented rule.

    Raises:
        ValidationError: the first field found breaking a rule.
    """
    fields = _require_object(body)
    file_url = _require_string(fields, "fileUrl")
    _check_sample_url(file_url)
    text = _optional(fields, "contentText")
    given = text is not None
    if text is None:
        text = DEFAULT_PREVIEW_TEXT
    else:
        text = _check_text(text, field="contentText", limit=PREVIEW_TEXT_LIMIT_CHARS)
    version, language = _check_version_and_language(fields)
    return PreviewRequest(file_url, text, given, version, language)


def validate_audio_request(body: Any) -> AudioRequest:
    """Check a ``soundCloning/audios`` body against every documented rule.

    Raises:
        ValidationError: the first field found breaking a rule.
    """
    fields = _require_object(body)
    model_id = _require_string(fields, "modelId")
    if not model_id.strip():
        raise ValidationError("modelId", "must not be empty")
    text = fields.get("contentText")
    if text is None:
        raise ValidationError("contentText", "is required")
    text = _check_text(text, field="contentText", limit=AUDIO_TEXT_LIMIT_CHARS)
    version, language = _check_version_and_language(fields)

    emotion = _optional(fields, "emotion", default="neutral")
    if not isinstance(emotion, str) or emotion not in EMOTIONS:
        raise ValidationError("emotion", f"must be one of {', '.join(EMOTIONS)}; got {emotion!r}")

    speed = _number(fields, "speed", default=1.0)
    if not SPEED_MIN <= speed <= SPEED_MAX:
        raise ValidationError("speed", f"must be from {SPEED_MIN} to {SPEED_MAX:g} inclusive; got {speed:g}")

    vol = _number(fields, "vol", default=1.0)
    if not 0 < vol <= VOL_MAX:
        raise ValidationError("vol", f"must be greater than 0 and at most {VOL_MAX:g}; got {vol:g}")

    pitch = _optional(fields, "pitch", default=0)
    if isinstance(pitch, bool) or not isinstance(pitch, int):
        raise ValidationError("pitch", f"must be an integer from {PITCH_MIN} to {PITCH_MAX}; got {pitch!r}")
    if not PITCH_MIN <= pitch <= PITCH_MAX:
        raise ValidationError("pitch", f"must be from {PITCH_MIN} to {PITCH_MAX} inclusive; got {pitch!r}")

    subtitle_enable = _optional(fields, "subtitleEnable", default=False)
    if not isinstance(subtitle_enable, bool):
        raise ValidationError("subtitleEnable", f"must be a boolean; got {subtitle_enable!r}")

    subtitle_type = _optional(fields, "subtitleType")
    if subtitle_type is not None and subtitle_type not in SUBTITLE_TYPES:
        raise ValidationError(
            "subtitleType", f"must be 'word' or omitted (sentence-level); got {subtitle_type!r}"
        )
    return AudioRequest(
        model_id=model_id,
        content_text=text,
        sound_version=version,
        language=language,
        emotion=emotion,
        speed=float(speed),
        vol=float(vol),
        pitch=pitch,
        subtitle_enable=subtitle_enable,
        subtitle_type=subtitle_type,
    )


def _require_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ValidationError("body", f"must be a JSON object; got {type(body).__name__}")
    return body


def _optional(fields: dict[str, Any], name: str, *, default: Any = None) -> Any:
    value = fields.get(name)
    return default if value is None else value


def _require_string(fields: dict[str, Any], name: str) -> str:
    value = fields.get(name)
    if value is None:
        raise ValidationError(name, "is required")
    if not isinstance(value, str):
        raise ValidationError(name, f"must be a string; got {type(value).__name__}")
    return value


def _number(fields: dict[str, Any], name: str, *, default: float) -> float:
    value = _optional(fields, name, default=default)
    # bool is an int subclass in Python but not a number in JSON
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(name, f"must be a number; got {value!r}")
    return float(value)


def _check_text(text: Any, *, field: str, limit: int) -> str:
    if not isinstance(text, str):
        raise ValidationError(field, f"must be a string; got {type(text).__name__}")
    if len(text) >= limit:
        raise ValidationError(
            field,
            f"must be under {limit:,} characters (code points, pause markers included); got {len(text):,}",
        )
    if not any(is_spoken_char(c) for c in text):
        raise ValidationError(field, "must contain something to speak (at least one letter or digit)")
    try:
        find_pause_markers(text)
    except MarkupError as exc:
        raise ValidationError(field, str(exc)) from exc
    return text


def _check_version_and_language(fields: dict[str, Any]) -> tuple[str, str]:
    version = _optional(fields, "soundVersion", default="v1")
    if version not in SOUND_VERSIONS:
        raise ValidationError("soundVersion", f"must be 'v1' or 'v2'; got {version!r}")
    language = _optional(fields, "language", default=LANGUAGE_AUTO)
    if not isinstance(language, str):
        raise ValidationError("language", f"must be a string; got {type(language).__name__}")
    if language == LANGUAGE_AUTO or language in LANGUAGES_V1:
        return version, language
    if language in LANGUAGES_V2_ONLY:
        if version != "v2":
            raise ValidationError(
                "language", f"{language!r} needs soundVersion 'v2' (it is not in v1's list)"
            )
        return version, language
    raise ValidationError(
        "language", f"unknown language {language!r}: use 'auto' or a documented name such as 'English'"
    )


def _check_sample_url(url: str) -> None:
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValidationError("fileUrl", f"must be a public http(s) URL; got {url!r}")
    if _CHINESE_RE.search(url) or _CHINESE_RE.search(urllib.parse.unquote(url)):
        raise ValidationError("fileUrl", "must not contain Chinese characters")
    path = urllib.parse.unquote(parsed.path)
    extension = path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ""
    if extension not in SAMPLE_EXTENSIONS:
        raise ValidationError(
            "fileUrl",
            f"must name an audio or video file ({', '.join(SAMPLE_EXTENSIONS)}); got extension {extension!r}",
        )
