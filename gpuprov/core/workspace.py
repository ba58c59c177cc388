"""The container a workspace runs in, as community.docker.docker_container arguments.

Security defaults live here, once: the user's own uid, no capabilities, no
new privileges, no host network or docker.sock, ports on one address only.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Mapping, Sequence
from typing import Any

from .labels import IMAGE_LABEL, KIND_LABEL, SPEC_LABEL, USER_LABEL
from .plan import WorkspacePlan

CONTAINER_PORTS = {"jupyter": 8888, "ssh": 2222}
TOKEN_IN_CONTAINER = "/run/secrets/jupyter-token"
PASSWORD_HASH_IN_CONTAINER = "/run/secrets/jupyter-password-hash"
SSH_DIR_IN_CONTAINER = "/gpuprov/ssh"
# NVIDIA's PyTorch containers ask for these: pinned memory and deep recursion.
ULIMITS = ("memlock:-1:-1", "stack:67108864:67108864")
# json-file keeps every line a notebook prints unless told otherwise, until the
# host's disk is full: rotate at the sizes of Docker's own "local" log driver.
LOG_DRIVER = "json-file"
LOG_OPTIONS = {"max-size": "20m", "max-file": "5"}
# The root filesystem is read-only (CIS 5.13): what a user keeps goes to their
# volume, never the container's layer. /tmp is the one writable path the image
# needs (the entrypoint's nss_wrapper and server configs); it lives in memory and
# counts against the memory limit, so it is bounded.
TMP_SIZE = "1g"


def container_name(user: str, kind: str) -> str:
    return f"gpuprov-{user}-{kind}"


def _name(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return bool(host)
    return False


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def network_name(user: str) -> str:
    """The user's own bridge network: Docker isolates bridges from each other, so one
    user's workspaces cannot open another user's ports; a user's own two can talk."""
    return f"gpuprov-{user}"


def user_dir(data_root: str, user: str) -> str:
    return f"{data_root.rstrip('/')}/{user}"


def user_secrets_dir(secrets_dir: str, user: str) -> str:
    """The user's folder of credential files on the host (root's, readable by the user)."""
    return f"{secrets_dir.rstrip('/')}/{user}"


def token_file(secrets_dir: str, user: str) -> str:
    return f"{user_secrets_dir(secrets_dir, user)}/jupyter-token"


def password_hash_file(secrets_dir: str, user: str) -> str:
    return f"{user_secrets_dir(secrets_dir, user)}/jupyter-password-hash"


def container_spec(
    plan: WorkspacePlan,
    image: str,
    data_root: str,
    secrets_dir: str,
    default_shm: str,
    ulimits: tuple[str, ...] = ULIMITS,
    log_options: Mapping[str, str] | None = None,
    host_names: Sequence[str] = (),
) -> dict[str, Any]:
    """docker_container arguments for one workspace, plus a hash of them as a label.

    `log_options` replaces LOG_OPTIONS (json-file's options, e.g. max-size) when given.
    """
    home = f"/home/{plan.user}"
    base = user_dir(data_root, plan.user)
    volumes = [f"{base}/home:{home}"]
    env = {"GPUPROV_USER": plan.user, "HOME": home}
    if plan.kind == "jupyter":
        volumes.append(f"{token_file(secrets_dir, plan.user)}:{TOKEN_IN_CONTAINER}:ro")
        env["JUPYTER_TOKEN_FILE"] = TOKEN_IN_CONTAINER
        # Jupyter refuses a Host header that is not loopback or one of these names
        # (DNS rebinding). It never accepts an address that is not loopback, so a
        # workspace bound to one, reached by that address, must allow remote hosts.
        env["GPUPROV_JUPYTER_HOSTNAMES"] = ",".join(sorted(n for n in host_names if _name(n)))
        env["GPUPROV_JUPYTER_REMOTE"] = "false" if _loopback(plan.bind_address) else "true"
        if plan.password_hash_given:
            hashed = password_hash_file(secrets_dir, plan.user)
            volumes.append(f"{hashed}:{PASSWORD_HASH_IN_CONTAINER}:ro")
            env["JUPYTER_PASSWORD_HASH_FILE"] = PASSWORD_HASH_IN_CONTAINER
    else:
        volumes.append(f"{base}/ssh:{SSH_DIR_IN_CONTAINER}")
        # sshd's AllowTcpForwarding, read by the image's entrypoint.
        env["GPUPROV_SSH_FORWARDING"] = "local" if plan.port_forwarding else "no"
    volumes += [
        f"{v['source']}:{v['target']}:{'ro' if v.get('read_only') else 'rw'}" for v in plan.volumes
    ]
    spec: dict[str, Any] = {
        "name": container_name(plan.user, plan.kind),
        "image": image,
        "command": [plan.kind],
        "user": f"{plan.uid}:{plan.gid}",
        "env": env,
        "volumes": volumes,
        "published_ports": [f"{plan.bind_address}:{plan.port}:{CONTAINER_PORTS[plan.kind]}"],
        "device_requests": (
            # count 0 as the engine reports it back, so a second run sees no change.
            [
                {
                    "driver": "nvidia",
                    "count": 0,
                    "device_ids": list(plan.gpus),
                    "capabilities": [["gpu"]],
                }
            ]
            if plan.gpus
            else []
        ),
        "shm_size": plan.limits.get("shm_size", default_shm),
        "memory": plan.limits.get("memory"),
        "cpus": plan.limits.get("cpus"),
        "pids_limit": plan.limits.get("pids"),
        "ulimits": list(ulimits),
        "security_opts": ["no-new-privileges"],
        "cap_drop": ["ALL"],
        "restart_policy": "unless-stopped",
        "network": network_name(plan.user),
        "read_only": True,
        "tmpfs": [f"/tmp:rw,nosuid,nodev,size={plan.limits.get('tmp_size', TMP_SIZE)}"],
        "log_driver": LOG_DRIVER,
        # Docker keeps log options as strings: "5", not 5, or every run differs.
        "log_options": {k: str(v) for k, v in (log_options or LOG_OPTIONS).items()},
    }
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    spec["labels"] = {
        USER_LABEL: plan.user,
        KIND_LABEL: plan.kind,
        IMAGE_LABEL: image,
        SPEC_LABEL: digest,
    }
    return spec


