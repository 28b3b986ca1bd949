"""The embedded default store: one data directory, no service to run.

SQLite is the system of record: documents' chunks with their metadata and embeddings. A `replace_documents` call is
written in one transaction (whole documents, at most WRITE_BATCH_CHUNKS chunks a transaction; a larger call takes
several), with a statement per kind of row (per ROWS_PER_INSERT chunk rows), so a reader sees each document all old
or all new. The vector index and the keyword index (tantivy BM25, stores/keyword_index.py, on disk in `keywords/`)
are derived data. The writer hands the vectors it wrote to the vector index directly when the change log shows no
other writer came in between; the keyword index is caught up after each write by a background thread, which has this
process's keyword process do it (stores/keyword_process.py: tantivy's indexing costs about as much as the write, and
in a thread beside busy Python it waits for the GIL at every document), and before every search; the same thread
checkpoints the WAL (the writer's own automatic checkpoints are off: they took about half of a large commit). The
vector index is kept in memory, snapshotted to `vectors.npz` on close, and caught up from SQLite's change log
(`changes`) before every search, so it is rebuilt when missing, caught up when behind (after a crash, or writes by
another worker process), and a crash never loses an acknowledged write nor shows half a document. Past
`ann_min_chunks` chunks, dense search goes through an IVF index (stores/ann.py) persisted beside the snapshot as
`vectors.ivf`, so a large store starts without retraining it. The filterable fields of the indexed chunks are
derived the same way into in-memory columns (stores/filter_columns.py). Keyword search runs on a tantivy BM25 index
(stores/keyword_index.py), derived from SQLite the same way. Both searches filter through one rowid mask; hybrid
search fuses a fixed pool of candidates per side (stores/fusion.py), then cuts to top_k.

Filters: `filter_sql(tree, tenant)` translates a filter tree (plugkit.plugins.retrieval.filters) into a WHERE clause
over `chunks c` with bound parameters (custom keys read from the `metadata` JSON with json_each/json_extract, their
instants from `custom_ts`); `EmbeddedStore.allowed(conn, tree, tenant)` is the one `filter -> rowid mask` function
searches call: the filter columns' mask when the tree compares standard fields only, else the rowids `filter_sql`
selects, as a mask; both cached until the next change.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from plugkit.cache import DatabaseCache
from plugkit.plugins.retrieval.filters import (
    DATE_FIELD,
    And,
    Equals,
    Node,
    Not,
    Or,
    Range,
    is_standard,
    parse_instant,
    to_tree,
)
from plugkit.plugins.retrieval.models import (
    DocumentChunk,
    DocumentChunkMetadata,
    DocumentChunkWithScore,
    DocumentMetadata,
)
from plugkit.plugins.retrieval.stores.ann import AutoIndex
from plugkit.plugins.retrieval.stores.base import (
    SHARED_TENANT,
    DocumentEntry,
    DocumentPage,
    DocumentRecord,
    FilterArg,
    SearchRequest,
    StoreInfo,
    StoreMismatchError,
)
from plugkit.plugins.retrieval.stores.common import StoreSettings, custom_instants
from plugkit.plugins.retrieval.stores.filter_columns import FilterColumns
from plugkit.plugins.retrieval.stores.fusion import DEFAULT_WEIGHTS, convex, rrf, scaled
from plugkit.plugins.retrieval.stores.keyword_index import KeywordIndex
from plugkit.plugins.retrieval.stores.keyword_process import catch_up_elsewhere
from plugkit.plugins.retrieval.stores.threads import lower_this_thread
from plugkit.plugins.retrieval.stores.vector_index import ExactIndex

T = TypeVar("T")
log = logging.getLogger("plugkit.retrieval")
ADD, DEL = 1, 0

FIELD_COLUMNS = "rowid, tenant, document_id, source, source_id, author, url, created_ts"  # FilterColumns' rows
INDEXED = f"{FIELD_COLUMNS}, embedding"  # what the index and the filter columns are filled from

# PRAGMA user_version; a change to SCHEMA raises it and migrates older stores in `open`. 0: release 0.1.0 (no version
# recorded), 1: the same layout; 2: custom metadata and listing columns, the keyword index moved from FTS5 to tantivy.
SCHEMA_VERSION = 2
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (
    rowid INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL,
    document_id TEXT NOT NULL,
    n INTEGER NOT NULL,
    chunk_id TEXT NOT NULL,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL,
    source TEXT, source_id TEXT, author TEXT, url TEXT, created_ts REAL,
    embedding BLOB NOT NULL,
    UNIQUE (tenant, document_id, n)
);
CREATE INDEX IF NOT EXISTS chunks_source ON chunks (tenant, source);
CREATE INDEX IF NOT EXISTS chunks_document ON chunks (tenant, document_id);
CREATE INDEX IF NOT EXISTS chunks_created ON chunks (tenant, created_ts);
DROP TABLE IF EXISTS chunks_fts;
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, chunk_rowid INTEGER NOT NULL, op INTEGER NOT NULL
);
"""
INSERT_CHUNKS = (
    "INSERT INTO chunks (tenant, document_id, n, chunk_id, text, metadata, source, source_id, author, url, created_ts,"
    " custom_ts, chunk_count, stored_ts, updated_ts, embedding) VALUES "
)
CHUNK_VALUES = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
# Rows one INSERT statement carries (16 values a row, under SQLite's default limit of 32,766 variables). sqlite3
# lets the GIL go for each step of a statement: executemany's step a row, in a thread beside busy Python, waited a
# switch interval for the GIL at every row (bench/results/store_gil.json: 130 rows/s so, 23,594 by these statements).
ROWS_PER_INSERT = 1000
STORED = 13  # the position of stored_ts in a row of CHUNK_VALUES
# The most chunks one write transaction holds (whole documents; a larger document is its own transaction): a call
# larger than this is written in several transactions, so that other workers' writers never wait long.
WRITE_BATCH_CHUNKS = 8192
KEYWORD_THREAD_NICE = 5  # the background keyword catch-up yields the cores to the writes on a busy host
ANSWERS_KEPT = 1024  # listing pages and documents kept until the store changes
CACHED_CHUNKS = 64  # a document of more chunks is read each time, not kept
SNAPSHOT_TRIES = 5  # catch-ups a search tries for indexes that match its read snapshot, under other workers' writes

