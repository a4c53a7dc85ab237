"""End to end: small defects of the first round, each checked with the real command (``python -m
pipeline ...``) against the project's simulator on free loopback ports.

1. a long CJK title gives a bounded M4B name     5. the plan table stays aligned with CJK titles
2. --max-cost amounts that differ print apart    6. retake --at matches whatever the typography
3. a voice's registry name is not the narrator   7. an interrupted M4B export leaves no temp file
4. a shelf's progress lines name their book      8. a scene break change says what it costs
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from e2e_support import API_KEY, MODEL, REPO, audiobook, command_env

from pipeline.cli import main
from pipeline.simulator import Simulator, SimulatorConfig

API_SETTINGS = {"poll_interval_s": 0.02, "backoff_base_s": 0.01, "backoff_cap_s": 0.05,
                "requests_per_minute": 100000}
ONE = ("The ferry left at dawn. Elsie stood on the jetty with two cases, and the keeper waited at the top of "
       "the steps.")
TWO = "The log went back to 1887. One entry said only: listen."


def start_simulator() -> Simulator:
    config = SimulatorConfig(api_key=API_KEY, seed=13, task_base_s=0.02, task_s_per_char=0.0,
                             preload_voices=(MODEL,))
    return Simulator(config, host="127.0.0.1", port=0, files_port=0)


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with start_simulator() as simulator:
        yield simulator


def write_book(path: Path, chapters: dict[str, tuple[str, str]], **top: Any) -> Path:
    """A manifest at ``path`` with chapters ``{id: (title, text)}``; ``top`` replaces top-level keys."""
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    for chapter_id, (_, text) in chapters.items():
        (folder / f"{chapter_id}.txt").write_text(text, encoding="utf-8")
    manifest: dict[str, Any] = {
        "title": "Small Defects", "author": "Tester", "language": "English", "voice": {"model_id": MODEL},
        "subtitles": "sentence", "chunking": {"max_chars": 200},
        "audio": {"m4b": False, "profile": "none"}, "api": API_SETTINGS,
        "chapters": [{"id": c, "title": title, "source": f"{c}.txt"} for c, (title, _) in chapters.items()],
    }
    manifest.update(top)
    path.write_text(yaml.safe_dump(manifest, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def edit_manifest(path: Path, **top: Any) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data.update(top)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")


def ok(sim: Simulator, *args: str) -> subprocess.CompletedProcess[str]:
    result = audiobook(sim, *args)
    assert result.returncode == 0, f"{args}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def plan_json(sim: Simulator, manifest: Path) -> dict[str, Any]:
    """``plan --json``: the same click command, in this process (reads only; keeps the file fast)."""
    result = CliRunner().invoke(main, ["plan", str(manifest), "--json"], env=command_env(sim))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def audio_tasks(sim: Simulator) -> int:
    return int(sim.ledger()["tasks_created"]["audio"])


def requests(sim: Simulator) -> int:
    return sum(sim.ledger()["requests"].values())


def columns(text: str) -> int:
    """Terminal columns: East Asian wide and full-width characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


# --- 1. a CJK title ----------------------------------------------------------------------------------

CJK_TITLE = ("灯塔看守人的女儿在风暴之夜独自点亮了那盏古老的灯" * 4)[:90]


def test_a_ninety_character_cjk_title_renders_with_a_bounded_book_file_name(sim: Simulator, tmp_path: Path) -> None:
    assert len(CJK_TITLE) == 90 and len(CJK_TITLE.encode("utf-8")) == 270
    manifest = write_book(tmp_path / "book.yaml", {"one": ("第一章", "风暴过后的第三天，海面平静得像一面镜子。")},
                          title=CJK_TITLE, language="Chinese", audio={"m4b": True, "profile": "none"})
    ok(sim, "plan", str(manifest))
    result = ok(sim, "run", str(manifest), "--simulate")
    books = list((tmp_path / "build" / "book-simulated").glob("*.m4b"))
    assert len(books) == 1, result.stdout + result.stderr
    name = books[0].name
    assert len(name.encode("utf-8")) <= 200, name
    assert name.startswith(CJK_TITLE[:20]), name
    assert books[0].stat().st_size > 0
    assert "File name too long" not in result.stdout + result.stderr


# --- 2. --max-cost ------------------------------------------------------------------------------------

def cost_book(folder: Path, fee_per_10k: float, chapters: dict[str, tuple[str, str]] | None = None) -> Path:
    chapters = chapters or {"one": ("One", ONE[:100])}
    return write_book(folder / "book.yaml", chapters,
                      pricing={"char_fee_per_10k": fee_per_10k, "voice_fee_per_task": 0.0, "currency": "USD"})


