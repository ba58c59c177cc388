"""Stable host ports and GPU assignments for workspaces.

Ports derive from the user's uid rather than from list order, so adding or
removing a colleague never moves anybody else's port or SSH config.
"""

from __future__ import annotations

from dataclasses import dataclass

KIND_OFFSETS = {"jupyter": 0, "ssh": 1}
UID_BASE = 1000


@dataclass(frozen=True)
class PortRange:
    first: int
    last: int

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.first <= port <= self.last

    @property
    def size(self) -> int:
        return self.last - self.first + 1


def default_port(uid: int, kind: str, ports: PortRange) -> int:
    """Two ports per uid, jupyter first, wrapping inside the range."""
    slots = ports.size // len(KIND_OFFSETS)
    if slots < 1:
        raise ValueError(f"port range {ports.first}-{ports.last} is too small for one user")
    slot = (uid - UID_BASE) % slots
    return ports.first + slot * len(KIND_OFFSETS) + KIND_OFFSETS[kind]


@dataclass(frozen=True)
class GpuRequest:
    """What a user asked for: explicit devices (indices or UUIDs) or a count."""

    user: str
    devices: tuple[str, ...] = ()
    count: int = 0


@dataclass(frozen=True)
class GpuAssignment:
    user: str
    devices: tuple[str, ...]


class GpuAllocationError(ValueError):
    pass


def assign_gpus(
    requests: list[GpuRequest], gpu_count: int, shared: bool = False
) -> list[GpuAssignment]:
    """Give count-requests the lowest indices nobody named explicitly.

    Requests are served in the order given (callers sort by uid), so the
    answer is the same on every run for the same inventory. On a host whose
    GPUs are shared, every count-request starts again from GPU 0.
    """
    named = {device for request in requests for device in request.devices}
    free = [str(index) for index in range(gpu_count) if shared or str(index) not in named]
    result = []
    for request in requests:
        if request.count and shared:
            if request.count > gpu_count:
                raise GpuAllocationError(
                    f"user {request.user!r} asks for {request.count} GPU(s) "
                    f"but the host has {gpu_count}"
                )
            result.append(GpuAssignment(request.user, tuple(free[: request.count])))
        elif request.count:
            if request.count > len(free):
                raise GpuAllocationError(
                    f"user {request.user!r} asks for {request.count} GPU(s) but only "
                    f"{len(free)} of {gpu_count} are not assigned to someone else"
                )
            taken, free = free[: request.count], free[request.count :]
            result.append(GpuAssignment(request.user, tuple(taken)))
        else:
            result.append(GpuAssignment(request.user, request.devices))
    return result
