"""Every retailer's rules, in one place: what a delivery for it must be, and where each rule comes from.

A :class:`Profile` is a table, not code: the sample rate, bit rate and mode, channels, loudness (RMS
or LUFS, as the retailer states it), peak, noise floor, head and tail room tone, longest file,
whether credits and a retail sample are required, the cover, the tags, the file naming and the
retailer's policy on synthetic narration. :mod:`pipeline.delivery` turns a profile into checks of
measured files; :mod:`pipeline.packaging` (``audiobook deliver``) builds the files a profile asks for.

:data:`SETTING_RULES` are the part of a profile that the manifest's audio settings alone can break (a
loudness target outside ACX's range, a sample rate Google Play refuses): :mod:`pipeline.manifest`
reports them at their line, naming the rule and its source, before anything is spent.

The rules are the retailers' published requirements as of the dates given; retailers change them,
so every rule in a report names its source, to check before a first upload.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ACX = "ACX Audio Submission Requirements (acx.com/help/audio-submission-requirements, 2025)"
ACX_AI = "ACX Audiobook Creation Exchange terms: narration must be by a human unless authorised (acx.com, 2025)"
GOOGLE_PLAY = "Google Play Books, audiobook file requirements (support.google.com/books/partner, 2025)"
GOOGLE_AI = "Google Play Books, auto-narrated and digitally narrated audiobooks (support.google.com/books/partner)"
FINDAWAY = "Voices by INaudio (Findaway Voices), audio specifications (findawayvoices.com, 2025)"
FINDAWAY_AI = "Voices by INaudio (Findaway Voices), digital narration policy (findawayvoices.com, 2025)"
KOBO = "Kobo Writing Life, uploading an audiobook (kobowritinglife.zendesk.com, 2025)"
KOBO_AI = "Kobo Writing Life, virtual narration disclosure (kobowritinglife.zendesk.com, 2025)"
APPLE = "Apple Books, audiobook delivery through an aggregator (Apple Books audiobook guidelines, 2025)"
APPLE_AI = "Apple Books, digital narration: disclosed in the metadata (Apple Books guidelines, 2025)"
EBU_R128 = ("no published loudness target: checked, as a warning, at -23 to -18 LUFS, the ACX range on the "
            "EBU R 128 scale players normalise with")

RMS = "RMS"
LUFS = "LUFS"
MP3 = "mp3"


@dataclass(frozen=True)
class Range:
    low: float | None
    high: float | None

    def holds(self, value: float) -> bool:
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)

    def clamp(self, value: float) -> float:
        """``value``, moved inside the range when it is outside."""
        return min(max(value, self.low if self.low is not None else value),
                   self.high if self.high is not None else value)

    def describe(self, unit: str) -> str:
        if self.low is not None and self.high is not None:
            return f"{self.low:g} {unit}" if self.low == self.high else f"{self.low:g} to {self.high:g} {unit}"
        if self.high is not None:
            return f"at most {self.high:g} {unit}"
        return f"at least {self.low:g} {unit}" if self.low is not None else "any"


@dataclass(frozen=True)
class Profile:
    """One retailer's delivery: the rules its files must pass (a ``None`` rule is not checked) and how
    ``audiobook deliver`` names and orders them. ``warn`` names the rules the retailer states as a
    recommendation: they are shown, but do not fail the delivery."""

    name: str
    retailer: str
    source: str
    formats: tuple[str, ...] = (MP3,)          # codecs the retailer takes (ffprobe names)
    sample_rate_hz: Range | None = Range(44_100, None)
    bitrate_kbps: Range | None = Range(192, None)      # for mono; stereo wants stereo_bitrate_factor times it
    stereo_bitrate_factor: float = 1.0
    cbr: bool = True                           # constant bit rate required (MP3)
    same_channels: bool = True                 # every file mono, or every file stereo
    loudness_unit: str = RMS
    loudness: Range | None = Range(-23, -18)
    peak_db: float | None = -3.0
    noise_floor_db: float | None = -60.0
    head_s: Range | None = Range(0.5, 1.0)
    tail_s: Range | None = Range(1.0, 5.0)
    max_file_minutes: float | None = 120.0
    credits_required: bool = True
    sample_required: bool = True
    sample_seconds: Range = Range(60, 300)
    cover_min_px: int | None = 2400
    cover_square: bool = True
    required_tags: tuple[str, ...] = ("title", "album", "author", "narrator", "track")
    cover_in_tags: bool = True                 # the cover embedded in every file
    naming: str = "{n} - {title}"              # {n} delivery order, {title} the file's title, {book}
    number_width: int = 2                      # {n} zero-padded to this (more when there are more files)
    sample_name: str = "Retail Sample"
    cover_name: str = "cover.jpg"
    ai_policy: str = ""                        # what the retailer says of synthetic narration
    ai_source: str = ""
    ai_confirm: bool = False                   # deliver only with --confirm-ai-narration-allowed
    warn: tuple[str, ...] = ()
    sources: dict[str, str] = field(default_factory=dict)   # a rule's own source, when not ``source``

    def source_of(self, rule: str) -> str:
        return self.sources.get(rule, self.source)

    def severity_of(self, rule: str) -> str:
        return "warning" if rule in self.warn else "error"


PROFILES: dict[str, Profile] = {
    "acx": Profile(
        name="acx", retailer="ACX (Audible, Amazon, Apple via ACX)", source=ACX,
        sample_rate_hz=Range(44_100, 44_100), bitrate_kbps=Range(192, None),
        number_width=2, naming="{n} - {title}",
        ai_policy=("ACX accepts only narration by a human voice unless it has authorised synthetic narration "
                   "for the title (its own Virtual Voice, or written permission). Deliver to ACX only with "
                   "that authorisation."),
        ai_source=ACX_AI, ai_confirm=True,
    ),
    "findaway": Profile(
        name="findaway", retailer="Voices by INaudio (Findaway Voices; Spotify and 40+ stores)", source=FINDAWAY,
        sample_rate_hz=Range(44_100, None), bitrate_kbps=Range(192, None), sample_seconds=Range(30, 300),
        number_width=3, naming="{n}_{book}_{title}",
        ai_policy=("Digitally narrated audiobooks are accepted and must be disclosed as such; some of the "
                   "stores it distributes to decline them."),
        ai_source=FINDAWAY_AI,
    ),
    "google-play": Profile(
        name="google-play", retailer="Google Play Books", source=GOOGLE_PLAY,
        formats=("mp3", "aac", "flac", "wav", "pcm_s16le"), sample_rate_hz=Range(44_100, None),
        bitrate_kbps=Range(128, None), stereo_bitrate_factor=2.0, same_channels=False, loudness=Range(-23, -18),
        peak_db=-3.0, noise_floor_db=-60.0, head_s=Range(0.25, None), tail_s=Range(0.25, None),
        max_file_minutes=None, credits_required=False, sample_required=False, cover_min_px=None,
        cover_square=False, number_width=3, naming="{n}-{title}",
        warn=("bit rate mode", "RMS", "peak", "noise floor", "head room tone", "tail room tone"),
        sources={"RMS": "Google publishes no loudness target; the ACX ranges are checked as warnings",
                 "peak": "Google publishes no peak limit; the ACX limit is checked as a warning",
                 "noise floor": "Google publishes no noise floor; the ACX limit is checked as a warning"},
        ai_policy=("Digitally narrated audiobooks are accepted; when you upload, say in the narrator field of "
                   "the Play Books Partner Center that the narration is synthetic."),
        ai_source=GOOGLE_AI,
    ),
    "kobo": Profile(
        name="kobo", retailer="Kobo Writing Life", source=KOBO,
        sample_rate_hz=Range(44_100, None), bitrate_kbps=Range(128, None), max_file_minutes=None,
        credits_required=False, sample_required=False, cover_min_px=1400,
        number_width=2, naming="{n} {title}",
        warn=("bit rate mode", "RMS", "peak", "noise floor", "head room tone", "tail room tone"),
        ai_policy="Virtually narrated audiobooks are accepted when the narration is disclosed as virtual.",
        ai_source=KOBO_AI,
    ),
    "apple": Profile(
        name="apple", retailer="Apple Books (through an aggregator)", source=APPLE,
        formats=("mp3", "aac"), sample_rate_hz=Range(44_100, None), bitrate_kbps=Range(128, None),
        loudness_unit=LUFS, loudness=Range(-23, -18), noise_floor_db=None, head_s=None, tail_s=None,
        max_file_minutes=None, credits_required=False, sample_required=False, cover_min_px=1400,
        number_width=2, naming="{n} {title}",
        warn=("LUFS",), sources={"LUFS": EBU_R128},
        ai_policy="Digital narration is accepted when it is disclosed in the book's metadata.",
        ai_source=APPLE_AI,
    ),
    "none": Profile(
        name="none", retailer="no retailer (measure only)", source="no rules",
        formats=(), sample_rate_hz=None, bitrate_kbps=None, cbr=False, same_channels=False,
        loudness=None, peak_db=None, noise_floor_db=None, head_s=None, tail_s=None, max_file_minutes=None,
        credits_required=False, sample_required=False, cover_min_px=None, cover_square=False, required_tags=(),
        number_width=2, naming="{n}-{title}",
    ),
}


def profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise KeyError(f"unknown delivery profile {name!r}; use one of {', '.join(PROFILES)}") from None


@dataclass(frozen=True)
class SettingRule:
    setting: str          # the key under audio:
    low: float | None
    high: float | None
    rule: str             # what the retailer requires, in its terms
    source: str

    def problem(self, value: float, profile: str) -> str | None:
        if Range(self.low, self.high).holds(value):
            return None
        wanted = (f"{self.low:g}" if self.low == self.high and self.low is not None
                  else f"from {self.low:g} to {self.high:g}" if self.low is not None and self.high is not None
                  else f"at least {self.low:g}" if self.low is not None else f"at most {self.high:g}")
        return (f"{value:g} breaks the {profile} rule \u201c{self.rule}\u201d ({self.source}): it must be {wanted}; "
                "change it, or choose audio.profile: none to deliver elsewhere")


def _setting_rules(p: Profile) -> tuple[SettingRule, ...]:
    """What the audio settings alone decide of ``p``'s rules (the errors; warnings are measured later)."""
    rules: list[SettingRule] = []

    def add(setting: str, r: Range | None, rule: str, unit: str, name: str) -> None:
        """``rule`` with ``{}`` for what ``r`` allows, in ``unit``."""
        if r is not None and name not in p.warn:
            rules.append(SettingRule(setting, r.low, r.high, rule.format(r.describe(unit)), p.source_of(name)))

    if p.loudness_unit == RMS:
        add("target_rms_db", p.loudness, "RMS {}", "dB", RMS)
    if p.peak_db is not None:
        add("true_peak_db", Range(None, p.peak_db), f"peak values no higher than {p.peak_db:g} dB", "dB", "peak")
    if p.noise_floor_db is not None:
        add("room_tone_db", Range(None, p.noise_floor_db), f"noise floor no higher than {p.noise_floor_db:g} dB RMS",
            "dB", "noise floor")
    add("sample_rate_hz", p.sample_rate_hz, "a sample rate of {}", "Hz", "sample rate")
    add("bitrate_kbps", p.bitrate_kbps, "MP3 of {}", "kbps", "bit rate")
    if "aac" in p.formats:
        add("m4b_bitrate_kbps", p.bitrate_kbps, "AAC of {}", "kbps", "bit rate")
    add("head_s", p.head_s, "{} of room tone at the head", "s", "head room tone")
    add("tail_s", p.tail_s, "{} of room tone at the tail", "s", "tail room tone")
    return tuple(rules)


SETTING_RULES: dict[str, tuple[SettingRule, ...]] = {name: _setting_rules(p) for name, p in PROFILES.items()}
