"""Tamper evidence: each kind of change to a stored journal is found by `audit verify` (naming the
first event changed), by every command that reads the run, and resume refuses the run; a keyed
chain cannot be forged without its key."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from conftest import Sx, write_mission

MISSION = ("mission: audited\nsteps:\n" + "".join(f"  - {{id: s{i}, set: {{v: {i}}}}}\n" for i in range(1, 6)) +
           "verdict: {choices: [Done], value: Done}\n")


def _run(sx: Sx, tmp_path, **env) -> str:
    result = sx.process("run", write_mission(tmp_path / "m.yaml", MISSION), "-q", **env)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()[0]


def _rows(db, run_id):
    return [(seq, json.loads(body)) for seq, body in
            db.execute("SELECT seq, body FROM events WHERE run = ? ORDER BY seq", (run_id,))]


def _put(db, run_id, seq, event):
    db.execute("UPDATE events SET body = ? WHERE run = ? AND seq = ?", (json.dumps(event), run_id, seq))


def _edit(db, run_id):
    seq, event = _rows(db, run_id)[4]
    event["output"] = {"v": 999}
    _put(db, run_id, seq, event)
    return seq


def _delete(db, run_id):
    db.execute("DELETE FROM events WHERE run = ? AND seq = 4", (run_id,))
    return 4


def _insert(db, run_id):  # a new event 3, the later ones renumbered, as a careful forger would
    for seq, event in reversed(_rows(db, run_id)[2:]):
        event["seq"] = seq + 1
        db.execute("UPDATE events SET seq = ?, body = ? WHERE run = ? AND seq = ?",
                   (seq + 1, json.dumps(event), run_id, seq))
    db.execute("INSERT INTO events (run, seq, type, at, body) VALUES (?, 3, 'observation', 0, ?)",
               (run_id, json.dumps({"seq": 3, "type": "observation", "at": 0, "step": "s1", "message": "all fine"})))
    db.execute("UPDATE runs SET head_seq = head_seq + 1 WHERE id = ?", (run_id,))
    return 3


def _swap(db, run_id):  # two events exchanged, each given the other's number
    rows = dict(_rows(db, run_id))
    a, b = rows[4], rows[5]
    a["seq"], b["seq"] = 5, 4
    _put(db, run_id, 4, b)
    _put(db, run_id, 5, a)
    return 4


def _truncate(db, run_id):
    last = _rows(db, run_id)[-1][0]
    db.execute("DELETE FROM events WHERE run = ? AND seq >= ?", (run_id, last - 1))
    return last - 1


TAMPERING = {"edit a value": _edit, "delete an event": _delete, "insert an event": _insert,
             "swap two events": _swap, "truncate": _truncate}


@pytest.mark.parametrize("how", list(TAMPERING))
def test_audit_verify_finds_each_kind_of_tampering_and_names_the_first_event(sx, tmp_path, how):
    run_id = _run(sx, tmp_path)
    intact = sx("audit", "verify", run_id, "--json")
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert json.loads(intact.stdout)[0]["state"] == "intact"
    copy = sx.copy(tmp_path / "copy")
    with copy.tamper() as db:
        first = TAMPERING[how](db, run_id)
    found = copy("audit", "verify", run_id, "--json")
    assert found.returncode == 1, found.stdout
    (verdict,) = json.loads(found.stdout)
    assert verdict["state"] == "tampered" and verdict["seq"] == first, verdict
    assert f"event {first}" in verdict["problem"] or f"events {first}" in verdict["problem"]
    table = copy("audit", "verify", "--all")
    assert table.returncode == 1 and "tampered" in table.stdout
    # the original copy is untouched by all this
    assert sx("audit", "verify", run_id).returncode == 0


@pytest.mark.parametrize("how", list(TAMPERING))
def test_a_journal_with_a_gap_or_out_of_order_is_an_error_wherever_the_run_is_read(sx, tmp_path, how):
    run_id = _run(sx, tmp_path)
    with sx.tamper() as db:
        TAMPERING[how](db, run_id)
    before = sx.stored()
    for args in (["status", run_id], ["log", run_id], ["log", run_id, "--json"], ["resume", run_id]):
        result = sx(*args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert f"the journal of run {run_id}" in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert sx.stored() == before


def test_resume_refuses_a_run_whose_events_were_edited(sx, tmp_path):
    slow = write_mission(tmp_path / "slow.yaml", "mission: slow\nintegrations: {fx: {command: x}}\nsteps:\n"
                         "  - {id: a, set: {v: 1}}\n  - {id: b, tool: fx.append}\n  - {id: c, set: {v: 3}}\n")
    killed = sx.process("run", slow, "-q", STUDIOX_TEST_KILL_AFTER_EVENT=3)
    run_id = killed.stdout.split()[0]
    with sx.tamper() as db:
        seq, event = next((s, e) for s, e in _rows(db, run_id) if e["type"] == "step_finished")
        event["output"] = {"v": 2}
        _put(db, run_id, seq, event)
    result = sx("resume", run_id)
    assert result.returncode == 2, result.stdout
    assert f"the journal of run {run_id} in {sx.where} is damaged: event {seq} was edited" in result.stderr
    assert sx.effects_log() == []  # nothing was driven on


def _forge(db, run_id, key: bytes | None):
    """Edit an output, then recompute every chain value (and the head) as a forger who read the
    design would: over each event's compact JSON text, chain stored last."""
    rows = _rows(db, run_id)
    rows[4][1]["output"] = {"v": 999}
    previous = ""
    for seq, event in rows:
        text = json.dumps({k: v for k, v in event.items() if k != "chain"}, ensure_ascii=False,
                          separators=(",", ":"))
        data = previous.encode() + b"\n" + text.encode()
        previous = hmac.new(key, data, hashlib.sha256).hexdigest() if key else hashlib.sha256(data).hexdigest()
        db.execute("UPDATE events SET body = ? WHERE run = ? AND seq = ?",
                   (text[:-1] + f',"chain":"{previous}"}}', run_id, seq))
    db.execute("UPDATE runs SET head = ? WHERE id = ?", (previous, run_id))


