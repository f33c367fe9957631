"""Training faults: the MLflow server dies mid-run, and a training process is SIGKILLed mid-run.

Either way the task fails (Airflow retries it) and the registry keeps serving the previous
champion: no new registered version appears and the `champion` alias does not move.

Observed behaviour, documented by these tests: the interrupted run is left RUNNING in the
tracking store (nobody is left to mark it FAILED), but it has no model and no registered
version, so promotion and serving never see it. In-process, MLflow pops the run from its
active-run stack before trying to mark it FAILED, so a retry in the same process does not
nest under the dead run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from support import TESTS
from support.models import SPEC, synthetic_snapshot  # the same tiny spec and learnable data

from instropitch.devstack.stack import free_port
from instropitch.modelspec import parse_spec

NAME = "inst"
REGISTERED = "instropitch-inst"  # SPEC["name"] is "inst"
MLFLOW = str(Path(sys.executable).with_name("mlflow"))


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}


def wait_until(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"{what} within {timeout:.0f} s")


class Server:
    """A real `mlflow server` on loopback; `kill()` takes down its whole process group."""

    def __init__(self, home: Path, port: int):
        self.home, self.port = home, port
        self.url = f"http://127.0.0.1:{port}"
        self.log = home / f"mlflow-{port}-{time.monotonic_ns()}.log"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 300) -> Server:
        return self.spawn().wait(timeout)

    def spawn(self) -> Server:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [
                    MLFLOW,
                    "server",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--workers",
                    "1",
                    "--backend-store-uri",
                    f"sqlite:///{self.home / 'mlflow.db'}",
                    "--artifacts-destination",
                    str(self.home / "mlflow-artifacts"),
                    "--serve-artifacts",
                ],
                env=clean_env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def wait(self, timeout: float = 300) -> Server:  # ~30 s on 2 idle cores, minutes on busy ones
        def healthy() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited {self.process.returncode}: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    return response.status < 300
            except OSError:
                return False

        wait_until(healthy, timeout, f"mlflow server on {self.url} did not answer", interval=0.3)
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


def version_numbers(client) -> list[str]:
    return sorted(str(mv.version) for mv in client.search_model_versions(f"name='{REGISTERED}'"))


def assert_champion_serves_v1(snap) -> None:
    from instropitch.ml import registry

    info = registry.champion_info(NAME)
    assert info is not None and info.version == "1"
    loaded = registry.load_model(info.model_uri)
    predicted = loaded.predict(snap.instrument_spec[snap.is_test])
    assert len(predicted) == int(snap.is_test.sum())
    assert set(predicted.tolist()) <= set(loaded.class_values)


def test_server_dies_mid_training(tmp_path, monkeypatch):
    import mlflow

    from instropitch.ml import registry
    from instropitch.ml.training import train_and_log

    # An `mlflow server` takes ~30 s to boot on 2 cores. The server is stateless over its
    # store, so the "restarted" server (same sqlite file and artifacts dir, another port) is
    # booted alongside the first one rather than after the crash; it is only used afterwards.
    # The schema is created first, in-process, so the two servers do not race on migrations.
    mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}").search_experiments()
    server = Server(tmp_path, free_port()).spawn()
    restarted = Server(tmp_path, free_port()).spawn()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    monkeypatch.chdir(tmp_path)
    try:
        from instropitch.ml.cnn import configure_tensorflow

        configure_tensorflow()  # import TensorFlow while the servers boot
        spec, snap = parse_spec(SPEC), synthetic_snapshot()
        server.wait()
        restarted.wait()
        first = train_and_log(spec, snap, epochs_override=0)
        assert first.version == "1"
        assert registry.promote(NAME, first.version, snap).promoted
        client = mlflow.MlflowClient()
        experiment_id = client.get_experiment_by_name("instropitch").experiment_id
        known_runs = {r.info.run_id for r in client.search_runs([experiment_id])}
        # From here on a dead server must fail the run at once (no retries, short timeouts); the
        # healthy run above keeps MLflow's defaults, so a slow answer on a busy machine is not a failure.
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")  # a dead server refuses at once; this bounds a hung one

        killed: dict = {}  # run_id, status, and the moment of the kill
        stop = threading.Event()

        def killer() -> None:
            """Kill the server once the new run has logged its first epoch (mid-fit)."""
            deadline = time.monotonic() + 300  # the first epoch: seconds idle, a minute or more under load
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    for run in client.search_runs([experiment_id]):
                        if run.info.run_id not in known_runs and "loss" in run.data.metrics:
                            killed["run_id"] = run.info.run_id
                            killed["status"] = run.info.status
                            server.kill()
                            killed["at"] = time.monotonic()
                            return
                except Exception:
                    pass
                time.sleep(0.1)

        thread = threading.Thread(target=killer, daemon=True)
        thread.start()
        try:
            with pytest.raises(Exception):  # noqa: B017 - any connection error fails the Airflow task
                train_and_log(spec, snap, epochs_override=3000)
        finally:
            stop.set()
            thread.join(15)
        assert killed.get("status") == "RUNNING", "the server was not killed mid-run"
        assert time.monotonic() - killed["at"] < 60, "training did not fail fast once the server was gone"
        assert mlflow.active_run() is None  # a retry in this process would not nest under the dead run

        # the server on the same store (sqlite file + artifacts dir) answers for the registry now
        monkeypatch.setenv("MLFLOW_TRACKING_URI", restarted.url)
        client = mlflow.MlflowClient()
        assert version_numbers(client) == ["1"]  # no half-registered version
        assert str(client.get_model_version_by_alias(REGISTERED, "champion").version) == "1"
        dead = client.get_run(killed["run_id"])
        assert dead.info.status == "RUNNING"  # orphaned: nobody could mark it FAILED
        assert "registered_version" not in dead.data.tags
        assert_champion_serves_v1(snap)
    finally:
        server.kill()
        restarted.kill()


def test_training_process_sigkilled_mid_run(mlflow_store, tmp_path):
    import mlflow

    from instropitch.ml import registry
    from instropitch.ml.training import train_and_log

    uri, experiment_id = mlflow_store.uri, mlflow_store.experiment_id
    client = mlflow.MlflowClient()
    spec, snap = parse_spec(SPEC), synthetic_snapshot()
    first = train_and_log(spec, snap, epochs_override=0)
    assert registry.promote(NAME, first.version, snap).promoted
    snapshot_file = snap.save(tmp_path / "snap")
    known_runs = {r.info.run_id for r in client.search_runs([experiment_id])}

    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(TESTS)!r})
        from support.models import SPEC
        from instropitch.modelspec import parse_spec
        from instropitch.ml.snapshot import Snapshot
        from instropitch.ml.training import train_and_log
        train_and_log(parse_spec(SPEC), Snapshot.load({str(snapshot_file)!r}), epochs_override=100000)
        """
    )
    env = {**clean_env(), "MLFLOW_TRACKING_URI": uri}
    log = tmp_path / "train.log"
    with open(log, "wb") as out:
        child = subprocess.Popen(
            [sys.executable, "-c", script], cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:

        def running_mid_fit():
            if child.poll() is not None:
                raise RuntimeError(f"training exited early ({child.returncode}): {log.read_text()[-2000:]}")
            for run in client.search_runs([experiment_id]):
                if run.info.run_id not in known_runs and "loss" in run.data.metrics:
                    return run
            return None

        run = wait_until(running_mid_fit, 300, "the training subprocess did not log an epoch", interval=0.25)
        assert run.info.status == "RUNNING"
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
    assert child.returncode == -signal.SIGKILL

    assert version_numbers(client) == ["1"]
    assert str(client.get_model_version_by_alias(REGISTERED, "champion").version) == "1"
    assert client.get_run(run.info.run_id).info.status == "RUNNING"  # orphaned, never registered
    assert_champion_serves_v1(snap)
    # the accuracy the champion was promoted with is still what it scores
    assert registry.evaluate(registry.load_model("models:/instropitch-inst@champion"), snap) == pytest.approx(
        first.test_accuracy
    )
