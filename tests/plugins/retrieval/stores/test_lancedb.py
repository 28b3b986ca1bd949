"""The LanceDB store's own behaviour (the contract suite in tests/contract covers the rest)."""

from __future__ import annotations

import asyncio
import http.server
import json
import math
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lancedb
import pyarrow as pa
import pytest
from lancedb.expr import Expr

from plugkit.plugins.retrieval.filters import And, Equals, Not, Range, to_tree
from plugkit.plugins.retrieval.models import DocumentMetadataFilter, Source, parse_filter
from plugkit.plugins.retrieval.stores import lancedb as lancedb_store
from plugkit.plugins.retrieval.stores.base import SearchRequest, StoreMismatchError
from plugkit.plugins.retrieval.stores.common import StoreSettings
from plugkit.plugins.retrieval.stores.lancedb import (
    conditions_of,
    connect_options,
    create_store,
    lance_where,
    range_sql,
    sql_string,
    token,
    where_of,
)
from tests.contract.contract_data import INFO, axis, document, embed

HOSTILE = [
    "x' OR '1'='1",
    'O\'Brien "the" \\ author',
    "a'); DROP TABLE t; --",
    "%",
    "_",
    "' OR tenant != '",
    '\x01["s", "author", "x"]\x01',
]


def test_conditions_are_expressions_of_bound_values_whatever_they_hold() -> None:
    where = where_of(conditions_of("acme", DocumentMetadataFilter(author=HOSTILE[0], start_date="2024-01-01")))
    # The library renders its own expression tree; the value stays one quoted literal.
    assert isinstance(where, Expr)
    assert where.to_sql() == (
        "((tenant = 'acme') AND (contains(terms, '\x01[\"s\", \"author\", \"x'' OR ''1''=''1\"]\x01') AND"
        ' (contains(terms, \'\x01["has", "created_at"]\x01\') AND (created_ts >= 1704067200.0))))'
    )


def test_a_token_holds_no_delimiter_whatever_the_value_holds() -> None:
    made = token("s", "team", '\x01["s", "team", "b"]\x01')
    assert made.count("\x01") == 2 and made.startswith("\x01[") and made.endswith("]\x01")
    assert token("n", "priority", 1.0) == "\x01" + '["n", "priority", 1.0]' + "\x01"


def test_a_range_on_a_custom_key_is_sql_of_a_checked_key_and_a_finite_number() -> None:
    assert range_sql(Range("priority", "number", gt=1.0, lte=2.5)) == (
        "(array_has(range_keys, 'n:priority') AND range_values[CAST(array_position(range_keys, 'n:priority') AS"
        " BIGINT)] > 1.0 AND range_values[CAST(array_position(range_keys, 'n:priority') AS BIGINT)] <= 2.5)"
    )
    with pytest.raises(ValueError, match="not a range key"):
        range_sql(Range("x') OR true --", "number", gt=1.0))
    with pytest.raises(ValueError, match="not a finite number"):
        range_sql(Range("priority", "number", gt=math.inf))
    assert sql_string("t:due.at") == "'t:due.at'"


def test_a_tree_with_a_custom_range_is_sql_text_with_every_other_value_quoted_by_the_library() -> None:
    tree = And((Equals("team", "string", ("it's",)), Not(Range("priority", "number", gte=2.0))))
    where = lance_where(tree)
    assert isinstance(where, str)
    assert where.startswith('((contains(terms, \'\x01["s", "team", "it\'\'s"]\x01\')) AND ((NOT (')


@pytest.mark.parametrize("hostile", HOSTILE)
async def test_hostile_custom_values_match_only_themselves_and_their_negation_everything_else(
    tmp_path: Path, hostile: str
) -> None:
    store = create_store(StoreSettings(store_url=str(tmp_path / "l")))
    await store.open(INFO)
    await store.replace_documents(
        [document("mine", "text", team=hostile, tags=[hostile]), document("other", "text", team="x", tags=["x"])]
    )

    for key in ("team", "tags"):
        for kind, expected in (("eq", ["mine"]), ("ne", ["other"])):
            flt = to_tree(parse_filter({"key": key, "type": kind, "value": hostile}))
            found = await store.search(SearchRequest("text", embed("text"), 10, "hybrid", filter=flt))
            assert [r.metadata.document_id for r in found] == expected, (key, kind)
    assert await store.delete(filter=to_tree(parse_filter({"key": "team", "type": "eq", "value": hostile}))) == 1
    assert [c.text for c in await store.get_document("other")] == ["text"]
    await store.close()


