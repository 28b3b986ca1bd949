"""Retrieval at scale (issue 5): query micro-batching, embedding throughput, the ANN index, ingest.

    python bench/scale.py                       # every section
    python bench/scale.py --only microbatch     # one section (microbatch, embed, ann, ingest); others are kept

Every figure is measured here, on this machine, as a ratio against a baseline run in the same script where one
applies, and merged into bench/results/scale.json (keys named by the issue, plus `cores` and per-section details).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from bench.retrieval import documents_in_order, evaluate, load_scifact  # noqa: E402
from bench.todo import wrk  # noqa: E402
from tests.helpers import SHARED_DATA, PluginServer, free_port  # noqa: E402

from plugkit.plugins.retrieval.chunking import minilm_tokenizer  # noqa: E402
from plugkit.plugins.retrieval.embeddings.local import LocalEmbedder  # noqa: E402
from plugkit.plugins.retrieval.filters import to_tree  # noqa: E402
from plugkit.plugins.retrieval.models import Document, DocumentMetadata, DocumentMetadataFilter  # noqa: E402
from plugkit.plugins.retrieval.service import Retriever  # noqa: E402
from plugkit.plugins.retrieval.stores.base import SHARED_TENANT as SHARED  # noqa: E402
from plugkit.plugins.retrieval.stores.base import SearchRequest  # noqa: E402
from plugkit.plugins.retrieval.stores.embedded import (  # noqa: E402
    FIELD_COLUMNS,
    SCHEMA,
    EmbeddedStore,
    filter_sql,
)
from plugkit.plugins.retrieval.stores.filter_columns import FilterColumns  # noqa: E402

OUT = ROOT / "bench" / "results" / "scale.json"
SCIFACT = SHARED_DATA / "scifact"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def build_store(data_dir: Path, corpus: dict[str, str], embedder: LocalEmbedder) -> int:
    """An embedded store in `data_dir/retrieval` holding `corpus`; returns its chunk count."""
    retriever = Retriever(EmbeddedStore(data_dir / "retrieval"), embedder, minilm_tokenizer())
    await retriever.open()
    documents = [Document(id=d, text=t, metadata=DocumentMetadata(source_id=d)) for d, t in corpus.items()]
    for i in range(0, len(documents), 64):
        await retriever.upsert(documents[i : i + 64])
    chunks = await retriever.store.count()
    await retriever.close()
    return chunks


# -- 1. query micro-batching ---------------------------------------------------------------------------------------


def _query_script(questions: list[str], directory: Path) -> Path:
    """A wrk script that POSTs one /query (hybrid, top_k 3) per request, cycling through `questions`."""
    bodies = ",\n".join("[==[" + json.dumps({"queries": [{"query": q, "top_k": 3}]}) + "]==]" for q in questions)
    script = directory / "query.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"local bodies = {{\n{bodies}\n}}\n"
        "local n = 0\n"
        "request = function()\n"
        "  n = n + 1\n"
        '  return wrk.format(nil, "/query", nil, bodies[(n % #bodies) + 1])\n'
        "end\n"
    )
    return script


def _hammer(base_url: str, script: Path, clients: int, duration: int) -> float:
    """Requests per second of POST /query from `clients` concurrent connections (wrk, one thread)."""
    wrk(f"{base_url}/query", 1, clients, 2, script, timeout_s=60)  # warm-up: the first batches are slower
    result = wrk(f"{base_url}/query", 1, clients, duration, script, timeout_s=60)
    if result["non_2xx"] or result["socket_errors"]:
        raise RuntimeError(f"/query failed under load: {result}")
    return result["requests_per_s"]


def microbatch(args: argparse.Namespace) -> dict[str, Any]:
    corpus, queries, _ = load_scifact(SCIFACT, args.microbatch_docs)
    questions = list(queries.values())
    embedder = LocalEmbedder()
    with tempfile.TemporaryDirectory(prefix="plugkit-scale-") as tmp:
        chunks = asyncio.run(build_store(Path(tmp), corpus, embedder))
        script = _query_script(questions, Path(tmp))
        figures: dict[str, float] = {}
        for precision in args.microbatch_precisions.split(","):
            for batching in (False, True):
                env = {
                    "PLUGKIT_QUERY_BATCHING": str(batching).lower(),
                    "PLUGKIT_EMBED_PRECISION": precision,
                    "PLUGKIT_LOG_LEVEL": "warning",
                }
                server = PluginServer("retrieval", "--data-dir", tmp, env=env).start(timeout=180)
                try:
                    for clients in (1, 32):
                        rate = _hammer(server.base_url, script, clients, args.microbatch_seconds)
                        mode = "batched" if batching else "one_at_a_time"
                        figures[f"{precision}_{mode}_{clients}_clients_rps"] = round(rate, 1)
                        log(f"{precision} batching={batching} clients={clients}: {rate:.1f} /query per s")
                finally:
                    server.stop()
    # Where the time goes: the forward pass per query alone vs in a batch of 32, in process.
    embedder.load()
    sample = questions[:32]
    embedder._encode(sample)
    started = time.perf_counter()
    for question in sample:
        embedder._encode([question])
    single_ms = (time.perf_counter() - started) * 1000 / len(sample)
    started = time.perf_counter()
    embedder._encode(sample)
    batched_ms = (time.perf_counter() - started) * 1000 / len(sample)
    default = LocalEmbedder().precision
    speedups = {
        p: round(figures[f"{p}_batched_32_clients_rps"] / figures[f"{p}_one_at_a_time_32_clients_rps"], 2)
        for p in args.microbatch_precisions.split(",")
    }
    speedup = speedups.get(default, next(iter(speedups.values())))
    return {
        "microbatch_speedup_32": round(speedup, 2),
        "microbatch": {
            "store_chunks": chunks,
            "seconds_per_run": args.microbatch_seconds,
            "query": "hybrid, top_k 3, one query per request, real `plugkit serve retrieval` process",
            "baseline": "the same server with PLUGKIT_QUERY_BATCHING=false",
            "speedup_32_by_precision": speedups,
            "embed_ms_per_query_alone": round(single_ms, 2),
            "embed_ms_per_query_in_batch_of_32": round(batched_ms, 2),
            "key_is_for": f"the default precision ({default})",
            "client": "wrk (one thread, one connection per client), on the same 2 cores as the server",
            **figures,
        },
    }


# -- 2. embedding throughput -------------------------------------------------------------------------------------


def scifact_chunks(corpus: dict[str, str]) -> tuple[list[Document], list[Any]]:
    """The corpus as documents, and each document's 200-token chunks (as the plugin cuts them)."""
    retriever = Retriever(None, None, minilm_tokenizer())  # type: ignore[arg-type]  # chunking needs neither
    documents = [Document(id=d, text=t, metadata=DocumentMetadata(source_id=d)) for d, t in corpus.items()]
    return documents, [retriever.chunk_document(doc, doc.id or "") for doc in documents]


