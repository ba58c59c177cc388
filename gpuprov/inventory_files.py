"""Read an Ansible YAML inventory directory into a ``core.inventory.Tree``.

gpuprov reads the files itself, rather than asking Ansible, because every
error must name the file a value came from, and Ansible forgets that.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .core.inventory import Finding, InventoryError, Sourced, Tree
from .core.schema import Opaque

HOSTS_FILES = ("hosts.yml", "hosts.yaml")
VAULT_HEADER = "$ANSIBLE_VAULT"


# libyaml's loader parses a large team's users.yml ten times faster.
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_SafeLoader):  # type: ignore[misc,valid-type]
    """SafeLoader that keeps vault ciphertext opaque instead of failing on it."""


_Loader.add_constructor("!vault", lambda loader, node: Opaque())
_Loader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))


def _read(path: Path, display: str) -> Any:
    text = path.read_text(encoding="utf-8")
    if text.startswith(VAULT_HEADER):
        # A whole-file vault holds secrets only; its keys cannot be checked unopened.
        return {}
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        problem = getattr(error, "problem", None) or str(error)
        raise InventoryError(
            [
                Finding(
                    display,
                    "inventory",
                    where,
                    f"is not valid YAML: {problem}",
                    "fix the indentation or quoting there",
                )
            ]
        ) from error


class _Reader:
    def __init__(self, root: Path, display_root: str):
        self.root = root
        self.display_root = display_root
        self.findings: list[Finding] = []

    def display(self, path: Path) -> str:
        return str(Path(self.display_root) / path.relative_to(self.root))

    def variables(self, data: Any, file: str, subject: str, key: str) -> dict[str, Sourced]:
        if data is None:
            return {}
        if not isinstance(data, dict):
            self.findings.append(
                Finding(
                    file, subject, key, "must be a mapping of variables", "write name: value lines"
                )
            )
            return {}
        return {str(name): Sourced(value, file) for name, value in data.items()}

    def group(self, tree: Tree, name: str, data: Any, file: str) -> None:
        group = tree.group(name)
        if data is None:
            return
        if not isinstance(data, dict):
            self.findings.append(
                Finding(
                    file,
                    f"group '{name}'",
                    name,
                    "must be a mapping",
                    "give the group hosts:, vars: or children:",
                )
            )
            return
        for key in data:
            if key not in ("hosts", "vars", "children"):
                self.findings.append(
                    Finding(
                        file,
                        f"group '{name}'",
                        f"{name}.{key}",
                        "unknown key in an inventory group (allowed: hosts, vars, children)",
                        "put variables under vars: or in group_vars/",
                    )
                )
        hosts = self.mapping(data, "hosts", name, file, "host names", "write 'hostname:' lines")
        for host, host_data in hosts.items():
            group.hosts.append(str(host))
            found = self.variables(host_data, file, f"host '{host}'", f"{name}.hosts.{host}")
            tree.host_vars.setdefault(str(host), {}).update(found)
        group.vars.update(self.variables(data.get("vars"), file, f"group '{name}'", f"{name}.vars"))
        children = self.mapping(data, "children", name, file, "group names", "write 'group:' lines")
        for child, child_data in children.items():
            group.children.append(str(child))
            self.group(tree, str(child), child_data, file)

    def mapping(
        self, data: dict[str, Any], key: str, group: str, file: str, what: str, fix: str
    ) -> dict[str, Any]:
        """data[key] when it is a mapping; otherwise a finding, and an empty one."""
        value = data.get(key) or {}
        if isinstance(value, dict):
            return value
        self.findings.append(
            Finding(file, f"group '{group}'", f"{group}.{key}", f"must be a mapping of {what}", fix)
        )
        return {}

    def var_files(self, folder: Path) -> dict[str, list[Path]]:
        """group_vars/NAME.yml and every file under group_vars/NAME/, by NAME."""
        found: dict[str, list[Path]] = {}
        if not folder.is_dir():
            return found
        for entry in sorted(folder.iterdir()):
            if entry.is_dir():
                files = sorted(p for p in entry.rglob("*") if p.suffix in (".yml", ".yaml", ""))
                found.setdefault(entry.name, []).extend(p for p in files if p.is_file())
            elif entry.suffix in (".yml", ".yaml"):
                found.setdefault(entry.stem, []).append(entry)
        return found


def load(path: str | Path) -> Tree:
    """Load the inventory at ``path`` (a directory with hosts.yml, or that file)."""
    given = Path(path)
    if given.is_dir():
        root = given
        hosts_file = next((given / n for n in HOSTS_FILES if (given / n).is_file()), None)
    else:
        root, hosts_file = given.parent, given if given.is_file() else None
    display_root = str(given if given.is_dir() else given.parent)
    if hosts_file is None:
        raise InventoryError(
            [
                Finding(
                    str(given),
                    "inventory",
                    "hosts.yml",
                    "no hosts.yml (YAML inventory) found here",
                    "point -i at an inventory directory such as inventories/local",
                )
            ]
        )
    reader = _Reader(root, display_root)
    tree = Tree(source=display_root)
    hosts_display = reader.display(hosts_file)
    data = _read(hosts_file, hosts_display) or {}
    if not isinstance(data, dict):
        raise InventoryError(
            [
                Finding(
                    hosts_display,
                    "inventory",
                    "(file)",
                    "must be a mapping starting with 'all:'",
                    "see inventories/example/hosts.yml",
                )
            ]
        )
    for name, group_data in data.items():
        reader.group(tree, str(name), group_data, hosts_display)
    if "all" not in tree.groups:
        tree.group("all")
    for name in tree.groups:
        if name != "all" and not any(name in g.children for g in tree.groups.values()):
            tree.groups["all"].children.append(name)
    for name, files in reader.var_files(root / "group_vars").items():
        for file in files:
            shown = reader.display(file)
            found = reader.variables(_read(file, shown), shown, f"group '{name}'", "(file)")
            tree.group(name).vars.update(found)
    for name, files in reader.var_files(root / "host_vars").items():
        for file in files:
            shown = reader.display(file)
            found = reader.variables(_read(file, shown), shown, f"host '{name}'", "(file)")
            tree.host_vars.setdefault(name, {}).update(found)
    if reader.findings:
        raise InventoryError(reader.findings)
    return tree
