"""Inventories read by ansible-core itself, handed to the core as ``inventory.Inventory``.

Every source Ansible accepts (YAML and INI files and directories, host ranges,
several ``-i``, inventory plugins such as ``constructed``, executable scripts),
vault, group precedence and ``ansible_group_priority`` come from Ansible's own
inventory manager, variable manager and data loader: gpuprov validates exactly
the variables a play will use. This module is controller-side only; the core
it feeds stays standard-library-only.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ansible import constants as C
from ansible.cli import CLI
from ansible.errors import AnsibleError
from ansible.inventory.data import InventoryData
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from ansible.parsing.vault import EncryptedString
from ansible.plugins.loader import init_plugin_loader, inventory_loader
from ansible.vars.manager import VariableManager

from . import templates
from .core.inventory import (
    Finding,
    Inventory,
    InventoryError,
    Origin,
    Sourced,
    subject_of,
    user_subject,
)
from .core.schema import Opaque, closest
from .core.variables import CONNECTION_VARIABLES, PREFIX

# Plugins whose error explains a source best, when several tried it and all failed.
_TELLING_PLUGINS = ("script", "yaml", "auto", "ini", "toml")


def _origin(value: Any) -> Origin | None:
    """Where Ansible saw ``value``: its data-tagging Origin (ansible-core 2.19+)."""
    # The one use of ansible-core's internal tagging API; without it, errors name the file.
    try:
        from ansible._internal._datatag._tags import Origin as AnsibleOrigin
    except ImportError:
        return None
    tag = value if isinstance(value, AnsibleOrigin) else AnsibleOrigin.get_tag(value)
    if tag is None or not (tag.path or tag.description):
        return None
    # Extra vars are described, not located: "<CLI option '-e'>".
    command_line = tag.path is None and "CLI option" in str(tag.description)
    return Origin(str(tag.path or tag.description), tag.line_num, tag.col_num, command_line)


@dataclass
class _Converter:
    """Ansible's tagged values as plain ones, remembering where every part was written."""

    fallback: str
    _done: dict[int, Sourced] = field(default_factory=dict)
    _values: int = 0

    def sourced(self, value: Any) -> Sourced:
        # Team variables are one object shared by every host: convert it once. Only
        # containers: equal scalars may be one object yet written in different files.
        shared = isinstance(value, Mapping | list)
        if shared and (known := self._done.get(id(value))) is not None:
            return known
        parts: dict[str, Origin] = {}
        origin = _origin(value) or Origin(self.fallback)
        result = Sourced(self._plain(value, "", parts), origin, parts)
        if shared:
            self._done[id(value)] = result
        return result

    def _plain(self, value: Any, path: str, parts: dict[str, Origin]) -> Any:
        self._values += 1
        if self._values > MAX_VALUES:
            raise InventoryError([_too_big(value, self.fallback)])
        if path and (where := _origin(value)) is not None:
            parts[path] = where
        if isinstance(value, EncryptedString):
            return Opaque()
        if isinstance(value, Mapping):
            return {str(k): self._plain(v, f"{path}.{k}", parts) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._plain(v, f"{path}[{i}]", parts) for i, v in enumerate(value)]
        if isinstance(value, bool):
            return bool(value)
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            return float(value)
        if isinstance(value, str):
            return str.__str__(value)
        return value


@dataclass
class Sources:
    """What to read and how to open its vault, as ansible-playbook takes it."""

    inventory: list[str] = field(default_factory=list)
    vault_ids: list[str] = field(default_factory=list)
    vault_password_files: list[str] = field(default_factory=list)
    ask_vault_pass: bool = False
    # ansible-inventory's --playbook-dir: group_vars/ and host_vars/ beside a playbook.
    playbook_dir: str | None = None

    def paths(self) -> list[str]:
        """The -i sources, or what Ansible would use (ANSIBLE_INVENTORY, ansible.cfg)."""
        return list(self.inventory) or list(C.DEFAULT_HOST_LIST)


def from_variables(
    per_host: Mapping[str, Mapping[str, Any]],
    source: str,
    groups: Mapping[str, Any] | None = None,
) -> Inventory:
    """An Inventory from variables Ansible already resolved (a play's hostvars).

    ``groups`` is Ansible's groups and their host names (a play's `groups`).
    """
    converter = _Converter(source)
    return Inventory(
        source,
        {
            str(host): {
                str(name): converter.sourced(value)
                for name, value in variables.items()
                if str(name).startswith(PREFIX) or name in CONNECTION_VARIABLES
            }
            for host, variables in per_host.items()
        },
        _template_findings(per_host, source),
        {
            str(name): tuple(str(h) for h in members)
            for name, members in (groups or {}).items()
            if name not in ("all", "ungrouped")
        },
    )


# More values than any real inventory holds: YAML aliases nested into a "billion
# laughs" expand to millions, which the check must refuse, not walk.
MAX_VALUES = 200_000


