"""LanceDB store (lancedb): a directory of Lance tables, or LanceDB Cloud with a `db://` URI.

`store_url` None keeps the tables in `<data_dir>/lancedb`; a plain path or an object-store URI (`s3://...`) names
another directory; `db://NAME` is LanceDB Cloud (`api_key` required; `?region=..` and `?host_override=..` in the
URI's query pass through to the client).

One table per store (`StoreSettings.collection`): a row per chunk, keyed by `pk` (a hash of tenant and chunk id),
the flat row of stores/common.py, `metadata` (the chunk's whole metadata as JSON) and the embedding as a
fixed-size float32 vector. The embedding model and dimension are kept in the table schema's metadata and checked at
open. A native full-text index (BM25; English stemming and stop words) covers `text`.

Filters (`lance_where`): LanceDB `Expr` trees (`lancedb.expr.col`/`lit`, values bound as literals by the library)
wherever the expression API reaches. Equality reads `terms`, a string of `\x01`-delimited JSON tokens
`[kind, key, value]`, one per standard value, custom value and string of a custom list (JSON escapes every control
character, so a token matches only itself: `contains` of a delimited token is exact), never null, so a negation
also matches the chunks lacking the key. Date ranges on `created_at` compare `created_ts`, guarded by a `has` token
(false, not null, where it is missing). Ranges on custom numbers and dates read `range_keys`/`range_values`
(`n:<key>`, `t:<key>` for the instant of an ISO 8601 date value): the expression API has no array functions, so
only that part is SQL text (`range_sql`), its key quoted by `sql_string` (checked against the key pattern, `'`
doubled) and its bound a finite float; a tree holding one is rendered whole as SQL, its other parts by the
library's own `to_sql`. The listing reads each document's first chunk (`position` 0), sorted in the client.

Search modes: dense = exact cosine search with the filter applied before it (Lance scans vectors with SIMD; a table
with no vector index is searched exhaustively, so results equal exact search); keyword = native BM25 full-text
search; hybrid = both, `candidate_pool` each, fused by (weighted) reciprocal rank fusion (what LanceDB's own hybrid
query and RRF reranker do, which cannot yet name its score columns without a deprecation warning from Lance).

Re-upsert is one Lance commit per batch of documents: a merge-insert on `pk` that updates and inserts the new chunks
and deletes the batch's documents' other chunks, so a reader sees the old version of a document or the new one.
Every `OPTIMIZE_ROWS` written rows the table is optimized (small fragments compacted, new rows added to the
full-text index; until then they are searched unindexed).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import math
import operator
import re
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import lancedb
import pyarrow as pa
from lancedb.expr import Expr, col, lit
from lancedb.index import FTS
from lancedb.query import FullTextOperator, MatchQuery

from plugkit.plugins.retrieval.filters import (
    DATE_FIELD,
    KEY_PATTERN,
    STRING_FIELDS,
    And,
    Equals,
    Node,
    Not,
    Or,
    Range,
    to_tree,
)
from plugkit.plugins.retrieval.models import DocumentChunk, DocumentChunkMetadata, DocumentChunkWithScore
from plugkit.plugins.retrieval.stores.base import (
    DocumentPage,
    DocumentRecord,
    FilterArg,
    SearchRequest,
    StoreInfo,
    StoreMismatchError,
    search_each,
)
from plugkit.plugins.retrieval.stores.common import (
    Row,
    StoreSettings,
    check_info,
    chunk_of,
    entry_of,
    page_of,
    rows_of,
    tenant_key,
)
from plugkit.plugins.retrieval.stores.fusion import rrf

MODEL_KEY = b"plugkit.embedding_model"
DIMENSION_KEY = b"plugkit.dimension"
_BATCH = 500
OPTIMIZE_ROWS = 1_000
_COLUMNS = ["id", "document_id", "position", "text", "source", "source_id", "url", "author", "created_at", "metadata"]
_LISTED = [*(name for name in _COLUMNS if name != "text"), "chunk_count", "stored_ts", "updated_ts"]
ADDED_COLUMNS = ("terms", "range_keys", "range_values", "chunk_count", "stored_ts", "updated_ts")
_KEY = re.compile(KEY_PATTERN)
Where = Expr | str


def primary_key(tenant: str, chunk_id: str) -> str:
    return hashlib.sha256(f"{tenant}\x00{chunk_id}".encode()).hexdigest()[:40]


def schema_of(info: StoreInfo) -> pa.Schema:
    """The table's columns, with the embedding model and dimension in its metadata."""
    text = pa.string()
    return pa.schema(
        [
            pa.field("pk", text, nullable=False),
            pa.field("tenant", text, nullable=False),
            pa.field("id", text, nullable=False),
            pa.field("document_id", text, nullable=False),
            pa.field("position", pa.int64(), nullable=False),
            pa.field("text", text, nullable=False),
            *(pa.field(name, text) for name in ("source", "source_id", "url", "author", "created_at")),
            pa.field("created_ts", pa.float64()),
            pa.field("metadata", text),
            pa.field("terms", text, nullable=False),
            pa.field("range_keys", pa.list_(text), nullable=False),
            pa.field("range_values", pa.list_(pa.float64()), nullable=False),
            pa.field("chunk_count", pa.int64(), nullable=False),
            pa.field("stored_ts", pa.float64(), nullable=False),
            pa.field("updated_ts", pa.float64(), nullable=False),
            pa.field("vector", pa.list_(pa.float32(), info.dimension)),
        ],
        metadata={MODEL_KEY: info.embedding_model.encode(), DIMENSION_KEY: str(info.dimension).encode()},
    )