def timed_encode(encode: Callable[[list[str]], Any], texts: list[str], repeats: int) -> tuple[float, np.ndarray]:
    """Best-of-`repeats` chunks/s of `encode` over `texts` (after a warm-up), and its vectors."""
    encode(texts[:32])
    best, vectors = 0.0, None
    for _ in range(repeats):
        started = time.perf_counter()
        vectors = encode(texts)
        best = max(best, len(texts) / (time.perf_counter() - started))
    return best, np.asarray(vectors, dtype=np.float32)


async def hybrid_quality(
    chunked: list[Any], vectors: np.ndarray, queries: dict[str, str], qrels: Any, query_vectors: np.ndarray
) -> dict[str, float]:
    """SciFact nDCG@10 / recall@100 of hybrid search over a store holding the chunks with `vectors`."""
    from plugkit.plugins.retrieval.stores.base import ChunkRecord, DocumentRecord, StoreInfo

    with tempfile.TemporaryDirectory(prefix="plugkit-scale-") as tmp:
        store = EmbeddedStore(Path(tmp))
        await store.open(StoreInfo(embedding_model="bench", dimension=vectors.shape[1]))
        records, position = [], 0
        for chunks in chunked:
            doc_id = chunks[0].metadata.document_id
            records.append(
                DocumentRecord(
                    doc_id, [ChunkRecord.of(c, vectors[position + n].tolist()) for n, c in enumerate(chunks)]
                )
            )
            position += len(chunks)
        await store.replace_documents(records)
        rankings = {}
        for q, vector in zip(queries, query_vectors, strict=True):
            hits = await store.search(
                SearchRequest(text=queries[q], embedding=vector.tolist(), top_k=400, mode="hybrid")
            )
            rankings[q] = documents_in_order([h.metadata.document_id or "" for h in hits])
        await store.close()
    return evaluate(rankings, qrels)


def embed(args: argparse.Namespace) -> dict[str, Any]:
    from sentence_transformers import SentenceTransformer

    from plugkit.plugins.retrieval.embeddings.local import model_dir

    corpus, queries, qrels = load_scifact(SCIFACT, args.embed_docs)
    _, chunked = scifact_chunks(corpus)
    texts = [c.text for chunks in chunked for c in chunks]
    query_texts = list(queries.values())
    log(f"{len(corpus)} documents, {len(texts)} chunks, {len(queries)} judged queries")

    plain = SentenceTransformer(str(model_dir()), device="cpu", local_files_only=True)

    def plain_encode(batch: list[str]) -> Any:
        return plain.encode(batch, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)

    variants: dict[str, Callable[[list[str]], Any]] = {"fp32_sentence_transformers_encode": plain_encode}
    for precision in ("int8", "bf16"):
        model = LocalEmbedder(precision=precision)  # type: ignore[arg-type]
        model.load()
        variants[f"local_{precision}"] = model._encode
    # The machine is shared: variants take turns over several rounds, each keeping its best rate.
    timing_texts = texts[: args.embed_timing_chunks]
    rates: dict[str, float] = dict.fromkeys(variants, 0.0)
    for _ in range(args.embed_repeats):
        for name, encode in variants.items():
            rate, _ = timed_encode(encode, timing_texts, 1)
            rates[name] = max(rates[name], rate)
            log(f"{name}: {rate:.1f} chunks/s")
    vectors, query_vectors = {}, {}
    for name, encode in variants.items():
        vectors[name] = np.asarray(encode(texts), dtype=np.float32)
        query_vectors[name] = np.asarray(encode(query_texts), dtype=np.float32)
    baseline = "fp32_sentence_transformers_encode"
    default = f"local_{LocalEmbedder().precision}"
    quality = {
        name: asyncio.run(hybrid_quality(chunked, vectors[name], queries, qrels, query_vectors[name]))
        for name in variants
    }
    cosine = {name: round(float(np.min(np.sum(vectors[baseline] * vectors[name], axis=1))), 4) for name in variants}
    drop = quality[baseline]["ndcg@10"] - quality[default]["ndcg@10"]
    return {
        "embed_speedup": round(rates[default] / rates[baseline], 2),
        "embed_ndcg_drop": round(drop, 4),
        "embed": {
            "documents": len(corpus),
            "chunks": len(texts),
            "queries": len(queries),
            "chunks_per_s": {k: round(v, 1) for k, v in rates.items()},
            "timing_chunks": len(timing_texts),
            "rounds": args.embed_repeats,
            "speedup_by_variant": {k: round(v / rates[baseline], 2) for k, v in rates.items()},
            "kept": f"{default} (what PLUGKIT_EMBED_PRECISION=auto, the default, picks on this CPU; int8, bf16, fp32 "
            "can be set)",
            "hybrid_quality": quality,
            "min_cosine_vs_fp32": cosine,
            "note": (
                "SciFact subset (the documents judged training queries need, then others up to --embed-docs); "
                "nDCG@10 drop = fp32 minus the kept variant, hybrid search, same chunks; chunks/s: best of the rounds. "
                "sentence-transformers already sorts each encode call by length (length bucketing), so a separate "
                "bucketing step adds nothing; torch uses every core by default."
            ),
        },
    }


