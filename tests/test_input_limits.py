"""Values that cannot or should not be kept: inputs over the size limit, bytes that are not UTF-8,
and NaN and Infinity, which JSON (and so the journal) cannot hold. Each is refused where it enters,
with exit 2 and nothing recorded."""

from __future__ import annotations

import json
import math

import pytest
from conftest import write_mission

DOC = "mission: doc\ninputs: {doc: {type: string}}\nsteps:\n  - {id: a, set: {n: '${{ len(inputs.doc) }}'}}\n"
NUMBER = "mission: num\ninputs: {x: {type: number}}\nsteps:\n  - {id: a, set: {v: '${{ inputs.x }}'}}\n"
ANY = "mission: any\ninputs: {o: {}}\nsteps:\n  - {id: a, set: {v: 1}}\n"
MB = 1_000_000


def _refused(sx, result, *expected: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr
    for text in expected:
        assert text in result.stderr, result.stderr
    assert sx.run_ids() == [], "nothing may be recorded"


# ---------------------------------------------------------------------------- size


def test_an_input_file_over_the_size_limit_is_refused_with_how_to_raise_it(sx, tmp_path):
    mission = write_mission(tmp_path / "m.yaml", DOC)
    big = tmp_path / "big.txt"
    big.write_text("x" * (5 * MB))
    _refused(sx, sx("run", mission, "--input", f"doc=@{big}"),
             "--input doc", "5.0 MB", "over the limit of 4.0 MB", "STUDIOX_MAX_INPUT_BYTES")
    raised = sx("run", mission, "-q", "--input", f"doc=@{big}", STUDIOX_MAX_INPUT_BYTES=6 * MB)
    assert raised.returncode == 0, raised.stderr


def test_an_inputs_file_and_an_inline_value_have_the_limit_too(sx, tmp_path):
    mission = write_mission(tmp_path / "m.yaml", DOC)
    many = tmp_path / "inputs.json"
    many.write_text(json.dumps({"doc": "y" * 3000}))
    _refused(sx, sx("run", mission, "--inputs", many, STUDIOX_MAX_INPUT_BYTES=2000),
             "--inputs", str(many), "over the limit of 2.0 kB")
    _refused(sx, sx("run", mission, "--input", "doc=" + "z" * 3000, STUDIOX_MAX_INPUT_BYTES=2000),
             "--input doc", "3.0 kB", "over the limit of 2.0 kB")
    ok = sx("run", mission, "-q", "--input", "doc=" + "z" * 1000, STUDIOX_MAX_INPUT_BYTES=2000)
    assert ok.returncode == 0, ok.stderr


def test_a_bad_limit_setting_is_a_usage_error(sx, tmp_path):
    mission = write_mission(tmp_path / "m.yaml", DOC)
    _refused(sx, sx("run", mission, "--input", "doc=a", STUDIOX_MAX_INPUT_BYTES="lots"),
             "STUDIOX_MAX_INPUT_BYTES must be a whole number of bytes")


# ---------------------------------------------------------------------------- bytes that are not UTF-8


def test_an_input_value_that_is_not_utf8_is_a_usage_error_naming_the_input(sx, tmp_path):
    mission = write_mission(tmp_path / "m.yaml", DOC)
    # bytes that are not UTF-8 reach Python's argv as surrogate escapes ('\udcff' for 0xff)
    _refused(sx, sx("run", mission, "--input", "doc=caf\udce9"), "--input doc", "not UTF-8", "0xe9")
    numbers = write_mission(tmp_path / "n.yaml", NUMBER)
    _refused(sx, sx("run", numbers, "--input", "x=\udcff"), "--input x", "not UTF-8", "0xff")
    _refused(sx, sx("run", mission, "--input", "d\udcffc=1"), "not UTF-8", "0xff")


def test_an_input_file_that_is_not_utf8_or_holds_broken_text_is_a_usage_error(sx, tmp_path):
    mission = write_mission(tmp_path / "m.yaml", DOC)
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("café".encode("latin-1"))
    _refused(sx, sx("run", mission, "--input", f"doc=@{latin1}"), "--input doc", str(latin1), "UTF-8")
    lone = tmp_path / "lone.json"  # valid JSON, but the escape is half of a surrogate pair: not text
    lone.write_text('{"doc": "a\\ud800b"}')
    _refused(sx, sx("run", mission, "--inputs", lone), "the input 'doc'", "not valid Unicode")


# ---------------------------------------------------------------------------- NaN and Infinity


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_nan_or_infinity_given_as_an_input_is_refused(sx, tmp_path, value):
    mission = write_mission(tmp_path / "m.yaml", NUMBER)
    _refused(sx, sx("run", mission, "--input", f"x={value}"), "the input 'x'", "JSON")


@pytest.mark.parametrize("name, text", [("i.json", '{"o": {"a": [1, NaN]}}'), ("i.yaml", "o: {a: [1, .inf]}\n")])
def test_nan_or_infinity_in_an_inputs_file_is_refused_with_where_it_is(sx, tmp_path, name, text):
    mission = write_mission(tmp_path / "m.yaml", ANY)
    (tmp_path / name).write_text(text)
    _refused(sx, sx("run", mission, "--inputs", tmp_path / name), "the input 'o.a[1]'")
    _refused(sx, sx("run", mission, "--input", f"o=@{tmp_path / name}"), "the input 'o.o.a[1]'")


@pytest.mark.usefixtures("backend")
def test_the_store_never_writes_nan_or_infinity(tmp_path):
    from studiox.errors import StoreError
    from studiox.state import backends

    store = backends.open_store(tmp_path / "home", create=True)
    assert store is not None
    with pytest.raises(StoreError, match=r"output\.v .*NaN"):
        store.append("r1", 1, {"seq": 1, "type": "step_finished", "output": {"v": math.nan}})
    with pytest.raises(StoreError, match="Infinity"):
        store.add_record("run:r1", {"x": [math.inf]})
    with pytest.raises(StoreError, match="not valid Unicode"):
        store.append("r1", 1, {"seq": 1, "type": "observation", "message": "\udcff"})
    assert store.last_seq("r1") == 0 and store.record("run:r1") is None
    store.close()


def test_a_step_whose_output_is_nan_does_not_put_it_in_the_journal(sx, tmp_path):
    mission = write_mission(tmp_path / "m.yaml", "mission: nan\nsteps:\n  - {id: a, set: {v: '${{ number(\"nan\") }}'}}\n")
    result = sx("run", mission)
    assert result.returncode == 1, result.stderr  # the step fails cleanly: the expression refuses NaN
    assert "internal error" not in result.stderr
    assert "finite number" in result.stdout
    (run_id,) = sx.run_ids()
    log = sx("log", run_id, "--json")
    assert log.returncode == 0
    assert "NaN" not in log.stdout