def token(kind: str, key: str, value: str | float | bool | None = None) -> str:
    """One delimited `terms` token: `has` (the key holds a value), `s`, `n` (numbers as floats) or `b`."""
    parts: list[Any] = [kind, key] if value is None else [kind, key, value]
    return "\x01" + json.dumps(parts, ensure_ascii=False, allow_nan=False) + "\x01"


def _value_tokens(key: str, value: Any) -> list[str]:
    if isinstance(value, bool):
        return [token("b", key, value)]
    if isinstance(value, int | float):
        return [token("n", key, float(value))]
    if isinstance(value, str):
        return [token("s", key, value)]
    if isinstance(value, list):
        return [found for item in value for found in _value_tokens(key, item)]
    return []


def terms_of(row: Row) -> str:
    """The `terms` of a row: a token for each standard and custom value, and `has` for a `created_at` instant."""
    standard = {name: getattr(row, name) for name in STRING_FIELDS}
    found = [found for key, value in [*standard.items(), *row.metadata.items()] for found in _value_tokens(key, value)]
    if row.created_ts is not None:
        found.append(token("has", DATE_FIELD))
    return "".join(dict.fromkeys(found))


def ranges_of(row: Row) -> tuple[list[str], list[float]]:
    """`range_keys` and `range_values` of a row: its custom numbers (`n:<key>`) and date instants (`t:<key>`)."""
    keys: list[str] = []
    values: list[float] = []
    for key, value in row.metadata.items():
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            keys.append(f"n:{key}")
            values.append(float(value))
    for key, instant in row.metadata_ts.items():
        keys.append(f"t:{key}")
        values.append(float(instant))
    return keys, values


def sql_string(value: str) -> str:
    """A SQL string literal of a range key (`n:`/`t:` and a key of the filter language), `'` doubled; anything else
    is refused."""
    prefix, _, key = value.partition(":")
    if prefix not in ("n", "t") or not _KEY.match(key):
        raise ValueError(f"not a range key: {value!r}")
    return "'" + value.replace("'", "''") + "'"


def sql_number(value: float) -> str:
    """A SQL literal of a finite float."""
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"not a finite number: {value!r}")
    return repr(number)


def range_sql(node: Range) -> str:
    """SQL of a range on a custom key: false, never null, when the chunk lacks it."""
    key = sql_string(f"{'t' if node.kind == 'date' else 'n'}:{node.key}")
    value = f"range_values[CAST(array_position(range_keys, {key}) AS BIGINT)]"
    bounds = [
        f"{value} {op} {sql_number(bound)}"
        for bound, op in ((node.gt, ">"), (node.gte, ">="), (node.lt, "<"), (node.lte, "<="))
        if bound is not None
    ]
    return "(" + " AND ".join([f"array_has(range_keys, {key})", *bounds]) + ")"


