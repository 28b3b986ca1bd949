"""Fixtures shared by the whole suite."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


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
