"""A bulk load's IVF index filled as the vectors come, on cores the writes leave idle, so the close adds only the last.

In a bulk load (`AutoIndex.train_at_settle`) the IVF index is trained in the background and searched only once the
store settles. Adding every vector at the close took 0.6-0.7 s of a GPU ingest's 2.8 s close on an H200 (98,816
chunks, bench/results/gpu_timeline.json). `IvfFiller` adds them from the time the trained index is ready: first the
vectors the store held then, then each write's, in order and in small steps, at the lowest CPU priority (nice 19: it
takes what the writes leave idle; at nice 10 it took cores from the writes of two busy ones, bench/results/
ingest_host.json) and with a small OpenMP team (faiss's threads held to 4 on that H200 spent a fifth of the CPU a
chunk of an unbounded team, whose threads wait for each other on a busy machine). `finish()` applies in the caller's
thread, with every core, what the filler has not reached; when the filler's step in progress does not end within
FINISH_WAIT (starved on a machine busy with other work) or a step failed, the caller fills `spare`, a copy of the
trained index made empty, as it would have without a filler.

The filler reads the vectors where the exact index keeps them (views: nothing is copied). The exact index only appends
rows, or moves them on a removal (ExactIndex: a removal swaps in the last row); growing allocates new arrays and leaves
the old ones as they were (a queued view keeps such an array alive until it is applied). So a removal waits until the
filler has applied everything queued before it (`remove`), and only then may the caller change the exact index's rows;
a filler that does not get there within FINISH_WAIT is given up (the close fills `spare`) rather than hold the writes.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from typing import TYPE_CHECKING

import numpy as np

from plugkit.plugins.retrieval.stores.threads import lower_this_thread

if TYPE_CHECKING:
    from plugkit.plugins.retrieval.stores.ann import IvfIndex

log = logging.getLogger(__name__)

SLICE = 4096  # vectors a step of the filler adds at most (about 30 ms of a core): finish() takes over at a step's end
FILL_THREADS = 4  # faiss's OpenMP threads for the filler (its default is one a core)
FILL_NICE = 19  # the lowest priority: the filler runs on what the other threads leave idle
FINISH_WAIT = 0.5  # seconds finish() and remove() wait for the filler before it is given up (`spare` filled instead)


class IvfFiller:
    """Applies adds and removes to `ivf`, in the order given, in a thread of its own at the lowest priority. Not
    thread-safe: one caller at a time, the one that owns the exact index the vectors are read from."""

    def __init__(self, ivf: IvfIndex, size: int, ids: np.ndarray, vectors: np.ndarray) -> None:
        """`ivf` trained and empty, `size` the store's size it was trained for; `ids` and `vectors` what the store
        holds now (views are fine: see the module's docstring)."""
        self.ivf, self.size = ivf, size
        self.spare = ivf.copy()  # trained, empty: what the caller fills when finish() gives None
        self._jobs: deque[tuple[np.ndarray, np.ndarray, bool]] = deque()  # (ids, their vectors, removed)
        self._changed = threading.Condition()
        self._busy = False  # the thread is applying a job it took from the queue
        self._stop = False
        self._failed = False
        self.add(ids, vectors)
        self._thread = threading.Thread(target=self._run, name="plugkit-ivf-filling", daemon=True)
        self._thread.start()

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Queue `vectors` under `ids` (ids the index does not hold: `remove` replaced ones first)."""
        with self._changed:
            if self._stop:
                return
            for start in range(0, len(ids), SLICE):
                self._jobs.append((ids[start : start + SLICE], vectors[start : start + SLICE], False))
            self._changed.notify()

    def remove(self, ids: list[int], vectors: np.ndarray, wait: float | None = None) -> None:
        """Queue the removal of `ids` (with a copy of their `vectors`, which say their lists: IvfIndex.remove) once
        everything queued before is applied, or give the filler up if that takes over `wait` seconds (FINISH_WAIT):
        either way the caller may then move the exact index's rows."""

        def caught_up() -> bool:
            return self._stop or not (self._jobs or self._busy)

        with self._changed:
            if not self._changed.wait_for(caught_up, timeout=FINISH_WAIT if wait is None else wait):
                log.info("the IVF index's filler fell behind the writes; the close fills it at once")
                self._failed = self._stop = True  # its step in progress may read moved rows: its index goes unused
                self._jobs.clear()
                self._changed.notify_all()
                return
            if not self._stop:
                self._jobs.append((np.asarray(ids, dtype=np.int64), vectors, True))
                self._changed.notify()

    def abandon(self) -> None:
        """Stop after the step in progress; the index is not to be used."""
        with self._changed:
            self._stop = True
            self._jobs.clear()
            self._changed.notify_all()

    def finish(self, wait: float | None = None) -> IvfIndex | None:
        """The index with every queued change applied (what the thread did not reach, here), or None when it was
        given up, a step failed or the thread's step in progress did not end within `wait` seconds (FINISH_WAIT):
        then fill `spare` instead."""
        with self._changed:
            self._stop = True
            self._changed.notify_all()
        self._thread.join(FINISH_WAIT if wait is None else wait)
        if self._thread.is_alive() or self._failed:  # it ends its step on an index nobody will use
            return None
        try:
            while self._jobs:
                self._apply(*self._jobs.popleft())
        except Exception:
            log.exception("filling the IVF index failed")
            return None
        return self.ivf

    def _apply(self, ids: np.ndarray, vectors: np.ndarray, removed: bool) -> None:
        if removed:
            self.ivf.remove(ids.tolist(), vectors)
        else:
            self.ivf.add(ids, vectors)

    def _run(self) -> None:
        lower_this_thread(FILL_NICE)
        import faiss

        faiss.omp_set_num_threads(min(FILL_THREADS, os.cpu_count() or 1))  # this thread's team only
        while True:
            with self._changed:
                self._busy = False
                self._changed.notify_all()
                while not self._jobs and not self._stop:
                    self._changed.wait()
                if self._stop:
                    return
                job = self._jobs.popleft()
                self._busy = True
            try:
                self._apply(*job)
            except Exception:
                log.exception("filling the IVF index in the background failed; the close fills it at once")
                with self._changed:
                    self._failed, self._stop, self._busy = True, True, False
                    self._changed.notify_all()
                return
