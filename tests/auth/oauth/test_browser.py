"""The sign-in page in a real browser (headless Chromium): from client_url to the redirect back to the host."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from tests.auth.cdp import Page, chromium_page
from tests.auth.oauth_flow import HOST_CALLBACK, PASSWORD, code_grant, query_of, register_with_cli
from tests.helpers import PluginServer

pytestmark = pytest.mark.slow


async def fill_and_submit(page: Page, username: str, password: str) -> None:
    """Type into the form fields and press the allow button, as a user would (the page itself runs no script)."""
    await page.evaluate(
        f"document.getElementById('username').value = {json.dumps(username)};"
        f"document.getElementById('password').value = {json.dumps(password)};"
        "document.querySelector('button[value=allow]').click(); true"
    )


async def test_a_user_signs_in_with_chromium_and_lands_on_the_host_callback_with_a_code(tmp_path: Path) -> None:
    client_id, client_secret = register_with_cli(tmp_path)
    with PluginServer("todo", "--auth", "oauth", "--data-dir", str(tmp_path)) as server:
        manifest = httpx.get(f"{server.base_url}/.well-known/ai-plugin.json").json()
        authorize = (
            manifest["auth"]["client_url"]
            + "?"
            + urlencode(
                {
                    "response_type": "code",
                    "client_id": client_id,
                    "redirect_uri": HOST_CALLBACK,
                    "scope": manifest["auth"]["scope"],
                    "state": "browser-state-7",
                }
            )
        )
        async with chromium_page() as page:
            # The callback lives at chat.openai.com: intercept it in the browser instead of leaving the machine.
            await page.send("Fetch.enable", patterns=[{"urlPattern": "https://chat.openai.com/*"}])
            await page.send("Page.enable")
            await page.send("Page.navigate", url=authorize)
            await page.wait_for("Page.loadEventFired")
            assert await page.evaluate("document.title") == "Sign in"
            assert await page.evaluate("document.scripts.length") == 0

            await fill_and_submit(page, "alice", "not the password")
            await page.wait_for("Page.loadEventFired")
            assert "wrong" in await page.evaluate("document.querySelector('.error').textContent")

            await fill_and_submit(page, "alice", PASSWORD)
            paused = await page.wait_for("Fetch.requestPaused")
            callback = paused["request"]["url"]
            await page.send(
                "Fetch.fulfillRequest",
                requestId=paused["requestId"],
                responseCode=200,
                responseHeaders=[{"name": "Content-Type", "value": "text/plain"}],
                body=base64.b64encode(b"callback reached").decode(),
            )
        assert callback.startswith(HOST_CALLBACK + "?")
        query = query_of(callback)
        assert query["state"] == "browser-state-7"
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            tokens = await code_grant(client, client_id, client_secret, query["code"])
            assert tokens.status_code == 200, tokens.text
            answer = await client.get(
                "/todos/alice", headers={"Authorization": f"Bearer {tokens.json()['access_token']}"}
            )
            assert answer.status_code == 200
