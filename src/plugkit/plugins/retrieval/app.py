"""The retrieval plugin's routes and app: the original retrieval plugin's API, plus the connectors' search and fetch,
documents by id, JSON upload, modes."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
from functools import partial
from pathlib import PurePosixPath
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, File, Form, HTTPException, Path, Query, Request, UploadFile
from fastapi import Query as QueryParameter
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from plugkit.auth.base import AuthMethod
from plugkit.deps import CurrentPrincipal
from plugkit.errors import ErrorDetail
from plugkit.hints import tool_hints
from plugkit.manifest import Api, Manifest
from plugkit.plugin import Plugin, PluginContext
from plugkit.plugins.retrieval.chunking import Tokenizer, minilm_tokenizer
from plugkit.plugins.retrieval.connector import FetchedDocument, SearchResults, fetch_document, search_documents
from plugkit.plugins.retrieval.embeddings import build_embedder
from plugkit.plugins.retrieval.embeddings.base import Embedder, EmbeddingError
from plugkit.plugins.retrieval.filters import to_tree
from plugkit.plugins.retrieval.ingest import stable_id
from plugkit.plugins.retrieval.metrics import update_index_gauges
from plugkit.plugins.retrieval.models import (
    FILTER_DESCRIPTION,
    DeleteRequest,
    DeleteResponse,
    Document,
    DocumentList,
    DocumentMetadata,
    DocumentResponse,
    DocumentSummary,
    FileUploadRequest,
    QueryRequest,
    QueryResponse,
    QueryResult,
    UpsertRequest,
    UpsertResponse,
    parse_filter,
    with_links,
)
from plugkit.plugins.retrieval.parsing import FileError, extract
from plugkit.plugins.retrieval.service import DocumentTooLongError, Retriever
from plugkit.plugins.retrieval.settings import MB, RetrievalSettings
from plugkit.plugins.retrieval.stores import build_store
from plugkit.plugins.retrieval.stores.base import VectorStore
from plugkit.plugins.retrieval.stores.common import decode_cursor, encode_cursor, iso_time

DESCRIPTION_FOR_MODEL = (
    "Plugin for searching through the user's documents (such as files, emails, and more) to find answers to "
    "questions and retrieve relevant information. Use it whenever a user asks something that might be found in "
    "their personal information."
)
MEMORY_DESCRIPTION_FOR_MODEL = (
    "Plugin for searching through the user's documents (such as files, emails, and more) to find answers to "
    "questions and retrieve relevant information. Use it whenever a user asks something that might be found in "
    "their personal information, or asks you to save information for later."
)
UPSERT_MEMORY_DESCRIPTION = (
    "Save chat information for later. Accepts an array of documents with text (potential questions and the "
    "conversation text) and metadata (source 'chat' and created_at; no id, one is generated). Confirm with the "
    "user before saving, and ask for more details or context when it helps."
)


def retrieval_manifest(memory: bool) -> Manifest:
    return Manifest(
        name_for_human="Retrieval Memory" if memory else "Retrieval Plugin",
        name_for_model="retrieval",
        description_for_human=("Save information and search it later." if memory else "Search through your documents."),
        description_for_model=MEMORY_DESCRIPTION_FOR_MODEL if memory else DESCRIPTION_FOR_MODEL,
        api=Api(url="PLUGIN_HOSTNAME/openapi.yaml"),
        logo_url="PLUGIN_HOSTNAME/logo.png",
        contact_email="legal@plugkit.dev",
        legal_info_url="PLUGIN_HOSTNAME/legal",
    )


async def get_retriever(request: Request) -> Retriever:
    """The app's retriever, once its store is open (a request made while a large index loads waits for it)."""
    retriever: Retriever = request.app.state.retriever
    try:
        await retriever.wait_open()
    except Exception as exc:
        raise HTTPException(503, f"the document store is not available: {exc}") from exc
    return retriever


async def get_tenant(request: Request, principal: CurrentPrincipal) -> str | None:
    """Under per-user tenancy, the signed-in user; otherwise None (the shared space)."""
    settings: RetrievalSettings = request.app.state.settings
    if settings.tenancy != "per-user":
        return None
    if not principal.identifies_user or not principal.user_id:
        raise HTTPException(403, "per-user tenancy needs a signed-in user, and this credential names none")
    return principal.user_id


