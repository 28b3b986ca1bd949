"""Request and response models of the retrieval plugin, field for field those of the original retrieval plugin."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SerializerFunctionWrapHandler,
    StrictBool,
    StrictFloat,
    StrictInt,
    Tag,
    TypeAdapter,
    field_validator,
    model_serializer,
    model_validator,
)

from plugkit.plugins.retrieval.filters import (
    KEY_PATTERN,
    Comparison,
    CompoundFilter,
    check_limits,
    filter_kind,
    parse_instant,
)

MAX_TOP_K = 100
SearchMode = Literal["hybrid", "dense", "keyword"]


def _check_instant(value: str | None) -> str | None:
    if value is not None:
        parse_instant(value)
    return value


class Source(str, Enum):  # noqa: UP042 - str() of a member stays its value, as the original's clients expect
    email = "email"
    file = "file"
    chat = "chat"


MAX_CUSTOM_KEYS = 64
MAX_STRING = 2000
MAX_LIST_ITEMS = 100
RESERVED_KEYS = frozenset({"document_id"})
_CUSTOM_KEY = re.compile(KEY_PATTERN)
CustomValue = (
    StrictBool
    | StrictInt
    | StrictFloat
    | Annotated[str, Field(max_length=MAX_STRING)]
    | Annotated[list[Annotated[str, Field(max_length=MAX_STRING)]], Field(max_length=MAX_LIST_ITEMS)]
)
CUSTOM_RULE = (
    f"a string (at most {MAX_STRING} characters), an integer, a float, a boolean or a list of at most"
    f" {MAX_LIST_ITEMS} strings"
)


def custom_metadata_problem(key: str, value: Any) -> str | None:
    """Why a custom metadata key or value is refused (naming the key and the rule), or None when it is fine."""
    if not _CUSTOM_KEY.match(key):
        return f"metadata key {key!r} does not match {KEY_PATTERN} (letters, digits, '_', '.', '-'; at most 64)"
    if key in RESERVED_KEYS:
        return f"metadata key {key!r} is reserved"
    if isinstance(value, bool | int):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"metadata key {key!r}: a float must be finite"
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            return f"metadata key {key!r}: a string holds at most {MAX_STRING} characters, this one {len(value)}"
        return None
    if isinstance(value, list):
        if len(value) > MAX_LIST_ITEMS:
            return f"metadata key {key!r}: a list holds at most {MAX_LIST_ITEMS} strings, this one {len(value)}"
        for n, item in enumerate(value):
            if not isinstance(item, str):
                return f"metadata key {key!r}: item {n} of the list is not a string (a list holds only strings)"
            if len(item) > MAX_STRING:
                return f"metadata key {key!r}: item {n} is over {MAX_STRING} characters"
        return None
    return f"metadata key {key!r} has a value of type {type(value).__name__}: it must be {CUSTOM_RULE}"


class DocumentMetadata(BaseModel):
    """The standard fields of the original API, plus custom keys of your own (see CustomValue)."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "description": "The five standard fields, and up to 64 custom keys matching "
            f"{KEY_PATTERN}, each {CUSTOM_RULE}",
            "example": {"source": "file", "author": "ada", "team": "infra", "tags": ["q3", "plan"], "priority": 2},
        },
    )
    __pydantic_extra__: dict[str, CustomValue] = Field(init=False)
    source: Source | None = None
    source_id: str | None = None
    url: str | None = None
    created_at: str | None = Field(default=None, description="ISO 8601 date or date-time")
    author: str | None = None

    _created_at_is_iso = field_validator("created_at")(_check_instant)

    @model_validator(mode="before")
    @classmethod
    def _check_custom(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        fields = cls.__pydantic_fields__  # what `model_fields` returns, without its class property's 5 us
        custom = {k: v for k, v in data.items() if k not in fields}
        if len(custom) > MAX_CUSTOM_KEYS:
            raise ValueError(f"metadata holds {len(custom)} custom keys, at most {MAX_CUSTOM_KEYS}")
        for key, value in custom.items():
            problem = custom_metadata_problem(str(key), value)
            if problem is not None:
                raise ValueError(problem)
        return data

    @property
    def custom(self) -> dict[str, Any]:
        """The custom keys and their values."""
        return dict(self.__pydantic_extra__ or {})


LINKS_KEY = "links"  # the custom metadata key a Markdown file's link URLs are kept in


def with_links(metadata: dict[str, Any], links: Iterable[str], spare_keys: int = 0) -> dict[str, Any]:
    """`metadata` with a file's link URLs added as the custom key `links`: deduplicated in order, a URL over
    MAX_STRING characters skipped (a cut URL leads nowhere), at most MAX_LIST_ITEMS kept. Left out when the metadata
    already has `links` (the caller's value wins), when there are none, or when it would leave fewer than
    `spare_keys` custom keys free, so that a file never fails for its links."""
    kept = [url for url in dict.fromkeys(links) if len(url) <= MAX_STRING][:MAX_LIST_ITEMS]
    custom = [k for k in metadata if k not in DocumentMetadata.model_fields]
    if not kept or LINKS_KEY in metadata or len(custom) + 1 + spare_keys > MAX_CUSTOM_KEYS:
        return metadata
    return {**metadata, LINKS_KEY: kept}


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
    """The original flat filter: every given field must match."""

    model_config = ConfigDict(extra="forbid")
    document_id: str | None = None
    source: Source | None = None
    source_id: str | None = None
    author: str | None = None
    url: str | None = None
    start_date: str | None = Field(default=None, description="ISO 8601; compared with created_at")
    end_date: str | None = Field(default=None, description="ISO 8601; compared with created_at")

    _dates_are_iso = field_validator("start_date", "end_date")(_check_instant)


Filter = Annotated[
    Annotated[DocumentMetadataFilter, Tag("flat")]
    | Annotated[Comparison, Tag("comparison")]
    | Annotated[CompoundFilter, Tag("compound")],
    Discriminator(filter_kind),
    AfterValidator(check_limits),
]
FILTER_DESCRIPTION = (
    "The flat filter {document_id, source, source_id, author, url, start_date, end_date}, or a comparison"
    " {key, type: eq|ne|gt|gte|lt|lte|in|nin, value} or compound {type: and|or, filters: [...]} over standard and"
    " custom metadata keys"
)
FILTER_EXAMPLE = {
    "type": "and",
    "filters": [
        {"key": "team", "type": "eq", "value": "infra"},
        {"key": "created_at", "type": "gte", "value": "2024-01-01"},
    ],
}
_FILTER_ADAPTER: TypeAdapter[Any] = TypeAdapter(Filter)


def parse_filter(data: str | bytes | dict[str, Any]) -> Any:
    """A filter from JSON text or a decoded object; raises pydantic.ValidationError naming the path of a problem."""
    if isinstance(data, str | bytes):
        return _FILTER_ADAPTER.validate_python(json.loads(data))
    return _FILTER_ADAPTER.validate_python(data)


class Query(BaseModel):
    query: str
    filter: Filter | None = Field(default=None, description=FILTER_DESCRIPTION, examples=[FILTER_EXAMPLE])
    top_k: int = Field(default=3, ge=1, le=MAX_TOP_K)
    mode: SearchMode = "hybrid"
    score_threshold: float | None = Field(
        default=None, allow_inf_nan=False, description="Drop results scoring under this (scores depend on the mode)"
    )
    max_chunks_per_document: int | None = Field(
        default=None, ge=1, le=MAX_TOP_K, description="At most this many chunks of one document (default: no limit)"
    )
    dense_weight: float | None = Field(
        default=None, ge=0, le=100, allow_inf_nan=False, description="Hybrid: the weight of the dense ranking"
    )
    keyword_weight: float | None = Field(
        default=None, ge=0, le=100, allow_inf_nan=False, description="Hybrid: the weight of the keyword ranking"
    )

    @model_validator(mode="after")
    def _check_weights(self) -> Query:
        if self.dense_weight is not None or self.keyword_weight is not None:
            if self.mode != "hybrid":
                raise ValueError("dense_weight and keyword_weight apply to mode 'hybrid' only")
            if (
                (self.dense_weight or 0) == 0
                and (self.keyword_weight or 0) == 0
                and (self.dense_weight is not None and self.keyword_weight is not None)
            ):
                raise ValueError("dense_weight and keyword_weight cannot both be 0")
        return self


class QueryWithEmbedding(Query):
    embedding: list[float]


class QueryResult(BaseModel):
    query: str
    results: list[DocumentChunkWithScore]
    truncated: bool | None = Field(
        default=None, description="true when results were left off to keep the answer under the host's size limit"
    )

    @model_serializer(mode="wrap")
    def _without_unset_truncated(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if data.get("truncated") is None:
            data.pop("truncated", None)  # the original API's answer, unchanged, unless something was left off
        return data


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
    filter: Filter | None = Field(default=None, description=FILTER_DESCRIPTION)
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


class DocumentSummary(BaseModel):
    id: str
    metadata: DocumentMetadata = Field(description="The document's standard and custom metadata")
    chunk_count: int
    created_at: str = Field(description="When the document was first stored (ISO 8601, UTC)")
    updated_at: str = Field(description="When it was last stored (ISO 8601, UTC)")


class DocumentList(BaseModel):
    documents: list[DocumentSummary] = Field(description="Newest (last updated) first")
    next: str | None = Field(description="The cursor of the next page (pass it as `after`); null on the last page")
