"""End to end: `audiobook deliver` builds ACX's package from a book the real `audiobook run` rendered
against the simulator (real English prose, credits, spoken chapter titles, a retail sample and a
2400 px cover), without any API call.

One book is rendered for the whole module and shared by the tests, in their order here: the test of
a credits change, which changes the book, comes after every other test that reads it. The evidence is the
package itself (the files, their tags read back with mutagen, the subtitles) and the simulator's
ledger (what was rendered, and that deliver sent nothing)."""

from __future__ import annotations

import dataclasses
import hashlib
import html
import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_support import MODEL, audiobook, local_simulator
from mutagen.id3 import ID3
from mutagen.mp3 import MP3
from PIL import Image

from pipeline import assembly, packaging, profiles, runner
from pipeline.models import Manifest
from pipeline.simulator import Simulator

# The shared corpora sit beside the checkout (<checkout>/../shared/corpora); CORPORA=... points elsewhere.
CORPUS = Path(os.environ.get("CORPORA") or Path(__file__).resolve().parents[2] / "shared" / "corpora") / "alice.txt"
pytestmark = pytest.mark.skipif(not CORPUS.is_file(), reason=f"the shared corpora are not at {CORPUS.parent}")
TITLE = "Alice in Tests"
AUTHOR = "Lewis Carroll"
NARRATOR = "E2E Voice"
# (chapter of the corpus, most characters): the second is the longest, the one split in two
CUTS = ((1, 1700), (2, 2600), (3, 1700))
SAMPLE_SECONDS = 90
NEW_OPENING = "A different opening line for this book."
ERROR_RULES = {"RMS", "peak", "noise floor", "sample rate", "bit rate", "bit rate mode", "head room tone",
               "tail room tone", "length", "tags"}
SENTENCE_END = re.compile(r"(?<=[.!?])[”’]?\s+(?=[“‘A-Z])")


@dataclasses.dataclass
class Book:
    folder: Path
    manifest: Path
    output: Path
    titles: dict[str, str]          # chapter id -> title
    texts: dict[str, str]


def corpus_chapters() -> list[tuple[str, str]]:
    """(title, text) of the first chapters of Alice, each cut at a sentence end to at most its size."""
    body = CORPUS.read_text(encoding="utf-8").split("THE END")[0]
    parts = re.split(r"\nCHAPTER [IVXL]+\.\n", body)
    out = []
    for number, limit in CUTS:
        lines = parts[number].split("\n")
        title = lines[0].strip()
        paragraphs = [" ".join(p.split()) for p in "\n".join(lines[1:]).split("\n\n") if p.strip()]
        kept: list[str] = []
        for paragraph in paragraphs:
            room = limit - sum(len(k) + 2 for k in kept)
            if len(paragraph) <= room:
                kept.append(paragraph)
                continue
            sentences, taken = SENTENCE_END.split(paragraph), ""
            for sentence in sentences:
                if len(taken) + len(sentence) + 1 > room:
                    break
                taken = f"{taken} {sentence}".strip()
            if taken:
                kept.append(taken)
            break
        out.append((title, "\n\n".join(kept) + "\n"))
    return out


