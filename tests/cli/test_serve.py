"""`plugkit serve all` as a real process: what systemd, `docker stop` and Ctrl-C do to it."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.helpers import REPO_ROOT, PluginServer

DEFAULT_PORTS = (5001, 5002, 5003)


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_offset() -> int:
    """An offset that puts every default port on a free one (other test runs share this machine)."""
    for _ in range(100):
        offset = random.randrange(10_000, 50_000)
        if all(port_is_free(port + offset) for port in DEFAULT_PORTS):
            return offset
    raise RuntimeError("no free set of ports")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_serve_all_stops_every_plugin_and_frees_its_ports(tmp_path: Path, sig: signal.Signals) -> None:
    offset = free_offset()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    args = [sys.executable, "-m", "plugkit", "serve", "all", "--data-dir", str(tmp_path), "--port-offset", str(offset)]
    # Started with SIGINT ignored, as a shell starts a background job (and pytest-xdist its workers): Ctrl-C and
    # SIGTERM must still stop everything.
    parent = subprocess.Popen(
        args,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),  # before the reader thread starts
    )
    children: list[psutil.Process] = []
    try:
        assert parent.stdout is not None
        lines = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not any("All plugins are up" in line for line in lines):
            line = parent.stdout.readline()
            assert line, "serve all exited before the plugins were up:\n" + "".join(lines)
            lines.append(line)
        # Keep reading: the plugins write to the same pipe as they stop, and one left full would block them.
        reader = threading.Thread(target=lambda: lines.extend(parent.stdout), daemon=True)  # type: ignore[arg-type]
        reader.start()
        children = psutil.Process(parent.pid).children(recursive=True)
        assert len(children) >= 3
        assert not any(port_is_free(port + offset) for port in DEFAULT_PORTS)
        parent.send_signal(sig)
        try:
            code = parent.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail("serve all did not stop within 60 s; its last output:\n" + "".join(lines[-50:]))
        assert code == 0
        gone, alive = psutil.wait_procs(children, timeout=10)
        assert alive == [], f"left running: {alive}"
        assert all(port_is_free(port + offset) for port in DEFAULT_PORTS)
    finally:
        parent.kill()
        for child in children:
            if child.is_running():
                child.kill()


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


@pytest.mark.slow
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
