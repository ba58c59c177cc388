"""A small declarative schema for inventory variables.

Ansible's own argument_spec validation runs per role, on a host, after the
play started; the inventory check must run before any host is touched and
must name the file and key path, so it validates the raw data itself.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Problem:
    path: str
    message: str


class Node:
    """One node of a schema: validates a value found at ``path``."""

    description: str = ""

    def validate(self, value: Any, path: str) -> Iterator[Problem]:
        raise NotImplementedError

    def type_name(self) -> str:
        raise NotImplementedError


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({value})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


@dataclass
class Str(Node):
    pattern: str | None = None
    hint: str = ""
    choices: tuple[str, ...] = ()
    check: Callable[[str], str | None] | None = None
    description: str = ""

    def type_name(self) -> str:
        if self.choices:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        return "a string"

    def validate(self, value: Any, path: str) -> Iterator[Problem]:
        if not isinstance(value, str):
            yield Problem(path, f"expected {self.type_name()}, got {_kind(value)}")
            return
        if self.choices and value not in self.choices:
            yield Problem(path, f"{value!r} is not {self.type_name()}")
        elif self.pattern and not re.fullmatch(self.pattern, value):
            yield Problem(path, f"{value!r} is not valid: {self.hint or self.pattern}")
        elif self.check and (message := self.check(value)):
            yield Problem(path, message)


@dataclass
class Int(Node):
    minimum: int | None = None
    maximum: int | None = None
    description: str = ""

    def type_name(self) -> str:
        return "an integer"

    def validate(self, value: Any, path: str) -> Iterator[Problem]:
        if isinstance(value, bool) or not isinstance(value, int):
            yield Problem(path, f"expected an integer, got {_kind(value)}")
            return
        if self.minimum is not None and value < self.minimum:
            yield Problem(path, f"{value} is below the minimum {self.minimum}")
        if self.maximum is not None and value > self.maximum:
            yield Problem(path, f"{value} is above the maximum {self.maximum}")


@dataclass
class Num(Node):
    minimum: float = 0.0
    maximum: float | None = None
    description: str = ""

    def type_name(self) -> str:
        return "a number"

    def validate(self, value: Any, path: str) -> Iterator[Problem]:
        if isinstance(value, bool) or not isinstance(value, int | float):
            yield Problem(path, f"expected a number, got {_kind(value)}")
        elif not math.isfinite(value):
            yield Problem(path, f"{value} is not a finite number")
        elif value <= self.minimum:
            yield Problem(path, f"{value} must be greater than {self.minimum}")
        elif self.maximum is not None and value > self.maximum:
            yield Problem(path, f"{value} is above the maximum {self.maximum:g}")


@dataclass
class Bool(Node):
    description: str = ""

    def type_name(self) -> str:
        return "a boolean (true/false)"

    def validate(self, value: Any, path: str) -> Iterator[Problem]:
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
            name = path.split(".")[0].split("[")[0]
            meant = "true" if value.lower() in ("true", "yes") else "false"
            yield Problem(
                path,
                f"expected true or false, got the text {value!r} (-e KEY=VALUE passes text: "
                f"write -e '{{\"{name}\": {meant}}}')",
            )
        elif not isinstance(value, bool):
            yield Problem(path, f"expected true or false, got {_kind(value)}")


@dataclass
class Secret(Node):
    """A string that may arrive vault-encrypted; its content is never shown."""

    description: str = ""

    def type_name(self) -> str:
        return "a string (vault-encrypted is best)"

    def validate(self, value: Any, path: str) -> Iterator[Problem]:
        if isinstance(value, Opaque | str):
            return
        yield Problem(path, f"expected {self.type_name()}, got {type(value).__name__}")


@dataclass
class ListOf(Node):
    item: Node
    min_items: int = 0
    description: str = ""

    def type_name(self) -> str:
        return f"a list of {self.item.type_name()}"

    def validate(self, value: Any, path: str) -> Iterator[Problem]:
        if not isinstance(value, list):
            yield Problem(path, f"expected {self.type_name()}, got {_kind(value)}")
            return
        if len(value) < self.min_items:
            yield Problem(path, f"needs at least {self.min_items} item(s)")
        for index, item in enumerate(value):
            yield from self.item.validate(item, f"{path}[{index}]")


@dataclass
class AnyOf(Node):
    """The first alternative whose type matches decides; its problems are reported."""

    options: tuple[Node, ...]
    description: str = ""

    def type_name(self) -> str:
        return " or ".join(option.type_name() for option in self.options)

    def validate(self, value: Any, path: str) -> Iterator[Problem]:
        for option in self.options:
            if _shape_matches(option, value):
                yield from option.validate(value, path)
                return
        yield Problem(path, f"expected {self.type_name()}, got {_kind(value)}")


def _shape_matches(node: Node, value: Any) -> bool:
    shapes: dict[type, Callable[[Any], bool]] = {
        Str: lambda v: isinstance(v, str),
        Int: lambda v: isinstance(v, int) and not isinstance(v, bool),
        Num: lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        Bool: lambda v: isinstance(v, bool),
        ListOf: lambda v: isinstance(v, list),
        Map: lambda v: isinstance(v, dict),
    }
    return shapes.get(type(node), lambda v: False)(value)


@dataclass
class Map(Node):
    fields: Mapping[str, Node]
    required: tuple[str, ...] = ()
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def type_name(self) -> str:
        return "a mapping"

    def validate(self, value: Any, path: str) -> Iterator[Problem]:
        if not isinstance(value, dict):
            yield Problem(path, f"expected a mapping, got {_kind(value)}")
            return
        for key in self.required:
            if key not in value:
                yield Problem(f"{path}.{key}", "is required but missing")
        for key, item in value.items():
            node = self.fields.get(key)
            if node is None:
                yield Problem(f"{path}.{key}", unknown_key_message(str(key), self.fields))
            else:
                yield from node.validate(item, f"{path}.{key}")


def unknown_key_message(key: str, known: Mapping[str, Any]) -> str:
    close = closest(key, list(known))
    hint = f"; did you mean {close!r}?" if close else ""
    return f"unknown key{hint} (known keys: {', '.join(sorted(known))})"


def closest(word: str, candidates: list[str]) -> str | None:
    def distance(a: str, b: str) -> int:
        previous = list(range(len(b) + 1))
        for i, ca in enumerate(a, 1):
            current = [i]
            for j, cb in enumerate(b, 1):
                current.append(
                    min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb))
                )
            previous = current
        return previous[-1]

    scored = sorted((distance(word, c), c) for c in candidates)
    if scored and scored[0][0] <= max(2, len(word) // 3):
        return scored[0][1]
    return None


class Opaque:
    """A value gpuprov must not read or print (an Ansible Vault ciphertext)."""

    def __repr__(self) -> str:
        return "<vault-encrypted>"