@pytest.mark.parametrize("hostile", HOSTILE)
async def test_hostile_filter_values_match_only_themselves_and_delete_nothing_else(
    tmp_path: Path, hostile: str
) -> None:
    store = create_store(StoreSettings(store_url=str(tmp_path / "l")))
    await store.open(INFO)
    await store.replace_documents([document("mine", "text", author=hostile), document("other", "text", author="x")])

    for mode in ("dense", "keyword", "hybrid"):
        found = await store.search(
            SearchRequest("text", embed("text"), 10, mode, filter=DocumentMetadataFilter(author=hostile))  # type: ignore[arg-type]
        )
        assert [r.metadata.document_id for r in found] == ["mine"], mode
    assert await store.delete(filter=DocumentMetadataFilter(author=hostile)) == 1
    assert [c.text for c in await store.get_document("other")] == ["text"]
    await store.close()


async def test_keyword_queries_are_words_not_query_syntax(tmp_path: Path) -> None:
    store = create_store(StoreSettings(store_url=str(tmp_path / "l")))
    await store.open(INFO)
    await store.replace_documents([document("a", "alpha beta"), document("b", "gamma delta")])

    for text in ('gamma AND NOT "(zeta', "gamma~2 OR (", "+gamma -delta*"):
        found = await store.search(SearchRequest(text, embed(text), 5, "keyword"))
        assert [r.metadata.document_id for r in found] == ["b"], text
    await store.close()


async def test_without_a_url_the_tables_live_in_the_data_directory(tmp_path: Path) -> None:
    store = create_store(StoreSettings(data_dir=tmp_path / "data"))
    await store.open(INFO)
    await store.replace_documents([document("d", "kept on disk")])
    await store.close()

    assert (tmp_path / "data" / "lancedb" / "plugkit_chunks.lance").is_dir()
    reopened = create_store(StoreSettings(data_dir=tmp_path / "data"))
    await reopened.open(INFO)
    assert await reopened.count() == 1
    await reopened.close()


async def test_each_chunk_keeps_its_whole_metadata_as_json(tmp_path: Path) -> None:
    store = create_store(StoreSettings(store_url=str(tmp_path / "l"), collection="with_json"))
    await store.open(INFO)
    await store.replace_documents([document("d", "text", source=Source.chat, author="Zoë", url="https://e.x/1")])

    table = await (await lancedb.connect_async(str(tmp_path / "l"))).open_table("with_json")
    rows = (await table.query().select(["metadata"]).to_arrow()).to_pylist()
    assert [json.loads(row["metadata"]) for row in rows] == [
        {"source": "chat", "author": "Zoë", "url": "https://e.x/1", "document_id": "d"}
    ]
    await store.close()


async def test_a_reupsert_is_one_commit_that_replaces_the_documents_chunks(tmp_path: Path) -> None:
    store = create_store(StoreSettings(store_url=str(tmp_path / "l")))
    await store.open(INFO)
    await store.replace_documents([document("d", "old one", "old two", "old three"), document("e", "kept")])
    table = store._table()
    before = await table.version()

    await store.replace_documents([document("d", "new only")])

    assert await table.version() == before + 1
    assert [c.text for c in await store.get_document("d")] == ["new only"]
    assert await store.count() == 2
    await store.close()


async def test_the_table_is_optimized_after_enough_written_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lancedb_store, "OPTIMIZE_ROWS", 3)
    store = create_store(StoreSettings(store_url=str(tmp_path / "l")))
    await store.open(INFO)
    for i in range(3):
        await store.replace_documents([document(f"d{i}", f"text {i}")])

    stats = await store._table().stats()
    assert stats["fragment_stats"]["num_fragments"] == 1
    index = await store._table().index_stats("text_idx")
    assert (index.num_indexed_rows, index.num_unindexed_rows) == (3, 0)  # the full-text index caught up
    assert [r.id for r in await store.search(SearchRequest("text 2", embed("text 2"), 1, "keyword"))] == ["d2_0"]
    await store.close()


async def test_a_table_not_made_by_plugkit_is_refused(tmp_path: Path) -> None:
    db = await lancedb.connect_async(str(tmp_path / "l"))
    await db.create_table("foreign", schema=pa.schema([pa.field("vector", pa.list_(pa.float32(), 8))]))
    store = create_store(StoreSettings(store_url=str(tmp_path / "l"), collection="foreign"))

    with pytest.raises(StoreMismatchError, match="not made by plugkit"):
        await store.open(INFO)


