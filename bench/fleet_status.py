"""`gpuprov status` against plain Ansible and the SSH floor, on lightweight SSH hosts.

Each host is an `sshd -D` on its own loopback port with its own host key, key-only,
whose sessions find fake `nvidia-smi`, `nvidia-ctk` and `docker` first on PATH
(the test bed's fake, replaying a real H100 capture). They start in seconds, so
40 of them fit on a laptop; no Docker test bed is needed.

Commands, run interleaved (each round runs every command once, in turn):
  status  gpuprov status -i INVENTORY
  setup   ansible all -i INVENTORY -m ansible.builtin.setup
  ping    ansible all -i INVENTORY -m ansible.builtin.ping
  floor   `ssh HOST true` to every host at once (OpenSSH, the same key exchange)
and `status` again with a 1,000-line hashed known_hosts, with one host of 10
hung (nvidia-smi never answers) and with one slow (each NVIDIA tool answers after
1 s, about 4 s in all).

Prints figures and saves them to bench/results/status.json; it passes or fails
nothing. Needs root and /usr/sbin/sshd (`scripts/bootstrap --bench`).
Run: .venv/bin/python bench/fleet_status.py [--rounds 5] [--hosts 3,10,20,40]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import measure
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
FAKE_LIB = REPO / "tests/testbed/assets/host/lib"
CAPTURES = REPO / "tests/fixtures/nvidia-smi"
CAPTURE = "linux-x86_64__nvidia-h100-80gb-hbm3__590.48.01.txt"
FIRST_PORT = 42200
# The test bed's fakes are Python, and all the bench's hosts share this machine's
# CPUs: 40 hosts starting Python four times each would measure the fakes, not
# the fleet. Each distinct call is replayed once and its answer kept; a host with
# a fault set runs the fake itself, so hung and slow hosts stay hung and slow.
ANSWERS = """#!/bin/sh
[ -s "$GPUPROV_FAKE_FAULTS" ] && exec {real} "$@"
answer={answers}/{tool}-$(printf '%s\\n' "$@" | md5sum | cut -c1-16)
if [ ! -f "$answer.rc" ]; then
    {real} "$@" >"$answer.out.$$" 2>&1
    echo $? >"$answer.rc.$$"
    mv "$answer.out.$$" "$answer.out" && mv "$answer.rc.$$" "$answer.rc"