# -- 3. ANN index at 1M chunks ------------------------------------------------------------------------------------


def real_embeddings(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    """Real MiniLM embeddings of SciFact chunks and of its training queries (cached between runs)."""
    precision = LocalEmbedder().precision
    cache = Path(args.cache_dir) / f"scifact_{args.ann_real_docs}_{precision}.npz"
    if cache.exists():
        with np.load(cache) as data:
            return data["chunks"], data["queries"]
    corpus, queries, _ = load_scifact(SCIFACT, args.ann_real_docs)
    _, chunked = scifact_chunks(corpus)
    model = LocalEmbedder()
    chunks = np.asarray(model._encode([c.text for cs in chunked for c in cs]), dtype=np.float32)
    query_vectors = np.asarray(model._encode(list(queries.values())), dtype=np.float32)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, chunks=chunks, queries=query_vectors)
    return chunks, query_vectors


def synthetic_like(real: np.ndarray, count: int, seed: int = 1) -> np.ndarray:
    """`count` unit vectors drawn from a Gaussian with the mean and covariance of `real`."""
    mean = real.mean(axis=0)
    values, vecs = np.linalg.eigh(np.cov(real, rowvar=False))
    transform = (vecs * np.sqrt(np.clip(values, 0, None))).T.astype(np.float32)
    rng = np.random.default_rng(seed)
    out = np.empty((count, real.shape[1]), dtype=np.float32)
    for start in range(0, count, 100_000):
        n = min(100_000, count - start)
        block = rng.standard_normal((n, real.shape[1]), dtype=np.float32) @ transform + mean
        out[start : start + n] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def exact_top(data: np.ndarray, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> np.ndarray:
    """The ids (row numbers) of the exact top `k` of each query, among `allowed` rows when given."""
    rows = np.arange(len(data)) if allowed is None else allowed
    top = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), 64):
        scores = (
            queries[start : start + 64] @ data[rows].T if allowed is not None else queries[start : start + 64] @ data.T
        )
        best = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        for i, row in enumerate(best):
            top[start + i] = rows[row[np.argsort(-scores[i, row])]]
    return top


def p50_and_recall(
    search: Callable[[np.ndarray], np.ndarray], queries: np.ndarray, truth: np.ndarray, k: int = 10
) -> tuple[float, float]:
    timings, hits = [], 0
    for q, wanted in zip(queries, truth, strict=True):
        started = time.perf_counter()
        found = search(q)
        timings.append((time.perf_counter() - started) * 1000)
        hits += len(set(found[:k].tolist()) & set(wanted[:k].tolist()))
    return statistics.median(timings), hits / (k * len(queries))


