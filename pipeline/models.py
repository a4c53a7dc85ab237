"""Pure data: the validated manifest and the units of work that flow through the pipeline.

Everything here is a frozen dataclass or an enum; no I/O. Defaults are named constants so the
manifest loader, the JSON Schema and the README all say the same thing.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.profiles import PROFILES

if TYPE_CHECKING:
    from pipeline.lexicon.entries import Entry, Spoken
    from pipeline.request import AudioRequest

# The API's hard limit is 10,000 code points and the docs disagree on whether it is inclusive
# (soundclone-api.md, "Unknowns"): stay strictly under it, markers included.
API_MAX_CHARS = 9_999
API_BASE_URL = "https://www.jimmyai.cn"

EMOTIONS = ("happy", "sad", "angry", "fearful", "disgusted", "surprised", "neutral")
SOUND_VERSIONS = ("v1", "v2")
SUBTITLE_MODES = ("off", "sentence", "word")
DELIVERY_PROFILES = tuple(PROFILES)  # acx, findaway, google-play, kobo, apple, none

# What a ChapterSpec is: a chapter of the book, or the credits the manifest's ``credits:`` adds around
# them (rendered and assembled like chapters, delivered as their own files).
CHAPTER = "chapter"
OPENING_CREDITS = "opening-credits"
CLOSING_CREDITS = "closing-credits"
CREDIT_KINDS = (OPENING_CREDITS, CLOSING_CREDITS)

# soundclone-api.md, "Languages".
LANGUAGES_V1 = (
    "Chinese", "Chinese,Yue", "English", "Arabic", "Russian", "Spanish", "French", "Portuguese",
    "German", "Turkish", "Dutch", "Ukrainian", "Vietnamese", "Indonesian", "Japanese", "Italian",
    "Korean", "Thai", "Polish", "Romanian", "Greek", "Czech", "Finnish", "Hindi",
)
LANGUAGES_V2_ONLY = (
    "Bulgarian", "Danish", "Hebrew", "Malay", "Persian", "Slovak", "Swedish", "Croatian", "Filipino",
    "Hungarian", "Norwegian", "Slovenian", "Catalan", "Nynorsk", "Tamil", "Afrikaans",
)
LANGUAGE_AUTO = "auto"

# API language names (soundclone-api.md, "Languages") -> ISO 639 codes (sentence splitting, imported books).
LANGUAGE_CODES = {
    "English": "en", "Chinese": "zh", "Chinese,Yue": "zh", "Japanese": "ja", "Korean": "ko",
    "Arabic": "ar", "Russian": "ru", "Spanish": "es", "French": "fr", "Portuguese": "pt",
    "German": "de", "Turkish": "tr", "Dutch": "nl", "Ukrainian": "uk", "Vietnamese": "vi",
    "Indonesian": "id", "Italian": "it", "Thai": "th", "Polish": "pl", "Romanian": "ro",
    "Greek": "el", "Czech": "cs", "Finnish": "fi", "Hindi": "hi", "Bulgarian": "bg", "Danish": "da",
    "Hebrew": "he", "Malay": "ms", "Persian": "fa", "Slovak": "sk", "Swedish": "sv",
    "Croatian": "hr", "Filipino": "tl", "Hungarian": "hu", "Norwegian": "nb", "Slovenian": "sl",
    "Catalan": "ca", "Nynorsk": "nn", "Tamil": "ta", "Afrikaans": "af",
}


@dataclass(frozen=True)
class Voice:
    """The voice settings of one chapter, after book-wide settings and chapter overrides merged."""

    model_id: str
    sound_version: str = "v1"
    emotion: str = "neutral"
    speed: float = 1.0
    vol: float = 1.0
    pitch: int = 0


@dataclass(frozen=True)
class Pricing:
    """The user's own unit prices: the API publishes none."""

    char_fee_per_10k: float = 0.0
    voice_fee_per_task: float = 0.0
    currency: str = "USD"

    def cost(self, *, billed_chars: int, tasks: int) -> float:
        return billed_chars / 10_000 * self.char_fee_per_10k + tasks * self.voice_fee_per_task