RetrieverDep = Annotated[Retriever, Depends(get_retriever)]
Tenant = Annotated[str | None, Depends(get_tenant)]
DocumentId = Annotated[str, Path(min_length=1, max_length=512, description="The document's id")]
SearchText = Annotated[
    str, QueryParameter(min_length=1, max_length=4000, description="What to look for, in natural language")
]
FetchId = Annotated[
    str, QueryParameter(alias="id", min_length=1, max_length=512, description="A document id, as search returns it")
]
RESPONSE_MARGIN = 2_000  # room for serialisation differences under the model host's response limit


def _check_texts(documents: list[Document]) -> None:
    for n, document in enumerate(documents):
        if not document.text.strip():
            raise HTTPException(422, f"documents[{n}] has no text to index")


async def _upsert(retriever: Retriever, documents: list[Document], tenant: str | None) -> UpsertResponse:
    try:
        return UpsertResponse(ids=await retriever.upsert(documents, tenant))
    except DocumentTooLongError as exc:
        raise HTTPException(413, str(exc)) from exc
    except EmbeddingError as exc:
        raise HTTPException(502, f"embedding failed: {exc}") from exc


async def _upsert_bytes(
    retriever: Retriever,
    data: bytes,
    filename: str | None,
    content_type: str | None,
    metadata: DocumentMetadata | None,
    document_id: str | None,
    tenant: str | None,
    limit: int,
) -> UpsertResponse:
    if len(data) > limit:
        raise HTTPException(413, f"the file is {len(data)} bytes, over the upload limit of {limit} bytes")
    if not data:
        raise HTTPException(422, "the file is empty")
    try:
        found = await asyncio.to_thread(extract, data, filename, content_type)
    except FileError as exc:
        raise HTTPException(exc.status, f"{exc} (type found: {exc.kind})") from exc
    if not found.text.strip():
        raise HTTPException(422, f"the {found.kind} file holds no text to index")
    name = file_name(filename)
    if document_id is None:
        # name and content: uploading the same file again replaces it, and two files that share a name (uploads
        # carry no folder) do not overwrite each other
        document_id = stable_id("file", name or "", hashlib.sha256(data).hexdigest())
    defaults: dict[str, Any] = {"source": "file", "source_id": name}
    given = {**defaults, **(metadata.model_dump(exclude_none=True) if metadata else {})}
    metadata = DocumentMetadata.model_validate(with_links(given, found.links))
    return await _upsert(retriever, [Document(id=document_id, text=found.text, metadata=metadata)], tenant)


def file_name(filename: str | None) -> str | None:
    """An upload's file name without any folder a client put in it (`C:\\docs\\a.pdf` -> `a.pdf`)."""
    name = PurePosixPath((filename or "").replace("\\", "/")).name.strip()
    return name or None


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """Documented error responses: a {detail} body; a 422 may also be a request validation error list."""
    descriptions = {
        400: "Nothing named to delete",
        404: "No such document",
        413: "The file or document is too large",
        415: "The file's type is not supported (the detail names the type found)",
        422: "The request, the metadata, a date or the file content is invalid (the detail says which)",
        502: "The embedding provider failed (the detail says why)",
    }
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        if status == 422:
            schema = {
                "anyOf": [
                    {"$ref": "#/components/schemas/ErrorDetail"},
                    {"$ref": "#/components/schemas/HTTPValidationError"},
                ]
            }
            responses[422] = {"description": descriptions[422], "content": {"application/json": {"schema": schema}}}
        else:
            responses[status] = {"model": ErrorDetail, "description": descriptions[status]}
    return responses


RESPONSE_MARGIN = 1000  # room for the envelope's own characters


def fit_answer(results: list[QueryResult], budget: int) -> list[QueryResult]:
    """The answers trimmed to fit `budget` characters of JSON: results are kept rank by rank across the queries
    (every query's first, then every query's second...), a query that loses results says `truncated: true`; an
    HTTP 400 when not even one result fits."""
    size = len(
        QueryResponse(
            results=[QueryResult(query=r.query, results=[], truncated=True) for r in results]
        ).model_dump_json()
    )
    kept = [0] * len(results)
    stopped = [False] * len(results)
    for rank in range(max((len(r.results) for r in results), default=0)):
        for n, answer in enumerate(results):
            if stopped[n] or rank >= len(answer.results):
                continue
            cost = len(answer.results[rank].model_dump_json()) + 1
            if size + cost > budget:
                stopped[n] = True
                continue
            size += cost
            kept[n] += 1
    if not any(stopped):
        return results
    if sum(kept) == 0:
        raise HTTPException(
            400, f"not even one result fits the {budget}-character answer limit: ask for smaller documents or chunks"
        )
    return [
        QueryResult(query=a.query, results=a.results[: kept[n]], truncated=True) if stopped[n] else a
        for n, a in enumerate(results)
    ]


