"""Links on the files origin: they expire with the clock, re-querying gives fresh ones, forgeries fail."""

from __future__ import annotations

from simulator_helpers import Api


def test_expired_link_is_403_and_a_new_query_gives_a_fresh_link(make_sim, make_api) -> None:
    sim = make_sim(url_ttl_s=3600.0)
    api = make_api(sim)
    data = api.submit_and_finish("Hello there.", subtitleEnable=True)
    assert api.files.get(data["audioUrl"]).status_code == 200
    sim.advance_clock(3601.0)
    for url in (data["audioUrl"], data["subtitleFile"]):
        expired = api.files.get(url)
        assert expired.status_code == 403 and "expired" in expired.json()["msg"]
    fresh = api.task(data["id"])
    assert fresh["audioUrl"] != data["audioUrl"]
    assert api.files.get(fresh["audioUrl"]).status_code == 200
    assert api.files.get(fresh["subtitleFile"]).status_code == 200


def test_default_link_lifetime_is_three_days(api: Api) -> None:
    data = api.submit_and_finish("Hello.")
    api.sim.advance_clock(3 * 24 * 3600.0 - 5)
    assert api.files.get(data["audioUrl"]).status_code == 200
    api.sim.advance_clock(10)
    assert api.files.get(data["audioUrl"]).status_code == 403


def test_forged_or_stripped_links_are_refused(api: Api) -> None:
    url = api.submit_and_finish("Hello.")["audioUrl"]
    path, _, query = url.partition("?")
    expires = int(query.split("expires=")[1].split("&")[0])
    assert api.files.get(path).status_code == 403
    assert api.files.get(url.replace(f"expires={expires}", f"expires={expires + 999}")).status_code == 403
    other = api.submit_and_finish("Another.")["audioUrl"]
    assert api.files.get(other.split("?")[0] + "?" + query).status_code == 403  # signature of another file


def test_same_task_downloads_identical_bytes(api: Api) -> None:
    data = api.submit_and_finish("Deterministic audio.")
    first = api.files.get(data["audioUrl"]).content
    second = api.files.get(api.task(data["id"])["audioUrl"]).content
    assert first == second and len(first) > 1000
