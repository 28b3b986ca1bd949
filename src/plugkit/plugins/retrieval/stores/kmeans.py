"""Spherical k-means for the IVF index's lists, in torch: on the GPU when there is one, else on the CPU.

The IVF index (ann.py) assigns each vector to the nearest of `nlist` centroids, found by k-means over a sample of the
vectors. faiss can train them itself, but its CPU k-means runs on the OpenBLAS that faiss-cpu bundles: training an
index of 100,000 MiniLM vectors into 1,264 lists took 26.4 s that way on two cores here and 8.1 s with the
iterations as torch matrix products, at the same recall within the spread of seeds (bench/results/ivf_training.json);
and on a GPU ingest faiss's training took the host's cores from the chunking processes (#16), where the GPU does it
on the side. So the centroids come from here, and faiss trains the rest (the product quantizer on the residuals),
adds and searches.

The iterations are faiss's (`faiss.Clustering` with `spherical`, as its IVF sets for inner product): each vector to
the centroid of largest inner product, each centroid the normalised mean of its vectors, an empty list split off a
populated one picked with odds by its size (a copy of its centroid, both nudged apart), starting from distinct sampled
vectors.
"""

from __future__ import annotations

from typing import Any

import numpy as np

ROWS_PER_STEP = 8192  # vectors assigned per matrix product (bounds the scores matrix: 8,192 x nlist floats)
SPLIT_EPS = 1 / 1024  # faiss's relative nudge when an empty centroid takes half of a large one


def spherical_kmeans(vectors: np.ndarray, k: int, *, niter: int = 10, seed: int = 0, device: str = "cpu") -> np.ndarray:
    """`k` unit-norm centroids (float32, k x d) of the rows of `vectors` by inner product."""
    import torch

    data = np.ascontiguousarray(vectors, dtype=np.float32)
    if data.ndim != 2 or len(data) < k or k < 1:
        raise ValueError(f"k-means into {k} lists needs at least {k} vectors, got {len(data)}")
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(data).to(device)
    centroids = x[torch.from_numpy(rng.choice(len(data), k, replace=False)).to(device)].clone()
    for _ in range(niter):
        assigned = _assign(x, centroids)
        sums = torch.zeros_like(centroids).index_add_(0, assigned, x)
        sizes = torch.bincount(assigned, minlength=k)
        centroids = _normalised(sums)
        empty = (sizes == 0).nonzero().flatten().tolist()
        if empty:
            centroids = _split_into(centroids, sizes.to("cpu").numpy().astype(np.float64), empty, rng)
    return np.ascontiguousarray(centroids.to("cpu", torch.float32).numpy())


def _assign(x: Any, centroids: Any) -> Any:
    import torch

    assigned = torch.empty(len(x), dtype=torch.int64, device=x.device)
    for start in range(0, len(x), ROWS_PER_STEP):
        part = x[start : start + ROWS_PER_STEP]
        assigned[start : start + len(part)] = (part @ centroids.T).argmax(dim=1)
    return assigned


def _normalised(rows: Any) -> Any:
    import torch

    norms = torch.linalg.vector_norm(rows, dim=1, keepdim=True)
    return rows / torch.clamp(norms, min=torch.finfo(rows.dtype).tiny)


def _split_into(centroids: Any, sizes: np.ndarray, empty: list[int], rng: np.random.Generator) -> Any:
    """Each empty list takes a copy of a list picked with odds by its size beyond one (faiss's `split_clusters`),
    the two nudged apart; the picked list's size is halved between them."""
    import torch

    centroids = centroids.clone()
    for target in empty:
        weights = np.clip(sizes - 1, 0, None)
        source = int(rng.choice(len(sizes), p=weights / weights.sum()))
        sign = torch.from_numpy(np.where(rng.random(centroids.shape[1]) < 0.5, 1.0, -1.0).astype(np.float32))
        nudge = 1 + SPLIT_EPS * sign.to(centroids.device)
        centroids[target] = centroids[source] * nudge
        centroids[source] = centroids[source] / nudge
        sizes[target] = sizes[source] / 2
        sizes[source] -= sizes[target]
    return _normalised(centroids)
