"""Enterprise Knowledge (retrieve steps) and the flagship invoice mission end to end, offline."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3

from conftest import ROOT

from studiox.adapters.knowledge import Index, Knowledge, passages_of


def test_documents_are_cut_into_passages_with_citations():
    text = "# Title\n\nfirst paragraph\n\n" + ("x" * 900) + "\n\nlast"
    passages = passages_of("docs", "a.md", text)
    assert [p.citation for p in passages] == ["docs:a.md#1", "docs:a.md#2", "docs:a.md#3"]
    assert passages[0].text == "# Title\n\nfirst paragraph"


def test_search_ranks_the_matching_document_first_and_finds_order_numbers_by_their_parts(tmp_path):
    (tmp_path / "PO-1.md").write_text("Purchase order PO-1042 for office chairs, cost centre CC-410.")
    (tmp_path / "PO-2.md").write_text("Purchase order PO-2077 for a product launch event.")
    (tmp_path / "image.png").write_bytes(b"\x89PNG\x00")
    index = Index.build("orders", {"path": "."}, tmp_path)
    hits = index.search("PO-1042", 3)
    assert hits[0][0].citation == "orders:PO-1.md#1"
    assert [p.file for p, _ in index.search("1042 chairs", 3)] == ["PO-1.md"]
    assert index.search("nothing like this", 3) == []


def test_the_knowledge_door_searches_a_named_source(tmp_path):
    (tmp_path / "kb").mkdir()
    (tmp_path / "kb" / "policy.txt").write_text("Meals are refunded up to 60 EUR per day.\n\nHotels up to 180 EUR.")
    door = Knowledge({"policy": {"path": "kb"}}, tmp_path)
    hits = asyncio.run(door.search("policy", "hotel limit", 1))
    assert hits == [{"citation": "policy:policy.txt#1", "source": "policy", "file": "policy.txt", "passage": 1,
                     "score": hits[0]["score"], "text": "Meals are refunded up to 60 EUR per day.\n\nHotels up to 180 EUR."}]


def test_the_invoice_mission_runs_offline_end_to_end(studiox, tmp_path):
    missions = tmp_path / "missions"
    shutil.copytree(ROOT / "missions", missions, ignore=shutil.ignore_patterns("erp.sqlite"))
    args = ("run", missions / "invoice.yaml", "--input", f"invoice=@{missions / 'data' / 'invoice-INV-2291.txt'}",
            "--replay", missions / "data" / "invoice.replay.yaml")
    parked = studiox(*args, timeout=120)
    assert parked.returncode == 3, parked.stdout + parked.stderr
    assert "found 1 passage(s) for 'PO-1042': purchase_orders:PO-1042.md#1" in parked.stdout
    assert "pay needs a decision" in parked.stdout
    decision = parked.stdout.split("waiting for a decision ")[1].split(":")[0]
    done = studiox("approve", decision, "--note", "matches PO-1042", "--resume", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == \
        "verdict: Approved with note — Paid; cost centre CC-410 has under 1,000 left."
    with sqlite3.connect(missions / "data" / "erp.sqlite") as db:
        assert db.execute("SELECT invoice_number, amount FROM payments").fetchall() == [("INV-2291", 1780.0)]
    run_id = parked.stdout.split()[1]
    state = json.loads(studiox("status", run_id, "--json").stdout)
    assert state["usage"]["model_calls"] == 2
