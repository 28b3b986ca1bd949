"""/metrics: Prometheus text for loopback clients or holders of the metrics token, nobody else."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from plugkit.metrics import MULTIPROC_ENV, count_oauth_grant, multiprocess_directory
from tests.helpers import PluginServer
from tests.test_app import sample_app

TOKEN = "m3tr1cs-T0ken-for-the-scraper-x9"


@asynccontextmanager
async def client_from(app: FastAPI, address: str) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=(address, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_a_loopback_client_reads_the_request_metrics_in_prometheus_text() -> None:
    async with client_from(sample_app(), "127.0.0.1") as client:
        await client.post("/echo", json={"text": "a"})
        answer = await client.get("/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    found = samples(answer.text)
    assert found[("plugkit_requests_total", (("operation", "echo"), ("status", "200")))] >= 1
    assert found[("plugkit_request_duration_seconds_count", (("operation", "echo"),))] >= 1
    assert ("plugkit_requests_in_flight", ()) in found


async def test_a_client_from_elsewhere_is_refused_without_the_token() -> None:
    async with client_from(sample_app(), "203.0.113.9") as client:
        answer = await client.get("/metrics")
    assert answer.status_code == 403 and "PLUGKIT_METRICS_TOKEN" in answer.json()["detail"]


async def test_a_request_a_local_proxy_forwarded_is_not_taken_for_a_loopback_client() -> None:
    async with client_from(sample_app(), "127.0.0.1") as client:
        answer = await client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
    assert answer.status_code == 403


async def test_with_a_token_set_only_its_holder_reads_the_metrics_from_anywhere() -> None:
    async with client_from(sample_app(metrics_token=TOKEN), "203.0.113.9") as client:
        missing = await client.get("/metrics")
        wrong = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN[:-1]}y"})
        right = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    async with client_from(sample_app(metrics_token=TOKEN), "127.0.0.1") as client:
        local = await client.get("/metrics")
    assert (missing.status_code, wrong.status_code, right.status_code, local.status_code) == (401, 401, 200, 401)
    assert missing.headers["www-authenticate"] == "Bearer"
    assert "plugkit_requests_total" in right.text


async def test_oauth_grants_counted_through_the_toolkit_api_show_by_grant_type() -> None:
    async with client_from(sample_app(), "127.0.0.1") as client:
        before = samples((await client.get("/metrics")).text)
        count_oauth_grant("refresh_token")
        after = samples((await client.get("/metrics")).text)
    key = ("plugkit_oauth_grants_total", (("grant_type", "refresh_token"),))
    assert after[key] == before.get(key, 0) + 1


@pytest.mark.slow
def test_a_two_worker_server_counts_every_workers_requests_and_logs_json(tmp_path: Path) -> None:
    server = PluginServer("todo", "--workers", "2", "--data-dir", str(tmp_path), env={"PLUGKIT_LOG_FORMAT": "json"})
    with server:
        for n in range(40):
            with httpx.Client(base_url=server.base_url) as client:  # a new connection each: either worker answers
                assert client.get("/todos/alice", headers={"X-Request-ID": f"req-{n}"}).status_code == 200
        found = samples(httpx.get(f"{server.base_url}/metrics").text)
        assert httpx.get(f"{server.base_url}/readyz").json() == {"status": "ready"}
    output = server.output()
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    requests = [line for line in lines if line["logger"] == "plugkit.request" and line["path"] == "/todos/alice"]
    assert sorted(r["request_id"] for r in requests) == sorted(f"req-{n}" for n in range(40))
    assert len({r["pid"] for r in requests}) == 2  # both workers answered
    assert found[("plugkit_requests_total", (("operation", "getTodos"), ("status", "200")))] == 40
    assert f"health {server.base_url}/healthz  ready {server.base_url}/readyz" in output  # serve printed the probe URLs


def test_several_workers_get_a_metrics_directory_of_their_own_removed_afterwards(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    with multiprocess_directory(1):
        assert MULTIPROC_ENV not in os.environ  # one worker keeps its metrics in memory
    with multiprocess_directory(2):
        made = Path(os.environ[MULTIPROC_ENV])
        assert made.is_dir()
    assert MULTIPROC_ENV not in os.environ and not made.exists()


def test_a_configured_metrics_directory_is_kept_and_emptied_of_the_last_runs_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    (tmp_path / "counter_123.db").write_bytes(b"old")
    (tmp_path / "notes.txt").write_text("mine")
    with multiprocess_directory(2):
        assert os.environ[MULTIPROC_ENV] == str(tmp_path)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    assert tmp_path.is_dir()
