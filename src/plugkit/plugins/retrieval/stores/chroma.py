"""Chroma store (chromadb): an embedded persistent client in a folder, or a Chroma server or Chroma Cloud over HTTP.

`store_url` None keeps the data in `<data_dir>/chroma`, a plain path in that folder; an http(s) URL names a server
(`chroma run`) or Chroma Cloud; with `api_key` the client authenticates with Chroma's token header, and the tenant
and database come from the URL's query (`?tenant=..&database=..`) or, for Chroma Cloud, from the key.

One collection per store (`StoreSettings.collection`, cosine HNSW): a record per chunk, its id a hash of tenant and
chunk id, its document the chunk text, its metadata the flat row of stores/common.py (missing values left out) plus
`metadata`, the chunk's whole metadata as JSON. The embedding model and dimension are kept in the collection's
metadata and checked at open.

Custom metadata is also flattened for filtering: each custom key as `c.<key>` (a list of strings as a Chroma array,
an empty list left out), the instant of a custom ISO 8601 date value as `t.<key>`, and `ranged`, the array of the
numeric fields a chunk has (`created_ts`, `c.<key>` of numbers, `t.<key>`), so that a negated range also matches the
chunks that lack the key. Filter trees become Chroma `where` dicts (structured values, never text) in
`chroma_where`: a negation is pushed down to the comparisons, where `$ne`/`$nin`/`$not_contains` match chunks
lacking the key, as the filter language wants; `eq` on a custom string key is `$in` or `$contains` (a list field
holding the value). The listing reads each document's first chunk (`position` 0), sorted in the client.

Search modes: dense = cosine similarity (Chroma filters during the HNSW search). Keyword: the engine's full-text
match (`where_document` `$regex`, case-insensitive whole words, over the filtered chunks) selects the chunks holding
any query word, which are ranked by BM25 here, since local Chroma has no ranked text search (its `search()` runs on
Chroma Cloud only). Hybrid: both rankings, `candidate_pool` each, fused by (weighted) reciprocal rank fusion.

Re-upsert: Chroma has no multi-record transactions, so a document's new chunks are upserted first (same ids
overwrite in place), then its chunks that are not among them are deleted: a reader in between may see new chunks
next to stale ones of a longer previous version, never a document with no chunks.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import chromadb
from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection
from chromadb.config import DEFAULT_DATABASE, DEFAULT_TENANT, Settings
from chromadb.utils.embedding_functions.chroma_bm25_embedding_function import DEFAULT_CHROMA_BM25_STOPWORDS

from plugkit.plugins.retrieval.filters import DATE_FIELD, And, Equals, Node, Not, Or, Range, is_standard, to_tree
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

T = TypeVar("T")
MODEL_KEY = "plugkit_embedding_model"
DIMENSION_KEY = "plugkit_dimension"
_BATCH = 500
_WORD = re.compile(r"\w+")
_STOPWORDS = frozenset(DEFAULT_CHROMA_BM25_STOPWORDS)
MAX_TERMS = 32
KEYWORD_SCAN = 10_000  # the most chunks a keyword query ranks (those matching any of its words)
BM25_K1, BM25_B = 1.2, 0.75

Condition = dict[str, Any]


def record_id(tenant: str, chunk_id: str) -> str:
    return hashlib.sha256(f"{tenant}\x00{chunk_id}".encode()).hexdigest()[:40]


CUSTOM = "c."  # the flattened custom keys
INSTANT = "t."  # the instants of custom values written as ISO 8601 dates
RANGED = "ranged"  # the numeric fields a chunk has
_ALL: Condition = {"position": {"$gte": 0}}
_NONE: Condition = {"position": {"$lt": 0}}
_INVERSE = {"$gt": "$lte", "$gte": "$lt", "$lt": "$gte", "$lte": "$gt"}


def _join(operator: str, parts: list[Condition]) -> Condition:
    """`$and`/`$or` of the parts (Chroma wants two or more; none is always true / always false)."""
    if not parts:
        return _ALL if operator == "$and" else _NONE
    return parts[0] if len(parts) == 1 else {operator: parts}


def chroma_where(node: Node, negate: bool = False) -> Condition:
    """The Chroma `where` dict of a filter tree (or of its negation): values stay structured values."""
    if isinstance(node, Not):
        return chroma_where(node.part, not negate)
    if isinstance(node, And | Or):
        operator = "$and" if isinstance(node, And) != negate else "$or"
        return _join(operator, [chroma_where(part, negate) for part in node.parts])
    if isinstance(node, Equals):
        field = node.key if is_standard(node.key) else CUSTOM + node.key
        values = [float(v) for v in node.values] if node.kind == "number" else list(node.values)
        parts: list[Condition] = [{field: {"$nin" if negate else "$in": values}}]
        if node.kind == "string" and not is_standard(node.key):  # a list field holding the value
            parts += [{field: {"$not_contains" if negate else "$contains": value}} for value in values]
        return _join("$and" if negate else "$or", parts)
    assert isinstance(node, Range)
    if node.key == DATE_FIELD:
        field = "created_ts"
    else:
        field = (INSTANT if node.kind == "date" else CUSTOM) + node.key
    bounds = [
        (operator, float(bound))
        for operator, bound in (("$gt", node.gt), ("$gte", node.gte), ("$lt", node.lt), ("$lte", node.lte))
        if bound is not None
    ]
    if negate:
        absent: Condition = {RANGED: {"$not_contains": field}}
        return _join("$or", [absent, *({field: {_INVERSE[op]: bound}} for op, bound in bounds)])
    if not bounds:
        return {RANGED: {"$contains": field}}
    return _join("$and", [{field: {op: bound}} for op, bound in bounds])


def conditions_of(tenant: str | None, filter: FilterArg = None) -> list[Condition]:
    """The tenant, and the filter (a tree or a flat filter) as a Chroma condition; bad dates raise ValueError."""
    found: list[Condition] = [{"tenant": {"$eq": tenant_key(tenant)}}]
    tree = to_tree(filter)
    if tree is not None:
        found.append(chroma_where(tree))
    return found


def where_of(conditions: Sequence[Condition]) -> Condition:
    """A Chroma `where` dict that holds when all conditions do (`$and` wants two or more)."""
    return dict(conditions[0]) if len(conditions) == 1 else {"$and": list(conditions)}


def flat_custom(custom: dict[str, Any], instants: dict[str, float]) -> dict[str, Any]:
    """The filterable Chroma metadata of custom keys: `c.<key>`, `t.<key>` and `ranged` (see the module doc)."""
    flat: dict[str, Any] = {}
    ranged: list[str] = []
    for key, value in custom.items():
        if isinstance(value, list):
            kinds = {type(item) for item in value}
            if value and len(kinds) == 1:  # Chroma arrays are non-empty and of one type
                flat[CUSTOM + key] = list(value)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            flat[CUSTOM + key] = float(value)  # filters compare numbers as floats
            ranged.append(CUSTOM + key)
        elif value is not None:
            flat[CUSTOM + key] = value
    for key, instant in instants.items():
        flat[INSTANT + key] = instant
        ranged.append(INSTANT + key)
    if ranged:
        flat[RANGED] = ranged
    return flat


def query_terms(text: str) -> list[str]:
    """The distinct lowercase words of a query, stopwords left out unless nothing else is left."""
    words = list(dict.fromkeys(word.lower() for word in _WORD.findall(text)))
    kept = [word for word in words if word not in _STOPWORDS] or words
    return kept[:MAX_TERMS]


def bm25(texts: Sequence[str], terms: Sequence[str], total: int) -> list[float]:
    """Okapi BM25 of each text for the terms; document frequencies come from `texts` (every chunk holding a term),
    the collection size from `total`, the average length from `texts`."""
    counts = [Counter(_WORD.findall(text.lower())) for text in texts]
    lengths = [sum(count.values()) for count in counts]
    average = (sum(lengths) / len(lengths)) if lengths else 1.0
    scores = [0.0] * len(texts)
    for term in terms:
        frequency = sum(1 for count in counts if term in count)
        if not frequency:
            continue
        idf = math.log(1 + (max(total, frequency) - frequency + 0.5) / (frequency + 0.5))
        for i, count in enumerate(counts):
            tf = count.get(term, 0)
            if tf:
                norm = BM25_K1 * (1 - BM25_B + BM25_B * lengths[i] / max(average, 1e-9))
                scores[i] += idf * tf * (BM25_K1 + 1) / (tf + norm)
    return scores


def connect(settings: StoreSettings) -> ClientAPI:
    """A client for `store_url`: an http(s) URL (a server, or Chroma Cloud with `api_key`), or a folder."""
    options = Settings(anonymized_telemetry=False)
    url = settings.store_url
    if url is None or not url.startswith(("http://", "https://")):
        path = Path(url) if url else Path(settings.data_dir) / "chroma"
        path.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(path), settings=options)
    parts = urlsplit(url)
    if not parts.hostname:
        raise ValueError(f"the chroma store URL names no host: {url!r}")
    ssl = parts.scheme == "https"
    port = parts.port or (443 if ssl else 8000)
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    if settings.api_key:
        return chromadb.CloudClient(
            tenant=query.get("tenant"),
            database=query.get("database"),
            api_key=settings.api_key,
            cloud_host=parts.hostname,
            cloud_port=port,
            enable_ssl=ssl,
            settings=options,
        )
    return chromadb.HttpClient(
        host=parts.hostname,
        port=port,
        ssl=ssl,
        settings=options,
        tenant=query.get("tenant", DEFAULT_TENANT),
        database=query.get("database", DEFAULT_DATABASE),
    )


class ChromaStore:
    """VectorStore on Chroma (embedded persistent client, server, or Chroma Cloud)."""

    name = "chroma"

    def __init__(self, settings: StoreSettings) -> None:
        self.settings = settings
        self.client: ClientAPI | None = None
        self.collection: Collection | None = None
        self.dimension = 0

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        # chromadb's client is synchronous; keep the event loop free.
        return await asyncio.to_thread(fn, *args, **kwargs)

    def _collection(self) -> Collection:
        if self.collection is None:
            raise RuntimeError("the chroma store is not open")
        return self.collection

    async def open(self, info: StoreInfo) -> None:
        self.dimension = info.dimension
        self.client = await self._run(connect, self.settings)
        self.collection = await self._run(
            self.client.get_or_create_collection,
            self.settings.collection,
            metadata={MODEL_KEY: info.embedding_model, DIMENSION_KEY: info.dimension},
            configuration={
                "hnsw": {
                    "space": "cosine",
                    "ef_construction": self.settings.hnsw_ef_construction,
                    "ef_search": self.settings.ef_search,
                    "max_neighbors": self.settings.hnsw_m,
                }
            },
            embedding_function=None,
        )
        metadata = self.collection.metadata or {}
        try:
            found = StoreInfo(str(metadata[MODEL_KEY]), int(metadata[DIMENSION_KEY]))
        except (KeyError, TypeError, ValueError):
            raise StoreMismatchError(
                f"collection {self.settings.collection!r} was not made by plugkit (no embedding model recorded)"
            ) from None
        check_info(found, info, f"collection {self.settings.collection!r}")
        sample = await self._run(self.collection.get, limit=1, include=["metadatas"])
        first = list(sample.get("metadatas") or [])[:1]
        if first and first[0] is not None and "chunk_count" not in first[0]:
            raise StoreMismatchError(
                f"collection {self.settings.collection!r} was made by an older plugkit, without custom metadata"
                " filtering and the listing's fields: re-ingest into a new collection (PLUGKIT_COLLECTION)"
            )

    async def close(self) -> None:
        # An embedded client's engine is shared by every client of its folder in the process: drop the references.
        self.collection = None
        self.client = None

    @staticmethod
    def _metadata(row: Row, full: dict[str, Any]) -> dict[str, Any]:
        skipped = ("text", "metadata", "metadata_ts")
        values = {name: value for name, value in row.payload().items() if name not in skipped and value is not None}
        if row.created_ts is not None:
            values[RANGED] = ["created_ts"]
        flat = flat_custom(row.metadata, row.metadata_ts)
        if RANGED in flat:
            values[RANGED] = [*values.get(RANGED, []), *flat.pop(RANGED)]
        return {**values, **flat, "metadata": json.dumps(full, ensure_ascii=False)}

    async def _stored(self, tenant: str | None, document_ids: list[str]) -> dict[str, float]:
        """When each of these documents was first stored (those that exist)."""
        where = where_of([*conditions_of(tenant), {"document_id": {"$in": document_ids}}, {"position": {"$eq": 0}}])
        found = await self._run(self._collection().get, where=where, include=["metadatas"])
        stored: dict[str, float] = {}
        for metadata in found.get("metadatas") or []:
            if metadata and metadata.get("stored_ts") is not None:
                stored[str(metadata["document_id"])] = float(metadata["stored_ts"])  # type: ignore[arg-type]
        return stored

    async def replace_documents(self, documents: list[DocumentRecord], tenant: str | None = None) -> None:
        latest = list({document.document_id: document for document in documents}.values())
        collection = self._collection()
        for start in range(0, len(latest), _BATCH):
            batch = latest[start : start + _BATCH]
            ids: list[str] = []
            texts: list[str] = []
            embeddings: list[list[float]] = []
            metadatas: list[dict[str, Any]] = []
            stored = await self._stored(tenant, [document.document_id for document in batch])
            for document in batch:
                rows = rows_of(document, tenant, self.dimension, stored.get(document.document_id))
                for row, record in zip(rows, document.chunks, strict=True):
                    ids.append(record_id(row.tenant, row.id))
                    texts.append(row.text)
                    embeddings.append(row.embedding)
                    full = record.metadata.model_dump(mode="json", exclude_none=True)
                    metadatas.append(self._metadata(row, full))
            if ids:
                await self._run(collection.upsert, ids=ids, embeddings=embeddings, documents=texts, metadatas=metadatas)
            names = [document.document_id for document in batch]
            where = where_of([{"tenant": {"$eq": tenant_key(tenant)}}, {"document_id": {"$in": names}}])
            present = await self._ids(where)
            kept = set(ids)
            await self._delete_ids([found for found in present if found not in kept])

    async def _ids(self, where: Condition) -> list[str]:
        found = await self._run(self._collection().get, where=where, include=[])
        return list(found["ids"])

    async def _delete_ids(self, ids: list[str]) -> None:
        for start in range(0, len(ids), _BATCH):
            await self._run(self._collection().delete, ids=ids[start : start + _BATCH])

    async def search_many(self, requests: list[SearchRequest]) -> list[list[DocumentChunkWithScore]]:
        return await search_each(self, requests)

    async def search(self, request: SearchRequest) -> list[DocumentChunkWithScore]:
        where = where_of(conditions_of(request.tenant, request.filter))
        if request.embedding is not None and len(request.embedding) != self.dimension:
            raise ValueError(f"the query embedding has {len(request.embedding)} dimensions, the store {self.dimension}")
        if request.mode == "keyword" or request.embedding is None:
            hits = await self._keyword(request.text, where, request.top_k, request.include_embeddings)
            return [self._result(hit, score) for hit, score in hits]
        if request.mode == "dense" or not request.text.strip():
            hits = await self._dense(request.embedding, where, request.top_k, request.include_embeddings)
            return [self._result(hit, score) for hit, score in hits]
        pool = max(self.settings.candidate_pool, request.top_k)
        dense, keyword = await asyncio.gather(
            self._dense(request.embedding, where, pool, request.include_embeddings),
            self._keyword(request.text, where, pool, request.include_embeddings),
        )
        found = {hit["_id"]: hit for hit, _ in [*dense, *keyword]}
        fused = rrf(
            [[hit["_id"] for hit, _ in dense], [hit["_id"] for hit, _ in keyword]],
            self.settings.rrf_k,
            weights=[request.dense_weight, request.keyword_weight],
        )
        return [self._result(found[key], score) for key, score in fused[: request.top_k]]

    async def _dense(
        self, embedding: list[float], where: Condition, limit: int, with_vectors: bool
    ) -> list[tuple[dict[str, Any], float]]:
        include: list[Any] = ["documents", "metadatas", "distances", *(["embeddings"] if with_vectors else [])]
        found = await self._run(
            self._collection().query, query_embeddings=[embedding], n_results=limit, where=where, include=include
        )
        hits = self._hits(found, 0)
        distances = (found.get("distances") or [[]])[0]
        return [(hit, 1.0 - float(distance)) for hit, distance in zip(hits, distances, strict=True)]

    async def _keyword(
        self, text: str, where: Condition, limit: int, with_vectors: bool
    ) -> list[tuple[dict[str, Any], float]]:
        terms = query_terms(text)
        if not terms:
            return []
        # The terms are runs of word characters only, so the pattern holds no regex syntax from the query.
        pattern = "(?i)\\b(?:" + "|".join(terms) + ")\\b"
        include: list[Any] = ["documents", "metadatas", *(["embeddings"] if with_vectors else [])]
        collection = self._collection()
        found = await self._run(
            collection.get, where=where, where_document={"$regex": pattern}, limit=KEYWORD_SCAN, include=include
        )
        hits = self._hits(found, None)
        if not hits:
            return []
        total = await self._run(collection.count)
        scores = await self._run(bm25, [hit["text"] for hit in hits], terms, total)
        ranked = sorted(zip(hits, scores, strict=True), key=lambda pair: pair[1], reverse=True)
        return [(hit, score) for hit, score in ranked if score > 0][:limit]

    @staticmethod
    def _hits(found: Any, row: int | None) -> list[dict[str, Any]]:
        """Records of a get (row None) or of one query (its row) as dicts: metadata, `text`, `_id`, `_embedding`."""

        def column(name: str) -> list[Any]:
            values = found.get(name)
            if values is None:
                return []
            return list(values[row] if row is not None else values)

        ids, texts, metadatas = column("ids"), column("documents"), column("metadatas")
        embeddings = column("embeddings")
        return [
            {
                **(metadatas[i] or {}),
                "text": texts[i] or "",
                "_id": ids[i],
                "_embedding": embeddings[i] if embeddings else None,
            }
            for i in range(len(ids))
        ]

    @staticmethod
    def _values(hit: dict[str, Any]) -> dict[str, Any]:
        """The stored values of a record with `metadata` its custom keys (the record keeps the whole metadata)."""
        full = json.loads(hit["metadata"]) if hit.get("metadata") else {}
        custom = {key: value for key, value in full.items() if key not in DocumentChunkMetadata.__pydantic_fields__}
        return {**hit, "metadata": custom}

    @classmethod
    def _chunk(cls, hit: dict[str, Any]) -> DocumentChunk:
        return chunk_of(cls._values(hit), hit.get("_embedding"))

    def _result(self, hit: dict[str, Any], score: float) -> DocumentChunkWithScore:
        return DocumentChunkWithScore(**dict(self._chunk(hit)), score=float(score))

    async def get_document(self, document_id: str, tenant: str | None = None) -> list[DocumentChunk]:
        where = where_of(conditions_of(tenant, Equals("document_id", "string", (document_id,))))
        found = await self._run(self._collection().get, where=where, include=["documents", "metadatas"])
        hits = sorted(self._hits(found, None), key=lambda hit: int(hit.get("position", 0)))
        return [self._chunk({**hit, "_embedding": None}) for hit in hits]

    async def delete(
        self,
        ids: list[str] | None = None,
        filter: FilterArg = None,
        delete_all: bool = False,
        tenant: str | None = None,
    ) -> int:
        selectors: list[Condition] = []
        if delete_all:
            selectors.append(where_of(conditions_of(tenant, None)))
        else:
            for start in range(0, len(ids or []), _BATCH):
                batch = (ids or [])[start : start + _BATCH]
                selectors.append(where_of([*conditions_of(tenant, None), {"document_id": {"$in": batch}}]))
            if to_tree(filter) is not None:
                selectors.append(where_of(conditions_of(tenant, filter)))
        deleted = 0
        for where in selectors:
            found = await self._ids(where)
            await self._delete_ids(found)
            deleted += len(found)
        return deleted

    async def list_documents(
        self,
        tenant: str | None = None,
        filter: FilterArg = None,
        limit: int = 20,
        after: tuple[float, str] | None = None,
    ) -> DocumentPage:
        conditions = [*conditions_of(tenant, filter), {"position": {"$eq": 0}}]
        if after is not None:
            conditions.append({"updated_ts": {"$lte": after[0]}})
        found = await self._run(self._collection().get, where=where_of(conditions), include=["metadatas"])
        entries = [entry_of(self._values({**(metadata or {})})) for metadata in found.get("metadatas") or []]
        kept = page_of(entries, limit, after)
        return DocumentPage(kept[:limit], more=len(kept) > limit)

    async def count(self, tenant: str | None = None) -> int:
        """Chunks of the tenant; without a tenant, every chunk of the collection (all tenants)."""
        if tenant is None:
            return await self._run(self._collection().count)
        return len(await self._ids(where_of(conditions_of(tenant, None))))


def create_store(settings: Any) -> ChromaStore:
    """The Chroma store: `store_url` an http(s) URL or a folder; default `<data_dir>/chroma`."""
    return ChromaStore(StoreSettings.of(settings))
