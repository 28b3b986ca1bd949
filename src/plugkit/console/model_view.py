"""What the model sees of a plugin, for the console: its tools in each host's form with token counts, the problems
`plugkit check --strict` finds, and the operations the page builds its forms from. Reuses the host-side code."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urljoin

from plugkit.host.check import check_plugin
from plugkit.host.loader import WELL_KNOWN, LoadedPlugin
from plugkit.host.tokens import METHOD, approximate_tokens
from plugkit.host.tools import Operation, mcp_tool, mcp_tools, openai_tools, operations, typescript_namespace


def _operation(op: Operation) -> dict[str, Any]:
    return {
        "operation_id": op.operation_id,
        "method": op.method.upper(),
        "path": op.path,
        "title": op.title,
        "doc": op.doc,
        "parameters": [
            {"name": p.name, "location": p.location, "required": p.required, "schema": p.schema} for p in op.parameters
        ],
        "body_schema": op.body_schema,
        "body_media_type": op.body_media_type,
        "body_required": op.body_required,
        "read_only": op.hints.read_only,
    }


def _form(document: Any) -> dict[str, Any]:
    """A tool form as shown (indented) and its tokens as a host sends it (compact JSON, or the prompt text)."""
    if isinstance(document, str):
        return {"text": document, "tokens": approximate_tokens(document)}
    return {"text": json.dumps(document, indent=2), "tokens": approximate_tokens(json.dumps(document))}


def tool_forms(manifest: dict[str, Any], spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The tools in each host's form (`openai`, `mcp`, `typescript`): the text and its token count."""
    plugin = LoadedPlugin(source="", manifest=manifest, spec=spec)
    ops = operations(spec)
    return {
        "openai": _form(openai_tools(ops)),
        "mcp": _form({"tools": mcp_tools(ops)}),
        "typescript": _form(typescript_namespace(plugin.name, plugin.description, ops)),
    }


def model_view(manifest: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """The console's model view of a plugin's manifest and rendered spec (as served, with absolute URLs): all but
    the text of the tool forms (see `tool_forms`)."""
    api = manifest.get("api") if isinstance(manifest.get("api"), dict) else {}
    spec_location = str((api or {}).get("url") or "")
    plugin = LoadedPlugin(
        source=spec_location,
        manifest=manifest,
        manifest_location=urljoin(spec_location, WELL_KNOWN),
        spec=spec,
        spec_location=spec_location,
    )
    ops = operations(spec)
    return {
        "manifest": manifest,
        "problems": [
            {"level": p.level, "field": p.field, "message": p.message} for p in check_plugin(plugin, "strict")
        ],
        "token_method": METHOD,
        "description_tokens": approximate_tokens(plugin.description),
        # Each form's text comes from /console/forms/NAME: together they could pass the response size limit.
        "forms": {name: {"tokens": form["tokens"]} for name, form in tool_forms(manifest, spec).items()},
        "tools": [
            {
                "name": op.operation_id,
                "openai_tokens": approximate_tokens(json.dumps(openai_tools([op])[0])),
                "mcp_tokens": approximate_tokens(json.dumps(mcp_tool(op))),
            }
            for op in ops
        ],
        "operations": [_operation(op) for op in ops],
    }
