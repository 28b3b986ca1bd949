"""The retrieval filter language: one parser and validator, and the small typed tree every store translates.

What a client sends in a `filter` field (of a query, a delete, the document listing), told apart by a `type` key:
- a comparison `{"key": K, "type": "eq"|"ne"|"gt"|"gte"|"lt"|"lte"|"in"|"nin", "value": V}` or a compound
  `{"type": "and"|"or", "filters": [...]}` (the shape of OpenAI's file-search attribute filters), nested at most
  `MAX_DEPTH` compounds deep with at most `MAX_COMPARISONS` comparisons;
- the original flat filter `{document_id?, source?, source_id?, author?, url?, start_date?, end_date?}` (no `type`;
  its model is models.DocumentMetadataFilter).

Keys are the standard fields (`STRING_FIELDS`, and `created_at`) or custom metadata keys. Values: strings (standard
string fields take only strings), numbers, booleans; `in`/`nin` a list of one kind; `gt`/`gte`/`lt`/`lte` a number
or an ISO 8601 date. An ISO 8601 date string, and every value compared with `created_at`, compares as an instant.
A list field (a custom list of strings) matches `eq`/`in` when it contains the value. `ne`/`nin` are the negation
of `eq`/`in`: they also match documents that lack the key.

The tree (`to_tree`), frozen dataclasses a store turns into its native filter with bound parameters:
- `Equals(key, kind, values)`: the key's value equals one of `values` (for a list field: contains one of them);
  `kind` is "string", "number" or "bool" (every value is of that kind);
- `Range(key, kind, gt, gte, lt, lte)`: a number (`kind` "number", compared with the key's value) or an instant
  (`kind` "date", epoch seconds, compared with the key's instant: `created_at` -> the stored `created_ts`, a custom
  key -> the instant stored beside it when its value is an ISO 8601 date string); unset bounds are None;
- `And(parts)`, `Or(parts)`, `Not(part)`.
`is_standard(key)` says whether a key is a standard column (else it lives in the custom metadata).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    Tag,
    model_validator,
)

MAX_DEPTH = 8
MAX_COMPARISONS = 64
MAX_LIST = 100
KEY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$"
_KEY = re.compile(KEY_PATTERN)
STRING_FIELDS = ("document_id", "source", "source_id", "author", "url")  # the standard text columns
DATE_FIELD = "created_at"
SOURCES = ("email", "file", "chat")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|z|[+-]\d{2}(:?\d{2})?)?)?$")

Scalar = StrictBool | StrictInt | StrictFloat | StrictStr
Kind = Literal["string", "number", "bool", "date"]


def parse_instant(value: str) -> float:
    """Seconds since the epoch of an ISO 8601 date or date-time (a date is its midnight UTC, a naive time is UTC).
    Raises ValueError naming the value when it is not ISO 8601."""
    text = value.strip() if isinstance(value, str) else ""
    try:
        if len(text) == 10:
            parsed = datetime.combine(date.fromisoformat(text), datetime.min.time())
        else:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{value!r} is not an ISO 8601 date or date-time (e.g. 2024-05-01 or 2024-05-01T12:00:00Z)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def as_instant(value: object) -> float | None:
    """The instant of a string written as an ISO 8601 date (`2024-05-01`, `2024-05-01T12:00:00+02:00`...), else
    None: what makes a custom string value (stored or in a filter) compare as a date."""
    if not isinstance(value, str) or not _ISO_DATE.match(value.strip()):
        return None
    try:
        return parse_instant(value)
    except ValueError:
        return None


def is_standard(key: str) -> bool:
    """Whether `key` is a standard metadata column (else a custom metadata key)."""
    return key in STRING_FIELDS or key == DATE_FIELD


# -- the typed tree ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Equals:
    key: str
    kind: Literal["string", "number", "bool"]
    values: tuple[str | int | float | bool, ...]


@dataclass(frozen=True)
class Range:
    key: str
    kind: Literal["number", "date"]
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None


@dataclass(frozen=True)
class And:
    parts: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    parts: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    part: Node


Node = Equals | Range | And | Or | Not


def walk(node: Node) -> Iterator[Node]:
    """Every node of a tree, parents first."""
    yield node
    if isinstance(node, And | Or):
        for part in node.parts:
            yield from walk(part)
    elif isinstance(node, Not):
        yield from walk(node.part)


def keys_of(node: Node | None) -> set[str]:
    """The keys a tree compares."""
    return {n.key for n in walk(node) if isinstance(n, Equals | Range)} if node is not None else set()


# -- what clients send ------------------------------------------------------------------------------------------


def _kind(value: object) -> Kind:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return "date" if as_instant(value) is not None else "string"


class Comparison(BaseModel):
    """`{"key", "type", "value"}`: compare one metadata key with a value."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"example": {"key": "team", "type": "eq", "value": "a"}}
    )
    key: str = Field(pattern=KEY_PATTERN, description="A standard metadata field or a custom metadata key")
    type: Literal["eq", "ne", "gt", "gte", "lt", "lte", "in", "nin"]
    value: Scalar | list[Scalar] = Field(
        description="A string, number or boolean; a list of one kind for in/nin; a number or ISO 8601 date for"
        " gt/gte/lt/lte"
    )

    @model_validator(mode="after")
    def _check(self) -> Comparison:
        values = self.value if isinstance(self.value, list) else [self.value]
        if self.type in ("in", "nin"):
            if not isinstance(self.value, list):
                raise ValueError(f"{self.type!r} takes a list of values, not a single value")
            if not 1 <= len(values) <= MAX_LIST:
                raise ValueError(f"{self.type!r} takes 1 to {MAX_LIST} values, got {len(values)}")
        elif isinstance(self.value, list):
            raise ValueError(f"{self.type!r} takes a single value; use 'in' or 'nin' for a list")
        for value in values:
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError("a number in a filter must be finite")
        kinds = {_kind(v) for v in values}
        if kinds == {"date", "string"}:
            kinds = {"string"}
        if len(kinds) > 1:
            raise ValueError(f"the values of {self.key!r} mix types ({', '.join(sorted(kinds))}): use one type")
        kind = kinds.pop()
        if self.type in ("gt", "gte", "lt", "lte") and kind not in ("number", "date"):
            raise ValueError(f"{self.type!r} compares numbers or ISO 8601 dates, not a {kind} ({values[0]!r})")
        if self.key == DATE_FIELD and kind != "date":
            raise ValueError(f"{DATE_FIELD!r} compares with ISO 8601 dates (e.g. 2024-05-01), not {values[0]!r}")
        if self.key in STRING_FIELDS:
            if kind not in ("string", "date"):
                raise ValueError(f"{self.key!r} is a string field: compare it with strings, not {values[0]!r}")
            if self.type in ("gt", "gte", "lt", "lte"):
                raise ValueError(f"{self.key!r} is a string field: it takes eq, ne, in or nin")
            if self.key == "source" and any(v not in SOURCES for v in values):
                raise ValueError(f"'source' is one of {', '.join(SOURCES)}")
        return self