def chunk_rows(path: Path, is_email: np.ndarray) -> float:
    """A chunks table of the embedded store's schema with one row per vector (`source` email where `is_email`, else
    file; no text or vectors, which the start-up does not read); returns the median ms SQLite takes to give the rowids
    of `source = email` (what the store asked SQLite for each filtered query before it kept filter columns)."""
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.executescript(SCHEMA)
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO chunks (rowid, tenant, document_id, n, chunk_id, text, metadata, source, embedding) "
            "VALUES (?, '', ?, 0, '', '', '{}', ?, x'')",
            ((i, f"d{i}", "email" if e else "file") for i, e in enumerate(is_email.tolist())),
        )
        conn.execute("COMMIT")
        where, params = filter_sql(to_tree(DocumentMetadataFilter(source="email")), None)
        timings = []
        for _ in range(5):
            started = time.perf_counter()
            rows = conn.execute(f"SELECT rowid FROM chunks c WHERE {where}", params).fetchall()
            np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def ann(args: argparse.Namespace) -> dict[str, Any]:
    import faiss

    from plugkit.plugins.retrieval.stores.ann import AutoIndex
    from plugkit.plugins.retrieval.stores.vector_index import ExactIndex

    size = args.ann_size
    real, queries = real_embeddings(args)
    queries = queries[: args.ann_queries]
    log(f"{len(real)} real chunk vectors, {len(queries)} real queries; synthesising {size - len(real)}")
    data = np.concatenate([real, synthetic_like(real, size - len(real))])
    ids = np.arange(size, dtype=np.int64)
    allowed = np.sort(np.random.default_rng(2).choice(size, size // 10, replace=False))  # a filter keeping 10%
    truth = exact_top(data, queries, 10)
    truth_filtered = exact_top(data, queries, 10, allowed)

    started = time.perf_counter()
    auto = AutoIndex(data.shape[1], min_chunks=1)
    auto.add(ids, data)  # the exact record, then the IVF index trained on a sample and filled
    build_s = time.perf_counter() - started
    ivf = auto.ivf
    assert ivf is not None
    log(f"build ({ivf.nlist} lists): {build_s:.1f} s")

    from threadpoolctl import threadpool_limits

    faiss.omp_set_num_threads(1)  # search figures are for one core: faiss's and numpy's BLAS threads both
    one_core = threadpool_limits(limits=1)
    # The filter as the store applies it: `source = email` on 10% of the chunks, a mask from the filter columns.
    columns = FilterColumns()
    is_email = np.zeros(size, dtype=bool)
    is_email[allowed] = True
    columns.add([(i, SHARED, f"d{i}", "email" if is_email[i] else "file", None, None, None, None) for i in range(size)])
    emails = to_tree(DocumentMetadataFilter(source="email"))
    assert np.array_equal(np.flatnonzero(columns.mask(emails, SHARED)), allowed)
    mask_ms = []
    for _ in range(20):
        columns.forget_masks()
        started = time.perf_counter()
        columns.mask(emails, SHARED)
        mask_ms.append((time.perf_counter() - started) * 1000)

    sweep: dict[str, dict[str, list[float]]] = {"unfiltered": {}, "filtered_10pct": {}}
    chosen: dict[str, tuple[int, int, float, float]] = {}  # nprobe, k_factor, p50 ms, recall
    for label, subset, wanted in (("unfiltered", None, truth), ("filtered_10pct", emails, truth_filtered)):
        for nprobe in (32, 64, 128, 256, 512, 1024, 2048):
            if nprobe > ivf.nlist:
                break
            reached = False
            for k_factor in (40, 100) if subset is None else (40,):  # AutoIndex re-ranks 40 x k when filtered
                ivf.nprobe = ivf.filtered_nprobe = nprobe
                auto.k_factor = k_factor
                p50, recall = p50_and_recall(
                    lambda q, s=subset, a=auto: a.search(q, 10, s and columns.mask(s, SHARED))[0],
                    queries,
                    wanted,
                )
                sweep[label][f"nprobe{nprobe}_k{k_factor}"] = [round(p50, 3), round(recall, 4)]
                log(f"{label} nprobe={nprobe} k_factor={k_factor}: p50 {p50:.2f} ms, recall@10 {recall:.4f}")
                if recall >= args.ann_target_recall:
                    if label not in chosen or p50 < chosen[label][2]:
                        chosen[label] = (nprobe, k_factor, p50, recall)
                    reached = True
                    break
            if reached and label in chosen and chosen[label][0] < nprobe:
                break  # more lists only cost more once the target is reached

    # Exact search cost by store size: where it stops being cheaper than IVF at this size.
    exact_p50: dict[str, float] = {}
    ann_p50 = chosen["unfiltered"][2] if "unfiltered" in chosen else None
    crossover = None
    for n in (1_000, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000):
        if n > size:
            break
        exact = ExactIndex(data.shape[1])
        exact.add(ids[:n], data[:n])
        p50, _ = p50_and_recall(lambda q, e=exact: e.search(q, 10)[0], queries[:50], truth[:50])
        exact_p50[str(n)] = round(p50, 3)
        if ann_p50 is not None and p50 <= ann_p50:
            crossover = n

    one_core.restore_original_limits()

    # Persisted: the start-up of an index of this size (the exact snapshot + IVF), then one query.
    with tempfile.TemporaryDirectory(prefix="plugkit-scale-ann-") as tmp:
        nprobe, k_factor = chosen.get("unfiltered", (32, 40))[:2]
        fnprobe = chosen.get("filtered_10pct", (64,))[0]
        auto.k_factor = k_factor
        path = Path(tmp) / "vectors.npz"
        auto.save(path, {"instance": "bench", "seq": "1"})
        rows_db = Path(tmp) / "retrieval.db"
        sqlite_filter_ms = chunk_rows(rows_db, is_email)
        ivf_mb = auto.ann_path(path).stat().st_size / 2**20
        exact_mb = path.stat().st_size / 2**20
        del auto, ivf
        started = time.perf_counter()
        model = LocalEmbedder()
        model.load()
        loaded, _ = AutoIndex.load(
            path,
            data.shape[1],
            min_chunks=crossover or 50_000,
            nprobe=nprobe,
            filtered_nprobe=fnprobe,
            k_factor=k_factor,
        )
        columns_started = time.perf_counter()
        with sqlite3.connect(rows_db, isolation_level=None) as conn:
            loaded_columns = FilterColumns()
            loaded_columns.add(conn.execute(f"SELECT {FIELD_COLUMNS} FROM chunks").fetchall())
        columns_s = round(time.perf_counter() - columns_started, 2)
        vector = np.asarray(model._encode(["does vitamin D reduce fractures?"])[0], dtype=np.float32)
        loaded.search(vector, 10, loaded_columns.mask(emails, SHARED))
        startup_s = time.perf_counter() - started
        assert loaded.uses_ann, "the persisted IVF index was not reused"
    nlist = loaded.ivf.nlist if loaded.ivf else None
    key = "1m" if size == 1_000_000 else f"{size // 1000}k"
    unf, flt = chosen.get("unfiltered"), chosen.get("filtered_10pct")
    return {
        f"ann_p50_ms_{key}": round(unf[2], 3) if unf else None,
        f"ann_recall10_{key}": round(unf[3], 4) if unf else None,
        f"ann_filtered_p50_ms_{key}": round(flt[2], 3) if flt else None,
        f"ann_filtered_recall10_{key}": round(flt[3], 4) if flt else None,
        f"ann_build_s_{key}": round(build_s, 1),
        f"ann_memory_mb_{key}": round(ivf_mb + exact_mb + columns.memory_bytes / 2**20, 1),
        "exact_crossover_chunks": crossover,
        f"startup_s_{key}": round(startup_s, 2),
        "ann": {
            "chunks": size,
            "real_chunks": len(real),
            "queries": len(queries),
            "index": (
                f"faiss IVF{nlist},PQ{data.shape[1] // 4}x4fs (4-bit fast-scan codes) inner product, trained on "
                "<= 100k vectors; k_factor x k candidates re-ranked with the exact float32 vectors"
            ),
            "chosen_nprobe_k_factor": {
                "unfiltered": unf[:2] if unf else None,
                "filtered_10pct": flt[:2] if flt else None,
            },
            "sweep_to_p50ms_recall10": sweep,
            "exact_p50_ms_by_chunks": exact_p50,
            "exact_snapshot_mb": round(exact_mb, 1),
            "ivf_index_mb": round(ivf_mb, 1),
            "filter_columns_mb": round(columns.memory_bytes / 2**20, 1),
            "memory_note": (
                "ann_memory_mb = the IVF index (PQ codes + ids + centroids: ivf_index_mb) + the exact float32 "
                "vectors the re-ranking reads (exact_snapshot_mb) + the filter columns (filter_columns_mb), all "
                "held in memory"
            ),
            "filter": (
                "source = email, on 10% of chunks chosen at random, applied as the embedded store applies it: a mask "
                "from its filter columns (cached while the store does not change), passed to faiss as a bitmap "
                "(IDSelectorBitmap); ann_filtered_p50_ms includes taking the mask"
            ),
            "filter_mask_ms_uncached": round(statistics.median(mask_ms), 3),
            "filter_rowids_from_sqlite_ms": round(sqlite_filter_ms, 1),
            "startup_filter_columns_s": columns_s,
            "data": (
                f"real MiniLM ({LocalEmbedder().precision}) embeddings of SciFact chunks + Gaussian vectors with "
                "their mean and covariance"
            ),
            "search_threads": "1 (faiss OpenMP and numpy BLAS limited to one thread)",
            "startup_note": (
                "start-up = load the local model + the persisted exact snapshot and IVF index + read the filter "
                "columns of 1M rows from a SQLite chunks table + answer one query"
            ),
        },
    }


# -- 4. ingest ----------------------------------------------------------------------------------------------------


async def _cli_ingest(path: Path, data_dir: Path) -> tuple[float, int]:
    """Seconds of `plugkit ingest PATH --data-dir DIR`'s work (reading, parsing, chunking, embedding, writing),
    through the command's own code, after its model is loaded; and the chunks stored."""
    import io

    from rich.console import Console

    from plugkit.cli.ingest import DEFAULT_BATCH_SIZE, _local_sender, _run
    from plugkit.plugins.retrieval.ingest import iter_documents

    os.environ["PLUGKIT_DATA_DIR"] = str(data_dir)
    send, close = await _local_sender(data_dir)
    started = time.perf_counter()
    items = list(iter_documents([path]))
    await _run(items, send, DEFAULT_BATCH_SIZE, Console(file=io.StringIO()))
    seconds = time.perf_counter() - started
    await close()
    store = EmbeddedStore(data_dir / "retrieval")
    from plugkit.plugins.retrieval.stores.base import StoreInfo

    await store.open(StoreInfo(embedding_model=LocalEmbedder.model_id, dimension=LocalEmbedder.dimension))
    chunks = await store.count()
    await store.close()
    return seconds, chunks


def ingest(args: argparse.Namespace) -> dict[str, Any]:
    corpus, _, _ = load_scifact(SCIFACT, args.ingest_docs)
    _, chunked = scifact_chunks(corpus)
    texts = [c.text for cs in chunked for c in cs]
    model = LocalEmbedder()
    model.load()
    raw, ingested = 0.0, 0.0
    with tempfile.TemporaryDirectory(prefix="plugkit-scale-ingest-") as tmp:
        source = Path(tmp) / "scifact.jsonl"
        source.write_text("".join(json.dumps({"id": d, "text": t}) + "\n" for d, t in corpus.items()))
        for round_ in range(args.ingest_rounds):  # turns, as the machine is shared; best of each
            rate, _ = timed_encode(model._encode, texts, 1)
            raw = max(raw, rate)
            seconds, chunks = asyncio.run(_cli_ingest(source, Path(tmp) / f"data{round_}"))
            ingested = max(ingested, chunks / seconds)
            log(f"raw embedder {rate:.1f} chunks/s, ingest {chunks / seconds:.1f} chunks/s ({chunks} chunks)")
    return {
        "ingest_fraction_of_embedder": round(ingested / raw, 3),
        "ingest": {
            "documents": len(corpus),
            "chunks": len(texts),
            "embedder_chunks_per_s": round(raw, 1),
            "ingest_chunks_per_s": round(ingested, 1),
            "how": (
                "plugkit ingest's own code with its default batch size (reading the .jsonl, parsing, chunking, "
                "embedding, SQLite writes; two batches in flight) timed after its model is loaded, against "
                "LocalEmbedder's raw encode of the same chunks; best of rounds"
            ),
        },
    }


# -- 6. the keyword engine: SQLite FTS5 against tantivy ------------------------------------------------------


def keyword_engines(args: argparse.Namespace) -> dict[str, Any]:
    """Top-100 BM25 over SciFact chunks repeated to each size: FTS5 as the store used it (porter unicode61, every
    query word quoted and OR-ed, ORDER BY bm25 LIMIT 100) against the tantivy index the store keeps now, one core."""
    import re

    from plugkit.plugins.retrieval.stores.keyword_index import KeywordIndex

    corpus, queries, _ = load_scifact(SCIFACT, None)
    _, chunked = scifact_chunks(corpus)
    texts = [c.text for cs in chunked for c in cs]
    questions = list(queries.values())[: args.keyword_queries]
    word = re.compile(r"\w+", re.UNICODE)
    figures: dict[str, Any] = {}
    for size in [int(n) for n in args.keyword_sizes.split(",")]:
        with tempfile.TemporaryDirectory(prefix="plugkit-kw-", dir=args.work_dir) as tmp:
            conn = sqlite3.connect(Path(tmp) / "k.db", isolation_level=None)
            conn.executescript(
                "CREATE TABLE chunks (rowid INTEGER PRIMARY KEY, text TEXT NOT NULL);"
                "CREATE TABLE changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, chunk_rowid INTEGER, op INTEGER);"
                "CREATE VIRTUAL TABLE fts USING fts5 (text, tokenize = 'porter unicode61');"
            )
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO chunks VALUES (?, ?)", ((i + 1, texts[i % len(texts)]) for i in range(size)))
            conn.execute("COMMIT")
            started = time.perf_counter()
            conn.execute("INSERT INTO fts (rowid, text) SELECT rowid, text FROM chunks")
            fts_build = time.perf_counter() - started
            started = time.perf_counter()
            index = KeywordIndex(Path(tmp) / "keywords")
            index.open(conn, "bench")
            tantivy_build = time.perf_counter() - started
            fts_ms, tantivy_ms = [], []
            for question in questions:
                words = list(dict.fromkeys(w.lower() for w in word.findall(question)))
                match = " OR ".join(f'"{w}"' for w in words)
                started = time.perf_counter()
                conn.execute(
                    "SELECT rowid FROM fts WHERE fts MATCH ? ORDER BY bm25(fts) LIMIT 100", (match,)
                ).fetchall()
                fts_ms.append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                index.search(question, 100)
                tantivy_ms.append((time.perf_counter() - started) * 1000)
            conn.close()
        figures[str(size)] = {
            "fts5_p50_ms": round(statistics.median(fts_ms), 2),
            "tantivy_p50_ms": round(statistics.median(tantivy_ms), 2),
            "fts5_build_s": round(fts_build, 1),
            "tantivy_build_s": round(tantivy_build, 1),
        }
        log(f"{size}: {figures[str(size)]}")
    return {
        "keyword_engines": {
            "queries": len(questions),
            "top_k": 100,
            "by_chunks": figures,
            "chosen": "tantivy (stores/keyword_index.py)",
            "note": "one process on the busy shared machine; the FTS5 query is the one the store ran before tantivy",
        }
    }


# -- 5. the default (hybrid) mode at 1M chunks, over HTTP -----------------------------------------------------


def unique_chunk_vectors(args: argparse.Namespace, texts: list[str]) -> tuple[np.ndarray, str]:
    """The model's vectors of `texts`: from --vectors (an .npy computed by the same model elsewhere, e.g. on a GPU),
    else computed here with the local embedder and cached."""
    if args.vectors:
        vectors = np.load(args.vectors).astype(np.float32)
        if len(vectors) != len(texts):
            raise SystemExit(f"--vectors holds {len(vectors)} rows for {len(texts)} chunks")
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True), f"loaded from {Path(args.vectors).name}"
    cache = Path(args.cache_dir) / f"scifact_chunks_{len(texts)}.npy"
    if not cache.exists():
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, np.asarray(LocalEmbedder()._encode(texts), dtype=np.float32))
    return np.load(cache), f"computed here by LocalEmbedder ({LocalEmbedder().precision}), cached"


