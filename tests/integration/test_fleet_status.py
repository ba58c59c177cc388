"""`gpuprov status` reaches the test-bed hosts over SSH with the inventory's own variables."""

from __future__ import annotations

from gpuprov import cli, fleet, inventory_files


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
    assert rows["h100"].split()[-3] == "1.17.8"
    assert rows["notoolkit"].split()[-3] == "-"


def test_status_reports_a_stopped_host_as_unreachable(testbed, inventory, capsys):
    testbed.stop_host("oldgpu")
    try:
        results = {
            r.target.name: r
            for r in fleet.probe_all(fleet.targets(inventory_files.load(inventory)), timeout=3)
        }
        assert results["oldgpu"].status is None and results["oldgpu"].error
        assert results["h100"].status is not None
        assert cli.main(["status", "-i", str(inventory), "--timeout", "3"]) == 1
        assert "oldgpu         UNREACHABLE" in capsys.readouterr().out
    finally:
        testbed.start_host("oldgpu")
