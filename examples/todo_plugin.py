from typing import Annotated

from fastapi import Body, HTTPException

from plugkit import Plugin

plugin = Plugin("TODO List", "Add, view and delete the todos of a user.", port=5004)
todos: dict[str, list[str]] = {}


@plugin.post("/todos/{username}", operation_id="addTodo", summary="Add a todo to the user's list")
async def add_todo(username: str, todo: Annotated[str, Body(embed=True, min_length=1)]) -> None:
    todos.setdefault(username, []).append(todo)


@plugin.get("/todos/{username}", operation_id="getTodos", summary="Get the user's todos")
async def get_todos(username: str) -> list[str]:
    return todos.get(username, [])


@plugin.delete("/todos/{username}", operation_id="deleteTodo", summary="Delete the todo at an index of the list")
async def delete_todo(username: str, todo_idx: Annotated[int, Body(embed=True)]) -> str:
    if not 0 <= todo_idx < len(todos.get(username, [])):
        raise HTTPException(404, f"{username!r} has no todo at index {todo_idx}")
    return todos[username].pop(todo_idx)
