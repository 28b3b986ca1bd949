"""`plugkit serve NAME`: run a plugin under uvicorn; `plugkit serve all`: every reference plugin at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Annotated

import httpx
import typer
import uvicorn
from pydantic import ValidationError

from plugkit.cli.common import (
    AuthOpt,
    DataDirOpt,
    HostOpt,
    PublicUrlOpt,
    ServiceTokenFileOpt,
    WorkersOpt,
    export_settings,
    fail,
)
from plugkit.settings import PluginSettings

app = typer.Typer(no_args_is_help=True, help="Run a plugin server.")

# name -> (app factory import path, settings class import path)
PLUGINS: dict[str, tuple[str, str]] = {
    "todo": ("plugkit.plugins.todo.app:create_app", "plugkit.plugins.todo.settings:TodoSettings"),
    "retrieval": (
        "plugkit.plugins.retrieval.app:create_app",
        "plugkit.plugins.retrieval.settings:RetrievalSettings",
    ),
}


def _settings_class(name: str) -> type[PluginSettings]:
    module, _, attr = PLUGINS[name][1].partition(":")
    return getattr(__import__(module, fromlist=[attr]), attr)  # type: ignore[no-any-return]


def run_plugin(name: str, **options: object) -> None:
    """Export the options, check the settings build, then hand the app factory to uvicorn."""
    export_settings(**options)
    try:
        settings = _settings_class(name)()
    except ValidationError as exc:
        fail(f"invalid settings for {name}: {exc}")
        return
    uvicorn.run(
        PLUGINS[name][0],
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        server_header=False,
    )


PortOpt = Annotated[int | None, typer.Option("--port", help="Port to listen on.")]


@app.command("todo")
def serve_todo(
    host: HostOpt = None,
    port: PortOpt = None,
    data_dir: DataDirOpt = None,
    auth: AuthOpt = None,
    workers: WorkersOpt = None,
    public_url: PublicUrlOpt = None,
    service_token_file: ServiceTokenFileOpt = None,
) -> None:
    """The TODO plugin (default port 5002)."""
    run_plugin(
        "todo",
        host=host,
        port=port,
        data_dir=data_dir,
        auth=auth,
        workers=workers,
        public_url=public_url,
        service_token_file=service_token_file,
    )


@app.command("retrieval")
def serve_retrieval(
    host: HostOpt = None,
    port: PortOpt = None,
    data_dir: DataDirOpt = None,
    auth: AuthOpt = None,
    workers: WorkersOpt = None,
    public_url: PublicUrlOpt = None,
    service_token_file: ServiceTokenFileOpt = None,
    store: Annotated[
        str | None, typer.Option("--store", help="embedded | pgvector | milvus | qdrant (PLUGKIT_STORE).")
    ] = None,
    embedder: Annotated[str | None, typer.Option("--embedder", help="local | openai (PLUGKIT_EMBEDDER).")] = None,
    memory: Annotated[
        bool | None, typer.Option("--memory/--no-memory", help="Let the model save information (PLUGKIT_MEMORY).")
    ] = None,
    tenancy: Annotated[
        str | None, typer.Option("--tenancy", help="shared | per-user (under user_http or oauth) (PLUGKIT_TENANCY).")
    ] = None,
) -> None:
    """The retrieval plugin (default port 5003)."""
    run_plugin(
        "retrieval",
        host=host,
        port=port,
        data_dir=data_dir,
        auth=auth,
        workers=workers,
        public_url=public_url,
        service_token_file=service_token_file,
        store=store,
        embedder=embedder,
        memory=memory,
        tenancy=tenancy,
    )


@app.command("all")
def serve_all(
    host: HostOpt = None,
    data_dir: DataDirOpt = None,
    wait_s: Annotated[float, typer.Option(help="How long to wait for each plugin to answer.")] = 120.0,
) -> None:
    """Every reference plugin on its default port, each in its own process; Ctrl-C stops them all."""
    procs: dict[str, subprocess.Popen[bytes]] = {}
    env = dict(os.environ)
    if data_dir is not None:
        env["PLUGKIT_DATA_DIR"] = str(data_dir)
    for name in PLUGINS:
        args = [sys.executable, "-m", "plugkit", "serve", name] + (["--host", host] if host else [])
        procs[name] = subprocess.Popen(args, env=env)
    try:
        for name, proc in procs.items():
            settings = _settings_class(name)(**({"host": host} if host else {}))
            base = f"http://{settings.host}:{settings.port}"
            _wait_until_up(base, proc, wait_s)
            typer.echo(f"{name:<10} {base}  manifest {base}/.well-known/ai-plugin.json  docs {base}/docs")
        typer.echo("All plugins are up. Press Ctrl-C to stop.")
        while all(p.poll() is None for p in procs.values()):
            time.sleep(0.5)
        fail("a plugin exited: " + ", ".join(n for n, p in procs.items() if p.poll() is not None), code=1)
    except KeyboardInterrupt:
        pass
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def _wait_until_up(base: str, proc: subprocess.Popen[bytes], wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            fail(f"the plugin at {base} exited with status {proc.returncode}", code=1)
        try:
            if httpx.get(f"{base}/.well-known/ai-plugin.json", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    fail(f"the plugin at {base} did not answer within {wait_s:.0f} s", code=1)
