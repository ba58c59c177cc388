#!/usr/bin/python
"""Gather what gpuprov's host gates need: NVIDIA driver, GPUs, kernel, toolkit, Docker config."""

from __future__ import annotations

import glob
import os
import subprocess

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.gpuprov.gpu.plugins.module_utils.gpuprov.core import host_facts

DOCUMENTATION = r"""
module: gpuprov_host_facts
short_description: Read the NVIDIA driver, GPU, kernel and Container Toolkit state of a host
description:
  - Runs C(nvidia-smi) (C(--help-query-gpu), then the gpuprov query for the fields this
    driver offers, C(--version), C(-L)), C(nvidia-ctk --version),
    C(nvidia-container-cli --version), C(apt-mark showhold) and C(dpkg-query), and reads
    C(/proc/modules), C(/etc/modprobe.d), the SecureBoot EFI variable, the kernel headers
    directory, C(/dev/nvidia*), the cgroup mounts, C(/etc/docker/daemon.json) and the CDI specs.
  - A command that is missing or fails is data (C(rc) null when not installed), never an error.
  - Read-only; supports check mode.
options:
  daemon_json:
    description: Path of Docker's daemon configuration.
    type: path
    default: /etc/docker/daemon.json
  command_timeout:
    description: Seconds each command may take (a GPU that fell off the bus can hang nvidia-smi).
    type: int
    default: 60
author: gpuprov
"""

EXAMPLES = r"""
- name: Gather the host's NVIDIA facts
  gpuprov_host_facts:
  register: facts
"""

RETURN = r"""
raw:
  description: The observations, unparsed (command results as rc/out, file contents).
  type: dict
  returned: always
gpuprov_host:
  description: The parsed facts (driver state, GPUs, toolkit versions, kernel and Docker config).
  type: dict
  returned: always
gpu_present:
  description: Whether nvidia-smi answered with at least one GPU.
  type: bool
  returned: always
"""

MODPROBE_DIRS = ("/etc/modprobe.d", "/usr/lib/modprobe.d", "/lib/modprobe.d")
CDI_DIRS = ("/etc/cdi", "/var/run/cdi")


def run(module: AnsibleModule, name: str, *args: str) -> dict:
    """{"rc": int | None, "out": stdout+stderr}; rc None when the command is not installed."""
    path = module.get_bin_path(name)
    if path is None:
        return {"rc": None, "out": f"{name}: command not found"}
    timeout = module.params["command_timeout"]
    try:
        proc = subprocess.run(
            [path, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, "LC_ALL": "C"},
        )
    except subprocess.TimeoutExpired:
        return {"rc": -1, "out": f"{name} did not answer within {timeout} s"}
    except OSError as error:
        return {"rc": None, "out": f"{name}: {error}"}
    return {"rc": proc.returncode, "out": proc.stdout + proc.stderr}


def read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


def modprobe_files() -> dict[str, str]:
    found = {}
    for directory in MODPROBE_DIRS:
        for path in sorted(glob.glob(os.path.join(directory, "*.conf"))):
            text = read(path)
            if text is not None:
                found[path] = text
    return found


def secure_boot_efivar() -> str | None:
    for path in glob.glob("/sys/firmware/efi/efivars/SecureBoot-*"):
        try:
            with open(path, "rb") as handle:
                return handle.read().hex()
        except OSError:
            return None
    return None


def dev_nodes() -> list[str] | None:
    try:
        return sorted(name for name in os.listdir("/dev") if name.startswith("nvidia"))
    except OSError:
        return None


def cdi_specs() -> list[str]:
    return sorted(
        path
        for directory in CDI_DIRS
        for path in glob.glob(os.path.join(directory, "*"))
        if path.endswith((".yaml", ".yml", ".json"))
    )


def kernel_module_files(release: str) -> list[str] | None:
    """nvidia*.ko* files built for `release` (DKMS puts them in updates/dkms), relative paths."""
    root = f"/lib/modules/{release}"
    if not os.path.isdir(root):
        return None
    return sorted(
        os.path.relpath(os.path.join(directory, name), root)
        for directory, _, names in os.walk(root)
        for name in names
        if name.startswith("nvidia") and ".ko" in name
    )


def gather(module: AnsibleModule) -> dict:
    release = os.uname().release
    raw: dict = {key: run(module, *argv) for key, argv in host_facts.COMMANDS.items()}
    raw["nvidia_smi_query"] = run(module, *host_facts.gpu_query_command(raw["nvidia_smi_help"]))
    raw |= {
        "proc_modules": read("/proc/modules"),
        "modprobe_d": modprobe_files(),
        "secure_boot_efivar": secure_boot_efivar(),
        "kernel_release": release,
        "kernel_headers": os.path.isdir(f"/lib/modules/{release}/build"),
        "kernel_nvidia_modules": kernel_module_files(release),
        "dev_nodes": dev_nodes(),
        "mounts": read("/proc/self/mounts"),
        "daemon_json": read(module.params["daemon_json"]),
        "cdi_specs": cdi_specs(),
    }
    # Drivers before --version existed print their version only in the plain table.
    if host_facts.needs_plain_header(raw):
        raw["nvidia_smi_plain"] = run(module, *host_facts.PLAIN_COMMAND)
    return raw


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "daemon_json": {"type": "path", "default": "/etc/docker/daemon.json"},
            "command_timeout": {"type": "int", "default": 60},
        },
        supports_check_mode=True,
    )
    raw = gather(module)
    facts = host_facts.host_facts(raw)
    module.exit_json(
        changed=False,
        raw=raw,
        gpuprov_host=host_facts.facts_summary(facts),
        gpu_present=host_facts.gpu_present(raw),
    )


if __name__ == "__main__":
    main()
