"""Load on each running plugin: 64 connections in a bounded loop, no errors, resident memory flat."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.helpers import PluginServer
from tests.reliability.harness import TARGETS, load

QUICK_SECONDS = 4.0


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TARGETS))
def test_64_connections_get_no_errors_and_resident_memory_grows_under_10_percent(
    running: Callable[[str], PluginServer], name: str
) -> None:
    result = load(running(name), TARGETS[name], connections=64, duration=QUICK_SECONDS, warmup=2.0)
    assert result.requests > 0
    assert result.errors == 0
    assert result.rss_growth < 0.10, result
