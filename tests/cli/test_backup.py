"""`plugkit backup` and `plugkit restore`: consistent copies of a data directory while servers use it."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from plugkit.cli import app
from tests.auth.oauth_flow import run_plugkit
from tests.helpers import PluginServer
from tests.test_schema import RELEASE_0_1_0

runner = CliRunner()


@pytest.mark.slow
def test_a_backup_taken_under_writes_holds_every_write_acknowledged_before_it_and_restores_to_a_server(
    tmp_path: Path,
) -> None:
    acknowledged: list[str] = []
    stop = threading.Event()

    slowest: list[float] = [0.0]

    def write(base_url: str) -> None:
        with httpx.Client(base_url=base_url, timeout=30) as client:
            n = 0
            while not stop.is_set():
                started = time.monotonic()
                if client.post("/todos/alice", json={"todo": f"t{n}"}).status_code == 200:
                    acknowledged.append(f"t{n}")
                slowest[0] = max(slowest[0], time.monotonic() - started)
                n += 1

    with PluginServer("todo", "--data-dir", str(tmp_path / "live")) as server:
        assert server.proc is not None and server.proc.stdout is not None
        # Read the log as it comes: a request line each would fill the pipe and block the server.
        threading.Thread(target=server.proc.stdout.read, daemon=True).start()
        writer = threading.Thread(target=write, args=(server.base_url,))
        writer.start()
        try:
            while len(acknowledged) < 200:
                stop.wait(0.05)
            before = list(acknowledged)
            done = run_plugkit("backup", str(tmp_path / "backup"), "--data-dir", str(tmp_path / "live"))
            after = list(acknowledged)
        finally:
            stop.set()
            writer.join()
    assert "databases" in done.stdout
    assert not list((tmp_path / "backup").glob("*-wal"))  # each database is whole in its file
    db = sqlite3.connect(tmp_path / "backup" / "todo.db")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        saved = [text for (text,) in db.execute("SELECT text FROM todos WHERE username = 'alice' ORDER BY id")]
    finally:
        db.close()
    assert slowest[0] < 10, f"a write waited {slowest[0]:.1f} s during the backup"
    assert saved == after[: len(saved)] and len(before) <= len(saved) <= len(after)  # a prefix: no gap, no tear

    run_plugkit("restore", str(tmp_path / "backup"), "--data-dir", str(tmp_path / "restored"))
    listed: list[str] = []
    with PluginServer("todo", "--data-dir", str(tmp_path / "restored")) as restored:
        page: dict[str, Any] = {"next_offset": 0}
        while page.get("next_offset") is not None:
            page = httpx.get(f"{restored.base_url}/todos/alice", params={"offset": page["next_offset"]}).json()
            listed += page["todos"]
    assert listed == saved


def test_restore_refuses_a_directory_that_is_not_a_backup_and_a_data_directory_in_use(tmp_path: Path) -> None:
    not_backup = runner.invoke(app, ["restore", str(RELEASE_0_1_0), "--data-dir", str(tmp_path / "x")])
    assert not_backup.exit_code == 2 and "is not a plugkit backup" in not_backup.output
    assert runner.invoke(app, ["backup", str(tmp_path / "b"), "--data-dir", str(RELEASE_0_1_0)]).exit_code == 0
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "todo.db").write_text("mine")
    refused = runner.invoke(app, ["restore", str(tmp_path / "b"), "--data-dir", str(occupied)])
    assert refused.exit_code == 2 and "pass --force" in refused.output
    assert (occupied / "todo.db").read_text() == "mine"
    forced = runner.invoke(app, ["restore", str(tmp_path / "b"), "--data-dir", str(occupied), "--force"])
    assert forced.exit_code == 0 and (occupied / "todo.db").read_bytes().startswith(b"SQLite format 3")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "occupied"]  # no staging left behind


def test_backup_refuses_a_destination_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "dest").mkdir()
    (tmp_path / "dest" / "keep.txt").write_text("x")
    refused = runner.invoke(app, ["backup", str(tmp_path / "dest"), "--data-dir", str(RELEASE_0_1_0)])
    assert refused.exit_code == 2 and "not empty" in refused.output
