"""Hybrid fusion of a dense and a keyword ranking, for every store that fuses in Python.

Both functions take each side's candidates best first and return the fused ranking best first (ties broken by the
key, so the order is deterministic). Callers fuse a fixed pool per side (`candidate_pool`, 100 by default) and only
then cut to `top_k`, so the first results do not depend on how many were asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

K = TypeVar("K", str, int)  # chunk ids or store row ids

RRF_K = 60
# The weights (dense, keyword) each fusion uses when none are given. "scaled": chosen on SciFact's training queries
# (bench/fusion_sweep.py): hybrid nDCG@10 0.7357 at 0.7 / 0.3 (a plateau from 0.65 to 0.8), against 0.7262 for RRF k 10.
DEFAULT_WEIGHTS = {"rrf": (1.0, 1.0), "convex": (1.0, 1.0), "scaled": (0.7, 0.3)}


def rrf(
    rankings: Sequence[Sequence[K]], k: int = RRF_K, weights: Sequence[float | None] | None = None
) -> list[tuple[K, float]]:
    """Reciprocal rank fusion (Cormack et al. 2009): each ranking adds weight / (k + rank) to its items, rank
    from 1 (weight 1 where none is given); best first."""
    fused: dict[K, float] = {}
    for i, ranking in enumerate(rankings):
        given = None if weights is None else weights[i]
        weight = 1.0 if given is None else given
        for rank, key in enumerate(ranking, start=1):
            fused[key] = fused.get(key, 0.0) + weight / (k + rank)
    return _ordered(fused)


def convex(scored: Sequence[Sequence[tuple[K, float]]], weights: Sequence[float]) -> list[tuple[K, float]]:
    """Score-normalised convex combination: each side's scores min-max normalised over its own candidates to
    [0, 1], then summed with `weights` (an item a side did not return gets 0 from it); best first."""
    fused: dict[K, float] = {}
    for side, weight in zip(scored, weights, strict=True):
        if not side:
            continue
        values = [s for _, s in side]
        low, high = min(values), max(values)
        span = high - low
        for key, score in side:
            fused[key] = fused.get(key, 0.0) + weight * ((score - low) / span if span > 0 else 1.0)
    return _ordered(fused)


def scaled(
    dense: Sequence[tuple[K, float]], keyword: Sequence[tuple[K, float]], weights: Sequence[float]
) -> list[tuple[K, float]]:
    """Convex combination of scores on known scales (the "theoretical min-max" normalisation of Bruch et al. 2023,
    "An Analysis of Fusion Functions for Hybrid Retrieval"): the dense side's cosine similarity as it is, its range
    being fixed, and the keyword side's BM25, which has none, divided by the query's best BM25 score; an item a side
    did not return gets 0 from it; best first. Unlike min-max over the candidates, a query whose dense candidates are
    all alike does not have its small differences stretched to the whole range."""
    fused: dict[K, float] = {}
    dense_weight, keyword_weight = weights
    for key, score in dense:
        fused[key] = fused.get(key, 0.0) + dense_weight * score
    top = max((score for _, score in keyword), default=0.0)
    for key, score in keyword:
        fused[key] = fused.get(key, 0.0) + keyword_weight * (score / top if top > 0 else 0.0)
    return _ordered(fused)


def _ordered(fused: dict[K, float]) -> list[tuple[K, float]]:
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))
