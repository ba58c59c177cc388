"""Fast read-only probes of every host at once, over SSH with paramiko.

Connection details come from the same inventory variables Ansible uses
(ansible_host, ansible_user, ansible_port, ansible_ssh_private_key_file, a
ProxyCommand and StrictHostKeyChecking in ansible_ssh_common_args, and
ansible_become), so whatever Ansible reaches, `gpuprov status` reaches too.

Every host gets one deadline for everything (connect, banner, authentication,
the probe itself); the probe also runs under the host's own `timeout`, so
nothing is left running there when gpuprov gives up. known_hosts is read once
per run, and hosts are answered as they finish.
"""

from __future__ import annotations

import base64
import logging
import math
import queue
import shlex
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paramiko

from .core import drift, inventory, probe, workspace_drift
from .core.known_hosts import HostKeyVerdict, KnownHosts, host_name

# Enough to keep a large fleet's round trips overlapping, few enough for the
# controller's file descriptors and CPU.
MAX_WORKERS = 128
KNOWN_HOSTS_FILES = (Path("~/.ssh/known_hosts"), Path("/etc/ssh/ssh_known_hosts"))
# paramiko logs each failed connection with a traceback; the report says why instead.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


@dataclass(frozen=True)
class Target:
    """How to reach one host, as its inventory says."""

    name: str
    address: str
    user: str | None = None
    port: int = 22
    key_file: str | None = None
    proxy_command: str | None = None
    strict_host_keys: bool = True
    local: bool = False
    become_user: str | None = None
    gpu_required: bool = True
    # UserKnownHostsFile of ansible_ssh_common_args; empty: the usual files.
    known_hosts_files: tuple[str, ...] = ()


@dataclass(frozen=True)
class Result:
    target: Target
    status: probe.HostStatus | None
    error: str | None = None
    timed_out: bool = False
    seconds: float = 0.0

    @property
    def reached(self) -> bool:
        return self.status is not None and not self.timed_out


def _ssh_options(common_args: str) -> dict[str, str]:
    """`-o Key=Value` pairs of ansible_ssh_common_args, keys lower-cased."""
    options: dict[str, str] = {}
    words = shlex.split(common_args)
    for index, word in enumerate(words):
        pair = words[index + 1] if word == "-o" and index + 1 < len(words) else None
        if pair is None and word.startswith("-o") and len(word) > 2:
            pair = word[2:]
        if pair and "=" in pair:
            key, value = pair.split("=", 1)
            options[key.strip().lower()] = value.strip()
    return options


def _plain(value: Any) -> str | None:
    # A templated value only means something once Ansible renders it.
    if value is None or "{{" in str(value):
        return None
    return str(value)


def _true(value: Any) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def targets(found: inventory.Inventory, hosts: list[str]) -> list[Target]:
    """How to reach each of ``hosts``, from the variables Ansible resolved for it."""
    reached = []
    for host in hosts:
        variables = {name: s.value for name, s in found.hosts[host].items()}
        options = _ssh_options(_plain(variables.get("ansible_ssh_common_args")) or "")
        gpu = variables.get("gpuprov_gpu") or {}
        reached.append(
            Target(
                name=host,
                address=_plain(variables.get("ansible_host")) or host,
                user=_plain(variables.get("ansible_user")),
                port=int(variables.get("ansible_port") or 22),
                key_file=_plain(variables.get("ansible_ssh_private_key_file")),
                proxy_command=options.get("proxycommand"),
                strict_host_keys=options.get("stricthostkeychecking", "yes").lower() != "no",
                local=variables.get("ansible_connection") == "local",
                become_user=(
                    _plain(variables.get("ansible_become_user")) or "root"
                    if _true(variables.get("ansible_become"))
                    else None
                ),
                gpu_required=not (isinstance(gpu, dict) and gpu.get("required") is False),
                known_hosts_files=tuple(options.get("userknownhostsfile", "").split()),
            )
        )
    return reached


class _KnownOrRefused(paramiko.MissingHostKeyPolicy):
    """Host keys from the run's one read of known_hosts; unknown ones refused unless
    the inventory turned StrictHostKeyChecking off."""

    def __init__(self, known: KnownHosts, strict: bool) -> None:
        self.known, self.strict = known, strict

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: Any) -> None:
        verdict, where = self.known.check(hostname, key.get_name(), key.get_base64())
        if verdict is HostKeyVerdict.REVOKED:
            raise paramiko.SSHException(f"the host key of {hostname} is revoked ({where})")
        if verdict is HostKeyVerdict.UNKNOWN and self.strict:
            raise paramiko.SSHException(
                f"the host key of {hostname} ({key.get_name()}) is not in known_hosts: "
                f"ssh to it once to check and record it, or set "
                f"-o StrictHostKeyChecking=no in its ansible_ssh_common_args"
            )


