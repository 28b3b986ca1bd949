"""/healthz and /readyz: answered ahead of every other layer, readiness from the database and registered checks."""

from __future__ import annotations

from pathlib import Path

from plugkit.health import add_readiness_check
from plugkit.plugins.sports.app import create_app as sports_app
from plugkit.plugins.sports.settings import SportsSettings
from plugkit.plugins.todo.app import create_app as todo_app
from plugkit.plugins.todo.settings import TodoSettings
from tests.helpers import asgi_client
from tests.test_app import sample_app


async def test_a_serving_app_is_live_and_ready() -> None:
    async with asgi_client(sample_app()) as client:
        live, ready = await client.get("/healthz"), await client.get("/readyz")
    assert live.status_code == 200 and live.json() == {"status": "ok"}
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}
    assert ready.headers["cache-control"] == "no-store"


async def test_probes_are_not_in_the_spec_and_need_no_credential(tmp_path: Path) -> None:
    settings = TodoSettings(data_dir=tmp_path, auth="service_http", service_token="Zq8vK2mN4pL7xR1tW9yB3cF6hJ0dG5sA")
    async with asgi_client(todo_app(settings)) as client:
        spec = (await client.get("/openapi.json")).json()
        assert (await client.get("/todos/alice")).status_code == 401
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 200
    assert not {"/healthz", "/readyz"} & set(spec["paths"])


async def test_probes_are_never_rate_limited() -> None:
    app = sample_app(rate_limit_per_minute=2, rate_limit_exempt=[])
    async with asgi_client(app) as client:
        statuses = [(await client.get("/logo.png")).status_code for _ in range(3)]
        probes = {(await client.get(path)).status_code for path in ("/healthz", "/readyz") * 5}
    assert statuses[-1] == 429 and probes == {200}


async def test_a_failing_readiness_check_makes_readyz_503_with_its_reason_while_healthz_stays_200() -> None:
    app = sample_app()
    reason: list[str | None] = ["the index is loading"]

    async def check() -> str | None:
        return reason[0]

    add_readiness_check(app, "index", check)
    async with asgi_client(app) as client:
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json() == {"status": "not ready", "reasons": {"index": "the index is loading"}}
        assert (await client.get("/healthz")).status_code == 200
        reason[0] = None
        assert (await client.get("/readyz")).status_code == 200


async def test_a_check_that_raises_is_a_reason_not_a_500() -> None:
    app = sample_app()

    async def check() -> str | None:
        raise ConnectionError("engine at db:5432 refused the connection")

    add_readiness_check(app, "engine", check)
    async with asgi_client(app) as client:
        ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["reasons"] == {"engine": "ConnectionError: engine at db:5432 refused the connection"}


async def test_a_database_that_does_not_answer_makes_readyz_503(tmp_path: Path) -> None:
    app = todo_app(TodoSettings(data_dir=tmp_path))
    async with asgi_client(app) as client:
        assert (await client.get("/readyz")).status_code == 200
        (tmp_path / "todo.db").unlink()
        (tmp_path / "todo.db").mkdir()  # the file is gone and nothing can take its place
        await app.state.health.database.dispose()
        ready = await client.get("/readyz")
    assert ready.status_code == 503 and "database" in ready.json()["reasons"]


async def test_the_sports_plugin_is_not_ready_while_its_dataset_does_not_answer(tmp_path: Path) -> None:
    app = sports_app(SportsSettings(data_dir=tmp_path))
    async with asgi_client(app) as client:
        assert (await client.get("/readyz")).status_code == 200
        (tmp_path / "sports.db").unlink()
        (tmp_path / "sports.db").mkdir()
        await app.state.backend.db.dispose()
        ready = await client.get("/readyz")
    assert ready.status_code == 503 and list(ready.json()["reasons"]) == ["dataset"]
