"""Embedding providers; each implements plugkit.plugins.retrieval.embeddings.base.Embedder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from plugkit.plugins.retrieval.embeddings.base import Embedder, EmbeddingError

if TYPE_CHECKING:
    from plugkit.plugins.retrieval.settings import RetrievalSettings

KNOWN_OPENAI_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}


def model_cache_dir(settings: RetrievalSettings) -> Path:
    """Where the local model's derived files (the ONNX export) are kept: the setting, else the user's cache, which
    every data directory shares (a fresh one then starts without exporting again), else the data directory."""
    if settings.model_cache_dir is not None:
        return Path(settings.model_cache_dir)
    shared = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "plugkit"
    try:
        shared.mkdir(parents=True, exist_ok=True)
        if os.access(shared, os.W_OK):
            return shared
    except OSError:
        pass
    return Path(settings.data_dir) / "models"


def build_embedder(settings: RetrievalSettings) -> Embedder:
    """The embedder named by `settings.embedder` (imported lazily: `local` pulls in torch)."""
    if settings.embedder == "local":
        from plugkit.plugins.retrieval.embeddings.local import LocalEmbedder

        return LocalEmbedder(
            batch_size=settings.embed_batch_size,
            device=settings.embed_device,
            precision=settings.embed_precision,
            query_backend=settings.embed_query_backend,
            query_precision=settings.embed_query_precision,
            cache_dir=model_cache_dir(settings),
            model_path=settings.local_model,
            cpu_workers=settings.embed_cpu_workers,
        )
    from plugkit.plugins.retrieval.embeddings.openai import OpenAIEmbedder

    dimension = settings.openai_dimensions or KNOWN_OPENAI_DIMENSIONS.get(settings.openai_model)
    if dimension is None:
        raise EmbeddingError(
            f"the dimension of embedding model {settings.openai_model!r} is unknown: set PLUGKIT_OPENAI_DIMENSIONS"
        )
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    return OpenAIEmbedder(
        settings.openai_base_url,
        key,
        settings.openai_model,
        dimension,
        send_dimensions=settings.openai_dimensions is not None,
        batch_size=settings.embed_batch_size or 32,
        timeout_s=settings.openai_timeout_s,
        max_retries=settings.openai_max_retries,
        api_version=settings.openai_api_version,
        deployment=settings.openai_deployment,
    )


__all__ = ["Embedder", "EmbeddingError", "build_embedder"]
