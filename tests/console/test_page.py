"""The console in headless Chromium (Playwright on the system browser) against real plugin servers: signing in under
each auth method, operation forms, and the documents workbench of the retrieval plugin."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.auth.oauth_flow import PASSWORD, run_plugkit
from tests.browser import chromium
from tests.helpers import PluginServer

pytestmark = pytest.mark.slow

SERVICE_TOKEN = "Xq7-service-token-for-console-9"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.on(
        "console", lambda message: errors.append(message.text) if "Content Security Policy" in message.text else None
    )
    yield opened
    context.close()
    assert not errors, f"the page reported errors: {errors}"


def open_console(page: Page, base_url: str) -> None:
    page.goto(f"{base_url}/console")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")


@pytest.fixture(scope="module")
def user_http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PluginServer, str]]:
    data_dir = tmp_path_factory.mktemp("user_http")
    created = run_plugkit("tokens", "create", "--user", "alice", "--json", "--data-dir", str(data_dir))
    token = json.loads(created.stdout)["token"]
    with PluginServer("todo", "--auth", "user_http", "--data-dir", str(data_dir)) as server:
        yield server, token


def sign_in_with_token(page: Page, token: str) -> None:
    page.get_by_label("Token", exact=True).fill(token)
    page.get_by_role("button", name="Sign in").click()


def test_a_wrong_token_shows_the_401_message_and_the_right_one_signs_in(
    page: Page, user_http: tuple[PluginServer, str]
) -> None:
    server, token = user_http
    open_console(page, server.base_url)
    expect(page.locator("#signin-state")).to_have_text("Not signed in (auth: user_http).")
    sign_in_with_token(page, "pkt_not-a-token-of-anyone")
    expect(page.locator("#signin-error")).to_have_text("401: invalid or revoked token")
    sign_in_with_token(page, token)
    expect(page.locator("#signin-state")).to_have_text("Signed in as alice (user_http).")
    expect(page.locator("#signin-error")).to_have_text("")
    assert page.evaluate("sessionStorage.getItem('plugkit-console-token')") == token


def call_operation(page: Page, operation_id: str, fields: dict[str, str]) -> None:
    form = page.locator(f"form[data-operation={operation_id}]")
    details = page.locator("details.op", has=form)
    if not details.evaluate("d => d.open"):
        details.locator("summary").click()
    for label, value in fields.items():
        form.get_by_label(label).fill(value)
    form.get_by_role("button", name="Call").click()


def test_an_operation_form_calls_the_api_and_a_forbidden_call_fails_with_the_apis_403(
    page: Page, user_http: tuple[PluginServer, str]
) -> None:
    server, token = user_http
    open_console(page, server.base_url)
    sign_in_with_token(page, token)
    expect(page.locator("#signin-state")).to_contain_text("alice")
    page.get_by_role("tab", name="Operations").click()

    call_operation(
        page, "addTodo", {"username (path, required)": "bob", "body (application/json, required)": '{"todo": "x"}'}
    )
    answer = page.locator("details.op", has=page.locator("form[data-operation=addTodo]")).locator(".answer")
    expect(answer.locator(".answer-meta")).to_have_text(re.compile(r"^403 · \d+ ms$"))
    expect(answer.locator(".answer-error")).to_have_text(
        "you are signed in as 'alice' and cannot reach the todos of 'bob'"
    )

    call_operation(
        page,
        "addTodo",
        {"username (path, required)": "alice", "body (application/json, required)": '{"todo": "buy milk"}'},
    )
    expect(answer.locator(".answer-meta")).to_have_text(re.compile(r"^200 · \d+ ms$"))

    call_operation(page, "getTodos", {"username (path, required)": "alice"})
    listed = page.locator("details.op", has=page.locator("form[data-operation=getTodos]")).locator(".answer")
    expect(listed.locator(".answer-meta")).to_have_text(re.compile(r"^200 · \d+ ms$"))
    expect(listed.locator("table.answer-table td").filter(has_text="buy milk")).to_have_count(1)
    listing = httpx.get(f"{server.base_url}/todos/alice", headers={"Authorization": f"Bearer {token}"}).json()
    assert listing["todos"] == ["buy milk"]


def test_the_service_token_signs_in_and_the_model_view_shows_tools_and_problems(page: Page, tmp_path: Path) -> None:
    env = {"PLUGKIT_SERVICE_TOKEN": SERVICE_TOKEN}
    with PluginServer("todo", "--auth", "service_http", "--data-dir", str(tmp_path), env=env) as server:
        open_console(page, server.base_url)
        sign_in_with_token(page, SERVICE_TOKEN)
        expect(page.locator("#signin-state")).to_have_text("Signed in with the service token (service_http).")
        expect(page.locator("#tool-form")).to_contain_text('"name": "addTodo"')
        page.get_by_role("button", name="TypeScript namespace").click()
        expect(page.locator("#tool-form")).to_contain_text("namespace todo {")
        expect(page.locator("#tool-tokens tbody tr")).to_have_count(4)  # addTodo, getTodos, deleteTodo, deleteTodoById
        expect(page.locator("#problems li").first).to_be_visible()


def test_the_tabs_work_from_the_keyboard_and_the_page_fits_a_phone(page: Page, retrieval: PluginServer) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    open_console(page, retrieval.base_url)
    page.get_by_role("tab", name="What the model sees").focus()
    page.keyboard.press("ArrowRight")
    expect(page.get_by_role("tab", name="Operations")).to_be_focused()
    expect(page.get_by_role("tab", name="Operations")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#view-operations")).to_be_visible()
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Enter")
    expect(page.locator("#view-documents")).to_be_visible()
    page.keyboard.press("Tab")  # past the tabs: the first control of the page is the file picker
    expect(page.locator("#files")).to_be_focused()
    for view in ("What the model sees", "Operations", "Documents"):
        page.get_by_role("tab", name=view).click()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, f"{view} overflows a phone's width"


def test_oauth_signs_in_through_the_plugins_own_authorization_server_with_pkce(page: Page, tmp_path: Path) -> None:
    run_plugkit("users", "create", "alice", "--password-stdin", "--data-dir", str(tmp_path), stdin=PASSWORD + "\n")
    with PluginServer("todo", "--auth", "oauth", "--data-dir", str(tmp_path)) as server:
        open_console(page, server.base_url)
        expect(page.locator("#signin-state")).to_have_text("Not signed in (auth: oauth).")
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{server.base_url}/oauth/authorize?*", timeout=10_000)
        assert "code_challenge_method=S256" in page.url
        page.get_by_label("User name").fill("alice")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in and allow").click()
        # A client alice never allowed before (the console registered itself): the server asks her to confirm it.
        expect(page.get_by_role("heading", name="Allow a new application?")).to_be_visible()
        page.get_by_role("button", name="Allow").click()
        expect(page.locator("#signin-state")).to_have_text("Signed in as alice (oauth).")
        assert page.url == f"{server.base_url}/console"


@pytest.fixture(scope="module")
def retrieval(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PluginServer]:
    server = PluginServer("retrieval", "--data-dir", str(tmp_path_factory.mktemp("retrieval")))
    server.start(timeout=300)  # loads the embedding model
    try:
        yield server
    finally:
        server.stop()


ASPIRIN = "Aspirin lowers the risk of a second heart attack.\n\nIt thins the blood, and doctors prescribe it daily."
TIDES = "The moon pulls the oceans and makes the tides.\n\nSpring tides come with the full and the new moon."


def drop_files(page: Page, files: dict[str, str]) -> None:
    """Drop files on the drop zone as a drag from the desktop would (a DataTransfer carrying File objects)."""
    page.evaluate(
        """files => {
            const transfer = new DataTransfer();
            for (const [name, text] of Object.entries(files)) {
                transfer.items.add(new File([text], name, {type: "text/plain"}));
            }
            const drop = new DragEvent("drop", {dataTransfer: transfer, bubbles: true});
            document.getElementById("dropzone").dispatchEvent(drop);
        }""",
        files,
    )


def test_documents_upload_with_progress_search_with_a_filter_and_delete(page: Page, retrieval: PluginServer) -> None:
    open_console(page, retrieval.base_url)
    expect(page.locator("#signin-state")).to_have_text("No sign-in needed (auth: none).")
    page.get_by_role("tab", name="Documents").click()

    drop_files(page, {"aspirin.txt": ASPIRIN, "tides.txt": TIDES})
    page.locator("#files").set_input_files(
        files=[{"name": "broken.pdf", "mimeType": "application/pdf", "buffer": b"%PDF-1.7\nnot really a pdf"}]
    )
    uploads = page.locator("#uploads li")
    expect(uploads).to_have_count(3)
    for name in ("aspirin.txt", "tides.txt"):
        item = uploads.filter(has_text=name)
        expect(item.locator(".result")).to_contain_text("chunk")
        expect(item.locator(".result")).to_contain_text("made · document ")
        assert item.locator("progress").evaluate("p => p.value") == 100
        assert int(item.get_attribute("data-progress-events") or 0) >= 1
    broken = uploads.filter(has_text="broken.pdf")
    expect(broken.locator(".result")).to_have_class("result error")
    expect(broken.locator(".result")).to_contain_text("422: ")

    aspirin_id = uploads.filter(has_text="aspirin.txt").locator(".result").inner_text().rsplit(" ", 1)[-1]
    tides_id = uploads.filter(has_text="tides.txt").locator(".result").inner_text().rsplit(" ", 1)[-1]
    expect(page.locator(f'#documents tr[data-id="{aspirin_id}"]')).to_have_count(1)

    page.locator("#q").fill("moon tides heart")
    page.locator("#top-k").fill("10")
    page.get_by_label("Filter (JSON)", exact=True).fill(json.dumps({"document_id": tides_id}))
    page.get_by_role("button", name="Search").click()
    results = page.locator("#results li")
    expect(results.first).to_be_visible()
    ids = results.evaluate_all("items => items.map(i => i.dataset.id)")
    assert ids and all(i.startswith(f"{tides_id}_") for i in ids), ids
    expect(results.first.locator("mark").first).to_be_visible()
    assert {m.lower() for m in results.locator("mark").all_inner_texts()} <= {"moon", "tides", "heart"}
    expect(results.first.locator(".bars")).to_contain_text("dense rank")
    expect(results.first.locator(".bars")).to_contain_text("keyword rank")
    score_bar = results.first.locator(".bar").first.bounding_box()
    assert score_bar is not None and score_bar["width"] > 10  # the best result's score bar is drawn

    page.on("dialog", lambda dialog: dialog.accept())
    page.locator(f'#documents tr[data-id="{aspirin_id}"]').get_by_role("button", name="Delete").click()
    expect(page.locator("#doc-note")).to_have_text(f"Deleted {aspirin_id}.")
    expect(page.locator(f'#documents tr[data-id="{aspirin_id}"]')).to_have_count(0)
    assert httpx.get(f"{retrieval.base_url}/documents/{aspirin_id}").status_code == 404
    assert httpx.get(f"{retrieval.base_url}/documents/{tides_id}").status_code == 200


def test_a_dismissed_delete_keeps_the_document(page: Page, retrieval: PluginServer) -> None:
    open_console(page, retrieval.base_url)
    page.get_by_role("tab", name="Documents").click()
    drop_files(page, {"keep.txt": "A document that stays where it is."})
    result = page.locator("#uploads li .result")
    expect(result).to_contain_text("made · document ")
    kept = result.inner_text().rsplit(" ", 1)[-1]
    page.on("dialog", lambda dialog: dialog.dismiss())
    page.locator(f'#documents tr[data-id="{kept}"]').get_by_role("button", name="Delete").click()
    expect(page.locator(f'#documents tr[data-id="{kept}"]')).to_have_count(1)
    assert httpx.get(f"{retrieval.base_url}/documents/{kept}").status_code == 200


def test_sports_answers_show_as_tables_with_nested_teams_by_name(page: Page, tmp_path: Path) -> None:
    with PluginServer("sports", "--data-dir", str(tmp_path)) as server:  # a fresh data dir serves the bundled sample
        open_console(page, server.base_url)
        page.get_by_role("tab", name="Operations").click()
        call_operation(page, "getTeams", {})
        teams = page.locator("details.op", has=page.locator("form[data-operation=getTeams]")).locator(".answer")
        expect(teams.locator("table.answer-table tbody tr")).to_have_count(30)
        expect(teams.locator("table.answer-table th").filter(has_text="full_name")).to_have_count(1)
        expect(teams.locator("td").filter(has_text=re.compile("^Los Angeles Lakers$"))).to_have_count(1)

        call_operation(page, "getGames", {"limit (query)": "3"})
        games = page.locator("details.op", has=page.locator("form[data-operation=getGames]")).locator(".answer")
        expect(games.locator("table.answer-table tbody tr")).to_have_count(3)
        header = games.locator("table.answer-table th").all_inner_texts()
        home = games.locator("table.answer-table tbody tr").first.locator("td").nth(header.index("home_team"))
        expect(home).to_have_text(re.compile(r"^[A-Z][a-z]+( [A-Z0-9][a-z0-9]+)+$"))  # a full team name, not JSON


def test_the_document_list_pages_and_filters_through_the_listing_endpoint(page: Page, retrieval: PluginServer) -> None:
    documents = [
        {"id": f"pager-{i:02}", "text": f"Page test document {i}.", "metadata": {"author": "pager"}} for i in range(21)
    ]
    documents.append({"id": "other-author", "text": "Not one of them.", "metadata": {"author": "someone"}})
    assert httpx.post(f"{retrieval.base_url}/upsert", json={"documents": documents}, timeout=120).status_code == 200
    open_console(page, retrieval.base_url)
    page.get_by_role("tab", name="Documents").click()
    page.get_by_label("Document filter (JSON)").fill(json.dumps({"author": "pager"}))
    page.get_by_role("button", name="List").click()
    rows = page.locator("#documents tbody tr")
    expect(rows).to_have_count(20)
    page.get_by_role("button", name="More").click()
    expect(rows).to_have_count(21)
    expect(page.get_by_role("button", name="More")).to_be_hidden()
    ids = rows.evaluate_all("rows => rows.map(r => r.dataset.id)")
    assert sorted(ids) == [f"pager-{i:02}" for i in range(21)]
    page.get_by_label("Document filter (JSON)").fill("{not json")
    page.get_by_role("button", name="List").click()
    expect(page.locator("#doc-note")).to_contain_text("The filter is not valid JSON")
