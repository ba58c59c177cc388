#!/usr/bin/python
"""Merge the NVIDIA runtime into Docker's daemon.json, keeping the keys already there."""

from __future__ import annotations

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.gpuprov.gpu.plugins.module_utils.gpuprov.core import docker_config

DOCUMENTATION = r"""
module: gpuprov_docker_runtime
short_description: Configure the nvidia runtime in /etc/docker/daemon.json by merging
description:
  - Adds C(runtimes.nvidia) (and C(default-runtime) when asked) to Docker's daemon.json.
    Every other key stays as it is, so settings a person made survive. Does not restart
    Docker; C(restart_needed) says whether the running engine lacks what the file configures.
  - Supports check mode and diff mode.
options:
  path:
    description: Docker's daemon configuration file.
    type: path
    default: /etc/docker/daemon.json
  runtime_path:
    description: The runtime binary Docker runs for the nvidia runtime.
    type: str
    default: nvidia-container-runtime
  set_default:
    description: Also make nvidia the default runtime.
    type: bool
    default: false
  docker_info:
    description: Docker's C(host_info), to tell whether a restart is needed.
    type: dict
author: gpuprov
"""

EXAMPLES = r"""
- name: Configure Docker's nvidia runtime
  gpuprov_docker_runtime:
    docker_info: "{{ info.host_info }}"
  register: runtime
"""

RETURN = r"""
config:
  description: The daemon.json content after the merge.
  type: dict
  returned: always
restart_needed:
  description: Whether the running Docker lacks the runtime (or default) the file configures.
  type: bool
  returned: always
"""


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "default": "/etc/docker/daemon.json"},
            "runtime_path": {"type": "str", "default": "nvidia-container-runtime"},
            "set_default": {"type": "bool", "default": False},
            "docker_info": {"type": "dict"},
        },
        supports_check_mode=True,
    )
    path = module.params["path"]
    try:
        with open(path, encoding="utf-8") as handle:
            before_text = handle.read()
    except FileNotFoundError:
        before_text = None
    except OSError as error:
        module.fail_json(msg=f"cannot read {path}: {error}")
    try:
        current = docker_config.load(before_text)
        merged = docker_config.merge_nvidia_runtime(
            current, module.params["runtime_path"], module.params["set_default"]
        )
    except docker_config.DaemonJsonError as error:
        module.fail_json(msg=str(error))
    changed = merged != current
    result = {
        "changed": changed,
        "config": merged,
        "restart_needed": docker_config.restart_needed(merged, module.params["docker_info"]),
    }
    if changed:
        after_text = docker_config.dump(merged)
        result["diff"] = {
            "before": before_text or "",
            "after": after_text,
            "before_header": path,
            "after_header": path,
        }
        if not module.check_mode:
            directory = os.path.dirname(path)
            os.makedirs(directory, exist_ok=True)
            fd, temp = tempfile.mkstemp(dir=directory, prefix=".daemon.json.")
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(after_text)
            os.chmod(temp, 0o644)
            module.atomic_move(temp, path)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
