"""`plugkit backup DEST` and `plugkit restore SRC`: consistent copies of a data directory (see plugkit.backup)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from plugkit.backup import BackupError, CopyReport
from plugkit.backup import backup as backup_data_dir
from plugkit.backup import restore as restore_data_dir
from plugkit.cli.common import DataDirOpt, fail
from plugkit.settings import PluginSettings, load_settings


def _summary(report: CopyReport) -> str:
    return f"{len(report.databases)} databases, {len(report.files)} other files, {report.bytes} bytes"


def backup(
    dest: Annotated[Path, typer.Argument(help="A new or empty directory to write the backup to.")],
    data_dir: DataDirOpt = None,
) -> None:
    """Copy the data directory consistently, also while servers use it (SQLite's online backup API)."""
    source = load_settings(PluginSettings, data_dir=data_dir).data_dir
    try:
        report = backup_data_dir(source, dest)
    except BackupError as exc:
        fail(str(exc))
        return
    typer.echo(f"backed up {source} to {dest}: {_summary(report)}")


def restore(
    source: Annotated[Path, typer.Argument(help="A directory `plugkit backup` wrote.")],
    data_dir: DataDirOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Replace what the data directory holds.")] = False,
) -> None:
    """Restore a backup into the data directory (stop its servers first; they migrate older data at start-up)."""
    target = load_settings(PluginSettings, data_dir=data_dir).data_dir
    try:
        report = restore_data_dir(source, target, force=force)
    except BackupError as exc:
        fail(str(exc))
        return
    typer.echo(f"restored {source} into {target}: {_summary(report)}")