fi
cat "$answer.out"
exit "$(cat "$answer.rc")"
"""
TIMEOUT = 10
KEX = "curve25519-sha256@libssh.org"


class Fleet:
    """N sshd processes on loopback, each a "host" with the fake NVIDIA tools."""

    def __init__(self, root: Path, count: int) -> None:
        self.root, self.count = root, count
        self.key = root / "id_ed25519"
        self.home = root / "home"
        self.processes: list[subprocess.Popen[bytes]] = []
        self.ports = [FIRST_PORT + i for i in range(count)]

    def start(self) -> None:
        (self.home / ".ssh").mkdir(parents=True, exist_ok=True)
        # sshd running as root wants its privilege separation directory.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        if not self.key.exists():
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key)], check=True
            )
        fake_bin = self.root / "bin"
        (fake_bin / "replay").mkdir(parents=True, exist_ok=True)
        (self.root / "answers").mkdir(exist_ok=True)
        for tool in ("nvidia-smi", "nvidia-ctk"):
            real = fake_bin / "replay" / tool
            shutil.copy(REPO / "tests/testbed/assets/host/bin" / tool, real)
            real.write_text(real.read_text().replace("/opt/gpuprov-fake/lib", str(FAKE_LIB)))
            real.chmod(0o755)
            (fake_bin / tool).write_text(
                ANSWERS.format(real=real, answers=self.root / "answers", tool=tool)
            )
            (fake_bin / tool).chmod(0o755)
        (fake_bin / "docker").write_text(
            '#!/bin/sh\ncase "$1" in version) echo 28.2.2;; ps) ;; *) exit 1;; esac\n'
        )
        (fake_bin / "docker").chmod(0o755)
        lines = []
        for port in self.ports:
            host = self.root / f"host-{port}"
            host.mkdir(exist_ok=True)
            host_key = host / "ssh_host_ed25519_key"
            if not host_key.exists():
                subprocess.run(
                    ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)],
                    check=True,
                )
            (host / "config.json").write_text(
                json.dumps({"capture": CAPTURE, "toolkit_version": "1.19.1", "hostname": "h"})
            )
            shutil.copy(f"{self.key}.pub", host / "authorized_keys")
            env = (
                f"PATH={fake_bin}:/usr/bin:/bin GPUPROV_FAKE_CONFIG={host}/config.json "
                f"GPUPROV_FAKE_FIXTURES={CAPTURES} GPUPROV_FAKE_FAULTS={host}/faults.json"
            )
            (host / "sshd_config").write_text(
                f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
                f"AuthorizedKeysFile {host}/authorized_keys\nPidFile none\nUsePAM no\n"
                "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
                f"StrictModes no\nMaxStartups 200\nSetEnv {env}\n"
            )
            with open(host / "sshd.log", "wb") as log:
                self.processes.append(
                    subprocess.Popen(
                        ["/usr/sbin/sshd", "-D", "-e", "-f", str(host / "sshd_config")],
                        stdout=log,
                        stderr=log,
                    )
                )
            public = (host / "ssh_host_ed25519_key.pub").read_text().split()
            lines.append(f"[127.0.0.1]:{port} {public[0]} {public[1]}")
        self.known = lines
        self.write_known_hosts(0)
        self.wait_ready()
        # One probe first, so that every call's answer is kept before timing starts.
        subprocess.run(self.commands(1)["status"], env=self.env(), capture_output=True)

    def write_known_hosts(self, filler: int) -> None:
        """The hosts' keys, hashed as Debian writes them, after `filler` unrelated lines."""
        key = self.known[0].split()[1:]
        text = [
            _hashed(f"[10.9.{i // 250}.{i % 250}]:22") + " " + " ".join(key) for i in range(filler)
        ]
        text += [_hashed(line.split()[0]) + " " + " ".join(line.split()[1:]) for line in self.known]
        (self.home / ".ssh/known_hosts").write_text("\n".join(text) + "\n")

    def wait_ready(self) -> None:
        for port in self.ports:
            for _ in range(100):
                probe = subprocess.run(
                    ["ssh", *self.ssh_options(), "-p", str(port), "root@127.0.0.1", "true"],
                    capture_output=True,
                    env=self.env(),
                )
                if probe.returncode == 0:
                    break
                time.sleep(0.1)
            else:
                raise SystemExit(f"bench host on port {port} never answered: {probe.stderr!r}")

    def fault(self, port: int, faults: dict | None) -> None:
        path = self.root / f"host-{port}" / "faults.json"
        if faults:
            path.write_text(json.dumps(faults))
        else:
            path.unlink(missing_ok=True)

    def ssh_options(self) -> list[str]:
        # OpenSSH finds ~ from the password database, not $HOME: name the file.
        known = self.home / ".ssh/known_hosts"
        return ["-i", str(self.key), "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
                "-o", f"UserKnownHostsFile={known}"]  # fmt: skip

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "HOME": str(self.home),
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            "ANSIBLE_HOST_KEY_CHECKING": "True",
            "PATH": f"{BIN}:{os.environ['PATH']}",
        }

    def inventory(self, hosts: int) -> Path:
        path = self.root / f"inventory-{hosts}.yml"
        entries = {
            f"h{port}": {
                "ansible_host": "127.0.0.1",
                "ansible_port": port,
                "ansible_user": "root",
                "ansible_ssh_private_key_file": str(self.key),
                "ansible_ssh_common_args": (
                    f"-o UserKnownHostsFile={self.home / '.ssh/known_hosts'}"
                ),
                "ansible_python_interpreter": sys.executable,
            }
            for port in self.ports[:hosts]
        }
        path.write_text(yaml.safe_dump({"all": {"hosts": entries}}))
        return path

    def commands(self, hosts: int) -> dict[str, list[str]]:
        inventory = str(self.inventory(hosts))
        # paramiko and this OpenSSH server agree on curve25519; OpenSSH's own client
        # would pick the costlier sntrup761 hybrid, which is not what status pays.
        floor = " & ".join(
            f"ssh {' '.join(self.ssh_options())} -o KexAlgorithms={KEX} -p {port} "
            "root@127.0.0.1 true"
            for port in self.ports[:hosts]
        )
        return {
            "status": [str(BIN / "gpuprov"), "status", "-i", inventory, "--timeout", str(TIMEOUT)],
            "setup": [str(BIN / "ansible"), "all", "-i", inventory, "-m", "ansible.builtin.setup"],
            "ping": [str(BIN / "ansible"), "all", "-i", inventory, "-m", "ansible.builtin.ping"],
            "floor": ["sh", "-c", f"{floor} & wait"],
        }

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(timeout=10)


