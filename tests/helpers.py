"""Test support: where the shared data lives, free ports, real plugin server processes, in-process clients."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import jsonschema
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("PLUGKIT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def asgi_client(app: FastAPI, base_url: str = "http://testserver") -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client talking to the app in-process, with its lifespan (startup and shutdown) run."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            yield client


class PluginServer:
    """A real `plugkit serve ...` process on 127.0.0.1, for what only a real process shows."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, port: int | None = None) -> None:
        self.port = port or free_port()
        self.args = [sys.executable, "-m", "plugkit", "serve", *args, "--port", str(self.port)]
        self.env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src"), **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.base_url = f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> PluginServer:
        """Start the process and wait until it serves its manifest and is ready (`/readyz`: a retrieval server whose
        model loads past its start-up wait answers before it can embed, which a busy machine makes common)."""
        self.proc = subprocess.Popen(self.args, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.base_url, timeout=1) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    output = self.proc.stdout.read().decode() if self.proc.stdout else ""
                    raise RuntimeError(f"server exited with {self.proc.returncode}:\n{output}")
                try:
                    if all(client.get(path).status_code == 200 for path in ("/.well-known/ai-plugin.json", "/readyz")):
                        return self
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server on port {self.port} did not start within {timeout} s")

    def output(self) -> str:
        """Everything the process printed (call after stop)."""
        return self.proc.stdout.read().decode() if self.proc and self.proc.stdout else ""

    def stop(self, kill: bool = False) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> PluginServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _operation_for(spec: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    for template, item in spec["paths"].items():
        pattern = "^" + re.sub(r"\{[^/]+\}", "[^/]+", template) + "$"
        if re.match(pattern, path) and method.lower() in item:
            return item[method.lower()]  # type: ignore[no-any-return]
    raise AssertionError(f"the spec has no operation for {method} {path}")


def assert_response_matches_spec(spec: dict[str, Any], response: httpx.Response) -> None:
    """The response's status is documented for its operation, and its JSON body validates against the schema."""
    request = response.request
    operation = _operation_for(spec, request.method, request.url.path)
    responses = operation.get("responses", {})
    documented = responses.get(str(response.status_code)) or responses.get("default")
    assert documented is not None, f"{request.method} {request.url.path}: status {response.status_code} undocumented"
    schema = (documented.get("content") or {}).get("application/json", {}).get("schema")
    if schema is None:
        return
    validator = jsonschema.Draft202012Validator({**schema, "components": spec.get("components", {})})
    errors = sorted(validator.iter_errors(response.json()), key=str)
    assert not errors, f"{request.method} {request.url.path}: {errors[0].message}"


class CountingApp:
    """The app behind the fast paths, counting the requests that reach it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app, self.calls = app, 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.calls += 1
        await self.app(scope, receive, send)
