"""`plugkit ingest PATH...`: add files, folders, zip archives and .json/.jsonl documents to the retrieval plugin,
into the local store (`--data-dir`) or a running server (`--url`, `--token`)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from plugkit.cli.common import DataDirOpt, fail
from plugkit.plugins.retrieval.ingest import Item, iter_documents
from plugkit.plugins.retrieval.models import Document

Sender = Callable[[list[Document]], Awaitable[None]]
# Documents per write: large batches let the model sort many chunks by length (less padding); bench/scale.py measured
# 32 -> 128 taking ingest from 86% to 94% of the embedder's raw chunks/s.
DEFAULT_BATCH_SIZE = 128


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
    items: list[Item], send: Sender, batch_size: int, console: Console, in_flight: int = 2
) -> tuple[int, int]:
    """Send the documents in batches, `in_flight` batches at a time: one batch is chunked and written while the
    next is embedded, so the model never waits on the rest of the pipeline."""
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
        task = progress.add_task("", total=len(items))

        async def deliver(documents: list[Document]) -> int:
            await send(documents)
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

        try:
            for item in items:
                if item.document is None:
                    failed += 1
                    console.print(f"[yellow]skipped[/] {item.origin}: {item.error}")
                    progress.advance(task)
                    continue
                batch.append(item.document)
                progress.update(task, description=item.origin[-40:])
                if len(batch) >= batch_size:
                    await flush()
            await flush()
            await settle(0)
        finally:
            for unfinished in pending:
                unfinished.cancel()
    return ok, failed


async def _local_sender(data_dir: Path | None) -> tuple[Sender, Callable[[], Awaitable[None]]]:
    from plugkit.plugins.retrieval.chunking import minilm_tokenizer
    from plugkit.plugins.retrieval.embeddings import build_embedder
    from plugkit.plugins.retrieval.service import Retriever
    from plugkit.plugins.retrieval.settings import RetrievalSettings
    from plugkit.plugins.retrieval.stores import build_store
    from plugkit.settings import load_settings

    settings = load_settings(RetrievalSettings, data_dir=data_dir)
    retriever = Retriever(
        build_store(settings.store, settings),
        build_embedder(settings),
        minilm_tokenizer(),
        chunk_tokens=settings.chunk_tokens,
        chunk_overlap=settings.chunk_overlap,
        max_chunks_per_document=settings.max_chunks_per_document,
    )
    await retriever.open()

    async def send(documents: list[Document]) -> None:
        await retriever.upsert(documents)

    return send, retriever.close


async def _remote_sender(url: str, token: str | None) -> tuple[Sender, Callable[[], Awaitable[None]]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    client = httpx.AsyncClient(base_url=url.rstrip("/"), headers=headers, timeout=300)

    async def send(documents: list[Document]) -> None:
        body = {"documents": [d.model_dump(mode="json", exclude_none=True) for d in documents]}
        response = await client.post("/upsert", json=body)
        if response.status_code != 200:
            raise RuntimeError(f"the server answered {response.status_code}: {response.text[:500]}")

    return send, client.aclose


def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files, folders, .zip archives, .json/.jsonl document lists.")],
    url: Annotated[
        str | None, typer.Option("--url", help="A running retrieval plugin, e.g. http://127.0.0.1:5003")
    ] = None,
    token: Annotated[
        str | None, typer.Option("--token", envvar="PLUGKIT_INGEST_TOKEN", help="Bearer token for --url.")
    ] = None,
    data_dir: DataDirOpt = None,
    metadata: Annotated[str | None, typer.Option("--metadata", help="JSON metadata added to every document.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Documents per write.")] = DEFAULT_BATCH_SIZE,
) -> None:
    """Add documents; ids come from their paths (or their own ids), so running it twice adds nothing twice."""
    if url and data_dir:
        fail("give --url (a running server) or --data-dir (the local store), not both")
    extra = _parse_metadata(metadata)
    console = Console(stderr=True)
    items = list(iter_documents(paths, extra))

    async def main() -> tuple[int, int]:
        send, close = await (_remote_sender(url, token) if url else _local_sender(data_dir))
        try:
            return await _run(items, send, batch_size, console)
        finally:
            await close()

    try:
        ok, failed = asyncio.run(main())
    except (RuntimeError, httpx.HTTPError, ValueError) as exc:
        fail(str(exc), code=1)
        return
    typer.echo(f"{ok} documents ingested, {failed} skipped")
    raise typer.Exit(1 if failed else 0)
