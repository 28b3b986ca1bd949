"""`plugkit serve all` as a real process: what systemd, `docker stop` and Ctrl-C do to it."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.helpers import REPO_ROOT

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
    parent = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    children: list[psutil.Process] = []
    try:
        assert parent.stdout is not None
        lines = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not any("All plugins are up" in line for line in lines):
            line = parent.stdout.readline()
            assert line, "serve all exited before the plugins were up:\n" + "".join(lines)
            lines.append(line)
        children = psutil.Process(parent.pid).children(recursive=True)
        assert len(children) >= 3
        assert not any(port_is_free(port + offset) for port in DEFAULT_PORTS)
        parent.send_signal(sig)
        assert parent.wait(timeout=60) == 0
        gone, alive = psutil.wait_procs(children, timeout=10)
        assert alive == [], f"left running: {alive}"
        assert all(port_is_free(port + offset) for port in DEFAULT_PORTS)
    finally:
        parent.kill()
        for child in children:
            if child.is_running():
                child.kill()
