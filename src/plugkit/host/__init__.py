"""The host side: what a model host does with a plugin (load, check, turn into tools, call)."""

from plugkit.host.call import CallResult, call_operation
from plugkit.host.check import check_plugin
from plugkit.host.loader import LoadedPlugin, load_plugin
from plugkit.host.tools import Operation, mcp_tools, openai_tools, operations, typescript_namespace

__all__ = [
    "CallResult",
    "LoadedPlugin",
    "Operation",
    "call_operation",
    "check_plugin",
    "load_plugin",
    "mcp_tools",
    "openai_tools",
    "operations",
    "typescript_namespace",
]
