"""Enterprise Knowledge through the door a retrieve step uses: ranked passages with citations
people can read, exact filters, and an index kept in the state folder and updated incrementally."""

from __future__ import annotations

import asyncio
import json

import pytest
from conftest import write_mission

from studiox.adapters.knowledge import Knowledge

pytestmark = pytest.mark.backends(
    "local", reason="knowledge retrieval is under test; the store is incidental")


def test_search_ranks_the_matching_document_first_and_finds_order_numbers_by_their_parts(tmp_path):
    (tmp_path / "PO-1.md").write_text("Purchase order PO-1042 for office chairs, cost centre CC-410.")
    (tmp_path / "PO-2.md").write_text("Purchase order PO-2077 for a product launch event.")
    (tmp_path / "image.png").write_bytes(b"\x89PNG\x00")
    door = Knowledge({"orders": {"path": "."}}, tmp_path)
    hits = asyncio.run(door.search("orders", "PO-1042", 3))
    assert hits[0]["citation"] == "orders/PO-1.md#L1" and hits[0]["lines"] == [1, 1]
    assert [h["file"] for h in asyncio.run(door.search("orders", "1042 chairs", 1))] == ["PO-1.md"]
    assert asyncio.run(door.search("orders", "nothing like this", 3)) == []


def test_the_knowledge_door_returns_text_heading_lines_and_fields(tmp_path):
    (tmp_path / "kb").mkdir()
    (tmp_path / "kb" / "policy.md").write_text("# Travel\n\nMeals are refunded up to 60 EUR per day.\n\n"
                                               "## Hotels\n\nHotels up to 180 EUR a night.\n")
    (tmp_path / "kb" / "rates.csv").write_text("city,hotel_limit\nZürich,220\nBerlin,150\n")
    door = Knowledge({"policy": {"path": "kb"}}, tmp_path)
    (hit,) = asyncio.run(door.search("policy", "hotel limit night", 1))
    assert hit == {"citation": "policy/policy.md#L7", "source": "policy", "file": "policy.md",
                   "heading": "Travel > Hotels", "lines": [7, 7], "score": hit["score"],
                   "text": "Hotels up to 180 EUR a night."}
    (row,) = asyncio.run(door.search("policy", "hotel limit", 1, {"city": "Zürich"}))
    assert row["fields"] == {"city": "Zürich", "hotel_limit": "220"} and row["citation"] == "policy/rates.csv#L2"


def test_a_retrieve_step_filters_exactly_and_the_index_is_kept_and_updated_between_runs(studiox, tmp_path):
    sx = studiox
    orders = tmp_path / "orders"
    orders.mkdir()
    for number, item in (("PO-1042", "office chairs"), ("PO-2077", "office desks")):
        (orders / f"{number}.md").write_text(f"---\npo_number: {number}\n---\n# {number}\n\nOrder for {item}.\n")
    mission = write_mission(tmp_path / "m.yaml", (
        "mission: kb\ninputs: {po: {type: string}}\nknowledge: {orders: {path: orders}}\nsteps:\n"
        "  - id: find\n    retrieve: {from: orders, query: office order, where: {po_number: '${{ inputs.po }}'}}\n"))
    first = sx("run", mission, "--input", "po=PO-2077", "--json")
    assert first.returncode == 0, first.stdout + first.stderr
    run_id = json.loads(first.stdout)["run"]
    (passage,) = sx.state(run_id)["steps"][0]["output"]["passages"]
    assert passage["citation"] == "orders/PO-2077.md#L6" and passage["text"] == "Order for office desks."
    assert len(list((sx.home / "knowledge").glob("orders-*.db"))) == 1  # kept in the state folder
    (orders / "PO-2077.md").write_text("---\npo_number: PO-2077\n---\n# PO-2077\n\nOrder for standing desks.\n")
    again = sx("run", mission, "--input", "po=PO-2077", "--json")
    (changed,) = sx.state(json.loads(again.stdout)["run"])["steps"][0]["output"]["passages"]
    assert changed["text"] == "Order for standing desks."
    # the first run still shows what it used then: the journal keeps the passage, not a pointer
    assert sx.state(run_id)["steps"][0]["output"]["passages"][0]["text"] == "Order for office desks."
    none = sx("run", mission, "--input", "po=PO-9999")
    assert none.returncode == 0 and "no passage in 'orders' matches 'office order' where po_number = PO-9999" in none.stdout


