"""One read-only shell round trip that tells how a host stands, and its parser.

`gpuprov status` sends PROBE_SCRIPT over SSH to every host at once; one
connection and one command per host keeps a fleet-wide look to seconds.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any

from .host_facts import CTK_VERSION_COMMAND, ctk_version
from .labels import IMAGE_LABEL, USER_LABEL
from .nvidia import (
    QUERY_GPU_SHELL,
    VERSION_COMMAND,
    DriverState,
    GpuRecord,
    NvidiaSmiParseError,
    classify_failure,
    parse_driver_info,
    parse_query_gpu,
)
from .text_table import text_table
from .workspace_drift import WorkspaceDrift, for_workspaces, read, summary

SEPARATOR = "@@gpuprov@@"


def _section(name: str, command: str) -> str:
    # Each section prints its output, then its exit status, so a missing
    # command (127) is data rather than a failed probe.
    return f'echo "{SEPARATOR} {name}"; {command} 2>&1; echo "{SEPARATOR} rc=$?"'


PROBE_SCRIPT = "; ".join(
    [
        _section("hostname", "hostname"),
        _section("nvidia-smi", f"sh -c {shlex.quote(QUERY_GPU_SHELL)}"),
        _section("nvidia-smi-version", shlex.join(VERSION_COMMAND)),
        _section("nvidia-ctk", shlex.join(CTK_VERSION_COMMAND)),
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


def drift_script(program: str, seconds: int) -> str:
    """Every running workspace's drift inspection (``program``, drift.program()), run
    inside it as the user it runs as, never root, all at once, each bounded by
    ``seconds``; each prints a section named after its container and user when all are
    done."""
    who = '{{.Name}} {{.Config.User}} {{index .Config.Labels "' + USER_LABEL + '"}}'
    one = (
        f'set -- $(docker inspect --format {shlex.quote(who)} "$id"); '
        f'echo "{SEPARATOR} drift ${{1#/}} $3"; '
        'case "$2" in ""|0|0:*|root|root:*) '
        'echo "it runs as root: the drift inspection runs only as the user"; exit 126;; esac; '
        f'printf "%s\\n" "$P" | timeout {seconds} docker exec -i -u "$2" "$id" python3 -'
    )
    return (
        f"P={shlex.quote(program)}; d=$(mktemp -d) || exit 1; "
        f"for id in $(docker ps -q --filter label={USER_LABEL}); do "
        f'( ( {one} ) 2>&1; echo "{SEPARATOR} rc=$?" ) >"$d/$id" & done; '
        'wait; cat "$d"/* 2>/dev/null; rm -rf "$d"'
    )


def status_script(program: str, seconds: int) -> str:
    """PROBE_SCRIPT, then the drift inspection of every running workspace."""
    return f"{PROBE_SCRIPT}; {drift_script(program, seconds)}"


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
    # Each running workspace's drift, unknown where its inspection did not answer.
    drift: tuple[WorkspaceDrift, ...] = ()


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
        toolkit = ctk_version({"rc": ctk.rc, "out": ctk.output}) or "unreadable"
    docker_section = get("docker")
    docker = docker_section.output.strip() if docker_section.rc == 0 else None
    if docker is None:
        problems.append(_docker_problem(docker_section))
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
    answered = {}
    for name, section in sections.items():
        if name.startswith("drift "):
            workspace, _, user = name.removeprefix("drift ").partition(" ")
            answered[workspace] = read(workspace, user, section.output, section.rc)
    listed = [(line.split()[0], line.split()[1]) for line in workspaces if len(line.split()) > 1]
    drift = for_workspaces(listed, answered) if docker else ()
    return HostStatus(
        hostname, driver, gpus, toolkit, docker, workspaces, tuple(problems), images, drift
    )


def _docker_problem(section: Section) -> str:
    """Why Docker did not answer, in its own words, with the usual fix."""
    said = next((line.strip() for line in section.output.splitlines() if line.strip()), "")
    if section.rc == 127 or "not found" in said:
        return "Docker does not answer: the docker CLI is not installed"
    if "permission denied" in said.lower():
        return (
            f"Docker does not answer: {said[:200]} (the SSH user is not in the docker group: "
            f"add it, or set ansible_become: true for the host)"
        )
    return f"Docker does not answer: {said[:200]}" if said else "Docker does not answer"


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


def remote_command(seconds: int, become_user: str | None = None, script: str = PROBE_SCRIPT) -> str:
    """A probe script as sent to a host: bounded by the host's own `timeout`, so a hung
    nvidia-smi is ended there too, and run through `sudo -n` where the inventory
    says to become (Docker's socket often needs it); sudo never prompts."""
    inner = f"sh -c {shlex.quote(script)}"
    if become_user:
        inner = f"sudo -n -u {shlex.quote(become_user)} -- {inner}"
    return (
        f"if command -v timeout >/dev/null 2>&1; then exec timeout -k 2 {seconds} {inner}; "
        f"else exec {inner}; fi"
    )


def running_section(output: str) -> str | None:
    """The section a probe cut short was in (its last header without an exit status)."""
    current = None
    for line in output.splitlines():
        if line.startswith(f"{SEPARATOR} rc="):
            current = None
        elif line.startswith(f"{SEPARATOR} "):
            current = line.split(" ", 1)[1]
    return current


def judge(status: HostStatus, pinned: set[str], gpu_required: bool = True) -> list[str]:
    """Everything about a reachable host that needs a person, worst first.

    A host the inventory allows to have no GPU is not faulted for its driver.
    """
    found = list(status.problems)
    if gpu_required and status.driver in ("not-installed", "no GPU"):
        found.append(f"no usable GPU driver ({status.driver})")
    if gpu_required and status.driver not in ("not-installed", "no GPU") and not status.toolkit:
        found.append("NVIDIA Container Toolkit not installed (nvidia-ctk missing)")
    for line in status.workspaces:
        if "(unhealthy)" in line or "Restarting" in line:
            found.append(f"workspace not healthy: {line}")
    state = pin_state(status.images, pinned)
    if pinned and state not in ("pin", "-"):
        found.append(f"workspaces off the pin: {state}")
    return found


# --- the fleet report ------------------------------------------------------------

EXIT_OK, EXIT_PROBLEMS, EXIT_UNREACHABLE = 0, 1, 2


def host_report(
    host: str,
    status: HostStatus | None,
    error: str | None,
    timed_out: bool,
    seconds: float,
    pinned: set[str],
    gpu_required: bool = True,
) -> dict[str, Any]:
    """One host's row of `gpuprov status`, JSON-ready; `state` says how it stands:
    ok, problems, timeout (with what was read before it) or unreachable."""
    row: dict[str, Any] = {"host": host, "seconds": round(seconds, 2), "error": error}
    if status is None:
        row["state"] = "timeout" if timed_out else "unreachable"
        return row
    names = sorted({g.name or "?" for g in status.gpus})
    problems = judge(status, pinned, gpu_required)
    row.update(
        state="timeout" if timed_out else ("problems" if problems else "ok"),
        hostname=status.hostname,
        driver=status.driver,
        gpus=f"{len(status.gpus)} x {', '.join(names)}" if status.gpus else "-",
        gpu_list=[{"index": g.index, "name": g.name, "uuid": g.uuid} for g in status.gpus],
        toolkit=status.toolkit,
        docker=status.docker,
        workspaces=list(status.workspaces),
        image=pin_state(status.images, pinned),
        drift=summary(status.drift, status.docker is not None),
        workspace_drift=[d.to_dict() for d in status.drift],
        problems=problems,
    )
    return row


def exit_code(rows: list[dict[str, Any]]) -> int:
    """0: every host healthy; 1: a host needs attention; 2: a host unreachable or timed out."""
    states = {row["state"] for row in rows}
    if states & {"unreachable", "timeout"}:
        return EXIT_UNREACHABLE
    return EXIT_PROBLEMS if "problems" in states else EXIT_OK


def render(rows: list[dict[str, Any]]) -> str:
    """The table, sorted by host, each problem on its own line under its host."""
    header = (
        "host", "hostname", "driver", "gpus", "toolkit", "docker", "workspaces", "image", "drift",
    )  # fmt: skip
    table: list[tuple[str, ...]] = []
    notes: dict[int, list[str]] = {}
    for row in sorted(rows, key=lambda r: r["host"]):
        if "hostname" not in row:
            table.append((row["host"], row["state"].upper(), "", "", "", "", "", "", ""))
            notes[len(table)] = [row["error"] or ""]
            continue
        table.append(
            (
                row["host"],
                row["hostname"],
                row["driver"],
                row["gpus"],
                row["toolkit"] or "-",
                row["docker"] or "DOWN",
                str(len(row["workspaces"])),
                row["image"],
                row["drift"],
            )
        )
        notes[len(table)] = [*([row["error"]] if row["error"] else []), *row["problems"]]
    lines = text_table(header, table).splitlines()
    out = [lines[0]]
    for number, line in enumerate(lines[1:], start=1):
        out.append(line)
        out += [f"  ! {note}" for note in notes.get(number, [])]
    return "\n".join(out)
