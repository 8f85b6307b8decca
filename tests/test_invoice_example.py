"""The flagship example, end to end and offline: missions/invoice.yaml with its replayed workers and the
example ERP (a real MCP server). Four eyes: root starts the runs, a colleague (a real OS user) approves."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import ROOT
from test_approvers_cli import ALICE, _unmeasured, users  # noqa: F401 - the fixture that makes the test users

pytestmark = pytest.mark.usefixtures("users")


@pytest.fixture
def team(studiox, tmp_path):
    """The real CLI, with a state folder the colleague can reach, and a copy of missions/."""
    shared = Path(tempfile.mkdtemp(prefix="sxtest-state-"))
    shared.chmod(0o777)
    studiox.home = shared / "home"
    missions = tmp_path / "missions"
    shutil.copytree(ROOT / "missions", missions, ignore=shutil.ignore_patterns("erp.sqlite"))
    yield studiox, missions
    shutil.rmtree(shared)


def _as(studiox, user: str, *args) -> subprocess.CompletedProcess:
    subprocess.run(["chmod", "-R", "a+rwX", studiox.home], check=True)
    setpriv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups",
               "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search", "--"]
    return subprocess.run(setpriv + studiox.argv(*args), capture_output=True, text=True, timeout=60,
                          env=_unmeasured(studiox.env(HOME=str(studiox.home.parent))), stdin=subprocess.DEVNULL, umask=0)


def _decision(result) -> str:
    return result.stdout.split("waiting for a decision ")[1].split(":")[0]


def test_one_invoice_is_paid_once_by_a_second_pair_of_eyes_on_evidence_still_true(team):
    studiox, missions = team
    run = ("run", missions / "invoice.yaml", "--input", f"invoice=@{missions / 'data' / 'invoice-INV-2291.txt'}",
           "--replay", missions / "data" / "replies/invoice-INV-2291.yaml")
    first = studiox(*run, timeout=120)
    assert first.returncode == 3, first.stdout + first.stderr
    assert "found 1 passage(s) for 'PO-1042' where po_number = PO-1042: purchase_orders/PO-1042.md#L6-L15" \
        in first.stdout
    first_id, first_decision = first.stdout.split()[1], _decision(first)
    shown = json.loads(studiox("decision", "show", first_decision, "--json").stdout)
    order = {s["label"]: s["value"] for s in shown["shown"]}["evidence"]  # passed to the pay-supplier sub-mission
    assert order.startswith("[purchase_orders/PO-1042.md#L6-L15]\n") and "Cost centre: CC-410" in order
    assert shown["key"] == "INV-2291"
    first_payment = shown["run"]  # the pay-supplier run that the invoice run's payment step started
    assert first_payment != first_id

    again = studiox(*run, timeout=120)  # the same invoice while the first run waits
    assert again.returncode == 1
    assert f"INV-2291 is already being handled by run {first_id} (waiting)" in again.stdout

    duplicate = studiox(*run, "--allow-duplicate", timeout=120)  # started anyway, before the first one pays
    assert duplicate.returncode == 3, duplicate.stdout
    duplicate_id = duplicate.stdout.split()[1]

    refused = studiox("approve", first_decision)  # four eyes: not the person who started it
    assert refused.returncode == 2 and "four-eyes" in refused.stderr
    assert _as(studiox, ALICE, "approve", first_decision, "--note", "matches PO-1042").returncode == 0
    done = studiox("resume", first_id, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == "verdict: Approved with note — Paid; cost centre CC-410 has under 1,000 left."

    assert _as(studiox, ALICE, "approve", _decision(duplicate)).returncode == 0
    rechecked = studiox("resume", duplicate_id, timeout=120)
    assert rechecked.returncode == 3, rechecked.stdout  # the budget changed since the card: asked again, not paid
    explain = json.loads(studiox("decision", "show", _decision(rechecked), "--json").stdout)["explain"]
    assert "budget.remaining: 2600.0 → 820.0" in explain
    assert _as(studiox, ALICE, "approve", _decision(rechecked)).returncode == 0
    asked = studiox("resume", duplicate_id, timeout=120)
    assert asked.returncode == 3, asked.stdout  # and it was paid already, in the first run: asked again
    explain = json.loads(studiox("decision", "show", _decision(asked), "--json").stdout)["explain"]
    assert f"erp.post_payment for INV-2291 was already done in run {first_payment}" in explain
    assert f"approved by {ALICE}" in explain
    with sqlite3.connect(missions / "data" / "erp.sqlite") as db:
        assert db.execute("SELECT invoice_number, amount FROM payments WHERE invoice_number = 'INV-2291'"
                          ).fetchall() == [("INV-2291", 1780.0)]

    assert studiox("cancel", duplicate_id, "--reason", "paid in the first run").returncode == 0
    later = studiox(*run, timeout=120)  # once paid, the invoice is refused before anyone is asked
    assert later.returncode == 0, later.stdout + later.stderr
    assert later.stdout.splitlines()[-1] == "verdict: Rejected — Already paid: the ERP booked 1780.0 EUR for " \
                                            "INV-2291 against PO-1042 (payment 2); an invoice is paid once."
