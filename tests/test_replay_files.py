"""Replay files (``--replay FILE``): read strictly, never mixed with real model answers.

A replayed turn is labelled as replayed everywhere (journal, rail, status, usage) with no token
counts or dollars invented for it, and it never writes (or reads) the response cache that real
runs read. A broken replay file is a usage error (exit 2) that says where, before anything runs.
"""

from __future__ import annotations

import json

import pytest
from conftest import write_mission
from test_workers import EXTRACT

from studiox.adapters.models import Replay
from studiox.errors import UsageError

pytestmark = pytest.mark.backends("local", reason="replay files are under test; the store is incidental")

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

    from studiox.state.journal import derive
    from studiox.state.store import Store

    store = Store.open(studiox.home, create=False)
    call = next(e for e in derive(run_id, store.events(run_id)).model_calls)
    assert call["replayed"] is True
    assert (call["input_tokens"], call["output_tokens"], call["cost_usd"]) == (None, None, None)


# ---------------------------------------------------------------------------- item 8: broken files


def test_a_replay_file_that_is_not_utf8_is_a_usage_error_naming_the_file_and_line(studiox, tmp_path):
    mission = write_mission(tmp_path / "m.yaml", EXTRACT)
    replay = _replay(tmp_path, b"extract:\n  - text: caf\xe9\n")
    result = studiox("run", mission, "--replay", replay, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert str(replay) in result.stderr and ":2:" in result.stderr
    assert "not UTF-8" in result.stderr
    assert "internal error" not in result.stderr


@pytest.mark.parametrize("text, expected", [
    ("extract:\n  - just some text\n", "step 'extract', answer 1: an answer must be a mapping"),
    ("extract:\n  - output: 1\n  - ouptut: {total: 1}\n", "step 'extract', answer 2: unknown key 'ouptut' — did you "
                                                           "mean 'output'?"),
    ("extract:\n  - error: litellm.NotFoundErorr\n", "step 'extract', answer 1: unknown litellm error "
                                                     "'litellm.NotFoundErorr' — did you mean 'litellm.NotFoundError'?"),
    ("extract:\n  - tool_calls: [{arguments: {}}]\n", "step 'extract', answer 1: tool_calls[0] needs 'tool'"),
    ("extract:\n  - error: litellm.RateLimitError\n    times: 0\n", "step 'extract', answer 1: 'times' must be a "
                                                                    "whole number of at least 1"),
    ("extract:\n  - error: litellm.RateLimitError\n    then: [1]\n", "step 'extract', answer 1 (then): an answer "
                                                                     "must be a mapping"),
    ("extract:\n  - reasoning: only this\n", "step 'extract', answer 1: says nothing"),
    ("extract:\n  - error: RateLimitError\n    then: {ouptut: 1}\n", "step 'extract', answer 1 (then): unknown key "
                                                                     "'ouptut' — did you mean 'output'?"),
    ("# only a comment\n", "the file is empty; it must map step ids to lists of answers"),
    ("extract:\n  - {text: a, output: b}\n", "step 'extract', answer 1: give only one of"),
    ("extract:\n  - {error: RateLimitError, usage: {input_tokens: 1}}\n", "an error counts no usage"),
    ("", "is empty; it must map step ids to lists of answers"),
    ("- a\n- b\n", "must map step ids to lists of answers"),
])
def test_a_replay_file_of_the_wrong_shape_is_a_usage_error_naming_step_and_answer(tmp_path, text, expected):
    path = _replay(tmp_path, text)
    with pytest.raises(UsageError) as caught:
        Replay.load(path)
    assert expected in str(caught.value)
    assert str(caught.value).startswith(f"--replay: {path}")


def test_a_replay_file_of_the_wrong_shape_stops_the_cli_with_exit_2_before_anything_runs(studiox, tmp_path):
    mission = write_mission(tmp_path / "m.yaml", EXTRACT)
    result = studiox("run", mission, "--replay", _replay(tmp_path, "extract:\n  - just some text\n"), timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert ":2:5: step 'extract', answer 1: an answer must be a mapping" in result.stderr
    assert studiox.run_ids() == []


def test_every_answer_shape_in_the_docs_still_loads(tmp_path):
    text = ("a:\n  - output: {x: 1}\n    reasoning: why\n  - text: raw\n"
            "  - tool_calls: [{tool: erp.check_budget, arguments: {amount: 1}}]\n"
            "  - error: litellm.RateLimitError\n    times: 2\n    then: {output: 1}\n"
            "  - error: NotFoundError\n    message: The model does not exist\n"
            "  - output: 2\n    usage: {input_tokens: 10, output_tokens: 20, cost_usd: 0.001}\n")
    replay = Replay.load(_replay(tmp_path, text))
    assert len(replay.answers["a"]) == 6
    assert json.loads(json.dumps(replay.answers))  # plain data
