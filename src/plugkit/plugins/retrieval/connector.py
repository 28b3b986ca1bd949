"""The two tools ChatGPT's connectors and deep research call by name: `search` (a query in, documents out) and
`fetch` (a document id in, the whole document out). They answer with whole documents, where /query answers chunks."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from plugkit.plugins.retrieval.models import DocumentChunk, Query
from plugkit.plugins.retrieval.service import Retriever

SEARCH_RESULTS = 10  # documents a search returns
SEARCH_CHUNKS = 30  # chunks searched for them: a document may own several of the best chunks


class SearchResult(BaseModel):
    id: str = Field(description="The document's id, to pass to fetch")
    title: str
    url: str | None = Field(description="Where the document lives, to cite it; null when it has none")


class SearchResults(BaseModel):
    results: list[SearchResult] = Field(description="The most relevant documents, best first")


class FetchedDocument(BaseModel):
    id: str
    title: str
    text: str = Field(description="The whole document's text")
    url: str | None = Field(description="Where the document lives, to cite it; null when it has none")
    metadata: dict[str, Any] = Field(description="The document's metadata")


def _metadata(chunk: DocumentChunk) -> dict[str, Any]:
    return chunk.metadata.model_dump(mode="json", exclude_none=True)


def document_title(document_id: str, metadata: dict[str, Any]) -> str:
    """A document's title: its `title` metadata when it has one, else its source id, else its id."""
    for key in ("title", "source_id"):
        value = metadata.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return document_id


def join_chunks(texts: list[str], overlapping: bool) -> str:
    """A document's text from its chunks in order. Overlapping chunks repeat the end of the one before: each is
    joined at the longest end of the previous text it starts with, so the repeated part appears once."""
    joined = ""
    for text in texts:
        if not joined:
            joined = text
            continue
        shared = _overlap(joined, text) if overlapping else 0
        joined += text[shared:] if shared else " " + text
    return joined


def _overlap(before: str, text: str) -> int:
    """The length of the longest end of `before` that `text` starts with."""
    position = before.find(text[:1], max(0, len(before) - len(text)))
    while position != -1:
        if text.startswith(before[position:]):
            return len(before) - position
        position = before.find(text[:1], position + 1)
    return 0


async def search_documents(retriever: Retriever, query: str, tenant: str | None) -> SearchResults:
    """The documents owning the best chunks for `query` (hybrid search), best first, each once."""
    [found] = await retriever.query([Query(query=query, top_k=SEARCH_CHUNKS)], tenant)
    results: dict[str, SearchResult] = {}
    for hit in found.results:
        metadata = _metadata(hit)
        document_id = hit.metadata.document_id or (hit.id or "").rsplit("_", 1)[0]
        if document_id and document_id not in results:
            results[document_id] = SearchResult(
                id=document_id, title=document_title(document_id, metadata), url=hit.metadata.url
            )
        if len(results) == SEARCH_RESULTS:
            break
    return SearchResults(results=list(results.values()))


def _cut_to_fit(document: FetchedDocument, max_chars: int) -> FetchedDocument:
    """The document with its text cut (and saying so) when its JSON would pass `max_chars` characters."""
    full = document.text
    kept = len(full)
    over = len(document.model_dump_json()) - max_chars
    while over > 0 and kept > 0:
        kept = max(0, kept - over - 100)
        note = f"\n[the text is cut here: the first {kept} of its {len(full)} characters are shown]"
        document = document.model_copy(update={"text": full[:kept] + note})
        over = len(document.model_dump_json()) - max_chars
    return document


async def fetch_document(
    retriever: Retriever, document_id: str, tenant: str | None, max_chars: int | None = None
) -> FetchedDocument | None:
    """The whole document, or None when it does not exist (for this tenant). When its JSON would pass `max_chars`
    characters (the model host's response limit), the text is cut short and ends by saying so."""
    chunks = await retriever.store.get_document(document_id, tenant)
    if not chunks:
        return None
    metadata = _metadata(chunks[0])
    metadata.pop("document_id", None)
    document = FetchedDocument(
        id=document_id,
        title=document_title(document_id, metadata),
        text=join_chunks([c.text for c in chunks], overlapping=retriever.chunk_overlap > 0),
        url=chunks[0].metadata.url,
        metadata=metadata,
    )
    return document if max_chars is None else _cut_to_fit(document, max_chars)
