"""Spec-driven fuzzing (schemathesis) of each running plugin against its own OpenAPI spec: the quick run."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.helpers import PluginServer
from tests.reliability.harness import TARGETS, fuzz

QUICK_CASES = 50


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TARGETS))
def test_fuzzing_finds_no_server_error_and_no_response_outside_the_spec(
    running: Callable[[str], PluginServer], name: str
) -> None:
    result = fuzz(running(name).base_url, QUICK_CASES)
    assert result.cases >= QUICK_CASES * 0.8
    assert (result.server_errors, result.spec_violations) == (0, 0), "\n".join(result.failures)
