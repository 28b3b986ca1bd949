"""`plugkit serve NAME`: run a plugin under uvicorn (any the registry finds); `plugkit serve all`: every reference
plugin at once."""

from __future__ import annotations

import inspect
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import httpx
import typer
import uvicorn
from fastapi import FastAPI
from pydantic import ValidationError
from typer.core import TyperGroup

from plugkit.auth.factory import AuthConfigError, check_auth_settings
from plugkit.cli import registry
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
    load_plugin,
)
from plugkit.logs import logging_config
from plugkit.metrics import multiprocess_directory
from plugkit.plugin import Plugin
from plugkit.settings import PluginSettings

MCP_ENV = "PLUGKIT_SERVE_MCP"
PLUGIN_ENV = "PLUGKIT_SERVE_PLUGIN"
# A server that is not a plugin: `plugkit serve sports-upstream` runs it, `serve all` leaves it out.
UPSTREAM_FACTORY = "plugkit.plugins.sports.upstream:create_upstream_app"


def plugin_app() -> FastAPI:
    """uvicorn factory for `plugkit serve NAME`: the plugin named in the environment (workers inherit it), with MCP
    at /mcp when asked for."""
    app = registry.load(os.environ[PLUGIN_ENV]).create_app()
    if os.environ.get(MCP_ENV) == "true":
        from plugkit.mcp import mount_mcp

        app = mount_mcp(app)
    return app


def _checked_settings(name: str, settings_class: type[PluginSettings]) -> PluginSettings:
    """The settings `name` will run with (from the exported options); exit 2 when they cannot run."""
    try:
        settings = settings_class()
    except ValidationError as exc:
        fail(f"invalid settings for {name}: {exc}")
    try:
        check_auth_settings(settings)
    except AuthConfigError as exc:
        fail(f"cannot start {name} with auth {settings.auth}: {exc}")
    return settings


def _run(factory: str, settings: PluginSettings) -> None:
    # On SIGTERM uvicorn stops accepting, lets requests in flight finish (up to shutdown_timeout_s), runs the
    # app's shutdown (batcher drained, stores closed), then raises SIGTERM again under the handler it found: this
    # one, so that a shutdown asked for ends with status 0 rather than 143.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: None)
    with multiprocess_directory(settings.workers):
        uvicorn.run(
            factory,
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


def run_plugin(name: str, *, mcp: bool = False, **options: object) -> None:
    """Export the options, check the settings build, then hand the plugin's app factory to uvicorn."""
    plugin = load_plugin(name)
    export_settings(**options)
    settings = _checked_settings(name, plugin.settings_class)
    os.environ[PLUGIN_ENV] = name  # worker processes inherit it
    os.environ[MCP_ENV] = "true" if mcp else "false"
    typer.echo(probe_urls(name, f"http://{settings.host}:{settings.port}"))
    _run("plugkit.cli.serve:plugin_app", settings)


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


def _own_option(option: str, setting: str, settings_class: type[PluginSettings]) -> inspect.Parameter:
    """A command-line option for one of the plugin's settings, typed and described by the settings field."""
    field = settings_class.model_fields[setting]
    annotation = field.annotation
    kinds = set(get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,)) - {type(None)}
    choices = [str(c) for kind in kinds if get_origin(kind) is Literal for c in get_args(kind)]
    kind: Any = kinds.pop() if len(kinds) == 1 and not choices else str
    kind = kind if kind in (bool, int, float, Path) else str
    described = " | ".join(choices) + ": " if choices else ""
    help_text = f"{described}{field.description or setting.replace('_', ' ')} (PLUGKIT_{setting.upper()})."
    flag = f"--{option}/--no-{option}" if kind is bool else f"--{option}"
    option_type = Annotated[kind | None, typer.Option(flag, help=help_text)]
    return inspect.Parameter(setting, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=option_type)


def plugin_command(name: str, plugin: Plugin) -> Any:  # typer's own (vendored) click.Command
    """`plugkit serve NAME`: the common options, then the plugin's own (`Plugin.options`: option -> setting)."""
    own = [_own_option(option, setting, plugin.settings_class) for option, setting in plugin.options.items()]

    def command(**values: Any) -> None:
        mcp = bool(values.pop("mcp"))
        run_plugin(name, mcp=mcp, **values)

    parameters = [*COMMON_OPTIONS, *own]
    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    port = plugin.settings_class.model_fields["port"].default
    command.__doc__ = f"{plugin.name}: {plugin.description} (default port {port})"
    single = typer.Typer(add_completion=False)
    single.command(name)(command)
    return typer.main.get_command(single)


class ServeGroup(TyperGroup):
    """`plugkit serve NAME` for every plugin the registry finds by NAME or `module:attribute`, beside `serve all`
    and `serve sports-upstream`."""

    # ctx and the commands are typer's vendored click types, which it does not export by name.
    def list_commands(self, ctx: Any) -> list[str]:
        return [*super().list_commands(ctx), *registry.installed()]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        return plugin_command(cmd_name, load_plugin(cmd_name))


app = typer.Typer(cls=ServeGroup, no_args_is_help=True, help="Run a plugin server: NAME or module:attribute.")


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
    from plugkit.plugins.sports.settings import UpstreamSettings

    export_settings(host=host, port=port, data_dir=data_dir, workers=workers, upstream_api_key_file=api_key_file)
    _run(UPSTREAM_FACTORY, _checked_settings("sports-upstream", UpstreamSettings))


@app.command("all")
def serve_all(
    host: HostOpt = None,
    data_dir: DataDirOpt = None,
    wait_s: Annotated[float, typer.Option(help="How long to wait for each plugin to answer.")] = 120.0,
    port_offset: Annotated[
        int, typer.Option("--port-offset", help="Add this to every default port (to run a second set beside one).")
    ] = 0,
) -> None:
    """Every reference plugin on its default port, each in its own process; Ctrl-C or SIGTERM stops them all."""
    interrupt_on_signals()
    procs: dict[str, subprocess.Popen[bytes]] = {}
    env = dict(os.environ)
    if data_dir is not None:
        env["PLUGKIT_DATA_DIR"] = str(data_dir)
    try:
        for name in registry.BUILTINS:
            port = load_plugin(name).load_settings().port + port_offset
            args = [sys.executable, "-m", "plugkit", "serve", name, "--port", str(port)]
            procs[name] = subprocess.Popen(args + (["--host", host] if host else []), env=env)
        for name, proc in procs.items():
            settings = load_plugin(name).load_settings(host=host)
            base = f"http://{settings.host}:{settings.port + port_offset}"
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
        stop_children(list(procs.values()))


def interrupt_on_signals() -> None:
    """Take SIGTERM (what systemd and `docker stop` send) as Ctrl-C, so the parent stops its children before it exits
    (by default SIGTERM ends the parent at once and leaves them running, holding their ports); and take SIGINT as
    Ctrl-C even when the process was started with it ignored (a background job of a shell, a test runner's worker),
    which Python would otherwise keep."""

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def stop_children(procs: list[subprocess.Popen[bytes]], timeout_s: float = 15.0) -> None:
    """Ask each child to shut down (SIGTERM: uvicorn finishes its requests and runs shutdown hooks), wait for them
    together, and kill those still running at the deadline. Further signals meanwhile are ignored, so a second
    Ctrl-C cannot leave a child behind."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + timeout_s
        for proc in procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


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
