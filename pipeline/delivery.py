"""The delivery check (issue 5, part 5): measure every output file and hold it to a named profile.

Measured per file (decoded by ffmpeg in blocks, so a two-hour file costs no memory): duration,
sample rate, channels, codec, bit rate and its mode (CBR/VBR), RMS, sample peak, true peak, noise
floor (RMS of the quietest 0.5 s), head and tail silence (time to the first / after the last 10 ms
frame louder than ``audio.silence_threshold_db``). dB are dBFS, a full-scale sine reading -3 dB RMS
as in ACX's own check.

Profiles (``audio.profile`` in the manifest):

``acx``   ACX's audio submission requirements: RMS -23 to -18 dB; peak at most -3 dB; noise floor at
          most -60 dB; 44.1 kHz; MP3 at 192 kbps CBR; 0.5 to 1 s of room tone at the head and 1 to
          5 s at the tail; at most 120 minutes per file. ACX takes MP3 only, so the M4B is held to the
          level and sample-rate rules and its format is noted, not failed.
``google-play``  Google Play Books' published audiobook file rules: MP3, AAC (M4A/M4B), FLAC or WAV;
          at least 44.1 kHz; MP3 or AAC at least 128 kbps mono (256 kbps stereo); CBR preferred
          (a warning); start and end with silence (a warning under 0.25 s). Google publishes no
          loudness targets; the ACX ranges (which the other big retailers share) are checked as
          warnings.
``none``  measure only.

A failed *error* check fails the report; a *warning* is shown but does not.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipeline.assembly import read_state
from pipeline.audio import dsp, ffmpeg, tags
from pipeline.errors import AssemblyError, AudioToolError
from pipeline.fsio import write_atomic
from pipeline.layout import BOOK_SUFFIX, BookLayout
from pipeline.models import Manifest

ERROR = "error"
WARNING = "warning"
INFO = "info"
BITRATE_TOLERANCE = 0.97  # an average bit rate a hair under nominal still counts (AAC's is measured)


@dataclass(frozen=True)
class Check:
    name: str
    measured: str
    limit: str
    passed: bool
    severity: str = ERROR


@dataclass(frozen=True)
class FileReport:
    path: Path
    info: tags.StreamInfo | None
    measurement: dsp.Measurement | None
    checks: tuple[Check, ...]
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and all(c.passed for c in self.checks if c.severity == ERROR)

    def to_json(self) -> dict[str, object]:
        return {
            "file": self.path.name,
            "passed": self.passed,
            "error": self.error,
            "stream": asdict(self.info) if self.info else None,
            "measured": _finite(asdict(self.measurement)) if self.measurement else None,
            "checks": [asdict(c) for c in self.checks],
        }


def _finite(values: dict[str, object]) -> dict[str, object]:
    return {k: (round(v, 3) if isinstance(v, float) and math.isfinite(v) else v) for k, v in values.items()}


@dataclass(frozen=True)
class DeliveryReport:
    profile: str
    files: tuple[FileReport, ...]
    # QC of the takes in each chapter: {chapter id: {"pass": n, "warn": n, "fail": n, "unchecked": n}}.
    # A fail is counted here, not failed here: the run that left it exits 1 and names it.
    qc: Mapping[str, Mapping[str, int]] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(f.passed for f in self.files)

    def to_json(self) -> dict[str, object]:
        return {"profile": self.profile, "passed": self.passed, "files": [f.to_json() for f in self.files],
                "qc": {chapter: dict(counts) for chapter, counts in self.qc.items()}}

    def render_table(self) -> str:
        head = ("file", "length", "Hz", "kbps", "mode", "RMS dB", "peak dB", "floor dB", "head s", "tail s", "result")
        rows: list[tuple[str, ...]] = []
        for f in self.files:
            m, i = f.measurement, f.info
            result = "PASS" if f.passed else "FAIL"
            if f.passed and any(not c.passed and c.severity == WARNING for c in f.checks):
                result = "PASS*"
            if m is None or i is None:
                rows.append((f.path.name, *(["-"] * 9), result))
                continue
            rows.append((f.path.name, _clock(m.duration_s), str(i.sample_rate_hz), f"{i.bitrate_kbps:.0f}",
                         i.bitrate_mode, f"{m.rms_db:.1f}", f"{m.peak_db:.1f}", f"{m.noise_floor_db:.1f}",
                         f"{m.head_silence_s:.2f}", f"{m.tail_silence_s:.2f}", result))
        widths = [max(len(r[c]) for r in (head, *rows)) for c in range(len(head))]
        lines = ["  ".join(cell.ljust(w) if c == 0 else cell.rjust(w)
                           for c, (cell, w) in enumerate(zip(row, widths, strict=True)))
                 for row in (head, *rows)]
        lines.insert(1, "  ".join("-" * w for w in widths))
        notes: list[str] = []
        for f in self.files:
            if f.error:
                notes.append(f"{f.path.name}: {f.error}")
            for c in f.checks:
                if not c.passed and c.severity != INFO:
                    notes.append(f"{f.path.name}: {c.severity}: {c.name} {c.measured} (wanted {c.limit})")
        verdict = "passed" if self.passed else "FAILED"
        summary = f"delivery profile {self.profile!r}: {verdict} ({len(self.files)} file(s))"
        return "\n".join([*lines, *(["", *notes] if notes else []), "", summary])


def _clock(seconds: float) -> str:
    total = round(seconds)
    return f"{total // 3600}:{total // 60 % 60:02d}:{total % 60:02d}"


def _range(name: str, value: float, low: float | None, high: float | None, unit: str,
           severity: str = ERROR) -> Check:
    ok = (low is None or value >= low) and (high is None or value <= high)
    if low is not None and high is not None:
        limit = f"{low:g} to {high:g} {unit}"
    elif high is not None:
        limit = f"at most {high:g} {unit}"
    else:
        limit = f"at least {low:g} {unit}"
    return Check(name, f"{value:.2f} {unit}", limit, ok, severity)


def _loudness_checks(m: dsp.Measurement, severity: str) -> list[Check]:
    return [
        _range("RMS", m.rms_db, -23.0, -18.0, "dB", severity),
        _range("peak", m.peak_db, None, -3.0, "dB", severity),
        _range("noise floor", m.noise_floor_db, None, -60.0, "dB", severity),
    ]


def profile_checks(profile: str, info: tags.StreamInfo, m: dsp.Measurement) -> list[Check]:
    """The checks of ``profile`` for one file (see the module docstring for their sources)."""
    if profile == "none":
        return []
    if profile == "acx":
        checks = _loudness_checks(m, ERROR)
        checks.append(Check("sample rate", f"{info.sample_rate_hz} Hz", "44100 Hz", info.sample_rate_hz == 44_100))
        if info.codec != "mp3":
            checks.append(Check("format", info.codec, "MP3 (ACX takes MP3 only)", False, INFO))
            return checks
        checks += [
            Check("bit rate", f"{info.bitrate_kbps:.0f} kbps", "192 kbps",
                  abs(info.bitrate_kbps - 192) < 1),
            Check("bit rate mode", info.bitrate_mode, "CBR", info.bitrate_mode == "CBR"),
            _range("head room tone", m.head_silence_s, 0.5, 1.0, "s"),
            _range("tail room tone", m.tail_silence_s, 1.0, 5.0, "s"),
            _range("length", m.duration_s / 60, None, 120.0, "min"),
        ]
        return checks
    if profile == "google-play":
        checks = [Check("format", info.codec, "MP3, AAC, FLAC or WAV",
                        info.codec in ("mp3", "aac", "flac", "wav", "pcm_s16le"))]
        checks.append(_range("sample rate", float(info.sample_rate_hz), 44_100, None, "Hz"))
        if info.codec in ("mp3", "aac"):
            floor = 128 if info.channels <= 1 else 256
            checks.append(_range("bit rate", info.bitrate_kbps, floor * BITRATE_TOLERANCE, None, "kbps"))
        if info.codec == "mp3":
            checks.append(Check("bit rate mode", info.bitrate_mode, "CBR (preferred)",
                                info.bitrate_mode == "CBR", WARNING))
        checks += [
            _range("head silence", m.head_silence_s, 0.25, None, "s", WARNING),
            _range("tail silence", m.tail_silence_s, 0.25, None, "s", WARNING),
            *_loudness_checks(m, WARNING),
        ]
        return checks
    raise AssemblyError(f"unknown delivery profile {profile!r}; use one of acx, google-play, none "
                        "(audio.profile in the manifest)")


def check_delivery(*, manifest: Manifest, files: Sequence[Path], book_parts: Sequence[Path] = (),
                   qc: Mapping[str, Mapping[str, int]] | None = None) -> DeliveryReport:
    """Measure each file (or reuse its measurement, see :func:`measure`) and check it against
    ``manifest.audio.profile``.

    ``book_parts`` are the parts the M4B among ``files`` was joined from (in order): its levels are
    those of its parts together, so a ten-hour book is not decoded again to report them. A file that
    cannot be read or decoded is reported (and fails) rather than stopping the others; a missing
    ffmpeg still raises :class:`AudioToolError`.
    """
    settings = manifest.audio
    profile = settings.profile
    if profile not in ("acx", "google-play", "none"):
        raise AssemblyError(f"unknown delivery profile {profile!r}; use one of acx, google-play, none "
                            "(audio.profile in the manifest)")
    reports: list[FileReport] = []
    for path in files:
        path = Path(path)
        try:
            if path.suffix == BOOK_SUFFIX and book_parts:
                info = tags.stream_info(path, decoded=ffmpeg.decoded_format(path))
                measurement = dsp.joined([measure(part, manifest)[1] for part in book_parts])
            else:
                info, measurement = measure(path, manifest)
        except AudioToolError:
            raise
        except AssemblyError as exc:
            reports.append(FileReport(path, None, None, (), error=str(exc)))
            continue
        # Measured at the file's own rate would be the same; the decoder resamples to the settings'
        # rate, and the container tells the real one.
        reports.append(FileReport(path, info, measurement, tuple(profile_checks(profile, info, measurement))))
    return DeliveryReport(profile=profile, files=tuple(reports), qc=dict(qc or {}))


def measure(path: Path, manifest: Manifest) -> tuple[tags.StreamInfo, dsp.Measurement]:
    """Measure a file, or reuse the measurement of the same bytes (kept per file in the book's
    ``.assembly/measurements/``): a chapter is measured once, when it is built, and a rerun of a long
    book does not decode every file again just to report the same figures."""
    settings = manifest.audio
    try:
        stat = path.stat()
    except OSError as exc:
        raise AssemblyError(f"cannot read {path}: {exc.strerror or exc}") from exc
    # v3: kept per file; channels and rate come from the decoded stream (an older ffmpeg's MP4 header
    # says stereo)
    key = f"v3:{stat.st_size}:{stat.st_mtime_ns}:{settings.sample_rate_hz}:{settings.silence_threshold_db}"
    cache_path = BookLayout(manifest.output).measurement(path.name)
    hit = read_state(cache_path)
    if hit is not None and hit.get("key") == key:
        try:
            return tags.StreamInfo(**hit["info"]), dsp.Measurement(**hit["measurement"])
        except (KeyError, TypeError):
            pass
    info = tags.stream_info(path, decoded=ffmpeg.decoded_format(path))
    with ffmpeg.stream_pcm(path, sample_rate_hz=settings.sample_rate_hz) as blocks:
        measurement = dsp.measure_pcm(blocks, sample_rate_hz=settings.sample_rate_hz,
                                      silence_threshold_db=settings.silence_threshold_db, label=str(path))
    if cache_path.parent.parent.is_dir():
        write_atomic(cache_path, json.dumps({"key": key, "info": asdict(info), "measurement": asdict(measurement)}))
    return info, measurement


def write_delivery_report(report: DeliveryReport, path: Path) -> Path:
    """Write ``report`` as JSON to ``path`` (normally ``<output>/delivery-report.json``) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(report.to_json(), indent=1, ensure_ascii=False) + "\n")
    return path


def report_failures(path: Path) -> list[str]:
    """Each failed rule of the delivery report at ``path`` (none when it passed or is missing), one line
    each: the file, the rule, what was measured, what the profile wants."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(report, dict) or report.get("passed", True):
        return []
    profile = report.get("profile")
    lines = []
    for item in report.get("files", []):
        if item.get("error"):
            lines.append(f"{item.get('file')}: {item['error']}")
        for check in item.get("checks", []):
            if not check.get("passed", True) and check.get("severity") == ERROR:
                lines.append(f"{item.get('file')}: {check.get('name')} {check.get('measured')} (the {profile} profile "
                             f"wants {check.get('limit')})")
    return lines
