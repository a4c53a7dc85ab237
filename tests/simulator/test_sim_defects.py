"""Silent defects (drop_sentence, long_silence, cut_short, clip): a take hit by one has, once downloaded and
decoded with the pipeline's own decoder, exactly what the ledger says; a clean take has none of it; the
same seed and requests give the same defects, and a retake gets a fresh draw."""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from simulator_helpers import API_KEY, ESPEAK_ENGINES, VOICE, Api, speech_regions

from pipeline.audio.ffmpeg import decode_pcm
from pipeline.simulator import FaultProfile, Simulator, SimulatorConfig
from pipeline.simulator.command import simulator_command
from pipeline.simulator.defects import apply_defects, plan_defects
from pipeline.simulator.faults import DEFECT_FAULT_KEYS, TASK_FAULT_KEYS
from pipeline.simulator.voice import (
    VoiceSettings,
    render,
    subtitle_entries,
    synthesize,
)

RATE = 32_000
TOLERANCE_S = 0.05
TEXT = (
    "The rain had stopped by morning. She opened the window, listened, and smiled! "
    "Was anyone <#1.2#> there? Nobody answered."
)
CLEAN = synthesize(TEXT, VoiceSettings(VOICE))  # the take a task of TEXT gets without faults
CLEAN_CUES = subtitle_entries(TEXT, CLEAN.sentences, word_level=False)
NEAR_FULL_SCALE = 10 ** (-0.5 / 20)  # decoded MP3 plateaus of clipped audio ripple just under full scale


def take(api: Api, tmp_path: Path, text: str = TEXT) -> tuple[str, np.ndarray, list[dict]]:
    """Create, finish and download an audio task: its id, decoded samples (float, 32 kHz) and subtitles."""
    data = api.submit_and_finish(text, subtitleEnable=True)
    path = tmp_path / f"{data['id']}.mp3"
    path.write_bytes(api.files.get(data["audioUrl"]).content)
    samples = decode_pcm(path, sample_rate_hz=RATE).astype(np.float32) / 32768.0
    return data["id"], samples, api.files.get(data["subtitleFile"]).json()


def ledger_entry(sim: Simulator, task_id: str) -> dict:
    return next(t for t in sim.ledger()["tasks"] if t["id"] == task_id)


def gaps(samples: np.ndarray) -> list[tuple[float, float]]:
    """The silences between sounds, as (start, end) seconds."""
    regions = speech_regions(samples, RATE)
    return [(a[1], b[0]) for a, b in itertools.pairwise(regions)]


def assert_cues_follow_the_audio(samples: np.ndarray, cues: list[dict]) -> None:
    regions = speech_regions(samples, RATE)
    for cue in cues:
        inside = [r for r in regions if cue["time_begin"] / 1000 - TOLERANCE_S <= r[0] <= cue["time_end"] / 1000]
        assert inside, cue
        assert abs(inside[0][0] - cue["time_begin"] / 1000) <= TOLERANCE_S, cue
        assert abs(inside[-1][1] - cue["time_end"] / 1000) <= TOLERANCE_S, cue


def assert_clean(samples: np.ndarray, cues: list[dict]) -> None:
    """None of the four defects: every sentence, at its own time, the whole clip, no long silence, no
    loud ending, nothing near full scale."""
    assert [(c["text"], c["time_begin"], c["time_end"]) for c in cues] == [
        (c["text"], c["time_begin"], c["time_end"]) for c in CLEAN_CUES
    ]
    assert len(samples) / RATE == pytest.approx(CLEAN.duration_s, abs=0.001)
    assert max(end - start for start, end in gaps(samples)) < 1.4  # the 1.2 s marker is the longest pause
    assert float(np.abs(samples[-1600:]).max()) < 0.01  # ends in silence
    assert int(np.count_nonzero(np.abs(samples) >= NEAR_FULL_SCALE)) == 0
    assert_cues_follow_the_audio(samples, cues)


def test_a_take_without_faults_has_none_of_the_defects(sim: Simulator, api: Api, tmp_path: Path) -> None:
    task_id, samples, cues = take(api, tmp_path)
    assert_clean(samples, cues)
    entry = ledger_entry(sim, task_id)
    assert entry["faults"] == [] and entry["defects"] == {}
    assert all(sim.ledger()["task_faults"][key] == [] for key in DEFECT_FAULT_KEYS)


