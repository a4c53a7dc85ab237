"""Task lifecycle over real sockets, driven by a fake clock: queued -> processing -> completed | failed."""

from __future__ import annotations

import re
import time

import httpx
from simulator_helpers import API_KEY, AUDIO, T0, VOICE, Api

from pipeline.simulator import FaultProfile, Simulator, SimulatorConfig

TASK_ID_RE = re.compile(r"^audio_[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def test_task_moves_from_queued_to_processing_to_completed_with_the_clock(sim: Simulator, api: Api) -> None:
    text = "a" * 1000  # 1.0 s base + 0.001 s/char = 2.0 s in all; queued for the first 30 %
    created = api.create_audio(text).json()["data"]
    assert TASK_ID_RE.match(created["id"]), created["id"]
    assert created == {
        "id": created["id"], "object": "audio", "created": int(T0), "model": "soundCloningAudio",
        "status": "queued", "error": None,
    }  # fmt: skip
    sim.advance_clock(0.5)
    assert api.task(created["id"])["status"] == "queued"
    sim.advance_clock(0.2)
    data = api.task(created["id"])
    assert data["status"] == "processing" and "audioUrl" not in data
    sim.advance_clock(1.2)
    assert api.task(created["id"])["status"] == "processing"
    sim.advance_clock(0.2)
    data = api.task(created["id"])
    assert data["status"] == "completed"
    assert data["audioUrl"].startswith(sim.files_url + "/") and ".mp3" in data["audioUrl"]
    assert "subtitleFile" not in data and "modelId" not in data and data["error"] is None


def test_longer_text_takes_longer(sim: Simulator, api: Api) -> None:
    short = api.create_audio("a" * 10).json()["data"]["id"]
    long = api.create_audio("a" * 5000).json()["data"]["id"]
    sim.advance_clock(1.5)
    assert api.task(short)["status"] == "completed"
    assert api.task(long)["status"] in ("queued", "processing")  # 6 s in all


def test_subtitle_file_is_offered_only_when_asked(sim: Simulator, api: Api) -> None:
    with_subs = api.submit_and_finish("Hello.", subtitleEnable=True)
    without = api.submit_and_finish("Hello again.")
    assert with_subs["subtitleFile"].startswith(sim.files_url) and ".json" in with_subs["subtitleFile"]
    assert "subtitleFile" not in without


def test_failed_task_comes_in_a_success_envelope_with_an_error(make_sim, make_api) -> None:
    sim = make_sim(faults=FaultProfile(fail=1.0))
    api = make_api(sim)
    task_id = api.create_audio("Doomed text.").json()["data"]["id"]
    sim.advance_clock(10)
    response = api.query(task_id)
    assert response.status_code == 200 and response.json()["code"] == 20000
    data = response.json()["data"]
    assert data["status"] == "failed" and data["error"] and "audioUrl" not in data


def test_unknown_task_is_404_naming_the_id(api: Api) -> None:
    response = api.query("audio_00000000-0000-4000-8000-000000000000")
    assert response.status_code == 404
    assert response.json()["msg"].startswith("id:") and response.json()["data"] is None


def test_real_clock_small_task_round_trip_is_fast() -> None:
    config = SimulatorConfig(
        api_key=API_KEY, preload_voices=(VOICE,), task_base_s=0.05, task_s_per_char=0.00002
    )
    started = time.perf_counter()
    with (
        Simulator(config) as sim,
        httpx.Client(base_url=sim.base_url, headers={"Authorization": f"Bearer {API_KEY}"}) as client,
    ):
        task_id = client.post(AUDIO, json={"modelId": VOICE, "contentText": "A quick one."}).json()["data"][
            "id"
        ]
        while (data := client.get(f"/api/open-api/v1/audios/{task_id}").json()["data"])[
            "status"
        ] != "completed":
            time.sleep(0.01)
        audio = httpx.get(data["audioUrl"])
    assert audio.status_code == 200 and audio.content[:2] == b"\xff\xfb"
    assert time.perf_counter() - started < 1.0
