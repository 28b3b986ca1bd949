"""FastAPI dependencies shared by every plugin, as Annotated aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from plugkit.auth.principal import Principal


async def get_principal(request: Request) -> Principal:
    """Authenticate the request with the app's configured method (once per request)."""
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    principal = await request.app.state.auth.authenticate(request)
    request.state.principal = principal
    return principal  # type: ignore[no-any-return]


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
