#!/usr/bin/python
"""Read or write a rollout's record on the host: the lock, the previous images, the history."""

from __future__ import annotations

import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.gpuprov.gpu.plugins.module_utils.gpuprov.core import rollout_state

DOCUMENTATION = r"""
module: gpuprov_rollout_state
short_description: Keep a rollout's record on the host under /var/lib/gpuprov/rollout
description:
  - C(read) returns the state an unfinished rollout left (which run holds the host, each
    workspace's previous image, the target) and the history of finished ones.
  - C(begin) takes the host for this run before any container changes, keeping the previous
    images an interrupted run recorded; it fails when another rollout took the host since
    the pre-flight.
  - C(finish) appends the outcome to C(history.jsonl) and frees the host.
  - Writes are atomic (a temporary file renamed) and serialised with an flock.
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
options:
  action:
    description: What to do.
    type: str
    choices: [read, begin, finish]
    default: read
  dir:
    description: Where the record lives on the host.
    type: path
    default: /var/lib/gpuprov/rollout
  run:
    description: This run (controller, pid, started, id) as gpuprov_rollout_run gives it.
    type: dict
  target:
    description: For C(begin), the image the workspaces move to.
    type: str
  running:
    description: For C(begin), each workspace container's image now, by name.
    type: dict
    default: {}
  expect:
    description: For C(begin), the holder the pre-flight judged gone (empty for none).
    type: str
    default: ""
  outcome:
    description: For C(finish), how the host's rollout ended.
    type: str
    choices: [rolled_out, rolled_back, rollback_failed]
  image:
    description: For C(finish), the image the workspaces run now.
    type: str
author: gpuprov
"""

EXAMPLES = r"""
- name: Read the rollout record
  gpuprov.gpu.gpuprov_rollout_state:
  register: record
"""

RETURN = r"""
state:
  description: The unfinished rollout's record (None when the host is free).
  type: dict
  returned: always
history:
  description: Finished rollouts, oldest first (C(read)).
  type: list
  returned: when action is read
entry:
  description: The history line written (C(finish)).
  type: dict
  returned: when action is finish
"""


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "action": {"type": "str", "choices": ["read", "begin", "finish"], "default": "read"},
            "dir": {"type": "path", "default": rollout_state.STATE_DIR},
            "run": {"type": "dict"},
            "target": {"type": "str"},
            "running": {"type": "dict", "default": {}},
            "expect": {"type": "str", "default": ""},
            "outcome": {"type": "str", "choices": list(rollout_state.OUTCOMES)},
            "image": {"type": "str"},
        },
        required_if=[
            ("action", "begin", ("run", "target")),
            ("action", "finish", ("run", "outcome", "image")),
        ],
        supports_check_mode=True,
    )
    params = module.params
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    try:
        record = rollout_state.read(params["dir"])
        if params["action"] == "read":
            module.exit_json(changed=False, **record)
        if module.check_mode:
            module.exit_json(changed=True, state=record["state"])
        if params["action"] == "begin":
            state, changed = rollout_state.begin(
                params["dir"], params["run"], params["target"], params["running"],
                params["expect"], now,
            )  # fmt: skip
            module.exit_json(changed=changed, state=state)
        entry = rollout_state.finish(
            params["dir"], params["run"], params["outcome"], params["image"], now
        )
        module.exit_json(changed=True, state=None, entry=entry)
    except (rollout_state.RolloutStateError, OSError) as error:
        module.fail_json(msg=str(error))


if __name__ == "__main__":
    main()