def _too_big(value: Any, fallback: str) -> Finding:
    return Finding.at(
        _origin(value) or Origin(fallback), "inventory", "(file)",
        f"expands to more than {MAX_VALUES} values, which no inventory needs (YAML aliases "
        "nested in aliases?)",
        "write the values out, or use aliases that do not nest",
    )  # fmt: skip


_VARS_SUFFIXES = ("", ".yml", ".yaml", ".json")


def vars_file_findings(sources: list[str], hosts: set[str], groups: set[str]) -> list[Finding]:
    """host_vars and group_vars that reach nobody, and vars files that set nothing.

    Ansible skips both without a word: a typo in host_vars/NAME silently loses that
    host's settings, and an emptied users file is "ok, 0 users".
    """
    findings = []
    for source in sources:
        base = Path(source) if Path(source).is_dir() else Path(source).parent
        for kind, known in (("host_vars", hosts), ("group_vars", groups)):
            folder = base / kind
            if not folder.is_dir():
                continue
            for entry in sorted(folder.iterdir()):
                name = entry.name if entry.is_dir() else entry.stem
                if entry.name.startswith(".") or entry.suffix not in _VARS_SUFFIXES:
                    continue
                if name not in known:
                    what = "host" if kind == "host_vars" else "group"
                    findings.append(
                        Finding(
                            str(entry), f"{what} '{name}'", f"({kind})",
                            f"names no {what} of the inventory, so its settings reach nobody",
                            f"rename it after the {what}"
                            + (f" ({close!r}?)" if (close := closest(name, sorted(known))) else ""),
                            warning=kind == "group_vars",
                        )
                    )  # fmt: skip
                files = sorted(entry.rglob("*")) if entry.is_dir() else [entry]
                findings += [_empty(f) for f in files if f.is_file() and _sets_nothing(f)]
    return findings


def _sets_nothing(path: Path) -> bool:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeError):
        return False  # Ansible's own reading reports it
    return all(not line.strip() or line.lstrip().startswith("#") for line in text.splitlines())


def _empty(path: Path) -> Finding:
    return Finding(
        str(path), "inventory", "(file)",
        "sets nothing: it is empty or only comments (were users or settings meant to be here?)",
        "restore its content from git, or delete the file", warning=True,
    )  # fmt: skip


def _template_findings(per_host: Mapping[str, Mapping[str, Any]], source: str) -> list[Finding]:
    """gpuprov's and Ansible's variables that hold a template that could run something."""
    findings: dict[tuple[str, str], Finding] = {}
    # Team variables are one object every host shares: walk each once.
    walked: dict[int, list[tuple[str, Any]]] = {}
    for host, variables in per_host.items():
        for name, value in variables.items():
            if not str(name).startswith((PREFIX, "ansible_")):
                continue
            if id(value) not in walked:
                budget = templates.Budget(MAX_VALUES)
                try:
                    walked[id(value)] = list(templates.templates_in(value, budget=budget))
                except templates.TooBig:
                    raise InventoryError([_too_big(value, source)]) from None
            for path, text in walked[id(value)]:
                origin = _origin(text) or Origin(source)
                key = f"{name}{path}"
                if (key, str(origin)) in findings:
                    continue
                refused = templates.refusal(text, variables.get)
                if refused is not None:
                    findings[key, str(origin)] = Finding.at(
                        origin, user_subject(value, key, subject_of(origin, str(host))), key,
                        refused.message(),
                        templates.FIX,
                    )  # fmt: skip
    return list(findings.values())


def _finding(error: AnsibleError, fallback: str, key: str, fix: str) -> Finding:
    """The error at the first place Ansible names along its chain of causes."""
    where, cause, undecodable = None, error, False
    while cause is not None:
        undecodable = undecodable or isinstance(cause, UnicodeError)
        obj = getattr(cause, "obj", None)
        where = where or (None if obj is None else _origin(obj))
        cause = cause.__cause__ or cause.__context__
    if undecodable:
        # Ansible escapes what is not UTF-8 and then fails on the escapes it made.
        message = "is not UTF-8 text, which is all Ansible reads (a binary file, or Latin-1?)"
        fix = "save it as UTF-8, or move what is not an inventory file out of the inventory"
        return Finding.at(where or Origin(fallback), "inventory", key, message, fix)
    return Finding.at(where or Origin(fallback), "inventory", key, error.message, fix)


_plugins_ready = False


def _init_plugins() -> None:
    global _plugins_ready
    if not _plugins_ready:
        init_plugin_loader([])
        _plugins_ready = True


