# ruff: noqa: E501 - docker top prints one process per line, whatever its length
"""Work in progress in a workspace: docker top and Jupyter's API parsed, the policy's verdict."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime

import pytest
from support.captures import L40S, section

from gpuprov.core import activity
from gpuprov.core.activity import Activity, GpuProcesses
from gpuprov.core.nvidia import COMPUTE_APPS_COMMAND, ComputeProcess

# docker top -eo pid,etimes,args in the test bed's workspaces (the team image's entrypoint).
TOP_IDLE = """\
PID                 ELAPSED             COMMAND
41021               512                 /usr/bin/tini -- /usr/local/bin/gpuprov-workspace ssh
41078               511                 /usr/sbin/sshd -D -e -f /tmp/gpuprov-sshd_config
41102               2                   python3 -c import socket; s = socket.create_connection(("127.0.0.1", 2222), timeout=5); assert s.recv(4) == b"SSH-"
"""
TOP_JUPYTER = """\
PID                 ELAPSED             COMMAND
50001               900                 /usr/bin/tini -- /usr/local/bin/gpuprov-workspace jupyter
50009               899                 /opt/venv/bin/python3 /opt/venv/bin/jupyter-lab --no-browser --config=/tmp/gpuprov-jupyter_server_config.py --ServerApp.ip=0.0.0.0
50110               60                  /opt/venv/bin/python -m ipykernel_launcher -f /home/alice/.local/share/jupyter/runtime/kernel-1.json
50200               1                   python3 -c import urllib.request; urllib.request.urlopen("http://127.0.0.1:8888/api", timeout=5)
"""
TOP_BUSY = """\
PID                 ELAPSED             COMMAND
41021               512                 /usr/bin/tini -- /usr/local/bin/gpuprov-workspace ssh
41078               511                 /usr/sbin/sshd -D -e -f /tmp/gpuprov-sshd_config
41300               40                  sshd: alice@pts/0
41301               40                  -bash
41377               30                  python train.py --epochs 90
41400               20                  sshd: alice@notty
"""
NOW = datetime(2026, 12, 4, 21, 0, tzinfo=UTC)


def test_a_workspace_running_only_its_services_is_idle():
    assert activity.session_reasons(activity.parse_top(TOP_IDLE)) == []
    assert activity.session_reasons(activity.parse_top(TOP_JUPYTER)) == []


def test_ssh_sessions_and_the_jobs_in_them_make_a_workspace_busy():
    processes = activity.parse_top(TOP_BUSY)
    assert processes[4] == (41377, 30, "python train.py --epochs 90")
    assert activity.session_reasons(processes) == [
        "SSH session open (pts/0)",
        "SSH session open (notty)",
        "2 process(es) running (-bash, python train.py --epochs 90)",
    ]


def test_the_real_ps_output_parses(tmp_path):
    """The parser on what procps' ps prints here for the same columns docker top asks for."""
    out = subprocess.run(["ps", "-eo", "pid,etimes,args"], capture_output=True, text=True)
    processes = activity.parse_top(out.stdout)
    assert processes and all(pid > 0 and seconds >= 0 for pid, seconds, _ in processes)


# The L40S's real compute-apps answers; its load run's first row is ffmpeg, pid 20037.
GPU_IDLE, GPU_LOAD = section(L40S, " ".join(COMPUTE_APPS_COMMAND))


def test_a_kernel_holding_a_gpu_keeps_an_otherwise_idle_workspace_busy():
    """The kernel is one of the workspace's services, yet its GPU memory is the user's state."""
    processes = activity.parse_top(TOP_JUPYTER.replace("50110 ", "20037 "))
    assert activity.session_reasons(processes) == []
    gpus = activity.gpu_processes(0, GPU_LOAD)
    assert activity.gpu_reasons(processes, gpus.processes) == [
        "GPU compute process pid 20037 (ffmpeg, 538 MiB)"
    ]
    # The host's other GPU processes belong to other containers (or to none).
    assert activity.gpu_reasons(activity.parse_top(TOP_BUSY), gpus.processes) == []
    assert activity.gpu_reasons(processes, activity.gpu_processes(0, GPU_IDLE).processes) == []


def test_a_process_on_two_gpus_is_one_reason_with_its_memory_summed():
    gpus = [
        ComputeProcess(41377, "python", 1000, "GPU-a"),
        ComputeProcess(41377, "python", 24, "GPU-b"),
        ComputeProcess(41301, "bash", None, "GPU-a"),
    ]
    assert activity.gpu_reasons(activity.parse_top(TOP_BUSY), gpus) == [
        "GPU compute process pid 41377 (python, 1024 MiB)",
        "GPU compute process pid 41301 (bash, memory not reported)",
    ]


