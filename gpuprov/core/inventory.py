"""An inventory as Ansible resolved it, and what is wrong with it, said to a person.

The loader (controller side, ``gpuprov.ansible_inventory``) asks ansible-core
for every host's variables, with Ansible's own precedence, and hands them here
with the place each value was written; the rules (``rules``) and the plan
(``plan``) read nothing else, so the check and the run cannot disagree.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Origin:
    """Where a value was written: a file, and the line and column when Ansible knows them."""

    file: str
    line: int | None = None
    column: int | None = None
    # Given with -e: above every inventory, and where run-only variables belong.
    command_line: bool = False

    def __str__(self) -> str:
        where = [self.file] + [str(n) for n in (self.line, self.column) if n is not None]
        return ":".join(where)


@dataclass(frozen=True)
class Sourced:
    """A variable's value and where it was written."""

    value: Any
    origin: Origin
    # Where the parts of a structured value were written, by key path ("[0].uid").
    parts: Mapping[str, Origin] = field(default_factory=dict, compare=False, repr=False)

    @property
    def file(self) -> str:
        return self.origin.file

    def origin_of(self, path: str) -> Origin:
        """The origin of the deepest part of the value that ``path`` (after the name) names."""
        while path:
            if path in self.parts:
                return self.parts[path]
            parent = re.sub(r"(\.[^.\[]+|\[[^\]]*\])$", "", path)
            if parent == path:
                break
            path = parent
        return self.origin


@dataclass
class Inventory:
    """Every host's variables, resolved by Ansible, with their origins."""

    source: str
    hosts: dict[str, dict[str, Sourced]] = field(default_factory=dict)
    # What the loader found in how values are written (templates that could run
    # something on the controller); the rules report these first.
    findings: list[Finding] = field(default_factory=list)
    # Ansible's groups and their hosts, 'all' and 'ungrouped' left out.
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Finding:
    """One thing wrong with an inventory, said so a person can fix it."""

    file: str
    subject: str
    key: str
    message: str
    fix: str = ""
    line: int | None = None
    column: int | None = None
    # A judgement call: printed, and an error only under --strict (or gpuprov_strict).
    warning: bool = False

    @classmethod
    def at(
        cls, origin: Origin, subject: str, key: str, message: str, fix: str = "",
        warning: bool = False,
    ) -> Finding:  # fmt: skip
        return cls(origin.file, subject, key, message, fix, origin.line, origin.column, warning)

    def __str__(self) -> str:
        where = Origin(self.file, self.line, self.column)
        text = f"{where}: {self.subject}: {self.key}: {self.message}"
        return f"{text}. Fix: {self.fix}" if self.fix else text

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "subject": self.subject,
            "key": self.key,
            "message": self.message,
            "fix": self.fix,
            "warning": self.warning,
        }


class InventoryError(ValueError):
    def __init__(self, findings: list[Finding]):
        self.findings = findings
        super().__init__("\n".join(str(f) for f in findings))


_VARS_FILE = re.compile(r"(?:^|/)(group_vars|host_vars)/([^/]+?)(?:\.ya?ml|\.json)?(?:/|$)")


def subject_of(origin: Origin, host: str) -> str:
    """Who a value belongs to, as its file says (group_vars/NAME, host_vars/NAME), else the host."""
    match = _VARS_FILE.search(origin.file)
    if match is None:
        return f"host '{host}'"
    kind = "group" if match.group(1) == "group_vars" else "host"
    return f"{kind} '{match.group(2)}'"


def user_subject(value: Any, path: str, default: str) -> str:
    """The user a key path inside ``gpuprov_users`` belongs to, else ``default``."""
    match = re.match(r"gpuprov_users\[(\d+)\]", path)
    if match and isinstance(value, list) and int(match.group(1)) < len(value):
        user = value[int(match.group(1))]
        if isinstance(user, Mapping) and isinstance(user.get("name"), str):
            return f"user '{user['name']}'"
    return default
