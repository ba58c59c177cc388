"""Work in progress in a workspace, read before a rollout restarts it.

A rollout that recreates a container ends its Jupyter kernels and the jobs in
its SSH sessions. Before a host's workspaces move, gpuprov reads, per
workspace: Jupyter's kernels and terminals (busy, or active within
``idle_minutes``; the server's own last_activity is not used, because every
API call, gpuprov's included, moves it), SSH sessions and the processes
started in them (``docker top``), and the GPU compute processes among the
container's processes (``nvidia-smi``, once per look at a host). The
inventory's policy then decides:
``wait`` until idle (up to a deadline), ``skip`` (the workspace keeps its
image and is reported pending; the next run picks it up) or ``force``. Each
command sits beside the parser of its output. Standard library only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .nvidia import (
    ComputeProcess,
    DriverState,
    NvidiaSmiParseError,
    classify_failure,
    parse_compute_apps,
)

POLICIES = ("wait", "skip", "force")
# Processes every workspace runs whether or not anyone uses it: tini, the
# entrypoint, sshd's listener, Jupyter and its kernels (their activity is read
# from Jupyter's API), and the image's HEALTHCHECK probes (gpuprov-workspace health).
_SERVICE = re.compile(
    r"^(/usr/bin/tini |/bin/sh /usr/local/bin/gpuprov-workspace |/usr/sbin/sshd -D"
    r"|.*/jupyter[- ]lab|.*ipykernel_launcher"
    r"|python3 -c import (urllib\.request; urllib\.request\.urlopen\(\"http://127\.0\.0\.1:8888/api\""
    r"|socket; s = socket\.create_connection\(\(\"127\.0\.0\.1\", 2222\)))"
)
_SESSION = re.compile(r"^sshd(?:-session)?: (\S+)@(pts/\d+|notty)")
NOTICE_SCRIPT = (
    # Into each terminal the user owns: their SSH sessions. Nothing else is touched.
    'for tty in /dev/pts/[0-9]*; do [ -O "$tty" ] && printf "\\r\\n%s\\r\\n" "$1" > "$tty"; '
    "done; true"
)


@dataclass(frozen=True)
class Activity:
    """What keeps one workspace busy; no reason means idle."""

    name: str
    reasons: tuple[str, ...] = ()
    unknown: tuple[str, ...] = field(default=())

    @property
    def busy(self) -> bool:
        return bool(self.reasons)


def top_command(docker_host: str, name: str) -> list[str]:
    return ["docker", "-H", docker_host, "top", name, "-eo", "pid,etimes,args"]


def parse_top(output: str) -> list[tuple[int, int, str]]:
    """``docker top -eo pid,etimes,args``: (host pid, seconds running, command line)."""
    processes = []
    for line in output.splitlines()[1:]:
        fields = line.split(None, 2)
        if len(fields) == 3 and fields[0].isdigit() and fields[1].isdigit():
            processes.append((int(fields[0]), int(fields[1]), fields[2]))
    return processes


def session_reasons(processes: Sequence[tuple[int, int, str]]) -> list[str]:
    """Open SSH sessions, and processes that are not the workspace's own services."""
    sessions = [m.group(2) for _, _, args in processes if (m := _SESSION.match(args))]
    reasons = [f"SSH session open ({tty})" for tty in sessions]
    jobs = [
        args
        for _, _, args in processes
        if not _SERVICE.match(args) and not _SESSION.match(args) and not args.startswith("sshd:")
    ]
    if jobs:
        shown = ", ".join(job[:60] for job in jobs[:3])
        reasons.append(
            f"{len(jobs)} process(es) running ({shown}{', ...' if len(jobs) > 3 else ''})"
        )
    return reasons


@dataclass(frozen=True)
class GpuProcesses:
    """A host's GPU compute processes; ``unknown`` says why they could not be read."""

    processes: tuple[ComputeProcess, ...] = ()
    unknown: str = ""


# Failures that say no process can hold a GPU: no driver loaded, or no GPU it sees.
_NO_GPU_WORK = (DriverState.NOT_LOADED, DriverState.NO_DEVICES)


