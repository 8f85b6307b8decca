"""Replay files (``--replay FILE``): read strictly, never mixed with real model answers.

A replayed turn is labelled as replayed everywhere (journal, rail, status, usage) with no token
counts or dollars invented for it, and it never writes (or reads) the response cache that real
runs read.
"""

from __future__ import annotations

from conftest import write_mission

EXTRACT = """
mission: w
models:
  fast: openai/gpt-4o-mini
steps:
  - id: extract
    worker:
      instructions: Extract the invoice fields.
      input: "INVOICE INV-1, total 500"
      output:
        type: object
        required: [invoice_number, total]
        properties: {invoice_number: {type: string}, total: {type: number}}
"""

GOOD = "extract:\n  - output: {invoice_number: INV-1, total: 500}\n    reasoning: read it\n"


def _replay(tmp_path, text: str | bytes):
    path = tmp_path / "replay.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


# ---------------------------------------------------------------------------- item 5: never the cache


def test_a_replayed_answer_never_reaches_the_cache_a_real_run_reads(studiox, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    mission = write_mission(tmp_path / "m.yaml", EXTRACT)
    replayed = studiox("run", mission, "--replay", _replay(tmp_path, GOOD), "--cache", timeout=120)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    real = studiox("run", mission, "--cache", timeout=120)
    assert real.returncode == 1, real.stdout + real.stderr  # no key: it must not 'succeed' from the cache
    assert "needs the environment variable OPENAI_API_KEY" in real.stdout


def test_a_step_that_asks_for_the_cache_is_not_answered_from_it_in_a_replay(studiox, tmp_path):
    mission = write_mission(tmp_path / "m.yaml", EXTRACT.replace("    worker:\n", "    worker:\n      cache: true\n"))
    first = studiox("run", mission, "--replay", _replay(tmp_path, GOOD), timeout=120)
    assert first.returncode == 0, first.stdout + first.stderr
    other = _replay(tmp_path, GOOD.replace("INV-1", "INV-2"))
    second = studiox("run", mission, "--replay", other, timeout=120)
    assert second.returncode == 0, second.stdout + second.stderr
    run_id = second.stdout.split()[1]
    state = studiox.state(run_id)
    assert state["steps"][0]["output"] == {"invoice_number": "INV-2", "total": 500}  # the file's answer


# ---------------------------------------------------------------------------- item 5: labelled, nothing invented


def test_replayed_turns_are_labelled_and_carry_no_invented_tokens_or_dollars(studiox, tmp_path):
    mission = write_mission(tmp_path / "m.yaml", EXTRACT)
    result = studiox("run", mission, "--replay", _replay(tmp_path, GOOD), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "· model gpt-4o-mini: replayed" in result.stdout
    assert "tokens" not in result.stdout and "$" not in result.stdout
    run_id = result.stdout.split()[1]

    usage = studiox.state(run_id)["usage"]
    assert usage == {"model_calls": 1, "replayed": 1, "cached": 0, "input_tokens": None, "output_tokens": None,
                     "cost_usd": None}

    table = studiox("status", run_id).stdout
    assert "replayed" in table
    total = next(line for line in table.splitlines() if "run total" in line)
    assert "replayed" in total and "0.000000" not in total  # no dollars, no tokens: none were spent

    from studiox.journal import derive
    from studiox.store import Store

    store = Store.open(studiox.home, create=False)
    call = next(e for e in derive(run_id, store.events(run_id)).model_calls)
    assert call["replayed"] is True
    assert (call["input_tokens"], call["output_tokens"], call["cost_usd"]) == (None, None, None)
