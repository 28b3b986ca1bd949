"""The reliability harness, generic over plugins: spec-driven fuzzing, load, crash-and-restart, hostile inputs.

Each plugin is one `Target` in `TARGETS` (how to start it with `plugkit serve NAME`, what load to put on it, which
writes to make before a kill -9 and how to check them after the restart, which plugin-specific hostile inputs to
send). The quick tests in tests/reliability/ and the full run in bench/reliability.py both drive these functions.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import random
import re
import select
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import httpx
import psutil

from tests.helpers import PluginServer

# --- targets ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One HTTP request, as the load loop and the hostile suite send it."""

    method: str
    path: str
    json_body: str | None = None  # already-serialised JSON, so wrk can send it verbatim


class CrashWorkload(Protocol):
    """The writes a crash round makes, and the check that every acknowledged one survived a kill -9."""

    def write(self, client: httpx.Client, n: int) -> Any:
        """Make write number `n`; return what identifies it once acknowledged (raise when it was not)."""
        ...

    def verify(self, client: httpx.Client, acknowledged: Sequence[Any], attempted: int) -> list[str]:
        """Problems found after the restart: acknowledged writes missing, half-written or unknown records."""
        ...


@dataclass(frozen=True)
class HostileCase:
    """A hostile request and what it must be answered with: a 4xx whose body mentions `mentions`."""

    name: str
    method: str = "GET"
    path: str = "/"
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    raw: bytes | None = None  # sent as is on a socket, for what an HTTP client refuses to send
    statuses: tuple[int, ...] = (400, 404, 413, 422)
    mentions: str = ""
    forbid_in_response: str = ""  # must not appear in the response headers or body (leaks, injected headers)


@dataclass(frozen=True)
class Target:
    """How the harness starts and exercises one plugin."""

    name: str
    serve_args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    seed: Sequence[Call] = ()  # requests made once before load (data to read)
    load: Sequence[Call] = ()  # the load loop sends these round-robin
    json_call: Call | None = None  # an operation taking a JSON body, for the generic hostile inputs
    upload: Call | None = None  # a multipart file upload, where a 100 MB file is sent (default: JSON to json_call)
    health: Call = Call("GET", "/.well-known/ai-plugin.json")  # an API call that must work after every hostile input
    crash: CrashWorkload | None = None
    kill_within: tuple[float, float] = (0.05, 0.8)  # seconds after the writes start, drawn uniformly
    postgres: bool = False  # keeps its data in PLUGKIT_DATABASE_URL when set (the full run also tries PostgreSQL)
    hostile: Callable[[], list[HostileCase]] = list
    start_timeout: float = 120.0

    @contextmanager
    def serve(self, data_dir: Path, *extra: str) -> Iterator[PluginServer]:
        """A real `plugkit serve NAME` process on 127.0.0.1, its data in `data_dir`, quiet access log."""
        env = {"PLUGKIT_ACCESS_LOG": "false", "PLUGKIT_LOG_LEVEL": "warning", **self.env}
        server = PluginServer(self.name, "--data-dir", str(data_dir), *self.serve_args, *extra, env=env)
        server.start(timeout=self.start_timeout)
        try:
            yield server
        finally:
            server.stop()


class TodoCrash:
    """Todos added under a run of users (100 each, so a list stays under the response size limit); after the restart
    each acknowledged one is there with its full text, and nothing is there that was never sent."""

    PER_USER = 100

    @staticmethod
    def text(n: int) -> str:
        return f"crash write {n} " + "x" * (n % 50) + " end"

    def user(self, n: int) -> str:
        return f"crash{n // self.PER_USER}"

    def write(self, client: httpx.Client, n: int) -> Any:
        response = client.post(f"/todos/{self.user(n)}", json={"todo": self.text(n)})
        response.raise_for_status()
        return (self.user(n), response.json()["id"], self.text(n))

    def verify(self, client: httpx.Client, acknowledged: Sequence[Any], attempted: int) -> list[str]:
        stored: dict[tuple[str, int], str] = {}
        for user in sorted({self.user(n) for n in range(attempted)}):
            response = client.get(f"/todos/{user}")
            response.raise_for_status()
            stored.update({(user, item["id"]): item["todo"] for item in response.json()["items"]})
        problems = [f"acknowledged todo {i} of {u} is missing" for u, i, _t in acknowledged if (u, i) not in stored]
        problems += [
            f"todo {i} of {u} holds {stored[(u, i)]!r}, not {t!r}"
            for u, i, t in acknowledged
            if (u, i) in stored and stored[(u, i)] != t
        ]
        valid = {self.text(n) for n in range(attempted)}
        problems += [f"todo {k} holds {t!r}, which was never sent" for k, t in stored.items() if t not in valid]
        return problems


