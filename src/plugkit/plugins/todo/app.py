"""The TODO plugin's routes and app."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, HTTPException, Path, Query, Request, Response
from pydantic import TypeAdapter

from plugkit.deps import get_principal
from plugkit.errors import ErrorDetail
from plugkit.hints import tool_hints
from plugkit.plugin import Plugin, PluginContext
from plugkit.plugins.todo.models import (
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

DESCRIPTION = (
    "A plugin that allows the user to create and manage a TODO list using ChatGPT. If you do not know the user's "
    'username, ask them first before making queries to the plugin. Otherwise, use the username "global".'
)
SIGNED_IN_DESCRIPTION = (
    "A plugin that allows the user to create and manage their TODO list using ChatGPT. Each user signs in and reaches "
    "only their own list: the username is the one the user signed in as (ask them for it if you do not know it); "
    "any other username is refused."
)
PER_USER_AUTH = frozenset({"user_http", "oauth"})


def todo_description(auth_kind: str) -> str:
    """What the spec tells the model about usernames: under per-user auth only the signed-in user's name works."""
    return SIGNED_IN_DESCRIPTION if auth_kind in PER_USER_AUTH else DESCRIPTION


Username = Annotated[
    UsernameText,
    Path(description="The name of the user.", json_schema_extra={"pattern": USERNAME_PATTERN}),
]


@dataclass(frozen=True, slots=True)
class UserTodos:
    """The list a request may reach: its user's name, and the store it lives in."""

    username: str
    store: TodoStore


async def user_todos(request: Request, username: str) -> UserTodos:
    """Under per-user auth a principal reaches only its own list; under none and service_http, any list.
    (Called by each route rather than declared as a FastAPI dependency, which costs more per request than the query.)"""
    principal = await get_principal(request)
    if principal.identifies_user and principal.user_id != username:
        raise HTTPException(
            403, f"you are signed in as {principal.user_id!r} and cannot reach the todos of {username!r}"
        )
    return UserTodos(username, request.app.state.store)


PAGE_LIMIT = 500
PAGE_JSON = TypeAdapter(TodoList)
PAGE_CHARS = 80_000
router = APIRouter()
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorDetail, "description": "No such user, index or todo"}}


@router.post(
    "/todos/{username}",
    operation_id="addTodo",
    summary="Add a todo to the list",
    response_model=TodoItem,
    openapi_extra=tool_hints(title="Add a todo", read_only=False),
)
async def add_todo(request: Request, username: Username, body: AddTodoRequest) -> TodoItem:
    """Add a todo to the user's list."""
    todos = await user_todos(request, username)
    return await todos.store.add(todos.username, body.todo)


@router.get(
    "/todos/{username}",
    operation_id="getTodos",
    summary="Get the list of todos",
    response_model=TodoList,
    openapi_extra=tool_hints(title="List todos", read_only=True),
)
async def get_todos(
    request: Request,
    username: Username,
    offset: Annotated[int, Query(ge=0, le=2**31, description="Skip this many todos (for the next page).")] = 0,
    limit: Annotated[int, Query(ge=1, le=PAGE_LIMIT, description="The most todos to return.")] = PAGE_LIMIT,
) -> Response:
    """Get the user's todos, oldest first; a long list comes in pages (see next_offset)."""
    todos = await user_todos(request, username)
    body = await todos.store.kept(("page", todos.username, offset, limit), lambda: page_json(todos, offset, limit))
    return Response(body, media_type="application/json")


async def page_json(todos: UserTodos, offset: int, limit: int) -> bytes:
    """One page as FastAPI serialises the route's response model (kept by the store until the todos change: a page of
    10 todos takes longer to serialise, about 10 us, than the rest of the route)."""
    return PAGE_JSON.dump_json(await list_page(todos, offset, limit), by_alias=True)


async def list_page(todos: UserTodos, offset: int, limit: int) -> TodoList:
    """One page of a user's list: at most `limit` todos from `offset`, and within the model host's response limit."""
    items = await todos.store.list(todos.username, offset, limit)
    reached_end = len(items) < limit and (items or offset == 0)
    total = offset + len(items) if reached_end else await todos.store.count(todos.username)
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
    # not idempotent: deleting index 0 again deletes the next todo
    openapi_extra=tool_hints(title="Delete a todo by position", read_only=False, destructive=True),
)
async def delete_todo(request: Request, username: Username, body: DeleteTodoRequest) -> DeletedTodo:
    """Delete the todo at an index of the user's list (0 is the oldest)."""
    todos = await user_todos(request, username)
    store, username = todos.store, todos.username
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
    openapi_extra=tool_hints(title="Delete a todo by id", read_only=False, destructive=True, idempotent=True),
)
async def delete_todo_by_id(
    request: Request, username: Username, todo_id: Annotated[int, Path(ge=1, le=2**62)]
) -> DeletedTodo:
    """Delete one todo by its stable id, which does not shift when other todos go."""
    todos = await user_todos(request, username)
    deleted = await todos.store.delete_by_id(todos.username, todo_id)
    if deleted is None:
        raise HTTPException(404, f"{todos.username!r} has no todo with id {todo_id}")
    return DeletedTodo(deleted=deleted)


def setup(context: PluginContext) -> None:
    """The store on the plugin's database; the manifest says "(no auth)" as the example's did, when there is none."""
    context.info.description = todo_description(context.settings.auth)
    if context.settings.auth == "none":
        manifest = context.info.manifest
        context.info.manifest = manifest.model_copy(update={"name_for_human": f"{manifest.name_for_human} (no auth)"})
    context.state["store"] = SqlTodoStore(context.database)
    context.state["database"] = context.database


plugin = Plugin(
    "TODO List",
    "Manage your TODO list. You can add, remove and view your TODOs.",
    description_for_model="Plugin for managing a TODO list, you can add, remove and view your TODOs.",
    name_for_model="todo",
    routers=[router],
    settings=TodoSettings,
    tables=[metadata],
    setup=setup,
    database="todo",
    contact_email="legal@plugkit.dev",
    title="TODO Plugin",
    logo_letter="T",
    logo_rgb=(46, 139, 87),
    legal_text="This plugin stores the todos you add, under the user name you give, until you delete them.",
)


def create_app(settings: TodoSettings | None = None) -> FastAPI:
    """The TODO plugin app (settings from the environment when none are given)."""
    return plugin.create_app(settings)
