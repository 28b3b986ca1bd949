"""A spec's operations as the tools a model gets: OpenAI function schemas, MCP tools, the TypeScript prompt."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from plugkit.hints import ToolHints, hints_of
from plugkit.spec import CONSEQUENTIAL, iter_operations, resolve_ref

BODY = "body"  # the argument holding a request body that cannot be spread into top-level arguments
RESULT = "result"  # the property holding a response that is not a JSON object, in structured tool output
_IDENTIFIER = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")


@dataclass(frozen=True)
class Parameter:
    name: str
    location: str  # path | query | header | cookie
    required: bool
    schema: dict[str, Any]


@dataclass(frozen=True)
class Operation:
    """One operation with every `$ref` resolved, and how its tool arguments map back onto the HTTP request."""

    operation_id: str
    method: str
    path: str
    summary: str
    description: str
    parameters: tuple[Parameter, ...]
    body_schema: dict[str, Any] | None
    body_media_type: str | None
    body_required: bool
    body_spread: bool  # the body's properties are top-level arguments (else one `body` argument)
    consequential: bool
    hints: ToolHints = ToolHints(read_only=False, declared=False)
    response_schema: dict[str, Any] | None = None  # the JSON schema of the success response, when it has one

    @property
    def title(self) -> str:
        """A short human-readable name: the one the route declared, else the summary."""
        return self.hints.title or self.summary

    @property
    def output_wrapped(self) -> bool:
        """Whether the response is not a JSON object, so the structured tool output carries it as `result`."""
        return self.response_schema is not None and self.response_schema.get("type") != "object"

    @property
    def output_schema(self) -> dict[str, Any] | None:
        """The JSON schema (type object, as MCP requires) of the tool's structured output."""
        if self.response_schema is None:
            return None
        if self.output_wrapped:
            return {"type": "object", "properties": {RESULT: self.response_schema}, "required": [RESULT]}
        return self.response_schema

    def structured(self, data: Any) -> dict[str, Any] | None:
        """The structured tool output of a response body, conforming to `output_schema`."""
        if self.output_wrapped:
            return {RESULT: data}
        return data if isinstance(data, dict) else None

    @property
    def doc(self) -> str:
        """The text the model reads about the operation: its description, else its summary."""
        return self.description or self.summary

    @property
    def input_schema(self) -> dict[str, Any]:
        """A JSON schema (type object) of the tool's arguments: path, query and header parameters, then the body."""
        properties: dict[str, Any] = {}
        required: list[str] = []
        for parameter in self.parameters:
            properties[parameter.name] = parameter.schema
            if parameter.required:
                required.append(parameter.name)
        if self.body_schema is not None:
            if self.body_spread:
                properties.update(self.body_schema.get("properties") or {})
                required += [r for r in self.body_schema.get("required") or [] if r not in required]
            else:
                properties[BODY] = self.body_schema
                if self.body_required:
                    required.append(BODY)
        schema: dict[str, Any] = {"type": "object", "properties": properties}
        if required:
            schema["required"] = required
        return schema

    def split_arguments(
        self, arguments: Mapping[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, str], Any]:
        """(path, query, headers, body) of a call; raises ValueError naming a missing or unknown argument."""
        path: dict[str, Any] = {}
        query: dict[str, Any] = {}
        headers: dict[str, str] = {}
        remaining = dict(arguments)
        for parameter in self.parameters:
            if parameter.name not in remaining:
                if parameter.required:
                    raise ValueError(f"{self.operation_id} needs the {parameter.location} parameter {parameter.name!r}")
                continue
            value = remaining.pop(parameter.name)
            if parameter.location == "path":
                path[parameter.name] = value
            elif parameter.location == "query":
                query[parameter.name] = value
            elif parameter.location == "header":
                headers[parameter.name] = str(value)
        body: Any = None
        if self.body_schema is not None:
            if self.body_spread:
                body, remaining = remaining, {}
            elif BODY in remaining:
                body = remaining.pop(BODY)
            if body is None and self.body_required:
                raise ValueError(f"{self.operation_id} needs a request body")
        if remaining:
            known = ", ".join(p.name for p in self.parameters) or "none"
            raise ValueError(
                f"{self.operation_id} takes no argument {', '.join(map(repr, sorted(remaining)))} (parameters: {known})"
            )
        return path, query, headers, body


