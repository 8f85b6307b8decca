"""The first model call off the critical path: the model client is imported in the background as a run
starts; a step that must wait for it says so on the rail, and the wait is not counted as its work."""

from __future__ import annotations

import threading
import time

from test_workers import EXTRACT, World

from studiox.adapters import preload


def test_a_worker_that_waits_for_the_model_client_says_so_and_the_wait_is_not_its_duration(tmp_path, monkeypatch):
    from studiox.adapters.models import _litellm

    _litellm()  # imported already, so the step's own work is small
    loading = threading.Thread(target=time.sleep, args=(2.0,), daemon=True)  # a client that takes 2 s to load
    loading.start()
    monkeypatch.setattr(preload, "_loads", {"litellm": loading})
    world = World(tmp_path, {"extract": [{"output": {"invoice_number": "INV-1", "total": 500}}]})
    outcome = world.run(EXTRACT)
    assert outcome.status == "succeeded"
    notes = [o["message"] for o in world.events(outcome.run_id, "observation")]
    assert "loading the model client (litellm)…" in notes
    (finished,) = world.events(outcome.run_id, "step_finished")
    assert finished["duration"] < 1.5  # the 2 s of loading are not the step's work


def test_a_run_with_workers_starts_loading_the_model_client_at_once(tmp_path, monkeypatch):
    monkeypatch.setattr(preload, "_loads", {})
    started = []
    monkeypatch.setattr(preload, "start", lambda name, load: started.append(name))
    world = World(tmp_path, {"extract": [{"output": {"invoice_number": "INV-1", "total": 500}}]})
    world.run(EXTRACT)
    assert started[0] == "litellm"


def test_preloading_can_be_turned_off(monkeypatch):
    monkeypatch.setattr(preload, "_loads", {})
    monkeypatch.setenv("STUDIOX_PRELOAD", "off")
    preload.start("litellm", lambda: None)
    assert preload._loads == {} and not preload.pending("litellm") and preload.wait("litellm") == 0.0