def _sql(where: Where) -> str:
    return where if isinstance(where, str) else str(where.to_sql())


def _combine(parts: list[Where], conjunction: bool) -> Where:
    if not parts:
        return lit(conjunction)
    if all(isinstance(part, Expr) for part in parts):
        return functools.reduce(operator.and_ if conjunction else operator.or_, parts)
    joiner = " AND " if conjunction else " OR "
    return "(" + joiner.join(f"({_sql(part)})" for part in parts) + ")"


def lance_where(node: Node) -> Where:
    """The LanceDB filter of a tree: an `Expr`, or SQL text when it holds a range on a custom key (module doc)."""
    if isinstance(node, And | Or):
        return _combine([lance_where(part) for part in node.parts], isinstance(node, And))
    if isinstance(node, Not):
        inner = lance_where(node.part)
        return ~inner if isinstance(inner, Expr) else f"(NOT ({inner}))"
    if isinstance(node, Equals):
        kind = {"string": "s", "number": "n", "bool": "b"}[node.kind]
        values = [float(v) if node.kind == "number" else v for v in node.values]
        return _combine([col("terms").contains(lit(token(kind, node.key, value))) for value in values], False)
    if node.key != DATE_FIELD:
        return range_sql(node)
    bounds = [
        compare(col("created_ts"), lit(float(bound)))
        for bound, compare in (
            (node.gt, operator.gt),
            (node.gte, operator.ge),
            (node.lt, operator.lt),
            (node.lte, operator.le),
        )
        if bound is not None
    ]
    return _combine([col("terms").contains(lit(token("has", DATE_FIELD))), *bounds], True)


def conditions_of(tenant: str | None, filter: FilterArg = None) -> list[Where]:
    """The tenant, and the filter (a tree or a flat filter) as a LanceDB filter; bad dates raise ValueError."""
    found: list[Where] = [col("tenant") == lit(tenant_key(tenant))]
    tree = to_tree(filter)
    if tree is not None:
        found.append(lance_where(tree))
    return found


def where_of(conditions: list[Where]) -> Where:
    """A filter that holds when all conditions do."""
    return conditions[0] if len(conditions) == 1 else _combine(conditions, True)


def connect_options(settings: StoreSettings) -> tuple[str, dict[str, Any]]:
    """The URI and keyword arguments of `lancedb.connect_async` for the settings."""
    url = settings.store_url
    if url is None or not url.startswith("db://"):
        if url is None or "://" not in url:
            path = Path(url) if url else Path(settings.data_dir) / "lancedb"
            path.mkdir(parents=True, exist_ok=True)
            url = str(path)
        # Strong consistency: every read sees the writes of other processes (several workers on one directory).
        return url, {"read_consistency_interval": timedelta(0)}
    if not settings.api_key:
        raise ValueError("a LanceDB Cloud URI (db://...) needs an API key: set PLUGKIT_STORE_API_KEY")
    parts = urlsplit(url)
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    options: dict[str, Any] = {"api_key": settings.api_key}
    for name in ("region", "host_override"):
        if name in query:
            options[name] = query[name]
    return f"db://{parts.netloc}{parts.path}", options


