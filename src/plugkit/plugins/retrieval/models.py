"""Request and response models of the retrieval plugin, field for field those of the original retrieval plugin."""

from __future__ import annotations

from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_TOP_K = 100
SearchMode = Literal["hybrid", "dense", "keyword"]


class Source(str, Enum):
    email = "email"
    file = "file"
    chat = "chat"


class DocumentMetadata(BaseModel):
    source: Source | None = None
    source_id: str | None = None
    url: str | None = None
    created_at: str | None = Field(default=None, description="ISO 8601 date or date-time")
    author: str | None = None


class DocumentChunkMetadata(DocumentMetadata):
    document_id: str | None = None


class Document(BaseModel):
    id: str | None = Field(default=None, description="Stable id; a new one is made when missing")
    text: str
    metadata: DocumentMetadata | None = None


class DocumentChunk(BaseModel):
    id: str | None = None
    text: str
    metadata: DocumentChunkMetadata
    embedding: list[float] | None = None


class DocumentChunkWithScore(DocumentChunk):
    score: float = Field(description="Higher is better, in every mode")


class DocumentMetadataFilter(BaseModel):
    model_config = ConfigDict(extra="forbid")
    document_id: str | None = None
    source: Source | None = None
    source_id: str | None = None
    author: str | None = None
    url: str | None = None
    start_date: str | None = Field(default=None, description="ISO 8601; compared with created_at")
    end_date: str | None = Field(default=None, description="ISO 8601; compared with created_at")


class Query(BaseModel):
    query: str
    filter: DocumentMetadataFilter | None = None
    top_k: int = Field(default=3, ge=1, le=MAX_TOP_K)
    mode: SearchMode = "hybrid"


class QueryWithEmbedding(Query):
    embedding: list[float]


class QueryResult(BaseModel):
    query: str
    results: list[DocumentChunkWithScore]


class UpsertRequest(BaseModel):
    documents: list[Document]


class UpsertResponse(BaseModel):
    ids: list[str]


class QueryRequest(BaseModel):
    queries: list[Query]


class QueryResponse(BaseModel):
    results: list[QueryResult]


class DeleteRequest(BaseModel):
    ids: list[str] | None = None
    filter: DocumentMetadataFilter | None = None
    delete_all: bool | None = False


class DeleteResponse(BaseModel):
    success: bool
