"""gpuprov's playbooks as Ansible runs them: seconds per host and per host·task, and the
SSH sessions and exec channels each run opens.

  verify  playbooks/verify.yml over SSH against N Docker test bed hosts (each an SSH
          server with its own dockerd and the fake NVIDIA tools replaying a real H100
          capture; the CUDA workload fails honestly, as it must without a GPU)
  site    a no-op rerun of site.yml on inventories/local, this machine, when `make run`
          has provisioned it (local connection: no SSH)

verify runs with the repository's ansible.cfg ("tuned": pipelining on, OpenSSH
ControlPersist) and with each of those turned back off, to show what each buys. Every
ssh Ansible starts goes through a wrapper that counts it as an exec channel, and as a
new SSH session when no ControlMaster socket was there yet.

Prints figures and saves them to bench/results/playbooks.json; it passes or fails
nothing. Needs root and the test bed's packages (`scripts/bootstrap --test`).
Run: .venv/bin/python bench/playbook_runs.py [--rounds 3] [--hosts 3,6]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import tempfile
from pathlib import Path

import measure
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(REPO / "tests"))

from testbed import HostSpec, TestBed  # noqa: E402  (the bed lives with the tests)

RECAP = re.compile(
    r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)"
    r"\s+skipped=(\d+)\s+rescued=(\d+)\s+ignored=(\d+)",
    re.MULTILINE,
)
# Each ssh Ansible runs is one exec channel; it opens a session (TCP, key exchange,
# login) unless a ControlMaster socket already answers for its ControlPath.
SSH_WRAPPER = """#!{python}
import os, sys
path = next((a.split("=", 1)[1].strip('"') for a in sys.argv if a.startswith("ControlPath=")), "")
kind = "mux" if path and os.path.exists(path) else "session"
with open(os.environ["GPUPROV_BENCH_SSH_LOG"], "a") as log:
    log.write(kind + "\\n")
