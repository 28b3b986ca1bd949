"""A diagnosis for the IVF index's training (#16): its lists' centroids by torch's k-means (stores/kmeans.py) against
faiss's own, side by side, in time and in recall.

    python bench/ivf_training.py [--size 100000] [--rounds 3] [--out bench/results/ivf_training.json]
    python bench/ivf_training.py --against pq25 --out bench/results/ivf_training_pq.json

The store trains its IVF index once it holds 50,000 chunks (again at ten times its training size), in a thread beside
the writes; on a GPU ingest that training took the host's cores from the chunking processes (#16). Each round trains the
index both ways on the same vectors with the round's seed (so the recall's spread is the seed's), each first in every
other round: real MiniLM vectors of SciFact's chunks (all of the corpus) and, up to `--size`, vectors drawn with their
mean and covariance (bench/scale.py's `synthetic_like`), nlist by the store's rule. Recorded: the training's seconds
(k-means and the product quantizer, as `IvfIndex.train`), the add of every vector, and recall@10 of SciFact's real
queries against the exact top 10, the candidates re-ranked exactly as the store does, at a few nprobe and at the store's
default (512 lists, 100 candidates a result). Both use every core here. Results: bench/results/ivf_training.json.
`--against pq25`: the store's training against the same with faiss's default 25 k-means iterations for each part of
the product quantizer (the store runs PQ_NITER), in bench/results/ivf_training_pq.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "ivf_training.json"
PROBES = ((16, 40), (32, 40), (64, 40), (512, 100))  # (nprobe, candidates per wanted result)


def faiss_trained(sample: np.ndarray, nlist: int, seed: int) -> Any:
    """The index as IvfIndex.train made it before kmeans.py: faiss's k-means (10 iterations)."""
    import faiss

    from plugkit.plugins.retrieval.stores.ann import IvfIndex

    dimension = sample.shape[1]
    index = faiss.index_factory(dimension, f"IVF{nlist},PQ{dimension // 4}x4fs", faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    index.cp.niter = 10
    index.train(sample)
    return IvfIndex(index)


def recall(ivf: Any, data: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    out = {}
    for nprobe, factor in PROBES:
        ivf.nprobe = nprobe
        hits = 0
        for q, wanted in zip(queries, truth, strict=True):
            candidates, _ = ivf.search(q, min(10 * factor, 1000))
            best = candidates[np.argsort(-(data[candidates] @ q))[:10]]
            hits += len(set(best.tolist()) & set(wanted.tolist()))
        out[f"nprobe{nprobe}_candidates{min(10 * factor, 1000)}"] = hits / truth.size
    return out


def one(way: str, data: np.ndarray, queries: np.ndarray, truth: np.ndarray, seed: int) -> dict[str, Any]:
    from plugkit.plugins.retrieval.stores import ann
    from plugkit.plugins.retrieval.stores.ann import IvfIndex, default_nlist

    pq_niter = ann.PQ_NITER
    if way == "pq25":  # the store's training with faiss's default product-quantizer iterations
        ann.PQ_NITER = 25

    sample = data[np.random.default_rng(0).choice(len(data), 100_000, replace=False)] if len(data) > 100_000 else data
    nlist = default_nlist(len(data))
    started = time.perf_counter()
    if way == "faiss":
        ivf = faiss_trained(sample, nlist, seed)
    else:
        try:
            ivf = IvfIndex.train(data, nlist=nlist, seed=seed, device="cpu")
        finally:
            ann.PQ_NITER = pq_niter
    train_s = time.perf_counter() - started
    started = time.perf_counter()
    ivf.add(np.arange(len(data)), data)
    add_s = time.perf_counter() - started
    return {"train_s": train_s, "add_s": add_s, "nlist": nlist, "recall10": recall(ivf, data, queries, truth)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size", type=int, default=100_000, help="vectors trained on and searched")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cache-dir", default=str(Path(tempfile.gettempdir()) / "plugkit-scale-cache"))
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--against",
        choices=["faiss", "pq25"],
        default="faiss",
        help="the baseline: faiss's k-means for the lists, or the store's with 25 product-quantizer iterations",
    )
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    sys.path.insert(0, str(ROOT))
    from bench.scale import exact_top, real_embeddings, synthetic_like

    real, queries = real_embeddings(argparse.Namespace(cache_dir=args.cache_dir, ann_real_docs=None))
    data = np.concatenate([real, synthetic_like(real, args.size - len(real))]) if args.size > len(real) else real
    truth = exact_top(data, queries, 10)
    base = args.against
    runs: dict[str, list[dict[str, Any]]] = {base: [], "torch": []}
    for n in range(args.rounds):
        for way in (base, "torch") if n % 2 == 0 else ("torch", base):
            runs[way].append(one(way, data, queries, truth, seed=n))
            print(f"round {n + 1} {way}: {json.dumps(runs[way][-1])}", file=sys.stderr, flush=True)

    def spread(values: list[float], digits: int) -> dict[str, float]:
        return {k: round(f(values), digits) for k, f in (("median", statistics.median), ("min", min), ("max", max))}

    results: dict[str, Any] = {
        "what": __doc__.split("\n\n")[2] if __doc__ else "",
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cores": os.cpu_count(),
        "vectors": len(data),
        "real_vectors": len(real),
        "queries": len(queries),
        "nlist": runs["torch"][0]["nlist"],
        "rounds": args.rounds,
    }
    labels = {"faiss": "faiss_kmeans", "pq25": "torch_kmeans_cpu_pq_niter25", "torch": "torch_kmeans_cpu"}
    from plugkit.plugins.retrieval.stores.ann import PQ_NITER

    results["product_quantizer_niter"] = {"torch": PQ_NITER, base: 25}  # faiss's default for the baselines
    for way, label in ((base, labels[base]), ("torch", labels["torch"])):
        results[label] = {
            "train_s": spread([r["train_s"] for r in runs[way]], 2),
            "add_s": spread([r["add_s"] for r in runs[way]], 2),
            "recall10": {k: spread([r["recall10"][k] for r in runs[way]], 4) for k in runs[way][0]["recall10"]},
        }
    ratios = [t["train_s"] / f["train_s"] for t, f in zip(runs["torch"], runs[base], strict=True)]
    results[f"train_time_ratio_torch_to_{base}"] = spread(ratios, 3)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k != "what"}, indent=1))


if __name__ == "__main__":
    main()
