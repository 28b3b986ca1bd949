"""Request and response models of the TODO plugin."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, StrictInt

MAX_TODO_CHARS = 1000


class AddTodoRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    todo: str = Field(min_length=1, max_length=MAX_TODO_CHARS, description="The text of the todo to add.")


class DeleteTodoRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    todo_idx: StrictInt = Field(description="The index of the todo to delete, counting from 0.")


class TodoItem(BaseModel):
    id: int = Field(description="A stable id: it does not change when other todos are deleted.")
    todo: str
    created_at: datetime


class TodoList(BaseModel):
    todos: list[str] = Field(description="The user's todos, oldest first.")
    items: list[TodoItem] = Field(description="The same todos with their ids and creation times.")


class DeletedTodo(BaseModel):
    deleted: TodoItem
