"""Bearer-key auth on the API origin; the files origin never needs it and records if it gets it."""

from __future__ import annotations

import httpx
import pytest
from simulator_helpers import AUDIO, QUERY, UPLOAD, Api

from pipeline.simulator import Simulator


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "sk-test"}, {"Authorization": "Bearer"},
     {"Authorization": "Basic sk-test"}],
)  # fmt: skip
@pytest.mark.parametrize(("method", "path"), [("POST", AUDIO), ("GET", QUERY + "audio_x"), ("POST", UPLOAD)])
def test_missing_or_bad_key_is_401(sim: Simulator, headers: dict[str, str], method: str, path: str) -> None:
    with httpx.Client(base_url=sim.base_url) as client:
        response = client.request(method, path, headers=headers, json={"modelId": "m", "contentText": "hi"})
    assert response.status_code == 401
    assert response.json()["msg"].startswith("Authorization:") and response.json()["data"] is None
    assert sim.ledger()["tasks_created"]["total"] == 0


def test_right_key_is_accepted_case_insensitive_scheme(sim: Simulator) -> None:
    with httpx.Client(base_url=sim.base_url) as client:
        response = client.post(
            AUDIO,
            headers={"Authorization": "bearer sk-test"},
            json={"modelId": "model_test", "contentText": "hi"},
        )
    assert response.status_code == 200


def test_files_origin_serves_without_a_key_and_records_authorization(sim: Simulator, api: Api) -> None:
    data = api.submit_and_finish("Hello.", subtitleEnable=True)
    assert api.files.get(data["audioUrl"]).status_code == 200
    assert sim.ledger()["files_origin"] == {
        "requests": 1, "requests_with_authorization": 0, "authorization_seen": False, "responses": {"200": 1},
    }  # fmt: skip
    leaked = api.files.get(data["subtitleFile"], headers={"Authorization": "Bearer sk-test"})
    assert leaked.status_code == 200  # served anyway, but noticed
    files = sim.ledger()["files_origin"]
    assert files["authorization_seen"] is True and files["requests_with_authorization"] == 1


def test_admin_endpoints_need_no_key(sim: Simulator) -> None:
    with httpx.Client(base_url=sim.base_url) as client:
        response = client.get("/admin/ledger")
    assert response.status_code == 200 and response.json()["data"]["tasks_created"]["total"] == 0