def write_manifest(folder: Path, chapters: list[dict[str, Any]], **settings: Any) -> Path:
    manifest = {
        "title": TITLE, "author": AUTHOR, "narrator": NARRATOR, "year": 1865, "language": "English",
        "voice": {"model_id": MODEL}, "subtitles": "sentence",
        "audio": {"profile": "acx", "m4b": False},
        "api": {"poll_interval_s": 0.05, "requests_per_minute": 100000},
        "pricing": {"char_fee_per_10k": 2.0, "voice_fee_per_task": 0.05},
        **settings,
        "chapters": chapters,
    }
    path = folder / "book.yaml"
    path.write_text(yaml.safe_dump(manifest, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def simulator() -> Iterator[Simulator]:
    with local_simulator(seed=11) as sim:
        yield sim


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory, simulator: Simulator) -> Book:
    folder = tmp_path_factory.mktemp("deliver-book")
    chapters, titles, texts = [], {}, {}
    for number, (title, text) in enumerate(corpus_chapters(), start=1):
        assert not text.startswith(title) and 1400 <= len(text) <= 4000, (title, len(text))
        (folder / f"ch{number}.txt").write_text(text, encoding="utf-8")
        chapters.append({"id": f"ch{number}", "title": title, "source": f"ch{number}.txt"})
        titles[f"ch{number}"], texts[f"ch{number}"] = title, text
    Image.new("RGB", (2400, 2400), (40, 90, 160)).save(folder / "cover.jpg", "JPEG", quality=85)
    manifest = write_manifest(folder, chapters, cover="cover.jpg", speak_chapter_titles=True, credits={},
                              sample={"seconds": SAMPLE_SECONDS})
    result = audiobook(simulator, "run", str(manifest))
    assert result.returncode == 0, result.stdout + result.stderr
    return Book(folder, manifest, folder / "build" / "book", titles, texts)


def api_requests(sim: Simulator) -> tuple[int, int]:
    ledger = sim.ledger()
    return sum(ledger["requests"].values()), ledger["files_origin"]["requests"]


def audio_texts(sim: Simulator) -> list[str]:
    return [t["content_text"] for t in sim.ledger()["tasks"] if t["kind"] == "audio"]


def srt_cues(path: Path) -> list[tuple[float, float, str]]:
    """(start, end, text) of every cue of an SRT file."""
    def seconds(stamp: str) -> float:
        hours, minutes, rest = stamp.strip().split(":")
        secs, millis = rest.split(",")
        return int(hours) * 3600 + int(minutes) * 60 + int(secs) + int(millis) / 1000

    cues = []
    for block in path.read_text(encoding="utf-8").strip().split("\n\n"):
        lines = block.strip().split("\n")
        start, end = lines[1].split(" --> ")
        cues.append((seconds(start), seconds(end), " ".join(lines[2:])))
    return cues


def read_mp3(path: Path) -> Any:
    return MP3(path)  # type: ignore[no-untyped-call]


def read_id3(path: Path) -> Any:
    return ID3(path)  # type: ignore[no-untyped-call]


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def report_of(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((folder / packaging.REPORT_JSON).read_text(encoding="utf-8"))
    return data


def checks_by_name(entry: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in entry["checks"]}


def existing_chapter_duration(manifest: Manifest, chapter_id: str) -> float:
    built = assembly.existing_chapter(manifest, chapter_id)
    assert built is not None, chapter_id
    return built.duration_s


def clamped(value: float, allowed: profiles.Range | None) -> float:
    """The room tone deliver gives a cut: the book's, kept inside the profile's range."""
    return value if allowed is None else allowed.clamp(value)


def library_deliver(book: Book, profile: profiles.Profile, out: Path) -> packaging.PackageReport:
    """What `audiobook deliver` does once the book is stitched, called directly."""
    manifest = runner.load(book.manifest)
    plan = runner.plan(manifest)
    with runner._writing(manifest) as journal:
        return packaging.deliver_book(manifest, plan.chapters, journal.selected_takes(), profile=profile, out=out,
                                      confirm_ai=True)


# --------------------------------------------------------------------------------------------------


def test_acx_package_needs_the_confirmation_then_holds_every_file_in_order_tagged_and_passing(
        book: Book, simulator: Simulator) -> None:
    delivery = book.output / "delivery" / "acx"
    before = api_requests(simulator)
    refused = audiobook(simulator, "deliver", str(book.manifest), "--profile", "acx")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "--confirm-ai-narration-allowed" in refused.stdout + refused.stderr
    assert not delivery.exists()

    result = audiobook(simulator, "deliver", str(book.manifest), "--profile", "acx", "--confirm-ai-narration-allowed")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "every acx rule passed" in result.stdout
    assert api_requests(simulator) == before, "deliver called the API"

    report = report_of(delivery)
    assert report["passed"] is True and report["failures"] == []
    assert report["policy"]["confirmed"] is True
    assert all(c["passed"] for c in report["book_checks"] if c["severity"] == "error"), report["book_checks"]
    files = report["files"]
    ids = ["opening-credits", "ch1", "ch2", "ch3", "closing-credits"]
    titles = ["Opening Credits", *book.titles.values(), "Closing Credits"]
    assert [f["chapter"] for f in files] == [*ids, files[-1]["chapter"]]
    assert [f["role"] for f in files] == ["opening credits", "chapter", "chapter", "chapter", "closing credits",
                                          "retail sample"]
    assert [f["track"] for f in files] == [1, 2, 3, 4, 5, None]
    assert [f["file"] for f in files] == [f"{n:02d} - {t}.mp3" for n, t in enumerate(titles, start=1)] + [
        "Retail Sample.mp3"]
    assert all(f["part"] is None and f["parts"] == 1 for f in files)
    sample = files[-1]
    assert sample["chapter"] in book.titles
    assert 60 <= sample["measured"]["duration_s"] <= 300, sample["measured"]
    cut_from = next(f for f in files if f["chapter"] == sample["chapter"] and f["role"] == "chapter")
    assert sample["measured"]["duration_s"] < cut_from["measured"]["duration_s"] - 10, "a cut, not the chapter"

    for f in files:
        checks = checks_by_name(f)
        assert set(checks) >= ERROR_RULES, (f["file"], sorted(checks))
        failed = [c for c in f["checks"] if c["severity"] == "error" and not c["passed"]]
        assert not failed and f["passed"], (f["file"], failed)
        stream = f["stream"]
        assert (stream["codec"], stream["sample_rate_hz"], stream["bitrate_mode"], round(stream["bitrate_kbps"])) \
            == ("mp3", 44100, "CBR", 192), (f["file"], stream)
        # the file itself, read independently of the report
        audio = read_mp3(delivery / f["file"])
        assert audio.info.sample_rate == 44100 and round(audio.info.bitrate / 1000) == 192, f["file"]
        assert abs(audio.info.length - f["measured"]["duration_s"]) < 0.2, f["file"]
    assert "sample length" in checks_by_name(sample) and checks_by_name(sample)["sample length"]["passed"]

    page = (delivery / packaging.REPORT_HTML).read_text(encoding="utf-8")
    assert "PASSED" in page
    for f in files:
        assert html.escape(f["file"]) in page, f["file"]
    with Image.open(delivery / "cover.jpg") as cover:
        assert cover.size == (2400, 2400)

    # the subtitles: the chapter opens with its spoken title; the credits say who made the book
    subtitles = delivery / "subtitles"
    assert sorted(p.name for p in subtitles.glob("*.srt")) == sorted(f"{Path(f['file']).stem}.srt" for f in files[:-1])
    first_chapter = srt_cues(subtitles / "02 - Down the Rabbit-Hole.srt")
    assert first_chapter[0][2] == "Down the Rabbit-Hole."
    assert "Down the Rabbit-Hole" not in book.texts["ch1"]
    opening = " ".join(c[2] for c in srt_cues(subtitles / "01 - Opening Credits.srt"))
    assert TITLE in opening and f"Narrated by {NARRATOR}" in opening and f"Written by {AUTHOR}" in opening
    closing = " ".join(c[2] for c in srt_cues(subtitles / "05 - Closing Credits.srt"))
    assert f"This has been {TITLE}" in closing

    # the tags, read back
    for f in files:
        tags = read_id3(delivery / f["file"])
        assert str(tags["TALB"]) == TITLE, f["file"]
        assert str(tags["TPE1"]) == AUTHOR and str(tags["TXXX:NARRATOR"]) == NARRATOR, f["file"]
        assert tags.getall("APIC"), f"{f['file']}: no cover"
        assert [t for t in tags.getall("TXXX") if t.desc == packaging.AI_TAG and str(t)], f"{f['file']}: no disclosure"
        if f["track"] is None:
            assert "TRCK" not in tags, "the retail sample is no track"
        else:
            assert str(tags["TRCK"]) == f"{f['track']}/5", f["file"]
            assert str(tags["TIT2"]) == f["title"]


def test_a_chapter_over_the_limit_is_split_at_a_pause_with_its_subtitles_timed_to_each_part(
        book: Book, tmp_path: Path) -> None:
    manifest = runner.load(book.manifest)
    durations = {c.id: existing_chapter_duration(manifest, c.id) for c in manifest.chapters}
    story = [c.id for c in manifest.chapters if not c.is_credits]
    longest = max(story, key=lambda cid: durations[cid])
    acx = profiles.PROFILES["acx"]
    head, tail = clamped(manifest.audio.head_s, acx.head_s), clamped(manifest.audio.tail_s, acx.tail_s)
    length = durations[longest]
    # the part's usable reach (limit less margin and pads) is 70 % of the chapter: two parts
    limit_s = 0.7 * length + packaging.SPLIT_MARGIN_S + head + tail
    assert length > limit_s and all(durations[c] <= limit_s for c in durations if c != longest), (durations, limit_s)
    profile = dataclasses.replace(acx, max_file_minutes=limit_s / 60)

    out = tmp_path / "split"
    report = library_deliver(book, profile, out)
    assert report.passed, report.failures()
    data = report_of(out)
    parts = [f for f in data["files"] if f["chapter"] == longest and f["role"] == "chapter"]
    assert 2 <= len(parts) <= 3, [f["file"] for f in parts]
    number = list(durations).index(longest) + 1  # its place in the package: the credits come first
    assert [f["file"] for f in parts] == [f"{number + k - 1:02d} - {book.titles[longest]}-part{k}.mp3"
                                          for k in range(1, len(parts) + 1)]
    assert [f["part"] for f in parts] == list(range(1, len(parts) + 1))
    assert all(f["parts"] == len(parts) for f in parts)
    assert [f["title"] for f in parts] == [f"{book.titles[longest]} (part {k} of {len(parts)})"
                                           for k in range(1, len(parts) + 1)]
    # every other file is whole, and the tracks still count 1..N
    assert [f["track"] for f in data["files"] if f["track"] is not None] == list(range(1, 5 + len(parts)))
    assert all(f["part"] is None for f in data["files"] if f["chapter"] != longest or f["role"] != "chapter")

    lengths = [f["measured"]["duration_s"] for f in parts]
    assert all(d <= limit_s for d in lengths), (lengths, limit_s)
    pads = (len(parts) - 1) * (head + tail)
    # the parts hold the chapter, less some of the silence at each cut, plus the room tone added there
    assert length + pads - 3.0 * (len(parts) - 1) <= sum(lengths) <= length + pads + 0.3, (lengths, length, pads)
    for f in parts:
        checks = checks_by_name(f)
        for rule in ("head room tone", "tail room tone", "length"):
            assert checks[rule]["passed"], (f["file"], checks[rule])
        assert f["measured"]["head_silence_s"] >= 0.5 and f["measured"]["tail_silence_s"] >= 1.0, f["measured"]

    # subtitles: per part, timed to it; together exactly the chapter's own cues
    chapter_output = assembly.existing_chapter(manifest, longest)
    assert chapter_output is not None and chapter_output.srt_path is not None
    own = [c[2] for c in srt_cues(chapter_output.srt_path)]
    joined: list[str] = []
    for f, duration in zip(parts, lengths):
        srt = out / "subtitles" / f"{Path(f['file']).stem}.srt"
        assert srt.is_file() and f"subtitles/{srt.name}" in f["subtitles"]
        cues = srt_cues(srt)
        assert cues, srt.name
        for start, end, text in cues:
            assert 0 <= start < end <= duration + 0.01, (srt.name, start, end, duration, text)
        # timed to the part's audio: its speech starts with the first cue and ends with the last
        measured = f["measured"]
        assert abs(cues[0][0] - measured["head_silence_s"]) <= 0.15, (srt.name, cues[0], measured)
        assert abs(duration - cues[-1][1] - measured["tail_silence_s"]) <= 0.15, (srt.name, cues[-1], measured)
        joined += [c[2] for c in cues]
    assert joined == own, "a sentence was lost or repeated at a cut"


def test_a_failed_deliver_leaves_the_last_package_and_a_foreign_folder_is_refused(
        book: Book, simulator: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "pkg"
    assert library_deliver(book, profiles.PROFILES["acx"], pkg).passed
    kept = digests(pkg)
    assert packaging.REPORT_JSON in kept and len([k for k in kept if k.endswith(".mp3")]) == 6

    real: Callable[..., packaging.FileResult] = packaging._make_file
    made: list[str] = []

    def fail_after_the_first(*args: Any, **kwargs: Any) -> packaging.FileResult:
        if made:
            raise OSError(28, "No space left on device (simulated)")
        result = real(*args, **kwargs)
        made.append(result.piece.name)
        return result

    with monkeypatch.context() as patch:
        patch.setattr(packaging, "_make_file", fail_after_the_first)
        with pytest.raises(OSError, match="No space left"):
            library_deliver(book, profiles.PROFILES["acx"], pkg)
    assert made == ["01 - Opening Credits.mp3"]  # it did get part of the way
    assert digests(pkg) == kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"], "a half-built package was left beside it"

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("my own notes\n", encoding="utf-8")
    (foreign / "take.mp3").write_bytes(b"\xff\xfb not a delivery")
    mine = digests(foreign)
    refused = audiobook(simulator, "deliver", str(book.manifest), "--profile", "acx", "--confirm-ai-narration-allowed",
                        "--out", str(foreign))
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert packaging.MARKER in refused.stdout + refused.stderr
    assert digests(foreign) == mine
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "pkg"]

    # the book's own folder, or one holding it, is never taken for a package (it has a delivery-report.json)
    before = sorted(p.name for p in book.output.iterdir())
    for target in (book.output, book.output.parent):
        refused = audiobook(simulator, "deliver", str(book.manifest), "--profile", "none", "--out", str(target))
        assert refused.returncode == 2 and "holds the book" in refused.stderr, refused.stdout + refused.stderr
    assert sorted(p.name for p in book.output.iterdir()) == before and (book.output / "journal.sqlite").is_file()


def test_new_credits_text_renders_only_the_credits(book: Book, simulator: Simulator) -> None:
    """Changes the shared book's credits: the last test of the module to use it."""
    # the plan lists both credits as their own rows, with a task and a price
    before = audiobook(simulator, "plan", str(book.manifest))
    assert before.returncode == 0, before.stdout + before.stderr
    rows = {line.split()[0]: line for line in before.stdout.splitlines() if line.strip()}
    for chapter_id, title in (("opening-credits", "Opening Credits"), ("closing-credits", "Closing Credits")):
        assert chapter_id in rows, before.stdout
        match = re.fullmatch(rf"{chapter_id}\s+{title}\s+(\d+)\s+([\d,]+)\s+\S+\s+(\d+\.\d\d)", rows[chapter_id])
        assert match, rows[chapter_id]
        assert int(match[1]) == 1 and int(match[2].replace(",", "")) > 0 and float(match[3]) > 0, rows[chapter_id]
    assert "none: every chunk is already rendered" in before.stdout

    files_before = digests(book.output)
    data = yaml.safe_load(book.manifest.read_text(encoding="utf-8"))
    data["credits"] = {"opening": NEW_OPENING}
    book.manifest.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")

    planned = audiobook(simulator, "plan", str(book.manifest), "--json")
    assert planned.returncode == 0, planned.stdout + planned.stderr
    plan = json.loads(planned.stdout)
    to_render = {c["id"]: c["changes"]["to_render"] for c in plan["chapters"]}
    assert to_render == {"opening-credits": 1, "ch1": 0, "ch2": 0, "ch3": 0, "closing-credits": 0}, to_render
    listed = [k for c in plan["chapters"] for k in c["chunks"] if k["fate"] == "render"]
    assert [k["spoken_text"] for k in listed] == [NEW_OPENING]
    assert plan["totals"]["changes"]["to_render"] == 1 and plan["totals"]["changes"]["cost"] > 0

    sent = len(audio_texts(simulator))
    result = audiobook(simulator, "run", str(book.manifest))
    assert result.returncode == 0, result.stdout + result.stderr
    assert audio_texts(simulator)[sent:] == [NEW_OPENING], "only the new opening credits are rendered, once"
    after = digests(book.output)
    changed = {name for name in set(after) | set(files_before) if after.get(name) != files_before.get(name)}
    book_files = {name for name in changed if name.endswith((".mp3", ".srt", ".vtt")) and "/" not in name}
    assert book_files == {"00-opening-credits.mp3", "00-opening-credits.srt", "00-opening-credits.vtt"}, changed
    assert [c[2] for c in srt_cues(book.output / "00-opening-credits.srt")] == [NEW_OPENING]


def test_acx_without_credits_is_refused_before_any_work(simulator: Simulator, tmp_path: Path) -> None:
    (tmp_path / "one.txt").write_text("Alice sat by the river. The rabbit ran past.\n", encoding="utf-8")
    manifest = write_manifest(tmp_path, [{"id": "one", "title": "One", "source": "one.txt"}])
    output = tmp_path / "build" / "book"
    before = api_requests(simulator)
    refused = audiobook(simulator, "deliver", str(manifest), "--profile", "acx", "--confirm-ai-narration-allowed")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "credits:" in refused.stdout + refused.stderr
    assert not output.exists() and not (tmp_path / "build").exists()
    assert api_requests(simulator) == before
