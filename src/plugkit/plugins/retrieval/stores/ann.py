"""An approximate nearest-neighbour index for large stores: faiss IVF with 4-bit PQ fast-scan codes, re-ranked exactly.

Vectors are assigned to the nearest of `nlist` k-means centroids (kmeans.py) and stored as compact product-quantization
codes (d/4 bytes each), which faiss scans with SIMD lookups; a query scans the `nprobe` lists nearest to it and takes
`k * k_factor` candidates, which `AutoIndex` re-scores with the exact float32 vectors it holds. Filtered search is
native: the allowed set (ids, or a boolean mask by id) becomes a bitmap that faiss checks while scanning
(IDSelectorBitmap); it scans more lists (`filtered_nprobe`), since the filtered neighbours lie further out. `AutoIndex`
keeps exact search for small stores, where it is as fast and exact, and switches to IVF past `min_chunks` (the
crossover bench/scale.py measures).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from plugkit.plugins.retrieval.device import resolve_device
from plugkit.plugins.retrieval.stores.ivf_filling import IvfFiller
from plugkit.plugins.retrieval.stores.kmeans import spherical_kmeans
from plugkit.plugins.retrieval.stores.threads import lower_this_thread
from plugkit.plugins.retrieval.stores.vector_index import ExactIndex, allowed_count, as_mask

log = logging.getLogger(__name__)

FILTERED_K_FACTOR = 40
MAX_TRAINING = 100_000  # vectors an IVF index is trained on at most (a sample of them past that)
MAX_CANDIDATES = 1000
TRAINING_NICE = 10  # the background training: about a tenth of a normal thread's share of a busy core
# k-means iterations of each product-quantizer part (faiss's default is 25): faiss trains the 96 parts one after the
# other, which took 0.48 s of the training here (bench/results/ivf_training_pq.json measures the recall both ways).
PQ_NITER = 10
# The persisted IVF index's format: 2 since the slots a removal vacates in the fast-scan lists are zeroed
# (IvfIndex.remove); an index saved before may hold mixed codes and is filled again from the vectors when loaded.
IVF_FORMAT = "2"


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - faiss-cpu is part of the retrieval extra
        raise RuntimeError("the ANN index needs faiss-cpu: pip install 'plugkit[retrieval]'") from exc
    return faiss


def default_nlist(count: int) -> int:
    """About 4 sqrt(n) lists (faiss's guideline), at least 16, each trained from at least 39 points."""
    return int(max(16, min(4 * np.sqrt(max(count, 1)), count // 39 or 16)))


class IvfIndex:
    """faiss IVF-PQ fast-scan (inner product) with integer ids: add new ids, remove, approximate search with an
    allowed-id filter. Scores are approximate: re-rank the candidates exactly (AutoIndex does)."""

    def __init__(self, index: Any, nprobe: int = 32, filtered_nprobe: int | None = None) -> None:
        self._index = index
        self.dimension: int = index.d
        self.nprobe = nprobe
        self.filtered_nprobe = filtered_nprobe or 2 * nprobe
        self.format = IVF_FORMAT  # what `load` read, for an index saved before

    @classmethod
    def train(
        cls,
        vectors: np.ndarray,
        *,
        nlist: int | None = None,
        nprobe: int = 32,
        filtered_nprobe: int | None = None,
        max_training: int = MAX_TRAINING,
        seed: int = 0,
        device: str = "auto",
    ) -> IvfIndex:
        """An empty index whose centroids are trained on (a sample of at most `max_training` of) `vectors`, their
        k-means on `device` (auto: CUDA when torch sees one)."""
        faiss = _faiss()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        nlist = nlist or default_nlist(len(vectors))
        if len(vectors) < nlist:
            raise ValueError(f"training {nlist} lists needs at least {nlist} vectors, got {len(vectors)}")
        sample = vectors
        if len(vectors) > max_training:
            sample = vectors[np.random.default_rng(seed).choice(len(vectors), max_training, replace=False)]
        sample = np.ascontiguousarray(sample)
        dimension = vectors.shape[1]
        codes = f"PQ{dimension // 4}x4fs" if dimension % 4 == 0 else "Flat"
        index = faiss.index_factory(dimension, f"IVF{nlist},{codes}", faiss.METRIC_INNER_PRODUCT)
        # The lists' centroids from torch (kmeans.py: on the GPU when there is one); faiss 25 iterations by default,
        # but centroids barely move after 10 on embeddings. A quantizer that holds its nlist centroids is not trained
        # again: faiss's train below fits only the codes (the product quantizer on the residuals).
        centroids = spherical_kmeans(sample, nlist, niter=10, seed=seed, device=resolve_device(device))
        faiss.downcast_index(index.quantizer).add(centroids)
        if codes != "Flat":
            faiss.downcast_index(index).pq.cp.niter = PQ_NITER
        index.train(sample)
        return cls(index, nprobe, filtered_nprobe)

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def copy(self) -> IvfIndex:
        """A copy of this index (its training and its vectors) that changes apart from it."""
        return IvfIndex(_faiss().clone_index(self._index), self.nprobe, self.filtered_nprobe)

    @property
    def nlist(self) -> int:
        return int(self._index.nlist)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors under ids the index does not hold (remove an id first to replace its vector)."""
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dimension)
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
        self._index.add_with_ids(vectors, ids)

    def remove(self, ids: Iterable[int], vectors: np.ndarray | None = None) -> None:
        """Forget `ids` (one pass over the lists per call, so remove in batches); unknown ids are ignored. Their
        `vectors`, when given, say which lists they are in (see `_zero_vacated`)."""
        faiss = _faiss()
        wanted = np.fromiter((int(i) for i in ids), dtype=np.int64)
        if not len(wanted):
            return
        lists = self._block_lists()
        if lists is None:
            self._index.remove_ids(faiss.IDSelectorBatch(len(wanted), faiss.swig_ptr(wanted)))
            return
        if vectors is None:
            touched: Iterable[int] = range(self.nlist)
        else:  # the lists their vectors went to (the nearest centroid's, as faiss's add assigned them)
            quantizer = faiss.extract_index_ivf(self._index).quantizer
            touched = np.unique(quantizer.assign(np.ascontiguousarray(vectors, dtype=np.float32), 1)).tolist()
        sizes = {n: lists.list_size(n) for n in touched}
        removed = self._index.remove_ids(faiss.IDSelectorBatch(len(wanted), faiss.swig_ptr(wanted)))
        if sum(before - lists.list_size(n) for n, before in sizes.items()) != removed:
            # An id was in a list its vector's assignment did not name (a tie decided otherwise when it was added):
            # every unused slot of every list's last block is zeroed instead.
            every = (lists.list_size(n) for n in range(self.nlist))
            sizes = {n: -(-size // lists.packer.nvec) * lists.packer.nvec for n, size in enumerate(every)}
        self._zero_vacated(lists, sizes)

    def _block_lists(self) -> Any:
        """The inverted lists when they are faiss's fast-scan blocks (BlockInvertedLists), else None."""
        faiss = _faiss()
        lists = faiss.downcast_InvertedLists(faiss.extract_index_ivf(self._index).invlists)
        return lists if isinstance(lists, faiss.BlockInvertedLists) else None

    @staticmethod
    def _zero_vacated(lists: Any, sizes: dict[int, int]) -> None:
        """Zero the slots a removal vacated in the last block of each list of `sizes` (its size before the removal).

        faiss's removal from fast-scan lists moves a list's last entries into the holes and leaves the slots they came
        from as they were, while its add packs a new entry's code into such a slot as if it held zeros
        (pq4_pack_codes_range), so the new vector's code came out mixed with the old one's: 11 of 50 vectors added
        after removing 50 others scored unlike the same index filled at once (faiss-cpu 1.15.1;
        tests/plugins/retrieval/stores/test_ann.py)."""
        faiss = _faiss()
        packer = lists.packer
        zeros = np.zeros(packer.code_size, dtype=np.uint8)
        for n, before in sizes.items():
            after = lists.list_size(n)
            # Slots past the last block in use went with the blocks freed; a block added later starts zeroed.
            for slot in range(after, min(before, -(-after // packer.nvec) * packer.nvec)):
                packer.pack_1_c(faiss.swig_ptr(zeros), slot, lists.get_codes(n))

    def refill(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Empty the index (its training kept) and add `vectors` under `ids`."""
        self._index.reset()
        self.add(ids, vectors)
        self.format = IVF_FORMAT

    def search(self, query: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        faiss = _faiss()
        query = np.ascontiguousarray(query, dtype=np.float32).reshape(1, self.dimension)
        if k <= 0 or len(self) == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        if allowed is None:
            params = faiss.SearchParametersIVF(nprobe=min(self.nprobe, self.nlist))
            bitmap = None
        else:
            bits = as_mask(allowed)
            if not bits.any():
                return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
            bitmap = np.packbits(bits, bitorder="little")  # faiss reads bit (id & 7) of byte (id >> 3)
            selector = faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))
            params = faiss.SearchParametersIVF(sel=selector, nprobe=min(self.filtered_nprobe, self.nlist))
        scores, ids = self._index.search(query, k, params=params)
        del bitmap  # kept alive until the search is done: faiss holds only a pointer
        found = ids[0] >= 0
        return ids[0][found].astype(np.int64), scores[0][found].astype(np.float32)

    def save(self, path: Path, marker: dict[str, str]) -> None:
        """The index to `path`, its marker to `path` + `.json`, both replaced atomically."""
        faiss = _faiss()
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        faiss.write_index(self._index, str(tmp))
        os.replace(tmp, path)
        meta = {**marker, "nprobe": str(self.nprobe), "filtered_nprobe": str(self.filtered_nprobe)}
        meta["format"] = self.format
        marker_tmp = path.with_name(f"{path.name}.json.{os.getpid()}.tmp")
        marker_tmp.write_text(json.dumps(meta))
        os.replace(marker_tmp, path.with_name(f"{path.name}.json"))

    @classmethod
    def load(cls, path: Path, dimension: int) -> tuple[IvfIndex, dict[str, str]]:
        """An index saved by `save`, and its marker. Raises ValueError when unreadable or mismatched."""
        faiss = _faiss()
        try:
            marker = json.loads(path.with_name(f"{path.name}.json").read_text())
            index = faiss.read_index(str(path))
        except (OSError, ValueError, RuntimeError) as exc:
            raise ValueError(f"unreadable ANN index {path}: {exc}") from exc
        if index.d != dimension:
            raise ValueError(f"ANN index {path} holds {index.d}-dimensional vectors, not {dimension}")
        ivf = cls(index, int(marker.pop("nprobe", 32)), int(marker.pop("filtered_nprobe", 64)))
        ivf.format = marker.pop("format", "1")
        return ivf, marker


class AutoIndex:
    """Exact search while the store is small; an IVF index (trained from the vectors) once it holds `min_chunks`.

    The exact index stays the record of the vectors in memory (the IVF index is retrained from it when the store
    grows tenfold past its training size); searching goes to IVF above the threshold.

    With `background_training`, a training that an add sets off runs in a thread of its own, on a copy of the vectors
    (seconds at 50,000 chunks, minutes at 500,000: a server's writes and searches must not wait for it); searches keep
    the exact index (or the IVF index trained before) meanwhile, and the new IVF index is taken up by the first call
    after it is ready, once the adds and removes made in between are applied to it. `settle()` waits for it.

    With `train_at_settle` (a bulk load) the IVF index the adds call for is searched only from `settle()` (and `save`):
    its lists and codes are trained beside the adds, in the background, on a sample of the vectors held when it falls
    due; once trained, the vectors held then and each add's go into it in a thread of its own (ivf_filling.py), and
    `settle()` adds what that thread has not reached, or trains the index then if no training was made. Not
    thread-safe: one caller at a time, as the store's lock gives.
    """

    def __init__(
        self,
        dimension: int,
        *,
        min_chunks: int = 50_000,
        nprobe: int = 32,
        filtered_nprobe: int = 64,
        k_factor: int = 40,
        background_training: bool = False,
        train_device: str = "auto",
    ) -> None:
        self.dimension, self.k_factor = dimension, k_factor
        self.train_device = train_device  # where the lists' k-means runs (kmeans.py; auto: CUDA when torch sees one)
        self.exact = ExactIndex(dimension)
        self.ivf: IvfIndex | None = None
        self.min_chunks, self.nprobe, self.filtered_nprobe = min_chunks, nprobe, filtered_nprobe
        self._trained_at = 0
        self.background_training = background_training
        self.train_at_settle = False
        self._training: threading.Thread | None = None
        # Set by the training thread: the index, its size, and the ids it holds (sorted; None: it holds none).
        self._trained: tuple[IvfIndex, int, np.ndarray | None] | None = None
        # A bulk load's: the trained index being filled, for settle to take up; the size of the newest training started.
        self._filling: IvfFiller | None = None
        self._bulk_at = 0
        self._since: list[tuple[np.ndarray, np.ndarray | None]] = []  # changes since the copy: (ids, vectors | None)

    def __len__(self) -> int:
        return len(self.exact)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self._take_up()
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if self.ivf is not None or self._filling is not None:
            replaced = [int(i) for i in ids if self.exact.has(int(i))]
            if replaced:
                self._remove_from_ann(replaced)
        self.exact.add(ids, vectors)
        if self.ivf is not None:
            self.ivf.add(ids, vectors)
        if self._filling is not None:
            self._filling.add(*self.exact.last(len(ids)))
        if self._training is not None and not self.train_at_settle:
            self._since.append((ids.copy(), np.array(vectors, dtype=np.float32).reshape(len(ids), self.dimension)))
        self._maybe_train()

    def remove(self, ids: Iterable[int]) -> None:
        self._take_up()
        ids = list(ids)
        self._remove_from_ann(ids)
        self.exact.remove(ids)
        if self._training is not None and not self.train_at_settle:
            self._since.append((np.asarray(ids, dtype=np.int64), None))

    def _remove_from_ann(self, ids: list[int]) -> None:
        """Before the exact index moves its rows: the filler's removal waits for what it reads from them. The IVF
        indexes are given the vectors of the ids, which say the lists they are in."""
        if self._filling is None and self.ivf is None:
            return
        held = [i for i in ids if self.exact.has(i)]  # the others are in no index
        if not held:  # nothing to wait for the filler for
            return
        vectors = self.exact.vectors_of(held)
        if self._filling is not None:
            self._filling.remove(held, vectors)
        if self.ivf is not None:
            self.ivf.remove(held, vectors)

    def _maybe_train(self, settling: bool = False) -> None:
        """Train the IVF index the size calls for (at min_chunks, again at ten times the size of the last training):
        at once in this thread, or in the background (`background_training`); a bulk load's is searched from settle."""
        size = len(self.exact)
        if self._training is not None:
            return
        basis = max(self._trained_at if self.ivf is not None else 0, self._bulk_at)  # the last training's size
        if size < self.min_chunks or (basis and size < 10 * basis):
            return
        if not self.background_training or settling:
            ids, vectors = self.exact.ids(), self.exact.vectors()
            ivf = IvfIndex.train(
                vectors, nprobe=self.nprobe, filtered_nprobe=self.filtered_nprobe, device=self.train_device
            )
            ivf.add(ids, vectors)
            self.ivf, self._trained_at, self._bulk_at = ivf, size, 0
            return
        copied: np.ndarray | None  # the ids the trained index is to hold (None: none, a filler fills it)
        if self.train_at_settle:  # trained on a sample (what IvfIndex.train takes), filled once trained
            self._bulk_at = size
            if self._filling is not None:  # trained for a tenth of the size: its filling is no longer wanted
                self._filling.abandon()
                self._filling = None
            vectors = self.exact.vectors()
            if size > MAX_TRAINING:
                vectors = vectors[np.sort(np.random.default_rng(size).choice(size, MAX_TRAINING, replace=False))]
            copied, vectors = None, np.array(vectors)
        else:  # copies: the exact index moves its rows as it changes
            copied, vectors = np.array(self.exact.ids()), np.array(self.exact.vectors())
        nprobe, filtered_nprobe, device = self.nprobe, self.filtered_nprobe, self.train_device

        def train() -> None:
            # Below everything else, with the threads it starts (a CPU k-means, faiss's codes and adds): on a GPU
            # ingest faiss's own k-means took about 55 s of CPU on all cores from the chunking processes (98,816
            # chunks on an H200, bench/gpu.py's CPU a thread); searches stay exact meanwhile.
            lower_this_thread(TRAINING_NICE)
            try:
                ivf = IvfIndex.train(vectors, nprobe=nprobe, filtered_nprobe=filtered_nprobe, device=device)
                if copied is not None:
                    ivf.add(copied, vectors)
                self._trained = ivf, size, None if copied is None else np.sort(copied)
            except Exception:  # the exact index (or the IVF index before) keeps answering
                log.exception("training the IVF index failed; searches stay on the index they use")

        self._since = []
        self._training = threading.Thread(target=train, name="plugkit-ivf-training", daemon=True)
        self._training.start()

    def settle(self) -> None:
        """Wait for a training in progress and take up its index; in a bulk load (`train_at_settle`), finish filling
        the index trained in the background and search it from now on, or train it now if it is due."""
        if self._training is not None:
            self._training.join()
        self._take_up()
        if not self.train_at_settle:
            return
        if self._filling is not None:
            filling, self._filling = self._filling, None
            ivf = filling.finish()
            if ivf is None:  # a step failed, or the filler was starved: filled at once, as without it
                ivf = filling.spare
                ivf.add(self.exact.ids(), self.exact.vectors())
            self.ivf, self._trained_at, self._bulk_at = ivf, filling.size, 0
        self._maybe_train(settling=True)  # no training yet, or it failed, or the store grew tenfold since

    def _take_up(self) -> None:
        """The index trained in the background, once ready, with the changes made since its copy applied."""
        if self._training is None or self._training.is_alive():
            return
        self._training = None
        trained, self._trained = self._trained, None
        since, self._since = self._since, []
        if trained is None:  # it failed (a bulk load's filling before it was abandoned when it started)
            self._bulk_at = 0
            return
        ivf, size, copied = trained
        if copied is None:  # a bulk load's: filled from now on, searched from settle
            self._filling = IvfFiller(ivf, size, self.exact.ids(), self.exact.vectors())
            self._maybe_train()
            return
        if since:
            # The last change of each id wins: the ids the copy held go (one pass over the lists), and those whose last
            # change is an add come back with that vector (one add).
            ids = np.concatenate([changed for changed, _ in since])
            added = np.concatenate([np.full(len(changed), vectors is not None) for changed, vectors in since])
            rows = np.concatenate(
                [np.zeros((len(changed), self.dimension), np.float32) if v is None else v for changed, v in since]
            )
            distinct, first_from_the_end = np.unique(ids[::-1], return_index=True)
            last = len(ids) - 1 - first_from_the_end
            ivf.remove(distinct[np.isin(distinct, copied, assume_unique=True)].tolist())
            last = last[added[last]]
            ivf.add(ids[last], rows[last])
        self.ivf, self._trained_at = ivf, size
        self._maybe_train()  # the store may have grown tenfold again meanwhile

    @property
    def uses_ann(self) -> bool:
        return self.ivf is not None and len(self.exact) >= self.min_chunks

    def search(self, query: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        self._take_up()
        if self.uses_ann and (allowed is None or allowed_count(allowed) >= self.min_chunks):
            assert self.ivf is not None
            # A filter thins the lists, so fewer candidates per result suffice (and more lists are scanned instead).
            k_factor = self.k_factor if allowed is None else min(self.k_factor, FILTERED_K_FACTOR)
            # Deep searches (hybrid fusion asks for 100) are capped: the re-ranking reads every candidate's vector.
            candidates, _ = self.ivf.search(query, min(k * k_factor, max(MAX_CANDIDATES, 2 * k)), allowed)
            return self.exact.rescore(candidates, query, k)
        return self.exact.search(query, k, allowed)  # small stores and small filtered subsets: exact is fast

    def ann_path(self, path: Path) -> Path:
        return path.with_name(f"{path.stem}.ivf")

    def save(self, path: Path, marker: dict[str, str]) -> None:
        # The exact snapshot is written (numpy's write and the fsync let the GIL go) while the IVF index settles:
        # the IVF index saved is the one the vectors call for, trained now if it is due (train_at_settle).
        with ThreadPoolExecutor(1, thread_name_prefix="plugkit-vectors-save") as saving:
            written = saving.submit(self.exact.save, path, marker)
            self.settle()
            written.result()
        if self.ivf is not None:
            self.ivf.save(self.ann_path(path), marker)

    @classmethod
    def load(
        cls,
        path: Path,
        dimension: int,
        *,
        min_chunks: int = 50_000,
        nprobe: int = 32,
        filtered_nprobe: int = 64,
        k_factor: int = 40,
        train_device: str = "auto",
    ) -> tuple[AutoIndex, dict[str, str]]:
        """The exact snapshot at `path` and, when its marker matches, the persisted IVF index beside it."""
        exact, marker = ExactIndex.load(path, dimension)
        index = cls(
            dimension,
            min_chunks=min_chunks,
            nprobe=nprobe,
            filtered_nprobe=filtered_nprobe,
            k_factor=k_factor,
            train_device=train_device,
        )
        index.exact = exact
        ann = index.ann_path(path)
        if ann.exists():
            try:
                ivf, ivf_marker = IvfIndex.load(ann, dimension)
                if ivf_marker == marker and len(ivf) == len(exact):
                    ivf.nprobe, ivf.filtered_nprobe = nprobe, filtered_nprobe
                    if ivf.format != IVF_FORMAT:  # saved before: a removal may have left codes mixed (remove)
                        log.info("filling the IVF index %s again from the vectors (an older format)", ann)
                        ivf.refill(exact.ids(), exact.vectors())
                    index.ivf, index._trained_at = ivf, len(exact)
            except ValueError:
                pass
        index._maybe_train()
        return index, marker
