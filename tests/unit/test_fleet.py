"""`gpuprov status`'s transport: per-host bounds, causes said plainly, hosts answered as
they finish. Real processes and sockets on this machine; the SSH side is covered
against the test bed's sshd in tests/integration/test_fleet_status.py."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from gpuprov import fleet
from gpuprov.ansible_inventory import AnsibleInventory, Sources

# Seconds each (real processes and sockets, some waited on to time out):
# make quick leaves these out, make test runs them.
pytestmark = pytest.mark.slow

LOCAL = fleet.Target("here", "localhost", local=True, gpu_required=False)


@pytest.fixture
def hung_nvidia_smi(tmp_path, monkeypatch):
    """An nvidia-smi that never answers, first on PATH, as on a host with a wedged GPU."""
    fake = tmp_path / "bin" / "nvidia-smi"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nsleep 30\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    return str(fake)


@pytest.fixture
def silent_port():
    """A TCP port that accepts and never sends an SSH banner."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    server.close()


def test_a_hung_command_is_ended_on_the_host_and_named(hung_nvidia_smi):
    started = time.monotonic()
    result = fleet.probe_one(LOCAL, timeout=2)
    assert time.monotonic() - started < 6
    assert result.timed_out and result.status is not None
    assert result.error.startswith("timed out after 2 s in nvidia-smi")
    assert result.status.hostname == socket.gethostname()
    left = subprocess.run(["pgrep", "-f", hung_nvidia_smi], capture_output=True, text=True)
    assert left.stdout == "", "the hung command outlived the probe"


def test_a_port_without_a_banner_says_so(silent_port):
    target = fleet.Target("mute", "127.0.0.1", port=silent_port, strict_host_keys=False)
    result = fleet.probe_one(target, timeout=2)
    assert result.status is None
    assert "no SSH banner came within 2 s" in result.error


def test_a_closed_port_is_connection_refused():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = fleet.probe_one(fleet.Target("gone", "127.0.0.1", port=port), timeout=2)
    assert result.error == f"connection refused on 127.0.0.1:{port} (no sshd listening)"


def test_hosts_are_answered_as_they_finish_and_a_stuck_one_is_cut_off(silent_port):
    mute = fleet.Target("mute", "127.0.0.1", port=silent_port, strict_host_keys=False)
    seen: list[tuple[int, tuple[str, float] | None]] = []
    started = time.monotonic()
    results = fleet.probe_all(
        [mute, LOCAL], timeout=3, on_progress=lambda p: seen.append((p.done, p.slowest()))
    )
    assert time.monotonic() - started < 3 + 2.5
    assert [r.target.name for r in results] == ["mute", "here"]
    assert results[1].status is not None and results[1].seconds < 3
    assert results[0].status is None and "no SSH banner" in results[0].error
    # the local host was in before the mute one, which was still the one waited on
    first_done = next(slowest for done, slowest in seen if done == 1)
    assert first_done is not None and first_done[0] == "mute"


def test_the_runs_deadline_ends_it_with_every_finished_row(silent_port):
    mute = fleet.Target("mute", "127.0.0.1", port=silent_port, strict_host_keys=False)
    started = time.monotonic()
    results = fleet.probe_all([mute, LOCAL], timeout=30, deadline=1.5)
    assert time.monotonic() - started < 3
    assert results[0].timed_out and "deadline of 2 s" in results[0].error
    assert results[1].status is not None


def test_targets_take_become_and_the_gpu_requirement_from_the_inventory(tmp_path: Path):
    (tmp_path / "hosts.yml").write_text(
        "all:\n  hosts:\n"
        "    gpu1: {ansible_host: 10.0.0.1, ansible_become: true, ansible_port: 2222}\n"
        "    cpu1: {ansible_become: 'yes', ansible_become_user: ops,"
        " gpuprov_gpu: {required: false}}\n"
        "    gpu2: {ansible_ssh_common_args: '-o StrictHostKeyChecking=no'}\n"
    )
    found = AnsibleInventory(Sources(inventory=[str(tmp_path)])).inventory()
    by_name = {t.name: t for t in fleet.targets(found, sorted(found.hosts))}
    assert (by_name["gpu1"].become_user, by_name["gpu1"].port) == ("root", 2222)
    assert (by_name["cpu1"].become_user, by_name["cpu1"].gpu_required) == ("ops", False)
    assert by_name["gpu2"].become_user is None and not by_name["gpu2"].strict_host_keys
