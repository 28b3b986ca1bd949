"""LanceDB store (lancedb): a directory of Lance tables, or LanceDB Cloud with a `db://` URI.

`store_url` None keeps the tables in `<data_dir>/lancedb`; a plain path or an object-store URI (`s3://...`) names
another directory; `db://NAME` is LanceDB Cloud (`api_key` required; `?region=..` and `?host_override=..` in the
URI's query pass through to the client).

One table per store (`StoreSettings.collection`): a row per chunk, keyed by `pk` (a hash of tenant and chunk id),
the flat row of stores/common.py, `metadata` (the chunk's whole metadata as JSON) and the embedding as a
fixed-size float32 vector. The embedding model and dimension are kept in the table schema's metadata and checked at
open. A native full-text index (BM25; English stemming and stop words) covers `text`. Filters are LanceDB `Expr`
trees (`lancedb.expr.col`/`lit`: structured values, never SQL text), built by `where_of` from a list of conditions.

Search modes: dense = exact cosine search with the filter applied before it (Lance scans vectors with SIMD; a table
with no vector index is searched exhaustively, so results equal exact search); keyword = native BM25 full-text
search; hybrid = both, `candidate_pool` each, fused by reciprocal rank fusion (what LanceDB's own hybrid query and
RRF reranker do, which cannot yet name its score columns without a deprecation warning from Lance).

Re-upsert is one Lance commit per batch of documents: a merge-insert on `pk` that updates and inserts the new chunks
and deletes the batch's documents' other chunks, so a reader sees the old version of a document or the new one.
Every `OPTIMIZE_ROWS` written rows the table is optimized (small fragments compacted, new rows added to the
full-text index; until then they are searched unindexed).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import lancedb
import pyarrow as pa
from lancedb.expr import Expr, col, lit
from lancedb.index import FTS
from lancedb.query import FullTextOperator, MatchQuery

from plugkit.plugins.retrieval.models import (
    DocumentChunk,
    DocumentChunkMetadata,
    DocumentChunkWithScore,
    DocumentMetadataFilter,
)
from plugkit.plugins.retrieval.stores.base import (
    DocumentRecord,
    SearchRequest,
    StoreInfo,
    StoreMismatchError,
    search_each,
)
from plugkit.plugins.retrieval.stores.common import (
    StoreSettings,
    check_info,
    chunk_of,
    filter_terms,
    rows_of,
    rrf,
    tenant_key,
)

MODEL_KEY = b"plugkit.embedding_model"
DIMENSION_KEY = b"plugkit.dimension"
_BATCH = 500
OPTIMIZE_ROWS = 1_000
_COLUMNS = ["id", "document_id", "position", "text", "source", "source_id", "url", "author", "created_at", "metadata"]


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
            pa.field("vector", pa.list_(pa.float32(), info.dimension)),
        ],
        metadata={MODEL_KEY: info.embedding_model.encode(), DIMENSION_KEY: str(info.dimension).encode()},
    )


def conditions_of(tenant: str | None, filter: DocumentMetadataFilter | None) -> list[Expr]:
    """The tenant and every field of the flat filter as LanceDB expressions; bad dates raise ValueError."""
    equal, start, end = filter_terms(filter)
    found = [col("tenant") == lit(tenant_key(tenant))]
    found += [col(name) == lit(value) for name, value in equal.items()]
    if start is not None:
        found.append(col("created_ts") >= lit(start))
    if end is not None:
        found.append(col("created_ts") <= lit(end))
    return found


def where_of(conditions: list[Expr]) -> Expr:
    """An expression that holds when all conditions do."""
    where = conditions[0]
    for condition in conditions[1:]:
        where = where & condition
    return where


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

    def _rows(self, document: DocumentRecord, tenant: str | None) -> list[dict[str, Any]]:
        rows = rows_of(document, tenant, self.dimension)
        return [
            {
                **row.payload(),
                "pk": primary_key(row.tenant, row.id),
                "metadata": json.dumps(
                    record.chunk.metadata.model_dump(mode="json", exclude_none=True), ensure_ascii=False
                ),
                "vector": row.embedding,
            }
            for row, record in zip(rows, document.chunks, strict=True)
        ]

    async def replace_documents(self, documents: list[DocumentRecord], tenant: str | None = None) -> None:
        latest = list({document.document_id: document for document in documents}.values())
        table = self._table()
        for start in range(0, len(latest), _BATCH):
            batch = latest[start : start + _BATCH]
            rows = [row for document in batch for row in self._rows(document, tenant)]
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
        fused = rrf([[hit["pk"] for hit in by_vector], [hit["pk"] for hit in by_text]], self.settings.rrf_k)
        best = sorted(fused, key=lambda key: fused[key], reverse=True)[: request.top_k]
        return [self._result(found[key], fused[key]) for key in best]

    @staticmethod
    def _chunk(hit: dict[str, Any]) -> DocumentChunk:
        chunk = chunk_of(hit, hit.get("vector"))
        if hit.get("metadata"):  # the whole metadata, custom keys included, as it was given
            full = {**json.loads(hit["metadata"]), "document_id": hit["document_id"]}
            chunk.metadata = DocumentChunkMetadata.model_validate(full)
        return chunk

    def _result(self, hit: dict[str, Any], score: float) -> DocumentChunkWithScore:
        return DocumentChunkWithScore(**dict(self._chunk(hit)), score=float(score))

    async def get_document(self, document_id: str, tenant: str | None = None) -> list[DocumentChunk]:
        where = where_of(conditions_of(tenant, DocumentMetadataFilter(document_id=document_id)))
        hits = await self._table().query().where(where).select(_COLUMNS).to_list()
        return [self._chunk(hit) for hit in sorted(hits, key=lambda hit: hit["position"])]

    async def delete(
        self,
        ids: list[str] | None = None,
        filter: DocumentMetadataFilter | None = None,
        delete_all: bool = False,
        tenant: str | None = None,
    ) -> int:
        selectors: list[Expr] = []
        if delete_all:
            selectors.append(where_of(conditions_of(tenant, None)))
        else:
            for start in range(0, len(ids or []), _BATCH):
                batch = (ids or [])[start : start + _BATCH]
                selectors.append(where_of([*conditions_of(tenant, None), col("document_id").isin(batch)]))
            if filter is not None and filter.model_dump(exclude_none=True):
                selectors.append(where_of(conditions_of(tenant, filter)))
        deleted = 0
        for where in selectors:
            deleted += (await self._table().delete(where)).num_deleted_rows
        return deleted

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
