"""OpenAPI documents: rendering for a base URL, YAML/JSON output, and a lint against what model hosts accept."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import yaml

from plugkit.hints import hints_of
from plugkit.manifest import Problem

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
SUMMARY_LIMIT = 300
PARAMETER_DESCRIPTION_LIMIT = 700
GPT_ACTIONS_OPERATION_LIMIT = 30
CONSEQUENTIAL = "x-openai-isConsequential"


def iter_operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(path, method, operation) for every operation of a spec."""
    for path, item in (spec.get("paths") or {}).items():
        if not isinstance(item, dict):
            continue
        for method in HTTP_METHODS:
            operation = item.get(method)
            if isinstance(operation, dict):
                yield path, method, operation


def render_spec(
    base: dict[str, Any],
    base_url: str,
    *,
    security_scheme: dict[str, Any] | None = None,
    protected_operations: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """A copy of `base` for a plugin reached at `base_url`: absolute `servers`, the auth method's security scheme on
    protected operations, `x-openai-isConsequential` on operations: true unless the operation is read-only, as its
    route declared (`plugkit.hints`) or, undeclared, as its HTTP method says; and optional inputs without `null`
    (see `optional_not_nullable`)."""
    spec = optional_not_nullable(copy.deepcopy(base))
    spec["servers"] = [{"url": base_url.rstrip("/")}]
    if security_scheme is not None:
        spec.setdefault("components", {}).setdefault("securitySchemes", {})["plugkit"] = security_scheme
    for _path, method, operation in iter_operations(spec):
        operation.setdefault(CONSEQUENTIAL, hints_of(method, operation).consequential)
        if security_scheme is not None and operation.get("operationId") in protected_operations:
            operation["security"] = [{"plugkit": []}]
    return spec


def optional_not_nullable(spec: dict[str, Any]) -> dict[str, Any]:
    """Optional inputs as their plain type: an optional query parameter or body field is `{type: X}` left out of
    `required`, not pydantic's `anyOf: [{type: X}, {type: null}]` (clients such as LangChain's OpenAPI parser cannot
    read the latter, and a model has no reason to send null). Responses keep their nulls, since the server sends
    them; a component that responses also use is left as it is. Changes `spec` in place and returns it."""
    schemas = (spec.get("components") or {}).get("schemas") or {}
    in_responses = _components_under(spec, [op.get("responses") for _p, _m, op in iter_operations(spec)])
    for path, _method, operation in iter_operations(spec):
        path_parameters = ((spec.get("paths") or {}).get(path) or {}).get("parameters") or []
        for parameter in [*path_parameters, *(operation.get("parameters") or [])]:
            if (
                isinstance(parameter, dict)
                and not parameter.get("required")
                and isinstance(parameter.get("schema"), dict)
            ):
                parameter["schema"] = _without_null(parameter["schema"])
    bodies = [op.get("requestBody") for _p, _m, op in iter_operations(spec)]
    for body in bodies:
        for content in ((body or {}).get("content") or {}).values() if isinstance(body, dict) else ():
            if isinstance(content, dict) and isinstance(content.get("schema"), dict):
                _drop_optional_nulls(content["schema"])
    for name in _components_under(spec, bodies) - in_responses:
        if isinstance(schemas.get(name), dict):
            _drop_optional_nulls(schemas[name])
    return spec


def _components_under(spec: dict[str, Any], roots: list[Any]) -> set[str]:
    """The names of the schema components that `roots` reach, following `$ref`s."""
    schemas = (spec.get("components") or {}).get("schemas") or {}
    found: set[str] = set()
    stack = list(roots)
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
                name = ref.rsplit("/", 1)[1]
                if name not in found:
                    found.add(name)
                    stack.append(schemas.get(name))
            stack.extend(node.values())
    return found


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` less a `{type: null}` alternative (and a null default); the one remaining alternative inlined."""
    alternatives = schema.get("anyOf")
    if not isinstance(alternatives, list) or {"type": "null"} not in alternatives:
        return schema
    kept = [a for a in alternatives if a != {"type": "null"}]
    rest = {k: v for k, v in schema.items() if k != "anyOf" and not (k == "default" and v is None)}
    return {**kept[0], **rest} if len(kept) == 1 else {"anyOf": kept, **rest}


def _drop_optional_nulls(schema: dict[str, Any]) -> None:
    """`_without_null` on every optional property of `schema` and of the inline schemas under it."""
    stack: list[Any] = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            properties = node.get("properties")
            if isinstance(properties, dict):
                required = set(node.get("required") or ())
                for key, value in properties.items():
                    if key not in required and isinstance(value, dict):
                        properties[key] = _without_null(value)
            stack.extend(node.values())


def to_yaml(spec: dict[str, Any]) -> str:
    return str(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True))


def lint_spec(spec: Any, *, manifest_url: str | None = None) -> list[Problem]:
    """What a model host would object to in a spec. Errors make the host skip operations or the whole plugin."""
    problems: list[Problem] = []
    if not isinstance(spec, dict):
        return [Problem("error", "(document)", f"the spec is not an object but {type(spec).__name__}")]
    version = str(spec.get("openapi", ""))
    if not version:
        problems.append(Problem("error", "openapi", "is missing (Swagger 2.0 documents are not accepted)"))
    elif not (version.startswith("3.0") or version.startswith("3.1")):
        problems.append(Problem("error", "openapi", f"is {version!r}; hosts accept 3.0.x and 3.1.x"))
    servers = spec.get("servers")
    if not servers or not isinstance(servers, list):
        problems.append(Problem("error", "servers", "is missing; the host needs an absolute server URL"))
    else:
        for i, server in enumerate(servers):
            url = server.get("url", "") if isinstance(server, dict) else ""
            parts = urlsplit(str(url))
            if parts.scheme not in ("http", "https") or not parts.netloc:
                problems.append(Problem("error", f"servers[{i}].url", f"must be an absolute URL, got {url!r}"))
    seen: dict[str, str] = {}
    count = 0
    for path, method, operation in iter_operations(spec):
        count += 1
        where = f"paths.{path}.{method}"
        op_id = operation.get("operationId")
        if not op_id:
            problems.append(Problem("error", where, "has no operationId; the host skips it"))
        elif op_id in seen:
            problems.append(Problem("error", where, f"repeats operationId {op_id!r} of {seen[op_id]}"))
        else:
            seen[op_id] = where
        for key in ("summary", "description"):
            text = operation.get(key)
            if isinstance(text, str) and len(text) > SUMMARY_LIMIT:
                problems.append(
                    Problem("error", f"{where}.{key}", f"is {len(text)} characters, over the limit of {SUMMARY_LIMIT}")
                )
        path_parameters = ((spec.get("paths") or {}).get(path) or {}).get("parameters") or []
        for i, raw_parameter in enumerate([*path_parameters, *(operation.get("parameters") or [])]):
            parameter = resolve_ref(spec, raw_parameter)
            text = parameter.get("description") if isinstance(parameter, dict) else None
            if isinstance(text, str) and len(text) > PARAMETER_DESCRIPTION_LIMIT:
                name = parameter.get("name", i)
                problems.append(
                    Problem(
                        "error",
                        f"{where}.parameters.{name}.description",
                        f"is {len(text)} characters, over the limit of {PARAMETER_DESCRIPTION_LIMIT}",
                    )
                )
        body = resolve_ref(spec, operation.get("requestBody"))
        if isinstance(body, dict):
            for media, content in (body.get("content") or {}).items():
                schema = resolve_ref(spec, (content or {}).get("schema") or {})
                if media == "application/json" and schema.get("type", "object") != "object":
                    problems.append(
                        Problem("error", f"{where}.requestBody", f"is a {schema.get('type')!r}, not an object")
                    )
    if count > GPT_ACTIONS_OPERATION_LIMIT:
        problems.append(
            Problem(
                "warning", "paths", f"has {count} operations; GPT Actions take at most {GPT_ACTIONS_OPERATION_LIMIT}"
            )
        )
    if count == 0:
        problems.append(Problem("error", "paths", "has no operations"))
    problems += _reference_problems(spec)
    return problems


def _reference_problems(spec: dict[str, Any]) -> list[Problem]:
    """A `$ref` the host cannot follow: one to another document, or a local one naming nothing."""
    problems: list[Problem] = []
    seen: set[str] = set()
    stack: list[Any] = [spec]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref not in seen:
                seen.add(ref)
                if not ref.startswith("#/"):
                    problems.append(Problem("error", "$ref", f"{ref!r} points outside the document; hosts skip it"))
                elif not _pointer_exists(spec, ref):
                    problems.append(Problem("error", "$ref", f"{ref!r} names nothing in the document"))
            stack.extend(v for k, v in node.items() if k not in ("example", "examples"))
    return problems


def _pointer_exists(spec: dict[str, Any], ref: str) -> bool:
    target: Any = spec
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(target, dict) or part not in target:
            return False
        target = target[part]
    return True


def resolve_ref(spec: dict[str, Any], node: Any) -> Any:
    """Follow a local `$ref` (`#/components/...`) chain to the node it names."""
    seen: set[str] = set()
    while isinstance(node, dict) and isinstance(node.get("$ref"), str):
        ref = node["$ref"]
        if ref in seen or not ref.startswith("#/"):
            return {}
        seen.add(ref)
        target: Any = spec
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            target = target.get(part) if isinstance(target, dict) else None
        node = target if target is not None else {}
    return node
