"""The peer of bench/request_path.py: a bare FastAPI app serving recorded payloads from memory, and writing to a dict.

Started as `uvicorn bare_app:app` with PLUGKIT_BARE_PAYLOADS naming a JSON file of {"METHOD path": payload}; each
GET answers its payload with `JSONResponse`, as a FastAPI author would serve a list held in memory. Writes mirror the
todo plugin's: a POST adds an item to a dict of lists, a DELETE by id removes one.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from itertools import count
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel

app = FastAPI()
PAYLOADS: dict[str, Any] = json.loads(Path(os.environ["PLUGKIT_BARE_PAYLOADS"]).read_text())
TODOS: dict[str, dict[int, dict[str, Any]]] = {}
IDS = count(1)


def _serve(payload: Any) -> Any:
    async def route() -> JSONResponse:
        return JSONResponse(payload)

    return route


for key, payload in PAYLOADS.items():
    method, path = key.split(" ", 1)
    app.add_api_route(path.split("?", 1)[0], _serve(payload), methods=[method])


class AddTodo(BaseModel):
    todo: str


@app.post("/todos/{username}")
async def add_todo(username: str, body: AddTodo) -> JSONResponse:
    item = {"id": next(IDS), "todo": body.todo, "created_at": datetime.now(UTC).isoformat()}
    TODOS.setdefault(username, {})[item["id"]] = item
    return JSONResponse(item)


@app.delete("/todos/{username}/{todo_id}")
async def delete_todo(username: str, todo_id: int) -> JSONResponse:
    item = TODOS.get(username, {}).pop(todo_id, None)
    if item is None:
        raise HTTPException(404, f"{username!r} has no todo with id {todo_id}")
    return JSONResponse({"deleted": item})
