"""Re-make the console screenshots in docs/ (run after changing the console's page):

    .venv/bin/python scripts/screenshots.py

Starts a retrieval plugin on a free port with a few sample documents, drives the system Chromium through Playwright
at desktop and phone width, and writes docs/console-*.png, reduced to a 64-colour palette to keep them small."""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from PIL import Image
from playwright.sync_api import Page, expect, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SAMPLES = {
    "aspirin.md": "# Aspirin after a heart attack\n\nA daily low dose of aspirin lowers the risk of a second heart "
    "attack: it keeps platelets from clumping.\n\nIt also raises the risk of bleeding, so doctors weigh the two.",
    "tides.txt": "The moon pulls the oceans toward it and makes the tides. Spring tides, the highest, come with the "
    "full and the new moon, when sun and moon pull in line.",
    "coffee.txt": "Coffee raises the heart rate for a short while; in most adults a few cups a day do not raise the "
    "risk of heart disease.",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def save(page: Page, name: str) -> None:
    image = Image.open(io.BytesIO(page.screenshot(full_page=False)))
    small = image.convert("RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT)
    small.save(DOCS / name, optimize=True)
    print(f"docs/{name}: {(DOCS / name).stat().st_size // 1024} KiB")


def shoot(base_url: str) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        for name, viewport in (("desktop", {"width": 1280, "height": 1000}), ("phone", {"width": 390, "height": 844})):
            page = browser.new_page(viewport=viewport, device_scale_factor=1)
            page.goto(f"{base_url}/console")
            expect(page.locator("body")).to_have_attribute("data-ready", "true")
            if name == "desktop":
                save(page, "console-model.png")
            page.get_by_role("tab", name="Documents").click()
            if name == "desktop":
                files = [{"name": n, "mimeType": "text/plain", "buffer": t.encode()} for n, t in SAMPLES.items()]
                files.append({"name": "notes.pdf", "mimeType": "application/pdf", "buffer": b"%PDF-1.7\nnot a pdf"})
                page.locator("#files").set_input_files(files=files)
                expect(page.locator("#uploads li .result:not(:empty)")).to_have_count(len(files))
            page.locator("#q").fill("heart attack risk")
            page.get_by_role("button", name="Search").click()
            expect(page.locator("#results li").first).to_be_visible()
            if name == "desktop":
                page.evaluate("document.getElementById('documents-heading').scrollIntoView({block: 'start'})")
                save(page, "console-documents.png")
            else:
                page.evaluate("document.getElementById('search-status').scrollIntoView({block: 'start'})")
                save(page, "console-phone.png")
            page.close()
        browser.close()


def main() -> None:
    DOCS.mkdir(exist_ok=True)
    port = free_port()
    with tempfile.TemporaryDirectory() as data_dir:
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        command = [sys.executable, "-m", "plugkit", "serve", "retrieval", "--port", str(port), "--data-dir", data_dir]
        server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base_url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(600):
                try:
                    if httpx.get(f"{base_url}/.well-known/ai-plugin.json", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.5)
            shoot(base_url)
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
