"""`gpuprov check` on real inventory directories, good and malformed."""

from pathlib import Path

import pytest

from gpuprov import cli
from gpuprov.ansible_inventory import AnsibleInventory, Sources
from gpuprov.core import inventory, plan, rules

REPO = Path(__file__).resolve().parents[2]
BAD = Path(__file__).parent / "bad_inventories"

# case -> (file the error names, subject, key path, words of the message)
EXPECTED = {
    "unknown-user-key": (
        "users.yml",
        "user 'alice'",
        "gpuprov_users[0].gpu",
        "did you mean 'gpus'",
    ),
    "unknown-variable": (
        "settings.yml",
        "group 'all'",
        "gpuprov_bind_adress",
        "did you mean 'gpuprov_bind_address'",
    ),
    "rollout-batch-of-zero": (
        "settings.yml",
        "group 'all'",
        "gpuprov_rollout_batches[1]",
        "0 is below the minimum 1",
    ),
    "wrong-type-uid": ("users.yml", "user 'alice'", "gpuprov_users[0].uid", "expected an integer"),
    "duplicate-user-name": (
        "users.yml",
        "user 'alice'",
        "gpuprov_users[1].name",
        "is also gpuprov_users[0]",
    ),
    "duplicate-uid": ("users.yml", "user 'bob'", "gpuprov_users[1].uid", "uid 2001 is already"),
    "same-port-twice": (
        "users.yml",
        "user 'bob'",
        "gpuprov_users[1].workspaces[0]",
        "port 20500 on host 'gpu1' is already alice's jupyter",
    ),
    "port-outside-range": (
        "users.yml",
        "user 'alice'",
        "gpuprov_users[0].workspaces[0].port",
        "outside host 'gpu1's range 20000-20999",
    ),
    "gpu-given-twice": (
        "users.yml",
        "user 'bob'",
        "gpuprov_users[1].gpus",
        "GPU 1 on host 'gpu1' is already given to user 'alice'",
    ),
    "gpu-index-beyond-count": (
        "users.yml",
        "user 'alice'",
        "gpuprov_users[0].gpus[0]",
        "GPU index 2 does not exist",
    ),
    "ssh-without-key": (
        "users.yml",
        "user 'alice'",
        "gpuprov_users[0].ssh_keys",
        "needs at least one public key",
    ),
    "malformed-ssh-key": (
        "users.yml",
        "user 'alice'",
        "gpuprov_users[0].ssh_keys[0]",
        "not valid base64",
    ),
    "ssh-key-type-mismatch": (
        "users.yml",
        "user 'alice'",
        "gpuprov_users[0].ssh_keys[0]",
        "says 'ssh-ed25519' but the line says 'ssh-rsa'",
    ),
    "image-not-pinned": ("image.yml", "inventory", "gpuprov_image.digest", "not pinned by digest"),
    "digest-with-build": (
        "image.yml",
        "inventory",
        "gpuprov_image.digest",
        "source: build makes a new image on every build",
    ),
    "unknown-host": (
        "users.yml",
        "user 'alice'",
        "gpuprov_users[0].host",
        "host 'gpu9' is not in the inventory",
    ),
    "missing-uid": ("users.yml", "user 'alice'", "gpuprov_users[0].uid", "required but missing"),
    "bad-workspace-kind": (
        "users.yml",
        "user 'alice'",
        "gpuprov_users[0].workspaces[0].kind",
        "'vscode' is not one of",
    ),
    "too-many-gpus-counted": (
        "users.yml",
        "host 'gpu2'",
        "gpuprov_users[*].gpus",
        "asks for 3 GPU(s) but only 2 of 4",
    ),
    "users-in-host-vars": (
        "host_vars/gpu1.yml",
        "host 'gpu1'",
        "gpuprov_users",
        "must be set for group 'all'",
    ),
    "bad-bind-address": ("net.yml", "group 'all'", "gpuprov_bind_address", "is not an IP address"),
    "yaml-syntax-error": ("users.yml", "inventory", "(file)", "YAML parsing failed"),
    # Ansible's yaml plugin refuses the file; gpuprov says which plugin and where.
    "hosts-as-list": (
        "hosts.yml",
        "inventory",
        "(read by Ansible's yaml inventory plugin)",
        'Invalid "hosts" entry for "all" group, requires a dictionary',
    ),
    "relative-volume": (
        "users.yml",
        "user 'alice'",
        "gpuprov_users[0].volumes[0].source",
        "must be an absolute path",
    ),
}


