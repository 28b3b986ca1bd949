from __future__ import annotations

import os
import threading
import time
from typing import Any

import faiss
import numpy as np
import pytest

from plugkit.plugins.retrieval.stores import ivf_filling
from plugkit.plugins.retrieval.stores.ivf_filling import FILL_THREADS, IvfFiller
from plugkit.plugins.retrieval.stores.vector_index import ExactIndex

from .test_ann import DIM, clustered


class Recorded:
    """An IVF index stand-in that records each change, the thread that made it and what that thread could use; a
    change can be held until `release` is set."""

    def __init__(self) -> None:
        self.ids: set[int] = set()
        self.calls: list[tuple[str, list[int], str, int, int]] = []
        self.release = threading.Event()
        self.release.set()
        self.started = threading.Event()

    def copy(self) -> Recorded:
        return Recorded()

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self._record("add", ids.tolist())
        assert vectors.shape == (len(ids), DIM)
        self.ids |= set(ids.tolist())

    def remove(self, ids: list[int], vectors: np.ndarray) -> None:
        self._record("remove", list(ids))
        assert vectors.shape == (len(ids), DIM)
        self.ids -= set(ids)

    def _record(self, what: str, ids: list[int]) -> None:
        self.started.set()
        assert self.release.wait(30)
        me = threading.get_native_id()
        priority = os.getpriority(os.PRIO_PROCESS, me) if hasattr(os, "getpriority") else 0
        self.calls.append((what, ids, threading.current_thread().name, priority, faiss.omp_get_max_threads()))


def filler_over(exact: ExactIndex, index: Recorded) -> IvfFiller:
    return IvfFiller(index, len(exact), exact.ids(), exact.vectors())  # type: ignore[arg-type]


def held_filler(count: int) -> tuple[ExactIndex, Recorded, IvfFiller]:
    """A filler over `count` vectors whose first step has begun and waits until `index.release` is set."""
    exact, index = ExactIndex(DIM), Recorded()
    exact.add(np.arange(count), clustered(count))
    index.release.clear()
    filler = filler_over(exact, index)
    assert index.started.wait(30)
    return exact, index, filler


def settled(filler: IvfFiller, index: Recorded, count: int) -> None:
    deadline = time.monotonic() + 30
    while sum(len(ids) for what, ids, *_ in index.calls if what == "add") < count:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert filler.ivf is index


def test_the_filler_adds_the_vectors_held_and_each_later_add_in_slices_in_a_thread_of_the_lowest_priority(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ivf_filling, "SLICE", 400)
    data = clustered(1500)
    exact, index = ExactIndex(DIM), Recorded()
    exact.add(np.arange(1000), data[:1000])
    filler = filler_over(exact, index)
    exact.add(np.arange(1000, 1500), data[1000:])
    filler.add(*exact.last(500))
    settled(filler, index, 1500)
    assert [len(ids) for _, ids, *_ in index.calls] == [400, 400, 200, 400, 100]  # in order, in slices
    assert {name for _, _, name, _, _ in index.calls} == {"plugkit-ivf-filling"}
    if hasattr(os, "getpriority"):
        this_thread = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        assert this_thread < 19 and {priority for *_, priority, _ in index.calls} == {19}
    assert {threads for *_, threads in index.calls} == {min(FILL_THREADS, os.cpu_count() or 1)}
    assert faiss.omp_get_max_threads() == (os.cpu_count() or 1)  # the caller's team is left as it was
    assert filler.finish(wait=30) is index and index.ids == set(range(1500))


def test_finishing_applies_in_the_callers_thread_what_the_filler_has_not_reached(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ivf_filling, "SLICE", 100)
    _, index, filler = held_filler(1000)
    threading.Timer(0.2, index.release.set).start()
    assert filler.finish(wait=30) is index
    names = [name for _, _, name, _, _ in index.calls]
    assert names == ["plugkit-ivf-filling"] + [threading.current_thread().name] * 9  # the step in progress ends
    assert index.ids == set(range(1000))