# Added after the first release: an older database gets them at open (listing and custom-date columns).
ADDED_COLUMNS = {"custom_ts": "TEXT", "chunk_count": "INTEGER", "stored_ts": "REAL", "updated_ts": "REAL"}


class EmbeddedStore:
    """VectorStore on SQLite with an in-memory vector index (exact, or IVF when large) and a tantivy keyword index.
    See the module docstring."""

    name = "embedded"
    takes_arrays = True  # ChunkRecord embeddings may be rows of a float32 array (no list of floats made for it)

    def __init__(
        self,
        directory: Path,
        *,
        dense_weight: float | None = None,
        keyword_weight: float | None = None,
        rrf_k: int = 60,
        fusion: str = "scaled",
        candidate_pool: int = 100,
        ann_min_chunks: int | None = None,
        ann_nprobe: int = 32,
        ann_filtered_nprobe: int = 64,
        ann_k_factor: int = 40,
        ann_device: str = "auto",
        ann_training: str = "background",
    ) -> None:
        """`ann_min_chunks`: from this many chunks on, dense search goes through an IVF index (persisted beside
        the exact snapshot); None keeps exact search at every size. `fusion`: "scaled" (the default: cosine and
        BM25 over the query's best, weighted, fusion.scaled), "rrf" (weighted reciprocal rank fusion) or "convex"
        (min-max normalised scores, weighted); each side contributes `candidate_pool` candidates (or top_k, when
        larger). `dense_weight`, `keyword_weight`: None takes the fusion's own (fusion.DEFAULT_WEIGHTS). `ann_device`:
        where the IVF index's k-means runs (auto: CUDA when torch sees one, else the CPU). `ann_training`: how the IVF
        index follows the writes made after opening: "background" (trained in a thread beside them as they reach its
        size, then kept up to date), or "at_close" (a bulk load: its lists trained beside them, then filled on the
        cores they leave idle; the close adds what is left, and dense search stays exact until then)."""
        if ann_training not in ("background", "at_close"):
            raise ValueError(f"ann_training must be background or at_close, not {ann_training!r}")
        if fusion not in DEFAULT_WEIGHTS:
            raise ValueError(f"fusion must be one of {', '.join(DEFAULT_WEIGHTS)}, not {fusion!r}")
        self.directory = Path(directory)
        self.db_path = self.directory / "retrieval.db"
        self.index_path = self.directory / "vectors.npz"
        self.dense_weight, self.keyword_weight, self.rrf_k = dense_weight, keyword_weight, rrf_k
        self.fusion, self.candidate_pool = fusion, candidate_pool
        self._keywords = KeywordIndex(self.directory / "keywords")
        # The keyword index is used under this lock only: a search holds it from its catch-up to its last keyword
        # lookup (so the background catch-up never moves the index under it), the background catch-up takes it too.
        self._keyword_lock = threading.RLock()
        self._keyword_wake = threading.Event()
        self._keyword_thread: threading.Thread | None = None
        self._closing = False
        self._conn: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None  # the event loop's own, for bounded reads
        # Listing pages and documents read on the event loop, kept until the file changes (a new one per opening:
        # a new read connection's data_version starts afresh).
        self._answers = DatabaseCache(self, ANSWERS_KEPT)
        self._lock = threading.Lock()
        self.ann = (ann_min_chunks, ann_nprobe, ann_filtered_nprobe, ann_k_factor)
        self.ann_device, self.ann_training = ann_device, ann_training
        self._index: ExactIndex | AutoIndex | None = None
        self._columns = FilterColumns()  # the filterable fields of the chunks in the index
        self._applied = 0  # the last change-log seq the index reflects
        self._instance = ""
        self._info: StoreInfo | None = None

    # -- plumbing ---------------------------------------------------------------------------------------------

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def locked() -> T:
            with self._lock:
                if self._conn is None:
                    raise RuntimeError("the store is not open")
                return fn(self._conn)

        return await asyncio.to_thread(locked)

    def _read_now(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a bounded read (an index lookup, a page) on the event loop, on a read-only connection of its own: a
        thread hop costs more than such a read, and WAL lets it read beside a write in progress on the other."""
        if self._conn is None:
            raise RuntimeError("the store is not open")
        if self._reader is None:
            uri = f"{self.db_path.resolve().as_uri()}?mode=ro"
            self._reader = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=30)
            self._reader.execute("PRAGMA busy_timeout=30000")
        return fn(self._reader)

    @property
    def conn(self) -> sqlite3.Connection:
        assert self._conn is not None
        return self._conn

    async def open(self, info: StoreInfo) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.db_path, check_same_thread=False, isolation_level=None, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # an acknowledged write survives a power cut too
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA cache_size=-65536")  # 64 MiB of page cache
        conn.execute("PRAGMA mmap_size=268435456")
        # The background thread checkpoints the WAL after each write instead (about half of a large commit's time).
        conn.execute("PRAGMA wal_autocheckpoint=0")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            conn.close()
            raise StoreMismatchError(
                f"the store in {self.directory} has schema version {version}, newer than this plugkit's "
                f"{SCHEMA_VERSION}: a newer plugkit wrote it. Run that version, or restore a backup this version made"
            )
        conn.executescript(SCHEMA)
        present = {row[1] for row in conn.execute("PRAGMA table_info(chunks)")}
        for column, kind in ADDED_COLUMNS.items():
            if column not in present:
                conn.execute(f"ALTER TABLE chunks ADD COLUMN {column} {kind}")
        conn.execute("CREATE INDEX IF NOT EXISTS chunks_listing ON chunks (tenant, n, updated_ts)")
        if version < SCHEMA_VERSION:  # the statements above brought an older layout up to this one
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self._conn = conn
        self._info = info
        await self._run(lambda c: self._open_sync(c, info))

    def _open_sync(self, conn: sqlite3.Connection, info: StoreInfo) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            if "embedding_model" not in meta:
                meta = {
                    "embedding_model": info.embedding_model,
                    "dimension": str(info.dimension),
                    "instance": uuid.uuid4().hex,
                }
                conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", meta.items())
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if meta["embedding_model"] != info.embedding_model or int(meta["dimension"]) != info.dimension:
            conn.close()
            self._conn = None
            raise StoreMismatchError(
                f"the store in {self.directory} was built with embedding model {meta['embedding_model']!r} "
                f"(dimension {meta['dimension']}), not {info.embedding_model!r} (dimension {info.dimension}); "
                "use another data directory, or re-ingest the documents into an empty one"
            )
        self._instance = meta["instance"]
        self._load_index(conn, info.dimension)
        self._keywords.open(conn, self._instance)

    def _load_index(self, conn: sqlite3.Connection, dimension: int) -> None:
        """The snapshot when it belongs to this database and is not ahead of it, else a rebuild; then catch up."""
        head = self._head(conn)
        if self.index_path.exists():
            try:
                index, marker = self._load_index_file(dimension)
                if marker.get("instance") == self._instance and int(marker.get("seq", -1)) <= head:
                    self._index, self._applied = index, int(marker["seq"])
                    # The snapshot holds the vectors; the filter columns are read from the rows (the catch-up
                    # below then applies the same changes to both; adding or removing a rowid twice is harmless).
                    self._columns = FilterColumns()
                    self._columns.add(conn.execute(f"SELECT {FIELD_COLUMNS} FROM chunks").fetchall())
                    self._catch_up_vectors(conn)
                    self._train_in_background()
                    return
            except ValueError:
                pass
        self._rebuild(conn, dimension)

    def _ann_options(self) -> dict[str, Any] | None:
        """AutoIndex's options, or None when dense search stays exact at every size."""
        min_chunks, nprobe, filtered_nprobe, k_factor = self.ann
        if min_chunks is None:
            return None
        return {
            "min_chunks": min_chunks,
            "nprobe": nprobe,
            "filtered_nprobe": filtered_nprobe,
            "k_factor": k_factor,
            "train_device": self.ann_device,
        }

    def _new_index(self, dimension: int) -> ExactIndex | AutoIndex:
        options = self._ann_options()
        return ExactIndex(dimension) if options is None else AutoIndex(dimension, **options)

    def _load_index_file(self, dimension: int) -> tuple[ExactIndex | AutoIndex, dict[str, str]]:
        options = self._ann_options()
        if options is None:
            return ExactIndex.load(self.index_path, dimension)
        return AutoIndex.load(self.index_path, dimension, **options)

    @staticmethod
    def _head(conn: sqlite3.Connection) -> int:
        """The last change-log seq ever issued (AUTOINCREMENT keeps it even when the log is trimmed)."""
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'changes'").fetchone()
        return int(row[0]) if row else 0

    def _rebuild(self, conn: sqlite3.Connection, dimension: int) -> None:
        index = self._new_index(dimension)
        conn.execute("BEGIN")  # one snapshot: the rows and the log head agree
        try:
            head = self._head(conn)
            rows = conn.execute(f"SELECT {INDEXED} FROM chunks").fetchall()
        finally:
            conn.execute("COMMIT")
        self._columns = FilterColumns()
        self._add_rows(index, rows)  # an IVF index is trained here, at once: the store opens ready to search
        self._index, self._applied = index, head
        self._train_in_background()

    def _train_in_background(self) -> None:
        """Once the index is built: an IVF training that later writes set off runs beside them (AutoIndex); with
        `ann_training` at_close the index it trains is searched from the close on."""
        if isinstance(self._index, AutoIndex):
            self._index.background_training = True
            self._index.train_at_settle = self.ann_training == "at_close"

    def _catch_up(self, conn: sqlite3.Connection) -> None:
        """Bring both derived indexes up to SQLite's change log."""
        self._catch_up_vectors(conn)
        with self._keyword_lock:
            self._keywords.catch_up(conn)

    def _keywords_behind(self) -> None:
        """Have the background thread bring the keyword index up to the change log (a write does not wait for it:
        tantivy's indexing and commit cost about as much as the write itself, and release the GIL)."""
        if self._keyword_thread is None:
            self._keyword_thread = threading.Thread(target=self._keyword_loop, name="plugkit-keywords", daemon=True)
            self._keyword_thread.start()
        self._keyword_wake.set()

    def _keyword_loop(self) -> None:
        """The background work after writes, on a connection of its own: the keyword index caught up, then the WAL
        checkpointed (passive: it never waits for readers or writers). Woken for the close, it catches up a last
        time (beside the close's saving of the vectors) and ends."""
        lower_this_thread(KEYWORD_THREAD_NICE)  # below the writers, with the tantivy threads it starts
        conn = sqlite3.connect(self.db_path, isolation_level=None, timeout=30)
        try:
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA wal_autocheckpoint=0")
            while True:
                self._keyword_wake.wait()
                self._keyword_wake.clear()
                closing = self._closing
                try:
                    if self._keywords.applied < self._head(conn):
                        # In a process of its own: beside this process's Python, a thread's indexing waits a switch
                        # interval for the GIL at every document (keyword_index's docstring).
                        catch_up_elsewhere(self._keywords, self.db_path, KEYWORD_THREAD_NICE)
                        with self._keyword_lock:
                            self._keywords.adopt()
                    if not closing:
                        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except Exception:  # the next search or the close catches up again, and raises there
                    log.exception("the keyword index could not catch up in the background")
                if closing:
                    return
        finally:
            conn.close()

    def _finish_keyword_thread(self) -> None:
        """Have the background thread catch the keyword index up a last time and end (`_stop_keyword_thread` waits
        for it)."""
        if self._keyword_thread is not None:
            self._closing = True
            self._keyword_wake.set()

    def _stop_keyword_thread(self) -> None:
        if self._keyword_thread is not None:
            self._finish_keyword_thread()
            self._keyword_thread.join()
            self._keyword_thread = None
            self._closing = False

    def _catch_up_vectors(self, conn: sqlite3.Connection) -> None:
        """Apply the change log past what the vector index reflects (writes of this process or of another one)."""
        assert self._index is not None
        conn.execute("BEGIN")
        try:
            changes = conn.execute(
                "SELECT seq, chunk_rowid, op FROM changes WHERE seq > ? ORDER BY seq", (self._applied,)
            ).fetchall()
            # Seqs are gapless (writers are serialised and a rollback gives its seqs back), so a gap means another
            # process trimmed entries this index never saw: rebuild from the chunks instead.
            first = changes[0][0] if changes else self._head(conn) + 1
            trimmed = first != self._applied + 1
            if not changes and not trimmed:
                return
            last: dict[int, int] = {}
            vectors: list[tuple[int, bytes]] = []
            if trimmed:
                changes = []
            for _seq, rowid, op in changes:
                last[rowid] = op
            added = [r for r, op in last.items() if op == ADD]
            for i in range(0, len(added), 500):
                part = added[i : i + 500]
                marks = ",".join("?" * len(part))
                vectors += conn.execute(f"SELECT {INDEXED} FROM chunks WHERE rowid IN ({marks})", part).fetchall()
        finally:
            conn.execute("COMMIT")
        if trimmed:
            self._rebuild(conn, self._index.dimension)
            return
        removed = [r for r, op in last.items() if op == DEL]
        self._index.remove(removed)
        self._columns.remove(removed)
        self._add_rows(self._index, vectors)
        self._applied = changes[-1][0]

    def _add_rows(self, index: ExactIndex | AutoIndex, rows: list[Any]) -> None:
        """Rows of INDEXED into the vector index and the filter columns."""
        if not rows:
            return
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        index.add(ids, np.vstack([np.frombuffer(r[-1], dtype=np.float32) for r in rows]))
        self._columns.add(rows)

    async def close(self) -> None:
        def close_sync(conn: sqlite3.Connection) -> None:
            self._catch_up_vectors(conn)
            if self._index is not None:
                self._index.save(self.index_path, {"instance": self._instance, "seq": str(self._applied)})
            self._stop_keyword_thread()  # its last catch-up ran beside the save
            with self._keyword_lock:
                self._keywords.catch_up(conn)  # what it could not do (nothing, unless it failed)
            if self._index is not None:
                # The snapshot and the keyword index hold everything up to these seqs: that part of the log is no
                # longer needed.
                conn.execute("DELETE FROM changes WHERE seq <= ?", (min(self._applied, self._keywords.applied),))
            conn.close()
            self._conn = None

        self._finish_keyword_thread()
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        self._answers = DatabaseCache(self, ANSWERS_KEPT)
        if self._conn is not None:
            await self._run(close_sync)
        else:
            await asyncio.to_thread(self._stop_keyword_thread)

    async def ready(self) -> str | None:
        """None once the store is open and its vector index loaded, else why not (see VectorStore.ready)."""
        if self._conn is None:
            return "the store is not open"
        if self._index is None:
            return "the vector index is loading"
        return None

    async def index_lag(self) -> int:
        """Changes in the store this process's vector index has not applied yet (applied before each search)."""
        return await self._run(lambda conn: self._head(conn) - self._applied)

    # -- writes -----------------------------------------------------------------------------------------------

    async def replace_documents(self, documents: list[DocumentRecord], tenant: str | None = None) -> None:
        """Replace the chunks of each document. The documents are written in transactions of whole documents of up
        to WRITE_BATCH_CHUNKS chunks together (one transaction, all or nothing, for a call up to that size), so that
        a reader sees each document's chunks all old or all new, and other workers' writers wait no longer than
        that. The vector index takes the written vectors directly; the keyword index catches up in the background
        (and before any search, which thus never misses an acknowledged write)."""
        assert self._info is not None
        dimension = self._info.dimension
        for document in documents:
            for record in document.chunks:
                if len(record.embedding) != dimension:
                    raise ValueError(
                        f"chunk {record.id} has an embedding of dimension {len(record.embedding)}, "
                        f"the store holds {dimension}"
                    )
        if not documents:
            return
        key = tenant or SHARED_TENANT
        # The last of several documents with one id wins, as if they were written one after the other.
        unique = list({d.document_id: d for d in documents}.values())
        batches = await asyncio.to_thread(lambda: [_Batch.of(part, key, dimension) for part in _parts(unique)])

        def write(conn: sqlite3.Connection) -> None:
            for batch in batches:
                self._write_batch(conn, batch, key)

        await self._run(write)
        self._keywords_behind()

    def _write_batch(self, conn: sqlite3.Connection, batch: _Batch, tenant: str) -> None:
        """One write transaction: the batch's documents' old chunks out, the new ones in, both logged; then the
        vector index and filter columns updated from memory when no other writer came in between."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            head = self._head(conn)
            old: list[tuple[int, str, float | None]] = []
            for i in range(0, len(batch.document_ids), 500):
                part = batch.document_ids[i : i + 500]
                marks = ",".join("?" * len(part))
                old += conn.execute(
                    f"SELECT rowid, document_id, stored_ts FROM chunks WHERE tenant = ? AND document_id IN ({marks})",
                    [tenant, *part],
                ).fetchall()
            removed = [r[0] for r in old]
            self._delete_rows(conn, removed)
            batch.keep_stored_times(old)
            # AUTOINCREMENT: each new rowid is above every rowid ever used, and this transaction holds the write
            # lock, so the rows inserted below are exactly those above `base`, in insertion order.
            row = conn.execute(
                "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'chunks'), 0),"
                " COALESCE((SELECT MAX(rowid) FROM chunks), 0))"
            ).fetchone()
            base = int(row[0])
            insert_chunk_rows(conn, batch.rows)
            last = int(conn.execute("SELECT last_insert_rowid()").fetchone()[0])
            if last - base == len(batch.rows):
                rowids = np.arange(base + 1, last + 1, dtype=np.int64)
            else:  # not expected with AUTOINCREMENT; read them back rather than guess
                rowids = np.fromiter(
                    (r[0] for r in conn.execute("SELECT rowid FROM chunks WHERE rowid > ? ORDER BY rowid", (base,))),
                    dtype=np.int64,
                )
            conn.execute(
                "INSERT INTO changes (chunk_rowid, op) SELECT rowid, ? FROM chunks WHERE rowid > ? ORDER BY rowid",
                (ADD, base),
            )
            if tenant != SHARED_TENANT:
                conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('tenanted', '1')")
            written = self._head(conn)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if self._applied != head or self._index is None:  # another process wrote since: read the log
            self._catch_up_vectors(conn)
            return
        self._index.remove(removed)
        self._columns.remove(removed)
        self._index.add(rowids, batch.vectors)
        self._columns.add(batch.field_rows(rowids.tolist()))
        self._applied = written

    @staticmethod
    def _delete_rows(conn: sqlite3.Connection, rowids: list[int]) -> None:
        for i in range(0, len(rowids), 500):
            part = rowids[i : i + 500]
            marks = ",".join("?" * len(part))
            conn.execute(f"DELETE FROM chunks WHERE rowid IN ({marks})", part)
            conn.execute(
                f"INSERT INTO changes (chunk_rowid, op) VALUES {','.join(['(?, ?)'] * len(part))}",
                [value for r in part for value in (r, DEL)],
            )

    async def delete(
        self,
        ids: list[str] | None = None,
        filter: FilterArg = None,
        delete_all: bool = False,
        tenant: str | None = None,
    ) -> int:
        tree = to_tree(filter)

        def delete_sync(conn: sqlite3.Connection) -> int:
            conn.execute("BEGIN IMMEDIATE")
            try:
                if delete_all:
                    rows = conn.execute("SELECT rowid FROM chunks WHERE tenant = ?", (tenant or SHARED_TENANT,))
                    rowids = [r[0] for r in rows]
                else:
                    found: set[int] = set()
                    for document_id in ids or []:
                        found.update(
                            r[0]
                            for r in conn.execute(
                                "SELECT rowid FROM chunks WHERE tenant = ? AND document_id = ?",
                                (tenant or SHARED_TENANT, document_id),
                            )
                        )
                    if tree is not None:
                        where, params = filter_sql(tree, tenant)
                        found.update(r[0] for r in conn.execute(f"SELECT rowid FROM chunks c WHERE {where}", params))
                    rowids = sorted(found)
                self._delete_rows(conn, rowids)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            self._catch_up(conn)
            return len(rowids)

        deleted = await self._run(delete_sync)
        self._keywords_behind()  # the checkpoint
        return deleted

    # -- reads ------------------------------------------------------------------------------------------------

    async def search(self, request: SearchRequest) -> list[DocumentChunkWithScore]:
        return (await self.search_many([request]))[0]

    async def search_many(self, requests: list[SearchRequest]) -> list[list[DocumentChunkWithScore]]:
        for request in requests:
            if request.mode != "keyword" and request.embedding is None:
                raise ValueError(f"a {request.mode} search needs the query's embedding")
        return await self._run(lambda conn: [self._search_sync(conn, request) for request in requests])

    def _search_sync(self, conn: sqlite3.Connection, request: SearchRequest) -> list[DocumentChunkWithScore]:
        with self._keyword_lock:
            return self._search_locked(conn, request)

    def _search_locked(self, conn: sqlite3.Connection, request: SearchRequest) -> list[DocumentChunkWithScore]:
        for attempt in range(SNAPSHOT_TRIES):
            self._catch_up(conn)
            conn.execute("BEGIN")
            # Another worker may commit between the catch-up and this snapshot: the indexes would then name rows the
            # snapshot no longer holds (a document's new chunks missing from the results). Catch up again then.
            head = self._head(conn)
            if head == self._applied == self._keywords.applied or attempt == SNAPSHOT_TRIES - 1:
                break
            conn.execute("COMMIT")
        try:
            allowed = self._allowed(conn, request, to_tree(request.filter))
            if request.mode == "dense":
                scored = self._dense(request, request.top_k, allowed)
            elif request.mode == "keyword":
                with self._keyword_lock:
                    scored = self._keywords.search(request.text, request.top_k, allowed)
            else:
                scored = self._hybrid(request, allowed)
            return self._fetch(conn, scored, request.include_embeddings)
        finally:
            conn.execute("COMMIT")

    def allowed(self, conn: sqlite3.Connection, tree: Node | None, tenant: str | None) -> np.ndarray:
        """The one `filter -> rowid mask` function: a boolean mask indexed by rowid of the chunks of the tenant that
        match the tree (what `filter_sql` selects). Call it with the index caught up, inside the read transaction."""
        if self._columns.covers(tree):
            return self._columns.mask(tree, tenant or SHARED_TENANT)

        def from_sql() -> np.ndarray:
            where, params = filter_sql(tree, tenant)
            rowids = np.fromiter(
                (r[0] for r in conn.execute(f"SELECT rowid FROM chunks c WHERE {where}", params)), dtype=np.int64
            )
            mask = np.zeros(max(self._columns.size, int(rowids.max()) + 1 if len(rowids) else 0), dtype=bool)
            mask[rowids] = True
            return mask

        return self._columns.remember(("sql", tree, tenant or SHARED_TENANT), from_sql)

    def _allowed(self, conn: sqlite3.Connection, request: SearchRequest, tree: Node | None) -> np.ndarray | None:
        """The rowid mask of the request's tenant and filter (the rows `filter_sql` selects); None: every row."""
        if tree is None and not request.tenant and not self._tenanted(conn):
            return None
        return self.allowed(conn, tree, request.tenant)

    def _dense(self, request: SearchRequest, k: int, allowed: np.ndarray | None) -> list[tuple[int, float]]:
        assert self._index is not None and request.embedding is not None
        ids, scores = self._index.search(np.asarray(request.embedding, dtype=np.float32), k, allowed)
        return list(zip(ids.tolist(), scores.tolist(), strict=True))

    def _hybrid(self, request: SearchRequest, allowed: np.ndarray | None) -> list[tuple[int, float]]:
        """Both sides' best `candidate_pool` fused, cut to top_k. Past the pool (top_k larger than what it fused),
        deeper candidates are fused and appended after it, so the first results never depend on top_k."""
        fused = self._fuse(request, self.candidate_pool, allowed)
        if request.top_k > len(fused) and request.top_k > self.candidate_pool:
            seen = {rowid for rowid, _ in fused}
            deeper = self._fuse(request, request.top_k, allowed)
            fused += [(rowid, score) for rowid, score in deeper if rowid not in seen]
        return fused[: request.top_k]

    def _fuse(self, request: SearchRequest, pool: int, allowed: np.ndarray | None) -> list[tuple[int, float]]:
        dense = self._dense(request, pool, allowed)
        with self._keyword_lock:
            keyword = self._keywords.search(request.text, pool, allowed)
        base = DEFAULT_WEIGHTS[self.fusion]
        weights = (
            _first(request.dense_weight, self.dense_weight, base[0]),
            _first(request.keyword_weight, self.keyword_weight, base[1]),
        )
        if self.fusion == "scaled":
            return scaled(dense, keyword, weights)
        if self.fusion == "convex":
            return convex([dense, keyword], weights)
        return rrf([[r for r, _ in dense], [r for r, _ in keyword]], self.rrf_k, weights)

    @staticmethod
    def _tenanted(conn: sqlite3.Connection) -> bool:
        return conn.execute("SELECT 1 FROM meta WHERE key = 'tenanted'").fetchone() is not None

    @staticmethod
    def _fetch(
        conn: sqlite3.Connection, scored: list[tuple[int, float]], with_embeddings: bool
    ) -> list[DocumentChunkWithScore]:
        if not scored:
            return []
        marks = ",".join("?" * len(scored))
        rows = {
            r[0]: r
            for r in conn.execute(
                f"SELECT rowid, chunk_id, text, metadata, embedding FROM chunks WHERE rowid IN ({marks})",
                [rowid for rowid, _ in scored],
            )
        }
        results = []
        for rowid, score in scored:
            row = rows.get(rowid)
            if row is None:  # deleted since the index was read
                continue
            embedding = np.frombuffer(row[4], dtype=np.float32).tolist() if with_embeddings else None
            results.append(
                DocumentChunkWithScore(
                    id=row[1],
                    text=row[2],
                    metadata=DocumentChunkMetadata.model_validate_json(row[3]),
                    embedding=embedding,
                    score=score,
                )
            )
        return results

    async def data_version(self) -> int:
        """SQLite's data_version on the read connection: it moves whenever another connection commits (this store's
        writes included, made on its own connection)."""
        return self._read_now(lambda conn: int(conn.execute("PRAGMA data_version").fetchone()[0]))

    async def get_document(self, document_id: str, tenant: str | None = None) -> list[DocumentChunk]:
        def read(conn: sqlite3.Connection) -> list[DocumentChunk]:
            rows = conn.execute(
                "SELECT chunk_id, text, metadata FROM chunks WHERE tenant = ? AND document_id = ? ORDER BY n",
                (tenant or SHARED_TENANT, document_id),
            ).fetchall()
            return [
                DocumentChunk(id=r[0], text=r[1], metadata=DocumentChunkMetadata.model_validate_json(r[2]))
                for r in rows
            ]

        async def compute() -> list[DocumentChunk]:
            return self._read_now(read)  # an index lookup (tenant, document_id)

        key = ("document", tenant or SHARED_TENANT, document_id)
        return await self._answers.get(key, compute, keep=lambda chunks: len(chunks) <= CACHED_CHUNKS)

    async def count(self, tenant: str | None = None) -> int:
        def read(conn: sqlite3.Connection) -> int:
            if tenant is None:
                return int(conn.execute("SELECT COUNT(*) FROM chunks").fetchone()[0])
            return int(conn.execute("SELECT COUNT(*) FROM chunks WHERE tenant = ?", (tenant,)).fetchone()[0])

        return await self._run(read)

    async def list_documents(
        self,
        tenant: str | None = None,
        filter: FilterArg = None,
        limit: int = 20,
        after: tuple[float, str] | None = None,
    ) -> DocumentPage:
        tree = to_tree(filter)

        def read(conn: sqlite3.Connection) -> DocumentPage:
            where, params = filter_sql(tree, tenant)
            updated = "COALESCE(c.updated_ts, 0)"
            query = (
                "SELECT c.document_id, c.metadata, COALESCE(c.chunk_count, (SELECT COUNT(*) FROM chunks d"
                f" WHERE d.tenant = c.tenant AND d.document_id = c.document_id)), COALESCE(c.stored_ts, 0), {updated}"
                f" FROM chunks c WHERE c.n = 0 AND {where}"
            )
            if after is not None:
                query += f" AND ({updated} < ? OR ({updated} = ? AND c.document_id > ?))"
                params += [after[0], after[0], after[1]]
            query += f" ORDER BY {updated} DESC, c.document_id LIMIT ?"
            rows = conn.execute(query, [*params, limit + 1]).fetchall()
            entries = []
            for document_id, metadata, chunk_count, stored_ts, updated_ts in rows[:limit]:
                values = json.loads(metadata)
                values.pop("document_id", None)
                entries.append(
                    DocumentEntry(
                        document_id=document_id,
                        metadata=DocumentMetadata.model_validate(values),
                        chunk_count=int(chunk_count),
                        stored_ts=float(stored_ts),
                        updated_ts=float(updated_ts),
                    )
                )
            return DocumentPage(entries, more=len(rows) > limit)

        # A page in the listing index's order is a bounded read, kept until the store changes; a filter may scan,
        # off the event loop.
        if tree is not None:
            return await self._run(read)

        async def compute() -> DocumentPage:
            return self._read_now(read)

        return await self._answers.get(("page", tenant or SHARED_TENANT, limit, after), compute)

    async def all_embeddings(self) -> tuple[list[str], np.ndarray]:
        """Every chunk id with its stored embedding (for checks and benchmarks)."""

        def read(conn: sqlite3.Connection) -> tuple[list[str], np.ndarray]:
            rows = conn.execute("SELECT chunk_id, embedding FROM chunks ORDER BY rowid").fetchall()
            assert self._info is not None
            if not rows:
                return [], np.zeros((0, self._info.dimension), dtype=np.float32)
            return [r[0] for r in rows], np.vstack([np.frombuffer(r[1], dtype=np.float32) for r in rows])

        return await self._run(read)


def insert_chunk_rows(conn: sqlite3.Connection, rows: list[Any]) -> None:
    """Insert chunk rows (CHUNK_VALUES each), in order, ROWS_PER_INSERT to a statement."""
    for i in range(0, len(rows), ROWS_PER_INSERT):
        part = rows[i : i + ROWS_PER_INSERT]
        conn.execute(INSERT_CHUNKS + ",".join([CHUNK_VALUES] * len(part)), list(itertools.chain(*part)))


def _parts(documents: list[DocumentRecord]) -> Iterator[list[DocumentRecord]]:
    """The documents in runs of whole documents of at most WRITE_BATCH_CHUNKS chunks (at least one document)."""
    part: list[DocumentRecord] = []
    size = 0
    for document in documents:
        if part and size + len(document.chunks) > WRITE_BATCH_CHUNKS:
            yield part
            part, size = [], 0
        part.append(document)
        size += len(document.chunks)
    if part:
        yield part


def _first(*values: float | None) -> float:
    return next(v for v in values if v is not None)


def _matrix(embeddings: list[Any], dimension: int) -> np.ndarray:
    """The embeddings as one float32 matrix: lists of floats through one flat iterator (a quarter faster than
    np.asarray of the lists), arrays stacked."""
    if embeddings and not isinstance(embeddings[0], np.ndarray):
        flat = itertools.chain.from_iterable(embeddings)
        return np.fromiter(flat, dtype=np.float32, count=len(embeddings) * dimension).reshape(-1, dimension)
    return np.asarray(embeddings, dtype=np.float32).reshape(len(embeddings), dimension)


def _metadata_columns(meta: DocumentChunkMetadata, document_id: str) -> tuple[Any, ...]:
    """The stored metadata JSON, the standard columns and the custom instants of a chunk's metadata."""
    if meta.document_id != document_id:
        meta = meta.model_copy(update={"document_id": document_id})
    return (
        meta.model_dump_json(exclude_none=True),
        meta.source.value if meta.source else None,
        meta.source_id,
        meta.author,
        meta.url,
        parse_instant(meta.created_at) if meta.created_at else None,
        json.dumps(custom_instants(meta.custom)) if meta.__pydantic_extra__ else "{}",
    )


@dataclass
class _Batch:
    """The rows of one write transaction, prepared before it starts (CHUNK_VALUES, in order), and their
    vectors as one float32 matrix."""

    document_ids: list[str]
    rows: list[list[Any]]
    spans: dict[str, tuple[int, int]]  # document id -> its rows
    vectors: np.ndarray

    @classmethod
    def of(cls, documents: list[DocumentRecord], tenant: str, dimension: int) -> _Batch:
        now = time.time()
        rows: list[list[Any]] = []
        spans: dict[str, tuple[int, int]] = {}
        embeddings: list[Any] = []
        for document in documents:
            start, count = len(rows), len(document.chunks)
            seen: DocumentChunkMetadata | None = None
            columns: tuple[Any, ...] = ()
            for n, record in enumerate(document.chunks):
                # The chunks of a document usually share one metadata object: its columns are computed once.
                if record.metadata is not seen:
                    seen = record.metadata
                    columns = _metadata_columns(seen, document.document_id)
                chunk_id = record.id or f"{document.document_id}_{n}"
                rows.append([tenant, document.document_id, n, chunk_id, record.text, *columns, count, now, now])
                embeddings.append(record.embedding)
            spans[document.document_id] = (start, len(rows))
        vectors = _matrix(embeddings, dimension)
        for row, vector in zip(rows, vectors, strict=True):
            row.append(vector.tobytes())
        return cls(list(spans), rows, spans, vectors)

    def keep_stored_times(self, old: list[tuple[int, str, float | None]]) -> None:
        """A replaced document keeps the time it was first stored (the earliest of its old chunks')."""
        first: dict[str, float] = {}
        for _rowid, document_id, stored in old:
            if stored is not None:
                first[document_id] = min(stored, first.get(document_id, stored))
        for document_id, stored in first.items():
            start, end = self.spans[document_id]
            for row in self.rows[start:end]:
                row[STORED] = stored

    def field_rows(self, rowids: list[int]) -> list[tuple[Any, ...]]:
        """The rows FilterColumns takes (FIELD_COLUMNS) for the inserted rowids."""
        return [(rowid, r[0], r[1], r[6], r[7], r[8], r[9], r[10]) for rowid, r in zip(rowids, self.rows, strict=True)]


def filter_sql(tree: Node | None, tenant: str | None) -> tuple[str, list[Any]]:
    """A WHERE clause over `chunks c` for the tenant and the filter tree, every value a bound parameter."""
    params: list[Any] = [tenant or SHARED_TENANT]
    if tree is None:
        return "c.tenant = ?", params
    return f"c.tenant = ? AND {_sql(tree, params)}", params


def _sql(node: Node, params: list[Any]) -> str:
    if isinstance(node, And | Or):
        if not node.parts:
            return "1" if isinstance(node, And) else "0"
        joiner = " AND " if isinstance(node, And) else " OR "
        return "(" + joiner.join(_sql(part, params) for part in node.parts) + ")"
    if isinstance(node, Not):
        return f"NOT COALESCE({_sql(node.part, params)}, 0)"
    if isinstance(node, Equals):
        marks = ", ".join("?" * len(node.values))
        if is_standard(node.key):
            params.extend(node.values)
            return f"c.{node.key} IN ({marks})"  # the key is one of the standard column names
        # json_each of a scalar yields the scalar itself, of a list its items: `eq` on a list field is containment.
        params.append(f'$."{node.key}"')
        if node.kind == "bool":
            params.extend("true" if v else "false" for v in node.values)
            return f"EXISTS (SELECT 1 FROM json_each(c.metadata, ?) j WHERE j.type IN ({marks}))"
        types = "'text'" if node.kind == "string" else "'integer', 'real'"
        params.extend(node.values)
        return f"EXISTS (SELECT 1 FROM json_each(c.metadata, ?) j WHERE j.type IN ({types}) AND j.value IN ({marks}))"
    assert isinstance(node, Range)
    path = f'$."{node.key}"'
    if node.key == DATE_FIELD:
        value, paths = "c.created_ts", []
    elif node.kind == "date":
        value, paths = "json_extract(c.custom_ts, ?)", [path]
    else:
        value = "(CASE WHEN json_type(c.metadata, ?) IN ('integer', 'real') THEN json_extract(c.metadata, ?) END)"
        paths = [path, path]
    out = []
    for bound, operator in ((node.gt, ">"), (node.gte, ">="), (node.lt, "<"), (node.lte, "<=")):
        if bound is not None:
            params.extend([*paths, bound])
            out.append(f"{value} {operator} ?")
    return "(" + " AND ".join(out) + ")" if out else "1"


def create_store(settings: Any) -> EmbeddedStore:
    """The embedded store in `<data_dir>/retrieval` (settings: any object with StoreSettings' names)."""
    settings = StoreSettings.of(settings)
    return EmbeddedStore(
        Path(settings.data_dir) / "retrieval",
        dense_weight=settings.hybrid_dense_weight,
        keyword_weight=settings.hybrid_keyword_weight,
        rrf_k=settings.rrf_k,
        fusion=settings.fusion,
        candidate_pool=settings.candidate_pool,
        ann_min_chunks=settings.ann_min_chunks if settings.vector_index == "auto" else None,
        ann_nprobe=settings.ann_nprobe,
        ann_filtered_nprobe=settings.ann_filtered_nprobe,
        ann_k_factor=settings.ann_k_factor,
        ann_device=settings.embed_device,
        ann_training="at_close" if settings.ann_training == "at_close" else "background",
    )
