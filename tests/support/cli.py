"""The `instropitch` command in a child process, running the code under test (not another install)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import instropitch

COMMAND = [sys.executable, "-m", "instropitch.cli"]
"""`instropitch` as a child process's argv prefix."""


def cli_env(drop: tuple[str, ...] = (), **changes: str) -> dict[str, str]:
    """This environment without the variables starting with `drop`, with `changes`, and the tested
    package first on PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)} if drop else dict(os.environ)
    package_root = str(Path(instropitch.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env.update(changes)
    return env
