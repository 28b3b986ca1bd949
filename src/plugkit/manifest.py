"""The ai-plugin.json manifest: a pydantic model of every field, validation in two modes, hostname substitution."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, ConfigDict, Field, ValidationError

PLUGIN_HOSTNAME = "PLUGIN_HOSTNAME"

Mode = Literal["default", "strict"]

# Character limits per mode: (name_for_human, name_for_model, description_for_human, description_for_model).
LIMITS: dict[str, dict[str, int]] = {
    "default": {
        "name_for_human": 50,
        "name_for_model": 50,
        "description_for_human": 120,
        "description_for_model": 8000,
    },
    "strict": {
        "name_for_human": 20,
        "name_for_model": 50,
        "description_for_human": 100,
        "description_for_model": 8000,
    },
}
NAME_FOR_MODEL_PATTERN = re.compile(r"^[A-Za-z0-9_]+$")
STRICT_NAME_FOR_MODEL_PATTERN = re.compile(r"^[A-Za-z0-9]+$")


class _AuthBase(BaseModel):
    model_config = ConfigDict(extra="allow")
    instructions: str | None = None


class NoAuth(_AuthBase):
    type: Literal["none"] = "none"


class UserHttpAuth(_AuthBase):
    type: Literal["user_http"] = "user_http"
    authorization_type: Literal["bearer", "basic"] = "bearer"


class ServiceHttpAuth(_AuthBase):
    type: Literal["service_http"] = "service_http"
    authorization_type: Literal["bearer", "basic"] = "bearer"
    verification_tokens: dict[str, str] = Field(default_factory=dict)


class OAuthAuth(_AuthBase):
    type: Literal["oauth"] = "oauth"
    client_url: str
    scope: str = ""
    authorization_url: str
    authorization_content_type: Literal["application/json", "application/x-www-form-urlencoded"] = "application/json"
    verification_tokens: dict[str, str] = Field(default_factory=dict)


ManifestAuth = Annotated[NoAuth | UserHttpAuth | ServiceHttpAuth | OAuthAuth, Field(discriminator="type")]


class Api(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["openapi"] = "openapi"
    url: str
    is_user_authenticated: bool | None = None
    has_user_authentication: bool | None = None


class Manifest(BaseModel):
    """The complete ai-plugin.json document. Unknown extra fields are kept (and reported by `validate_manifest`)."""

    model_config = ConfigDict(extra="allow")

    schema_version: str = "v1"
    name_for_human: str
    name_for_model: str
    description_for_human: str
    description_for_model: str
    auth: ManifestAuth = Field(default_factory=NoAuth)
    api: Api
    logo_url: str
    contact_email: str
    legal_info_url: str

    def to_json(self) -> dict[str, Any]:
        """The manifest as a host reads it: unset optional fields left out, extra fields kept."""
        return self.model_dump(mode="json", exclude_none=True)

    def with_base_url(self, base_url: str) -> Manifest:
        """A copy with every `PLUGIN_HOSTNAME` replaced by `base_url` (no trailing slash)."""
        return Manifest.model_validate(substitute_hostname(self.to_json(), base_url))


@dataclass(frozen=True)
class Problem:
    """One finding of the validator. `level` is error or warning; `field` a dotted path."""

    level: Literal["error", "warning"]
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.level}: {self.field}: {self.message}"


def substitute_hostname(document: Any, base_url: str) -> Any:
    """Replace `PLUGIN_HOSTNAME` in every string of a JSON-like document with `base_url`."""
    base = base_url.rstrip("/")
    if isinstance(document, str):
        return document.replace(PLUGIN_HOSTNAME, base)
    if isinstance(document, Mapping):
        return {k: substitute_hostname(v, base) for k, v in document.items()}
    if isinstance(document, list):
        return [substitute_hostname(v, base) for v in document]
    return document


def _is_absolute_http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _is_local(value: str) -> bool:
    host = urlsplit(value).hostname or ""
    return host in ("localhost", "127.0.0.1", "::1") or host.endswith(".localhost")


def _url_problems(field: str, value: str, mode: Mode, *, allow_relative: bool = False) -> list[Problem]:
    level: Literal["error", "warning"] = "error" if mode == "strict" else "warning"
    if value.startswith("data:") and field == "logo_url":
        return [Problem(level, field, "is a data: URL; hosts expect an http(s) URL to an image")]
    if _is_absolute_http_url(value):
        if mode == "strict" and value.startswith("http://") and not _is_local(value):
            return [Problem("error", field, f"must use https outside localhost, got {value!r}")]
        return []
    if allow_relative and value.startswith("/"):
        return [Problem(level, field, f"is a relative URL {value!r}; it resolves against the manifest's host")]
    return [Problem(level, field, f"is not an absolute http(s) URL: {value!r}")]


def validate_manifest(data: Mapping[str, Any], mode: Mode = "default") -> list[Problem]:
    """Check a manifest document; every message names the field, the limit and the actual value.

    `default` follows the reference sheet (and accepts every manifest the store approved); `strict` applies the
    limits OpenAI documented. Errors make a manifest unusable; warnings are what a careful author fixes.
    """
    problems: list[Problem] = []
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "(document)"
            problems.append(Problem("error", loc, err["msg"]))
        return problems

    limits = LIMITS[mode]
    for field, limit in limits.items():
        value: str = getattr(manifest, field)
        if len(value) > limit:
            problems.append(Problem("error", field, f"is {len(value)} characters, over the {mode} limit of {limit}"))
        if not value.strip():
            problems.append(Problem("error", field, "is empty"))
    pattern = STRICT_NAME_FOR_MODEL_PATTERN if mode == "strict" else NAME_FOR_MODEL_PATTERN
    if not pattern.match(manifest.name_for_model):
        allowed = "letters and digits" if mode == "strict" else "letters, digits and _"
        problems.append(
            Problem("error", "name_for_model", f"must contain only {allowed}, got {manifest.name_for_model!r}")
        )
    if manifest.schema_version != "v1":
        problems.append(Problem("warning", "schema_version", f"is {manifest.schema_version!r}, expected 'v1'"))

    problems += _url_problems("api.url", manifest.api.url, mode, allow_relative=True)
    problems += _url_problems("logo_url", manifest.logo_url, mode)
    problems += _url_problems("legal_info_url", manifest.legal_info_url, mode)
    try:
        validate_email(manifest.contact_email, check_deliverability=False)
    except EmailNotValidError as exc:
        level: Literal["error", "warning"] = "error" if mode == "strict" else "warning"
        problems.append(Problem(level, "contact_email", f"{manifest.contact_email!r} is not an e-mail address: {exc}"))

    auth = manifest.auth
    if isinstance(auth, OAuthAuth):
        problems += _url_problems("auth.client_url", auth.client_url, mode)
        problems += _url_problems("auth.authorization_url", auth.authorization_url, mode)
    if isinstance(auth, ServiceHttpAuth | OAuthAuth) and not auth.verification_tokens:
        problems.append(Problem("warning", "auth.verification_tokens", "is empty; the host's token goes here"))

    for name in sorted(manifest.model_extra or {}):
        problems.append(Problem("warning", name, "is not a manifest field; kept, but hosts ignore it"))
    for part, model in (("auth", auth), ("api", manifest.api)):
        for name in sorted(model.model_extra or {}):
            problems.append(Problem("warning", f"{part}.{name}", "is not a field of this block; kept, but ignored"))
    return problems


def has_errors(problems: list[Problem]) -> bool:
    return any(p.level == "error" for p in problems)


def load_manifest_document(text: str) -> dict[str, Any]:
    """Parse manifest JSON text; raises ValueError with the position of a syntax error."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"manifest is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"manifest must be a JSON object, got {type(data).__name__}")
    return data
