#!/usr/bin/python
"""Audit the team image on a host: run gpuprov's inspector inside it and judge it by the pin."""

from __future__ import annotations

import inspect
import pkgutil

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.gpuprov.gpu.plugins.module_utils.gpuprov import inspector
from ansible_collections.gpuprov.gpu.plugins.module_utils.gpuprov.core import audit, image_pin
from ansible_collections.gpuprov.gpu.plugins.module_utils.gpuprov.core.variables import DEFAULTS

DOCUMENTATION = r"""
module: gpuprov_audit
short_description: Audit a container image's Python packages, CUDA build and labels against the pin
description:
  - Runs gpuprov's standard-library inspector inside the image (C(docker run --rm -i
    --network none --entrypoint python3 IMAGE -), the inspector on stdin), reads the
    image's labels and CUDA_VERSION, and applies gpuprov's audit rules (one install per
    package, torch/torchvision/torchaudio from one manager and one CUDA build in a released
    pairing, labels equal to the pin).
  - Fails with the findings when the audit fails. Read-only; never reports changed.
options:
  image:
    description: Image name, reference@digest or ID.
    type: str
    required: true
  pin:
    description: The team image pin (gpuprov_image) with its promises.
    type: dict
    required: true
  docker_host:
    description: The Docker daemon's address; when left out, gpuprov_docker_host's default
      (the local socket).
    type: str
author: gpuprov
"""

EXAMPLES = r"""
- name: Audit the team image
  gpuprov_audit:
    image: "{{ gpuprov_image.reference }}@{{ gpuprov_image.digest }}"
    pin: "{{ gpuprov_image }}"
"""

RETURN = r"""
report:
  description: The audit report (rows, findings, passed).
  type: dict
  returned: when the image could be inspected
table:
  description: The report as the table C(gpuprov audit) prints.
  type: str
  returned: when the image could be inspected
"""


def inspector_source() -> str:
    # From the payload Ansible built (a zip on the host), under the package the import named.
    data = pkgutil.get_data(inspector.__name__.rpartition(".")[0], "inspector.py")
    return data.decode("utf-8") if data else inspect.getsource(inspector)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "image": {"type": "str", "required": True},
            "pin": {"type": "dict", "required": True},
            "docker_host": {"type": "str", "default": DEFAULTS["gpuprov_docker_host"]},
        },
        supports_check_mode=True,
    )
    image, pin = module.params["image"], module.params["pin"]
    commands = image_pin.audit_commands(image, ("docker", "-H", module.params["docker_host"]))
    rc, out, err = module.run_command(commands["inspect"])
    if rc != 0:
        module.fail_json(msg=f"cannot audit {image}: docker image inspect failed: {err.strip()}")
    rc, found, err = module.run_command(commands["run"], data=inspector_source(), binary_data=True)
    if rc != 0:
        module.fail_json(
            msg=f"cannot audit {image}: the inspector did not run in it (exit {rc}): "
            f"{err.strip()[-800:]}"
        )
    try:
        report = image_pin.audit_outputs(found, image_pin.parse_inspect(out, image), pin)
    except audit.AuditInputError as error:
        module.fail_json(msg=f"cannot audit {image}: {error}")
    table = audit.render_table(report)
    result = {"changed": False, "report": report.to_dict(), "table": table}
    if not report.passed:
        failures = [f.message for f in report.findings if f.severity == audit.FAIL]
        module.fail_json(
            msg=f"the image {image} fails gpuprov's audit: " + " | ".join(failures), **result
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