def test_a_keyed_chain_cannot_be_forged_without_the_key(sx, tmp_path):
    run_id = _run(sx, tmp_path, STUDIOX_AUDIT_KEY="the-real-key")
    keyed = sx.process("audit", "verify", run_id, "--json", STUDIOX_AUDIT_KEY="the-real-key")
    assert keyed.returncode == 0 and json.loads(keyed.stdout)[0]["chain"] == "hmac-sha256"
    without = sx("audit", "verify", run_id)
    assert without.returncode == 1 and "no key" in without.stdout and "STUDIOX_AUDIT_KEY" in without.stdout
    with sx.tamper() as db:
        _forge(db, run_id, key=None)  # a forger without the key can only make a plain chain
    forged = sx.process("audit", "verify", run_id, "--json", STUDIOX_AUDIT_KEY="the-real-key")
    assert forged.returncode == 1 and json.loads(forged.stdout)[0]["seq"] == 1
    with sx.tamper() as db:
        _forge(db, run_id, key=b"a-guessed-key")
    assert sx.process("audit", "verify", run_id, STUDIOX_AUDIT_KEY="the-real-key").returncode == 1
    # the same forgery on an unkeyed run goes unseen: that is what the key is for
    plain = _run(sx, tmp_path)
    with sx.tamper() as db:
        _forge(db, plain, key=None)
    assert sx("audit", "verify", plain).returncode == 0


def test_a_keyed_run_is_not_resumed_without_its_key(sx, tmp_path):
    slow = write_mission(tmp_path / "slow.yaml", "mission: slow\nintegrations: {fx: {command: x}}\nsteps:\n"
                         "  - {id: a, set: {v: 1}}\n  - {id: b, tool: fx.append}\n")
    killed = sx.process("run", slow, "-q", STUDIOX_TEST_KILL_AFTER_EVENT=3, STUDIOX_AUDIT_KEY="k")
    run_id = killed.stdout.split()[0]
    refused = sx("resume", run_id)
    assert refused.returncode == 2 and "STUDIOX_AUDIT_KEY" in refused.stderr
    resumed = sx.process("resume", run_id, STUDIOX_AUDIT_KEY="k")
    assert resumed.returncode == 0, resumed.stderr
    assert sx.process("audit", "verify", run_id, STUDIOX_AUDIT_KEY="k").returncode == 0