class AnsibleInventory:
    """One load of the inventory, the way ansible-playbook does it."""

    def __init__(self, sources: Sources):
        # As ansible.cfg says for playbooks: a duplicate key would drop what came first.
        os.environ.setdefault("ANSIBLE_DUPLICATE_YAML_DICT_KEY", "error")
        _init_plugins()
        self.sources = sources.paths()
        self.source = ", ".join(self.sources)
        self.loader = DataLoader()
        try:
            CLI.setup_vault_secrets(
                self.loader,
                vault_ids=list(C.DEFAULT_VAULT_IDENTITY_LIST) + sources.vault_ids,
                vault_password_files=list(sources.vault_password_files),
                ask_vault_pass=sources.ask_vault_pass,
                auto_prompt=False,
                # Vaulted values stay sealed (the check never reads a secret): no context.
                initialize_context=False,
            )
        except AnsibleError as error:
            raise InventoryError(
                [
                    _finding(
                        error,
                        self.source,
                        "vault secret",
                        "check --vault-id / --vault-password-file (or ansible.cfg's "
                        "vault_password_file) name a readable password file",
                    )
                ]
            ) from error
        if sources.playbook_dir:
            self.loader.set_basedir(sources.playbook_dir)
        self.manager = self._parse()
        self.variables = VariableManager(loader=self.loader, inventory=self.manager)
        # Without a playbook there is no playbook directory: never read the cwd's group_vars.
        self.variables.safe_basedir = bool(sources.playbook_dir)

    def _parse(self) -> InventoryManager:
        missing = [s for s in self.sources if "," not in s and not os.path.exists(s)]
        if missing:
            raise InventoryError(
                [
                    Finding(
                        path,
                        "inventory",
                        "-i",
                        "no such inventory file or directory",
                        "point -i at an inventory such as inventories/local",
                    )
                    for path in missing
                ]
            )
        # A source no plugin can read must stop the check, not shrink the fleet.
        strict = (C.INVENTORY_UNPARSED_IS_FAILED, C.INVENTORY_ANY_UNPARSED_IS_FAILED)
        C.INVENTORY_UNPARSED_IS_FAILED = C.INVENTORY_ANY_UNPARSED_IS_FAILED = True
        said = io.StringIO()
        try:
            # Ansible tells each plugin's failure on stderr; the findings say it once.
            with contextlib.redirect_stderr(said):
                manager = InventoryManager(loader=self.loader, sources=self.sources)
        except AnsibleError as error:
            raise InventoryError(self._unreadable(error)) from error
        finally:
            C.INVENTORY_UNPARSED_IS_FAILED, C.INVENTORY_ANY_UNPARSED_IS_FAILED = strict
        sys.stderr.write(said.getvalue())
        return manager

    def _unreadable(self, error: AnsibleError) -> list[Finding]:
        """Why each source failed, from the plugin that explains it best."""
        findings = []
        for source in self.sources:
            if os.path.isdir(source):
                candidates = [
                    os.path.join(source, name)
                    for name in sorted(os.listdir(source))
                    if os.path.isfile(os.path.join(source, name))
                ]
            else:
                candidates = [source]
            for path in candidates:
                findings += self._diagnose(path)
        return findings or [_finding(error, self.source, "inventory", _READ_FIX)]

    def _diagnose(self, path: str) -> list[Finding]:
        failures: dict[str, AnsibleError] = {}
        for name in C.INVENTORY_ENABLED:
            plugin = inventory_loader.get(name)
            try:
                if plugin is None or not plugin.verify_file(path):
                    continue
                plugin.parse(InventoryData(), self.loader, path, cache=False)
            except AnsibleError as failure:
                failures[name.rsplit(".", 1)[-1]] = failure
            except Exception as failure:
                failures[name.rsplit(".", 1)[-1]] = AnsibleError(str(failure))
            else:
                return []
        if not failures:
            return []
        telling = next((n for n in _TELLING_PLUGINS if n in failures), next(iter(failures)))
        failure = failures[telling]
        return [
            _finding(failure, path, f"(read by Ansible's {telling} inventory plugin)", _READ_FIX)
        ]

    def inventory(self) -> Inventory:
        """Every host's variables as a play sees them, before it templates them."""
        per_host = {}
        for host in self.manager.get_hosts():
            try:
                per_host[host.name] = self.variables.get_vars(host=host, include_hostvars=False)
            except AnsibleError as error:
                raise InventoryError([_finding(error, self.source, "(file)", _VARS_FIX)]) from error
        groups = {name: [h.name for h in g.get_hosts()] for name, g in self.manager.groups.items()}
        found = from_variables(per_host, self.source, groups)
        found.findings += vars_file_findings(self.sources, set(per_host), set(groups))
        return found

    def select(self, pattern: str) -> list[str]:
        """The hosts an Ansible pattern (groups, globs, :&, :!) matches; none is an error."""
        found = [h.name for h in self.manager.list_hosts(pattern)]
        if not found:
            raise InventoryError(
                [
                    Finding(
                        self.source,
                        "inventory",
                        "--limit",
                        f"the pattern {pattern!r} matches no host",
                        "name hosts or groups of the inventory (`ansible-inventory --graph` "
                        "lists them); globs and :&, :! work as in Ansible",
                    )
                ]
            )
        return found


_READ_FIX = "correct the file so that `ansible-inventory -i SOURCE --list` reads it"
_VARS_FIX = (
    "correct the file; vaulted data needs its secret: --vault-id, --vault-password-file "
    "or --ask-vault-pass"
)
