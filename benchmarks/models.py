"""Which model to use for the invoice mission: field accuracy, latency and memory, with numbers.

    python benchmarks/models.py MODEL [MODEL ...] [--api-base URL] [--rounds N]

    python benchmarks/models.py local/gemma-3-270m
    python benchmarks/models.py openai/qwen2.5-7b-instruct --api-base http://127.0.0.1:8080/v1
    python benchmarks/models.py openai/gpt-4o-mini          # a hosted model, when its key is set

Each model runs missions/invoice.yaml on INV-2291 (a copy of the missions folder, its own state
folder, a new process each round, --no-input so the payment parks), and its workers' answers are
scored field by field against the answers a person checked (missions/data/replies/invoice-INV-2291.yaml):
invoice number, order number, supplier, total and the number of lines for `extract`; whether
supplier and items match for `match` (asked only when the order number read is on file). Latency is the model's own time per call; memory is the run's
peak resident size (a local model is loaded in it). No goal: a table to choose a model with.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
FIELDS = {"extract": ("invoice_number", "po_number", "supplier", "total", "lines"),
          "match": ("supplier_matches", "items_match")}


def gold() -> dict:
    answers = yaml.safe_load((ROOT / "missions" / "data" / "replies/invoice-INV-2291.yaml").read_text())
    return {step: answers[step][0]["output"] for step in FIELDS}


def same(field: str, got, want) -> bool:
    if field == "lines":
        return isinstance(got, list) and len(got) == len(want)
    if isinstance(want, float):
        return isinstance(got, (int, float)) and abs(got - want) < 0.01
    return got == want


def one_run(model: str, api_base: str | None) -> tuple[dict, list[float], float]:
    """(each worker's output, each model call's latency, the run's peak memory in MB)."""
    folder = Path(tempfile.mkdtemp(prefix="studiox-models-"))
    missions = folder / "missions"
    shutil.copytree(ROOT / "missions", missions, ignore=shutil.ignore_patterns("erp.sqlite"))
    env_home = {"STUDIOX_HOME": str(folder / "home")}
    command = [sys.executable, "-m", "studiox", "run", str(missions / "invoice.yaml"), "--input",
               f"invoice=@{missions / 'data' / 'invoice-INV-2291.txt'}", "--model", model, "--no-input", "-q"]
    if api_base:
        command += ["--api-base", api_base]
    import os

    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **env_home})
    peak = max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before) / 1024
    run_id = done.stdout.split()[0] if done.stdout else ""
    log = subprocess.run([sys.executable, "-m", "studiox", "log", run_id, "--json"], capture_output=True, text=True,
                         env={**os.environ, **env_home})
    events = [json.loads(line) for line in log.stdout.splitlines()]
    outputs = {e["step"]: e.get("output") for e in events if e["type"] == "step_finished" and e["step"] in FIELDS}
    latencies = [e["latency_s"] for e in events if e["type"] == "model_call" and e.get("latency_s") is not None]
    shutil.rmtree(folder, ignore_errors=True)
    return outputs, latencies, peak


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("models", nargs="+")
    parser.add_argument("--api-base")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    want = gold()
    table = Table("model", "extract fields right", "match fields right", "latency per call (median)",
                  "peak memory", header_style="bold", title="missions/invoice.yaml on INV-2291")
    for model in args.models:
        right = {step: 0 for step in FIELDS}
        latencies: list[float] = []
        peaks = []
        for _ in range(args.rounds):
            outputs, took, peak = one_run(model, args.api_base)
            latencies += took
            peaks.append(peak)
            for step, fields in FIELDS.items():
                got = outputs.get(step) or {}
                right[step] += sum(same(f, got.get(f), want[step][f]) for f in fields)
        cells = [f"{right[s]}/{len(FIELDS[s]) * args.rounds}" for s in FIELDS]
        latency = f"{statistics.median(latencies):.2f} s" if latencies else "no call answered"
        table.add_row(model, *cells, latency, f"{max(peaks):.0f} MB")
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