def build_million(directory: Path, texts: list[str], vectors: np.ndarray, size: int) -> float:
    """The embedded store's SQLite file holding `size` chunks: SciFact chunk texts repeated, each repeat's vector
    moved by a little noise (so no two are equal), `source` email on every 10th chunk (a filter keeping 10%).
    Written in bulk (one transaction), as a migration would; returns the seconds taken."""
    from plugkit.plugins.retrieval.embeddings.local import DIMENSION, MODEL_ID

    started = time.perf_counter()
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    with sqlite3.connect(directory / "retrieval.db", isolation_level=None) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(SCHEMA)
        conn.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?)",
            [("embedding_model", MODEL_ID), ("dimension", str(DIMENSION)), ("instance", "bench-1m")],
        )
        conn.execute("BEGIN")
        for start in range(0, size, 50_000):
            n = min(50_000, size - start)
            ids = np.arange(start, start + n)
            block = vectors[ids % len(texts)] + rng.normal(0, 0.01, (n, vectors.shape[1])).astype(np.float32)
            block /= np.linalg.norm(block, axis=1, keepdims=True)
            rows = []
            for i, vector in zip(ids.tolist(), block, strict=True):
                source = "email" if i % 10 == 0 else "file"
                meta = json.dumps({"source": source, "source_id": f"s{i}", "document_id": f"d{i}"})
                text = texts[i % len(texts)]
                rows.append((i + 1, "", f"d{i}", 0, f"d{i}_0", text, meta, source, f"s{i}", vector.tobytes()))
            conn.executemany(
                "INSERT INTO chunks (rowid, tenant, document_id, n, chunk_id, text, metadata, source, source_id,"
                " embedding) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            log(f"  {start + n} rows")
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # else the first open reads 1M rows through a 4 GB WAL
    return time.perf_counter() - started


def _rss_mb(pid: int) -> float:
    import psutil

    process = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)]) / 2**20


