"""studiox knowledge index / search / status / show on a mission's sources."""

from __future__ import annotations

import json
import os

import pytest
from conftest import write_mission

pytestmark = pytest.mark.backends("local", reason="the knowledge index is a local file, not the store")


def _mission(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "policy.md").write_text("# Travel\n\nHotels up to 180 EUR a night.\n\n# Meals\n\nUp to 60 EUR a day.\n")
    (docs / "suppliers.jsonl").write_text('{"id": "S-1", "name": "Nordlicht GmbH", "city": "Kiel"}\n'
                                          '{"id": "S-2", "name": "Südwerk AG", "city": "München"}\n')
    return write_mission(tmp_path / "m.yaml", "mission: kb\nknowledge: {docs: {path: docs}}\nsteps:\n"
                         "  - {id: find, retrieve: {from: docs, query: hotel}}\n"), docs


def test_index_status_search_and_show(studiox, tmp_path):
    mission, docs = _mission(tmp_path)
    before = json.loads(studiox("knowledge", "status", mission, "--json").stdout)
    assert before == [{"source": "docs", "indexed": False, "documents": 0, "passages": 0, "stale": None}]
    (first,) = json.loads(studiox("knowledge", "index", mission, "--json").stdout)
    assert sorted(first["read"]) == ["policy.md", "suppliers.jsonl"] and first["passages"] == 4
    (docs / "policy.md").write_text("# Travel\n\nHotels up to 200 EUR a night.\n")
    os.utime(docs / "policy.md", (1, 1))
    (stale,) = json.loads(studiox("knowledge", "status", mission, "--json").stdout)
    assert stale["stale"] == ["policy.md"]
    (second,) = json.loads(studiox("knowledge", "index", mission, "--json").stdout)
    assert second["read"] == ["policy.md"] and second["unchanged"] == 1
    hits = json.loads(studiox("knowledge", "search", mission, "docs", "hotels night", "--json").stdout)
    assert hits[0]["citation"] == "docs/policy.md#L3" and "200 EUR" in hits[0]["text"]
    (supplier,) = json.loads(studiox("knowledge", "search", mission, "docs", "GmbH AG", "--where", "city=München",
                                     "--json").stdout)
    assert supplier["fields"]["id"] == "S-2" and supplier["citation"] == "docs/suppliers.jsonl#L2"
    shown = studiox("knowledge", "show", mission, "docs/policy.md#L3")
    assert shown.returncode == 0 and "Hotels up to 200 EUR a night." in shown.stdout


def test_bad_citations_and_unknown_sources_are_usage_errors(studiox, tmp_path):
    mission, _ = _mission(tmp_path)
    wrong = studiox("knowledge", "show", mission, "policy.md line 3")
    assert wrong.returncode == 2 and "write it as SOURCE/FILE#L3-L12" in wrong.stderr
    unknown = studiox("knowledge", "search", mission, "doc", "hotel")
    assert unknown.returncode == 2 and "did you mean 'docs'" in unknown.stderr


def test_index_shows_a_progress_bar_at_a_terminal(studiox, tmp_path):
    from support.terminal import Terminal

    mission, docs = _mission(tmp_path)
    for i in range(300):
        (docs / f"note{i:03d}.md").write_text(f"# Note {i}\n\nHotel number {i}.\n")
    terminal = Terminal(studiox.argv("knowledge", "index", mission), studiox.env(COLUMNS="100"))
    try:
        screen = terminal.expect("docs: 302 documents", timeout=60)
        assert "indexing docs" in screen  # the bar, before the summary
        assert terminal.wait(30) == 0
    finally:
        if terminal.proc.poll() is None:
            terminal.proc.kill()
