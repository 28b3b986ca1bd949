"""Request and response models of the retrieval plugin, field for field those of the original retrieval plugin."""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_TOP_K = 100
SearchMode = Literal["hybrid", "dense", "keyword"]


def parse_instant(value: str) -> float:
    """Seconds since the epoch of an ISO 8601 date or date-time (a date is its midnight UTC, a naive time is UTC).
    Raises ValueError naming the value when it is not ISO 8601."""
    text = value.strip()
    try:
        if len(text) == 10:
            parsed = datetime.combine(date.fromisoformat(text), datetime.min.time())
        else:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{value!r} is not an ISO 8601 date or date-time (e.g. 2024-05-01 or 2024-05-01T12:00:00Z)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _check_instant(value: str | None) -> str | None:
    if value is not None:
        parse_instant(value)
    return value


class Source(str, Enum):  # noqa: UP042 - str() of a member stays its value, as the original's clients expect
    email = "email"
    file = "file"
    chat = "chat"


class DocumentMetadata(BaseModel):
    source: Source | None = None
    source_id: str | None = None
    url: str | None = None
    created_at: str | None = Field(default=None, description="ISO 8601 date or date-time")
    author: str | None = None

    _created_at_is_iso = field_validator("created_at")(_check_instant)


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

    _dates_are_iso = field_validator("start_date", "end_date")(_check_instant)


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


class FileUploadRequest(BaseModel):
    """A file sent as JSON, for a client that cannot send multipart."""

    model_config = ConfigDict(extra="forbid")
    filename: str = Field(min_length=1, max_length=255, description="The file's name, e.g. report.pdf")
    content_base64: str = Field(min_length=1, description="The file's bytes, base64-encoded")
    metadata: DocumentMetadata | None = None
    id: str | None = Field(default=None, description="Document id; a new one is made when missing")


class DocumentResponse(BaseModel):
    document_id: str
    chunks: list[DocumentChunk] = Field(description="The document's chunks, in order")
