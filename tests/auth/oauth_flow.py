"""Test support: the OAuth flow as the model host ran it, step by step, against any client (in-process or real)."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx

from tests.helpers import REPO_ROOT

HOST_CALLBACK = "https://chat.openai.com/aip/plugin-4f2c1b7e/oauth/callback"
GPT_CALLBACK = "https://chatgpt.com/aip/g-7d9a3e21/oauth/callback"
PASSWORD = "correct horse battery staple"

_REQUEST_ID = re.compile(r"""name=["']request_id["'] value=["']([^"']+)["']""")


def request_id_of(page: str) -> str:
    """The one-time sign-in id hidden in the sign-in form."""
    found = _REQUEST_ID.search(page)
    assert found, f"no sign-in form in the page: {page[:300]}"
    return found.group(1)


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


CONFIRM_TITLE = "Allow a new application?"


async def confirm_if_asked(
    client: httpx.AsyncClient, answer: httpx.Response, url: str = "/oauth/authorize"
) -> httpx.Response:
    """After a sign-in, allow the client when the page asks to confirm one the person has not allowed before."""
    if answer.status_code == 200 and CONFIRM_TITLE in answer.text:
        return await client.post(url, data={"request_id": request_id_of(answer.text), "decision": "allow"})
    return answer


async def open_sign_in(
    client: httpx.AsyncClient, client_id: str, redirect_uri: str = HOST_CALLBACK, state: str = "st-1", **extra: str
) -> httpx.Response:
    """The host sends the user to client_url with the authorization request."""
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": "plugin",
        "state": state,
        **extra,
    }
    return await client.get("/oauth/authorize", params=params)


async def sign_in(
    client: httpx.AsyncClient,
    client_id: str,
    username: str = "alice",
    password: str = PASSWORD,
    redirect_uri: str = HOST_CALLBACK,
    state: str = "st-1",
    **extra: str,
) -> dict[str, str]:
    """Open the sign-in page, submit it as the user, and return the query of the redirect back to the host."""
    page = await open_sign_in(client, client_id, redirect_uri, state, **extra)
    assert page.status_code == 200, page.text
    answer = await client.post(
        "/oauth/authorize",
        data={"request_id": request_id_of(page.text), "username": username, "password": password, "decision": "allow"},
    )
    assert answer.status_code == 303, answer.text
    location = answer.headers["location"]
    assert location.startswith(redirect_uri + "?"), location
    return query_of(location)


async def exchange(
    client: httpx.AsyncClient,
    params: dict[str, str],
    content_type: str = "application/json",
    basic: tuple[str, str] | None = None,
) -> httpx.Response:
    """POST to authorization_url, encoded as the manifest's authorization_content_type says."""
    headers = {}
    if basic is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
    if content_type == "application/json":
        return await client.post("/oauth/token", json=params, headers=headers)
    return await client.post("/oauth/token", data=params, headers=headers)


async def code_grant(
    client: httpx.AsyncClient,
    client_id: str,
    client_secret: str,
    code: str,
    redirect_uri: str = HOST_CALLBACK,
    content_type: str = "application/json",
) -> httpx.Response:
    params = {
        "grant_type": "authorization_code",
        "client_id": client_id,
        "client_secret": client_secret,
        "code": code,
        "redirect_uri": redirect_uri,
    }
    return await exchange(client, params, content_type)


def run_plugkit(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a real `plugkit ...` command; fails the test with its output when it exits non-zero."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    done = subprocess.run(
        [sys.executable, "-m", "plugkit", *args], input=stdin, capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, f"plugkit {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


def register_with_cli(data_dir: Path, user: str = "alice") -> tuple[str, str]:
    """Create a user and the default client with the CLI, as an operator would; returns (client_id, client_secret)."""
    run_plugkit("users", "create", user, "--password-stdin", "--data-dir", str(data_dir), stdin=PASSWORD + "\n")
    created = json.loads(run_plugkit("oauth-clients", "create", "--json", "--data-dir", str(data_dir)).stdout)
    return created["client_id"], created["client_secret"]
