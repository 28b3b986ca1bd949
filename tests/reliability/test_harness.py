"""The harness itself: its checks find failures when there are some, so its zeros mean something."""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
import uvicorn
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel

from plugkit.app import PluginInfo, create_plugin_app
from plugkit.auth.none import NoAuthMethod
from plugkit.manifest import Api, Manifest
from plugkit.settings import PluginSettings
from plugkit.storage import Database
from tests.helpers import PluginServer, free_port
from tests.reliability.harness import TARGETS, HostileCase, TodoCrash, fuzz, send_hostile

router = APIRouter()


class Item(BaseModel):
    name: str


class Count(BaseModel):
    count: int


@router.post("/items", operation_id="addItem", summary="Add an item")
async def add_item(item: Item) -> Item:
    """Fail on any name longer than two characters."""
    if len(item.name) > 2:
        raise RuntimeError("planted bug")
    return item


@router.get("/count", operation_id="count", summary="Count", response_model=None, responses={200: {"model": Count}})
async def count() -> dict[str, str]:
    """Answer a string where the spec promises an integer."""
    return {"count": "many"}


def broken_app() -> FastAPI:
    manifest = Manifest(
        name_for_human="Broken",
        name_for_model="broken",
        description_for_human="A plugin with planted bugs.",
        description_for_model="A plugin with planted bugs.",
        api=Api(url="PLUGIN_HOSTNAME/openapi.yaml"),
        logo_url="PLUGIN_HOSTNAME/logo.png",
        contact_email="legal@plugkit.dev",
        legal_info_url="PLUGIN_HOSTNAME/legal",
    )
    database = Database(f"sqlite:///{tempfile.mkdtemp(prefix='plugkit-broken-')}/broken.db")
    return create_plugin_app(
        PluginInfo(manifest=manifest, title="Broken"), [router], PluginSettings(), NoAuthMethod(), database=database
    )


@pytest.fixture
def broken_server() -> Iterator[str]:
    """The broken plugin under a real uvicorn server on 127.0.0.1, in a thread."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(broken_app(), host="127.0.0.1", port=port, log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_fuzzing_reports_the_server_errors_and_spec_violations_of_a_broken_plugin(broken_server: str) -> None:
    result = fuzz(broken_server, 40)
    assert result.server_errors > 0
    assert result.spec_violations > 0
    assert any("POST /items" in line and "curl" in line for line in result.failures)
    assert any("GET /count" in line for line in result.failures)


@pytest.mark.slow
def test_the_crash_check_reports_an_acknowledged_write_that_is_not_there(
    running: Callable[[str], PluginServer],
) -> None:
    with httpx.Client(base_url=running("todo").base_url) as client:
        problems = TodoCrash().verify(client, [("crash0", 10**9, TodoCrash.text(0))], attempted=1)
    assert problems == [f"acknowledged todo {10**9} of crash0 is missing"]


@pytest.mark.slow
def test_a_hostile_input_answered_without_naming_the_problem_fails(running: Callable[[str], PluginServer]) -> None:
    case = HostileCase("vague", "GET", "/todos/%00", mentions="something the answer does not say")
    result = send_hostile(running("todo"), TARGETS["todo"], case)
    assert not result.ok and result.healthy_after
    assert "does not mention" in result.why
