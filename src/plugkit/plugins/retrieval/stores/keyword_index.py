"""The embedded store's keyword index: tantivy BM25 over the chunk texts, derived from SQLite like the vector index.

tantivy (the official Python bindings) ranks with BM25 and prunes with block-max WAND, so a top-100 over a million
chunks costs milliseconds where SQLite FTS5 ranks every matching row (over a second; bench/keyword.py measures both).

SQLite stays the system of record. The index lives in `<store>/keywords/` and records, in a marker document
committed together with the data, the SQLite instance it belongs to and the change-log seq it reflects. A catch-up
reads the change log past that seq in one SQLite snapshot and applies it in one tantivy commit, so a reader sees a
document's chunks all old or all new; a crash before the commit leaves the old marker, and the next catch-up applies
the same changes again (replacing a rowid is idempotent). A missing, unreadable or foreign index, or a change log
trimmed past the marker, is rebuilt from the chunks table. The index is shared by the workers of one host: whoever
finds it behind SQLite takes the writer (an `flock`, since tantivy allows one writer per index), catches it up, and
lets go; the others reload and see the same commit. That is also how a store's background catch-up runs: in a
process of its own (stores/keyword_process.py), whose commit the store's process then adopts (`adopt`).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import tantivy

ADD = 1
MARKER_ROWID = -1  # the document holding the marker: no text, so it never matches a query
ANALYZER = "plugkit_en"
WRITER_HEAP = 64_000_000
REBUILD_HEAP = 256_000_000
LARGE_CATCH_UP = 2_000  # chunks to index from which a catch-up uses several indexing threads
SMALL_FILTER = 4096  # allowed rows up to which a filter is applied inside the query rather than after it


def analyzer(stopwords: bool = True) -> tantivy.TextAnalyzer:
    """Words split on non-alphanumerics, long ones dropped, lower-cased, accents folded, English stems (as FTS5's
    `porter unicode61`), and, by default, English stop words removed (BEIR's BM25 baselines drop them too)."""
    builder = (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.remove_long(40))
        .filter(tantivy.Filter.lowercase())
        .filter(tantivy.Filter.ascii_fold())
    )
    if stopwords:
        builder = builder.filter(tantivy.Filter.stopword("english"))
    return builder.filter(tantivy.Filter.stemmer("english")).build()


def _schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_integer_field("rowid", indexed=True, fast=True)
    builder.add_text_field("text", tokenizer_name=ANALYZER, index_option="freq")
    builder.add_text_field("marker", stored=True, tokenizer_name="raw")
    return builder.build()


log = logging.getLogger("plugkit.retrieval")


