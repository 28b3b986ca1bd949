"""plugkit: a toolkit and reference plugins for LLM AI plugins.

The public API: `Plugin` (a plugin as a value; `Plugin.create_app` builds its app), `PluginContext` (what a
plugin's setup works with), `PluginSettings` (the settings every plugin reads; subclass it for your own),
`Principal` and `CurrentPrincipal` (who made a request, as a route parameter), and `Database` (SQLite or
PostgreSQL through one code path). Names are imported on first use, so `import plugkit` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from plugkit.auth.principal import Principal
    from plugkit.deps import CurrentPrincipal
    from plugkit.plugin import Plugin, PluginContext
    from plugkit.settings import PluginSettings
    from plugkit.storage import Database

__version__ = "0.1.0"
__all__ = ["CurrentPrincipal", "Database", "Plugin", "PluginContext", "PluginSettings", "Principal", "__version__"]

_EXPORTS = {
    "CurrentPrincipal": "plugkit.deps",
    "Database": "plugkit.storage",
    "Plugin": "plugkit.plugin",
    "PluginContext": "plugkit.plugin",
    "PluginSettings": "plugkit.settings",
    "Principal": "plugkit.auth.principal",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'plugkit' has no attribute {name!r}")
