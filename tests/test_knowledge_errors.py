"""The knowledge door maps every problem reading a source into a step error of kind "knowledge".

A document that cannot be read or is not UTF-8 is named (never silently left out of the
search); a missing folder, an unusable glob, or anything else that goes wrong below the door
fails the step cleanly, and ``studiox resume RUN --retry`` works once it is fixed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from conftest import write_mission

from studiox.adapters.knowledge import Knowledge
from studiox.steps import StepError

pytestmark = pytest.mark.backends(
    "local", reason="knowledge retrieval's errors are under test; the store is incidental")


def _search(sources: dict, base: Path, source: str = "kb"):
    return asyncio.run(Knowledge(sources, base).search(source, "hotel", 3))


def _failure(sources: dict, base: Path, source: str = "kb") -> StepError:
    with pytest.raises(StepError) as caught:
        _search(sources, base, source)
    assert caught.value.kind == "knowledge"
    return caught.value


def test_a_document_that_is_not_utf8_is_named_not_silently_left_out(tmp_path):
    (tmp_path / "kb").mkdir()
    (tmp_path / "kb" / "good.md").write_text("Hotels up to 180 EUR.")
    (tmp_path / "kb" / "latin.md").write_bytes(b"Meals\n\nH\xf4tels up to 180 EUR.")
    error = _failure({"kb": {"path": "kb"}}, tmp_path)
    assert "the knowledge source 'kb' cannot use latin.md: it is not UTF-8 text (byte 0xf4 on line 3)" in error.message
    assert "save it as UTF-8" in error.message


def test_a_single_file_source_is_read_whatever_its_suffix(tmp_path):
    (tmp_path / "notes.log").write_text("Hotels up to 180 EUR.")
    assert [hit["citation"] for hit in _search({"kb": {"path": "notes.log"}}, tmp_path)] == ["kb/notes.log#L1"]


def test_a_document_that_cannot_be_read_is_named(tmp_path, monkeypatch):
    (tmp_path / "kb").mkdir()
    (tmp_path / "kb" / "locked.md").write_text("Hotels up to 180 EUR.")
    real = Path.read_bytes

    def read_bytes(self):
        if self.name == "locked.md":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    error = _failure({"kb": {"path": "kb"}}, tmp_path)
    assert error.message.startswith("the knowledge source 'kb' cannot read locked.md: Permission denied")


def test_a_missing_folder_is_a_knowledge_error(tmp_path):
    error = _failure({"kb": {"path": "gone"}}, tmp_path)
    assert "the knowledge source 'kb' points to" in error.message and "does not exist" in error.message


@pytest.mark.parametrize("glob", ["/etc/*.md", ""])
def test_an_unusable_glob_is_a_knowledge_error(tmp_path, glob):
    (tmp_path / "kb").mkdir()
    error = _failure({"kb": {"path": "kb", "glob": glob}}, tmp_path)
    assert f"the knowledge source 'kb' cannot use the glob '{glob}'" in error.message


def test_an_unknown_source_is_a_knowledge_error(tmp_path):
    error = _failure({}, tmp_path)
    assert error.message == "there is no knowledge source 'kb'"


def test_anything_else_going_wrong_below_the_door_is_a_knowledge_error(tmp_path, monkeypatch):
    (tmp_path / "kb").mkdir()
    (tmp_path / "kb" / "a.md").write_text("Hotels up to 180 EUR.")

    def broken(*args, **kwargs):
        raise RuntimeError("something odd")

    monkeypatch.setattr("studiox.adapters.knowledge_index.pieces", broken)
    error = _failure({"kb": {"path": "kb"}}, tmp_path)
    assert error.message == "the knowledge source 'kb' could not be searched (RuntimeError: something odd)"


RETRIEVE = """
mission: k
knowledge:
  kb: {path: kb}
steps:
  - id: look
    retrieve: {from: kb, query: hotel}
"""


def test_the_cli_fails_a_bad_document_with_exit_1_and_resume_retry_works_once_fixed(studiox, tmp_path):
    (tmp_path / "kb").mkdir()
    bad = tmp_path / "kb" / "policy.md"
    bad.write_bytes(b"H\xf4tels up to 180 EUR.")
    mission = write_mission(tmp_path / "m.yaml", RETRIEVE)
    failed = studiox("run", mission, timeout=120)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "cannot use policy.md: it is not UTF-8 text" in failed.stdout
    run_id = failed.stdout.split()[1]
    bad.write_text("Hotels up to 180 EUR.", encoding="utf-8")
    done = studiox("resume", run_id, "--retry", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert studiox.state(run_id)["steps"][0]["output"]["citations"] == ["kb/policy.md#L1"]
