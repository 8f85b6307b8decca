"""The engine: step order, retries, time limits, the gate, exactly-once acting, resume.

``Engine`` starts and drives runs (``engine.py``); one drive walks the mission (``walk.py``),
passing actions through the gate (``gate.py``) and acting exactly once (``acting.py``);
workers get their doors from ``worker.py``.
"""

from .control import JournalMismatch, Outcome
from .engine import Engine

__all__ = ["Engine", "JournalMismatch", "Outcome"]
