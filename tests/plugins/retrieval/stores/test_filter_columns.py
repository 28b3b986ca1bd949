"""Filter masks from the in-memory columns select exactly the rows filter_sql selects in SQLite."""

from __future__ import annotations

import random
import sqlite3
from typing import Any

import numpy as np
import pytest

from plugkit.plugins.retrieval.models import DocumentMetadataFilter
from plugkit.plugins.retrieval.stores.embedded import FIELD_COLUMNS, SCHEMA, SHARED, filter_sql, parse_instant
from plugkit.plugins.retrieval.stores.filter_columns import FilterColumns

SOURCES = ["email", "file", "chat", None]


def random_rows(count: int, seed: int = 0) -> list[tuple[Any, ...]]:
    rng = random.Random(seed)
    rows = []
    for rowid in range(1, count + 1):
        rows.append(
            (
                rowid,
                rng.choice([SHARED, "alice", "bob"]),
                f"doc{rng.randrange(40)}",
                rng.choice(SOURCES),
                rng.choice([f"src{rng.randrange(5)}", None]),
                rng.choice(["Ada", "Grace", None]),
                rng.choice(["https://a.example", None]),
                rng.choice([None, 1_600_000_000.0 + rng.randrange(10) * 86_400]),
            )
        )
    return rows


@pytest.fixture
def database() -> tuple[sqlite3.Connection, FilterColumns]:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.executescript(SCHEMA)
    rows = random_rows(600)
    conn.executemany(
        "INSERT INTO chunks (rowid, tenant, document_id, source, source_id, author, url, created_ts, n, chunk_id, "
        "text, metadata, embedding) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'c', 't', '{}', x'00')",
        [(*row, row[0]) for row in rows],
    )
    columns = FilterColumns()
    columns.add(conn.execute(f"SELECT {FIELD_COLUMNS} FROM chunks").fetchall())
    return conn, columns


def selected(conn: sqlite3.Connection, flt: DocumentMetadataFilter, tenant: str | None) -> set[int]:
    where, params = filter_sql(flt, tenant)
    return {r[0] for r in conn.execute(f"SELECT rowid FROM chunks c WHERE {where}", params)}


def masked(columns: FilterColumns, flt: DocumentMetadataFilter, tenant: str | None) -> set[int]:
    start = parse_instant(flt.start_date) if flt.start_date else None
    end = parse_instant(flt.end_date) if flt.end_date else None
    return set(np.flatnonzero(columns.mask(flt, tenant or SHARED, start, end)).tolist())


FILTERS = [
    DocumentMetadataFilter(),
    DocumentMetadataFilter(source="email"),
    DocumentMetadataFilter(author="Ada", source="file"),
    DocumentMetadataFilter(document_id="doc7"),
    DocumentMetadataFilter(source_id="src3", url="https://a.example"),
    DocumentMetadataFilter(start_date="2020-09-16T00:00:00Z"),
    DocumentMetadataFilter(end_date="2020-09-17T12:26:40Z", author="Grace"),
    DocumentMetadataFilter(start_date="2020-09-15", end_date="2020-09-18"),
    DocumentMetadataFilter(author="Nobody"),
]


@pytest.mark.parametrize("tenant", [None, "alice", "carol"])
@pytest.mark.parametrize("flt", FILTERS, ids=lambda f: str(f.model_dump(exclude_none=True)))
def test_a_mask_selects_exactly_the_rows_filter_sql_selects(
    database: tuple[sqlite3.Connection, FilterColumns], flt: DocumentMetadataFilter, tenant: str | None
) -> None:
    conn, columns = database
    expected = selected(conn, flt, tenant)
    assert masked(columns, flt, tenant) == expected
    if tenant != "carol" and flt.author != "Nobody":
        assert expected  # the random rows give every case something to find


def test_removed_rows_leave_every_mask_and_cached_masks_follow_changes(
    database: tuple[sqlite3.Connection, FilterColumns],
) -> None:
    conn, columns = database
    flt = DocumentMetadataFilter(source="email")
    before = masked(columns, flt, None)
    gone = sorted(before)[:5]
    columns.remove(gone)
    assert masked(columns, flt, None) == before - set(gone)
    columns.add([(gone[0], SHARED, "doc1", "chat", None, None, None, None)])  # back, with another source
    assert masked(columns, flt, None) == before - set(gone)
    assert gone[0] in masked(columns, DocumentMetadataFilter(source="chat"), None)
    assert len(columns) == 600 - 4


def test_rows_past_the_current_size_grow_the_columns() -> None:
    columns = FilterColumns()
    columns.add([(5, SHARED, "a", None, None, None, None, None)])
    columns.add([(50_000, SHARED, "b", "email", None, None, None, 1.0)])
    mask = columns.mask(DocumentMetadataFilter(), SHARED, None, None)
    assert np.flatnonzero(mask).tolist() == [5, 50_000]
    assert columns.memory_bytes >= 50_000 * (6 * 4 + 8)
