"""``studiox test``: mission test files run through the real engine, with located failures,
checks of the file against its mission, JUnit XML, and crash injection that kills runs for real."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from studiox import api
from studiox.testing.expect import Failure
from studiox.testing.running import Played

pytestmark = pytest.mark.backends(
    "local", reason="'studiox test' plays every case in a throwaway local folder, whatever the backend")

ROOT = Path(__file__).resolve().parent.parent


def _missions(tmp_path: Path) -> Path:
    """A copy of the example missions (their ERP server writes its database beside them)."""
    target = tmp_path / "missions"
    shutil.copytree(ROOT / "missions", target, ignore=shutil.ignore_patterns("erp.sqlite*"))
    return target


def _line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_the_example_missions_pass_their_tests_and_every_crash_variant_pays_once(studiox, tmp_path):
    missions = _missions(tmp_path)
    result = studiox("test", str(missions), "--json", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    by_name = {c["case"]: c for c in report["cases"]}
    assert report["failed"] == 0 and len(by_name) >= 8
    for mission in ("invoice", "expenses"):  # each example ships at least three cases
        assert sum(1 for c in report["cases"] if Path(c["file"]).name == f"{mission}.test.yaml") >= 3
    paid = by_name["a matching invoice is paid once approved"]
    assert paid["note"].endswith("erp.post_payment 1× in each") and "killed" in paid["note"]
    # one variant per journal event of the run, each killed (SIGKILL) after its event and resumed
    kept = json.loads(studiox("test", str(missions / "invoice.test.yaml"), "-k", "matching invoice is paid",
                              "--json", "--keep", timeout=300).stdout)["cases"][0]
    store = api.need_store(Path(kept["home"]))
    (child,) = [r for r in store.run_ids() if r != kept["run"]]  # the pay-supplier sub-mission's run: its events too
    assert kept["passed"] and kept["crash_variants"] == len(store.events(kept["run"])) + len(store.events(child)) > 30
    store.close()


def test_a_failing_expectation_is_reported_with_its_line_and_ends_with_exit_1(studiox, tmp_path):
    missions = _missions(tmp_path)
    tests = missions / "expenses.test.yaml"
    tests.write_text(tests.read_text().replace("note: Total 376.4 EUR for Dana Whitfield",
                                               "note: Total 999 EUR for Dana Whitfield"))
    junit = tmp_path / "out" / "junit.xml"
    result = studiox("test", str(tests), "--junit", str(junit), COLUMNS="250")
    assert result.returncode == 1, result.stdout + result.stderr
    line = _line_of(tests, "note: Total 999 EUR")
    assert f"{tests}:{line}: the verdict's note is \"Total 376.4 EUR for Dana Whitfield\", expected " \
           "\"Total 999 EUR for Dana Whitfield\"" in result.stdout
    assert "4 passed, 1 failed" in result.stdout
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("tests") == "5" and suite.get("failures") == "1"
    failure = next(c for c in suite.iter("testcase") if c.find("failure") is not None)
    assert failure.get("name") == "a report within the policy is approved"
    assert f"{tests}:{line}" in failure.find("failure").get("message")


def test_an_expression_that_does_not_hold_says_what_its_left_side_was(studiox, tmp_path):
    missions = _missions(tmp_path)
    tests = missions / "expenses.test.yaml"
    tests.write_text(tests.read_text().replace("len(steps.check_lines.output) == 2", "len(steps.check_lines.output) == 3"))
    result = studiox("test", str(tests), "-k", "within the policy", "--json")
    (case,) = json.loads(result.stdout)["cases"]
    assert case["failures"][0]["message"] == "${{ len(steps.check_lines.output) == 3 }} does not hold: " \
                                            "len(steps.check_lines.output) is 2"


def test_the_test_file_is_checked_against_its_mission_with_did_you_mean(studiox, tmp_path):
    missions = _missions(tmp_path)
    tests = missions / "invoice.test.yaml"
    text = tests.read_text()
    text = text.replace("    extract:\n      - output:", "    extrct:\n      - output:", 1)
    text = text.replace("    erp.post_payment: {payment_id: 7", "    erp.post_paymnt: {payment_id: 7", 1)
    text = text.replace("      pay: approve\n", "      pya: approve\n", 1)
    text = text.replace("      - output: {supplier_matches: true, items_match: true, differences: []}",
                        "      - output: {supplier_matches: yes please, items_match: true, differences: []}", 1)
    text = text.replace('    invoice: "@data/invoice-INV-2291.txt"', '    invoice: "@data/invoice-INV-2291.txt"\n'
                        '    invoce: x', 1)
    tests.write_text(text)
    result = studiox("test", str(tests))
    assert result.returncode == 2, result.stdout + result.stderr
    said = result.stderr
    assert f"{tests}:{_line_of(tests, 'extrct:')}:5: defaults.models: step 'extrct': there is no step 'extrct' in " \
           "the mission — did you mean 'extract'?" in said
    assert f"{tests}:{_line_of(tests, 'erp.post_paymnt')}:5: defaults.tools.erp.post_paymnt: the mission does not " \
           "call erp.post_paymnt — did you mean 'erp.post_payment'?" in said
    assert "the mission has no step 'pya' — did you mean 'pay'?" in said
    assert "output.supplier_matches: 'yes please' is not of type 'boolean', so it does not fit the output schema of " \
           "'match'" in said
    assert "unknown input 'invoce' — did you mean 'invoice'?" in said
    assert "Traceback" not in said


def test_a_decision_the_case_does_not_script_leaves_the_run_waiting_and_says_so(studiox, tmp_path):
    missions = _missions(tmp_path)
    tests = missions / "invoice.test.yaml"
    tests.write_text(tests.read_text().replace("    decisions:\n      pay: {approve: {set: {amount: 1700}", "    desc"
                                               "ription: unscripted\n    decisions:\n      x_pay: {approve: {set: "
                                               "{amount: 1700}").replace("x_pay", "budget"))
    result = studiox("test", str(tests), "-k", "corrects the amount", "--json", "-j", "1")
    (case,) = json.loads(result.stdout)["cases"]
    assert result.returncode == 1
    assert "the run is waiting (the run waits for a decision the case does not script: erp.post_payment at step " \
           "'pay' (add it under decisions:))" in case["failures"][0]["message"]


def test_a_crash_variant_that_pays_twice_or_ends_otherwise_fails_the_case():
    from studiox.testing.suite import _crash_failures, _Job

    class File:
        def where(self, path):
            return "invoice.test.yaml:30"

    class Case:
        at = ("cases", 0)

    pay = {"tool": "erp.post_payment", "arguments": {"amount": 1780}, "key": "k", "result": {}, "read_only": False}
    base = Played("r1", "succeeded", "Approved", "Paid", calls=[pay], events=[(1, "run_started"), (9, "action_started")])
    job = _Job(File(), Case(), {}, Path("."), played=base)  # type: ignore[arg-type]
    twice = _Job(File(), Case(), {}, Path("."), kill_at=9,  # type: ignore[arg-type]
                 played=Played("r2", "succeeded", "Approved", "Paid", calls=[pay, {**pay, "key": "k2"}], killed=True))
    other = _Job(File(), Case(), {}, Path("."), kill_at=1,  # type: ignore[arg-type]
                 played=Played("r3", "failed", None, None, error="boom", killed=True))
    failures = _crash_failures(job, [twice, other])
    assert [f.render() for f in failures] == [
        "invoice.test.yaml:30: killed after event 9 (action_started): state-changing calls differ: erp.post_payment "
        "2× (without the crash 1×)",
        "invoice.test.yaml:30: killed after event 1 (run_started): the run failed with verdict None (None); without "
        "the crash it succeeded with 'Approved' ('Paid') — boom"]
    assert isinstance(failures[0], Failure) and isinstance(base, Played)


def _recording_mission(tmp_path: Path) -> tuple[Path, Path]:
    """A mission that records a label through the test MCP server (state-changing, not idempotent)."""
    from test_integrations import SERVER

    log = tmp_path / "server-effects.jsonl"
    mission = tmp_path / "rec.yaml"
    mission.write_text(
        f"mission: rec\ninputs: {{label: {{type: string}}}}\nintegrations:\n  srv:\n    command: python\n"
        f"    args: [{json.dumps(str(SERVER))}, --log, {json.dumps(str(log))}]\n"
        "    env: {RECORD_DELAY: '0'}\n"
        "steps:\n  - {id: look, tool: srv.echo, arguments: {text: '${{ inputs.label }}'}}\n"
        "  - {id: keep, tool: srv.record, arguments: {label: '${{ steps.look.output.echo }}'}}\n"
        "verdict: {choices: [Kept], value: Kept}\n")
    return mission, log


def test_a_stubbed_call_cut_off_by_a_kill_is_settled_from_the_stubs_record_never_made_twice(studiox, tmp_path):
    mission, log = _recording_mission(tmp_path)
    (tmp_path / "rec.test.yaml").write_text(
        "cases:\n  - name: kept once\n    inputs: {label: a}\n    real: [srv]\n"
        "    tools: {}\n    decisions: {keep: approve}\n    expect: {verdict: Kept, calls: {srv.record: 1}}\n"
        "  - name: stubbed\n    inputs: {label: b}\n    tools: {srv.echo: {echo: b}, srv.record: {recorded: b}}\n"
        "    decisions: {keep: approve}\n    crash: every_event\n"
        "    expect: {verdict: Kept, calls: {srv.record: 1, srv.echo: 1}}\n")
    result = studiox("test", str(tmp_path / "rec.test.yaml"), "--json", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    real, stubbed = json.loads(result.stdout)["cases"]
    assert real["passed"] and stubbed["passed"] and stubbed["crash_variants"] > 10
    assert "srv.record 1× in each" in stubbed["note"]
    # the real server was called by the real case only; the stubbed one only described its tools
    assert [json.loads(line)["label"] for line in log.read_text().splitlines()] == ["a"]


def test_a_real_call_cut_off_by_a_kill_is_reported_in_doubt_and_not_repeated(studiox, tmp_path):
    mission, log = _recording_mission(tmp_path)
    (tmp_path / "rec.test.yaml").write_text(
        "cases:\n  - name: kept\n    inputs: {label: c}\n    real: [srv]\n    decisions: {keep: approve}\n"
        "    crash: [action_started]\n    expect: {verdict: Kept}\n")
    result = studiox("test", str(tmp_path / "rec.test.yaml"), "--json", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    (case,) = json.loads(result.stdout)["cases"]
    assert "1 reported in doubt" in case["note"]
    assert case["passed"] and case["crash_variants"] == 1  # after record's action_started (echo is read-only)
    # killed before the call went out: the variant stopped at the in-doubt decision, and did not call
    # again on its own; only the uncrashed run recorded
    assert [json.loads(line)["label"] for line in log.read_text().splitlines()] == ["c"]
