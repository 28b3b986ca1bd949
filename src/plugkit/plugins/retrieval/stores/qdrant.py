"""Qdrant store (qdrant-client, async): `:memory:` or a folder path runs Qdrant's local mode, an http(s) URL a Qdrant
server or cluster (`api_key` for Qdrant Cloud).

One collection per store (`StoreSettings.collection`): a point per chunk, its id a UUID derived from tenant and
chunk id, its payload the metadata plus `tenant`, `position` and `created_ts` (epoch seconds). Payload indexes:
`tenant` (a tenant index), `document_id`, `source`, `source_id`, `author`, `url` (keyword), `created_ts` (float, the
instant of `created_at`) and `text` (full-text, with BM25 scoring). The embedding model and dimension are kept in
the collection's metadata and checked at open.

Custom metadata is the payload's `metadata` object (a list value matches `eq` when it holds the value, as Qdrant
matches arrays), the instants of its ISO 8601 date values `metadata_ts`; filter trees become Qdrant `Filter`
objects (`qdrant_filter`). The listing reads each document's first chunk (`position` 0), sorted in the client.

Search modes: dense = cosine similarity (Qdrant's filterable HNSW applies filters during the graph search);
keyword = native BM25 over the text index; hybrid = both as prefetches fused by reciprocal rank fusion. A
document's re-upsert is one batch request: upsert the new chunks, then delete its chunks that are not among them.
"""

from __future__ import annotations

import uuid
import warnings
from pathlib import Path
from typing import Any

from qdrant_client import AsyncQdrantClient, models

from plugkit.plugins.retrieval.filters import (
    DATE_FIELD,
    STRING_FIELDS,
    And,
    Equals,
    Node,
    Not,
    Or,
    Range,
    is_standard,
    to_tree,
)
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

_NAMESPACE = uuid.UUID("6b1c3f0e-8d8a-4f47-9a43-2f1d0b6c7e51")
_BATCH = 256
PAYLOAD_INDEXES: dict[str, Any] = {
    "tenant": models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True),
    **{name: models.PayloadSchemaType.KEYWORD for name in STRING_FIELDS},
    "created_ts": models.PayloadSchemaType.FLOAT,
    "position": models.PayloadSchemaType.INTEGER,
    "updated_ts": models.PayloadSchemaType.FLOAT,
    "text": models.TextIndexParams(
        type=models.TextIndexType.TEXT, tokenizer=models.TokenizerType.WORD, lowercase=True, scoring=True
    ),
}


def qdrant_condition(node: Node) -> models.Condition:
    """The Qdrant condition of a filter tree (custom keys quoted in the payload path, so `.` stays in the key)."""
    if isinstance(node, And):
        return models.Filter(must=[qdrant_condition(part) for part in node.parts])
    if isinstance(node, Or):
        return models.Filter(should=[qdrant_condition(part) for part in node.parts])
    if isinstance(node, Not):
        return models.Filter(must_not=[qdrant_condition(node.part)])
    if isinstance(node, Equals):
        key = node.key if is_standard(node.key) else f'metadata."{node.key}"'
        if node.kind == "string":
            return models.FieldCondition(key=key, match=models.MatchAny(any=[str(v) for v in node.values]))
        if node.kind == "bool":
            conditions: list[models.Condition] = [
                models.FieldCondition(key=key, match=models.MatchValue(value=bool(v))) for v in node.values
            ]
        else:  # a number: a float matches no MatchValue, a range holds ints and floats alike
            conditions = [
                models.FieldCondition(key=key, range=models.Range(gte=float(v), lte=float(v))) for v in node.values
            ]
        return conditions[0] if len(conditions) == 1 else models.Filter(should=conditions)
    assert isinstance(node, Range)
    if node.key == DATE_FIELD:
        key = "created_ts"
    else:
        key = f'{"metadata_ts" if node.kind == "date" else "metadata"}."{node.key}"'
    return models.FieldCondition(key=key, range=models.Range(gt=node.gt, gte=node.gte, lt=node.lt, lte=node.lte))