def test_drop_sentence_loses_one_sentence_from_audio_and_subtitles(make_sim, make_api, tmp_path: Path) -> None:
    sim = make_sim(faults=FaultProfile(drop_sentence=1.0))
    task_id, samples, cues = take(make_api(sim), tmp_path)
    entry = ledger_entry(sim, task_id)
    assert entry["faults"] == ["drop_sentence"] and list(entry["defects"]) == ["drop_sentence"]
    drop = entry["defects"]["drop_sentence"]
    dropped = CLEAN_CUES[drop["sentence_index"]]
    assert (drop["text"], drop["text_begin"], drop["text_end"]) == (
        dropped["text"], dropped["text_begin"], dropped["text_end"],
    )  # fmt: skip
    assert TEXT[drop["text_begin"] : drop["text_end"]] == drop["text"]
    assert [c["text"] for c in cues] == [c["text"] for c in CLEAN_CUES if c is not dropped]
    # shorter by about one sentence (the sentence and one gap), and the later cues moved up by as much
    spoken_s = (dropped["time_end"] - dropped["time_begin"]) / 1000
    assert spoken_s < drop["removed_s"] < spoken_s + 0.6
    assert CLEAN.duration_s - len(samples) / RATE == pytest.approx(drop["removed_s"], abs=0.04)
    later = [c for c in CLEAN_CUES if c["text_begin"] > dropped["text_begin"]]
    for clean, shifted in zip(later, cues[-len(later) :] if later else []):
        assert shifted["time_begin"] == pytest.approx(clean["time_begin"] - 1000 * drop["removed_s"], abs=1)
    assert_cues_follow_the_audio(samples, cues)  # the cues are honest: only the text is short


def test_cut_short_stops_inside_loud_speech_while_the_subtitles_claim_everything(
    make_sim, make_api, tmp_path: Path
) -> None:
    sim = make_sim(faults=FaultProfile(cut_short=1.0))
    task_id, samples, cues = take(make_api(sim), tmp_path)
    entry = ledger_entry(sim, task_id)
    assert entry["faults"] == ["cut_short"]
    cut = entry["defects"]["cut_short"]
    duration = len(samples) / RATE
    assert duration == pytest.approx(cut["at_s"], abs=0.002)  # nothing after the cut
    assert cut["cues_end_s"] == pytest.approx(cues[-1]["time_end"] / 1000, abs=0.001)
    assert duration < cues[-1]["time_end"] / 1000 - 0.5
    begin, end = CLEAN.sentences[0].begin_s, CLEAN.sentences[-1].end_s
    assert begin + 0.4 * (end - begin) - 0.04 <= cut["at_s"] <= begin + 0.8 * (end - begin) + 0.04
    last = samples[-int(0.05 * RATE) :].reshape(10, -1)  # the last 50 ms, in 5 ms frames
    assert float(np.abs(last).max(axis=1).min()) > 0.05 and float(np.sqrt((last**2).mean())) > 0.03
    assert [(c["text"], c["time_begin"], c["time_end"]) for c in cues] == [
        (c["text"], c["time_begin"], c["time_end"]) for c in CLEAN_CUES
    ]


def test_long_silence_is_inserted_where_the_ledger_says_and_the_cues_make_room(
    make_sim, make_api, tmp_path: Path
) -> None:
    sim = make_sim(faults=FaultProfile(long_silence=1.0, long_silence_s=2.5))
    task_id, samples, cues = take(make_api(sim), tmp_path)
    entry = ledger_entry(sim, task_id)
    assert entry["faults"] == ["long_silence"]
    silence = entry["defects"]["long_silence"]
    assert silence["duration_s"] == 2.5 and silence["boundary"] == "sentence"
    assert silence["text_offset"] in [c["text_end"] for c in CLEAN_CUES[:-1]]
    assert "<#" not in TEXT[silence["text_offset"] : silence["text_offset"] + 3]  # not next to a marker
    long_gaps = [(a, b) for a, b in gaps(samples) if b - a > 2.0]
    assert len(long_gaps) == 1
    start, stop = long_gaps[0]
    assert start <= silence["at_s"] and silence["at_s"] + 2.5 <= stop <= start + 2.5 + 0.6
    quiet = samples[int(silence["at_s"] * RATE) + 200 : int((silence["at_s"] + 2.5) * RATE) - 200]
    assert float(np.abs(quiet).max()) < 1e-3  # as quiet as the clip's own pauses (digital silence)
    assert len(samples) / RATE == pytest.approx(CLEAN.duration_s + 2.5, abs=0.04)
    for clean, shifted in zip(CLEAN_CUES, cues, strict=True):
        moved = 2500 if clean["text_begin"] > silence["text_offset"] else 0
        assert shifted["time_begin"] == pytest.approx(clean["time_begin"] + moved, abs=0.01)
    assert_cues_follow_the_audio(samples, cues)


