#!/usr/bin/python
"""Before a rollout restarts workspaces: find work in progress, tell its users, wait or skip."""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.gpuprov.gpu.plugins.module_utils.gpuprov.core import activity, nvidia
from ansible_collections.gpuprov.gpu.plugins.module_utils.gpuprov.core.workspace import (
    container_name,
    token_file,
)

DOCUMENTATION = r"""
module: gpuprov_workspace_activity
short_description: Find work in progress in workspaces a rollout is about to restart
description:
  - Per workspace, reads Jupyter's kernels and terminals (busy, or active within
    O(idle_minutes)) with the user's token, which never leaves the host, and the container's
    processes from C(docker top), that is open SSH sessions and anything that is not the
    workspace's own services, and which of those processes hold a GPU (C(nvidia-smi
    --query-compute-apps), its services' included). What cannot be read counts as busy.
  - Writes O(notice) into every SSH session of the workspaces that will restart, then applies
    O(policy) to the busy ones, C(wait) polling until they are idle or O(wait_deadline) passes,
    C(skip) leaving them on their image (pending), C(force) restarting them anyway.
  - Never changes anything but the notice on the users' terminals; reports changed when a
    notice was written.
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
    description: The workspaces that would restart (user, uid, kind, port, bind_address).
    type: list
    elements: dict
    required: true
  secrets_dir:
    description: Where each user's Jupyter token file is (gpuprov_token_file).
    type: path
    required: true
  policy:
    description: What to do with a busy workspace.
    type: str
    choices: [wait, skip, force]
    default: wait
  idle_minutes:
    description: A kernel or terminal used within this many minutes counts as busy.
    type: int
    default: 15
  wait_deadline:
    description: For C(wait), seconds to wait for busy workspaces to become idle; then pending.
    type: int
    default: 600
  poll:
    description: Seconds between two looks while waiting.
    type: int
    default: 10
  notice:
    description: The message written into the users' SSH sessions; empty sends none.
    type: str
    default: ""
  notice_seconds:
    description: Seconds between the notice and the restart of a busy workspace.
    type: int
    default: 0
author: gpuprov
"""

EXAMPLES = r"""
- name: Find work in progress before the workspaces move
  gpuprov.gpu.gpuprov_workspace_activity:
    docker_host: unix:///var/run/docker.sock
    workspaces: "{{ workspaces_plan }}"
    secrets_dir: /etc/gpuprov/secrets
    policy: skip
"""

RETURN = r"""
moving:
  description: The containers that may restart now.
  type: list
  returned: always
pending:
  description: Busy containers that keep their image this run, with why.
  type: dict
  returned: always
busy:
  description: Every container found busy, with why (also those moving under force).
  type: dict
  returned: always
"""


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def _api(url: str, token: str) -> str:
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read().decode()


def _terminals(url: str, token: str) -> list:
    try:
        return activity.parse_list(_api(url, token))
    except urllib.error.HTTPError as error:
        if error.code == 404:  # a server without terminals (no terminado) has none
            return []
        raise


def gpus() -> activity.GpuProcesses:
    """The host's GPU compute processes, read once for all its workspaces."""
    try:
        ran = _run(list(nvidia.COMPUTE_APPS_COMMAND))
    except FileNotFoundError:
        return activity.gpu_processes(None, "")
    except subprocess.TimeoutExpired as error:  # a wedged GPU blocks nvidia-smi
        return activity.gpu_processes(124, "", f"no answer within {error.timeout:.0f} s")
    return activity.gpu_processes(ran.returncode, ran.stdout, ran.stderr)


def look(params: dict, workspace: dict, gpu: activity.GpuProcesses) -> activity.Activity:
    name = container_name(workspace["user"], workspace["kind"])
    reasons: list[str] = []
    unknown: list[str] = [gpu.unknown] if gpu.unknown else []
    top = _run(activity.top_command(params["docker_host"], name))
    if top.returncode == 0:
        processes = activity.parse_top(top.stdout)
        reasons += activity.session_reasons(processes)
        reasons += activity.gpu_reasons(processes, gpu.processes)
    else:
        unknown.append(f"docker top failed: {(top.stderr or top.stdout).strip()[:200]}")
    if workspace["kind"] == "jupyter":
        base = f"http://{workspace['bind_address']}:{workspace['port']}/api"
        try:
            with open(token_file(params["secrets_dir"], workspace["user"]), encoding="utf-8") as f:
                token = f.read().strip()
            kernels = activity.parse_list(_api(f"{base}/kernels", token))
            terminals = _terminals(f"{base}/terminals", token)
            now = datetime.now(timezone.utc)  # noqa: UP017 - hosts may run Python 3.10
            reasons += activity.jupyter_reasons(kernels, terminals, now, params["idle_minutes"])
        except (OSError, ValueError, urllib.error.URLError) as error:
            unknown.append(f"Jupyter's kernels could not be read ({error})")
    return activity.Activity(name, tuple(reasons), tuple(unknown))


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "docker_host": {"type": "str", "required": True},
            "workspaces": {"type": "list", "elements": "dict", "required": True},
            "secrets_dir": {"type": "path", "required": True},
            "policy": {"type": "str", "choices": list(activity.POLICIES), "default": "wait"},
            "idle_minutes": {"type": "int", "default": 15},
            "wait_deadline": {"type": "int", "default": 600},
            "poll": {"type": "int", "default": 10},
            "notice": {"type": "str", "default": ""},
            "notice_seconds": {"type": "int", "default": 0},
        },
        supports_check_mode=True,
    )
    params = module.params
    by_name = {container_name(w["user"], w["kind"]): w for w in params["workspaces"]}
    gpu = gpus()
    found = {name: look(params, w, gpu) for name, w in by_name.items()}
    busy = {n: [*a.reasons, *a.unknown] for n, a in found.items() if a.busy or a.unknown}
    noticed = []
    # A skipped workspace does not restart: its users need no notice.
    if params["notice"] and busy and params["policy"] != "skip" and not module.check_mode:
        for name, workspace in by_name.items():
            sent = _run(
                ["docker", "-H", params["docker_host"], "exec", "--user", str(workspace["uid"]),
                 name, "sh", "-c", activity.NOTICE_SCRIPT, "gpuprov-notice", params["notice"]]
            )  # fmt: skip
            if sent.returncode == 0:
                noticed.append(name)
        time.sleep(params["notice_seconds"])
    # A check run looks once and waits for nobody: busy workspaces show as pending.
    policy = "skip" if module.check_mode else params["policy"]
    started = time.monotonic()
    while True:
        waited = time.monotonic() - started
        verdicts = {
            n: activity.decide(policy, a, waited, params["wait_deadline"]) for n, a in found.items()
        }
        if "wait" not in verdicts.values():
            break
        time.sleep(params["poll"])
        gpu = gpus()
        found.update({n: look(params, by_name[n], gpu) for n, v in verdicts.items() if v == "wait"})
    pending = {
        n: [*found[n].reasons, *found[n].unknown] for n, v in verdicts.items() if v == "pending"
    }
    module.exit_json(
        changed=bool(noticed),
        moving=[n for n, v in verdicts.items() if v == "move"],
        pending=pending,
        busy=busy,
        noticed=noticed,
    )


if __name__ == "__main__":
    main()
