"""How long `gpuprov check` takes, and how much memory, as a team grows.

Prints figures; it passes or fails nothing. Run: .venv/bin/python bench/inventory_check.py
"""

from __future__ import annotations

import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

import yaml

from gpuprov import inventory_files
from gpuprov.core import inventory

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMzjXvHtlJ49DHi0H0CohR57B2kq6FDXKIrx7a1ol85a u@bench"
DIGEST = "sha256:" + "ab" * 32


def write_team(root: Path, hosts: int, users_per_host: int) -> None:
    names = [f"gpu{i:03d}" for i in range(hosts)]
    (root / "group_vars/all").mkdir(parents=True)
    hosts_yml = {"all": {"hosts": {n: {"gpuprov_gpu": {"count": 8}} for n in names}}}
    (root / "hosts.yml").write_text(yaml.safe_dump(hosts_yml))
    image = {
        "gpuprov_image": {
            "reference": "registry.bench:5000/team/pytorch",
            "digest": DIGEST,
            "source": "pull",
            "promises": {"python": "3.11", "torch": "2.7.1", "cuda": "12.6"},
        }
    }
    (root / "group_vars/all/image.yml").write_text(yaml.safe_dump(image))
    users = []
    for h, host in enumerate(names):
        for u in range(users_per_host):
            users.append(
                {
                    "name": f"user{h}x{u}",
                    "uid": 2000 + h * users_per_host + u,
                    "host": host,
                    "ssh_keys": [KEY],
                    "workspaces": [{"kind": "jupyter"}, {"kind": "ssh"}],
                    "gpus": {"count": 1},
                }
            )
    (root / "group_vars/all/users.yml").write_text(yaml.safe_dump({"gpuprov_users": users}))


def measure(hosts: int, users_per_host: int, rounds: int = 5) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        write_team(root, hosts, users_per_host)
        timings = []
        for _ in range(rounds):
            start = time.perf_counter()
            plan = inventory.fleet(inventory_files.load(root))
            timings.append(time.perf_counter() - start)
        tracemalloc.start()
        inventory.fleet(inventory_files.load(root))
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    print(
        f"{hosts:>4} hosts {hosts * users_per_host:>5} users {len(plan.workspaces):>5} workspaces: "
        f"median {statistics.median(timings) * 1000:8.1f} ms, "
        f"min {min(timings) * 1000:8.1f} ms, peak {peak / 2**20:6.1f} MiB"
    )


if __name__ == "__main__":
    print("gpuprov check (load + validate + plan), median of 5 rounds")
    for hosts, per_host in ((3, 5), (30, 8), (100, 8), (300, 8)):
        measure(hosts, per_host)
