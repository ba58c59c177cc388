"""The container a workspace runs in, as community.docker.docker_container arguments.

Security defaults live here, once: the user's own uid, no capabilities, no
new privileges, no host network or docker.sock, ports on one address only.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .inventory import WorkspacePlan

CONTAINER_PORTS = {"jupyter": 8888, "ssh": 2222}
TOKEN_IN_CONTAINER = "/run/secrets/jupyter-token"
SSH_DIR_IN_CONTAINER = "/gpuprov/ssh"
# NVIDIA's PyTorch containers ask for these: pinned memory and deep recursion.
ULIMITS = ("memlock:-1:-1", "stack:67108864:67108864")
LABEL = "org.gpuprov."


def container_name(user: str, kind: str) -> str:
    return f"gpuprov-{user}-{kind}"


def user_dir(data_root: str, user: str) -> str:
    return f"{data_root.rstrip('/')}/{user}"


def token_file(secrets_dir: str, user: str) -> str:
    return f"{secrets_dir.rstrip('/')}/{user}/jupyter-token"


def container_spec(
    plan: WorkspacePlan,
    image: str,
    data_root: str,
    secrets_dir: str,
    default_shm: str,
    ulimits: tuple[str, ...] = ULIMITS,
) -> dict[str, Any]:
    """docker_container arguments for one workspace, plus a hash of them as a label."""
    home = f"/home/{plan.user}"
    base = user_dir(data_root, plan.user)
    volumes = [f"{base}/home:{home}"]
    env = {"GPUPROV_USER": plan.user, "HOME": home}
    if plan.kind == "jupyter":
        volumes.append(f"{token_file(secrets_dir, plan.user)}:{TOKEN_IN_CONTAINER}:ro")
        env["JUPYTER_TOKEN_FILE"] = TOKEN_IN_CONTAINER
    else:
        volumes.append(f"{base}/ssh:{SSH_DIR_IN_CONTAINER}")
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
            [{"driver": "nvidia", "device_ids": list(plan.gpus), "capabilities": [["gpu"]]}]
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
    }
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    spec["labels"] = {
        f"{LABEL}user": plan.user,
        f"{LABEL}kind": plan.kind,
        f"{LABEL}image": image,
        f"{LABEL}spec": digest,
    }
    return spec
