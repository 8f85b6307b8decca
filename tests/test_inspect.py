"""`show` and `audit export` on a finished run, compared with snapshots (times, ids and durations
replaced by placeholders: nothing of the wall clock is in a snapshot)."""

from __future__ import annotations

import csv
import io
import json
import re
from html.parser import HTMLParser

import pytest
from conftest import TESTS, write_mission

SNAPSHOTS = TESTS / "snapshots"
MISSION = """mission: inspected
inputs:
  amount: {type: number}
integrations: {fx: {command: x}}
models: {fast: openai/gpt-4o-mini}
steps:
  - {id: look, set: {invoice: INV-7, amount: '${{ inputs.amount }}'}}
  - id: judge
    worker:
      model: fast
      instructions: Is the amount plausible?
      input: ${{ steps.look.output }}
      output: {type: object, required: [ok], properties: {ok: {type: boolean}}}
  - id: pay
    tool: fx.pay
    arguments: {amount: '${{ inputs.amount }}', to: ACME GmbH}
verdict: {choices: [Paid], value: Paid, note: "paid for ${{ steps.look.output.invoice }}"}
"""
REPLAY = {"judge": [{"output": {"ok": True}, "reasoning": "within the usual range"}]}


@pytest.fixture
def finished(sx, tmp_path) -> tuple[str, str]:
    mission = write_mission(tmp_path / "m.yaml", MISSION)
    replay = tmp_path / "replay.json"
    replay.write_text(json.dumps(REPLAY))
    parked = sx("run", mission, "--input", "amount=400", "--replay", replay, "--no-input")
    assert parked.returncode == 3, parked.stdout + parked.stderr
    (decision,) = json.loads(sx("decisions", "--json").stdout)
    approved = sx("approve", decision["id"], "--set", "amount=350", "--note", "credit note CN-2 applied", "--resume")
    assert approved.returncode == 0, approved.stdout + approved.stderr
    return parked.stdout.split()[1], decision["id"]


def _normal(text: str, sx, run: tuple[str, str]) -> str:
    text = text.replace(run[0], "RUN").replace(run[1], "DECISION").replace(str(sx.home), "HOME")
    text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00", "TIME", text)
    text = re.sub(r"\b\d+(\.\d+)?(ms|s)\b", "DURATION", text)
    text = re.sub(r"digest [0-9a-f]{12}", "digest DIGEST", text)
    text = re.sub(r"key [A-Za-z0-9/]+#?[0-9a-f]*", "key KEY", text)
    text = re.sub(r"by \w+ on [\w.-]+", "by USER on HOST", text)
    text = re.sub(r"(by |\| )root\b", r"\1USER", text)
    return "".join(line.rstrip() + "\n" for line in text.splitlines())  # (a table pads to its widest row)


def _check(name: str, text: str) -> None:
    path = SNAPSHOTS / name
    assert path.exists(), f"no snapshot {path}: write it from this output after reading it:\n{text}"
    assert text == path.read_text(encoding="utf-8")


def test_show_tells_a_finished_run_in_full(sx, finished):
    shown = sx("show", finished[0])
    assert shown.returncode == 0, shown.stderr
    _check("show.txt", _normal(shown.stdout, sx, finished))
    finished = finished[0]
    one = sx("show", finished, "--step", "pay", "--json")
    (step,) = json.loads(one.stdout)["steps"]
    assert step["tool_calls"][0]["arguments"] == {"amount": 350, "to": "ACME GmbH"}
    (decision,) = step["decisions"]
    assert decision["proposed"]["amount"] == 400 and decision["approved"]["amount"] == 350
    assert decision["note"] == "credit note CN-2 applied" and decision["edited"]
    judge = json.loads(sx("show", finished, "--step", "judge", "--json").stdout)["steps"][0]
    (turn,) = judge["model_turns"]
    assert [m["role"] for m in turn["messages"]] == ["system", "user"]  # the prompt, as sent
    assert "Is the amount plausible?" in turn["messages"][0]["content"]
    missing = sx("show", finished, "--step", "py")
    assert missing.returncode == 2 and "did you mean 'pay'" in missing.stderr


def test_audit_export_markdown_and_the_other_formats(sx, finished, tmp_path):
    md = sx("audit", "export", "--format", "md")
    assert md.returncode == 0, md.stderr
    _check("audit.md", _normal(md.stdout, sx, finished))
    finished = finished[0]
    lines = [json.loads(line) for line in sx("audit", "export", "--format", "jsonl").stdout.splitlines()]
    assert {e["run"] for e in lines} == {finished} and all(e["at"].endswith("+00:00") for e in lines)
    rows = list(csv.DictReader(io.StringIO(sx("audit", "export", "--format", "csv").stdout)))
    applied = [r for r in rows if r["event"] == "decision_applied"]
    assert applied and applied[0]["by"] and "credit note CN-2" in applied[0]["detail"]
    target = tmp_path / "report.html"
    written = sx("audit", "export", "--format", "html", "-o", target, "--run", finished)
    assert written.returncode == 0 and "wrote 1 run" in written.stderr
    page = target.read_text()
    assert "<script" not in page and "http://" not in page and "https://" not in page  # self-contained

    class Cells(HTMLParser):
        cells: list[str] = []

        def handle_data(self, data):
            self.cells.append(data)

    parser = Cells()
    parser.feed(page)
    assert "amount: 400 → 350" in parser.cells and "credit note CN-2 applied" in parser.cells
    nobody = sx("audit", "export", "--format", "md", "--approver", "someone-else")
    assert finished not in nobody.stdout
    wrong = sx("audit", "export", "--format", "pdf")
    assert wrong.returncode == 2 and "jsonl, csv, md, html" in wrong.stderr
