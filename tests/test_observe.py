"""The request log line, the request id and the request metrics, in-process."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY

from plugkit.plugins.todo.app import create_app as todo_app
from plugkit.plugins.todo.settings import TodoSettings
from tests.helpers import asgi_client
from tests.test_app import sample_app

SERVICE_TOKEN = "Zq8vK2mN4pL7xR1tW9yB3cF6hJ0dG5sA"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def request_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "plugkit.request"]


async def test_every_response_carries_a_request_id_and_a_callers_own_is_kept() -> None:
    async with asgi_client(sample_app()) as client:
        made = await client.post("/echo", json={"text": "a"})
        kept = await client.post("/echo", json={"text": "a"}, headers={"X-Request-ID": "trace-42.a"})
        unsafe = await client.post("/echo", json={"text": "a"}, headers={"X-Request-ID": "bad id\twith spaces"})
    assert len(made.headers["x-request-id"]) == 20
    assert kept.headers["x-request-id"] == "trace-42.a"
    assert unsafe.headers["x-request-id"] != "bad id\twith spaces" and len(unsafe.headers["x-request-id"]) == 20


async def test_one_line_per_request_names_method_route_operation_status_duration_client_and_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="plugkit.request"):
        async with asgi_client(sample_app()) as client:
            answer = await client.get("/big?size=3", headers={"X-Request-ID": "r-1"})
    (line,) = request_lines(caplog)
    fields = getattr(line, "http")  # noqa: B009
    assert fields["method"] == "GET" and fields["path"] == "/big" and fields["route"] == "/big"
    assert fields["operation_id"] == "big" and fields["status"] == answer.status_code == 200
    assert fields["client"] == "127.0.0.1" and fields["request_id"] == "r-1"
    assert 0 < fields["duration_ms"] < 10_000
    assert 'GET /big" 200' in line.getMessage() and "size=3" not in line.getMessage()


async def test_requests_refused_before_routing_are_logged_and_counted_under_their_operation(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = TodoSettings(data_dir=tmp_path, auth="service_http", service_token=SERVICE_TOKEN)
    refused_before = sample("plugkit_rejections_total", reason="auth")
    listed_before = sample("plugkit_requests_total", operation="getTodos", status="401")
    with caplog.at_level(logging.INFO, logger="plugkit.request"):
        async with asgi_client(todo_app(settings)) as client:
            denied = await client.get("/todos/alice", headers={"Authorization": "Bearer wrong-token-123"})
            allowed = await client.get("/todos/alice", headers={"Authorization": f"Bearer {SERVICE_TOKEN}"})
            missing = await client.get("/no/such/path")
    assert (denied.status_code, allowed.status_code, missing.status_code) == (401, 200, 404)
    assert sample("plugkit_rejections_total", reason="auth") == refused_before + 1
    assert sample("plugkit_requests_total", operation="getTodos", status="401") == listed_before + 1
    lines = [getattr(r, "http") for r in request_lines(caplog)]  # noqa: B009
    assert [(f["operation_id"], f["status"]) for f in lines] == [
        ("getTodos", 401),
        ("getTodos", 200),
        ("unmatched", 404),
    ]
    logged = "\n".join(r.getMessage() + str(r.__dict__) for r in caplog.records)
    assert SERVICE_TOKEN not in logged and "wrong-token-123" not in logged


async def test_requests_are_counted_and_timed_by_operation_and_status() -> None:
    ok = sample("plugkit_requests_total", operation="echo", status="200")
    bad = sample("plugkit_requests_total", operation="echo", status="422")
    timed = sample("plugkit_request_duration_seconds_count", operation="echo")
    async with asgi_client(sample_app()) as client:
        for _ in range(3):
            await client.post("/echo", json={"text": "a"})
        await client.post("/echo", json={"wrong": "a"})
    assert sample("plugkit_requests_total", operation="echo", status="200") == ok + 3
    assert sample("plugkit_requests_total", operation="echo", status="422") == bad + 1
    assert sample("plugkit_request_duration_seconds_count", operation="echo") == timed + 4
    assert sample("plugkit_requests_in_flight") == 0


async def test_rate_limited_requests_are_counted_as_rejections() -> None:
    before = sample("plugkit_rejections_total", reason="rate_limit")
    async with asgi_client(sample_app(rate_limit_per_minute=1, rate_limit_exempt=[])) as client:
        statuses = [(await client.get("/logo.png")).status_code for _ in range(3)]
    assert statuses == [200, 429, 429]
    assert sample("plugkit_rejections_total", reason="rate_limit") == before + 2


async def test_the_request_log_can_be_turned_off(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="plugkit.request"):
        async with asgi_client(sample_app(access_log=False)) as client:
            assert (await client.get("/logo.png")).status_code == 200
    assert request_lines(caplog) == []


async def test_a_path_with_control_characters_cannot_forge_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="plugkit.request"):
        async with asgi_client(sample_app()) as client:
            await client.get(httpx.URL("/x%0Afake%20line"))
    (line,) = request_lines(caplog)
    assert "\n" not in line.getMessage() and "\\x0a" in line.getMessage()