def gpu_processes(returncode: int | None, stdout: str, stderr: str = "") -> GpuProcesses:
    """What ``nvidia.COMPUTE_APPS_COMMAND`` said; ``returncode`` None: nvidia-smi is absent.

    A host without nvidia-smi, without a loaded driver or without a GPU the driver
    sees runs no GPU work. Any other failure (a driver upgraded under running
    processes, which then fails with a version mismatch, is the usual one) may hide
    some: it is unknown, and so counts as busy.
    """
    if returncode is None:
        return GpuProcesses()
    status = classify_failure(returncode, f"{stdout}\n{stderr}")
    if status.state in _NO_GPU_WORK:
        return GpuProcesses()
    if returncode != 0:
        said = status.detail[:200] or "no output"
        return GpuProcesses(
            unknown=f"GPU processes could not be read: nvidia-smi exited {returncode}: {said}"
        )
    try:
        return GpuProcesses(tuple(parse_compute_apps(stdout)))
    except NvidiaSmiParseError as error:
        return GpuProcesses(unknown=f"GPU processes could not be read: {error}")


def gpu_reasons(
    processes: Sequence[tuple[int, int, str]], gpus: Sequence[ComputeProcess]
) -> list[str]:
    """The container's processes (``docker top``'s host pids) that hold a GPU.

    The workspace's own services count too: an idle kernel holding a model in
    GPU memory is state a restart loses. A process on several GPUs is one reason.
    """
    pids = {pid for pid, _, _ in processes}
    held: dict[int, list[ComputeProcess]] = {}
    for gpu in gpus:
        if gpu.pid in pids:
            held.setdefault(gpu.pid, []).append(gpu)
    reasons = []
    for pid, rows in held.items():
        known = [row.used_memory_mib for row in rows if row.used_memory_mib is not None]
        memory = f"{sum(known)} MiB" if known else "memory not reported"
        reasons.append(f"GPU compute process pid {pid} ({rows[0].process_name}, {memory})")
    return reasons


def _when(stamp: str) -> datetime | None:
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        return None


def jupyter_reasons(
    kernels: Sequence[Mapping], terminals: Sequence[Mapping], now: datetime, idle_minutes: float
) -> list[str]:
    """Kernels busy or used within ``idle_minutes``, and terminals used within it."""
    recent = now - timedelta(minutes=idle_minutes)
    reasons = []
    for kernel in kernels:
        name = kernel.get("name") or "kernel"
        last = _when(kernel.get("last_activity", ""))
        if kernel.get("execution_state") == "busy":
            reasons.append(f"{name} kernel busy")
        elif last is None or last >= recent:
            minutes = "?" if last is None else f"{max(0, (now - last).total_seconds()) / 60:.0f}"
            reasons.append(f"{name} kernel active {minutes} min ago")
    for terminal in terminals:
        last = _when(terminal.get("last_activity", ""))
        if last is None or last >= recent:
            reasons.append(f"terminal {terminal.get('name', '?')} active")
    return reasons


def parse_list(body: str) -> list[Mapping]:
    """A JSON list from Jupyter's API; anything else is an error for the caller."""
    value = json.loads(body)
    if not isinstance(value, list):
        raise ValueError(f"expected a JSON list, got {type(value).__name__}")
    return [item for item in value if isinstance(item, dict)]


def decide(policy: str, activity: Activity, waited: float, deadline: float) -> str:
    """``move``, ``wait`` (poll again) or ``pending`` (stays on its image this run).

    What could not be read counts as busy: gpuprov does not restart work it
    could not see.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r} (one of {', '.join(POLICIES)})")
    if policy == "force" or not (activity.busy or activity.unknown):
        return "move"
    if policy == "wait" and waited < deadline:
        return "wait"
    return "pending"


def notice(host: str, image: str, policy: str, seconds: int | str) -> str:
    """What a user reads in their SSH session before a rollout restarts their workspace."""
    seconds = int(seconds)  # a template hands numbers over as text
    if policy == "force":
        when = "now" if seconds <= 0 else f"in {seconds} s"
        return (
            f"gpuprov: this workspace on {host} restarts {when} to move to the team image "
            f"{image}. Files in your home stay; running processes and kernels end. Save your work."
        )
    return (
        f"gpuprov: this workspace on {host} will restart to move to the team image {image} "
        f"once it is idle (no kernel, session or job). gpuprov waits up to {seconds} s, then "
        "leaves it on its image until the next rollout. Files in your home stay either way."
    )
