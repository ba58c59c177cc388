"""gpuprov_workspace_ports against real sockets of this machine."""

from __future__ import annotations

import os
import socket

import pytest
from conftest import load

PORTS = load("gpuprov_workspace_ports")


@pytest.fixture
def listener():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_in_use_sees_a_listener_and_not_a_free_port(listener):
    assert PORTS.in_use("127.0.0.1", listener) is True
    assert PORTS.in_use("127.0.0.1", free_port()) is False


def test_holder_names_the_process_that_listens(listener):
    assert PORTS.holder(listener).endswith(f"(pid {os.getpid()})")
    assert PORTS.holder(free_port()) == ""


def plan(port: int) -> dict:
    return {"user": "alice", "kind": "jupyter", "port": port, "bind_address": "127.0.0.1"}


def test_a_taken_port_fails_naming_user_port_and_holder(listener, run_module):
    result = run_module(PORTS, {"workspaces": [plan(listener)]})
    assert result["failed"] is True
    assert str(listener) in result["msg"] and "alice" in result["msg"]
    assert f"pid {os.getpid()}" in result["msg"]


def test_free_ports_pass_and_are_reported_probed(run_module):
    port = free_port()
    result = run_module(PORTS, {"workspaces": [plan(port)]})
    assert result.get("failed") is not True, result
    assert result["probed"] == [port] and result["changed"] is False


def test_an_address_not_on_the_host_is_a_clear_error(run_module):
    result = run_module(PORTS, {"workspaces": [{**plan(free_port()), "bind_address": "192.0.2.1"}]})
    assert result["failed"] is True and "is the address on this host?" in result["msg"]