def test_max_cost_refuses_an_estimate_just_over_the_limit_with_amounts_that_print_apart(
        sim: Simulator, tmp_path: Path) -> None:
    manifest = cost_book(tmp_path, 80.04)  # 100 billed characters: 0.8004
    assert plan_json(sim, manifest)["totals"]["est_cost"] == pytest.approx(0.8004)
    refused = audiobook(sim, "run", str(manifest), "--max-cost", "0.80")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    found = re.search(r"estimated cost (\S+) USD exceeds --max-cost (\S+);", refused.stderr)
    assert found, refused.stderr
    estimate, limit = found.groups()
    assert estimate != limit, refused.stderr
    assert float(estimate) == pytest.approx(0.8004) and float(limit) == pytest.approx(0.80)
    assert requests(sim) == 0

    cost_book(tmp_path, 80.0)  # exactly 0.80
    ok(sim, "run", str(manifest), "--max-cost", "0.80")
    assert audio_tasks(sim) == 1


def test_max_cost_lets_an_estimate_of_exactly_the_limit_run_when_it_is_summed_over_chapters(
        sim: Simulator, tmp_path: Path) -> None:
    # chapter costs 0.01 and 0.05 at 0.001 a character: the plan prints a total of 0.06
    manifest = cost_book(tmp_path, 10.0, {"one": ("One", "Elsie sang"),
                                          "two": ("Two", "The keeper lit the lamps and waited for the ferry.")})
    plan = plan_json(sim, manifest)
    assert [c["billed_chars"] for c in plan["chapters"]] == [10, 50]
    result = audiobook(sim, "run", str(manifest), "--max-cost", "0.06")
    assert result.returncode == 0, result.stderr
    assert audio_tasks(sim) == 2


# --- 3. the narrator credit ---------------------------------------------------------------------------

