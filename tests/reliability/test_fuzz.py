"""Spec-driven fuzzing (schemathesis) of each running plugin against its own OpenAPI spec: the quick run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import PluginServer
from tests.reliability.harness import AUTH_PASS, TARGETS, authenticated, fuzz
from tests.reliability.oauth_spec import OAUTH_SPEC

QUICK_CASES = 50


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TARGETS))
def test_fuzzing_finds_no_server_error_and_no_response_outside_the_spec(
    running: Callable[[str], PluginServer], name: str
) -> None:
    result = fuzz(running(name).base_url, QUICK_CASES)
    assert result.cases >= QUICK_CASES * 0.8
    assert (result.server_errors, result.spec_violations) == (0, 0), "\n".join(result.failures)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "kind"), sorted(AUTH_PASS.items()))
def test_fuzzing_under_an_auth_method_finds_no_server_error(name: str, kind: str, tmp_path: Path) -> None:
    with authenticated(TARGETS[name], kind, tmp_path) as (server, headers):
        result = fuzz(server.base_url, QUICK_CASES // 2, headers=headers)
    assert result.cases >= QUICK_CASES // 2 * 0.8
    assert sum(n for status, n in result.statuses.items() if status < 300), f"no request got through: {result.statuses}"
    assert (result.server_errors, result.spec_violations) == (0, 0), "\n".join(result.failures)


@pytest.mark.slow
def test_fuzzing_the_oauth_endpoints_finds_no_server_error(tmp_path: Path) -> None:
    with authenticated(TARGETS["todo"], "oauth", tmp_path) as (server, _headers):
        result = fuzz(server.base_url, QUICK_CASES * 2, spec=OAUTH_SPEC)
    assert result.cases >= QUICK_CASES * 2 * 0.8
    assert result.server_errors == 0, "\n".join(result.failures)
