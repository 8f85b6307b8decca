"""Where the CLI prints: the consoles, JSON for scripts, and text that is never read as markup.

Data (a supplier's name, a model's reasoning, a tool's arguments) may contain ``[`` and ``]``;
it is always escaped or printed with ``markup=False``, so it can never change what is shown
or crash the printout.
"""

from __future__ import annotations

import json
import sys

from rich.console import Console
from rich.markup import escape

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

__all__ = ["err", "escape", "out", "plain", "print_json"]


def print_json(data) -> None:
    """One JSON document on standard output, for scripts (not pretty-printed through rich)."""
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")
    sys.stdout.flush()


def plain(text: str, *, error: bool = False) -> None:
    """Print text exactly as it is: never markup, never highlighted."""
    (err if error else out).print(text, markup=False, highlight=False)
