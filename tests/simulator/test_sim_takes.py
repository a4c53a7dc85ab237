"""Takes: resubmitting an identical create body after downloading its audio renders a slightly different,
deterministic take whose subtitles still match its audio; the first take is the audio the simulator always
made, and audio nobody downloaded uses up no take."""

from __future__ import annotations

import math

import httpx
import numpy as np
import pytest
from simulator_helpers import VOICE, Api, decode_mp3, speech_regions

from pipeline.simulator import FaultProfile, Simulator
from pipeline.simulator.faults import stable_unit
from pipeline.simulator.voice import (
    LEADING_SILENCE_S,
    TakeVariation,
    VoiceSettings,
    espeak_available,
    espeak_command,
    subtitle_entries,
    synthesize,
    take_variation,
)

TOLERANCE_S = 0.05
TEXT = (
    "The rain had stopped by morning. She opened the window, listened, and smiled! Was anyone <#1.2#> there?"
)


def take_of(sim: Simulator, task_id: str) -> int:
    return next(int(t["take"]) for t in sim.ledger()["tasks"] if t["id"] == task_id)


def render_and_download(api: Api, text: str, **fields: object) -> tuple[dict, bytes]:
    """Submit, finish and download the audio: the way a client hears (and uses up) a take."""
    data = api.submit_and_finish(text, **fields)
    audio = api.files.get(data["audioUrl"])
    assert audio.status_code == 200
    return data, audio.content


def estimate_f0_hz(samples: np.ndarray, rate: int, region: tuple[float, float]) -> float:
    """The fundamental of a voiced region, from the strongest autocorrelation lag between 70 and 400 Hz."""
    start, end = region
    piece = samples[int((start + 0.02) * rate) : int((end - 0.02) * rate)].astype(np.float64)
    piece -= piece.mean()
    correlation = np.correlate(piece, piece, mode="full")[len(piece) - 1 :]
    low, high = rate // 400, rate // 70
    lag = low + int(np.argmax(correlation[low:high]))
    return rate / lag


def assert_subtitles_match_audio(mp3: bytes, entries: list[dict]) -> None:
    """Every word's onset and offset within 50 ms of the audio's (the check of test_sim_audio)."""
    samples, rate, _ = decode_mp3(mp3)
    words = [w for sentence in entries for w in sentence["timestamped_words"]]
    regions = speech_regions(samples, rate)
    assert len(regions) == len(words), (regions, words)
    for (start, end), word in zip(regions, words, strict=True):
        assert abs(start - word["time_begin"] / 1000) <= TOLERANCE_S, word
        assert abs(end - word["time_end"] / 1000) <= TOLERANCE_S, word
    assert abs(regions[0][0] - LEADING_SILENCE_S) <= TOLERANCE_S


def test_each_resubmission_renders_a_different_take_and_the_first_is_unchanged(
    sim: Simulator, api: Api
) -> None:
    takes, audio = zip(
        *(render_and_download(api, TEXT, subtitleEnable=True, subtitleType="word") for _ in range(3))
    )
    subtitles = [api.files.get(t["subtitleFile"]).json() for t in takes]
    assert len(set(audio)) == 3, "every take must sound different"
    assert [take_of(sim, t["id"]) for t in takes] == [1, 2, 3]
    # take 1 is exactly the audio of a plain render (what every earlier version of the simulator served)
    assert audio[0] == synthesize(TEXT, VoiceSettings(VOICE)).mp3
    assert audio[1] == synthesize(TEXT, VoiceSettings(VOICE, take=2)).mp3  # seeded by the take number only
    assert subtitles[0] != subtitles[1] != subtitles[2]
    for mp3, entries in zip(audio, subtitles, strict=True):
        assert_subtitles_match_audio(mp3, entries)


def test_takes_are_deterministic_across_simulators(make_sim, make_api) -> None:
    retakes = []
    for api in (make_api(make_sim()), make_api(make_sim(seed=99))):
        first = render_and_download(api, "Same words, again.")[1]
        retakes.append(render_and_download(api, "Same words, again.")[1])
        assert retakes[-1] != first
    assert retakes[0] == retakes[1]