# SQL and filter-expression injections: a plugin must treat each as plain data (or refuse it with a 4xx).
INJECTIONS = (
    "' OR '1'='1",
    "victim' --",
    "x'; DROP TABLE todos; --",
    "%' OR username LIKE '%",
    '" OR 1=1 OR "',
    "author == 'x' or 1 == 1",  # Milvus boolean expression
    '{"$ne": null}',
    "\\' OR 1=1 --",
)


def todo_hostile() -> list[HostileCase]:
    """Inputs aimed at the TODO plugin's own parameters."""
    return [
        HostileCase(
            "todo_idx of 2**63", "DELETE", "/todos/reader", b'{"todo_idx": 9223372036854775808}', mentions="todo_idx"
        ),
        HostileCase(
            "todo_idx of -2**63", "DELETE", "/todos/reader", b'{"todo_idx": -9223372036854775808}', mentions="todo_idx"
        ),
        HostileCase(
            "todo_idx of 10**400", "DELETE", "/todos/reader", b'{"todo_idx": 1' + b"0" * 400 + b"}", mentions="todo_idx"
        ),
        HostileCase("todo id of 2**63 in the path", "DELETE", "/todos/hostile/9223372036854775808", mentions="todo_id"),
        HostileCase("NUL byte in a todo", "POST", "/todos/hostile", b'{"todo": "a\\u0000b"}', mentions="todo"),
        HostileCase("NUL byte in a username", "GET", "/todos/a%00b", mentions="username"),
        HostileCase(
            "CR/LF in a username",
            "GET",
            "/todos/a%0D%0ASet-Cookie:%20x=1",
            mentions="username",
            forbid_in_response="set-cookie",
        ),
        # An injection is only data: it answers with that literal user's (empty) list, never someone else's todos.
        *(
            HostileCase(
                f"SQL injection in a username: {s}",
                "GET",
                f"/todos/{httpx.URL(s).raw_path.decode()}",
                statuses=(200,),
                forbid_in_response="secret of victim",
            )
            for s in INJECTIONS
        ),
    ]


TODO = Target(
    name="todo",
    seed=(
        *(Call("POST", "/todos/reader", f'{{"todo": "item {i}"}}') for i in range(10)),
        Call("POST", "/todos/victim", '{"todo": "secret of victim"}'),
    ),
    load=(Call("GET", "/todos/reader"), Call("POST", "/todos/writer", '{"todo": "load item"}')),
    json_call=Call("POST", "/todos/hostile"),
    health=Call("GET", "/todos/reader"),
    crash=TodoCrash(),
    hostile=todo_hostile,
    postgres=True,
)


class RetrievalCrash:
    """Documents upserted whole; after the restart each acknowledged one is there with every part of its text (no
    half-written document), its chunks are found through the vector index, and an unacknowledged one is either
    absent or whole."""

    PARTS = 12

    @staticmethod
    def markers(n: int) -> list[str]:
        return [f"crashdoc{n}part{i}" for i in range(RetrievalCrash.PARTS)]

    def text(self, n: int) -> str:
        return " ".join(
            f"{m} is one sentence of a document written while the server may be killed." for m in self.markers(n)
        )

    def write(self, client: httpx.Client, n: int) -> Any:
        document = {"id": f"crash-{n}", "text": self.text(n), "metadata": {"author": "crash", "source": "chat"}}
        response = client.post("/upsert", json={"documents": [document]})
        response.raise_for_status()
        return n

    def _stored_text(self, client: httpx.Client, n: int) -> str | None:
        response = client.get(f"/documents/crash-{n}")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return " ".join(chunk["text"] for chunk in response.json()["chunks"])

    def verify(self, client: httpx.Client, acknowledged: Sequence[Any], attempted: int) -> list[str]:
        problems = []
        acked = set(acknowledged)
        for n in range(attempted):
            text = self._stored_text(client, n)
            if text is None:
                if n in acked:
                    problems.append(f"acknowledged document crash-{n} is missing")
                continue
            if lost := [m for m in self.markers(n) if m not in text]:
                problems.append(f"document crash-{n} is half-written: {len(lost)} of {self.PARTS} parts missing")
            query = {"queries": [{"query": self.markers(n)[0], "filter": {"document_id": f"crash-{n}"}, "top_k": 1}]}
            response = client.post("/query", json=query)
            response.raise_for_status()
            if not response.json()["results"][0]["results"]:
                problems.append(f"document crash-{n} is in the database but not in the vector index")
        return problems


