#!/usr/bin/python
"""Write a section of gpuprov.prom on a host, atomically, for node_exporter's textfile collector."""

from __future__ import annotations

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.gpuprov.gpu.plugins.module_utils.gpuprov.core import metrics

DOCUMENTATION = r"""
module: gpuprov_metrics
short_description: Write a section of gpuprov.prom (Prometheus text format) on the host
description:
  - Replaces one section of C(DIR/gpuprov.prom) (verify, workspaces or rollout) and keeps
    the others, writing a temporary file in DIR and renaming it over the old one, so
    node_exporter never reads half a file. The series are gpuprov.core.metrics's.
  - Changed only when the file's content changes. Supports check mode and diff.
options:
  dir:
    description:
      - node_exporter's textfile directory (C(--collector.textfile.directory)); created 0755.
    type: path
    required: true
  section:
    description: Which section to write.
    type: str
    required: true
    choices: [verify, workspaces, rollout]
  report:
    description: For C(verify), host_verify's JSON report.
    type: dict
  workspaces:
    description: For C(workspaces), the host's planned workspaces (user, kind, port).
    type: list
    elements: dict
  image:
    description: For C(workspaces) and C(rollout), the image the workspaces run.
    type: str
    default: ""
  pinned:
    description: For C(workspaces), the pinned image as the host runs it.
    type: str
    default: ""
  outcome:
    description: For C(rollout), how the rollout on the host ended.
    type: str
    choices: [rolled_out, rolled_back, rollback_failed, stopped]
"""

EXAMPLES = r"""
- name: Record in gpuprov.prom how the rollout ended on this host
  gpuprov.gpu.gpuprov_metrics:
    dir: /var/lib/node_exporter/textfile_collector
    section: rollout
    outcome: rolled_out
    image: registry.example:5000/team/pytorch@sha256:0123
"""

RETURN = r"""
path:
  description: The file written.
  type: str
  returned: always
"""


def families(params: dict) -> list[metrics.Family]:
    if params["section"] == "verify":
        return metrics.verify_families(params["report"] or {})
    if params["section"] == "workspaces":
        return metrics.workspace_families(
            params["workspaces"] or [], params["image"], params["pinned"]
        )
    return metrics.rollout_families(params["outcome"], params["image"])


def write_atomically(path: str, content: str) -> None:
    folder = os.path.dirname(path)
    handle, temporary = tempfile.mkstemp(prefix=".gpuprov.prom.", dir=folder)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(content)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "dir": {"type": "path", "required": True},
            "section": {
                "type": "str",
                "required": True,
                "choices": ["verify", "workspaces", "rollout"],
            },
            "report": {"type": "dict"},
            "workspaces": {"type": "list", "elements": "dict"},
            "image": {"type": "str", "default": ""},
            "pinned": {"type": "str", "default": ""},
            "outcome": {"type": "str", "choices": list(metrics.ROLLOUT_OUTCOMES)},
        },
        required_if=[
            ("section", "verify", ("report",)),
            ("section", "workspaces", ("workspaces",)),
            ("section", "rollout", ("outcome",)),
        ],
        supports_check_mode=True,
    )
    path = os.path.join(module.params["dir"], metrics.FILE_NAME)
    try:
        with open(path, encoding="utf-8") as current:
            before = current.read()
    except FileNotFoundError:
        before = ""
    after = metrics.merge(before, module.params["section"], families(module.params))
    changed = after != before
    if changed and not module.check_mode:
        os.makedirs(module.params["dir"], mode=0o755, exist_ok=True)
        write_atomically(path, after)
    diff = {"before": before, "after": after, "before_header": path, "after_header": path}
    module.exit_json(changed=changed, path=path, diff=diff if changed else {})


if __name__ == "__main__":
    main()
