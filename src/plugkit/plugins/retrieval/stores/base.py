"""The contract every vector store fulfils. One contract suite (tests/contract/) runs against all of them.

Conventions every provider keeps:
- chunk ids are `<document_id>_<n>`; `replace_documents` swaps all chunks of each document atomically (a reader sees
  the old chunks or the new ones, never a mix);
- a filter is the typed tree of plugkit.plugins.retrieval.filters (a flat `DocumentMetadataFilter` is accepted too:
  `filters.to_tree` turns either into the tree), translated into the engine's own filter with bound parameters and
  applied inside the search (a filtered query still returns `top_k` hits when that many match); dates compare as
  instants; custom metadata keys are filterable like the standard fields;
- custom metadata (`DocumentMetadata.custom`) is stored and returned with every chunk;
- scores are higher-is-better in every mode; `hybrid` fuses dense and keyword rankings;
- `tenant` scopes everything: with a tenant, a call sees, returns and deletes only that tenant's chunks; None means
  the store's shared space (no tenancy);
- `delete(delete_all=True)` removes only this store's own collection/table contents, never anything else.

Provider convention: a store named `<name>` lives in the module `plugkit.plugins.retrieval.stores.<name>`, which
exposes `create_store(settings: RetrievalSettings) -> VectorStore` (cheap: no connection until `open`). The factory
`plugkit.plugins.retrieval.stores.build_store(name, settings)` imports that module lazily, so a provider's client
library is needed only when it is chosen. Settings a provider may read: `store_url`, `store_api_key`, `collection`,
`data_dir` (for embedded engines), `hybrid_dense_weight`, `hybrid_keyword_weight`, `rrf_k`. A provider whose
engine can run in-process keeps its files in `<data_dir>/<name>` when `store_url` is None, and in the folder
`store_url` names when that is a plain path (so two stores given one folder share one engine).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from plugkit.plugins.retrieval.filters import Node
from plugkit.plugins.retrieval.models import (
    DocumentChunk,
    DocumentChunkMetadata,
    DocumentChunkWithScore,
    DocumentMetadata,
    DocumentMetadataFilter,
    SearchMode,
)

SHARED_TENANT = ""  # how the shared space (no tenant) is stored
FilterArg = Node | DocumentMetadataFilter | None


@dataclass(frozen=True, slots=True)
class ChunkRecord:
    """A chunk as stored: its id, text, metadata (with document_id; usually one object shared by the chunks of a
    document) and embedding (a list of floats; or a row of a float32 array, given only to a store whose class sets
    `takes_arrays = True`)."""

    id: str | None
    text: str
    metadata: DocumentChunkMetadata
    embedding: list[float] | NDArray[np.float32]

    @classmethod
    def of(cls, chunk: DocumentChunk, embedding: list[float] | NDArray[np.float32]) -> ChunkRecord:
        return cls(chunk.id, chunk.text, chunk.metadata, embedding)


@dataclass(frozen=True)
class DocumentRecord:
    """All chunks of one document, in order; written as one unit."""

    document_id: str
    chunks: list[ChunkRecord]


@dataclass(frozen=True)
class SearchRequest:
    text: str
    embedding: list[float] | None
    top_k: int = 3
    mode: SearchMode = "hybrid"
    filter: FilterArg = None
    tenant: str | None = None
    include_embeddings: bool = False
    dense_weight: float | None = None  # hybrid: the weights of the two rankings (None: the store's default)
    keyword_weight: float | None = None


@dataclass(frozen=True)
class DocumentEntry:
    """A stored document as the listing shows it."""

    document_id: str
    metadata: DocumentMetadata
    chunk_count: int
    stored_ts: float  # first stored, epoch seconds
    updated_ts: float  # last stored


@dataclass(frozen=True)
class DocumentPage:
    documents: list[DocumentEntry]
    more: bool  # whether documents follow the last one


@dataclass(frozen=True)
class StoreInfo:
    """What the store was built with; opening it with another embedding model or dimension is refused."""

    embedding_model: str
    dimension: int
    extra: dict[str, str] = field(default_factory=dict)


class StoreMismatchError(RuntimeError):
    """The store holds vectors of another embedding model or dimension than the one configured."""


class VectorStore(Protocol):
    name: str

    async def open(self, info: StoreInfo) -> None:
        """Connect, create what is missing, and check (or record) the embedding model and dimension.
        Raises StoreMismatchError when the store was built with another model or dimension."""
        ...

    async def close(self) -> None: ...

    async def replace_documents(self, documents: list[DocumentRecord], tenant: str | None = None) -> None:
        """Store each document's chunks, replacing every chunk it had before, atomically per document."""
        ...

    async def search(self, request: SearchRequest) -> list[DocumentChunkWithScore]:
        """The best `top_k` chunks for the request, best first."""
        ...

    async def search_many(self, requests: list[SearchRequest]) -> list[list[DocumentChunkWithScore]]:
        """`search` of each request, in order (one call for a batch of queries; raises if any search fails)."""
        ...

    async def get_document(self, document_id: str, tenant: str | None = None) -> list[DocumentChunk]:
        """A document's chunks in order; empty when it does not exist (for this tenant)."""
        ...

    async def delete(
        self,
        ids: list[str] | None = None,
        filter: FilterArg = None,
        delete_all: bool = False,
        tenant: str | None = None,
    ) -> int:
        """Delete whole documents by document id, or every chunk matching the filter, or everything (of the tenant).
        Returns the number of chunks deleted."""
        ...

    async def count(self, tenant: str | None = None) -> int:
        """How many chunks are stored (for the tenant, when given)."""
        ...

    async def list_documents(
        self,
        tenant: str | None = None,
        filter: FilterArg = None,
        limit: int = 20,
        after: tuple[float, str] | None = None,
    ) -> DocumentPage:
        """Documents of the tenant matching the filter, newest (last updated) first, then by id; `after` is the
        (updated_ts, document_id) of the last document of the previous page."""
        ...

    # Optional: `async def ready(self) -> str | None`, None once searches reflect the store (its indexes loaded and
    # caught up), else the reason; a store without it counts as ready once open. Readiness (/readyz) asks it.


async def search_each(store: VectorStore, requests: list[SearchRequest]) -> list[list[DocumentChunkWithScore]]:
    """`search_many` for an engine whose client has no batch search worth using: the searches run concurrently."""
    return list(await asyncio.gather(*(store.search(request) for request in requests)))
