"""Jinja filters that hand gpuprov's core logic to the roles.

They run on the controller, where the gpuprov package is installed, so the
roles compute ports, GPUs, pins and labels exactly as `gpuprov check` does.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from gpuprov.core import image_build, inventory, workspace


def workspaces(hostvars: Any, hosts: list[str], host: str) -> list[dict[str, Any]]:
    """This host's workspaces as the inventory plans them (ports, GPUs, mounts)."""
    tree = inventory.Tree(source="the inventory")
    every = tree.group("all")
    every.hosts.extend(hosts)
    first = hostvars[hosts[0]] if hosts else {}
    for name in inventory.TEAM_VARIABLES:
        if name in first:
            every.vars[name] = inventory.Sourced(first[name], "group_vars/all")
    for name in hosts:
        tree.host_vars[name] = {
            key: inventory.Sourced(hostvars[name][key], f"host_vars/{name}")
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
    fields = {**plan, "gpus": tuple(plan["gpus"]), "volumes": tuple(plan["volumes"]),
              "ssh_keys": tuple(plan["ssh_keys"])}
    return workspace.container_spec(
        inventory.WorkspacePlan(**fields), image, data_root, secrets_dir, default_shm,
        tuple(ulimits),
    )


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "gpuprov_workspaces": workspaces,
            "gpuprov_container_spec": container_spec,
            "gpuprov_image_requirements": image_build.requirements,
            "gpuprov_image_labels": image_build.labels,
        }
