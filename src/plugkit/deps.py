"""FastAPI dependencies shared by every plugin, as Annotated aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from plugkit.auth.principal import Principal


async def get_principal(request: Request) -> Principal:
    """The request's principal: the one `RequireCredential` put in the request state before routing, else the
    configured method's answer now (once per request)."""
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    principal = await request.app.state.auth.authenticate(request)
    request.state.principal = principal
    return principal  # type: ignore[no-any-return]


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
