"""The one list of plugins the commands know: the built-in ones, those other packages install in the
`plugkit.plugins` entry-point group, and `module:attribute` references (as pytest and uvicorn spell them)."""

from __future__ import annotations

import importlib
import os
import re
import sys
from dataclasses import dataclass
from importlib.metadata import entry_points

from plugkit.plugin import Plugin

ENTRY_POINT_GROUP = "plugkit.plugins"
REFERENCE = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")

BUILTINS: dict[str, str] = {
    "todo": "plugkit.plugins.todo.app:plugin",
    "sports": "plugkit.plugins.sports.app:plugin",
    "retrieval": "plugkit.plugins.retrieval.app:plugin",
}


class UnknownPlugin(LookupError):
    """A name that is no installed plugin, or a reference that does not lead to a `Plugin`."""


@dataclass(frozen=True)
class Installed:
    """A plugin the registry knows by name: where it comes from and the reference that loads it."""

    name: str
    reference: str
    origin: str


def installed() -> dict[str, Installed]:
    """Every plugin known by name: built-ins first, then entry points (a built-in's name is not taken over)."""
    found = {name: Installed(name, ref, "built-in") for name, ref in BUILTINS.items()}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        if point.name not in found:
            origin = f"{point.dist.name} {point.dist.version}" if point.dist is not None else "entry point"
            found[point.name] = Installed(point.name, point.value, origin)
    return found


def is_reference(name: str) -> bool:
    """Whether `name` is a `module:attribute` reference rather than a registered name."""
    return REFERENCE.fullmatch(name) is not None


def reference_of(name: str) -> str:
    """The `module:attribute` reference a name or reference stands for; UnknownPlugin when there is none."""
    if is_reference(name):
        return name
    known = installed()
    if name not in known:
        raise UnknownPlugin(
            f"no plugin {name!r}; installed: {', '.join(sorted(known))} "
            "(or give a module:attribute reference, e.g. mypackage.plugin:plugin)"
        )
    return known[name].reference


def load(name: str) -> Plugin:
    """The Plugin a name or `module:attribute` reference stands for."""
    reference = reference_of(name)
    module_name, _, attribute = reference.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # a reference to a module of the current directory, as uvicorn allows
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UnknownPlugin(f"cannot import {module_name!r} for plugin {name!r}: {exc}") from None
    value: object = module
    for part in attribute.split(".") if attribute else ():
        value = getattr(value, part, None)
    if not isinstance(value, Plugin):
        raise UnknownPlugin(f"{reference!r} is not a plugkit.Plugin (found {type(value).__name__})")
    return value
