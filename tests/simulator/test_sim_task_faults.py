"""Task faults: dead_link, no_link, status_alias and status_unknown, decided once per task and kept by
every query and download of it; parsed, documented, reported in the ledger and seeded like the others."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from simulator_helpers import API_KEY, VOICE, Api

from pipeline.simulator import FaultProfile, Simulator, SimulatorConfig
from pipeline.simulator.faults import (
    COMPLETED_STATUS_ALIASES,
    FAILED_STATUS_ALIASES,
    TASK_FAULT_KEYS,
    UNKNOWN_STATUSES,
)

DOCUMENTED_STATUSES = {"queued", "processing", "completed", "failed"}


def ledger_task(sim: Simulator, task_id: str) -> dict:
    return next(t for t in sim.ledger()["tasks"] if t["id"] == task_id)


def test_dead_link_refuses_every_download_and_every_query_returns_the_same_urls(make_sim, make_api) -> None:
    sim = make_sim(faults=FaultProfile(dead_link=1.0), url_ttl_s=3600.0)
    api = make_api(sim)
    data = api.submit_and_finish("Hello there.", subtitleEnable=True)
    assert data["status"] == "completed" and data["error"] is None
    urls = (data["audioUrl"], data["subtitleFile"])
    for _ in range(2):
        for url in urls:
            refused = api.files.get(url)
            assert refused.status_code == 403 and refused.json()["data"] is None
        sim.advance_clock(7200.0)  # past the links' lifetime: still no fresh links
        again = api.task(data["id"])
        assert (again["status"], again["audioUrl"], again["subtitleFile"]) == ("completed", *urls)
    sim.set_faults(FaultProfile())  # decided at creation: clearing the profile does not revive the task
    assert api.files.get(urls[0]).status_code == 403 and api.task(data["id"])["audioUrl"] == urls[0]
    healthy = api.submit_and_finish("Another text.")
    assert api.files.get(healthy["audioUrl"]).status_code == 200
    ledger = sim.ledger()
    assert ledger["task_faults"]["dead_link"] == [data["id"]]
    assert ledger_task(sim, data["id"])["faults"] == ["dead_link"]
    assert ledger_task(sim, healthy["id"])["faults"] == []
    assert ledger["files_origin"]["responses"]["403"] == 5


def test_dead_link_on_a_preview_keeps_its_model_id_usable(make_sim, make_api) -> None:
    sim = make_sim(faults=FaultProfile(dead_link=1.0))
    api = make_api(sim)
    preview = api.finish(api.create_preview().json()["data"]["id"])
    assert preview["status"] == "completed" and preview["modelId"]
    assert api.files.get(preview["audioUrl"]).status_code == 403
    assert api.task(preview["id"])["audioUrl"] == preview["audioUrl"]
    sim.set_faults(FaultProfile())
    created = api.http.post(
        "/api/open-api/v1/soundCloning/audios", json={"modelId": preview["modelId"], "contentText": "Hi."}
    )
    assert created.status_code == 200, created.text


def test_no_link_completes_without_audio_or_subtitles(make_sim, make_api) -> None:
    sim = make_sim(faults=FaultProfile(no_link=1.0, dead_link=1.0))  # no_link wins: nothing to be dead
    api = make_api(sim)
    data = api.submit_and_finish("Purged audio.", subtitleEnable=True)
    for _ in range(3):
        assert data["status"] == "completed" and data["error"] is None
        assert "audioUrl" not in data and "subtitleFile" not in data
        sim.advance_clock(3600.0)
        data = api.task(data["id"])
    preview = api.finish(api.create_preview().json()["data"]["id"])
    assert preview["status"] == "completed" and preview["modelId"] and "audioUrl" not in preview
    ledger = sim.ledger()
    assert ledger["task_faults"]["no_link"] == [data["id"], preview["id"]]
    assert ledger["task_faults"]["dead_link"] == []
    assert ledger["refunds"] == [] and ledger["net_billed_chars"] > 0  # completed: billed, not refunded


def test_status_alias_reports_a_synonym_and_keeps_everything_else_valid(make_sim, make_api) -> None:
    sim = make_sim(faults=FaultProfile(status_alias=1.0))
    api = make_api(sim)
    created = api.create_audio("Hello, alias.", subtitleEnable=True).json()["data"]
    assert created["status"] == "queued"  # only the final status is replaced
    sim.advance_clock(0.5)
    assert api.task(created["id"])["status"] == "processing"
    sim.advance_clock(10.0)
    data = api.task(created["id"])
    assert data["status"] in COMPLETED_STATUS_ALIASES and data["error"] is None
    assert api.files.get(data["audioUrl"]).status_code == 200
    assert api.files.get(data["subtitleFile"]).status_code == 200
    assert all(api.task(created["id"])["status"] == data["status"] for _ in range(3))  # one word per task
    entry = ledger_task(sim, created["id"])
    assert (entry["status"], entry["reported_status"], entry["faults"]) == (
        "completed",
        data["status"],
        ["status_alias"],
    )

    sim.set_faults(FaultProfile(status_alias=1.0, fail=1.0))
    task_id = api.create_audio("This one fails.").json()["data"]["id"]
    sim.advance_clock(10.0)
    failed = api.task(task_id)
    assert failed["status"] in FAILED_STATUS_ALIASES and "injected" in failed["error"]
    assert "audioUrl" not in failed
    ledger = sim.ledger()
    assert [r["task_id"] for r in ledger["refunds"]] == [task_id]  # still a failure: refunded
    assert ledger_task(sim, task_id)["faults"] == ["fail", "status_alias"]


def test_status_alias_picks_every_synonym_deterministically() -> None:
    config = SimulatorConfig(
        api_key=API_KEY,
        preload_voices=(VOICE,),
        faults=FaultProfile(status_alias=1.0, seed=3),
        task_base_s=0.0,
        task_s_per_char=0.0,
    )
    seen: list[str] = []
    with Simulator(config) as sim:
        api = Api(sim)
        try:
            for i in range(40):
                seen.append(api.task(api.create_audio(f"Text {i}.").json()["data"]["id"])["status"])
        finally:
            api.close()
    assert set(seen) == set(COMPLETED_STATUS_ALIASES)


def test_status_unknown_never_reaches_a_documented_status(make_sim, make_api) -> None:
    sim = make_sim(faults=FaultProfile(status_unknown=1.0, fail=1.0, dead_link=1.0), max_active_tasks=1)
    api = make_api(sim)
    created = api.create_audio("Stuck for ever.").json()["data"]
    assert created["status"] == "queued"  # the create response keeps its documented shape
    word = api.task(created["id"])["status"]
    assert word in UNKNOWN_STATUSES and word not in DOCUMENTED_STATUSES
    for _ in range(5):
        sim.advance_clock(24 * 3600.0)
        data = api.task(created["id"])
        assert data["status"] == word and "audioUrl" not in data and data["error"] is None
    ledger = sim.ledger()
    assert ledger["task_faults"]["status_unknown"] == [created["id"]]
    assert ledger["task_faults"]["fail"] == [] and ledger["refunds"] == []  # never failed: not refunded
    entry = ledger_task(sim, created["id"])
    assert (entry["status"], entry["reported_status"], entry["faults"]) == (
        "processing",
        word,
        ["status_unknown"],
    )
    sim.set_faults(FaultProfile())
    assert api.create_audio("Next.").status_code == 200  # the stuck task no longer holds the only slot


def test_a_stuck_preview_never_makes_a_voice(make_sim, make_api) -> None:
    sim = make_sim(faults=FaultProfile(status_unknown=1.0))
    api = make_api(sim)
    task_id = api.create_preview().json()["data"]["id"]
    sim.advance_clock(3600.0)
    assert "modelId" not in api.task(task_id)
    assert [v["modelId"] for v in sim.ledger()["voices"]] == [VOICE]


@pytest.mark.parametrize("key", ["dead_link", "no_link", "status_alias", "status_unknown"])
def test_new_keys_parse_round_trip_and_validate(key: str) -> None:
    profile = FaultProfile.parse(f"seed=2,{key}=0.25")
    assert getattr(profile, key) == 0.25 and key in TASK_FAULT_KEYS
    assert FaultProfile.parse(profile.to_spec()) == profile
    with pytest.raises(ValueError, match="from 0 to 1"):
        FaultProfile.parse(f"{key}=2")


def test_the_docstring_table_documents_every_accepted_key() -> None:
    with pytest.raises(ValueError, match="accepted keys: ") as caught:
        FaultProfile.parse("boom=1")
    accepted = str(caught.value).split("accepted keys: ", 1)[1].split(", ")
    assert {"dead_link", "no_link", "status_alias", "status_unknown"} <= set(accepted)
    table = FaultProfile.__doc__ or ""
    for key in accepted:
        assert f"    ``{key}`` " in table, key


def _task_fault_outcomes(spec: str, texts: list[str], *, parallel: bool) -> dict[str, str]:
    """Create, query twice and download one task per text; map text -> what the client saw."""
    config = SimulatorConfig(
        api_key=API_KEY,
        preload_voices=(VOICE,),
        faults=FaultProfile.parse(spec),
        task_base_s=0.0,
        task_s_per_char=0.0,
    )
    results: dict[str, str] = {}
    with Simulator(config) as sim:
        api = Api(sim)
        try:

            def run(text: str) -> None:
                task_id = api.create_audio(text).json()["data"]["id"]
                views = [api.task(task_id) for _ in range(2)]
                # the links are signed afresh on each query (their expiry may tick over between the two);
                # everything else, and where the links point, must be the same
                unsigned = [{k: v.split("?", 1)[0] if k.endswith("Url") else v for k, v in view.items()}
                            for view in views]
                assert unsigned[0] == unsigned[1], "a task's faults must hold for every query"
                view = views[0]
                download = str(api.files.get(view["audioUrl"]).status_code) if "audioUrl" in view else "-"
                results[text] = f"{task_id} {view['status']} {download}"

            if parallel:
                with ThreadPoolExecutor(max_workers=6) as pool:
                    list(pool.map(run, reversed(texts)))
            else:
                for text in texts:
                    run(text)
        finally:
            api.close()
    return results


def test_task_faults_are_seeded_and_independent_of_order() -> None:
    spec = "seed=5,dead_link=0.25,no_link=0.25,status_alias=0.3,status_unknown=0.15"
    texts = [f"Sentence number {i}." for i in range(32)]
    sequential = _task_fault_outcomes(spec, texts, parallel=False)
    assert _task_fault_outcomes(spec, texts, parallel=True) == sequential
    outcomes = {" ".join(o.split(" ")[1:]) for o in sequential.values()}
    statuses = {o.split(" ")[0] for o in outcomes}
    assert {"completed 200", "completed 403", "completed -"} <= outcomes, outcomes  # healthy, dead, no link
    assert statuses & set(COMPLETED_STATUS_ALIASES) and statuses & set(UNKNOWN_STATUSES), statuses
    assert _task_fault_outcomes(spec.replace("seed=5", "seed=6"), texts, parallel=False) != sequential


def test_task_faults_do_not_touch_the_create_request(make_sim, make_api) -> None:
    sim = make_sim(faults=FaultProfile(dead_link=1.0, no_link=1.0, status_alias=1.0, status_unknown=1.0))
    response = make_api(sim).create_audio("Hello.")
    assert response.status_code == 200 and response.json()["code"] == 20000
    with httpx.Client(base_url=sim.base_url) as admin:
        spec = admin.get("/admin/faults").json()["data"]["spec"]
    assert spec == "seed=0,dead_link=1,no_link=1,status_alias=1,status_unknown=1"
    assert sim.ledger()["faults"] == spec