def _hashed(name: str) -> str:
    salt = os.urandom(20)
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


def _record(hosts: int, command: str, runs: list[measure.Run], **extra) -> dict:
    record = {
        "hosts": hosts,
        "command": command,
        **measure.summary(runs),
        "known_hosts_lines": extra.get("known_hosts_lines", hosts),
        "fault": extra.get("fault", "none"),
    }
    r = record
    print(
        f"{hosts:>4} hosts  {command:<7} {r['fault']:<5} known_hosts {r['known_hosts_lines']:>5}"
        f"  median {r['median_s']:6.2f} s  min {r['min_s']:6.2f}  max {r['max_s']:6.2f}"
        f"  cpu {r['cpu_s']:5.2f} s  rss {r['peak_rss_mib']} MiB",
        flush=True,
    )
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--hosts", default="3,10,20,40")
    args = parser.parse_args()
    sizes = [int(n) for n in args.hosts.split(",")]
    if not Path("/usr/sbin/sshd").exists():
        raise SystemExit("bench: /usr/sbin/sshd is missing: run scripts/bootstrap --bench")
    records: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="gpuprov-bench-") as tmp:
        fleet = Fleet(Path(tmp), max(sizes))
        fleet.start()
        try:
            env = fleet.env()
            for hosts in sizes:
                commands = fleet.commands(hosts)
                runs: dict[str, list[measure.Run]] = {c: [] for c in commands}
                for _ in range(args.rounds):
                    for name, command in commands.items():
                        runs[name].append(measure.run(command, env))
                records += [_record(hosts, name, got) for name, got in runs.items()]
            biggest = max(sizes)
            status = fleet.commands(biggest)["status"]
            fleet.write_known_hosts(1000)
            records.append(
                _record(
                    biggest,
                    "status",
                    [measure.run(status, env) for _ in range(args.rounds)],
                    known_hosts_lines=1000 + biggest,
                )
            )
            fleet.write_known_hosts(0)
            ten = fleet.commands(10)["status"]
            for fault, faults in (("hung", {"hang_seconds": 60}), ("slow", {"hang_seconds": 1})):
                fleet.fault(fleet.ports[0], faults)
                records.append(
                    _record(
                        10,
                        "status",
                        [measure.run(ten, env) for _ in range(args.rounds)],
                        fault=fault,
                    )
                )
                fleet.fault(fleet.ports[0], None)
        finally:
            fleet.stop()
    results = Path(__file__).parent / "results"
    results.mkdir(exist_ok=True)
    machine = f"{platform.node()}: {os.cpu_count()} CPUs, {platform.platform()}"
    (results / "status.json").write_text(json.dumps(records, indent=2) + "\n")
    (results / "status-machine.txt").write_text(
        f"{machine}\nper-host timeout {TIMEOUT} s, {args.rounds} interleaved rounds\n"
    )
    print(f"saved bench/results/status.json ({machine})")


if __name__ == "__main__":
    main()
