"""`stack.free_port`: ports the kernel will not hand to anyone else before the service binds them."""

from __future__ import annotations

import socket

from instropitch.devstack import stack


def test_ports_lie_below_the_ephemeral_range_and_are_never_repeated():
    low = stack._ephemeral_low()
    ports = [stack.free_port() for _ in range(50)]
    assert len(set(ports)) == len(ports)
    assert all(1024 <= port < low for port in ports)


def test_a_port_in_use_is_not_returned(monkeypatch):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        picks = iter([busy, busy + 1 if busy < 65535 else busy - 1])
        monkeypatch.setattr(stack, "_LOWEST_PORT", 1024)
        monkeypatch.setattr(stack.random.SystemRandom, "randint", lambda self, a, b: next(picks))
        monkeypatch.setattr(stack, "_ephemeral_low", lambda: 65536)
        assert stack.free_port() != busy


def test_the_kernel_range_is_read_and_defaults_when_unreadable(monkeypatch, tmp_path):
    ranges = tmp_path / "ip_local_port_range"
    ranges.write_text("40000\t60999\n")
    monkeypatch.setattr(stack, "EPHEMERAL_RANGE_FILE", ranges)
    assert stack._ephemeral_low() == 40000
    monkeypatch.setattr(stack, "EPHEMERAL_RANGE_FILE", tmp_path / "missing")
    assert stack._ephemeral_low() == 32768
