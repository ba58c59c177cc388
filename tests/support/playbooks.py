"""ansible-playbook as `make` runs it: the repository's ansible.cfg and venv."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def ansible_playbook(
    *args: str, cwd: Path = REPO, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0"}
    env["PATH"] = f"{REPO / '.venv/bin'}:{env['PATH']}"
    return subprocess.run(
        ["ansible-playbook", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def task_results(stdout: str, task: str) -> list[str]:
    """The per-host result lines (`ok: [h100]`, `fatal: [oldgpu]: …`) of the task named so."""
    lines: list[str] = []
    for chunk in stdout.split("\nTASK [")[1:]:
        if chunk.split("]", 1)[0].endswith(task):
            lines += [
                line for line in chunk.splitlines() if re.match(r"(ok|changed|fatal): \[", line)
            ]
    return lines
