"""Make docs/portal.png: the portal's decision card for the example invoice (run: python docs/screenshot.py)."""

from __future__ import annotations

import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import uvicorn
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from studiox import users  # noqa: E402
from studiox.portal.app import create_app  # noqa: E402


def main() -> None:
    base = Path(tempfile.mkdtemp(prefix="studiox-shot-"))
    missions = base / "missions"
    shutil.copytree(ROOT / "missions", missions, ignore=shutil.ignore_patterns("erp.sqlite*"))
    home = base / "home"
    app = create_app(home, [missions / "invoice.yaml", missions / "expenses.yaml"])
    for name in ("alice", "bob"):
        users.add(home, name, "approver", f"{name}-password")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=8799, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    url = "http://127.0.0.1:8799"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(f"{url}/login")
        page.fill("input[name=name]", "alice")
        page.fill("input[name=password]", "alice-password")
        page.click("button[type=submit]")
        page.goto(f"{url}/missions/invoice-approval/start")
        page.set_input_files("input[name='file.invoice']", str(missions / "data" / "invoice-INV-2291.txt"))
        page.click("summary")
        page.set_input_files("input[name='file.__replay__']", str(missions / "data" / "replies/invoice-INV-2291.yaml"))
        page.click("form.card button[type=submit]")
        page.locator("#rail").filter(has_text="needs a decision").wait_for(timeout=90_000)
        page.goto(f"{url}/decisions")
        page.locator("table.list a").first.click()
        page.screenshot(path=str(ROOT / "docs" / "portal.png"), full_page=True)
        browser.close()
    server.should_exit = True
    print(ROOT / "docs" / "portal.png")


if __name__ == "__main__":
    main()
