"""Synthetic data for the contract suite: deterministic small embeddings built from words or axes, no model."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from plugkit.plugins.retrieval.models import DocumentChunk, DocumentChunkMetadata
from plugkit.plugins.retrieval.stores.base import ChunkRecord, DocumentRecord, StoreInfo, VectorStore

DIM = 8
INFO = StoreInfo(embedding_model="contract-words-8", dimension=DIM)
OpenStore = Callable[..., Awaitable[VectorStore]]


def embed(text: str) -> list[float]:
    """A deterministic unit vector from the words of a text: texts sharing words point the same way."""
    vector = np.zeros(DIM)
    for word in re.findall(r"\w+", text.lower()):
        digest = hashlib.sha256(word.encode()).digest()
        vector += np.frombuffer(digest[:DIM], dtype=np.uint8).astype(float) - 127.5
    norm = np.linalg.norm(vector)
    return (vector / norm).tolist() if norm else [1.0] + [0.0] * (DIM - 1)


def axis(i: int, lean: float = 0.0) -> list[float]:
    """A unit vector along axis i, leaning towards axis (i + 1) by `lean`."""
    vector = np.zeros(DIM)
    vector[i % DIM] = 1.0
    vector[(i + 1) % DIM] = lean
    return (vector / np.linalg.norm(vector)).tolist()


def document(
    document_id: str, *texts: str, vectors: list[list[float]] | None = None, **metadata: Any
) -> DocumentRecord:
    """A document whose chunks are `texts` (ids `<document_id>_<n>`), embedded with `embed` unless given."""
    chunks = [
        ChunkRecord.of(
            chunk=DocumentChunk(
                id=f"{document_id}_{n}",
                text=text,
                metadata=DocumentChunkMetadata(document_id=document_id, **metadata),
            ),
            embedding=vectors[n] if vectors else embed(text),
        )
        for n, text in enumerate(texts)
    ]
    return DocumentRecord(document_id=document_id, chunks=chunks)
