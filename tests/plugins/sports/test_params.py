"""`key[]=v` arrays folded into `key=v` before the routes read them."""

from __future__ import annotations

from typing import Annotated

import httpx
from fastapi import FastAPI, Query

from plugkit.plugins.sports.params import BracketArrays


def echo_app() -> FastAPI:
    app = FastAPI()

    @app.get("/echo")
    async def echo(ids: Annotated[list[int] | None, Query()] = None, name: str | None = None) -> dict[str, object]:
        return {"ids": ids, "name": name}

    app.add_middleware(BracketArrays)
    return app


async def test_bracket_and_plain_arrays_merge_and_other_params_survive() -> None:
    transport = httpx.ASGITransport(app=echo_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        mixed = await client.get("/echo?ids[]=1&ids=2&ids%5b%5d=3&name=Nikola%20Joki%C4%87")
        plain = await client.get("/echo?ids=4")
        in_value = await client.get("/echo?name=a[]b[]&ids%5B]=5&ids%5b%5D=6")
    assert mixed.json() == {"ids": [1, 2, 3], "name": "Nikola Jokić"}
    assert plain.json() == {"ids": [4], "name": None}
    assert in_value.json() == {"ids": [5, 6], "name": "a[]b[]"}  # brackets in a value are the value's
