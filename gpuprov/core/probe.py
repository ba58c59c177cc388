"""One read-only shell round trip that tells how a host stands, and its parser.

`gpuprov status` sends PROBE_SCRIPT over SSH to every host at once; one
connection and one command per host keeps a fleet-wide look to seconds.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from .labels import IMAGE_LABEL, USER_LABEL
from .nvidia import (
    QUERY_GPU_SHELL,
    DriverState,
    GpuRecord,
    NvidiaSmiParseError,
    classify_failure,
    parse_driver_info,
    parse_query_gpu,
)

SEPARATOR = "@@gpuprov@@"


def _section(name: str, command: str) -> str:
    # Each section prints its output, then its exit status, so a missing
    # command (127) is data rather than a failed probe.
    return f'echo "{SEPARATOR} {name}"; {command} 2>&1; echo "{SEPARATOR} rc=$?"'


PROBE_SCRIPT = "; ".join(
    [
        _section("hostname", "hostname"),
        _section("nvidia-smi", f"sh -c {shlex.quote(QUERY_GPU_SHELL)}"),
        _section("nvidia-smi-version", "nvidia-smi --version"),
        _section("nvidia-ctk", "nvidia-ctk --version"),
        _section("docker", "docker version --format '{{.Server.Version}}'"),
        _section(
            "workspaces",
            f"docker ps --filter label={USER_LABEL} "
            "--format '{{.Label \"" + USER_LABEL + "\"}} {{.Names}} {{.Status}}'",
        ),
        _section(
            "images",
            f"docker ps --filter label={USER_LABEL} "
            "--format '{{.Label \"" + IMAGE_LABEL + "\"}}'",
        ),
    ]
)


@dataclass(frozen=True)
class Section:
    output: str
    rc: int | None


@dataclass(frozen=True)
class HostStatus:
    hostname: str
    driver: str
    gpus: tuple[GpuRecord, ...] = ()
    toolkit: str | None = None
    docker: str | None = None
    workspaces: tuple[str, ...] = ()
    problems: tuple[str, ...] = field(default=())
    # The image each running workspace was started from (its org.gpuprov.image label).
    images: tuple[str, ...] = ()


def split_sections(output: str) -> dict[str, Section]:
    sections: dict[str, Section] = {}
    name, lines = None, []
    for line in output.splitlines():
        if line.startswith(f"{SEPARATOR} rc="):
            if name is not None:
                code = line.split("rc=", 1)[1].strip()
                sections[name] = Section("\n".join(lines), int(code) if code.isdigit() else None)
            name, lines = None, []
        elif line.startswith(f"{SEPARATOR} "):
            name, lines = line.split(" ", 1)[1], []
        elif name is not None:
            lines.append(line)
    return sections


def parse(output: str) -> HostStatus:
    """Turn PROBE_SCRIPT's output into a status; what is missing becomes a problem."""
    sections = split_sections(output)
    problems: list[str] = []

    def get(name: str) -> Section:
        return sections.get(name, Section("", None))

    hostname = get("hostname").output.strip() or "?"
    smi = get("nvidia-smi")
    gpus: tuple[GpuRecord, ...] = ()
    if smi.rc == 0:
        try:
            gpus = tuple(parse_query_gpu(smi.output))
            driver = _driver_version(get("nvidia-smi-version"), gpus) if gpus else "no GPU"
        except NvidiaSmiParseError as error:
            driver = "unreadable"
            problems.append(f"nvidia-smi: {error}")
    else:
        status = classify_failure(127 if smi.rc == 127 else smi.rc, smi.output)
        driver = status.state.value
        if status.state is not DriverState.NOT_INSTALLED:
            problems.append(status.explanation)
    ctk = get("nvidia-ctk")
    toolkit = None
    if ctk.rc == 0:
        found = re.search(r"version\s+v?([0-9]+(?:\.[0-9]+)+)", ctk.output)
        toolkit = found.group(1) if found else "unreadable"
    docker_section = get("docker")
    docker = docker_section.output.strip() if docker_section.rc == 0 else None
    if docker is None:
        problems.append("Docker does not answer")
    workspaces = (
        tuple(line.strip() for line in get("workspaces").output.splitlines() if line.strip())
        if docker
        else ()
    )
    images = (
        tuple(line.strip() for line in get("images").output.splitlines() if line.strip())
        if docker
        else ()
    )
    return HostStatus(hostname, driver, gpus, toolkit, docker, workspaces, tuple(problems), images)


def _driver_version(version: Section, gpus: tuple[GpuRecord, ...]) -> str:
    """The driver from `nvidia-smi --version` (KMD version on 610+), else the query's."""
    if version.rc == 0:
        try:
            return parse_driver_info(version.output).driver_version
        except NvidiaSmiParseError:
            pass
    return gpus[0].driver_version or "?"


def pin_state(images: tuple[str, ...], pinned: set[str]) -> str:
    """Whether a host's workspaces run the pin: "pin", "n/m on pin" mid-rollout, or "-".

    `pinned` holds the names the pin goes by on hosts: reference@digest, and the
    image ID for hosts fed by an archive.
    """
    if not images:
        return "-"
    on_pin = sum(image in pinned for image in images)
    return "pin" if on_pin == len(images) else f"{on_pin}/{len(images)} on pin"
