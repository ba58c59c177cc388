"""Run `gpuprov check` on the controller, as the first play of every playbook."""

from __future__ import annotations

from typing import Any

from ansible.plugins.action import ActionBase
from ansible_collections.gpuprov.gpu.plugins.module_utils.gpuprov.ansible_inventory import (
    from_variables,
    vars_file_findings,
)
from ansible_collections.gpuprov.gpu.plugins.module_utils.gpuprov.core import rules
from ansible_collections.gpuprov.gpu.plugins.module_utils.gpuprov.core.inventory import (
    InventoryError,
)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp: str | None = None, task_vars: dict[str, Any] | None = None) -> dict:
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        sources = [str(s) for s in self._task.args.get("sources") or []]
        hostvars = task_vars["hostvars"]
        # Every host of the inventory, also under --limit: the rules span hosts (ports, GPUs,
        # team values), and the variables are the play's own, -e and playbook group_vars too.
        groups = task_vars["groups"]
        try:
            found = from_variables(
                {host: hostvars.raw_get(host) for host in groups["all"]},
                ", ".join(sources) or "the inventory",
                groups,
            )
        except InventoryError as error:
            findings, warnings = error.findings, []
        else:
            found.findings += vars_file_findings(sources, set(groups["all"]), set(groups))
            findings, warnings = rules.verdict(found, rules.check(found))
        result["changed"] = False
        result["checked"] = sources
        result["errors"] = [str(f) for f in findings]
        if warnings:
            # Ansible prints these as [WARNING] lines; gpuprov_strict makes them errors.
            result["warnings"] = [str(w) for w in warnings]
        if findings:
            result["failed"] = True
            result["msg"] = (
                f"the inventory has {len(findings)} error(s); no host was touched:\n"
                + "\n".join(f"ERROR {f}" for f in findings)
            )
        else:
            result["msg"] = f"inventory ok: {found.source} ({len(found.hosts)} host(s))"
        return result
