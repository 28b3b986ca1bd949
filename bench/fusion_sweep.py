"""Hybrid fusion tuned on SciFact's training queries only (issue 16): RRF and score-normalised convex fusion.

    python bench/fusion_sweep.py [--vectors chunks.npy] [--out bench/results/fusion_sweep.json]

The embedded store is filled as bench/retrieval.py fills it (title + text per document, the plugin's chunking; the
chunks' vectors from `--vectors`, the same model's vectors computed elsewhere, or embedded here). For every training
query each side's candidate pool (the store's dense and keyword searches, 100 chunks each, with their scores) is taken
once; each fusion variant then ranks the same candidates, chunks folded to documents in order, and is scored with
nDCG@10 / recall@100 against qrels/train.tsv (the only judgments here: the test ones are withheld on purpose). To see
whether a choice carries beyond the queries it was chosen on, the training queries are also split in two halves (by
position): the variant best on one half is scored on the other, beside the current default.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from retrieval import SHARED_DATA, documents_in_order, evaluate, load_scifact  # noqa: E402

from plugkit.plugins.retrieval.chunking import minilm_tokenizer  # noqa: E402
from plugkit.plugins.retrieval.embeddings.local import LocalEmbedder  # noqa: E402
from plugkit.plugins.retrieval.models import Document, DocumentMetadata  # noqa: E402
from plugkit.plugins.retrieval.service import Retriever  # noqa: E402
from plugkit.plugins.retrieval.stores.base import ChunkRecord, DocumentRecord, SearchRequest  # noqa: E402
from plugkit.plugins.retrieval.stores.embedded import EmbeddedStore  # noqa: E402
from plugkit.plugins.retrieval.stores.fusion import convex, rrf  # noqa: E402

POOL = 100
Side = list[tuple[str, float]]  # chunk id, score; best first
Fuser = Callable[[Side, Side], list[str]]


def qrels_of(data: Path, split: str) -> dict[str, dict[str, int]]:
    found: dict[str, dict[str, int]] = {}
    with (data / "qrels" / f"{split}.tsv").open(encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            query, doc, score = line.rstrip("\n").split("\t")
            if int(score) > 0:
                found.setdefault(query, {})[doc] = int(score)
    return found


def theoretical(dense: Side, keyword: Side, alpha: float) -> list[str]:
    """Convex fusion with the dense side's cosine taken as is (its theoretical range) and BM25 divided by the
    query's best score (the 'TM2C2'-style normalisation of Bruch et al. 2023)."""
    fused: dict[str, float] = {}
    top = keyword[0][1] if keyword else 1.0
    for key, score in dense:
        fused[key] = fused.get(key, 0.0) + alpha * score
    for key, score in keyword:
        fused[key] = fused.get(key, 0.0) + (1 - alpha) * (score / top if top > 0 else 0.0)
    return [k for k, _ in sorted(fused.items(), key=lambda item: (-item[1], item[0]))]


def variants() -> dict[str, Fuser]:
    found: dict[str, Fuser] = {}
    for k in (5, 10, 20, 60):
        for weight in (1.0, 1.25, 1.5):
            found[f"rrf_k{k}_keyword{weight}"] = lambda d, w, k=k, weight=weight: [
                key for key, _ in rrf([[x for x, _ in d], [x for x, _ in w]], k, [1.0, weight])
            ]
    for alpha in (0.3, 0.4, 0.5, 0.6, 0.65, 0.7, 0.75, 0.8):
        found[f"convex_minmax_dense{alpha}"] = lambda d, w, alpha=alpha: [
            key for key, _ in convex([d, w], [alpha, 1 - alpha])
        ]
        found[f"convex_theoretical_dense{alpha}"] = lambda d, w, alpha=alpha: theoretical(d, w, alpha)
    return found


async def candidates(
    store: EmbeddedStore, queries: dict[str, str], vectors: dict[str, list[float]]
) -> dict[str, tuple[Side, Side]]:
    found = {}
    for q, text in queries.items():
        dense = await store.search(SearchRequest(text=text, embedding=vectors[q], top_k=POOL, mode="dense"))
        keyword = await store.search(SearchRequest(text=text, embedding=None, top_k=POOL, mode="keyword"))
        found[q] = ([(h.id or "", h.score) for h in dense], [(h.id or "", h.score) for h in keyword])
    return found