def sports_hostile() -> list[HostileCase]:
    """Inputs aimed at the sports plugin's query parameters: huge ids, odd dates and seasons, injections."""
    q = httpx.QueryParams
    cases = [
        HostileCase("team id of 2**63", "GET", "/games?" + str(q({"team_ids[]": 2**63})), mentions="team_ids"),
        HostileCase("player id of -1", "GET", "/stats?" + str(q({"player_ids[]": -1})), mentions="player_ids"),
        HostileCase(
            "season of 2**63",
            "GET",
            "/season_averages?" + str(q({"season": 2**63, "player_ids[]": 1})),
            mentions="season",
        ),
        HostileCase(
            "a date that is a path",
            "GET",
            "/games?" + str(q({"start_date": "../../etc/passwd"})),
            mentions="start_date",
            forbid_in_response="root:x:0",
        ),
        HostileCase("a limit of 10**30", "GET", "/games?" + str(q({"limit": 10**30})), mentions="limit"),
        HostileCase("NUL in a player query", "GET", "/players?query=a%00b", statuses=(200, 400, 422)),
    ]
    cases += [
        HostileCase(
            f"injection in a player query: {s}", "GET", "/players?" + str(q({"query": s})), statuses=(200, 400, 422)
        )
        for s in INJECTIONS
    ]
    return cases


# Registered (added to TARGETS) when the sports plugin lands; a fresh data dir serves its bundled sample.
SPORTS = Target(
    name="sports",
    load=(
        Call("GET", "/players?query=james"),
        Call("GET", "/teams"),
        Call("GET", "/games?team_ids[]=14&limit=25"),
        Call("GET", "/stats?player_ids[]=237&limit=25"),
    ),
    health=Call("GET", "/teams"),
    hostile=sports_hostile,
)


def multipart_upload(filename: str, data: bytes, path: str = "/upsert-file") -> HostileCase:
    """A file upload as the retrieval plugin takes it (multipart `file`), to be named and judged by the caller."""
    request = httpx.Request("POST", f"http://127.0.0.1{path}", files={"file": (filename, data)})
    return HostileCase("", "POST", path, request.read(), {"content-type": request.headers["content-type"]})