def build_router(memory: bool) -> APIRouter:
    """The API. What the model sees in the spec: query, search, fetch and the chunks of a document; in memory mode,
    upsert and JSON upload too. (fetch answers a whole document as one text; GET /documents/{id} its chunks.)"""
    router = APIRouter()
    for_model = memory

    @router.post(
        "/upsert",
        operation_id="upsertDocuments",
        summary="Save documents" if memory else "Add or replace documents",
        description=UPSERT_MEMORY_DESCRIPTION if memory else None,
        response_model=UpsertResponse,
        responses=_errors(413, 422, 502),
        include_in_schema=for_model,
        openapi_extra=tool_hints(title="Save documents", read_only=False, destructive=True),  # replaces an id's text
    )
    async def upsert(body: UpsertRequest, retriever: RetrieverDep, tenant: Tenant) -> UpsertResponse:
        """Add documents, or replace those whose id exists; returns the document ids."""
        _check_texts(body.documents)
        return await _upsert(retriever, body.documents, tenant)

    @router.post(
        "/upsert-file",
        operation_id="upsertFile",
        summary="Add a file",
        response_model=UpsertResponse,
        responses=_errors(413, 415, 422, 502),
        include_in_schema=False,
        openapi_extra=tool_hints(title="Add a file", read_only=False),
    )
    async def upsert_file(
        request: Request,
        retriever: RetrieverDep,
        tenant: Tenant,
        file: Annotated[UploadFile, File(description="pdf, docx, pptx, xlsx, csv, json, html, md or txt")],
        metadata: Annotated[str | None, Form(description="DocumentMetadata as a JSON string")] = None,
        id: Annotated[
            str | None,
            Form(
                min_length=1,
                max_length=512,
                description="Document id; when missing, one made from the file's name and content",
            ),
        ] = None,
    ) -> UpsertResponse:
        """Add a file (multipart upload); its type is read from its content. Returns the document id: the given one,
        else one made from the file's name and content, so uploading the same file again replaces it."""
        parsed: DocumentMetadata | None = None
        if metadata is not None and metadata.strip():
            try:
                parsed = DocumentMetadata.model_validate(json.loads(metadata))
            except json.JSONDecodeError as exc:
                raise HTTPException(422, f"the metadata field is not valid JSON: {exc}") from exc
            except ValidationError as exc:
                raise HTTPException(422, f"the metadata field is not valid DocumentMetadata: {exc}") from exc
        settings: RetrievalSettings = request.app.state.settings
        data = await file.read()
        return await _upsert_bytes(
            retriever, data, file.filename, file.content_type, parsed, id, tenant, settings.max_upload_bytes
        )

    @router.post(
        "/upsert-file-json",
        operation_id="upsertFileContent",
        summary="Add a file sent as base64 JSON",
        response_model=UpsertResponse,
        responses=_errors(413, 415, 422, 502),
        include_in_schema=for_model,
        openapi_extra=tool_hints(title="Add a file", read_only=False, destructive=True),  # replaces a given id
    )
    async def upsert_file_json(
        request: Request, body: FileUploadRequest, retriever: RetrieverDep, tenant: Tenant
    ) -> UpsertResponse:
        """Add a file given as base64 content and a file name; its type is read from its content."""
        try:
            data = base64.b64decode(body.content_base64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise HTTPException(422, f"content_base64 is not valid base64: {exc}") from exc
        settings: RetrievalSettings = request.app.state.settings
        return await _upsert_bytes(
            retriever, data, body.filename, None, body.metadata, body.id, tenant, settings.max_upload_bytes
        )

    @router.post(
        "/query",
        operation_id="queryDocuments",
        summary="Search the documents",
        response_model=QueryResponse,
        responses=_errors(422, 502),
        openapi_extra=tool_hints(title="Search document chunks", read_only=True),
    )
    async def query(request: Request, body: QueryRequest, retriever: RetrieverDep, tenant: Tenant) -> QueryResponse:
        """Find the document chunks most relevant to each query (hybrid, dense or keyword search), best first."""
        if not body.queries:
            raise HTTPException(422, "queries is empty: send at least one query")
        try:
            results = await retriever.query(body.queries, tenant)
        except EmbeddingError as exc:
            raise HTTPException(502, f"embedding failed: {exc}") from exc
        settings: RetrievalSettings = request.app.state.settings
        return QueryResponse(results=fit_answer(results, settings.max_response_chars - RESPONSE_MARGIN))

    @router.get(
        "/documents",
        operation_id="listDocuments",
        summary="List the stored documents",
        response_model=DocumentList,
        responses=_errors(422),
        openapi_extra=tool_hints(title="List documents", read_only=True),
    )
    async def list_documents(
        retriever: RetrieverDep,
        tenant: Tenant,
        limit: Annotated[int, Query(ge=1, le=100, description="Documents per page")] = 20,
        after: Annotated[
            str | None, Query(max_length=500, description="The `next` cursor of the previous page")
        ] = None,
        filter: Annotated[
            # 4,000 characters: even percent-encoded 4-byte characters keep the URL under the 64 KiB request line
            # the HTTP server (uvicorn) accepts; a longer one would be refused before reaching the app.
            str | None, Query(max_length=4000, description=f"URL-encoded JSON: {FILTER_DESCRIPTION}")
        ] = None,
    ) -> DocumentList:
        """List stored documents, newest first, with their metadata and chunk counts; page with `after`."""
        tree = None
        if filter is not None and filter.strip():
            try:
                tree = to_tree(parse_filter(filter))
            except ValueError as exc:  # JSON errors; pydantic's ValidationError is a ValueError too
                errors = exc.errors() if isinstance(exc, ValidationError) else [{"msg": str(exc), "type": "json"}]
                raise RequestValidationError(
                    [{**e, "loc": ("query", "filter", *e.get("loc", ()))} for e in errors]
                ) from exc
        try:
            position = decode_cursor(after) if after else None
        except ValueError as exc:
            raise HTTPException(422, f"after: {exc}") from exc
        page = await retriever.store.list_documents(tenant, tree, limit, position)
        documents = [
            DocumentSummary(
                id=e.document_id,
                metadata=e.metadata,
                chunk_count=e.chunk_count,
                created_at=iso_time(e.stored_ts),
                updated_at=iso_time(e.updated_ts),
            )
            for e in page.documents
        ]
        return DocumentList(
            documents=documents, next=encode_cursor(page.documents[-1]) if page.more and page.documents else None
        )

    @router.get(
        "/search",
        operation_id="search",
        summary="Find the documents that answer a query (for ChatGPT connectors and deep research)",
        response_model=SearchResults,
        responses=_errors(422, 502),
        openapi_extra=tool_hints(title="Search documents", read_only=True),
    )
    async def search(query: SearchText, retriever: RetrieverDep, tenant: Tenant) -> SearchResults:
        """Find the documents most relevant to a query, best first: their ids (to pass to fetch), titles and urls."""
        if not query.strip():
            raise HTTPException(422, "query is blank: say what to look for")
        try:
            return await search_documents(retriever, query, tenant)
        except EmbeddingError as exc:
            raise HTTPException(502, f"embedding failed: {exc}") from exc

    @router.get(
        "/fetch",
        operation_id="fetch",
        summary="Fetch a whole document by the id search gave",
        response_model=FetchedDocument,
        responses=_errors(404),
        openapi_extra=tool_hints(title="Fetch a document", read_only=True),
    )
    async def fetch(request: Request, document_id: FetchId, retriever: RetrieverDep, tenant: Tenant) -> FetchedDocument:
        """Fetch one document whole: its title, full text, url and metadata."""
        limit = request.app.state.settings.max_response_chars - RESPONSE_MARGIN
        document = await fetch_document(retriever, document_id, tenant, max_chars=limit)
        if document is None:
            raise HTTPException(404, f"no document with id {document_id!r}")
        return document

    @router.get(
        "/documents/{document_id}",
        operation_id="getDocument",
        summary="Fetch a document's chunks by id",
        response_model=DocumentResponse,
        responses=_errors(404),
        openapi_extra=tool_hints(title="Get a document's chunks", read_only=True),
    )
    async def get_document(document_id: DocumentId, retriever: RetrieverDep, tenant: Tenant) -> DocumentResponse:
        """Fetch all chunks of one document, in order, each with its metadata (fetch gives the whole text at once)."""
        chunks = await retriever.store.get_document(document_id, tenant)
        if not chunks:
            raise HTTPException(404, f"no document with id {document_id!r}")
        return DocumentResponse(document_id=document_id, chunks=chunks)

    @router.delete(
        "/delete",
        operation_id="deleteDocuments",
        summary="Delete documents",
        response_model=DeleteResponse,
        responses=_errors(400, 422),
        include_in_schema=False,
        openapi_extra=tool_hints(title="Delete documents", read_only=False, destructive=True, idempotent=True),
    )
    async def delete(body: DeleteRequest, retriever: RetrieverDep, tenant: Tenant) -> DeleteResponse:
        """Delete documents by id, the chunks matching a filter, or everything (delete_all)."""
        tree = to_tree(body.filter)
        if not body.ids and tree is None and not body.delete_all:
            raise HTTPException(400, "name what to delete: ids, a non-empty filter, or delete_all: true")
        await retriever.store.delete(
            ids=body.ids or None,
            filter=tree,
            delete_all=bool(body.delete_all),
            tenant=tenant,
        )
        return DeleteResponse(success=True)

    return router


def setup(
    context: PluginContext,
    *,
    embedder: Embedder | None = None,
    store: VectorStore | None = None,
    tokenizer: Tokenizer | None = None,
) -> None:
    """The retriever over the configured store and embedder (or the parts given), and the routes --memory asks for."""
    settings = context.settings
    assert isinstance(settings, RetrievalSettings)
    if settings.tenancy == "per-user" and context.auth.kind not in ("user_http", "oauth"):
        raise ValueError("tenancy per-user needs an auth method that identifies users: user_http or oauth")
    retriever = Retriever(
        store or build_store(settings.store, settings),
        embedder or build_embedder(settings),
        tokenizer or minilm_tokenizer(),
        chunk_tokens=settings.chunk_tokens,
        chunk_overlap=settings.chunk_overlap,
        max_chunks_per_document=settings.max_chunks_per_document,
        query_batch_wait_s=settings.query_batch_wait_ms / 1000 if settings.query_batching else None,
        query_batch_max=settings.query_batch_max,
    )

    async def open_store() -> None:
        opening = retriever.begin_open()
        # A store that opens within the wait fails start-up as before when it cannot open (another model, say);
        # a large index loads on while the server answers, and readiness says so.
        done, _ = await asyncio.wait({opening}, timeout=settings.store_open_wait_s)
        if done:
            opening.result()

    context.on_startup(open_store)
    context.on_shutdown(retriever.close)
    context.add_readiness_check("store", retriever.ready)
    context.add_metrics_hook(lambda: update_index_gauges(retriever.store))
    context.routers.append(build_router(settings.memory))
    upload = settings.max_upload_bytes
    context.info.manifest = retrieval_manifest(settings.memory)
    context.info.description = MEMORY_DESCRIPTION_FOR_MODEL if settings.memory else DESCRIPTION_FOR_MODEL
    context.info.body_limits = {
        "/upsert-file": upload + MB,  # multipart framing; the file itself is held to the limit exactly
        "/upsert-file-json": upload * 4 // 3 + MB,
        "/upsert": max(settings.max_body_bytes, upload),
    }
    context.state["retriever"] = retriever
    context.state["database"] = context.database


plugin = Plugin(
    "Retrieval Plugin",
    "Search through your documents.",
    description_for_model=DESCRIPTION_FOR_MODEL,
    name_for_model="retrieval",
    settings=RetrievalSettings,
    setup=setup,
    database="retrieval_auth",
    contact_email="legal@plugkit.dev",
    title="Retrieval Plugin",
    logo_letter="R",
    logo_rgb=(106, 61, 154),
    legal_text="This plugin stores the documents you send it, and their embeddings, until you delete them.",
    options={
        name: name.replace("-", "_") for name in ("store", "store-url", "collection", "embedder", "memory", "tenancy")
    },
)


def create_app(
    settings: RetrievalSettings | None = None,
    *,
    embedder: Embedder | None = None,
    store: VectorStore | None = None,
    tokenizer: Tokenizer | None = None,
    auth: AuthMethod | None = None,
) -> FastAPI:
    """The retrieval plugin app (settings from the environment when none are given). Parts may be injected."""
    if embedder is None and store is None and tokenizer is None:
        return plugin.create_app(settings, auth=auth)
    with_parts = partial(setup, embedder=embedder, store=store, tokenizer=tokenizer)
    return plugin.with_setup(with_parts).create_app(settings, auth=auth)
