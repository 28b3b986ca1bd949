"""One running server per plugin for the whole reliability session (fuzzing, hostile inputs and load share it)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import PluginServer
from tests.reliability.harness import TARGETS, seed


@pytest.fixture(scope="session")
def running() -> Iterator[Callable[[str], PluginServer]]:
    """`running(name)`: the plugin's real server, started and seeded on first use, its data in a fresh directory."""
    servers: dict[str, PluginServer] = {}
    contexts = []
    with tempfile.TemporaryDirectory(prefix="plugkit-rel-") as root:

        def get(name: str) -> PluginServer:
            if name not in servers:
                context = TARGETS[name].serve(Path(root) / name)
                servers[name] = context.__enter__()
                contexts.append(context)
                seed(servers[name], TARGETS[name])
            return servers[name]

        try:
            yield get
        finally:
            for context in reversed(contexts):
                context.__exit__(None, None, None)
