"""Hostile inputs: each answered with a 4xx that names the problem, and the server still serves afterwards."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.helpers import PluginServer
from tests.reliability.harness import TARGETS, HostileCase, generic_hostile, send_hostile, upload_cases

CASES = [(name, case) for name, target in TARGETS.items() for case in generic_hostile(target) + target.hostile()]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "case"), CASES, ids=[f"{n}-{c.name}" for n, c in CASES])
def test_a_hostile_input_gets_a_4xx_naming_the_problem_and_the_server_stays_up(
    running: Callable[[str], PluginServer], name: str, case: HostileCase
) -> None:
    result = send_hostile(running(name), TARGETS[name], case)
    assert result.ok, f"{result.why}: {result.detail}"


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TARGETS))
def test_a_100_mb_upload_is_refused_with_413_long_before_it_is_all_sent(
    running: Callable[[str], PluginServer], name: str
) -> None:
    for result in upload_cases(running(name), TARGETS[name]):
        assert result.ok, f"{result.name}: {result.why}: {result.detail}"
