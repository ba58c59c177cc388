"""A new workspace's health gate in a rollout: torch works inside it, a real SSH
login works, and it stays up.

"The port answers" passes a container that answers once and then crash-loops,
and an image whose torch cannot import. This gate runs, as the workspace's
user, a small tensor operation (on the workspace's own GPUs where it has any),
and then watches the containers: healthy means running with RestartCount and
StartedAt unchanged for ``min_healthy_time`` seconds, within
``healthy_deadline``. Each command sits beside the parser of its output; the
module runs them on the host. Standard library only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from .known_hosts import host_name
from .workspace import PROBE_REPLY

# Tabs cannot occur in a container name, a count, a timestamp or a boolean.
_INSPECT_FORMAT = "{{.Name}}\t{{.RestartCount}}\t{{.State.StartedAt}}\t{{.State.Running}}"
# Prints "<torch version> <device>" after a real operation; exits non-zero otherwise.
TORCH_PROBE = (
    "import sys, torch\n"
    "want_gpu = sys.argv[1] == 'gpu'\n"
    "if want_gpu and not torch.cuda.is_available():\n"
    "    sys.exit(f'torch {torch.__version__} sees no GPU (torch.cuda.is_available() is False)')\n"
    "device = 'cuda' if want_gpu else 'cpu'\n"
    "x = torch.ones(64, 64, device=device)\n"
    "total = float((x @ x).sum())\n"
    "if total != 64.0 ** 3:\n"
    "    sys.exit(f'torch {torch.__version__} computed {total} for a 64x64 product of ones')\n"
    "print(torch.__version__, device)\n"
)
LOG_LINES = 20


@dataclass(frozen=True)
class Life:
    """What ``docker inspect`` says of a container's current life."""

    restarts: int
    started: str
    running: bool


def inspect_command(docker_host: str, names: Sequence[str]) -> list[str]:
    return ["docker", "-H", docker_host, "inspect", "--format", _INSPECT_FORMAT, *names]


def parse_inspect(output: str) -> dict[str, Life]:
    """Each container's life, by name (without docker's leading slash)."""
    lives = {}
    for line in output.splitlines():
        fields = line.split("\t")
        if len(fields) != 4 or not fields[1].isdigit():
            continue
        name, restarts, started, running = fields
        lives[name.lstrip("/")] = Life(int(restarts), started, running == "true")
    return lives


def torch_command(docker_host: str, name: str, uid: int, gpus: bool) -> list[str]:
    return [
        "docker", "-H", docker_host, "exec", "--user", str(uid), name,
        "python3", "-c", TORCH_PROBE, "gpu" if gpus else "cpu",
    ]  # fmt: skip


def logs_command(docker_host: str, name: str) -> list[str]:
    return ["docker", "-H", docker_host, "logs", "--tail", str(LOG_LINES), name]


def torch_failure(name: str, rc: int, stdout: str, stderr: str) -> str:
    """Why the probe failed in ``name`` ("" when it passed): its last words, not a traceback."""
    if rc == 0 and stdout.strip():
        return ""
    said = [line for line in (stderr or stdout).strip().splitlines() if line.strip()]
    return f"{name}: torch does not work as the user ({said[-1] if said else f'exit {rc}'})"


def watch(
    names: Sequence[str],
    look: Callable[[], Mapping[str, Life]],
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    min_healthy_time: float,
    healthy_deadline: float,
) -> list[str]:
    """Wait until every container has run unchanged for ``min_healthy_time`` seconds.

    A restart starts the window again; ``healthy_deadline`` bounds the whole
    wait. Returns what kept the containers from being healthy ([] when they are).
    """
    start = clock()
    baseline = dict(look())
    steady_since = start
    restarts: dict[str, str] = {}
    while True:
        now = look()
        problems = [f"{name}: not found" for name in names if name not in now]
        problems += [
            f"{name}: not running" for name in names if name in now and not now[name].running
        ]
        for name in names:
            before, after = baseline.get(name), now.get(name)
            if after is None or (
                before and (before.restarts, before.started) == (after.restarts, after.started)
            ):
                continue
            if before:
                restarts[name] = f"{name}: restarted (RestartCount {after.restarts})"
            baseline[name], steady_since = after, clock()
        if not problems and clock() - steady_since >= min_healthy_time:
            return []
        if clock() - start >= healthy_deadline:
            return (
                problems
                or list(restarts.values())
                or [
                    f"{', '.join(names)}: not steady for {min_healthy_time:g} s "
                    f"within {healthy_deadline:g} s"
                ]
            )
        sleep(min(1.0, max(0.1, min_healthy_time / 10)))


def ssh_probe_command(key: str, known_hosts: str, user: str, address: str, port: int) -> list[str]:
    """A real login as the user with gpuprov's probe key, checking the workspace's host key."""
    return [
        "ssh", "-i", key, "-p", str(port), "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
        "-o", "ConnectTimeout=10", "-o", f"UserKnownHostsFile={known_hosts}",
        "-o", "StrictHostKeyChecking=yes", "-o", "LogLevel=ERROR", f"{user}@{address}", "probe",
    ]  # fmt: skip


def known_hosts_line(address: str, port: int, host_public_key: str) -> str:
    """The workspace's own host key (made by its entrypoint) as known_hosts names it."""
    key_type, key = host_public_key.split()[:2]
    return f"{host_name(address, port)} {key_type} {key}\n"


def ssh_failure(name: str, rc: int, stdout: str, stderr: str) -> str:
    """Why the probe login failed in ``name`` ("" when sshd let it in and ran its command)."""
    if rc == 0 and PROBE_REPLY in stdout:
        return ""
    said = [line for line in (stderr or stdout).strip().splitlines() if line.strip()]
    return f"{name}: the SSH login as the user failed ({said[-1] if said else f'exit {rc}'})"
