"""Client ID metadata documents: fetched within the limits, from public addresses only (unless in development), and
used only when they describe the client that names them."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from plugkit.auth.oauth.client_metadata import MAX_BYTES, ClientMetadataDocuments, ClientMetadataError
from tests.helpers import REPO_ROOT

Reply = tuple[int, dict[str, str], bytes]


@contextmanager
def answering(reply: Callable[[str, str], Reply]) -> Iterator[str]:
    """A plain-http server on 127.0.0.1 answering `reply(its base URL, path)`; yields the base URL, and counts."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the http.server API)
            status, headers, body = reply(base, self.path)
            self.send_response(status)
            for name, value in {"Content-Length": str(len(body)), **headers}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
            hits.append(self.path)

        def log_message(self, *args: Any) -> None:
            pass

    hits: list[str] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield base
    finally:
        server.shutdown()
        server.server_close()


def document(base: str, **fields: Any) -> Reply:
    body = {"client_id": f"{base}/client.json", "client_name": "Doc", "redirect_uris": ["https://app.example/cb"]}
    return 200, {"Content-Type": "application/json"}, json.dumps({**body, **fields}).encode()


async def test_a_document_naming_itself_describes_a_public_client_and_is_cached() -> None:
    calls: list[str] = []

    def reply(base: str, path: str) -> Reply:
        calls.append(path)
        return document(base)

    with answering(reply) as base:
        documents = ClientMetadataDocuments(allow_private=True)
        client = await documents.resolve(f"{base}/client.json")
        again = await documents.resolve(f"{base}/client.json")
    assert client == again and len(calls) == 1
    assert client.name == "Doc" and client.public and client.requires_pkce and client.kind == "metadata"
    assert client.redirect_uris == ["https://app.example/cb"]


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        (lambda base, path: document(base, client_id="https://someone.else/client.json"), "own URL"),
        (lambda base, path: document(base, token_endpoint_auth_method="client_secret_basic"), "public"),
        (lambda base, path: document(base, redirect_uris=["http://evil.example/cb"]), "loopback"),
        (lambda base, path: document(base, redirect_uris=[]), "redirect_uris"),
        (lambda base, path: (200, {}, b"not json"), "not JSON"),
        (lambda base, path: (404, {}, b""), "HTTP 404"),
        (lambda base, path: (200, {}, b"[" + b" " * MAX_BYTES + b"]"), "bytes"),
        (lambda base, path: (302, {"Location": "http://127.0.0.2:1/x.json"}, b""), "another host"),
    ],
)
async def test_a_document_that_cannot_be_used_is_refused_with_the_reason(
    reply: Callable[[str, str], Reply], problem: str
) -> None:
    with answering(reply) as base:
        with pytest.raises(ClientMetadataError, match=problem):
            await ClientMetadataDocuments(allow_private=True).resolve(f"{base}/client.json")


@pytest.mark.parametrize(
    "client_id",
    [
        "https://127.0.0.1/client.json",
        "https://10.0.0.8/client.json",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/client.json",
        "https://localhost/client.json",
    ],
)
async def test_private_loopback_and_link_local_hosts_are_refused(client_id: str) -> None:
    with pytest.raises(ClientMetadataError, match="private, loopback or link-local"):
        await ClientMetadataDocuments().resolve(client_id)


@pytest.mark.parametrize(
    ("client_id", "problem"),
    [
        ("http://app.example/client.json", "https"),
        ("https://app.example/", "path"),
        ("https://app.example/a/../client.json", r"\.\."),
        ("https://user:pw@app.example/client.json", "user information"),
    ],
)
async def test_a_client_id_url_of_the_wrong_shape_is_refused_before_any_fetch(client_id: str, problem: str) -> None:
    with pytest.raises(ClientMetadataError, match=problem):
        await ClientMetadataDocuments().resolve(client_id)


def test_importing_the_auth_package_computes_no_password_hash() -> None:
    code = (
        "import plugkit.auth.factory, plugkit.auth.users as u; "
        "assert u._dummy_hash.cache_info().currsize == 0; print('ok')"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT / "src", check=False
    )
    assert done.stdout.strip() == "ok", done.stderr
