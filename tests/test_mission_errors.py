"""The invalid-mission corpus: every file under tests/invalid/ must produce exactly the problems in
its .expected file (file:line:col: path: message), all of them at once, never a traceback.

To change a message deliberately, regenerate the golden files with STUDIOX_UPDATE_GOLDEN=1 and
review the diff.
"""

from __future__ import annotations

import json
import os

import pytest
from conftest import ROOT, cli

from studiox.errors import MissionInvalid
from studiox.mission import load, loads

CORPUS = sorted((ROOT / "tests" / "invalid").glob("*.yaml"))


def _problems(path) -> list[str]:
    with pytest.raises(MissionInvalid) as caught:
        load(path)
    return [p.render() for p in caught.value.problems]


def test_the_corpus_is_large_enough():
    assert len(CORPUS) >= 40


@pytest.mark.parametrize("fixture", CORPUS, ids=[p.stem for p in CORPUS])
def test_each_invalid_mission_reports_exactly_its_golden_problems(fixture, monkeypatch):
    monkeypatch.chdir(ROOT)
    relative = fixture.relative_to(ROOT)
    got = _problems(relative)
    golden = fixture.with_suffix(".expected")
    if os.environ.get("STUDIOX_UPDATE_GOLDEN"):
        golden.write_text("\n".join(got) + "\n")
    assert got == golden.read_text().splitlines()


def test_all_problems_of_a_file_come_at_once(monkeypatch):
    monkeypatch.chdir(ROOT)
    assert len(_problems("tests/invalid/several_mistakes_at_once.yaml")) == 5


def test_invalid_utf8_is_located_by_line_and_column(tmp_path):
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"mission: m\ndescription: caf" + b"\xe9 au lait\nsteps: []\n")
    assert _problems(bad) == [f"{bad}:2:17: the file is not UTF-8 text (byte 0xe9); save it with UTF-8 encoding"]


def test_a_5_mb_file_is_refused_before_it_is_parsed(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("mission: m\nsteps:\n" + "# padding\n" * 500_000)
    assert _problems(big) == [f"{big}: the file is 4.8 MB; a mission file may be at most 1 MB"]


def test_a_missing_file_and_a_folder_are_clear(tmp_path):
    assert _problems(tmp_path / "nope.yaml") == [f"{tmp_path / 'nope.yaml'}: no such file"]
    assert _problems(tmp_path) == [f"{tmp_path}: this is a folder, not a mission file"]


def test_a_utf8_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + b"mission: m\nsteps:\n  - {id: a, set: {x: 1}}\n")
    assert load(path).name == "m"


def test_yes_and_no_stay_text_as_in_yaml_1_2():
    mission = loads("mission: m\nsteps:\n  - {id: a, set: {x: 1}}\nverdict: {choices: [Yes, No], value: No}\n")
    assert mission.verdict.choices == ("Yes", "No") and mission.verdict.value == "No"


def test_validate_json_gives_editors_every_problem_with_its_place():
    result = cli("validate", "--json", "tests/invalid/unknown_integration_did_you_mean.yaml", cwd=ROOT)
    assert result.returncode == 2
    payload = json.loads(result.stdout)
    assert payload["files"][0]["problems"] == [{
        "file": "tests/invalid/unknown_integration_did_you_mean.yaml", "line": 4, "column": 24,
        "path": "steps[0] (id: budget).tool", "message": "unknown integration 'erpp' — did you mean 'erp'?"}]


def test_validate_never_shows_a_traceback_for_the_whole_corpus():
    result = cli("validate", *CORPUS, cwd=ROOT)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert result.stderr.count("✗") == len(CORPUS)
