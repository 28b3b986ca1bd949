"""Fixtures shared by the whole suite, and how pytest-xdist shares the tests out (`make test` runs two workers)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Folders whose files share session fixtures that cost seconds to start (the embedding model, the upstream servers,
# one server per plugin): under xdist their files run on one worker, so that each worker does not start its own.
SHARED_SESSION_FOLDERS = ("tests/plugins/retrieval/", "tests/plugins/sports/", "tests/reliability/")
OWN_GROUP_FILES = ("tests/reliability/test_crash.py",)  # starts servers of its own, none of the shared ones


def worker_group(nodeid: str) -> str:
    """The tests that run on one xdist worker: a test file's (its module fixtures start once), or a whole folder's
    for the folders in SHARED_SESSION_FOLDERS."""
    path = nodeid.split("::", 1)[0]
    folder = next((f for f in SHARED_SESSION_FOLDERS if path.startswith(f)), None)
    return path if folder is None or path in OWN_GROUP_FILES else folder


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadscope` (what `make test` asks for) with the groups of `worker_group`, in collection order unless
    --loadscope-reorder. (xdist's loadgroup marks a test's group in its node ID, which pytest 9 no longer lets it.)"""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class WorkerGroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return worker_group(nodeid)

    return WorkerGroupScheduling(config, log)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server (with pgvector) from the pgserver package, for the whole session.

    Its data directory is its own, outside pytest's rotating temporary root."""
    import pgserver

    root = Path(tempfile.mkdtemp(prefix="plugkit-pg-"))
    server = pgserver.get_server(str(root), cleanup_mode="stop")
    try:
        yield server.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)
