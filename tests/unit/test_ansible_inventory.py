"""Inventories read through ansible-core: every source Ansible accepts, resolved its way.

Each test writes a real inventory and compares gpuprov's reading with
`ansible-inventory`'s, the command the playbook's own view comes from.
"""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hostile import IMAGE

from gpuprov import cli
from gpuprov.ansible_inventory import AnsibleInventory, Sources
from gpuprov.core import inventory, plan, rules, variables

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_INVENTORY = Path(sys.executable).parent / "ansible-inventory"
VAULT_PASSWORD = "correct horse battery staple"


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def load(*paths: Path, **options) -> inventory.Inventory:
    return AnsibleInventory(Sources(inventory=[str(p) for p in paths], **options)).inventory()


def ansible_host_vars(source: Path, host: str, *extra: str) -> dict:
    """What the playbook sees for ``host``: ansible-inventory's own answer."""
    out = subprocess.run(
        [str(ANSIBLE_INVENTORY), "-i", str(source), *extra, "--host", host],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")},
    )
    return json.loads(out.stdout)


def test_ini_inventory_with_ranges_and_group_vars(tmp_path):
    source = write(
        tmp_path,
        {
            "hosts.ini": """\
                [workstations]
                ws-rtx[4080:4081] ansible_user=ops

                [workstations:vars]
                gpuprov_bind_address=10.0.0.5
                """,
            "group_vars/all/image.yml": IMAGE,
        },
    )
    found = load(source)
    assert sorted(found.hosts) == ["ws-rtx4080", "ws-rtx4081"]
    assert rules.check(found) == []
    fleet = rules.fleet(found)
    assert {h.bind_address for h in fleet.hosts.values()} == {"10.0.0.5"}
    assert cli.main(["check", "-i", str(source)]) == 0


def test_group_priority_gives_what_ansible_gives(tmp_path):
    source = write(
        tmp_path,
        {
            "hosts.yml": """\
                all:
                  children:
                    lan_a:
                      vars: {ansible_group_priority: 10, gpuprov_bind_address: 10.0.0.1}
                      hosts: {gpu1: {}}
                    lan_b:
                      vars: {gpuprov_bind_address: 10.0.0.2}
                      hosts: {gpu1: {}}
                """,
            "group_vars/all/image.yml": IMAGE,
        },
    )
    # Without the priority Ansible would take lan_b (alphabetically last).
    expected = ansible_host_vars(source, "gpu1")["gpuprov_bind_address"]
    assert expected == "10.0.0.1"
    found = load(source)
    assert plan.host_plan("gpu1", found.hosts["gpu1"]).bind_address == expected
    assert found.hosts["gpu1"]["gpuprov_bind_address"].file.endswith("hosts.yml")


def test_executable_inventory_script(tmp_path):
    script = tmp_path / "inventory.py"
    script.write_text(
        textwrap.dedent(
            f"""\
            #!{sys.executable}
            import json, sys
            image = {{"reference": "registry.test:5000/team/pytorch",
                     "digest": "sha256:" + "ab" * 32, "source": "pull",
                     "promises": {{"python": "3.11", "torch": "2.7.1", "cuda": "12.6"}}}}
            if "--host" in sys.argv:
                print("{{}}")
            else:
                print(json.dumps({{
                    "gpu_servers": {{"hosts": ["gpu1", "gpu2"]}},
                    "all": {{"vars": {{"gpuprov_image": image, "gpuprov_users": [
                        {{"name": "root", "uid": 0, "host": "gpu1",
                          "workspaces": [{{"kind": "jupyter"}}]}}]}}}},
                    "_meta": {{"hostvars": {{"gpu1": {{"ansible_host": "192.0.2.1"}}}}}},
                }}))
            """
        )
    )
    script.chmod(0o755)
    found = load(script)
    assert sorted(found.hosts) == ["gpu1", "gpu2"]
    assert found.hosts["gpu1"]["ansible_host"].value == "192.0.2.1"
    findings = rules.check(found)
    assert [f.key for f in findings] == ["gpuprov_users[0].uid"], findings


