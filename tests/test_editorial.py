"""Editorial workflow against the simulator: one-sentence edits re-render exactly one chunk, retakes are
kept and chosen, a chapter run touches only its chapter, and clean never removes a selected take."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline import runner
from pipeline.audio.ffmpeg import decode_pcm
from pipeline.errors import ConfigError
from pipeline.finishing import chunk_audio
from pipeline.models import ChunkAudio
from pipeline.simulator import Simulator, SimulatorConfig
from pipeline.store import Journal

API_KEY = "sk-editorial"
MODEL = "model_editor"
RATE_HZ = 8000  # analysis rate: enough to line up speech, cheap to decode

SENTENCES = [f"Sentence number {i} tells of the keeper, the lamp and the long night at sea." for i in range(36)]


def paragraphs(sentences: list[str]) -> str:
    return "\n\n".join(" ".join(sentences[i:i + 5]) for i in range(0, len(sentences), 5))


@pytest.fixture
def sim() -> Iterator[Simulator]:
    config = SimulatorConfig(api_key=API_KEY, task_base_s=0.02, task_s_per_char=0.0, preload_voices=(MODEL,))
    with Simulator(config, host="127.0.0.1", port=0, files_port=0) as simulator:
        yield simulator


def write_book(folder: Path, text: str, *, speed: float = 1.0) -> Path:
    (folder / "one.txt").write_text(text, encoding="utf-8")
    (folder / "two.txt").write_text("The second chapter is short. It has two sentences.", encoding="utf-8")
    manifest = {
        "title": "Editorial", "voice": {"model_id": MODEL},
        "chunking": {"max_chars": 600},
        "audio": {"m4b": False, "profile": "none"},
        "api": {"poll_interval_s": 0.02, "backoff_base_s": 0.01, "backoff_cap_s": 0.05,
                "requests_per_minute": 100000},
        "chapters": [{"id": "one", "source": "one.txt"},
                     {"id": "two", "source": "two.txt", "voice": {"speed": speed}}],
    }
    path = folder / "book.yaml"
    path.write_text(yaml.safe_dump(manifest), encoding="utf-8")
    return path


def render(sim: Simulator, manifest: Path, *chapters: str) -> runner.RunReport:
    report = runner.run([runner.load(manifest)], options=runner.RunOptions(base_url=sim.base_url, chapter_ids=chapters),
                        env={"SOUNDCLONE_API_KEY": API_KEY})
    assert report.ok, [b.failures for b in report.books]
    return report


def selected_audio_of(manifest: Path, chapter_id: str) -> list[ChunkAudio] | None:
    book = runner.plan(runner.load(manifest))
    with Journal.open(book.manifest.output) as journal:
        return chunk_audio(book.manifest, book.chapter(chapter_id), journal.selected_takes())


def audio_tasks(sim: Simulator) -> int:
    return int(sim.ledger()["tasks_created"]["audio"])


def envelope(samples: np.ndarray, frame: int = RATE_HZ // 100) -> np.ndarray:
    """RMS per 10 ms: robust to the sub-sample shifts and lossy re-encoding between two renders."""
    usable = len(samples) - len(samples) % frame
    frames = samples[:usable].astype(np.float64).reshape(-1, frame)
    return np.sqrt((frames * frames).mean(axis=1))


def unchanged_edges_s(old: np.ndarray, new: np.ndarray, window: int = 100) -> tuple[float, float]:
    """Seconds at the start and at the end over which two chapter renders still match (up to gain)."""
    a, b = envelope(old), envelope(new)
    # The two files end a few ms apart (MP3 padding): line their ends up before comparing from the end.
    span, slack = 6 * RATE_HZ, RATE_HZ // 20
    old_end = old[len(old) - span - slack:len(old) - slack].astype(np.float64)
    lag = max(range(-slack, slack + 1), key=lambda k: float(np.dot(
        old_end, new[len(new) - span - slack + k:len(new) - slack + k].astype(np.float64))))
    a_tail, b_tail = envelope(old[:len(old) - max(lag, 0)]), envelope(new[:len(new) + min(lag, 0)])

    def same(x: np.ndarray, y: np.ndarray) -> bool:
        if x.max() < 30 and y.max() < 30:
            return True  # room tone in both
        x, y = x - x.mean(), y - y.mean()
        denominator = np.sqrt((x * x).sum() * (y * y).sum())
        return bool(denominator) and (x * y).sum() / denominator > 0.8

    def run_length(x: np.ndarray, y: np.ndarray) -> int:
        count = 0
        while (count + 1) * window <= min(len(x), len(y)) and same(x[count * window:(count + 1) * window],
                                                                   y[count * window:(count + 1) * window]):
            count += 1
        return count

    return run_length(a, b) * window / 100, run_length(a_tail[::-1], b_tail[::-1]) * window / 100


@pytest.mark.parametrize("position", ["start", "middle", "end"])
def test_a_one_sentence_edit_bills_one_task_and_changes_the_chapter_only_around_it(
        sim: Simulator, tmp_path: Path, position: str) -> None:
    manifest = write_book(tmp_path, paragraphs(SENTENCES))
    render(sim, manifest)
    before = audio_tasks(sim)
    chapter = tmp_path / "build" / "book" / "01-one.mp3"
    old_audio = decode_pcm(chapter, sample_rate_hz=RATE_HZ)
    old_plan = runner.plan(runner.load(manifest)).chapter("one").chunks

    index = {"start": 1, "middle": 18, "end": 34}[position]
    edited = list(SENTENCES)
    edited[index] = "This sentence was rewritten by the editor after listening."
    write_book(tmp_path, paragraphs(edited))
    preview = runner.plan(runner.load(manifest))
    change = next(c for c in preview.changes if c.chapter_id == "one")
    assert (change.to_render, change.dropped) == (1, 1)

    render(sim, manifest)
    assert audio_tasks(sim) - before == 1, "exactly one new task for a one-sentence edit"
    new_plan = runner.plan(runner.load(manifest)).chapter("one").chunks
    assert len(new_plan) == len(old_plan)
    changed = [c for c in new_plan if c.key not in {o.key for o in old_plan}]
    assert len(changed) == 1

    new_audio = decode_pcm(chapter, sample_rate_hz=RATE_HZ)
    head, tail = unchanged_edges_s(old_audio, new_audio)
    total = len(new_audio) / RATE_HZ
    edited_chunk_s = len(changed[0].text) / 10  # generous: the simulator reads ~14 characters a second
    assert total - head - tail <= edited_chunk_s + 2.0, (position, head, tail, total)


def test_a_voice_change_on_one_chapter_re_renders_only_that_chapter(sim: Simulator, tmp_path: Path) -> None:
    manifest = write_book(tmp_path, paragraphs(SENTENCES[:10]))
    render(sim, manifest)
    first = tmp_path / "build" / "book" / "01-one.mp3"
    stamp = first.stat().st_mtime_ns
    before = audio_tasks(sim)
    write_book(tmp_path, paragraphs(SENTENCES[:10]), speed=1.3)
    render(sim, manifest)
    assert audio_tasks(sim) - before == 1  # chapter two is one chunk
    assert first.stat().st_mtime_ns == stamp, "chapter one was not touched"


def test_run_with_chapter_touches_only_that_chapter(sim: Simulator, tmp_path: Path) -> None:
    manifest = write_book(tmp_path, paragraphs(SENTENCES[:10]))
    render(sim, manifest, "two")
    output = tmp_path / "build" / "book"
    assert (output / "02-two.mp3").exists() and not (output / "01-one.mp3").exists()
    status = {c.id: c for c in runner.status(runner.load(manifest)).chapters}
    assert status["one"].by_state == {"pending": len(runner.plan(runner.load(manifest)).chapter("one").chunks)}


def test_retake_keeps_both_takes_uses_the_chosen_one_and_keeps_the_choice(sim: Simulator, tmp_path: Path) -> None:
    manifest = write_book(tmp_path, paragraphs(SENTENCES[:10]))
    render(sim, manifest)
    before = audio_tasks(sim)
    env = {"SOUNDCLONE_API_KEY": API_KEY}
    chunk, take, _ = runner.retake(runner.load(manifest), chapter_id="one", words="sentence NUMBER 7 tells", options=runner.RunOptions(base_url=sim.base_url), env=env)
    assert take == 2 and audio_tasks(sim) - before == 1
    takes = [t for t in runner.list_takes(runner.load(manifest), chapter_id="one") if t.chunk_index == chunk.index]
    assert [(t.take, t.selected) for t in takes] == [(1, False), (2, True)]
    assert all(t.audio and t.audio.is_file() for t in takes)

    # the chapter is built from the selected take: the assembly's fingerprint names its file
    render(sim, manifest)
    assert audio_tasks(sim) - before == 1, "a rerun neither re-renders nor drops the retake"
    takes = [t for t in runner.list_takes(runner.load(manifest), chapter_id="one") if t.chunk_index == chunk.index]
    assert [t.selected for t in takes] == [False, True]
    selected_audio = selected_audio_of(manifest, "one")
    assert selected_audio is not None and selected_audio[chunk.index].audio_path.name.endswith(".take2.mp3")

    runner.use_take(runner.load(manifest), chapter_id="one", index=chunk.index, take=1)
    selected_audio = selected_audio_of(manifest, "one")
    assert selected_audio is not None and ".take" not in selected_audio[chunk.index].audio_path.name

    # clean: an edit drops a chunk; its files go, the takes of chunks still in use stay
    runner.use_take(runner.load(manifest), chapter_id="one", index=chunk.index, take=2)
    write_book(tmp_path, paragraphs(["A brand new opening sentence replaces the old one.", *SENTENCES[1:10]]))
    render(sim, manifest)
    removed = runner.clean(runner.load(manifest)).cache
    assert removed and all(".take" not in p.name for p in removed)
    assert all(t.audio and t.audio.is_file() for t in runner.list_takes(runner.load(manifest), chapter_id="one")
               if t.chunk_index == chunk.index)


def test_retake_by_words_that_match_nothing_is_a_clear_error(sim: Simulator, tmp_path: Path) -> None:
    manifest = write_book(tmp_path, paragraphs(SENTENCES[:10]))
    render(sim, manifest)
    with pytest.raises(ConfigError, match="no chunk"):
        runner.retake(runner.load(manifest), chapter_id="one", words="nowhere to be found", options=runner.RunOptions(base_url=sim.base_url), env={"SOUNDCLONE_API_KEY": API_KEY})


def test_a_chapter_run_leaves_other_chapters_alone_even_after_a_book_wide_change(
        sim: Simulator, tmp_path: Path) -> None:
    manifest = write_book(tmp_path, paragraphs(SENTENCES[:10]))
    render(sim, manifest)
    output = tmp_path / "build" / "book"
    one, two = output / "01-one.mp3", output / "02-two.mp3"
    stamps = one.stat().st_mtime_ns, two.stat().st_mtime_ns
    data = yaml.safe_load(manifest.read_text(encoding="utf-8"))
    data["audio"]["head_s"] = 1.0  # a stitch-only change that concerns every chapter
    manifest.write_text(yaml.safe_dump(data), encoding="utf-8")
    before = audio_tasks(sim)
    render(sim, manifest, "two")
    assert audio_tasks(sim) == before
    assert one.stat().st_mtime_ns == stamps[0], "chapter one was rebuilt by a run of chapter two"
    assert two.stat().st_mtime_ns != stamps[1], "chapter two was not re-stitched with the new head"
