from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent


class Sx:
    """Runs the studiox CLI (with the test tools door) as a real subprocess, in one state folder."""

    def __init__(self, tmp_path: Path):
        self.home = tmp_path / "home"
        self.effects = tmp_path / "effects.jsonl"
        self.tmp = tmp_path

    def env(self, **extra) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STUDIOX_")}
        env.update(STUDIOX_HOME=str(self.home), SX_EFFECTS=str(self.effects), SX_FLAKY=str(self.tmp / "flaky"),
                   PYTHONPATH=str(TESTS) + os.pathsep + env.get("PYTHONPATH", ""), COLUMNS="200",
                   RECORD_DELAY="0")  # read by tests/support/mcp_test_server.py
        env.update({k: str(v) for k, v in extra.items()})
        return env

    real = False  # True: the plain studiox CLI with its real MCP integrations

    def argv(self, *args) -> list[str]:
        return [sys.executable, "-m", "studiox" if self.real else "support.sx", *map(str, args)]

    def __call__(self, *args, timeout: float = 60, **env) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(*args), capture_output=True, text=True, env=self.env(**env),
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def popen(self, *args, **env) -> subprocess.Popen:
        return subprocess.Popen(self.argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=self.env(**env), stdin=subprocess.DEVNULL)

    def effects_log(self) -> list[dict]:
        if not self.effects.exists():
            return []
        return [json.loads(line) for line in self.effects.read_text().splitlines()]

    def run_ids(self) -> list[str]:
        result = self("runs", "--json")
        assert result.returncode == 0, result.stderr
        return [r["id"] for r in json.loads(result.stdout)]

    def state(self, run_id: str) -> dict:
        result = self("status", run_id, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)


@pytest.fixture
def sx(tmp_path) -> Sx:
    return Sx(tmp_path)


@pytest.fixture
def studiox(tmp_path) -> Sx:
    """The plain CLI (real MCP integrations), as a subprocess, in its own state folder."""
    runner = Sx(tmp_path)
    runner.real = True
    return runner


def write_mission(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path
