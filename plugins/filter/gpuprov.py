"""Jinja filters that hand gpuprov's core logic to the roles.

They run on the controller, where the gpuprov package is installed, so the
roles compute ports, GPUs, pins and labels exactly as `gpuprov check` does.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from ansible.errors import AnsibleFilterError
from ansible_collections.gpuprov.gpu.plugins.module_utils.gpuprov.ansible_inventory import (
    from_variables,
)
from ansible_collections.gpuprov.gpu.plugins.module_utils.gpuprov.core import (
    activity,
    drift,
    host_facts,
    labels,
    limits,
    metrics,
    reports,
    rollout,
    rollout_settings,
    rules,
    user_layer,
    variables,
    workspace,
    workspace_drift,
)
from ansible_collections.gpuprov.gpu.plugins.module_utils.gpuprov.core.plan import WorkspacePlan


def workspaces(
    hostvars: Any, hosts: list[str], host: str, engine: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """This host's workspaces as the inventory plans them (ports, GPUs, mounts).

    Given the engine's `docker info`, the limits the inventory leaves open are
    sized to the host (gpuprov.core.limits).
    """
    first = hostvars[hosts[0]] if hosts else {}
    # The first play's check made every host see the same team values: template them once.
    team = {name: first[name] for name in variables.TEAM_VARIABLES if name in first}
    per_host = {
        name: {
            **team,
            **{k: hostvars[name][k] for k in variables.HOST_VARIABLES if k in hostvars[name]},
        }
        for name in hosts
    }
    planned = rules.fleet(from_variables(per_host, "hostvars")).on_host(host)
    if engine is None:
        return [asdict(w) for w in planned]
    try:
        size = limits.HostSize.from_engine(engine, host)
        return [asdict(limits.fit(w, size)) for w in planned]
    except limits.LimitError as error:
        raise AnsibleFilterError(str(error)) from error


def host_workspaces(host: str, hostvars: Any, hosts: list[str]) -> list[dict[str, Any]]:
    """``workspaces`` with the host first, for ``map`` over a list of hosts."""
    return workspaces(hostvars, hosts, host)


def container_spec(
    plan: dict[str, Any],
    image: str,
    data_root: str,
    secrets_dir: str,
    default_shm: str,
    ulimits: list[str] | None = None,
    log_options: dict[str, str] | None = None,
    host_names: list[str] | None = None,
) -> dict[str, Any]:
    fields = {
        **plan,
        "gpus": tuple(plan["gpus"]),
        "volumes": tuple(plan["volumes"]),
        "ssh_keys": tuple(plan["ssh_keys"]),
        "unlimited": tuple(plan["unlimited"]),
    }
    return workspace.container_spec(
        WorkspacePlan(**fields),
        image,
        data_root,
        secrets_dir,
        default_shm,
        workspace.ULIMITS if ulimits is None else tuple(ulimits),
        log_options,
        tuple(host_names or ()),
    )


def stale(
    plan: list[dict[str, Any]], containers: list[dict[str, Any]], data_root: str
) -> list[dict[str, str]]:
    """gpuprov's containers on the host that the plan no longer has, with their data dir."""
    return workspace.stale_containers(plan, containers, data_root)


def _rollout(rule: Any) -> Any:
    """A rollout rule as a filter: its RolloutError reads as the play's error."""

    def filtered(*args: Any, **kwargs: Any) -> Any:
        try:
            return rule(*args, **kwargs)
        except rollout_settings.RolloutError as error:
            raise AnsibleFilterError(str(error)) from error

    return filtered


def connect_summary(
    plan: list[dict[str, Any]], user: str, host: str, host_address: str, secrets_dir: str
) -> str:
    return workspace.connect_summary(user, host, host_address, plan, secrets_dir)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "gpuprov_workspaces": workspaces,
            "gpuprov_host_workspaces": host_workspaces,
            "gpuprov_default": variables.default,
            "gpuprov_label": labels.label_for,
            "gpuprov_container_spec": container_spec,
            "gpuprov_workspace_network": workspace.network_name,
            "gpuprov_user_dir": workspace.user_dir,
            "gpuprov_user_secrets_dir": workspace.user_secrets_dir,
            "gpuprov_token_file": workspace.token_file,
            "gpuprov_password_hash_file": workspace.password_hash_file,
            "gpuprov_workspaces_stale": stale,
            "gpuprov_running_image": workspace.running_image,
            "gpuprov_workload_skip": host_facts.workload_skip,
            "gpuprov_rollout_moves": rollout.host_moves,
            "gpuprov_rollout_restarting": rollout.restarting,
            "gpuprov_rollout_webhook_body": rollout.webhook_body,
            "gpuprov_rollout_is_canary": rollout.is_canary,
            "gpuprov_rollout_moving": rollout.moving,
            "gpuprov_rollout_held": rollout.held,
            "gpuprov_rollout_activity_summary": rollout.activity_summary,
            "gpuprov_rollout_notice": activity.notice,
            "gpuprov_rollout_plan": rollout.plan_message,
            "gpuprov_rollout_stopped": rollout.stop_message,
            "gpuprov_rollout_outcome": metrics.rollout_outcome,
            "gpuprov_rollout_batches": _rollout(rollout_settings.batches),
            "gpuprov_rollout_serial": _rollout(rollout.serial),
            "gpuprov_rollout_previous_image": rollout.previous_image,
            "gpuprov_rollout_budget": _rollout(rollout.budget_message),
            "gpuprov_rollout_failure_advice": rollout.failure_advice,
            "gpuprov_rollout_moved_hosts": rollout.moved_hosts,
            "gpuprov_rollout_promotion": rollout.promotion_message,
            "gpuprov_rollout_preflight": rollout.preflight_message,
            "gpuprov_rollout_plan_table": _rollout(rollout.plan_table),
            "gpuprov_rollout_run": rollout.controller_run,
            "gpuprov_rollout_lock": rollout.lock_blocker,
            "gpuprov_rollout_expected_holder": rollout.expected_holder,
            "gpuprov_rollback_images": _rollout(rollout.rollback_images),
            "gpuprov_workspace_images": rollout.workspace_images,
            "gpuprov_container_names": rollout.container_names,
            "gpuprov_workspace_image": workspace.image_for,
            "gpuprov_authorized_keys": workspace.authorized_keys,
            "gpuprov_drift_program": lambda _: drift.program(),
            "gpuprov_drift_lines": workspace_drift.preflight_lines,
            "gpuprov_connect_summary": connect_summary,
            "gpuprov_layer_note": user_layer.reinstall_note,
            "gpuprov_report_path": reports.report_dir,
        }