def test_clip_puts_many_samples_at_full_scale_and_leaves_the_cues(make_sim, make_api, tmp_path: Path) -> None:
    sim = make_sim(faults=FaultProfile(clip=1.0))
    task_id, samples, cues = take(make_api(sim), tmp_path)
    entry = ledger_entry(sim, task_id)
    assert entry["faults"] == ["clip"]
    clip = entry["defects"]["clip"]
    assert clip["gain_db"] == 12.0 and clip["clipped_samples"] > 2000
    assert int(np.count_nonzero(np.abs(samples) >= NEAR_FULL_SCALE)) > 1000
    assert int(np.count_nonzero(np.abs(samples) >= 32767 / 32768)) > 0
    assert len(samples) / RATE == pytest.approx(CLEAN.duration_s, abs=0.001)
    assert [(c["time_begin"], c["time_end"]) for c in cues] == [(c["time_begin"], c["time_end"]) for c in CLEAN_CUES]


def test_all_four_combine_in_the_documented_order(make_sim, make_api, tmp_path: Path) -> None:
    sim = make_sim(faults=FaultProfile(drop_sentence=1.0, long_silence=1.0, cut_short=1.0, clip=1.0))
    task_id, samples, cues = take(make_api(sim), tmp_path)
    entry = ledger_entry(sim, task_id)
    assert entry["faults"] == list(DEFECT_FAULT_KEYS) == list(entry["defects"])
    defects = entry["defects"]
    assert len(cues) == len(CLEAN_CUES) - 1
    assert defects["long_silence"]["at_s"] + 3.0 < defects["cut_short"]["at_s"]  # the cut falls after it
    assert len(samples) / RATE == pytest.approx(defects["cut_short"]["at_s"], abs=0.002)
    assert any(b - a > 3.0 for a, b in gaps(samples))
    assert int(np.count_nonzero(np.abs(samples) >= NEAR_FULL_SCALE)) > 200
    assert float(np.abs(samples[-800:]).max()) > 0.3
    ledger = sim.ledger()
    assert all(ledger["task_faults"][key] == [task_id] for key in DEFECT_FAULT_KEYS)


def test_a_defect_the_text_cannot_have_is_not_recorded(make_sim, make_api, tmp_path: Path) -> None:
    sim = make_sim(faults=FaultProfile(drop_sentence=1.0, long_silence=1.0, long_silence_s=1.5))
    api = make_api(sim)
    one = "Only one sentence here, with several plain words"
    task_id, samples, cues = take(api, tmp_path, one)  # one sentence: no drop; the silence between words
    entry = ledger_entry(sim, task_id)
    assert entry["faults"] == ["long_silence"] and entry["defects"]["long_silence"]["boundary"] == "word"
    assert [c["text"] for c in cues] == [one]
    assert any(1.5 <= b - a <= 1.5 + 0.3 for a, b in gaps(samples))
    assert_cues_follow_the_audio(samples, cues)
    marked = "Hello <#0.5#> world"  # its only boundary holds a marker: no silence either
    task_id, samples, cues = take(api, tmp_path, marked)
    assert ledger_entry(sim, task_id)["faults"] == [] and ledger_entry(sim, task_id)["defects"] == {}


def test_defects_spare_previews_and_tasks_whose_audio_cannot_be_downloaded(make_sim, make_api) -> None:
    everything = {"drop_sentence": 1.0, "long_silence": 1.0, "cut_short": 1.0, "clip": 1.0}
    sim = make_sim(faults=FaultProfile(**everything))
    api = make_api(sim)
    preview = api.finish(api.create_preview().json()["data"]["id"])
    assert ledger_entry(sim, preview["id"])["faults"] == []
    for fault in ("fail", "no_link", "dead_link", "status_unknown"):
        sim.set_faults(FaultProfile(**everything, **{fault: 1.0}))
        task_id = api.create_audio(f"Two sentences. This time with {fault}.").json()["data"]["id"]
        assert ledger_entry(sim, task_id)["faults"] == [fault] and ledger_entry(sim, task_id)["defects"] == {}


