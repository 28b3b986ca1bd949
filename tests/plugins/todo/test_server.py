"""What only a real `plugkit serve todo` process shows: persistence across restarts, concurrent writers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from tests.helpers import PluginServer


def test_a_restarted_server_still_has_its_todos(tmp_path: Path) -> None:
    with PluginServer("todo", "--data-dir", str(tmp_path)) as server:
        for text in ("persist me", "and me"):
            assert httpx.post(f"{server.base_url}/todos/alice", json={"todo": text}).status_code == 200
    with PluginServer("todo", "--data-dir", str(tmp_path)) as server:
        assert httpx.get(f"{server.base_url}/todos/alice").json()["todos"] == ["persist me", "and me"]
    assert (tmp_path / "todo.db").exists()


def test_concurrent_writers_on_two_workers_lose_nothing(tmp_path: Path) -> None:
    async def write_all(base_url: str) -> list[int]:
        limits = httpx.Limits(max_connections=32)
        async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as client:
            responses = await asyncio.gather(
                *(client.post(f"/todos/user{i % 4}", json={"todo": f"todo {i}"}) for i in range(200))
            )
            return [r.status_code for r in responses]

    with PluginServer("todo", "--data-dir", str(tmp_path), "--workers", "2") as server:
        statuses = asyncio.run(write_all(server.base_url))
        assert statuses == [200] * 200
        stored = [t for u in range(4) for t in httpx.get(f"{server.base_url}/todos/user{u}").json()["todos"]]
    assert sorted(stored) == sorted(f"todo {i}" for i in range(200))


def test_the_manifest_api_url_resolves_on_the_running_server(tmp_path: Path) -> None:
    with PluginServer("todo", "--data-dir", str(tmp_path)) as server:
        manifest = httpx.get(f"{server.base_url}/.well-known/ai-plugin.json").json()
        assert manifest["api"]["url"] == f"{server.base_url}/openapi.yaml"
        spec = httpx.get(manifest["api"]["url"])
        assert spec.status_code == 200 and spec.headers["content-type"].startswith("application/yaml")