def test_a_cloud_uri_without_an_api_key_is_refused_with_the_setting_to_use() -> None:
    with pytest.raises(ValueError, match="PLUGKIT_STORE_API_KEY"):
        connect_options(StoreSettings(store_url="db://mydb"))


def test_a_cloud_uri_passes_its_key_region_and_host_to_the_client() -> None:
    uri, options = connect_options(
        StoreSettings(store_url="db://mydb?region=eu-west-1&host_override=http://h:1", api_key="sk-1")
    )
    assert (uri, options) == ("db://mydb", {"api_key": "sk-1", "region": "eu-west-1", "host_override": "http://h:1"})


@pytest.fixture
def cloud_recorder() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local HTTP server standing in for LanceDB Cloud: it records each request and refuses it (401)."""
    seen: list[dict[str, Any]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def _refuse(self) -> None:
            seen.append({"method": self.command, "path": self.path, "headers": dict(self.headers)})
            self.send_response(401)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"error": "unknown key"}')

        do_GET = do_POST = _refuse

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", seen
    finally:
        server.shutdown()
        server.server_close()


async def test_a_cloud_store_sends_its_key_and_database_and_fails_to_open_when_refused(
    cloud_recorder: tuple[str, list[dict[str, Any]]],
) -> None:
    url, seen = cloud_recorder
    store = create_store(StoreSettings(store_url=f"db://mydb?host_override={url}", api_key="sk-test"))

    with pytest.raises(Exception, match="401"):
        await store.open(INFO)

    assert seen, "the client never called the service"
    headers = {name.lower(): value for name, value in seen[0]["headers"].items()}
    assert (headers["x-api-key"], headers["x-lancedb-database"]) == ("sk-test", "mydb")


async def test_two_stores_on_one_directory_see_each_others_writes_and_may_write_at_once(tmp_path: Path) -> None:
    first = create_store(StoreSettings(store_url=str(tmp_path / "l")))
    second = create_store(StoreSettings(store_url=str(tmp_path / "l")))
    await first.open(INFO)
    await second.open(INFO)

    await first.replace_documents([document("a", "from the first")])
    assert [c.text for c in await second.get_document("a")] == ["from the first"]
    await asyncio.gather(
        first.replace_documents([document(f"f{i}", "first") for i in range(20)]),
        second.replace_documents([document(f"s{i}", "second") for i in range(20)]),
    )

    assert (await first.count(), await second.count()) == (41, 41)
    await first.close()
    await second.close()


async def test_hybrid_weights_decide_which_ranking_leads(tmp_path: Path) -> None:
    store = create_store(StoreSettings(store_url=str(tmp_path / "l")))
    await store.open(INFO)
    await store.replace_documents(
        [document("near", "zzz", vectors=[axis(0)]), document("word", "needle", vectors=[axis(3)])]
    )

    async def order(dense: float | None, keyword: float | None) -> list[str | None]:
        request = SearchRequest("needle", axis(0), 2, "hybrid", dense_weight=dense, keyword_weight=keyword)
        return [r.metadata.document_id for r in await store.search(request)]

    assert await order(None, None) == ["word", "near"]  # in both rankings beats first in one
    assert await order(1.0, 0.0) == ["near", "word"]
    assert await order(0.0, 1.0) == ["word", "near"]
    await store.close()


async def test_a_table_of_the_layout_before_custom_metadata_is_refused_naming_the_way_out(tmp_path: Path) -> None:
    schema = lancedb_store.schema_of(INFO)
    older = pa.schema(
        [field for field in schema if field.name not in lancedb_store.ADDED_COLUMNS], metadata=schema.metadata
    )
    db = await lancedb.connect_async(str(tmp_path / "l"))
    await db.create_table("plugkit_chunks", schema=older)
    store = create_store(StoreSettings(store_url=str(tmp_path / "l")))

    with pytest.raises(StoreMismatchError, match="re-ingest into a new collection"):
        await store.open(INFO)


async def test_an_integer_beyond_64_bits_is_stored_and_compares_as_a_number(tmp_path: Path) -> None:
    store = create_store(StoreSettings(store_url=str(tmp_path / "l")))
    await store.open(INFO)
    await store.replace_documents([document("big", "text", size=10**20), document("small", "text", size=3)])

    for data in ({"key": "size", "type": "gt", "value": 10**19}, {"key": "size", "type": "eq", "value": 10**20}):
        request = SearchRequest("text", embed("text"), 10, "dense", filter=to_tree(parse_filter(data)))
        found = await store.search(request)
        assert [(r.metadata.document_id, r.metadata.custom) for r in found] == [("big", {"size": 10**20})], data
    await store.close()
