"""The retrieval plugin's Prometheus metrics: embedding batches, store searches, the index's size and lag."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Gauge, Histogram

from plugkit.plugins.retrieval.stores.base import VectorStore

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

EMBED_BATCH = Histogram(
    "plugkit_retrieval_embed_batch_size",
    "Texts per embedding call, by kind (query, document)",
    ["kind"],
    buckets=BATCH_BUCKETS,
)
EMBED_SECONDS = Histogram(
    "plugkit_retrieval_embed_seconds",
    "Seconds per embedding call, by kind (query, document)",
    ["kind"],
    buckets=SECONDS_BUCKETS,
)
SEARCH_SECONDS = Histogram(
    "plugkit_retrieval_search_seconds",
    "Seconds per call to the store's search, by mode (hybrid, dense, keyword; mixed for a batch of several)",
    ["mode"],
    buckets=SECONDS_BUCKETS,
)
INDEX_CHUNKS = Gauge("plugkit_retrieval_index_chunks", "Chunks in the store", multiprocess_mode="livemax")
INDEX_LAG = Gauge(
    "plugkit_retrieval_index_lag",
    "Store changes a worker's in-memory index has not applied yet (embedded store)",
    multiprocess_mode="livemax",
)


@contextmanager
def embedding(kind: str, texts: int) -> Iterator[None]:
    """Time one embedding call of `texts` texts."""
    start = time.perf_counter()
    try:
        yield
    finally:
        EMBED_SECONDS.labels(kind).observe(time.perf_counter() - start)
        EMBED_BATCH.labels(kind).observe(texts)


@contextmanager
def searching(modes: set[str]) -> Iterator[None]:
    """Time one call to the store's search."""
    start = time.perf_counter()
    try:
        yield
    finally:
        SEARCH_SECONDS.labels(modes.pop() if len(modes) == 1 else "mixed").observe(time.perf_counter() - start)


async def update_index_gauges(store: VectorStore) -> None:
    """Set the index size and lag gauges from the store (a metrics hook, run before each scrape)."""
    INDEX_CHUNKS.set(await store.count())
    lag = getattr(store, "index_lag", None)  # optional: stores with an index of their own apply changes at once
    INDEX_LAG.set(await lag() if callable(lag) else 0)