class KeywordIndex:
    """BM25 search over chunk texts by SQLite rowid. The caller serialises calls within a process."""

    def __init__(self, directory: Path, *, stopwords: bool = True) -> None:
        self.directory = Path(directory)
        self.stopwords = stopwords
        self._schema = _schema()
        self._analyzer = analyzer(stopwords)
        self._index: tantivy.Index | None = None
        self._instance = ""
        self.applied = 0  # the change-log seq the index reflects, as last read or written by this process

    @property
    def instance(self) -> str:
        """The SQLite database (its `meta.instance`) the index is opened for."""
        return self._instance

    # -- lifecycle --------------------------------------------------------------------------------------------

    def open(self, conn: sqlite3.Connection, instance: str) -> None:
        """Open (or create) the index for the SQLite database whose `meta.instance` is `instance`; rebuilt when
        missing, unreadable or another database's; then caught up with `conn`."""
        self._instance = instance
        self.directory.mkdir(parents=True, exist_ok=True)
        with self._writer_lock():
            marker = self._open_index()
            # An index ahead of the database (a restored older copy of it) holds rows the database does not.
            if marker is None or marker.get("instance") != instance or int(marker["seq"]) > self._head(conn):
                self._rebuild(conn)
            else:
                self.applied = int(marker["seq"])
                # A process killed in the middle of a commit leaves that commit's files behind, and the next commit
                # may want the same names ("FileAlreadyExists"): drop every file the last commit does not use.
                assert self._index is not None
                writer = self._index.writer(WRITER_HEAP, 1)
                writer.garbage_collect_files()
                writer.wait_merging_threads()
        try:
            self.catch_up(conn)
        except ValueError as exc:  # tantivy's I/O errors; the index is derived data: start it again from SQLite
            log.warning("the keyword index could not catch up (%s): rebuilding it from the database", exc)
            with self._writer_lock():
                self._wipe()
                self._open_index()
                self._rebuild(conn)

    def attach(self, instance: str) -> None:
        """Open the index as it is, for the database whose `meta.instance` is `instance`, without catching up
        (`catch_up` does, and rebuilds it when it is another database's)."""
        self._instance = instance
        self.directory.mkdir(parents=True, exist_ok=True)
        with self._writer_lock():
            self._open_index()
        self.adopt()

    def adopt(self) -> None:
        """Show the index's last commit (another process's, such as the background catch-up's) and take the seq its
        marker names; 0 when it names none or another database (the next catch-up rebuilds it)."""
        assert self._index is not None
        self._index.reload()
        marker = self._marker()
        self.applied = int(marker["seq"]) if marker is not None and marker.get("instance") == self._instance else 0

    def _open_index(self) -> dict[str, str] | None:
        """The index at `directory` and its marker (None: a new, empty or foreign-schema index, made empty)."""
        for attempt in range(2):
            try:
                self._index = tantivy.Index(self._schema, path=str(self.directory), reuse=True)
                # The searcher moves only when this process reloads it (after a catch-up), so it shows the state
                # `applied` names, never another worker's later commit ahead of the caller's SQLite snapshot.
                self._index.config_reader("Manual")
                self._index.register_tokenizer(ANALYZER, analyzer(self.stopwords))
                self._index.reload()
                return self._marker()
            except ValueError:
                if attempt:
                    raise
                # Unreadable or built with another schema: derived data, so start it again.
                self._wipe()
        return None

    def _wipe(self) -> None:
        """Every file of the index gone (the writer lock file stays: other processes may hold it)."""
        self._index = None
        for entry in self.directory.iterdir():
            if entry.name != ".plugkit-writer.lock":
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()

    def _marker(self) -> dict[str, str] | None:
        assert self._index is not None
        searcher = self._index.searcher()
        hits = searcher.search(tantivy.Query.term_query(self._schema, "rowid", MARKER_ROWID), 1, count=False).hits
        if not hits:
            return None
        values = searcher.doc(hits[0][1]).to_dict().get("marker") or []
        marker: dict[str, str] = json.loads(values[0]) if values else {}
        return marker if "seq" in marker else None

    @contextmanager
    def _writer_lock(self) -> Iterator[None]:
        """Exclusive among the processes sharing the directory (tantivy itself refuses a second writer)."""
        fd = os.open(self.directory / ".plugkit-writer.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _commit(self, writer: tantivy.IndexWriter, seq: int) -> None:
        """Record `seq` in the marker, commit everything atomically, and let the writer go."""
        writer.delete_documents_by_term("rowid", MARKER_ROWID)
        marker = json.dumps({"instance": self._instance, "seq": str(seq)})
        writer.add_document(tantivy.Document(rowid=MARKER_ROWID, marker=marker))
        writer.commit()
        writer.wait_merging_threads()
        assert self._index is not None
        self._index.reload()
        self.applied = seq

    # -- keeping up with SQLite -------------------------------------------------------------------------------

    @staticmethod
    def _head(conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'changes'").fetchone()
        return int(row[0]) if row else 0

    def catch_up(self, conn: sqlite3.Connection) -> None:
        """Apply the change log past the index's seq (this process's writes or another's), in one commit."""
        if self._head(conn) <= self.applied:
            return
        with self._writer_lock():
            assert self._index is not None
            self._index.reload()
            marker = self._marker()  # another worker may have caught up already
            if marker is None or marker.get("instance") != self._instance:
                self._rebuild(conn)
                return
            self.applied = int(marker["seq"])
            last: dict[int, int] = {}
            texts: list[tuple[int, str]] = []
            conn.execute("BEGIN")
            try:
                changes = conn.execute(
                    "SELECT seq, chunk_rowid, op FROM changes WHERE seq > ? ORDER BY seq", (self.applied,)
                ).fetchall()
                first = changes[0][0] if changes else self._head(conn) + 1
                trimmed = first != self.applied + 1  # the log was trimmed past what this index saw
                if not trimmed:
                    for _seq, rowid, op in changes:
                        last[rowid] = op
                    added = [r for r, op in last.items() if op == ADD]
                    for i in range(0, len(added), 500):
                        part = added[i : i + 500]
                        marks = ",".join("?" * len(part))
                        texts += conn.execute(f"SELECT rowid, text FROM chunks WHERE rowid IN ({marks})", part)
            finally:
                conn.execute("COMMIT")
            if trimmed:
                self._rebuild(conn)
                return
            if not changes:
                return
            # tantivy indexes in the commit, one thread per writer thread: a large catch-up (an ingest's write)
            # takes the rebuild's threads (98,477 SciFact chunks: 7.4 s on one thread, 4.8 s on two).
            writer = (
                self._index.writer(WRITER_HEAP, 1)
                if len(texts) < LARGE_CATCH_UP
                else self._index.writer(REBUILD_HEAP, min(4, os.cpu_count() or 1))
            )
            # A rowid is never reused (AUTOINCREMENT), so a row this range adds was never indexed: only removed rows
            # have documents to delete (a delete costs tantivy a term lookup in every segment at the commit).
            for rowid, op in last.items():
                if op != ADD:
                    writer.delete_documents_by_term("rowid", rowid)
            for rowid, text in texts:
                writer.add_document(tantivy.Document(rowid=rowid, text=text))
            self._commit(writer, changes[-1][0])

    def _rebuild(self, conn: sqlite3.Connection) -> None:
        """Every chunk's text from one SQLite snapshot, replacing the index's contents in one commit."""
        assert self._index is not None
        writer = self._index.writer(REBUILD_HEAP, min(4, os.cpu_count() or 1))
        writer.delete_all_documents()
        conn.execute("BEGIN")
        try:
            head = self._head(conn)
            for rowid, text in conn.execute("SELECT rowid, text FROM chunks"):
                writer.add_document(tantivy.Document(rowid=rowid, text=text))
        except BaseException:
            writer.rollback()
            raise
        finally:
            conn.execute("COMMIT")
        self._commit(writer, head)

    # -- search -----------------------------------------------------------------------------------------------

    def terms(self, text: str) -> list[str]:
        """The query's distinct index terms, in order."""
        return list(dict.fromkeys(self._analyzer.analyze(text)))

    def search(self, text: str, k: int, allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        """The `k` best (rowid, BM25 score) for any word of `text`, best first; only rowids where the boolean mask
        `allowed` (indexed by rowid) is true, when given. A filtered search keeps asking for more until it has `k`
        allowed hits or no more match."""
        assert self._index is not None
        terms = self.terms(text)
        if not terms or k <= 0:
            return []
        query = tantivy.Query.boolean_query(
            [(tantivy.Occur.Should, tantivy.Query.term_query(self._schema, "text", t)) for t in terms]
        )
        searcher = self._index.searcher()
        if allowed is None:
            return self._hits(searcher, query, k)
        kept = int(np.count_nonzero(allowed))
        if kept == 0:
            return []
        if kept <= SMALL_FILTER:  # few rows: name them in the query, so only they are scored
            rowids = np.flatnonzero(allowed).tolist()
            only = tantivy.Query.const_score_query(tantivy.Query.term_set_query(self._schema, "rowid", rowids), 0.0)
            both = tantivy.Query.boolean_query([(tantivy.Occur.Must, only), (tantivy.Occur.Must, query)])
            return self._hits(searcher, both, k)
        total = max(searcher.num_docs - 1, 1)
        wanted = min(total, max(k, int(2 * k * total / kept)))
        while True:
            hits = self._hits(searcher, query, wanted)
            found = [(r, s) for r, s in hits if r < len(allowed) and allowed[r]]
            if len(found) >= k or len(hits) < wanted or wanted >= total:
                return found[:k]
            wanted = min(total, 4 * wanted)

    def _hits(self, searcher: tantivy.Searcher, query: tantivy.Query, limit: int) -> list[tuple[int, float]]:
        hits = searcher.search(query, limit, count=False).hits
        if not hits:
            return []
        rowids = searcher.fast_field_values("rowid", [address for _, address in hits])
        return [(int(r), float(s)) for (s, _), r in zip(hits, rowids, strict=True) if r is not None and r >= 0]