os.execv("/usr/bin/ssh", ["ssh", *sys.argv[1:]])
"""
SETTINGS = {
    "tuned": {},
    "no pipelining": {"ANSIBLE_PIPELINING": "False"},
    "no ControlPersist": {"ANSIBLE_SSH_ARGS": "-C -o ControlMaster=no"},
}
CUDA_ENV = {
    "CUDA_VERSION": "12.6.3",
    "NVIDIA_REQUIRE_CUDA": "cuda>=12.6 brand=tesla,driver>=470,driver<471",
}


def tasks_per_host(output: str) -> dict[str, int]:
    """Tasks each host ran, from the play recap (skipped ones cost a round trip too)."""
    return {
        m.group(1): sum(int(m.group(i)) for i in (2, 5, 6, 7, 8)) for m in RECAP.finditer(output)
    }


def record(playbook: str, hosts: int, setting: str, runs: list[measure.Run], ssh: dict) -> dict:
    tasks = tasks_per_host(runs[-1].stdout)
    host_tasks = sum(tasks.values())
    figures = measure.summary(runs)
    result = {
        "playbook": playbook,
        "hosts": hosts,
        "setting": setting,
        **figures,
        "tasks_per_host": round(host_tasks / max(len(tasks), 1), 1),
        "s_per_host": round(figures["median_s"] / hosts, 3),
        "s_per_host_task": round(figures["median_s"] / max(host_tasks, 1), 4),
        "ssh_sessions": ssh.get("session", 0),
        "exec_channels": ssh.get("session", 0) + ssh.get("mux", 0),
    }
    print(
        f"{playbook:<7} {hosts:>2} hosts  {setting:<18} median {result['median_s']:6.2f} s"
        f"  {result['s_per_host']:5.2f} s/host  {result['s_per_host_task']:.3f} s/host·task"
        f"  ({result['tasks_per_host']} tasks/host)  sessions {result['ssh_sessions']:>3}"
        f"  exec channels {result['exec_channels']:>4}  cpu {result['cpu_s']:.1f} s"
        f"  rss {result['peak_rss_mib']} MiB",
        flush=True,
    )
    return result


def ssh_counts(log: Path, rounds: int) -> dict[str, int]:
    """Per run: what the wrapper logged over `rounds` runs, divided evenly."""
    lines = log.read_text().split() if log.exists() else []
    return {kind: round(lines.count(kind) / rounds) for kind in ("session", "mux")}


def bench_verify(sizes: list[int], rounds: int, root: Path) -> list[dict]:
    records: list[dict] = []
    wrapper = root / "ssh"
    wrapper.write_text(SSH_WRAPPER.format(python=sys.executable))
    wrapper.chmod(0o755)
    bed = TestBed([HostSpec(f"h{i}", toolkit_version="1.19.1") for i in range(max(sizes))])
    bed.start()
    try:
        assert bed.engine
        tag = "gpuprov-bench/verify-team:1"
        dockerfile = f"FROM {bed.base_image}\n" + "".join(
            f'ENV {key}="{value}"\n' for key, value in CUDA_ENV.items()
        )
        bed.engine.docker("build", "-q", "-t", tag, "-", input=dockerfile)
        reference, digest = bed.push_image(tag, "gpuprov-bench/verify-team:1").split("@")
        image = {
            "reference": reference, "digest": digest, "source": "pull", "flavour": "cuda",
            "promises": {"python": "3.11", "torch": "2.7.1", "cuda": "12.6"},
        }  # fmt: skip
        for hosts in sizes:
            inventory = root / f"inventory-{hosts}"
            (inventory / "group_vars/all").mkdir(parents=True)
            (inventory / "group_vars/all/image.yml").write_text(
                yaml.safe_dump({"gpuprov_image": image})
            )
            members = {h: bed.ansible_host_vars(h) for h in list(bed.hosts)[:hosts]}
            (inventory / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": members}}))
            command = [
                str(BIN / "ansible-playbook"), "-i", str(inventory), "playbooks/verify.yml",
                "-e", f"host_verify_report_dir={root / 'reports'}",
            ]  # fmt: skip
            base = {
                **os.environ,
                "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
                "ANSIBLE_SSH_EXECUTABLE": str(wrapper),
                "ANSIBLE_NOCOLOR": "1",
                "GPUPROV_BENCH_SSH_LOG": str(root / "warm-up.log"),
                "PATH": f"{BIN}:{os.environ['PATH']}",
            }
            first = measure.run(command, base, cwd=REPO)  # it pulls the image
            reached = tasks_per_host(first.stdout)
            # The check play alone is one task: fewer than five means no host was verified.
            if len(reached) != hosts or min(reached.values()) < 5:
                raise SystemExit(f"bench: verify.yml reached no host:\n{first.stdout[-3000:]}")
            runs: dict[str, list[measure.Run]] = {name: [] for name in SETTINGS}
            for round_ in range(rounds):
                for name, changes in SETTINGS.items():
                    env = {
                        **base,
                        **changes,
                        "GPUPROV_BENCH_SSH_LOG": str(root / f"ssh-{hosts}-{name}.log"),
                        # No master left over from the run before: each run pays its own.
                        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(root / f"cp-{hosts}-{name}-{round_}"),
                    }
                    runs[name].append(measure.run(command, env, cwd=REPO))
            for name, got in runs.items():
                counts = ssh_counts(root / f"ssh-{hosts}-{name}.log", rounds)
                records.append(record("verify", hosts, name, got, counts))
    finally:
        bed.stop()
    return records


def bench_site(rounds: int) -> list[dict]:
    if not Path("/srv/gpuprov/demo").is_dir():
        print("site: skipped, this machine is not provisioned (run `make run` first)")
        return []
    command = [str(BIN / "ansible-playbook"), "site.yml"]
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "PATH": f"{BIN}:{os.environ['PATH']}",
    }
    runs = [measure.run(command, env, cwd=REPO) for _ in range(rounds)]
    return [record("site", 1, "tuned", runs, {})]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hosts", default="3,6")
    args = parser.parse_args()
    sizes = sorted(int(n) for n in args.hosts.split(","))
    with tempfile.TemporaryDirectory(prefix="gpuprov-bench-") as tmp:
        records = bench_verify(sizes, args.rounds, Path(tmp)) + bench_site(args.rounds)
    results = Path(__file__).parent / "results"
    results.mkdir(exist_ok=True)
    machine = f"{platform.node()}: {os.cpu_count()} CPUs, {platform.platform()}"
    (results / "playbooks.json").write_text(
        json.dumps({"machine": machine, "rounds": args.rounds, "records": records}, indent=2) + "\n"
    )
    print(f"saved bench/results/playbooks.json ({machine})")


if __name__ == "__main__":
    main()
