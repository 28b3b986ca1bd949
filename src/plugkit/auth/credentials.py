"""Reading credentials from the Authorization header, hashing issued secrets, and the 401 every method answers."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from datetime import UTC, datetime
from typing import Literal

from fastapi import HTTPException, Request

Scheme = Literal["bearer", "basic"]
REALM = "plugkit"
_TOKEN_CHARS = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")  # RFC 6750 b64token


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """SQLite keeps no time zone; everything is stored in UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def new_secret(prefix: str, nbytes: int = 32) -> str:
    """A fresh random secret, e.g. `pkt_...`; the prefix tells a leaked secret's kind at a glance."""
    return f"{prefix}_{secrets.token_urlsafe(nbytes)}"


def hash_secret(secret: str) -> str:
    """SHA-256 hex of a high-entropy issued secret: what the database keeps instead of the secret."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def secrets_equal(given: str, expected: str) -> bool:
    """Constant-time comparison (of digests, so the lengths leak nothing either)."""
    return hmac.compare_digest(hash_secret(given), hash_secret(expected))


def unauthorized(scheme: Scheme, detail: str, *, error: str | None = None) -> HTTPException:
    """A 401 with the WWW-Authenticate challenge of the scheme."""
    challenge = f'{"Bearer" if scheme == "bearer" else "Basic"} realm="{REALM}"'
    if error and scheme == "bearer":
        challenge += f', error="{error}"'
    return HTTPException(401, detail, headers={"WWW-Authenticate": challenge})


def read_credential(request: Request, scheme: Scheme) -> str:
    """The secret a request carries under `scheme`: a bearer token, or the password of basic credentials.
    Raises the 401 when it is missing or malformed."""
    header = request.headers.get("authorization")
    if not header:
        raise unauthorized(scheme, "missing credentials: send an Authorization header")
    kind, _, value = header.strip().partition(" ")
    value = value.strip()
    if kind.lower() != scheme:
        raise unauthorized(scheme, f"malformed credentials: expected the {scheme} scheme", error="invalid_request")
    if scheme == "bearer":
        if not value or not _TOKEN_CHARS.match(value):
            raise unauthorized(scheme, "malformed bearer token", error="invalid_request")
        return value
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise unauthorized(scheme, "malformed basic credentials: not base64 of user:password") from None
    _user, sep, password = decoded.partition(":")
    secret = password if sep else decoded
    if not secret:
        raise unauthorized(scheme, "malformed basic credentials: the password is empty")
    return secret
