#!/usr/bin/python
"""Check, before any container starts, that each workspace's host port is free or already ours."""

from __future__ import annotations

import errno
import os
import socket

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.gpuprov.gpu.plugins.module_utils.gpuprov.core.sockets import (
    TABLES,
    listening_sockets,
)
from ansible_collections.gpuprov.gpu.plugins.module_utils.gpuprov.core.workspace import (
    port_in_use_message,
    ports_to_probe,
)

DOCUMENTATION = r"""
module: gpuprov_workspace_ports
short_description: Fail with a clear message when a workspace's host port is taken by something else
description:
  - For each planned workspace, a port that its own gpuprov container already publishes is fine;
    a port another gpuprov container publishes is an error naming both; any other port must be
    free, which the module proves by binding it for an instant on the workspace's address.
  - The error names the port, the address, the user, the kind and, when it can be found, the
    process that holds the port, so a person can act without reading Docker's error.
options:
  workspaces:
    description: The planned workspaces of the host (user, kind, port, bind_address).
    type: list
    elements: dict
    required: true
  containers:
    description: The host's gpuprov containers as the engine lists them (Names, State, Ports).
    type: list
    elements: dict
    default: []
author: gpuprov
"""

EXAMPLES = r"""
- name: Check the workspace ports
  gpuprov_workspace_ports:
    workspaces: "{{ workspaces_plan }}"
    containers: "{{ workspaces_existing.containers }}"
"""

RETURN = r"""
probed:
  description: The ports that had to be free and were.
  type: list
  elements: int
  returned: always
"""


def in_use(address: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # Like a server: sockets in TIME_WAIT do not count, a listener does.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def holder(port: int) -> str:
    """'process NAME (pid N)' listening on the port, when /proc tells; else ''."""
    inodes: set[str] = set()
    for table in TABLES:
        try:
            with open(table, encoding="ascii") as handle:
                inodes |= listening_sockets(handle.read(), port)
        except OSError:
            continue
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") in inodes for fd in fds):
                with open(f"/proc/{pid}/comm", encoding="utf-8") as handle:
                    return f"process {handle.read().strip()} (pid {pid})"
        except OSError:
            continue
    return ""


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "workspaces": {"type": "list", "elements": "dict", "required": True},
            "containers": {"type": "list", "elements": "dict", "default": []},
        },
        supports_check_mode=True,
    )
    probe, errors = ports_to_probe(module.params["workspaces"], module.params["containers"])
    for plan in probe:
        try:
            busy = in_use(plan["bind_address"], int(plan["port"]))
        except OSError as error:
            module.fail_json(
                msg=f"cannot test port {plan['port']} on {plan['bind_address']} for user "
                f"'{plan['user']}': {error.strerror} (is the address on this host?)"
            )
        if busy:
            errors.append(port_in_use_message(plan, holder(int(plan["port"]))))
    if errors:
        module.fail_json(msg="\n".join(errors), errors=errors)
    module.exit_json(changed=False, probed=[int(p["port"]) for p in probe])


if __name__ == "__main__":
    main()