def deref(spec: Mapping[str, Any], node: Any, _stack: tuple[str, ...] = ()) -> Any:
    """A copy of `node` with every local `$ref` replaced by what it names; a recursive reference becomes `{}`."""
    if isinstance(node, list):
        return [deref(spec, item, _stack) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str):
        if ref in _stack:
            return {"description": f"(recursive: {ref.rsplit('/', 1)[-1]})"}
        target = deref(spec, resolve_ref(dict(spec), {"$ref": ref}), (*_stack, ref))
        siblings = {k: deref(spec, v, _stack) for k, v in node.items() if k != "$ref"}
        return {**target, **siblings} if isinstance(target, dict) else target
    return {k: deref(spec, v, _stack) for k, v in node.items()}


def json_schema(node: Any) -> Any:
    """A (dereferenced) OpenAPI schema as plain JSON Schema: OpenAPI 3.0's `nullable` becomes a "null" type."""
    if isinstance(node, list):
        return [json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    schema = {k: json_schema(v) for k, v in node.items() if k != "nullable"}
    if node.get("nullable") is True:
        kind = schema.get("type")
        if isinstance(kind, str):
            schema["type"] = [kind, "null"]
        elif kind is None:
            schema = {"anyOf": [schema, {"type": "null"}]}
    return schema


def _response_schema(spec: Mapping[str, Any], raw: Mapping[str, Any]) -> dict[str, Any] | None:
    """The JSON schema of the first success response with a JSON body, if it describes anything."""
    for status, response in (raw.get("responses") or {}).items():
        if not str(status).startswith("2"):
            continue
        resolved = deref(spec, response)
        content = (resolved.get("content") if isinstance(resolved, dict) else None) or {}
        media = next((m for m in content if m == "application/json" or m.endswith("+json")), None)
        schema = (content.get(media) or {}).get("schema") if media else None
        return json_schema(schema) if isinstance(schema, dict) and schema else None
    return None


def _parameter(spec: Mapping[str, Any], raw: Any) -> Parameter | None:
    param = deref(spec, raw)
    if not isinstance(param, dict) or not isinstance(param.get("name"), str):
        return None
    schema = dict(param.get("schema") or {})
    if param.get("description") and "description" not in schema:
        schema["description"] = param["description"]
    location = str(param.get("in", "query"))
    return Parameter(param["name"], location, bool(param.get("required")) or location == "path", schema)


def operations(spec: Mapping[str, Any]) -> list[Operation]:
    """Every operation of the spec that has an operationId (a host skips the others), in document order."""
    result: list[Operation] = []
    for path, method, raw in iter_operations(dict(spec)):
        op_id = raw.get("operationId")
        if not isinstance(op_id, str) or not op_id:
            continue
        item = (spec.get("paths") or {}).get(path) or {}
        merged: dict[tuple[str, str], Parameter] = {}
        for raw_param in [*(item.get("parameters") or []), *(raw.get("parameters") or [])]:
            parameter = _parameter(spec, raw_param)
            if parameter is not None and parameter.location != "cookie":
                merged[(parameter.name, parameter.location)] = parameter  # operation-level ones win
        ordered = sorted(merged.values(), key=lambda p: ("path", "query", "header").index(p.location))
        body_schema, media, body_required = None, None, False
        body = deref(spec, raw.get("requestBody"))
        if isinstance(body, dict):
            content = body.get("content") or {}
            media = "application/json" if "application/json" in content else next(iter(content), None)
            if media is not None:
                body_schema = dict((content.get(media) or {}).get("schema") or {})
                body_required = bool(body.get("required"))
        names = {p.name for p in ordered}
        spread = (
            body_schema is not None
            and media == "application/json"
            and body_schema.get("type", "object") == "object"
            and bool(body_schema.get("properties"))
            and not names & set(body_schema.get("properties") or {})
        )
        hints = hints_of(method, raw)
        result.append(
            Operation(
                operation_id=op_id,
                method=method,
                path=path,
                summary=str(raw.get("summary") or ""),
                description=str(raw.get("description") or ""),
                parameters=tuple(ordered),
                body_schema=body_schema,
                body_media_type=media,
                body_required=body_required,
                body_spread=spread,
                consequential=bool(raw.get(CONSEQUENTIAL, hints.consequential)),
                hints=hints,
                response_schema=_response_schema(spec, raw),
            )
        )
    return result


def openai_tools(ops: list[Operation]) -> list[dict[str, Any]]:
    """OpenAI function-calling tool definitions, one per operation."""
    return [
        {
            "type": "function",
            "function": {"name": op.operation_id, "description": op.doc, "parameters": op.input_schema},
        }
        for op in ops
    ]


def mcp_tool(op: Operation) -> dict[str, Any]:
    """The MCP tool definition (the `tools/list` shape) of an operation: its title, the hints its route declared (or
    its HTTP method implies), its input schema and the output schema of its success response."""
    title = {"title": op.title} if op.title else {}
    tool: dict[str, Any] = {
        "name": op.operation_id,
        **title,
        "description": op.doc,
        "inputSchema": op.input_schema,
        "annotations": {**title, **op.hints.annotations()},
    }
    if op.output_schema is not None:
        tool["outputSchema"] = op.output_schema
    return tool


def mcp_tools(ops: list[Operation]) -> list[dict[str, Any]]:
    """MCP tool definitions, one per operation (see `mcp_tool`)."""
    return [mcp_tool(op) for op in ops]


def _comment(text: str, indent: str = "") -> list[str]:
    return [f"{indent}// {line}".rstrip() for line in text.strip().splitlines() if line.strip()]


def ts_type(schema: Any, indent: str = "") -> str:
    """The TypeScript type of a (dereferenced) JSON schema, as the original host wrote it into the prompt."""
    if not isinstance(schema, dict) or not schema:
        return "any"
    if "enum" in schema:
        return " | ".join(json.dumps(v) for v in schema["enum"]) or "never"
    if "const" in schema:
        return json.dumps(schema["const"])
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            return " | ".join(dict.fromkeys(ts_type(s, indent) for s in schema[key]))
    if isinstance(schema.get("allOf"), list):
        return " & ".join(ts_type(s, indent) for s in schema["allOf"])
    kind = schema.get("type")
    if isinstance(kind, list):
        return " | ".join(ts_type({**schema, "type": k}, indent) for k in kind)
    nullable = " | null" if schema.get("nullable") else ""
    if kind == "array":
        item = ts_type(schema.get("items"), indent)
        return (f"({item})[]" if " " in item else f"{item}[]") + nullable
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties") or {}
        if not properties:
            return "object" + nullable
        lines = ["{"]
        for name, sub in properties.items():
            lines += _property_lines(name, sub, name in (schema.get("required") or []), indent + "  ")
        return "\n".join(lines) + f"\n{indent}}}" + nullable
    simple = {"string": "string", "integer": "number", "number": "number", "boolean": "boolean", "null": "null"}
    return simple.get(str(kind), "any") + nullable


def _property_lines(name: str, schema: Any, required: bool, indent: str) -> list[str]:
    schema = schema if isinstance(schema, dict) else {}
    lines = _comment(str(schema.get("description") or ""), indent)
    key = name if _IDENTIFIER.match(name) else json.dumps(name)
    line = f"{indent}{key}{'' if required else '?'}: {ts_type(schema, indent)},"
    if "default" in schema:
        line += f" // default: {json.dumps(schema['default'])}"
    return [*lines, line]


def typescript_namespace(name: str, description: str, ops: list[Operation]) -> str:
    """The prompt text the original plugin host built: a TypeScript namespace with one function type per operation."""
    lines = [*_comment(description), f"namespace {name} {{", ""]
    for op in ops:
        lines += _comment(op.doc)
        schema = op.input_schema
        if not schema["properties"]:
            lines.append(f"type {op.operation_id} = () => any;")
        else:
            lines.append(f"type {op.operation_id} = (_: {{")
            for prop, sub in schema["properties"].items():
                lines += _property_lines(prop, sub, prop in schema.get("required", []), "")
            lines.append("}) => any;")
        lines.append("")
    lines.append(f"}} // namespace {name}")
    return "\n".join(lines) + "\n"
