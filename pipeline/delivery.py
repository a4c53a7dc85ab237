"""The delivery check (issue 5, part 5): measure every output file and hold it to a named profile.

Measured per file (decoded by ffmpeg in blocks, so a two-hour file costs no memory): duration,
sample rate, channels, codec, bit rate and its mode (CBR/VBR), RMS, sample peak, true peak, noise
floor (RMS of the quietest 0.5 s), head and tail silence (time to the first / after the last 10 ms
frame louder than ``audio.silence_threshold_db``); and, for a profile that states loudness in LUFS,
the integrated loudness (ffmpeg's ``ebur128``). dB are dBFS, a full-scale sine reading -3 dB RMS as
in ACX's own check.

The rules are the profile's table in :mod:`pipeline.profiles` (``audio.profile`` in the manifest for
the output folder's report; ``audiobook deliver --profile`` for a delivery), each check naming its
rule's source and the fix. A format the profile does not take (ACX and the M4B) is noted, not
failed: it is not delivered there. A failed *error* check fails the report; a *warning* (a rule the
retailer states as a recommendation) is shown but does not.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from pipeline import fsio, profiles
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
    source: str = ""
    fix: str = ""

    def failure(self, sep: str = " ") -> str:
        """The failed rule in one line: what was measured, what is wanted, and the fix."""
        return f"{self.name}{sep}{self.measured} (wanted {self.limit}){'; ' + self.fix if self.fix else ''}"


# What to change when a rule fails (the audio settings make every file; `stitch` rebuilds them).
FIXES = {
    "RMS": "set audio.target_rms_db inside the range, then `audiobook stitch`",
    "LUFS": "raise or lower audio.target_rms_db by the difference, then `audiobook stitch`",
    "peak": "lower audio.true_peak_db, then `audiobook stitch`",
    "noise floor": "lower audio.room_tone_db, then `audiobook stitch`",
    "sample rate": "set audio.sample_rate_hz to a rate the profile takes, then `audiobook stitch`",
    "bit rate": "set audio.bitrate_kbps to one the profile takes, then `audiobook stitch`",
    "bit rate mode": "the chapter files are CBR: rebuild them with `audiobook stitch --force`",
    "channels": "the chapter files are mono: rebuild them with `audiobook stitch --force`",
    "head room tone": "set audio.head_s inside the range, then `audiobook stitch`",
    "tail room tone": "set audio.tail_s inside the range, then `audiobook stitch`",
    "length": "`audiobook deliver` splits a chapter over the limit into parts; or split it in the manifest",
    "format": "deliver it with `audiobook deliver` for a profile that takes this format",
}


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
            rows.append((f.path.name, clock(m.duration_s), str(i.sample_rate_hz), f"{i.bitrate_kbps:.0f}",
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


def clock(seconds: float) -> str:
    total = round(seconds)
    return f"{total // 3600}:{total // 60 % 60:02d}:{total % 60:02d}"


def _range(name: str, value: float, allowed: profiles.Range, unit: str, p: profiles.Profile) -> Check:
    return Check(name, f"{value:.2f} {unit}", allowed.describe(unit), allowed.holds(value), p.severity_of(name),
                 p.source_of(name), FIXES.get(name, ""))


def _rule(name: str, measured: str, limit: str, ok: bool, p: profiles.Profile) -> Check:
    return Check(name, measured, limit, ok, p.severity_of(name), p.source_of(name), FIXES.get(name, ""))


def _profile(name: str) -> profiles.Profile:
    try:
        return profiles.profile(name)
    except KeyError as exc:
        raise AssemblyError(f"{exc.args[0]} (audio.profile in the manifest, or --profile)") from None


def profile_checks(profile: str | profiles.Profile, info: tags.StreamInfo, m: dsp.Measurement, *,
                   lufs: float | None = None) -> list[Check]:
    """The checks of ``profile`` (a name, or its table from :mod:`pipeline.profiles`) for one file;
    ``lufs`` is the file's integrated loudness, needed when the profile states loudness in LUFS."""
    p = profile if isinstance(profile, profiles.Profile) else _profile(profile)
    checks: list[Check] = []
    if p.loudness is not None:
        if p.loudness_unit == profiles.LUFS:
            if lufs is not None:
                checks.append(_range("LUFS", lufs, p.loudness, "LUFS", p))
        else:
            checks.append(_range("RMS", m.rms_db, p.loudness, "dB", p))
    if p.peak_db is not None:
        checks.append(_range("peak", m.peak_db, profiles.Range(None, p.peak_db), "dB", p))
    if p.noise_floor_db is not None:
        checks.append(_range("noise floor", m.noise_floor_db, profiles.Range(None, p.noise_floor_db), "dB", p))
    if p.sample_rate_hz is not None:
        checks.append(_rule("sample rate", f"{info.sample_rate_hz} Hz", p.sample_rate_hz.describe("Hz"),
                            p.sample_rate_hz.holds(info.sample_rate_hz), p))
    if not p.formats:
        return checks
    if info.codec not in p.formats:
        checks.append(Check("format", info.codec, f"{', '.join(p.formats)} ({p.retailer} takes no other)", False,
                            INFO, p.source_of("format"), FIXES["format"]))
        return checks
    checks.append(_rule("channels", f"{info.channels}", "1 (mono) or 2 (stereo)", info.channels in (1, 2), p))
    if p.bitrate_kbps is not None and info.codec in ("mp3", "aac"):
        floor = p.bitrate_kbps
        if info.channels > 1 and floor.low is not None:
            floor = profiles.Range(floor.low * p.stereo_bitrate_factor, floor.high)
        # an average a hair under nominal still counts (AAC's is measured)
        measured = info.bitrate_kbps / BITRATE_TOLERANCE if info.codec == "aac" else round(info.bitrate_kbps)
        checks.append(_rule("bit rate", f"{info.bitrate_kbps:.0f} kbps", floor.describe("kbps"),
                            floor.holds(measured), p))
    if info.codec == "mp3" and p.cbr:
        checks.append(_rule("bit rate mode", info.bitrate_mode, "CBR", info.bitrate_mode == "CBR", p))
    if p.head_s is not None:
        checks.append(_range("head room tone", m.head_silence_s, p.head_s, "s", p))
    if p.tail_s is not None:
        checks.append(_range("tail room tone", m.tail_silence_s, p.tail_s, "s", p))
    if p.max_file_minutes is not None:
        checks.append(_range("length", m.duration_s / 60, profiles.Range(None, p.max_file_minutes), "min", p))
    return checks