def test_a_removal_waits_until_what_was_queued_before_it_is_applied() -> None:
    exact, index, filler = held_filler(300)
    removed = threading.Event()

    def remove() -> None:
        filler.remove([5], exact.vectors_of([5]), wait=30)
        removed.set()

    threading.Thread(target=remove, daemon=True).start()
    assert not removed.wait(0.3)  # the add it reads the exact index's rows for is still in progress
    index.release.set()
    assert removed.wait(30)
    exact.remove([5])  # the caller may move the rows now
    assert filler.finish(wait=30) is index
    assert [what for what, *_ in index.calls] == ["add", "remove"] and index.ids == set(range(300)) - {5}


def test_a_failed_step_makes_the_finished_index_none_and_stops_the_filler(caplog: pytest.LogCaptureFixture) -> None:
    data = clustered(200)
    exact = ExactIndex(DIM)
    exact.add(np.arange(200), data)

    class Failing(Recorded):
        def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
            raise MemoryError("out of memory")

    filler = filler_over(exact, Failing())
    filler._thread.join(30)
    assert not filler._thread.is_alive()
    filler.remove([1], exact.vectors_of([1]))  # does not wait for a filler that stopped
    assert filler.finish(wait=30) is None
    assert "filling the IVF index in the background failed" in caplog.text


def test_a_removal_gives_up_a_filler_that_does_not_catch_up_within_its_wait() -> None:
    exact, index, filler = held_filler(300)  # a filler starved by other work
    started = time.monotonic()
    filler.remove([5], exact.vectors_of([5]), wait=0.2)  # returns: the writes do not wait for it
    assert 0.2 <= time.monotonic() - started < 5
    exact.remove([5])
    exact.add(np.array([300]), clustered(1))
    filler.add(*exact.last(1))  # nothing more is queued
    index.release.set()
    assert filler.finish(wait=30) is None  # given up: the caller fills the spare
    assert [what for what, *_ in index.calls] == ["add"] and not filler._jobs


def test_finishing_gives_up_on_a_step_that_outlasts_its_wait_and_leaves_the_spare_empty() -> None:
    _, index, filler = held_filler(200)  # a filler starved by other work
    started = time.monotonic()
    assert filler.finish(wait=0.2) is None
    assert 0.2 <= time.monotonic() - started < 5
    assert isinstance(filler.spare, Recorded) and filler.spare is not index and not filler.spare.calls
    index.release.set()
    filler._thread.join(30)
    assert not filler._thread.is_alive()


def test_an_abandoned_filler_stops_after_its_step_in_progress() -> None:
    exact, index, filler = held_filler(200)
    filler.add(*exact.last(10))
    filler.abandon()
    index.release.set()
    filler._thread.join(30)
    assert not filler._thread.is_alive() and len(index.calls) == 1


def test_the_filled_index_answers_as_an_ivf_index_filled_at_once() -> None:
    from plugkit.plugins.retrieval.stores.ann import IvfIndex

    data = clustered(3000, seed=3)
    exact = ExactIndex(DIM)
    exact.add(np.arange(2000), data[:2000])
    trained: Any = IvfIndex.train(data[:2000], nprobe=10_000, device="cpu")
    filler = IvfFiller(trained, 2000, exact.ids(), exact.vectors())
    exact.add(np.arange(2000, 3000), data[2000:])
    filler.add(*exact.last(1000))
    ivf = filler.finish(wait=30)
    assert ivf is trained and len(ivf) == 3000
    at_once = IvfIndex.train(data[:2000], nprobe=10_000, device="cpu")  # the same training (seeded)
    at_once.add(np.arange(3000), data)
    for q in data[::97]:
        found = ivf.search(q, 10)[0]
        assert found.tolist() == at_once.search(q, 10)[0].tolist() and len(found) == 10