def test_constructed_groups_are_real_groups(tmp_path):
    source = write(
        tmp_path,
        {
            "01-hosts.yml": """\
                all:
                  hosts:
                    gpu-h100: {gpuprov_gpu: {count: 8, model: H100}}
                    ws-rtx4080: {gpuprov_gpu: {count: 1, shared: true}}
                """,
            "02-constructed.yml": """\
                plugin: ansible.builtin.constructed
                strict: true
                groups:
                  desk_side: gpuprov_gpu.shared | default(false)
                compose:
                  gpuprov_bind_address: >-
                    gpuprov_gpu.shared | default(false) | ternary('10.9.9.9', '127.0.0.1')
                """,
            "group_vars/all/image.yml": IMAGE,
            "group_vars/desk_side.yml": "gpuprov_docker_manage: true\n",
        },
    )
    reader = AnsibleInventory(Sources(inventory=[str(source)]))
    assert reader.select("desk_side") == ["ws-rtx4080"]
    found = reader.inventory()
    assert rules.check(found) == []
    assert found.hosts["ws-rtx4080"]["gpuprov_docker_manage"].value is True
    assert "gpuprov_docker_manage" not in found.hosts["gpu-h100"]
    # Composed variables are what the play sees too.
    assert found.hosts["ws-rtx4080"]["gpuprov_bind_address"].value == "10.9.9.9"


def test_several_sources_merge_as_ansible_merges_them(tmp_path):
    first = write(tmp_path / "a", {"hosts.yml": "all: {hosts: {gpu1: {}}}\n"})
    second = write(
        tmp_path / "b",
        {
            "hosts.ini": "[gpu]\ngpu2\n",
            "group_vars/all/image.yml": IMAGE,
        },
    )
    found = load(first, second)
    assert sorted(found.hosts) == ["gpu1", "gpu2"]
    assert rules.check(found) == []


def test_ansible_inventory_env_is_the_default_source(tmp_path, monkeypatch, capsys):
    source = write(
        tmp_path,
        {"hosts.yml": "all: {hosts: {gpu1: {}}}\n", "group_vars/all/image.yml": IMAGE},
    )
    import ansible.constants as C

    monkeypatch.setattr(C, "DEFAULT_HOST_LIST", [str(source)])
    assert cli.main(["check"]) == 0
    assert str(source) in capsys.readouterr().out


VAULTED_USERS = """\
gpuprov_users:
  - name: mallory
    uid: 0
    host: gpu1
    workspaces: [{kind: jupyter}]
"""


@pytest.fixture
def vaulted(tmp_path):
    source = write(
        tmp_path / "inv",
        {"hosts.yml": "all: {hosts: {gpu1: {}}}\n", "group_vars/all/image.yml": IMAGE},
    )
    users = source / "group_vars/all/users.yml"
    users.write_text(VAULTED_USERS)
    password = tmp_path / "vault-pass"
    password.write_text(VAULT_PASSWORD + "\n")
    subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-vault"),
            "encrypt",
            "--vault-password-file",
            str(password),
            str(users),
        ],
        check=True,
        capture_output=True,
    )
    assert users.read_text().startswith("$ANSIBLE_VAULT")
    return source, password


def test_vaulted_users_file_without_password_is_an_error_not_ok(vaulted, capsys):
    source, _ = vaulted
    assert cli.main(["check", "-i", str(source)]) == 1
    err = capsys.readouterr().err
    assert "users.yml" in err
    assert "--vault-password-file" in err
    assert "ok (" not in err


def test_vaulted_users_file_is_checked_in_full_with_its_password(vaulted, capsys):
    source, password = vaulted
    assert cli.main(["check", "-i", str(source), "--vault-password-file", str(password)]) == 1
    err = capsys.readouterr().err
    assert re.search(r"users\.yml.*user 'mallory': gpuprov_users\[0\]\.uid", err), err
    assert VAULT_PASSWORD not in err


