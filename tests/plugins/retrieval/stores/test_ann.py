from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest

from plugkit.plugins.retrieval.models import DocumentChunk, DocumentChunkMetadata, DocumentMetadataFilter, Source
from plugkit.plugins.retrieval.stores import ivf_filling
from plugkit.plugins.retrieval.stores.ann import TRAINING_NICE, AutoIndex, IvfIndex, default_nlist
from plugkit.plugins.retrieval.stores.base import ChunkRecord, DocumentRecord, SearchRequest, StoreInfo
from plugkit.plugins.retrieval.stores.embedded import EmbeddedStore
from plugkit.plugins.retrieval.stores.vector_index import ExactIndex

DIM = 16


def clustered(n: int, seed: int = 0) -> np.ndarray:
    """Unit vectors around 20 centres, like topical embeddings."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, DIM))
    v = centres[rng.integers(0, 20, n)] + 0.3 * rng.normal(size=(n, DIM))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return clustered(3000)


def test_scanning_every_list_then_re_ranking_finds_the_exact_top_k(data: np.ndarray) -> None:
    auto = AutoIndex(DIM, min_chunks=1000, nprobe=10_000)
    auto.add(np.arange(len(data)) + 500, data)
    exact = ExactIndex(DIM)
    exact.add(np.arange(len(data)) + 500, data)
    for q in data[:20]:
        assert auto.search(q, 10)[0].tolist() == exact.search(q, 10)[0].tolist()


def test_a_few_lists_keep_recall_high_on_clustered_vectors(data: np.ndarray) -> None:
    auto = AutoIndex(DIM, min_chunks=1000, nprobe=8)
    auto.add(np.arange(len(data)), data)
    assert auto.ivf is not None and auto.ivf.nlist > 8
    queries = clustered(50, seed=1)
    hits = sum(len(set(auto.search(q, 10)[0].tolist()) & set(np.argsort(-(data @ q))[:10].tolist())) for q in queries)
    assert hits / 500 >= 0.9


def test_a_filtered_search_returns_only_allowed_ids_best_first(data: np.ndarray) -> None:
    auto = AutoIndex(DIM, min_chunks=100, nprobe=10_000, filtered_nprobe=10_000)
    auto.add(np.arange(len(data)), data)
    allowed = np.arange(0, len(data), 10)
    assert set(auto.ivf.search(data[5], 50, allowed)[0].tolist()) <= set(allowed.tolist())  # type: ignore[union-attr]
    ids, scores = auto.search(data[5], 10, allowed)
    assert set(ids.tolist()) <= set(allowed.tolist())
    expected = allowed[np.argsort(-(data[allowed] @ data[5]))[:10]]
    assert ids.tolist() == expected.tolist()
    assert list(scores) == sorted(scores, reverse=True)


def test_an_empty_filter_finds_nothing(data: np.ndarray) -> None:
    ivf = IvfIndex.train(data, nlist=16)
    ivf.add(np.arange(len(data)), data)
    assert ivf.search(data[0], 5, np.zeros(0, dtype=np.int64))[0].tolist() == []


def test_removed_ids_are_never_returned_and_re_adding_replaces(data: np.ndarray) -> None:
    # Every list scanned and 1,000 candidates re-ranked: on 16 dimensions the 4-bit codes tie many vectors.
    auto = AutoIndex(DIM, min_chunks=1000, nprobe=10_000, k_factor=500)
    auto.add(np.arange(len(data)), data)
    auto.remove([7, 99999])
    assert 7 not in auto.search(data[7], 10)[0].tolist()
    auto.add(np.array([8]), data[9:10])  # id 8 now holds the vector of 9
    assert auto.ivf is not None and len(auto.ivf) == len(auto) == len(data) - 1
    assert set(auto.search(data[9], 2)[0].tolist()) == {8, 9}


def test_training_needs_at_least_one_vector_per_list(data: np.ndarray) -> None:
    with pytest.raises(ValueError, match="at least 64 vectors"):
        IvfIndex.train(data[:10], nlist=64)


def test_default_lists_grow_with_the_square_root_of_the_size() -> None:
    assert default_nlist(1_000_000) == 4000
    assert default_nlist(100) == 16


def test_a_saved_index_loads_with_its_marker_and_answers_the_same(tmp_path: Path, data: np.ndarray) -> None:
    ivf = IvfIndex.train(data, nlist=16, nprobe=4)
    ivf.add(np.arange(len(data)), data)
    assert len(ivf) == len(data)
    ivf.save(tmp_path / "v.ivf", {"instance": "abc", "seq": "3"})
    loaded, marker = IvfIndex.load(tmp_path / "v.ivf", DIM)
    assert marker == {"instance": "abc", "seq": "3"}
    assert loaded.search(data[3], 10)[0].tolist() == ivf.search(data[3], 10)[0].tolist()


def test_a_corrupt_index_file_is_refused_as_unreadable(tmp_path: Path) -> None:
    (tmp_path / "v.ivf").write_bytes(b"not an index")
    (tmp_path / "v.ivf.json").write_text("{}")
    with pytest.raises(ValueError, match="unreadable"):
        IvfIndex.load(tmp_path / "v.ivf", DIM)


def own_code_misses(index: IvfIndex, trained: IvfIndex, ids: np.ndarray, vectors: np.ndarray) -> list[int]:
    """The ids whose approximate score for their own vector differs from the one they get in `trained` (a copy of
    the index made while empty) filled at once with `vectors`: ids holding another vector's code, or a mixed one."""
    at_once = trained.copy()
    at_once.add(ids, vectors)
    misses = []
    for rowid, vector in zip(ids.tolist(), vectors, strict=True):
        mine = dict(zip(*index.search(vector, len(ids)), strict=True))
        reference = dict(zip(*at_once.search(vector, len(ids)), strict=True))
        if mine.get(rowid) != reference.get(rowid):
            misses.append(rowid)
    return misses