@dataclass(frozen=True)
class ChunkingSettings:
    max_chars: int = API_MAX_CHARS
    # A chunk may end at a paragraph end instead of a later sentence end when it is at least this
    # full; the task count never rises for it (see chunking._choose_cut).
    paragraph_min_fill: float = 0.8


@dataclass(frozen=True)
class PauseSettings:
    """Silence, in seconds, at the seams between chunks and for scene breaks."""

    clause_s: float = 0.15       # a seam inside an over-long sentence
    sentence_s: float = 0.35
    paragraph_s: float = 0.8
    scene_break_s: float = 2.0
    title_s: float = 1.5         # after a spoken chapter title (speak_chapter_titles)


@dataclass(frozen=True)
class AudioSettings:
    """How chunk audio becomes chapter files (issue 5)."""

    sample_rate_hz: int = 44_100
    bitrate_kbps: int = 192
    head_s: float = 0.75
    tail_s: float = 2.0
    trim_keep_s: float = 0.05
    fade_ms: float = 10.0
    silence_threshold_db: float = -50.0
    target_rms_db: float = -20.0
    true_peak_db: float = -3.5
    profile: str = "acx"
    m4b: bool = True
    # Level (dBFS RMS) of the room-tone noise bed under the whole chapter: never digital silence,
    # far under ACX's -60 dB noise-floor limit (assembly.py).
    room_tone_db: float = -75.0
    # AAC bit rate of the whole-book M4B; Google Play wants >= 128 kbps for mono AAC.
    m4b_bitrate_kbps: int = 128


@dataclass(frozen=True)
class QcSettings:
    """How every downloaded take is checked (``qc:`` in the manifest; see :mod:`pipeline.qc`)."""

    on_fail: str = "flag"            # flag: report it; retake: render a fresh take automatically
    max_retakes: int = 1             # automatic retakes per chunk (on_fail: retake)
    max_silence_s: float = 1.5       # an internal silence no pause marker or paragraph explains
    rate_tolerance: float = 0.35     # characters per second vs the book's median (same language, speed)
    level_tolerance_db: float = 3.0  # a chunk's speech level vs the chapter's median
    max_clipped_samples: int = 50    # samples at (or within 0.45 dB of) full scale a take may hold
    max_uncovered_words: int = 2     # longest run of the chunk's words its cues may miss


@dataclass(frozen=True)
class ApiSettings:
    base_url: str | None = None
    concurrency: int = 4
    poll_interval_s: float = 5.0
    requests_per_minute: float = 60.0
    max_attempts: int = 3
    request_timeout_s: float = 60.0
    task_timeout_s: float = 3600.0
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 60.0


@dataclass(frozen=True)
class ChapterSpec:
    """One chapter as the manifest declares it; ``text`` is the spoken text, markers included."""

    id: str
    title: str
    number: int
    text: str
    voice: Voice
    language: str
    source: Path | None = None
    lexicon: tuple[Entry, ...] = ()   # the book's entries and the chapter's own (pipeline.lexicon)
    kind: str = CHAPTER               # CHAPTER, or one of CREDIT_KINDS (its id is the kind)
    # The title spoken at its start (speak_chapter_titles), which ``text`` then begins with; None when
    # the title is not spoken (or the text already begins with it).
    spoken_title: str | None = None

    @property
    def is_credits(self) -> bool:
        return self.kind in CREDIT_KINDS


@dataclass(frozen=True)
class BookInfo:
    title: str
    subtitle: str | None = None
    author: str | None = None
    narrator: str | None = None
    year: int | None = None
    description: str | None = None
    cover: Path | None = None


@dataclass(frozen=True)
class SampleSettings:
    """The retail sample (``sample:``): cut from the finished audio, never rendered. ``chapter`` None:
    the first chapter long enough; ``at`` (words to start from) or ``start_s``, else its first sentence."""

    chapter: str | None = None
    at: str | None = None
    start_s: float | None = None
    seconds: float = 180.0


