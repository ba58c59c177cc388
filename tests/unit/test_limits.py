"""Workspace limits sized to the host where the inventory sets none."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gpuprov.core.limits import GIB, HostSize, LimitError, fit, size_bytes
from gpuprov.core.plan import WorkspacePlan

PLAN = WorkspacePlan(
    user="alice",
    uid=2001,
    gid=2001,
    host="gpu1",
    kind="jupyter",
    port=20002,
    bind_address="127.0.0.1",
    gpus=(),
    volumes=(),
    limits={"pids": 4096},
    ssh_keys=(),
)


@pytest.mark.parametrize(
    ("cpus", "memory", "expected"),
    [
        # Small hosts keep 1 GiB and every CPU.
        (2, 8 * GIB, {"memory": "7168m", "cpus": 2}),
        # A tenth of the memory; one CPU kept from 8 on.
        (16, 64 * GIB, {"memory": f"{(64 * GIB - 64 * GIB // 10) >> 20}m", "cpus": 15}),
        # The reserve stops at 8 GiB.
        (128, 1024 * GIB, {"memory": f"{1016 * 1024}m", "cpus": 127}),
        # Never more than half the host is reserved.
        (1, GIB + GIB // 2, {"memory": "768m", "cpus": 1}),
    ],
)
def test_defaults_leave_the_host_a_reserve(cpus, memory, expected):
    assert HostSize(cpus, memory).defaults() == expected


def test_fit_fills_in_only_what_the_inventory_leaves_open():
    size = HostSize(cpus=16, memory=64 * GIB)
    fitted = fit(replace(PLAN, limits={"pids": 4096, "memory": "8g"}), size)
    assert fitted.limits == {"pids": 4096, "memory": "8g", "cpus": 15}


def test_fit_keeps_a_lifted_limit_lifted():
    size = HostSize(cpus=16, memory=64 * GIB)
    fitted = fit(replace(PLAN, unlimited=("memory",)), size)
    assert "memory" not in fitted.limits
    assert fitted.limits["cpus"] == 15


@pytest.mark.parametrize(
    ("limits", "says"),
    [
        ({"memory": "65g"}, "limits.memory 65g is more than the host's 65536m"),
        ({"cpus": 16.5}, "limits.cpus 16.5 is more than the host's 16 CPUs"),
    ],
)
def test_a_limit_above_the_host_is_an_error_naming_host_and_user(limits, says):
    with pytest.raises(LimitError) as error:
        fit(replace(PLAN, limits=limits), HostSize(cpus=16, memory=64 * GIB))
    message = str(error.value)
    assert says in message
    assert "host 'gpu1', user 'alice' (jupyter workspace)" in message
    assert "gpuprov_workspace_limits" in message


def test_host_size_comes_from_the_engines_info():
    assert HostSize.from_engine({"NCPU": 4, "MemTotal": 8 * GIB}, "gpu1") == HostSize(4, 8 * GIB)
    with pytest.raises(LimitError, match="host 'gpu1': the Docker engine did not report"):
        HostSize.from_engine({"NCPU": 4}, "gpu1")


@pytest.mark.parametrize(
    ("text", "expected"), [("512m", 512 << 20), ("16g", 16 * GIB), ("1024", 1024), ("2K", 2048)]
)
def test_size_bytes_reads_dockers_sizes(text, expected):
    assert size_bytes(text) == expected
