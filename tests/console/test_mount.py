"""The console's routes in-process: where it is served, its security headers, the model view and who signs in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi import Request

from plugkit.auth.none import NoAuthMethod
from plugkit.console import console_enabled
from plugkit.console.mount import CSP, Console, _page
from plugkit.host.tokens import approximate_tokens
from plugkit.plugins.todo.app import create_app
from plugkit.plugins.todo.settings import TodoSettings
from plugkit.settings import PluginSettings
from tests.helpers import asgi_client

SERVICE_TOKEN = "Xq7-service-token-for-tests-9"


@pytest.mark.parametrize(
    ("host", "setting", "served"),
    [
        ("127.0.0.1", "auto", True),
        ("localhost", "auto", True),
        ("::1", "auto", True),
        ("0.0.0.0", "auto", False),
        ("10.1.2.3", "auto", False),
        ("0.0.0.0", "on", True),
        ("127.0.0.1", "off", False),
    ],
)
def test_console_is_served_on_localhost_by_default_and_elsewhere_only_when_turned_on(
    host: str, setting: str, served: bool
) -> None:
    assert console_enabled(PluginSettings(host=host, console=setting)) is served  # type: ignore[arg-type]


async def test_console_page_has_a_strict_content_security_policy_and_no_inline_script(tmp_path: Path) -> None:
    async with asgi_client(create_app(TodoSettings(data_dir=tmp_path))) as client:
        page = await client.get("/console")
        assert page.status_code == 200
        assert page.headers["content-security-policy"] == CSP
        assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP
        assert page.headers["x-frame-options"] == "DENY"
        # The one inline <script> is a JSON data block, which the browser never runs.
        scripts = page.text.split("<script")[1:]
        assert [s.split(">")[0].strip() for s in scripts] == [
            'type="application/json" id="console-config"',
            'src="/console/static/console.js" defer',
        ]
        assert (await client.get("/console/static/console.js")).status_code == 200


async def test_console_is_absent_when_turned_off(tmp_path: Path) -> None:
    async with asgi_client(create_app(TodoSettings(data_dir=tmp_path, console="off"))) as client:
        assert (await client.get("/console")).status_code == 404
        assert (await client.get("/console/model.json")).status_code == 404


def test_console_config_escapes_a_closing_script_tag_in_the_plugin_name() -> None:
    name = "x</script><script>alert(1)</script>"
    console = Console(
        title="T",
        settings=PluginSettings(),
        auth=NoAuthMethod(),
        manifest_for=lambda request: {"name_for_human": name, "auth": {"type": "none"}},
        spec_for=lambda request: {},
        api_routes=[],
    )
    page = _page(console, Request({"type": "http", "method": "GET", "path": "/console", "headers": []})).body.decode()
    assert "</script><script>alert(1)" not in page
    data = page.split('id="console-config">')[1].split("</script>")[0]
    assert json.loads(data)["name"] == name


async def test_model_view_gives_the_tools_in_three_forms_with_token_counts_and_the_strict_problems(
    tmp_path: Path,
) -> None:
    async with asgi_client(create_app(TodoSettings(data_dir=tmp_path))) as client:
        view = (await client.get("/console/model.json")).json()
        forms = {name: (await client.get(f"/console/forms/{name}")).text for name in ("openai", "mcp", "typescript")}
        unknown = await client.get("/console/forms/yaml")
    assert view["manifest"]["name_for_model"] == "todo"
    assert set(view["forms"]) == {"openai", "mcp", "typescript"}
    assert forms["typescript"].startswith("// ") and "namespace todo {" in forms["typescript"]
    assert json.loads(forms["openai"])[0]["function"]["name"] == "getTodos"
    assert [t["name"] for t in json.loads(forms["mcp"])["tools"]][:2] == ["getTodos", "addTodo"]
    assert view["forms"]["typescript"]["tokens"] == approximate_tokens(forms["typescript"])
    assert view["forms"]["openai"]["tokens"] == approximate_tokens(json.dumps(json.loads(forms["openai"])))
    assert view["forms"]["typescript"]["tokens"] < view["forms"]["openai"]["tokens"] < view["forms"]["mcp"]["tokens"]
    assert unknown.status_code == 404 and "openai, mcp, typescript" in unknown.json()["detail"]
    assert {t["name"] for t in view["tools"]} >= {"addTodo", "getTodos"}
    assert all(t["mcp_tokens"] > 0 and t["openai_tokens"] > 0 for t in view["tools"])
    add = next(op for op in view["operations"] if op["operation_id"] == "addTodo")
    assert add["method"] == "POST" and add["path"] == "/todos/{username}"
    assert add["parameters"][0]["name"] == "username" and add["parameters"][0]["location"] == "path"
    assert add["body_media_type"] == "application/json"
    # The served todo plugin passes the strict check except where its manifest exceeds OpenAI's documented limits.
    assert all(p["level"] in ("error", "warning") and p["field"] for p in view["problems"])


async def test_whoami_answers_the_auth_methods_own_401_message_for_a_wrong_token(tmp_path: Path) -> None:
    settings = TodoSettings(data_dir=tmp_path, auth="service_http", service_token=SERVICE_TOKEN)
    async with asgi_client(create_app(settings)) as client:
        wrong = await client.get("/console/whoami", headers={"Authorization": "Bearer wrong-token"})
        api = await client.get("/todos/alice", headers={"Authorization": "Bearer wrong-token"})
        assert wrong.status_code == api.status_code == 401
        assert wrong.json()["detail"] == api.json()["detail"]
        assert wrong.headers["www-authenticate"].startswith("Bearer")
        right = await client.get("/console/whoami", headers={"Authorization": f"Bearer {SERVICE_TOKEN}"})
        assert right.json() == {"method": "service_http", "user_id": None}
