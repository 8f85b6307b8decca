"""Heavy client libraries imported in the background as a run starts, off the critical path.

Importing litellm costs seconds; a run whose mission has worker steps starts importing it in a
thread while its first steps run, so the first model call rarely waits, and when it does the
wait is said on the rail and not counted as the step's own work. ``STUDIOX_PRELOAD=off``
turns this off (the import then happens at the first model call, as before).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable

_loads: dict[str, threading.Thread] = {}
_lock = threading.Lock()


def start(name: str, load: Callable[[], object]) -> None:
    """Begin importing ``name`` in a daemon thread (once per process)."""
    if os.environ.get("STUDIOX_PRELOAD", "on").lower() in ("off", "0", "no", "false"):
        return
    if name in sys.modules:  # imported already: nothing to wait for
        return
    with _lock:
        if name in _loads:
            return

        def run() -> None:
            try:
                load()
            except Exception:  # noqa: BLE001 - the import is tried again, with its error, where it is used
                pass

        thread = threading.Thread(target=run, name=f"studiox-preload-{name}", daemon=True)
        _loads[name] = thread
        thread.start()


def pending(name: str) -> bool:
    """True while ``name`` is still being imported in the background."""
    thread = _loads.get(name)
    return thread is not None and thread.is_alive()


def wait(name: str) -> float:
    """Wait for the background import of ``name`` to end; the seconds waited."""
    thread = _loads.get(name)
    if thread is None:
        return 0.0
    started = time.perf_counter()
    thread.join()
    return time.perf_counter() - started


def warmed_litellm():
    """litellm imported, and its first completion (which sets up what it builds lazily) made with a
    scripted answer: for the background preload, so the first real model call pays for neither."""
    import asyncio

    from .models import _litellm

    litellm = _litellm()
    try:
        asyncio.run(litellm.acompletion(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "-"}],
                                        mock_response="-"))
    except Exception:  # noqa: BLE001 - only a warm-up: the real call reports its own errors
        pass
    return litellm


def for_mission(mission, options: dict) -> None:
    """Start importing the client libraries a run of ``mission`` will need: litellm when a worker
    uses a model that is not in process (``local/...``, or any model with --replay), mcp when it
    has integrations."""
    chosen = options.get("model") or options.get("env_model")
    used = set()
    for step in mission.walk():
        if step.kind == "worker":
            name = step.spec.get("model") or chosen
            model = mission.default_model if name is None else mission.models.get(name)
            used.add(model.model if model is not None else (name or ""))
    if used and (options.get("replay") or not all(m.startswith("local/") for m in used)):
        start("litellm", warmed_litellm)
    if mission.integrations:
        start("mcp", _import_mcp)


def _import_mcp() -> None:
    import mcp.client  # noqa: F401
    import mcp.client.stdio  # noqa: F401
