"""What the routes and the ingest command share: documents -> chunks -> embeddings -> store, and queries."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from plugkit.plugins.retrieval import metrics
from plugkit.plugins.retrieval.batching import QueryBatcher
from plugkit.plugins.retrieval.chunk_pool import ChunkPool
from plugkit.plugins.retrieval.chunking import HFTokenizer, Tokenizer, chunk_id, chunk_text
from plugkit.plugins.retrieval.embeddings.base import Embedder
from plugkit.plugins.retrieval.filters import to_tree
from plugkit.plugins.retrieval.models import (
    Document,
    DocumentChunk,
    DocumentChunkMetadata,
    DocumentChunkWithScore,
    DocumentMetadata,
    Query,
    QueryResult,
)
from plugkit.plugins.retrieval.stores.base import ChunkRecord, DocumentRecord, SearchRequest, StoreInfo, VectorStore

FETCH_FACTOR = 10  # with max_chunks_per_document, candidates fetched per wanted result
MAX_FETCH = 1000


class DocumentTooLongError(ValueError):
    """A document would make more chunks than the configured maximum."""


@dataclass(frozen=True)
class QueryJob:
    """One query of one request, with the tenant it searches."""

    query: Query
    tenant: str | None


class Retriever:
    """Chunks, embeds and stores documents; embeds and runs queries."""

    def __init__(
        self,
        store: VectorStore,
        embedder: Embedder,
        tokenizer: Tokenizer,
        *,
        chunk_tokens: int = 200,
        chunk_overlap: int = 20,
        max_chunks_per_document: int = 10_000,
        query_batch_wait_s: float | None = None,
        query_batch_max: int = 64,
        chunk_workers: int = 0,
    ) -> None:
        """`chunk_workers` > 0: documents are chunked and tokenised by that many processes (`ChunkPool`) and embedded
        from their token ids, when the embedder takes ids (the local model) and the tokenizer is a file's; for an
        embedder that outruns one chunking core (a GPU)."""
        self.store, self.embedder, self.tokenizer = store, embedder, tokenizer
        self.chunk_workers = chunk_workers
        self._chunk_pool: ChunkPool | None = None
        self._chunk_pool_lock = asyncio.Lock()
        # None: each request's queries are answered on their own
        self.query_batcher: QueryBatcher[QueryJob, QueryResult] | None = (
            None
            if query_batch_wait_s is None
            else QueryBatcher(self.answer, max_wait_s=query_batch_wait_s, max_batch=query_batch_max)
        )
        self.chunk_tokens, self.chunk_overlap = chunk_tokens, chunk_overlap
        self.max_chunks = max_chunks_per_document
        self._opening: asyncio.Task[None] | None = None

    @property
    def store_info(self) -> StoreInfo:
        return StoreInfo(embedding_model=self.embedder.model_id, dimension=self.embedder.dimension)

    async def open(self) -> None:
        """Open the store (checking its model and dimension) and load a local model now, not on the first call."""
        await self.store.open(self.store_info)
        load = getattr(self.embedder, "load", None)
        if callable(load):
            await asyncio.to_thread(load)

    def begin_open(self) -> asyncio.Task[None]:
        """`open` in a task of its own: the server answers (readiness 503) while a large index loads."""
        self._opening = asyncio.get_running_loop().create_task(self.open())
        return self._opening

    async def wait_open(self) -> None:
        """Wait for `begin_open`'s work to end; raises what it raised."""
        if self._opening is not None:
            await asyncio.shield(self._opening)

    async def ready(self) -> str | None:
        """None when queries can be answered at once, else why not (a readiness check)."""
        if self._opening is None:
            return None
        if not self._opening.done():
            return "opening the store, loading its index and the embedding model"
        if self._opening.cancelled() or self._opening.exception() is not None:
            return f"the store failed to open: {self._opening.exception()}"
        store_ready = getattr(self.store, "ready", None)  # optional in the VectorStore protocol
        return await store_ready() if callable(store_ready) else None

    async def close(self) -> None:
        """Answer the queries already submitted, then close the store."""
        if self._opening is not None and not self._opening.done():
            await asyncio.wait({self._opening})
        if self.query_batcher is not None:
            await self.query_batcher.drain()
        if self._chunk_pool is not None:
            self._chunk_pool.close()
        await self.store.close()

    def chunk_document(self, document: Document, document_id: str) -> list[DocumentChunk]:
        """The document's chunks as the store keeps them (their metadata with the document's id)."""
        texts = self._chunk_texts(document)
        metadata = self._chunk_metadata(document, document_id, len(texts))
        return [
            DocumentChunk(id=chunk_id(document_id, n), text=text, metadata=metadata) for n, text in enumerate(texts)
        ]

    def _chunk_texts(self, document: Document) -> list[str]:
        return [c.text for c in chunk_text(document.text, self.tokenizer, self.chunk_tokens, self.chunk_overlap)]

    def _chunk_metadata(self, document: Document, document_id: str, chunks: int) -> DocumentChunkMetadata:
        """The metadata every chunk of the document shares; DocumentTooLongError when it makes too many chunks."""
        if chunks > self.max_chunks:
            raise DocumentTooLongError(
                f"document {document_id!r} makes {chunks} chunks, over the limit of {self.max_chunks}"
            )
        return DocumentChunkMetadata(**(document.metadata or DocumentMetadata()).model_dump(), document_id=document_id)

    async def _pool(self) -> ChunkPool | None:
        """The chunking processes, started on first use, when `chunk_workers` asks for them and they can serve."""
        if self.chunk_workers < 1:
            return None
        async with self._chunk_pool_lock:
            spec, tokenizer = getattr(self.embedder, "token_spec", None), self.tokenizer
            takes_ids = hasattr(self.embedder, "embed_token_ids")
            if self._chunk_pool is None and callable(spec) and takes_ids and isinstance(tokenizer, HFTokenizer):
                self._chunk_pool = ChunkPool(
                    tokenizer,
                    await asyncio.to_thread(spec),  # loads the model
                    self.chunk_tokens,
                    self.chunk_overlap,
                    self.chunk_workers,
                )
        return self._chunk_pool

    async def upsert(self, documents: list[Document], tenant: str | None = None) -> list[str]:
        """Store the documents (replacing the chunks of ids that exist) and return their ids, in order."""
        ids = [d.id or uuid.uuid4().hex for d in documents]
        pool = await self._pool()
        if pool is not None:
            prepared = await pool.prepare([d.text for d in documents])
            chunk_texts = prepared.texts
        else:
            chunk_texts = await asyncio.to_thread(lambda: [self._chunk_texts(d) for d in documents])
        # Checked before the model runs: a document over the chunk limit fails the write at once.
        metadata = [
            self._chunk_metadata(d, i, len(texts)) for d, i, texts in zip(documents, ids, chunk_texts, strict=True)
        ]
        vectors: Any
        if pool is not None:
            with metrics.embedding("document", len(prepared.lengths)):
                matrix = await self.embedder.embed_token_ids(prepared.flat, prepared.lengths)  # type: ignore[attr-defined]
            # A list of floats costs about 35 us a vector to make: only for a store that needs one.
            vectors = matrix if getattr(self.store, "takes_arrays", False) else matrix.tolist()
        else:
            flat = [text for texts in chunk_texts for text in texts]
            with metrics.embedding("document", len(flat)):
                vectors = await self.embedder.embed_documents(flat)
        # The records hold each chunk's id, text and shared metadata as they are, no model object a chunk: building
        # them takes 5.1 us of CPU a chunk against 8.1 with a DocumentChunk each (SciFact, one core).
        records, position = [], 0
        for document_id, texts, shared in zip(ids, chunk_texts, metadata, strict=True):
            records.append(
                DocumentRecord(
                    document_id,
                    [
                        ChunkRecord(chunk_id(document_id, n), text, shared, vectors[position + n])
                        for n, text in enumerate(texts)
                    ],
                )
            )
            position += len(texts)
        await self.store.replace_documents(records, tenant=tenant)
        return ids

    async def query(self, queries: list[Query], tenant: str | None = None) -> list[QueryResult]:
        """Answer a request's queries: in a batch shared with concurrent requests when batching is on."""
        jobs = [QueryJob(q, tenant) for q in queries]
        if self.query_batcher is not None:
            return await self.query_batcher.submit(jobs)
        answers = await self.answer(jobs)
        failed = next((a for a in answers if isinstance(a, Exception)), None)
        if failed is not None:
            raise failed
        return answers  # type: ignore[return-value]

    async def answer(self, jobs: list[QueryJob]) -> list[QueryResult | Exception]:
        """Embed every text that needs a vector in one call, then run every search in one call to the store. A
        search that fails is that job's answer alone (the others are searched again one by one)."""
        texts = [j.query.query for j in jobs if j.query.mode != "keyword"]
        vectors: Iterator[list[float]] = iter(())
        if texts:
            with metrics.embedding("query", len(texts)):
                vectors = iter(await self.embedder.embed_queries(texts))
        requests = [
            SearchRequest(
                text=j.query.query,
                embedding=next(vectors) if j.query.mode != "keyword" else None,
                top_k=j.query.top_k
                if j.query.max_chunks_per_document is None
                else min(MAX_FETCH, j.query.top_k * FETCH_FACTOR),
                mode=j.query.mode,
                filter=to_tree(j.query.filter),
                tenant=j.tenant,
                dense_weight=j.query.dense_weight,
                keyword_weight=j.query.keyword_weight,
            )
            for j in jobs
        ]
        found: list[list[DocumentChunkWithScore] | Exception]
        try:
            with metrics.searching({r.mode for r in requests}):
                found = list(await self.store.search_many(requests))
        except Exception:
            if len(requests) == 1:
                raise
            found = []
            for request in requests:
                try:
                    found.append(await self.store.search(request))
                except Exception as exc:
                    found.append(exc)
        return [
            r if isinstance(r, Exception) else QueryResult(query=j.query.query, results=controlled(j.query, r))
            for j, r in zip(jobs, found, strict=True)
        ]


def controlled(query: Query, results: list[DocumentChunkWithScore]) -> list[DocumentChunkWithScore]:
    """The results under the query's controls: none under `score_threshold`, at most `max_chunks_per_document` of
    one document, at most `top_k`, in rank order."""
    if query.score_threshold is not None:
        results = [r for r in results if r.score >= query.score_threshold]
    if query.max_chunks_per_document is not None:
        seen: dict[str | None, int] = {}
        kept = []
        for result in results:
            document = result.metadata.document_id
            if seen.get(document, 0) < query.max_chunks_per_document:
                seen[document] = seen.get(document, 0) + 1
                kept.append(result)
        results = kept
    return results[: query.top_k]
