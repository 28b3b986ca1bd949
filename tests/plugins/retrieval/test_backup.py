"""A retrieval data directory backed up while the store is open restores whole (plugkit backup / restore)."""

from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner

from plugkit.cli import app
from plugkit.plugins.retrieval.app import create_app as retrieval_app
from plugkit.plugins.retrieval.chunking import HFTokenizer
from plugkit.plugins.retrieval.embeddings.local import LocalEmbedder
from plugkit.plugins.retrieval.settings import RetrievalSettings
from tests.helpers import asgi_client
from tests.test_schema import RELEASE_0_1_0

runner = CliRunner()


async def test_a_retrieval_store_backed_up_while_open_restores_with_its_documents_searchable(
    tmp_path: Path, embedder: LocalEmbedder, tokenizer: HFTokenizer
) -> None:
    live = Path(shutil.copytree(RELEASE_0_1_0, tmp_path / "live"))
    plugin = retrieval_app(RetrievalSettings(data_dir=live), embedder=embedder, tokenizer=tokenizer)
    async with asgi_client(plugin) as client:
        documents = [{"id": "new", "text": "Volcanoes erupt molten rock called lava."}]
        assert (await client.post("/upsert", json={"documents": documents})).status_code == 200
        result = runner.invoke(app, ["backup", str(tmp_path / "backup"), "--data-dir", str(live)])
        assert result.exit_code == 0, result.output
    restored = tmp_path / "restored"
    result = runner.invoke(app, ["restore", str(tmp_path / "backup"), "--data-dir", str(restored)])
    assert result.exit_code == 0, result.output
    plugin = retrieval_app(RetrievalSettings(data_dir=restored), embedder=embedder, tokenizer=tokenizer)
    async with asgi_client(plugin) as client:
        queries = [{"query": "lava", "top_k": 1, "mode": "dense"}, {"query": "honey", "top_k": 1, "mode": "keyword"}]
        found = (await client.post("/query", json={"queries": queries})).json()["results"]
    assert [r["results"][0]["id"] for r in found] == ["new_0", "doc1_0"]
