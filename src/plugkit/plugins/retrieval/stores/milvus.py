"""Milvus store (pymilvus): a file path runs Milvus Lite in-process, an http(s) URI talks to a Milvus cluster or Zilliz.

One collection per store (`StoreSettings.collection`): a VARCHAR primary key (a hash of tenant and chunk id), the
metadata as nullable scalar fields, `created_ts` (epoch seconds) for date ranges, the dense vector under HNSW
(cosine), and the text analysed by Milvus's BM25 function into a sparse vector. The embedding model and dimension
are kept in the collection's properties and checked at open.

Search modes: dense = cosine similarity; keyword = native BM25 full-text search; hybrid = Milvus `hybrid_search`
fusing both with reciprocal rank fusion. Filters are expressions built from escaped literals only (Milvus Lite does
not take expression templates: `filter_params` fails to parse there); every query carries its tenant. Custom
metadata is the JSON field `metadata` (`eq` on a list is `json_contains_any`), the instants of its ISO 8601 date
values the JSON field `metadata_ts`; every comparison is guarded (`exists`, `is not null`) so that a negation also
matches chunks that lack the key, as in the other stores. The listing reads each document's first chunk.

Re-upsert: Milvus has no multi-row transactions, so a document's new chunks are upserted first (same ids overwrite
in place), then the chunks of the document that are not among the new ones are deleted; a reader in between may see
the new chunks next to stale ones of a longer previous version, never a document with no chunks.

Milvus Lite keeps fresh rows unindexed (scanned exhaustively) until flushed; the store flushes before a search once
`lite_flush_rows` rows were written. A Milvus server seals and indexes segments on its own and is never flushed.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pymilvus import AnnSearchRequest, DataType, Function, FunctionType, MilvusClient, RRFRanker

from plugkit.plugins.retrieval.filters import DATE_FIELD, And, Equals, Node, Not, Or, Range, is_standard, to_tree
from plugkit.plugins.retrieval.models import DocumentChunk, DocumentChunkWithScore
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
    chunk_with_score,
    entry_of,
    page_of,
    rows_of,
    tenant_key,
)
from plugkit.plugins.retrieval.stores.fusion import rrf

T = TypeVar("T")
MAX_TEXT = 65535
MAX_FIELD = 4096
_OUTPUT = ["id", "document_id", "position", "text", "source", "source_id", "url", "author", "created_at", "metadata"]
_LISTED = [*(f for f in _OUTPUT if f != "text"), "chunk_count", "stored_ts", "updated_ts"]
_BATCH = 500
ADDED_FIELDS = (  # fields added after the first release: custom metadata and the listing
    ("metadata", DataType.JSON),
    ("metadata_ts", DataType.JSON),
    ("chunk_count", DataType.INT64),
    ("stored_ts", DataType.DOUBLE),
    ("updated_ts", DataType.DOUBLE),
)
MODEL_KEY = "plugkit.embedding_model"
DIMENSION_KEY = "plugkit.dimension"


def literal(value: str | float) -> str:
    """A Milvus expression literal: a double-quoted string with `\\` and `"` escaped, or a finite number."""
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {value!r}")
    return repr(float(value))


def _json(field: str, key: str) -> str:
    return f"{field}[{literal(key)}]"


def _value(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return literal(value if isinstance(value, str) else float(value))


def milvus_expression(node: Node) -> str:
    """The Milvus boolean expression of a filter tree (values as escaped literals; every comparison guarded so that
    it is false, never null, where the key is missing)."""
    if isinstance(node, And | Or):
        if not node.parts:
            return 'pk != ""' if isinstance(node, And) else 'pk == ""'
        joiner = " and " if isinstance(node, And) else " or "
        return "(" + joiner.join(milvus_expression(part) for part in node.parts) + ")"
    if isinstance(node, Not):
        return f"(not {milvus_expression(node.part)})"
    if isinstance(node, Equals):
        values = ", ".join(_value(v) for v in node.values)
        if is_standard(node.key):
            return f"({node.key} is not null and {node.key} in [{values}])"
        field = _json("metadata", node.key)
        tests = " or ".join(f"{field} == {_value(v)}" for v in node.values)
        if node.kind == "string":
            tests += f" or json_contains_any({field}, [{values}])"
        return f"(exists {field} and ({tests}))"
    assert isinstance(node, Range)
    if node.key == DATE_FIELD:
        field, guard = "created_ts", "created_ts is not null"
    else:
        field = _json("metadata_ts" if node.kind == "date" else "metadata", node.key)
        guard = f"exists {field}"
    bounds = [
        f"{field} {operator} {literal(float(bound))}"
        for bound, operator in ((node.gt, ">"), (node.gte, ">="), (node.lt, "<"), (node.lte, "<="))
        if bound is not None
    ]
    return "(" + " and ".join([guard, *bounds]) + ")"


def primary_key(tenant: str, chunk_id: str) -> str:
    return hashlib.sha256(f"{tenant}\x00{chunk_id}".encode()).hexdigest()[:40]


class MilvusStore:
    """VectorStore on Milvus (Lite, standalone, cluster or Zilliz Cloud)."""

    name = "milvus"

    def __init__(self, settings: StoreSettings) -> None:
        self.settings = settings
        self.uri = settings.store_url or str(Path(settings.data_dir) / "milvus.db")
        self.collection = settings.collection
        self.client: MilvusClient | None = None
        self.dimension = 0
        self.lite = "://" not in self.uri
        self.unflushed = 0

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        # pymilvus is synchronous; keep the event loop free.
        return await asyncio.to_thread(fn, *args, **kwargs)

    def _client(self) -> MilvusClient:
        if self.client is None:
            raise RuntimeError("the milvus store is not open")
        return self.client

    async def open(self, info: StoreInfo) -> None:
        self.dimension = info.dimension
        if self.lite:
            Path(self.uri).parent.mkdir(parents=True, exist_ok=True)
        client: MilvusClient = await self._run(MilvusClient, self.uri, token=self.settings.api_key or "")
        self.client = client
        if await self._run(client.has_collection, self.collection):
            described = await self._run(client.describe_collection, self.collection)
            properties = described.get("properties") or {}
            try:
                found = StoreInfo(str(properties[MODEL_KEY]), int(properties[DIMENSION_KEY]))
            except (ValueError, KeyError, TypeError):
                raise StoreMismatchError(
                    f"collection {self.collection!r} was not made by plugkit (no embedding model recorded)"
                ) from None
            check_info(found, info, f"collection {self.collection!r}")
            await self._run(self._add_missing_fields, described)
        else:
            await self._run(self._create, info)
        await self._run(client.load_collection, self.collection)

    def _add_missing_fields(self, described: dict[str, Any]) -> None:
        """Give a collection made before custom metadata and the listing their fields (nullable), where the engine
        can (Milvus 2.6+); else refuse it, naming the way out."""
        present = {f.get("name") for f in described.get("fields", [])}
        missing = [(name, kind) for name, kind in ADDED_FIELDS if name not in present]
        for name, kind in missing:
            try:
                self._client().add_collection_field(self.collection, field_name=name, data_type=kind, nullable=True)
            except Exception as exc:
                raise StoreMismatchError(
                    f"collection {self.collection!r} was made by an older plugkit, without the field {name!r}, and"
                    f" this Milvus cannot add it ({exc}): re-ingest into a new collection (PLUGKIT_COLLECTION)"
                ) from exc

    def _create(self, info: StoreInfo) -> None:
        client = self._client()
        schema = client.create_schema(auto_id=False)
        schema.add_field("pk", DataType.VARCHAR, max_length=64, is_primary=True)
        schema.add_field("tenant", DataType.VARCHAR, max_length=MAX_FIELD)
        schema.add_field("id", DataType.VARCHAR, max_length=MAX_FIELD)
        schema.add_field("document_id", DataType.VARCHAR, max_length=MAX_FIELD)
        schema.add_field("position", DataType.INT64)
        schema.add_field("text", DataType.VARCHAR, max_length=MAX_TEXT, enable_analyzer=True)
        for name in ("source", "source_id", "url", "author", "created_at"):
            schema.add_field(name, DataType.VARCHAR, max_length=MAX_FIELD, nullable=True)
        schema.add_field("created_ts", DataType.DOUBLE, nullable=True)
        schema.add_field("metadata", DataType.JSON)
        schema.add_field("metadata_ts", DataType.JSON)
        schema.add_field("chunk_count", DataType.INT64)
        schema.add_field("stored_ts", DataType.DOUBLE)
        schema.add_field("updated_ts", DataType.DOUBLE)
        schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=info.dimension)
        schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        schema.add_function(
            Function(
                name="text_bm25",
                input_field_names=["text"],
                output_field_names=["sparse"],
                function_type=FunctionType.BM25,
            )
        )
        index = client.prepare_index_params()
        index.add_index(
            "embedding",
            index_type="HNSW",
            metric_type="COSINE",
            params={"M": self.settings.hnsw_m, "efConstruction": self.settings.hnsw_ef_construction},
        )
        index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
        for name in ("tenant", "document_id"):
            index.add_index(name, index_type="INVERTED")
        client.create_collection(
            self.collection,
            schema=schema,
            consistency_level="Strong",
            properties={MODEL_KEY: info.embedding_model, DIMENSION_KEY: str(info.dimension)},
        )
        # Not through create_collection's index_params: pymilvus then waits on each index with a fixed 0.5 s sleep
        # before its first check (2 s for these four), though an empty collection's indexes have nothing to build.
        # `open` loads the collection next, which Milvus does once the indexes are declared.
        client.create_index(self.collection, index, sync=False)

    async def close(self) -> None:
        if self.client is not None:
            await self._run(self.client.close)
            self.client = None

    def _expression(self, tenant: str | None, filter: FilterArg = None) -> str:
        expression = f"tenant == {literal(tenant_key(tenant))}"
        tree = to_tree(filter)
        return expression if tree is None else f"{expression} and {milvus_expression(tree)}"

    async def _stored(self, tenant: str | None, document_ids: list[str]) -> dict[str, float]:
        """When each of these documents was first stored (those that exist)."""
        expression = (
            f"{self._expression(tenant)} and position == 0 and document_id in [{', '.join(map(literal, document_ids))}]"
        )
        found = await self._run(
            self._client().query, self.collection, filter=expression, output_fields=["document_id", "stored_ts"]
        )
        return {str(e["document_id"]): float(e["stored_ts"]) for e in found if e.get("stored_ts") is not None}

    @staticmethod
    def _entity(row: Row) -> dict[str, Any]:
        if len(row.text) > MAX_TEXT:
            raise ValueError(f"chunk {row.id!r} is longer than {MAX_TEXT} characters")
        return {"pk": primary_key(row.tenant, row.id), **row.payload(), "embedding": row.embedding}

    async def replace_documents(self, documents: list[DocumentRecord], tenant: str | None = None) -> None:
        latest = {document.document_id: document for document in documents}
        stored: dict[str, float] = {}
        document_ids = list(latest)
        for start in range(0, len(document_ids), _BATCH):
            stored.update(await self._stored(tenant, document_ids[start : start + _BATCH]))
        entities = [
            self._entity(row)
            for document in latest.values()
            for row in rows_of(document, tenant, self.dimension, stored.get(document.document_id))
        ]
        client = self._client()
        for start in range(0, len(entities), _BATCH):
            await self._run(client.upsert, self.collection, entities[start : start + _BATCH])
        for start in range(0, len(documents := list(latest.values())), _BATCH):
            batch = documents[start : start + _BATCH]
            names = {document.document_id for document in batch}
            kept = [entity["pk"] for entity in entities if entity["document_id"] in names]
            expression = (
                f"tenant == {literal(tenant_key(tenant))}"
                f" and document_id in [{', '.join(literal(d.document_id) for d in batch)}]"
            )
            if kept:
                expression += f" and pk not in [{', '.join(map(literal, kept))}]"
            await self._run(client.delete, self.collection, filter=expression)
        self.unflushed += len(entities)

    async def _flush_if_due(self) -> None:
        """Milvus Lite scans unflushed rows one by one: flush them once there are enough to make that slow."""
        if self.lite and self.unflushed >= self.settings.lite_flush_rows:
            await self._run(self._client().flush, self.collection)
            self.unflushed = 0

    async def search_many(self, requests: list[SearchRequest]) -> list[list[DocumentChunkWithScore]]:
        return await search_each(self, requests)

    async def search(self, request: SearchRequest) -> list[DocumentChunkWithScore]:
        client = self._client()
        await self._flush_if_due()
        expression = self._expression(request.tenant, request.filter)
        output = [*_OUTPUT, "embedding"] if request.include_embeddings else _OUTPUT
        dense_params = {"metric_type": "COSINE", "params": {"ef": max(self.settings.ef_search, request.top_k)}}
        if request.embedding is not None and len(request.embedding) != self.dimension:
            raise ValueError(f"the query embedding has {len(request.embedding)} dimensions, the store {self.dimension}")
        if request.mode == "keyword" or request.embedding is None:
            if not request.text.strip():
                return []
            hits = await self._run(
                client.search,
                self.collection,
                data=[request.text],
                anns_field="sparse",
                filter=expression,
                limit=request.top_k,
                output_fields=output,
                search_params={"metric_type": "BM25"},
            )
            # Milvus Lite reports BM25 negated (smaller is better); a cluster reports it as is.
            return [self._result(hit, abs(hit["distance"])) for hit in hits[0]]
        if request.mode == "dense" or not request.text.strip():
            hits = await self._run(
                client.search,
                self.collection,
                data=[request.embedding],
                anns_field="embedding",
                filter=expression,
                limit=request.top_k,
                output_fields=output,
                search_params=dense_params,
            )
            return [self._result(hit, hit["distance"]) for hit in hits[0]]
        pool = max(self.settings.candidate_pool, request.top_k)
        if request.dense_weight is not None or request.keyword_weight is not None:
            return await self._weighted(request, expression, output, dense_params, pool)
        requests = [
            AnnSearchRequest(
                data=[request.embedding], anns_field="embedding", param=dense_params, limit=pool, expr=expression
            ),
            AnnSearchRequest(
                data=[request.text], anns_field="sparse", param={"metric_type": "BM25"}, limit=pool, expr=expression
            ),
        ]
        hits = await self._run(
            client.hybrid_search,
            self.collection,
            requests,
            RRFRanker(self.settings.rrf_k),
            limit=request.top_k,
            output_fields=output,
        )
        return [self._result(hit, hit["distance"]) for hit in hits[0]]

    async def _weighted(
        self, request: SearchRequest, expression: str, output: list[str], dense_params: dict[str, Any], pool: int
    ) -> list[DocumentChunkWithScore]:
        """Hybrid with weights: both rankings fetched, fused here (RRFRanker takes no weights)."""
        client = self._client()
        common: dict[str, Any] = {"filter": expression, "limit": pool, "output_fields": [*output, "pk"]}
        dense = await self._run(
            client.search,
            self.collection,
            data=[request.embedding],
            anns_field="embedding",
            search_params=dense_params,
            **common,
        )
        keyword = await self._run(
            client.search,
            self.collection,
            data=[request.text],
            anns_field="sparse",
            search_params={"metric_type": "BM25"},
            **common,
        )
        by_id = {hit["entity"]["id"]: hit for hit in [*keyword[0], *dense[0]]}
        fused = rrf(
            [[hit["entity"]["id"] for hit in dense[0]], [hit["entity"]["id"] for hit in keyword[0]]],
            k=self.settings.rrf_k,
            weights=[request.dense_weight, request.keyword_weight],
        )
        return [self._result(by_id[key], score) for key, score in fused[: request.top_k]]

    async def list_documents(
        self,
        tenant: str | None = None,
        filter: FilterArg = None,
        limit: int = 20,
        after: tuple[float, str] | None = None,
    ) -> DocumentPage:
        await self._flush_if_due()
        expression = f"{self._expression(tenant, filter)} and position == 0"
        if after is not None:
            expression += f" and updated_ts <= {literal(after[0])}"

        def read() -> list[dict[str, Any]]:
            iterator = self._client().query_iterator(
                self.collection, batch_size=1000, filter=expression, output_fields=_LISTED
            )
            found: list[dict[str, Any]] = []
            while batch := iterator.next():
                found += batch
            iterator.close()
            return found

        entries = [entry_of(entity) for entity in await self._run(read)]
        kept = page_of(entries, limit, after)
        return DocumentPage(kept[:limit], more=len(kept) > limit)

    @staticmethod
    def _result(hit: dict[str, Any], score: float) -> DocumentChunkWithScore:
        entity = hit["entity"]
        return chunk_with_score(entity, score, entity.get("embedding"))

    async def get_document(self, document_id: str, tenant: str | None = None) -> list[DocumentChunk]:
        expression = f"tenant == {literal(tenant_key(tenant))} and document_id == {literal(document_id)}"
        found = await self._run(self._client().query, self.collection, filter=expression, output_fields=_OUTPUT)
        return [chunk_of(entity) for entity in sorted(found, key=lambda entity: entity["position"])]

    async def delete(
        self,
        ids: list[str] | None = None,
        filter: FilterArg = None,
        delete_all: bool = False,
        tenant: str | None = None,
    ) -> int:
        expressions: list[str] = []
        if delete_all:
            expressions.append(f"tenant == {literal(tenant_key(tenant))}")
        else:
            for start in range(0, len(ids or []), _BATCH):
                batch = (ids or [])[start : start + _BATCH]
                expressions.append(
                    f"tenant == {literal(tenant_key(tenant))} and document_id in [{', '.join(map(literal, batch))}]"
                )
            if to_tree(filter) is not None:
                expressions.append(self._expression(tenant, filter))
        deleted = 0
        for expression in expressions:
            count = await self._count(expression)
            await self._run(self._client().delete, self.collection, filter=expression)
            deleted += count
            self.unflushed += count
        return deleted

    async def count(self, tenant: str | None = None) -> int:
        """Chunks of the tenant; without a tenant, every chunk of the collection (all tenants)."""
        return await self._count('pk != ""' if tenant is None else f"tenant == {literal(tenant)}")

    async def _count(self, expression: str) -> int:
        found = await self._run(self._client().query, self.collection, filter=expression, output_fields=["count(*)"])
        return int(found[0]["count(*)"]) if found else 0


def create_store(settings: Any) -> MilvusStore:
    """The Milvus store: `store_url` a Milvus Lite file or an http(s) URI; default `<data_dir>/milvus.db`."""
    return MilvusStore(StoreSettings.of(settings))
