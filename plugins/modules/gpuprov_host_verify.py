#!/usr/bin/python
"""Evaluate gpuprov's host gates over gathered facts: checks, a table and a JSON report."""

from __future__ import annotations

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.gpuprov.gpu.plugins.module_utils.gpuprov.core import host_facts
from ansible_collections.gpuprov.gpu.plugins.module_utils.gpuprov.core.verify import (
    render_table,
    verify_host,
    worst,
)

DOCUMENTATION = r"""
module: gpuprov_host_verify
short_description: Run gpuprov's host gates over facts from gpuprov_host_facts
description:
  - Pure evaluation (reads and changes nothing on the host) of the driver, GPU, kernel,
    Container Toolkit, Docker runtime and workload gates against the team image's promises
    and the inventory's expectations.
  - Never fails for a failing check; it returns C(status) and C(failed_checks) so the caller
    can write the report first and then fail the host.
options:
  host:
    description: The host's inventory name, for the report and messages.
    type: str
    required: true
  raw:
    description: The C(raw) result of gpuprov_host_facts.
    type: dict
    required: true
  docker_info:
    description: Docker's C(host_info) (community.docker.docker_host_info); omit when Docker did
      not answer.
    type: dict
  workload_skipped:
    description: Why the workload container did not run (gpuprov_workload_skip's answer); empty
      when it ran.
    type: str
    default: ""
  probe:
    description: The workload container's result as community.docker.docker_container
      registers it; omit when it did not run.
    type: dict
  gpu:
    description: The host's C(gpuprov_gpu) (required, count, model, shared).
    type: dict
    default: {}
  promises:
    description: C(gpuprov_image.promises) (python, torch, cuda, ...).
    type: dict
    required: true
  image:
    description: The team image as C(docker image inspect) shows it, when it is on the host; the
      C(CUDA_VERSION) and C(NVIDIA_REQUIRE_CUDA) of its environment decide the driver gate, and
      a pin promising another CUDA fails it.
    type: dict
    default: {}
  allow_minor_version_compat:
    description: A driver below the image CUDA's minimum but within minor-version compatibility
      warns instead of failing.
    type: bool
    default: false
author: gpuprov
"""

EXAMPLES = r"""
- name: Evaluate the gates
  gpuprov_host_verify:
    host: "{{ inventory_hostname }}"
    raw: "{{ facts.raw }}"
    gpu: "{{ gpuprov_gpu }}"
    promises: "{{ gpuprov_image.promises }}"
"""

RETURN = r"""
checks:
  description: The checks in order, each with name, status (ok, warn, fail, n/a) and reason.
  type: list
  elements: dict
  returned: always
table:
  description: The checks as a fixed-width text table.
  type: str
  returned: always
status:
  description: The worst status of all checks.
  type: str
  returned: always
failed_checks:
  description: Names of the checks that failed.
  type: list
  elements: str
  returned: always
failure_message:
  description: One line per failed check with its reason (empty when none failed).
  type: str
  returned: always
report:
  description: The JSON report of the host.
  type: dict
  returned: always
"""


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "host": {"type": "str", "required": True},
            "raw": {"type": "dict", "required": True},
            "docker_info": {"type": "dict"},
            "workload_skipped": {"type": "str", "default": ""},
            "probe": {"type": "dict"},
            "gpu": {"type": "dict", "default": {}},
            "promises": {"type": "dict", "required": True},
            "image": {"type": "dict", "default": {}},
            "allow_minor_version_compat": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    params = module.params
    try:
        pin = host_facts.gate_pin(
            params["promises"], params["allow_minor_version_compat"], params["image"]
        )
    except host_facts.PromisesError as error:
        module.fail_json(msg=str(error))
    expect = host_facts.expectations(params["gpu"])
    probe = host_facts.probe_result(params["workload_skipped"], params["probe"])
    facts = host_facts.host_facts(params["raw"], params["docker_info"], probe)
    checks = verify_host(facts, expect, pin)
    failed = host_facts.failures(checks)
    module.exit_json(
        changed=False,
        checks=[c.to_dict() for c in checks],
        table=render_table(checks),
        status=str(worst(checks)),
        failed_checks=[c.name for c in failed],
        failure_message=host_facts.failure_message(params["host"], checks) if failed else "",
        report=host_facts.report(params["host"], checks, facts, pin, params["promises"], expect),
    )


if __name__ == "__main__":
    main()