@pytest.mark.parametrize("removed", [np.arange(0, 100, 2), np.arange(300, 1100)])  # a few a list; whole blocks
def test_vectors_added_after_a_removal_hold_their_own_codes(removed: np.ndarray) -> None:
    vectors = clustered(1400, seed=6)
    trained = IvfIndex.train(vectors[:1100], nprobe=10_000, device="cpu")
    index = trained.copy()
    index.add(np.arange(1200), vectors[:1200])
    index.remove(removed.tolist())
    index.add(np.arange(1200, 1400), vectors[1200:])
    kept = np.setdiff1d(np.arange(1400), removed)
    assert len(index) == len(kept)
    assert own_code_misses(index, trained, kept, vectors[kept]) == []


def test_a_removal_given_its_vectors_zeroes_only_their_lists_and_any_list_when_they_do_not_match(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    vectors = clustered(1400, seed=6)
    trained = IvfIndex.train(vectors[:1100], nprobe=10_000, device="cpu")
    zeroed: list[list[int]] = []
    zero = IvfIndex._zero_vacated

    def watched(lists: Any, sizes: dict[int, int]) -> None:
        zeroed.append(sorted(sizes))
        zero(lists, sizes)

    monkeypatch.setattr(IvfIndex, "_zero_vacated", staticmethod(watched))
    index = trained.copy()
    index.add(np.arange(1200), vectors[:1200])
    first = np.arange(0, 60, 2)
    index.remove(first.tolist(), vectors[first])  # the lists their vectors name
    second = np.arange(100, 160, 2)
    index.remove(second.tolist(), vectors[second + 500])  # vectors of other ids: the sizes do not add up
    index.add(np.arange(1200, 1400), vectors[1200:])
    assert 0 < len(zeroed[0]) <= len(first) and zeroed[1] == list(range(index.nlist))
    kept = np.setdiff1d(np.arange(1400), np.concatenate([first, second]))
    assert len(index) == len(kept)
    assert own_code_misses(index, trained, kept, vectors[kept]) == []


def test_an_ivf_index_saved_in_the_older_format_is_filled_again_from_the_vectors(tmp_path: Path) -> None:
    vectors = clustered(1400, seed=6)
    auto = AutoIndex(DIM, min_chunks=1000, nprobe=10_000)
    auto.add(np.arange(1200), vectors[:1200])
    assert auto.ivf is not None
    trained = auto.ivf.copy()
    trained._index.reset()
    # What the code before did: faiss's own removal, which leaves the vacated slots as they were.
    gone = np.arange(0, 100, 2)
    auto.ivf._index.remove_ids(faiss.IDSelectorBatch(len(gone), faiss.swig_ptr(gone)))
    auto.exact.remove(gone.tolist())
    auto.add(np.arange(1200, 1250), vectors[1200:1250])
    kept = np.setdiff1d(np.arange(1250), gone)
    assert own_code_misses(auto.ivf, trained, kept, vectors[kept]) != []  # the mixed codes this format can hold
    auto.save(tmp_path / "vectors.npz", {"instance": "x", "seq": "9"})
    marker = tmp_path / "vectors.ivf.json"
    assert json.loads(marker.read_text())["format"] == "2"
    marker.write_text(json.dumps({k: v for k, v in json.loads(marker.read_text()).items() if k != "format"}))
    loaded, _ = AutoIndex.load(tmp_path / "vectors.npz", DIM, min_chunks=1000, nprobe=10_000)
    assert loaded.ivf is not None and loaded.ivf.format == "2" and len(loaded.ivf) == len(kept)
    assert own_code_misses(loaded.ivf, trained, loaded.exact.ids(), loaded.exact.vectors()) == []


def test_auto_index_searches_exactly_below_the_threshold_and_by_ivf_above(data: np.ndarray) -> None:
    auto = AutoIndex(DIM, min_chunks=1000, nprobe=16)
    auto.add(np.arange(500), data[:500])
    assert not auto.uses_ann
    auto.add(np.arange(500, 3000), data[500:])
    assert auto.uses_ann
    assert auto.search(data[1], 5)[0].tolist()[0] == 1
    small = np.arange(0, 3000, 30)  # a filter keeping fewer chunks than the threshold: exact over those
    assert auto.search(data[30], 3, small)[0].tolist()[0] == 30


def test_auto_index_reuses_its_persisted_ivf_index(tmp_path: Path, data: np.ndarray) -> None:
    auto = AutoIndex(DIM, min_chunks=1000, nprobe=8)
    auto.add(np.arange(len(data)), data)
    auto.save(tmp_path / "vectors.npz", {"instance": "x", "seq": "9"})
    loaded, marker = AutoIndex.load(tmp_path / "vectors.npz", DIM, min_chunks=1000, nprobe=8)
    assert marker == {"instance": "x", "seq": "9"}
    assert loaded.uses_ann and loaded.ivf is not None
    assert loaded.search(data[11], 10)[0].tolist() == auto.search(data[11], 10)[0].tolist()


async def test_the_embedded_store_answers_through_ivf_and_keeps_it_after_a_restart(tmp_path: Path) -> None:
    vectors = clustered(1200, seed=3)
    records = [
        DocumentRecord(
            f"d{n}",
            [
                ChunkRecord.of(
                    DocumentChunk(
                        id=f"d{n}_0",
                        text=f"chunk number {n}",
                        metadata=DocumentChunkMetadata(
                            document_id=f"d{n}", source=Source.email if n % 10 else Source.chat
                        ),
                    ),
                    vectors[n].tolist(),
                )
            ],
        )
        for n in range(len(vectors))
    ]
    info = StoreInfo(embedding_model="test", dimension=DIM)
    store = EmbeddedStore(tmp_path, ann_min_chunks=1000, ann_nprobe=64, ann_filtered_nprobe=64)
    await store.open(info)
    await store.replace_documents(records)
    found = await store.search(SearchRequest(text="x", embedding=vectors[42].tolist(), top_k=1, mode="dense"))
    assert found[0].id == "d42_0"
    await store.close()
    assert (tmp_path / "vectors.ivf").is_file()

    reopened = EmbeddedStore(tmp_path, ann_min_chunks=1000, ann_nprobe=64, ann_filtered_nprobe=64)
    await reopened.open(info)
    assert isinstance(reopened._index, AutoIndex) and reopened._index.uses_ann
    chat = DocumentMetadataFilter(source=Source.chat)
    hits = await reopened.search(
        SearchRequest(text="x", embedding=vectors[40].tolist(), top_k=3, mode="dense", filter=chat)
    )
    assert hits[0].id == "d40_0" and all(h.metadata.source == Source.chat for h in hits)
    await reopened.close()


def test_a_boolean_mask_by_id_filters_like_the_same_ids(data: np.ndarray) -> None:
    auto = AutoIndex(DIM, min_chunks=100, nprobe=10_000, filtered_nprobe=10_000)
    auto.add(np.arange(len(data)), data)
    allowed = np.arange(0, len(data), 10)
    mask = np.zeros(len(data) // 2, dtype=bool)  # shorter than the ids: ids past its end are not allowed
    mask[allowed[allowed < len(mask)]] = True
    by_ids = auto.search(data[5], 10, allowed[allowed < len(mask)])
    by_mask = auto.search(data[5], 10, mask)
    assert by_mask[0].tolist() == by_ids[0].tolist()
    assert set(by_mask[0].tolist()) <= set(np.flatnonzero(mask).tolist())
    assert auto.search(data[5], 10, np.zeros(len(data), dtype=bool))[0].tolist() == []


@pytest.fixture
def held_training(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """IVF training that waits until the test sets the event (so that it is surely still running meanwhile)."""
    release = threading.Event()
    train = IvfIndex.train.__func__  # type: ignore[attr-defined]

    def held(cls: type[IvfIndex], vectors: np.ndarray, **kwargs: object) -> IvfIndex:
        assert release.wait(30)
        return train(cls, vectors, **kwargs)  # type: ignore[no-any-return]

    monkeypatch.setattr(IvfIndex, "train", classmethod(held))
    return release


def test_background_training_leaves_searches_exact_until_ready_then_takes_up_the_changes_made_meanwhile(
    data: np.ndarray, held_training: threading.Event
) -> None:
    auto = AutoIndex(DIM, min_chunks=1000, nprobe=10_000, background_training=True)
    auto.add(np.arange(2000), data[:2000])  # crosses the threshold: the training starts and the add returns
    assert auto.ivf is None and not auto.uses_ann
    assert auto.search(data[3], 1)[0].tolist() == [3]  # exact meanwhile
    auto.add(np.arange(2000, 3000), data[2000:])  # added during the training
    auto.remove([7])
    auto.add(np.array([8]), data[9:10])  # id 8 now holds the vector of 9
    assert auto.ivf is None
    held_training.set()
    auto.settle()
    assert auto.uses_ann and auto.ivf is not None
    assert len(auto.ivf) == len(auto) == len(data) - 1
    exact = ExactIndex(DIM)
    exact.add(np.arange(len(data)), data)
    exact.remove([7])
    exact.add(np.array([8]), data[9:10])
    for q in data[:40:3]:  # every list scanned, then re-ranked: the IVF index holds what the exact index holds
        assert set(auto.search(q, 10)[0].tolist()) == set(exact.search(q, 10)[0].tolist())  # 8 and 9 tie
    assert 7 not in auto.search(data[7], 10)[0].tolist()
    assert {8, 9} <= set(auto.search(data[9], 10)[0].tolist())


def test_the_last_change_of_each_id_made_during_the_training_is_what_the_ivf_index_takes_up(
    data: np.ndarray, held_training: threading.Event
) -> None:
    auto = AutoIndex(DIM, min_chunks=1000, nprobe=10_000, k_factor=500, background_training=True)
    exact = ExactIndex(DIM)
    changes: list[tuple[list[int], np.ndarray | None]] = [
        (list(range(2000)), data[:2000]),  # crosses the threshold: the training copies these
        ([2000, 2001, 2002], data[2000:2003]),  # new ids
        ([2001], None),  # a new id added, then removed
        ([2002], data[2500:2501]),  # a new id added twice: the second vector holds
        ([10], None),  # an id the copy holds, removed, then added back with another vector
        ([10], data[2600:2601]),
        ([11], data[2700:2701]),  # an id the copy holds, replaced
        ([12], None),  # an id the copy holds, removed
        ([99_999], None),  # an id nobody holds, removed
    ]
    for ids, vectors in changes:
        for index in (auto, exact):
            index.add(np.array(ids), vectors) if vectors is not None else index.remove(ids)
    assert auto.ivf is None
    held_training.set()
    auto.settle()
    assert auto.ivf is not None and len(auto.ivf) == len(auto) == len(exact) == 2000 + 2 - 1
    for q in (data[2500], data[2600], data[2700], data[2001], data[12], data[10], data[11], data[2000]):
        assert auto.search(q, 5)[0].tolist() == exact.search(q, 5)[0].tolist()
    for gone in (2001, 12):
        assert gone not in auto.ivf.search(data[gone], 1000)[0].tolist()


def test_background_training_is_taken_up_by_the_next_call_once_ready(data: np.ndarray) -> None:
    auto = AutoIndex(DIM, min_chunks=1000, nprobe=10_000, background_training=True)
    auto.add(np.arange(len(data)), data)
    assert auto._training is not None
    auto._training.join()
    assert auto.search(data[5], 1)[0].tolist() == [5]  # this call takes the trained index up
    assert auto.uses_ann and auto._training is None


def test_saving_waits_for_a_training_in_progress_so_the_ivf_index_is_saved(
    tmp_path: Path, data: np.ndarray, held_training: threading.Event
) -> None:
    auto = AutoIndex(DIM, min_chunks=1000, nprobe=8, background_training=True)
    auto.add(np.arange(len(data)), data)
    threading.Timer(0.2, held_training.set).start()
    auto.save(tmp_path / "vectors.npz", {"instance": "x", "seq": "1"})
    loaded, _ = AutoIndex.load(tmp_path / "vectors.npz", DIM, min_chunks=1000, nprobe=8)
    assert (tmp_path / "vectors.ivf").is_file() and loaded.uses_ann


async def test_a_write_crossing_the_threshold_does_not_wait_for_the_training(
    tmp_path: Path, held_training: threading.Event
) -> None:
    vectors = clustered(1200, seed=4)
    records = [
        DocumentRecord(
            f"d{n}",
            [
                ChunkRecord.of(
                    DocumentChunk(id=f"d{n}_0", text=f"chunk {n}", metadata=DocumentChunkMetadata()), vectors[n]
                )
            ],
        )
        for n in range(len(vectors))
    ]
    info = StoreInfo(embedding_model="test", dimension=DIM)
    store = EmbeddedStore(tmp_path, ann_min_chunks=1000, ann_nprobe=64, ann_filtered_nprobe=64)
    await store.open(info)
    await store.replace_documents(records)  # returns while the training is held
    found = await store.search(SearchRequest(text="x", embedding=vectors[42].tolist(), top_k=1, mode="dense"))
    assert found[0].id == "d42_0"
    assert isinstance(store._index, AutoIndex) and store._index.ivf is None
    held_training.set()
    await store.close()  # waits for the training and saves the IVF index
    reopened = EmbeddedStore(tmp_path, ann_min_chunks=1000, ann_nprobe=64, ann_filtered_nprobe=64)
    await reopened.open(info)
    assert isinstance(reopened._index, AutoIndex) and reopened._index.uses_ann
    await reopened.close()


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="per-thread priorities are a Linux feature")
def test_background_training_runs_below_the_priority_of_the_threads_that_write_and_search(
    data: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []
    train = IvfIndex.train

    def watched(*args: Any, **kwargs: Any) -> IvfIndex:
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return train(*args, **kwargs)

    monkeypatch.setattr(IvfIndex, "train", watched)
    auto = AutoIndex(DIM, min_chunks=1000, nprobe=10_000, background_training=True)
    auto.add(np.arange(len(data)), data)
    assert auto._training is not None
    auto._training.join()
    this_thread = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert seen == [min(this_thread + TRAINING_NICE, 19)]
    assert auto.search(data[5], 1)[0].tolist() == [5]


def test_a_bulk_load_trains_the_lists_beside_the_adds_then_fills_them_as_they_come_and_searches_them_from_settle(
    data: np.ndarray, held_training: threading.Event, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ivf_filling, "FINISH_WAIT", 30)  # the filler is not given up on a busy machine
    auto = AutoIndex(DIM, min_chunks=1000, nprobe=10_000, background_training=True)
    auto.train_at_settle = True
    auto.add(np.arange(2000), data[:2000])  # crosses the threshold: the lists are trained in the background
    assert auto._training is not None
    auto.add(np.arange(2000, 3000), data[2000:])
    auto.remove([7])
    auto.add(np.array([8]), data[9:10])
    assert auto._since == []  # nothing is added to the index in training, so nothing is kept to replay
    assert auto.ivf is None and auto.search(data[3], 1)[0].tolist() == [3]  # exact meanwhile
    held_training.set()
    auto._training.join()
    auto.add(np.array([3000]), data[5:6])  # the trained index is taken up and filled: searches stay exact
    auto.remove([8])  # waits for the filler, which reads the rows the exact index moves now
    auto.add(np.array([8, 11]), np.vstack([data[9], data[12]]))  # 8 back; 11 replaced
    assert auto.ivf is None and not auto.uses_ann
    filling = auto._filling
    assert filling is not None
    auto.add(np.array([3001]), data[6:7])
    deadline = time.monotonic() + 30
    while len(filling.ivf) < len(auto):  # filled beside the adds, before the store settles
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert auto.ivf is None
    auto.settle()
    assert auto.uses_ann and auto.ivf is not None
    assert len(auto.ivf) == len(auto) == len(data) - 1 + 2
    assert auto._trained_at == 2000  # the lists of the training started at 2,000; not trained again
    exact = ExactIndex(DIM)
    exact.add(np.arange(len(data)), data)
    exact.remove([7])
    exact.add(np.array([8, 3000, 11, 3001]), np.vstack([data[9], data[5], data[12], data[6]]))
    for q in [*data[:40:3], data[12]]:  # every list scanned and re-ranked: the IVF index holds what exact holds
        assert set(auto.search(q, 10)[0].tolist()) == set(exact.search(q, 10)[0].tolist())
    assert 7 not in auto.ivf.search(data[7], 3000)[0].tolist()


def test_removing_ids_a_bulk_load_does_not_hold_leaves_its_filler_alone(
    data: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ivf_filling, "FINISH_WAIT", 30)
    release = threading.Event()
    add = IvfIndex.add

    def held_in_the_filler(self: IvfIndex, ids: np.ndarray, vectors: np.ndarray) -> None:
        if threading.current_thread().name == "plugkit-ivf-filling":
            assert release.wait(30)
        add(self, ids, vectors)

    monkeypatch.setattr(IvfIndex, "add", held_in_the_filler)
    auto = AutoIndex(DIM, min_chunks=1000, nprobe=10_000, background_training=True)
    auto.train_at_settle = True
    auto.add(np.arange(2000), data[:2000])
    assert auto._training is not None
    auto._training.join()
    auto.add(np.arange(2000, 2100), data[2000:2100])  # the filler starts, and its first step is held
    filling = auto._filling
    assert filling is not None
    started = time.monotonic()
    auto.remove([99_999])  # an id nobody holds: nothing to wait for
    assert time.monotonic() - started < 5 and not filling._stop
    release.set()
    auto.settle()
    assert auto.ivf is filling.ivf and len(auto.ivf) == len(auto) == 2100


def test_a_bulk_load_grown_tenfold_abandons_the_filling_of_its_first_training_for_the_next(data: np.ndarray) -> None:
    auto = AutoIndex(DIM, min_chunks=200, nprobe=10_000, background_training=True)
    auto.train_at_settle = True
    auto.add(np.arange(200), data[:200])
    assert auto._training is not None
    auto._training.join()
    auto.add(np.arange(200, 400), data[200:400])  # takes the first training up: it is filled from now on
    first = auto._filling
    assert first is not None
    auto.add(np.arange(400, 2000), data[400:2000])  # tenfold the first training: another one starts
    assert auto._filling is None and first._stop and auto._bulk_at == 2000
    auto.add(np.arange(2000, 3000), data[2000:])
    auto.settle()
    assert auto.ivf is not None and auto.ivf is not first.ivf
    assert auto._trained_at == 2000 and len(auto.ivf) == len(auto) == len(data)


def test_a_bulk_load_whose_filling_failed_or_fell_behind_is_filled_at_once_at_settle(
    data: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    add = IvfIndex.add

    def fails_in_the_filler(self: IvfIndex, ids: np.ndarray, vectors: np.ndarray) -> None:
        if threading.current_thread().name == "plugkit-ivf-filling":
            raise MemoryError("out of memory")
        add(self, ids, vectors)

    monkeypatch.setattr(IvfIndex, "add", fails_in_the_filler)
    auto = AutoIndex(DIM, min_chunks=1000, nprobe=10_000, background_training=True)
    auto.train_at_settle = True
    auto.add(np.arange(2000), data[:2000])
    assert auto._training is not None
    auto._training.join()
    auto.add(np.arange(2000, 3000), data[2000:])  # takes the training up: the filler starts, and fails
    filling = auto._filling
    assert filling is not None
    filling._thread.join(30)
    auto.remove([4])
    auto.settle()
    assert auto.ivf is filling.spare and auto._trained_at == 2000  # its training kept
    assert len(auto.ivf) == len(auto) == len(data) - 1
    assert 4 not in auto.ivf.search(data[4], 3000)[0].tolist()


def test_a_bulk_load_whose_background_training_failed_trains_at_settle(
    data: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    train = IvfIndex.train.__func__  # type: ignore[attr-defined]

    def fails_in_the_background(cls: type[IvfIndex], vectors: np.ndarray, **kwargs: object) -> IvfIndex:
        if threading.current_thread().name == "plugkit-ivf-training":
            raise RuntimeError("out of memory")
        return train(cls, vectors, **kwargs)  # type: ignore[no-any-return]

    monkeypatch.setattr(IvfIndex, "train", classmethod(fails_in_the_background))
    auto = AutoIndex(DIM, min_chunks=1000, nprobe=10_000, background_training=True)
    auto.train_at_settle = True
    auto.add(np.arange(2000), data[:2000])
    assert auto._training is not None
    auto._training.join()
    auto.add(np.arange(2000, 3000), data[2000:])  # takes up the failure: another background training, failing
    auto.settle()
    assert auto.uses_ann and auto.ivf is not None and len(auto.ivf) == len(data)
    assert auto._trained_at == len(data)  # trained at settle, in this thread, on every vector


async def test_a_store_that_trains_at_close_keeps_dense_search_exact_until_it_closes_then_opens_with_ivf(
    tmp_path: Path,
) -> None:
    vectors = clustered(1200, seed=5)
    records = [
        DocumentRecord(
            f"d{n}",
            [ChunkRecord.of(DocumentChunk(id=f"d{n}_0", text=f"chunk {n}", metadata=DocumentChunkMetadata()), v)],
        )
        for n, v in enumerate(vectors)
    ]
    info = StoreInfo(embedding_model="test", dimension=DIM)
    options: dict[str, Any] = {"ann_min_chunks": 1000, "ann_nprobe": 64, "ann_filtered_nprobe": 64}
    store = EmbeddedStore(tmp_path, ann_training="at_close", **options)
    await store.open(info)
    await store.replace_documents(records[:600])
    await store.replace_documents(records[600:])
    assert isinstance(store._index, AutoIndex)
    assert store._index.ivf is None  # the lists train beside the writes; the vectors go in at the close
    found = await store.search(SearchRequest(text="x", embedding=vectors[42].tolist(), top_k=1, mode="dense"))
    assert found[0].id == "d42_0"
    await store.close()
    assert (tmp_path / "vectors.ivf").is_file()
    reopened = EmbeddedStore(tmp_path, **options)
    await reopened.open(info)
    assert isinstance(reopened._index, AutoIndex) and reopened._index.uses_ann
    assert len(reopened._index.ivf or []) == len(vectors)
    await reopened.close()


async def test_a_store_bulk_load_that_replaces_documents_while_its_index_fills_holds_each_chunks_own_vector(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ivf_filling, "FINISH_WAIT", 30)  # the filler is not given up on a busy machine
    vectors = clustered(1400, seed=6)

    def record(n: int, vector: np.ndarray) -> DocumentRecord:
        chunk = DocumentChunk(id=f"d{n}_0", text=f"chunk {n}", metadata=DocumentChunkMetadata())
        return DocumentRecord(f"d{n}", [ChunkRecord.of(chunk, vector)])

    info = StoreInfo(embedding_model="test", dimension=DIM)
    options: dict[str, Any] = {"ann_min_chunks": 1000, "ann_nprobe": 64, "ann_filtered_nprobe": 64}
    store = EmbeddedStore(tmp_path, ann_training="at_close", **options)
    await store.open(info)
    await store.replace_documents([record(n, vectors[n]) for n in range(1100)])  # the training starts
    index = store._index
    assert isinstance(index, AutoIndex) and index._training is not None
    index._training.join()
    await store.replace_documents([record(n, vectors[n]) for n in range(1100, 1200)])  # the filler starts
    filling = index._filling
    assert filling is not None
    # d0-d49 now hold the vectors of 1200-1249: their old chunks are removed (the exact index moves rows) as it fills
    await store.replace_documents([record(n, vectors[1200 + n]) for n in range(50)])
    await store.replace_documents([record(n, vectors[n]) for n in range(1250, 1400)])
    await store.delete(ids=["d60"])
    await store.close()
    assert index.ivf is filling.ivf and len(index.ivf) == len(index) == 1400 - 50 - 1
    # Each id holds the code of its own vector: the same approximate scores as the trained index filled at once.
    at_once = filling.spare
    at_once.add(index.exact.ids(), index.exact.vectors())
    for query in [*vectors[::7], *vectors[1200:1250:5]]:
        assert np.array_equal(index.ivf.search(query, 20)[1], at_once.search(query, 20)[1])
    reopened = EmbeddedStore(tmp_path, **options)
    await reopened.open(info)
    assert isinstance(reopened._index, AutoIndex) and reopened._index.uses_ann
    assert len(reopened._index.ivf or []) == 1400 - 50 - 1
    await reopened.close()


def test_a_store_refuses_an_unknown_training_time(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ann_training must be background or at_close, not 'never'"):
        EmbeddedStore(tmp_path, ann_training="never")
