"""The Hypothesis settings profiles of tests/conftest.py: ``ci`` (derandomised) unless ``SOAK=1`` picks
``soak`` (randomised, ten times the examples), and every property test's own ``@settings(...)``
building on the loaded profile rather than resetting it.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import given, is_hypothesis_test, settings
from hypothesis import strategies as st

SOAK = os.environ.get("SOAK", "") not in ("", "0")


def test_the_loaded_profile_follows_soak() -> None:
    current = settings.get_current_profile_name()
    assert current == ("soak" if SOAK else "ci")
    ci, soak = settings.get_profile("ci"), settings.get_profile("soak")
    assert ci.derandomize and ci.deadline is None and ci.print_blob
    assert not soak.derandomize and soak.deadline is None and soak.print_blob
    assert soak.max_examples == 10 * ci.max_examples


def test_a_property_draws_the_same_examples_on_every_run() -> None:
    if SOAK:
        pytest.skip("the soak profile is randomised on purpose")

    def draw() -> list[int]:
        seen: list[int] = []

        @settings(max_examples=20)  # as the suite's decorators do: set the examples, inherit the rest
        @given(st.integers())
        def record(n: int) -> None:
            seen.append(n)

        record()
        return seen

    assert draw() == draw()


def test_every_collected_property_test_inherits_derandomisation(request: pytest.FixtureRequest) -> None:
    """A test's ``@settings(...)`` is built when its module is imported, after conftest.py loaded the
    profile, so what it does not set comes from the profile. (Hypothesis keeps a test's settings in
    ``_hypothesis_internal_use_settings``; no public attribute has them.)"""
    if SOAK:
        pytest.skip("under SOAK=1 a test may still pin derandomize=True")
    tests: dict[str, Any] = {item.nodeid.split("[")[0]: test for item in request.session.items
             if is_hypothesis_test(test := getattr(item, "obj", None))}
    assert tests, "no property test collected"
    randomised = [name for name, test in tests.items() if not test._hypothesis_internal_use_settings.derandomize]
    assert not randomised