def point_id(tenant: str, chunk_id: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{tenant}\x00{chunk_id}"))


def is_server(store_url: str | None) -> bool:
    """Whether the URL names a Qdrant server (http/https) rather than local mode."""
    return bool(store_url) and str(store_url).startswith(("http://", "https://"))


def connect(settings: StoreSettings) -> AsyncQdrantClient:
    """A client for `store_url`: an http(s) URL, `:memory:`, or a folder (default `<data_dir>/qdrant`)."""
    url = settings.store_url
    if url is None:
        return AsyncQdrantClient(path=str(Path(settings.data_dir) / "qdrant"))
    if url == ":memory:":
        return AsyncQdrantClient(location=":memory:")
    if is_server(url):
        return AsyncQdrantClient(url=url, api_key=settings.api_key)
    return AsyncQdrantClient(path=url)


class QdrantStore:
    """VectorStore on Qdrant (local mode, server or cluster)."""

    name = "qdrant"

    def __init__(self, settings: StoreSettings) -> None:
        self.settings = settings
        self.collection = settings.collection
        self.client: AsyncQdrantClient | None = None
        self.dimension = 0
        self.local = not is_server(settings.store_url)

    def _client(self) -> AsyncQdrantClient:
        if self.client is None:
            raise RuntimeError("the qdrant store is not open")
        return self.client

    async def open(self, info: StoreInfo) -> None:
        self.dimension = info.dimension
        self.client = connect(self.settings)
        client = self.client
        if await client.collection_exists(self.collection):
            config = (await client.get_collection(self.collection)).config
            metadata = config.metadata or {}
            if "embedding_model" not in metadata or "dimension" not in metadata:
                raise StoreMismatchError(
                    f"collection {self.collection!r} was not made by plugkit (no embedding model recorded)"
                )
            check_info(
                StoreInfo(str(metadata["embedding_model"]), int(metadata["dimension"])),
                info,
                f"collection {self.collection!r}",
            )
            return
        await client.create_collection(
            self.collection,
            vectors_config=models.VectorParams(size=info.dimension, distance=models.Distance.COSINE),
            hnsw_config=models.HnswConfigDiff(m=self.settings.hnsw_m, ef_construct=self.settings.hnsw_ef_construction),
            metadata={"embedding_model": info.embedding_model, "dimension": info.dimension},
        )
        with warnings.catch_warnings():
            # Local mode ignores payload indexes other than the text one (and says so); a server uses them all.
            warnings.simplefilter("ignore", UserWarning)
            for name, schema in PAYLOAD_INDEXES.items():
                await client.create_payload_index(self.collection, name, schema)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
            self.client = None

    def _filter(self, tenant: str | None, filter: FilterArg = None) -> models.Filter:
        must: list[models.Condition] = [
            models.FieldCondition(key="tenant", match=models.MatchValue(value=tenant_key(tenant)))
        ]
        tree = to_tree(filter)
        if tree is not None:
            must.append(qdrant_condition(tree))
        return models.Filter(must=must)

    async def _stored(self, tenant: str | None, document_ids: list[str]) -> dict[str, float]:
        """When each of these documents was first stored (those that exist)."""
        where = models.Filter(
            must=[
                *self._filter(tenant).must,  # type: ignore[misc]
                models.FieldCondition(key="document_id", match=models.MatchAny(any=document_ids)),
                models.FieldCondition(key="position", match=models.MatchValue(value=0)),
            ]
        )
        found: dict[str, float] = {}
        offset: Any = None
        while True:
            page, offset = await self._client().scroll(
                self.collection,
                scroll_filter=where,
                limit=256,
                offset=offset,
                with_payload=["document_id", "stored_ts"],
            )
            for record in page:
                payload = record.payload or {}
                if payload.get("stored_ts") is not None:
                    found[str(payload["document_id"])] = float(payload["stored_ts"])
            if offset is None:
                return found

    async def replace_documents(self, documents: list[DocumentRecord], tenant: str | None = None) -> None:
        latest = list({document.document_id: document for document in documents}.values())
        client = self._client()
        for start in range(0, len(latest), _BATCH):
            batch = latest[start : start + _BATCH]
            stored = await self._stored(tenant, [document.document_id for document in batch])
            rows = [
                row
                for document in batch
                for row in rows_of(document, tenant, self.dimension, stored.get(document.document_id))
            ]
            points = [
                models.PointStruct(
                    id=point_id(row.tenant, row.id),
                    vector=row.embedding,
                    payload=row.payload(),
                )
                for row in rows
            ]
            stale = models.Filter(
                must=[
                    models.FieldCondition(key="tenant", match=models.MatchValue(value=tenant_key(tenant))),
                    models.FieldCondition(
                        key="document_id", match=models.MatchAny(any=[document.document_id for document in batch])
                    ),
                ],
                must_not=[models.HasIdCondition(has_id=[point.id for point in points])] if points else [],
            )
            operations: list[Any] = []
            if points:
                operations.append(models.UpsertOperation(upsert=models.PointsList(points=points)))
            operations.append(models.DeleteOperation(delete=models.FilterSelector(filter=stale)))
            await client.batch_update_points(self.collection, operations, wait=True)

    async def search_many(self, requests: list[SearchRequest]) -> list[list[DocumentChunkWithScore]]:
        return await search_each(self, requests)

    async def search(self, request: SearchRequest) -> list[DocumentChunkWithScore]:
        client = self._client()
        where = self._filter(request.tenant, request.filter)
        if request.embedding is not None and len(request.embedding) != self.dimension:
            raise ValueError(f"the query embedding has {len(request.embedding)} dimensions, the store {self.dimension}")
        # Local mode searches exhaustively and warns about HNSW parameters; a server takes them.
        params = None if self.local else models.SearchParams(hnsw_ef=max(self.settings.ef_search, request.top_k))
        keyword = models.TextQuery(text=request.text)
        common: dict[str, Any] = {
            "query_filter": where,
            "limit": request.top_k,
            "with_payload": True,
            "with_vectors": request.include_embeddings,
        }
        if request.mode == "keyword" or request.embedding is None:
            if not request.text.strip():
                return []
            response = await client.query_points(self.collection, query=keyword, using="text", **common)
        elif request.mode == "dense" or not request.text.strip():
            response = await client.query_points(
                self.collection, query=request.embedding, search_params=params, **common
            )
        elif request.dense_weight is not None or request.keyword_weight is not None:
            return await self._weighted(request, where, params)
        else:
            pool = max(self.settings.candidate_pool, request.top_k)
            response = await client.query_points(
                self.collection,
                prefetch=[
                    models.Prefetch(query=request.embedding, filter=where, params=params, limit=pool),
                    models.Prefetch(query=keyword, using="text", filter=where, limit=pool),
                ],
                query=models.RrfQuery(rrf=models.Rrf(k=self.settings.rrf_k)),
                **common,
            )
        return [
            chunk_with_score(point.payload or {}, point.score, point.vector if request.include_embeddings else None)  # type: ignore[arg-type]
            for point in response.points
        ]

    async def _weighted(
        self, request: SearchRequest, where: models.Filter, params: models.SearchParams | None
    ) -> list[DocumentChunkWithScore]:
        """Hybrid with weights: both rankings fetched, fused here (Qdrant's RRF query takes no weights)."""
        client = self._client()
        pool = max(self.settings.candidate_pool, request.top_k)
        common: dict[str, Any] = {
            "query_filter": where,
            "limit": pool,
            "with_payload": True,
            "with_vectors": request.include_embeddings,
        }
        dense = await client.query_points(self.collection, query=request.embedding, search_params=params, **common)
        keyword = await client.query_points(
            self.collection, query=models.TextQuery(text=request.text), using="text", **common
        )
        by_id = {str(p.id): p for p in [*keyword.points, *dense.points]}
        fused = rrf(
            [[str(p.id) for p in dense.points], [str(p.id) for p in keyword.points]],
            k=self.settings.rrf_k,
            weights=[request.dense_weight, request.keyword_weight],
        )
        return [
            chunk_with_score(
                by_id[key].payload or {},
                score,
                by_id[key].vector if request.include_embeddings else None,  # type: ignore[arg-type]
            )
            for key, score in fused[: request.top_k]
        ]

    async def list_documents(
        self,
        tenant: str | None = None,
        filter: FilterArg = None,
        limit: int = 20,
        after: tuple[float, str] | None = None,
    ) -> DocumentPage:
        where = self._filter(tenant, filter)
        conditions: list[models.Condition] = [models.FieldCondition(key="position", match=models.MatchValue(value=0))]
        if after is not None:
            conditions.append(models.FieldCondition(key="updated_ts", range=models.Range(lte=after[0])))
        where = models.Filter(must=[*where.must, *conditions])  # type: ignore[misc]
        entries = []
        offset: Any = None
        while True:
            page, offset = await self._client().scroll(
                self.collection,
                scroll_filter=where,
                limit=1024,
                offset=offset,
                with_payload=models.PayloadSelectorExclude(exclude=["text"]),
            )
            entries += [entry_of({**(record.payload or {}), "text": ""}) for record in page]
            if offset is None:
                break
        kept = page_of(entries, limit, after)
        return DocumentPage(kept[:limit], more=len(kept) > limit)

    async def get_document(self, document_id: str, tenant: str | None = None) -> list[DocumentChunk]:
        where = self._filter(tenant, Equals("document_id", "string", (document_id,)))
        records: list[models.Record] = []
        offset: Any = None
        while True:
            page, offset = await self._client().scroll(self.collection, scroll_filter=where, limit=256, offset=offset)
            records += page
            if offset is None:
                break
        records.sort(key=lambda record: int((record.payload or {}).get("position", 0)))
        return [chunk_of(record.payload or {}) for record in records]

    async def delete(
        self,
        ids: list[str] | None = None,
        filter: FilterArg = None,
        delete_all: bool = False,
        tenant: str | None = None,
    ) -> int:
        selectors: list[models.Filter] = []
        if delete_all:
            selectors.append(self._filter(tenant, None))
        else:
            if ids:
                selectors.append(
                    models.Filter(
                        must=[
                            *self._filter(tenant, None).must,  # type: ignore[misc]
                            models.FieldCondition(key="document_id", match=models.MatchAny(any=list(ids))),
                        ]
                    )
                )
            if to_tree(filter) is not None:
                selectors.append(self._filter(tenant, filter))
        deleted = 0
        for selector in selectors:
            deleted += (await self._client().count(self.collection, count_filter=selector, exact=True)).count
            await self._client().delete(self.collection, models.FilterSelector(filter=selector), wait=True)
        return deleted

    async def count(self, tenant: str | None = None) -> int:
        """Chunks of the tenant; without a tenant, every chunk of the collection (all tenants)."""
        where = None if tenant is None else self._filter(tenant, None)
        found = await self._client().count(self.collection, count_filter=where, exact=True)
        return found.count


def create_store(settings: Any) -> QdrantStore:
    """The Qdrant store: `store_url` an http(s) URL, `:memory:` or a folder; default `<data_dir>/qdrant`."""
    return QdrantStore(StoreSettings.of(settings))