def load(path: Path, **options) -> inventory.Inventory:
    return AnsibleInventory(Sources(inventory=[str(path)], **options)).inventory()


def findings_for(path: Path) -> list[inventory.Finding]:
    try:
        found = load(path)
    except inventory.InventoryError as error:
        return error.findings
    return rules.check(found)


def test_every_bad_inventory_has_an_expectation():
    assert sorted(p.name for p in BAD.iterdir() if p.is_dir()) == sorted(EXPECTED)


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_bad_inventory_is_rejected_naming_file_subject_and_key(case):
    file, subject, key, words = EXPECTED[case]
    findings = findings_for(BAD / case)
    matching = [
        f
        for f in findings
        if f.file.endswith(file) and f.subject == subject and f.key == key and words in f.message
    ]
    assert matching, "\n".join(map(str, findings))
    assert all(f.fix for f in matching), "each error says how to fix it"
    assert str(matching[0]).startswith(str(BAD / case))


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_cli_exits_non_zero_and_prints_the_finding(case, capsys):
    assert cli.main(["check", "-i", str(BAD / case)]) == 1
    err = capsys.readouterr().err
    assert EXPECTED[case][2] in err
    assert "nothing was changed" in err


@pytest.mark.parametrize("name", ["example", "local"])
def test_shipped_inventories_pass(name, capsys):
    assert cli.main(["check", "-i", str(REPO / "inventories" / name)]) == 0
    assert ": ok (" in capsys.readouterr().out


def test_example_plan_gives_stable_ports_and_counted_gpus():
    plan = rules.fleet(load(REPO / "inventories/example"))
    by_key = {(w.user, w.kind): w for w in plan.workspaces}
    # Ports derive from uids: alice (2001) gets slot 1 of gpu-h100's 20000-20999.
    assert by_key["alice", "jupyter"].port == 20002
    assert by_key["alice", "ssh"].port == 20003
    assert by_key["dave", "ssh"].port == 20100  # fixed in the inventory
    assert by_key["carol", "jupyter"].port == 21006  # gpu-l40s has its own range
    # bob counts 4 GPUs: the lowest ones alice did not name.
    assert by_key["bob", "ssh"].gpus == ("2", "3", "4", "5")
    assert by_key["erin", "jupyter"].gpus == ("0",)  # shared workstation
    assert plan.hosts["ws-rtx4080"].bind_address == "10.20.0.21"
    assert plan.hosts["gpu-h100"].gpu_count == 8


def test_adding_a_user_moves_nobody_elses_port(tmp_path):
    import shutil

    shutil.copytree(REPO / "inventories/example", tmp_path / "inv")
    before = {(w.user, w.kind): w.port for w in rules.fleet(load(tmp_path / "inv")).workspaces}
    users = tmp_path / "inv/group_vars/all/users.yml"
    users.write_text(
        users.read_text().replace(
            "gpuprov_users:\n",
            "gpuprov_users:\n  - name: aaron\n    uid: 1999\n    host: gpu-h100\n"
            "    workspaces:\n      - kind: jupyter\n",
        )
    )
    after = {(w.user, w.kind): w.port for w in rules.fleet(load(tmp_path / "inv")).workspaces}
    assert {k: v for k, v in after.items() if k[0] != "aaron"} == before
    assert after["aaron", "jupyter"] == 20998  # uid 999 slots past 1000 wraps to slot 499


def test_vault_values_are_accepted_and_never_read():
    found = load(REPO / "inventories/example")
    password = plan.team_value(found, "gpuprov_registry").value["password"]
    assert repr(password) == "<vault-encrypted>"
    assert rules.check(found) == []


def test_missing_inventory_names_the_path(tmp_path, capsys):
    assert cli.main(["check", "-i", str(tmp_path / "nowhere")]) == 1
    assert "no such inventory file or directory" in capsys.readouterr().err
