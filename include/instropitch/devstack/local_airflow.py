"""Run the project's DAGs with a real Airflow on one machine, no Docker.

`airflow dags test` runs a whole DAG run in one process against a real metadata database
(SQLite under `.instropitch/airflow`): the same DAG files, operators, mapping, XCom and
Asset events as the scheduler would use. The environment comes from `stack.airflow_env`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from instropitch.devstack import processes
from instropitch.devstack.stack import Services, airflow_env


def _airflow_bin() -> str:
    return str(Path(sys.executable).with_name("airflow"))


def environment(services: Services, extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment plus the stack's Airflow/MLflow settings."""
    env = {**os.environ, **airflow_env(services), **(extra or {})}
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def migrate(env: dict[str, str]) -> None:
    """Create or upgrade Airflow's metadata database (idempotent; skipped once done)."""
    home = Path(env["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    stamp = home / ".migrated"
    version = subprocess.run(
        [_airflow_bin(), "version"], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    if stamp.exists() and stamp.read_text() == version:
        return
    subprocess.run([_airflow_bin(), "db", "migrate"], env=env, check=True, capture_output=True, text=True)
    stamp.write_text(version)


@dataclass
class DagTestResult:
    dag_id: str
    returncode: int
    seconds: float
    log_path: Path

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def secrets_in(env: dict[str, str]) -> list[str]:
    """Values to mask in logs: connection passwords and variables named like secrets."""
    found = []
    for key, value in env.items():
        if key.startswith("AIRFLOW_CONN_"):
            try:
                password = json.loads(value).get("password")
            except (ValueError, AttributeError):
                password = urlsplit(value).password
            if password:
                found.append(password)
        elif any(word in key for word in ("PASSWORD", "SECRET")) and value:
            found.append(value)
    return sorted({s for s in found if len(s) >= 4}, key=len, reverse=True)


class DagTestProgress:
    """Reads `airflow dags test` output and makes a short line of each finished task and each epoch.

    The run itself prints hundreds of long log lines; these are the few worth watching:
    `task train[0]: success in 215 s` and the training's per-epoch lines
    (`instrument epoch 3/80: loss ... val_accuracy ...`, logged by `instropitch.ml.fitting`).
    """

    _TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)")
    _STARTING = re.compile(r"\[DAG TEST\] starting task_id=(\S+) map_index=(-?\d+)")
    _STATE = re.compile(r"\] Task instance state updated .*\bnew_state=(\w+)")
    _ERROR = re.compile(r"\[DAG TEST\] Error running task")
    _END = re.compile(r"\[DAG TEST\] end task task_id=(\S+) map_index=(-?\d+)")
    _EPOCH = re.compile(r"\[\w+ *\] (.+? epoch \d+/\d+:.*?)\s+\[instropitch\.[\w.]+\]")

    def __init__(self) -> None:
        self._started: datetime | None = None
        self._state: str | None = None

    def feed(self, line: str) -> str | None:
        """The short line for this output line, or None when it is not worth showing."""
        if m := self._EPOCH.search(line):
            return f"  {m.group(1)}"
        if self._STARTING.search(line):
            self._started, self._state = self._time(line), None
        elif m := self._STATE.search(line):
            self._state = m.group(1)
        elif self._ERROR.search(line):
            self._state = "failed"
        elif m := self._END.search(line):
            task = m.group(1) if m.group(2) == "-1" else f"{m.group(1)}[{m.group(2)}]"
            ended = self._time(line)
            took = f" in {(ended - self._started).total_seconds():.0f} s" if ended and self._started else ""
            return f"  task {task}: {self._state or 'ended'}{took}"
        return None

    def _time(self, line: str) -> datetime | None:
        m = self._TIME.match(line)
        return datetime.fromisoformat(m.group(1)) if m else None


def dags_test(
    dag_id: str,
    env: dict[str, str],
    conf: dict | None = None,
    log_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> DagTestResult:
    """Run one DAG run with `airflow dags test`; its log goes to a file (it is long).

    `dags test` prints task logs without Airflow's secrets masker, so every line is masked
    here before it is written: no connection password reaches the file. `progress` gets
    a short line per finished task and per training epoch (`DagTestProgress`) as they come.
    A stop signal (KeyboardInterrupt) ends the run's process too.
    """
    log_dir = log_dir or Path(env["AIRFLOW_HOME"]) / "runs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{dag_id}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.log"
    command = [_airflow_bin(), "dags", "test", dag_id]
    if conf:
        command += ["--conf", json.dumps(conf)]
    started = time.perf_counter()
    secrets = secrets_in(env)
    watch = DagTestProgress()
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        )
        assert process.stdout is not None
        try:
            for line in process.stdout:
                for secret in secrets:
                    line = line.replace(secret, "***")
                log.write(line)
                if progress and (short := watch.feed(line)):
                    progress(short)
            process.wait()
        except BaseException:
            processes.stop([process.pid], grace=10)
            raise
    seconds = time.perf_counter() - started
    # `dags test` exits non-zero when the run ends failed (its leaves decide; clean-up is a teardown).
    return DagTestResult(dag_id, process.returncode, seconds, log_path)
