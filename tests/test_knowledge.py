"""Enterprise Knowledge (retrieve steps) and the flagship invoice mission end to end, offline."""

from __future__ import annotations

import asyncio

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
