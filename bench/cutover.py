"""A rollout's cut-over per workspace: from the old container's end to the new one answering.

One test bed host runs alice's Jupyter and SSH workspaces (the test image, with the
team image's real entrypoint). The new image is on the host before the clock starts,
as upgrade.yml's pre-flight leaves it. A watcher on the host records, with the host's
clock, each old container's `die` (docker events) and the first moment the new one
answers: Jupyter's /api/status with the user's token (200), sshd's banner. Rounds
alternate between two images, so every round is a real move.

Prints figures and saves them to bench/results/cutover.json; it passes or fails
nothing. The issue's target: at most 10 s per workspace on the test bed.
Needs root and the test bed's packages (`scripts/bootstrap --test`).
Run: .venv/bin/python bench/cutover.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests/integration")]

import test_workspaces as story  # noqa: E402  (the workspace image and inventory of the tests)
from testbed import HostSpec, TestBed  # noqa: E402

from gpuprov.core import image_build  # noqa: E402

WORKSPACES = ("gpuprov-alice-jupyter", "gpuprov-alice-ssh")
# Runs on the host: prints one JSON line per event, with the host's clock (the
# controller's: the bed's hosts are containers on this kernel).
WATCHER = r"""
import json, socket, subprocess, sys, threading, time, urllib.request
jupyter_port, ssh_port, token_file = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def say(**event):
    print(json.dumps({"t": time.time(), **event}), flush=True)
def events():
    proc = subprocess.Popen(["docker", "events", "--filter", "type=container", "--filter",
        "event=die", "--format", "{{.Actor.Attributes.name}}"], stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:
        say(kind="die", name=line.strip())
def jupyter():
    try:
        token = open(token_file).read().strip()
        request = urllib.request.Request(f"http://127.0.0.1:{jupyter_port}/api/status",
                                         headers={"Authorization": f"token {token}"})
        with urllib.request.urlopen(request, timeout=1) as answer:
            return answer.status == 200
    except Exception:
        return False
def ssh():
    try:
        with socket.create_connection(("127.0.0.1", ssh_port), timeout=1) as s:
            s.settimeout(1)
            return s.recv(4) == b"SSH-"
    except Exception:
        return False
threading.Thread(target=events, daemon=True).start()
state = {}
while True:
    for name, probe in (("gpuprov-alice-jupyter", jupyter), ("gpuprov-alice-ssh", ssh)):
        up = probe()
        if state.get(name) != up:
            state[name] = up
            say(kind="up" if up else "down", name=name)
    time.sleep(0.05)
"""


def cutovers(lines: list[str]) -> dict[str, float]:
    """Seconds from each workspace's old container dying to its new one answering."""
    died: dict[str, float] = {}
    found: dict[str, float] = {}
    for line in lines:
        event = json.loads(line)
        name = event["name"]
        if event["kind"] == "die" and name in WORKSPACES:
            died.setdefault(name, event["t"])
        elif event["kind"] == "up" and name in died and name not in found:
            found[name] = event["t"] - died[name]
    return found


def images(bed: TestBed, root: Path) -> tuple[str, str]:
    local = story.build_workspace_image(bed, root / "image")
    labels = "".join(f'LABEL "{k}"="{v}"\n' for k, v in image_build.labels(story.PROMISES).items())
    refs = []
    for n in (1, 2):
        context = root / f"v{n}"
        context.mkdir()
        (context / "Dockerfile").write_text(f"FROM {local}\n{labels}LABEL bench.cutover={n}\n")
        story._docker(bed, "build", "-q", "-t", f"{local}-cutover{n}", str(context))
        refs.append(bed.push_image(f"{local}-cutover{n}", f"gpuprov-bench/cutover:{n}"))
    return refs[0], refs[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="gpuprov-bench-cutover."))
    bed = TestBed([HostSpec("h100", toolkit_version="1.19.1")])
    bed.start()
    rounds = []
    try:
        first, second = images(bed, root)
        (root / "team").mkdir()
        team = story.Team(bed, root / "team", first, password_hash="unused")
        team.hosts = ["h100"]
        team.users = {"alice": team.users["alice"]}
        team.play()
        for n in range(args.rounds):
            target = second if n % 2 == 0 else first
            story.pin(team, target)
            # The pre-flight's pull, done before the clock starts.
            story.on_host(bed, "h100", f"docker pull -q {target}")
            remote = [
                "python3", "-c", WATCHER, str(story.port(2001, "jupyter")),
                str(story.port(2001, "ssh")), "/etc/gpuprov/secrets/alice/jupyter-token",
            ]  # fmt: skip
            watcher = subprocess.Popen(
                [*bed.ssh_argv("h100"), shlex.join(remote)], stdout=subprocess.PIPE, text=True
            )
            time.sleep(2)
            started = time.monotonic()
            team.play("playbooks/upgrade.yml", extra=(*story.NO_GATES,))
            wall = time.monotonic() - started
            watcher.terminate()
            out, _ = watcher.communicate(timeout=30)
            found = cutovers(out.splitlines())
            rounds.append({"round": n + 1, "upgrade_wall_s": round(wall, 1),
                           "cutover_s": {k: round(v, 2) for k, v in found.items()}})  # fmt: skip
            print(f"round {n + 1}: upgrade.yml {wall:.1f} s; cut-over "
                  + ", ".join(f"{k} {v:.2f} s" for k, v in sorted(found.items())))  # fmt: skip
    finally:
        bed.stop()
    every = [s for r in rounds for s in r["cutover_s"].values()]
    summary = {
        "machine": platform.node(),
        "cores": len(os.sched_getaffinity(0)),
        "target_s": 10,
        "rounds": rounds,
        "median_s": round(statistics.median(every), 2) if every else None,
        "max_s": round(max(every), 2) if every else None,
    }
    print(f"cut-over per workspace: median {summary['median_s']} s, max {summary['max_s']} s "
          f"(target <= 10 s), {len(every)} cut-overs")  # fmt: skip
    out = REPO / "bench/results/cutover.json"
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"saved {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