def test_a_voices_registry_name_is_not_credited_as_the_narrator(sim: Simulator, tmp_path: Path) -> None:
    from mutagen.id3 import ID3
    from mutagen.mp4 import MP4

    registry = tmp_path / "voices.json"
    now = time.time()
    registry.write_text(json.dumps({"version": 1, "voices": {"anna": {
        "name": "anna", "model_id": MODEL, "created_at": now, "expires_at": now + 3 * 86400,
        "activated_at": now}}}), encoding="utf-8")
    manifest = write_book(tmp_path / "book.yaml", {"one": ("One", TWO)}, voice={"name": "anna"},
                          audio={"m4b": True, "profile": "none"})
    env = command_env(sim) | {"SOUNDCLONE_VOICES": str(registry)}
    result = subprocess.run([sys.executable, "-m", "pipeline", "run", str(manifest)], env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    output = tmp_path / "build" / "book"

    id3 = ID3(output / "01-one.mp3")
    assert [str(t) for t in id3.getall("TPE1")] == ["Tester"], id3.pprint()  # the file is tagged at all
    assert not id3.getall("TCOM") and not id3.getall("TXXX:NARRATOR"), id3.pprint()
    assert "anna" not in id3.pprint().casefold()
    mp4 = MP4(output / "small-defects.m4b")
    assert mp4.tags is not None and mp4.tags.get("\xa9ART") == ["Tester"], mp4.pprint()
    assert "\xa9wrt" not in mp4.tags and "----:com.apple.iTunes:NARRATOR" not in mp4.tags, mp4.pprint()
    assert "anna" not in mp4.pprint().casefold()


# --- 4. a shelf's progress lines ----------------------------------------------------------------------

def test_every_progress_line_of_a_shelf_names_its_book(sim: Simulator, tmp_path: Path) -> None:
    # the same chapter id in both books: only the book's name tells their lines apart
    first = write_book(tmp_path / "a" / "a.yaml", {"one": ("One", ONE)}, title="Book Alpha")
    second = write_book(tmp_path / "b" / "b.yaml", {"one": ("One", TWO)}, title="Book Beta")
    result = ok(sim, "run", str(first), str(second))
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    about_chunks = [line for line in lines if re.search(r"\bone#\d", line)]
    about_chapters = [line for line in lines if line.startswith("chapter ")]
    assert len(about_chunks) >= 4 and len(about_chapters) == 2, result.stderr  # submitted + downloaded
    for line in about_chunks + about_chapters:
        assert "Book Alpha" in line or "Book Beta" in line, line
    for title in ("Book Alpha", "Book Beta"):
        assert sum(1 for line in about_chapters if title in line) == 1, about_chapters


# --- 5. the plan table with CJK titles ----------------------------------------------------------------

def test_the_plan_table_stays_aligned_with_cjk_titles(sim: Simulator, tmp_path: Path) -> None:
    chapters = {
        "one": ("第一章：灯塔", "风暴过后的第三天，海面平静得像一面镜子。"),
        "two": ("The Log", TWO),
        "three": ("第三章　老人和海，还有那本很长很长很长的航海日志", "“你昨晚听见了吗？”老人问她。"),  # cut at 28
        "four": ("ｆｕｌｌ－ｗｉｄｔｈ　ｔｉｔｌｅ", "她点亮了灯。"),
        "five": ("A第五章老人和海还有那本很长的日志", "她睡着了。"),  # the 28th column splits a wide character
    }
    manifest = write_book(tmp_path / "book.yaml", chapters, title="灯塔看守人的女儿：一个很长很长的书名",
                          language="Chinese")
    table = ok(sim, "plan", str(manifest)).stdout.splitlines()
    header, rows, total = table[0], table[1:6], table[6]
    assert total.startswith("total ") and [r.split()[0] for r in rows] == list(chapters), table

    def ends(line: str, count: int) -> list[int]:
        """The terminal column where each of the last ``count`` words of ``line`` ends."""
        return [columns(line[:m.end()]) for m in re.finditer(r"\S+", line)][-count:]

    # header words: ... tasks billed chars audio cost; rows: ... tasks chars audio cost (total: + currency)
    tasks, _, chars, audio, cost = ends(header, 5)
    expected = [tasks, chars, audio, cost]
    misaligned = [row for row in rows if ends(row, 4) != expected]
    misaligned += [total] if ends(total, 5)[:4] != expected else []
    assert not misaligned, "\n".join([header, *misaligned])
    for row in [header, *rows, total]:
        # the id cell is 12 columns and the title cell 28: some prefix of the row is exactly 41 columns
        # wide (no wide character straddles the edge) and a space follows it
        widths = [columns(row[:i]) for i in range(len(row) + 1)]
        assert 12 in widths and 41 in widths, row
        assert row[widths.index(12)] == " " and row[widths.index(41)] == " ", row


# --- 6. retake --at and typography --------------------------------------------------------------------

MANUSCRIPT = ("“You’ll be the new keeper,” he said. It was not a question, and Elsie did not answer it.\n\n"
              "She waited… and waited. The lamp—the old one, with the brass rail—was lit at dusk every night.\n\n"
              "The keeper   stood at the top of the steps, counting the ships that passed the point.")


def test_retake_at_matches_plain_typing_against_typographic_text(sim: Simulator, tmp_path: Path) -> None:
    manifest = write_book(tmp_path / "book.yaml", {"one": ("One", MANUSCRIPT)})
    chunks = plan_json(sim, manifest)["chapters"][0]["chunks"]
    assert len(chunks) >= 2

    def index_of(words: str) -> int:
        (found,) = [c["index"] for c in chunks if words in c["text"]]
        return found

    ok(sim, "run", str(manifest))
    # two retakes (each is a task and a re-stitch), each query mixing two of the plain forms
    cases = [
        ("\"You'll  be the new\nkeeper,\" he said", index_of("“You’ll be the new keeper,” he said")),  # quotes, spacing
        ("She waited... and waited. The lamp - the old one, with the brass rail - was lit",
         index_of("She waited… and waited. The lamp—the old one")),                                 # ellipsis, dashes
    ]
    missed = []
    for words, expected in cases:
        result = audiobook(sim, "retake", str(manifest), "--chapter", "one", "--at", words)
        if result.returncode != 0 or f"chunk {expected} of one: take" not in result.stdout:
            missed.append((words, expected, result.stdout + result.stderr))
    assert not missed, missed


# --- 7. an interrupted M4B export ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def rendered_book(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Simulator, Path, Path]]:
    folder = tmp_path_factory.mktemp("m4b")
    manifest = write_book(folder / "book.yaml", {"one": ("One", TWO)}, title="Part Files",
                          audio={"m4b": True, "profile": "none"})
    with start_simulator() as simulator:
        ok(simulator, "run", str(manifest))
        output = folder / "build" / "book"
        assert (output / "part-files.m4b").is_file()
        yield simulator, manifest, output


def plant_parts(output: Path, tag: str) -> list[Path]:
    """What a process killed in the middle of the M4B export leaves beside the book."""
    parts = [output / f".part-files.m4b.{tag}0a1b2c.part", output / f".part-files.aac.m4a.{tag}3d4e5f.part"]
    for path in parts:
        path.write_bytes(b"\0" * 4096)
    return parts


@pytest.mark.parametrize("command", ["run", "stitch"])
def test_temporary_files_of_an_interrupted_m4b_export_are_removed_by_the_next_command(
        rendered_book: tuple[Simulator, Path, Path], command: str) -> None:
    simulator, manifest, output = rendered_book
    parts = plant_parts(output, command[:2].encode().hex())
    ok(simulator, command, str(manifest))
    assert (output / "part-files.m4b").is_file()
    left = [p.name for p in parts if p.exists()]
    assert not left, f"`{command}` left {left}"


def test_temporary_files_of_an_interrupted_m4b_export_are_removed_when_the_book_is_exported_again(
        rendered_book: tuple[Simulator, Path, Path]) -> None:
    simulator, manifest, output = rendered_book
    parts = plant_parts(output, "ee")
    edit_manifest(manifest, description="A new blurb: the book is tagged again.")
    ok(simulator, "stitch", str(manifest))
    assert not [p.name for p in parts if p.exists()]


# --- 8. scene breaks ---------------------------------------------------------------------------------

def mp3_seconds(path: Path) -> float:
    from mutagen.mp3 import MP3

    return float(MP3(path).info.length)


def test_a_scene_break_inside_a_chunk_names_its_setting_and_stitch_refuses_with_that_reason(
        sim: Simulator, tmp_path: Path) -> None:
    text = "The ferry left at dawn.\n\n***\n\nThat night the wind rose."  # one chunk, the break inside it
    manifest = write_book(tmp_path / "book.yaml", {"one": ("One", text), "two": ("Two", TWO)})
    ok(sim, "run", str(manifest))
    tasks = audio_tasks(sim)
    edit_manifest(manifest, pauses={"scene_break_s": 3.5})
    plan = plan_json(sim, manifest)
    one, two = plan["chapters"]
    assert [c["fate"] for c in one["chunks"]] == ["render"] and "<#3.5#>" in one["chunks"][0]["text"]
    assert "scene_break_s" in one["chunks"][0]["reason"], one["chunks"][0]
    assert all(c["fate"] == "reuse" for c in two["chunks"])
    assert plan["totals"]["changes"]["to_render"] == 1

    refused = audiobook(sim, "stitch", str(manifest))
    assert refused.returncode != 0
    message = refused.stderr
    assert "not fully downloaded" not in message and "Traceback" not in message, message
    assert "one: chunk(s) 0:" in message and "scene_break_s" in message, message
    assert "two:" not in message, message
    assert audio_tasks(sim) == tasks, "stitch must never call the API"


def test_a_scene_break_on_a_chunk_seam_is_retimed_by_stitch_alone(sim: Simulator, tmp_path: Path) -> None:
    half = ("The ferry left at dawn, and Elsie stood on the jetty with two cases while the keeper waited at the "
            "top of the steps.")
    other = ("That night the wind rose, and the barometer fell by midnight while the spray reached the windows of "
             "the fourth landing.")
    manifest = write_book(tmp_path / "book.yaml", {"one": ("One", f"{half}\n\n***\n\n{other}")})
    chunks = plan_json(sim, manifest)["chapters"][0]["chunks"]
    assert [c["text"] for c in chunks] == [half, other], "the scene break should fall on the seam"
    seam = chunks[0]["pause_after"] + chunks[1]["pause_before"]
    assert seam >= 2.0, chunks  # the scene break's 2 s (and the paragraph's pause) are stitched silence
    ok(sim, "run", str(manifest))
    chapter = tmp_path / "build" / "book" / "01-one.mp3"
    before, tasks = mp3_seconds(chapter), audio_tasks(sim)

    edit_manifest(manifest, pauses={"scene_break_s": 4.0})
    plan = plan_json(sim, manifest)
    changes = plan["totals"]["changes"]
    assert (changes["to_render"], changes["reused"]) == (0, 2), changes
    retimed = plan["chapters"][0]["chunks"]
    assert retimed[0]["pause_after"] + retimed[1]["pause_before"] == pytest.approx(seam + 2.0)
    ok(sim, "stitch", str(manifest))
    assert audio_tasks(sim) == tasks
    assert mp3_seconds(chapter) - before == pytest.approx(2.0, abs=0.15)
