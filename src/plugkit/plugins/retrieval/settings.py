"""Settings of the retrieval plugin (environment prefix PLUGKIT_, like every plugin)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from plugkit.plugins.retrieval.stores import STORE_NAMES
from plugkit.settings import PluginSettings

MB = 1024 * 1024


class RetrievalSettings(PluginSettings):
    port: int = 5003

    store: str = Field(default="embedded", description=" | ".join(STORE_NAMES))
    store_url: str | None = Field(default=None, description="URL, URI or folder of the store's engine (not embedded)")
    store_api_key: SecretStr | None = None
    collection: str = Field(
        default="plugkit_chunks",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$",
        description="the table or collection the store owns",
    )
    hnsw_m: int = Field(default=16, ge=2, le=128, description="engine stores: HNSW graph degree")
    hnsw_ef_construction: int = Field(default=200, ge=8, le=2000, description="engine stores: HNSW build breadth")
    ef_search: int = Field(default=100, ge=1, le=5000, description="engine stores: HNSW candidates per query")
    candidate_pool: int = Field(
        default=100, ge=1, le=10_000, description="candidates each side gives a hybrid fusion, whatever the top_k"
    )
    text_search_config: str = Field(default="english", description="pgvector: PostgreSQL full-text configuration")
    lite_flush_rows: int = Field(default=1024, ge=1, description="Milvus Lite: unindexed rows before a flush")

    embedder: Literal["local", "openai"] = Field(default="local", description="the embedding model")
    embed_batch_size: int | None = Field(
        default=None, ge=1, le=4096, description="texts per forward pass (default: 8 on a CPU, 2048 on a GPU)"
    )
    embed_cpu_workers: int | None = Field(
        default=None,
        ge=1,
        le=1024,
        description="local model on a CPU: threads that each run whole batches on one core (default: one per core)",
    )
    embed_device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="local model: auto (cuda when torch sees a GPU, else cpu), cpu or cuda"
    )
    embed_precision: Literal["auto", "int8", "bf16", "fp16", "fp32"] = Field(
        default="auto",
        description="local model: auto (CPU: bf16 where it has it, else fp32; GPU: fp16), int8, bf16, fp16 or fp32",
    )
    embed_query_backend: Literal["auto", "onnx", "torch"] = Field(
        default="auto",
        description="local model, lone queries: auto (ONNX Runtime on a CPU when installed), onnx, torch",
    )
    embed_query_precision: Literal["int8", "fp32"] = Field(
        default="int8",
        description="local model, lone queries on ONNX Runtime: int8 (every layer but the first; kept only within "
        "a cosine of 0.99 of fp32) or fp32",
    )
    query_batching: bool = Field(default=True, description="embed concurrent queries together in one forward pass")
    query_batch_wait_ms: float = Field(default=2.0, ge=0, le=50, description="how long a query waits for company")
    query_batch_max: int = Field(default=64, ge=1, le=1024, description="the most query texts in one batch")
    openai_base_url: str = "https://api.openai.com/v1"
    openai_api_key: SecretStr | None = None
    openai_model: str = "text-embedding-3-small"
    openai_dimensions: int | None = Field(default=None, ge=1)
    openai_timeout_s: float = 30.0
    openai_max_retries: int = Field(default=5, ge=0)
    openai_api_version: str | None = Field(
        default=None, description="Azure OpenAI: the api-version (e.g. 2024-10-21); openai_base_url is the endpoint"
    )
    openai_deployment: str | None = Field(default=None, description="Azure OpenAI: the deployment (default: model)")
    local_model: Path | None = Field(
        default=None, description="A sentence-transformers model directory on disk, instead of the bundled MiniLM"
    )
    model_cache_dir: Path | None = Field(
        default=None,
        description="where the local model's ONNX export for lone queries is kept (derived from the weights, so data "
        "directories share it): default $XDG_CACHE_HOME/plugkit (~/.cache/plugkit), else <data_dir>/models when that "
        "cannot be written",
    )

    chunk_tokens: int = Field(default=200, ge=16, le=256, description="chunk size in model tokens")
    chunk_overlap: int = Field(default=20, ge=0, description="tokens of the previous chunk repeated in the next")
    max_chunks_per_document: int = Field(default=10_000, ge=1)

    vector_index: Literal["auto", "exact"] = Field(
        default="auto", description="embedded store: exact search, or IVF (faiss) from ann_min_chunks chunks on"
    )
    ann_min_chunks: int = Field(default=50_000, ge=1, description="store size from which dense search uses IVF")
    # Defaults measured by bench/scale.py at 1M chunks (4,000 lists): recall@10 >= 0.95 in about 3-4 ms on one core.
    ann_nprobe: int = Field(default=512, ge=1, description="IVF lists scanned per query")
    ann_filtered_nprobe: int = Field(default=1024, ge=1, description="IVF lists scanned per filtered query")
    ann_k_factor: int = Field(default=100, ge=1, le=1000, description="IVF candidates per wanted result, re-ranked")
    ann_training: Literal["auto", "background", "at_close"] = Field(
        default="auto",
        description=(
            "how the IVF index follows writes that grow the store: background (trained beside them, then kept "
            "up to date), at_close (a bulk load: its lists trained beside them, filled on the cores they leave idle, "
            "searched from the close, which adds what is left), auto (background; plugkit ingest on a GPU: at_close)"
        ),
    )

    hybrid_dense_weight: float | None = Field(
        default=None, ge=0, description="embedded store: the dense side's weight (default: the fusion's, 0.7 scaled)"
    )
    hybrid_keyword_weight: float | None = Field(
        default=None, ge=0, description="embedded store: the keyword side's weight (default: the fusion's, 0.3 scaled)"
    )
    # 10, not the customary 60: on the SciFact training queries (embedded store) hybrid nDCG@10 went 0.7202 (k 100),
    # 0.7222 (60), 0.7239 (30), 0.7262 (10); bench/results/retrieval.json keeps the sweep.
    rrf_k: int = Field(default=10, ge=1, description="the k of reciprocal rank fusion")
    fusion: Literal["scaled", "rrf", "convex"] = Field(
        default="scaled",
        description="embedded store: cosine plus BM25 over the query's best, weighted (chosen on SciFact's training"
        " queries: bench/results/fusion_sweep.json); reciprocal rank fusion; or a convex sum of min-max scores",
    )

    memory: bool = Field(default=False, description="expose upsert to the model, to save information for later")
    tenancy: Literal["shared", "per-user"] = Field(
        default="shared", description="per-user (under user_http or oauth): each user searches their own documents"
    )
    max_upload_bytes: int = Field(default=25 * MB, ge=1)
    store_open_wait_s: float = Field(
        default=10.0,
        ge=0,
        description="how long start-up waits for the store and its index to load; past it the server starts "
        "answering, /readyz says 503 until they are loaded, and API calls wait for them",
    )

    @model_validator(mode="after")
    def _check(self) -> RetrievalSettings:
        if self.chunk_overlap >= self.chunk_tokens:
            raise ValueError("chunk_overlap must be smaller than chunk_tokens")
        if self.tenancy == "per-user" and self.auth not in ("user_http", "oauth"):
            raise ValueError("tenancy per-user needs an auth method that identifies users: user_http or oauth")
        return self