def _zip(members: Mapping[str, bytes | int]) -> bytes:
    """A zip archive in memory; an int member is that many zero bytes, written in pieces (a compression bomb)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            if isinstance(content, bytes):
                archive.writestr(name, content)
                continue
            with archive.open(name, "w", force_zip64=True) as member:
                for _ in range(content // 2**20):
                    member.write(bytes(2**20))
    return buffer.getvalue()


def _encrypted_pdf() -> bytes:
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    writer.encrypt("a password")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


XXE_DOCUMENT = (
    b'<?xml version="1.0"?><!DOCTYPE w [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    b'<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
    b"<w:body><w:p><w:r><w:t>before &xxe; after</w:t></w:r></w:p></w:body></w:document>"
)
CONTENT_TYPES = (
    b'<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    b'<Default Extension="xml" ContentType="application/xml"/></Types>'
)


def retrieval_hostile() -> list[HostileCase]:
    """Inputs aimed at the retrieval plugin: filter injections, and files that are bombs, broken, locked or XXE."""
    from dataclasses import replace

    refused = (400, 413, 415, 422)
    files = [
        (
            "zip bomb in a DOCX",
            "bomb.docx",
            _zip({"[Content_Types].xml": CONTENT_TYPES, "word/document.xml": 64 * 2**20}),
            refused,
            "expands",
        ),
        ("corrupt PDF", "broken.pdf", b"%PDF-1.7\n" + bytes(range(256)) * 40 + b"\n%%EOF", refused, "pdf"),
        ("encrypted PDF", "locked.pdf", _encrypted_pdf(), refused, "encrypted"),
        # Refused, or read with the entity left unresolved: the answer never holds the file's content.
        (
            "DOCX with an external entity (XXE)",
            "xxe.docx",
            _zip({"[Content_Types].xml": CONTENT_TYPES, "word/document.xml": XXE_DOCUMENT}),
            (200, *refused),
            "",
        ),
        (
            "path traversal in a file name",
            "../../../../../../tmp/plugkit-traversal.txt",
            b"plain text",
            (200, *refused),
            "",
        ),
    ]
    cases = [
        replace(
            multipart_upload(filename, data),
            name=name,
            statuses=statuses,
            mentions=mentions,
            forbid_in_response="root:x:0",
        )
        for name, filename, data, statuses, mentions in files
    ]
    cases += [
        HostileCase(
            f"filter injection in {field}: {s}",
            "POST",
            "/query",
            json.dumps({"queries": [{"query": "seed", "filter": {field: s}}]}).encode(),
            statuses=(200, 400, 422),
            forbid_in_response="Seed document",
        )
        for field in ("document_id", "source_id", "author", "url")
        for s in INJECTIONS
    ]
    return cases


# Written against the retrieval API contract; registered (added to TARGETS) when the retrieval plugin lands.
RETRIEVAL = Target(
    name="retrieval",
    seed=(
        Call(
            "POST",
            "/upsert",
            json.dumps(
                {
                    "documents": [
                        {
                            "id": f"seed-{i}",
                            "text": f"Seed document {i} about topic {i % 3}.",
                            "metadata": {"author": "seed"},
                        }
                        for i in range(10)
                    ]
                }
            ),
        ),
    ),
    load=(
        Call("POST", "/query", '{"queries": [{"query": "topic 1", "top_k": 3}]}'),
        Call("POST", "/query", '{"queries": [{"query": "document", "filter": {"author": "seed"}, "top_k": 5}]}'),
    ),
    json_call=Call("POST", "/query"),
    upload=Call("POST", "/upsert-file"),
    health=Call("POST", "/query", '{"queries": [{"query": "seed"}]}'),
    crash=RetrievalCrash(),
    kill_within=(1.0, 6.0),  # an upsert embeds its chunks first: give acknowledgements time to happen
    hostile=retrieval_hostile,
    start_timeout=300.0,
)

# One line per plugin: sports (with a target of its own: its dataset, its GET routes) and RETRIEVAL join at merge.
TARGETS: dict[str, Target] = {t.name: t for t in (TODO, SPORTS, RETRIEVAL)}


def generic_hostile(target: Target) -> list[HostileCase]:
    """Inputs every plugin must refuse cleanly, aimed at its JSON operation, its paths and the HTTP layer."""
    host = b"Host: 127.0.0.1\r\n"
    return [
        *(_json_hostile(target.json_call) if target.json_call else []),
        HostileCase("path traversal", "GET", "/..%2F..%2F..%2Fetc%2Fpasswd", forbid_in_response="root:"),
        HostileCase(
            "path traversal in a segment",
            "GET",
            target.health.path.rsplit("/", 1)[0] + "/..%2F..%2Fetc%2Fpasswd/x",
            statuses=(200, 404, 405, 422),
            forbid_in_response="root:",
        ),
        HostileCase(
            "CR/LF in a header value",
            raw=b"GET / HTTP/1.1\r\n" + host + b"X-Test: a\rInjected: b\r\n\r\n",
            statuses=(400,),
            mentions="Invalid",
        ),
        HostileCase(
            "bare LF in a header value",
            raw=b"GET / HTTP/1.1\r\n" + host + b"X-Test: a\nInjected b\r\n\r\n",
            statuses=(400,),
            mentions="Invalid",
        ),
        HostileCase(
            "NUL in a header value",
            raw=b"GET / HTTP/1.1\r\n" + host + b"X-Test: a\x00b\r\n\r\n",
            statuses=(400,),
            mentions="Invalid",
        ),
    ]


def _json_hostile(call: Call) -> list[HostileCase]:
    method, path = call.method, call.path
    return [
        HostileCase("deeply nested JSON", method, path, b"[" * 100_000 + b"]" * 100_000, mentions="nested"),
        HostileCase(
            "JSON nested a little too deep", method, path, b'{"a":' * 2000 + b"1" + b"}" * 2000, mentions="nested"
        ),
        HostileCase("10 MB JSON string", method, path, b'"' + b"a" * 10_000_000 + b'"', mentions="limit"),
        HostileCase("body that is not UTF-8", method, path, b'{"todo": "\xff\xfe\xfd"}', mentions="UTF-8"),
        HostileCase("body that is not JSON", method, path, b"{not json", mentions="JSON"),
    ]


# --- results -----------------------------------------------------------------------------------------------------


@dataclass
class FuzzResult:
    cases: int = 0
    server_errors: int = 0
    spec_violations: int = 0
    failures: list[str] = field(default_factory=list)  # one line per distinct failure, with a curl to replay it
    statuses: dict[int, int] = field(default_factory=dict)  # how many responses of each status


@dataclass
class LoadResult:
    tool: str
    connections: int
    duration_s: float
    requests: int
    requests_per_s: float
    p99_ms: float
    errors: int
    rss_before_mb: float
    rss_after_mb: float
    rss_growth: float  # (after - before) / before


@dataclass
class CrashResult:
    rounds: int
    acknowledged: int
    attempted: int
    losses: int
    problems: list[str]


@dataclass
class HostileResult:
    name: str
    status: int
    detail: str
    ok: bool
    healthy_after: bool
    why: str = ""


# --- fuzzing -----------------------------------------------------------------------------------------------------


def fuzz(
    base_url: str,
    cases: int,
    *,
    headers: Mapping[str, str] | None = None,
    seed: int = 0,
    negative: bool = True,
    spec: dict[str, Any] | None = None,
) -> FuzzResult:
    """Generate about `cases` requests from the running plugin's own /openapi.json, or from `spec` (spread evenly
    over its operations, valid data and, unless turned off, invalid data) and check every response against it."""
    import schemathesis
    from schemathesis import GenerationMode

    schema = (
        schemathesis.openapi.from_dict(spec)
        if spec is not None
        else schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    )
    result = FuzzResult()
    modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if negative else [])
    operations = [outcome.ok() for outcome in schema.get_all_operations()]
    max_examples = -(-cases // (len(operations) * len(modes)))
    for operation in operations:
        for mode in modes:
            _fuzz_operation(operation, mode, base_url, dict(headers or {}), max_examples, seed, result)
    return result


def _fuzz_operation(
    operation: Any, mode: Any, base_url: str, headers: dict[str, str], max_examples: int, seed: int, result: FuzzResult
) -> None:
    import hypothesis
    from schemathesis.checks import (
        content_type_conformance,
        not_a_server_error,
        response_schema_conformance,
        status_code_conformance,
    )
    from schemathesis.core.failures import Failure, FailureGroup, ServerError

    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    seen = {line.split(" (status", 1)[0] for line in result.failures}

    def one(case: Any) -> None:
        response = case.call(base_url=base_url, headers=headers, timeout=30)
        result.cases += 1
        result.statuses[response.status_code] = result.statuses.get(response.status_code, 0) + 1
        try:
            case.validate_response(response, checks=checks)
        except (Failure, FailureGroup) as exc:
            failures = list(exc.exceptions) if isinstance(exc, FailureGroup) else [exc]
            for failure in failures:
                if isinstance(failure, ServerError):
                    result.server_errors += 1
                else:
                    result.spec_violations += 1
                key = f"{operation.label}: {failure.title}"
                if key not in seen:
                    seen.add(key)
                    curl = case.as_curl_command(base_url=base_url)
                    result.failures.append(f"{key} (status {response.status_code}): {curl}")

    test = hypothesis.given(operation.as_strategy(generation_mode=mode))(one)
    test = hypothesis.settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
        phases=[hypothesis.Phase.generate],
    )(test)
    try:
        hypothesis.seed(seed)(test)()
    except hypothesis.errors.Unsatisfiable:
        pass  # no invalid data can be made for this operation (it takes no parameters)


# --- load --------------------------------------------------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    """Resident memory of a server process and its children (uvicorn workers)."""
    process = psutil.Process(pid)
    total = process.memory_info().rss
    for child in process.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def _lua(calls: Sequence[Call]) -> str:
    lines = ["local requests = {}", 'local headers = {["Content-Type"] = "application/json"}']
    for i, call in enumerate(calls, 1):
        body = "nil" if call.json_body is None else "[==[" + call.json_body + "]==]"
        lines.append(f'requests[{i}] = wrk.format("{call.method}", [==[{call.path}]==], headers, {body})')
    lines += ["local n = 0", "request = function()", "  n = n % #requests + 1", "  return requests[n]", "end"]
    return "\n".join(lines) + "\n"


def _wrk(base_url: str, calls: Sequence[Call], connections: int, duration: float) -> tuple[int, float, int]:
    """Requests, p99 in ms and errors (non-2xx, socket errors, timeouts) from one wrk run."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_lua(calls))
    try:
        threads = min(2, connections)
        args = [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            "--timeout",
            "10s",
            "--latency",
            "-s",
            script.name,
            base_url,
        ]
        out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(script.name)
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    p99_ms = float(p99.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]  # type: ignore[union-attr]
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return requests, p99_ms, errors + (int(non_2xx.group(1)) if non_2xx else 0)