# ---------------------------------------------------------------- life cycle


def _container_name(container: dict[str, Any]) -> str:
    """A container's name from the engine's list API (`Names: ["/name"]`) or inspect (`Name`)."""
    names = container.get("Names") or [container.get("Name", "")]
    return str(names[0]).lstrip("/")


def stale_containers(
    planned: list[dict[str, Any]], containers: list[dict[str, Any]], data_root: str
) -> list[dict[str, str]]:
    """gpuprov's containers on a host that the inventory no longer asks for.

    `containers` are the engine's list entries (with Labels). Only containers
    carrying gpuprov's user label are considered, so nothing else is touched;
    the answer says where each user's data stays, because it is never deleted.
    """
    wanted = {container_name(p["user"], p["kind"]) for p in planned}
    stale = []
    for container in containers:
        labels = container.get("Labels") or {}
        user = labels.get(USER_LABEL)
        name = _container_name(container)
        if user is None or name in wanted:
            continue
        stale.append(
            {
                "name": name,
                "user": user,
                "kind": labels.get(KIND_LABEL, "?"),
                "data": user_dir(data_root, user),
            }
        )
    return sorted(stale, key=lambda s: s["name"])


def published_ports(containers: list[dict[str, Any]]) -> dict[int, str]:
    """Host port -> name of the running gpuprov container that publishes it."""
    held: dict[int, str] = {}
    for container in containers:
        if container.get("State") not in (None, "running"):
            continue
        for port in container.get("Ports") or []:
            if port.get("PublicPort"):
                held[int(port["PublicPort"])] = _container_name(container)
    return held


def ports_to_probe(
    planned: list[dict[str, Any]], containers: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[str]]:
    """Split the planned ports into those to test on the host and clear errors.

    A port its own container already publishes needs no test, nor one a removed
    user's container holds (it is removed first). A port another planned gpuprov
    container holds is an error naming both; every other port must be free,
    which only the host can tell (the module tries to bind it). A workspace whose
    own container crash-loops (state "restarting", as after a bad image) is not
    tested either: its port comes and goes with each restart, and the container
    is replaced before the new one binds it.
    """
    held = published_ports(containers)
    restarting = {_container_name(c) for c in containers if c.get("State") == "restarting"}
    names = {container_name(p["user"], p["kind"]) for p in planned}
    probe, errors = [], []
    for plan in planned:
        name = container_name(plan["user"], plan["kind"])
        owner = held.get(plan["port"])
        if name in restarting and owner is None:
            continue
        if owner == name or (owner is not None and owner not in names):
            # Its own container, or a removed user's, which goes before anything starts.
            continue
        if owner is not None:
            errors.append(
                f"port {plan['port']} on {plan['bind_address']} is held by gpuprov container "
                f"'{owner}', but user '{plan['user']}' needs it for the {plan['kind']} "
                f"workspace: give one of them another port in the inventory"
            )
            continue
        probe.append(plan)
    return probe, errors


