"""Write a plugkit data directory with the plugkit of this checkout: todo (with auth tables, a user token and an
OAuth client), sports (a small imported dataset) and retrieval (the embedded store and its auth database).

The directory it wrote at release 0.1.0, before any database recorded a schema version, is committed as
tests/data/datadir-0.1.0; the migration tests start a newer plugkit on a copy of it.

    python tests/data/make_datadir.py DEST
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("PLUGKIT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def plugkit(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "plugkit", *args], capture_output=True, text=True, check=True, timeout=300
    )
    return done.stdout


async def fill(dest: Path) -> None:
    from plugkit.plugins.retrieval.app import create_app as retrieval_app
    from plugkit.plugins.retrieval.settings import RetrievalSettings
    from plugkit.plugins.todo.app import create_app as todo_app
    from plugkit.plugins.todo.settings import TodoSettings

    for app, texts in (
        (todo_app(TodoSettings(data_dir=dest)), None),
        (retrieval_app(RetrievalSettings(data_dir=dest)), ["Rust is a language.", "Bees make honey from nectar."]),
    ):
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
                if texts is None:
                    for todo in ("buy milk", "walk the dog"):
                        (await client.post("/todos/alice", json={"todo": todo})).raise_for_status()
                else:
                    documents = [{"id": f"doc{n}", "text": text} for n, text in enumerate(texts)]
                    (await client.post("/upsert", json={"documents": documents})).raise_for_status()


def main(dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=False)
    csv = dest.parent / "boxscores.csv"
    source = SHARED_DATA / "nba" / "boxscores-2023-24" / "nba_player_boxscores_2023-2024.csv"
    csv.write_text("".join(source.open(encoding="utf-8").readlines()[:41]), encoding="utf-8")
    plugkit("sports", "import", str(csv), "--data-dir", str(dest))
    csv.unlink()
    token = plugkit("tokens", "create", "--user", "alice", "--data-dir", str(dest)).splitlines()[-1]
    client = json.loads(
        plugkit(
            "oauth-clients",
            "create",
            "--name",
            "Fixture",
            "--redirect-uri",
            "https://chatgpt.com/cb",
            "--data-dir",
            str(dest),
            "--json",
        )
    )
    asyncio.run(fill(dest))
    (dest / "fixture.json").write_text(
        json.dumps({"todo_user": "alice", "todo_token": token, "oauth_client_id": client.get("client_id")}, indent=1)
        + "\n"
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
