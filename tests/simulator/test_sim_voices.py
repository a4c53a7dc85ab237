"""modelId lifetime: 3 days unless a completed audio task activates it; unknown ids are rejected."""

from __future__ import annotations

import httpx
from simulator_helpers import T0, Api

from pipeline.simulator import Simulator

DAY_S = 24 * 3600.0


def create(api: Api, model_id: str) -> httpx.Response:
    return api.http.post(
        "/api/open-api/v1/soundCloning/audios", json={"modelId": model_id, "contentText": "Testing my voice."}
    )


def test_unknown_model_id_is_400(api: Api) -> None:
    response = create(api, "model_unknown")
    assert response.status_code == 400 and response.json()["msg"].startswith("modelId:")


def test_unused_voice_expires_after_three_days(sim: Simulator, api: Api) -> None:
    sim.register_voice("model_fresh")
    sim.advance_clock(3 * DAY_S - 10)
    assert create(api, "model_fresh").status_code == 200  # still inside the window (task not done yet)
    sim.register_voice("model_idle")
    sim.advance_clock(3 * DAY_S + 1)
    response = create(api, "model_idle")
    assert response.status_code == 400
    assert response.json()["msg"].startswith("modelId:") and "expired" in response.json()["msg"]


def test_first_completed_audio_task_activates_the_voice_for_good(sim: Simulator, api: Api) -> None:
    sim.register_voice("model_used")
    api.finish(create(api, "model_used").json()["data"]["id"])
    sim.advance_clock(30 * DAY_S)
    assert create(api, "model_used").status_code == 200


def test_a_failed_task_does_not_activate(sim: Simulator, api: Api) -> None:
    from pipeline.simulator import FaultProfile

    sim.register_voice("model_unlucky")
    sim.set_faults(FaultProfile(fail=1.0))
    assert api.finish(create(api, "model_unlucky").json()["data"]["id"])["status"] == "failed"
    sim.set_faults(FaultProfile())
    sim.advance_clock(4 * DAY_S)
    assert create(api, "model_unlucky").status_code == 400


def test_registered_created_at_and_activated_flags(sim: Simulator, api: Api) -> None:
    sim.register_voice("model_old", created_at=T0 - 4 * DAY_S)
    sim.register_voice("model_old_permanent", created_at=T0 - 400 * DAY_S, activated=True)
    assert create(api, "model_old").status_code == 400
    assert create(api, "model_old_permanent").status_code == 200


def test_preloaded_voices_never_expire(sim: Simulator, api: Api) -> None:
    sim.advance_clock(100 * DAY_S)
    assert create(api, "model_test").status_code == 200


def test_admin_voice_registration_and_clock(sim: Simulator, api: Api) -> None:
    with httpx.Client(base_url=sim.base_url) as admin:
        assert admin.post("/admin/voices", json={"modelId": "model_demo"}).status_code == 200
        assert admin.post("/admin/voices", json={"modelId": "model_idle"}).status_code == 200
        assert create(api, "model_demo").status_code == 200  # completes later and activates it
        now = admin.post("/admin/clock", json={"advance_s": 4 * DAY_S}).json()["data"]["now"]
        assert now == T0 + 4 * DAY_S
        assert create(api, "model_demo").status_code == 200
        assert create(api, "model_idle").status_code == 400
        bad = admin.post("/admin/voices", json={"modelId": ""})
        assert bad.status_code == 400 and bad.json()["msg"].startswith("modelId:")
        assert admin.post("/admin/clock", json={"advance_s": -1}).status_code == 400
        permanent = admin.post(
            "/admin/voices", json={"modelId": "model_p", "createdAt": T0, "activated": True}
        )
        assert permanent.json()["data"] == {"modelId": "model_p", "createdAt": T0, "activated": True}
        assert create(api, "model_p").status_code == 200
