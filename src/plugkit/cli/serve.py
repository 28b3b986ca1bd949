"""`plugkit serve NAME`: run a plugin under uvicorn; `plugkit serve all`: every reference plugin at once."""

from __future__ import annotations

import inspect
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
import uvicorn
from fastapi import FastAPI
from pydantic import ValidationError

from plugkit.auth.factory import AuthConfigError, check_auth_settings
from plugkit.cli.common import (
    AuthOpt,
    AuthSchemeOpt,
    DataDirOpt,
    HostOpt,
    PublicUrlOpt,
    ServiceTokenFileOpt,
    WorkersOpt,
    export_settings,
    fail,
)
from plugkit.logs import logging_config
from plugkit.metrics import multiprocess_directory
from plugkit.settings import PluginSettings

app = typer.Typer(no_args_is_help=True, help="Run a plugin server.")

# name -> (app factory import path, settings class import path)
PLUGINS: dict[str, tuple[str, str]] = {
    "todo": ("plugkit.plugins.todo.app:create_app", "plugkit.plugins.todo.settings:TodoSettings"),
    "sports": ("plugkit.plugins.sports.app:create_app", "plugkit.plugins.sports.settings:SportsSettings"),
    "retrieval": (
        "plugkit.plugins.retrieval.app:create_app",
        "plugkit.plugins.retrieval.settings:RetrievalSettings",
    ),
}
# servers that are not plugins: `plugkit serve NAME` runs them, `serve all` leaves them out
EXTRA_SERVERS: dict[str, tuple[str, str]] = {
    "sports-upstream": (
        "plugkit.plugins.sports.upstream:create_upstream_app",
        "plugkit.plugins.sports.settings:UpstreamSettings",
    ),
}


def _settings_class(name: str) -> type[PluginSettings]:
    module, _, attr = {**PLUGINS, **EXTRA_SERVERS}[name][1].partition(":")
    return getattr(__import__(module, fromlist=[attr]), attr)  # type: ignore[no-any-return]


MCP_PLUGIN_ENV = "PLUGKIT_SERVE_MCP_PLUGIN"


def mcp_app() -> FastAPI:
    """uvicorn factory for `serve NAME --mcp`: the plugin named in the environment, with MCP at /mcp."""
    from plugkit.cli.mcp import plugin_factory
    from plugkit.mcp import mount_mcp

    return mount_mcp(plugin_factory(os.environ[MCP_PLUGIN_ENV]))


def run_plugin(name: str, *, mcp: bool = False, **options: object) -> None:
    """Export the options, check the settings build, then hand the app factory to uvicorn."""
    export_settings(**options)
    try:
        settings = _settings_class(name)()
    except ValidationError as exc:
        fail(f"invalid settings for {name}: {exc}")
        return
    try:
        check_auth_settings(settings)
    except AuthConfigError as exc:
        fail(f"cannot start {name} with auth {settings.auth}: {exc}")
        return
    if mcp:
        os.environ[MCP_PLUGIN_ENV] = name  # worker processes inherit it
    typer.echo(probe_urls(name, f"http://{settings.host}:{settings.port}"))
    # On SIGTERM uvicorn stops accepting, lets requests in flight finish (up to shutdown_timeout_s), runs the
    # app's shutdown (batcher drained, stores closed), then raises SIGTERM again under the handler it found: this
    # one, so that a shutdown asked for ends with status 0 rather than 143.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: None)
    with multiprocess_directory(settings.workers):
        uvicorn.run(
            "plugkit.cli.serve:mcp_app" if mcp else {**PLUGINS, **EXTRA_SERVERS}[name][0],
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_config=logging_config(settings.log_format, settings.log_level),
            log_level=settings.log_level,
            access_log=False,  # plugkit.observe writes the request lines
            timeout_graceful_shutdown=settings.shutdown_timeout_s,
            server_header=False,
        )


PortOpt = Annotated[int | None, typer.Option("--port", help="Port to listen on.")]
McpOpt = Annotated[bool, typer.Option("--mcp", help="Also serve the operations as MCP tools at /mcp.")]

# The options every plugin's `serve` command takes, before its own.
COMMON_OPTIONS = [
    inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
    for name, annotation, default in (
        ("host", HostOpt, None),
        ("port", PortOpt, None),
        ("data_dir", DataDirOpt, None),
        ("auth", AuthOpt, None),
        ("auth_scheme", AuthSchemeOpt, None),
        ("service_token_file", ServiceTokenFileOpt, None),
        ("workers", WorkersOpt, None),
        ("public_url", PublicUrlOpt, None),
        ("mcp", McpOpt, False),
    )
]


