"""What an operation does, declared once on its route: the facts MCP tool annotations and GPT Actions'
`x-openai-isConsequential` are both derived from.

A route declares them with `openapi_extra=tool_hints(...)`; they travel in the OpenAPI document as the operation's
`x-plugkit-tool` extension, so a host reading the spec (the MCP bridge, `plugkit tools`) finds the same facts.
An operation that declares none gets hints derived from its HTTP method.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from fastapi import APIRouter
from fastapi.routing import APIRoute

TOOL_EXTENSION = "x-plugkit-tool"
_SAFE_METHODS = ("get", "head", "options")


@dataclass(frozen=True)
class ToolHints:
    """The behaviour of one operation, as MCP's tool annotations name it.

    `read_only`: it changes nothing. `destructive`: it may delete or overwrite what is stored (only meaningful for a
    write). `idempotent`: calling it again with the same arguments changes nothing more. `open_world`: it reaches a
    system outside the plugin (a remote API). `title`: a short human-readable name for the tool. A read-only
    operation is idempotent.
    """

    read_only: bool
    destructive: bool = False
    idempotent: bool = False
    open_world: bool = False
    title: str | None = None
    declared: bool = True  # False when derived from the HTTP method

    def __post_init__(self) -> None:
        if self.read_only and self.destructive:
            raise ValueError("an operation cannot be both read-only and destructive")
        if self.read_only:
            object.__setattr__(self, "idempotent", True)  # reading again changes nothing more

    @property
    def consequential(self) -> bool:
        """Whether GPT Actions should ask the user before each call: any operation that changes data."""
        return not self.read_only

    def annotations(self) -> dict[str, bool]:
        """The MCP `ToolAnnotations` hints."""
        return {
            "readOnlyHint": self.read_only,
            "destructiveHint": self.destructive,
            "idempotentHint": self.idempotent,
            "openWorldHint": self.open_world,
        }

    def to_extension(self) -> dict[str, Any]:
        body: dict[str, Any] = {"annotations": self.annotations()}
        if self.title:
            body["title"] = self.title
        return body


def tool_hints(
    *,
    title: str,
    read_only: bool,
    destructive: bool = False,
    idempotent: bool = False,
    open_world: bool = False,
    openapi_extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The `openapi_extra` of a route declaring what its operation does (merged into `openapi_extra` when given).

    `read_only` must always be stated; a write that deletes or replaces stored data says `destructive=True`.
    """
    hints = ToolHints(read_only, destructive, idempotent, open_world, title)
    return {**(openapi_extra or {}), TOOL_EXTENSION: hints.to_extension()}


def hints_of(method: str, operation: Mapping[str, Any]) -> ToolHints:
    """The hints of an OpenAPI operation: those its route declared, else derived from the HTTP method (a safe method
    reads; PUT, PATCH and DELETE replace or remove what exists; PUT and DELETE are idempotent)."""
    declared = operation.get(TOOL_EXTENSION)
    if isinstance(declared, Mapping) and isinstance(declared.get("annotations"), Mapping):
        hints = declared["annotations"]
        title = declared.get("title")
        read_only = bool(hints.get("readOnlyHint", False))
        return ToolHints(
            read_only=read_only,
            destructive=not read_only and bool(hints.get("destructiveHint", False)),
            idempotent=bool(hints.get("idempotentHint", False)),
            open_world=bool(hints.get("openWorldHint", False)),
            title=title if isinstance(title, str) and title else None,
        )
    method = method.lower()
    return ToolHints(
        read_only=method in _SAFE_METHODS,
        destructive=method in ("put", "patch", "delete"),
        idempotent=method in (*_SAFE_METHODS, "put", "delete"),
        declared=False,
    )


def reaching_remote(router: APIRouter) -> APIRouter:
    """A router with the routes of `router`, whose operations say they reach a remote system (`openWorldHint`): for a
    plugin whose backend is chosen at run time. Each route keeps everything else it declared; `router` is unchanged."""
    remote = APIRouter()
    for route in router.routes:
        if isinstance(route, APIRoute):
            route = copy.copy(route)  # the same endpoint and validation; only its OpenAPI extra differs
            extra = dict(route.openapi_extra or {})
            method = sorted(route.methods or {"GET"})[0]
            extra[TOOL_EXTENSION] = replace(hints_of(method, extra), open_world=True).to_extension()
            route.openapi_extra = extra
        remote.routes.append(route)
    return remote