def test_a_take_is_audibly_different_in_pitch_and_pace() -> None:
    text = "Hello there, keeper of the lamp. The night is long."
    base = synthesize(text, VoiceSettings("model_a"))
    base_samples, rate, _ = decode_mp3(base.mp3)
    base_f0 = estimate_f0_hz(base_samples, rate, speech_regions(base_samples, rate)[0])
    base_word = base.sentences[0].words[0]
    previous_f0 = base_f0
    for take in (2, 3, 4):
        speech = synthesize(text, VoiceSettings("model_a", take=take))
        samples, _, _ = decode_mp3(speech.mp3)
        f0 = estimate_f0_hz(samples, rate, speech_regions(samples, rate)[0])
        assert 0.025 <= abs(f0 / base_f0 - 1) <= 0.08, (take, f0, base_f0)  # 3-7 %: heard, not a new voice
        assert abs(f0 / previous_f0 - 1) >= 0.04, (take, f0, previous_f0)  # consecutive takes differ too
        word = speech.sentences[0].words[0]
        pace = (base_word.end_s - base_word.begin_s) / (word.end_s - word.begin_s)
        assert 0.025 <= abs(pace - 1) <= 0.07, (take, pace)  # 3-6 % faster or slower
        assert word.begin_s == base_word.begin_s == LEADING_SILENCE_S
        previous_f0 = f0


@pytest.mark.parametrize("take", [2, 3, 5])
@pytest.mark.parametrize("speed", [0.5, 2.0])
def test_every_take_keeps_its_subtitles_within_50_ms_of_its_speech(take: int, speed: float) -> None:
    speech = synthesize(TEXT, VoiceSettings("model_a", speed=speed, take=take))
    assert_subtitles_match_audio(speech.mp3, subtitle_entries(TEXT, speech.sentences, word_level=True))


def test_pause_markers_stay_exact_in_a_later_take() -> None:
    variation = take_variation(2)
    assert variation != TakeVariation()
    plain = synthesize("One two three. Four five six.", VoiceSettings("model_a", take=2)).sentences
    paused = synthesize("One two three. <#2.5#> Four five six.", VoiceSettings("model_a", take=2)).sentences
    gap_plain = plain[1].begin_s - plain[0].end_s
    gap_paused = paused[1].begin_s - paused[0].end_s
    assert gap_paused - gap_plain == pytest.approx(2.5 + 1 / (14.5 * variation.pace), abs=0.001)


def test_take_variations_are_small_seeded_and_none_for_the_first_take() -> None:
    assert take_variation(1) == TakeVariation(pitch=1.0, pace=1.0, pauses=1.0)
    variations = [take_variation(n) for n in range(2, 40)]
    assert [take_variation(n) for n in range(2, 40)] == variations
    for n, v in enumerate(variations, start=2):
        assert 0.03 <= abs(v.pitch - 1) <= 0.07 and (v.pitch > 1) == (n % 2 == 0)
        assert 0.03 <= abs(v.pace - 1) <= 0.06 and 0.10 <= abs(v.pauses - 1) <= 0.25
    assert len(set(variations)) == len(variations)
    with pytest.raises(ValueError, match="take"):
        VoiceSettings("model_a", take=0)


def test_espeak_takes_change_rate_and_pitch_and_the_first_take_is_unchanged() -> None:
    settings = VoiceSettings("model_x", speed=1.2, pitch=2, language="English")
    first = espeak_command("Hello.", settings, take_variation(1))
    # the command line every earlier version built: 175 wpm times speed, pitch 50 + 3/semitone + voice offset
    old_pitch = int(min(99, max(0, 50 + 3 * 2 + 30 * (stable_unit("f0", "model_x") - 0.5))))
    old_rate = round(175 * 1.2)
    assert first == [
        "espeak-ng",
        "--stdout",
        "-v",
        "en",
        "-s",
        str(old_rate),
        "-p",
        str(old_pitch),
        "--",
        "Hello.",
    ]
    for take in (2, 3):
        variation = take_variation(take)
        command = espeak_command("Hello.", settings, variation)
        rate, pitch = int(command[command.index("-s") + 1]), int(command[command.index("-p") + 1])
        assert rate == round(175 * 1.2 * variation.pace) and rate != round(175 * 1.2)
        expected_steps = 36 * math.log2(variation.pitch)
        assert pitch != old_pitch and (pitch > old_pitch) == (expected_steps > 0)


