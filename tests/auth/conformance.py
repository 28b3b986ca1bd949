"""A reusable check for any plugin: every operation of the generated OpenAPI spec rejects a missing, a malformed and a
wrong credential with 401 (and a WWW-Authenticate challenge) and accepts a valid one, under a given auth method.

    await check_every_operation_requires_auth(create_app, MySettings, tmp_path, "oauth")

It walks the spec the app serves, so routes added later are covered without anyone listing them."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from plugkit.settings import AuthKind, PluginSettings
from plugkit.spec import iter_operations
from tests.auth.oauth_flow import PASSWORD, code_grant, sign_in
from tests.helpers import asgi_client

SERVICE_TOKEN = "svc_9Qm2vT7xLp4Rk8Zs1Wd6Yh3Nc5Bf0Ja"
USER = "alice"


@dataclass
class Outcome:
    """What one operation answered to each kind of credential."""

    method: str
    path: str
    operation_id: str
    statuses: dict[str, int]


def basic(secret: str, user: str = "x") -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


async def valid_credential(kind: AuthKind, app: FastAPI, client: httpx.AsyncClient, scheme: str) -> str:
    """An Authorization header value the app accepts, obtained the way a real caller obtains one."""
    auth = app.state.auth
    if kind == "service_http":
        return f"Bearer {SERVICE_TOKEN}" if scheme == "bearer" else basic(SERVICE_TOKEN)
    if kind == "user_http":
        _id, token = await auth.tokens.create(USER)
        return f"Bearer {token}" if scheme == "bearer" else basic(token, USER)
    if kind == "oauth":
        await auth.users.set_password(USER, PASSWORD)
        client_id, secret = await auth.clients.create()
        query = await sign_in(client, client_id, USER)
        answer = await code_grant(client, client_id, secret, query["code"])
        assert answer.status_code == 200, answer.text
        return f"Bearer {answer.json()['access_token']}"
    raise ValueError(f"no credential for {kind}")


def rejected_credentials(scheme: str) -> dict[str, str | None]:
    wrong = "pkt_" + "A" * 43
    return {
        "missing": None,
        "malformed scheme": "Token abcdef",
        "malformed empty": "Bearer " if scheme == "bearer" else "Basic ",
        "malformed characters": "Bearer not a token!" if scheme == "bearer" else "Basic %%%not-base64%%%",
        "wrong": f"Bearer {wrong}" if scheme == "bearer" else basic(wrong, USER),
    }


def sample(schema: dict[str, Any], spec: dict[str, Any], depth: int = 0) -> Any:
    """A small value that satisfies a JSON schema of the spec (enough to get past validation)."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return sample(spec["components"]["schemas"][name], spec, depth + 1)
    if "example" in schema:
        return schema["example"]
    if "default" in schema:
        return schema["default"]
    if "enum" in schema:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return sample(options[0], spec, depth + 1)
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        return {k: sample(props[k], spec, depth + 1) for k in schema.get("required", []) if k in props}
    if kind == "array":
        return [sample(schema.get("items", {}), spec, depth + 1) for _ in range(schema.get("minItems", 0))]
    if kind == "integer":
        return max(int(schema.get("minimum", 1)), 1)
    if kind == "number":
        return float(schema.get("minimum", 1))
    if kind == "boolean":
        return False
    return "x" * max(int(schema.get("minLength", 1)), 1)


def build_request(path: str, method: str, operation: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """httpx request arguments for an operation: path and required query parameters, and a body when it has one."""
    url, query = path, {}
    for param in operation.get("parameters", []):
        value = USER if param["in"] == "path" and param.get("schema", {}).get("type") == "string" else None
        value = value if value is not None else sample(param.get("schema", {}), spec)
        if param["in"] == "path":
            url = url.replace("{" + param["name"] + "}", str(value))
        elif param["in"] == "query" and param.get("required"):
            query[param["name"]] = value
    kwargs: dict[str, Any] = {"method": method.upper(), "url": url, "params": query}
    content = operation.get("requestBody", {}).get("content", {})
    if "application/json" in content:
        kwargs["json"] = sample(content["application/json"].get("schema", {}), spec)
    elif "multipart/form-data" in content:
        kwargs["files"] = {"file": ("note.txt", b"a small note", "text/plain")}
    return kwargs


async def check_every_operation_requires_auth(
    app_factory: Callable[[Any], FastAPI],
    settings_cls: type[PluginSettings],
    data_dir: Path,
    kind: AuthKind,
    scheme: str = "bearer",
    **overrides: Any,
) -> list[Outcome]:
    """Run the check for one method; fails with every offending operation listed. Returns what each one answered."""
    extra: dict[str, Any] = {"service_token": SERVICE_TOKEN} if kind == "service_http" else {}
    settings = settings_cls(data_dir=data_dir, auth=kind, auth_scheme=scheme, **extra, **overrides)
    app = app_factory(settings)
    outcomes: list[Outcome] = []
    problems: list[str] = []
    async with asgi_client(app) as client:
        valid = await valid_credential(kind, app, client, scheme)
        spec = (await client.get("/openapi.json")).json()
        operations = list(iter_operations(spec))
        assert operations, "the spec has no operations"
        for path, method, operation in operations:
            request = build_request(path, method, operation, spec)
            statuses: dict[str, int] = {}
            for label, header in rejected_credentials(scheme).items():
                answer = await client.request(**request, headers={"Authorization": header} if header else {})
                statuses[label] = answer.status_code
                if answer.status_code != 401 or "www-authenticate" not in answer.headers:
                    problems.append(f"{method.upper()} {path} with {label} credentials: {answer.status_code}")
            answer = await client.request(**request, headers={"Authorization": valid})
            statuses["valid"] = answer.status_code
            if answer.status_code in (401, 403) or answer.status_code >= 500:
                problems.append(f"{method.upper()} {path} with a valid credential: {answer.status_code} {answer.text}")
            if operation.get("security") != [{"plugkit": []}]:
                problems.append(f"{method.upper()} {path}: the spec does not declare its security requirement")
            outcomes.append(Outcome(method, path, operation.get("operationId", ""), statuses))
    assert not problems, "\n".join(problems)
    return outcomes