@dataclass(frozen=True)
class Manifest:
    path: Path
    book: BookInfo
    language: str
    output: Path
    voice: Voice
    subtitles: str
    pricing: Pricing
    chunking: ChunkingSettings
    pauses: PauseSettings
    audio: AudioSettings
    api: ApiSettings
    chapters: tuple[ChapterSpec, ...]
    voice_name: str | None = None
    qc: QcSettings = QcSettings()
    lexicon: tuple[Entry, ...] = ()   # the book-wide entries (each chapter has its merged ones)
    sample: SampleSettings = SampleSettings()
    has_credits: bool = False         # a ``credits:`` section: its two parts are in ``chapters``

    def chapter(self, chapter_id: str) -> ChapterSpec:
        for chapter in self.chapters:
            if chapter.id == chapter_id:
                return chapter
        raise KeyError(chapter_id)


@dataclass(frozen=True)
class Chunk:
    """One API task's worth of text, and the request that renders it.

    ``text`` is exactly ``chapter.text[start:end]``: it never starts or ends with a pause marker or
    whitespace. ``pause_before_s`` is the whole silence at the seam before it (a sentence or
    paragraph pause plus any markers that fell on the edge; zero for a chapter's first chunk unless
    the chapter opens with a marker); ``pause_after_s`` is non-zero only on a chapter's last chunk,
    for markers at the very end. ``request`` is the body sent to the API (:mod:`pipeline.request`);
    ``key`` derives from it.
    """

    chapter_id: str
    index: int
    start: int
    end: int
    text: str
    billed_chars: int
    pause_before_s: float
    pause_after_s: float
    request: AudioRequest
    # What the voice is sent when the lexicon respells some of ``text`` (None: ``text`` itself); the
    # request's contentText, the billed characters and the chunk limit are the spoken text's.
    spoken: Spoken | None = None

    @property
    def spoken_text(self) -> str:
        return self.text if self.spoken is None else self.spoken.text

    @property
    def key(self) -> str:
        """The content key (see :mod:`pipeline.request`)."""
        return self.request.key

    @property
    def chars(self) -> int:
        return len(self.text)


@dataclass(frozen=True)
class ChapterPlan:
    chapter: ChapterSpec
    chunks: tuple[Chunk, ...]

    @property
    def billed_chars(self) -> int:
        return sum(c.billed_chars for c in self.chunks)


@dataclass(frozen=True)
class ChunkAudio:
    """A downloaded, verified chunk ready for assembly."""

    chunk: Chunk
    audio_path: Path
    subtitle_path: Path | None = None


class ChunkState(enum.StrEnum):
    """A chunk's state in the journal; transitions live in ``store.TRANSITIONS``."""

    PENDING = "pending"          # planned, nothing sent
    SUBMITTING = "submitting"    # intent recorded; the create POST may be in flight
    SUBMITTED = "submitted"      # the API returned a task id
    COMPLETED = "completed"      # the task finished; audio not yet downloaded
    DOWNLOADED = "downloaded"    # audio (and subtitles) verified in the cache
    FAILED = "failed"            # gave up after the allowed attempts; reason recorded
    EXPIRED = "expired"          # the task completed, but its audio is gone at the API (dead links):
                                 # only a new, paid task replaces it (`run --rerender-expired`)


@dataclass(frozen=True)
class PlanTotals:
    """A book's totals. ``tasks`` counts distinct chunks (the same text with the same voice twice in a
    book renders once); ``billed_chars`` and ``est_cost`` are those tasks'."""

    chapters: int
    chunks: int
    chars: int
    billed_chars: int
    lower_bound_tasks: int
    est_audio_s: float
    est_cost: float
    currency: str
    tasks: int = 0


@dataclass
class Progress:
    """A progress event the library emits; only the CLI draws it."""

    kind: str
    chapter_id: str | None = None
    chunk_index: int | None = None
    message: str = ""
    extra: dict[str, object] = field(default_factory=dict)
    book: str | None = None   # the book's title (a batch runs several)