def score(fuse: Fuser, pools: dict[str, tuple[Side, Side]], qrels: dict[str, dict[str, int]]) -> dict[str, float]:
    rankings = {q: documents_in_order([c.rsplit("_", 1)[0] for c in fuse(*pools[q])]) for q in pools}
    return evaluate(rankings, {q: qrels[q] for q in pools})


async def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    corpus, _, _ = load_scifact(args.data, None)
    with (args.data / "queries.jsonl").open(encoding="utf-8") as fh:
        queries = {row["_id"]: row["text"] for row in map(json.loads, fh)}
    train = qrels_of(args.data, "train")
    embedder = LocalEmbedder(query_backend="torch")
    store = EmbeddedStore(work / "retrieval")
    retriever = Retriever(store, embedder, minilm_tokenizer())
    await retriever.open()
    documents = [Document(id=i, text=t, metadata=DocumentMetadata(source_id=i)) for i, t in corpus.items()]
    if args.vectors is None:
        for i in range(0, len(documents), 64):
            await retriever.upsert(documents[i : i + 64])
    else:
        given = np.load(args.vectors).astype(np.float32)
        given /= np.linalg.norm(given, axis=1, keepdims=True)
        records, position = [], 0
        for document in documents:
            chunks = retriever.chunk_document(document, document.id or "")
            records.append(
                DocumentRecord(
                    document.id or "", [ChunkRecord.of(c, given[position + n]) for n, c in enumerate(chunks)]
                )
            )
            position += len(chunks)
        for i in range(0, len(records), 256):
            await store.replace_documents(records[i : i + 256])
    results: dict[str, Any] = {}
    asked = {q: queries[q] for q in train if q in queries}
    vectors = await embedder.embed_documents(list(asked.values()))
    pools = await candidates(store, asked, dict(zip(asked, vectors, strict=True)))
    await retriever.close()
    fusers = variants()
    sweep = {name: score(fuse, pools, train) for name, fuse in fusers.items()}
    best = max(sweep, key=lambda name: sweep[name]["ndcg@10"])
    default = "rrf_k10_keyword1.0"  # the store's current default (rrf_k 10, equal weights, pool 100)
    ordered = sorted(pools)
    halves = [{q: pools[q] for q in ordered[0::2]}, {q: pools[q] for q in ordered[1::2]}]
    crossed = []
    for chosen_on, scored_on in ((0, 1), (1, 0)):
        on_half = {name: score(fuse, halves[chosen_on], train) for name, fuse in fusers.items()}
        pick = max(on_half, key=lambda name: on_half[name]["ndcg@10"])
        crossed.append(
            {
                "chosen_on_half": chosen_on,
                "chosen": pick,
                "other_half": {name: score(fusers[name], halves[scored_on], train) for name in (default, pick)},
            }
        )
    results["training_queries"] = len(pools)
    results["sweep_train"] = dict(sorted(sweep.items(), key=lambda item: -item[1]["ndcg@10"]))
    results["best_on_all_training_queries"] = best
    results["default"] = default
    results["two_halves"] = crossed
    results["single_sides"] = {
        "dense": score(lambda d, w: [k for k, _ in d], pools, train),
        "keyword": score(lambda d, w: [k for k, _ in w], pools, train),
    }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=SHARED_DATA / "scifact")
    parser.add_argument("--vectors", type=Path, default=None, help="an .npy of the chunks' vectors (skips embedding)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "fusion_sweep.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        results = asyncio.run(run(args, Path(work)))
    report: dict[str, Sequence[Any] | Any] = {
        "benchmark": "hybrid fusion on SciFact's training queries (whole, and chosen on one half, scored on the other)",
        "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "candidate_pool": POOL,
        **results,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("best_on_all_training_queries", "two_halves")}, indent=2))
    print(json.dumps(dict(list(report["sweep_train"].items())[:8]), indent=1))


if __name__ == "__main__":
    main()
