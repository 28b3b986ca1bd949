"""`plugkit ingest PATH...`: add files, folders, zip archives and .json/.jsonl documents to the retrieval plugin,
into the local store (`--data-dir`) or a running server (`--url`, `--token`); `--sync` makes the store follow the
paths: unchanged documents are skipped without re-embedding, changed ones replaced, vanished ones deleted."""

from __future__ import annotations

import asyncio
import gc
import json
import os
from collections.abc import Awaitable, Callable, Iterable, Sized
from pathlib import Path
from typing import Annotated, Any, NamedTuple

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from plugkit.cli.common import DataDirOpt, fail
from plugkit.plugins.retrieval.embeddings.base import Embedder
from plugkit.plugins.retrieval.ingest import (
    HASH_KEY,
    Item,
    StoredDocument,
    SyncPlan,
    iter_documents,
    plan_sync,
    sync_prefix,
)
from plugkit.plugins.retrieval.models import Document

Sender = Callable[[list[Document]], Awaitable[None]]
# Documents per write: large batches let the model sort many chunks by length (less padding); bench/scale.py measured
# 32 -> 128 taking ingest from 86% to 94% of the embedder's raw chunks/s.
DEFAULT_BATCH_SIZE = 128
IN_FLIGHT = 3  # writes in flight: one chunked, one embedded, one stored
# On a GPU: more writes in flight and fewer chunking processes, leaving cores to the one process that builds and
# writes the rows (on an H200, 16 cores: 10 workers and 6 in flight ingested 7,190 chunks/s against 6,365 with 14 and
# 3; 5,888 against 5,549 and 5,740 against 5,314 in earlier runs; bench/results/gpu.json).
GPU_IN_FLIGHT = 6
GPU_SPARE_CORES = 6


class Pace(NamedTuple):
    """How the command feeds a target: documents per write, and writes in flight at once."""

    per_write: int
    in_flight: int = IN_FLIGHT


def documents_per_write(embedder: Embedder) -> int:
    """Documents per write when --batch-size is not given: DEFAULT_BATCH_SIZE, or on a CUDA embedder at least its
    GPU batch size (every document is one chunk or more, so each write fills at least one batch of the GPU)."""
    from plugkit.plugins.retrieval.embeddings.local import LocalEmbedder

    if isinstance(embedder, LocalEmbedder) and _on_gpu(embedder):  # isinstance again: for mypy
        return max(DEFAULT_BATCH_SIZE, embedder.batch_size)
    return DEFAULT_BATCH_SIZE


def _on_gpu(embedder: Embedder) -> bool:
    from plugkit.plugins.retrieval.embeddings.local import LocalEmbedder

    return isinstance(embedder, LocalEmbedder) and embedder.device.startswith("cuda")


def writes_in_flight(embedder: Embedder) -> int:
    """Writes in flight at once: GPU_IN_FLIGHT on a CUDA embedder, else IN_FLIGHT."""
    return GPU_IN_FLIGHT if _on_gpu(embedder) else IN_FLIGHT


def chunk_workers(embedder: Embedder) -> int:
    """Processes that chunk and tokenise for the local store's writes: on a CUDA embedder all cores but
    GPU_SPARE_CORES (the event loop, the GPU's feeder, the store's writer and the keyword indexing keep those; one
    core chunks about 2,000 chunks/s), at least one; else none (on a CPU the model is the bound and chunking in the
    loop's thread costs a few percent of it)."""
    if _on_gpu(embedder):
        return max(1, (os.cpu_count() or 1) - GPU_SPARE_CORES)
    return 0