def _client(target: Target, known: KnownHosts) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    # Only this host's lines: paramiko then checks them itself (and prefers
    # their key type), and a mismatch fails as BadHostKeyException.
    name = host_name(target.address, target.port)
    for entry in known.entries(name):
        if entry.revoked:
            continue
        try:
            key = paramiko.PKey.from_type_string(entry.key_type, base64.b64decode(entry.key))
        except (paramiko.SSHException, ValueError, TypeError):
            continue
        client.get_host_keys().add(name, entry.key_type, key)
    client.set_missing_host_key_policy(_KnownOrRefused(known, target.strict_host_keys))
    return client


def _cause(error: BaseException, target: Target, seconds: float) -> str:
    """What went wrong reaching a host, said plainly."""
    where = f"{target.address}:{target.port}"
    text = str(error)
    if isinstance(error, paramiko.BadHostKeyException):
        return (
            f"the host key of {where} does not match known_hosts (the host was reinstalled, "
            f"or someone is in between): check it, then update known_hosts"
        )
    if isinstance(error, paramiko.AuthenticationException):
        key = f" with {target.key_file}" if target.key_file else ""
        return f"authentication refused for {target.user or 'the SSH user'} on {where}{key}"
    if isinstance(error, paramiko.ssh_exception.NoValidConnectionsError):
        return f"connection refused on {where} (no sshd listening)"
    if isinstance(error, socket.gaierror):
        return f"cannot resolve {target.address!r}"
    if "banner" in text.lower() or "No existing session" in text:
        return (
            f"TCP connected to {where}, but no SSH banner came within {seconds:.0f} s "
            f"(a hung sshd, a firewall that accepts and drops, or not an SSH port)"
        )
    if isinstance(error, TimeoutError | socket.timeout):
        return f"no TCP connection to {where} within {seconds:.0f} s"
    return f"{type(error).__name__}: {text}"


def _read(channel: paramiko.Channel, deadline: float) -> tuple[str, bool]:
    """Everything the probe prints until it exits or the deadline passes."""
    chunks: list[bytes] = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return b"".join(chunks).decode(errors="replace"), True
        channel.settimeout(min(left, 1.0))
        try:
            data = channel.recv(65536)
        except TimeoutError:
            continue
        if not data:
            return b"".join(chunks).decode(errors="replace"), False
        chunks.append(data)


def _local(target: Target, seconds: float, script: str) -> tuple[str, bool]:
    command = ["sh", "-c", probe.remote_command(math.ceil(seconds), target.become_user, script)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 3)
    except subprocess.TimeoutExpired as expired:
        out = expired.stdout
        return (out.decode(errors="replace") if isinstance(out, bytes) else out or ""), True
    return done.stdout, done.returncode == 124


def _remote(target: Target, seconds: float, known: KnownHosts, script: str) -> tuple[str, bool]:
    deadline = time.monotonic() + seconds
    connect: dict[str, Any] = {
        "hostname": target.address,
        "port": target.port,
        "username": target.user,
        "timeout": seconds,
        "banner_timeout": seconds,
        "auth_timeout": seconds,
    }
    if target.key_file:
        connect["key_filename"] = str(Path(target.key_file).expanduser())
    if target.proxy_command:
        command = target.proxy_command.replace("%h", target.address).replace("%p", str(target.port))
        connect["sock"] = paramiko.ProxyCommand(command)
    client = _client(target, known)
    try:
        client.connect(**connect)
        transport = client.get_transport()
        assert transport is not None
        channel = transport.open_session(timeout=max(0.1, deadline - time.monotonic()))
        # Rounded up: the host's own timeout must not fire before ours.
        left = max(1, math.ceil(deadline - time.monotonic()))
        # sudo's own refusal goes to stderr: keep it with the probe's output.
        channel.set_combine_stderr(True)
        channel.exec_command(probe.remote_command(left, target.become_user, script))
        channel.shutdown_write()
        output, timed_out = _read(channel, deadline)
        if not timed_out and channel.recv_exit_status() == 124:
            timed_out = True
        return output, timed_out
    finally:
        client.close()


def _sudo_refused(target: Target, output: str) -> str | None:
    if target.become_user and probe.SEPARATOR not in output and "sudo" in output:
        said = output.strip().splitlines()[0][:200] if output.strip() else "sudo failed"
        return (
            f"become: {said}; let {target.user or 'the SSH user'} run sudo without a "
            f"password (NOPASSWD), or unset ansible_become for the host"
        )
    return None


def probe_one(
    target: Target,
    timeout: float = 10.0,
    known: KnownHosts | None = None,
    script: str = probe.PROBE_SCRIPT,
) -> Result:
    """One host, bounded by `timeout` seconds in all; ``script`` is the probe it runs
    (probe.status_script adds the workspaces' drift)."""
    started = time.monotonic()
    known = known if known is not None else KnownHosts()
    try:
        output, timed_out = (
            _local(target, timeout, script)
            if target.local
            else _remote(target, timeout, known, script)
        )
    except (OSError, EOFError, paramiko.SSHException) as error:
        return Result(target, None, _cause(error, target, timeout), False, _since(started))
    refused = _sudo_refused(target, output)
    if refused:
        return Result(target, None, refused, False, _since(started))
    status = probe.parse(output)
    if timed_out:
        section = probe.running_section(output)
        during = f" in {section}" if section else ""
        error = f"timed out after {timeout:.0f} s{during}; the probe was ended on the host"
        return Result(target, status, error, True, _since(started))
    return Result(target, status, None, False, _since(started))


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)


