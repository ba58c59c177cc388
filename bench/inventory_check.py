"""How long `gpuprov check` takes, and how much memory, as a team grows.

Prints figures and saves them to bench/results/inventory_check.json; it passes
or fails nothing. Run: .venv/bin/python bench/inventory_check.py
"""

from __future__ import annotations

import json
import resource
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

import yaml

from gpuprov.ansible_inventory import AnsibleInventory, Sources
from gpuprov.core import plan, rules

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


def check(root: Path) -> plan.Fleet:
    """What `gpuprov check` and `gpuprov plan` do: Ansible reads, gpuprov validates and plans."""
    found = AnsibleInventory(Sources(inventory=[str(root)])).inventory()
    findings = rules.check(found)
    if findings:
        raise SystemExit("\n".join(map(str, findings)))
    return rules.fleet(found)


def measure(hosts: int, users_per_host: int, rounds: int = 5) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        write_team(root, hosts, users_per_host)
        timings = []
        for _ in range(rounds):
            start = time.perf_counter()
            fleet = check(root)
            timings.append(time.perf_counter() - start)
        tracemalloc.start()
        check(root)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    figures = {
        "hosts": hosts,
        "users": hosts * users_per_host,
        "workspaces": len(fleet.workspaces),
        "median_s": statistics.median(timings),
        "min_s": min(timings),
        "peak_traced_mib": peak / 2**20,
    }
    print(
        f"{hosts:>4} hosts {hosts * users_per_host:>5} users "
        f"{len(fleet.workspaces):>5} workspaces: "
        f"median {statistics.median(timings) * 1000:8.1f} ms, "
        f"min {min(timings) * 1000:8.1f} ms, peak {peak / 2**20:6.1f} MiB"
    )
    return figures


if __name__ == "__main__":
    print("gpuprov check (Ansible loads, gpuprov validates and plans), median of 5 rounds")
    rows = [measure(hosts, per_host) for hosts, per_host in ((3, 5), (30, 8), (100, 8), (300, 8))]
    # Peak resident memory of the whole process, Ansible's imports included.
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"process peak RSS {rss_mib:.1f} MiB")
    results = Path(__file__).parent / "results"
    results.mkdir(exist_ok=True)
    saved = results / "inventory_check.json"
    saved.write_text(json.dumps({"rows": rows, "peak_rss_mib": rss_mib}, indent=2) + "\n")
    print(f"saved {saved}")