def _httpx_load(base_url: str, calls: Sequence[Call], connections: int, duration: float) -> tuple[int, float, int]:
    """The same bounded loop without wrk: `connections` asyncio clients sending `calls` round-robin."""

    async def run() -> tuple[int, float, int]:
        latencies: list[float] = []
        errors = 0
        deadline = time.monotonic() + duration
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=10) as client:

            async def worker(offset: int) -> None:
                nonlocal errors
                n = offset
                while time.monotonic() < deadline:
                    call = calls[n % len(calls)]
                    n += 1
                    started = time.perf_counter()
                    try:
                        response = await client.request(
                            call.method, call.path, content=call.json_body, headers={"content-type": "application/json"}
                        )
                        errors += response.status_code >= 400
                    except httpx.HTTPError:
                        errors += 1
                    latencies.append(time.perf_counter() - started)

            await asyncio.gather(*(worker(i) for i in range(connections)))
        latencies.sort()
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000 if latencies else 0.0
        return len(latencies), p99, errors

    return asyncio.run(run())


def seed(server: PluginServer, target: Target) -> None:
    """Make the target's seed requests (the data that load and hostile inputs read)."""
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        for call in target.seed:
            client.request(
                call.method, call.path, content=call.json_body, headers={"content-type": "application/json"}
            ).raise_for_status()


