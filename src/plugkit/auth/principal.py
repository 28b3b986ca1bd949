"""Who made a request: the authenticated principal that reaches every route."""

from __future__ import annotations

from dataclasses import dataclass, field

from plugkit.settings import AuthKind


@dataclass(frozen=True)
class Principal:
    """The caller. `user_id` is None when the method does not identify a user (none, service_http)."""

    method: AuthKind
    user_id: str | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)

    @property
    def identifies_user(self) -> bool:
        return self.user_id is not None


ANONYMOUS = Principal(method="none")
