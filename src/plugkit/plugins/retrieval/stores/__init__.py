"""Vector store providers; each implements plugkit.plugins.retrieval.stores.base.VectorStore.

A provider is the module `plugkit.plugins.retrieval.stores.<name>` exposing `create_store(settings) -> VectorStore`
(see stores/base.py); `build_store` imports it only when it is chosen, so a provider's client library is needed
only by those who use it.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

from plugkit.plugins.retrieval.stores.base import VectorStore

STORE_NAMES = ("embedded", "pgvector", "milvus", "qdrant", "chroma", "lancedb")
EXTRAS = {"pgvector": "postgres", "milvus": "milvus", "qdrant": "qdrant", "chroma": "chroma", "lancedb": "lancedb"}


class UnknownStoreError(ValueError):
    """The configured store name names no provider, or its provider cannot be imported."""


def build_store(name: str, settings: Any) -> VectorStore:
    """The store `name`, built by its provider module's `create_store(settings)`."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise UnknownStoreError(f"{name!r} is not a store name; choose one of {', '.join(STORE_NAMES)}")
    module_name = f"{__name__}.{name}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise UnknownStoreError(f"unknown store {name!r}; choose one of {', '.join(STORE_NAMES)}") from exc
        extra = EXTRAS.get(name)
        hint = f": pip install 'plugkit[{extra}]'" if extra else ""
        raise UnknownStoreError(f"the {name} store needs the missing package {exc.name!r}{hint}") from exc
    factory = getattr(module, "create_store", None)
    if factory is None:
        raise UnknownStoreError(f"{module_name} has no create_store(settings) function")
    return factory(settings)  # type: ignore[no-any-return]