def plugin_command(name: str) -> Callable[[Callable[..., dict[str, object]]], Callable[..., dict[str, object]]]:
    """Register `plugkit serve NAME`: the common options plus those of the decorated function, which maps its own
    options to settings (PLUGKIT_* names)."""

    def register(own_options: Callable[..., dict[str, object]]) -> Callable[..., dict[str, object]]:
        own = [
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
            for p in inspect.signature(own_options, eval_str=True).parameters.values()
        ]

        def command(**values: Any) -> None:
            common = {p.name: values.pop(p.name) for p in COMMON_OPTIONS}
            mcp = bool(common.pop("mcp"))
            run_plugin(name, mcp=mcp, **common, **own_options(**values))

        parameters = [*COMMON_OPTIONS, *own]
        command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in parameters}
        command.__doc__ = own_options.__doc__
        app.command(name)(command)
        return own_options

    return register


@plugin_command("todo")
def serve_todo() -> dict[str, object]:
    """The TODO plugin (default port 5002)."""
    return {}


@plugin_command("sports")
def serve_sports(
    backend: Annotated[
        str | None, typer.Option("--backend", help="local | balldontlie (PLUGKIT_SPORTS_BACKEND).")
    ] = None,
    upstream_url: Annotated[
        str | None, typer.Option("--upstream-url", help="balldontlie API base URL (PLUGKIT_BALLDONTLIE_URL).")
    ] = None,
    api_key_file: Annotated[
        Path | None, typer.Option("--api-key-file", help="File holding the balldontlie API key.")
    ] = None,
) -> dict[str, object]:
    """The sports stats plugin (default port 5001): the local dataset, or the balldontlie API."""
    return {"sports_backend": backend, "balldontlie_url": upstream_url, "balldontlie_api_key_file": api_key_file}


@plugin_command("retrieval")
def serve_retrieval(
    store: Annotated[
        str | None, typer.Option("--store", help="embedded | pgvector | milvus | qdrant (PLUGKIT_STORE).")
    ] = None,
    store_url: Annotated[
        str | None, typer.Option("--store-url", help="The engine: a PostgreSQL URL, Milvus URI, Qdrant URL.")
    ] = None,
    collection: Annotated[
        str | None, typer.Option("--collection", help="Table or collection the store owns (PLUGKIT_COLLECTION).")
    ] = None,
    embedder: Annotated[str | None, typer.Option("--embedder", help="local | openai (PLUGKIT_EMBEDDER).")] = None,
    memory: Annotated[
        bool | None, typer.Option("--memory/--no-memory", help="Let the model save information (PLUGKIT_MEMORY).")
    ] = None,
    tenancy: Annotated[
        str | None, typer.Option("--tenancy", help="shared | per-user (under user_http or oauth) (PLUGKIT_TENANCY).")
    ] = None,
) -> dict[str, object]:
    """The retrieval plugin (default port 5003)."""
    return {
        "store": store,
        "store_url": store_url,
        "collection": collection,
        "embedder": embedder,
        "memory": memory,
        "tenancy": tenancy,
    }


@app.command("sports-upstream")
def serve_sports_upstream(
    host: HostOpt = None,
    port: PortOpt = None,
    data_dir: DataDirOpt = None,
    workers: WorkersOpt = None,
    api_key_file: Annotated[
        Path | None, typer.Option("--api-key-file", help="File holding the key clients must send.")
    ] = None,
) -> None:
    """The local sports dataset served as the balldontlie v1 API (default port 5011)."""
    run_plugin(
        "sports-upstream", host=host, port=port, data_dir=data_dir, workers=workers, upstream_api_key_file=api_key_file
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
            settings = _settings_class(name)() if host is None else _settings_class(name)(host=host)
            base = f"http://{settings.host}:{settings.port}"
            _wait_until_up(base, proc, wait_s)
            typer.echo(f"{name:<10} {base}  manifest {base}/.well-known/ai-plugin.json  docs {base}/docs")
            typer.echo(probe_urls("", base))
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


def probe_urls(name: str, base: str) -> str:
    """The line naming a server's liveness, readiness and metrics URLs."""
    return f"{name:<10} health {base}/healthz  ready {base}/readyz  metrics {base}/metrics"


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
