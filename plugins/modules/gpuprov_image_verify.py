#!/usr/bin/python
"""Check a host's copy of the pinned team image, or the room to fetch it; changes nothing."""

from __future__ import annotations

import json
import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.gpuprov.gpu.plugins.module_utils.gpuprov.core import image_pin
from ansible_collections.gpuprov.gpu.plugins.module_utils.gpuprov.core.variables import DEFAULTS

DOCUMENTATION = r"""
module: gpuprov_image_verify
short_description: Verify the team image on a host against the pin, or the disk before a fetch
description:
  - C(phase=before) looks for the pinned image on the host. When it is there, it must match the
    pin (digest or image ID, and labels), else the module fails. When it is absent, the Docker
    data root must have room for it, else the module fails before any pull or load starts.
  - C(phase=after) requires the image to be present and to match the pin.
  - A registry pull is verified by RepoDigests; an image loaded from an archive (no RepoDigests)
    by its image ID, which the pin records as C(id). Labels are compared with the pin's promises.
  - Read-only; never reports changed. Uses the Docker CLI on the host.
options:
  pin:
    description: The team image pin (gpuprov_image), with reference, digest, id and promises.
    type: dict
    required: true
  via:
    description: How the image reaches the host.
    type: str
    choices: [registry, archive, build]
    default: registry
  image:
    description:
      - Name or ID to look up.
      - Default the pinned reference@digest (registry) or the pin's id (archive, build).
    type: str
  phase:
    description: before (absent is fine if the disk has room) or after (must be present and right).
    type: str
    choices: [before, after]
    default: after
  min_free:
    description: Free space the Docker data root needs before a pull, at least, e.g. 30g; a pin
      that records the image's size (C(size)) may ask for more, that size, half again for the
      downloads, and 1 GiB.
    type: str
    default: 20g
  archive_size:
    description: Size in bytes of the archive to load; the room needed is derived from it.
    type: int
  docker_host:
    description: The Docker daemon's address; when left out, gpuprov_docker_host's default
      (the local socket).
    type: str
author: gpuprov
"""

EXAMPLES = r"""
- name: Check the host before pulling
  gpuprov_image_verify:
    pin: "{{ gpuprov_image }}"
    phase: before
    min_free: 30g
"""

RETURN = r"""
present:
  description: Whether the image was found on the host.
  type: bool
  returned: always
image_id:
  description: The image ID found (the config digest), or null.
  type: str
  returned: always
free_bytes:
  description: Free bytes under the Docker data root (phase before, image absent).
  type: int
  returned: when checked
"""


def docker(module: AnsibleModule, *args: str) -> tuple[int, str, str]:
    return module.run_command(["docker", "-H", module.params["docker_host"], *args])


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "pin": {"type": "dict", "required": True},
            "via": {"type": "str", "default": "registry", "choices": list(image_pin.VIA)},
            "image": {"type": "str"},
            "phase": {"type": "str", "default": "after", "choices": ["before", "after"]},
            "min_free": {"type": "str", "default": "20g"},
            "archive_size": {"type": "int"},
            "docker_host": {"type": "str", "default": DEFAULTS["gpuprov_docker_host"]},
        },
        supports_check_mode=True,
    )
    p = module.params
    pin = p["pin"]
    try:
        name = p["image"] or (
            image_pin.pinned_reference(pin) if p["via"] == image_pin.REGISTRY else pin.get("id")
        )
        min_free = image_pin.parse_size(p["min_free"])
    except (image_pin.PinError, ValueError) as error:
        module.fail_json(msg=str(error))
    if not name:
        module.fail_json(msg="nothing to look up: set image, or id in the pin")
    rc, out, err = docker(module, "image", "inspect", name)
    image = json.loads(out)[0] if rc == 0 else None
    if rc != 0 and "No such image" not in err:
        module.fail_json(msg=f"docker image inspect {name} failed: {err.strip()}")
    result = {"changed": False, "present": image is not None, "image_id": image and image["Id"]}
    if image is None and p["phase"] == "before":
        rc, out, err = docker(module, "info", "--format", "{{.DockerRootDir}}")
        if rc != 0:
            module.fail_json(msg=f"docker info failed: {err.strip()}", **result)
        root = out.strip()
        stat = os.statvfs(root)
        free = stat.f_bavail * stat.f_frsize
        needed, reckoned = image_pin.room_needed(pin, min_free, p["archive_size"] or 0)
        result["free_bytes"] = free
        problem = image_pin.space_problem(free, needed, root, f"{pin.get('reference')}", reckoned)
        if problem:
            module.fail_json(msg=problem, **result)
        module.exit_json(**result)
    problems = image_pin.verify_image(pin, image, p["via"])
    if problems:
        module.fail_json(
            msg=f"the team image on this host does not match the pin: {'; '.join(problems)}",
            problems=problems,
            **result,
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
