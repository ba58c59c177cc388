"""What a valid inventory asks of each host: the host plans and every workspace."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .allocation import GpuAssignment, GpuRequest, PortRange, assign_gpus, default_port
from .inventory import Inventory, Sourced, subject_of
from .variables import DEFAULTS, UNLIMITED


@dataclass(frozen=True)
class HostPlan:
    """What the inventory expects of one host."""

    name: str
    gpu_required: bool
    gpu_count: int | None
    gpu_model: str | None
    gpu_shared: bool
    ports: PortRange
    bind_address: str
    data_root: str
    docker_manage: bool
    volume_roots: tuple[str, ...] = ()
    limits: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkspacePlan:
    user: str
    uid: int
    gid: int
    host: str
    kind: str
    port: int
    bind_address: str
    gpus: tuple[str, ...]
    volumes: tuple[dict[str, Any], ...]
    limits: dict[str, Any]
    ssh_keys: tuple[str, ...]
    # Whether the inventory gives these credentials; the secrets never enter the plan.
    token_given: bool = False
    password_hash_given: bool = False
    # The SSH workspace lets its user forward ports to their own services (-L, -W).
    port_forwarding: bool = False
    # The limits the inventory lifts: no host-sized default fills them in.
    unlimited: tuple[str, ...] = ()


@dataclass(frozen=True)
class Fleet:
    hosts: dict[str, HostPlan]
    workspaces: tuple[WorkspacePlan, ...]
    image: dict[str, Any]

    def on_host(self, host: str) -> list[WorkspacePlan]:
        return [w for w in self.workspaces if w.host == host]


def setting(variables: dict[str, Sourced], name: str) -> Any:
    """A host's value of a shared variable, or its default."""
    found = variables.get(name)
    return DEFAULTS[name] if found is None else found.value


def host_plan(name: str, variables: dict[str, Sourced]) -> HostPlan:
    gpu = variables["gpuprov_gpu"].value if "gpuprov_gpu" in variables else {}
    ports = setting(variables, "gpuprov_port_range")
    return HostPlan(
        name=name,
        gpu_required=gpu.get("required", True),
        gpu_count=gpu.get("count"),
        gpu_model=gpu.get("model"),
        gpu_shared=gpu.get("shared", False),
        ports=PortRange(ports["first"], ports["last"]),
        bind_address=setting(variables, "gpuprov_bind_address"),
        data_root=setting(variables, "gpuprov_data_root"),
        docker_manage=setting(variables, "gpuprov_docker_manage"),
        volume_roots=tuple(setting(variables, "gpuprov_volume_roots")),
        limits=dict(setting(variables, "gpuprov_workspace_limits")),
    )


def _merged_limits(host: HostPlan, user: dict[str, Any]) -> dict[str, Any]:
    return {**host.limits, **user.get("limits", {})}


def effective_limits(host: HostPlan, user: dict[str, Any]) -> dict[str, Any]:
    """The host's limits with the user's over them, key by key; unlimited lifts one."""
    return {k: v for k, v in _merged_limits(host, user).items() if v != UNLIMITED}


def lifted_limits(host: HostPlan, user: dict[str, Any]) -> tuple[str, ...]:
    return tuple(sorted(k for k, v in _merged_limits(host, user).items() if v == UNLIMITED))


def team_value(inventory: Inventory, name: str) -> Sourced | None:
    """A team variable as group 'all' sets it, else as most hosts see it.

    The rules make every host see the same value; until then, the copy in
    group_vars/all is the one the others are reported against.
    """
    counts: dict[str, tuple[bool, int, Sourced]] = {}
    for host, variables in sorted(inventory.hosts.items()):
        found = variables.get(name)
        if found is not None:
            for_all = subject_of(found.origin, host) == "group 'all'"
            _, seen, first = counts.get(found.file, (for_all, 0, found))
            counts[found.file] = (for_all, seen + 1, first)
    if not counts:
        return None
    return max(counts.values(), key=lambda entry: entry[:2])[2]


def workspace_port(user: dict[str, Any], workspace: dict[str, Any], ports: PortRange) -> int:
    """The workspace's fixed port, or the one its user's uid gives it."""
    return workspace.get("port") or default_port(user["uid"], workspace["kind"], ports)


def requests(users: list[dict[str, Any]]) -> list[GpuRequest]:
    found = []
    for user in users:
        gpus = user["gpus"]
        if isinstance(gpus, dict):
            found.append(GpuRequest(user["name"], count=gpus["count"]))
        else:
            found.append(GpuRequest(user["name"], devices=tuple(str(d) for d in gpus)))
    return found


def users_by_host(users: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Users of each host in uid order: every per-host rule and the plan walk them so."""
    placed: dict[str, list[dict[str, Any]]] = {}
    for user in sorted(users, key=lambda u: u["uid"] if isinstance(u, dict) else 0):
        if isinstance(user, dict):
            placed.setdefault(user.get("host"), []).append(user)
    return placed


def build(inventory: Inventory) -> Fleet:
    """The plan of an inventory the rules accepted."""
    hosts = {name: host_plan(name, v) for name, v in sorted(inventory.hosts.items())}
    users_value = team_value(inventory, "gpuprov_users")
    image = team_value(inventory, "gpuprov_image")
    placed = users_by_host(users_value.value if users_value else [])
    workspaces: list[WorkspacePlan] = []
    for host in hosts.values():
        on_host = placed.get(host.name, [])
        with_gpus = [u for u in on_host if u.get("gpus")]
        assigned: dict[str, GpuAssignment] = {}
        if with_gpus:
            count = host.gpu_count if host.gpu_count is not None else 0
            assigned = {a.user: a for a in assign_gpus(requests(with_gpus), count, host.gpu_shared)}
        for user in on_host:
            for workspace in user["workspaces"]:
                workspaces.append(
                    WorkspacePlan(
                        user=user["name"],
                        uid=user["uid"],
                        gid=user.get("gid", user["uid"]),
                        host=host.name,
                        kind=workspace["kind"],
                        port=workspace_port(user, workspace, host.ports),
                        bind_address=host.bind_address,
                        gpus=assigned[user["name"]].devices if user["name"] in assigned else (),
                        volumes=tuple(user.get("volumes", [])),
                        limits=effective_limits(host, user),
                        unlimited=lifted_limits(host, user),
                        ssh_keys=tuple(user.get("ssh_keys", [])),
                        token_given=bool(user.get("jupyter_token")),
                        password_hash_given=bool(user.get("jupyter_password_hash")),
                        port_forwarding=user.get("ssh_port_forwarding", False),
                    )
                )
    return Fleet(hosts=hosts, workspaces=tuple(workspaces), image=image.value if image else {})
