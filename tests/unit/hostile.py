"""Bad inventories written the way admins and pull requests write them, and what the
check must say about each: the file, the subject, the key and words of the message,
with a fix, and exit 1 from `gpuprov check` with nothing changed."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from gpuprov import cli
from gpuprov.ansible_inventory import AnsibleInventory, Sources
from gpuprov.core import inventory, rules

IMAGE = """\
gpuprov_image:
  reference: registry.test:5000/team/pytorch
  digest: sha256:abababababababababababababababababababababababababababababababab
  source: pull
  promises: {python: "3.11", torch: 2.7.1, cuda: "12.6"}
"""
HOSTS = """\
all:
  hosts:
    gpu1:
      ansible_host: 192.0.2.10
      gpuprov_gpu: {count: 2, model: H100}
"""
ALICE = """\
  - name: alice
    uid: 2001
    host: gpu1
    workspaces: [{kind: jupyter}]
"""


@dataclass(frozen=True)
class Case:
    """An inventory (files over the base: hosts.yml, image.yml, users.yml) and the
    finding it must produce; ``expect`` None means it must pass."""

    files: dict[str, str]
    expect: tuple[str, str, str, str] | None = None
    # A judgement call: a warning, exit 0, and an error under --strict.
    warning: bool = False
    base: dict[str, str] = field(
        default_factory=lambda: {
            "hosts.yml": HOSTS,
            "group_vars/all/image.yml": IMAGE,
            "group_vars/all/users.yml": "gpuprov_users:\n" + ALICE,
        }
    )

    def write(self, root: Path) -> Path:
        for name, text in {**self.base, **self.files}.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(text, bytes):
                path.write_bytes(text)
            else:
                path.write_text(textwrap.dedent(text))
        return root


def users(*entries: str) -> dict[str, str]:
    """users.yml with these entries (YAML list items, indented by two)."""
    return {"group_vars/all/users.yml": "gpuprov_users:\n" + "".join(entries)}


def alice_with(extra: str) -> str:
    """Alice's entry with more keys (YAML at four spaces)."""
    return ALICE + textwrap.indent(textwrap.dedent(extra).rstrip("\n") + "\n", "    ")


def findings(root: Path) -> list[inventory.Finding]:
    try:
        found = AnsibleInventory(Sources(inventory=[str(root)])).inventory()
    except inventory.InventoryError as error:
        return error.findings
    return rules.check(found)


def assert_case(case: Case, root: Path, capsys) -> None:
    source = case.write(root)
    got = findings(source)
    if case.expect is None:
        assert got == [], "\n".join(map(str, got))
        return
    file, subject, key, words = case.expect
    matching = [
        f
        for f in got
        if f.file.endswith(file) and f.subject == subject and f.key == key and words in f.message
    ]
    assert matching, "\n".join(map(str, got)) or "no finding at all"
    assert all(f.fix for f in matching), "each finding says how to fix it"
    assert all(f.warning == case.warning for f in matching), "error or warning, as meant"
    if case.warning:
        assert cli.main(["check", "-i", str(source)]) == 0
        assert f"WARNING {matching[0]}" in capsys.readouterr().err
        assert cli.main(["check", "--strict", "-i", str(source)]) == 1
    else:
        assert cli.main(["check", "-i", str(source)]) == 1
    err = capsys.readouterr().err
    assert key in err and "nothing was changed" in err
