"""The models door maps every exception of litellm (and anything below it) into a step error.

Whatever goes wrong while calling a model, the step fails with a plain message that names the
model and says what to do; the run fails cleanly (exit 1, never 'internal error', exit 70) and
``studiox resume RUN --retry`` takes it up again once the cause is fixed.
"""

from __future__ import annotations

import asyncio

import pytest
from conftest import write_mission
from test_workers import EXTRACT, World

from studiox.adapters.models import LiteLLMModels, ModelCall, Replay, _litellm
from studiox.steps import StepError

pytestmark = pytest.mark.backends(
    "local", reason="the model adapter's errors are under test; the store is incidental")

CALL = ModelCall("openai/gpt-4o-mini", [{"role": "user", "content": "hello"}])


async def _no_sleep(seconds):
    return None


def _complete(models: LiteLLMModels, call: ModelCall = CALL) -> dict:
    return asyncio.run(models.complete(call, address="s", step_id="s", index=0))


def _litellm_error_names() -> list[str]:
    module = _litellm().exceptions
    return sorted(name for name, cls in vars(module).items()
                  if isinstance(cls, type) and issubclass(cls, BaseException) and cls.__module__ == module.__name__)


def test_every_litellm_error_class_can_be_scripted_and_becomes_a_step_error_naming_the_model():
    names = _litellm_error_names()
    assert {"NotFoundError", "PermissionDeniedError", "UnprocessableEntityError", "APIError"} <= set(names)
    for name in names:
        models = LiteLLMModels(Replay({"s": [{"error": f"litellm.{name}"}]}), sleep=_no_sleep)
        with pytest.raises(StepError) as caught:
            _complete(models)
        error = caught.value
        assert error.kind in ("model_error", "rate_limit"), name
        assert "openai/gpt-4o-mini" in error.message, (name, error.message)
        # what the door saw: litellm itself turns a few classes into others (InvalidRequestError into
        # BadRequestError, as it would a provider's)
        assert error.details.get("provider_error") in names, (name, error.details)
        assert error.details["provider_error"] == name or name in ("InvalidRequestError", "MockException"), name
        assert "\n" not in error.message and "\x1b" not in error.message, (name, error.message)


@pytest.mark.parametrize("name, expected", [
    ("NotFoundError", "the model 'openai/gpt-4o-mni' is not known to its provider (NotFoundError: scripted trouble): "
                      "check its name"),
    ("PermissionDeniedError", "the provider refused access to the model 'openai/gpt-4o-mni' (PermissionDeniedError"),
    ("UnprocessableEntityError", "the model 'openai/gpt-4o-mni' could not process the request "
                                 "(UnprocessableEntityError"),
    ("APIError", "the call to the model 'openai/gpt-4o-mni' failed (APIError"),
])
def test_the_errors_of_issue_9_say_what_happened_and_what_to_do(name, expected):
    models = LiteLLMModels(Replay({"s": [{"error": name, "message": "scripted trouble"}]}), sleep=_no_sleep)
    with pytest.raises(StepError) as caught:
        _complete(models, ModelCall("openai/gpt-4o-mni", CALL.messages))
    assert expected in caught.value.message
    assert "scripted trouble" in caught.value.message


def test_a_mistyped_model_name_gets_a_suggestion():
    models = LiteLLMModels(Replay({"s": [{"error": "litellm.NotFoundError"}]}), sleep=_no_sleep)
    with pytest.raises(StepError) as caught:
        _complete(models, ModelCall("openai/gpt-4o-mni", CALL.messages))
    assert caught.value.message.endswith("— did you mean 'openai/gpt-4o-mini'?")


def test_a_model_without_a_provider_litellm_knows_is_told_to_name_one():
    models = LiteLLMModels(Replay({"s": [{"output": "x"}]}), sleep=_no_sleep)
    with pytest.raises(StepError) as caught:
        _complete(models, ModelCall("gpt-4o-mni", CALL.messages))
    message = caught.value.message
    assert message.startswith("litellm cannot tell which provider serves the model 'gpt-4o-mni'")
    assert "write it as provider/model" in message and "did you mean 'openai/gpt-4o-mini'?" in message


@pytest.mark.parametrize("error", [ValueError("bad value deep inside"), KeyError("choices"), RuntimeError("boom")])
def test_anything_else_raised_below_the_door_is_a_step_error_too(monkeypatch, error):
    litellm = _litellm()

    async def broken(**kwargs):
        raise error

    monkeypatch.setattr(litellm, "acompletion", broken)
    with pytest.raises(StepError) as caught:
        _complete(LiteLLMModels(Replay({"s": [{"output": "x"}]}), sleep=_no_sleep))
    assert caught.value.message.startswith("the call to the model 'openai/gpt-4o-mini' failed unexpectedly "
                                           f"({type(error).__name__}")
    assert caught.value.details == {"provider_error": type(error).__name__}


def test_an_unmapped_provider_error_fails_the_run_cleanly_and_retry_takes_it_up_again(tmp_path, monkeypatch):
    litellm = _litellm()
    real, raised = litellm.acompletion, []

    async def fails_once(**kwargs):
        if not raised:
            raised.append(True)
            raise litellm.APIError(status_code=599, message="odd gateway reply", llm_provider="openai",
                                   model="gpt-4o-mini")
        return await real(**kwargs)

    monkeypatch.setattr(litellm, "acompletion", fails_once)
    world = World(tmp_path, {"extract": [{"output": {"invoice_number": "I", "total": 1}}]})
    run_id = world.start(EXTRACT)
    failed = world.engine.drive(run_id)
    assert failed.status == "failed" and failed.error["kind"] == "model_error"
    assert "odd gateway reply" in failed.error["message"]
    again = world.engine.drive(run_id, resume=True, retry_failed=True)
    assert again.status == "succeeded", again.error


def test_the_cli_fails_a_mistyped_model_with_exit_1_and_resume_retry_works(studiox, tmp_path):
    mission = write_mission(tmp_path / "m.yaml", EXTRACT.replace("fast: openai/gpt-4o-mini",
                                                                 "fast: openai/gpt-4o-mni"))
    replay = tmp_path / "replay.yaml"
    replay.write_text("extract:\n  - error: litellm.NotFoundError\n    message: The model `gpt-4o-mni` does not "
                      "exist\n")
    failed = studiox("run", mission, "--replay", replay, timeout=120)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "internal error" not in failed.stderr
    assert "the model 'openai/gpt-4o-mni' is not known to its provider (NotFoundError: The model `gpt-4o-mni` does " \
           "not exist): check its name in the mission, --model or STUDIOX_MODEL — did you mean 'openai/gpt-4o-mini'?" \
           in failed.stdout
    run_id = failed.stdout.split()[1]
    again = studiox("resume", run_id, "--retry", timeout=120)  # the cause is still there: the same clean failure
    assert again.returncode == 1 and "is not known to its provider" in again.stdout, again.stdout + again.stderr
    replay.write_text("extract:\n  - output: {invoice_number: INV-1, total: 500}\n")
    done = studiox("resume", run_id, "--retry", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert studiox.state(run_id)["status"] == "succeeded"
