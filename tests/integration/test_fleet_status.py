"""`gpuprov status` reaches the test-bed hosts over SSH with the inventory's own variables."""

from __future__ import annotations

import yaml

from gpuprov import cli, fleet
from gpuprov.ansible_inventory import AnsibleInventory, Sources


def test_status_reads_each_hosts_own_facts(testbed, inventory, capsys):
    assert cli.main(["status", "-i", str(inventory)]) == 0
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
    assert rows["h100"].split()[-4] == "1.19.1"
    assert rows["notoolkit"].split()[-4] == "-"


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
        assert cli.main(["status", "-i", str(tmp_path)]) == 0
        rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
        assert rows["h100"].endswith(" 2          1/2 on pin"), rows["h100"]
        assert rows["oldgpu"].endswith(" 0          -"), rows["oldgpu"]
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
        assert cli.main(["status", "-i", str(inventory), "--timeout", "3"]) == 1
        assert "oldgpu         UNREACHABLE" in capsys.readouterr().out
    finally:
        testbed.start_host("oldgpu")
