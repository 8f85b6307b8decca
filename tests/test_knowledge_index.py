"""The FTS5 knowledge index: incremental updates,
stemming and part numbers, front-matter filters, heading paths and line ranges."""

from __future__ import annotations

import os
from pathlib import Path

from studiox.adapters.knowledge_index import SourceIndex, pieces


def _files(root: Path) -> dict[str, tuple[int, float]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime) for p in root.glob("*.md")}


def _reader(root: Path):
    return lambda relative: (root / relative).read_text(encoding="utf-8")


def test_only_new_changed_or_deleted_files_are_read_again_and_a_rename_keeps_its_passages(tmp_path):
    root = tmp_path / "docs"
    root.mkdir()
    for i in range(1000):
        (root / f"doc{i:04d}.md").write_text(f"# Doc {i}\n\nThe hotel booking number {i} for order PO-{i:04d}.\n")
    index = SourceIndex(tmp_path / "index.db")
    first = index.update(_files(root), _reader(root))
    assert len(first.read) == 1000 and index.stats() == {"documents": 1000, "passages": 1000}
    (root / "doc0007.md").write_text("# Doc 7\n\nNow about conference rooms.\n")
    os.utime(root / "doc0008.md")  # touched, not changed: its hash says so
    again = index.update(_files(root), _reader(root))
    assert again.read == ["doc0007.md"] and again.unchanged == 999
    (root / "doc0009.md").unlink()
    (root / "doc0010.md").rename(root / "renamed.md")
    third = index.update(_files(root), _reader(root))
    assert third.removed == ["doc0009.md"] and third.moved == [("doc0010.md", "renamed.md")] and third.read == []
    assert all(hit["file"] != "doc0009.md" for hit in index.search("PO-0009", 5))
    (hit,) = index.search("order PO-0010", 1)
    assert hit["file"] == "renamed.md"
    assert index.search("conference room", 1)[0]["file"] == "doc0007.md"  # stemmed: rooms → room
    index.close()


def test_part_numbers_unicode_and_front_matter_filters(tmp_path):
    root = tmp_path / "orders"
    root.mkdir()
    (root / "PO-1042.md").write_text("---\npo_number: PO-1042\nsupplier: Müller GmbH\n---\n# Order PO-1042\n\n"
                                     "Two ergonomic chairs for the Zürich office.\n")
    (root / "PO-2000.md").write_text("---\npo_number: PO-2000\nsupplier: ACME\n---\n# Order PO-2000\n\n"
                                     "Chairs, desks and lamps for the Zürich office.\n")
    index = SourceIndex(":memory:")
    index.update(_files(root), _reader(root))
    for query in ("PO-1042", "PO 1042", "1042"):
        assert index.search(query, 1)[0]["file"] == "PO-1042.md", query
    assert {h["file"] for h in index.search("zürich chair", 5)} == {"PO-1042.md", "PO-2000.md"}
    (only,) = index.search("chairs", 5, where={"po_number": "PO-2000"})
    assert only["file"] == "PO-2000.md" and only["meta"]["supplier"] == "ACME"
    assert index.search("chairs", 5, where={"po_number": "PO-9999"}) == []  # no passage, not an error
    assert [h["file"] for h in index.search("chairs", 5, where={"file": "PO-1*.md"})] == ["PO-1042.md"]  # a glob
    assert index.search("chairs", 5, where={"file": "*.txt"}) == []
    assert only["heading"] == "Order PO-2000" and only["lines"] == [7, 7]  # after the front matter


def test_passages_are_cut_at_headings_with_their_path_and_lines():
    text = "# Policy\n\nIntro line.\n\n## Travel\n\nHotels up to 150 EUR.\nTrains second class.\n\n## Meals\n\n30 EUR.\n"
    found = pieces(text)
    assert [(p.heading, p.first_line, p.last_line) for p in found] == [
        ("Policy", 3, 3), ("Policy > Travel", 7, 8), ("Policy > Meals", 12, 12)]


def test_a_word_in_most_passages_still_counts_when_the_rare_words_find_too_few(tmp_path):
    root = tmp_path / "docs"
    root.mkdir()
    for i in range(4):
        (root / f"d{i}.md").write_text(f"Purchase order {i}." + (" Hotel in Berlin." if i == 2 else "") + "\n")
    index = SourceIndex(":memory:")
    index.update(_files(root), _reader(root))
    assert [h["file"] for h in index.search("order hotel", 1)] == ["d2.md"]  # the common word left out: same best
    assert [h["file"] for h in index.search("order hotel", 3)][0] == "d2.md"
    assert len(index.search("order hotel", 3)) == 3  # too few without "order": the whole query, as before
    assert len(index.search("purchase order", 10)) == 4  # every word common: all of them kept
    assert index.search("hotels", 5)[0]["file"] == "d2.md"  # a stemmed word not in the vocabulary as typed: kept
