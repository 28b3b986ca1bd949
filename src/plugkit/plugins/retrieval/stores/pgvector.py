"""PostgreSQL + pgvector store: an async connection pool, an HNSW index, full-text search, bound parameters only.

Table layout (one table per store, named by `StoreSettings.collection`): one row per chunk keyed by (tenant, id),
the metadata as columns, `created_ts` (epoch seconds) for date ranges, `embedding vector(dim)` under an HNSW index
(cosine), and a generated `tsv tsvector` under a GIN index. The embedding model and dimension of each table are
recorded in `plugkit_vector_tables`; opening a table with another model or dimension raises StoreMismatchError.

Custom metadata is a `metadata jsonb` column (filtered by containment, which also makes `eq` match inside a list),
the instants of its ISO 8601 date values a `metadata_ts jsonb` column; filter trees become SQL with every value a
bound parameter (`where_sql`). Each row also carries its document's `chunk_count`, `stored_ts` and `updated_ts` for
the listing (which reads each document's first chunk, keyset-paged).

Search modes: dense = cosine similarity (1 - cosine distance); keyword = `ts_rank` of the query's words (any of them)
against the text; hybrid = the two rankings fused by reciprocal rank fusion. When the HNSW scan returns fewer than
`top_k` rows (its candidate list is cut before a selective filter or tenant is applied), the query is re-run as an
exact scan, so a filtered query still returns `top_k` hits when that many match.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from pgvector import Vector
from pgvector.psycopg import register_vector_async
from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from plugkit.plugins.retrieval.filters import DATE_FIELD, And, Equals, Node, Not, Or, Range, is_standard, to_tree
from plugkit.plugins.retrieval.models import DocumentChunk, DocumentChunkWithScore
from plugkit.plugins.retrieval.stores.base import (
    DocumentPage,
    DocumentRecord,
    FilterArg,
    SearchRequest,
    StoreInfo,
    search_each,
)
from plugkit.plugins.retrieval.stores.common import (
    StoreSettings,
    check_info,
    chunk_of,
    chunk_with_score,
    entry_of,
    rows_of,
    tenant_key,
)
from plugkit.plugins.retrieval.stores.fusion import rrf

INFO_TABLE = "plugkit_vector_tables"
MAX_QUERY_WORDS = 64
_COLUMNS = ("id", "document_id", "text", "source", "source_id", "url", "author", "created_at", "metadata")
# Added after the first release: an older table gets them at open.
ADDED_COLUMNS = (
    "metadata jsonb NOT NULL DEFAULT '{{}}'",  # braces doubled: these are psycopg sql.SQL templates
    "metadata_ts jsonb NOT NULL DEFAULT '{{}}'",
    "chunk_count integer",
    "stored_ts double precision",
    "updated_ts double precision",
)


def where_sql(node: Node, params: list[Any]) -> sql.Composable:
    """The SQL of a filter tree over the store's table, appending its values to `params` (bound, never inlined)."""
    if isinstance(node, And | Or):
        if not node.parts:
            return sql.SQL("true" if isinstance(node, And) else "false")
        joiner = sql.SQL(" AND " if isinstance(node, And) else " OR ")
        return sql.SQL("({})").format(joiner.join(where_sql(part, params) for part in node.parts))
    if isinstance(node, Not):
        return sql.SQL("NOT COALESCE({}, false)").format(where_sql(node.part, params))
    if isinstance(node, Equals):
        if is_standard(node.key):
            params.append(list(node.values))
            return sql.SQL("{} = ANY(%s)").format(sql.Identifier(node.key))
        # jsonb containment: {"k": v} matches a value v, {"k": [v]} a list holding v (GIN-indexable).
        tests = []
        for wanted in node.values:
            params.append(Jsonb({node.key: wanted}))
            tests.append(sql.SQL("metadata @> %s"))
            if node.kind == "string":
                params.append(Jsonb({node.key: [wanted]}))
                tests.append(sql.SQL("metadata @> %s"))
        return sql.SQL("({})").format(sql.SQL(" OR ").join(tests))
    assert isinstance(node, Range)
    parts = []
    for bound, operator in ((node.gt, ">"), (node.gte, ">="), (node.lt, "<"), (node.lte, "<=")):
        if bound is None:
            continue
        if node.key == DATE_FIELD:
            value: sql.Composable = sql.SQL("created_ts")
        elif node.kind == "date":
            value = sql.SQL("(metadata_ts ->> %s)::double precision")
            params.append(node.key)
        else:
            value = sql.SQL(
                "(CASE WHEN jsonb_typeof(metadata -> %s) = 'number' THEN (metadata ->> %s)::double precision END)"
            )
            params.extend([node.key, node.key])
        params.append(bound)
        parts.append(sql.SQL("{} {} %s").format(value, sql.SQL(operator)))
    return sql.SQL("({})").format(sql.SQL(" AND ").join(parts)) if parts else sql.SQL("true")


