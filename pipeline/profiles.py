"""What each delivery profile requires of the manifest's audio settings, with the source of each rule.

The delivery check (:mod:`pipeline.delivery`) measures the files a book became; these rules catch,
before anything is spent, the settings that could only make files the chosen profile rejects (a
loudness target outside ACX's range, a sample rate Google Play refuses). :mod:`pipeline.manifest`
reports a setting that breaks one as a problem at its line, naming the rule and its source.
"""

from __future__ import annotations

from dataclasses import dataclass

ACX = "ACX Audio Submission Requirements (acx.com/help/audio-submission-requirements)"
GOOGLE_PLAY = "Google Play Books, audiobook file requirements (support.google.com/books/partner)"


@dataclass(frozen=True)
class SettingRule:
    setting: str          # the key under audio:
    low: float | None
    high: float | None
    rule: str             # what the retailer requires, in its terms
    source: str

    def problem(self, value: float, profile: str) -> str | None:
        if (self.low is None or value >= self.low) and (self.high is None or value <= self.high):
            return None
        wanted = (f"{self.low:g}" if self.low == self.high and self.low is not None
                  else f"from {self.low:g} to {self.high:g}" if self.low is not None and self.high is not None
                  else f"at least {self.low:g}" if self.low is not None else f"at most {self.high:g}")
        return (f"{value:g} breaks the {profile} rule \u201c{self.rule}\u201d ({self.source}): it must be {wanted}; "
                "change it, or choose audio.profile: none to deliver elsewhere")


SETTING_RULES: dict[str, tuple[SettingRule, ...]] = {
    "acx": (
        SettingRule("target_rms_db", -23, -18, "RMS between -23 dB and -18 dB", ACX),
        SettingRule("true_peak_db", None, -3, "peak values no higher than -3 dB", ACX),
        SettingRule("room_tone_db", None, -60, "noise floor no higher than -60 dB RMS", ACX),
        SettingRule("sample_rate_hz", 44_100, 44_100, "44.1 kHz sample rate", ACX),
        SettingRule("bitrate_kbps", 192, None, "192 kbps or higher constant bit rate MP3", ACX),
        SettingRule("head_s", 0.5, 1.0, "0.5 to 1 second of room tone at the head", ACX),
        SettingRule("tail_s", 1.0, 5.0, "1 to 5 seconds of room tone at the tail", ACX),
    ),
    "google-play": (
        SettingRule("sample_rate_hz", 44_100, None, "a sample rate of at least 44.1 kHz", GOOGLE_PLAY),
        SettingRule("bitrate_kbps", 128, None, "MP3 of at least 128 kbps (mono)", GOOGLE_PLAY),
        SettingRule("m4b_bitrate_kbps", 128, None, "AAC of at least 128 kbps (mono)", GOOGLE_PLAY),
    ),
    "none": (),
}
