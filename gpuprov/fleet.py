"""Fast read-only probes of every host at once, over SSH with Fabric.

Connection details come from the same inventory variables Ansible uses
(ansible_host, ansible_user, ansible_port, ansible_ssh_private_key_file and a
ProxyCommand in ansible_ssh_common_args), so whatever Ansible reaches,
`gpuprov status` reaches too.
"""

from __future__ import annotations

import shlex
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko
from fabric import Connection

from .core import inventory, probe


@dataclass(frozen=True)
class Target:
    """How to reach one host, as its inventory says."""

    name: str
    address: str
    user: str | None = None
    port: int = 22
    key_file: str | None = None
    proxy_command: str | None = None
    strict_host_keys: bool = True
    local: bool = False


@dataclass(frozen=True)
class Result:
    target: Target
    status: probe.HostStatus | None
    error: str | None = None


def _ssh_options(common_args: str) -> dict[str, str]:
    """`-o Key=Value` pairs of ansible_ssh_common_args, keys lower-cased."""
    options: dict[str, str] = {}
    words = shlex.split(common_args)
    for index, word in enumerate(words):
        pair = words[index + 1] if word == "-o" and index + 1 < len(words) else None
        if pair is None and word.startswith("-o") and len(word) > 2:
            pair = word[2:]
        if pair and "=" in pair:
            key, value = pair.split("=", 1)
            options[key.strip().lower()] = value.strip()
    return options


def _plain(value: Any) -> str | None:
    # A templated value only means something once Ansible renders it.
    if value is None or "{{" in str(value):
        return None
    return str(value)


def targets(found: inventory.Inventory, hosts: list[str]) -> list[Target]:
    """How to reach each of ``hosts``, from the variables Ansible resolved for it."""
    reached = []
    for host in hosts:
        variables = {name: s.value for name, s in found.hosts[host].items()}
        options = _ssh_options(_plain(variables.get("ansible_ssh_common_args")) or "")
        reached.append(
            Target(
                name=host,
                address=_plain(variables.get("ansible_host")) or host,
                user=_plain(variables.get("ansible_user")),
                port=int(variables.get("ansible_port") or 22),
                key_file=_plain(variables.get("ansible_ssh_private_key_file")),
                proxy_command=options.get("proxycommand"),
                strict_host_keys=options.get("stricthostkeychecking", "yes").lower() != "no",
                local=variables.get("ansible_connection") == "local",
            )
        )
    return reached


def _connection(target: Target, timeout: float) -> Connection:
    connect: dict[str, Any] = {"timeout": timeout, "banner_timeout": timeout}
    if target.key_file:
        connect["key_filename"] = str(Path(target.key_file).expanduser())
    if target.proxy_command:
        command = target.proxy_command.replace("%h", target.address).replace("%p", str(target.port))
        connect["sock"] = paramiko.ProxyCommand(command)
    connection = Connection(
        target.address, user=target.user, port=target.port, connect_kwargs=connect
    )
    # Unknown host keys are refused unless the inventory itself turned the check off.
    connection.client.set_missing_host_key_policy(
        paramiko.RejectPolicy() if target.strict_host_keys else paramiko.AutoAddPolicy()
    )
    connection.client.load_system_host_keys()
    return connection


def probe_one(target: Target, timeout: float = 10.0) -> Result:
    try:
        if target.local:
            output = subprocess.run(
                ["sh", "-c", probe.PROBE_SCRIPT], capture_output=True, text=True, timeout=60
            ).stdout
        else:
            with _connection(target, timeout) as connection:
                output = connection.run(
                    probe.PROBE_SCRIPT, hide=True, warn=True, timeout=60, in_stream=False
                ).stdout
    except (OSError, paramiko.SSHException, subprocess.TimeoutExpired) as error:
        return Result(target, None, f"{type(error).__name__}: {error}")
    return Result(target, probe.parse(output))


def probe_all(found: list[Target], timeout: float = 10.0) -> list[Result]:
    if not found:
        return []
    with ThreadPoolExecutor(max_workers=min(32, len(found))) as pool:
        return list(pool.map(lambda t: probe_one(t, timeout), found))