def psycopg_url(url: str) -> str:
    """A libpq URL from a SQLAlchemy-style one (`postgresql+psycopg://` -> `postgresql://`)."""
    return re.sub(r"^postgres(ql)?\+\w+://", "postgresql://", url)


class PgVectorStore:
    """VectorStore on PostgreSQL with pgvector."""

    name = "pgvector"

    def __init__(self, settings: StoreSettings) -> None:
        if not settings.store_url:
            raise ValueError("the pgvector store needs store_url, a PostgreSQL URL (postgresql://user:pass@host/db)")
        self.settings = settings
        self.url = psycopg_url(settings.store_url)
        self.table = sql.Identifier(settings.collection)
        self.config = sql.Literal(settings.text_search_config)
        self.pool: AsyncConnectionPool[AsyncConnection[Any]] | None = None
        self.dimension = 0

    async def open(self, info: StoreInfo) -> None:
        self.dimension = info.dimension
        name = self.settings.collection
        async with await AsyncConnection.connect(self.url, autocommit=False) as conn:
            # One creator at a time: several workers may open the same table at once.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('plugkit_vector_tables'))")
            await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            await conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (table_name text PRIMARY KEY, embedding_model text NOT NULL,"
                    " dimension integer NOT NULL)"
                ).format(sql.Identifier(INFO_TABLE))
            )
            cur = await conn.execute(
                sql.SQL("SELECT embedding_model, dimension FROM {} WHERE table_name = %s").format(
                    sql.Identifier(INFO_TABLE)
                ),
                (name,),
            )
            found = await cur.fetchone()
            if found is not None:
                check_info(StoreInfo(found[0], int(found[1])), info, f"table {name!r}")
            else:
                await conn.execute(
                    sql.SQL("INSERT INTO {} VALUES (%s, %s, %s)").format(sql.Identifier(INFO_TABLE)),
                    (name, info.embedding_model, info.dimension),
                )
            await self._create_table(conn, info.dimension)
            await conn.commit()
        self.pool = AsyncConnectionPool(
            self.url,
            min_size=self.settings.pool_min_size,
            max_size=self.settings.pool_max_size,
            open=False,
            configure=register_vector_async,
        )
        await self.pool.open(wait=True)

    async def _create_table(self, conn: AsyncConnection[Any], dimension: int) -> None:
        name = self.settings.collection
        statements = [
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {t} (tenant text NOT NULL, id text NOT NULL, document_id text NOT NULL,"
                " position integer NOT NULL, text text NOT NULL, source text, source_id text, url text, author text,"
                " created_at text, created_ts double precision, embedding vector({dim}) NOT NULL,"
                " tsv tsvector GENERATED ALWAYS AS (to_tsvector({cfg}::regconfig, text)) STORED,"
                " PRIMARY KEY (tenant, id))"
            ),
            *[sql.SQL(f"ALTER TABLE {{t}} ADD COLUMN IF NOT EXISTS {column}") for column in ADDED_COLUMNS],
            sql.SQL("CREATE INDEX IF NOT EXISTS {doc_index} ON {t} (tenant, document_id, position)"),
            sql.SQL("CREATE INDEX IF NOT EXISTS {list_index} ON {t} (tenant, position, updated_ts)"),
            sql.SQL("CREATE INDEX IF NOT EXISTS {meta_index} ON {t} USING gin (metadata jsonb_path_ops)"),
            sql.SQL("CREATE INDEX IF NOT EXISTS {ts_index} ON {t} (created_ts)"),
            sql.SQL("CREATE INDEX IF NOT EXISTS {tsv_index} ON {t} USING gin (tsv)"),
            sql.SQL(
                "CREATE INDEX IF NOT EXISTS {hnsw_index} ON {t} USING hnsw (embedding vector_cosine_ops)"
                " WITH (m = {m}, ef_construction = {efc})"
            ),
        ]
        for statement in statements:
            await conn.execute(
                statement.format(
                    t=self.table,
                    dim=sql.Literal(dimension),
                    cfg=self.config,
                    doc_index=sql.Identifier(f"{name}_document"),
                    list_index=sql.Identifier(f"{name}_listing"),
                    meta_index=sql.Identifier(f"{name}_metadata"),
                    ts_index=sql.Identifier(f"{name}_created"),
                    tsv_index=sql.Identifier(f"{name}_tsv"),
                    hnsw_index=sql.Identifier(f"{name}_hnsw"),
                    m=sql.Literal(self.settings.hnsw_m),
                    efc=sql.Literal(self.settings.hnsw_ef_construction),
                )
            )

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
            self.pool = None

    def _pool(self) -> AsyncConnectionPool[AsyncConnection[Any]]:
        if self.pool is None:
            raise RuntimeError("the pgvector store is not open")
        return self.pool

    async def replace_documents(self, documents: list[DocumentRecord], tenant: str | None = None) -> None:
        latest = {document.document_id: document for document in documents}
        insert = sql.SQL(
            "INSERT INTO {} (tenant, id, document_id, position, text, source, source_id, url, author, created_at,"
            " created_ts, metadata, metadata_ts, chunk_count, stored_ts, updated_ts, embedding)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        ).format(self.table)
        async with self._pool().connection() as conn, conn.transaction():
            cur = await conn.execute(
                sql.SQL(
                    "SELECT document_id, min(stored_ts) FROM {} WHERE tenant = %s AND document_id = ANY(%s)"
                    " GROUP BY document_id"
                ).format(self.table),
                (tenant_key(tenant), list(latest)),
            )
            stored = {r[0]: r[1] for r in await cur.fetchall()}
            rows = [
                row
                for document in latest.values()
                for row in rows_of(document, tenant, self.dimension, stored.get(document.document_id))
            ]
            await conn.execute(
                sql.SQL("DELETE FROM {} WHERE tenant = %s AND document_id = ANY(%s)").format(self.table),
                (tenant_key(tenant), list(latest)),
            )
            async with conn.cursor() as cur:
                await cur.executemany(
                    insert,
                    [
                        (
                            r.tenant,
                            r.id,
                            r.document_id,
                            r.position,
                            r.text,
                            r.source,
                            r.source_id,
                            r.url,
                            r.author,
                            r.created_at,
                            r.created_ts,
                            Jsonb(r.metadata),
                            Jsonb(r.metadata_ts),
                            r.chunk_count,
                            r.stored_ts,
                            r.updated_ts,
                            np.asarray(r.embedding, dtype=np.float32),
                        )
                        for r in rows
                    ],
                )

    def _where(self, tenant: str | None, filter: FilterArg) -> tuple[sql.Composable, list[Any]]:
        params: list[Any] = [tenant_key(tenant)]
        tree = to_tree(filter)
        if tree is None:
            return sql.SQL("tenant = %s"), params
        return sql.SQL("tenant = %s AND {}").format(where_sql(tree, params)), params

    def _select(self, include_embeddings: bool) -> sql.Composable:
        columns = [sql.Identifier(c) for c in _COLUMNS]
        if include_embeddings:
            columns.append(sql.Identifier("embedding"))
        return sql.SQL(", ").join(columns)

    async def search_many(self, requests: list[SearchRequest]) -> list[list[DocumentChunkWithScore]]:
        return await search_each(self, requests)

    async def search(self, request: SearchRequest) -> list[DocumentChunkWithScore]:
        if request.mode == "keyword" or request.embedding is None:
            rows = await self._keyword(request, request.top_k)
            return [_result(r, r["score"]) for r in rows]
        if request.mode == "dense":
            rows = await self._dense(request, request.top_k)
            return [_result(r, r["score"]) for r in rows]
        pool = max(self.settings.candidate_pool, request.top_k)
        dense = await self._dense(request, pool)
        keyword = await self._keyword(request, pool)
        by_id = {r["id"]: r for r in [*keyword, *dense]}
        fused = rrf(
            [[r["id"] for r in dense], [r["id"] for r in keyword]],
            k=self.settings.rrf_k,
            weights=[request.dense_weight, request.keyword_weight],
        )
        return [_result(by_id[key], score) for key, score in fused[: request.top_k]]

    async def _dense(self, request: SearchRequest, limit: int) -> list[dict[str, Any]]:
        assert request.embedding is not None
        if len(request.embedding) != self.dimension:
            raise ValueError(f"the query embedding has {len(request.embedding)} dimensions, the store {self.dimension}")
        where, params = self._where(request.tenant, request.filter)
        vector = np.asarray(request.embedding, dtype=np.float32)
        query = sql.SQL(
            "SELECT {cols}, 1 - (embedding <=> %s) AS score FROM {t} WHERE {where} ORDER BY embedding <=> %s LIMIT %s"
        ).format(cols=self._select(request.include_embeddings), t=self.table, where=where)
        values = [vector, *params, vector, limit]
        async with self._pool().connection() as conn, conn.transaction():
            await conn.execute(
                sql.SQL("SET LOCAL hnsw.ef_search = {}").format(sql.Literal(max(self.settings.ef_search, limit)))
            )
            cur = conn.cursor(row_factory=dict_row)
            rows = await (await cur.execute(query, values)).fetchall()
            if len(rows) < limit:
                # The approximate scan stops at ef_search candidates before filtering: answer exactly instead.
                await conn.execute("SET LOCAL enable_indexscan = off")
                rows = await (await cur.execute(query, values)).fetchall()
        return rows

    async def _keyword(self, request: SearchRequest, limit: int) -> list[dict[str, Any]]:
        words = re.findall(r"\w+", request.text)[:MAX_QUERY_WORDS]
        if not words:
            return []
        where, params = self._where(request.tenant, request.filter)
        # Any of the words matches: one plainto_tsquery per word, OR-ed, every word a bound parameter.
        tsquery = sql.SQL(" || ").join([sql.SQL("plainto_tsquery({}::regconfig, %s)").format(self.config)] * len(words))
        query = sql.SQL(
            "WITH q AS (SELECT {tsq} AS query) SELECT {cols}, ts_rank(tsv, q.query) AS score FROM {t}, q"
            " WHERE tsv @@ q.query AND {where} ORDER BY score DESC, id LIMIT %s"
        ).format(tsq=tsquery, cols=self._select(request.include_embeddings), t=self.table, where=where)
        async with self._pool().connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            return await (await cur.execute(query, [*words, *params, limit])).fetchall()

    async def get_document(self, document_id: str, tenant: str | None = None) -> list[DocumentChunk]:
        query = sql.SQL("SELECT {cols} FROM {t} WHERE tenant = %s AND document_id = %s ORDER BY position").format(
            cols=self._select(False), t=self.table
        )
        async with self._pool().connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            rows = await (await cur.execute(query, (tenant_key(tenant), document_id))).fetchall()
        return [chunk_of(r) for r in rows]

    async def delete(
        self,
        ids: list[str] | None = None,
        filter: FilterArg = None,
        delete_all: bool = False,
        tenant: str | None = None,
    ) -> int:
        deleted = 0
        async with self._pool().connection() as conn, conn.transaction():
            if delete_all:
                cur = await conn.execute(
                    sql.SQL("DELETE FROM {} WHERE tenant = %s").format(self.table), (tenant_key(tenant),)
                )
                return cur.rowcount
            if ids:
                cur = await conn.execute(
                    sql.SQL("DELETE FROM {} WHERE tenant = %s AND document_id = ANY(%s)").format(self.table),
                    (tenant_key(tenant), list(ids)),
                )
                deleted += cur.rowcount
            if to_tree(filter) is not None:
                where, params = self._where(tenant, filter)
                cur = await conn.execute(sql.SQL("DELETE FROM {} WHERE {}").format(self.table, where), params)
                deleted += cur.rowcount
        return deleted

    async def list_documents(
        self,
        tenant: str | None = None,
        filter: FilterArg = None,
        limit: int = 20,
        after: tuple[float, str] | None = None,
    ) -> DocumentPage:
        where, params = self._where(tenant, filter)
        updated = sql.SQL("COALESCE(updated_ts, 0)")
        if after is not None:
            where = sql.SQL("{} AND ({u} < %s OR ({u} = %s AND document_id > %s))").format(where, u=updated)
            params += [after[0], after[0], after[1]]
        query = sql.SQL(
            "SELECT document_id, source, source_id, url, author, created_at, metadata, stored_ts, {u} AS updated_ts,"
            " COALESCE(chunk_count, (SELECT count(*) FROM {t} d WHERE d.tenant = c.tenant"
            " AND d.document_id = c.document_id)) AS chunk_count"
            " FROM {t} c WHERE position = 0 AND {where} ORDER BY {u} DESC, document_id LIMIT %s"
        ).format(u=updated, t=self.table, where=where)
        async with self._pool().connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            rows = await (await cur.execute(query, [*params, limit + 1])).fetchall()
        return DocumentPage([entry_of(r) for r in rows[:limit]], more=len(rows) > limit)

    async def count(self, tenant: str | None = None) -> int:
        """Chunks of the tenant; without a tenant, every chunk of the table (all tenants)."""
        query = sql.SQL("SELECT count(*) FROM {}").format(self.table)
        params: tuple[str, ...] = ()
        if tenant is not None:
            query = sql.SQL("SELECT count(*) FROM {} WHERE tenant = %s").format(self.table)
            params = (tenant,)
        async with self._pool().connection() as conn:
            found = await (await conn.execute(query, params)).fetchone()
        return int(found[0]) if found else 0


def _result(row: dict[str, Any], score: float) -> DocumentChunkWithScore:
    vector = row.get("embedding")
    return chunk_with_score(row, score, vector.to_list() if isinstance(vector, Vector) else vector)


def create_store(settings: Any) -> PgVectorStore:
    """The pgvector store for these settings (`store_url` is required)."""
    return PgVectorStore(StoreSettings.of(settings))
