"""The CLI's cheap promises: fast commands never load the heavy libraries; help and schema work."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import ROOT, cli

HEAVY = ("litellm", "mcp", "openai", "llama_cpp")
PROBE = """
import sys
from studiox.cli import main
code = main(sys.argv[1:])
print("\\nHEAVY:" + ",".join(m for m in {heavy!r} if m in sys.modules))
sys.exit(code)
"""


@pytest.mark.parametrize("args", [
    ["--help"], ["validate", "missions/invoice.yaml"], ["schema"], ["runs", "--home", "/nonexistent-studiox"],
    ["validate", "--help"], ["run", "--help"], ["users", "list", "--home", "/nonexistent-studiox"],
])
def test_fast_commands_do_not_import_litellm_or_mcp(args):
    # a subprocess: what a command imports is only seen in a fresh interpreter
    result = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *args], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith("HEAVY:"), result.stdout[-200:]


def test_schema_prints_the_schema_file(tmp_path):
    result = cli("schema", cwd=tmp_path)
    assert result.returncode == 0
    assert json.loads(result.stdout) == json.loads((ROOT / "schemas" / "mission.schema.json").read_text())


def test_validate_prints_the_plan_of_a_valid_mission():
    result = cli("validate", "missions/invoice.yaml", cwd=ROOT, env={"COLUMNS": "200", "PATH": ""})
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "missions/invoice.yaml: mission invoice-approval, 14 steps" in out
    for expected in ("model openai/gpt-4o-mini", "knowledge purchase_orders", "tool erp.check_budget",
                     "tool erp.post_payment", "ends the run: Rejected"):
        assert expected in out


def test_validate_several_files_exits_2_if_any_is_invalid(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("mission: x\n")
    result = cli("validate", "missions/invoice.yaml", bad, cwd=ROOT)
    assert result.returncode == 2
    assert f"{bad}:1:1: the key 'steps' is missing here, and it is required" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_usage_exits_2_without_a_traceback():
    result = cli("validate", cwd=ROOT)
    assert result.returncode == 2
    assert "Missing argument" in result.stderr and "Traceback" not in result.stderr
    result = cli("frobnicate", cwd=ROOT)
    assert result.returncode == 2


def test_the_example_missions_are_valid_and_the_expense_report_runs(tmp_path):
    result = cli("run", "missions/expenses.yaml", "--inputs", "missions/data/expenses.yaml", "--home",
                 tmp_path / "home", cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == (
        "verdict: Approved with note — 1 line(s) over 25 EUR without a receipt; total 426.9 EUR")