@pytest.mark.parametrize(
    ("returncode", "stdout", "stderr", "unknown"),
    [
        # No nvidia-smi: a host without GPUs; no driver loaded or no GPU seen: none can run.
        (None, "", "", ""),
        (
            9,
            "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.",
            "",
            "",
        ),
        (6, "No devices were found", "", ""),
        # A driver upgraded under running processes: they may still run.
        (
            18,
            "Failed to initialize NVML: Driver/library version mismatch\nNVML library version: 595.80",
            "",
            "GPU processes could not be read: nvidia-smi exited 18: Failed to initialize NVML: "
            "Driver/library version mismatch",
        ),
        (
            124,
            "",
            "no answer within 60 s",
            "GPU processes could not be read: nvidia-smi exited 124: no answer within 60 s",
        ),
        (
            0,
            "Segmentation fault\n",
            "",
            "GPU processes could not be read: --query-compute-apps output without pid, "
            "process_name, used_gpu_memory, gpu_uuid in its header: 'Segmentation fault'",
        ),
        (
            0,
            "",
            "",
            "GPU processes could not be read: no output from --query-compute-apps, not even its header",
        ),
    ],
)
def test_gpu_processes_that_could_not_be_read_are_unknown(returncode, stdout, stderr, unknown):
    assert activity.gpu_processes(returncode, stdout, stderr) == GpuProcesses((), unknown)


KERNELS = json.loads("""[
 {"id": "k1", "name": "python3", "last_activity": "2026-12-04T20:58:00.123456Z",
  "execution_state": "idle", "connections": 1},
 {"id": "k2", "name": "python3", "last_activity": "2026-12-04T18:00:00Z",
  "execution_state": "busy", "connections": 0},
 {"id": "k3", "name": "ir", "last_activity": "2026-12-04T18:00:00Z",
  "execution_state": "idle", "connections": 0}
]""")


def test_kernels_busy_or_used_recently_make_a_jupyter_workspace_busy():
    assert activity.jupyter_reasons(KERNELS, [], NOW, idle_minutes=15) == [
        "python3 kernel active 2 min ago",
        "python3 kernel busy",
    ]
    assert activity.jupyter_reasons(KERNELS[2:], [], NOW, idle_minutes=15) == []
    terminal = {"name": "1", "last_activity": "2026-12-04T20:59:30Z"}
    assert activity.jupyter_reasons([], [terminal], NOW, 15) == ["terminal 1 active"]
    assert activity.jupyter_reasons([], [terminal], NOW, 0) == []


def test_a_kernel_without_a_readable_time_counts_as_active():
    assert activity.jupyter_reasons([{"name": "python3"}], [], NOW, 15) == [
        "python3 kernel active ? min ago"
    ]


def test_jupyters_lists_must_be_lists():
    assert activity.parse_list('[{"id": "k1"}, "junk"]') == [{"id": "k1"}]
    with pytest.raises(ValueError, match="expected a JSON list"):
        activity.parse_list('{"message": "Forbidden"}')


IDLE = Activity("gpuprov-alice-ssh")
BUSY = Activity("gpuprov-alice-ssh", ("SSH session open (pts/0)",))
UNREAD = Activity("gpuprov-alice-jupyter", (), ("Jupyter's kernels could not be read",))


@pytest.mark.parametrize(
    ("policy", "found", "waited", "verdict"),
    [
        ("wait", IDLE, 0, "move"),
        ("wait", BUSY, 10, "wait"),
        ("wait", BUSY, 600, "pending"),  # the deadline passed: it keeps its image
        ("skip", BUSY, 0, "pending"),
        ("force", BUSY, 0, "move"),
        ("skip", UNREAD, 0, "pending"),  # what could not be read is not restarted
        ("force", UNREAD, 0, "move"),
    ],
)
def test_the_policy_decides_what_a_busy_workspace_does(policy, found, waited, verdict):
    assert activity.decide(policy, found, waited, deadline=600) == verdict


def test_an_unknown_policy_is_an_error():
    with pytest.raises(ValueError, match="one of wait, skip, force"):
        activity.decide("later", BUSY, 0, 0)


def test_the_notice_says_when_and_what_stays():
    said = activity.notice("h100", "team@sha256:ab", "wait", 600)
    assert said.startswith("gpuprov: this workspace on h100 will restart to move to the team ")
    assert "waits up to 600 s" in said and "Files in your home stay" in said
    assert "restarts in 60 s" in activity.notice("h100", "team@sha256:ab", "force", "60")
    assert "restarts now" in activity.notice("h100", "team@sha256:ab", "force", 0)
