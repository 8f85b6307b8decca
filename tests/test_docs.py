"""The docs are code: every mission example in docs/ loads, the docs cover every construct of the
schema, and the 'common mistakes' output in docs/missions.md is what studiox really prints."""

from __future__ import annotations

import json
import re

import pytest
from conftest import ROOT, cli

from studiox.mission import loads

DOCS = ROOT / "docs"
BLOCK = re.compile(r"```yaml\n(.*?)```", re.DOTALL)


def _examples():
    """Every complete mission in the docs (fragments, such as a replay file, are tested on their own)."""
    for page in sorted(DOCS.glob("*.md")):
        for i, match in enumerate(BLOCK.finditer(page.read_text())):
            if match.group(1).lstrip().startswith("mission:"):
                yield pytest.param(page.name, match.group(1), id=f"{page.stem}-{i + 1}")


EXAMPLES = list(_examples())


@pytest.mark.parametrize("page, text", EXAMPLES)
def test_every_mission_example_in_the_docs_loads(page, text):
    loads(text, f"docs/{page}", check_paths=False)


def test_there_are_examples_for_every_construct_page():
    assert len([e for e in EXAMPLES if e.values[0] == "missions.md"]) >= 15


def test_the_replay_example_in_workers_md_is_a_valid_replay_file(tmp_path):
    from studiox.adapters.models import Replay

    fragment = next(m.group(1) for m in BLOCK.finditer((DOCS / "workers.md").read_text()) if "tool_calls" in m.group(1))
    path = tmp_path / "replay.yaml"
    path.write_text(fragment)
    assert set(Replay.load(path).answers) == {"extract", "decide"}


def test_the_replay_problems_shown_in_workers_md_are_what_studiox_prints(tmp_path):
    page = (DOCS / "workers.md").read_text()
    section = page[page.index("For this replay file of missions/invoice.yaml"):]
    (tmp_path / "replay.yaml").write_text(BLOCK.search(section).group(1))
    printed = re.search(r"```text\n(.*?)```", section, re.DOTALL).group(1)
    result = cli("validate", ROOT / "missions" / "invoice.yaml", "--replay", "replay.yaml", cwd=tmp_path,
                 env={"COLUMNS": "300", "PATH": ""})
    assert result.returncode == 2
    assert result.stderr == printed


def test_the_docs_show_every_step_kind_and_every_step_field():
    schema = json.loads((ROOT / "schemas" / "mission.schema.json").read_text())
    step = schema["$defs"]["step"]
    kinds = [part["if"]["required"][0] for part in step["allOf"]]
    fields = [f for f in step["properties"] if f != "id"]
    extra = [f for part in step["allOf"] for f in part["then"].get("properties", {})]
    text = "".join(m.group(1) for m in BLOCK.finditer((DOCS / "missions.md").read_text()))
    for key in kinds + fields + extra + list(schema["properties"]):
        assert re.search(rf"^\s*-?\s*{key}:", text, re.MULTILINE), f"no example in docs/missions.md uses '{key}'"


def test_the_common_mistakes_output_is_what_studiox_prints(tmp_path):
    page = (DOCS / "missions.md").read_text()
    section = page[page.index("## Common mistakes"):]
    broken, printed = re.findall(r"```text\n(.*?)```", section, re.DOTALL)[:2]
    (tmp_path / "broken.yaml").write_text(broken)
    result = cli("validate", "broken.yaml", cwd=tmp_path, env={"COLUMNS": "300", "PATH": ""})
    assert result.returncode == 2
    assert result.stderr == printed