def filter_kind(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    if kind is None:
        return "flat"
    return "compound" if kind in ("and", "or") else "comparison"


class CompoundFilter(BaseModel):
    """`{"type": "and"|"or", "filters": [...]}`: combine comparisons and compounds."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["and", "or"]
    filters: list[
        Annotated[
            Annotated[Comparison, Tag("comparison")] | Annotated[CompoundFilter, Tag("compound")],
            Discriminator(filter_kind),
        ]
    ] = Field(min_length=1, max_length=MAX_COMPARISONS)


def check_limits(value: Any) -> Any:
    """A compound filter within MAX_DEPTH and MAX_COMPARISONS (raises ValueError naming where it goes over)."""
    if not isinstance(value, CompoundFilter):
        return value
    comparisons = 0

    def visit(node: CompoundFilter, depth: int, path: str) -> None:
        nonlocal comparisons
        if depth > MAX_DEPTH:
            raise ValueError(f"the filter nests compounds more than {MAX_DEPTH} deep (at {path})")
        for n, part in enumerate(node.filters):
            if isinstance(part, CompoundFilter):
                visit(part, depth + 1, f"{path}.filters[{n}]")
            else:
                comparisons += 1
        if comparisons > MAX_COMPARISONS:
            raise ValueError(f"the filter holds more than {MAX_COMPARISONS} comparisons (at {path})")

    visit(value, 1, "filter")
    return value


def to_tree(flt: Any) -> Node | None:
    """The typed tree of a validated filter (flat, comparison or compound; an already built tree is returned as is);
    None when it constrains nothing."""
    if flt is None or isinstance(flt, Equals | Range | And | Or | Not):
        return flt
    if isinstance(flt, Comparison):
        return _comparison(flt)
    if isinstance(flt, CompoundFilter):
        parts = tuple(node for node in (to_tree(part) for part in flt.filters) if node is not None)
        return And(parts) if flt.type == "and" else Or(parts)
    if isinstance(flt, BaseModel):
        return _flat(flt.model_dump(exclude_none=True))
    raise TypeError(f"not a filter: {flt!r}")


def _flat(fields: dict[str, Any]) -> Node | None:
    parts: list[Node] = []
    for name in STRING_FIELDS:
        value = fields.get(name)
        if value is not None:
            parts.append(Equals(name, "string", (getattr(value, "value", value),)))
    start, end = fields.get("start_date"), fields.get("end_date")
    if start is not None or end is not None:
        parts.append(
            Range(
                DATE_FIELD,
                "date",
                gte=parse_instant(start) if start is not None else None,
                lte=parse_instant(end) if end is not None else None,
            )
        )
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else And(tuple(parts))


def _comparison(c: Comparison) -> Node:
    values = c.value if isinstance(c.value, list) else [c.value]
    kind = _kind(values[0])
    as_date = c.key == DATE_FIELD or (c.key not in STRING_FIELDS and all(_kind(v) == "date" for v in values))
    node: Node
    if c.type in ("gt", "gte", "lt", "lte"):
        bound = parse_instant(str(values[0])) if as_date else float(values[0])
        node = Range(c.key, "date" if as_date else "number", **{c.type: bound})
    elif as_date:
        instants = [parse_instant(str(v)) for v in values]
        ranges: list[Node] = [Range(c.key, "date", gte=t, lte=t) for t in dict.fromkeys(instants)]
        node = ranges[0] if len(ranges) == 1 else Or(tuple(ranges))
    else:
        equal_kind: Literal["string", "number", "bool"] = "string" if kind == "date" else kind
        node = Equals(c.key, equal_kind, tuple(dict.fromkeys(values)))
    return Not(node) if c.type in ("ne", "nin") else node


__all__ = [
    "And",
    "Comparison",
    "CompoundFilter",
    "Equals",
    "check_limits",
    "filter_kind",
    "Node",
    "Not",
    "Or",
    "Range",
    "as_instant",
    "is_standard",
    "keys_of",
    "parse_instant",
    "to_tree",
    "walk",
]