def check_delivery(*, manifest: Manifest, files: Sequence[Path], book_parts: Sequence[Path] = (),
                   qc: Mapping[str, Mapping[str, int]] | None = None) -> DeliveryReport:
    """Measure each file (or reuse its measurement, see :func:`measure`) and check it against
    ``manifest.audio.profile``.

    ``book_parts`` are the parts the M4B among ``files`` was joined from (in order): its levels are
    those of its parts together, so a ten-hour book is not decoded again to report them. A file that
    cannot be read or decoded is reported (and fails) rather than stopping the others; a missing
    ffmpeg still raises :class:`AudioToolError`.
    """
    profile = manifest.audio.profile
    p = _profile(profile)
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
        lufs = loudness(path, manifest) if p.loudness_unit == profiles.LUFS and path.suffix != BOOK_SUFFIX else None
        checks = [c if c.name != "length" else
                  # a chapter file over the limit is split into parts by `audiobook deliver`: a warning here
                  replace(c, severity=WARNING, fix="`audiobook deliver` splits it into parts under the limit")
                  for c in profile_checks(profile, info, measurement, lufs=lufs)]
        reports.append(FileReport(path, info, measurement, tuple(checks)))
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


def loudness(path: Path, manifest: Manifest) -> float:
    """The file's integrated loudness (LUFS), kept beside its measurement: measured once per file."""
    stat = path.stat()
    key = f"lufs-v1:{stat.st_size}:{stat.st_mtime_ns}"
    cache_path = BookLayout(manifest.output).measurement(f"{path.name}.lufs")
    hit = read_state(cache_path)
    if hit is not None and hit.get("key") == key and isinstance(hit.get("lufs"), (int, float)):
        return float(hit["lufs"])
    value = ffmpeg.integrated_loudness(path)
    if cache_path.parent.parent.is_dir():
        fsio.ensure_dir(cache_path.parent)
        write_atomic(cache_path, json.dumps({"key": key, "lufs": value}))
    return value


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
                fix = f"; {check['fix']}" if check.get("fix") else ""
                lines.append(f"{item.get('file')}: {check.get('name')} {check.get('measured')} (the {profile} profile "
                             f"wants {check.get('limit')}){fix}")
    return lines
