"""kill -9 in the middle of a stream of writes, then a restart: every acknowledged write is there, whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.harness import TARGETS, crash_rounds

QUICK_ROUNDS = 3


@pytest.mark.slow
@pytest.mark.parametrize("name", [name for name, target in TARGETS.items() if target.crash is not None])
def test_every_acknowledged_write_survives_a_kill_9_mid_stream(tmp_path: Path, name: str) -> None:
    result = crash_rounds(TARGETS[name], tmp_path, QUICK_ROUNDS)
    assert result.acknowledged > 0
    assert result.problems == []