def _parse_metadata(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        fail(f"--metadata is not valid JSON: {exc}")
    if not isinstance(value, dict):
        fail('--metadata must be a JSON object, e.g. \'{"author": "Ada"}\'')
    return value


async def _run(
    items: Iterable[Item], send: Sender, batch_size: int, console: Console, in_flight: int = IN_FLIGHT
) -> tuple[int, int]:
    """Send the documents in batches, `in_flight` batches at a time: while one batch is embedded, the one before is
    written and the one after chunked, so the model never waits on the rest of the pipeline. `items` may be read as
    they come (a generator: the files are then parsed while the first batches are on their way, rather than all of
    them before the first; the progress bar learns its total when the last is read)."""
    ok = failed = 0
    batch: list[Document] = []
    pending: set[asyncio.Task[int]] = set()
    with Progress(
        TextColumn("[bold]ingest"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("", total=len(items) if isinstance(items, Sized) else None)
        read = 0
        frozen = False

        async def deliver(documents: list[Document]) -> int:
            nonlocal frozen
            await send(documents)
            if not frozen:
                # The first write is done: the model and every module are loaded, some 580,000 objects that each full
                # collection would walk again, holding the GIL (0.34-0.42 s of an ingest of 37,056 chunks here).
                # Frozen, they are left out of the collector's walks; still freed by their counts as ever.
                # (gc.get_freeze_count() walks them all: not a test to make a write.)
                gc.freeze()
                frozen = True
            progress.advance(task, len(documents))
            return len(documents)

        async def settle(wait_for: int) -> None:
            """Wait until at most `wait_for` batches are in flight; a failed batch raises its error."""
            nonlocal ok
            while len(pending) > wait_for:
                done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for finished in done:
                    pending.discard(finished)
                    ok += finished.result()

        async def flush() -> None:
            if batch:
                await settle(in_flight - 1)
                pending.add(asyncio.create_task(deliver(list(batch))))
                batch.clear()
                await asyncio.sleep(0)  # the batch starts now, while the next ones are read

        try:
            for item in items:
                read += 1
                if item.document is None:
                    failed += 1
                    console.print(f"[yellow]skipped[/] {item.origin}: {item.error}")
                    progress.advance(task)
                    continue
                batch.append(item.document)
                progress.update(task, description=item.origin[-40:])
                if len(batch) >= batch_size:
                    await flush()
            progress.update(task, total=read)
            await flush()
            await settle(0)
        finally:
            for unfinished in pending:
                unfinished.cancel()
    return ok, failed


Lister = Callable[[], Awaitable[list[StoredDocument]]]
Deleter = Callable[[list[str]], Awaitable[None]]
LIST_PAGE = 100


async def _local_sender(data_dir: Path | None) -> tuple[Sender, Callable[[], Awaitable[None]]]:
    send, close, _, _, _ = await _local_target(data_dir)
    return send, close


Target = tuple[Sender, Callable[[], Awaitable[None]], Lister, Deleter, Pace]  # ..., the pace it suits


async def _local_target(data_dir: Path | None) -> Target:
    from plugkit.plugins.retrieval.chunking import minilm_tokenizer
    from plugkit.plugins.retrieval.device import resolve_device
    from plugkit.plugins.retrieval.embeddings import build_embedder
    from plugkit.plugins.retrieval.service import Retriever
    from plugkit.plugins.retrieval.settings import RetrievalSettings
    from plugkit.plugins.retrieval.stores import build_store
    from plugkit.settings import load_settings

    # No lone queries come here: the ONNX model they would take is not exported or loaded (its first export took
    # about 4 s of CPU beside the ingest on two cores).
    settings = load_settings(RetrievalSettings, data_dir=data_dir, embed_query_backend="torch")
    if settings.ann_training == "auto" and resolve_device(settings.embed_device) != "cpu":
        # On a GPU the chunk pool and the model keep the cores busy to the last write: the IVF index is searched
        # from the close, its vectors added on the cores the writes leave idle (nice 19) and the rest at the close
        # (a training that took up the writes made beside it ran from 4.2 s to 8.6 s of a 9.6 s ingest on an H200,
        # then the close added the 50,000 written meanwhile: bench/results/gpu.json).
        settings = settings.model_copy(update={"ann_training": "at_close"})
    embedder = build_embedder(settings)
    retriever = Retriever(
        build_store(settings.store, settings),
        embedder,
        minilm_tokenizer(),
        chunk_tokens=settings.chunk_tokens,
        chunk_overlap=settings.chunk_overlap,
        max_chunks_per_document=settings.max_chunks_per_document,
        chunk_workers=chunk_workers(embedder),
    )
    # The store only: the model loads on the first document to embed, so a sync with nothing to do never loads it.
    await retriever.store.open(retriever.store_info)

    async def send(documents: list[Document]) -> None:
        await retriever.upsert(documents)

    async def listing() -> list[StoredDocument]:
        found: list[StoredDocument] = []
        after: tuple[float, str] | None = None
        while True:
            page = await retriever.store.list_documents(None, None, LIST_PAGE, after)
            found += [
                StoredDocument(e.document_id, e.metadata.source_id, e.metadata.custom.get(HASH_KEY))
                for e in page.documents
            ]
            if not page.more or not page.documents:
                return found
            after = (page.documents[-1].updated_ts, page.documents[-1].document_id)

    async def delete(ids: list[str]) -> None:
        if ids:
            await retriever.store.delete(ids=ids)

    embedder = retriever.embedder
    return send, retriever.close, listing, delete, Pace(documents_per_write(embedder), writes_in_flight(embedder))


async def _remote_sender(url: str, token: str | None) -> tuple[Sender, Callable[[], Awaitable[None]]]:
    send, close, _, _, _ = await _remote_target(url, token)
    return send, close


async def _remote_target(url: str, token: str | None) -> Target:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    client = httpx.AsyncClient(base_url=url.rstrip("/"), headers=headers, timeout=300)

    def check(response: httpx.Response) -> httpx.Response:
        if response.status_code != 200:
            raise RuntimeError(f"the server answered {response.status_code}: {response.text[:500]}")
        return response

    async def send(documents: list[Document]) -> None:
        body = {"documents": [d.model_dump(mode="json", exclude_none=True) for d in documents]}
        check(await client.post("/upsert", json=body))

    async def listing() -> list[StoredDocument]:
        found: list[StoredDocument] = []
        params: dict[str, Any] = {"limit": LIST_PAGE}
        while True:
            page = check(await client.get("/documents", params=params)).json()
            found += [
                StoredDocument(d["id"], d["metadata"].get("source_id"), d["metadata"].get(HASH_KEY))
                for d in page["documents"]
            ]
            if not page.get("next"):
                return found
            params["after"] = page["next"]

    async def delete(ids: list[str]) -> None:
        for start in range(0, len(ids), 500):
            check(await client.request("DELETE", "/delete", json={"ids": ids[start : start + 500]}))

    # the server's device is unknown from here: the CPU's size (the server batches its own GPU work)
    return send, client.aclose, listing, delete, Pace(DEFAULT_BATCH_SIZE)


def _summary(plan: SyncPlan) -> str:
    return (
        f"sync: {len(plan.added)} added, {len(plan.updated)} updated, {len(plan.unchanged)} unchanged,"
        f" {len(plan.delete)} deleted, {len(plan.failed)} failed"
    )


def ingest(
    paths: Annotated[
        list[Path],
        typer.Argument(metavar="PATH", help="Files, folders, .zip archives, .json/.jsonl document lists."),
    ],
    url: Annotated[
        str | None, typer.Option("--url", help="A running retrieval plugin, e.g. http://127.0.0.1:5003")
    ] = None,
    token: Annotated[
        str | None, typer.Option("--token", envvar="PLUGKIT_INGEST_TOKEN", help="Bearer token for --url.")
    ] = None,
    data_dir: DataDirOpt = None,
    metadata: Annotated[str | None, typer.Option("--metadata", help="JSON metadata added to every document.")] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            min=1,
            help=f"Documents per write (default {DEFAULT_BATCH_SIZE}; into the local store on a CUDA embedder, its GPU"
            " batch size).",
            show_default=False,
        ),
    ] = None,
    sync: Annotated[
        bool,
        typer.Option(
            "--sync",
            help="Make the store follow the paths: skip unchanged documents (content hash), replace changed ones,"
            " delete those of these folders that are gone.",
        ),
    ] = False,
) -> None:
    """Add documents; ids come from their paths (or their own ids), so running it twice adds nothing twice."""
    if url and data_dir:
        fail("give --url (a running server) or --data-dir (the local store), not both")
    extra = _parse_metadata(metadata)
    console = Console(stderr=True)
    if sync:
        _sync([p.resolve() for p in paths], extra, url, token, data_dir, batch_size, console)
        return
    items = iter_documents(paths, extra)  # read as the batches go

    async def main() -> tuple[int, int]:
        send, close, _, _, pace = await (_remote_target(url, token) if url else _local_target(data_dir))
        try:
            return await _run(items, send, batch_size or pace.per_write, console, pace.in_flight)
        finally:
            await close()

    try:
        ok, failed = asyncio.run(main())
    except (RuntimeError, httpx.HTTPError, ValueError) as exc:
        fail(str(exc), code=1)
        return
    typer.echo(f"{ok} documents ingested, {failed} skipped")
    raise typer.Exit(1 if failed else 0)


def _sync(
    paths: list[Path],
    extra: dict[str, Any],
    url: str | None,
    token: str | None,
    data_dir: Path | None,
    batch_size: int | None,
    console: Console,
) -> None:
    items = list(iter_documents(paths, extra))
    prefixes = [sync_prefix(p) for p in paths if p.exists()]

    async def main() -> SyncPlan:
        send, close, listing, delete, pace = await (_remote_target(url, token) if url else _local_target(data_dir))
        try:
            plan = plan_sync(items, await listing(), prefixes)
            for item in plan.failed:
                console.print(f"[yellow]failed[/] {item.origin}: {item.error}")
            if plan.send:
                sent = [Item(d.id or "", d) for d in plan.send]
                await _run(sent, send, batch_size or pace.per_write, console, pace.in_flight)
            await delete(plan.delete)
            return plan
        finally:
            await close()

    try:
        plan = asyncio.run(main())
    except (RuntimeError, httpx.HTTPError, ValueError) as exc:
        fail(str(exc), code=1)
        return
    typer.echo(_summary(plan))
    raise typer.Exit(1 if plan.failed else 0)