def http_latency(base_url: str, questions: list[str], requests: int, **query: Any) -> dict[str, float]:
    """p50/p99 (ms) of POST /query, one client, sequential, after a few warm-up requests."""
    import httpx

    timings = []
    with httpx.Client(base_url=base_url, timeout=120) as client:
        for i in range(requests + 5):
            body = {"queries": [{"query": questions[i % len(questions)], "top_k": 10, **query}]}
            started = time.perf_counter()
            response = client.post("/query", json=body)
            elapsed = (time.perf_counter() - started) * 1000
            response.raise_for_status()
            if i >= 5:
                timings.append(elapsed)
    ordered = sorted(timings)
    return {
        "p50_ms": round(statistics.median(ordered), 2),
        "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))], 2),
        "p99_ms": round(ordered[int(0.99 * (len(ordered) - 1))], 2),
    }


def hybrid1m(args: argparse.Namespace) -> dict[str, Any]:
    import subprocess

    import httpx

    from plugkit.plugins.retrieval.embeddings.local import DIMENSION, MODEL_ID
    from plugkit.plugins.retrieval.stores.base import StoreInfo

    corpus, queries, _ = load_scifact(SCIFACT, None)
    _, chunked = scifact_chunks(corpus)
    texts = [c.text for cs in chunked for c in cs]
    vectors, vectors_from = unique_chunk_vectors(args, texts)
    questions = list(queries.values())
    size = args.hybrid_size
    with tempfile.TemporaryDirectory(prefix="plugkit-1m-", dir=args.work_dir) as tmp:
        data_dir = Path(tmp)
        store_dir = data_dir / "retrieval"
        write_s = build_million(store_dir, texts, vectors, size)
        log(f"{size} rows written in {write_s:.0f} s; building the indexes")
        started = time.perf_counter()
        store = EmbeddedStore(store_dir, ann_min_chunks=50_000, ann_nprobe=512, ann_filtered_nprobe=1024)
        asyncio.run(store.open(StoreInfo(embedding_model=MODEL_ID, dimension=DIMENSION)))
        build_s = time.perf_counter() - started
        asyncio.run(store.close())  # the snapshot of the vectors and the IVF index, as a server leaves them
        log(f"index build {build_s:.0f} s")
        # As after a first start: the lone-query path's ONNX export is in the data directory (seconds, done once).
        warm = LocalEmbedder(cache_dir=data_dir / "models")
        warm.load()
        warm.wait_for_query_path()
        keyword_mb = sum(f.stat().st_size for f in (store_dir / "keywords").rglob("*") if f.is_file()) / 2**20
        port = free_port()
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT / "src"),
            "PLUGKIT_LOG_LEVEL": "warning",
            "PLUGKIT_EMBED_DEVICE": "cpu",
        }
        command = [sys.executable, "-m", "plugkit", "serve", "retrieval", "--data-dir", str(data_dir)]
        command += ["--port", str(port)]
        pinned = ["taskset", "-c", str(args.server_cpu)] if shutil.which("taskset") else []
        started = time.perf_counter()
        proc = subprocess.Popen(pinned + command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        try:
            while True:
                try:
                    httpx.post(f"{base}/query", json={"queries": [{"query": "warm-up"}]}, timeout=5).raise_for_status()
                    break
                except httpx.HTTPError:
                    if proc.poll() is not None or time.perf_counter() - started > 600:
                        raise RuntimeError("the 1M-chunk server did not start") from None
                    time.sleep(0.2)
            startup_s = time.perf_counter() - started
            log(f"start-up {startup_s:.1f} s")
            emails = {"filter": {"source": "email"}}
            latency = {}
            for label, query in (
                ("hybrid", {}),
                ("keyword", {"mode": "keyword"}),
                ("dense", {"mode": "dense"}),
                ("hybrid_filtered_10pct", emails),
                ("keyword_filtered_10pct", {"mode": "keyword", **emails}),
            ):
                latency[label] = http_latency(base, questions, args.hybrid_requests, **query)
                log(f"{label}: {latency[label]}")
            memory_mb = _rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    return {
        "hybrid_p50_ms_1m": latency["hybrid"]["p50_ms"],
        "hybrid_p99_ms_1m": latency["hybrid"]["p99_ms"],
        "keyword_p50_ms_1m": latency["keyword"]["p50_ms"],
        "hybrid_filtered_p50_ms_1m": latency["hybrid_filtered_10pct"]["p50_ms"],
        "hybrid_filtered_p99_ms_1m": latency["hybrid_filtered_10pct"]["p99_ms"],
        "keyword_filtered_p50_ms_1m": latency["keyword_filtered_10pct"]["p50_ms"],
        "index_build_s_1m": round(build_s, 1),
        "server_startup_s_1m": round(startup_s, 1),
        "server_memory_mb_1m": round(memory_mb, 1),
        "hybrid1m": {
            "chunks": size,
            "requests_per_mode": args.hybrid_requests,
            "latency_http_top_k_10": latency,
            "how": (
                "a real `plugkit serve retrieval` process pinned to one core (taskset), one client sending one /query "
                "at a time (SciFact training questions, top_k 10), embedding included (the latency-first query "
                "path); the filter is source = email, kept by 10% of chunks"
            ),
            "data": (
                f"{len(texts)} SciFact chunks repeated to {size}, each repeat's vector moved by a little Gaussian "
                f"noise; vectors {vectors_from}"
            ),
            "rows_written_s": round(write_s, 1),
            "index_build": (
                "the first open of the store after the rows were written in bulk: the exact vectors and the IVF index "
                "(trained), the filter columns, the tantivy keyword index, from SQLite"
            ),
            "keyword_index_mb": round(keyword_mb, 1),
            "lone_query_embedding": f"ONNX Runtime, {warm.query_precision} (the server's default)",
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "startup": "the server process from exec to its first answered /query (model, snapshot, IVF, columns)",
            "memory": "resident memory of the server process after the run (psutil RSS)",
        },
    }


NOTES = {
    "microbatch_speedup_32": (
        "/query requests per second of the default precision with 32 concurrent clients (wrk), batching on over "
        "batching off, in the same run on the same server build: batched, the queries of concurrent requests share "
        "one forward pass and one call to the store; the rest of a request (HTTP, FastAPI and pydantic, the "
        "response) is not batched, and the load generator shares the 2 cores"
    ),
    "ann": (
        "the filtered figure takes the filter as the embedded store does, as a mask from its in-memory filter "
        "columns (ann.filter_mask_ms_uncached when not cached; asking SQLite for the rowids instead took "
        "ann.filter_rowids_from_sqlite_ms); the final rows are then read from SQLite by rowid (not timed). The "
        "Gaussian filler has no topical clusters, which makes IVF work harder than real embeddings would"
    ),
    "startup_s_1m": (
        "model load + loading the persisted exact snapshot and IVF index + reading the filter columns of a 1M-row "
        "SQLite chunks table (ann.startup_filter_columns_s) + one filtered query, in process"
    ),
    "exact_crossover_chunks": (
        "the largest measured size at which exact search (one core) is no slower than the IVF p50 at the "
        "benchmark size; the store's default switch (PLUGKIT_ANN_MIN_CHUNKS=50000) sits where exact search "
        "still answers in a few ms and IVF training takes seconds"
    ),
}

SECTIONS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "microbatch": microbatch,
    "embed": embed,
    "ann": ann,
    "ingest": ingest,
    "hybrid1m": hybrid1m,
    "keyword": keyword_engines,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections to run")
    parser.add_argument("--microbatch-docs", type=int, default=100)
    parser.add_argument("--microbatch-seconds", type=int, default=10)
    parser.add_argument("--microbatch-precisions", default="bf16,int8,fp32")
    parser.add_argument("--embed-docs", type=int, default=250)
    parser.add_argument("--embed-repeats", type=int, default=3)
    parser.add_argument("--embed-timing-chunks", type=int, default=256)
    parser.add_argument("--ann-size", type=int, default=1_000_000)
    parser.add_argument("--ann-real-docs", type=int, default=600)
    parser.add_argument("--ann-queries", type=int, default=200)
    parser.add_argument("--ann-target-recall", type=float, default=0.95)
    parser.add_argument("--cache-dir", default=str(Path(tempfile.gettempdir()) / "plugkit-scale-cache"))
    parser.add_argument("--ingest-docs", type=int, default=150)
    parser.add_argument("--ingest-rounds", type=int, default=2)
    parser.add_argument("--keyword-sizes", default="12352,100000")
    parser.add_argument("--keyword-queries", type=int, default=100)
    parser.add_argument("--hybrid-size", type=int, default=1_000_000)
    parser.add_argument("--hybrid-requests", type=int, default=300)
    parser.add_argument("--vectors", default=None, help="an .npy of the SciFact chunks' vectors (else computed)")
    parser.add_argument("--server-cpu", type=int, default=1, help="the core the 1M-chunk server is pinned to")
    parser.add_argument("--work-dir", default=None, help="where the 1M-chunk store is built (several GB)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    results: dict[str, Any] = json.loads(args.out.read_text()) if args.out.exists() else {}
    for name in args.only.split(","):
        log(f"== {name}")
        started = time.perf_counter()
        section = SECTIONS[name](args)
        section.setdefault(name, {})["section_seconds"] = round(time.perf_counter() - started, 1)
        results.update(section)
    results.update(
        {
            "cores": os.cpu_count(),
            "notes": NOTES,
            "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"python": platform.python_version(), "platform": platform.platform()},
        }
    )
    text = json.dumps(results, indent=2, sort_keys=True)
    print(text)
    if not args.no_write:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
