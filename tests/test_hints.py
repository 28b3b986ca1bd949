"""Operation facts declared once on a route: read back as MCP hints, and as GPT Actions' consequential flag."""

from __future__ import annotations

import pytest
from fastapi import APIRouter, FastAPI

from plugkit.hints import TOOL_EXTENSION, ToolHints, hints_of, reaching_remote, tool_hints


def router_with_routes() -> APIRouter:
    router = APIRouter()

    @router.post("/search", operation_id="search", openapi_extra=tool_hints(title="Search", read_only=True))
    async def search() -> dict[str, str]:
        return {}

    @router.delete("/things", operation_id="deleteThings")
    async def delete_things() -> dict[str, str]:
        return {}

    return router


def operation(app: FastAPI, path: str, method: str) -> dict[str, object]:
    return app.openapi()["paths"][path][method]  # type: ignore[no-any-return]


def test_a_declared_read_only_post_is_read_only_idempotent_and_not_consequential() -> None:
    app = FastAPI()
    app.include_router(router_with_routes())
    hints = hints_of("post", operation(app, "/search", "post"))
    assert hints == ToolHints(read_only=True, title="Search")
    assert hints.annotations() == {
        "readOnlyHint": True,
        "destructiveHint": False,
        "idempotentHint": True,
        "openWorldHint": False,
    }
    assert hints.consequential is False and hints.declared


@pytest.mark.parametrize(
    ("method", "read_only", "destructive", "idempotent"),
    [
        ("get", True, False, True),
        ("post", False, False, False),
        ("put", False, True, True),
        ("patch", False, True, False),
        ("delete", False, True, True),
    ],
)
def test_an_undeclared_operation_gets_hints_from_its_http_method(
    method: str, read_only: bool, destructive: bool, idempotent: bool
) -> None:
    hints = hints_of(method, {"operationId": "x"})
    assert (hints.read_only, hints.destructive, hints.idempotent, hints.declared) == (
        read_only,
        destructive,
        idempotent,
        False,
    )
    assert hints.consequential is not read_only


def test_an_operation_cannot_be_declared_read_only_and_destructive() -> None:
    with pytest.raises(ValueError, match="both read-only and destructive"):
        tool_hints(title="Wipe", read_only=True, destructive=True)


def test_declared_hints_merge_with_other_openapi_extra() -> None:
    extra = tool_hints(title="Add", read_only=False, openapi_extra={"x-openai-isConsequential": False})
    assert extra["x-openai-isConsequential"] is False and extra[TOOL_EXTENSION]["title"] == "Add"


def test_reaching_remote_marks_every_operation_open_world_and_leaves_the_original_router_unchanged() -> None:
    original = router_with_routes()
    remote, local = FastAPI(), FastAPI()
    remote.include_router(reaching_remote(original))
    local.include_router(original)
    search = hints_of("post", operation(remote, "/search", "post"))
    delete = hints_of("delete", operation(remote, "/things", "delete"))
    assert search == ToolHints(read_only=True, open_world=True, title="Search")
    assert delete.open_world and delete.destructive and not delete.read_only
    assert not hints_of("post", operation(local, "/search", "post")).open_world
