"""The TODO plugin's routes and app."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Request

from plugkit.app import ErrorDetail, PluginInfo, create_plugin_app
from plugkit.auth.factory import build_auth_method
from plugkit.deps import CurrentPrincipal
from plugkit.manifest import Api, Manifest
from plugkit.plugins.todo.models import AddTodoRequest, DeletedTodo, DeleteTodoRequest, TodoItem, TodoList
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
Username = Annotated[str, Path(min_length=1, max_length=200, description="The name of the user.")]


def check_access(principal: CurrentPrincipal, username: Username) -> str:
    """Under per-user auth a principal reaches only its own list; under none and service_http, any list."""
    if principal.identifies_user and principal.user_id != username:
        raise HTTPException(
            403, f"you are signed in as {principal.user_id!r} and cannot reach the todos of {username!r}"
        )
    return username


AllowedUser = Annotated[str, Depends(check_access)]

router = APIRouter()
NOT_FOUND = {404: {"model": ErrorDetail, "description": "No such user, index or todo"}}


@router.post("/todos/{username}", operation_id="addTodo", summary="Add a todo to the list", response_model=TodoItem)
async def add_todo(username: AllowedUser, body: AddTodoRequest, store: StoreDep) -> TodoItem:
    """Add a todo to the user's list."""
    return await store.add(username, body.todo)


@router.get("/todos/{username}", operation_id="getTodos", summary="Get the list of todos", response_model=TodoList)
async def get_todos(username: AllowedUser, store: StoreDep) -> TodoList:
    """Get the user's todos, oldest first."""
    items = await store.list(username)
    return TodoList(todos=[i.todo for i in items], items=items)


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
        count = len(await store.list(username))
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
    app = create_plugin_app(info, [router], settings, auth, on_startup=[startup], on_shutdown=[database.dispose])
    app.state.store = SqlTodoStore(database)
    app.state.database = database
    return app
