from __future__ import annotations

import faiss
import numpy as np
import pytest

from plugkit.plugins.retrieval.stores.ann import IvfIndex
from plugkit.plugins.retrieval.stores.kmeans import spherical_kmeans


def around(centres: np.ndarray, per_centre: int, spread: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors scattered around each centre, and the centre each one came from."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(centres)), per_centre)
    points = centres[labels] + spread * rng.normal(size=(len(labels), centres.shape[1]))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32), labels


def test_once_settled_each_centroid_is_the_normalised_mean_of_the_vectors_nearest_it() -> None:
    points, _ = around(np.eye(8, dtype=np.float32), 100, 0.05)
    centroids = spherical_kmeans(points, 8, niter=30, seed=3)
    assert centroids.shape == (8, 8) and centroids.dtype == np.float32
    assigned = (points @ centroids.T).argmax(axis=1)
    for n, centroid in enumerate(centroids):
        mean = points[assigned == n].sum(axis=0)
        np.testing.assert_allclose(centroid, mean / np.linalg.norm(mean), atol=1e-5)


def test_it_reaches_the_objective_of_faiss_own_spherical_k_means() -> None:
    points, _ = around(np.random.default_rng(7).normal(size=(64, 32)).astype(np.float32), 40, 0.3)

    def objective(centroids: np.ndarray) -> float:
        return float((points @ centroids.T).max(axis=1).mean())  # mean cosine to the nearest centroid

    kmeans = faiss.Kmeans(32, 48, niter=10, seed=2, spherical=True)
    kmeans.train(points)
    ours = objective(spherical_kmeans(points, 48, niter=10, seed=2))
    assert ours >= 0.99 * objective(kmeans.centroids)
    assert ours > objective(points[np.random.default_rng(2).choice(len(points), 48, replace=False)]) + 0.05


def test_a_list_left_empty_takes_half_of_a_large_one_instead_of_staying_behind() -> None:
    # 1,000 copies of one vector and 10 of another: any two starting centroids drawn among the copies tie, so one of
    # them gets nothing in the first step and is split off a populated one.
    points = np.concatenate([np.tile(np.eye(4, dtype=np.float32)[0], (1000, 1)), np.tile(np.eye(4)[1], (10, 1))])
    centroids = spherical_kmeans(points.astype(np.float32), 3, niter=5, seed=0)
    assert np.isfinite(centroids).all()
    np.testing.assert_allclose(np.linalg.norm(centroids, axis=1), 1, atol=1e-5)
    assert (centroids @ np.eye(4, dtype=np.float32)[1]).max() > 0.99  # the small group keeps a centroid


def test_the_same_seed_gives_the_same_centroids_and_too_few_vectors_are_refused() -> None:
    points, _ = around(np.eye(16, dtype=np.float32), 40, 0.3)
    np.testing.assert_array_equal(spherical_kmeans(points, 12, seed=1), spherical_kmeans(points, 12, seed=1))
    with pytest.raises(ValueError, match="k-means into 641 lists needs at least 641 vectors, got 640"):
        spherical_kmeans(points, 641)


def test_the_ivf_index_keeps_these_centroids_as_its_lists_and_trains_only_its_codes() -> None:
    points, _ = around(np.eye(32, dtype=np.float32), 60, 0.3)
    ivf = IvfIndex.train(points, nlist=24, seed=5, device="cpu")
    quantizer = faiss.downcast_index(ivf._index.quantizer)
    lists = quantizer.reconstruct_n(0, quantizer.ntotal)
    np.testing.assert_array_equal(lists, spherical_kmeans(points, 24, seed=5))
    assert ivf._index.is_trained
    ivf.add(np.arange(len(points)), points)
    ivf.nprobe = 24  # every list: the codes alone rank the point itself first among its copies' neighbours
    found, _ = ivf.search(points[7], 50)
    assert 7 in found.tolist()
