"""Reading documents for ingestion: files, folders, .zip archives (guarded against zip bombs), and the original
retrieval plugin scripts' .json (a list of documents) and .jsonl (one document per line) formats.

Ids are derived from where a document comes from (a file's path below the argument, an archive member's name, or a
JSON document's own id, else a hash of its text), so ingesting the same input twice replaces rather than duplicates.
A document's `source_id` starts with the name of the file it came from (a JSON document without one gets
`<file>#<id>`), which is how a sync (`plan_sync`) knows the documents a folder made: their `source_id` starts with
the folder's name. Each synced document carries a `content_hash` metadata key, so an unchanged one is not re-embedded.
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from plugkit.plugins.retrieval.models import Document, DocumentMetadata, with_links
from plugkit.plugins.retrieval.parsing import FileError, extract

META_FIELDS = ("source", "source_id", "url", "created_at", "author")
HASH_KEY = "content_hash"  # the custom metadata key a sync keeps each document's content hash in
_RECORD_SUFFIX = re.compile(r"(\[\d+\]|:\d+)$")


@dataclass(frozen=True)
class ZipLimits:
    max_total_bytes: int = 1024 * 1024 * 1024
    max_ratio: int = 100
    max_members: int = 100_000


class IngestError(ValueError):
    """An input that cannot be read; `origin` names it."""

    def __init__(self, origin: str, message: str) -> None:
        super().__init__(f"{origin}: {message}")
        self.origin = origin


@dataclass(frozen=True)
class Item:
    """One document to store, or one input that failed (`error`)."""

    origin: str
    document: Document | None = None
    error: str | None = None


def stable_id(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]


def _merge(base: DocumentMetadata | None, extra: dict[str, Any]) -> DocumentMetadata:
    data = (base or DocumentMetadata()).model_dump(exclude_none=True)
    data.update({k: v for k, v in extra.items() if v is not None})
    return DocumentMetadata.model_validate(data)


def documents_from_json(value: Any, origin: str, extra: dict[str, Any], file: str | None = None) -> Iterator[Item]:
    """Documents in the original scripts' shape: {id?, text, source?, source_id?, url?, created_at?, author?}
    (a `metadata` object is read too). From a `file`, a document without a source_id gets `<file>#<id>`."""
    records = value if isinstance(value, list) else [value]
    for n, record in enumerate(records):
        where = f"{origin}[{n}]"
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            yield Item(where, error="not a document: needs a string field 'text'")
            continue
        if not record["text"].strip():
            yield Item(where, error="the document's text is empty")
            continue
        doc_id = str(record["id"]) if record.get("id") not in (None, "") else stable_id("text", record["text"])
        try:
            fields = {k: record[k] for k in META_FIELDS if record.get(k) is not None}
            if record.get("metadata"):
                metadata = _merge(DocumentMetadata.model_validate(record["metadata"]), {**fields, **extra})
            else:  # what _merge gives over empty metadata, validated once (ingest reads many such lines)
                merged = {k: v for k, v in {**fields, **extra}.items() if v is not None}
                metadata = DocumentMetadata.model_validate(merged)
            if file is not None and metadata.source_id is None:
                metadata.source_id = f"{file}#{doc_id}"
        except ValidationError as exc:
            yield Item(where, error=f"bad metadata: {exc.errors()[0]['msg']}")
            continue
        yield Item(where, Document(id=doc_id, text=record["text"], metadata=metadata))


def _is_document_list(value: Any) -> bool:
    records = value if isinstance(value, list) else [value]
    return bool(records) and all(isinstance(r, dict) and isinstance(r.get("text"), str) for r in records)


def document_from_bytes(
    data: bytes, name: str, extra: dict[str, Any], modified: datetime | None = None
) -> Iterator[Item]:
    """The documents of one file's bytes: JSON/JSONL in the scripts' format, else the file's extracted text."""
    suffix = Path(name).suffix.lower()
    if suffix == ".jsonl":
        for line_no, line in enumerate(data.decode("utf-8-sig", errors="replace").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except ValueError as exc:
                yield Item(f"{name}:{line_no}", error=f"not JSON: {exc}")
                continue
            yield from documents_from_json(value, f"{name}:{line_no}", extra, name)
        return
    if suffix == ".json":
        try:
            value = json.loads(data.decode("utf-8-sig"))
        except (ValueError, UnicodeDecodeError):
            value = None
        if value is not None and _is_document_list(value):
            yield from documents_from_json(value, name, extra, name)
            return
    try:
        found = extract(data, name)
    except FileError as exc:
        yield Item(name, error=f"{exc} (type found: {exc.kind})")
        return
    if not found.text.strip():
        yield Item(name, error="no text to index")
        return
    defaults: dict[str, Any] = {"source": "file", "source_id": name}
    if modified is not None:
        defaults["created_at"] = modified.isoformat()
    try:
        metadata = _merge(DocumentMetadata.model_validate(defaults), extra)
        # one custom key kept free for the content hash a sync adds
        metadata = DocumentMetadata.model_validate(
            with_links(metadata.model_dump(exclude_none=True), found.links, spare_keys=1)
        )
    except ValidationError as exc:
        yield Item(name, error=f"bad metadata: {exc.errors()[0]['msg']}")
        return
    yield Item(name, Document(id=stable_id("file", name), text=found.text, metadata=metadata))


def read_zip(path: Path, name: str, extra: dict[str, Any], limits: ZipLimits) -> Iterator[Item]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        yield Item(name, error=f"not a readable zip archive: {exc}")
        return
    with archive:
        members = [i for i in archive.infolist() if not i.is_dir() and not Path(i.filename).name.startswith(".")]
        total = sum(i.file_size for i in members)
        compressed = sum(i.compress_size for i in members)
        if len(members) > limits.max_members:
            yield Item(name, error=f"the archive has {len(members)} files, over the limit of {limits.max_members}")
            return
        if total > limits.max_total_bytes or total > limits.max_ratio * max(compressed, 1):
            yield Item(name, error=f"the archive expands to {total} bytes from {compressed}: refused as a zip bomb")
            return
        for info in members:
            member = f"{name}/{info.filename}"
            with archive.open(info) as fh:
                data = fh.read(info.file_size + 1)
            if len(data) > info.file_size:  # the header lied about the size
                yield Item(member, error="the member is larger than its header says: refused")
                continue
            modified = datetime(*info.date_time, tzinfo=UTC)
            yield from document_from_bytes(data, member, extra, modified)


def iter_documents(
    paths: list[Path], extra: dict[str, Any] | None = None, limits: ZipLimits | None = None
) -> Iterator[Item]:
    """Every document in `paths` (files, folders, zip archives), or the error of each input that fails."""
    extra, limits = extra or {}, limits or ZipLimits()
    for root in paths:
        if not root.exists():
            yield Item(str(root), error="no such file or folder")
            continue
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for file in files:
            relative = file.relative_to(root.parent) if root.is_dir() else Path(file.name)
            if any(part.startswith(".") for part in relative.parts):
                continue
            name = relative.as_posix()
            if file.suffix.lower() == ".zip":
                yield from read_zip(file, name, extra, limits)
                continue
            modified = datetime.fromtimestamp(file.stat().st_mtime, tz=UTC)
            yield from document_from_bytes(file.read_bytes(), name, extra, modified)


def content_hash(document: Document) -> str:
    """A hash of a document's text and metadata (its file time and earlier hash left out): equal when re-reading
    an unchanged file."""
    metadata = (document.metadata or DocumentMetadata()).model_dump(mode="json", exclude_none=True)
    metadata.pop("created_at", None)
    metadata.pop(HASH_KEY, None)
    return hashlib.sha256(json.dumps([document.text, metadata], sort_keys=True).encode()).hexdigest()[:32]


def sync_prefix(root: Path) -> str:
    """The `source_id` prefix of the documents read from `root` (a folder's name and `/`, a file's name)."""
    return f"{root.resolve().name}/" if root.is_dir() else root.name


@dataclass(frozen=True)
class StoredDocument:
    """What a sync needs of a stored document."""

    id: str
    source_id: str | None
    content_hash: str | None


@dataclass
class SyncPlan:
    """What a sync does: documents to send (added and updated), ids to delete, and what it leaves alone."""

    send: list[Document] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    failed: list[Item] = field(default_factory=list)


def plan_sync(items: Iterable[Item], stored: Iterable[StoredDocument], prefixes: list[str]) -> SyncPlan:
    """Compare what the paths hold now with what the store holds under their prefixes: new documents are added,
    changed ones (another content hash) updated, the others left alone; stored documents under a prefix that the
    paths no longer hold are deleted, except those of a file that failed to read this time."""
    plan = SyncPlan()
    known = {s.id: s for s in stored}
    seen: set[str] = set()
    for item in items:
        if item.document is None:
            plan.failed.append(item)
            continue
        document = item.document
        digest = content_hash(document)
        metadata = (document.metadata or DocumentMetadata()).model_dump(exclude_none=True)
        document = document.model_copy(
            update={"metadata": DocumentMetadata.model_validate({**metadata, HASH_KEY: digest})}
        )
        doc_id = document.id or ""
        seen.add(doc_id)
        before = known.get(doc_id)
        if before is None:
            plan.added.append(doc_id)
            plan.send.append(document)
        elif before.content_hash != digest:
            plan.updated.append(doc_id)
            plan.send.append(document)
        else:
            plan.unchanged.append(doc_id)
    failed_files = [_RECORD_SUFFIX.sub("", item.origin) for item in plan.failed]
    for before_now in known.values():
        source = before_now.source_id or ""
        if before_now.id in seen or not any(source.startswith(prefix) for prefix in prefixes):
            continue
        if any(
            source == name or source.startswith(f"{name}#") or source.startswith(f"{name}/") for name in failed_files
        ):
            continue
        plan.delete.append(before_now.id)
    return plan
