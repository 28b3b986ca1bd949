"""Consistent copies of a data directory, safe while servers use it: `plugkit backup` and `plugkit restore`.

Every SQLite database (found by its header, whatever its name) is copied with SQLite's online backup API: one
consistent snapshot per database, taken without stopping writers (WAL mode lets them go on). Every other file is
copied as it is, before the databases: an index derived from a database (the embedded store's vector snapshot)
records the last change it reflects, and a store that finds its snapshot ahead of or apart from its database
rebuilds it from the database, so a snapshot copied at any moment is safe; a file gone between the listing and its
copy (an index replacing or merging its files meanwhile) is left out, as it would be from a backup taken a moment
later. SQLite's own side files (-wal, -shm, -journal) are never copied: the backup API reads what they hold.
Databases outside the directory (PostgreSQL, Milvus or Qdrant servers) have their own backup tools.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from plugkit import __version__

MANIFEST = "plugkit-backup.json"
SQLITE_HEADER = b"SQLite format 3\x00"
SIDE_FILES = ("-wal", "-shm", "-journal")


class BackupError(RuntimeError):
    """The source is not what it should be, or the destination is not free."""


@dataclass
class CopyReport:
    databases: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    bytes: int = 0


def is_sqlite(path: Path) -> bool:
    with path.open("rb") as file:
        return file.read(len(SQLITE_HEADER)) == SQLITE_HEADER


def _sorted_out(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """The databases and the other files among `paths`; a file gone before its header was read is neither."""
    databases: list[Path] = []
    plain: list[Path] = []
    for path in paths:
        try:
            (databases if is_sqlite(path) else plain).append(path)
        except FileNotFoundError:
            continue
    return databases, plain


def _copy_database(source: Path, target: Path) -> None:
    """One consistent snapshot of `source` into `target`, written beside it and renamed into place."""
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    src = sqlite3.connect(source, timeout=30)
    try:
        dst = sqlite3.connect(partial)
        try:
            src.backup(dst)  # all pages in one step: one read transaction, so one consistent snapshot
            check = dst.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise BackupError(f"the copy of {source} fails SQLite's check: {check}")
        finally:
            dst.close()
    finally:
        src.close()
    partial.replace(target)


def copy_tree(source: Path, target: Path) -> CopyReport:
    """Copy the data directory `source` into the empty or missing directory `target` (see the module docstring)."""
    report = CopyReport()
    files = sorted(p for p in source.rglob("*") if p.is_file() and not p.name.endswith(SIDE_FILES + (".partial",)))
    databases, plain = _sorted_out([p for p in files if p.name != MANIFEST])
    for path in plain:
        destination = target / path.relative_to(source)
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copy2(path, destination)
        except FileNotFoundError:
            if path.exists():  # the destination's fault, not a file that went away
                raise
            continue
        report.files.append(str(path.relative_to(source)))
        report.bytes += destination.stat().st_size
    for path in databases:
        destination = target / path.relative_to(source)
        destination.parent.mkdir(parents=True, exist_ok=True)
        _copy_database(path, destination)
        report.databases.append(str(path.relative_to(source)))
        report.bytes += destination.stat().st_size
    return report


def _is_free(target: Path) -> bool:
    return not target.exists() or not any(target.iterdir())


def backup(data_dir: Path, dest: Path) -> CopyReport:
    """Back up `data_dir` into the new or empty directory `dest`, with a manifest naming what it holds."""
    if not data_dir.is_dir():
        raise BackupError(f"{data_dir} is not a directory")
    if not _is_free(dest):
        raise BackupError(f"{dest} is not empty; back up into a new or empty directory")
    dest.mkdir(parents=True, exist_ok=True)
    report = copy_tree(data_dir, dest)
    manifest = {
        "plugkit": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "databases": report.databases,
        "files": report.files,
    }
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return report


def restore(source: Path, data_dir: Path, *, force: bool = False) -> CopyReport:
    """Restore a backup made by `backup` into `data_dir` (which must be empty unless `force`: then it is replaced).
    Stop the servers using `data_dir` first; they migrate an older backup's databases when they start."""
    if not (source / MANIFEST).is_file():
        raise BackupError(f"{source} is not a plugkit backup (it has no {MANIFEST})")
    if not _is_free(data_dir) and not force:
        raise BackupError(f"{data_dir} is not empty; pass --force to replace what it holds")
    staging = data_dir.with_name(data_dir.name + ".restoring")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    report = copy_tree(source, staging)
    if data_dir.exists():
        replaced = data_dir.with_name(data_dir.name + ".replaced")
        if replaced.exists():
            shutil.rmtree(replaced)
        data_dir.replace(replaced)
        staging.replace(data_dir)  # the data directory is the old one or the restored one, never a mix
        shutil.rmtree(replaced)
    else:
        staging.replace(data_dir)
    return report
