"""A diagnosis for the GPU ingest (#16): the embedded store's write of chunk rows beside a busy Python thread.

sqlite3 lets the GIL go for every step of a statement. `executemany` steps once per row, so a writing thread beside a
thread running Python (as in the ingest command's process) must win the GIL back after every row, and the busy thread
keeps it for the switch interval (5 ms): the GIL convoy that bench/keyword_gil.py shows for tantivy. The store now
inserts chunk rows by multi-row INSERT statements (ROWS_PER_INSERT rows a step). This times, in a thread, alone and
beside a busy thread: the same rows of the store's chunks table by executemany and by the store's multi-row INSERTs
(the component), and the store's own `replace_documents` (the path a write takes). Results:
bench/results/store_gil.json.

    python bench/store_gil.py [--chunks 20480]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src")]

from keyword_gil import beside_busy_thread, busy_alone, texts_of  # noqa: E402

from plugkit.plugins.retrieval.models import DocumentChunk, DocumentChunkMetadata  # noqa: E402
from plugkit.plugins.retrieval.stores.base import ChunkRecord, DocumentRecord, StoreInfo  # noqa: E402
from plugkit.plugins.retrieval.stores.embedded import (  # noqa: E402
    CHUNK_VALUES,
    INSERT_CHUNKS,
    ROWS_PER_INSERT,
    EmbeddedStore,
    insert_chunk_rows,
)

RESULTS = ROOT / "bench" / "results" / "store_gil.json"
DIMENSION = 384
INFO = StoreInfo(embedding_model="bench", dimension=DIMENSION)


def documents(texts: list[str], chunks: int, prefix: str) -> list[DocumentRecord]:
    """`chunks` chunks, four a document, SciFact texts, random unit vectors."""
    vectors = np.random.default_rng(0).normal(size=(chunks, DIMENSION)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    out = []
    for d in range(chunks // 4):
        meta = DocumentChunkMetadata(document_id=f"{prefix}{d}")
        out.append(
            DocumentRecord(
                f"{prefix}{d}",
                [
                    ChunkRecord.of(
                        DocumentChunk(id=f"{prefix}{d}_{n}", text=texts[(4 * d + n) % len(texts)], metadata=meta),
                        vectors[4 * d + n],
                    )
                    for n in range(4)
                ],
            )
        )
    return out


def rows(texts: list[str], count: int, start: int) -> list[tuple[Any, ...]]:
    """Rows of the chunks table (CHUNK_VALUES), as the store writes them."""
    blob = np.zeros(DIMENSION, dtype=np.float32).tobytes()
    return [
        (
            "",
            f"r{start + i}",
            0,
            f"r{start + i}_0",
            texts[i % len(texts)],
            "{}",
            None,
            None,
            None,
            None,
            None,
            None,
            1,
            0.0,
            0.0,
            blob,
        )
        for i in range(count)
    ]


def insert_rows(db: Path, batch: list[tuple[Any, ...]], many: bool) -> float:
    """Seconds to insert `batch` in one transaction, by executemany or by multi-row INSERTs."""
    conn = sqlite3.connect(db, isolation_level=None, timeout=30)
    started = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    if many:
        conn.executemany(INSERT_CHUNKS + CHUNK_VALUES, batch)
    else:
        insert_chunk_rows(conn, batch)
    conn.execute("COMMIT")
    conn.close()
    return time.perf_counter() - started


async def open_store(directory: Path) -> EmbeddedStore:
    store = EmbeddedStore(directory)
    await store.open(INFO)
    return store


def store_write(directory: Path, batches: list[list[DocumentRecord]]) -> float:
    """Seconds for the store's replace_documents of `batches` (its writes run in a thread of their own)."""

    async def run() -> float:
        store = await open_store(directory)
        started = time.perf_counter()
        for batch in batches:
            await store.replace_documents(batch)
        seconds = time.perf_counter() - started
        await store.close()
        return seconds

    return asyncio.run(run())


def rate(count: int, measured: dict[str, Any]) -> dict[str, Any]:
    return {
        "rows_per_s": round(count / measured["index_s"]),
        "busy_thread_m_steps_per_s": measured["busy_thread_m_steps_per_s"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "scifact")
    parser.add_argument("--chunks", type=int, default=20480)
    parser.add_argument("--few", type=int, default=2048, help="rows executemany writes beside the busy thread")
    args = parser.parse_args()
    if args.chunks < 4096:
        parser.error("--chunks must be at least 4096 (the store is written 4,096 chunks a call)")
    texts = texts_of(args.data / "corpus.jsonl", 3000)
    load = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory() as work:
        base = Path(work)
        asyncio.run(open_store(base / "rows")).conn.close()  # the schema
        db = base / "rows" / "retrieval.db"
        n, few = args.chunks, args.few
        component = {
            "executemany_alone": {"rows_per_s": round(n / insert_rows(db, rows(texts, n, 0), True))},
            "multi_row_alone": {"rows_per_s": round(n / insert_rows(db, rows(texts, n, n), False))},
            "executemany_beside_busy_python": rate(
                few, beside_busy_thread(lambda: insert_rows(db, rows(texts, few, 2 * n), True))
            ),
            "multi_row_beside_busy_python": rate(
                n, beside_busy_thread(lambda: insert_rows(db, rows(texts, n, 3 * n), False))
            ),
        }
        batches = [documents(texts, 4096, f"b{j}-") for j in range(n // 4096)]
        alone = store_write(base / "alone", batches)
        beside = beside_busy_thread(lambda: store_write(base / "busy", batches))
    result = {
        "what": "chunk rows written in a thread, alone and beside a thread running Python without pause: the store's "
        "chunks table by sqlite3 executemany and by the store's multi-row INSERTs, and the store's replace_documents "
        "(writes of 1,024 documents of 4 chunks, SciFact texts, 384-dimension vectors, to the last write acknowledged)",
        "chunks": n,
        "executemany_rows_beside_busy_python": few,
        "rows_per_insert": ROWS_PER_INSERT,
        "sqlite": sqlite3.sqlite_version,
        "python": sys.version.split()[0],
        "switch_interval_s": sys.getswitchinterval(),
        "cores": os.cpu_count(),
        "load_average_at_start": load,
        "busy_thread_alone_m_steps_per_s": busy_alone(),
        "rows": component,
        "store_replace_documents": {
            "alone_chunks_per_s": round(n / alone),
            "beside_busy_python": {
                "chunks_per_s": round(n / beside["index_s"]),
                "busy_thread_m_steps_per_s": beside["busy_thread_m_steps_per_s"],
            },
        },
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
