"""What the routes and the ingest command share: documents -> chunks -> embeddings -> store, and queries."""

from __future__ import annotations

import asyncio
import uuid

from plugkit.plugins.retrieval.batching import QueryBatcher
from plugkit.plugins.retrieval.chunking import Tokenizer, chunk_id, chunk_text
from plugkit.plugins.retrieval.embeddings.base import Embedder
from plugkit.plugins.retrieval.models import (
    Document,
    DocumentChunk,
    DocumentChunkMetadata,
    DocumentMetadata,
    Query,
    QueryResult,
)
from plugkit.plugins.retrieval.stores.base import ChunkRecord, DocumentRecord, SearchRequest, StoreInfo, VectorStore


class DocumentTooLongError(ValueError):
    """A document would make more chunks than the configured maximum."""


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
        query_batcher: QueryBatcher | None = None,
    ) -> None:
        self.store, self.embedder, self.tokenizer = store, embedder, tokenizer
        self.query_batcher = query_batcher  # None: each request's queries are embedded on their own
        self.chunk_tokens, self.chunk_overlap = chunk_tokens, chunk_overlap
        self.max_chunks = max_chunks_per_document

    @property
    def store_info(self) -> StoreInfo:
        return StoreInfo(embedding_model=self.embedder.model_id, dimension=self.embedder.dimension)

    async def open(self) -> None:
        """Open the store (checking its model and dimension) and load a local model now, not on the first call."""
        await self.store.open(self.store_info)
        load = getattr(self.embedder, "load", None)
        if callable(load):
            await asyncio.to_thread(load)

    async def close(self) -> None:
        await self.store.close()

    def chunk_document(self, document: Document, document_id: str) -> list[DocumentChunk]:
        metadata = DocumentChunkMetadata(
            **(document.metadata or DocumentMetadata()).model_dump(), document_id=document_id
        )
        chunks = chunk_text(document.text, self.tokenizer, self.chunk_tokens, self.chunk_overlap)
        if len(chunks) > self.max_chunks:
            raise DocumentTooLongError(
                f"document {document_id!r} makes {len(chunks)} chunks, over the limit of {self.max_chunks}"
            )
        return [
            DocumentChunk(id=chunk_id(document_id, n), text=c.text, metadata=metadata) for n, c in enumerate(chunks)
        ]

    async def upsert(self, documents: list[Document], tenant: str | None = None) -> list[str]:
        """Store the documents (replacing the chunks of ids that exist) and return their ids, in order."""
        ids = [d.id or uuid.uuid4().hex for d in documents]
        chunked = await asyncio.to_thread(
            lambda: [self.chunk_document(d, i) for d, i in zip(documents, ids, strict=True)]
        )
        texts = [c.text for chunks in chunked for c in chunks]
        vectors = await self.embedder.embed_documents(texts)
        records, position = [], 0
        for document_id, chunks in zip(ids, chunked, strict=True):
            records.append(
                DocumentRecord(
                    document_id, [ChunkRecord(chunk, vectors[position + n]) for n, chunk in enumerate(chunks)]
                )
            )
            position += len(chunks)
        await self.store.replace_documents(records, tenant=tenant)
        return ids

    async def query(self, queries: list[Query], tenant: str | None = None) -> list[QueryResult]:
        needs_vectors = [q.query for q in queries if q.mode != "keyword"]
        embed = self.query_batcher.embed_queries if self.query_batcher else self.embedder.embed_queries
        vectors = iter(await embed(needs_vectors) if needs_vectors else [])
        results = []
        for q in queries:
            request = SearchRequest(
                text=q.query,
                embedding=next(vectors) if q.mode != "keyword" else None,
                top_k=q.top_k,
                mode=q.mode,
                filter=q.filter,
                tenant=tenant,
            )
            results.append(QueryResult(query=q.query, results=await self.store.search(request)))
        return results
