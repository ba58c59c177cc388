"""The collection gpuprov.gpu, built from this repository, works on its own.

Built with ansible-galaxy, installed offline into a folder of its own and run by
its FQCN from outside the clone, with an ansible.cfg that knows nothing of the
clone and the gpuprov Python package made unimportable: what an Execution
Environment that holds only the collection (and community.docker) runs.
"""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml
from support import collection

REPO = Path(__file__).resolve().parents[2]


def run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, object]:
    """The built tarball, the collections folder it went into, and an env without gpuprov."""
    root = tmp_path_factory.mktemp("collection")
    env = collection.env_outside_the_clone()
    tarball = collection.build(root, env)
    collections = root / "collections"
    collection.install(tarball, collections, env)
    (root / "ansible.cfg").write_text(f"[defaults]\ncollections_path = {collections}\n")
    env["ANSIBLE_CONFIG"] = str(root / "ansible.cfg")
    env["PYTHONPATH"] = str(collection.without_gpuprov(root / "site"))
    return {"root": root, "tarball": tarball, "collections": collections, "env": env}


def test_the_tarball_holds_the_content_and_not_the_clone(installed):
    with tarfile.open(installed["tarball"]) as tar:
        names = set(tar.getnames())
        links = {m.name: m.linkname for m in tar.getmembers() if m.issym()}
    manifest = tar_manifest(installed["tarball"])
    assert manifest["dependencies"] == {"community.docker": ">=4.0.0"}
    for wanted in (
        "meta/runtime.yml",
        "playbooks/check.yml",
        "site.yml",
        "roles/workspaces/tasks/main.yml",
        "plugins/modules/gpuprov_audit.py",
        "plugins/action/gpuprov_inventory_check.py",
        "plugins/filter/gpuprov.py",
        "gpuprov/core/rules.py",
    ):
        assert wanted in names, wanted
    # One copy of the code: module_utils links to the package inside the collection.
    assert links["plugins/module_utils/gpuprov/core"] == "../../../gpuprov/core"
    assert links["plugins/module_utils/gpuprov/ansible_inventory.py"] == (
        "../../../gpuprov/ansible_inventory.py"
    )
    left_out = ("tests/", "bench/", "molecule/", "collections/", "inventories/", ".venv/")
    assert not [n for n in names if n.startswith(left_out)]


def tar_manifest(tarball: Path) -> dict:
    with tarfile.open(tarball) as tar:
        member = tar.extractfile("MANIFEST.json")
        assert member is not None
        return yaml.safe_load(member.read())["collection_info"]


def test_the_only_gpuprov_gpu_is_the_installed_one(installed):
    listed = run(
        ["ansible-galaxy", "collection", "list", "gpuprov.gpu", "--format", "yaml"],
        installed["root"],
        installed["env"],
    )
    assert listed.returncode == 0, listed.stdout + listed.stderr
    found = yaml.safe_load(listed.stdout)
    assert list(found) == [str(installed["collections"] / "ansible_collections")]


def test_the_gpuprov_package_is_really_out_of_reach(installed):
    probe = run(["python", "-c", "import gpuprov.core"], installed["root"], installed["env"])
    assert probe.returncode != 0
    assert "gpuprov.core is not installed here" in probe.stderr or "gpuprov is not" in probe.stderr


def test_the_check_playbook_runs_from_the_installed_collection(installed):
    result = run(
        ["ansible-playbook", "-v", "gpuprov.gpu.check", "-i", str(REPO / "inventories/example")],
        installed["root"],
        installed["env"],
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "running playbook inside collection gpuprov.gpu" in result.stdout
    assert "inventory ok: " in result.stdout
    assert "changed=0" in result.stdout and "failed=0" in result.stdout


def test_the_installed_collection_refuses_a_bad_inventory(installed):
    bad = REPO / "tests/unit/bad_inventories/gpu-given-twice"
    result = run(
        ["ansible-playbook", "gpuprov.gpu.check", "-i", str(bad)],
        installed["root"],
        installed["env"],
    )
    assert result.returncode != 0
    assert "GPU 1 on host 'gpu1' is already given to user 'alice'" in result.stdout


# No engine answers there: the audit fails at once, and Docker's message names the
# engine it asked.
ENGINE = "unix:///nonexistent/gpuprov-test/docker.sock"


def test_the_installed_filters_and_docker_group_resolve(installed, tmp_path):
    """A play outside the collection uses its filters by FQCN and its module_defaults group."""
    play = [
        {
            "name": "Use gpuprov.gpu from outside",
            "hosts": "localhost",
            "gather_facts": False,
            "module_defaults": {"group/gpuprov.gpu.docker": {"docker_host": ENGINE}},
            "tasks": [
                {
                    "name": "Show a shared default through the collection's filter",
                    "ansible.builtin.debug": {
                        "msg": "{{ 'gpuprov_report_dir' | gpuprov.gpu.gpuprov_default }}"
                    },
                },
                {
                    "name": "Audit an image on the engine the group names",
                    "gpuprov.gpu.gpuprov_audit": {
                        "image": "team/pytorch@sha256:" + "0" * 64,
                        "pin": {
                            "reference": "team/pytorch",
                            "source": "pull",
                            "promises": {"python": "3.11", "torch": "2.7.1", "cuda": "none"},
                        },
                    },
                    "ignore_errors": True,
                    "register": "audit",
                },
                {
                    "name": "Check the audit went to the group's engine",
                    "ansible.builtin.assert": {
                        "that": [f"'{ENGINE}' in audit.msg"],
                        "fail_msg": "{{ audit.msg }}",
                    },
                },
            ],
        }
    ]
    (tmp_path / "use.yml").write_text(yaml.safe_dump(play, sort_keys=False))
    python = "ansible_python_interpreter={{ ansible_playbook_python }}"
    result = run(
        [
            "ansible-playbook",
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            python,
            str(tmp_path / "use.yml"),
        ],
        installed["root"],
        installed["env"],
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert '"msg": "reports"' in result.stdout
