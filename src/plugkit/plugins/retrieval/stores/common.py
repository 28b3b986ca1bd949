"""What the engine-backed stores (pgvector, milvus, qdrant) share: their settings, the flat row every chunk is
stored as, the document listing's cursor and date normalisation (fusion is in stores/fusion.py).

Tenancy is a plain `tenant` column/field on every row: `None` is stored as the empty string, the shared space, so a
search, get or delete without a tenant sees the shared space only, and a tenant never sees another tenant's or the
shared chunks; `count()` without a tenant counts the whole store (as base.VectorStore.count says).
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from plugkit.plugins.retrieval.filters import as_instant, parse_instant
from plugkit.plugins.retrieval.models import (
    DocumentChunk,
    DocumentChunkMetadata,
    DocumentChunkWithScore,
    DocumentMetadata,
    Source,
)
from plugkit.plugins.retrieval.stores.base import (
    SHARED_TENANT,
    DocumentEntry,
    DocumentRecord,
    StoreInfo,
    StoreMismatchError,
)
from plugkit.plugins.retrieval.stores.fusion import RRF_K

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


@dataclass(frozen=True)
class StoreSettings:
    """Settings of an engine-backed store; the plugin's settings map onto these.

    store_url: the engine (a PostgreSQL URL; a Milvus file path or http(s) URI; a Qdrant URL, `:memory:` or a path);
      None means the provider's default inside `data_dir` (Milvus Lite file, Qdrant local-mode folder).
    collection: the table (pgvector) or collection (milvus, qdrant) this store owns; letters, digits, `_`.
    hnsw_m, hnsw_ef_construction: HNSW graph parameters; ef_search: candidates explored per query.
    candidate_pool: how many candidates each side (dense, keyword) contributes to a hybrid fusion (every store).
    pool_min_size, pool_max_size: the PostgreSQL connection pool; text_search_config: its full-text configuration.
    lite_flush_rows: Milvus Lite only: written rows it may hold unindexed before a search flushes them (it scans
      unflushed rows exhaustively, in Python); a Milvus server seals its segments itself.
    api_key: Qdrant Cloud API key or Milvus/Zilliz token.
    rrf_k: the k of reciprocal rank fusion in hybrid search; fusion (scaled | rrf | convex), hybrid_dense_weight,
      hybrid_keyword_weight: read by the embedded store (the engine-backed stores fuse with plain, unweighted RRF).
    vector_index, ann_*: the embedded store's dense index: `exact`, or `auto` (an IVF index from ann_min_chunks
      chunks on, scanning ann_nprobe lists, ann_filtered_nprobe under a filter, re-ranking ann_k_factor candidates
      per wanted result).
    embed_device: the device of the local model (auto | cpu | cuda), which the embedded store's IVF k-means uses too.
    ann_training: how the embedded store's IVF index follows writes that grow it: auto or background (trained beside
      them, then kept up to date), at_close (a bulk load: its lists trained beside them, filled on the cores they
      leave idle, searched from the close, which adds what is left; `plugkit ingest` picks it on a GPU).
    """

    store_url: str | None = None
    data_dir: Path = Path(".plugkit")
    collection: str = "plugkit_chunks"
    hnsw_m: int = 16
    hnsw_ef_construction: int = 200
    ef_search: int = 100
    candidate_pool: int = 100
    pool_min_size: int = 1
    pool_max_size: int = 10
    text_search_config: str = "english"
    lite_flush_rows: int = 1024
    api_key: str | None = field(default=None, repr=False)
    rrf_k: int = RRF_K
    fusion: str = "scaled"
    hybrid_dense_weight: float | None = None
    hybrid_keyword_weight: float | None = None
    vector_index: str = "auto"
    ann_min_chunks: int = 50_000
    ann_nprobe: int = 512
    ann_filtered_nprobe: int = 1024
    ann_k_factor: int = 100
    embed_device: str = "auto"
    ann_training: str = "auto"

    def __post_init__(self) -> None:
        check_name(self.collection, "collection")
        check_name(self.text_search_config, "text_search_config")

    @classmethod
    def of(cls, settings: Any) -> StoreSettings:
        """These settings from any settings object (e.g. the plugin's), taking the attributes it has by name."""
        if isinstance(settings, cls):
            return settings
        names = [f.name for f in fields(cls)]
        values = {name: getattr(settings, name) for name in names if getattr(settings, name, None) is not None}
        secret = getattr(settings, "store_api_key", None)  # the plugin's settings keep the key as a secret
        if secret is not None and "api_key" not in values:
            values["api_key"] = secret.get_secret_value() if hasattr(secret, "get_secret_value") else str(secret)
        return cls(**values)


def check_name(value: str, what: str) -> str:
    """An engine identifier made only of letters, digits and `_` (it names a table or collection)."""
    if not _NAME.match(value):
        raise ValueError(f"{what} must be letters, digits or '_' (at most 63, not starting with a digit): {value!r}")
    return value


def tenant_key(tenant: str | None) -> str:
    return SHARED_TENANT if tenant is None else tenant


def maybe_epoch(value: str | None) -> float | None:
    """The epoch of a stored `created_at`; a value that does not parse is kept as text but matches no date range."""
    if not value:
        return None
    try:
        return parse_instant(value)
    except ValueError:
        return None


@dataclass(frozen=True)
class Row:
    """One chunk flattened into the columns every engine stores."""

    id: str
    document_id: str
    tenant: str
    position: int
    text: str
    source: str | None
    source_id: str | None
    url: str | None
    author: str | None
    created_at: str | None
    created_ts: float | None
    metadata: dict[str, Any]  # the custom keys
    metadata_ts: dict[str, float]  # the instant of each custom value written as an ISO 8601 date
    chunk_count: int
    stored_ts: float  # when the document was first stored
    updated_ts: float  # when this version was stored
    embedding: list[float]

    def payload(self) -> dict[str, Any]:
        """Every column but the embedding, as an engine's payload or entity fields."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "embedding"}


def custom_instants(custom: dict[str, Any]) -> dict[str, float]:
    """The instants of the custom values written as ISO 8601 dates (what date comparisons of custom keys read)."""
    instants = {key: as_instant(value) for key, value in custom.items()}
    return {key: t for key, t in instants.items() if t is not None}


def rows_of(
    document: DocumentRecord,
    tenant: str | None,
    dimension: int,
    stored_ts: float | None = None,
    updated_ts: float | None = None,
) -> list[Row]:
    """The rows of a document's chunks; chunk ids default to `<document_id>_<n>`. `stored_ts`: when the document
    was first stored (None: now, a new document); `updated_ts`: now unless given."""
    now = updated_ts if updated_ts is not None else time.time()
    rows = []
    for position, record in enumerate(document.chunks):
        if len(record.embedding) != dimension:
            raise StoreMismatchError(
                f"chunk {position} of document {document.document_id!r} has {len(record.embedding)} dimensions,"
                f" the store holds {dimension}"
            )
        meta = record.metadata
        rows.append(
            Row(
                id=record.id or f"{document.document_id}_{position}",
                document_id=document.document_id,
                tenant=tenant_key(tenant),
                position=position,
                text=record.text,
                source=meta.source.value if meta.source is not None else None,
                source_id=meta.source_id,
                url=meta.url,
                author=meta.author,
                created_at=meta.created_at,
                created_ts=maybe_epoch(meta.created_at),
                metadata=meta.custom,
                metadata_ts=custom_instants(meta.custom),
                chunk_count=len(document.chunks),
                stored_ts=stored_ts if stored_ts is not None else now,
                updated_ts=now,
                embedding=[float(x) for x in record.embedding],
            )
        )
    return rows


def _custom(values: dict[str, Any]) -> dict[str, Any]:
    custom = values.get("metadata") or {}
    return json.loads(custom) if isinstance(custom, str) else dict(custom)


def metadata_of(values: dict[str, Any]) -> DocumentMetadata:
    """A document's metadata (standard and custom) from stored column values (empty strings read as missing)."""
    source = values.get("source") or None
    return DocumentMetadata.model_construct(
        source=Source(source) if source else None,
        source_id=values.get("source_id") or None,
        url=values.get("url") or None,
        author=values.get("author") or None,
        created_at=values.get("created_at") or None,
        **_custom(values),
    )


def chunk_of(values: dict[str, Any], embedding: Sequence[float] | None = None) -> DocumentChunk:
    """A chunk built from stored column values (empty strings read as missing)."""
    standard = metadata_of(values)
    return DocumentChunk(
        id=values["id"],
        text=values["text"],
        metadata=DocumentChunkMetadata.model_construct(
            document_id=values["document_id"],
            **{name: getattr(standard, name) for name in DocumentMetadata.__pydantic_fields__},
            **standard.custom,
        ),
        embedding=[float(x) for x in embedding] if embedding is not None else None,
    )


def chunk_with_score(values: dict[str, Any], score: float, embedding: Sequence[float] | None) -> DocumentChunkWithScore:
    """A scored result built from stored column values."""
    return DocumentChunkWithScore(**dict(chunk_of(values, embedding)), score=float(score))


def entry_of(values: dict[str, Any]) -> DocumentEntry:
    """A listed document from the stored column values of one of its chunks."""
    return DocumentEntry(
        document_id=values["document_id"],
        metadata=metadata_of(values),
        chunk_count=int(values.get("chunk_count") or 0),
        stored_ts=float(values.get("stored_ts") or 0.0),
        updated_ts=float(values.get("updated_ts") or 0.0),
    )


def encode_cursor(entry: DocumentEntry) -> str:
    """The opaque cursor of the page after `entry` (newest first: by updated time, then document id)."""
    raw = json.dumps([entry.updated_ts, entry.document_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """(updated_ts, document_id) of a cursor; ValueError when it is not one this API made."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        updated, document_id = json.loads(raw)
        if not isinstance(document_id, str) or isinstance(updated, bool) or not isinstance(updated, int | float):
            raise ValueError
        return float(updated), document_id
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise ValueError(f"{cursor!r} is not a cursor returned by this API") from None


def after_cursor(entry: DocumentEntry, after: tuple[float, str] | None) -> bool:
    """Whether `entry` comes after the cursor position in the listing's order (newest first, then id)."""
    if after is None:
        return True
    updated, document_id = after
    return entry.updated_ts < updated or (entry.updated_ts == updated and entry.document_id > document_id)


def page_of(entries: Iterable[DocumentEntry], limit: int, after: tuple[float, str] | None) -> list[DocumentEntry]:
    """The listing page: the first `limit` + 1 entries after the cursor, newest first (one more shows a next page)."""
    kept = [e for e in entries if after_cursor(e, after)]
    kept.sort(key=lambda e: (-e.updated_ts, e.document_id))
    return kept[: limit + 1]


@functools.lru_cache(maxsize=8192)  # a listing shows the same documents' times request after request
def iso_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat().replace("+00:00", "Z")


def check_info(stored: StoreInfo, wanted: StoreInfo, where: str) -> None:
    """Refuse a store built with another embedding model or dimension."""
    if stored.embedding_model != wanted.embedding_model or stored.dimension != wanted.dimension:
        raise StoreMismatchError(
            f"{where} holds vectors of {stored.embedding_model!r} ({stored.dimension} dimensions), not of"
            f" {wanted.embedding_model!r} ({wanted.dimension} dimensions): use another collection or re-index"
        )