def load(
    server: PluginServer, target: Target, *, connections: int = 64, duration: float = 60.0, warmup: float = 3.0
) -> LoadResult:
    """Warm the seeded server up, then hold `connections` busy for `duration` seconds; RSS before and after."""
    use_wrk = shutil.which("wrk") is not None
    drive = _wrk if use_wrk else _httpx_load
    assert server.proc is not None
    drive(server.base_url, target.load, connections, warmup)
    before = rss_bytes(server.proc.pid)
    requests, p99_ms, errors = drive(server.base_url, target.load, connections, duration)
    after = rss_bytes(server.proc.pid)
    return LoadResult(
        tool="wrk" if use_wrk else "httpx",
        connections=connections,
        duration_s=duration,
        requests=requests,
        requests_per_s=round(requests / duration, 1),
        p99_ms=round(p99_ms, 3),
        errors=errors,
        rss_before_mb=round(before / 2**20, 1),
        rss_after_mb=round(after / 2**20, 1),
        rss_growth=round((after - before) / before, 4),
    )


# --- crash -------------------------------------------------------------------------------------------------------


def crash_rounds(target: Target, data_dir: Path, rounds: int, *, writers: int = 4, seed: int = 0) -> CrashResult:
    """Rounds of: writes from `writers` threads, kill -9 at a random point, restart; then every acknowledged write
    must be there after the restart. One restart ends a round and starts the next."""
    assert target.crash is not None, f"{target.name} has no crash workload"
    workload = target.crash
    rng = random.Random(seed)
    acknowledged: list[Any] = []
    counter = iter(range(10**9))
    lock = threading.Lock()
    attempted = 0
    problems: list[str] = []
    server = PluginServer(
        target.name, "--data-dir", str(data_dir), *target.serve_args, env={"PLUGKIT_ACCESS_LOG": "false", **target.env}
    )
    server.start(timeout=target.start_timeout)
    try:
        for _ in range(rounds):
            stop = threading.Event()

            def writer(stop: threading.Event) -> None:
                nonlocal attempted
                with httpx.Client(base_url=server.base_url, timeout=10) as client:
                    while not stop.is_set():
                        with lock:
                            n = next(counter)
                            attempted = max(attempted, n + 1)
                        try:
                            key = workload.write(client, n)
                        except (httpx.HTTPError, OSError):
                            return  # the server is gone: this write was never acknowledged
                        with lock:
                            acknowledged.append(key)

            threads = [threading.Thread(target=writer, args=(stop,)) for _ in range(writers)]
            for thread in threads:
                thread.start()
            time.sleep(rng.uniform(*target.kill_within))
            server.stop(kill=True)  # SIGKILL, in the middle of the writes
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
            server.start(timeout=target.start_timeout)
            with httpx.Client(base_url=server.base_url, timeout=30) as client:
                problems += workload.verify(client, list(acknowledged), attempted)
    finally:
        server.stop()
    losses = sum("missing" in p for p in problems)
    return CrashResult(rounds, len(acknowledged), attempted, losses, problems)


