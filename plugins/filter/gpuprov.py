"""Jinja filters that hand gpuprov's core logic to the roles.

They run on the controller, where the gpuprov package is installed, so the
roles compute ports, GPUs, pins and labels exactly as `gpuprov check` does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from gpuprov.core import image_build, inventory, workspace


def _plain(value: Any) -> Any:
    """Ansible's lazy templated containers as plain dicts and lists, for the pure core."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bool | int | float) or value is None:
        return value
    return str(value)


def workspaces(hostvars: Any, hosts: list[str], host: str) -> list[dict[str, Any]]:
    """This host's workspaces as the inventory plans them (ports, GPUs, mounts)."""
    tree = inventory.Tree(source="the inventory")
    every = tree.group("all")
    every.hosts.extend(hosts)
    first = hostvars[hosts[0]] if hosts else {}
    for name in inventory.TEAM_VARIABLES:
        if name in first:
            every.vars[name] = inventory.Sourced(_plain(first[name]), "group_vars/all")
    for name in hosts:
        tree.host_vars[name] = {
            key: inventory.Sourced(_plain(hostvars[name][key]), f"host_vars/{name}")
            for key in inventory.HOST_VARIABLES
            if key in hostvars[name]
        }
    return [asdict(w) for w in inventory.fleet(tree).on_host(host)]


def container_spec(
    plan: dict[str, Any],
    image: str,
    data_root: str,
    secrets_dir: str,
    default_shm: str,
    ulimits: list[str],
) -> dict[str, Any]:
    fields = {
        **plan,
        "gpus": tuple(plan["gpus"]),
        "volumes": tuple(plan["volumes"]),
        "ssh_keys": tuple(plan["ssh_keys"]),
    }
    return workspace.container_spec(
        inventory.WorkspacePlan(**fields),
        image,
        data_root,
        secrets_dir,
        default_shm,
        tuple(ulimits),
    )


def stale(
    plan: list[dict[str, Any]], containers: list[dict[str, Any]], data_root: str
) -> list[dict[str, str]]:
    """gpuprov's containers on the host that the plan no longer has, with their data dir."""
    return workspace.stale_containers(plan, containers, data_root)


def connect_summary(
    plan: list[dict[str, Any]], user: str, host: str, host_address: str, secrets_dir: str
) -> str:
    return workspace.connect_summary(user, host, host_address, plan, secrets_dir)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "gpuprov_workspaces": workspaces,
            "gpuprov_container_spec": container_spec,
            "gpuprov_workspaces_stale": stale,
            "gpuprov_running_image": workspace.running_image,
            "gpuprov_connect_summary": connect_summary,
            "gpuprov_image_requirements": image_build.requirements,
            "gpuprov_image_labels": image_build.labels,
        }