class LanceDBStore:
    """VectorStore on LanceDB (a local or object-store directory, or LanceDB Cloud)."""

    name = "lancedb"

    def __init__(self, settings: StoreSettings) -> None:
        self.settings = settings
        self.table: Any = None  # lancedb.AsyncTable
        self.schema: pa.Schema | None = None
        self.dimension = 0
        self.written = 0

    def _table(self) -> Any:
        if self.table is None:
            raise RuntimeError("the lancedb store is not open")
        return self.table

    async def open(self, info: StoreInfo) -> None:
        self.dimension = info.dimension
        uri, options = connect_options(self.settings)
        db = await lancedb.connect_async(uri, **options)
        name = self.settings.collection
        if name in await self._names(db):
            table = await db.open_table(name)
            schema = await table.schema()
            metadata = schema.metadata or {}
            try:
                found = StoreInfo(metadata[MODEL_KEY].decode(), int(metadata[DIMENSION_KEY]))
            except (KeyError, ValueError):
                raise StoreMismatchError(
                    f"table {name!r} was not made by plugkit (no embedding model recorded)"
                ) from None
            check_info(found, info, f"table {name!r}")
            missing = [column for column in ADDED_COLUMNS if column not in schema.names]
            if missing:
                raise StoreMismatchError(
                    f"table {name!r} was made by an older plugkit, without the columns {', '.join(missing)}:"
                    " re-ingest into a new collection (PLUGKIT_COLLECTION)"
                )
        else:
            table = await db.create_table(name, schema=schema_of(info), exist_ok=True)
            schema = await table.schema()
            await table.create_index("text", config=FTS(with_position=False), replace=False)
        self.table, self.schema = table, schema

    @staticmethod
    async def _names(db: Any) -> list[str]:
        names: list[str] = []
        page_token: str | None = None
        while True:
            page = await db.list_tables(page_token=page_token)
            names += page.tables
            page_token = page.page_token
            if not page_token:
                return names

    async def close(self) -> None:
        if self.table is not None:
            self.table.close()
            self.table = None

    def _rows(self, document: DocumentRecord, tenant: str | None, stored_ts: float | None) -> list[dict[str, Any]]:
        rows = rows_of(document, tenant, self.dimension, stored_ts)
        return [
            {
                **row.payload(),
                "pk": primary_key(row.tenant, row.id),
                "terms": terms_of(row),
                "range_keys": ranges_of(row)[0],
                "range_values": ranges_of(row)[1],
                "metadata": json.dumps(record.metadata.model_dump(mode="json", exclude_none=True), ensure_ascii=False),
                "vector": row.embedding,
            }
            for row, record in zip(rows, document.chunks, strict=True)
        ]

    async def _stored(self, tenant: str | None, document_ids: list[str]) -> dict[str, float]:
        """When each of these documents was first stored (those that exist)."""
        where = where_of([*conditions_of(tenant), col("document_id").isin(document_ids), col("position") == lit(0)])
        hits = await self._table().query().where(where).select(["document_id", "stored_ts"]).to_list()
        return {str(hit["document_id"]): float(hit["stored_ts"]) for hit in hits}

    async def replace_documents(self, documents: list[DocumentRecord], tenant: str | None = None) -> None:
        latest = list({document.document_id: document for document in documents}.values())
        table = self._table()
        for start in range(0, len(latest), _BATCH):
            batch = latest[start : start + _BATCH]
            stored = await self._stored(tenant, [document.document_id for document in batch])
            rows = [row for document in batch for row in self._rows(document, tenant, stored.get(document.document_id))]
            stale = (col("tenant") == lit(tenant_key(tenant))) & col("document_id").isin(
                [document.document_id for document in batch]
            )
            if not rows:
                await table.delete(stale)
                continue
            await (
                table.merge_insert("pk")
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .when_not_matched_by_source_delete(stale)
                .execute(pa.Table.from_pylist(rows, schema=self.schema))
            )
            self.written += len(rows)
        if self.written >= OPTIMIZE_ROWS:
            self.written = 0
            await table.optimize()

    async def search_many(self, requests: list[SearchRequest]) -> list[list[DocumentChunkWithScore]]:
        return await search_each(self, requests)

    async def search(self, request: SearchRequest) -> list[DocumentChunkWithScore]:
        table = self._table()
        where = where_of(conditions_of(request.tenant, request.filter))
        if request.embedding is not None and len(request.embedding) != self.dimension:
            raise ValueError(f"the query embedding has {len(request.embedding)} dimensions, the store {self.dimension}")
        columns = [*_COLUMNS, "vector"] if request.include_embeddings else list(_COLUMNS)
        # Any word of the query, matched exactly (no fuzziness); the text is a value, never parsed as query syntax.
        text = MatchQuery(
            request.text,
            "text",
            boost=1.0,
            fuzziness=0,
            max_expansions=50,
            operator=FullTextOperator.OR,
            prefix_length=0,
            document_granularity=None,
        )
        keyword = table.query().nearest_to_text(text).where(where).select([*columns, "pk", "_score"])
        if request.mode == "keyword" or request.embedding is None:
            if not request.text.strip():
                return []
            hits = await keyword.limit(request.top_k).to_list()
            return [self._result(hit, hit["_score"]) for hit in hits]
        dense = (
            table.query()
            .nearest_to(request.embedding)
            .distance_type("cosine")
            .where(where)
            .select([*columns, "pk", "_distance"])
        )
        if request.mode == "dense" or not request.text.strip():
            hits = await dense.limit(request.top_k).to_list()
            return [self._result(hit, 1.0 - hit["_distance"]) for hit in hits]
        pool = max(self.settings.candidate_pool, request.top_k)
        by_vector, by_text = await asyncio.gather(dense.limit(pool).to_list(), keyword.limit(pool).to_list())
        found = {hit["pk"]: hit for hit in [*by_vector, *by_text]}
        fused = rrf(
            [[hit["pk"] for hit in by_vector], [hit["pk"] for hit in by_text]],
            self.settings.rrf_k,
            weights=[request.dense_weight, request.keyword_weight],
        )
        return [self._result(found[key], score) for key, score in fused[: request.top_k]]

    @staticmethod
    def _values(hit: dict[str, Any]) -> dict[str, Any]:
        """The stored values of a row with `metadata` its custom keys (the row keeps the whole metadata)."""
        full = json.loads(hit["metadata"]) if hit.get("metadata") else {}
        custom = {key: value for key, value in full.items() if key not in DocumentChunkMetadata.__pydantic_fields__}
        return {**hit, "metadata": custom}

    @classmethod
    def _chunk(cls, hit: dict[str, Any]) -> DocumentChunk:
        return chunk_of(cls._values(hit), hit.get("vector"))

    def _result(self, hit: dict[str, Any], score: float) -> DocumentChunkWithScore:
        return DocumentChunkWithScore(**dict(self._chunk(hit)), score=float(score))

    async def get_document(self, document_id: str, tenant: str | None = None) -> list[DocumentChunk]:
        where = where_of([*conditions_of(tenant), col("document_id") == lit(document_id)])
        hits = await self._table().query().where(where).select(_COLUMNS).to_list()
        return [self._chunk(hit) for hit in sorted(hits, key=lambda hit: hit["position"])]

    async def delete(
        self,
        ids: list[str] | None = None,
        filter: FilterArg = None,
        delete_all: bool = False,
        tenant: str | None = None,
    ) -> int:
        selectors: list[Where] = []
        if delete_all:
            selectors.append(where_of(conditions_of(tenant, None)))
        else:
            for start in range(0, len(ids or []), _BATCH):
                batch = (ids or [])[start : start + _BATCH]
                selectors.append(where_of([*conditions_of(tenant, None), col("document_id").isin(batch)]))
            if to_tree(filter) is not None:
                selectors.append(where_of(conditions_of(tenant, filter)))
        deleted = 0
        for where in selectors:
            deleted += (await self._table().delete(where)).num_deleted_rows
        return deleted

    async def list_documents(
        self,
        tenant: str | None = None,
        filter: FilterArg = None,
        limit: int = 20,
        after: tuple[float, str] | None = None,
    ) -> DocumentPage:
        conditions = [*conditions_of(tenant, filter), col("position") == lit(0)]
        if after is not None:
            conditions.append(col("updated_ts") <= lit(after[0]))
        hits = await self._table().query().where(where_of(conditions)).select(_LISTED).to_list()
        kept = page_of([entry_of(self._values(hit)) for hit in hits], limit, after)
        return DocumentPage(kept[:limit], more=len(kept) > limit)

    async def count(self, tenant: str | None = None) -> int:
        """Chunks of the tenant; without a tenant, every chunk of the table (all tenants)."""
        table = self._table()
        if tenant is None:
            return int(await table.count_rows())
        found = await table.query().where(where_of(conditions_of(tenant, None))).select(["pk"]).to_arrow()
        return int(found.num_rows)


def create_store(settings: Any) -> LanceDBStore:
    """The LanceDB store: `store_url` a folder, an object-store URI or `db://NAME`; default `<data_dir>/lancedb`."""
    return LanceDBStore(StoreSettings.of(settings))
