"""The TODO plugin's routes and app."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request

from plugkit.app import ErrorDetail, PluginInfo, create_plugin_app
from plugkit.auth.factory import build_auth_method
from plugkit.deps import CurrentPrincipal
from plugkit.manifest import Api, Manifest
from plugkit.plugins.todo.models import (
    MAX_USERNAME_CHARS,
    USERNAME_PATTERN,
    AddTodoRequest,
    DeletedTodo,
    DeleteTodoRequest,
    TodoItem,
    TodoList,
    UsernameText,
)
from plugkit.plugins.todo.settings import TodoSettings
from plugkit.plugins.todo.store import SqlTodoStore, TodoStore, metadata
from plugkit.settings import load_settings
from plugkit.storage import Database

DESCRIPTION = (
    "A plugin that allows the user to create and manage a TODO list using ChatGPT. If you do not know the user's "
    'username, ask them first before making queries to the plugin. Otherwise, use the username "global".'
)


def todo_manifest(auth_kind: str) -> Manifest:
    return Manifest(
        name_for_human="TODO List (no auth)" if auth_kind == "none" else "TODO List",
        name_for_model="todo",
        description_for_human="Manage your TODO list. You can add, remove and view your TODOs.",
        description_for_model="Plugin for managing a TODO list, you can add, remove and view your TODOs.",
        api=Api(url="PLUGIN_HOSTNAME/openapi.yaml"),
        logo_url="PLUGIN_HOSTNAME/logo.png",
        contact_email="legal@plugkit.dev",
        legal_info_url="PLUGIN_HOSTNAME/legal",
    )


async def get_store(request: Request) -> TodoStore:
    return request.app.state.store  # type: ignore[no-any-return]


StoreDep = Annotated[TodoStore, Depends(get_store)]
Username = Annotated[
    UsernameText,
    Path(
        min_length=1,
        max_length=MAX_USERNAME_CHARS,
        description="The name of the user.",
        json_schema_extra={"pattern": USERNAME_PATTERN},
    ),
]


async def check_access(principal: CurrentPrincipal, username: Username) -> str:
    """Under per-user auth a principal reaches only its own list; under none and service_http, any list."""
    if principal.identifies_user and principal.user_id != username:
        raise HTTPException(
            403, f"you are signed in as {principal.user_id!r} and cannot reach the todos of {username!r}"
        )
    return username


AllowedUser = Annotated[str, Depends(check_access)]

PAGE_LIMIT = 500
PAGE_CHARS = 80_000
router = APIRouter()
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorDetail, "description": "No such user, index or todo"}}


@router.post("/todos/{username}", operation_id="addTodo", summary="Add a todo to the list", response_model=TodoItem)
async def add_todo(username: AllowedUser, body: AddTodoRequest, store: StoreDep) -> TodoItem:
    """Add a todo to the user's list."""
    return await store.add(username, body.todo)


@router.get("/todos/{username}", operation_id="getTodos", summary="Get the list of todos", response_model=TodoList)
async def get_todos(
    username: AllowedUser,
    store: StoreDep,
    offset: Annotated[int, Query(ge=0, le=2**31, description="Skip this many todos (for the next page).")] = 0,
    limit: Annotated[int, Query(ge=1, le=PAGE_LIMIT, description="The most todos to return.")] = PAGE_LIMIT,
) -> TodoList:
    """Get the user's todos, oldest first; a long list comes in pages (see next_offset)."""
    items = await store.list(username, offset, limit)
    reached_end = len(items) < limit and (items or offset == 0)
    total = offset + len(items) if reached_end else await store.count(username)
    # Both lists carry each text: keep the page under the model host's response limit.
    budget, used, kept = PAGE_CHARS, 0, 0
    for item in items:
        used += 2 * len(item.todo) + 100
        if used > budget and kept:
            break
        kept += 1
    items = items[:kept]
    following = offset + len(items)
    return TodoList(
        todos=[i.todo for i in items],
        items=items,
        total=total,
        next_offset=following if following < total else None,
    )


@router.delete(
    "/todos/{username}",
    operation_id="deleteTodo",
    summary="Delete a todo from the list",
    response_model=DeletedTodo,
    responses=NOT_FOUND,
)
async def delete_todo(username: AllowedUser, body: DeleteTodoRequest, store: StoreDep) -> DeletedTodo:
    """Delete the todo at an index of the user's list (0 is the oldest)."""
    deleted = await store.delete_at(username, body.todo_idx)
    if deleted is None:
        if not await store.user_exists(username):
            raise HTTPException(404, f"user {username!r} has no todos")
        count = await store.count(username)
        raise HTTPException(404, f"todo_idx {body.todo_idx} is out of range: {username!r} has {count} todos")
    return DeletedTodo(deleted=deleted)


@router.delete(
    "/todos/{username}/{todo_id}",
    operation_id="deleteTodoById",
    summary="Delete a todo by its id",
    response_model=DeletedTodo,
    responses=NOT_FOUND,
)
async def delete_todo_by_id(
    username: AllowedUser, todo_id: Annotated[int, Path(ge=1, le=2**62)], store: StoreDep
) -> DeletedTodo:
    """Delete one todo by its stable id, which does not shift when other todos go."""
    deleted = await store.delete_by_id(username, todo_id)
    if deleted is None:
        raise HTTPException(404, f"{username!r} has no todo with id {todo_id}")
    return DeletedTodo(deleted=deleted)


def create_app(settings: TodoSettings | None = None) -> FastAPI:
    """The TODO plugin app (settings from the environment when none are given)."""
    settings = settings or load_settings(TodoSettings)
    database = Database(settings.database_url_for("todo"))
    auth = build_auth_method(settings, database)

    async def startup() -> None:
        await database.create_all(metadata, *auth.metadata())

    info = PluginInfo(
        manifest=todo_manifest(settings.auth),
        title="TODO Plugin",
        description=DESCRIPTION,
        logo_letter="T",
        logo_rgb=(46, 139, 87),
        legal_text="This plugin stores the todos you add, under the user name you give, until you delete them.",
    )
    app = create_plugin_app(
        info, [router], settings, auth, database=database, on_startup=[startup], on_shutdown=[database.dispose]
    )
    app.state.store = SqlTodoStore(database)
    app.state.database = database
    return app
