"""`plugkit serve` as an operator runs it: graceful shutdown on SIGTERM under load."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
from pathlib import Path

import httpx
import pytest

from tests.helpers import PluginServer

pytestmark = pytest.mark.slow


async def drive(base_url: str, clients: int, outcomes: dict[str, str], stop: asyncio.Event) -> None:
    """`clients` concurrent loops adding todos until the server stops taking connections; each request's outcome
    (its status, or the error's class) by its text."""

    async def loop(n: int) -> None:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            for i in range(100_000):
                text = f"c{n}-{i}"
                try:
                    answer = await client.post("/todos/load", json={"todo": text}, headers={"X-Request-ID": text})
                    outcomes[text] = str(answer.status_code)
                except httpx.HTTPError as exc:
                    outcomes[text] = type(exc).__name__
                    if stop.is_set():
                        return

    await asyncio.gather(*(loop(n) for n in range(clients)))


@pytest.mark.parametrize("workers", [1, 2])
async def test_sigterm_under_load_finishes_every_accepted_request_and_exits_0(tmp_path: Path, workers: int) -> None:
    server = PluginServer(
        "todo", "--workers", str(workers), "--data-dir", str(tmp_path), env={"PLUGKIT_LOG_FORMAT": "json"}
    ).start()
    assert server.proc is not None and server.proc.stdout is not None
    # Read the log as it comes: a request line each fills the pipe, and a server blocked on it would not stop.
    reading = asyncio.create_task(asyncio.to_thread(server.proc.stdout.read))
    outcomes: dict[str, str] = {}
    stop = asyncio.Event()
    load = asyncio.create_task(drive(server.base_url, 16, outcomes, stop))
    for _ in range(600):
        if len(outcomes) >= 200:
            break
        await asyncio.sleep(0.05)
    answered_before = len(outcomes)
    server.proc.send_signal(signal.SIGTERM)
    stop.set()
    await asyncio.wait_for(load, 60)
    code = await asyncio.to_thread(server.proc.wait, 60)
    output = (await reading).decode()

    assert code == 0, output[-2000:]
    assert answered_before >= 200  # the server was under load
    logged = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    served = {r["request_id"]: r["status"] for r in logged if r.get("path") == "/todos/load"}
    with sqlite3.connect(tmp_path / "todo.db") as db:
        stored = {text for (text,) in db.execute("SELECT text FROM todos WHERE username = 'load'")}
    acknowledged = {text for text, outcome in outcomes.items() if outcome == "200"}
    assert len(acknowledged) > answered_before  # requests in flight at the signal were answered
    assert set(served.values()) == {200}  # nothing the server took was cut short or failed
    assert set(served) == acknowledged == stored  # every accepted request was answered, and kept
    failed = {outcome for outcome in outcomes.values() if outcome != "200"}
    assert failed <= {"ConnectError", "ReadError", "RemoteProtocolError"}  # refused before being accepted
    assert sum("Application shutdown complete" in r["message"] for r in logged) == workers  # stores closed
