"""`gpuprov status` reaches the test-bed hosts over SSH with the inventory's own variables."""

from __future__ import annotations

import json
import time

import yaml

from gpuprov import cli, fleet
from gpuprov.ansible_inventory import AnsibleInventory, Sources


def test_status_reads_each_hosts_own_facts(testbed, inventory, capsys):
    # notoolkit has no Container Toolkit: a host that needs a person, exit 1.
    assert cli.main(["status", "-i", str(inventory)]) == 1
    out = capsys.readouterr().out
    rows = {
        line.split()[0]: line for line in out.splitlines()[1:] if line and not line[0].isspace()
    }
    assert set(rows) == set(testbed.hosts)
    # Each host answers with its own hostname, from its own filesystem.
    hostnames = {row.split()[1] for row in rows.values()}
    assert len(hostnames) == len(testbed.hosts)
    assert "H100" in rows["h100"] and "590.48.01" in rows["h100"]
    assert "535.104.05" in rows["oldgpu"] and "L40S" in rows["oldgpu"]
    # toolkit, docker, workspaces, image, drift ('-': no workspace runs there)
    assert rows["h100"].split()[-5] == "1.19.1"
    assert rows["notoolkit"].split()[-5] == "-"
    assert "  ! NVIDIA Container Toolkit not installed (nvidia-ctk missing)" in out


def test_status_json_has_the_same_rows(testbed, inventory, capsys):
    assert cli.main(["status", "-i", str(inventory), "--json"]) == 1
    rows = {row["host"]: row for row in json.loads(capsys.readouterr().out)["hosts"]}
    assert {h: r["state"] for h, r in rows.items()} == {
        "h100": "ok", "oldgpu": "ok", "notoolkit": "problems",
    }  # fmt: skip
    assert rows["h100"]["driver"] == "590.48.01" and rows["h100"]["toolkit"] == "1.19.1"
    assert rows["h100"]["gpu_list"][0]["name"] == "NVIDIA H100 80GB HBM3"


def test_status_tells_which_hosts_run_the_pin(
    testbed, inventory, shell_image_ref, tmp_path, capsys
):
    """Mid-rollout: h100 runs one workspace on the pin and one on an older image."""
    reference, digest = shell_image_ref.split("@")
    (tmp_path / "group_vars/all").mkdir(parents=True)
    (tmp_path / "hosts.yml").write_text(inventory.read_text())
    (tmp_path / "group_vars/all/image.yml").write_text(
        yaml.safe_dump(
            {"gpuprov_image": {"reference": reference, "digest": digest, "source": "pull"}}
        )
    )
    run = f"docker run -d -i --label org.gpuprov.user=alice {shell_image_ref} sh >/dev/null"
    testbed.ssh("h100", f"docker pull -q {shell_image_ref} >/dev/null")
    testbed.ssh(
        "h100",
        run.replace(
            "--label", f"--name ws-new --label org.gpuprov.image={shell_image_ref} --label"
        ),
    )
    testbed.ssh(
        "h100",
        run.replace(
            "--label", "--name ws-old --label org.gpuprov.image=reg/team@sha256:00 --label"
        ),
    )
    try:
        assert cli.main(["status", "-i", str(tmp_path)]) == 1
        out = capsys.readouterr().out
        rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
        # Both run as root, which the drift inspection never does: unknown, never ok.
        assert rows["h100"][-6:] == ["2", "1/2", "on", "pin", "2", "unknown"], rows["h100"]
        assert rows["oldgpu"][-3:] == ["0", "-", "-"], rows["oldgpu"]
        assert "  ! workspaces off the pin: 1/2 on pin" in out
    finally:
        testbed.ssh("h100", "docker rm -f ws-new ws-old >/dev/null", check=False)


def _targets(inventory):
    found = AnsibleInventory(Sources(inventory=[str(inventory)])).inventory()
    return fleet.targets(found, sorted(found.hosts))


def test_status_reports_a_stopped_host_as_unreachable(testbed, inventory, capsys):
    testbed.stop_host("oldgpu")
    try:
        results = {r.target.name: r for r in fleet.probe_all(_targets(inventory), timeout=3)}
        assert results["oldgpu"].status is None and results["oldgpu"].error
        assert results["h100"].status is not None
        assert cli.main(["status", "-i", str(inventory), "--timeout", "3"]) == 2
        rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()}
        assert rows["oldgpu"] == ["oldgpu", "UNREACHABLE"]
    finally:
        testbed.start_host("oldgpu")


def test_a_hung_nvidia_smi_ends_within_the_deadline_and_on_the_host(testbed, inventory, capsys):
    testbed.ssh("h100", "echo '{\"hang_seconds\": 60}' > /etc/gpuprov-fake/faults.json")
    try:
        started = time.monotonic()
        assert cli.main(["status", "-i", str(inventory), "--timeout", "4", "--json"]) == 2
        took = time.monotonic() - started
        rows = {row["host"]: row for row in json.loads(capsys.readouterr().out)["hosts"]}
        assert took < 4 + 3, f"status took {took:.1f} s with a 4 s per-host timeout"
        assert rows["h100"]["state"] == "timeout"
        assert rows["h100"]["error"].startswith("timed out after 4 s in nvidia-smi")
        assert rows["h100"]["hostname"] == "h100", "what was read before the hang is kept"
        assert rows["oldgpu"]["state"] == "ok" and rows["oldgpu"]["seconds"] < 4
        left = testbed.ssh("h100", "pgrep -af 'bin/nvidia-sm[i]' || true").stdout.strip()
        assert left == "", f"the hung nvidia-smi outlived the probe: {left}"
    finally:
        testbed.ssh("h100", "rm -f /etc/gpuprov-fake/faults.json")


def test_a_user_outside_the_docker_group_and_become(testbed, tmp_path, capsys):
    testbed.ssh(
        "h100",
        "id probe >/dev/null 2>&1 || useradd -m -s /bin/sh probe; "
        "mkdir -p ~probe/.ssh && cp /root/.ssh/authorized_keys ~probe/.ssh/ && "
        "chown -R probe ~probe/.ssh && rm -f /etc/sudoers.d/probe",
    )
    probe_vars = {"ansible_user": "probe"}
    plain = testbed.write_inventory(tmp_path / "plain.yml", {"h100": probe_vars})
    become = testbed.write_inventory(
        tmp_path / "become.yml", {"h100": {**probe_vars, "ansible_become": True}}
    )
    try:
        assert cli.main(["status", "-i", str(plain), "-l", "h100"]) == 1
        out = capsys.readouterr().out
        assert "Docker does not answer: permission denied" in out
        assert "set ansible_become: true" in out
        assert cli.main(["status", "-i", str(become), "-l", "h100"]) == 2
        assert "become: sudo: a password is required" in capsys.readouterr().out
        testbed.ssh("h100", "echo 'probe ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/probe")
        assert cli.main(["status", "-i", str(become), "-l", "h100"]) == 0
        assert "1.19.1" in capsys.readouterr().out
    finally:
        testbed.ssh("h100", "rm -f /etc/sudoers.d/probe; userdel -r probe >/dev/null 2>&1 || true")