def test_a_corrupt_index_is_rebuilt_with_a_warning_never_trusted(studiox, tmp_path):
    sx = studiox
    (tmp_path / "kb").mkdir()
    (tmp_path / "kb" / "a.md").write_text("Hotels up to 180 EUR.\n")
    mission = write_mission(tmp_path / "m.yaml", "mission: kb\nknowledge: {kb: {path: kb}}\nsteps:\n"
                            "  - {id: find, retrieve: {from: kb, query: hotel}}\n")
    assert sx("run", mission).returncode == 0
    (db,) = (sx.home / "knowledge").glob("kb-*.db")
    for extra in db.parent.glob(db.name + "-*"):
        extra.unlink()
    db.write_bytes(b"not a database" * 100)
    result = sx("run", mission)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "the index of 'kb' was unreadable" in result.stdout and "was rebuilt from its documents" in result.stdout
    assert "kb/a.md#L1" in result.stdout


def test_a_run_resumed_after_its_documents_changed_still_shows_the_passages_it_used(studiox, tmp_path):
    (tmp_path / "kb").mkdir()
    (tmp_path / "kb" / "policy.md").write_text("# Hotels\n\nHotels up to 180 EUR a night.\n")
    mission = write_mission(tmp_path / "m.yaml", (
        "mission: kb\nknowledge: {kb: {path: kb}}\nsteps:\n  - {id: find, retrieve: {from: kb, query: hotel}}\n"
        "  - id: ok\n    set: {limit: '${{ steps.find.output.passages[0].text }}'}\n"
        "    approval: {required: true}\n"
        "verdict: {choices: [Done], value: Done, note: '${{ steps.ok.output.limit }}'}\n"))
    parked = studiox("run", mission, "--no-input")
    assert parked.returncode == 3, parked.stdout + parked.stderr
    run_id = parked.stdout.split()[1]
    assert "kb/policy.md#L3: Hotels up to 180 EUR a night." in parked.stdout  # on the rail, beside its citation
    (tmp_path / "kb" / "policy.md").write_text("# Hotels\n\nHotels up to 250 EUR a night.\n")
    decision = json.loads(studiox("decisions", "--json").stdout)[0]["id"]
    card = studiox("decision", "show", decision, COLUMNS="200").stdout
    assert "what it rests on" in card and "kb/policy.md#L3: Hotels up to 180 EUR a night." in card  # as it was
    resumed = studiox("approve", decision, "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert resumed.stdout.splitlines()[-1] == "verdict: Done — Hotels up to 180 EUR a night."
    shown = json.loads(studiox("show", run_id, "--step", "find", "--json").stdout)["steps"][0]
    assert shown["output"]["passages"][0]["text"] == "Hotels up to 180 EUR a night."


def _pdf(lines: list[str]) -> bytes:
    """A one-page PDF with these lines of text (Helvetica), written by hand."""
    content = "BT /F1 12 Tf 72 720 Td 14 TL " + " ".join(f"({line}) '" for line in lines) + " ET"
    objects = ["<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
               "/Resources << /Font << /F1 5 0 R >> >> >>",
               f"<< /Length {len(content)} >>\nstream\n{content}\nendstream",
               "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out, offsets = "%PDF-1.4\n", []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n" + "".join(f"{o:010d} 00000 n \n" for o in offsets)
    return (out + f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n").encode()


def test_a_pdf_is_searched_by_its_text_and_a_broken_one_is_named(tmp_path):
    import pytest

    from studiox.steps import StepError

    (tmp_path / "kb").mkdir()
    (tmp_path / "kb" / "policy.pdf").write_bytes(_pdf(["Travel policy", "Hotels up to 180 EUR a night."]))
    door = Knowledge({"kb": {"path": "kb"}}, tmp_path)
    (hit,) = asyncio.run(door.search("kb", "hotels", 1))
    assert hit["file"] == "policy.pdf" and "Hotels up to 180 EUR a night." in hit["text"]
    (tmp_path / "kb" / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    with pytest.raises(StepError, match="cannot read the PDF broken.pdf"):
        asyncio.run(Knowledge({"kb": {"path": "kb"}}, tmp_path).search("kb", "hotels", 1))
