"""The ledger: billed characters without markers, voice fees, refunds, duplicates, request counts."""

from __future__ import annotations

import httpx
from simulator_helpers import Api

from pipeline.simulator import FaultProfile, Simulator
from pipeline.simulator.validation import DEFAULT_PREVIEW_TEXT


def test_billed_characters_are_code_points_without_pause_markers(sim: Simulator, api: Api) -> None:
    api.create_audio("Hello <#1.5#> world")  # "Hello  world": 12 code points
    api.create_audio("你好<#0.5#>世界")  # 4 code points
    ledger = sim.ledger()
    assert ledger["billed_chars"] == 16 and ledger["voice_fees"] == 2
    assert ledger["tasks_created"] == {"preview": 0, "audio": 2, "total": 2}


def test_preview_bills_its_text_or_the_built_in_line_and_no_voice_fee(sim: Simulator, api: Api) -> None:
    api.create_preview(contentText="Hi there")
    api.create_preview()
    ledger = sim.ledger()
    assert ledger["billed_chars"] == 8 + len(DEFAULT_PREVIEW_TEXT)
    assert ledger["voice_fees"] == 0 and ledger["tasks_created"]["preview"] == 2


def test_duplicates_group_identical_billed_submissions(sim: Simulator, api: Api) -> None:
    first = api.create_audio("Same words.").json()["data"]["id"]
    second = api.create_audio("Same words.").json()["data"]["id"]
    api.create_audio("Same words.", speed=1.5)  # different options: a different task
    api.create_audio("Other words.")
    (duplicate,) = sim.ledger()["duplicates"]
    assert duplicate["task_ids"] == [first, second]
    assert (
        duplicate["times_billed"] == 2
        and duplicate["extra_chars"] == 11
        and duplicate["extra_voice_fees"] == 1
    )
    assert duplicate["content_text"] == "Same words." and duplicate["options"]["speed"] == 1.0


def test_a_refunded_failure_is_not_a_duplicate(sim: Simulator, api: Api) -> None:
    sim.set_faults(FaultProfile(fail=1.0))
    failed = api.create_audio("Retry me.").json()["data"]["id"]
    sim.set_faults(FaultProfile())
    api.create_audio("Retry me.")
    assert len(sim.ledger()["duplicates"]) == 1  # both billed while the first is still running
    api.finish(failed)
    ledger = sim.ledger()
    assert ledger["duplicates"] == []
    assert ledger["refunds"] == [{"task_id": failed, "kind": "audio", "chars": 9, "voice_fee": 1}]
    assert ledger["net_billed_chars"] == 9 and ledger["refunded_chars"] == 9


def test_request_counts_per_endpoint(sim: Simulator, api: Api) -> None:
    task_id = api.create_audio("Count me.").json()["data"]["id"]
    api.query(task_id)
    api.query(task_id)
    api.create_audio("x", speed=9)
    with httpx.Client(base_url=sim.base_url) as anonymous:
        anonymous.get("/api/open-api/v1/audios/" + task_id)
        anonymous.get("/admin/ledger")  # admin calls are not counted
    ledger = sim.ledger()
    assert ledger["requests"] == {
        "POST /api/open-api/v1/soundCloning/audios": 2,
        "GET /api/open-api/v1/audios/{id}": 3,
    }
    assert ledger["responses"]["POST /api/open-api/v1/soundCloning/audios"] == {"200": 1, "400": 1}
    assert ledger["responses"]["GET /api/open-api/v1/audios/{id}"] == {"200": 2, "401": 1}


def test_admin_ledger_matches_the_python_view(sim: Simulator, api: Api) -> None:
    api.create_audio("Hello.")
    with httpx.Client(base_url=sim.base_url) as admin:
        payload = admin.get("/admin/ledger").json()
    assert payload["code"] == 20000
    assert payload["data"]["billed_chars"] == sim.ledger()["billed_chars"] == 6
    assert payload["data"]["tasks"][0]["status"] == "queued"
