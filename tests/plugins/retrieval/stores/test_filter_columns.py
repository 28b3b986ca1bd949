"""Filter masks from the in-memory columns select exactly the rows filter_sql selects in SQLite."""

from __future__ import annotations

import random
import sqlite3
from typing import Any

import numpy as np
import pytest

from plugkit.plugins.retrieval.filters import Node, to_tree
from plugkit.plugins.retrieval.models import DocumentMetadataFilter, parse_filter
from plugkit.plugins.retrieval.stores.base import SHARED_TENANT as SHARED
from plugkit.plugins.retrieval.stores.embedded import FIELD_COLUMNS, SCHEMA, filter_sql
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


def selected(conn: sqlite3.Connection, flt: DocumentMetadataFilter | Node, tenant: str | None) -> set[int]:
    where, params = filter_sql(to_tree(flt), tenant)
    return {r[0] for r in conn.execute(f"SELECT rowid FROM chunks c WHERE {where}", params)}


def masked(columns: FilterColumns, flt: DocumentMetadataFilter | Node, tenant: str | None) -> set[int]:
    return set(np.flatnonzero(columns.mask(to_tree(flt), tenant or SHARED)).tolist())


def tree(data: dict[str, Any]) -> Node:
    node = to_tree(parse_filter(data))
    assert node is not None
    return node


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
TREES = [
    tree({"key": "author", "type": "ne", "value": "Ada"}),
    tree({"key": "source", "type": "in", "value": ["email", "chat"]}),
    tree({"key": "source", "type": "nin", "value": ["email", "chat"]}),
    tree({"key": "created_at", "type": "gt", "value": "2020-09-16T00:00:00Z"}),
    tree({"key": "created_at", "type": "eq", "value": "2020-09-16T12:26:40Z"}),
    tree(
        {
            "type": "or",
            "filters": [
                {"key": "author", "type": "eq", "value": "Grace"},
                {
                    "type": "and",
                    "filters": [
                        {"key": "source", "type": "ne", "value": "file"},
                        {"key": "created_at", "type": "lte", "value": "2020-09-18"},
                    ],
                },
            ],
        }
    ),
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


@pytest.mark.parametrize("tenant", [None, "alice"])
@pytest.mark.parametrize("node", TREES, ids=str)
def test_a_mask_of_a_compound_filter_selects_exactly_the_rows_filter_sql_selects(
    database: tuple[sqlite3.Connection, FilterColumns], node: Node, tenant: str | None
) -> None:
    conn, columns = database
    expected = selected(conn, node, tenant)
    assert masked(columns, node, tenant) == expected
    assert expected


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
    mask = columns.mask(None, SHARED)
    assert np.flatnonzero(mask).tolist() == [5, 50_000]
    assert columns.memory_bytes >= 50_000 * (6 * 4 + 8)
