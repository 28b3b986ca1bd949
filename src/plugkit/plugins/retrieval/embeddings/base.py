"""The contract every embedding provider fulfils."""

from __future__ import annotations

from typing import Protocol


class EmbeddingError(RuntimeError):
    """The provider could not embed; the message says why (a refused key, an unreachable endpoint...)."""


class Embedder(Protocol):
    model_id: str
    dimension: int

    async def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """One normalised vector per text, batched, without blocking the event loop."""
        ...

    async def embed_queries(self, texts: list[str]) -> list[list[float]]: ...