def _defects_seen(spec: str, texts: list[str]) -> list[tuple[list[str], dict, str]]:
    """Each text created and downloaded once, then the first one again (a retake): per task, its faults,
    its defect details and the sha256 of its audio."""
    config = SimulatorConfig(
        api_key=API_KEY, preload_voices=(VOICE,), faults=FaultProfile.parse(spec), task_base_s=0.0, task_s_per_char=0.0
    )
    with Simulator(config) as sim:
        api = Api(sim)
        try:
            digests = {}
            for text in [*texts, texts[0]]:
                data = api.task(api.create_audio(text).json()["data"]["id"])
                digests[data["id"]] = hashlib.sha256(api.files.get(data["audioUrl"]).content).hexdigest()
            return [(t["faults"], t["defects"], digests[t["id"]]) for t in sim.ledger()["tasks"]]
        finally:
            api.close()


def test_the_same_seed_and_requests_give_the_same_defects_and_a_retake_a_fresh_draw() -> None:
    texts = [f"Take number {n} begins. It goes on, and on. Then it ends." for n in range(8)]
    spec = "seed=11,drop_sentence=0.5,long_silence=0.5,cut_short=0.5,clip=0.5,long_silence_s=1"
    first = _defects_seen(spec, texts)
    assert _defects_seen(spec, texts) == first
    assert len({tuple(faults) for faults, _, _ in first}) >= 4  # a real mix, not all or nothing
    assert first[-1][:2] != first[0][:2]  # the retake of the first text drew its own defects
    assert _defects_seen(spec.replace("seed=11", "seed=12"), texts) != first


def test_the_spec_keys_parse_round_trip_and_show_in_the_help() -> None:
    spec = "seed=4,drop_sentence=0.1,long_silence=0.2,cut_short=0.3,clip=0.4,long_silence_s=2.5"
    profile = FaultProfile.parse(spec)
    assert (profile.drop_sentence, profile.long_silence, profile.cut_short, profile.clip) == (0.1, 0.2, 0.3, 0.4)
    assert profile.long_silence_s == 2.5 and profile.to_spec() == spec and FaultProfile.parse(spec) == profile
    assert FaultProfile().long_silence_s == 3.0 and set(DEFECT_FAULT_KEYS) <= set(TASK_FAULT_KEYS)
    for bad, needle in (("clip=1.5", "from 0 to 1"), ("long_silence_s=0", "above 0"), ("long_silence_s=x", "bad")):
        with pytest.raises(ValueError, match=needle):
            FaultProfile.parse(bad)
    help_text = CliRunner().invoke(simulator_command, ["--help"]).output
    assert all(key in help_text for key in (*DEFECT_FAULT_KEYS, "long_silence_s"))


@pytest.mark.parametrize("backend", ESPEAK_ENGINES)
def test_real_speech_gets_the_same_defects(backend: str, tmp_path: Path) -> None:
    text = "A single sentence of real speech that goes on for quite a while"
    samples, sentences = render(text, VoiceSettings("model_x", language="English"), backend=backend)
    plan = plan_defects(text, long_silence=0.5, long_silence_s=1.0, cut_short=0.5)
    assert plan.faults == ("long_silence", "cut_short")
    speech, details = apply_defects(samples, sentences, text, plan)
    path = tmp_path / "take.mp3"
    path.write_bytes(speech.mp3)
    decoded = decode_pcm(path, sample_rate_hz=RATE).astype(np.float32) / 32768.0
    assert len(decoded) / RATE == pytest.approx(details["cut_short"]["at_s"], abs=0.002)
    at = details["long_silence"]["at_s"]
    assert float(np.abs(decoded[int(at * RATE) + 200 : int((at + 1.0) * RATE) - 200]).max()) < 1e-3
    assert float(np.abs(decoded[-int(0.05 * RATE) :]).reshape(10, -1).max(axis=1).min()) > 0.05
