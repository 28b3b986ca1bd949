"""The sign-in page in a real browser (headless Chromium through Playwright): from client_url to the redirect back
to the host."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from playwright.async_api import Route, async_playwright

from tests.auth.oauth_flow import HOST_CALLBACK, PASSWORD, code_grant, query_of, register_with_cli
from tests.browser import CHROMIUM_ARGS, chromium_path
from tests.helpers import PluginServer

pytestmark = pytest.mark.slow


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
        callbacks: list[str] = []

        async def host_callback(route: Route) -> None:
            # The callback lives at chat.openai.com: answer it in the browser instead of leaving the machine.
            callbacks.append(route.request.url)
            await route.fulfill(status=200, content_type="text/plain", body="callback reached")

        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
            page = await browser.new_page()
            await page.route("https://chat.openai.com/**", host_callback)
            await page.goto(authorize)
            assert await page.title() == "Sign in"
            assert await page.evaluate("document.scripts.length") == 0

            await page.get_by_label("User name").fill("alice")
            await page.get_by_label("Password").fill("not the password")
            await page.get_by_role("button", name="Sign in and allow").click()
            assert "wrong" in (await page.locator(".error").text_content() or "")

            await page.get_by_label("Password").fill(PASSWORD)
            await page.get_by_role("button", name="Sign in and allow").click()
            await page.wait_for_url(HOST_CALLBACK + "?*")
            await browser.close()
        assert len(callbacks) == 1 and callbacks[0].startswith(HOST_CALLBACK + "?")
        query = query_of(callbacks[0])
        assert query["state"] == "browser-state-7"
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            tokens = await code_grant(client, client_id, client_secret, query["code"])
            assert tokens.status_code == 200, tokens.text
            answer = await client.get(
                "/todos/alice", headers={"Authorization": f"Bearer {tokens.json()['access_token']}"}
            )
            assert answer.status_code == 200
