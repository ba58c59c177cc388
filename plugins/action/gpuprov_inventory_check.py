"""Run `gpuprov check` on the controller, as the first play of every playbook."""

from __future__ import annotations

from typing import Any

from ansible.plugins.action import ActionBase

from gpuprov import inventory_files
from gpuprov.core import inventory


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp: str | None = None, task_vars: dict[str, Any] | None = None) -> dict:
        result = super().run(tmp, task_vars)
        sources = self._task.args.get("sources") or []
        findings: list[inventory.Finding] = []
        for source in sources:
            try:
                findings += inventory.check(inventory_files.load(source))
            except inventory.InventoryError as error:
                findings += error.findings
        result["changed"] = False
        result["checked"] = list(sources)
        result["errors"] = [str(f) for f in findings]
        if findings:
            result["failed"] = True
            result["msg"] = (
                f"the inventory has {len(findings)} error(s); no host was touched:\n"
                + "\n".join(f"ERROR {f}" for f in findings)
            )
        else:
            result["msg"] = f"inventory ok: {', '.join(sources)}"
        return result
