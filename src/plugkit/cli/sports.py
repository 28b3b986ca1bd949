"""`plugkit sports import FILE_OR_DIR... [--data-dir DIR]`: build the sports plugin's local dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from plugkit.cli.common import DataDirOpt, fail
from plugkit.plugins.sports.importer import ImportFormatError, bundled_sample, discover, import_files
from plugkit.plugins.sports.settings import SportsSettings
from plugkit.settings import load_settings

app = typer.Typer(no_args_is_help=True, help="The sports plugin's local dataset.")


@app.command("import")
def import_command(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            metavar="PATH", help="CSV or balldontlie JSON files, or directories of them.", show_default=False
        ),
    ] = None,
    sample: Annotated[
        bool, typer.Option("--sample", help="Import the 2023-24 sample bundled in the package (nothing is fetched).")
    ] = False,
    data_dir: DataDirOpt = None,
    db: Annotated[Path | None, typer.Option("--db", help="The dataset file (default <data-dir>/sports.db).")] = None,
) -> None:
    """Import NBA box scores, team box scores, player lists or balldontlie exports into the local dataset."""
    settings = load_settings(SportsSettings, data_dir=data_dir, sports_db=db)
    target = settings.dataset_path()
    console = Console(stderr=True)
    paths = [*(paths or []), *([bundled_sample()] if sample else [])]
    if not paths:
        fail("name the files or directories to import, or --sample for the bundled 2023-24 sample")
    try:
        files = discover(paths)
    except FileNotFoundError as exc:
        fail(str(exc))
    if not files:
        fail("no .csv or .json files found in " + ", ".join(map(str, paths)))
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        tasks: dict[str, TaskID] = {}

        def advance(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = progress.add_task(name, total=total)
            progress.update(tasks[name], completed=done, total=total)

        try:
            report = import_files(files, target, advance)
        except (ImportFormatError, ValueError, OSError) as exc:
            fail(f"import failed, nothing was written: {exc}", code=1)
            return
    typer.echo(
        f"imported {report.files} files into {target}: {report.players} players, {report.games} games, "
        f"{report.stats} stat lines ({report.skipped_rows} rows skipped)"
    )
