"""Workspace limits sized to the host: what a workspace gets where the inventory is silent.

A workspace without a memory limit can take the host's memory from sshd and
dockerd; one without a CPU limit can starve them. Where neither the host's
`gpuprov_workspace_limits` nor the user's `limits` set one (and neither says
`unlimited`), the workspace gets the host's size less a reserve for the host.
The size is the engine's own (`docker info`: NCPU, MemTotal), the figures the
kernel enforces the limits against.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from .plan import WorkspacePlan

GIB = 1 << 30
MIB = 1 << 20
# The host keeps a tenth of its memory, within these bounds, for itself.
MEMORY_RESERVE_PARTS = 10
MEMORY_RESERVE_MIN = 1 * GIB
MEMORY_RESERVE_MAX = 8 * GIB
# From this many CPUs on, one is kept off every workspace's quota.
CPU_RESERVE_FROM = 8

_UNITS = {"b": 1, "k": 1 << 10, "m": MIB, "g": GIB}


class LimitError(ValueError):
    """A workspace's limit the host cannot give."""


def size_bytes(size: str) -> int:
    """Docker's size strings (512m, 16g, 1024) in bytes."""
    text = str(size).lower()
    return int(text[:-1]) * _UNITS[text[-1]] if text[-1] in _UNITS else int(text)


@dataclass(frozen=True)
class HostSize:
    cpus: int
    memory: int  # bytes

    @classmethod
    def from_engine(cls, info: dict[str, Any], host: str) -> HostSize:
        """The size `docker info` reports (community.docker.docker_host_info's host_info)."""
        try:
            return cls(cpus=int(info["NCPU"]), memory=int(info["MemTotal"]))
        except (KeyError, TypeError, ValueError) as error:
            raise LimitError(
                f"host '{host}': the Docker engine did not report NCPU and MemTotal "
                f"({error!r}), so the workspaces' default limits cannot be sized; "
                "set memory and cpus in the host's gpuprov_workspace_limits"
            ) from error

    def defaults(self) -> dict[str, Any]:
        """The memory and CPU limits a workspace gets where the inventory sets none."""
        share = self.memory // MEMORY_RESERVE_PARTS
        reserve = min(max(share, MEMORY_RESERVE_MIN), MEMORY_RESERVE_MAX)
        memory = max(self.memory - reserve, self.memory // 2)
        cpus = self.cpus - 1 if self.cpus >= CPU_RESERVE_FROM else self.cpus
        return {"memory": f"{memory // MIB}m", "cpus": cpus}


def fit(plan: WorkspacePlan, size: HostSize) -> WorkspacePlan:
    """The workspace with the host-sized defaults filled in; a limit above the host is an error."""
    limits = dict(plan.limits)
    for key, value in size.defaults().items():
        if key not in limits and key not in plan.unlimited:
            limits[key] = value
    where = f"host '{plan.host}', user '{plan.user}' ({plan.kind} workspace)"
    if "memory" in limits and size_bytes(limits["memory"]) > size.memory:
        raise LimitError(
            f"{where}: limits.memory {limits['memory']} is more than the host's "
            f"{size.memory // MIB}m; lower it in the user's limits or the host's "
            "gpuprov_workspace_limits"
        )
    if "cpus" in limits and float(limits["cpus"]) > size.cpus:
        raise LimitError(
            f"{where}: limits.cpus {limits['cpus']} is more than the host's {size.cpus} CPUs; "
            "lower it in the user's limits or the host's gpuprov_workspace_limits"
        )
    return replace(plan, limits=limits)