def port_in_use_message(plan: dict[str, Any], holder: str = "") -> str:
    """The error for a host port taken by something that is not gpuprov's."""
    by = f" by {holder}" if holder else ""
    return (
        f"port {plan['port']} on {plan['bind_address']} is already in use{by}: user "
        f"'{plan['user']}' needs it for the {plan['kind']} workspace. Stop what listens there, "
        f"or set another port for the workspace (gpuprov_users: {plan['user']}: "
        f"workspaces: - kind: {plan['kind']} port: N)"
    )


# ---------------------------------------------------------------- how to connect


def connect_summary(
    user: str,
    host: str,
    host_address: str,
    planned: list[dict[str, Any]],
    secrets_dir: str,
) -> str:
    """How one user reaches their workspaces on one host, with no secret in it.

    Workspaces bound to a loopback address are reached through an SSH tunnel or
    jump over the host itself; others directly at their bind address.
    """
    mine = sorted((p for p in planned if p["user"] == user), key=lambda p: p["kind"])
    on_this_machine = host_address in ("localhost", "::1") or host_address.startswith("127.")
    lines = [f"gpuprov workspaces of {user} on {host}", ""]
    for plan in mine:
        port, address = plan["port"], plan["bind_address"]
        # Loopback on a remote host: reached over SSH through that host.
        local = (address.startswith("127.") or address == "::1") and not on_this_machine
        if plan["kind"] == "jupyter":
            lines.append("Jupyter")
            if local:
                lines += [
                    f"  1. open a tunnel: ssh -N -L {port}:{address}:{port} {host_address}",
                    f"  2. browse:        http://127.0.0.1:{port}/lab",
                ]
            else:
                lines.append(f"  browse: http://{address}:{port}/lab")
            source = (
                "the token your administrator gave you (kept in Ansible Vault)"
                if plan.get("token_given")
                else f"on {host}: cat {token_file(secrets_dir, user)} (readable by you and root)"
            )
            lines.append(f"  token: {source}")
            if plan.get("password_hash_given"):
                lines.append("  or log in with the Jupyter password you chose")
            lines.append("")
        else:
            alias = f"gpuprov-{user}-{host}"
            lines.append("SSH")
            if local:
                lines.append(f"  ssh -J {host_address} -p {port} {user}@{address}")
            else:
                lines.append(f"  ssh -p {port} {user}@{address}")
            lines += ["", "  ~/.ssh/config:", f"  Host {alias}"]
            lines += [f"      HostName {address}", f"      Port {port}", f"      User {user}"]
            if local:
                lines.append(f"      ProxyJump {host_address}")
            lines += [f"      HostKeyAlias {alias}", "      IdentitiesOnly yes", ""]
            lines.append(f"  then: ssh {alias}")
            lines.append("")
    lines.append(f"Your files: {plan_data_hint(mine)}")
    return "\n".join(lines).rstrip() + "\n"


def plan_data_hint(mine: list[dict[str, Any]]) -> str:
    """Where a user's files live inside the workspaces."""
    if not mine:
        return "no workspace"
    return f"/home/{mine[0]['user']} in every workspace (kept on the host across upgrades)"


def running_image(containers: list[dict[str, Any]]) -> str:
    """The image gpuprov's workspaces on a host run now ("" when none runs).

    A rollout rolls back to it. Should a half-finished run have left two images,
    the one most workspaces run wins (ties: the name sorting first, so the answer
    does not depend on the engine's list order).
    """
    counts: dict[str, int] = {}
    for container in containers:
        labels = container.get("Labels") or {}
        image = labels.get(IMAGE_LABEL)
        if labels.get(USER_LABEL) is None or not image:
            continue
        counts[image] = counts.get(image, 0) + 1
    if not counts:
        return ""
    return min(counts, key=lambda image: (-counts[image], image))


def image_for(plan: Mapping[str, Any], image: str, overrides: Mapping[str, str]) -> str:
    """The image one workspace runs: its own from ``overrides`` (a rollback), else ``image``."""
    return overrides.get(container_name(plan["user"], plan["kind"])) or image


# The rollout's health gate logs in to every SSH workspace with a key gpuprov
# keeps on the host (root only). Its line in the workspace's authorized_keys
# (gpuprov's file under /gpuprov/ssh, never the user's home) runs this and
# nothing else: no shell, no forwarding, no pty.
PROBE_KEY = "/etc/gpuprov/probe_ed25519"
PROBE_REPLY = "gpuprov-probe-ok"


def authorized_keys(ssh_keys: Sequence[str], probe_public_key: str = "") -> str:
    """An SSH workspace's authorized_keys: the user's keys, then gpuprov's probe key."""
    lines = [key.strip() for key in ssh_keys]
    if probe_public_key.strip():
        lines.append(f'restrict,command="echo {PROBE_REPLY}" {probe_public_key.strip()}')
    return "\n".join(lines) + "\n"
