"""Request and response models of the TODO plugin."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, StringConstraints

MAX_TODO_CHARS = 1000
MAX_USERNAME_CHARS = 200

# PostgreSQL cannot store NUL in text, and a user name has no use for control characters (CR/LF, escapes).
USERNAME_PATTERN = r"^[^\x00-\x1f\x7f]+$"
TODO_PATTERN = r"^[^\x00]+$"


def _no_control_characters(value: str) -> str:
    if re.search(r"[\x00-\x1f\x7f]", value):
        raise ValueError("the username must not contain control characters (NUL, CR, LF, ...)")
    return value


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("the todo must not contain a NUL character")
    return value


UsernameText = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_USERNAME_CHARS), AfterValidator(_no_control_characters)
]
TodoText = Annotated[str, AfterValidator(_no_nul)]


class AddTodoRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    todo: TodoText = Field(
        min_length=1,
        max_length=MAX_TODO_CHARS,
        description="The text of the todo to add.",
        json_schema_extra={"pattern": TODO_PATTERN},
    )


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
    total: int = Field(description="How many todos the user has in all.")
    next_offset: int | None = Field(
        default=None, description="Where the next page starts, when this answer does not hold the rest of the list."
    )


class DeletedTodo(BaseModel):
    deleted: TodoItem
