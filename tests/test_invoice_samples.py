"""The sample invoices in missions/data/, as the README lists them: each runs offline to its outcome
(its replayed answers, the real example ERP), its answers fit the mission, and its case in
missions/invoice.test.yaml scripts the same answers."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml
from conftest import ROOT, cli

pytestmark = pytest.mark.backends(
    "local", reason="the example mission's samples are under test; the store is incidental")

DATA = ROOT / "missions" / "data"
SAMPLES = ["INV-2291", "INV-5532", "INV-2107", "INV-7730", "INV-6604", "INV-3318"]
REJECTED = {  # the verdicts of the samples that end without asking anyone
    "INV-2107": "Already paid: the ERP booked 640.0 EUR for INV-2107 against PO-0987 (payment 1); an invoice is "
                "paid once.",
    "INV-7730": "Not paid: Cost centre CC-900 lacks budget for 1240.0 EUR.",
    "INV-6604": "No purchase order PO-5120 on file: an invoice is paid only against an approved order.",
    "INV-3318": "Not from the order's supplier: the invoice is from Nordlicht Office Solutions Ltd, but PO-1042 is "
                "with Nordlicht Office Supplies GmbH: the supplier's name, address and country are not the order's; "
                "it asks for payment to new bank details",
}


def _replies(invoice: str):
    """Each sample's scripted answers, named after its file (as the inbox trigger finds them)."""
    return DATA / "replies" / f"invoice-{invoice}.yaml"


@pytest.fixture
def missions(tmp_path):
    """missions/ copied, so the example ERP's database (created beside it with its sample data) is the test's own."""
    target = tmp_path / "missions"
    shutil.copytree(ROOT / "missions", target, ignore=shutil.ignore_patterns("erp.sqlite*"))
    return target


def test_every_sample_invoice_has_its_answers():
    assert sorted(p.name for p in DATA.glob("invoice-*.txt")) == sorted(f"invoice-{i}.txt" for i in SAMPLES)
    assert sorted(p.stem for p in (DATA / "replies").glob("*.yaml")) == sorted(f"invoice-{i}" for i in SAMPLES)


@pytest.mark.parametrize("invoice", SAMPLES)
def test_the_answers_of_each_sample_fit_the_mission(invoice):
    result = cli("validate", ROOT / "missions" / "invoice.yaml", "--replay", _replies(invoice))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{_replies(invoice).name}: its answers fit mission invoice-approval" in result.stdout


@pytest.mark.parametrize("invoice", SAMPLES)
def test_the_test_case_of_each_sample_scripts_its_answers(invoice):
    tests = yaml.safe_load((ROOT / "missions" / "invoice.test.yaml").read_text())
    defaults = tests["defaults"]
    cases = [c for c in tests["cases"]
             if {**defaults["inputs"], **c.get("inputs", {})} == {"invoice": f"@data/invoice-{invoice}.txt"}]
    assert cases, f"no case in invoice.test.yaml runs {invoice} with the mission's defaults"
    models = {**defaults["models"], **cases[0].get("models", {})}
    for step, answers in yaml.safe_load(_replies(invoice).read_text()).items():
        assert [a["output"] for a in models[step]] == [a["output"] for a in answers], (invoice, step)


@pytest.mark.parametrize("invoice", sorted(REJECTED))
def test_a_sample_that_cannot_be_paid_is_rejected_without_asking_anyone(studiox, missions, invoice):
    result = studiox("run", missions / "invoice.yaml", "--input", f"invoice=@{missions / 'data' / f'invoice-{invoice}.txt'}",
                     "--replay", missions / "data" / "replies" / f"invoice-{invoice}.yaml", "--no-input", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == f"verdict: Rejected — {REJECTED[invoice]}"
    assert json.loads(studiox("decisions", "--json", "--all").stdout) == []


def test_a_small_price_difference_goes_to_payment_with_the_difference_first_on_the_card(studiox, missions):
    result = studiox("run", missions / "invoice.yaml", "--input", f"invoice=@{missions / 'data' / 'invoice-INV-5532.txt'}",
                     "--replay", missions / "data" / "replies" / "invoice-INV-5532.yaml", "--no-input", "--json", timeout=120)
    assert result.returncode == 3, result.stdout + result.stderr
    decision = json.loads(result.stdout)["waiting"]["decision"]
    card = json.loads(studiox("decision", "show", decision, "--json").stdout)
    assert card["action"]["arguments"] == {"invoice_number": "INV-5532", "po_number": "PO-2077", "amount": 9458.0}
    evidence = {s["label"]: s["value"] for s in card["shown"]}["evidence"]
    assert evidence.startswith("Within the 25 EUR tolerance: 9458.0 EUR invoiced against 9450.0 EUR ordered on "
                               "PO-2077 (+8.0 EUR): printed brochures are billed at 329.00 EUR a box, ordered at "
                               "325.00 (2 boxes)\n\n[purchase_orders/PO-2077.md#L6-L16]\n")


def test_the_six_samples_dropped_into_the_inbox_start_six_runs_that_reach_their_outcomes(missions):
    """The invoice example comes alive: `studiox serve --no-web` takes the samples from the inbox."""
    import os
    import signal
    import subprocess
    import sys
    import time

    home = missions.parent / "home"
    for invoice in SAMPLES:
        shutil.copy(DATA / f"invoice-{invoice}.txt", missions / "inbox")
    service = subprocess.Popen([sys.executable, "-m", "studiox", "serve", "--no-web", str(missions / "invoice.yaml"),
                                "--home", str(home)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "STUDIOX_HOME": str(home)})

    def runs() -> list[dict]:
        listed = cli("runs", "--json", "--home", home)
        return json.loads(listed.stdout) if listed.returncode == 0 and listed.stdout.strip() else []

    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            top = [r for r in runs() if r["mission"] == "invoice-approval"]
            if len(top) == 6 and all(r["status"] in ("waiting", "succeeded") for r in top):
                break
            time.sleep(0.5)
    finally:
        service.send_signal(signal.SIGTERM)
        said, _ = service.communicate(timeout=60)
    top = [r for r in runs() if r["mission"] == "invoice-approval"]
    assert len(top) == 6, said
    by_key = {r["key"]: r for r in top}
    assert sorted(by_key) == sorted(SAMPLES)
    for invoice in REJECTED:
        assert by_key[invoice]["status"] == "succeeded" and by_key[invoice]["verdict"] == "Rejected", invoice
    for invoice in ("INV-2291", "INV-5532"):  # these wait for a person to approve their payment
        assert by_key[invoice]["status"] == "waiting", invoice
    assert sorted(p.name for p in (missions / "inbox" / "processed").iterdir()) == \
        sorted(f"invoice-{invoice}.txt" for invoice in SAMPLES)