@pytest.mark.skipif(not espeak_available(), reason="espeak-ng is not installed")
def test_an_espeak_retake_differs_and_its_sentence_times_match_its_audio() -> None:
    text = "Real speech is here. <#0.8#> It has two sentences."
    first = synthesize(text, VoiceSettings("model_x", language="English"), backend="espeak")
    speech = synthesize(text, VoiceSettings("model_x", language="English", take=2), backend="espeak")
    assert speech.mp3 != first.mp3
    samples, rate, _ = decode_mp3(speech.mp3)
    regions = speech_regions(samples, rate, threshold_db=-40)
    for entry in subtitle_entries(text, speech.sentences, word_level=False):
        inside = [r for r in regions if entry["time_begin"] / 1000 - 0.05 <= r[0] <= entry["time_end"] / 1000]
        assert abs(inside[0][0] - entry["time_begin"] / 1000) <= TOLERANCE_S
        assert abs(inside[-1][1] - entry["time_end"] / 1000) <= TOLERANCE_S


def test_refused_requests_and_failed_tasks_do_not_use_up_a_take(make_sim, make_api) -> None:
    sim = make_sim(faults=FaultProfile(rate_429=1.0))
    api = make_api(sim)
    assert api.create_audio(TEXT).status_code == 429  # nothing created
    sim.set_faults(FaultProfile(fail=1.0))
    failed = api.submit_and_finish(TEXT)
    assert failed["status"] == "failed"
    sim.set_faults(FaultProfile())
    first, first_audio = render_and_download(api, TEXT)
    assert first_audio == synthesize(TEXT, VoiceSettings(VOICE)).mp3
    second, second_audio = render_and_download(api, TEXT)
    assert [take_of(sim, t["id"]) for t in (failed, first, second)] == [1, 1, 2]
    assert second_audio != first_audio


def test_audio_nobody_downloaded_uses_up_no_take(make_sim, make_api) -> None:
    """A lost create response, a dead or a missing link: the client never heard that audio, so the
    audio it finally gets is take 1, the same as a run without faults would give it."""
    sim = make_sim(faults=FaultProfile(drop_after_create=1.0))
    api = make_api(sim)
    with pytest.raises(httpx.RemoteProtocolError):
        api.create_audio(TEXT)  # created, billed and completed, but the client never learns its id
    for fault in (FaultProfile(dead_link=1.0), FaultProfile(no_link=1.0)):
        sim.set_faults(fault)
        data = api.submit_and_finish(TEXT)
        assert "audioUrl" not in data or api.files.get(data["audioUrl"]).status_code == 403
    sim.set_faults(FaultProfile())
    _, audio = render_and_download(api, TEXT)
    assert audio == synthesize(TEXT, VoiceSettings(VOICE)).mp3
    assert [t["take"] for t in sim.ledger()["tasks"]] == [1, 1, 1, 1]
    retake = api.submit_and_finish(TEXT)
    assert take_of(sim, retake["id"]) == 2
    assert api.files.head(retake["audioUrl"]).status_code == 200  # a HEAD hears nothing...
    assert take_of(sim, api.submit_and_finish(TEXT)["id"]) == 2  # ...so take 2 is still the next one


def test_a_different_body_starts_at_take_one(sim: Simulator, api: Api) -> None:
    one = api.submit_and_finish("Some words.")
    slower = api.submit_and_finish("Some words.", speed=0.9)
    assert take_of(sim, one["id"]) == take_of(sim, slower["id"]) == 1