# --- hostile inputs ----------------------------------------------------------------------------------------------


def _raw_request(port: int, data: bytes, timeout: float = 10.0) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        while b"\r\n\r\n" not in received or len(received) < 4096:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
            head, _, body = received.partition(b"\r\n\r\n")
            length = re.search(rb"(?i)content-length:\s*(\d+)", head)
            if length and len(body) >= int(length.group(1)):
                break
    status = re.match(rb"HTTP/1\.[01] (\d{3})", received)
    return (int(status.group(1)) if status else 0), received


def oversized_upload(
    port: int,
    path: str,
    *,
    total: int = 100 * 2**20,
    chunked: bool = False,
    method: str = "POST",
    multipart: bool = False,
) -> tuple[int, bytes, int]:
    """Start sending a `total`-byte body (JSON, or one multipart file) and stop as soon as the server answers:
    (status, response, bytes sent). A body limit that works answers long before the body is all sent."""
    framing = b"Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {total}\r\n".encode()
    content_type = "multipart/form-data; boundary=plugkit" if multipart else "application/json"
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n".encode()
    piece = b"a" * 65536
    sent = 0
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head + framing + b"\r\n")
        if multipart:
            part = b'--plugkit\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n\r\n'
            sock.sendall(b"%x\r\n%s\r\n" % (len(part), part) if chunked else part)
            sent += len(part)
        try:
            while sent < total:
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:
                    break
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                sent += len(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            sock.settimeout(10)
            while b"\r\n\r\n" not in received:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
            head_part, _, body = received.partition(b"\r\n\r\n")
            length = re.search(rb"(?i)content-length:\s*(\d+)", head_part)
            while length and len(body) < int(length.group(1)):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                body += chunk
            received = head_part + b"\r\n\r\n" + body
        except (ConnectionResetError, TimeoutError):
            pass
    status = re.match(rb"HTTP/1\.[01] (\d{3})", received)
    return (int(status.group(1)) if status else 0), received, sent


def healthy(base_url: str, target: Target) -> bool:
    """A follow-up API call answers 2xx."""
    call = target.health
    try:
        response = httpx.request(
            call.method,
            f"{base_url}{call.path}",
            content=call.json_body,
            timeout=30,
            headers={"content-type": "application/json"},
        )
    except httpx.HTTPError:
        return False
    return response.is_success


def send_hostile(server: PluginServer, target: Target, case: HostileCase) -> HostileResult:
    """Send one hostile input; check the answer and that the server still serves afterwards."""
    if case.raw is not None:
        status, raw = _raw_request(server.port, case.raw)
        text = raw.decode("latin-1").replace("\r\n", "\n")
    else:
        headers = {"content-type": "application/json", **case.headers}
        response = httpx.request(
            case.method, f"{server.base_url}{case.path}", content=case.body, headers=headers, timeout=60
        )
        status = response.status_code
        text = "\n".join(f"{k}: {v}" for k, v in response.headers.items()) + "\n\n" + response.text
    why = []
    if status not in case.statuses:
        why.append(f"status {status}, expected one of {case.statuses}")
    if case.mentions and case.mentions.lower() not in text.lower():
        why.append(f"the answer does not mention {case.mentions!r}")
    if case.forbid_in_response and case.forbid_in_response.lower() in text.lower():
        why.append(f"the answer contains {case.forbid_in_response!r}")
    alive = healthy(server.base_url, target)
    if not alive:
        why.append("the server does not answer afterwards")
    detail = text.split("\n\n", 1)[-1].strip()[:300]
    return HostileResult(case.name, status, detail, not why, alive, "; ".join(why))


def upload_cases(server: PluginServer, target: Target) -> list[HostileResult]:
    """A 100 MB body, declared and chunked: 413 after reading little of it, the server healthy afterwards."""
    call = target.upload or target.json_call
    if call is None:
        return []
    results = []
    for chunked in (False, True):
        name = f"100 MB upload ({'chunked' if chunked else 'Content-Length'})"
        multipart = target.upload is not None
        status, raw, sent = oversized_upload(
            server.port, call.path, chunked=chunked, method=call.method, multipart=multipart
        )
        why = []
        if status != 413:
            why.append(f"status {status}, expected 413")
        if b"limit" not in raw:
            why.append("the answer does not name the limit")
        if sent > 50 * 2**20:
            why.append(f"the server let {sent} bytes in before answering")
        alive = healthy(server.base_url, target)
        if not alive:
            why.append("the server does not answer afterwards")
        detail = raw.partition(b"\r\n\r\n")[2].decode("latin-1")[:300]
        results.append(
            HostileResult(name, status, f"{detail} (after {sent} bytes sent)", not why, alive, "; ".join(why))
        )
    return results


def hostile_suite(server: PluginServer, target: Target) -> list[HostileResult]:
    """Every generic and plugin-specific hostile input against one running, seeded plugin."""
    cases = generic_hostile(target) + target.hostile()
    return [send_hostile(server, target, case) for case in cases] + upload_cases(server, target)


# --- authenticated servers ---------------------------------------------------------------------------------------

# Which method each plugin is fuzzed under in the auth pass: every method at least once over the plugins.
AUTH_PASS: dict[str, str] = {"todo": "service_http", "sports": "user_http", "retrieval": "oauth"}
FUZZ_SERVICE_TOKEN = "fuzz-service-token-0123456789abcdef"


@contextmanager
def authenticated(target: Target, kind: str, data_dir: Path) -> Iterator[tuple[PluginServer, dict[str, str]]]:
    """A real server of the plugin under `kind`, and the Authorization header of a credential obtained the way an
    operator (CLI) or the model host (the OAuth flow over HTTP) obtains it."""
    from tests.auth.oauth_flow import PASSWORD as OAUTH_PASSWORD
    from tests.auth.oauth_flow import code_grant, run_plugkit, sign_in

    data_dir.mkdir(parents=True, exist_ok=True)
    scope = ["--data-dir", str(data_dir), "--plugin", target.name]
    header = ""
    if kind == "user_http":
        created = json.loads(run_plugkit("tokens", "create", "--user", "fuzzer", "--json", *scope).stdout)
        header = f"Bearer {created['token']}"
    elif kind == "oauth":
        run_plugkit("users", "create", "fuzzer", "--password-stdin", *scope, stdin=OAUTH_PASSWORD + "\n")
        client = json.loads(run_plugkit("oauth-clients", "create", "--json", *scope).stdout)
    env = {**target.env, "PLUGKIT_AUTH": kind, "PLUGKIT_SERVICE_TOKEN": FUZZ_SERVICE_TOKEN}
    with replace(target, env=env).serve(data_dir) as server:
        if kind == "service_http":
            header = f"Bearer {FUZZ_SERVICE_TOKEN}"
        elif kind == "oauth":

            async def flow() -> str:
                async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
                    query = await sign_in(http, client["client_id"], "fuzzer")
                    answer = await code_grant(http, client["client_id"], client["client_secret"], query["code"])
                    answer.raise_for_status()
                    return f"Bearer {answer.json()['access_token']}"

            header = asyncio.run(flow())
        yield server, {"Authorization": header}