@pytest.mark.parametrize(
    ("pattern", "hosts"),
    [
        ("gpu_servers", ["gpu-h100", "gpu-l40s", "ws-rtx4080"]),
        ("gpu-*", ["gpu-h100", "gpu-l40s"]),
        ("gpu_servers:!ws-rtx4080", ["gpu-h100", "gpu-l40s"]),
    ],
)
def test_limit_takes_ansible_patterns(pattern, hosts, capsys):
    assert cli.main(["plan", "-i", str(REPO / "inventories/example"), "-l", pattern]) == 0
    out = capsys.readouterr().out
    example = {"gpu-h100", "gpu-l40s", "ws-rtx4080"}
    listed = sorted(set(re.findall(r"^\S+", out, re.M)) & example)
    assert listed == hosts, out


def test_limit_matching_nothing_is_an_error(capsys):
    assert cli.main(["plan", "-i", str(REPO / "inventories/example"), "-l", "gpu_sevrers"]) == 1
    assert "matches no host" in capsys.readouterr().err


def test_every_documented_variable_is_accepted(tmp_path):
    values = {
        "gpuprov_gpu": {"required": True, "count": 1, "model": "H100", "shared": False},
        "gpuprov_port_range": {"first": 21000, "last": 21999},
        "gpuprov_bind_address": "127.0.0.1",
        "gpuprov_data_root": "/srv/team",
        "gpuprov_volume_roots": ["/srv/datasets", "/mnt/nfs"],
        "gpuprov_workspace_limits": {"memory": "64g", "cpus": 16, "pids": "unlimited"},
        "gpuprov_docker_manage": True,
        "gpuprov_docker_host": "unix:///run/docker.sock",
        "gpuprov_nvidia_driver_manage": True,
        "gpuprov_container_toolkit_manage": True,
        "gpuprov_metrics_dir": "/var/lib/prometheus/node-exporter",
    }
    assert set(values) == set(variables.HOST_VARIABLES), "every host variable is exercised here"
    source = write(
        tmp_path,
        {
            "hosts.yml": "all: {hosts: {gpu1: {}}}\n",
            "host_vars/gpu1.yml": json.dumps(values),
            "group_vars/all/image.yml": IMAGE,
        },
    )
    assert rules.check(load(source)) == []


def test_every_gpuprov_variable_the_content_reads_is_declared():
    """A role or playbook reading a gpuprov_* variable the check does not know is a defect."""
    known = set(variables.ALL_VARIABLES) | set(variables.FACTS)
    # Filter and module names share the prefix but are not variables.
    callables = set()
    for path in (REPO / "plugins").rglob("*.py"):
        callables |= set(re.findall(r"\"(gpuprov_[a-z_]+)\":", path.read_text()))
        callables.add(path.stem)
    used: dict[str, str] = {}
    for path in [REPO / "site.yml", *REPO.glob("playbooks/*.yml"), *REPO.glob("roles/**/*.yml")]:
        # A file name (gpuprov_layer.py) is not a variable.
        for name in re.findall(r"\b(gpuprov_[a-z_]+)\b(?!\.py)", path.read_text()):
            used.setdefault(name, str(path.relative_to(REPO)))
    undeclared = {
        name: where for name, where in used.items() if name not in known and name not in callables
    }
    assert not undeclared, f"read but not declared in gpuprov/core/variables.py: {undeclared}"


GPUPROV = Path(sys.executable).parent / "gpuprov"


def test_version_is_printed(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0
    assert re.fullmatch(r"gpuprov \d+\.\d+\.\d+\n", capsys.readouterr().out)


def test_check_json_gives_each_finding_with_its_line(capsys):
    bad = Path(__file__).parent / "bad_inventories/duplicate-uid"
    assert cli.main(["check", "-i", str(bad), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    first = report["errors"][0]
    assert first["file"].endswith("users.yml") and first["line"] == 8
    assert first["key"] == "gpuprov_users[1].uid" and first["fix"]


def test_a_reader_that_leaves_early_gets_no_traceback():
    """`gpuprov plan --json | head -1`: the pipe closes before gpuprov is done."""
    proc = subprocess.Popen(
        [str(GPUPROV), "plan", "--json", "-i", str(REPO / "inventories/example")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")},
    )
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert "Traceback" not in err, err
    assert "BrokenPipe" not in err, err
