#!/usr/bin/python
"""A rollout's health gate for new workspaces: torch as the user, then steady for a while."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.gpuprov.gpu.plugins.module_utils.gpuprov.core import workspace_health
from ansible_collections.gpuprov.gpu.plugins.module_utils.gpuprov.core.workspace import (
    PROBE_KEY,
    container_name,
    user_dir,
)

DOCUMENTATION = r"""
module: gpuprov_workspace_health
short_description: Gate new workspace containers on torch working inside them and on staying up
description:
  - For each workspace, runs a small tensor operation with C(python3) inside the container as
    the workspace's user (on its GPUs when it has any); logs in to each SSH workspace as its
    user with gpuprov's probe key, checking the workspace's own host key, and expects the
    reply its authorized_keys line forces; then waits until every container has
    run for O(min_healthy_time) seconds without a restart (RestartCount and StartedAt
    unchanged), within O(healthy_deadline) seconds.
  - On failure the message names each container and carries the last lines of its log.
  - Read-only; never changed. Uses the C(docker) command on the host.
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
options:
  docker_host:
    description: The Docker engine, e.g. unix:///var/run/docker.sock.
    type: str
    required: true
  workspaces:
    description: The host's planned workspaces (user, uid, kind, gpus), from gpuprov_workspaces.
    type: list
    elements: dict
    required: true
  torch:
    description: Run the torch probe (images without torch, such as test images, turn it off).
    type: bool
    default: true
  ssh_login:
    description: Log in to each SSH workspace with the probe key.
    type: bool
    default: true
  probe_key:
    description: The probe's private key on the host (the workspaces role makes it).
    type: path
    default: /etc/gpuprov/probe_ed25519
  data_root:
    description: Where each user's files are on the host (the workspace's host key is there).
    type: path
    default: /srv/gpuprov
  min_healthy_time:
    description: Seconds each container must run unchanged.
    type: int
    default: 5
  healthy_deadline:
    description: Seconds the whole gate may take.
    type: int
    default: 120
author: gpuprov
"""

EXAMPLES = r"""
- name: Check that torch works in each new workspace and that each stays up
  gpuprov.gpu.gpuprov_workspace_health:
    docker_host: unix:///var/run/docker.sock
    workspaces: "{{ workspaces_plan }}"
    min_healthy_time: 10
"""

RETURN = r"""
torch:
  description: What the probe printed in each container (torch version and device).
  type: dict
  returned: always
"""


def run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def ssh_login(params: dict, workspace: dict, name: str) -> str:
    """Why the probe could not log in to the SSH workspace ("" when it could)."""
    ssh_dir = f"{user_dir(params['data_root'], workspace['user'])}/ssh"
    try:
        with open(f"{ssh_dir}/ssh_host_ed25519_key.pub", encoding="utf-8") as handle:
            line = workspace_health.known_hosts_line(
                workspace["bind_address"], int(workspace["port"]), handle.read()
            )
    except (OSError, ValueError) as error:
        return f"{name}: its host key cannot be read ({error})"
    with tempfile.NamedTemporaryFile("w", prefix="gpuprov-known-hosts.", delete=False) as known:
        known.write(line)
    try:
        done = run(
            workspace_health.ssh_probe_command(
                params["probe_key"],
                known.name,
                workspace["user"],
                workspace["bind_address"],
                int(workspace["port"]),
            )
        )
    finally:
        os.unlink(known.name)
    return workspace_health.ssh_failure(name, done.returncode, done.stdout, done.stderr)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "docker_host": {"type": "str", "required": True},
            "workspaces": {"type": "list", "elements": "dict", "required": True},
            "torch": {"type": "bool", "default": True},
            "ssh_login": {"type": "bool", "default": True},
            "probe_key": {"type": "path", "default": PROBE_KEY},
            "data_root": {"type": "path", "default": "/srv/gpuprov"},
            "min_healthy_time": {"type": "int", "default": 5},
            "healthy_deadline": {"type": "int", "default": 120},
        },
        supports_check_mode=True,
    )
    host, params = module.params["docker_host"], module.params
    names = [container_name(w["user"], w["kind"]) for w in params["workspaces"]]
    failures, probed = [], {}
    for workspace, name in zip(params["workspaces"], names, strict=True):
        if params["ssh_login"] and workspace["kind"] == "ssh":
            failure = ssh_login(params, workspace, name)
            if failure:
                failures.append((name, failure))
        if not params["torch"]:
            continue
        command = workspace_health.torch_command(
            host, name, int(workspace["uid"]), bool(workspace.get("gpus"))
        )
        done = run(command)
        failure = workspace_health.torch_failure(name, done.returncode, done.stdout, done.stderr)
        if failure:
            failures.append((name, failure))
        else:
            probed[name] = done.stdout.strip()

    def look() -> dict[str, workspace_health.Life]:
        return workspace_health.parse_inspect(
            run(workspace_health.inspect_command(host, names)).stdout
        )

    if not failures and names:
        unsteady = workspace_health.watch(
            names, look, time.monotonic, time.sleep,
            params["min_healthy_time"], params["healthy_deadline"],
        )  # fmt: skip
        failures = [(problem.split(":", 1)[0], problem) for problem in unsteady]
    if failures:
        parts = []
        for name, problem in failures:
            logs = run(workspace_health.logs_command(host, name))
            tail = (logs.stdout + logs.stderr).strip() or "(the log is empty)"
            parts.append(f"{problem}. Its log ends with:\n{tail}")
        module.fail_json(msg="\n".join(parts), torch=probed)
    module.exit_json(changed=False, torch=probed)


if __name__ == "__main__":
    main()