@dataclass
class Progress:
    """What a progress line shows while hosts answer."""

    total: int
    done: int = 0
    started: dict[str, float] = field(default_factory=dict)

    def slowest(self) -> tuple[str, float] | None:
        if not self.started:
            return None
        name, at = min(self.started.items(), key=lambda item: item[1])
        return name, time.monotonic() - at


def load_known_hosts(files: tuple[str, ...] = ()) -> KnownHosts:
    """The files OpenSSH would read for a host: its UserKnownHostsFile, else the user's
    own, and the system's."""
    user = [Path(f) for f in files] or [KNOWN_HOSTS_FILES[0]]
    return KnownHosts.load([path.expanduser() for path in (*user, KNOWN_HOSTS_FILES[1])])


def probe_all(
    found: list[Target],
    timeout: float = 10.0,
    deadline: float | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    script: str = probe.PROBE_SCRIPT,
) -> list[Result]:
    """Every host at once; each bounded by `timeout`, the whole run by `deadline` seconds.

    A host still outstanding after its own timeout (plus a second's grace) or at
    the deadline is reported timed out, with the others complete. Results come
    back in the order of `found`. Workers are daemon threads, so one stuck in a
    socket can never keep the command from exiting.
    """
    if not found:
        return []
    # Each distinct set of known_hosts files is read once for the whole run.
    known = {files: load_known_hosts(files) for files in {t.known_hosts_files for t in found}}
    progress = Progress(len(found))
    lock = threading.Lock()
    todo: queue.SimpleQueue[Target] = queue.SimpleQueue()
    answers: queue.SimpleQueue[Result] = queue.SimpleQueue()
    for target in found:
        todo.put(target)

    def work() -> None:
        while True:
            try:
                target = todo.get_nowait()
            except queue.Empty:
                return
            with lock:
                progress.started[target.name] = time.monotonic()
            answers.put(probe_one(target, timeout, known[target.known_hosts_files], script))

    for _ in range(min(MAX_WORKERS, len(found))):
        threading.Thread(target=work, daemon=True).start()

    ends = time.monotonic() + deadline if deadline else math.inf
    results: dict[str, Result] = {}
    while len(results) < len(found) and time.monotonic() < ends:
        try:
            result = answers.get(timeout=max(0.01, min(0.5, ends - time.monotonic())))
        except queue.Empty:
            result = None
        with lock:
            if result is not None and result.target.name not in results:
                results[result.target.name] = result
            now = time.monotonic()
            for target in found:
                at = progress.started.get(target.name)
                if target.name not in results and at is not None and now - at > timeout + 1:
                    results[target.name] = Result(
                        target, None, f"no answer within {timeout:.0f} s", True, now - at
                    )
            for name in results:
                progress.started.pop(name, None)
            progress.done = len(results)
            if on_progress:
                on_progress(progress)
    for target in found:
        if target.name not in results:
            results[target.name] = Result(
                target, None, f"not answered within the run's deadline of {deadline:.0f} s", True
            )
    return [results[target.name] for target in found]


def status_script(timeout: float) -> str:
    """The status probe with every running workspace's drift inspection, which gets what
    the host's own bound leaves after the rest of the probe."""
    return probe.status_script(drift.program(), max(1, math.ceil(timeout) - 2))


def drift_rows(results: list[Result]) -> list[dict[str, Any]]:
    """The workspaces' drift from status_script's results: a host that was not read, whose
    Docker did not answer, or that was cut short before any workspace answered, is
    one unknown row that says why."""
    rows = []
    for result in results:
        status = result.status
        if status is None or status.docker is None or (result.timed_out and not status.drift):
            why = result.error or (
                next((p for p in status.problems if p.startswith("Docker")), None)
                if status
                else None
            )
            rows += workspace_drift.host_rows(result.target.name, None, why)
        else:
            rows += workspace_drift.host_rows(result.target.name, status.drift, None)
    return rows


def audit_workspaces(
    found: list[Target],
    timeout: float = 60.0,
    deadline: float | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> list[dict[str, Any]]:
    """The drift of every running workspace on ``found`` hosts, inspected inside each as
    its user, all hosts at once: `gpuprov audit --workspaces` and the rollout's
    pre-flight. workspace_drift.exit_code tells clean (0), drift (1) and unknown (2)."""
    return drift_rows(probe_all(found, timeout, deadline, on_progress, status_script(timeout)))
