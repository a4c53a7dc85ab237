"""Each injected fault kind, the spec parser, runtime changes and seeded determinism."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from simulator_helpers import API_KEY, VOICE, Api

from pipeline.simulator import FaultProfile, Simulator, SimulatorConfig

FULL_SPEC = (
    "seed=7,429=0.1,5xx=0.05,drop_before=0.05,drop_after_create=0.05,fail=0.05,truncate=0.05,slow=0.02,"
    "expire=0.05,dead_link=0.03,no_link=0.02,status_alias=0.04,status_unknown=0.01"
)


def test_parse_reads_every_documented_key_and_round_trips() -> None:
    profile = FaultProfile.parse(FULL_SPEC + ",slow_s=0.5,retry_after_s=3")
    assert profile == FaultProfile(
        seed=7, rate_429=0.1, rate_5xx=0.05, drop_before=0.05, drop_after_create=0.05, fail=0.05,
        truncate=0.05, slow=0.02, expire=0.05, dead_link=0.03, no_link=0.02, status_alias=0.04,
        status_unknown=0.01, slow_s=0.5, retry_after_s=3,
    )  # fmt: skip
    assert FaultProfile.parse(profile.to_spec()) == profile
    assert FaultProfile.parse("") == FaultProfile.parse("none") == FaultProfile()
    assert FaultProfile.parse(" 429 = 0.5 , ") == FaultProfile(rate_429=0.5)


@pytest.mark.parametrize(
    ("spec", "needle"),
    [("boom=0.1", "unknown fault key"), ("429", "key=value"), ("429=lots", "bad value"), ("5xx=1.5", "from 0 to 1"),
     ("seed=1.5", "bad value"), ("slow_s=-1", "negative")],
)  # fmt: skip
def test_parse_rejects_bad_specs_clearly(spec: str, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        FaultProfile.parse(spec)


def test_injected_429_has_retry_after_and_creates_nothing(make_sim, make_api) -> None:
    sim = make_sim(faults=FaultProfile(rate_429=1.0, retry_after_s=2))
    response = make_api(sim).create_audio("Hello.")
    assert response.status_code == 429 and response.headers["Retry-After"] == "2"
    assert response.json()["code"] != 20000 and response.json()["data"] is None
    assert sim.ledger()["tasks_created"]["total"] == 0


def test_injected_5xx_on_api_and_downloads(make_sim, make_api) -> None:
    sim = make_sim()
    api = make_api(sim)
    data = api.submit_and_finish("Hello.")
    sim.set_faults(FaultProfile(rate_5xx=1.0))
    response = api.create_audio("Other.")
    assert response.status_code in (500, 502, 503)
    assert response.json()["code"] == response.status_code * 100 and response.json()["data"] is None
    assert api.files.get(data["audioUrl"]).status_code in (500, 502, 503)
    assert sim.ledger()["tasks_created"]["total"] == 1


def test_drop_before_closes_the_connection_and_creates_nothing(make_sim, make_api) -> None:
    sim = make_sim(faults=FaultProfile(drop_before=1.0))
    with pytest.raises(httpx.RemoteProtocolError):
        make_api(sim).create_audio("Hello.")
    ledger = sim.ledger()
    assert ledger["tasks_created"]["total"] == 0
    assert ledger["responses"]["POST /api/open-api/v1/soundCloning/audios"] == {"dropped": 1}


def test_drop_after_create_bills_a_task_the_client_never_hears_of(make_sim, make_api) -> None:
    sim = make_sim(faults=FaultProfile(drop_after_create=1.0))
    api = make_api(sim)
    for _ in range(2):  # a naive client retries the "failed" request
        with pytest.raises(httpx.RemoteProtocolError):
            api.create_audio("Paid twice.")
    ledger = sim.ledger()
    assert ledger["tasks_created"]["audio"] == 2 and ledger["billed_chars"] == 2 * len("Paid twice.")
    assert len(ledger["duplicates"]) == 1 and len(ledger["duplicates"][0]["task_ids"]) == 2
    assert {t["id"] for t in ledger["tasks"]} == set(ledger["duplicates"][0]["task_ids"])


def test_fail_fault_fails_and_refunds_the_task(make_sim, make_api) -> None:
    sim = make_sim(faults=FaultProfile(fail=1.0))
    api = make_api(sim)
    data = api.submit_and_finish("Will fail.")
    assert data["status"] == "failed" and "injected" in data["error"]
    ledger = sim.ledger()
    assert ledger["refunds"] == [{"task_id": data["id"], "kind": "audio", "chars": 10, "voice_fee": 1}]
    assert ledger["net_billed_chars"] == 0 and ledger["net_voice_fees"] == 0


def test_truncated_download_sends_fewer_bytes_than_content_length(make_sim, make_api) -> None:
    sim = make_sim()
    api = make_api(sim)
    url = api.submit_and_finish("A sentence long enough to make a few kilobytes of audio.")["audioUrl"]
    full = api.files.get(url).content
    sim.set_faults(FaultProfile(truncate=1.0))
    with api.files.stream("GET", url) as response:
        assert int(response.headers["Content-Length"]) == len(full)
        received = bytearray()
        with pytest.raises(httpx.RemoteProtocolError):
            for chunk in response.iter_bytes():
                received.extend(chunk)
    assert len(received) < len(full) and full.startswith(bytes(received))


def test_slow_response_is_delayed_and_stop_interrupts_it(make_sim, make_api) -> None:
    sim = make_sim(faults=FaultProfile(slow=1.0, slow_s=0.3))
    api = make_api(sim)
    started = time.perf_counter()
    assert api.query("audio_missing").status_code == 404
    assert time.perf_counter() - started >= 0.3
    sim.set_faults(FaultProfile(slow=1.0, slow_s=30.0))
    with pytest.raises(httpx.ReadTimeout):
        api.http.get("/api/open-api/v1/audios/audio_x", timeout=0.2)
    started = time.perf_counter()
    sim.stop()  # must not wait out the 30 s delay
    assert time.perf_counter() - started < 2.0


def test_expire_fault_refuses_a_fresh_link_with_403(make_sim, make_api) -> None:
    sim = make_sim()
    api = make_api(sim)
    url = api.submit_and_finish("Hello.")["audioUrl"]
    sim.set_faults(FaultProfile(expire=1.0))
    response = api.files.get(url)
    assert response.status_code == 403 and "expired" in response.json()["msg"]
    sim.set_faults(FaultProfile())
    assert api.files.get(url).status_code == 200


def test_faults_change_at_runtime_through_admin(make_sim, make_api) -> None:
    sim = make_sim()
    api = make_api(sim)
    with httpx.Client(base_url=sim.base_url) as admin:
        response = admin.post("/admin/faults", json={"spec": "429=1"})
        assert response.status_code == 200 and response.json()["data"]["spec"] == "seed=0,429=1"
        assert api.create_audio("x").status_code == 429
        bad = admin.post("/admin/faults", json={"spec": "nope=1"})
        assert bad.status_code == 400 and bad.json()["msg"].startswith("spec:")
        admin.post("/admin/faults", json={"spec": "none"})
        assert api.create_audio("x").status_code == 200
        assert admin.get("/admin/faults").json()["data"]["spec"] == "seed=0"


def _outcomes(spec: str, texts: list[str], *, parallel: bool) -> dict[str, str]:
    """Create one task per text, then query and download each; map text -> what happened."""
    config = SimulatorConfig(
        api_key=API_KEY, preload_voices=(VOICE,), faults=FaultProfile.parse(spec), task_base_s=0.0,
        task_s_per_char=0.0,
    )  # fmt: skip
    results: dict[str, str] = {}
    with Simulator(config) as sim:
        api = Api(sim)
        try:

            def run(text: str) -> None:
                steps = []
                try:
                    created = api.create_audio(text)
                    steps.append(str(created.status_code))
                    if created.status_code == 200:
                        task_id = created.json()["data"]["id"]
                        steps.append(task_id)
                        queried = api.query(task_id)
                        steps.append(str(queried.status_code))
                        if queried.status_code == 200 and queried.json()["data"]["status"] == "completed":
                            steps.append(str(api.files.get(queried.json()["data"]["audioUrl"]).status_code))
                        else:
                            steps.append(
                                queried.json()["data"]["status"] if queried.status_code == 200 else "-"
                            )
                except httpx.HTTPError as exc:
                    steps.append(type(exc).__name__)
                results[text] = " ".join(steps)

            if parallel:
                # reversed and on 6 threads: a different order and real interleaving
                with ThreadPoolExecutor(max_workers=6) as pool:
                    list(pool.map(run, reversed(texts)))
            else:
                for text in texts:
                    run(text)
        finally:
            api.close()
    return results


def test_same_seed_gives_same_faults_regardless_of_interleaving() -> None:
    spec = "seed=7,429=0.2,5xx=0.1,drop_before=0.1,drop_after_create=0.1,fail=0.2,truncate=0.0,expire=0.2"
    texts = [f"Sentence number {i}." for i in range(24)]
    sequential = _outcomes(spec, texts, parallel=False)
    parallel = _outcomes(spec, texts, parallel=True)
    assert sequential == parallel
    kinds = {outcome.split(" ")[0] for outcome in sequential.values()}
    assert {"200", "429", "RemoteProtocolError"} <= kinds  # the profile really injected faults
    other_seed = _outcomes(spec.replace("seed=7", "seed=8"), texts, parallel=False)
    assert other_seed != sequential


def test_fault_rate_is_roughly_the_configured_probability(make_sim, make_api) -> None:
    sim = make_sim(faults=FaultProfile(rate_429=0.3))
    api = make_api(sim)
    statuses = [api.query(f"audio_{i}").status_code for i in range(200)]
    assert 40 <= statuses.count(429) <= 80 and set(statuses) == {404, 429}


def test_retrying_the_same_request_gets_a_fresh_draw(make_sim: Callable[..., Simulator], make_api) -> None:
    sim = make_sim(faults=FaultProfile(rate_429=0.5, seed=3))
    api = make_api(sim)
    statuses = [api.create_audio("Same text every time.").status_code for _ in range(20)]
    assert 200 in statuses and 429 in statuses
