"""The rollout's health gate: docker's output parsed, the steady window on a fake clock,
and the torch probe run by a real Python (without torch here: the failure it reports)."""

from __future__ import annotations

import subprocess
import sys

from gpuprov.core import workspace, workspace_health
from gpuprov.core.workspace_health import Life

INSPECTED = (
    "/gpuprov-alice-jupyter\t0\t2026-12-04T20:01:02.123456789Z\ttrue\n"
    "/gpuprov-alice-ssh\t3\t2026-12-04T20:01:09.5Z\tfalse\n"
)


def test_docker_inspects_output_gives_each_containers_life():
    assert workspace_health.parse_inspect(INSPECTED) == {
        "gpuprov-alice-jupyter": Life(0, "2026-12-04T20:01:02.123456789Z", True),
        "gpuprov-alice-ssh": Life(3, "2026-12-04T20:01:09.5Z", False),
    }
    assert workspace_health.parse_inspect("Error: No such object: x\n") == {}
    command = workspace_health.inspect_command("unix:///run/d.sock", ["a", "b"])
    assert command[:4] == ["docker", "-H", "unix:///run/d.sock", "inspect"]
    assert command[-2:] == ["a", "b"]


class Clock:
    """Seconds that pass only when the gate sleeps: no test waits for real time."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _gate(lives_at, min_healthy=5, deadline=30):
    clock = Clock()
    problems = workspace_health.watch(
        ["ws"], lambda: lives_at(clock.now), clock, clock.sleep, min_healthy, deadline
    )
    return problems, clock.now


def test_a_steady_container_passes_after_the_minimum_healthy_time():
    problems, waited = _gate(lambda t: {"ws": Life(0, "s0", True)})
    assert problems == []
    assert 5 <= waited < 6


def test_a_container_that_answers_once_then_crash_loops_fails_with_its_restarts():
    def crash_loop(t: float) -> dict[str, Life]:
        restarts = int(t // 3)  # restarts every 3 s, never steady for 5
        return {"ws": Life(restarts, f"s{restarts}", t % 3 < 2)}

    problems, waited = _gate(crash_loop)
    assert waited >= 30
    assert problems in (["ws: not running"], [f"ws: restarted (RestartCount {int(waited // 3)})"])


def test_one_restart_starts_the_window_again():
    def restarts_once(t: float) -> dict[str, Life]:
        return {"ws": Life(0, "s0", True) if t < 2 else Life(1, "s1", True)}

    problems, waited = _gate(restarts_once)
    assert problems == []
    assert 7 <= waited < 8  # 2 s, then a full 5 s window


def test_a_container_that_never_appears_is_reported_at_the_deadline():
    problems, waited = _gate(lambda t: {}, deadline=10)
    assert problems == ["ws: not found"]
    assert 10 <= waited < 11


def test_the_torch_probe_run_where_torch_is_missing_reports_its_last_words():
    """The probe is real Python: here it runs without torch, as in an image that lost it."""
    done = subprocess.run(
        [sys.executable, "-I", "-c", workspace_health.TORCH_PROBE, "cpu"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    said = workspace_health.torch_failure(
        "gpuprov-alice-ssh", done.returncode, done.stdout, done.stderr
    )
    assert said == (
        "gpuprov-alice-ssh: torch does not work as the user "
        "(ModuleNotFoundError: No module named 'torch')"
    )
    assert workspace_health.torch_failure("w", 0, "2.13.0+cpu cpu\n", "") == ""
    assert workspace_health.torch_failure("w", 137, "", "") == (
        "w: torch does not work as the user (exit 137)"
    )
    command = workspace_health.torch_command("unix:///d.sock", "w", 2001, gpus=True)
    assert command[3:7] == ["exec", "--user", "2001", "w"]
    assert command[-1] == "gpu"


def test_the_probe_key_may_run_one_echo_and_nothing_else():
    keys = workspace.authorized_keys(
        ["ssh-ed25519 AAAAC3Nza alice@laptop  "], "ssh-ed25519 AAAAprobe gpuprov-probe@h100\n"
    )
    assert keys == (
        "ssh-ed25519 AAAAC3Nza alice@laptop\n"
        'restrict,command="echo gpuprov-probe-ok" ssh-ed25519 AAAAprobe gpuprov-probe@h100\n'
    )
    assert workspace.authorized_keys(["ssh-ed25519 AAAAC3Nza"], "") == "ssh-ed25519 AAAAC3Nza\n"


def test_the_probe_login_checks_the_workspaces_own_host_key():
    line = workspace_health.known_hosts_line(
        "127.0.0.1", 20011, "ssh-ed25519 AAAAhost root@container\n"
    )
    assert line == "[127.0.0.1]:20011 ssh-ed25519 AAAAhost\n"
    command = workspace_health.ssh_probe_command("/k", "/kh", "alice", "127.0.0.1", 20011)
    assert "StrictHostKeyChecking=yes" in command and "UserKnownHostsFile=/kh" in command
    assert command[-2:] == ["alice@127.0.0.1", "probe"]
    assert workspace_health.ssh_failure("w", 0, "gpuprov-probe-ok\n", "") == ""
    refused = workspace_health.ssh_failure(
        "w", 255, "", "alice@127.0.0.1: Permission denied (publickey).\n"
    )
    assert refused == (
        "w: the SSH login as the user failed (alice@127.0.0.1: Permission denied (publickey).)"
    )
    # A login that ran something else (a shell, not the forced command) is no pass.
    assert workspace_health.ssh_failure("w", 0, "2001\n", "").startswith("w: the SSH login")
