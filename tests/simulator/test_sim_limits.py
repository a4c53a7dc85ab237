"""Configured limits: active tasks and requests per minute (429 + Retry-After), balance (402)."""

from __future__ import annotations

from simulator_helpers import VOICE


def test_max_active_tasks_gives_429_with_retry_after_until_one_finishes(make_sim, make_api) -> None:
    sim = make_sim(max_active_tasks=2, task_base_s=5.0, task_s_per_char=0.0)
    api = make_api(sim)
    assert api.create_audio("one").status_code == 200
    sim.advance_clock(1.0)
    assert api.create_audio("two").status_code == 200
    refused = api.create_audio("three")
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "4"  # the first task finishes 4 s from now
    assert refused.json()["data"] is None and "limit 2" in refused.json()["msg"]
    sim.advance_clock(4.0)
    assert api.create_audio("three").status_code == 200
    assert sim.ledger()["tasks_created"]["audio"] == 3


def test_requests_per_minute_gives_429_with_retry_after(make_sim, make_api) -> None:
    sim = make_sim(requests_per_minute=3)
    api = make_api(sim)
    statuses = [api.query("audio_missing").status_code for _ in range(3)]
    assert statuses == [404, 404, 404]
    sim.advance_clock(20.0)
    refused = api.create_audio("hello")
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "40"
    sim.advance_clock(40.0)
    assert api.create_audio("hello").status_code == 200
    assert sim.ledger()["tasks_created"]["total"] == 1


def test_balance_runs_out_with_402_and_refunds_restore_it(make_sim, make_api) -> None:
    from pipeline.simulator import FaultProfile

    sim = make_sim(balance=25.0, voice_fee_credits=5.0)
    api = make_api(sim)
    assert api.create_audio("abcdefghij").status_code == 200  # 10 chars + 5 fee = 15 credits
    refused = api.create_audio("abcdefghij")
    assert refused.status_code == 402 and refused.json()["msg"].startswith("balance:")
    assert sim.ledger()["balance"]["remaining"] == 10.0
    sim.set_faults(FaultProfile(fail=1.0))
    assert api.create_audio("abc").status_code == 200  # 3 + 5 = 8 credits, will fail
    assert sim.ledger()["balance"]["remaining"] == 2.0
    sim.advance_clock(10)
    assert sim.ledger()["balance"]["remaining"] == 10.0  # refunded once failed
    sim.set_faults(FaultProfile())
    assert (
        api.http.post(
            "/api/open-api/v1/soundCloning/audios", json={"modelId": VOICE, "contentText": "a <#9#> b"}
        ).status_code
        == 200
    )  # "a  b": 4 billed chars (marker free) + 5 = 9 <= 10
