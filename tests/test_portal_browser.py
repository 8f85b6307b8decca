"""The portal in a real browser: headless Chromium (Debian's, driven by Playwright) against the
real server (uvicorn) over the example invoice mission, its real ERP server and replayed models."""

from __future__ import annotations

import shutil
import socket
import sqlite3
import threading
import time
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import expect, sync_playwright

from studiox import users
from studiox.portal.app import create_app

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(tmp_path):
    """The portal on a free port, serving a copy of missions/ (its own ERP database), and a browser."""
    missions = tmp_path / "missions"
    shutil.copytree(ROOT / "missions", missions, ignore=shutil.ignore_patterns("erp.sqlite*"))
    home = tmp_path / "home"
    app = create_app(home, [missions / "invoice.yaml"])
    for name, role in (("vera", "viewer"), ("alice", "approver"), ("bob", "approver")):
        users.add(home, name, role, f"{name}-password")
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield f"http://127.0.0.1:{port}", browser, missions, home
        finally:
            browser.close()
            server.should_exit = True
            thread.join(30)


def _login(browser, base: str, name: str):
    page = browser.new_page()
    page.set_default_timeout(60_000)
    page.goto(f"{base}/decisions")
    expect(page).to_have_url(f"{base}/login?next=/decisions")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", f"{name}-password")
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_contain_text("Decisions waiting")
    return page


def _start_invoice(page, base: str, missions: Path) -> str:
    """Start the invoice mission from its form, uploading the invoice and the scripted answers; its run id."""
    page.goto(f"{base}/missions/invoice-approval/start")
    page.set_input_files("input[name='file.invoice']", str(missions / "data" / "invoice-INV-2291.txt"))
    page.click("summary")
    page.set_input_files("input[name='file.__replay__']", str(missions / "data" / "replies/invoice-INV-2291.yaml"))
    page.click("form.card button[type=submit]")
    expect(page.locator("h1")).to_contain_text("Run ")
    return page.url.rsplit("/", 1)[1]


def _decision_of(page, base: str) -> str:
    page.goto(f"{base}/decisions")
    link = page.locator("table.list a").first
    expect(link).to_be_visible()
    return link.inner_text()


def test_start_watch_live_reject_then_approve_an_edited_amount_in_the_browser(served):
    base, browser, missions, home = served
    alice = _login(browser, base, "alice")
    first = _start_invoice(alice, base, missions)
    # the live rail: lines arrive without a reload, up to the park for the payment decision
    expect(alice.locator("#rail")).to_contain_text("needs a decision", timeout=90_000)
    assert alice.url.endswith(f"/runs/{first}")

    # four eyes: alice started the run, so she may not approve its payment
    decision = _decision_of(alice, base)
    alice.goto(f"{base}/decisions/{decision}")
    expect(alice.locator("main")).to_contain_text("erp.post_payment")
    alice.click("#approve button[type=submit]")
    alice.click("#confirm")
    expect(alice.locator(".error")).to_contain_text("four-eyes")

    # bob rejects it, with a reason
    bob = _login(browser, base, "bob")
    bob.goto(f"{base}/decisions/{decision}")
    bob.fill("#reject input[name=reason]", "the supplier's bank details changed")
    bob.click("#reject button[type=submit]")
    expect(bob.locator("#verdict")).to_contain_text("Rejected", timeout=90_000)
    expect(bob.locator("#verdict")).to_contain_text("the supplier's bank details changed")

    # a second invoice run: bob corrects the amount, the confirmation restates it, the run finishes
    second = _start_invoice(alice, base, missions)
    expect(alice.locator("#rail")).to_contain_text("needs a decision", timeout=90_000)
    decision = _decision_of(bob, base)
    bob.goto(f"{base}/decisions/{decision}")
    bob.fill("input[name='arg.amount']", "1700")
    bob.fill("#approve input[name=note]", "credit note CN-77 deducted")
    bob.click("#approve button[type=submit]")
    expect(bob.locator("main")).to_contain_text("was")  # amount 1700, was 1780
    expect(bob.locator("main")).to_contain_text("1700")
    bob.click("#confirm")
    bob.goto(f"{base}/runs/{second}")
    expect(bob.locator("#verdict")).to_contain_text("Approved with note", timeout=90_000)
    with sqlite3.connect(missions / "data" / "erp.sqlite") as db:
        assert db.execute("SELECT invoice_number, amount FROM payments WHERE invoice_number = 'INV-2291'"
                          ).fetchall() == [("INV-2291", 1700.0)]
    bob.goto(f"{base}/runs/{second}")
    expect(bob.locator("svg.timeline rect").first).to_be_visible()  # the timeline, a bar per step


def test_a_viewer_sees_no_approve_button_and_a_forged_post_is_refused(served):
    base, browser, missions, home = served
    alice = _login(browser, base, "alice")
    _start_invoice(alice, base, missions)
    expect(alice.locator("#rail")).to_contain_text("needs a decision", timeout=90_000)
    vera = _login(browser, base, "vera")
    decision = _decision_of(vera, base)
    vera.goto(f"{base}/decisions/{decision}")
    expect(vera.locator("main")).to_contain_text("erp.post_payment")
    assert vera.locator("#approve").count() == 0 and vera.locator("#reject").count() == 0
    token = vera.locator("input[name=csrf]").first.get_attribute("value")
    forged = vera.request.post(f"{base}/decisions/{decision}/approve", form={"csrf": token, "confirm": "yes"})
    assert forged.status == 403
    vera.goto(f"{base}/decisions")
    expect(vera.locator("table.list")).to_contain_text(decision)  # still pending
