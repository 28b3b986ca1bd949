"""The records the stores are given."""

from __future__ import annotations

from plugkit.plugins.retrieval.models import DocumentChunk, DocumentChunkMetadata
from plugkit.plugins.retrieval.stores.base import ChunkRecord


def test_a_chunk_record_holds_the_id_text_and_metadata_of_the_chunk_it_was_made_of() -> None:
    chunk = DocumentChunk(id="d_0", text="A text.", metadata=DocumentChunkMetadata(document_id="d", author="ada"))
    record = ChunkRecord.of(chunk, [1.0, 0.0])
    assert (record.id, record.text, record.metadata, record.embedding) == ("d_0", "A text.", chunk.metadata, [1.0, 0.0])
