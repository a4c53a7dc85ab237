"""Fixtures for the simulator tests: started simulators on free loopback ports with a fake clock, clients.

Every simulator and client opened here is closed at teardown (warnings are errors).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from simulator_helpers import API_KEY, VOICE, Api, FakeClock

from pipeline.simulator import Simulator, SimulatorConfig


@pytest.fixture
def make_sim() -> Iterator[Callable[..., Simulator]]:
    """Factory: ``make_sim(**config_overrides)`` starts a simulator with a fake clock and VOICE loaded."""
    started: list[Simulator] = []

    def factory(**overrides: Any) -> Simulator:
        config = SimulatorConfig(
            api_key=API_KEY,
            clock=FakeClock(),
            preload_voices=(VOICE,),
            task_base_s=1.0,
            task_s_per_char=0.001,
        )
        sim = Simulator(replace(config, **overrides)).start()
        started.append(sim)
        return sim

    yield factory
    for sim in started:
        sim.stop()


@pytest.fixture
def make_api() -> Iterator[Callable[..., Api]]:
    """Factory: ``make_api(sim, api_key=...)`` gives a client closed at teardown."""
    clients: list[Api] = []

    def factory(sim: Simulator, **kwargs: Any) -> Api:
        api = Api(sim, **kwargs)
        clients.append(api)
        return api

    yield factory
    for api in clients:
        api.close()


@pytest.fixture
def sim(make_sim: Callable[..., Simulator]) -> Simulator:
    return make_sim()


@pytest.fixture
def api(sim: Simulator, make_api: Callable[..., Api]) -> Api:
    return make_api(sim)
