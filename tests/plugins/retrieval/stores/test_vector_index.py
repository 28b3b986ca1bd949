from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from plugkit.plugins.retrieval.stores.vector_index import ExactIndex


def vectors(n: int, dim: int = 4, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)  # type: ignore[no-any-return]


def test_search_finds_exact_top_k_in_order() -> None:
    data = vectors(200)
    index = ExactIndex(4)
    index.add(np.arange(200) + 1000, data)
    ids, scores = index.search(data[17], 5)
    expected = np.argsort(-(data @ data[17]))[:5] + 1000
    assert ids.tolist() == expected.tolist()
    assert scores[0] == pytest.approx(1.0, abs=1e-5)


def test_removed_ids_are_never_returned_and_the_rest_still_are() -> None:
    data = vectors(10)
    index = ExactIndex(4)
    index.add(np.arange(10), data)
    index.remove([0, 5, 9, 42])
    assert len(index) == 7
    ids, _ = index.search(data[0], 10)
    assert sorted(ids.tolist()) == [1, 2, 3, 4, 6, 7, 8]
    assert index.search(data[3], 1)[0].tolist() == [3]


def test_adding_an_existing_id_replaces_its_vector() -> None:
    data = vectors(3)
    index = ExactIndex(4)
    index.add(np.array([1, 2]), data[:2])
    index.add(np.array([1]), data[2:3])
    assert len(index) == 2
    assert index.search(data[2], 1)[0].tolist() == [1]


def test_the_last_rows_are_what_the_last_add_added_even_after_it_replaced_ids() -> None:
    data = vectors(50)
    index = ExactIndex(4)
    index.add(np.arange(40), data[:40])
    index.add(np.array([3, 40, 41]), data[40:43])  # 3 replaced: its old row leaves, the new one comes last
    ids, rows = index.last(3)
    assert ids.tolist() == [3, 40, 41] and np.array_equal(rows, data[40:43])
    assert len(index) == 42


def test_the_vectors_of_ids_come_in_the_order_asked_as_a_copy() -> None:
    data = vectors(10)
    index = ExactIndex(4)
    index.add(np.arange(10) + 100, data)
    index.remove([101])  # row 1 now holds the last vector
    found = index.vectors_of([109, 100, 105])
    assert np.array_equal(found, data[[9, 0, 5]])
    found[:] = 0
    assert np.array_equal(index.vectors_of([100]), data[:1])


def test_search_among_allowed_ids_only() -> None:
    data = vectors(50)
    index = ExactIndex(4)
    index.add(np.arange(50), data)
    ids, _ = index.search(data[0], 3, allowed=np.array([10, 20, 30, 999]))
    assert sorted(ids.tolist()) == [10, 20, 30]


def test_an_empty_index_returns_nothing() -> None:
    ids, scores = ExactIndex(4).search(vectors(1)[0], 3)
    assert len(ids) == 0 and len(scores) == 0


def test_save_and_load_round_trip_with_the_marker(tmp_path: Path) -> None:
    data = vectors(30)
    index = ExactIndex(4)
    index.add(np.arange(30), data)
    index.remove([3])
    index.save(tmp_path / "v.npz", {"seq": "12", "instance": "abc"})
    loaded, marker = ExactIndex.load(tmp_path / "v.npz", 4)
    assert marker == {"seq": "12", "instance": "abc"}
    assert sorted(loaded.ids().tolist()) == sorted(index.ids().tolist())


def test_loading_a_damaged_or_mismatched_file_raises_value_error(tmp_path: Path) -> None:
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(ValueError):
        ExactIndex.load(tmp_path / "bad.npz", 4)
    index = ExactIndex(4)
    index.add(np.arange(2), vectors(2))
    index.save(tmp_path / "v.npz", {})
    with pytest.raises(ValueError, match="8-dimensional"):
        ExactIndex.load(tmp_path / "v.npz", 8)


def test_search_among_a_boolean_mask_by_id() -> None:
    data = vectors(50)
    index = ExactIndex(4)
    index.add(np.arange(50), data)
    mask = np.zeros(30, dtype=bool)
    mask[[10, 20]] = True
    ids, _ = index.search(data[0], 3, allowed=mask)
    assert sorted(ids.tolist()) == [10, 20]
